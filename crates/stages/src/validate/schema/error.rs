//! Why a schema could not be used.

use std::path::PathBuf;

/// A schema that cannot be read or compiled. The `Display` text names the
/// file (when there is one) and the place in the schema that is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The schema file could not be read.
    #[error("cannot read schema file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The schema is not JSON.
    #[error("{}not JSON: {message}", in_file(file.as_ref()))]
    NotJson {
        /// The file, when the schema came from one.
        file: Option<PathBuf>,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The schema is JSON but not a valid schema of its draft: a keyword
    /// whose value has the wrong type, an invalid regular expression, a
    /// schema that is neither an object nor a boolean.
    #[error(
        "{}not a valid draft {draft} schema: at {location:?}: {message}",
        in_file(file.as_ref())
    )]
    Invalid {
        /// The file, when the schema came from one.
        file: Option<PathBuf>,
        /// The draft the schema was read as (`2020-12`, `7`, ...).
        draft: &'static str,
        /// A JSON Pointer to the offending part of the schema (`""` is the
        /// whole schema).
        location: String,
        /// What is wrong with it.
        message: String,
    },
    /// A `$ref` (or `$dynamicRef`, or the `$schema` meta-schema) that does
    /// not resolve inside the document. Remote documents are not fetched.
    #[error("{}unresolvable reference: {message}", in_file(file.as_ref()))]
    Reference {
        /// The file, when the schema came from one.
        file: Option<PathBuf>,
        /// The resolver's message, naming the reference.
        message: String,
    },
}

fn in_file(file: Option<&PathBuf>) -> String {
    file.map_or_else(String::new, |f| format!("{}: ", f.display()))
}

impl SchemaError {
    /// The same error, naming `file` as where the schema came from.
    pub(crate) fn in_file(mut self, path: PathBuf) -> Self {
        match &mut self {
            SchemaError::NotJson { file, .. }
            | SchemaError::Invalid { file, .. }
            | SchemaError::Reference { file, .. } => *file = Some(path),
            SchemaError::Read { .. } => {}
        }
        self
    }
}
