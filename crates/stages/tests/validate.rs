//! The validator on its own: the malformed corpus, counters per rule and
//! field, deep nesting without a stack overflow, oversize before parsing.

mod common;

use common::corpus::{self, Expect};
use serde_json::json;
use sluicegate_stages::validate::{Field, Kind, Rejection, Validator};

#[test]
fn every_corpus_input_gets_its_expected_reason() {
    let v = corpus::validator();
    let mut failures = Vec::new();
    for c in corpus::cases() {
        let got = v.validate(&c.input);
        match (&c.expect, &got) {
            (
                Expect::Dead {
                    stage: "validate",
                    reason,
                },
                Err(e),
            ) if e.to_string() == *reason => {}
            (
                Expect::Dead {
                    stage: "validate",
                    reason,
                },
                _,
            ) => {
                failures.push(format!("{}: expected {reason:?}, got {got:?}", c.name));
            }
            // Stored, filtered, or failing later: the validator lets it through.
            (_, Ok(_)) => {}
            (_, Err(e)) => failures.push(format!("{}: rejected unexpectedly: {e}", c.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn counters_per_rule_and_field_match_the_corpus() {
    let v = corpus::validator();
    let cases = corpus::cases();
    for c in &cases {
        let _ = v.validate(&c.input);
    }
    let stats = v.stats();
    let rejected = cases
        .iter()
        .filter(|c| {
            matches!(
                c.expect,
                Expect::Dead {
                    stage: "validate",
                    ..
                }
            )
        })
        .count() as u64;
    assert_eq!(stats.checked, cases.len() as u64);
    assert_eq!(stats.rejected, rejected);
    assert_eq!(stats.passed + stats.rejected, stats.checked);
    // Count the corpus' expected reasons by their rule, and compare.
    let mut want = std::collections::BTreeMap::<String, u64>::new();
    for c in &cases {
        if let Expect::Dead {
            stage: "validate",
            reason,
        } = &c.expect
        {
            let rule = reason
                .split("rule ")
                .nth(1)
                .and_then(|r| r.split([':', ' ']).next())
                .expect("reason names a rule");
            *want.entry(rule.to_string()).or_insert(0) += 1;
        }
    }
    let got: std::collections::BTreeMap<String, u64> = stats
        .by_rule
        .iter()
        .map(|(k, n)| (k.to_string(), *n))
        .collect();
    assert_eq!(got, want);
    assert_eq!(stats.field_rule("amount", "range"), 2);
    assert_eq!(stats.field_rule("id", "required"), 2);
    assert_eq!(stats.field_rule("customer.country", "length"), 1);
    assert_eq!(stats.by_custom.get("refund_has_reason"), Some(&1));
}

#[test]
fn hundred_thousand_nested_arrays_are_rejected_not_a_stack_overflow() {
    let v = Validator::builder()
        .max_payload_bytes(usize::MAX)
        .build()
        .expect("valid");
    for (open, close) in [("[", "]"), (r#"{"a":"#, "}")] {
        let deep = format!("{}1{}", open.repeat(100_000), close.repeat(100_000));
        let err = v.validate(deep.as_bytes()).expect_err("too deep");
        assert_eq!(err.rule(), "depth", "{err}");
        assert!(
            err.to_string()
                .starts_with("payload: rule depth: nesting deeper than 127 levels"),
            "{err}"
        );
    }
    // 127 levels (an object and 126 arrays) are fine; 128 are not.
    let at_limit =
        |arrays: usize| format!(r#"{{"a":{}1{}}}"#, "[".repeat(arrays), "]".repeat(arrays));
    assert!(v.validate(at_limit(126).as_bytes()).is_ok());
    assert_eq!(
        v.validate(at_limit(127).as_bytes()).map_err(|e| e.rule()),
        Err("depth")
    );
}

#[test]
fn oversize_is_rejected_before_parsing() {
    let v = Validator::builder()
        .max_payload_bytes(10)
        .build()
        .expect("valid");
    // Not JSON at all, but too big first: the size rule answers.
    let err = v.validate(&[0xff; 11]).expect_err("too big");
    assert_eq!(
        err.to_string(),
        "payload: rule max_size: payload of 11 bytes > max 10"
    );
    assert!(v.validate(br#"{"a":123}"#).is_ok());
}

#[test]
fn the_first_broken_rule_is_reported_and_counted_once() {
    let v = Validator::builder()
        .field(
            Field::new("a")
                .required()
                .kind(Kind::Integer)
                .range(0.0, 10.0),
        )
        .field(Field::new("b").required())
        .build()
        .expect("valid");
    let err = v
        .validate_value(json!({"a": 50}))
        .expect_err("two broken rules");
    assert_eq!(
        err,
        Rejection::Field {
            field: "a".into(),
            rule: sluicegate_stages::validate::FieldRule::Range,
            detail: "50 > max 10".into()
        }
    );
    assert_eq!(err.field(), Some("a"));
    let stats = v.stats();
    assert_eq!((stats.checked, stats.rejected), (1, 1));
    assert_eq!(stats.field_rule("b", "required"), 0);
}

#[test]
fn an_invalid_pattern_is_a_build_error_naming_the_field() {
    let err = Validator::builder()
        .field(Field::new("sku").pattern("(unclosed"))
        .build()
        .expect_err("invalid regex");
    assert!(
        err.to_string()
            .starts_with(r#"field "sku": invalid pattern"#),
        "{err}"
    );
}
