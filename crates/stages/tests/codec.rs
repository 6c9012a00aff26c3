//! Codecs: arbitrary values round trip through JSON and bincode; arbitrary
//! bytes (and corrupted encodings) never panic a decoder; deep nesting is an
//! error, not a stack overflow.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluicegate_stages::codec::{Bincode, Codec, CodecError, Json, PayloadError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Kind {
    Plain,
    Count(u32),
    Named { x: i16, label: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    sku: String,
    qty: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sample {
    id: u64,
    delta: i64,
    ratio: f64,
    name: String,
    raw: Vec<u8>,
    flag: Option<bool>,
    kind: Kind,
    items: Vec<Item>,
    attrs: BTreeMap<String, i32>,
    ch: char,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Plain),
        any::<u32>().prop_map(Kind::Count),
        (any::<i16>(), ".*").prop_map(|(x, label)| Kind::Named { x, label }),
    ]
}

fn sample() -> impl Strategy<Value = Sample> {
    (
        (
            any::<u64>(),
            any::<i64>(),
            any::<f64>().prop_filter("finite", |f| f.is_finite()),
        ),
        (
            ".*",
            prop::collection::vec(any::<u8>(), 0..64),
            any::<Option<bool>>(),
        ),
        kind(),
        prop::collection::vec(
            (".{0,12}", any::<u32>()).prop_map(|(sku, qty)| Item { sku, qty }),
            0..6,
        ),
        prop::collection::btree_map(".{0,8}", any::<i32>(), 0..6),
        any::<char>(),
    )
        .prop_map(
            |((id, delta, ratio), (name, raw, flag), kind, items, attrs, ch)| Sample {
                id,
                delta,
                ratio,
                name,
                raw,
                flag,
                kind,
                items,
                attrs,
                ch,
            },
        )
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".*".prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(".{0,10}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn json_round_trips_typed_values(v in sample()) {
        let bytes = Json.encode(&v).expect("encodes");
        prop_assert_eq!(Codec::<Sample>::decode(&Json, &bytes).expect("decodes"), v);
    }

    #[test]
    fn json_round_trips_arbitrary_documents(v in json_value()) {
        let bytes = Json.encode(&v).expect("encodes");
        prop_assert_eq!(Codec::<Value>::decode(&Json, &bytes).expect("decodes"), v);
    }

    #[test]
    fn bincode_round_trips_typed_values(v in sample()) {
        let codec = Bincode::<{ 1 << 20 }>;
        let bytes = codec.encode(&v).expect("encodes");
        prop_assert_eq!(Codec::<Sample>::decode(&codec, &bytes).expect("decodes"), v);
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        // Whatever the result, it is a value or a decode error, never a panic.
        let _ = Codec::<Value>::decode(&Json, &bytes);
        let _ = Codec::<Sample>::decode(&Json, &bytes);
        let _ = Codec::<Sample>::decode(&Bincode::<4096>, &bytes);
        let _ = Codec::<Vec<String>>::decode(&Bincode::<4096>, &bytes);
        let _ = Codec::<BTreeMap<u64, Vec<u8>>>::decode(&Bincode::<4096>, &bytes);
        if let Err(e) = Codec::<Sample>::decode(&Bincode::<4096>, &bytes) {
            prop_assert!(matches!(e, CodecError::Decode { codec: "bincode", .. }), "{e:?}");
        }
    }

    #[test]
    fn corrupted_encodings_never_panic_a_decoder(
        v in sample(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        for codec in [Arc::new(Json) as Arc<dyn Codec<Sample>>, Arc::new(Bincode::<4096>)] {
            let mut bytes = codec.encode(&v).expect("encodes");
            for (at, b) in &flips {
                let i = at.index(bytes.len());
                bytes[i] ^= b | 1;
            }
            let _ = codec.decode(&bytes);
            let _ = codec.decode(&bytes[..cut.index(bytes.len())]);
        }
    }
}

#[test]
fn hundred_thousand_nested_arrays_are_an_error_not_a_stack_overflow() {
    let deep = "[".repeat(100_000);
    let err = Codec::<Value>::decode(&Json, deep.as_bytes()).expect_err("too deep");
    assert_eq!(
        err.reason(),
        Some(&PayloadError::TooDeep {
            line: 1,
            column: 128
        })
    );
    assert_eq!(
        err.to_string(),
        "json decode: nesting deeper than 127 levels at line 1 column 128"
    );
}

#[test]
fn bincode_limit_refuses_huge_length_prefixes() {
    // A Vec<u8> claiming u64::MAX elements: an error, not an allocation.
    let mut bytes = vec![253u8];
    bytes.extend_from_slice(&u64::MAX.to_le_bytes());
    let err = Codec::<Vec<u8>>::decode(&Bincode::<4096>, &bytes).expect_err("refused");
    assert_eq!(
        err.reason().map(PayloadError::rule),
        Some("binary"),
        "{err}"
    );
    let too_long = vec![0u8; 4097];
    assert_eq!(
        Codec::<Vec<u8>>::decode(&Bincode::<4096>, &too_long)
            .expect_err("too long")
            .to_string(),
        "bincode decode: payload of 4097 bytes > max 4096"
    );
}

#[tokio::test]
async fn decode_stage_fails_only_the_bad_items() {
    use sluicegate_core::testing::{AckLog, CollectSink, VecSource, run_to_end};
    use sluicegate_core::{DeadLetter, Graph, StageSpec};
    use sluicegate_stages::codec::decode;

    let acks = AckLog::new();
    let out = CollectSink::<Item>::new();
    let dead = CollectSink::<DeadLetter>::new();
    let input: Vec<Bytes> = [r#"{"sku":"a","qty":1}"#, r#"{"sku":"b"}"#, "\u{0}"]
        .into_iter()
        .map(Bytes::from)
        .collect();
    let mut g = Graph::builder("decode");
    g.dead_letters(StageSpec::new("dlq", dead.clone()));
    g.source("src", VecSource::new(input, acks.clone()))
        .via(StageSpec::new("decode", decode::<Item, _>(Json)))
        .to(StageSpec::new("sink", out.clone()));
    let report = run_to_end(g, std::time::Duration::from_secs(30)).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        out.items(),
        vec![Item {
            sku: "a".into(),
            qty: 1
        }]
    );
    acks.assert_each_once(3);
    let reasons: Vec<String> = dead
        .items()
        .iter()
        .map(|d| d.error.message().to_string())
        .collect();
    assert_eq!(
        reasons,
        [
            "json decode: does not fit the type at line 1 column 11: missing field `qty`",
            "json decode: invalid JSON at line 1 column 1: expected value",
        ]
    );
}
