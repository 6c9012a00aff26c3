//! Helpers shared by the stages integration tests: unique tables, a
//! dead-letter log, a phased source, a store graph, timeouts. The database
//! fixtures are in `sqlite` and `postgres`, the store contract suite in
//! `store_contract`.
#![allow(dead_code, unreachable_pub)]

pub mod backend;
pub mod corpus;
pub mod offsets_contract;
pub mod postgres;
pub mod sqlite;
pub mod store_contract;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sluicegate_core::testing::{AckLog, within};
use sluicegate_core::{
    Ack, AckReceiver, BoxError, DeadLetter, Envelope, Origin, Outputs, Source, SourceContext, Stage,
};
use tokio::sync::oneshot;

/// The longest any one await in a test may take.
pub const LIMIT: Duration = Duration::from_secs(30);

/// A table name no other test (or test process) uses.
pub fn unique_table(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The id the store gives the record at `offset` of a test source.
pub fn id(offset: i64) -> String {
    format!("/0/{offset}")
}

/// Ids of offsets `range`, sorted as the database sorts text.
pub fn ids(offsets: impl IntoIterator<Item = i64>) -> Vec<String> {
    let mut v: Vec<String> = offsets.into_iter().map(id).collect();
    v.sort();
    v
}

/// A JSON order record as bytes.
pub fn order(i: i64, amount: f64) -> Bytes {
    Bytes::from(format!(
        r#"{{"id":"o-{i}","amount":{amount},"currency":"EUR","email":"user{i}@example.com"}}"#
    ))
}

/// A dead letter as the tests see it: offset, stage, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dead {
    pub offset: i64,
    pub stage: String,
    pub message: String,
}

/// A dead-letter sink recording offset, stage and message.
#[derive(Debug, Clone, Default)]
pub struct DeadLog {
    items: Arc<Mutex<Vec<Dead>>>,
}

impl DeadLog {
    pub fn items(&self) -> Vec<Dead> {
        let mut v = self.items.lock().expect("lock").clone();
        v.sort_by_key(|d| d.offset);
        v
    }

    pub fn len(&self) -> usize {
        self.items.lock().expect("lock").len()
    }
}

impl Stage for DeadLog {
    type In = DeadLetter;
    type Out = ();
    type Error = std::convert::Infallible;

    async fn process(
        &self,
        input: DeadLetter,
        origin: &Origin,
    ) -> Result<Outputs<()>, Self::Error> {
        self.items.lock().expect("lock").push(Dead {
            offset: origin.offset.unwrap_or(-1),
            stage: input.error.stage().to_string(),
            message: input.error.message().to_string(),
        });
        Ok(Outputs::one(()))
    }
}

/// A source that emits `first` (offsets from 0), waits for the test's go,
/// then emits `then` (offsets continuing), each acknowledged to `acks`
/// (and to `also`, if set).
pub struct PhasedSource<T> {
    pub first: Vec<T>,
    pub then: Vec<T>,
    pub go: oneshot::Receiver<()>,
    pub acks: AckLog,
    pub also: Option<Arc<dyn AckReceiver>>,
}

/// Forwards every outcome to two receivers.
struct Both(AckLog, Arc<dyn AckReceiver>);

impl AckReceiver for Both {
    fn on_ack(&self, origin: &Origin, outcome: sluicegate_core::Outcome) {
        self.1.on_ack(origin, outcome.clone());
        self.0.on_ack(origin, outcome);
    }
}

impl<T: Send + 'static> Source for PhasedSource<T> {
    type Out = T;

    async fn run(self, mut cx: SourceContext<T>) -> Result<(), BoxError> {
        let receiver: Arc<dyn AckReceiver> = match self.also {
            Some(also) => Arc::new(Both(self.acks.clone(), also)),
            None => Arc::new(self.acks.clone()),
        };
        let mut offset = 0i64;
        let mut emit_all = async |items: Vec<T>, cx: &mut SourceContext<T>| {
            for item in items {
                let ack = Ack::new(Origin::at(0, offset), receiver.clone());
                offset += 1;
                if let Err(e) = cx.emit(Envelope::new(item, ack)).await {
                    let (_, ack) = e.into_inner().into_parts();
                    ack.fail(sluicegate_core::ItemError::new(
                        "src",
                        sluicegate_core::FailureKind::Abandoned,
                        "graph stopped",
                    ));
                    return false;
                }
            }
            true
        };
        if !emit_all(self.first, &mut cx).await {
            return Ok(());
        }
        tokio::select! {
            _ = self.go => {}
            () = cx.shutdown_requested() => return Ok(()),
        }
        emit_all(self.then, &mut cx).await;
        Ok(())
    }
}

/// Waits (polling every 5 ms, at most [`LIMIT`]) until `cond` holds.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    within(LIMIT, what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Like [`wait_until`], for a condition that needs a query.
pub async fn wait_until_async<F: Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    within(LIMIT, what, async {
        while !cond().await {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Builds and starts `g` (at most [`LIMIT`]), failing the test if it is
/// not valid or does not start.
pub async fn start(g: sluicegate_core::GraphBuilder) -> sluicegate_core::RunningGraph {
    within(
        LIMIT,
        "the graph to start",
        g.build().expect("valid graph").start(),
    )
    .await
    .expect("starts")
}

/// What a store graph run left behind.
pub struct Run {
    pub acks: AckLog,
    pub dead: DeadLog,
    pub report: sluicegate_core::Report,
}

/// Runs `items` through `stage` in batches of `batch` (deadline `wait`),
/// with a dead-letter route if `dlq`.
pub async fn run_store<T: serde::Serialize + Send + 'static>(
    items: Vec<T>,
    stage: sluicegate_stages::store::StoreStage<T>,
    batch: usize,
    wait: Duration,
    dlq: bool,
) -> Run {
    let acks = AckLog::new();
    let dead = DeadLog::default();
    let mut g = sluicegate_core::Graph::builder("store-test");
    if dlq {
        g.dead_letters(sluicegate_core::StageSpec::new("dlq", dead.clone()));
    }
    g.source(
        "src",
        sluicegate_core::testing::VecSource::new(items, acks.clone()),
    )
    .to_batch(sluicegate_core::BatchSpec::new(
        "store",
        stage,
        sluicegate_core::BatchConfig::new(batch, wait),
    ));
    let running = start(g).await;
    let report = within(LIMIT, "the store graph to finish", running.wait()).await;
    Run { acks, dead, report }
}

/// A store graph started by [`start_phased`]: its source has emitted the
/// first records and waits for `go` to emit the rest.
pub struct Phased {
    pub acks: AckLog,
    pub go: oneshot::Sender<()>,
    pub running: sluicegate_core::RunningGraph,
}

/// Starts `first` and then (once [`Phased::go`] is sent) `then` through
/// `stage` in batches of `config`, each outcome also to `also` if set.
pub async fn start_phased<T: serde::Serialize + Send + 'static>(
    first: Vec<T>,
    then: Vec<T>,
    stage: sluicegate_stages::store::StoreStage<T>,
    config: sluicegate_core::BatchConfig<T>,
    also: Option<Arc<dyn AckReceiver>>,
) -> Phased {
    let acks = AckLog::new();
    let (go, go_rx) = oneshot::channel();
    let mut g = sluicegate_core::Graph::builder("store-phased");
    g.source(
        "src",
        PhasedSource {
            first,
            then,
            go: go_rx,
            acks: acks.clone(),
            also,
        },
    )
    .to_batch(sluicegate_core::BatchSpec::new("store", stage, config));
    let running = start(g).await;
    Phased { acks, go, running }
}

/// `n` JSON records `{"n": i, "amount": i}`.
pub fn records(n: i64) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| serde_json::json!({"n": i, "amount": i}))
        .collect()
}
