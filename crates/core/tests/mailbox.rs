//! The mailbox's own accounting under real threads: places taken, held
//! by guards, reserved by permits and given back, from many tasks at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sluicegate_core::mailbox::{TryReserveError, mailbox};
use sluicegate_core::testing::{AckLog, within};
use sluicegate_core::{Envelope, Overflow};

const LIMIT: Duration = Duration::from_secs(30);
const CAPACITY: usize = 4;
const SENDERS: usize = 4;
const PER_SENDER: usize = 2_000;

/// Four senders (half through `send`, half through `reserve` permits, some
/// of which they drop unused), one receiver handing each slot guard to a
/// task that drops it on another thread: the depth never passes the
/// capacity, and at the end every place is free again: exactly `CAPACITY`
/// reservations fit, the next is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn places_are_counted_exactly_under_concurrent_use() {
    let acks = AckLog::new();
    let (tx, mut rx) = mailbox::<u64>("m", CAPACITY, Overflow::Block, None);
    let stats = tx.stats().clone();
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let tx = tx.clone();
        let acks = acks.clone();
        senders.push(tokio::spawn(async move {
            for i in 0..PER_SENDER {
                let offset = (s * PER_SENDER + i) as i64;
                let env = Envelope::new(offset as u64, acks.ack(offset));
                if s % 2 == 0 {
                    tx.send(env).await.expect("receiver alive");
                } else {
                    if i % 3 == 0 {
                        // A reservation given back unused.
                        drop(tx.reserve().await.expect("receiver alive"));
                    }
                    tx.reserve().await.expect("receiver alive").send(env);
                }
            }
        }));
    }
    let over = Arc::new(AtomicUsize::new(0));
    let mut releases = Vec::new();
    let mut received = 0;
    while received < SENDERS * PER_SENDER {
        let (env, slot) = within(LIMIT, "the next envelope", rx.recv())
            .await
            .expect("senders alive");
        if stats.depth() > CAPACITY {
            over.fetch_add(1, Ordering::Relaxed);
        }
        received += 1;
        releases.push(tokio::spawn(async move {
            tokio::task::yield_now().await;
            env.into_parts().1.deliver();
            drop(slot);
        }));
    }
    for s in senders {
        within(LIMIT, "a sender to finish", s)
            .await
            .expect("sender");
    }
    for r in releases {
        within(LIMIT, "a release task", r).await.expect("release");
    }
    acks.assert_each_once((SENDERS * PER_SENDER) as i64);
    assert_eq!(over.load(Ordering::Relaxed), 0, "depth passed the capacity");
    assert_eq!(stats.depth(), 0, "every place was given back");
    let permits: Vec<_> = (0..CAPACITY)
        .map(|_| tx.try_reserve().expect("a free place"))
        .collect();
    assert_eq!(tx.try_reserve().err(), Some(TryReserveError::Full));
    drop(permits);
    assert!(
        tx.try_reserve().is_ok(),
        "dropped permits gave their room back"
    );
}

/// A permit whose stage stopped resolves its envelope as failed, and a
/// receiver gone makes `reserve` fail.
#[tokio::test]
async fn a_permit_to_a_stopped_stage_fails_its_envelope() {
    let acks = AckLog::new();
    let (tx, rx) = mailbox::<u64>("m", 2, Overflow::Block, None);
    let permit = tx.reserve().await.expect("open");
    drop(rx);
    permit.send(Envelope::new(1, acks.ack(0)));
    match acks.outcome(0) {
        Some(sluicegate_core::Outcome::Failed(e)) => {
            assert_eq!(e.kind(), sluicegate_core::FailureKind::Abandoned);
        }
        other => panic!("expected failed, got {other:?}"),
    }
    assert!(tx.reserve().await.is_err());
}
