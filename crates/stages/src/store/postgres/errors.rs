//! PostgreSQL errors: their SQLSTATE, and which are transient, which a
//! row's own and which break the connection.

use crate::store::{DbError, StoreError};

/// The SQLSTATE of a driver error.
pub(super) fn sqlstate(e: &tokio_postgres::Error) -> Option<&str> {
    e.code().map(|c| c.code())
}

pub(super) fn db_error(e: &tokio_postgres::Error) -> DbError {
    match e.as_db_error() {
        Some(db) => DbError {
            code: Some(db.code().code().to_string()),
            message: db.message().to_string(),
        },
        None => DbError::chain(e),
    }
}

pub(super) fn is_transient(e: &tokio_postgres::Error) -> bool {
    match sqlstate(e) {
        Some(s) => {
            s.starts_with("08")
                || matches!(
                    s,
                    "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300" | "55P03"
                )
        }
        // No SQLSTATE: the connection closed, or an I/O error.
        None => {
            e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        }
    }
}

/// Whether the error is about one row's data or a constraint.
pub(super) fn is_row_level(e: &tokio_postgres::Error) -> bool {
    sqlstate(e).is_some_and(|s| s.starts_with("22") || s.starts_with("23"))
}

pub(super) fn classify(op: &'static str, e: &tokio_postgres::Error) -> StoreError {
    let source = db_error(e);
    if is_transient(e) {
        StoreError::Transient { op, source }
    } else {
        StoreError::Permanent { op, source }
    }
}

/// Whether the connection is unusable after `e`.
pub(super) fn breaks_connection(e: &StoreError) -> bool {
    match e {
        StoreError::Transient { source, .. } => source
            .code
            .as_deref()
            .is_none_or(|c| c.starts_with("08") || c.starts_with("57P")),
        StoreError::Unreachable { .. } => true,
        _ => false,
    }
}
