//! Kafka source and sink against a real Kafka-compatible broker (Tansu on
//! 127.0.0.1:9092, started by scripts/kafka-up, which the test command runs).
//! These fail, never skip, when the broker is missing.
//!
//! The crash-and-restart, stall and rebalance scenarios run on the mock
//! cluster only (tests/mock.rs): against Tansu 0.6.0, once a consumer group
//! rebalances (a member leaves and another joins, as in a restart) or a
//! consumer pauses its partitions, the broker often stops answering that
//! consumer's fetch requests (librdkafka logs "Timed out 2 in-flight ...
//! requests" every 6 to 11 s and no record arrives again), so those scenarios
//! cannot complete on it reliably. Crash-and-restart passed here several
//! times and then hung this way, so it is not in the suite.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_broker_end_to_end_commits_only_finished_prefixes() {
    let brokers = real_broker();
    scenarios::end_to_end(&brokers, real_topic).await;
}
