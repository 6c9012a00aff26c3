//! Helpers shared by the stages integration tests: database access with
//! unique tables, a dead-letter log, a phased source, timeouts.
#![allow(dead_code, unreachable_pub)]

pub mod corpus;

use std::future::Future;
use std::path::PathBuf;
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

/// Where the tests find PostgreSQL (`SLUICEGATE_TEST_PG` overrides it).
pub fn pg_url() -> String {
    std::env::var("SLUICEGATE_TEST_PG")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_string())
}

/// A connection for the test's own queries. A missing server fails the
/// test (the test command starts PostgreSQL; nothing skips).
pub async fn pg_admin() -> tokio_postgres::Client {
    let url = pg_url();
    match within(
        LIMIT,
        "connecting to PostgreSQL",
        tokio_postgres::connect(&url, tokio_postgres::NoTls),
    )
    .await
    {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            client
        }
        Err(e) => panic!(
            "PostgreSQL unreachable at {url}: {e}; run scripts/postgres-up (the test command does)"
        ),
    }
}

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

/// The store's ids in `table` on PostgreSQL, sorted.
pub async fn pg_ids(admin: &tokio_postgres::Client, table: &str) -> Vec<String> {
    let rows = within(
        LIMIT,
        "listing stored ids",
        admin.query(&format!("SELECT id FROM \"{table}\" ORDER BY id"), &[]),
    )
    .await
    .expect("select ids");
    rows.iter().map(|r| r.get::<_, String>(0)).collect()
}

/// Drops `tables` on PostgreSQL (best effort, at the end of a passing test).
pub async fn pg_drop(admin: &tokio_postgres::Client, tables: &[&str]) {
    for t in tables {
        let _ = within(
            LIMIT,
            "dropping a test table",
            admin.batch_execute(&format!("DROP TABLE IF EXISTS \"{t}\" CASCADE")),
        )
        .await;
    }
}

/// The store's ids in `table` of the SQLite file at `path`, sorted.
pub fn sqlite_ids(path: &PathBuf, table: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).expect("open sqlite for reading");
    let mut stmt = conn
        .prepare(&format!("SELECT id FROM \"{table}\" ORDER BY id"))
        .expect("prepare");
    stmt.query_map([], |r| r.get::<_, String>(0))
        .expect("query")
        .collect::<Result<Vec<_>, _>>()
        .expect("rows")
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

/// The PostgreSQL URL with an `application_name`, so a test can find the
/// store's backend in `pg_stat_activity`.
pub fn pg_url_named(app: &str) -> String {
    let url = pg_url();
    if url.contains("://") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}application_name={app}")
    } else {
        format!("{url} application_name={app}")
    }
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
    let running = within(
        LIMIT,
        "the graph to start",
        g.build().expect("valid graph").start(),
    )
    .await
    .expect("starts");
    let report = within(LIMIT, "the store graph to finish", running.wait()).await;
    Run { acks, dead, report }
}

/// `n` JSON records `{"n": i, "amount": i}`.
pub fn records(n: i64) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| serde_json::json!({"n": i, "amount": i}))
        .collect()
}

/// A row at origin `t`/`partition`/`offset` with a JSON payload whose
/// `amount` is `amount` (a table can refuse negative ones).
pub fn offset_row(partition: i32, offset: i64, amount: i64) -> sluicegate_stages::store::Row {
    sluicegate_stages::store::Row {
        id: format!("t/{partition}/{offset}"),
        topic: Some("t".into()),
        partition: Some(partition),
        offset: Some(offset),
        payload: serde_json::json!({ "amount": amount }).to_string(),
    }
}

/// The consumer-offsets contract of [`Store::write_with_offsets`] and
/// [`Store::read_offsets`], one suite for every backend:
///
/// - `plain`: a table that takes every row;
/// - `failing`: a table whose commit fails (a deferred constraint);
/// - `refusing`: a table that refuses rows with a negative `amount`.
///
/// All three in one database, so they share its offsets table. `group` is
/// unique to the caller's run.
pub async fn offsets_contract(
    plain: &dyn sluicegate_stages::store::Store,
    failing: &dyn sluicegate_stages::store::Store,
    refusing: &dyn sluicegate_stages::store::Store,
    group: &str,
) {
    use sluicegate_stages::store::Written;
    async fn read(
        store: &dyn sluicegate_stages::store::Store,
        group: String,
    ) -> std::collections::BTreeMap<i32, i64> {
        within(LIMIT, "reading offsets", store.read_offsets(&group, "t"))
            .await
            .expect("offsets read")
    }
    let t = |p: i32, o: i64| ("t".to_string(), p, o);
    assert!(
        read(plain, group.into()).await.is_empty(),
        "nothing stored yet"
    );

    // Rows and offsets in one transaction.
    let rows: Vec<_> = (0..3).map(|o| offset_row(0, o, 1)).collect();
    let written = within(
        LIMIT,
        "a batch with offsets",
        plain.write_with_offsets(&rows, group, &[t(0, 3)]),
    )
    .await
    .expect("written");
    assert!(
        written.iter().all(|r| matches!(r, Ok(Written::Inserted))),
        "{written:?}"
    );
    assert_eq!(read(plain, group.into()).await, [(0, 3)].into());

    // Offsets alone; an offset never moves back; groups are apart.
    within(
        LIMIT,
        "offsets alone",
        plain.write_with_offsets(&[], group, &[t(0, 2), t(1, 5)]),
    )
    .await
    .expect("written");
    assert_eq!(read(plain, group.into()).await, [(0, 3), (1, 5)].into());
    assert!(read(plain, format!("{group}-other")).await.is_empty());

    // A batch whose commit fails commits its offsets no more than its rows.
    let failed = within(
        LIMIT,
        "a batch whose commit fails",
        failing.write_with_offsets(&[offset_row(0, 3, 1)], group, &[t(0, 9)]),
    )
    .await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(
        read(failing, group.into()).await,
        [(0, 3), (1, 5)].into(),
        "the failed batch moved no offset"
    );

    // A refused row holds its partition's offset (it is not finished: it
    // goes to the dead-letter route after the commit).
    let rows = vec![
        offset_row(0, 10, 1),
        offset_row(0, 11, -1),
        offset_row(0, 12, 1),
    ];
    let written = within(
        LIMIT,
        "a batch with a refused row",
        refusing.write_with_offsets(&rows, group, &[t(0, 13)]),
    )
    .await
    .expect("written");
    assert!(matches!(written[0], Ok(Written::Inserted)), "{written:?}");
    assert!(written[1].is_err(), "{written:?}");
    assert!(matches!(written[2], Ok(Written::Inserted)), "{written:?}");
    assert_eq!(
        read(refusing, group.into()).await,
        [(0, 11), (1, 5)].into(),
        "the offset stops at the refused row"
    );
}
