//! Kafka source and sink against Apache Kafka (KRaft, on 127.0.0.1:9092,
//! started by scripts/kafka-up, which the test command runs). These fail,
//! never skip, when the broker is missing.
//!
//! The scenarios of tests/mock.rs on the real thing: end to end with a hole
//! that holds the commit back, crash and restart, a stall longer than
//! `max.poll.interval.ms`, and a second consumer joining and leaving under
//! each group protocol: the classic one with eager (`range`) and
//! incremental (`cooperative-sticky`) assignment, and KIP-848's consumer
//! protocol (`group.protocol=consumer`).

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_broker_rebalance_eager_range() {
    let brokers = real_broker();
    scenarios::rebalance(&brokers, real_topic, scenarios::protocol::EAGER).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_broker_rebalance_cooperative_sticky() {
    let brokers = real_broker();
    scenarios::rebalance(&brokers, real_topic, scenarios::protocol::COOPERATIVE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_broker_rebalance_kip_848_consumer_protocol() {
    let brokers = real_broker();
    scenarios::rebalance(&brokers, real_topic, scenarios::protocol::CONSUMER).await;
}
