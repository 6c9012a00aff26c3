//! Building a graph in code and running it.
//!
//! A [`GraphBuilder`] hands out typed [`Stream`]s: a source's output, a
//! stage's output. Connecting a stream to a stage ([`Stream::via`]) or a sink
//! ([`Stream::to`]) creates the stage's bounded mailbox; fan-out
//! ([`Stream::broadcast`], [`Stream::route`]) and fan-in ([`Stream::merge`])
//! reshape the flow. Payload types must match at every connection, or the
//! code does not compile. [`GraphBuilder::build`] checks that every stream
//! ends somewhere; [`Graph::start`] runs the start hooks and spawns one task
//! per node.
//!
//! One concept a file: `spec` (what a stage or batch stage is given: its
//! mailbox, concurrency, order), `builder` (the [`GraphBuilder`] and the
//! nodes it collects), `stream` (the [`Stream`] combinators), `running`
//! ([`Graph::start`], the [`RunningGraph`], its drain and [`Report`]).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use sluicegate_core::{map, Graph, StageSpec};
//! use sluicegate_core::testing::{AckLog, CollectSink, VecSource};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let acks = AckLog::new();
//! let sink = CollectSink::new();
//! let mut g = Graph::builder("doubler");
//! g.source("numbers", VecSource::new((1..=5).collect(), acks.clone()))
//!     .via(StageSpec::new("double", map(|x: u64| x * 2)).capacity(8))
//!     .to(StageSpec::new("collect", sink.clone()));
//! let report = g.build()?.start().await?.wait().await;
//! assert!(report.is_clean());
//! assert_eq!(sink.items(), vec![2, 4, 6, 8, 10]);
//! assert_eq!(acks.delivered(), 5);
//! # Ok(())
//! # }
//! ```

mod builder;
mod running;
mod spec;
mod stream;

pub use builder::GraphBuilder;
pub use running::{Graph, Report, RunningGraph};
pub use spec::{
    BatchConfig, BatchSpec, DEFAULT_CAPACITY, DEFAULT_DRAIN_DEADLINE, DeadLetter, Order, StageSpec,
};
pub use stream::Stream;
