//! The schema validator: compile once, check each record, count.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{Draft, ValidationError};
use serde_json::Value;
use sluicegate_core::{Origin, Outputs, SyncStage};

use super::error::SchemaError;
use super::rejection::{SchemaRejection, Violation};
use super::stats::{Counters, SchemaStats};
use crate::validate::field::excerpt;

/// The default [`SchemaValidatorBuilder::max_counted_paths`].
pub const DEFAULT_MAX_COUNTED_PATHS: usize = 1_000;

/// A violation's message is cut to this many characters (an `enum` of a
/// thousand values would otherwise make a reason of kilobytes).
const MAX_MESSAGE_CHARS: usize = 200;

/// Builds a [`SchemaValidator`]. See [`SchemaValidator::builder`].
#[derive(Debug, Clone)]
pub struct SchemaValidatorBuilder {
    formats: bool,
    max_paths: usize,
}

impl SchemaValidatorBuilder {
    /// Whether `format` is an assertion: `true` rejects a string that is not
    /// a valid `email`, `date-time`, `uuid`, `ipv4`, ... (unknown formats
    /// are still ignored). `false` (the default) treats `format` as an
    /// annotation, as draft 2020-12 does by default.
    pub fn formats(mut self, assert: bool) -> Self {
        self.formats = assert;
        self
    }

    /// How many distinct (path, keyword) pairs the counters keep (default
    /// [`DEFAULT_MAX_COUNTED_PATHS`]); rejections at further paths are
    /// counted under the path [`OTHER_PATHS`](super::OTHER_PATHS). Paths
    /// are data when a schema allows arbitrary property names, and each
    /// pair becomes a metric series, so the number must be bounded.
    pub fn max_counted_paths(mut self, max: usize) -> Self {
        self.max_paths = max;
        self
    }

    /// Compiles `schema`.
    ///
    /// # Errors
    ///
    /// [`SchemaError::Invalid`] when the schema breaks its draft's
    /// meta-schema, [`SchemaError::Reference`] when a reference (or an
    /// unknown `$schema`) does not resolve inside the document.
    pub fn build(self, schema: &Value) -> Result<SchemaValidator, SchemaError> {
        let draft = draft_name(Draft::default().detect(schema));
        let compiled = jsonschema::options()
            .should_validate_formats(self.formats)
            .build(schema)
            .map_err(|e| compile_error(&e, draft))?;
        Ok(SchemaValidator {
            inner: Arc::new(Inner {
                draft: draft_name(compiled.draft()),
                schema: compiled,
                counters: Counters::new(self.max_paths),
            }),
        })
    }

    /// Parses `text` as JSON and compiles it.
    ///
    /// # Errors
    ///
    /// [`SchemaError::NotJson`], or the errors of [`build`](Self::build).
    pub fn build_str(self, text: &str) -> Result<SchemaValidator, SchemaError> {
        let schema: Value = serde_json::from_str(text).map_err(|e| SchemaError::NotJson {
            file: None,
            message: e.to_string(),
        })?;
        self.build(&schema)
    }

    /// Reads the file at `path`, parses it as JSON and compiles it.
    ///
    /// # Errors
    ///
    /// [`SchemaError::Read`], or the errors of
    /// [`build_str`](Self::build_str), naming the file.
    pub fn build_file(self, path: impl AsRef<Path>) -> Result<SchemaValidator, SchemaError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SchemaError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.build_str(&text)
            .map_err(|e| e.in_file(path.to_path_buf()))
    }
}

struct Inner {
    schema: jsonschema::Validator,
    draft: &'static str,
    counters: Counters,
}

/// Validation of JSON records against a JSON Schema, and a [`Stage`](sluicegate_core::Stage) from
/// [`Value`] to `Value`.
///
/// The schema is compiled once (draft 2020-12 unless its `$schema` names
/// another draft). [`validate`](Self::validate) passes a record that the
/// schema accepts through unchanged and rejects any other with a
/// [`SchemaRejection`] naming the instance path and the keyword of each
/// violation; in a graph, the rejected record fails alone and goes to the
/// dead-letter route with that text as its reason. The root need not be
/// an object: a schema decides what a record is.
///
/// Counters per keyword and per (path, keyword) are read with
/// [`stats`](Self::stats). Clones share the compiled schema and the
/// counters, so keep a clone to read them while the stage runs.
///
/// # Example
///
/// ```
/// use serde_json::json;
/// use sluicegate_stages::validate::SchemaValidator;
///
/// let v = SchemaValidator::new(&json!({
///     "type": "object",
///     "required": ["id", "amount"],
///     "properties": {
///         "id": {"type": "string"},
///         "amount": {"type": "number", "minimum": 0},
///         "items": {"type": "array", "items": {"type": "integer"}}
///     }
/// }))?;
/// assert!(v.validate(json!({"id": "a", "amount": 5})).is_ok());
/// let err = v.validate(json!({"id": "b", "amount": -5})).unwrap_err();
/// assert_eq!(err.to_string(), r#"path "/amount": keyword minimum: -5 is less than the minimum of 0"#);
/// let err = v.validate(json!({"id": "c", "amount": 1, "items": [1, "two"]})).unwrap_err();
/// assert_eq!(err.to_string(), r#"path "/items/1": keyword type: "two" is not of type "integer""#);
///
/// let stats = v.stats();
/// assert_eq!((stats.checked, stats.passed, stats.rejected), (3, 1, 2));
/// assert_eq!(stats.at("/amount", "minimum"), 1);
/// assert_eq!(stats.at("/items/*", "type"), 1); // array indices count as `*`
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SchemaValidator {
    inner: Arc<Inner>,
}

impl fmt::Debug for SchemaValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaValidator")
            .field("draft", &self.inner.draft)
            .finish_non_exhaustive()
    }
}

impl SchemaValidator {
    /// Starts configuring a validator (formats, counters).
    pub fn builder() -> SchemaValidatorBuilder {
        SchemaValidatorBuilder {
            formats: false,
            max_paths: DEFAULT_MAX_COUNTED_PATHS,
        }
    }

    /// Compiles `schema` with the defaults.
    ///
    /// # Errors
    ///
    /// See [`SchemaValidatorBuilder::build`].
    pub fn new(schema: &Value) -> Result<Self, SchemaError> {
        Self::builder().build(schema)
    }

    /// Reads and compiles the schema file at `path` with the defaults.
    ///
    /// # Errors
    ///
    /// See [`SchemaValidatorBuilder::build_file`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, SchemaError> {
        Self::builder().build_file(path)
    }

    /// The draft the schema is read as: `2020-12`, `2019-09`, `7`, `6` or `4`.
    pub fn draft(&self) -> &'static str {
        self.inner.draft
    }

    /// Checks `record`, counting the outcome, and hands it back when the
    /// schema accepts it.
    ///
    /// # Errors
    ///
    /// The [`SchemaRejection`] naming each violation (the first few).
    pub fn validate(&self, record: Value) -> Result<Value, SchemaRejection> {
        self.check(&record).map(|()| record)
    }

    /// Checks `record`, counting the outcome.
    ///
    /// # Errors
    ///
    /// As [`validate`](Self::validate).
    pub fn check(&self, record: &Value) -> Result<(), SchemaRejection> {
        let inner = &self.inner;
        if inner.schema.is_valid(record) {
            inner.counters.passed();
            return Ok(());
        }
        let mut found = Collector::default();
        for e in inner.schema.iter_errors(record) {
            found.push(&e);
        }
        let rejection = found.finish();
        let first = rejection.first();
        inner
            .counters
            .rejected(counted_path(&first.path, record), &first.keyword);
        Err(rejection)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SchemaStats {
        self.inner.counters.snapshot()
    }
}

impl SyncStage for SchemaValidator {
    type In = Value;
    type Out = Value;
    type Error = SchemaRejection;

    fn process_sync(
        &self,
        input: Value,
        _origin: &Origin,
    ) -> Result<Outputs<Value>, SchemaRejection> {
        self.validate(input).map(Outputs::one)
    }
}

/// The order violations are reported and counted in: shallowest instance
/// path first, then the path, the keyword and the schema location, so the
/// same record always gets the same reason, whatever order the validator
/// found them in.
type SortKey = (usize, String, String, String);

/// Keeps the first [`SchemaRejection::SHOWN`] violations in [`SortKey`]
/// order, and counts them all.
#[derive(Default)]
struct Collector {
    kept: Vec<(SortKey, Violation)>,
    total: usize,
}

impl Collector {
    fn push(&mut self, e: &ValidationError<'_>) {
        self.total += 1;
        let path = e.instance_path().as_str().to_string();
        let keyword = e.kind().keyword().to_string();
        let key: SortKey = (
            path.matches('/').count(),
            path.clone(),
            keyword.clone(),
            e.schema_path().as_str().to_string(),
        );
        if self.kept.len() == SchemaRejection::SHOWN
            && self.kept.last().is_some_and(|(last, _)| *last <= key)
        {
            return;
        }
        let message = cut(
            e.masked_with(excerpt(e.instance().as_ref())).to_string(),
            MAX_MESSAGE_CHARS,
        );
        let at = self.kept.partition_point(|(k, _)| *k <= key);
        self.kept.insert(
            at,
            (
                key,
                Violation {
                    path,
                    keyword,
                    message,
                },
            ),
        );
        self.kept.truncate(SchemaRejection::SHOWN);
    }

    fn finish(self) -> SchemaRejection {
        let mut shown: Vec<Violation> = self.kept.into_iter().map(|(_, v)| v).collect();
        if shown.is_empty() {
            // The compiled schema said "invalid" but named no error; never
            // seen, but a rejection must still say something.
            shown.push(Violation {
                path: String::new(),
                keyword: "schema".into(),
                message: "rejected by the schema".into(),
            });
        }
        SchemaRejection {
            total: self.total.max(shown.len()),
            shown,
        }
    }
}

/// `path` with each array index replaced by `*`, walking `record` to tell
/// an index from a property name made of digits.
fn counted_path(path: &str, record: &Value) -> String {
    let mut out = String::with_capacity(path.len());
    let mut at = Some(record);
    for token in path.split('/').skip(1) {
        out.push('/');
        match at {
            Some(Value::Array(items)) => {
                out.push('*');
                at = token.parse::<usize>().ok().and_then(|i| items.get(i));
            }
            Some(Value::Object(map)) => {
                out.push_str(token);
                at = map.get(&token.replace("~1", "/").replace("~0", "~"));
            }
            _ => {
                out.push_str(token);
                at = None;
            }
        }
    }
    out
}

fn cut(mut text: String, max: usize) -> String {
    if let Some((i, _)) = text.char_indices().nth(max) {
        text.truncate(i);
        text.push_str("...");
    }
    text
}

fn draft_name(draft: Draft) -> &'static str {
    match draft {
        Draft::Draft4 => "4",
        Draft::Draft6 => "6",
        Draft::Draft7 => "7",
        Draft::Draft201909 => "2019-09",
        Draft::Draft202012 => "2020-12",
        _ => "unknown",
    }
}

fn compile_error(e: &ValidationError<'_>, draft: &'static str) -> SchemaError {
    match e.kind() {
        ValidationErrorKind::Referencing(r) => SchemaError::Reference {
            file: None,
            message: r.to_string(),
        },
        _ => SchemaError::Invalid {
            file: None,
            draft,
            location: e.instance_path().as_str().to_string(),
            message: cut(
                e.masked_with(excerpt(e.instance().as_ref())).to_string(),
                MAX_MESSAGE_CHARS,
            ),
        },
    }
}
