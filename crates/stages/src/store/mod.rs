//! Stores: idempotent, batched writes into SQLite or PostgreSQL.
//!
//! The [`Store`] trait is the backend abstraction (object safe, so a runner
//! holds an `Arc<dyn Store>` picked from configuration with [`open`]); the
//! [`StoreStage`] adapter turns any store into a
//! [`BatchStage`](sluicegate_core::BatchStage) that core feeds with batches
//! gathered by count, bytes and deadline.
//!
//! Every backend keeps the same contract:
//!
//! - **Idempotent**: each row has an idempotency key (from the record's
//!   origin: topic, partition and offset; or a key function), the table's
//!   primary key, and writes are insert-or-ignore on it. A batch replayed
//!   after a crash writes no duplicate rows.
//! - **Acknowledged after commit**: [`Store::write`] returns only after the
//!   batch's transaction committed, so the acknowledgements core resolves
//!   from its result never run ahead of the data. A failed commit fails the
//!   batch.
//! - **One bad row fails alone**: a row the database rejects (a constraint,
//!   invalid data) comes back as that row's [`StoreError::Row`]; the other
//!   rows are written.
//! - **Transient errors are the caller's to retry**: a backend tries once and
//!   says [`is_transient`](StoreError::is_transient); [`StoreStage`] retries
//!   with backoff ([`RetryPolicy`]), reconnecting as needed.
//! - **The table is created if missing**, with the columns
//!   `id` (primary key), `topic`, `partition`, `offset`, `payload` (the
//!   record as JSON) and `stored_at`.
//!
//! Backends: [`SqliteStore`] (embedded; the default when no database is
//! given) and [`PostgresStore`].

mod error;
mod open;
mod postgres;
mod sqlite;
mod stage;

use async_trait::async_trait;

pub use error::{DbError, StoreError};
pub use open::{DEFAULT_SQLITE_PATH, open, redact_url};
pub use postgres::{PostgresConfig, PostgresStore};
pub use sluicegate_core::RetryPolicy;
pub use sqlite::{SqliteConfig, SqliteStore, Synchronous};
pub use stage::{ForwardStored, StoreStage, StoreStats, origin_key};

/// One row to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The idempotency key: the table's primary key. See
    /// [`StoreStage`] for how it is made.
    pub id: String,
    /// The record's topic, when known.
    pub topic: Option<String>,
    /// The record's partition, when known.
    pub partition: Option<i32>,
    /// The record's offset, when known.
    pub offset: Option<i64>,
    /// The record as JSON text.
    pub payload: String,
}

/// How a row was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// A new row.
    Inserted,
    /// A row with the same key was already there (a replay); nothing changed.
    Duplicate,
}

/// The result for one row of a batch.
pub type RowResult = Result<Written, StoreError>;

/// A database that stores rows idempotently, one transaction per batch.
///
/// Implementations must keep the contract in the [module docs](self):
/// insert-or-ignore on [`Row::id`], return only after commit, one result
/// per row in order, a rejected row as that row's [`StoreError::Row`], and
/// one attempt per call (retries belong to the caller).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Where the rows go, for logs and errors: backend, URL or path
    /// (password redacted) and table.
    fn describe(&self) -> String;

    /// Writes `rows` in one transaction and returns after it committed.
    ///
    /// # Errors
    ///
    /// An error for the whole batch (nothing of it was committed): transient
    /// ones ([`StoreError::is_transient`]) may succeed on a retry. Rows the
    /// database rejected are `Err` entries in the `Ok` vector instead.
    async fn write(&self, rows: &[Row]) -> Result<Vec<RowResult>, StoreError>;

    /// How many rows the table holds.
    ///
    /// # Errors
    ///
    /// When the database cannot be queried.
    async fn count(&self) -> Result<u64, StoreError>;

    /// Writes `rows` and a consumer group's `offsets` (topic, partition,
    /// next offset to read) in one transaction: both are committed, or
    /// neither. Offsets go to the [offsets table](OFFSETS_TABLE), keyed by
    /// group, topic and partition, and never move back (an offset lower
    /// than the one stored leaves it). With no rows, it commits the
    /// offsets alone.
    ///
    /// # Errors
    ///
    /// As [`Store::write`]; [`StoreError::Config`] from a store that does not
    /// keep offsets (the default).
    async fn write_with_offsets(
        &self,
        rows: &[Row],
        group: &str,
        offsets: &[(String, i32, i64)],
    ) -> Result<Vec<RowResult>, StoreError> {
        let _ = (rows, group, offsets);
        Err(StoreError::Config(format!(
            "{} does not keep consumer offsets",
            self.describe()
        )))
    }

    /// The next offset to read of each partition of `topic` that `group`
    /// stored (partitions with none are absent).
    ///
    /// # Errors
    ///
    /// When the database cannot be queried; [`StoreError::Config`] from a
    /// store that does not keep offsets (the default).
    async fn read_offsets(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<std::collections::BTreeMap<i32, i64>, StoreError> {
        let _ = (group, topic);
        Err(StoreError::Config(format!(
            "{} does not keep consumer offsets",
            self.describe()
        )))
    }
}

/// `offsets` lowered, per partition, to the first row of `rows` the
/// database refused (that record is not finished: it goes to the
/// dead-letter route after the commit). For [`Store::write_with_offsets`]
/// implementations, between writing the rows and the offsets.
pub fn cap_offsets(
    offsets: &[(String, i32, i64)],
    rows: &[Row],
    results: &[RowResult],
) -> Vec<(String, i32, i64)> {
    offsets
        .iter()
        .map(|(t, p, o)| {
            let refused = rows
                .iter()
                .zip(results)
                .filter(|(row, r)| {
                    r.is_err()
                        && row.topic.as_deref() == Some(t.as_str())
                        && row.partition == Some(*p)
                })
                .filter_map(|(row, _)| row.offset)
                .min();
            (t.clone(), *p, refused.map_or(*o, |r| r.min(*o)))
        })
        .collect()
}

/// A consumer group's offsets to write with a batch, in the backends.
#[derive(Clone, Copy)]
pub(crate) struct GroupOffsets<'a> {
    pub(crate) group: &'a str,
    pub(crate) offsets: &'a [(String, i32, i64)],
}

/// The table a store keeps consumer offsets in (next to its rows, in the
/// same database): `(group_id, topic, partition)` is its key,
/// `next_offset` the offset to read next.
pub const OFFSETS_TABLE: &str = "sluicegate_offsets";

/// Checks a table name (`name` or `schema.name`, ASCII letters, digits and
/// underscores, not starting with a digit, at most 63 bytes a part) and
/// quotes it for SQL.
pub(crate) fn quote_table(name: &str) -> Result<String, StoreError> {
    let parts: Vec<&str> = name.split('.').collect();
    let valid = |p: &str| {
        !p.is_empty()
            && p.len() <= 63
            && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !p.as_bytes()[0].is_ascii_digit()
    };
    if parts.len() > 2 || !parts.iter().all(|p| valid(p)) {
        return Err(StoreError::Config(format!(
            "table name {name:?} must be `name` or `schema.name` of ASCII letters, digits and underscores"
        )));
    }
    Ok(parts
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_checked_and_quoted() {
        assert_eq!(quote_table("orders").ok().as_deref(), Some("\"orders\""));
        assert_eq!(
            quote_table("app.orders_2").ok().as_deref(),
            Some("\"app\".\"orders_2\"")
        );
        for bad in ["", "1x", "a;drop", "a.b.c", "x\"y", "a.", "é"] {
            assert!(quote_table(bad).is_err(), "{bad:?} accepted");
        }
    }
}
