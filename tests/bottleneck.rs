//! The binary names the stage that holds the reference pipeline back: a run
//! with a deliberately slowed transform names `transform`, a run whose
//! store is slowed (a PostgreSQL trigger that sleeps per insert statement)
//! names `store`. Each run is the embedded default (librdkafka's mock
//! cluster in the process), so only PostgreSQL is needed; the bottleneck is
//! the summary's, over the whole run, reconciled with what was stored.

mod common;

use common::*;
use serde_json::Value;
use sluicegate_runner::generate::count_malformed;

const RECORDS: u64 = 2_000;

/// Runs the embedded default over [`RECORDS`] records with `flags`; the
/// summary, after checking every record is accounted for.
fn run_embedded(what: &str, flags: &[&str]) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("summary.json");
    let records = RECORDS.to_string();
    let mut args = vec![
        "run",
        "--records",
        &records,
        "--partitions",
        "2",
        "--http",
        "off",
        "--summary-file",
        file.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(flags);
    let out = run(&args, what);
    assert_eq!(out.status.code(), Some(0), "{what}:\n{}", stderr(&out));
    let s = summary(&file);
    let bad = count_malformed(0, RECORDS, 0.02);
    assert_eq!(n(&s, "records_in"), RECORDS, "{s}");
    assert_eq!(n(&s, "stored") + n(&s, "duplicates"), RECORDS - bad, "{s}");
    assert_eq!(n(&s, "dead_lettered"), bad, "{s}");
    s
}

/// 300 HMAC rounds per record on one worker (some 3 ms a record in the
/// test profile, against well under 0.1 ms in every other stage): the
/// transform is saturated and everything before it waits on it; the sink
/// after it (1,024 deliveries allowed at once, always some in flight) is
/// not named. (At 3,000 rounds the run took 57 s alone and passed its
/// 90 s limit under the full suite's load.)
#[test]
fn a_slowed_transform_is_named_the_bottleneck() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite://{}", dir.path().join("t.db").display());
    let s = run_embedded(
        "the run with a slow transform",
        &[
            "--hash-rounds",
            "300",
            "--transform-workers",
            "1",
            "--store",
            &store,
        ],
    );
    assert_eq!(s["bottleneck"], "transform", "{s}");
}

/// Every insert statement into the table sleeps 50 ms and a batch holds
/// at most 50 rows: the store is saturated and the transform waits on it.
#[test]
fn a_slowed_store_is_named_the_bottleneck() {
    let table = format!("bottleneck_{}", std::process::id());
    psql(&format!(
        "DROP TABLE IF EXISTS {table};
         CREATE TABLE {table} (id TEXT PRIMARY KEY, topic TEXT, \"partition\" INTEGER, \"offset\" BIGINT, \
         payload JSONB NOT NULL, stored_at TIMESTAMPTZ NOT NULL DEFAULT now());
         CREATE OR REPLACE FUNCTION {table}_slow() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN PERFORM pg_sleep(0.05); RETURN NULL; END $$;
         CREATE TRIGGER {table}_slow AFTER INSERT ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {table}_slow();"
    ));
    let s = run_embedded(
        "the run with a slow store",
        &[
            "--store",
            DATABASE,
            "--table",
            &table,
            "--store-batch",
            "50",
            "--hash-rounds",
            "1",
        ],
    );
    let rows: u64 = psql(&format!("SELECT count(*) FROM {table}"))
        .parse()
        .expect("a count");
    psql(&format!("DROP TABLE {table}; DROP FUNCTION {table}_slow()"));
    assert_eq!(rows, n(&s, "stored"), "{s}");
    assert_eq!(s["bottleneck"], "store", "{s}");
}
