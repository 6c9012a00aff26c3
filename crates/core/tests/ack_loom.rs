//! A loom model of a split acknowledgement: every interleaving of two
//! threads resolving the two parts of a `split(2)`, one failed and one
//! delivered. The origin must hear exactly once, and hear `Failed`.
//!
//! Only built with `--cfg loom` (the acknowledgement's atomics and lock
//! are loom's then), in a target directory of its own so the normal build
//! is not rebuilt:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p sluicegate-core --test ack_loom
//! ```
#![cfg(loom)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sluicegate_core::{Ack, FailureKind, ItemError, Origin, Outcome};

fn model(first_fails: bool) {
    loom::model(move || {
        // Std atomics: the receiver is an observer outside the model.
        let heard = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let receiver = {
            let (heard, failed) = (heard.clone(), failed.clone());
            Arc::new(move |_: &Origin, outcome: Outcome| {
                heard.fetch_add(1, Ordering::SeqCst);
                if matches!(outcome, Outcome::Failed(_)) {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        let mut parts = Ack::new(Origin::at(0, 0), receiver).split(2);
        let b = parts.pop().expect("two parts");
        let a = parts.pop().expect("two parts");
        let error = ItemError::new("branch", FailureKind::Error, "rejected");
        let (on_thread, here) = if first_fails { (a, b) } else { (b, a) };
        let resolve = move |part: Ack, fails: bool, error: ItemError| {
            if fails {
                part.fail(error)
            } else {
                part.deliver()
            }
        };
        let e = error.clone();
        let t = loom::thread::spawn(move || resolve(on_thread, first_fails, e));
        resolve(here, !first_fails, error);
        t.join().expect("thread");
        assert_eq!(heard.load(Ordering::SeqCst), 1, "the origin hears once");
        assert_eq!(
            failed.load(Ordering::SeqCst),
            1,
            "the origin hears the failure"
        );
    });
}

#[test]
fn split_parts_on_two_threads_report_the_failure_when_the_spawned_one_fails() {
    model(true);
}

#[test]
fn split_parts_on_two_threads_report_the_failure_when_the_main_one_fails() {
    model(false);
}
