//! Rows per second into SQLite and PostgreSQL through the store stage:
//! batched (batches of 500, one transaction each) against one row per
//! transaction (the same stage with batches of 1), in the same run.
//!
//! ```text
//! cargo bench -p sluicegate-stages --bench store [-- --rows N --single-rows M]
//! ```
//!
//! PostgreSQL at `SLUICEGATE_TEST_PG` (default
//! `host=127.0.0.1 port=5432 user=postgres dbname=test`); skipped with a note
//! if unreachable. SQLite files go under the cargo target directory (a real
//! disk, not a tmpfs). Every run checks the table holds exactly the rows
//! written.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluicegate_core::testing::{AckLog, VecSource};
use sluicegate_core::{BatchConfig, BatchSpec, Graph};
use sluicegate_stages::store::{
    PostgresStore, SqliteConfig, SqliteStore, Store, StoreError, StoreStage, Synchronous,
};

const BATCH: usize = 500;

fn records(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "id": format!("o-{i}"),
                "amount": (i % 1000) as f64 + 0.25,
                "currency": "EUR",
                "email_hash": "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                "tags": ["bench", "store"],
            })
        })
        .collect()
}

/// Writes `n` records through the store stage in batches of `batch`;
/// returns rows per second.
async fn measure(store: Arc<dyn Store>, n: usize, batch: usize) -> anyhow::Result<f64> {
    let acks = AckLog::new();
    let stage = StoreStage::<Value>::new(store.clone());
    let stats = stage.stats();
    let mut g = Graph::builder("bench");
    g.source("src", VecSource::new(records(n), acks.clone()))
        .to_batch(BatchSpec::new(
            "store",
            stage,
            BatchConfig::new(batch, Duration::from_millis(20)),
        ));
    let graph = g.build()?;
    let start = Instant::now();
    let report = graph.start().await?.wait().await;
    let elapsed = start.elapsed();
    anyhow::ensure!(report.is_clean(), "bench graph: {report:?}");
    anyhow::ensure!(
        acks.delivered() == n,
        "{} of {n} delivered",
        acks.delivered()
    );
    anyhow::ensure!(
        stats.inserted() == n as u64,
        "{} of {n} inserted",
        stats.inserted()
    );
    let stored = store.count().await?;
    anyhow::ensure!(
        stored == n as u64,
        "table holds {stored} rows, expected {n}"
    );
    Ok(n as f64 / elapsed.as_secs_f64())
}

struct Line {
    backend: String,
    mode: &'static str,
    rows: usize,
    rate: f64,
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    )
}

/// Measures one backend: a warm-up (page cache, code paths), then `rows`
/// in batches of [`BATCH`] and `single_rows` one a transaction, each on a
/// fresh table (`prefix` and a unique suffix) that `open` makes; pushes
/// its two lines to `out` and returns the tables it used.
async fn measure_backend<S, F>(
    label: String,
    prefix: &str,
    open: impl Fn(String) -> F,
    rows: usize,
    single_rows: usize,
    out: &mut Vec<Line>,
) -> anyhow::Result<Vec<String>>
where
    S: Store + 'static,
    F: Future<Output = Result<S, StoreError>>,
{
    let tables = ["warm", "batched", "single"].map(|t| unique(&format!("{prefix}{t}")));
    measure(Arc::new(open(tables[0].clone()).await?), 2_000, BATCH).await?;
    let batched = measure(Arc::new(open(tables[1].clone()).await?), rows, BATCH).await?;
    let single = measure(Arc::new(open(tables[2].clone()).await?), single_rows, 1).await?;
    out.push(Line {
        backend: label.clone(),
        mode: "batched (500/tx)",
        rows,
        rate: batched,
    });
    out.push(Line {
        backend: label,
        mode: "one row per tx",
        rows: single_rows,
        rate: single,
    });
    Ok(tables.into())
}

async fn sqlite(
    dir: &std::path::Path,
    sync: Synchronous,
    rows: usize,
    single_rows: usize,
    out: &mut Vec<Line>,
) -> anyhow::Result<()> {
    let open = |name: String| {
        let mut c = SqliteConfig::new(dir.join(format!("{name}.db")), &name);
        c.synchronous = sync;
        SqliteStore::open_with(c)
    };
    let label = format!("SQLite (WAL, synchronous={sync:?})");
    measure_backend(label, "", open, rows, single_rows, out).await?;
    Ok(())
}

async fn postgres(rows: usize, single_rows: usize, out: &mut Vec<Line>) -> anyhow::Result<()> {
    let url = std::env::var("SLUICEGATE_TEST_PG")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into());
    let (admin, conn) = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok(c) => c,
        Err(e) => {
            println!("PostgreSQL unreachable at {url} ({e}): skipped");
            return Ok(());
        }
    };
    tokio::spawn(conn);
    let show = |name: &'static str| {
        let admin = &admin;
        async move {
            admin
                .query_one(&format!("SHOW {name}"), &[])
                .await
                .map(|r| r.get::<_, String>(0))
                .unwrap_or_default()
        }
    };
    let label = format!(
        "PostgreSQL {} (synchronous_commit={}, fsync={})",
        admin
            .query_one("SHOW server_version", &[])
            .await?
            .get::<_, String>(0),
        show("synchronous_commit").await,
        show("fsync").await,
    );
    let open = |t: String| {
        let url = url.clone();
        async move { PostgresStore::connect(&url, &t).await }
    };
    let tables = measure_backend(label, "sg_bench_", open, rows, single_rows, out).await?;
    for t in &tables {
        admin
            .batch_execute(&format!("DROP TABLE IF EXISTS \"{t}\""))
            .await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rows = arg("--rows", 50_000);
    let single_rows = arg("--single-rows", 2_000);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let mut lines = Vec::new();
    postgres(rows, single_rows, &mut lines).await?;
    sqlite(dir.path(), Synchronous::Full, rows, single_rows, &mut lines).await?;
    sqlite(
        dir.path(),
        Synchronous::Normal,
        rows,
        single_rows,
        &mut lines,
    )
    .await?;

    println!(
        "\n| backend | mode | rows | rows/s | batched / one-per-tx |\n|---|---|---:|---:|---:|"
    );
    for pair in lines.chunks(2) {
        let ratio = pair[0].rate / pair[1].rate;
        for (i, l) in pair.iter().enumerate() {
            let r = if i == 0 {
                format!("{ratio:.1}x")
            } else {
                String::new()
            };
            println!(
                "| {} | {} | {} | {:.0} | {r} |",
                l.backend, l.mode, l.rows, l.rate
            );
        }
    }
    Ok(())
}
