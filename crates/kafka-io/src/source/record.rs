//! Record conversion: a fetched Kafka record becomes a tracked envelope,
//! held for the graph.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rdkafka::message::{Headers, Message};
use sluicegate_core::{Ack, AckReceiver, Envelope, Origin};

use super::shared::{Shared, lock};

/// What turns fetched records into envelopes: the acknowledgements'
/// receiver, the topic names shared by every origin, and the chunks the
/// payloads are copied into.
pub(super) struct Records {
    shared: Arc<Shared>,
    receiver: Arc<dyn AckReceiver>,
    topics: HashMap<String, Arc<str>>,
    copies: Copies,
    keep_raw: bool,
}

impl Records {
    /// Converts records of the source of `shared`; origins keep the
    /// original bytes if `keep_raw`.
    pub(super) fn new(shared: Arc<Shared>, receiver: Arc<dyn AckReceiver>, keep_raw: bool) -> Self {
        Records {
            shared,
            receiver,
            topics: HashMap::new(),
            copies: Copies::default(),
            keep_raw,
        }
    }

    /// Tracks `m` and holds its envelope for the graph; `false` (counted)
    /// when the record was handed out before (fetched again after a
    /// position reset).
    pub(super) fn hold<M: Message>(&mut self, m: &M) -> bool {
        match self.envelope(m) {
            Some(env) => {
                lock(&self.shared.held).push_back(env);
                true
            }
            None => false,
        }
    }

    /// The envelope of a fetched record, tracked; `None` (counted) when the
    /// record was handed out before (fetched again after a position reset).
    fn envelope<M: Message>(&mut self, m: &M) -> Option<Envelope<Bytes>> {
        let (shared, copies) = (&self.shared, &mut self.copies);
        let topic = match self.topics.get(m.topic()) {
            Some(t) => t.clone(),
            None => {
                let t: Arc<str> = m.topic().into();
                self.topics.insert(m.topic().to_string(), t.clone());
                t
            }
        };
        // Track before the graph can see it: its acknowledgement may arrive at once.
        if !lock(&shared.tracker).track(&topic, m.partition(), m.offset()) {
            shared
                .stats
                .skipped_refetched
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(topic = %topic, partition = m.partition(), offset = m.offset(), "record fetched again; already handed out, skipped");
            return None;
        }
        let payload = m.payload().map(|p| copies.copy(p));
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            h.value.map(Bytes::copy_from_slice).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let origin = Origin {
            topic: Some(topic.clone()),
            partition: Some(m.partition()),
            offset: Some(m.offset()),
            key: m.key().map(|k| copies.copy(k)),
            timestamp: m.timestamp().to_millis(),
            headers,
            raw: if self.keep_raw { payload.clone() } else { None },
        };
        Some(Envelope::new(
            payload.unwrap_or_default(),
            Ack::new(origin, self.receiver.clone()),
        ))
    }
}

/// When `m` is due, if the source holds records until their due header
/// says and that time is still to come.
pub(super) fn due_time<M: Message>(m: &M, shared: &Shared) -> Option<Instant> {
    let name = shared.due_header.get()?;
    let headers = m.headers()?;
    let value = headers
        .iter()
        .filter(|h| h.key == name.as_str())
        .last()?
        .value?;
    let due = crate::retry::due(value)?;
    let wait = due.duration_since(std::time::SystemTime::now()).ok()?;
    (!wait.is_zero()).then(|| Instant::now() + wait)
}

/// Copies of fetched payloads and keys, carved out of shared chunks: one
/// allocation per chunk of [`CHUNK`] bytes instead of one per record, and
/// a copy's clone (the payload kept in `Origin::raw`) is a reference count.
/// A chunk is freed once every copy carved out of it is: a record held
/// long holds its chunk, so memory stays within [`CHUNK`] bytes per record
/// in flight (and is about the records' own size when they finish in
/// about the order they came).
#[derive(Default)]
struct Copies {
    chunk: BytesMut,
}

/// Bytes per chunk of [`Copies`].
const CHUNK: usize = 16 * 1024;

impl Copies {
    fn copy(&mut self, data: &[u8]) -> Bytes {
        if data.len() > CHUNK / 4 {
            return Bytes::copy_from_slice(data);
        }
        if self.chunk.capacity() - self.chunk.len() < data.len() {
            self.chunk = BytesMut::with_capacity(CHUNK);
        }
        self.chunk.extend_from_slice(data);
        self.chunk.split().freeze()
    }
}
