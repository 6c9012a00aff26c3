//! The coupling's generation, driven the way the consumer thread and a
//! transactional sink drive it: from two real threads.

use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use sluicegate_core::{CommitLedger, Origin};

use super::*;

const PATIENCE: Duration = Duration::from_secs(10);

fn part(p: i32) -> (String, i32) {
    ("t".to_string(), p)
}

/// A transactional source's shared state, owning `parts`.
fn coupling(parts: &[(String, i32)]) -> ExactlyOnce {
    let shared = Arc::new(Shared::default());
    shared.transactional.store(true, Ordering::SeqCst);
    shared.take_partitions(parts, None);
    ExactlyOnce { shared }
}

/// A "sink" thread captures the generation as its transaction begins (t/0
/// owned), then waits at a gate while the "consumer" thread changes the
/// assignment with `change`: the sink's check before its commit must
/// refuse, and t/0 must then be `after`.
fn refused_after_a_change(change: impl FnOnce(&Shared) + Send + 'static, after: Ownership) {
    let eo = coupling(&[part(0)]);
    let (began_tx, began_rx) = mpsc::channel();
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let sink = {
        let eo = eo.clone();
        thread::spawn(move || {
            let began = eo.generation();
            assert_eq!(eo.ownership("t", 0), Ownership::Owned);
            began_tx.send(began).expect("the test waits for the begin");
            gate_rx
                .recv_timeout(PATIENCE)
                .expect("waiting for the consumer thread's assignment change");
            (began, eo.unchanged_since(began), eo.ownership("t", 0))
        })
    };
    let consumer = {
        let shared = eo.shared.clone();
        thread::spawn(move || {
            began_rx
                .recv_timeout(PATIENCE)
                .expect("waiting for the sink's transaction to begin");
            change(&shared);
            gate_tx.send(()).expect("the sink waits at the gate");
        })
    };
    consumer.join().expect("consumer thread");
    let (began, check, ownership) = sink.join().expect("sink thread");
    assert_eq!(began.get(), 1);
    assert!(
        matches!(
            check,
            Err(KafkaIoError::AssignmentChanged { began: 1, now: 2 })
        ),
        "{check:?}"
    );
    assert_eq!(ownership, after);
}

#[test]
fn an_assignment_between_begin_and_commit_refuses_the_commit() {
    // Cooperative: another partition assigned, t/0 still owned.
    refused_after_a_change(
        |shared| shared.take_partitions(&[part(1)], None),
        Ownership::Owned,
    );
}

#[test]
fn a_revocation_between_begin_and_commit_refuses_the_commit() {
    refused_after_a_change(
        |shared| shared.release_partitions(&[part(0)]),
        Ownership::Revoked,
    );
}

#[test]
fn a_lost_assignment_between_begin_and_commit_refuses_the_commit() {
    refused_after_a_change(Shared::assignment_lost, Ownership::Owned);
}

#[test]
fn group_metadata_is_refused_under_another_generation() {
    let eo = coupling(&[part(0)]);
    let began = eo.generation();
    // No metadata captured (no consumer): refused as such.
    assert!(matches!(
        eo.group_metadata_for(began),
        Err(KafkaIoError::NoGroupMetadata)
    ));
    eo.shared.release_partitions(&[part(0)]);
    assert!(matches!(
        eo.group_metadata_for(began),
        Err(KafkaIoError::AssignmentChanged { began: 1, now: 2 })
    ));
    assert!(eo.unchanged_since(eo.generation()).is_ok());
}

#[test]
fn a_revoked_partition_gets_no_offsets_and_a_foreign_one_is_named() {
    let eo = coupling(&[part(0), part(1)]);
    for (p, o) in [(0, 10), (1, 20)] {
        assert!(lock(&eo.shared.tracker).track("t", p, o));
    }
    let origins: Vec<Origin> = [(0, 10), (1, 20)]
        .into_iter()
        .map(|(p, o)| Origin {
            topic: Some("t".into()),
            partition: Some(p),
            offset: Some(o),
            ..Origin::default()
        })
        .collect();
    let refs: Vec<&Origin> = origins.iter().collect();
    assert_eq!(
        CommitLedger::offsets_with(&eo, &refs),
        vec![("t".to_string(), 0, 11), ("t".to_string(), 1, 21)]
    );
    eo.shared.release_partitions(&[part(0)]);
    assert_eq!(
        CommitLedger::offsets_with(&eo, &refs),
        vec![("t".to_string(), 1, 21)]
    );
    assert_eq!(eo.ownership("t", 0), Ownership::Revoked);
    assert_eq!(eo.ownership("u", 0), Ownership::Foreign);
    eo.shared.take_partitions(&[part(0)], None);
    assert_eq!(eo.ownership("t", 0), Ownership::Owned);
    assert_eq!(eo.generation().get(), 3);
}

/// While one thread revokes and assigns t/0 over and over, another reads
/// the generation, the ownership twice, and the generation again: whenever
/// the two generations agree, so do the two ownerships (one assignment was
/// read). Without the bump, or with it outside the ownership's lock, a
/// changed ownership shows under an unchanged generation.
#[test]
fn an_unchanged_generation_means_an_unchanged_ownership() {
    const CHANGES: usize = 20_000;
    let eo = coupling(&[part(0)]);
    let start = Arc::new(Barrier::new(2));
    let consumer = {
        let (shared, start) = (eo.shared.clone(), start.clone());
        thread::spawn(move || {
            start.wait();
            for i in 0..CHANGES {
                if i % 2 == 0 {
                    shared.release_partitions(&[part(0)]);
                } else {
                    shared.take_partitions(&[part(0)], None);
                }
            }
        })
    };
    start.wait();
    let (mut same_generation, mut changed) = (0u64, 0u64);
    while !consumer.is_finished() {
        let began = eo.generation();
        let first = eo.ownership("t", 0);
        let second = eo.ownership("t", 0);
        if eo.unchanged_since(began).is_ok() {
            same_generation += 1;
            assert_eq!(first, second, "ownership changed at generation {began:?}");
        } else {
            changed += 1;
        }
    }
    consumer.join().expect("consumer thread");
    assert_eq!(eo.generation().get(), 1 + CHANGES as u64);
    assert_eq!(eo.ownership("t", 0), Ownership::Owned);
    tracing::debug!(same_generation, changed, "reads");
}
