//! Transforms in a graph: a fused chain filters and fails items alone,
//! typed conversions, and the enrich-and-hash transform on the blocking pool.

mod common;

use std::time::Duration;

use common::{DeadLog, LIMIT};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluicegate_core::testing::{AckLog, CollectSink, VecSource, run_to_end};
use sluicegate_core::{DropReason, Graph, Outcome, StageSpec};
use sluicegate_stages::Record;
use sluicegate_stages::transform::{
    EnrichAndHash, EnrichConfig, Transform, enrich_and_hash, typed, untyped,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: String,
    amount: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Priced {
    id: String,
    cents: i64,
}

fn record(v: Value) -> Record {
    match v {
        Value::Object(r) => r,
        other => panic!("not an object: {other}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_typed_chain_filters_and_fails_items_alone() {
    let inputs = vec![
        record(json!({"id": "a", "amount": 1.5})),
        record(json!({"id": "b", "amount": 0})), // filtered
        record(json!({"id": "c"})),              // does not fit Order
        record(json!({"id": "d", "amount": 2000.0})), // refused by the step
        record(json!({"id": "e", "amount": 3})),
    ];
    let chain = Transform::<Order>::new()
        .filter(|o| o.amount > 0.0)
        .try_map("price", |o: Order| {
            if o.amount > 1000.0 {
                Err(format!("amount {} over the limit", o.amount))
            } else {
                Ok(Priced {
                    id: o.id,
                    cents: (o.amount * 100.0).round() as i64,
                })
            }
        });
    let acks = AckLog::new();
    let dead = DeadLog::default();
    let out = CollectSink::<Record>::new();
    let mut g = Graph::builder("typed");
    g.dead_letters(StageSpec::new("dlq", dead.clone()));
    g.source("src", VecSource::new(inputs, acks.clone()))
        .via(StageSpec::new("typed", typed::<Order>()))
        .via(StageSpec::new("chain", chain))
        .via(StageSpec::new("untyped", untyped::<Priced>()))
        .to(StageSpec::new("sink", out.clone()));
    let report = run_to_end(g, LIMIT).await;
    assert!(report.is_clean(), "{report:?}");
    acks.assert_each_once(5);
    assert_eq!(
        out.items(),
        vec![
            record(json!({"id": "a", "cents": 150})),
            record(json!({"id": "e", "cents": 300}))
        ]
    );
    assert!(matches!(
        acks.outcome(1),
        Some(Outcome::Dropped(DropReason::Filtered))
    ));
    let letters: Vec<(i64, String, String)> = dead
        .items()
        .into_iter()
        .map(|d| (d.offset, d.stage, d.message))
        .collect();
    assert_eq!(
        letters,
        [
            (
                2,
                "typed".to_string(),
                "record does not fit Order: missing field `amount`".to_string()
            ),
            (
                3,
                "chain".to_string(),
                "step \"price\" failed: amount 2000 over the limit".to_string()
            ),
        ]
    );
    let snap = report.snapshot;
    assert_eq!(snap.stage("chain").map(|s| s.filtered), Some(1));
}

#[tokio::test]
async fn enrich_and_hash_runs_on_the_blocking_pool_and_matches_the_function() {
    let config = EnrichConfig::new(*b"key", ["email", "phone"]).rounds(200);
    let reference = EnrichAndHash::new(config.clone());
    let inputs: Vec<Record> = (0..64)
        .map(|i| {
            record(json!({
                "id": i,
                "email": format!("user{i}@example.com"),
                "phone": if i % 2 == 0 { json!(null) } else { json!(4_915_000_000i64 + i) },
            }))
        })
        .collect();
    let want: Vec<Record> = inputs.iter().cloned().map(|r| reference.apply(r)).collect();
    let acks = AckLog::new();
    let out = CollectSink::<Record>::new();
    let mut g = Graph::builder("enrich");
    g.source("src", VecSource::new(inputs, acks.clone()))
        .via(
            StageSpec::new("enrich", enrich_and_hash(config, 2))
                .concurrency(4)
                .capacity(8)
                .order(sluicegate_core::Order::Preserve),
        )
        .to(StageSpec::new("sink", out.clone()));
    let report = run_to_end(g, Duration::from_secs(60)).await;
    assert!(report.is_clean(), "{report:?}");
    acks.assert_each_once(64);
    let got = out.items();
    assert_eq!(got, want);
    // Personal fields are replaced, nulls left alone, every record fingerprinted.
    assert!(got[0]["phone"].is_null());
    assert_eq!(got[1]["phone"].as_str().map(str::len), Some(64));
    assert!(
        got.iter()
            .all(|r| r["email"].as_str().is_some_and(|e| !e.contains('@')))
    );
    let fingerprints: std::collections::HashSet<_> =
        got.iter().map(|r| r["fingerprint"].clone()).collect();
    assert_eq!(fingerprints.len(), 64);
}
