//! What a record broke: the instance path and keyword of each violation.

use std::fmt;

/// One failed keyword: where in the record, which keyword, and why.
///
/// `Display`: `path "/amount": keyword minimum: -5 is less than the minimum of 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// A JSON Pointer (RFC 6901) into the record: `""` is the whole
    /// record, `/items/2/price` the `price` of the third item.
    pub path: String,
    /// The keyword that failed (`type`, `required`, `minimum`, `pattern`,
    /// `additionalProperties`, `anyOf`, ...; `falseSchema` where the schema
    /// is `false`, `$ref` where a reference did not resolve at run time).
    pub keyword: String,
    /// The validator's message, with the offending value cut to a short
    /// excerpt.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "path {:?}: keyword {}: {}",
            self.path, self.keyword, self.message
        )
    }
}

/// Why the schema rejected a record. Its `Display` text is the dead
/// letter's reason (the `sluicegate.error` header of a Kafka dead letter):
///
/// - `path "": keyword required: "id" is a required property`
/// - `path "/amount": keyword type: "12.50" is not of type "number"`
/// - `path "": keyword type: null is not of type "object"`
/// - `path "/amount": keyword minimum: -5 is less than the minimum of 0; path "": keyword required: "id" is a required property`
///
/// The grammar is `path "<JSON Pointer>": keyword <keyword>: <message>`,
/// violations joined by `; `, at most [`SchemaRejection::SHOWN`] of them,
/// then `; and N more`. They are ordered shallowest path first, then by
/// path, keyword and schema location, so the same record always gets the
/// same text; the first one is the one the counters count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SchemaRejection {
    pub(crate) shown: Vec<Violation>,
    pub(crate) total: usize,
}

impl SchemaRejection {
    /// Violations kept (and shown) per rejection, at most.
    pub const SHOWN: usize = 4;

    /// The first violation: the one the counters count. Every rejection
    /// has one.
    pub fn first(&self) -> &Violation {
        // Built only with at least one violation (see `Collector::finish`).
        &self.shown[0]
    }

    /// The violations kept, in order (at most [`SchemaRejection::SHOWN`]).
    pub fn violations(&self) -> &[Violation] {
        &self.shown
    }

    /// How many violations the record has in all.
    pub fn total(&self) -> usize {
        self.total
    }
}

impl fmt::Display for SchemaRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.shown.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{v}")?;
        }
        let more = self.total.saturating_sub(self.shown.len());
        if more > 0 {
            write!(f, "; and {more} more")?;
        }
        Ok(())
    }
}
