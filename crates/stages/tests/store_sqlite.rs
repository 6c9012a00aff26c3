//! The SQLite store against a real SQLite database file: the store
//! contract (`common::store_contract`), and what only SQLite has: a busy
//! database, unusable paths, the backend picked from a URL, a forwarding
//! store checked row by row from the test's own connection.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::backend::Backend;
use common::sqlite::Sqlite;
use common::store_contract::store_contract_tests;
use common::{LIMIT, id, records, run_store, unique_table};
use serde_json::{Value, json};
use sluicegate_core::testing::{AckLog, within};
use sluicegate_core::{BatchConfig, BatchSpec, Graph, GraphError};
use sluicegate_stages::store::{RetryPolicy, SqliteStore, Store, StoreError, StoreStage};

const HOUR: Duration = Duration::from_secs(3600);

store_contract_tests!(Sqlite);

#[tokio::test]
async fn a_busy_database_is_retried_then_dead_lettered_or_stops_the_graph() {
    let db = Sqlite::new().await;
    let table = unique_table("busy");
    let store = db.open_impatient(&table).await as Arc<dyn Store>;
    db.block_writes(&table).await;
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
    db.unblock().await;
    assert!(db.ids(&table).await.is_empty());
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

    let db = Sqlite::new().await;
    let err = SqliteStore::open(&db.path, "orders; drop table x")
        .await
        .expect_err("bad table name");
    assert!(matches!(err, StoreError::Config(_)), "{err}");
}

#[tokio::test]
async fn open_picks_the_backend_from_the_url() {
    let db = Sqlite::new().await;
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

/// `forwarding()`: the store as a step in a chain. The stage after it sees
/// each value only once its row is committed (it checks the database on
/// its own connection for every value it gets), in input order; a rejected
/// row is dead-lettered and not forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarding_store_hands_on_only_committed_rows_in_order() {
    let db = Sqlite::new().await;
    let table = unique_table("forward");
    db.create_refusing_table(&table).await;
    let store = db.open(&table).await;
    let items: Vec<Value> = (0..50)
        .map(|i| json!({"n": i, "amount": if i % 10 == 7 { -1 } else { i }}))
        .collect();
    let stage = StoreStage::new(store as Arc<dyn Store>).forwarding();
    let stats = stage.stats();
    // What the next stage saw, and whether its row was in the table then.
    let seen: Arc<Mutex<Vec<(i64, bool)>>> = Arc::default();
    let check = {
        let seen = seen.clone();
        let visible = db.row_visible(&table).expect("SQLite checks rows");
        sluicegate_core::map(move |v: Value| {
            let n = v["n"].as_i64().expect("n");
            seen.lock().expect("lock").push((n, visible(&id(n))));
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
    let running = common::start(g).await;
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

/// `stored_at` is the batch's time, bound once per batch in SQLite's own
/// format: every row of a batch has the same one, a later batch a later or
/// equal one, and the offsets a batch writes carry it as `updated_at`.
#[tokio::test]
async fn the_rows_of_a_batch_share_its_stored_at_in_sqlites_format() {
    use sluicegate_stages::store::{OFFSETS_TABLE, Row};
    let db = Sqlite::new().await;
    let table = unique_table("stored_at");
    let store = db.open(&table).await;
    let batch = |first: i64| -> Vec<Row> {
        (first..first + 3)
            .map(|n| Row {
                id: format!("in/0/{n}"),
                topic: Some("in".into()),
                partition: Some(0),
                offset: Some(n),
                payload: format!("{{\"n\":{n}}}"),
            })
            .collect()
    };
    store.write(&batch(0)).await.expect("first batch");
    store
        .write_with_offsets(&batch(3), "g", &[("in".to_string(), 0, 6)])
        .await
        .expect("second batch, with its offsets");
    let conn = rusqlite::Connection::open(&db.path).expect("open");
    let mut stmt = conn
        .prepare(&format!(
            "SELECT \"offset\", stored_at FROM \"{table}\" ORDER BY \"offset\""
        ))
        .expect("prepare");
    let rows: Vec<(i64, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(rows.len(), 6, "{rows:?}");
    let shape = |s: &str| {
        s.len() == 24
            && s.as_bytes()[10] == b'T'
            && s.ends_with('Z')
            && s.chars().filter(char::is_ascii_digit).count() == 17
    };
    assert!(rows.iter().all(|(_, at)| shape(at)), "{rows:?}");
    assert!(rows[..3].iter().all(|(_, at)| *at == rows[0].1), "{rows:?}");
    assert!(rows[3..].iter().all(|(_, at)| *at == rows[3].1), "{rows:?}");
    assert!(rows[3].1 >= rows[0].1, "{rows:?}");
    let updated_at: String = conn
        .query_row(
            &format!("SELECT updated_at FROM {OFFSETS_TABLE} WHERE group_id = 'g'"),
            [],
            |r| r.get(0),
        )
        .expect("the offsets row");
    assert_eq!(updated_at, rows[3].1);
}
