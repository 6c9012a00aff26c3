//! What the examples share: running a graph to its end, and printing the
//! dead letters it left.

use sluicegate_core::testing::CollectSink;
use sluicegate_core::{DeadLetter, GraphBuilder};

/// Builds `g`, runs it until its source is done and everything drained,
/// and fails unless it ended cleanly.
pub(crate) async fn run_to_end(g: GraphBuilder) -> anyhow::Result<()> {
    let report = g.build()?.start().await?.wait().await;
    anyhow::ensure!(
        report.is_clean(),
        "the pipeline did not end cleanly: {report:?}"
    );
    Ok(())
}

/// Prints each dead letter: the stage that failed it and the reason.
pub(crate) fn print_dead_letters(dead: &CollectSink<DeadLetter>) {
    println!("\ndead letters (stage | reason):");
    for d in dead.items() {
        println!("  {:<9} | {}", d.error.stage(), d.error.message());
    }
}
