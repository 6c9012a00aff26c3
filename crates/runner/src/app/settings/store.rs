//! [`StoreSettings`]: the database the `store` stage writes to, and the
//! retry levels' delays ([`parse_delay`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::app::defaults;

/// The database side.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// `postgres://...`, `host=... dbname=...` or `sqlite://PATH`. `None`:
    /// with a real cluster, SQLite at `sluicegate.db`; in the embedded
    /// default, a fresh SQLite file in the temporary directory.
    pub url: Option<String>,
    /// Table written to (created if missing).
    pub table: String,
    /// Rows per transaction at most.
    pub batch: usize,
    /// A batch is written when it is full or its first row waited this long.
    pub batch_wait_ms: u64,
    /// Keep the consumer group's offsets in this database, written in the
    /// same transaction as each batch's rows (exactly-once into the store:
    /// after a crash no stored row is written again), and resume from them
    /// (see [`pipeline`](crate::pipeline)).
    pub offsets: bool,
    /// Non-blocking retries: the delay of each retry level (`"1s"`,
    /// `"500ms"`, `"2m"`). A record the store refuses transiently (a lock
    /// timeout, a serialization failure, the database away) goes to the
    /// retry topic of its attempt (`{input}.retry.1s`, ...), and comes
    /// back when due, while its partition's commits move on; after the
    /// last level it is dead-lettered with its history. Empty (the
    /// default): the store retries a failed batch in place, holding the
    /// partitions behind it.
    pub retry_delays: Vec<String>,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            url: None,
            table: defaults::TABLE.into(),
            batch: defaults::STORE_BATCH,
            batch_wait_ms: defaults::STORE_BATCH_WAIT_MS,
            offsets: false,
            retry_delays: Vec::new(),
        }
    }
}

/// Parses a delay: a whole number and a unit, `ms`, `s`, `m` or `h`
/// (`"250ms"`, `"1s"`, `"2m"`).
///
/// # Errors
///
/// What is wrong with it.
pub fn parse_delay(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    let (number, unit) = t.split_at(digits);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a delay like 1s, 500ms or 2m"))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => {
            return Err(format!(
                "{text:?} is not a delay like 1s, 500ms or 2m (units: ms, s, m, h)"
            ));
        }
    };
    if d.is_zero() {
        return Err(format!("{text:?}: a retry delay must be more than 0"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_parse_with_their_unit() {
        assert_eq!(parse_delay("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_delay(" 1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_delay("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_delay("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "1", "s", "1.5s", "-1s", "1d", "0ms"] {
            assert!(parse_delay(bad).is_err(), "{bad:?}");
        }
    }
}
