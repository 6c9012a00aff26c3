//! Kafka source and sink against a real Kafka-compatible broker (Tansu on
//! 127.0.0.1:9092, started by scripts/kafka-up, which the test command runs).
//! These fail, never skip, when the broker is missing.
//!
//! The same scenarios as on the mock cluster: end to end, crash and
//! restart, a stall longer than `max.poll.interval.ms`, a rebalance. Their
//! input is produced one record per batch: Tansu 0.6.0 does not answer a
//! fetch from an offset inside a record batch (librdkafka then logs "Timed
//! out 2 in-flight ... requests" every few seconds and no record arrives),
//! and a restart, a rebalance or a resume after a pause fetches from exactly
//! such an offset when batches hold many records.
//!
//! The in-process rebalance scenario (two consumers of one group in this
//! process, the second joining mid-stream) still hangs on Tansu 0.6.0 with
//! single-record batches: after the rebalance neither consumer's fetches
//! are answered. It runs on the mock cluster (tests/mock.rs); the real-broker
//! rebalance is covered by two `sluicegate` processes sharing a group in
//! crates/runner/tests/scale_out.rs, which passes on Tansu.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_broker_stall_longer_than_max_poll_interval_keeps_the_group() {
    let brokers = real_broker();
    scenarios::stall(&brokers, real_topic).await;
}
