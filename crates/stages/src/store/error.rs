//! Store errors: a retryable / permanent split, and row versus batch.

use std::fmt;

/// What the database (or the driver) said, without the driver's types:
/// the SQLSTATE or SQLite code when there is one, and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    /// PostgreSQL's SQLSTATE (`23514`) or SQLite's extended code name
    /// (`SQLITE_CONSTRAINT_CHECK`), when known.
    pub code: Option<String>,
    /// The message, with its causes.
    pub message: String,
}

impl DbError {
    /// An error with a message and no code.
    pub fn msg(message: impl Into<String>) -> Self {
        DbError {
            code: None,
            message: message.into(),
        }
    }

    /// An error from any `std::error::Error`, its causes appended.
    pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> Self {
        let mut message = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            let text = c.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            cause = c.source();
        }
        DbError::msg(message)
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "[{code}] {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DbError {}

/// A store failed.
///
/// [`is_transient`](StoreError::is_transient) splits them: a transient
/// error (connection lost, serialization failure, deadlock, database busy)
/// is worth retrying the whole batch; anything else is not. [`Row`] and
/// [`Encode`] and [`NoKey`] fail one row only.
///
/// The `Display` text is short; the database's own message is the
/// [`source`](std::error::Error::source), which sluicegate appends when it
/// records the failure (`row "orders/0/7" rejected: [23514] new row for
/// relation "orders" violates check constraint "amount_positive"`).
///
/// [`Row`]: StoreError::Row
/// [`Encode`]: StoreError::Encode
/// [`NoKey`]: StoreError::NoKey
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be reached (at start, or when reconnecting).
    /// The URL has its password replaced by `***`.
    #[error("cannot connect to {backend} at {url}")]
    Unreachable {
        /// `PostgreSQL` or `SQLite`.
        backend: &'static str,
        /// The URL or path, password redacted.
        url: String,
        /// Why.
        #[source]
        source: DbError,
    },
    /// The configuration is unusable (a malformed URL, an invalid table name).
    #[error("invalid store configuration: {0}")]
    Config(String),
    /// A failure worth retrying: the connection was lost, the transaction
    /// hit a serialization failure or a deadlock, the database was busy.
    #[error("{op} failed (transient)")]
    Transient {
        /// What was being done (`begin`, `insert`, `commit`, ...).
        op: &'static str,
        /// The database's error.
        #[source]
        source: DbError,
    },
    /// A failure that a retry would repeat, affecting the whole batch.
    #[error("{op} failed")]
    Permanent {
        /// What was being done.
        op: &'static str,
        /// The database's error.
        #[source]
        source: DbError,
    },
    /// The database rejected one row (a constraint, invalid data); the
    /// batch's other rows were written.
    #[error("row {id:?} rejected")]
    Row {
        /// The row's idempotency key.
        id: String,
        /// The database's error.
        #[source]
        source: DbError,
    },
    /// The value did not serialize to JSON.
    #[error("row payload does not encode as JSON: {0}")]
    Encode(String),
    /// No idempotency key: the origin has no partition and offset, and no
    /// key function is set.
    #[error(
        "row has no idempotency key: its origin has no partition and offset and no key function is set"
    )]
    NoKey,
    /// Transient failures went on past the retry budget.
    #[error("gave up after {attempts} attempts")]
    Exhausted {
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        last: Box<StoreError>,
    },
}

impl StoreError {
    /// Whether retrying the batch may succeed: [`Transient`](StoreError::Transient)
    /// and [`Unreachable`](StoreError::Unreachable) (when reconnecting).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Transient { .. } | StoreError::Unreachable { .. }
        )
    }

    /// Whether this fails one row only, not a batch.
    pub fn is_row_error(&self) -> bool {
        matches!(
            self,
            StoreError::Row { .. } | StoreError::Encode(_) | StoreError::NoKey
        )
    }
}
