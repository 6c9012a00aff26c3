//! Batching: flush on count, on deadline (a quiet stream still flushes), on
//! bytes; one bad row fails alone.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{PhasedSource, quiesce};
use sluicegate_core::testing::{AckLog, CollectSink, VecSource, run_to_end, within};
use sluicegate_core::{
    BatchConfig, BatchSpec, BatchStage, Graph, Origin, Outcome, Outputs, StageSpec,
};
use tokio::sync::oneshot;

const LIMIT: Duration = Duration::from_secs(3600);

/// Records batch sizes (and the virtual time each arrived); fails rows equal to 13.
#[derive(Clone, Default)]
struct Recorder {
    batches: Arc<Mutex<Vec<(usize, Duration)>>>,
    epoch: Arc<Mutex<Option<tokio::time::Instant>>>,
}

impl Recorder {
    fn sizes(&self) -> Vec<usize> {
        self.batches
            .lock()
            .expect("lock")
            .iter()
            .map(|b| b.0)
            .collect()
    }
}

impl BatchStage for Recorder {
    type In = u64;
    type Out = u64;
    type Error = String;

    async fn process_batch(
        &self,
        batch: Vec<u64>,
        origins: &[&Origin],
    ) -> Result<Vec<Result<Outputs<u64>, String>>, String> {
        assert_eq!(batch.len(), origins.len());
        let epoch = *self
            .epoch
            .lock()
            .expect("lock")
            .get_or_insert_with(tokio::time::Instant::now);
        self.batches
            .lock()
            .expect("lock")
            .push((batch.len(), epoch.elapsed()));
        Ok(batch
            .into_iter()
            .map(|x| {
                if x == 13 {
                    Err("row 13 violates a constraint".to_string())
                } else {
                    Ok(Outputs::one(x))
                }
            })
            .collect())
    }
}

#[tokio::test(start_paused = true)]
async fn flushes_on_count() {
    let acks = AckLog::new();
    let rec = Recorder::default();
    let sink = CollectSink::new();
    let mut g = Graph::builder("count");
    g.source("src", VecSource::new((0..10u64).collect(), acks.clone()))
        .via_batch(BatchSpec::new(
            "batch",
            rec.clone(),
            BatchConfig::new(4, Duration::from_secs(3600)),
        ))
        .to(StageSpec::new("sink", sink.clone()));
    let report = run_to_end(g, LIMIT).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        rec.sizes(),
        vec![4, 4, 2],
        "full batches, then the rest when the input ends"
    );
    assert_eq!(sink.items(), (0..10).collect::<Vec<u64>>());
    acks.assert_each_once(10);
}

#[tokio::test(start_paused = true)]
async fn quiet_stream_flushes_on_deadline() {
    let acks = AckLog::new();
    let rec = Recorder::default();
    let sink = CollectSink::new();
    let (go_tx, go) = oneshot::channel();
    let source = PhasedSource {
        first: vec![1, 2, 3],
        then: vec![4, 5],
        go,
        acks: acks.clone(),
        hold: true,
    };
    let mut g = Graph::builder("deadline");
    g.source("src", source)
        .via_batch(BatchSpec::new(
            "batch",
            rec.clone(),
            BatchConfig::new(100, Duration::from_millis(50)),
        ))
        .to(StageSpec::new("sink", sink.clone()));
    let running = g.build().expect("valid").start().await.expect("starts");
    let start = tokio::time::Instant::now();
    within(LIMIT, "the first batch", sink.wait_for(3)).await;
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(50),
        "flushed exactly at the deadline"
    );
    assert_eq!(rec.sizes(), vec![3]);
    go_tx.send(()).expect("source waiting");
    within(LIMIT, "the second batch", sink.wait_for(5)).await;
    assert_eq!(rec.sizes(), vec![3, 2]);
    quiesce().await;
    let report = within(LIMIT, "shutdown", running.shutdown(Duration::from_secs(10))).await;
    assert!(report.is_clean(), "{report:?}");
    acks.assert_each_once(5);
}

#[tokio::test(start_paused = true)]
async fn flushes_on_bytes_and_fails_only_the_bad_row() {
    let acks = AckLog::new();
    let rec = Recorder::default();
    let sink = CollectSink::new();
    let mut g = Graph::builder("bytes");
    g.source("src", VecSource::new((10..20u64).collect(), acks.clone()))
        .via_batch(BatchSpec::new(
            "batch",
            rec.clone(),
            BatchConfig::new(100, Duration::from_secs(3600)).max_bytes(24, |_| 8),
        ))
        .to(StageSpec::new("sink", sink.clone()));
    let report = run_to_end(g, LIMIT).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        rec.sizes(),
        vec![3, 3, 3, 1],
        "24 bytes of 8-byte items per batch"
    );
    acks.assert_each_once(10);
    assert_eq!(acks.delivered(), 9);
    match acks.outcome(3) {
        Some(Outcome::Failed(e)) => assert_eq!(e.message(), "row 13 violates a constraint"),
        other => panic!("row 13 resolved as {other:?}"),
    }
}

#[test]
fn capacity_must_hold_a_batch() {
    let mut g = Graph::builder("bad");
    g.source("src", VecSource::new(vec![1u64], AckLog::new()))
        .via_batch(
            BatchSpec::new(
                "batch",
                Recorder::default(),
                BatchConfig::new(10, Duration::from_millis(1)),
            )
            .capacity(5),
        )
        .to(StageSpec::new("sink", CollectSink::new()));
    let err = g.build().err().expect("must fail");
    assert!(err.to_string().contains("below the batch size 10"), "{err}");
}

/// The store's own error, with a cause.
#[derive(Debug, thiserror::Error)]
#[error("disk full")]
struct DiskFull(#[source] std::io::Error);

/// A batch sink whose whole batch fails with [`DiskFull`]; fatal if `fatal`.
struct FailingStore {
    fatal: bool,
}

impl BatchStage for FailingStore {
    type In = u64;
    type Out = ();
    type Error = DiskFull;

    async fn process_batch(
        &self,
        _batch: Vec<u64>,
        _origins: &[&Origin],
    ) -> sluicegate_core::stage::BatchResult<(), DiskFull> {
        Err(DiskFull(std::io::Error::other("no space left on device")))
    }

    fn is_fatal(&self, _error: &DiskFull) -> bool {
        self.fatal
    }
}

fn the_store_error(e: &sluicegate_core::ItemError) -> Option<&DiskFull> {
    std::error::Error::source(e).and_then(|s| s.downcast_ref::<DiskFull>())
}

/// A failed batch names its stage once, and its items' errors lead to the
/// store's own error as `source()`.
#[tokio::test(start_paused = true)]
async fn a_failed_batch_is_wrapped_once_and_keeps_its_source() {
    let acks = AckLog::new();
    let letters = CollectSink::<sluicegate_core::DeadLetter>::new();
    let mut g = Graph::builder("batch-error");
    g.dead_letters(StageSpec::new("dlq", letters.clone()));
    g.source("src", VecSource::new(vec![1u64, 2], acks.clone()))
        .to_batch(BatchSpec::new(
            "store",
            FailingStore { fatal: false },
            BatchConfig::new(2, Duration::from_millis(10)),
        ));
    let report = run_to_end(g, LIMIT).await;
    assert!(report.is_clean(), "{report:?}");
    acks.assert_each_once(2);
    let letters = letters.items();
    assert_eq!(letters.len(), 2);
    for letter in &letters {
        let e = &letter.error;
        assert_eq!(
            e.to_string(),
            "error in stage `store`: disk full: no space left on device"
        );
        assert!(
            the_store_error(e).is_some(),
            "source() is the store's error"
        );
    }
}

/// The same when the store's error is fatal: the graph's error leads, by
/// `source()`, to the item error and then to the store's own error.
#[tokio::test(start_paused = true)]
async fn a_fatal_batch_error_keeps_its_source() {
    let acks = AckLog::new();
    let mut g = Graph::builder("batch-fatal");
    g.source("src", VecSource::new(vec![1u64, 2], acks.clone()))
        .to_batch(BatchSpec::new(
            "store",
            FailingStore { fatal: true },
            BatchConfig::new(2, Duration::from_millis(10)),
        ));
    let report = run_to_end(g, LIMIT).await;
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    let err = &report.errors[0];
    assert_eq!(
        err.to_string(),
        "stage `store` failed fatally: fatal in stage `store`: disk full: no space left on device"
    );
    let item = std::error::Error::source(err)
        .and_then(|s| s.downcast_ref::<sluicegate_core::ItemError>())
        .expect("the item error");
    assert!(
        the_store_error(item).is_some(),
        "source() is the store's error"
    );
}

/// `batch_sink`: a closure over the whole batch. Batches of 4 (the deadline
/// an hour, so only size or the end closes one): the batch holding 5 fails
/// as a whole, every item of it with the closure's error; the others are
/// delivered.
#[tokio::test(start_paused = true)]
async fn a_batch_sink_delivers_or_fails_the_whole_batch() {
    let batches = Arc::new(Mutex::new(Vec::new()));
    let write = sluicegate_core::batch_sink({
        let batches = batches.clone();
        move |rows: Vec<u64>| {
            let ok = !rows.contains(&5);
            batches.lock().expect("lock").push(rows);
            async move {
                if ok {
                    Ok(())
                } else {
                    Err("the batch holding 5 is refused")
                }
            }
        }
    });
    let acks = AckLog::new();
    let mut g = Graph::builder("batch-sink");
    g.source("src", VecSource::new((0..10u64).collect(), acks.clone()))
        .to_batch(
            BatchSpec::new(
                "write",
                write,
                BatchConfig::new(4, Duration::from_secs(3600)),
            )
            .capacity(8),
        );
    let report = run_to_end(g, LIMIT).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        *batches.lock().expect("lock"),
        vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]
    );
    acks.assert_each_once(10);
    assert_eq!((acks.delivered(), acks.failed()), (6, 4));
    for offset in 4..8 {
        assert!(
            matches!(acks.outcome(offset), Some(Outcome::Failed(e)) if e.message().contains("the batch holding 5 is refused")),
            "offset {offset}: {:?}",
            acks.outcome(offset)
        );
    }
}
