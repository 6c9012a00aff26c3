//! Hosting your own graph with the binary's plumbing: `Runner` gives it the
//! status page (`/`, `/status`, `/metrics`, `/health`), the live view on a
//! terminal, SIGINT/SIGTERM with a bounded drain, and an exit code.
//!
//! ```text
//! cargo run -p sluicegate-runner --example host_a_graph [-- --http 127.0.0.1:9899]
//! ```
//!
//! It runs a small in-memory pipeline (numbers → square, on 4 workers →
//! collect) to the end, or until Ctrl-C, and prints the report.

use std::time::Duration;

use sluicegate_core::testing::{AckLog, CollectSink, VecSource};
use sluicegate_core::{Graph, StageSpec, map, then};
use sluicegate_runner::{LiveView, Runner, RunnerOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let http = match args.iter().position(|a| a == "--http") {
        Some(i) => Some(
            args.get(i + 1)
                .map_or("127.0.0.1:0", String::as_str)
                .parse()?,
        ),
        None => None,
    };
    let acks = AckLog::new();
    let out = CollectSink::new();
    let mut g = Graph::builder("squares");
    g.source(
        "numbers",
        VecSource::new((0..20_000u64).collect(), acks.clone()),
    )
    .via(
        StageSpec::new(
            "square",
            then(|x: u64| async move {
                // Stand-in for I/O: a little latency per record.
                tokio::time::sleep(Duration::from_micros(50)).await;
                Ok::<_, std::convert::Infallible>(x * x)
            }),
        )
        .concurrency(4)
        .capacity(16),
    )
    .via(StageSpec::new("offset", map(|x: u64| x + 1)).capacity(64))
    .to(StageSpec::new("collect", out.clone()).capacity(64));

    let runner = Runner::new(RunnerOptions {
        http,
        drain_timeout: Duration::from_secs(10),
        live_view: LiveView::Auto,
        handle_signals: true,
    })
    .extra_status(|| serde_json::json!({ "example": "host_a_graph" }));
    let outcome = runner.run(g.build()?, std::future::pending()).await?;
    println!(
        "{:?}: {} records collected, {} acknowledged as delivered, drained: {}",
        outcome.stopped,
        out.len(),
        acks.delivered(),
        outcome.report.drained
    );
    std::process::exit(outcome.exit_code());
}
