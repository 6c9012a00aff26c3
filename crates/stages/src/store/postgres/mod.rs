//! PostgreSQL: one multi-row `INSERT ... SELECT FROM unnest(...)` per batch.

mod batch;
mod errors;

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};

use super::open::redact_url;
use super::{GroupOffsets, OFFSETS_TABLE, Row, RowResult, Store, StoreError, quote_table};
use batch::{Conn, Failure, write_fast, write_isolating};
use errors::{breaks_connection, classify, db_error, sqlstate};

/// Settings of a [`PostgresStore`].
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// A libpq-style URL (`postgres://user:password@host:port/db?...`) or
    /// key-value string (`host=... user=... dbname=...`).
    pub url: String,
    /// The table (created if missing), `name` or `schema.name`.
    pub table: String,
    /// How long connecting may take, unless the URL says (default 5 s).
    pub connect_timeout: Duration,
}

impl PostgresConfig {
    /// `table` in the database at `url`, with the defaults.
    pub fn new(url: impl Into<String>, table: impl Into<String>) -> Self {
        PostgresConfig {
            url: url.into(),
            table: table.into(),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A PostgreSQL store.
///
/// Writes a batch in one transaction with one statement:
/// `INSERT INTO t ... SELECT ... FROM unnest($1::text[], ...) ON CONFLICT (id)
/// DO NOTHING RETURNING id` (a single round trip whatever the batch size;
/// the returned ids tell inserted rows from replayed ones).
///
/// When that statement fails on a row's data or a constraint (SQLSTATE
/// classes 22 and 23), the transaction is rolled back and the batch is
/// written again row by row, each under a savepoint, so only the bad rows
/// fail and the others commit. A commit that fails (a deferred constraint)
/// fails the batch.
///
/// Transient errors: connection loss (class 08, `57P01`-`57P03`, I/O),
/// serialization failure (`40001`), deadlock (`40P01`), too many connections
/// (`53300`), lock not available (`55P03`). After a connection-level error
/// the next write reconnects.
///
/// One connection, used by one batch at a time (a
/// [`StoreStage`](super::StoreStage) writes one batch at a time); open
/// several stores for parallel writers.
pub struct PostgresStore {
    config: tokio_postgres::Config,
    insert_sql: String,
    count_sql: String,
    shown_url: String,
    describe: String,
    conn: Mutex<Option<Conn>>,
    connections: AtomicU64,
    /// Whether this store created the offsets table.
    offsets_ready: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("at", &self.describe)
            .finish()
    }
}

impl PostgresStore {
    /// Connects to `url` and creates `table` if missing.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unreachable`] naming the URL (password redacted) when
    /// the server cannot be reached or refuses the login;
    /// [`StoreError::Config`] for a malformed URL or table name;
    /// [`StoreError::Permanent`] when the table cannot be created.
    pub async fn connect(url: &str, table: &str) -> Result<Self, StoreError> {
        PostgresStore::connect_with(PostgresConfig::new(url, table)).await
    }

    /// Connects as `config` says.
    ///
    /// # Errors
    ///
    /// As [`connect`](PostgresStore::connect).
    pub async fn connect_with(config: PostgresConfig) -> Result<Self, StoreError> {
        let shown_url = redact_url(&config.url);
        let mut pg = tokio_postgres::Config::from_str(&config.url)
            .map_err(|e| StoreError::Config(format!("invalid PostgreSQL URL {shown_url}: {e}")))?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(config.connect_timeout);
        }
        if pg.get_application_name().is_none() {
            pg.application_name("sluicegate");
        }
        let table = quote_table(&config.table)?;
        let store = PostgresStore {
            config: pg,
            insert_sql: format!(
                "INSERT INTO {table} (id, topic, \"partition\", \"offset\", payload) \
                 SELECT u.id, u.topic, u.part, u.off, u.payload::jsonb \
                 FROM unnest($1::text[], $2::text[], $3::int4[], $4::int8[], $5::text[]) \
                 AS u(id, topic, part, off, payload) \
                 ON CONFLICT (id) DO NOTHING RETURNING id"
            ),
            count_sql: format!("SELECT count(*) FROM {table}"),
            describe: format!("PostgreSQL {shown_url} table {}", config.table),
            shown_url,
            conn: Mutex::new(None),
            connections: AtomicU64::new(0),
            offsets_ready: std::sync::atomic::AtomicBool::new(false),
        };
        let client = store.open_client().await?;
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                id TEXT PRIMARY KEY,
                topic TEXT,
                \"partition\" INTEGER,
                \"offset\" BIGINT,
                payload JSONB NOT NULL,
                stored_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )"
        );
        if let Err(e) = client.batch_execute(&create).await {
            // Two processes creating the table at once: the loser sees
            // duplicate_table or a unique violation on the catalog.
            if !matches!(sqlstate(&e), Some("42P07" | "23505")) {
                return Err(classify("create table", &e));
            }
        }
        let conn = store.prepare(client).await?;
        *store.conn.lock().await = Some(conn);
        Ok(store)
    }

    /// The connection, opened again when it was lost.
    async fn connection<'g>(
        &self,
        guard: &'g mut Option<Conn>,
    ) -> Result<&'g mut Conn, StoreError> {
        match guard.take() {
            Some(c) if !c.client.is_closed() => Ok(guard.insert(c)),
            _ => {
                let client = self.open_client().await?;
                Ok(guard.insert(self.prepare(client).await?))
            }
        }
    }

    /// One batch (and offsets) in one transaction: the one-statement
    /// insert, or row by row when a row is refused.
    async fn write_batch(
        &self,
        rows: &[Row],
        offsets: Option<GroupOffsets<'_>>,
    ) -> Result<Vec<RowResult>, StoreError> {
        let mut guard = self.conn.lock().await;
        let conn = self.connection(&mut guard).await?;
        let result = match write_fast(conn, rows, offsets).await {
            Ok(r) => Ok(r),
            Err(Failure::RowLevel) => write_isolating(conn, rows, offsets).await,
            Err(Failure::Batch(e)) => Err(e),
        };
        if result.as_ref().is_err_and(breaks_connection) {
            *guard = None;
        }
        result
    }

    /// Creates the offsets table once (two processes racing to create it
    /// is fine).
    async fn ensure_offsets_table(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::{Acquire, Release};
        if self.offsets_ready.load(Acquire) {
            return Ok(());
        }
        let mut guard = self.conn.lock().await;
        let conn = self.connection(&mut guard).await?;
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {OFFSETS_TABLE} (
                group_id TEXT NOT NULL,
                topic TEXT NOT NULL,
                \"partition\" INTEGER NOT NULL,
                next_offset BIGINT NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                PRIMARY KEY (group_id, topic, \"partition\")
            )"
        );
        if let Err(e) = conn.client.batch_execute(&create).await
            && !matches!(sqlstate(&e), Some("42P07" | "23505"))
        {
            return Err(classify("create offsets table", &e));
        }
        self.offsets_ready.store(true, Release);
        Ok(())
    }

    /// How many connections this store has opened (1 plus reconnects).
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    async fn open_client(&self) -> Result<Client, StoreError> {
        let (client, connection) =
            self.config
                .connect(NoTls)
                .await
                .map_err(|e| StoreError::Unreachable {
                    backend: "PostgreSQL",
                    url: self.shown_url.clone(),
                    source: db_error(&e),
                })?;
        self.connections.fetch_add(1, Ordering::Relaxed);
        let shown = self.shown_url.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(url = %shown, error = %e, "PostgreSQL connection ended");
            }
        });
        Ok(client)
    }

    async fn prepare(&self, client: Client) -> Result<Conn, StoreError> {
        let insert = client
            .prepare_typed(
                &self.insert_sql,
                &[
                    Type::TEXT_ARRAY,
                    Type::TEXT_ARRAY,
                    Type::INT4_ARRAY,
                    Type::INT8_ARRAY,
                    Type::TEXT_ARRAY,
                ],
            )
            .await
            .map_err(|e| classify("prepare", &e))?;
        Ok(Conn { client, insert })
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn write(&self, rows: &[Row]) -> Result<Vec<RowResult>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        self.write_batch(rows, None).await
    }

    async fn write_with_offsets(
        &self,
        rows: &[Row],
        group: &str,
        offsets: &[(String, i32, i64)],
    ) -> Result<Vec<RowResult>, StoreError> {
        self.ensure_offsets_table().await?;
        self.write_batch(rows, Some(GroupOffsets { group, offsets }))
            .await
    }

    async fn read_offsets(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<std::collections::BTreeMap<i32, i64>, StoreError> {
        self.ensure_offsets_table().await?;
        let mut guard = self.conn.lock().await;
        let conn = self.connection(&mut guard).await?;
        let rows = conn
            .client
            .query(
                &format!(
                    "SELECT \"partition\", next_offset FROM {OFFSETS_TABLE} \
                     WHERE group_id = $1 AND topic = $2"
                ),
                &[&group, &topic],
            )
            .await
            .map_err(|e| classify("read offsets", &e));
        let rows = match rows {
            Ok(r) => r,
            Err(e) => {
                if breaks_connection(&e) {
                    *guard = None;
                }
                return Err(e);
            }
        };
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<_, i32>(0)
                        .map_err(|e| classify("read offsets", &e))?,
                    r.try_get::<_, i64>(1)
                        .map_err(|e| classify("read offsets", &e))?,
                ))
            })
            .collect()
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let mut guard = self.conn.lock().await;
        let conn = match guard.take() {
            Some(c) if !c.client.is_closed() => guard.insert(c),
            _ => {
                let client = self.open_client().await?;
                guard.insert(self.prepare(client).await?)
            }
        };
        let row = conn
            .client
            .query_one(&self.count_sql, &[])
            .await
            .map_err(|e| classify("count", &e))?;
        let n: i64 = row.try_get(0).map_err(|e| classify("count", &e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
