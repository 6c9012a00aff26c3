//! The SQLite store against a real SQLite database file: exactly once under
//! replays, acknowledgements only after commit, a failed commit, a rejected
//! row, busy retries, adaptive batching, unreachable paths, keys.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    LIMIT, PhasedSource, id, ids, records, run_store, sqlite_ids, unique_table, wait_until,
};
use serde_json::{Value, json};
use sluicegate_core::testing::{AckLog, within};
use sluicegate_core::{
    AckReceiver, BatchConfig, BatchSpec, BatchStage, FailureKind, Graph, GraphError, Origin,
    Outcome,
};
use sluicegate_stages::store::{
    RetryPolicy, Row, SqliteConfig, SqliteStore, Store, StoreError, StoreStage, Written,
};

const HOUR: Duration = Duration::from_secs(3600);

struct Db {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn db() -> Db {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    Db { _dir: dir, path }
}

async fn open(db: &Db, table: &str) -> Arc<dyn Store> {
    Arc::new(
        within(LIMIT, "opening SQLite", SqliteStore::open(&db.path, table))
            .await
            .expect("opens"),
    )
}

/// A store that waits at most 10 ms for a lock (so a held lock shows up as
/// transient errors quickly).
async fn open_impatient(db: &Db, table: &str) -> Arc<dyn Store> {
    let mut config = SqliteConfig::new(&db.path, table);
    config.busy_timeout = Duration::from_millis(10);
    Arc::new(
        within(LIMIT, "opening SQLite", SqliteStore::open_with(config))
            .await
            .expect("opens"),
    )
}

async fn count(store: &Arc<dyn Store>) -> u64 {
    within(LIMIT, "counting rows", store.count())
        .await
        .expect("count")
}

fn row(id: &str) -> Row {
    Row {
        id: id.into(),
        topic: None,
        partition: None,
        offset: None,
        payload: "{}".into(),
    }
}

/// Runs SQL on its own connection to the file (the test's view of the database).
fn exec(db: &Db, sql: &str) {
    rusqlite::Connection::open(&db.path)
        .expect("open")
        .execute_batch(sql)
        .expect("sql");
}

#[tokio::test]
async fn stores_each_record_exactly_once_even_when_written_twice() {
    let db = db();
    let table = unique_table("once");
    let store = open(&db, &table).await;
    assert_eq!(count(&store).await, 0, "the table is created, empty");

    let first = StoreStage::new(store.clone());
    let stats = first.stats();
    let run = run_store(records(1000), first, 100, HOUR, true).await;
    assert!(run.report.is_clean(), "{:?}", run.report);
    run.acks.assert_each_once(1000);
    assert_eq!(run.acks.delivered(), 1000);
    assert_eq!((stats.inserted(), stats.commits()), (1000, 10));

    // The same records from the same origins again: a replay after a crash.
    let again = StoreStage::new(store.clone());
    let stats = again.stats();
    let run = run_store(records(1000), again, 100, HOUR, true).await;
    assert!(run.report.is_clean(), "{:?}", run.report);
    assert_eq!(run.acks.delivered(), 1000, "replayed rows are acknowledged");
    assert_eq!((stats.inserted(), stats.duplicates()), (0, 1000));
    assert_eq!(count(&store).await, 1000);
    assert_eq!(sqlite_ids(&db.path, &table), ids(0..1000));

    // The same batch written twice directly, with a key repeated inside it.
    let batch = [row("x1"), row("x2"), row("x1")];
    let w1 = within(LIMIT, "first write", store.write(&batch))
        .await
        .expect("written");
    let w2 = within(LIMIT, "second write", store.write(&batch))
        .await
        .expect("written");
    let w1: Vec<_> = w1.into_iter().map(|r| r.expect("row ok")).collect();
    let w2: Vec<_> = w2.into_iter().map(|r| r.expect("row ok")).collect();
    assert_eq!(
        w1,
        [Written::Inserted, Written::Inserted, Written::Duplicate]
    );
    assert_eq!(w2, [Written::Duplicate; 3]);
    assert_eq!(count(&store).await, 1002);
}

/// On every delivered acknowledgement, looks for the row from a separate
/// connection: it must already be committed.
struct SeesCommitted {
    conn: Mutex<rusqlite::Connection>,
    table: String,
    seen: Mutex<Vec<(i64, bool)>>,
}

impl AckReceiver for SeesCommitted {
    fn on_ack(&self, origin: &Origin, outcome: Outcome) {
        if !outcome.is_delivered() {
            return;
        }
        let offset = origin.offset.unwrap_or(-1);
        let visible: i64 = self
            .conn
            .lock()
            .expect("lock")
            .query_row(
                &format!("SELECT count(*) FROM \"{}\" WHERE id = ?1", self.table),
                [id(offset)],
                |r| r.get(0),
            )
            .expect("query");
        self.seen.lock().expect("lock").push((offset, visible == 1));
    }
}

#[tokio::test]
async fn acks_fire_only_after_the_transaction_commits() {
    let db = db();
    let table = unique_table("after_commit");
    let store = open_impatient(&db, &table).await;
    let checker = Arc::new(SeesCommitted {
        conn: Mutex::new(rusqlite::Connection::open(&db.path).expect("reader")),
        table: table.clone(),
        seen: Mutex::new(Vec::new()),
    });
    // Another connection holds the write lock: the store's transaction cannot begin.
    let holder = rusqlite::Connection::open(&db.path).expect("holder");
    holder.execute_batch("BEGIN IMMEDIATE").expect("lock");

    let stage = StoreStage::new(store.clone()).retry(RetryPolicy::new(
        10_000,
        Duration::from_millis(2),
        Duration::from_millis(10),
    ));
    let stats = stage.stats();
    let acks = AckLog::new();
    let (_go, go) = tokio::sync::oneshot::channel();
    let mut g = Graph::builder("after-commit");
    g.source(
        "src",
        PhasedSource {
            first: records(50),
            then: Vec::new(),
            go,
            acks: acks.clone(),
            also: Some(checker.clone() as Arc<dyn AckReceiver>),
        },
    )
    .to_batch(BatchSpec::new("store", stage, BatchConfig::new(50, HOUR)));
    let running = g.build().expect("valid").start().await.expect("starts");
    drop(_go);

    wait_until("the store to retry against the held lock", || {
        stats.retries() >= 3
    })
    .await;
    assert_eq!(acks.resolved(), 0, "nothing acknowledged before the commit");
    assert_eq!(stats.commits(), 0);
    assert!(sqlite_ids(&db.path, &table).is_empty());

    holder.execute_batch("ROLLBACK").expect("release");
    let report = within(LIMIT, "the graph", running.wait()).await;
    assert!(report.is_clean(), "{report:?}");
    acks.assert_each_once(50);
    assert_eq!(acks.delivered(), 50);
    assert_eq!(stats.commits(), 1);
    let seen = checker.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 50);
    assert!(
        seen.iter().all(|(_, visible)| *visible),
        "an ack fired before its row was visible: {seen:?}"
    );
}

#[tokio::test]
async fn a_failed_commit_fails_every_ack_and_stores_nothing() {
    let db = db();
    let table = unique_table("bad_commit");
    // A deferred foreign key is checked at COMMIT, which then fails.
    exec(
        &db,
        &format!(
            "CREATE TABLE \"{table}_parent\" (id INTEGER PRIMARY KEY);
             CREATE TABLE \"{table}\" (
                id TEXT PRIMARY KEY NOT NULL, topic TEXT, \"partition\" INTEGER,
                \"offset\" INTEGER, payload TEXT NOT NULL, stored_at TEXT,
                parent INTEGER NOT NULL DEFAULT 1
                    REFERENCES \"{table}_parent\"(id) DEFERRABLE INITIALLY DEFERRED)"
        ),
    );
    let store = open(&db, &table).await;
    let stage = StoreStage::new(store.clone());
    let stats = stage.stats();
    let run = run_store(records(20), stage, 20, HOUR, false).await;
    assert!(run.report.is_clean(), "{:?}", run.report);
    run.acks.assert_each_once(20);
    assert_eq!(run.acks.failed(), 20, "no ack resolves as delivered");
    for (offset, outcomes) in run.acks.outcomes() {
        match &outcomes[0] {
            Outcome::Failed(e) => {
                assert_eq!(e.kind(), FailureKind::Error);
                assert_eq!(
                    e.message(),
                    "commit failed: [ConstraintViolation] FOREIGN KEY constraint failed",
                    "offset {offset}"
                );
            }
            other => panic!("offset {offset} resolved as {other}"),
        }
    }
    assert_eq!(count(&store).await, 0);
    assert_eq!(
        (stats.commits(), stats.batches_failed(), stats.retries()),
        (0, 1, 0)
    );
}

#[tokio::test]
async fn a_row_the_database_rejects_fails_alone() {
    let db = db();
    let table = unique_table("bad_row");
    exec(
        &db,
        &format!(
            "CREATE TABLE \"{table}\" (
                id TEXT PRIMARY KEY NOT NULL, topic TEXT, \"partition\" INTEGER,
                \"offset\" INTEGER, payload TEXT NOT NULL, stored_at TEXT,
                CONSTRAINT amount_not_negative CHECK (json_extract(payload, '$.amount') >= 0))"
        ),
    );
    let store = open(&db, &table).await;
    let items: Vec<Value> = (0..20)
        .map(|i| json!({"n": i, "amount": if i == 5 || i == 13 { -1 } else { i }}))
        .collect();
    let stage = StoreStage::new(store.clone());
    let stats = stage.stats();
    let run = run_store(items, stage, 20, HOUR, true).await;
    assert!(run.report.is_clean(), "{:?}", run.report);
    run.acks.assert_each_once(20);
    assert_eq!((run.acks.delivered(), run.acks.dead_lettered()), (18, 2));
    let dead = run.dead.items();
    assert_eq!(
        dead.iter()
            .map(|d| (d.offset, d.stage.as_str(), d.message.as_str()))
            .collect::<Vec<_>>(),
        [
            (
                5,
                "store",
                r#"row "/0/5" rejected: [ConstraintViolation] CHECK constraint failed: amount_not_negative"#
            ),
            (
                13,
                "store",
                r#"row "/0/13" rejected: [ConstraintViolation] CHECK constraint failed: amount_not_negative"#
            ),
        ]
    );
    assert_eq!(
        sqlite_ids(&db.path, &table),
        ids((0..20).filter(|i| *i != 5 && *i != 13))
    );
    assert_eq!((stats.commits(), stats.rows_failed()), (1, 2));
}

#[tokio::test]
async fn a_busy_database_is_retried_then_dead_lettered_or_stops_the_graph() {
    let db = db();
    let table = unique_table("busy");
    let store = open_impatient(&db, &table).await;
    let holder = rusqlite::Connection::open(&db.path).expect("holder");
    holder.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let policy = RetryPolicy::new(3, Duration::from_millis(1), Duration::from_millis(1));

    // Out of retries: the batch goes to the dead-letter route with the reason.
    let stage = StoreStage::new(store.clone()).retry(policy);
    let stats = stage.stats();
    let run = run_store(records(5), stage, 5, HOUR, true).await;
    assert!(run.report.is_clean(), "{:?}", run.report);
    assert_eq!(run.acks.dead_lettered(), 5);
    for d in run.dead.items() {
        assert_eq!(
            d.message,
            "gave up after 3 attempts: begin failed (transient): [DatabaseBusy] database is locked"
        );
    }
    assert_eq!((stats.retries(), stats.batches_failed()), (2, 1));

    // With stop_when_unavailable, running out of retries stops the graph and
    // the records resolve as failed (a Kafka source would not commit them).
    let stage = StoreStage::new(store.clone())
        .retry(policy)
        .stop_when_unavailable(true);
    let run = run_store(records(5), stage, 5, HOUR, true).await;
    assert_eq!(run.report.errors.len(), 1, "{:?}", run.report);
    assert!(
        matches!(&run.report.errors[0], GraphError::Fatal { stage, .. } if stage == "store"),
        "{:?}",
        run.report.errors
    );
    assert_eq!(run.acks.failed(), 5);
    assert_eq!(run.acks.dead_lettered(), 0);
    assert!(run.dead.items().is_empty());
    holder.execute_batch("ROLLBACK").expect("release");
    assert_eq!(count(&store).await, 0);
}

#[tokio::test]
async fn a_quiet_stream_flushes_at_the_deadline() {
    let db = db();
    let table = unique_table("deadline");
    let store = open(&db, &table).await;
    let stage = StoreStage::new(store.clone());
    let stats = stage.stats();
    let acks = AckLog::new();
    let (go_tx, go) = tokio::sync::oneshot::channel();
    let mut g = Graph::builder("deadline");
    g.source(
        "src",
        PhasedSource {
            first: records(5),
            then: records(300).split_off(5),
            go,
            acks: acks.clone(),
            also: None,
        },
    )
    .to_batch(BatchSpec::new(
        "store",
        stage,
        BatchConfig::new(100, Duration::from_millis(50)),
    ));
    let running = g.build().expect("valid").start().await.expect("starts");
    // Five records and then nothing: the batch closes at the deadline, not at 100.
    within(LIMIT, "the first five acks", acks.wait_for(5)).await;
    assert_eq!(acks.delivered(), 5);
    assert_eq!((stats.batches(), stats.commits()), (1, 1));
    assert_eq!(count(&store).await, 5);
    go_tx.send(()).expect("source waiting");
    let report = within(LIMIT, "the graph", running.wait()).await;
    assert!(report.is_clean(), "{report:?}");
    acks.assert_each_once(300);
    assert_eq!(stats.inserted(), 300);
    // The rest came in batches of at most 100.
    assert!(stats.commits() >= 4, "{} commits", stats.commits());
    assert_eq!(count(&store).await, 300);
}

#[tokio::test]
async fn an_unusable_path_is_a_clear_error_naming_it() {
    let err = SqliteStore::open("/nonexistent-dir/sub/x.db", "t")
        .await
        .expect_err("cannot open");
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "cannot connect to SQLite at /nonexistent-dir/sub/x.db"
    );
    let source = std::error::Error::source(&err).map(ToString::to_string);
    assert_eq!(
        source.as_deref(),
        Some("[CannotOpen] unable to open database file: /nonexistent-dir/sub/x.db")
    );

    let db = db();
    let err = SqliteStore::open(&db.path, "orders; drop table x")
        .await
        .expect_err("bad table name");
    assert!(matches!(err, StoreError::Config(_)), "{err}");
}

#[tokio::test]
async fn open_picks_the_backend_from_the_url() {
    let db = db();
    let url = format!("sqlite://{}", db.path.display());
    let store = within(
        LIMIT,
        "open",
        sluicegate_stages::store::open(Some(&url), "t"),
    )
    .await
    .expect("opens");
    assert!(
        store.describe().starts_with("SQLite "),
        "{}",
        store.describe()
    );
    let err = sluicegate_stages::store::open(Some("mysql://root:pw@localhost/x"), "t")
        .await
        .err()
        .expect("unknown scheme");
    assert_eq!(
        err.to_string(),
        "invalid store configuration: unknown database \"mysql://root:***@localhost/x\": expected postgres://..., host=... or sqlite://PATH (or none for SQLite at sluicegate.db)"
    );
}

#[tokio::test]
async fn keys_come_from_the_origin_or_a_key_function() {
    let db = db();
    let table = unique_table("keys");
    let store = open(&db, &table).await;
    let no_offset = Origin::default();
    let kafka = Origin {
        topic: Some("orders".into()),
        ..Origin::at(3, 42)
    };

    // Origin keys; a record without partition and offset and no fallback fails alone.
    let stage = StoreStage::<Value>::new(store.clone());
    let out = within(
        LIMIT,
        "a batch",
        stage.process_batch(
            vec![json!({"order": "a"}), json!({"order": "b"})],
            &[&kafka, &no_offset],
        ),
    )
    .await
    .expect("batch");
    assert!(out[0].is_ok());
    assert!(matches!(out[1], Err(StoreError::NoKey)), "{:?}", out[1]);

    // A fallback key for records without an offset.
    let stage = StoreStage::<Value>::new(store.clone())
        .key_fallback(|v, _| v["order"].as_str().map(str::to_string));
    let out = within(
        LIMIT,
        "a batch",
        stage.process_batch(vec![json!({"order": "b"})], &[&no_offset]),
    )
    .await
    .expect("batch");
    assert!(out[0].is_ok());

    // A business key for everything: the same order from two offsets is stored once.
    let stage = StoreStage::<Value>::new(store.clone())
        .key_by(|v, _| v["order"].as_str().map(str::to_string));
    let stats = stage.stats();
    let out = within(
        LIMIT,
        "a batch",
        stage.process_batch(
            vec![json!({"order": "c"}), json!({"order": "c"})],
            &[&Origin::at(0, 1), &Origin::at(0, 2)],
        ),
    )
    .await
    .expect("batch");
    assert!(out.iter().all(Result::is_ok));
    assert_eq!((stats.inserted(), stats.duplicates()), (1, 1));
    assert_eq!(
        sqlite_ids(&db.path, &table),
        ["key:b", "key:c", "orders/3/42"]
    );
}

/// `forwarding()`: the store as a step in a chain. The stage after it sees
/// each value only once its row is committed (it checks the database on
/// its own connection for every value it gets), in input order; a rejected
/// row is dead-lettered and not forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarding_store_hands_on_only_committed_rows_in_order() {
    let db = db();
    let table = unique_table("forward");
    exec(
        &db,
        &format!(
            "CREATE TABLE \"{table}\" (
                id TEXT PRIMARY KEY NOT NULL, topic TEXT, \"partition\" INTEGER,
                \"offset\" INTEGER, payload TEXT NOT NULL, stored_at TEXT,
                CONSTRAINT amount_not_negative CHECK (json_extract(payload, '$.amount') >= 0))"
        ),
    );
    let store = open(&db, &table).await;
    let items: Vec<Value> = (0..50)
        .map(|i| json!({"n": i, "amount": if i % 10 == 7 { -1 } else { i }}))
        .collect();
    let stage = StoreStage::new(store).forwarding();
    let stats = stage.stats();
    // What the next stage saw, and whether its row was in the table then.
    let seen: Arc<Mutex<Vec<(i64, bool)>>> = Arc::default();
    let check = {
        let seen = seen.clone();
        let path = db.path.clone();
        let table = table.clone();
        sluicegate_core::map(move |v: Value| {
            let n = v["n"].as_i64().expect("n");
            let stored: i64 = rusqlite::Connection::open(&path)
                .expect("open")
                .query_row(
                    &format!("SELECT count(*) FROM \"{table}\" WHERE id = ?1"),
                    [format!("/0/{n}")],
                    |r| r.get(0),
                )
                .expect("query");
            seen.lock().expect("lock").push((n, stored == 1));
        })
    };
    let acks = AckLog::new();
    let dead = common::DeadLog::default();
    let mut g = Graph::builder("forward");
    g.dead_letters(sluicegate_core::StageSpec::new("dlq", dead.clone()));
    g.source(
        "src",
        sluicegate_core::testing::VecSource::new(items, acks.clone()),
    )
    .via_batch(BatchSpec::new(
        "store",
        stage,
        BatchConfig::new(8, Duration::from_millis(5)),
    ))
    .to(sluicegate_core::StageSpec::new("check", check));
    let running = within(LIMIT, "start", g.build().expect("graph").start())
        .await
        .expect("starts");
    let report = within(LIMIT, "the graph to finish", running.wait()).await;
    assert!(report.is_clean(), "{report:?}");
    acks.assert_each_once(50);
    let rejected: Vec<i64> = (0..50).filter(|i| i % 10 == 7).collect();
    assert_eq!(
        (acks.delivered(), acks.dead_lettered()),
        (45, rejected.len())
    );
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        (0..50)
            .filter(|i| i % 10 != 7)
            .map(|n| (n, true))
            .collect::<Vec<_>>(),
        "each forwarded value was committed first, in input order"
    );
    let mut dead_offsets: Vec<i64> = dead.items().iter().map(|d| d.offset).collect();
    dead_offsets.sort_unstable();
    assert_eq!(dead_offsets, rejected);
    assert_eq!(stats.inserted(), 45);
}

/// The consumer-offsets contract (tests/common: `offsets_contract`) on SQLite.
#[tokio::test]
async fn consumer_offsets_commit_with_the_rows() {
    let db = db();
    let (plain, failing, refusing) = (
        unique_table("offs_plain"),
        unique_table("offs_failing"),
        unique_table("offs_refusing"),
    );
    exec(
        &db,
        &format!(
            "CREATE TABLE \"{failing}_parent\" (id INTEGER PRIMARY KEY);
             CREATE TABLE \"{failing}\" (
                id TEXT PRIMARY KEY NOT NULL, topic TEXT, \"partition\" INTEGER,
                \"offset\" INTEGER, payload TEXT NOT NULL, stored_at TEXT,
                parent INTEGER NOT NULL DEFAULT 1
                    REFERENCES \"{failing}_parent\"(id) DEFERRABLE INITIALLY DEFERRED);
             CREATE TABLE \"{refusing}\" (
                id TEXT PRIMARY KEY NOT NULL, topic TEXT, \"partition\" INTEGER,
                \"offset\" INTEGER, payload TEXT NOT NULL, stored_at TEXT,
                CHECK (json_extract(payload, '$.amount') >= 0))"
        ),
    );
    common::offsets_contract(
        &*open(&db, &plain).await,
        &*open(&db, &failing).await,
        &*open(&db, &refusing).await,
        "g",
    )
    .await;
}
