//! The validate stage's counters as `/status` and `/metrics` show them:
//! records checked, passed and rejected, and the rejections by the keyword
//! and instance path of each one's first violation (see
//! [`SchemaStats`](sluicegate_stages::validate::SchemaStats)).

use std::fmt::Write as _;

use serde_json::{Value, json};
use sluicegate_stages::validate::SchemaValidator;

use crate::host::exposition::{escape_label, family};

/// The `"validation"` member of `/status` (under `"extra"`):
///
/// ```text
/// {
///   "schema": "orders.schema.json",    the file, or "built-in event schema"
///   "draft": "2020-12",
///   "checked": 5000, "passed": 4952, "rejected": 48,
///   "by_keyword": { "minimum": 17, "required": 15, "type": 16 },
///   "by_path": { "": { "required": 15, "type": 8 }, "/amount": { "minimum": 17, "type": 8 } }
/// }
/// ```
pub fn status(validator: &SchemaValidator, schema: &str) -> Value {
    let s = validator.stats();
    json!({
        "schema": schema,
        "draft": validator.draft(),
        "checked": s.checked,
        "passed": s.passed,
        "rejected": s.rejected,
        "by_keyword": s.by_keyword,
        "by_path": s.by_path,
    })
}

/// Prometheus text (format 0.0.4) of the counters:
/// `sluicegate_validation_checked_total{graph}`,
/// `sluicegate_validation_passed_total{graph}` and
/// `sluicegate_validation_rejected_total{graph,keyword,path}` (one series
/// per keyword and path seen; their number is bounded, see
/// [`max_counted_paths`](sluicegate_stages::validate::SchemaValidatorBuilder::max_counted_paths)).
pub fn prometheus(validator: &SchemaValidator, graph: &str) -> String {
    let s = validator.stats();
    let g = escape_label(graph);
    let mut out = String::new();
    // Writing to a String cannot fail.
    family(
        &mut out,
        "sluicegate_validation_checked_total",
        "counter",
        "Records the validate stage checked against the schema.",
    );
    let _ = writeln!(
        out,
        "sluicegate_validation_checked_total{{graph=\"{g}\"}} {}",
        s.checked
    );
    family(
        &mut out,
        "sluicegate_validation_passed_total",
        "counter",
        "Records the schema accepted.",
    );
    let _ = writeln!(
        out,
        "sluicegate_validation_passed_total{{graph=\"{g}\"}} {}",
        s.passed
    );
    family(
        &mut out,
        "sluicegate_validation_rejected_total",
        "counter",
        "Records the schema rejected, by the keyword and instance path (JSON Pointer, array indices as *) of each one's first violation.",
    );
    for (path, keywords) in &s.by_path {
        for (keyword, n) in keywords {
            let _ = writeln!(
                out,
                "sluicegate_validation_rejected_total{{graph=\"{g}\",keyword=\"{}\",path=\"{}\"}} {n}",
                escape_label(keyword),
                escape_label(path)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_appear_in_status_and_metrics() {
        let v = SchemaValidator::new(&json!({
            "type": "object",
            "required": ["id"],
            "properties": {"a": {"type": "array", "items": {"minimum": 0}}, "q\"x": {"type": "string"}}
        }))
        .expect("compiles");
        for r in [
            json!({"id": 1}),
            json!({}),
            json!({"id": 1, "a": [1, -1]}),
            json!({"id": 1, "a": [-1]}),
            json!({"id": 1, "q\"x": 1}),
        ] {
            let _ = v.validate(r);
        }
        assert_eq!(
            status(&v, "s.json"),
            json!({
                "schema": "s.json",
                "draft": "2020-12",
                "checked": 5, "passed": 1, "rejected": 4,
                "by_keyword": {"minimum": 2, "required": 1, "type": 1},
                "by_path": {"": {"required": 1}, "/a/*": {"minimum": 2}, "/q\"x": {"type": 1}},
            })
        );
        let text = prometheus(&v, "g");
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                r#"sluicegate_validation_checked_total{graph="g"} 5"#,
                r#"sluicegate_validation_passed_total{graph="g"} 1"#,
                r#"sluicegate_validation_rejected_total{graph="g",keyword="required",path=""} 1"#,
                r#"sluicegate_validation_rejected_total{graph="g",keyword="minimum",path="/a/*"} 2"#,
                r#"sluicegate_validation_rejected_total{graph="g",keyword="type",path="/q\"x"} 1"#,
            ]
        );
    }
}
