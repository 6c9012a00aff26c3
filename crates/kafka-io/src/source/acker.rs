//! What each record's outcome means for its offset.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use sluicegate_core::{AckReceiver, FailureKind, Origin, Outcome};

use super::shared::{Shared, lock};
use crate::tracker::Finish;

/// Reports each record's outcome to the tracker.
pub(super) struct Acker(pub(super) Arc<Shared>);

impl AckReceiver for Acker {
    fn on_ack(&self, origin: &Origin, outcome: Outcome) {
        let (Some(topic), Some(partition), Some(offset)) =
            (&origin.topic, origin.partition, origin.offset)
        else {
            return;
        };
        let shared = &self.0;
        {
            let mut tracker = lock(&shared.tracker);
            if outcome.is_finished() {
                match tracker.finish(topic, partition, offset) {
                    Finish::Done => {
                        shared.finished_since_commit.fetch_add(1, Ordering::Relaxed);
                    }
                    Finish::Untracked => {
                        shared.stats.late_acks.fetch_add(1, Ordering::Relaxed);
                    }
                    // Held records taken back on revoke or shutdown resolve here.
                    Finish::Unknown => {}
                }
            } else {
                if let Outcome::Failed(e) = &outcome {
                    if e.kind() != FailureKind::Abandoned {
                        tracing::error!(%topic, partition, offset, error = %e, "record failed with nowhere to go; its offset will not be committed");
                    }
                    if e.kind() != FailureKind::Abandoned && e.kind() != FailureKind::Leaked {
                        tracker.fail(topic, partition, offset);
                    }
                }
            }
        }
        shared.changed.notify_all();
    }
}
