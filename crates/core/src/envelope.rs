//! The unit that flows along edges: a payload and its acknowledgement.

use crate::ack::{Ack, Origin};

/// A payload travelling through the graph with its acknowledgement.
///
/// The runtime takes the envelope apart before a stage runs (the stage sees
/// the payload and the [`Origin`]) and puts the acknowledgement on whatever
/// the stage emits, so stages cannot lose it.
#[derive(Debug)]
pub struct Envelope<T> {
    payload: T,
    ack: Ack,
}

impl<T> Envelope<T> {
    /// Wraps `payload` with `ack`.
    pub fn new(payload: T, ack: Ack) -> Self {
        Envelope { payload, ack }
    }

    /// A payload whose outcome nobody hears (tests, fire-and-forget inputs).
    pub fn detached(payload: T) -> Self {
        Envelope::new(payload, Ack::detached())
    }

    /// The payload.
    pub fn payload(&self) -> &T {
        &self.payload
    }

    /// The payload, mutably.
    pub fn payload_mut(&mut self) -> &mut T {
        &mut self.payload
    }

    /// Where the payload came from.
    pub fn origin(&self) -> &Origin {
        self.ack.origin()
    }

    /// Splits into payload and acknowledgement; the caller now owns the duty
    /// to resolve the acknowledgement.
    pub fn into_parts(self) -> (T, Ack) {
        (self.payload, self.ack)
    }

    /// Replaces the payload, keeping the acknowledgement.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Envelope<U> {
        Envelope {
            payload: f(self.payload),
            ack: self.ack,
        }
    }
}
