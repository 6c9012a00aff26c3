//! What a send or a reservation that did not happen hands back.

use std::fmt;

use crate::envelope::Envelope;

/// The error of [`Sender::send`](super::Sender::send): the receiving stage is gone. The envelope
/// comes back.
pub struct SendError<T>(pub Envelope<T>);

impl<T> SendError<T> {
    /// The envelope that could not be sent.
    pub fn into_inner(self) -> Envelope<T> {
        self.0
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the receiving stage has stopped")
    }
}

impl<T> std::error::Error for SendError<T> {}

/// The error of [`Sender::try_send`](super::Sender::try_send); the envelope comes back either way.
pub enum TrySendError<T> {
    /// The mailbox is full (and its policy is [`Overflow::Block`](super::Overflow::Block)).
    Full(Envelope<T>),
    /// The receiving stage is gone.
    Closed(Envelope<T>),
}

impl<T> TrySendError<T> {
    /// The envelope that was not sent.
    pub fn into_inner(self) -> Envelope<T> {
        match self {
            TrySendError::Full(e) | TrySendError::Closed(e) => e,
        }
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("the mailbox is full"),
            TrySendError::Closed(_) => f.write_str("the receiving stage has stopped"),
        }
    }
}

impl<T> std::error::Error for TrySendError<T> {}

/// The error of [`Sender::try_reserve`](super::Sender::try_reserve).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryReserveError {
    /// The mailbox is full (and its policy is [`Overflow::Block`](super::Overflow::Block)).
    #[error("the mailbox is full")]
    Full,
    /// The receiving stage is gone.
    #[error("the receiving stage has stopped")]
    Closed,
}

/// The receiving stage is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the receiving stage has stopped")]
pub struct Closed;
