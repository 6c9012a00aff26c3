//! Kafka source and sink against a real Kafka-compatible broker (Tansu on
//! 127.0.0.1:9092, started by scripts/kafka-up, which the test command runs).
//! These fail, never skip, when the broker is missing.
//!
//! The stall and rebalance scenarios run on the mock cluster only (tests/mock.rs):
//! against Tansu 0.6.0, once a consumer group rebalances or a consumer pauses
//! its partitions, the broker stops answering that consumer's fetch requests
//! (librdkafka logs "Timed out 2 in-flight ... requests" every ~11 s and no
//! record arrives again), so those scenarios cannot complete on it.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_broker_end_to_end_commits_only_finished_prefixes() {
    let brokers = real_broker();
    scenarios::end_to_end(&brokers, real_topic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_broker_crash_then_restart_loses_nothing() {
    let brokers = real_broker();
    scenarios::crash_and_restart(&brokers, real_topic).await;
}
