//! The SQLite fixture of the store tests: a database file in a temporary
//! directory, the test's own connections to it, and [`Backend`] for the
//! contract suite.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use sluicegate_core::testing::within;
use sluicegate_stages::store::{SqliteConfig, SqliteStore, StoreStats};

use super::backend::{Backend, RowVisible};
use super::{LIMIT, wait_until};

/// The store's ids in `table` of the SQLite file at `path`, sorted.
pub fn sqlite_ids(path: &Path, table: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).expect("open sqlite for reading");
    let mut stmt = conn
        .prepare(&format!("SELECT id FROM \"{table}\" ORDER BY id"))
        .expect("prepare");
    stmt.query_map([], |r| r.get::<_, String>(0))
        .expect("query")
        .collect::<Result<Vec<_>, _>>()
        .expect("rows")
}

/// The columns of the store's table, as the store creates it.
const COLUMNS: &str = "id TEXT PRIMARY KEY NOT NULL, topic TEXT, \"partition\" INTEGER, \
     \"offset\" INTEGER, payload TEXT NOT NULL, stored_at TEXT";

/// A database file in a directory removed with the fixture.
pub struct Sqlite {
    _dir: tempfile::TempDir,
    /// The database file.
    pub path: PathBuf,
    /// The connection holding the write lock of [`Backend::block_writes`].
    holder: Mutex<Option<rusqlite::Connection>>,
}

impl Sqlite {
    /// Runs SQL on its own connection to the file (the test's view of the
    /// database).
    pub fn exec(&self, sql: &str) {
        rusqlite::Connection::open(&self.path)
            .expect("open")
            .execute_batch(sql)
            .expect("sql");
    }
}

impl Backend for Sqlite {
    type Store = SqliteStore;

    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.db");
        Sqlite {
            _dir: dir,
            path,
            holder: Mutex::default(),
        }
    }

    async fn open(&self, table: &str) -> Arc<SqliteStore> {
        Arc::new(
            within(
                LIMIT,
                "opening SQLite",
                SqliteStore::open(&self.path, table),
            )
            .await
            .expect("opens"),
        )
    }

    /// A store that waits at most 10 ms for a lock (so a held lock shows
    /// up as transient errors quickly).
    async fn open_impatient(&self, table: &str) -> Arc<SqliteStore> {
        let mut config = SqliteConfig::new(&self.path, table);
        config.busy_timeout = Duration::from_millis(10);
        Arc::new(
            within(LIMIT, "opening SQLite", SqliteStore::open_with(config))
                .await
                .expect("opens"),
        )
    }

    async fn ids(&self, table: &str) -> Vec<String> {
        sqlite_ids(&self.path, table)
    }

    async fn create_failing_commit_table(&self, table: &str) {
        self.exec(&format!(
            "CREATE TABLE \"{table}_parent\" (id INTEGER PRIMARY KEY);
             CREATE TABLE \"{table}\" ({COLUMNS},
                parent INTEGER NOT NULL DEFAULT 1
                    REFERENCES \"{table}_parent\"(id) DEFERRABLE INITIALLY DEFERRED)"
        ));
    }

    fn failed_commit_message(&self, _table: &str) -> String {
        "commit failed: [ConstraintViolation] FOREIGN KEY constraint failed".into()
    }

    async fn create_refusing_table(&self, table: &str) {
        self.exec(&format!(
            "CREATE TABLE \"{table}\" ({COLUMNS},
                CONSTRAINT amount_not_negative CHECK (json_extract(payload, '$.amount') >= 0))"
        ));
    }

    fn refused_message(&self, _table: &str, id: &str) -> String {
        format!(
            "row \"{id}\" rejected: [ConstraintViolation] CHECK constraint failed: amount_not_negative"
        )
    }

    /// SQLite stores any JSON text.
    fn unstorable(&self, _n: i64, _id: &str) -> Option<(Value, String)> {
        None
    }

    /// Another connection takes the write lock (`BEGIN IMMEDIATE`): the
    /// store's transaction cannot begin.
    async fn block_writes(&self, _table: &str) {
        let holder = rusqlite::Connection::open(&self.path).expect("holder");
        holder.execute_batch("BEGIN IMMEDIATE").expect("lock");
        *self.holder.lock().expect("lock") = Some(holder);
    }

    /// The store has retried against the held lock (three times).
    async fn wait_blocked(&self, _table: &str, stats: &StoreStats) {
        wait_until("the store to retry against the held lock", || {
            stats.retries() >= 3
        })
        .await;
    }

    async fn unblock(&self) {
        let holder = self.holder.lock().expect("lock").take();
        holder
            .expect("writes blocked")
            .execute_batch("ROLLBACK")
            .expect("release");
    }

    fn row_visible(&self, table: &str) -> Option<RowVisible> {
        let conn = Mutex::new(rusqlite::Connection::open(&self.path).expect("reader"));
        let sql = format!("SELECT count(*) FROM \"{table}\" WHERE id = ?1");
        Some(Box::new(move |id: &str| {
            let n: i64 = conn
                .lock()
                .expect("lock")
                .query_row(&sql, [id], |r| r.get(0))
                .expect("query");
            n == 1
        }))
    }

    fn connections(_store: &SqliteStore) -> Option<u64> {
        None
    }

    /// The file goes with the temporary directory.
    async fn cleanup(&self, _groups: &[&str]) {}
}
