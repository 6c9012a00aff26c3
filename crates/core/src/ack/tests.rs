//! Resolution, splitting and leaks of single handles.

use super::*;
use crate::error::FailureKind;
use std::sync::Mutex;

fn recorder() -> (Arc<Mutex<Vec<Outcome>>>, Arc<dyn AckReceiver>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let rx: Arc<dyn AckReceiver> =
        Arc::new(move |_: &Origin, o: Outcome| l.lock().expect("lock").push(o));
    (log, rx)
}

#[test]
fn resolves_once() {
    let (log, rx) = recorder();
    Ack::new(Origin::at(0, 1), rx).deliver();
    let log = log.lock().expect("lock");
    assert_eq!(log.len(), 1);
    assert!(log[0].is_delivered());
}

#[test]
fn split_reports_worst_after_all_parts() {
    let (log, rx) = recorder();
    let mut parts = Ack::new(Origin::at(0, 1), rx).split(3);
    parts.pop().expect("part").deliver();
    parts.pop().expect("part").drop_with(DropReason::Filtered);
    assert!(
        log.lock().expect("lock").is_empty(),
        "origin told before all parts resolved"
    );
    parts.pop().expect("part").deliver();
    let log = log.lock().expect("lock");
    assert_eq!(log.len(), 1);
    assert!(matches!(log[0], Outcome::Dropped(DropReason::Filtered)));
}

#[test]
fn dead_letter_delivery_is_dead_lettered() {
    let (log, rx) = recorder();
    let err = ItemError::new("s", FailureKind::Error, "bad");
    Ack::new(Origin::default(), rx)
        .into_dead_letter(err)
        .deliver();
    assert!(matches!(
        log.lock().expect("lock")[0],
        Outcome::DeadLettered(_)
    ));
}

#[test]
fn leak_is_reported_as_failed() {
    let (log, rx) = recorder();
    let ack = Ack::new(Origin::default(), rx);
    let before = leaked_total();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(ack)));
    assert_eq!(result.is_err(), cfg!(debug_assertions));
    assert_eq!(leaked_total(), before + 1);
    let log = log.lock().expect("lock");
    match &log[0] {
        Outcome::Failed(e) => assert_eq!(e.kind(), FailureKind::Leaked),
        other => panic!("leak reported as {other:?}"),
    }
}

/// Records every `on_parts` report.
#[derive(Default)]
struct Parts(Mutex<Vec<(usize, bool)>>, Mutex<Vec<Outcome>>);

impl AckReceiver for Parts {
    fn on_ack(&self, _: &Origin, outcome: Outcome) {
        self.1.lock().expect("lock").push(outcome);
    }
    fn wants_parts(&self) -> bool {
        true
    }
    fn on_parts(&self, _: &Origin, left: usize, unfinished: bool) {
        self.0.lock().expect("lock").push((left, unfinished));
    }
}

#[test]
fn a_receiver_that_wants_parts_hears_each_but_the_last() {
    let rx = Arc::new(Parts::default());
    let mut parts = Ack::new(Origin::at(0, 1), rx.clone()).split(3);
    let err = ItemError::new("s", FailureKind::Error, "bad");
    parts.pop().expect("part").deliver();
    // A part split again: four parts left.
    let mut more = parts.pop().expect("part").split(3);
    more.pop().expect("part").fail(err);
    for p in more.into_iter().chain(parts) {
        p.deliver();
    }
    assert_eq!(
        *rx.0.lock().expect("lock"),
        [
            (3, false),
            (2, false),
            (4, false),
            (3, true),
            (2, true),
            (1, true)
        ]
    );
    let acks = rx.1.lock().expect("lock");
    assert_eq!(acks.len(), 1);
    assert!(matches!(acks[0], Outcome::Failed(_)));
}

#[test]
fn a_receiver_that_does_not_want_parts_hears_none() {
    let (log, rx) = recorder();
    let parts = Ack::new(Origin::at(0, 1), rx).split(2);
    for p in parts {
        p.deliver();
    }
    assert_eq!(log.lock().expect("lock").len(), 1);
}
