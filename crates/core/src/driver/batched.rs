//! Gathers batches for a [`BatchStage`]: the first item, then more until
//! the batch is full (items or bytes) or its deadline passes.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;

use futures::FutureExt;

use crate::ack::{Ack, Origin};
use crate::envelope::Envelope;
use crate::error::{FailureKind, Fatal, GraphError, ItemError, panic_message};
use crate::graph::BatchConfig;
use crate::mailbox::{Receiver, Slot};
use crate::metrics::{Clock, Phase};
use crate::outlet::Outlet;
use crate::stage::BatchStage;

use super::settle::{Processed, Settle, mark_transient};
use super::{NodeCx, abandon_mailbox, abandon_taken, finish, run_stop};

/// Gathers batches (first item, then until full or the deadline) and hands
/// them to a [`BatchStage`].
pub(crate) async fn run_batched<S: BatchStage>(
    stage: Arc<S>,
    mut rx: Receiver<S::In>,
    outlet: Outlet<S::Out>,
    cx: NodeCx,
    config: BatchConfig<S::In>,
) -> Result<(), GraphError> {
    let m = cx.metrics.clone();
    let mut settle = Settle::new(&cx);
    let mut clock = Clock::start(m.clone(), Phase::Idle);
    let mut buf: Vec<(Envelope<S::In>, Slot)> = Vec::with_capacity(config.max_items);
    let weigh = |env: &Envelope<S::In>| {
        config
            .max_bytes
            .as_ref()
            .map_or(0, |(_, w)| w(env.payload()))
    };
    let byte_limit = config.max_bytes.as_ref().map(|(max, _)| *max);
    let mut closed = false;
    // Registered once for the whole run, not once per select.
    let abandon = cx.abandon.cancelled();
    tokio::pin!(abandon);
    while !closed {
        // Wait for the first item.
        let got = tokio::select! {
            biased;
            got = rx.take_many(&mut buf, if byte_limit.is_some() { 1 } else { config.max_items }) => got,
            () = &mut abandon => { abandon_mailbox(&mut rx, &cx); break; }
        };
        if !got {
            break;
        }
        // Then gather (still idle) until full, over the byte limit, or the deadline.
        let deadline = tokio::time::Instant::now() + config.max_wait;
        let mut bytes: usize = buf.iter().map(|(e, _)| weigh(e)).sum();
        let mut abandoned = false;
        while buf.len() < config.max_items && byte_limit.is_none_or(|max| bytes < max) {
            let take = if byte_limit.is_some() {
                1
            } else {
                config.max_items - buf.len()
            };
            let before = buf.len();
            let step = tokio::select! {
                biased;
                () = &mut abandon => { abandoned = true; break; }
                r = tokio::time::timeout_at(deadline, rx.take_many(&mut buf, take)) => r,
            };
            match step {
                Ok(true) => bytes += buf[before..].iter().map(|(e, _)| weigh(e)).sum::<usize>(),
                Ok(false) => {
                    closed = true;
                    break;
                }
                Err(_elapsed) => break,
            }
        }
        if abandoned {
            let taken = buf.drain(..).map(|(env, slot)| (env.into_parts().1, slot));
            abandon_taken(&rx, &cx, taken);
            abandon_mailbox(&mut rx, &cx);
            break;
        }
        clock.lap(Phase::Idle, Phase::Busy);
        m.note_first_in(clock.phase_start());
        let n = buf.len();
        m.items_in.fetch_add(n as u64, AtomicOrdering::Relaxed);
        let mut payloads = Vec::with_capacity(n);
        let mut acks = Vec::with_capacity(n);
        let mut slots = Vec::with_capacity(n);
        for (env, slot) in buf.drain(..) {
            let (p, a) = env.into_parts();
            payloads.push(p);
            acks.push(a);
            slots.push(slot);
        }
        let result = {
            let origins: Vec<&Origin> = acks.iter().map(Ack::origin).collect();
            let fut = AssertUnwindSafe(async { stage.process_batch(payloads, &origins).await })
                .catch_unwind();
            tokio::select! {
                biased;
                r = fut => Some(r),
                () = &mut abandon => None,
            }
        };
        let Some(result) = result else {
            abandon_taken(&rx, &cx, acks.into_iter().zip(slots));
            abandon_mailbox(&mut rx, &cx);
            break;
        };
        // Settling and flushing count as blocked.
        m.latency.record(clock.lap(Phase::Busy, Phase::Blocked));
        let per_item: Vec<Processed<S::Out>> = match result {
            Err(p) => {
                let msg = panic_message(p.as_ref());
                (0..n).map(|_| Processed::Panic(msg.clone())).collect()
            }
            Ok(Err(e)) => {
                // One error for the whole batch: attributed once, shared by
                // every item (its source stays the stage's own error).
                let fatal = stage.is_fatal(&e);
                let transient = stage.is_transient(&e);
                let boxed = mark_transient(e.into(), transient);
                let kind = if fatal || boxed.is::<Fatal>() {
                    FailureKind::Fatal
                } else {
                    FailureKind::Error
                };
                let shared = ItemError::from_error(cx.name.clone(), kind, boxed);
                (0..n).map(|_| Processed::Failed(shared.clone())).collect()
            }
            Ok(Ok(results)) if results.len() != n => {
                let msg = format!(
                    "batch stage returned {} results for {} inputs",
                    results.len(),
                    n
                );
                let shared = ItemError::new(cx.name.clone(), FailureKind::Error, msg);
                (0..n).map(|_| Processed::Failed(shared.clone())).collect()
            }
            Ok(Ok(results)) => results
                .into_iter()
                .map(|r| match r {
                    Ok(outs) => Processed::Ok(outs),
                    Err(e) => {
                        let fatal = stage.is_fatal(&e);
                        let transient = stage.is_transient(&e);
                        Processed::from_error(e.into(), fatal, transient)
                    }
                })
                .collect(),
        };
        for ((processed, ack), slot) in per_item.into_iter().zip(acks).zip(slots) {
            settle.settle(processed, ack, slot).await;
        }
        if !settle
            .flush_and_go_on(&outlet, &rx, &mut clock, Phase::Idle)
            .await
        {
            abandon_mailbox(&mut rx, &cx);
            break;
        }
    }
    let fatal = settle.fatal.take();
    finish(&cx, fatal, run_stop(&cx, stage.stop()).await)
}
