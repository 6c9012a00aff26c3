//! The kit's own checks.

use super::*;
use crate::{DropReason, FailureKind, ItemError};

fn panics<R>(f: impl FnOnce() -> R) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err()
}

/// A second resolution of one offset is counted and reported, whatever
/// the first outcome was.
#[test]
fn ack_log_catches_a_second_resolution() {
    let log = AckLog::new();
    log.ack(0).deliver();
    log.ack(1).deliver();
    log.ack(1)
        .fail(ItemError::new("s", FailureKind::Error, "late"));
    log.ack(2).drop_with(DropReason::Filtered);
    assert_eq!((log.times(0), log.times(1), log.times(3)), (1, 2, 0));
    assert_eq!(log.resolved_more_than_once(), vec![1]);
    assert!(log.outcome(0).is_some_and(|o| o.is_delivered()));
    assert!(log.outcome(3).is_none());
    assert!(
        panics(|| log.outcome(1)),
        "outcome() hid a double resolution"
    );
    assert!(panics(|| log.assert_each_once(3)));
}
