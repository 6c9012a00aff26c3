//! What the store contract suite (`store_contract`) needs of a database
//! backend; `sqlite` and `postgres` implement it.
#![allow(async_fn_in_trait)]

use std::sync::Arc;

use serde_json::Value;
use sluicegate_stages::store::{Store, StoreStats};

/// A check, on the test's own connection, that the row with an id is in a
/// table (committed).
pub type RowVisible = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// What the contract suite needs of a backend: fresh stores and tables,
/// the rows read back from the database itself, and ways to make it fail.
pub trait Backend: Sized {
    /// The backend's store.
    type Store: Store + 'static;

    /// A fresh database to test in (for PostgreSQL, the test's connections
    /// to the server; a missing server fails the test).
    async fn new() -> Self;

    /// A store on `table`, which it creates if missing.
    async fn open(&self, table: &str) -> Arc<Self::Store>;

    /// A store on `table` that gives up quickly on a lock another
    /// connection holds, where the backend waits for locks in the store.
    async fn open_impatient(&self, table: &str) -> Arc<Self::Store>;

    /// The ids stored in `table`, sorted, read on the test's connection.
    async fn ids(&self, table: &str) -> Vec<String>;

    /// Creates `table` with the store's columns and a deferred foreign key
    /// that every row breaks, so that each commit into it fails.
    async fn create_failing_commit_table(&self, table: &str);

    /// The message of a batch whose commit into such a table failed.
    fn failed_commit_message(&self, table: &str) -> String;

    /// Creates `table` with the store's columns and a check constraint
    /// `amount_not_negative` refusing rows whose payload has a negative
    /// `amount`.
    async fn create_refusing_table(&self, table: &str);

    /// The message of the row `id` that constraint refused.
    fn refused_message(&self, table: &str, id: &str) -> String;

    /// A record `n` (stored as `id`) that this backend cannot store
    /// whatever the table, and its row's message; `None` if there is none.
    fn unstorable(&self, n: i64, id: &str) -> Option<(Value, String)>;

    /// From another connection, stops writes into `table` until
    /// [`unblock`](Self::unblock).
    async fn block_writes(&self, table: &str);

    /// Waits until the store's write into `table` is held by
    /// [`block_writes`](Self::block_writes).
    async fn wait_blocked(&self, table: &str, stats: &StoreStats);

    /// Lets writes through again.
    async fn unblock(&self);

    /// A synchronous check that a row is committed, for checks inside an
    /// acknowledgement; `None` if the test has no synchronous client.
    fn row_visible(&self, table: &str) -> Option<RowVisible>;

    /// The connections `store` has opened, if the backend counts them.
    fn connections(store: &Self::Store) -> Option<u64>;

    /// Drops what the test made (at the end of a passing test), and the
    /// consumer offsets of `groups`.
    async fn cleanup(&self, groups: &[&str]);
}
