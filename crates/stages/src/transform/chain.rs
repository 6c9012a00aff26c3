//! Fused chains of record functions.

use std::fmt;
use std::sync::Arc;

use sluicegate_core::{BoxError, Origin, Outputs, SyncStage};

/// A transform step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransformError {
    /// A [`Transform::try_map`] step returned an error.
    #[error("step {step:?} failed")]
    Step {
        /// The step's name.
        step: Arc<str>,
        /// The step's error.
        #[source]
        source: BoxError,
    },
    /// A record did not convert into the target type ([`typed`](super::typed)).
    #[error("record does not fit {target}: {message}")]
    Convert {
        /// The target type's name.
        target: &'static str,
        /// What did not fit (serde's message).
        message: String,
    },
    /// A value did not convert into a JSON object ([`untyped`](super::untyped)).
    #[error("{source_type} is not a JSON object: {message}")]
    NotARecord {
        /// The value's type name.
        source_type: &'static str,
        /// Why.
        message: String,
    },
}

type StepFn<I, O> = dyn Fn(I) -> Result<Option<O>, TransformError> + Send + Sync;

/// A chain of `map`, `filter` and `try_map` steps from `I` to `O`, run as
/// one [`Stage`](sluicegate_core::Stage).
///
/// Each step is a plain function; fusing them saves a mailbox hop and a
/// task switch per step. A `filter` that returns false drops the record
/// (its acknowledgement resolves as dropped, reason `filtered`, and the
/// stage's `filtered` counter counts it); a `try_map` error fails the record
/// (to the dead-letter route) naming the step. CPU-heavy steps belong in
/// [`blocking`](sluicegate_core::blocking) instead, which keeps them off the
/// async workers.
///
/// # Example
///
/// ```
/// use sluicegate_stages::transform::Transform;
///
/// let t = Transform::<u32>::new()
///     .filter(|n| *n != 0)
///     .try_map("invert", |n: u32| if n < 100 { Ok(100 / n) } else { Err("too big") })
///     .map(|n| n * 2);
/// assert_eq!(t.apply(5).ok().flatten(), Some(40));
/// assert!(matches!(t.apply(0), Ok(None)));
/// assert_eq!(
///     t.apply(200).err().map(|e| e.to_string()).as_deref(),
///     Some("step \"invert\" failed")
/// );
/// ```
pub struct Transform<I, O = I> {
    f: Arc<StepFn<I, O>>,
}

impl<I, O> Clone for Transform<I, O> {
    fn clone(&self) -> Self {
        Transform { f: self.f.clone() }
    }
}

impl<I, O> fmt::Debug for Transform<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transform")
            .field("in", &std::any::type_name::<I>())
            .field("out", &std::any::type_name::<O>())
            .finish()
    }
}

impl<T: Send + 'static> Transform<T, T> {
    /// The identity chain; add steps to it.
    pub fn new() -> Self {
        Transform {
            f: Arc::new(|x| Ok(Some(x))),
        }
    }
}

impl<T: Send + 'static> Default for Transform<T, T> {
    fn default() -> Self {
        Transform::new()
    }
}

impl<I: Send + 'static, O: Send + 'static> Transform<I, O> {
    /// Adds a step applying `f` to every record.
    pub fn map<P: Send + 'static>(
        self,
        f: impl Fn(O) -> P + Send + Sync + 'static,
    ) -> Transform<I, P> {
        let prev = self.f;
        Transform {
            f: Arc::new(move |x| Ok(prev(x)?.map(&f))),
        }
    }

    /// Adds a step keeping the records for which `keep` is true.
    pub fn filter(self, keep: impl Fn(&O) -> bool + Send + Sync + 'static) -> Transform<I, O> {
        let prev = self.f;
        Transform {
            f: Arc::new(move |x| Ok(prev(x)?.filter(&keep))),
        }
    }

    /// Adds a fallible step called `step` (the name appears in the failure's
    /// reason: `step "parse_amount" failed: ...`).
    pub fn try_map<P: Send + 'static, E: Into<BoxError>>(
        self,
        step: impl Into<Arc<str>>,
        f: impl Fn(O) -> Result<P, E> + Send + Sync + 'static,
    ) -> Transform<I, P> {
        let prev = self.f;
        let step = step.into();
        Transform {
            f: Arc::new(move |x| match prev(x)? {
                None => Ok(None),
                Some(o) => f(o).map(Some).map_err(|e| TransformError::Step {
                    step: step.clone(),
                    source: e.into(),
                }),
            }),
        }
    }

    /// Runs the chain on one input: `Ok(None)` when a filter dropped it.
    ///
    /// # Errors
    ///
    /// The first failing step's [`TransformError`].
    pub fn apply(&self, input: I) -> Result<Option<O>, TransformError> {
        (self.f)(input)
    }
}

impl<I: Send + 'static, O: Send + 'static> SyncStage for Transform<I, O> {
    type In = I;
    type Out = O;
    type Error = TransformError;

    fn process_sync(&self, input: I, _origin: &Origin) -> Result<Outputs<O>, TransformError> {
        self.apply(input)
            .map(|o| o.map_or_else(Outputs::none, Outputs::one))
    }
}
