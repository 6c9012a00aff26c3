//! What each record's outcome means for its offset.
//!
//! | outcome                                   | the offset                  | the source                   |
//! |-------------------------------------------|-----------------------------|------------------------------|
//! | delivered, dropped, dead-lettered         | finished                    | commits past it              |
//! | failed (error, panic, fatal)              | unfinished, not in flight   | stops: [`RecordFailed`]      |
//! | leaked (a handle dropped unresolved: a bug) | unfinished, not in flight | stops: [`RecordLeaked`]      |
//! | abandoned while the graph runs            | unfinished, not in flight   | stops: [`RecordAbandoned`]   |
//! | abandoned once shutdown began             | unfinished, not in flight   | no error of its own          |
//!
//! An unfinished offset is never committed past, so every record that did
//! not finish is read again after a restart. A record abandoned once
//! shutdown began is part of that shutdown (the drain deadline passed, or
//! the error that started it stopped a stage): the graph's report already
//! says so, and the source returns normally. Any other record that ends
//! unfinished stops the source with an error naming it, instead of leaving
//! its partition's commits stuck behind it in silence.
//!
//! [`RecordFailed`]: crate::KafkaIoError::RecordFailed
//! [`RecordLeaked`]: crate::KafkaIoError::RecordLeaked
//! [`RecordAbandoned`]: crate::KafkaIoError::RecordAbandoned

use std::sync::Arc;
use std::sync::atomic::Ordering;

use sluicegate_core::{AckReceiver, CancellationToken, FailureKind, ItemError, Origin, Outcome};

use super::shared::{RecordFailure, Shared, lock};
use crate::tracker::Finish;

/// Reports each record's outcome to the tracker.
pub(super) struct Acker {
    pub(super) shared: Arc<Shared>,
    /// The graph's shutdown token: an abandon after it fired is part of the
    /// shutdown.
    pub(super) shutdown: CancellationToken,
}

impl AckReceiver for Acker {
    fn on_ack(&self, origin: &Origin, outcome: Outcome) {
        let (Some(topic), Some(partition), Some(offset)) =
            (&origin.topic, origin.partition, origin.offset)
        else {
            return;
        };
        let shared = &self.shared;
        match outcome {
            Outcome::Failed(error) => self.unfinished(topic, partition, offset, error),
            _ => {
                let done = lock(&shared.tracker).finish(topic, partition, offset);
                match done {
                    Finish::Done => {
                        shared.finished_since_commit.fetch_add(1, Ordering::Relaxed);
                    }
                    Finish::Untracked => {
                        shared.stats.late_acks.fetch_add(1, Ordering::Relaxed);
                    }
                    // Held records taken back on revoke or shutdown resolve here.
                    Finish::Unknown => {}
                }
            }
        }
        shared.changed.notify_all();
    }

    fn wants_parts(&self) -> bool {
        self.shared.tracks_parts()
    }

    fn on_parts(&self, origin: &Origin, left: usize, unfinished: bool) {
        if let (Some(topic), Some(partition), Some(offset)) =
            (&origin.topic, origin.partition, origin.offset)
        {
            lock(&self.shared.tracker).parts(topic, partition, offset, left, unfinished);
        }
    }
}

impl Acker {
    /// A record that resolved without finishing (see the module's table).
    fn unfinished(&self, topic: &str, partition: i32, offset: i64, error: ItemError) {
        let shared = &self.shared;
        if error.kind() == FailureKind::Abandoned && self.shutdown.is_cancelled() {
            let done = lock(&shared.tracker).give_up(topic, partition, offset);
            if done == Finish::Untracked {
                shared.stats.late_acks.fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(%topic, partition, offset, error = %error, "record abandoned at shutdown; its offset will not be committed");
            return;
        }
        let done = lock(&shared.tracker).fail(topic, partition, offset);
        match done {
            Finish::Done => {}
            Finish::Untracked => {
                // Revoked since: the new owner reads it from the last commit.
                shared.stats.late_acks.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Finish::Unknown => return,
        }
        let first = shared.note_failure(RecordFailure {
            topic: topic.to_string(),
            partition,
            offset,
            error: error.clone(),
        });
        if first {
            tracing::error!(%topic, partition, offset, error = %error, "record ended unfinished; its offset will not be committed and the source stops");
        } else {
            tracing::debug!(%topic, partition, offset, error = %error, "record ended unfinished; its offset will not be committed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KafkaIoError;
    use sluicegate_core::Ack;

    /// A source's shared state with offsets `0..n` of `t`/0 handed out, and
    /// its acker.
    fn handed_out(n: i64) -> (Arc<Shared>, CancellationToken, Arc<dyn AckReceiver>) {
        let shared = Arc::new(Shared::default());
        for o in 0..n {
            assert!(lock(&shared.tracker).track("t", 0, o));
        }
        let shutdown = CancellationToken::new();
        let acker: Arc<dyn AckReceiver> = Arc::new(Acker {
            shared: shared.clone(),
            shutdown: shutdown.clone(),
        });
        (shared, shutdown, acker)
    }

    fn ack(acker: &Arc<dyn AckReceiver>, offset: i64) -> Ack {
        let origin = Origin {
            topic: Some("t".into()),
            ..Origin::at(0, offset)
        };
        Ack::new(origin, acker.clone())
    }

    fn failure(kind: FailureKind) -> ItemError {
        ItemError::new("fanout", kind, "the downstream stage has stopped")
    }

    fn committable(shared: &Shared) -> Option<i64> {
        lock(&shared.tracker).states()[0].committable
    }

    #[test]
    fn abandoned_while_running_stops_the_source_naming_the_record() {
        let (shared, _shutdown, acker) = handed_out(3);
        ack(&acker, 0).deliver();
        ack(&acker, 1).fail(failure(FailureKind::Abandoned));
        ack(&acker, 2).deliver();
        assert_eq!(committable(&shared), Some(1), "never committed past 1");
        assert_eq!(
            lock(&shared.tracker).in_flight(None),
            0,
            "nothing waits for it"
        );
        match shared.take_failure() {
            Some(KafkaIoError::RecordAbandoned {
                topic,
                partition: 0,
                offset: 1,
                stage,
                reason,
            }) => {
                assert_eq!((topic.as_str(), stage.as_str()), ("t", "fanout"));
                assert_eq!(reason, "the downstream stage has stopped");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn abandoned_at_shutdown_is_no_error_and_never_committed_past() {
        let (shared, shutdown, acker) = handed_out(3);
        ack(&acker, 0).deliver();
        shutdown.cancel();
        ack(&acker, 1).fail(failure(FailureKind::Abandoned));
        ack(&acker, 2).deliver();
        assert!(shared.take_failure().is_none());
        assert_eq!(committable(&shared), Some(1));
        assert_eq!(lock(&shared.tracker).in_flight(None), 0, "the drain ends");
    }

    #[test]
    fn a_leak_stops_the_source_even_at_shutdown() {
        let (shared, shutdown, acker) = handed_out(3);
        shutdown.cancel();
        ack(&acker, 2).fail(ItemError::new(
            "unknown",
            FailureKind::Leaked,
            "acknowledgement dropped without being resolved",
        ));
        assert_eq!(committable(&shared), Some(0));
        let err = shared.take_failure().expect("a failure");
        assert!(
            matches!(err, KafkaIoError::RecordLeaked { offset: 2, .. }),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("record t/0@2: "), "{err}");
    }

    #[test]
    fn the_first_failure_of_a_partition_is_its_lowest_offset() {
        let (shared, _shutdown, acker) = handed_out(6);
        lock(&shared.tracker).track("u", 0, 0);
        ack(&acker, 5).fail(failure(FailureKind::Error));
        ack(&acker, 3).fail(failure(FailureKind::Panic));
        let other = Origin {
            topic: Some("u".into()),
            ..Origin::at(0, 0)
        };
        Ack::new(other, acker.clone()).fail(failure(FailureKind::Error));
        assert!(matches!(
            shared.take_failure(),
            Some(KafkaIoError::RecordFailed { offset: 3, .. })
        ));
        // Resolving a record twice (a bug) or after its revoke changes nothing.
        ack(&acker, 3).deliver();
        assert_eq!(committable(&shared), Some(0));
    }
}
