//! The PostgreSQL store against the real server (127.0.0.1:5432, database
//! `test`; `SLUICEGATE_TEST_PG` overrides): exactly once under replays,
//! acknowledgements only after commit, a failed commit, rejected rows, a
//! connection killed mid-batch, an unreachable server.
//!
//! Without a server these tests fail, never skip (the test command starts
//! one with scripts/postgres-up).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    LIMIT, PhasedSource, id, ids, pg_admin, pg_drop, pg_ids, pg_url_named, records, run_store,
    unique_table, wait_until,
};
use serde_json::{Value, json};
use sluicegate_core::testing::{AckLog, within};
use sluicegate_core::{BatchConfig, BatchSpec, FailureKind, Graph, Outcome};
use sluicegate_stages::store::{PostgresStore, Row, Store, StoreError, StoreStage, Written};

const HOUR: Duration = Duration::from_secs(3600);

async fn connect(table: &str) -> Arc<PostgresStore> {
    Arc::new(
        within(
            LIMIT,
            "connecting the store",
            PostgresStore::connect(&pg_url_named(table), table),
        )
        .await
        .expect("connects"),
    )
}

async fn count(store: &dyn Store) -> u64 {
    within(LIMIT, "counting rows", store.count())
        .await
        .expect("count")
}

async fn exec(admin: &tokio_postgres::Client, sql: &str) {
    within(LIMIT, "admin SQL", admin.batch_execute(sql))
        .await
        .expect("admin SQL");
}

/// The pid of the store's backend once it waits on a lock.
async fn waiting_backend(watch: &tokio_postgres::Client, app: &str) -> i32 {
    within(
        LIMIT,
        "the store's insert to wait on the table lock",
        async {
            loop {
                let row = watch
                    .query_opt(
                        "SELECT pid FROM pg_stat_activity \
                     WHERE application_name = $1 AND wait_event_type = 'Lock'",
                        &[&app],
                    )
                    .await
                    .expect("pg_stat_activity");
                if let Some(row) = row {
                    return row.get::<_, i32>(0);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        },
    )
    .await
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

#[tokio::test]
async fn stores_each_record_exactly_once_even_when_written_twice() {
    let admin = pg_admin().await;
    let table = unique_table("once");
    let store = connect(&table).await;
    assert_eq!(count(&*store).await, 0, "the table is created, empty");

    let first = StoreStage::new(store.clone() as Arc<dyn Store>);
    let stats = first.stats();
    let run = run_store(records(1000), first, 100, HOUR, true).await;
    assert!(run.report.is_clean(), "{:?}", run.report);
    run.acks.assert_each_once(1000);
    assert_eq!(run.acks.delivered(), 1000);
    assert_eq!((stats.inserted(), stats.commits()), (1000, 10));

    // A replay of the same origins writes nothing new.
    let again = StoreStage::new(store.clone() as Arc<dyn Store>);
    let stats = again.stats();
    let run = run_store(records(1000), again, 100, HOUR, true).await;
    assert!(run.report.is_clean(), "{:?}", run.report);
    assert_eq!(run.acks.delivered(), 1000);
    assert_eq!((stats.inserted(), stats.duplicates()), (0, 1000));
    assert_eq!(pg_ids(&admin, &table).await, ids(0..1000));

    // The same batch written twice directly, a key repeated inside it.
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
    assert_eq!(count(&*store).await, 1002);
    assert_eq!(store.connections(), 1);
    pg_drop(&admin, &[&table]).await;
}

#[tokio::test]
async fn acks_fire_only_after_the_transaction_commits() {
    let admin = pg_admin().await;
    let watch = pg_admin().await;
    let table = unique_table("after_commit");
    let store = connect(&table).await;
    // Hold a lock that blocks inserts: the store's transaction waits inside its INSERT.
    exec(
        &admin,
        &format!("BEGIN; LOCK TABLE \"{table}\" IN EXCLUSIVE MODE"),
    )
    .await;

    let stage = StoreStage::new(store.clone() as Arc<dyn Store>);
    let stats = stage.stats();
    let acks = AckLog::new();
    let mut g = Graph::builder("after-commit");
    g.source(
        "src",
        sluicegate_core::testing::VecSource::new(records(50), acks.clone()),
    )
    .to_batch(BatchSpec::new("store", stage, BatchConfig::new(50, HOUR)));
    let running = g.build().expect("valid").start().await.expect("starts");

    waiting_backend(&watch, &table).await;
    assert_eq!(acks.resolved(), 0, "nothing acknowledged before the commit");
    assert_eq!(stats.commits(), 0);

    exec(&admin, "COMMIT").await;
    let report = within(LIMIT, "the graph", running.wait()).await;
    assert!(report.is_clean(), "{report:?}");
    acks.assert_each_once(50);
    assert_eq!(acks.delivered(), 50);
    assert_eq!(stats.commits(), 1);
    assert_eq!(pg_ids(&admin, &table).await, ids(0..50));
    pg_drop(&admin, &[&table]).await;
}

#[tokio::test]
async fn a_failed_commit_fails_every_ack_and_stores_nothing() {
    let admin = pg_admin().await;
    let table = unique_table("bad_commit");
    // A deferred foreign key is checked at COMMIT, which then fails.
    exec(
        &admin,
        &format!(
            "CREATE TABLE \"{table}_parent\" (id INT PRIMARY KEY);
             CREATE TABLE \"{table}\" (
                id TEXT PRIMARY KEY, topic TEXT, \"partition\" INTEGER, \"offset\" BIGINT,
                payload JSONB NOT NULL, stored_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                parent INT NOT NULL DEFAULT 1
                    CONSTRAINT parent_exists REFERENCES \"{table}_parent\"(id)
                    DEFERRABLE INITIALLY DEFERRED)"
        ),
    )
    .await;
    let store = connect(&table).await;
    let stage = StoreStage::new(store.clone() as Arc<dyn Store>);
    let stats = stage.stats();
    let run = run_store(records(20), stage, 20, HOUR, false).await;
    assert!(run.report.is_clean(), "{:?}", run.report);
    run.acks.assert_each_once(20);
    assert_eq!(run.acks.failed(), 20, "no ack resolves as delivered");
    let want = format!(
        "commit failed: [23503] insert or update on table \"{table}\" violates foreign key constraint \"parent_exists\""
    );
    for (offset, outcomes) in run.acks.outcomes() {
        match &outcomes[0] {
            Outcome::Failed(e) => {
                assert_eq!(e.kind(), FailureKind::Error);
                assert_eq!(e.message(), want, "offset {offset}");
            }
            other => panic!("offset {offset} resolved as {other}"),
        }
    }
    assert_eq!(count(&*store).await, 0);
    assert_eq!(
        (stats.commits(), stats.batches_failed(), stats.retries()),
        (0, 1, 0)
    );
    pg_drop(&admin, &[&table, &format!("{table}_parent")]).await;
}

#[tokio::test]
async fn rows_the_database_rejects_fail_alone() {
    let admin = pg_admin().await;
    let table = unique_table("bad_row");
    exec(
        &admin,
        &format!(
            "CREATE TABLE \"{table}\" (
                id TEXT PRIMARY KEY, topic TEXT, \"partition\" INTEGER, \"offset\" BIGINT,
                payload JSONB NOT NULL, stored_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                CONSTRAINT amount_not_negative CHECK ((payload->>'amount')::numeric >= 0))"
        ),
    )
    .await;
    let store = connect(&table).await;
    // Offsets 5 and 13 break the CHECK constraint; offset 9 holds a NUL
    // character, which jsonb cannot store.
    let items: Vec<Value> = (0..20)
        .map(|i| match i {
            5 | 13 => json!({"n": i, "amount": -1}),
            9 => json!({"n": i, "amount": 1, "note": "a\u{0}b"}),
            _ => json!({"n": i, "amount": i}),
        })
        .collect();
    let stage = StoreStage::new(store.clone() as Arc<dyn Store>);
    let stats = stage.stats();
    let run = run_store(items, stage, 20, HOUR, true).await;
    assert!(run.report.is_clean(), "{:?}", run.report);
    run.acks.assert_each_once(20);
    assert_eq!((run.acks.delivered(), run.acks.dead_lettered()), (17, 3));
    let check = |o: i64| {
        format!(
            "row \"{}\" rejected: [23514] new row for relation \"{table}\" violates check constraint \"amount_not_negative\"",
            id(o)
        )
    };
    let dead: Vec<(i64, String)> = run
        .dead
        .items()
        .into_iter()
        .map(|d| {
            assert_eq!(d.stage, "store");
            (d.offset, d.message)
        })
        .collect();
    assert_eq!(
        dead,
        [
            (5, check(5)),
            (
                9,
                "row \"/0/9\" rejected: [22P05] unsupported Unicode escape sequence".to_string()
            ),
            (13, check(13)),
        ]
    );
    assert_eq!(
        pg_ids(&admin, &table).await,
        ids((0..20).filter(|i| ![5, 9, 13].contains(i)))
    );
    assert_eq!((stats.commits(), stats.rows_failed()), (1, 3));
    pg_drop(&admin, &[&table]).await;
}

#[tokio::test]
async fn a_connection_killed_mid_batch_is_retried_with_nothing_lost() {
    let admin = pg_admin().await;
    let watch = pg_admin().await;
    let table = unique_table("killed");
    let store = connect(&table).await;
    let stage = StoreStage::new(store.clone() as Arc<dyn Store>);
    let stats = stage.stats();
    let acks = AckLog::new();
    let (go_tx, go) = tokio::sync::oneshot::channel();
    let all = records(300);
    let mut g = Graph::builder("killed");
    g.source(
        "src",
        PhasedSource {
            first: all[..100].to_vec(),
            then: all[100..].to_vec(),
            go,
            acks: acks.clone(),
            also: None,
        },
    )
    .to_batch(BatchSpec::new(
        "store",
        stage,
        BatchConfig::new(100, Duration::from_millis(20)),
    ));
    let running = g.build().expect("valid").start().await.expect("starts");

    // The first 100 are committed before anything goes wrong.
    within(LIMIT, "the first batch's acks", acks.wait_for(100)).await;
    assert_eq!(acks.delivered(), 100);

    // The next batch blocks inside its INSERT; kill its connection there.
    exec(
        &admin,
        &format!("BEGIN; LOCK TABLE \"{table}\" IN EXCLUSIVE MODE"),
    )
    .await;
    go_tx.send(()).expect("source waiting");
    let pid = waiting_backend(&watch, &table).await;
    let killed: bool = within(
        LIMIT,
        "pg_terminate_backend",
        watch.query_one("SELECT pg_terminate_backend($1)", &[&pid]),
    )
    .await
    .expect("terminate")
    .get(0);
    assert!(killed);
    wait_until("the store to retry after the kill", || stats.retries() >= 1).await;
    exec(&admin, "COMMIT").await;

    let report = within(LIMIT, "the graph", running.wait()).await;
    assert!(report.is_clean(), "{report:?}");
    acks.assert_each_once(300);
    assert_eq!(
        acks.delivered(),
        300,
        "every record stored and acknowledged"
    );
    assert_eq!(
        pg_ids(&admin, &table).await,
        ids(0..300),
        "nothing lost, nothing twice"
    );
    assert_eq!(stats.inserted() + stats.duplicates(), 300);
    assert_eq!(stats.batches_failed(), 0);
    assert!(stats.retries() >= 1);
    assert_eq!(store.connections(), 2, "reconnected once");
    pg_drop(&admin, &[&table]).await;
}

#[tokio::test]
async fn a_serialization_failure_is_retried() {
    let admin = pg_admin().await;
    let watch = pg_admin().await;
    let table = unique_table("serial");
    // The store's transactions run SERIALIZABLE.
    let url = format!(
        "{} options='-c default_transaction_isolation=serializable'",
        pg_url_named(&table)
    );
    let store = Arc::new(
        within(
            LIMIT,
            "connecting the store",
            PostgresStore::connect(&url, &table),
        )
        .await
        .expect("connects"),
    );
    // Another transaction inserts the first record's key and holds it
    // uncommitted: the store's INSERT waits on it with its snapshot taken.
    exec(
        &admin,
        &format!(
            "BEGIN; INSERT INTO \"{table}\" (id, payload) VALUES ('{}', '{{}}')",
            id(0)
        ),
    )
    .await;
    let stage = StoreStage::new(store.clone() as Arc<dyn Store>);
    let stats = stage.stats();
    let acks = AckLog::new();
    let mut g = Graph::builder("serial");
    g.source(
        "src",
        sluicegate_core::testing::VecSource::new(records(3), acks.clone()),
    )
    .to_batch(BatchSpec::new("store", stage, BatchConfig::new(3, HOUR)));
    let running = g.build().expect("valid").start().await.expect("starts");
    waiting_backend(&watch, &table).await;
    // Committing it makes the store's insert conflict with a row its
    // snapshot cannot see: 40001, a serialization failure, retried.
    exec(&admin, "COMMIT").await;
    let report = within(LIMIT, "the graph", running.wait()).await;
    assert!(report.is_clean(), "{report:?}");
    acks.assert_each_once(3);
    assert_eq!(acks.delivered(), 3);
    assert_eq!(stats.retries(), 1, "one serialization failure, one retry");
    assert_eq!((stats.inserted(), stats.duplicates()), (2, 1));
    assert_eq!(pg_ids(&admin, &table).await, ids(0..3));
    assert_eq!(
        store.connections(),
        1,
        "a serialization failure keeps the connection"
    );
    pg_drop(&admin, &[&table]).await;
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error_naming_the_url_without_its_password() {
    let url = "postgres://app:hunter2@127.0.0.1:1/test?connect_timeout=5";
    let err = within(
        LIMIT,
        "a refused connection",
        PostgresStore::connect(url, "t"),
    )
    .await
    .expect_err("nothing listens on port 1");
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "cannot connect to PostgreSQL at postgres://app:***@127.0.0.1:1/test?connect_timeout=5"
    );
    let source = std::error::Error::source(&err)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(source.starts_with("error connecting to server"), "{source}");
    assert!(!format!("{err:?} {source}").contains("hunter2"));

    // The same through `open`, which picks the backend from the URL.
    let err = sluicegate_stages::store::open(Some(url), "t")
        .await
        .err()
        .expect("unreachable");
    assert!(err.to_string().contains("app:***@127.0.0.1:1"), "{err}");

    let err = PostgresStore::connect("postgres://app:pw@127.0.0.1:notaport/x", "t")
        .await
        .expect_err("malformed");
    assert!(matches!(err, StoreError::Config(_)), "{err}");
    assert!(!err.to_string().contains(":pw@"), "{err}");
}

/// The consumer-offsets contract (tests/common: `offsets_contract`) on
/// PostgreSQL.
#[tokio::test]
async fn consumer_offsets_commit_with_the_rows() {
    let admin = pg_admin().await;
    let (plain, failing, refusing) = (
        unique_table("offs_plain"),
        unique_table("offs_failing"),
        unique_table("offs_refusing"),
    );
    admin
        .batch_execute(&format!(
            "CREATE TABLE {failing}_parent (id INTEGER PRIMARY KEY);
             CREATE TABLE {failing} (
                id TEXT PRIMARY KEY, topic TEXT, \"partition\" INTEGER, \"offset\" BIGINT,
                payload JSONB NOT NULL, stored_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                parent INTEGER NOT NULL DEFAULT 1
                    REFERENCES {failing}_parent(id) DEFERRABLE INITIALLY DEFERRED);
             CREATE TABLE {refusing} (
                id TEXT PRIMARY KEY, topic TEXT, \"partition\" INTEGER, \"offset\" BIGINT,
                payload JSONB NOT NULL, stored_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                CHECK ((payload->>'amount')::numeric >= 0))"
        ))
        .await
        .expect("tables");
    let group = unique_table("offs_group");
    common::offsets_contract(
        &*connect(&plain).await,
        &*connect(&failing).await,
        &*connect(&refusing).await,
        &group,
    )
    .await;
    admin
        .batch_execute(&format!(
            "DELETE FROM sluicegate_offsets WHERE group_id = '{group}'"
        ))
        .await
        .expect("clean up");
    pg_drop(
        &admin,
        &[&plain, &failing, &refusing, &format!("{failing}_parent")],
    )
    .await;
}

/// Non-blocking retries: a batch that fails transiently (here a trigger
/// refusing every third record with `55P03`, lock not available) is not
/// retried in place; it is written again one row per transaction, the
/// rows that go in are delivered, and only the rows that fail again go to
/// the dead-letter route, marked transient, with the database's error.
#[tokio::test]
async fn non_blocking_retries_hand_on_only_the_rows_that_fail() {
    let admin = pg_admin().await;
    let table = unique_table("nonblocking");
    let store = connect(&table).await;
    exec(
        &admin,
        &format!(
            "CREATE FUNCTION \"{table}_refuse\"() RETURNS trigger AS $$ BEGIN \
               IF (NEW.payload->>'n')::int % 3 = 0 THEN \
                 RAISE EXCEPTION 'row % is locked', NEW.id USING ERRCODE = '55P03'; \
               END IF; RETURN NEW; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER refuse BEFORE INSERT ON \"{table}\" \
               FOR EACH ROW EXECUTE FUNCTION \"{table}_refuse\"();"
        ),
    )
    .await;
    let stage = StoreStage::new(store.clone() as Arc<dyn Store>).non_blocking_retries(true);
    let stats = stage.stats();
    let acks = AckLog::new();
    let letters = sluicegate_core::testing::CollectSink::<(i64, bool, String)>::new();
    let dlq = {
        let letters = letters.clone();
        sluicegate_core::sink(move |d: sluicegate_core::DeadLetter| {
            let letters = letters.clone();
            async move {
                use sluicegate_core::Stage as _;
                let _ = letters
                    .process(
                        (-1, d.error.is_transient(), d.error.message().to_string()),
                        &sluicegate_core::Origin::default(),
                    )
                    .await;
                Ok::<_, std::convert::Infallible>(())
            }
        })
    };
    let mut g = Graph::builder("nonblocking");
    g.dead_letters(sluicegate_core::StageSpec::new("dlq", dlq));
    g.source(
        "src",
        sluicegate_core::testing::VecSource::new(records(10), acks.clone()),
    )
    .to_batch(BatchSpec::new("store", stage, BatchConfig::new(10, HOUR)));
    let running = g.build().expect("valid").start().await.expect("starts");
    let report = within(LIMIT, "the graph", running.wait()).await;
    assert!(report.is_clean(), "{report:?}");
    acks.assert_each_once(10);
    let refused = [0i64, 3, 6, 9];
    assert_eq!(
        acks.offsets_where(|o| matches!(o, Outcome::DeadLettered(_))),
        refused.to_vec()
    );
    assert_eq!(acks.delivered(), 6);
    let got = letters.items();
    assert_eq!(got.len(), 4, "{got:?}");
    for (_, transient, message) in &got {
        assert!(transient, "marked transient: {message}");
        assert!(
            message.contains("55P03") && message.contains("is locked"),
            "the database's error: {message}"
        );
    }
    assert_eq!(stats.retries(), 0, "nothing retried in place");
    assert_eq!(
        pg_ids(&admin, &table).await,
        ids((0..10).filter(|n| !refused.contains(n)))
    );
    pg_drop(&admin, &[&table]).await;
    exec(&admin, &format!("DROP FUNCTION \"{table}_refuse\"()")).await;
}
