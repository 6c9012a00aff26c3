//! The PostgreSQL store against the real server (127.0.0.1:5432, database
//! `test`; `SLUICEGATE_TEST_PG` overrides): the store contract
//! (`common::store_contract`), and what only PostgreSQL has: a connection
//! killed mid-batch, a serialization failure, an unreachable server,
//! non-blocking retries of rows a trigger refuses.
//!
//! Without a server these tests fail, never skip (the test command starts
//! one with scripts/postgres-up).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::backend::Backend;
use common::postgres::{Postgres, pg_exec, pg_url_named, waiting_backend};
use common::store_contract::store_contract_tests;
use common::{LIMIT, Phased, id, ids, records, start_phased, unique_table, wait_until};
use sluicegate_core::testing::{AckLog, within};
use sluicegate_core::{BatchConfig, BatchSpec, Graph, Outcome};
use sluicegate_stages::store::{PostgresStore, Store, StoreError, StoreStage};

const HOUR: Duration = Duration::from_secs(3600);

store_contract_tests!(Postgres);

#[tokio::test]
async fn a_connection_killed_mid_batch_is_retried_with_nothing_lost() {
    let pg = Postgres::new().await;
    let table = unique_table("killed");
    let store = pg.open(&table).await;
    let stage = StoreStage::new(store.clone() as Arc<dyn Store>);
    let stats = stage.stats();
    let mut all = records(300);
    let then = all.split_off(100);
    let Phased { acks, go, running } = start_phased(
        all,
        then,
        stage,
        BatchConfig::new(100, Duration::from_millis(20)),
        None,
    )
    .await;
    // The first 100 are committed before anything goes wrong.
    within(LIMIT, "the first batch's acks", acks.wait_for(100)).await;
    assert_eq!(acks.delivered(), 100);

    // The next batch blocks inside its INSERT; kill its connection there.
    pg.block_writes(&table).await;
    go.send(()).expect("source waiting");
    let pid = waiting_backend(&pg.watch, &table).await;
    let killed: bool = within(
        LIMIT,
        "pg_terminate_backend",
        pg.watch
            .query_one("SELECT pg_terminate_backend($1)", &[&pid]),
    )
    .await
    .expect("terminate")
    .get(0);
    assert!(killed);
    wait_until("the store to retry after the kill", || stats.retries() >= 1).await;
    pg.unblock().await;

    let report = within(LIMIT, "the graph", running.wait()).await;
    assert!(report.is_clean(), "{report:?}");
    acks.assert_each_once(300);
    assert_eq!(
        acks.delivered(),
        300,
        "every record stored and acknowledged"
    );
    assert_eq!(
        pg.ids(&table).await,
        ids(0..300),
        "nothing lost, nothing twice"
    );
    assert_eq!(stats.inserted() + stats.duplicates(), 300);
    assert_eq!(stats.batches_failed(), 0);
    assert!(stats.retries() >= 1);
    assert_eq!(store.connections(), 2, "reconnected once");
    pg.cleanup(&[]).await;
}

#[tokio::test]
async fn a_serialization_failure_is_retried() {
    let pg = Postgres::new().await;
    let table = unique_table("serial");
    pg.track(&table);
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
    pg_exec(
        &pg.locker,
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
    let running = common::start(g).await;
    waiting_backend(&pg.watch, &table).await;
    // Committing it makes the store's insert conflict with a row its
    // snapshot cannot see: 40001, a serialization failure, retried.
    pg_exec(&pg.locker, "COMMIT").await;
    let report = within(LIMIT, "the graph", running.wait()).await;
    assert!(report.is_clean(), "{report:?}");
    acks.assert_each_once(3);
    assert_eq!(acks.delivered(), 3);
    assert_eq!(stats.retries(), 1, "one serialization failure, one retry");
    assert_eq!((stats.inserted(), stats.duplicates()), (2, 1));
    assert_eq!(pg.ids(&table).await, ids(0..3));
    assert_eq!(
        store.connections(),
        1,
        "a serialization failure keeps the connection"
    );
    pg.cleanup(&[]).await;
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

/// Non-blocking retries: a batch that fails transiently (here a trigger
/// refusing every third record with `55P03`, lock not available) is not
/// retried in place; it is written again one row per transaction, the
/// rows that go in are delivered, and only the rows that fail again go to
/// the dead-letter route, marked transient, with the database's error.
#[tokio::test]
async fn non_blocking_retries_hand_on_only_the_rows_that_fail() {
    let pg = Postgres::new().await;
    let table = unique_table("nonblocking");
    let store = pg.open(&table).await;
    pg_exec(
        &pg.admin,
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
    let running = common::start(g).await;
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
        pg.ids(&table).await,
        ids((0..10).filter(|n| !refused.contains(n)))
    );
    pg.cleanup(&[]).await;
    pg_exec(&pg.admin, &format!("DROP FUNCTION \"{table}_refuse\"()")).await;
}
