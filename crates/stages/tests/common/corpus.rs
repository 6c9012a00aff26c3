//! The malformed-input corpus: each input with what must become of it, and
//! the validator the corpus pipeline runs (the order rules of
//! `sluicegate_stages::orders`, with a payload limit of its own).

use sluicegate_stages::orders;
use sluicegate_stages::validate::Validator;

/// What must become of an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Stored in the database.
    Stored,
    /// Dropped by the transform's filter (a test record).
    Filtered,
    /// Dead-lettered by `stage` with exactly `reason`.
    Dead { stage: &'static str, reason: String },
}

/// One corpus entry.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub input: Vec<u8>,
    pub expect: Expect,
}

pub const MAX_PAYLOAD: usize = 4096;

/// The order rules ([`orders::rules`]) with the corpus's payload limit.
pub fn validator() -> Validator {
    orders::rules()
        .max_payload_bytes(MAX_PAYLOAD)
        .build()
        .expect("valid schema")
}

fn dead(stage: &'static str, reason: &str) -> Expect {
    Expect::Dead {
        stage,
        reason: reason.to_string(),
    }
}

fn v(reason: &str) -> Expect {
    dead("validate", reason)
}

fn case(name: &'static str, input: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case {
        name,
        input: input.into(),
        expect,
    }
}

/// Every input, good and bad, in source order (offset = index).
pub fn cases() -> Vec<Case> {
    let deep = format!(r#"{{"id":{}"#, "[".repeat(3000));
    let mut oversize = String::from(r#"{"id":"o-1","amount":1,"currency":"EUR","pad":""#);
    oversize.push_str(&"x".repeat(5000 - oversize.len() - 2));
    oversize.push_str("\"}");
    assert_eq!(oversize.len(), 5000);
    vec![
        // Good records.
        case(
            "minimal",
            r#"{"id":"o-1","amount":10,"currency":"EUR"}"#,
            Expect::Stored,
        ),
        case(
            "all fields",
            r#"{"id":"o-2","amount":99.5,"currency":"USD","email":"a@example.com","qty":3,"tags":["x","y"],"customer":{"country":"DE"}}"#,
            Expect::Stored,
        ),
        case(
            "amount at min",
            r#"{"id":"o-3","amount":0,"currency":"GBP"}"#,
            Expect::Stored,
        ),
        case(
            "amount at max",
            r#"{"id":"o-4","amount":1000,"currency":"EUR"}"#,
            Expect::Stored,
        ),
        case(
            "pretty printed with unicode",
            "{\n  \"id\": \"o-5\",\n  \"amount\": 1.25,\n  \"currency\": \"EUR\",\n  \"email\": \"j\u{fc}rgen@b\u{fc}cher.de\"\n}\n",
            Expect::Stored,
        ),
        case(
            "refund with reason",
            r#"{"id":"o-6","amount":5,"currency":"EUR","refund":true,"reason":"damaged"}"#,
            Expect::Stored,
        ),
        case(
            "unknown fields kept",
            r#"{"id":"o-7","amount":5,"currency":"EUR","extra":{"deep":[1,2,{"x":null}]}}"#,
            Expect::Stored,
        ),
        case(
            "optional fields null",
            r#"{"id":"o-8","amount":5,"currency":"EUR","email":null,"qty":null}"#,
            Expect::Stored,
        ),
        // Filtered by the transform.
        case(
            "test record",
            r#"{"id":"t-1","amount":1,"currency":"EUR","test":true}"#,
            Expect::Filtered,
        ),
        case(
            "another test record",
            r#"{"id":"t-2","amount":2,"currency":"USD","test":true}"#,
            Expect::Filtered,
        ),
        // Not JSON.
        case(
            "truncated before a value",
            r#"{"id":"o-1","amount":"#,
            v("payload: rule json: invalid JSON at line 1 column 21: EOF while parsing a value"),
        ),
        case(
            "truncated inside a string",
            r#"{"id":"o-"#,
            v("payload: rule json: invalid JSON at line 1 column 9: EOF while parsing a string"),
        ),
        case(
            "missing closing brace",
            r#"{"id":"o-1","amount":1,"currency":"EUR""#,
            v("payload: rule json: invalid JSON at line 1 column 39: EOF while parsing an object"),
        ),
        case(
            "trailing characters",
            r#"{"id":"o-1"} x"#,
            v("payload: rule json: invalid JSON at line 1 column 14: trailing characters"),
        ),
        case(
            "single quotes",
            "{'id':1}",
            v("payload: rule json: invalid JSON at line 1 column 2: key must be a string"),
        ),
        case(
            "NaN literal",
            r#"{"id":"o-1","amount":NaN}"#,
            v("payload: rule json: invalid JSON at line 1 column 22: expected value"),
        ),
        case(
            "byte order mark",
            b"\xef\xbb\xbf{}".to_vec(),
            v("payload: rule json: invalid JSON at line 1 column 1: expected value"),
        ),
        case(
            "lone surrogate escape",
            r#"{"id":"\ud800"}"#,
            v("payload: rule json: invalid JSON at line 1 column 14: unexpected end of hex escape"),
        ),
        // Not UTF-8.
        case(
            "invalid byte in a string",
            b"{\"id\":\"o-\xff\"}".to_vec(),
            v("payload: rule utf8: invalid UTF-8 at byte 9"),
        ),
        case(
            "encoded surrogate",
            b"{\"id\":\"\xed\xa0\x80\"}".to_vec(),
            v("payload: rule utf8: invalid UTF-8 at byte 7"),
        ),
        case(
            "latin-1 text",
            b"{\"id\":\"caf\xe9\"}".to_vec(),
            v("payload: rule utf8: invalid UTF-8 at byte 10"),
        ),
        // Empty, null, not an object.
        case("empty payload", "", v("payload: rule empty: empty payload")),
        case(
            "whitespace only",
            " \n\t ",
            v("payload: rule empty: empty payload"),
        ),
        case(
            "null payload",
            "null",
            v("payload: rule object: expected a JSON object, found null"),
        ),
        case(
            "array payload",
            "[1,2]",
            v("payload: rule object: expected a JSON object, found array"),
        ),
        case(
            "string payload",
            r#""hello""#,
            v("payload: rule object: expected a JSON object, found string"),
        ),
        // Too deep, too big.
        case(
            "deeply nested",
            deep,
            v("payload: rule depth: nesting deeper than 127 levels at line 1 column 133"),
        ),
        case(
            "oversize",
            oversize,
            v("payload: rule max_size: payload of 5000 bytes > max 4096"),
        ),
        // Fields.
        case(
            "missing id",
            r#"{"amount":1,"currency":"EUR"}"#,
            v(r#"field "id": rule required: missing"#),
        ),
        case(
            "null id",
            r#"{"id":null,"amount":1,"currency":"EUR"}"#,
            v(r#"field "id": rule required: null"#),
        ),
        case(
            "id of the wrong type",
            r#"{"id":7,"amount":1,"currency":"EUR"}"#,
            v(r#"field "id": rule type: expected string, found integer"#),
        ),
        case(
            "amount as a string",
            r#"{"id":"o-1","amount":"12","currency":"EUR"}"#,
            v(r#"field "amount": rule type: expected number, found string"#),
        ),
        case(
            "amount too large",
            r#"{"id":"o-1","amount":1500,"currency":"EUR"}"#,
            v(r#"field "amount": rule range: 1500 > max 1000"#),
        ),
        case(
            "amount negative",
            r#"{"id":"o-1","amount":-0.5,"currency":"EUR"}"#,
            v(r#"field "amount": rule range: -0.5 < min 0"#),
        ),
        case(
            "currency not allowed",
            r#"{"id":"o-1","amount":1,"currency":"JPY"}"#,
            v(r#"field "currency": rule enum: "JPY" not in ["EUR","GBP","USD"]"#),
        ),
        case(
            "id breaks the pattern",
            r#"{"id":"O 1","amount":1,"currency":"EUR"}"#,
            v(r#"field "id": rule pattern: "O 1" does not match ^[a-z0-9-]{1,36}$"#),
        ),
        case(
            "email breaks the pattern",
            r#"{"id":"o-1","amount":1,"currency":"EUR","email":"not-an-email"}"#,
            v(r#"field "email": rule pattern: "not-an-email" does not match ^[^@\s]+@[^@\s]+$"#),
        ),
        case(
            "qty with a fraction",
            r#"{"id":"o-1","amount":1,"currency":"EUR","qty":1.5}"#,
            v(r#"field "qty": rule type: expected integer, found number"#),
        ),
        case(
            "qty zero",
            r#"{"id":"o-1","amount":1,"currency":"EUR","qty":0}"#,
            v(r#"field "qty": rule range: 0 < min 1"#),
        ),
        case(
            "too many tags",
            r#"{"id":"o-1","amount":1,"currency":"EUR","tags":[1,2,3,4,5,6]}"#,
            v(r#"field "tags": rule length: 6 items > max 5"#),
        ),
        case(
            "country too long",
            r#"{"id":"o-1","amount":1,"currency":"EUR","customer":{"country":"DEU"}}"#,
            v(r#"field "customer.country": rule length: 3 chars > max 2"#),
        ),
        case(
            "refund without a reason",
            r#"{"id":"o-1","amount":1,"currency":"EUR","refund":true}"#,
            v(r#"rule custom "refund_has_reason": a refund needs a reason"#),
        ),
        // Valid, but the transform refuses it.
        case(
            "sub-cent amount",
            r#"{"id":"o-9","amount":10.005,"currency":"EUR"}"#,
            dead(
                "transform",
                r#"step "amount_cents" failed: amount 10.005 has more than 2 decimals"#,
            ),
        ),
    ]
}
