//! The malformed corpus through the whole pipeline, into SQLite and into
//! PostgreSQL: decode and validate, transform (filter, try_map), enrich and
//! hash on the blocking pool, store. Every bad record is dead-lettered with
//! its expected reason, every good one stored, and the counts reconcile:
//! in = stored + dead-lettered + filtered.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::backend::Backend;
use common::corpus::{self, Expect};
use common::postgres::Postgres;
use common::sqlite::Sqlite;
use common::{DeadLog, LIMIT, id, unique_table};
use sluicegate_core::testing::{AckLog, VecSource, run_to_end, within};
use sluicegate_core::{BatchConfig, BatchSpec, Graph, Outcome, StageSpec};
use sluicegate_stages::Record;
use sluicegate_stages::orders;
use sluicegate_stages::store::{Store, StoreStage};

struct Outcomes {
    acks: AckLog,
    dead: DeadLog,
    validated: sluicegate_stages::validate::ValidationStats,
}

async fn run(store: Arc<impl Store + 'static>) -> Outcomes {
    let cases = corpus::cases();
    let input: Vec<Bytes> = cases.iter().map(|c| Bytes::from(c.input.clone())).collect();
    let validator = corpus::validator();
    let acks = AckLog::new();
    let dead = DeadLog::default();
    let mut g = Graph::builder("corpus");
    g.dead_letters(StageSpec::new("dlq", dead.clone()));
    orders::stages(
        g.source("src", VecSource::new(input, acks.clone())),
        validator.clone(),
        *b"corpus-key",
        50,
    )
    .to_batch(BatchSpec::new(
        "store",
        StoreStage::<Record>::new(store),
        BatchConfig::new(8, Duration::from_millis(20)),
    ));
    let report = run_to_end(g, LIMIT).await;
    assert!(report.is_clean(), "{report:?}");
    Outcomes {
        acks,
        dead,
        validated: validator.stats(),
    }
}

/// Checks every case's fate and the reconciliation, given the stored ids.
fn check(out: &Outcomes, stored: &[String]) {
    let cases = corpus::cases();
    let n = cases.len() as i64;
    out.acks.assert_each_once(n);
    let dead = out.dead.items();
    let mut failures = Vec::new();
    for (offset, c) in cases.iter().enumerate() {
        let offset = offset as i64;
        let letters: Vec<_> = dead.iter().filter(|d| d.offset == offset).collect();
        let is_stored = stored.contains(&id(offset));
        let outcome = out.acks.outcome(offset);
        let ok = match &c.expect {
            Expect::Stored => {
                is_stored && letters.is_empty() && outcome.is_some_and(|o| o.is_delivered())
            }
            Expect::Filtered => {
                !is_stored && letters.is_empty() && matches!(outcome, Some(Outcome::Dropped(_)))
            }
            Expect::Dead { stage, reason } => {
                !is_stored
                    && letters.len() == 1
                    && letters[0].stage == *stage
                    && letters[0].message == *reason
                    && matches!(outcome, Some(Outcome::DeadLettered(_)))
            }
        };
        if !ok {
            failures.push(format!(
                "{} (offset {offset}): expected {:?}; stored {is_stored}, dead letters {letters:?}, ack {:?}",
                c.name, c.expect, out.acks.outcome(offset)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let want_stored = cases.iter().filter(|c| c.expect == Expect::Stored).count();
    let want_filtered = cases
        .iter()
        .filter(|c| c.expect == Expect::Filtered)
        .count();
    let want_dead = cases.len() - want_stored - want_filtered;
    assert_eq!(
        (stored.len(), out.acks.dead_lettered(), out.acks.dropped()),
        (want_stored, want_dead, want_filtered)
    );
    // The reconciliation: every record that came in is accounted for once.
    assert_eq!(
        cases.len(),
        stored.len() + dead.len() + out.acks.dropped(),
        "in = stored + dead-lettered + filtered"
    );
    assert_eq!(out.acks.delivered(), stored.len());
    assert_eq!(out.acks.failed(), 0);
    assert_eq!(
        out.validated.checked,
        cases.len() as u64,
        "the validator saw every record"
    );
}

/// Runs the corpus into a fresh table of `backend` and checks it against
/// the rows read back from the database; returns the table.
async fn run_into<B: Backend>(backend: &B) -> String {
    let table = unique_table("corpus");
    let out = run(backend.open(&table).await).await;
    check(&out, &backend.ids(&table).await);
    table
}

#[tokio::test]
async fn corpus_into_sqlite() {
    run_into(&Sqlite::new().await).await;
}

#[tokio::test]
async fn corpus_into_postgres() {
    let pg = Postgres::new().await;
    let table = run_into(&pg).await;
    // What was stored is the enriched record: pseudonymised e-mail, fingerprint, cents.
    let row = within(
        LIMIT,
        "reading a stored record",
        pg.admin.query_one(
            &format!("SELECT payload::text FROM \"{table}\" WHERE id = $1"),
            &[&id(1)],
        ),
    )
    .await
    .expect("row");
    let payload: serde_json::Value =
        serde_json::from_str(row.get::<_, &str>(0)).expect("stored JSON");
    assert_eq!(payload[orders::CENTS_FIELD], 9950);
    assert_eq!(payload["email"].as_str().map(str::len), Some(64));
    assert_ne!(payload["email"], "a@example.com");
    assert_eq!(payload["fingerprint"].as_str().map(str::len), Some(64));
    pg.cleanup(&[]).await;
}
