//! Error types: per-item failures, fatal errors and graph errors.

use std::fmt;
use std::sync::Arc;

/// A boxed, thread-safe error: what a stage's error becomes at the task boundary.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why an item failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The stage returned an error for this item.
    Error,
    /// The stage panicked while processing this item.
    Panic,
    /// The stage returned an error it classified as fatal; the graph stops.
    Fatal,
    /// Shutdown passed its deadline while the item was still in the graph.
    Abandoned,
    /// The acknowledgement handle was dropped without being resolved (a bug).
    Leaked,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::Error => "error",
            FailureKind::Panic => "panic",
            FailureKind::Fatal => "fatal",
            FailureKind::Abandoned => "abandoned",
            FailureKind::Leaked => "leaked",
        })
    }
}

/// The failure of one item: which stage, what kind, and the message.
///
/// Cheap to clone (one reference count); it travels with the item to the
/// dead-letter route and to the origin's acknowledgement receiver.
#[derive(Clone)]
pub struct ItemError {
    inner: Arc<ItemErrorInner>,
}

struct ItemErrorInner {
    stage: Arc<str>,
    kind: FailureKind,
    message: String,
    source: Option<BoxError>,
    transient: bool,
}

impl ItemError {
    /// A failure of `kind` in `stage` with a message.
    pub fn new(stage: impl Into<Arc<str>>, kind: FailureKind, message: impl Into<String>) -> Self {
        ItemError {
            inner: Arc::new(ItemErrorInner {
                stage: stage.into(),
                kind,
                message: message.into(),
                source: None,
                transient: false,
            }),
        }
    }

    /// A failure caused by `source`; the message is its display text, with
    /// the chain of causes appended. A [`Transient`] is unwrapped: the
    /// failure keeps the error it wraps and [`is_transient`](Self::is_transient)
    /// says so.
    pub fn from_error(stage: impl Into<Arc<str>>, kind: FailureKind, source: BoxError) -> Self {
        let (source, transient) = match source.downcast::<Transient>() {
            Ok(t) => (t.0, true),
            Err(source) => (source, false),
        };
        let mut message = source.to_string();
        let mut cause = source.source();
        while let Some(c) = cause {
            message.push_str(": ");
            message.push_str(&c.to_string());
            cause = c.source();
        }
        ItemError {
            inner: Arc::new(ItemErrorInner {
                stage: stage.into(),
                kind,
                message,
                source: Some(source),
                transient,
            }),
        }
    }

    /// The stage the item failed in.
    pub fn stage(&self) -> &str {
        &self.inner.stage
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> FailureKind {
        self.inner.kind
    }

    /// The failure's message (for a panic, the panic message).
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// Whether a later attempt may succeed: the stage said so
    /// ([`Stage::is_transient`](crate::Stage::is_transient),
    /// [`BatchStage::is_transient`](crate::BatchStage::is_transient)) or
    /// returned a [`Transient`]. A dead-letter route that retries later
    /// (kafka-io's retry topics) sends such a record to be tried again; any
    /// other route treats it as any failure.
    pub fn is_transient(&self) -> bool {
        self.inner.transient
    }

    /// The original error, when the failure came from one.
    pub fn error(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.inner.source.as_deref()
    }
}

impl fmt::Debug for ItemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemError")
            .field("stage", &self.stage())
            .field("kind", &self.kind())
            .field("message", &self.message())
            .finish()
    }
}

impl fmt::Display for ItemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} in stage `{}`: {}",
            self.kind(),
            self.stage(),
            self.message()
        )
    }
}

impl std::error::Error for ItemError {
    /// The stage's own error, when the failure came from one (the same as
    /// [`ItemError::error`]).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Wraps an error to mark it fatal: a stage returning it stops the graph.
///
/// Any stage can return `Fatal` through its error type's `From<Fatal>` or as
/// a boxed error; [`Stage::is_fatal`](crate::Stage::is_fatal) is the typed
/// alternative.
#[derive(Debug, thiserror::Error)]
#[error("fatal: {0}")]
pub struct Fatal(#[source] pub BoxError);

impl Fatal {
    /// Marks `err` fatal.
    pub fn new(err: impl Into<BoxError>) -> Self {
        Fatal(err.into())
    }
}

/// Wraps an error to mark it transient: this item failed now, and a later
/// attempt may succeed (a lock timeout, a serialization failure, a service
/// briefly away). The item still fails here; [`ItemError::is_transient`]
/// tells a dead-letter route that it is worth retrying later, away from
/// its partition (see kafka-io's retry topics). Any stage can return it
/// through its error type's `From<Transient>` or as a boxed error;
/// [`Stage::is_transient`](crate::Stage::is_transient) is the typed
/// alternative.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Transient(pub BoxError);

impl Transient {
    /// Marks `err` transient.
    pub fn new(err: impl Into<BoxError>) -> Self {
        Transient(err.into())
    }
}

/// A panic caught while processing one item, as that item's error.
///
/// A stage that processes several items in one call (a batch stage,
/// [`blocking_batch`](crate::blocking_batch)) catches each item's panic and
/// returns it as this error for that item alone: the runtime then counts it
/// as a panic and fails the item with [`FailureKind::Panic`] and the panic's
/// message, as it does for a stage that panics on one item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Panicked {
    message: String,
}

impl Panicked {
    /// A panic with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Panicked {
            message: message.into(),
        }
    }

    /// The panic's message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Errors building, starting or running a graph.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// A stream was left without a downstream stage or sink.
    #[error("the output of `{stage}` is not connected to anything")]
    Unconnected {
        /// The stage whose output is dangling.
        stage: String,
    },
    /// Two nodes share a name; names key the metrics, so they must be unique.
    #[error("two nodes are named `{name}`; node names must be unique")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// A stage's settings are inconsistent.
    #[error("stage `{stage}`: {message}")]
    InvalidConfig {
        /// The stage.
        stage: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A stage's start hook failed; the graph did not start.
    #[error("stage `{stage}` failed to start: {source}")]
    StartFailed {
        /// The stage.
        stage: String,
        /// The start hook's error.
        #[source]
        source: BoxError,
    },
    /// A stage or source failed fatally; the graph was shut down.
    #[error("stage `{stage}` failed fatally: {source}")]
    Fatal {
        /// The stage.
        stage: String,
        /// The error.
        #[source]
        source: BoxError,
    },
    /// A node's task panicked outside of item processing (a bug).
    #[error("the task of `{stage}` panicked: {message}")]
    TaskPanicked {
        /// The stage.
        stage: String,
        /// The panic message.
        message: String,
    },
}

/// Renders a panic payload as text.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}
