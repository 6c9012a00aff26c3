//! Kafka source and sink against librdkafka's mock cluster: scenarios, and
//! faults the real broker cannot produce on demand (broker down, produce
//! errors).

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use rdkafka::types::RDKafkaRespErr;
use sluicegate_core::{Graph, StageSpec, try_map};
use sluicegate_kafka_io::{
    DeadLetterSink, KafkaConfig, KafkaSink, KafkaSource, ProducerRecord, headers,
};

const LONG: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_commits_only_finished_prefixes() {
    let mock = Mock::new(1);
    scenarios::end_to_end(&mock.brokers, |t, p| mock.topic(t, p)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_then_restart_loses_nothing() {
    let mock = Mock::new(1);
    scenarios::crash_and_restart(&mock.brokers, |t, p| mock.topic(t, p)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_then_up_loses_nothing() {
    const N: u64 = 400;
    let mock = Mock::new(1);
    mock.topic("in", 2);
    produce_numbers(&mock.brokers, "in", 2, N).await;
    let rec = Recorder {
        max_delay_ms: 2,
        ..Recorder::default()
    };
    let mut g = Graph::builder("outage");
    g.source(
        "kafka",
        KafkaSource::new(KafkaConfig::new(&mock.brokers), "g-outage", ["in"])
            .commit_interval(Duration::from_millis(20)),
    )
    .to(StageSpec::new("sink", rec.clone())
        .capacity(8)
        .concurrency(4));
    let running = g.build().expect("valid").start().await.expect("starts");
    eventually(LONG, "some progress", || rec.count() >= 50).await;
    mock.cluster.broker_down(1).expect("broker down");
    // The outage itself.
    tokio::time::sleep(Duration::from_secs(3)).await;
    mock.cluster.broker_up(1).expect("broker up");
    eventually(LONG, "every record after the outage", || {
        histogram(&rec.seen()).len() == N as usize
    })
    .await;
    let report = within(LONG, "shutdown", running.shutdown(Duration::from_secs(30))).await;
    assert!(report.is_clean(), "{report:?}");
    eventually(LONG, "commits after the outage", || {
        committed(&mock.brokers, "g-outage", "in", 2) == vec![Some(200), Some(200)]
    })
    .await;
}

/// Records that fail in a stage, and records the sink cannot deliver
/// (produce requests to the output topic fail), land in the dead-letter topic
/// with headers naming the error, stage, attempts and origin; the source then
/// commits past them (they are finished).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_land_in_the_dead_letter_topic_with_headers() {
    let mock = Mock::new(1);
    mock.topic("in", 1);
    mock.topic("out", 1);
    mock.topic("dlq", 1);
    produce_numbers(&mock.brokers, "in", 1, 10).await;
    // Every produce to "out" fails with a retriable error, so the sink
    // retries and then gives up.
    mock.cluster
        .topic_error(
            "out",
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        )
        .expect("topic error");

    let client = KafkaConfig::new(&mock.brokers).set("message.timeout.ms", "300");
    let sink = KafkaSink::new(&client, "out")
        .expect("sink")
        .max_attempts(2)
        .backoff(Duration::from_millis(10));
    let sink_stats = sink.stats();
    let source = KafkaSource::new(KafkaConfig::new(&mock.brokers), "g-dlq", ["in"])
        .commit_interval(Duration::from_millis(20));
    let handle = source.handle();
    let mut g = Graph::builder("dlq");
    g.dead_letters(
        StageSpec::new(
            "dlq",
            DeadLetterSink::new(&client, "dlq").expect("dlq sink"),
        )
        .capacity(16)
        .concurrency(16),
    );
    g.source("kafka", source)
        .via(StageSpec::new(
            "validate",
            try_map(|b: Bytes| {
                let n: u64 = std::str::from_utf8(&b)
                    .map_err(|e| e.to_string())?
                    .parse()
                    .map_err(|e: std::num::ParseIntError| e.to_string())?;
                if n % 5 == 0 {
                    Err(format!("{n} is a multiple of 5"))
                } else {
                    Ok(ProducerRecord::new(b))
                }
            }),
        ))
        .to(StageSpec::new("produce", sink).capacity(16).concurrency(16));
    let running = g.build().expect("valid").start().await.expect("starts");

    let letters = read_topic(&mock.brokers, "dlq", 10, "read_uncommitted").await;
    eventually(LONG, "the source to commit past the dead letters", || {
        handle.partitions().first().and_then(|p| p.state.committed) == Some(10)
    })
    .await;
    let report = within(LONG, "shutdown", running.shutdown(Duration::from_secs(30))).await;
    assert!(report.is_clean(), "{report:?}");

    let mut by_payload: Vec<(u64, &rdkafka::message::OwnedMessage)> = letters
        .iter()
        .map(|m| {
            let n = std::str::from_utf8(rdkafka::Message::payload(m).expect("payload"))
                .expect("utf8")
                .parse()
                .expect("number");
            (n, m)
        })
        .collect();
    by_payload.sort_by_key(|(n, _)| *n);
    assert_eq!(
        by_payload.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        (0..10).collect::<Vec<u64>>()
    );
    for (n, m) in by_payload {
        assert_eq!(header(m, headers::ORIGIN_TOPIC).as_deref(), Some("in"));
        assert_eq!(header(m, headers::ORIGIN_PARTITION).as_deref(), Some("0"));
        assert_eq!(
            header(m, headers::ORIGIN_OFFSET),
            Some(n.to_string()),
            "record {n}"
        );
        assert_eq!(header(m, headers::KIND).as_deref(), Some("error"));
        if n % 5 == 0 {
            assert_eq!(header(m, headers::STAGE).as_deref(), Some("validate"));
            assert_eq!(
                header(m, headers::ERROR),
                Some(format!("{n} is a multiple of 5"))
            );
            assert_eq!(header(m, headers::ATTEMPTS).as_deref(), Some("1"));
        } else {
            assert_eq!(header(m, headers::STAGE).as_deref(), Some("produce"));
            assert_eq!(
                header(m, headers::ATTEMPTS).as_deref(),
                Some("2"),
                "record {n}"
            );
            let error = header(m, headers::ERROR).unwrap_or_default();
            assert!(
                error.contains("delivery failed after 2 attempt(s)"),
                "record {n}: {error}"
            );
        }
        // The original key travels with the dead letter.
        assert_eq!(rdkafka::Message::key(m), Some(n.to_string().as_bytes()));
    }
    assert_eq!(sink_stats.failed.load(Ordering::SeqCst), 8);
    assert_eq!(sink_stats.retries.load(Ordering::SeqCst), 8);
}

#[tokio::test]
async fn bad_settings_and_missing_topics_fail_clearly() {
    let mock = Mock::new(1);
    let refused = |key: &str, value: &str| {
        KafkaSink::new(&KafkaConfig::new(&mock.brokers).set(key, value), "out")
            .err()
            .unwrap_or_else(|| panic!("`{key}` = `{value}` must fail"))
            .to_string()
    };
    // A bad value names the setting.
    let err = refused("linger.ms", "soon");
    assert!(err.contains("`linger.ms` = `soon`"), "{err}");
    // An unknown property is named.
    let err = refused("no.such.setting", "x");
    assert!(err.contains("no.such.setting"), "{err}");
    // A secret's value is never shown, even when it is the bad one (this
    // build has no OpenSSL, so librdkafka rejects the SSL key password).
    let err = refused("ssl.key.password", "hunter2");
    assert!(err.contains("`ssl.key.password` = `***`"), "{err}");
    assert!(!err.contains("hunter2"));
    // An unknown topic stops the graph with an error naming it.
    let errors = errors_of(
        "missing",
        KafkaSource::new(
            KafkaConfig::new(&mock.brokers).set("allow.auto.create.topics", "false"),
            "g-missing",
            ["nope"],
        )
        .connect_timeout(Duration::from_secs(5)),
    )
    .await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("topic `nope` does not exist"),
        "{}",
        errors[0]
    );
    // An unreachable cluster: a bounded wait, then an error naming the brokers.
    let errors = errors_of(
        "unreachable",
        KafkaSource::new(KafkaConfig::new("127.0.0.1:1"), "g-x", ["in"])
            .connect_timeout(Duration::from_secs(2)),
    )
    .await;
    assert!(
        errors[0].contains("127.0.0.1:1 unreachable"),
        "{}",
        errors[0]
    );
}

#[tokio::test]
async fn more_workers_than_partitions_is_refused() {
    let mock = Mock::new(1);
    mock.topic("two", 2);
    let config = KafkaConfig::new(&mock.brokers);
    let err =
        sluicegate_kafka_io::consumer_group(&config, "g", &["two"], 3, Duration::from_secs(5))
            .await
            .err()
            .expect("refused");
    assert!(
        err.to_string().contains("3 consumers for 2 partitions"),
        "{err}"
    );
    let ok = sluicegate_kafka_io::consumer_group(&config, "g", &["two"], 2, Duration::from_secs(5))
        .await
        .expect("two workers");
    assert_eq!(ok.len(), 2);
}

/// Checking an unreachable cluster waits on the blocking pool: on a
/// current-thread runtime, another task runs to completion while
/// `consumer_group` waits out its connect timeout (a blocking check would
/// hold the only runtime thread until the timeout, and the other task would
/// finish only after it).
#[tokio::test]
async fn consumer_group_waits_for_the_cluster_without_holding_the_runtime() {
    let config = KafkaConfig::new("127.0.0.1:1");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let other = tokio::spawn(async move {
        tokio::task::yield_now().await;
        let _ = tx.send(std::time::Instant::now());
    });
    let started = std::time::Instant::now();
    let err = sluicegate_kafka_io::consumer_group(&config, "g", &["t"], 1, Duration::from_secs(2))
        .await
        .err()
        .expect("unreachable");
    let returned = std::time::Instant::now();
    assert!(
        matches!(err, sluicegate_kafka_io::KafkaIoError::Unreachable { .. }),
        "{err}"
    );
    assert!(
        returned - started >= Duration::from_secs(2),
        "returned before its connect timeout: {:?}",
        returned - started
    );
    other.await.expect("the other task");
    let ran = rx.await.expect("the other task ran");
    assert!(
        ran < started + Duration::from_secs(1),
        "the other task ran {:?} after the check began: the check held the runtime",
        ran - started
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_longer_than_max_poll_interval_keeps_the_group() {
    let mock = Mock::new(1);
    scenarios::stall(&mock.brokers, |t, p| mock.topic(t, p)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_when_a_consumer_joins_and_leaves() {
    let mock = Mock::new(1);
    scenarios::rebalance(
        &mock.brokers,
        |t, p| mock.topic(t, p),
        scenarios::protocol::CLASSIC,
    )
    .await;
}

/// The seeds' many-workers pattern: three members of one consumer group in
/// one process, merged into one stream: each gets a share of the partitions,
/// every record comes out, the group commits everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_workers_in_one_group_share_the_partitions() {
    const PARTS: i32 = 6;
    const N: u64 = 1_200;
    let mock = Mock::new(1);
    mock.topic("many", PARTS);
    produce_numbers(&mock.brokers, "many", PARTS, N).await;
    let config = KafkaConfig::new(&mock.brokers).set("session.timeout.ms", "6000");
    let workers = sluicegate_kafka_io::consumer_group(
        &config,
        "g-many",
        &["many"],
        3,
        Duration::from_secs(5),
    )
    .await
    .expect("three workers");
    let handles: Vec<_> = workers.iter().map(|w| w.handle()).collect();
    let rec = Recorder {
        max_delay_ms: 1,
        ..Recorder::default()
    };
    let mut g = Graph::builder("many");
    let streams = workers
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            g.source(
                format!("kafka-{i}"),
                w.commit_interval(Duration::from_millis(20)),
            )
        })
        .collect();
    sluicegate_core::Stream::merge(streams).to(StageSpec::new("sink", rec.clone())
        .capacity(16)
        .concurrency(8));
    let running = g.build().expect("valid").start().await.expect("starts");
    eventually(LONG, "every record", || {
        histogram(&rec.seen()).len() == N as usize
    })
    .await;
    eventually(LONG, "the group to commit everything", || {
        committed(&mock.brokers, "g-many", "many", PARTS) == vec![Some(200); PARTS as usize]
    })
    .await;
    let report = within(LONG, "shutdown", running.shutdown(Duration::from_secs(30))).await;
    assert!(report.is_clean(), "{report:?}");
    for (i, h) in handles.iter().enumerate() {
        assert!(
            h.stats().records.load(Ordering::SeqCst) > 0,
            "worker {i} got no records"
        );
    }
    let total: u64 = handles
        .iter()
        .map(|h| h.stats().records.load(Ordering::SeqCst))
        .sum();
    println!(
        "many workers: {total} records handed out for {N} ({} duplicates after rebalances)",
        rec.count() - N as usize
    );
}

/// The handle's lag is the high watermark minus the committed offset, per
/// partition, both exact: 0 once everything is finished and committed, the
/// new records' count while they wait behind a closed gate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_the_high_watermark_minus_the_committed_offset() {
    use sluicegate_core::testing::{Gate, GatedSink};
    const PARTS: i32 = 4;
    let mock = Mock::new(1);
    mock.topic("lag", PARTS);
    produce_numbers(&mock.brokers, "lag", PARTS, 400).await;
    let gate = Gate::new();
    gate.open(400);
    let source = KafkaSource::new(KafkaConfig::new(&mock.brokers), "g-lag", ["lag"])
        .commit_interval(Duration::from_millis(20))
        .lag_interval(Duration::from_millis(50));
    let handle = source.handle();
    let mut g = Graph::builder("lag");
    g.source("kafka", source)
        .to(StageSpec::new("sink", GatedSink::<Bytes>::new(gate.clone())).capacity(16));
    let running = g.build().expect("valid").start().await.expect("starts");
    let marks = |high: i64, lag: i64| {
        let parts = handle.partitions();
        parts.len() == PARTS as usize
            && parts
                .iter()
                .all(|p| p.high_watermark == Some(high) && p.lag == Some(lag))
    };
    eventually(LONG, "100 per partition committed, lag 0", || marks(100, 0)).await;
    // 100 more per partition; the gate holds them, so nothing more commits.
    produce_numbers(&mock.brokers, "lag", PARTS, 400).await;
    eventually(LONG, "a lag of 100 per partition", || marks(200, 100)).await;
    gate.open_all();
    eventually(LONG, "everything committed, lag 0", || marks(200, 0)).await;
    let report = within(LONG, "shutdown", running.shutdown(Duration::from_secs(30))).await;
    assert!(report.is_clean(), "{report:?}");
}

/// Runs `source` into a recording sink until the graph ends: its errors.
async fn errors_of(name: &str, source: KafkaSource) -> Vec<String> {
    let mut g = Graph::builder(name);
    g.source("kafka", source)
        .to(StageSpec::new("sink", Recorder::default()));
    let graph = g.build().expect("valid");
    let run = async { graph.start().await.expect("starts").wait().await };
    let report = within(LONG, "the graph", run).await;
    report.errors.iter().map(ToString::to_string).collect()
}
