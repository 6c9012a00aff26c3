//! One item at a time, in order.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;

use futures::FutureExt;

use crate::error::GraphError;
use crate::mailbox::Receiver;
use crate::metrics::{Clock, Phase};
use crate::outlet::Outlet;
use crate::stage::Stage;

use super::settle::{Settle, classify};
use super::{NodeCx, Step, abandon_mailbox, abandon_taken, finish, run_stop};

/// One item at a time, in order. Takes up to `prefetch` envelopes per lock.
pub(crate) async fn run_sequential<S: Stage>(
    stage: Arc<S>,
    mut rx: Receiver<S::In>,
    outlet: Outlet<S::Out>,
    cx: NodeCx,
    prefetch: usize,
) -> Result<(), GraphError> {
    let m = cx.metrics.clone();
    let mut batch = Vec::with_capacity(prefetch);
    let mut settle = Settle::new(&cx);
    let mut clock = Clock::start(m.clone(), Phase::Idle);
    'outer: loop {
        let got = tokio::select! {
            biased;
            got = rx.take_many(&mut batch, prefetch) => got,
            () = cx.abandon.cancelled() => {
                abandon_mailbox(&mut rx, &cx);
                break 'outer;
            }
        };
        clock.lap(Phase::Idle, Phase::Busy);
        if !got {
            break;
        }
        m.note_first_in(clock.phase_start());
        m.items_in
            .fetch_add(batch.len() as u64, AtomicOrdering::Relaxed);
        let mut items = batch.drain(..);
        // Items ready on their first poll (sync stages) share one clock read
        // per run: their time is split evenly in the latency histogram.
        let mut ready_run = 0u64;
        while let Some((env, slot)) = items.next() {
            let (payload, ack) = env.into_parts();
            let mut waited_since = None;
            let step = {
                // The call itself is inside the caught future: closure stages
                // do their work when called, not when polled.
                let origin = ack.origin();
                let mut fut = std::pin::pin!(
                    AssertUnwindSafe(async { stage.process(payload, origin).await }).catch_unwind()
                );
                match futures::poll!(fut.as_mut()) {
                    std::task::Poll::Ready(r) => {
                        ready_run += 1;
                        Step::Done(r)
                    }
                    std::task::Poll::Pending => {
                        // The item will wait: close the run of ready items,
                        // then hand on what is finished, so earlier items are
                        // not held back by this one.
                        let d = clock.lap(Phase::Busy, Phase::Blocked);
                        if ready_run > 0 {
                            m.latency.record_n(d, ready_run);
                            ready_run = 0;
                        }
                        waited_since = Some(clock.phase_start());
                        if settle.flush(&outlet, &rx, &mut clock, Phase::Busy).await {
                            tokio::select! {
                                biased;
                                r = fut => Step::Done(r),
                                () = cx.abandon.cancelled() => Step::Stop,
                            }
                        } else {
                            Step::Stop
                        }
                    }
                }
            };
            let Step::Done(result) = step else {
                let rest = items.by_ref().map(|(env, slot)| (env.into_parts().1, slot));
                abandon_taken(&rx, &cx, std::iter::once((ack, slot)).chain(rest));
                clock.switch(Phase::Blocked);
                settle.flush(&outlet, &rx, &mut clock, Phase::Idle).await;
                abandon_mailbox(&mut rx, &cx);
                break 'outer;
            };
            if let Some(started) = waited_since {
                // Busy time excludes the flush; latency is the item's wall time.
                clock.lap(Phase::Busy, Phase::Busy);
                m.latency
                    .record(clock.phase_start().saturating_duration_since(started));
            }
            let processed = classify(stage.as_ref(), result);
            settle.settle(processed, ack, slot).await;
        }
        drop(items);
        if ready_run > 0 {
            let d = clock.lap(Phase::Busy, Phase::Blocked);
            m.latency.record_n(d, ready_run);
        } else {
            // Settling so far was busy; the flush is blocked.
            clock.switch(Phase::Blocked);
        }
        if !settle
            .flush_and_go_on(&outlet, &rx, &mut clock, Phase::Idle)
            .await
        {
            abandon_mailbox(&mut rx, &cx);
            break;
        }
    }
    finish(&cx, settle.fatal.take(), run_stop(&cx, stage.stop()).await)
}
