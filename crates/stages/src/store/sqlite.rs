//! SQLite, embedded: WAL mode, one transaction per batch, on the blocking pool.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use super::{
    DbError, GroupOffsets, OFFSETS_TABLE, Row, RowResult, Store, StoreError, Written, quote_table,
};

/// The SQL expression of the time as the tables' `stored_at` and
/// `updated_at` hold it (a macro so that `concat!` can build [`NOW`] from it).
macro_rules! stamp {
    () => {
        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    };
}

/// SQLite's `synchronous` setting: how hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Every commit is on disk before it returns (survives power loss). The default:
    /// an acknowledgement then means the row is durable.
    #[default]
    Full,
    /// In WAL mode, commits survive a crash of the process but the last ones
    /// may be lost on power loss; much faster for small transactions.
    Normal,
}

/// Settings of a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// The database file (created if missing; its directory must exist).
    pub path: PathBuf,
    /// The table (created if missing).
    pub table: String,
    /// The durability of a commit (default [`Synchronous::Full`]).
    pub synchronous: Synchronous,
    /// How long a write waits for another connection's lock before failing
    /// with a transient "database is locked" (default 5 s).
    pub busy_timeout: Duration,
}

impl SqliteConfig {
    /// `table` in the database file at `path`, with the defaults.
    pub fn new(path: impl Into<PathBuf>, table: impl Into<String>) -> Self {
        SqliteConfig {
            path: path.into(),
            table: table.into(),
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// An embedded SQLite store: one connection in WAL mode (readers never block
/// the writer), one `BEGIN IMMEDIATE` transaction per batch with a cached
/// prepared statement, `INSERT ... ON CONFLICT (id) DO NOTHING` per row;
/// `stored_at` is the batch's time, read once from SQLite's clock.
///
/// Calls run on Tokio's blocking pool (SQLite's API blocks). A row that
/// breaks a constraint fails alone: SQLite undoes only that statement and
/// the transaction goes on. `SQLITE_BUSY`/`SQLITE_LOCKED` are transient.
/// Foreign keys are enforced (`PRAGMA foreign_keys = ON`), so a table you
/// create yourself with extra constraints keeps them.
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// Whether the offsets table was created by this store.
    offsets_ready: Arc<std::sync::atomic::AtomicBool>,
    insert_sql: Arc<str>,
    count_sql: Arc<str>,
    describe: String,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("at", &self.describe)
            .finish()
    }
}

fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|e| e.into_inner())
}

/// The code name and message of a rusqlite error.
fn db_error(e: &rusqlite::Error) -> DbError {
    match e {
        rusqlite::Error::SqliteFailure(f, msg) => DbError {
            code: Some(format!("{:?}", f.code)),
            message: msg.clone().unwrap_or_else(|| f.to_string()),
        },
        other => DbError::chain(other),
    }
}

fn code(e: &rusqlite::Error) -> Option<ErrorCode> {
    e.sqlite_error_code()
}

fn is_transient(e: &rusqlite::Error) -> bool {
    matches!(
        code(e),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

fn is_row_level(e: &rusqlite::Error) -> bool {
    matches!(
        code(e),
        Some(ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch | ErrorCode::TooBig)
    )
}

fn batch_error(op: &'static str, e: &rusqlite::Error) -> StoreError {
    let source = db_error(e);
    if is_transient(e) {
        StoreError::Transient { op, source }
    } else {
        StoreError::Permanent { op, source }
    }
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(StoreError::Permanent {
            op: "sqlite call",
            source: DbError::msg("the blocking task was cancelled (runtime shutting down)"),
        }),
    }
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` and the table `table` in it,
    /// with the defaults of [`SqliteConfig::new`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Unreachable`] naming the path when the file cannot be
    /// opened or set up; [`StoreError::Config`] for an invalid table name.
    pub async fn open(path: impl AsRef<Path>, table: &str) -> Result<Self, StoreError> {
        SqliteStore::open_with(SqliteConfig::new(path.as_ref(), table)).await
    }

    /// Opens the database as `config` says.
    ///
    /// # Errors
    ///
    /// As [`open`](SqliteStore::open).
    pub async fn open_with(config: SqliteConfig) -> Result<Self, StoreError> {
        let table = quote_table(&config.table)?;
        let shown = config.path.display().to_string();
        let describe = format!("SQLite {shown} table {}", config.table);
        let unreachable = {
            let shown = shown.clone();
            move |e: &rusqlite::Error| StoreError::Unreachable {
                backend: "SQLite",
                url: shown.clone(),
                source: db_error(e),
            }
        };
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                id TEXT PRIMARY KEY NOT NULL,
                topic TEXT,
                \"partition\" INTEGER,
                \"offset\" INTEGER,
                payload TEXT NOT NULL,
                stored_at TEXT NOT NULL DEFAULT ({stamp})
            )",
            stamp = stamp!()
        );
        let conn = blocking(move || {
            let conn = Connection::open(&config.path).map_err(|e| unreachable(&e))?;
            conn.busy_timeout(config.busy_timeout)
                .map_err(|e| unreachable(&e))?;
            let mode: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .map_err(|e| unreachable(&e))?;
            if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
                return Err(StoreError::Unreachable {
                    backend: "SQLite",
                    url: config.path.display().to_string(),
                    source: DbError::msg(format!(
                        "cannot switch to WAL mode (journal mode is {mode})"
                    )),
                });
            }
            let sync = match config.synchronous {
                Synchronous::Full => "FULL",
                Synchronous::Normal => "NORMAL",
            };
            conn.execute_batch(&format!(
                "PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON;"
            ))
            .map_err(|e| unreachable(&e))?;
            conn.execute_batch(&create)
                .map_err(|e| batch_error("create table", &e))?;
            Ok(conn)
        })
        .await?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            offsets_ready: Arc::default(),
            // `stored_at` is bound once per batch (the batch's time, read from
            // SQLite's clock as the column's default would): formatting it
            // per row was 0.6 µs a row, a sixth of the insert.
            insert_sql: format!(
                "INSERT INTO {table} (id, topic, \"partition\", \"offset\", payload, stored_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING"
            )
            .into(),
            count_sql: format!("SELECT count(*) FROM {table}").into(),
            describe,
        })
    }
}

fn create_offsets_table(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {OFFSETS_TABLE} (
            group_id TEXT NOT NULL,
            topic TEXT NOT NULL,
            \"partition\" INTEGER NOT NULL,
            next_offset INTEGER NOT NULL,
            updated_at TEXT NOT NULL DEFAULT ({stamp}),
            PRIMARY KEY (group_id, topic, \"partition\")
        )",
        stamp = stamp!()
    ))
    .map_err(|e| batch_error("create offsets table", &e))
}

/// Reads the time as `stamp!` formats it; a batch reads it once and binds
/// it into every row it writes.
const NOW: &str = concat!("SELECT ", stamp!());

fn write_batch(
    conn: &mut Connection,
    sql: &str,
    rows: &[Row],
    offsets: Option<GroupOffsets<'_>>,
) -> Result<Vec<RowResult>, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| batch_error("begin", &e))?;
    let stored_at: String = tx
        .prepare_cached(NOW)
        .and_then(|mut now| now.query_row([], |r| r.get(0)))
        .map_err(|e| batch_error("read the time", &e))?;
    let mut results = Vec::with_capacity(rows.len());
    {
        let mut stmt = tx
            .prepare_cached(sql)
            .map_err(|e| batch_error("prepare", &e))?;
        for row in rows {
            let r = stmt.execute(rusqlite::params![
                row.id,
                row.topic,
                row.partition,
                row.offset,
                row.payload,
                stored_at
            ]);
            results.push(match r {
                Ok(0) => Ok(Written::Duplicate),
                Ok(_) => Ok(Written::Inserted),
                // A constraint declared `ON CONFLICT ROLLBACK` ends the whole
                // transaction: then it is the batch that failed.
                Err(e) if is_row_level(&e) && !tx.is_autocommit() => Err(StoreError::Row {
                    id: row.id.clone(),
                    source: db_error(&e),
                }),
                // Dropping `tx` rolls the batch back.
                Err(e) => return Err(batch_error("insert", &e)),
            });
        }
    }
    if let Some(GroupOffsets { group, offsets }) = offsets {
        let offsets = super::cap_offsets(offsets, rows, &results);
        let mut stmt = tx
            .prepare_cached(&format!(
                "INSERT INTO {OFFSETS_TABLE} \
                 (group_id, topic, \"partition\", next_offset, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (group_id, topic, \"partition\") DO UPDATE \
                 SET next_offset = excluded.next_offset, updated_at = excluded.updated_at \
                 WHERE excluded.next_offset > {OFFSETS_TABLE}.next_offset"
            ))
            .map_err(|e| batch_error("prepare offsets", &e))?;
        for (topic, partition, offset) in &offsets {
            stmt.execute(rusqlite::params![
                group, topic, partition, offset, stored_at
            ])
            .map_err(|e| batch_error("write offsets", &e))?;
        }
    }
    // On failure the transaction is rolled back when `commit` drops it.
    tx.commit().map_err(|e| batch_error("commit", &e))?;
    Ok(results)
}

#[async_trait]
impl Store for SqliteStore {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn write(&self, rows: &[Row]) -> Result<Vec<RowResult>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.conn.clone();
        let sql = self.insert_sql.clone();
        let rows = rows.to_vec();
        blocking(move || write_batch(&mut lock(&conn), &sql, &rows, None)).await
    }

    async fn write_with_offsets(
        &self,
        rows: &[Row],
        group: &str,
        offsets: &[(String, i32, i64)],
    ) -> Result<Vec<RowResult>, StoreError> {
        let (conn, ready, sql) = (
            self.conn.clone(),
            self.offsets_ready.clone(),
            self.insert_sql.clone(),
        );
        let (rows, group, offsets) = (rows.to_vec(), group.to_string(), offsets.to_vec());
        blocking(move || {
            let mut conn = lock(&conn);
            if !ready.load(std::sync::atomic::Ordering::Acquire) {
                create_offsets_table(&conn)?;
                ready.store(true, std::sync::atomic::Ordering::Release);
            }
            let offsets = GroupOffsets {
                group: &group,
                offsets: &offsets,
            };
            write_batch(&mut conn, &sql, &rows, Some(offsets))
        })
        .await
    }

    async fn read_offsets(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<BTreeMap<i32, i64>, StoreError> {
        let (conn, ready) = (self.conn.clone(), self.offsets_ready.clone());
        let (group, topic) = (group.to_string(), topic.to_string());
        blocking(move || {
            let conn = lock(&conn);
            if !ready.load(std::sync::atomic::Ordering::Acquire) {
                create_offsets_table(&conn)?;
                ready.store(true, std::sync::atomic::Ordering::Release);
            }
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT \"partition\", next_offset FROM {OFFSETS_TABLE} \
                     WHERE group_id = ?1 AND topic = ?2"
                ))
                .map_err(|e| batch_error("read offsets", &e))?;
            let found = stmt
                .query_map(rusqlite::params![group, topic], |r| {
                    Ok((r.get::<_, i32>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(|e| batch_error("read offsets", &e))?
                .collect::<Result<BTreeMap<_, _>, _>>()
                .map_err(|e| batch_error("read offsets", &e))?;
            Ok(found)
        })
        .await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let conn = self.conn.clone();
        let sql = self.count_sql.clone();
        blocking(move || {
            lock(&conn)
                .query_row(&sql, [], |r| r.get::<_, i64>(0))
                .map(|n| u64::try_from(n).unwrap_or(0))
                .map_err(|e| batch_error("count", &e))
        })
        .await
    }
}
