//! The PostgreSQL fixture of the store tests: the server the tests use
//! (127.0.0.1:5432, database `test`; `SLUICEGATE_TEST_PG` overrides), the
//! test's own connections, and [`Backend`] for the contract suite.
//!
//! A missing server fails the test (the test command starts PostgreSQL;
//! nothing skips).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sluicegate_core::testing::within;
use sluicegate_stages::store::{PostgresStore, StoreStats};

use super::LIMIT;
use super::backend::{Backend, RowVisible};

/// Where the tests find PostgreSQL (`SLUICEGATE_TEST_PG` overrides it).
pub fn pg_url() -> String {
    std::env::var("SLUICEGATE_TEST_PG")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_string())
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

/// Runs `sql` on `client`, failing the test if it fails.
pub async fn pg_exec(client: &tokio_postgres::Client, sql: &str) {
    within(LIMIT, "the test's SQL", client.batch_execute(sql))
        .await
        .expect("the test's SQL");
}

/// The pid of the backend whose `application_name` is `app` once it waits
/// on a lock.
pub async fn waiting_backend(watch: &tokio_postgres::Client, app: &str) -> i32 {
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

/// The columns of the store's table, as the store creates it.
const COLUMNS: &str = "id TEXT PRIMARY KEY, topic TEXT, \"partition\" INTEGER, \"offset\" BIGINT, \
     payload JSONB NOT NULL, stored_at TIMESTAMPTZ NOT NULL DEFAULT now()";

/// The test's connections to the server, and the tables it made (dropped
/// by [`Backend::cleanup`]).
pub struct Postgres {
    /// The test's queries and DDL.
    pub admin: tokio_postgres::Client,
    /// Holds the lock of [`Backend::block_writes`] in its transaction.
    pub locker: tokio_postgres::Client,
    /// Watches `pg_stat_activity` (and terminates backends).
    pub watch: tokio_postgres::Client,
    tables: Mutex<Vec<String>>,
}

impl Postgres {
    /// Remembers `table` to drop it at the end.
    pub fn track(&self, table: &str) {
        self.tables.lock().expect("lock").push(table.to_string());
    }
}

impl Backend for Postgres {
    type Store = PostgresStore;

    async fn new() -> Self {
        Postgres {
            admin: pg_admin().await,
            locker: pg_admin().await,
            watch: pg_admin().await,
            tables: Mutex::default(),
        }
    }

    async fn open(&self, table: &str) -> Arc<PostgresStore> {
        self.track(table);
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

    async fn open_impatient(&self, table: &str) -> Arc<PostgresStore> {
        self.open(table).await
    }

    async fn ids(&self, table: &str) -> Vec<String> {
        pg_ids(&self.admin, table).await
    }

    async fn create_failing_commit_table(&self, table: &str) {
        self.track(table);
        self.track(&format!("{table}_parent"));
        pg_exec(
            &self.admin,
            &format!(
                "CREATE TABLE \"{table}_parent\" (id INT PRIMARY KEY);
                 CREATE TABLE \"{table}\" ({COLUMNS},
                    parent INT NOT NULL DEFAULT 1
                        CONSTRAINT parent_exists REFERENCES \"{table}_parent\"(id)
                        DEFERRABLE INITIALLY DEFERRED)"
            ),
        )
        .await;
    }

    fn failed_commit_message(&self, table: &str) -> String {
        format!(
            "commit failed: [23503] insert or update on table \"{table}\" violates foreign key constraint \"parent_exists\""
        )
    }

    async fn create_refusing_table(&self, table: &str) {
        self.track(table);
        pg_exec(
            &self.admin,
            &format!(
                "CREATE TABLE \"{table}\" ({COLUMNS},
                    CONSTRAINT amount_not_negative CHECK ((payload->>'amount')::numeric >= 0))"
            ),
        )
        .await;
    }

    fn refused_message(&self, table: &str, id: &str) -> String {
        format!(
            "row \"{id}\" rejected: [23514] new row for relation \"{table}\" violates check constraint \"amount_not_negative\""
        )
    }

    /// A NUL character, which `jsonb` cannot hold.
    fn unstorable(&self, n: i64, id: &str) -> Option<(Value, String)> {
        Some((
            json!({"n": n, "amount": 1, "note": "a\u{0}b"}),
            format!("row \"{id}\" rejected: [22P05] unsupported Unicode escape sequence"),
        ))
    }

    /// `LOCK TABLE ... IN EXCLUSIVE MODE` in an open transaction: the
    /// store's transaction waits inside its INSERT.
    async fn block_writes(&self, table: &str) {
        pg_exec(
            &self.locker,
            &format!("BEGIN; LOCK TABLE \"{table}\" IN EXCLUSIVE MODE"),
        )
        .await;
    }

    async fn wait_blocked(&self, table: &str, _stats: &StoreStats) {
        waiting_backend(&self.watch, table).await;
    }

    async fn unblock(&self) {
        pg_exec(&self.locker, "COMMIT").await;
    }

    fn row_visible(&self, _table: &str) -> Option<RowVisible> {
        None
    }

    fn connections(store: &PostgresStore) -> Option<u64> {
        Some(store.connections())
    }

    async fn cleanup(&self, groups: &[&str]) {
        for group in groups {
            pg_exec(
                &self.admin,
                &format!("DELETE FROM sluicegate_offsets WHERE group_id = '{group}'"),
            )
            .await;
        }
        let tables = std::mem::take(&mut *self.tables.lock().expect("lock"));
        let tables: Vec<&str> = tables.iter().map(String::as_str).collect();
        pg_drop(&self.admin, &tables).await;
    }
}
