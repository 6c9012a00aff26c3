//! Picking a backend from configuration, and keeping passwords out of messages.

use std::sync::{Arc, OnceLock};

use regex::Regex;

use super::{PostgresStore, SqliteStore, Store, StoreError};

/// Where the embedded SQLite database goes when no database is given.
pub const DEFAULT_SQLITE_PATH: &str = "sluicegate.db";

/// Opens the store that `database` names, with `table` in it:
///
/// - `None`: SQLite at [`DEFAULT_SQLITE_PATH`] in the working directory;
/// - `postgres://...` or `postgresql://...`, or a key-value string with
///   `host=`: PostgreSQL ([`PostgresStore`]);
/// - `sqlite://PATH` or `sqlite:PATH`: SQLite at `PATH` ([`SqliteStore`]).
///
/// # Errors
///
/// [`StoreError::Config`] for anything else or an invalid table name;
/// [`StoreError::Unreachable`] naming the URL (password redacted) when the
/// database cannot be reached at start.
///
/// # Example
///
/// ```no_run
/// # async fn run() -> Result<(), sluicegate_stages::store::StoreError> {
/// let store = sluicegate_stages::store::open(Some("postgres://app@db:5432/events"), "orders").await?;
/// println!("writing to {}", store.describe());
/// # Ok(())
/// # }
/// ```
pub async fn open(database: Option<&str>, table: &str) -> Result<Arc<dyn Store>, StoreError> {
    let url = database.map(str::trim).filter(|s| !s.is_empty());
    match url {
        None => Ok(Arc::new(
            SqliteStore::open(DEFAULT_SQLITE_PATH, table).await?,
        )),
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
            Ok(Arc::new(PostgresStore::connect(u, table).await?))
        }
        Some(u) if u.contains("host=") || u.contains("dbname=") => {
            Ok(Arc::new(PostgresStore::connect(u, table).await?))
        }
        Some(u) => match u
            .strip_prefix("sqlite://")
            .or_else(|| u.strip_prefix("sqlite:"))
        {
            Some(path) if !path.is_empty() => Ok(Arc::new(SqliteStore::open(path, table).await?)),
            _ => Err(StoreError::Config(format!(
                "unknown database {:?}: expected postgres://..., host=... or sqlite://PATH (or none for SQLite at {DEFAULT_SQLITE_PATH})",
                redact_url(u)
            ))),
        },
    }
}

/// `url` with any password replaced by `***`: in the user-info of a URL
/// (`postgres://user:secret@host` → `postgres://user:***@host`) and in
/// `password=...` parameters of URLs and key-value strings.
pub fn redact_url(url: &str) -> String {
    static USERINFO: OnceLock<Option<Regex>> = OnceLock::new();
    static PARAM: OnceLock<Option<Regex>> = OnceLock::new();
    let userinfo = USERINFO.get_or_init(|| Regex::new(r"(://[^:/@?#]*:)[^@/?#]*@").ok());
    let param =
        PARAM.get_or_init(|| Regex::new(r"(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)").ok());
    let mut out = url.to_string();
    if let Some(re) = userinfo {
        out = re.replace_all(&out, "${1}***@").into_owned();
    }
    if let Some(re) = param {
        out = re.replace_all(&out, "${1}***").into_owned();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        let cases = [
            (
                "postgres://app:s3cr%40t@db.local:5432/events",
                "postgres://app:***@db.local:5432/events",
            ),
            ("postgres://app@db/events", "postgres://app@db/events"),
            (
                "postgresql://db/events?user=app&password=hunter2&sslmode=require",
                "postgresql://db/events?user=app&password=***&sslmode=require",
            ),
            (
                r"host=db user=app password='it\'s secret' dbname=x",
                "host=db user=app password=*** dbname=x",
            ),
            (
                "host=db PASSWORD = hunter2 dbname=x",
                "host=db PASSWORD = *** dbname=x",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact_url(input), want, "{input}");
        }
    }
}
