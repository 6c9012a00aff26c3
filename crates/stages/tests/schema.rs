//! The JSON Schema validator on its own: the reasons (instance path and
//! keyword), the counters per keyword and per path, the order of several
//! violations, formats, drafts, schemas that cannot be used, and the
//! validator as a stage in a graph.

use serde_json::{Value, json};
use sluicegate_core::testing::{AckLog, CollectSink, VecSource};
use sluicegate_core::{DeadLetter, Graph, StageSpec};
use sluicegate_stages::validate::{OTHER_PATHS, SchemaError, SchemaValidator};

fn orders() -> SchemaValidator {
    SchemaValidator::new(&json!({
        "type": "object",
        "required": ["id", "amount"],
        "properties": {
            "id": {"type": "string", "pattern": "^o-[0-9]+$"},
            "amount": {"type": "number", "minimum": 0, "maximum": 1000},
            "currency": {"enum": ["EUR", "USD"]},
            "lines": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["sku"],
                    "properties": {"qty": {"type": "integer", "exclusiveMinimum": 0}}
                }
            },
            "meta": {"type": "object", "additionalProperties": {"type": "string"}},
            "internal": false
        }
    }))
    .expect("the schema compiles")
}

fn reason(v: &SchemaValidator, record: Value) -> String {
    match v.validate(record.clone()) {
        Ok(_) => panic!("{record} was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn each_reason_names_the_instance_path_and_the_keyword() {
    let v = orders();
    let cases = [
        (
            json!({"amount": 1}),
            r#"path "": keyword required: "id" is a required property"#,
        ),
        (
            json!(null),
            r#"path "": keyword type: null is not of type "object""#,
        ),
        (
            json!({"id": "o-1", "amount": "12.50"}),
            r#"path "/amount": keyword type: "12.50" is not of type "number""#,
        ),
        (
            json!({"id": "o-1", "amount": -5}),
            r#"path "/amount": keyword minimum: -5 is less than the minimum of 0"#,
        ),
        (
            json!({"id": "o-1", "amount": 1500}),
            r#"path "/amount": keyword maximum: 1500 is greater than the maximum of 1000"#,
        ),
        (
            json!({"id": "x-1", "amount": 1}),
            r#"path "/id": keyword pattern: "x-1" does not match "^o-[0-9]+$""#,
        ),
        (
            json!({"id": "o-1", "amount": 1, "currency": "JPY"}),
            r#"path "/currency": keyword enum: "JPY" is not one of "EUR" or "USD""#,
        ),
        (
            json!({"id": "o-1", "amount": 1, "lines": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 0}]}),
            r#"path "/lines/1/qty": keyword exclusiveMinimum: 0 is less than or equal to the minimum of 0"#,
        ),
        (
            json!({"id": "o-1", "amount": 1, "lines": [{"qty": 1}]}),
            r#"path "/lines/0": keyword required: "sku" is a required property"#,
        ),
        (
            json!({"id": "o-1", "amount": 1, "meta": {"a/b": 7}}),
            r#"path "/meta/a~1b": keyword type: 7 is not of type "string""#,
        ),
        (
            json!({"id": "o-1", "amount": 1, "internal": true}),
            r#"path "/internal": keyword falseSchema: False schema does not allow true"#,
        ),
    ];
    for (record, want) in cases {
        assert_eq!(reason(&v, record.clone()), want, "{record}");
    }
    assert!(v.validate(json!({"id": "o-1", "amount": 0})).is_ok());
}

#[test]
fn several_violations_come_shallowest_first_in_a_stable_order() {
    let v = orders();
    let record = json!({
        "amount": -1,
        "currency": "JPY",
        "lines": [{"qty": 0}, {"qty": -1}],
        "internal": 1
    });
    let want = concat!(
        r#"path "": keyword required: "id" is a required property; "#,
        r#"path "/amount": keyword minimum: -1 is less than the minimum of 0; "#,
        r#"path "/currency": keyword enum: "JPY" is not one of "EUR" or "USD"; "#,
        r#"path "/internal": keyword falseSchema: False schema does not allow 1; "#,
        "and 4 more"
    );
    let err = v.validate(record.clone()).expect_err("invalid");
    assert_eq!(err.to_string(), want);
    assert_eq!(err.total(), 8);
    assert_eq!(err.violations().len(), 4);
    assert_eq!(err.first().keyword, "required");
    // The same record, its keys in another order: the same reason.
    let reordered: Value = serde_json::from_str(
        r#"{"internal": 1, "lines": [{"qty": 0}, {"qty": -1}], "currency": "JPY", "amount": -1}"#,
    )
    .expect("json");
    assert_eq!(reason(&v, reordered), want);
}

#[test]
fn counters_count_each_record_once_by_keyword_and_path() {
    let v = orders();
    let records = [
        json!({"id": "o-1", "amount": 1}),
        json!({"id": "o-2", "amount": 2}),
        json!({"amount": 1}),
        json!({"amount": 2, "currency": "JPY"}), // counted under its first: required
        json!(null),
        json!([1, 2]),
        json!({"id": "o-3", "amount": -5}),
        json!({"id": "o-3", "amount": 5000}),
        json!({"id": "o-4", "amount": 1, "lines": [{"sku": "a", "qty": 0}]}),
        json!({"id": "o-4", "amount": 1, "lines": [{"sku": "a"}, {"sku": "b", "qty": 0}]}),
        json!({"id": "o-5", "amount": 1, "meta": {"7": 7}}),
    ];
    for r in records {
        let _ = v.validate(r);
    }
    let s = v.stats();
    assert_eq!((s.checked, s.passed, s.rejected), (11, 2, 9));
    let by_keyword: Vec<(&str, u64)> = s.by_keyword.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    assert_eq!(
        by_keyword,
        [
            ("exclusiveMinimum", 2),
            ("maximum", 1),
            ("minimum", 1),
            ("required", 2),
            ("type", 3),
        ]
    );
    assert_eq!(s.at("", "required"), 2);
    assert_eq!(s.at("", "type"), 2);
    assert_eq!(s.at("/amount", "minimum"), 1);
    assert_eq!(s.at("/amount", "maximum"), 1);
    // Both array elements count under one path; a property named "7" is
    // not an index.
    assert_eq!(s.at("/lines/*/qty", "exclusiveMinimum"), 2);
    assert_eq!(s.at("/meta/7", "type"), 1);
    let per_path: u64 = s.by_path.values().flat_map(|m| m.values()).sum();
    assert_eq!(per_path, s.rejected);
}

#[test]
fn distinct_paths_beyond_the_bound_are_counted_together() {
    let v = SchemaValidator::builder()
        .max_counted_paths(2)
        .build(&json!({"additionalProperties": {"type": "integer"}}))
        .expect("compiles");
    for key in ["a", "b", "c", "d", "a"] {
        let _ = v.validate(json!({ key: "not an integer" }));
    }
    let s = v.stats();
    assert_eq!(s.at("/a", "type"), 2);
    assert_eq!(s.at("/b", "type"), 1);
    assert_eq!(s.at(OTHER_PATHS, "type"), 2);
    assert_eq!(s.keyword("type"), 5);
    assert_eq!(s.rejected, 5);
}

#[test]
fn any_json_value_can_be_a_record() {
    let v = SchemaValidator::new(&json!({"type": ["integer", "string"], "minimum": 3}))
        .expect("compiles");
    assert_eq!(v.validate(json!(7)).ok(), Some(json!(7)));
    assert_eq!(v.validate(json!("x")).ok(), Some(json!("x")));
    assert_eq!(
        reason(&v, json!(2)),
        r#"path "": keyword minimum: 2 is less than the minimum of 3"#
    );
    assert_eq!(
        reason(&v, json!([1])),
        r#"path "": keyword type: [1] is not of types "integer", "string""#
    );
}

#[test]
fn long_values_and_messages_are_cut() {
    let long_pattern = format!("^{}$", "a".repeat(300));
    let v = SchemaValidator::new(&json!({
        "properties": {
            "a": {"type": "string"},
            "b": {"enum": (0..500).collect::<Vec<u32>>()},
            "c": {"pattern": long_pattern}
        }
    }))
    .expect("compiles");
    // The offending value: its first 64 characters.
    let big: Vec<u32> = (0..10_000).collect();
    let text = serde_json::to_string(&big).expect("json");
    assert_eq!(
        reason(&v, json!({ "a": big })),
        format!(
            r#"path "/a": keyword type: {}... is not of type "string""#,
            &text[..64]
        )
    );
    // A long enum is summarised by the validator itself.
    assert_eq!(
        reason(&v, json!({"b": -1})),
        r#"path "/b": keyword enum: -1 is not one of 0, 1 or 498 other candidates"#
    );
    // Any message: its first 200 characters.
    let message = format!(r#""b" does not match "{long_pattern}""#);
    assert_eq!(
        reason(&v, json!({"c": "b"})),
        format!(r#"path "/c": keyword pattern: {}..."#, &message[..200])
    );
}

#[test]
fn formats_are_annotations_unless_asserted() {
    let schema = json!({"properties": {"email": {"type": "string", "format": "email"}}});
    let annotate = SchemaValidator::new(&schema).expect("compiles");
    assert!(
        annotate
            .validate(json!({"email": "not an address"}))
            .is_ok()
    );
    let assert = SchemaValidator::builder()
        .formats(true)
        .build(&schema)
        .expect("compiles");
    assert!(assert.validate(json!({"email": "a@example.com"})).is_ok());
    assert_eq!(
        reason(&assert, json!({"email": "not an address"})),
        r#"path "/email": keyword format: "not an address" is not a "email""#
    );
}

#[test]
fn the_draft_is_2020_12_unless_the_schema_names_another() {
    let v = SchemaValidator::new(&json!({"type": "object"})).expect("compiles");
    assert_eq!(v.draft(), "2020-12");
    // Draft 7's `items` as an array is a tuple; in 2020-12 it would be invalid.
    let v = SchemaValidator::new(&json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "items": [{"type": "integer"}, {"type": "string"}]
    }))
    .expect("compiles");
    assert_eq!(v.draft(), "7");
    assert!(v.validate(json!([1, "a"])).is_ok());
    assert_eq!(
        reason(&v, json!([1, 2])),
        r#"path "/1": keyword type: 2 is not of type "string""#
    );
}

#[test]
fn a_schema_that_cannot_be_used_says_where_and_why() {
    let invalid = |schema: Value| match SchemaValidator::new(&schema) {
        Ok(_) => panic!("{schema} compiled"),
        Err(e) => e,
    };
    let e = invalid(json!({"properties": {"n": {"minimum": "zero"}}}));
    assert!(matches!(e, SchemaError::Invalid { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        r#"not a valid draft 2020-12 schema: at "/properties/n/minimum": "zero" is not of type "number""#
    );
    let e = invalid(json!({"pattern": "(unclosed"}));
    assert_eq!(
        e.to_string(),
        r#"not a valid draft 2020-12 schema: at "/pattern": "(unclosed" is not a "regex""#
    );
    let e = invalid(json!(42));
    assert!(matches!(e, SchemaError::Invalid { .. }), "{e}");
    let e = invalid(json!({"$ref": "#/$defs/missing"}));
    assert!(matches!(e, SchemaError::Reference { .. }), "{e:?}");
    assert!(e.to_string().contains("/$defs/missing"), "{e}");
    let e = invalid(json!({"$ref": "https://example.com/other.json"}));
    assert!(matches!(e, SchemaError::Reference { .. }), "{e:?}");
    assert!(
        e.to_string().contains("https://example.com/other.json"),
        "{e}"
    );
    let e = invalid(json!({"$schema": "https://example.com/my-meta"}));
    assert!(matches!(e, SchemaError::Reference { .. }), "{e:?}");
    assert!(e.to_string().contains("https://example.com/my-meta"), "{e}");
}

#[test]
fn schema_files_are_named_in_their_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.json");
    let e = SchemaValidator::from_file(&missing).expect_err("no file");
    assert!(matches!(e, SchemaError::Read { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("cannot read schema file {}: ", missing.display())),
        "{e}"
    );

    let not_json = dir.path().join("broken.json");
    std::fs::write(&not_json, "{\"type\": \"object\",}").expect("write");
    let e = SchemaValidator::from_file(&not_json).expect_err("not JSON");
    assert_eq!(
        e.to_string(),
        format!(
            "{}: not JSON: trailing comma at line 1 column 19",
            not_json.display()
        )
    );

    let invalid = dir.path().join("invalid.json");
    std::fs::write(&invalid, r#"{"type": "objekt"}"#).expect("write");
    let e = SchemaValidator::from_file(&invalid).expect_err("invalid");
    assert!(
        e.to_string().starts_with(&format!(
            "{}: not a valid draft 2020-12 schema: at \"/type\": ",
            invalid.display()
        )),
        "{e}"
    );

    let good = dir.path().join("good.json");
    std::fs::write(&good, r#"{"type": "object", "required": ["id"]}"#).expect("write");
    let v = SchemaValidator::from_file(&good).expect("compiles");
    assert!(v.validate(json!({"id": 1})).is_ok());
}

#[tokio::test]
async fn in_a_graph_each_rejected_record_is_dead_lettered_with_its_reason() {
    let v = orders();
    let input = vec![
        json!({"id": "o-1", "amount": 1}),
        json!({"id": "o-2", "amount": -1}),
        json!("text"),
        json!({"id": "o-3", "amount": 3}),
    ];
    let acks = AckLog::new();
    let stored = CollectSink::<Value>::new();
    let dead = CollectSink::<DeadLetter>::new();
    let mut g = Graph::builder("schema");
    g.dead_letters(StageSpec::new("dlq", dead.clone()));
    g.source("input", VecSource::new(input, acks.clone()))
        .via(StageSpec::new("validate", v.clone()))
        .to(StageSpec::new("store", stored.clone()));
    let report = g
        .build()
        .expect("graph")
        .start()
        .await
        .expect("start")
        .wait()
        .await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!((acks.delivered(), acks.dead_lettered()), (2, 2));
    assert_eq!(stored.items().len(), 2);
    let reasons: Vec<(String, String)> = dead
        .items()
        .iter()
        .map(|d| (d.error.stage().to_string(), d.error.message().to_string()))
        .collect();
    assert_eq!(
        reasons,
        [
            (
                "validate".to_string(),
                r#"path "/amount": keyword minimum: -1 is less than the minimum of 0"#.to_string()
            ),
            (
                "validate".to_string(),
                r#"path "": keyword type: "text" is not of type "object""#.to_string()
            ),
        ]
    );
    assert_eq!(v.stats().rejected, 2);
}
