//! `Runner::run` as a library: a second signal while the graph drains ends
//! the run and returns, and never exits the process (the binary's `main`
//! does, with the outcome's exit code).
//!
//! This file is its own test binary: it sends SIGTERM and SIGINT to its own
//! process, which the runner handles while the test runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sluicegate_core::testing::{AckLog, Gate, GatedSink, within};
use sluicegate_core::{BoxError, Envelope, Graph, Source, SourceContext, StageSpec};
use sluicegate_runner::exit;
use sluicegate_runner::{LiveView, Runner, RunnerOptions, Stopped};

/// Emits `0..n`, then waits for shutdown and says it saw it.
struct UntilShutdown {
    n: i64,
    acks: AckLog,
    saw_shutdown: Arc<AtomicBool>,
}

impl Source for UntilShutdown {
    type Out = i64;

    async fn run(self, mut cx: SourceContext<i64>) -> Result<(), BoxError> {
        for i in 0..self.n {
            cx.emit(Envelope::new(i, self.acks.ack(i))).await?;
        }
        cx.shutdown_requested().await;
        self.saw_shutdown.store(true, Ordering::SeqCst);
        Ok(())
    }
}

fn signal(name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(std::process::id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_while_draining_returns_a_forced_outcome() {
    let gate = Gate::new();
    let acks = AckLog::new();
    let saw_shutdown = Arc::new(AtomicBool::new(false));
    let mut g = Graph::builder("stuck");
    g.source(
        "numbers",
        UntilShutdown {
            n: 4,
            acks: acks.clone(),
            saw_shutdown: saw_shutdown.clone(),
        },
    )
    .to(StageSpec::new("sink", GatedSink::new(gate.clone())));
    let graph = g.build().expect("the graph builds");
    let runner = Runner::new(RunnerOptions {
        http: None,
        // Far longer than the test: only the second signal ends the drain.
        drain_timeout: Duration::from_secs(600),
        live_view: LiveView::Off,
        handle_signals: true,
    });
    let run = tokio::spawn(async move { runner.run(graph, std::future::pending()).await });

    // The graph runs (the signal handlers are installed before it starts),
    // with a record held at the gate: its drain cannot finish.
    within(
        Duration::from_secs(10),
        "a record at the gate",
        gate.wait_for_waiting(1),
    )
    .await;
    signal("TERM");
    within(Duration::from_secs(10), "the drain to begin", async {
        while !saw_shutdown.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    signal("INT");
    let outcome = within(
        Duration::from_secs(10),
        "Runner::run to return after the second signal",
        run,
    )
    .await
    .expect("the run task does not panic")
    .expect("the run started");
    assert_eq!(outcome.stopped, Stopped::Forced("SIGINT"));
    assert_eq!(outcome.exit_code(), exit::FORCED);
    assert!(!outcome.report.drained);
    assert!(!outcome.report.is_clean());
    assert_eq!(outcome.report.graph, "stuck");
    // The abandoned graph fails what it held, in the background; nothing
    // was delivered.
    within(
        Duration::from_secs(10),
        "the abandoned records to resolve",
        acks.wait_for(4),
    )
    .await;
    assert_eq!(acks.delivered(), 0);
    assert_eq!(acks.failed(), 4);
}
