//! Ready-made sources: the items of an iterator, of a `futures::Stream`, or
//! of a bounded channel other tasks send into.
//!
//! Each takes an item from its input only once the graph has room for it
//! (it reserves the room first), so it never holds an item the graph
//! cannot take, and a [`channel`]'s senders wait while the graph is full:
//! the graph's backpressure reaches whoever feeds it.
//!
//! Items get origins `(partition, 0)`, `(partition, 1)`, ... in input order
//! (partition 0 unless set with [`StreamSource::partition`]); their outcomes
//! go to the [`AckReceiver`] set with [`StreamSource::acks`] (none by
//! default; an [`AckCounter`](crate::AckCounter) counts them in constant
//! memory).
//!
//! ```
//! use std::convert::Infallible;
//! use sluicegate_core::{AckCounter, Graph, StageSpec, map, sink, sources};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let outcomes = AckCounter::new();
//! let mut g = Graph::builder("numbers");
//! g.source("numbers", sources::from_iter(1..=100u64).acks(outcomes.clone()))
//!     .via(StageSpec::new("square", map(|n: u64| n * n)))
//!     .to(StageSpec::new("print", sink(|n: u64| async move {
//!         let _ = n;
//!         Ok::<_, Infallible>(())
//!     })));
//! let report = g.build()?.start().await?.wait().await;
//! assert!(report.is_clean());
//! assert_eq!(outcomes.delivered(), 100);
//! # Ok(()) }
//! ```

use std::sync::Arc;

use futures::stream::{Stream, StreamExt};

use crate::ack::{Ack, AckReceiver, IgnoreAcks, Origin};
use crate::envelope::Envelope;
use crate::error::BoxError;
use crate::source::{Source, SourceContext};

/// A source of the items of a stream, in order (see the [module](self)).
/// Built by [`from_stream`], [`from_iter`] or [`channel`].
///
/// It ends when its input ends or when the graph shuts down; on shutdown
/// it stops taking items, and whatever is still in its input stays there
/// (for a channel: unread, and its senders see the channel closed once the
/// source is gone).
pub struct StreamSource<S> {
    stream: S,
    acks: Arc<dyn AckReceiver>,
    partition: i32,
}

impl<S> StreamSource<S> {
    /// Reports each item's outcome to `receiver` (default: nobody).
    #[must_use]
    pub fn acks(mut self, receiver: impl AckReceiver) -> Self {
        self.acks = Arc::new(receiver);
        self
    }

    /// Reports each item's outcome to a shared `receiver`.
    #[must_use]
    pub fn acks_to(mut self, receiver: Arc<dyn AckReceiver>) -> Self {
        self.acks = receiver;
        self
    }

    /// The partition of the items' origins (default 0): sources merged
    /// into one graph can report to one receiver under different
    /// partitions.
    #[must_use]
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = partition;
        self
    }
}

impl<S> std::fmt::Debug for StreamSource<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSource")
            .field("partition", &self.partition)
            .finish_non_exhaustive()
    }
}

/// A source of the items of `stream`, in order.
pub fn from_stream<S>(stream: S) -> StreamSource<S>
where
    S: Stream + Send + Unpin + 'static,
    S::Item: Send + 'static,
{
    StreamSource {
        stream,
        acks: Arc::new(IgnoreAcks),
        partition: 0,
    }
}

/// A source of the items of `items`, in order.
pub fn from_iter<I>(items: I) -> StreamSource<futures::stream::Iter<I::IntoIter>>
where
    I: IntoIterator,
    I::IntoIter: Send + 'static,
    I::Item: Send + 'static,
{
    from_stream(futures::stream::iter(items))
}

/// A bounded channel into a graph: the sender side for other tasks, and the
/// source to add to the graph. At most `capacity` items wait in the channel
/// (at least 1); while the graph is full, [`send`](tokio::sync::mpsc::Sender::send)
/// waits. The source ends once every sender is dropped and the channel is
/// empty.
pub fn channel<T: Send + 'static>(
    capacity: usize,
) -> (
    tokio::sync::mpsc::Sender<T>,
    StreamSource<impl Stream<Item = T> + Send + Unpin + 'static>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(capacity.max(1));
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (tx, from_stream(stream))
}

impl<S> Source for StreamSource<S>
where
    S: Stream + Send + Unpin + 'static,
    S::Item: Send + 'static,
{
    type Out = S::Item;

    async fn run(mut self, mut cx: SourceContext<S::Item>) -> Result<(), BoxError> {
        let shutdown = cx.shutdown_token();
        let mut offset: i64 = 0;
        loop {
            // Room first, then the item: an item is never taken from the
            // input while the graph cannot take it.
            let permit = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                permit = cx.reserve() => match permit {
                    Ok(permit) => permit,
                    Err(_stopped) => break,
                },
            };
            let next = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                next = cx.idle(self.stream.next()) => next,
            };
            let Some(item) = next else { break };
            let origin = Origin::at(self.partition, offset);
            offset += 1;
            permit.send(Envelope::new(item, Ack::new(origin, self.acks.clone())));
        }
        Ok(())
    }
}
