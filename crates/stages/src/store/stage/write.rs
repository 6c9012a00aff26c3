//! Writing a batch: its rows, one transaction retried as the policy says
//! (or, after a transient failure with non-blocking retries, a transaction
//! a row), and each value's result counted.

use serde::Serialize;
use sluicegate_core::Origin;
use sluicegate_core::ledger::{Offsets, offsets_for};

use super::{StoreStage, StoreStats};
use crate::store::{DbError, Row, RowResult, StoreError, Written};

impl<T: Serialize + Send + 'static> StoreStage<T> {
    /// Writes `rows`, retrying transient failures as the policy says.
    pub(super) async fn write_with_retry(
        &self,
        rows: &[Row],
        offsets: Option<(&str, &Offsets)>,
    ) -> Result<Vec<RowResult>, StoreError> {
        let mut attempt = 1;
        loop {
            let written = match offsets {
                Some((group, offsets)) => self.store.write_with_offsets(rows, group, offsets).await,
                None => self.store.write(rows).await,
            };
            match written {
                Ok(results) => return Ok(results),
                Err(e) if e.is_transient() && self.non_blocking => return Err(e),
                Err(e) if e.is_transient() && self.retry.allows_another(attempt) => {
                    StoreStats::add(&self.stats.inner.retries, 1);
                    let backoff = self.retry.backoff(attempt);
                    tracing::warn!(
                        store = %self.store.describe(),
                        attempt,
                        rows = rows.len(),
                        error = %error_chain(&e),
                        ?backoff,
                        "transient store error; retrying the batch"
                    );
                    tokio::time::sleep(backoff).await;
                    attempt += 1;
                }
                Err(e) if e.is_transient() => {
                    return Err(StoreError::Exhausted {
                        attempts: attempt,
                        last: Box::new(e),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl<T> StoreStage<T> {
    /// Each row in a transaction of its own (after its batch failed
    /// transiently), each with its own result.
    pub(super) async fn write_one_by_one(&self, rows: &[Row]) -> Vec<RowResult> {
        let mut results = Vec::with_capacity(rows.len());
        for row in rows {
            // The database away: the rows left fail the same way, without
            // a connection attempt each.
            if let Some(Err(e @ StoreError::Unreachable { .. })) = results.last() {
                let e = e.clone();
                results.push(Err(e));
                continue;
            }
            let result = match self.store.write(std::slice::from_ref(row)).await {
                Ok(mut one) if one.len() == 1 => {
                    StoreStats::add(&self.stats.inner.commits, 1);
                    one.remove(0)
                }
                Ok(other) => Err(StoreError::Permanent {
                    op: "write",
                    source: DbError::msg(format!(
                        "the store returned {} results for 1 row",
                        other.len()
                    )),
                }),
                Err(e) => Err(e),
            };
            results.push(result);
        }
        results
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

impl<T: Serialize + Send + 'static> StoreStage<T> {
    /// Each value's row, or (`Some` in the first list) why it has none.
    pub(super) fn rows(
        &self,
        batch: &[T],
        origins: &[&Origin],
    ) -> (Vec<Option<StoreError>>, Vec<Row>) {
        StoreStats::add(&self.stats.inner.batches, 1);
        let mut early: Vec<Option<StoreError>> = Vec::with_capacity(batch.len());
        let mut rows = Vec::with_capacity(batch.len());
        for (value, origin) in batch.iter().zip(origins) {
            match self.row(value, origin) {
                Ok(row) => {
                    rows.push(row);
                    early.push(None);
                }
                Err(e) => early.push(Some(e)),
            }
        }
        (early, rows)
    }

    /// Writes the rows (one transaction, retried as the policy says) and
    /// returns each value's result, counted in the stats.
    pub(super) async fn write_rows(
        &self,
        early: Vec<Option<StoreError>>,
        rows: Vec<Row>,
        origins: &[&Origin],
    ) -> Vec<Result<(), StoreError>> {
        let stats = &self.stats.inner;
        let written = if rows.is_empty() {
            Ok(Vec::new())
        } else if let Some((ledger, gap_wait)) = &self.offsets {
            // The records whose rows go in: the others are not finishing.
            let writing: Vec<&Origin> = origins
                .iter()
                .zip(&early)
                .filter(|(_, e)| e.is_none())
                .map(|(o, _)| *o)
                .collect();
            let (offsets, short) = offsets_for(&**ledger, &writing, *gap_wait).await;
            if !short.is_empty() {
                tracing::debug!(store = %self.store.describe(), partitions = ?short, "offsets stop short of the batch: an earlier record is unfinished");
            }
            let group = ledger.group();
            let written = self.write_with_retry(&rows, Some((&group, &offsets))).await;
            if let Ok(results) = &written {
                ledger.committed(&crate::store::cap_offsets(&offsets, &rows, results));
            }
            written
        } else {
            match self.write_with_retry(&rows, None).await {
                Err(e) if e.is_transient() && self.non_blocking && rows.len() > 1 => {
                    tracing::debug!(store = %self.store.describe(), rows = rows.len(), error = %error_chain(&e), "transient batch failure; writing its rows one at a time");
                    Ok(self.write_one_by_one(&rows).await)
                }
                written => written,
            }
        };
        let written = match written {
            Ok(w) if w.len() == rows.len() => {
                if !rows.is_empty() {
                    StoreStats::add(&stats.commits, 1);
                }
                w
            }
            other => {
                let e = match other {
                    Err(e) => e,
                    Ok(w) => StoreError::Permanent {
                        op: "write",
                        source: DbError::msg(format!(
                            "the store returned {} results for {} rows",
                            w.len(),
                            rows.len()
                        )),
                    },
                };
                StoreStats::add(&stats.batches_failed, 1);
                tracing::warn!(
                    store = %self.store.describe(),
                    rows = rows.len(),
                    error = %error_chain(&e),
                    "store batch failed"
                );
                vec![Err(e); rows.len()]
            }
        };
        let mut written = written.into_iter();
        early
            .into_iter()
            .map(|slot| {
                let r = match slot {
                    Some(e) => Err(e),
                    None => written.next().unwrap_or_else(|| {
                        Err(StoreError::Permanent {
                            op: "write",
                            source: DbError::msg("missing result"),
                        })
                    }),
                };
                match r {
                    Ok(Written::Inserted) => {
                        StoreStats::add(&stats.inserted, 1);
                        Ok(())
                    }
                    Ok(Written::Duplicate) => {
                        StoreStats::add(&stats.duplicates, 1);
                        Ok(())
                    }
                    Err(e) => {
                        StoreStats::add(&stats.rows_failed, 1);
                        Err(e)
                    }
                }
            })
            .collect()
    }
}
