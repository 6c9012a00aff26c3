//! Writing one batch on a connection: the one-statement insert, and row by
//! row under savepoints when a row's data or a constraint fails it.

use std::collections::HashMap;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use super::errors::{classify, db_error, is_row_level};
use crate::store::{GroupOffsets, OFFSETS_TABLE, Row, RowResult, StoreError, Written};

pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) insert: Statement,
}

/// The batch as five column arrays, the statement's parameters.
pub(super) struct Columns<'a> {
    pub(super) ids: Vec<&'a str>,
    pub(super) topics: Vec<Option<&'a str>>,
    pub(super) partitions: Vec<Option<i32>>,
    pub(super) offsets: Vec<Option<i64>>,
    pub(super) payloads: Vec<&'a str>,
}

impl<'a> Columns<'a> {
    fn of(rows: &'a [Row]) -> Self {
        Columns {
            ids: rows.iter().map(|r| r.id.as_str()).collect(),
            topics: rows.iter().map(|r| r.topic.as_deref()).collect(),
            partitions: rows.iter().map(|r| r.partition).collect(),
            offsets: rows.iter().map(|r| r.offset).collect(),
            payloads: rows.iter().map(|r| r.payload.as_str()).collect(),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 5] {
        [
            &self.ids,
            &self.topics,
            &self.partitions,
            &self.offsets,
            &self.payloads,
        ]
    }
}

/// Marks each row inserted or duplicate from the ids the insert returned
/// (a key repeated within the batch is inserted once, then a duplicate).
pub(super) fn mark(rows: &[Row], returned: &[tokio_postgres::Row]) -> Vec<RowResult> {
    let mut inserted: HashMap<String, usize> = HashMap::with_capacity(returned.len());
    for r in returned {
        if let Ok(id) = r.try_get::<_, String>(0) {
            *inserted.entry(id).or_insert(0) += 1;
        }
    }
    rows.iter()
        .map(|row| match inserted.get_mut(&row.id) {
            Some(n) if *n > 0 => {
                *n -= 1;
                Ok(Written::Inserted)
            }
            _ => Ok(Written::Duplicate),
        })
        .collect()
}

/// How the one-statement attempt failed.
pub(super) enum Failure {
    /// A row's data or a constraint: isolate the bad rows.
    RowLevel,
    /// Anything else: the batch fails with this error.
    Batch(StoreError),
}

/// Upserts `o` in the transaction `tx` (never moving an offset back).
pub(super) async fn write_offsets(
    tx: &tokio_postgres::Transaction<'_>,
    o: GroupOffsets<'_>,
) -> Result<(), tokio_postgres::Error> {
    let topics: Vec<&str> = o.offsets.iter().map(|(t, _, _)| t.as_str()).collect();
    let partitions: Vec<i32> = o.offsets.iter().map(|(_, p, _)| *p).collect();
    let next: Vec<i64> = o.offsets.iter().map(|(_, _, n)| *n).collect();
    tx.execute(
        &format!(
            "INSERT INTO {OFFSETS_TABLE} (group_id, topic, \"partition\", next_offset) \
             SELECT $1::text, u.topic, u.part, u.next \
             FROM unnest($2::text[], $3::int4[], $4::int8[]) AS u(topic, part, next) \
             ON CONFLICT (group_id, topic, \"partition\") DO UPDATE \
             SET next_offset = excluded.next_offset, updated_at = now() \
             WHERE excluded.next_offset > {OFFSETS_TABLE}.next_offset"
        ),
        &[&o.group, &topics, &partitions, &next],
    )
    .await
    .map(|_| ())
}

pub(super) async fn write_fast(
    conn: &mut Conn,
    rows: &[Row],
    offsets: Option<GroupOffsets<'_>>,
) -> Result<Vec<RowResult>, Failure> {
    let Conn { client, insert } = conn;
    let tx = client
        .transaction()
        .await
        .map_err(|e| Failure::Batch(classify("begin", &e)))?;
    let columns = Columns::of(rows);
    let returned = match tx.query(&*insert, &columns.params()).await {
        Ok(r) => r,
        // Dropping `tx` rolls back.
        Err(e) if is_row_level(&e) => return Err(Failure::RowLevel),
        Err(e) => return Err(Failure::Batch(classify("insert", &e))),
    };
    if let Some(o) = offsets {
        write_offsets(&tx, o)
            .await
            .map_err(|e| Failure::Batch(classify("write offsets", &e)))?;
    }
    tx.commit()
        .await
        .map_err(|e| Failure::Batch(classify("commit", &e)))?;
    Ok(mark(rows, &returned))
}

pub(super) async fn write_isolating(
    conn: &mut Conn,
    rows: &[Row],
    offsets: Option<GroupOffsets<'_>>,
) -> Result<Vec<RowResult>, StoreError> {
    let Conn { client, insert } = conn;
    let mut tx = client
        .transaction()
        .await
        .map_err(|e| classify("begin", &e))?;
    let mut results = Vec::with_capacity(rows.len());
    for row in rows {
        let one = std::slice::from_ref(row);
        let columns = Columns::of(one);
        let sp = tx
            .savepoint("sluicegate_row")
            .await
            .map_err(|e| classify("savepoint", &e))?;
        match sp.query(&*insert, &columns.params()).await {
            Ok(returned) => {
                sp.commit()
                    .await
                    .map_err(|e| classify("release savepoint", &e))?;
                results.extend(mark(one, &returned));
            }
            Err(e) if is_row_level(&e) => {
                sp.rollback()
                    .await
                    .map_err(|e| classify("rollback to savepoint", &e))?;
                results.push(Err(StoreError::Row {
                    id: row.id.clone(),
                    source: db_error(&e),
                }));
            }
            Err(e) => return Err(classify("insert", &e)),
        }
    }
    if let Some(o) = offsets {
        let capped = crate::store::cap_offsets(o.offsets, rows, &results);
        let o = GroupOffsets {
            group: o.group,
            offsets: &capped,
        };
        write_offsets(&tx, o)
            .await
            .map_err(|e| classify("write offsets", &e))?;
    }
    tx.commit().await.map_err(|e| classify("commit", &e))?;
    Ok(results)
}
