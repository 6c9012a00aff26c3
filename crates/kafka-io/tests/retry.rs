//! Non-blocking retries on Apache Kafka (scripts/kafka-up): transient
//! failures go through retry topics and come back no earlier than due,
//! while the input's commits move on; a record that keeps failing ends in
//! the dead-letter topic with its history. Reconciled from the broker.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use rdkafka::Message;
use sluicegate_core::{Graph, Origin, Outputs, Stage, StageSpec, Stream, Transient};
use sluicegate_kafka_io::retry::Attempt;
use sluicegate_kafka_io::{DeadLetterSink, KafkaConfig, KafkaSource, RetryTopics, headers};

const LONG: Duration = Duration::from_secs(120);
const N: u64 = 60;
const PARTITIONS: i32 = 3;

/// Fails `n % 5 == 0` transiently on its first reading only, and
/// `n % 10 == 0` on every attempt; records when each retried record came
/// back and its due time.
#[derive(Clone, Default)]
struct Flaky {
    stored: Arc<Mutex<Vec<u64>>>,
    /// (n, seen at, due) for every record read from a retry topic.
    returns: Arc<Mutex<Vec<(u64, SystemTime, SystemTime)>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("record {0} refused for now")]
struct Refused(u64);

impl Stage for Flaky {
    type In = Bytes;
    type Out = ();
    type Error = Transient;

    async fn process(&self, payload: Bytes, origin: &Origin) -> Result<Outputs<()>, Transient> {
        let n: u64 = std::str::from_utf8(&payload)
            .expect("utf-8")
            .parse()
            .expect("a number");
        let retry = origin
            .headers
            .iter()
            .find(|(k, _)| k == headers::RETRY_DUE)
            .and_then(|(_, v)| sluicegate_kafka_io::retry::due(v));
        if let Some(due) = retry {
            self.returns
                .lock()
                .expect("lock")
                .push((n, SystemTime::now(), due));
        }
        if n % 10 == 0 || (n % 5 == 0 && retry.is_none()) {
            return Err(Transient::new(Refused(n)));
        }
        self.stored.lock().expect("lock").push(n);
        Ok(Outputs::one(()))
    }
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_go_round_the_retry_topics_and_never_hold_the_partition() {
    logs();
    let brokers = real_broker();
    let input = unique("retry-in");
    let dead = unique("retry-dlq");
    let delays = [Duration::from_millis(1500), Duration::from_secs(3)];
    let retry = RetryTopics::new(&input, &delays);
    real_topic(&input, PARTITIONS);
    real_topic(&dead, 1);
    for t in retry.topics() {
        real_topic(&t, 2);
    }
    produce_numbers(&brokers, &input, PARTITIONS, N).await;

    let config = KafkaConfig::new(&brokers);
    let group = unique("g-retry");
    let main = KafkaSource::new(config.clone(), &group, [&input])
        .commit_interval(Duration::from_millis(100));
    let main_handle = main.handle();
    let retries = KafkaSource::new(config.clone(), format!("{group}.retry"), retry.topics())
        .due_header(headers::RETRY_DUE)
        .commit_interval(Duration::from_millis(100));
    let retry_handle = retries.handle();
    let dlq = DeadLetterSink::new(&config, &dead)
        .expect("dead-letter sink")
        .retry(retry.clone());
    let stats = dlq.retry_stats();
    let flaky = Flaky::default();
    let mut g = Graph::builder("retry");
    g.dead_letters(StageSpec::new("dead_letters", dlq));
    let a = g.source("kafka", main);
    let b = g.source("retry", retries);
    Stream::merge(vec![a, b]).to(StageSpec::new("flaky", flaky.clone()));
    let running = within(LONG, "start", g.build().expect("graph").start())
        .await
        .expect("starts");

    // The input's commits reach its end while the refused records are still
    // on their way round (the n % 10 records cannot finish before both
    // delays passed): nothing holds its partitions.
    let ends: Vec<Option<i64>> = (0..PARTITIONS)
        .map(|p| Some(((N as i64) - p as i64 + PARTITIONS as i64 - 1) / PARTITIONS as i64))
        .collect();
    eventually(LONG, "the input's commits to reach its end", || {
        main_handle
            .partitions()
            .iter()
            .map(|p| p.state.committed)
            .collect::<Vec<_>>()
            == ends
    })
    .await;
    let forever: BTreeSet<u64> = (0..N).filter(|n| n % 10 == 0).collect();
    let dead_now = stats
        .dead_lettered
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(dead_now, 0, "nothing exhausted its retries yet");

    // Every record accounted for: stored, or dead-lettered after its last retry.
    let stored_want: BTreeSet<u64> = (0..N).filter(|n| n % 10 != 0).collect();
    eventually(LONG, "every record stored or dead-lettered", || {
        flaky.stored.lock().expect("lock").len() == stored_want.len()
            && stats
                .dead_lettered
                .load(std::sync::atomic::Ordering::SeqCst)
                == forever.len() as u64
    })
    .await;
    let report = within(LONG, "shutdown", running.shutdown(Duration::from_secs(30))).await;
    assert!(report.is_clean(), "{report:?}");

    // What the retry consumer committed (its last commit was at shutdown).
    let retry_ends: Vec<(String, i32, i64)> = retry
        .topics()
        .iter()
        .flat_map(|t| {
            let read = committed(&brokers, &format!("{group}.retry"), t, 2);
            read.into_iter()
                .enumerate()
                .map(move |(p, o)| (t.clone(), p as i32, o.unwrap_or(0)))
                .collect::<Vec<_>>()
        })
        .collect();
    // Stored: every record but the n % 10 ones, each once.
    let mut stored = flaky.stored.lock().expect("lock").clone();
    stored.sort_unstable();
    assert_eq!(stored, stored_want.iter().copied().collect::<Vec<_>>());

    // The retry topics, read from the broker: level 1 holds every n % 5
    // record once, level 2 the n % 10 ones; each carries its original
    // origin, attempt count and history.
    let levels = retry.topics();
    let first: Vec<_> = read_topic(&brokers, &levels[0], (N / 5) as usize, "read_committed").await;
    let second: Vec<_> = read_topic(&brokers, &levels[1], forever.len(), "read_committed").await;
    let numbers = |ms: &[rdkafka::message::OwnedMessage]| -> BTreeSet<u64> {
        ms.iter()
            .map(|m| {
                std::str::from_utf8(m.payload().expect("payload"))
                    .expect("utf-8")
                    .parse()
                    .expect("number")
            })
            .collect()
    };
    assert_eq!(numbers(&first), (0..N).filter(|n| n % 5 == 0).collect());
    assert_eq!(numbers(&second), forever);
    for (level, records) in [(1u32, &first), (2, &second)] {
        for m in records.iter() {
            let n: u64 = std::str::from_utf8(m.payload().expect("payload"))
                .expect("utf-8")
                .parse()
                .expect("number");
            assert_eq!(header(m, headers::RETRY_ATTEMPT), Some(level.to_string()));
            assert_eq!(
                header(m, headers::ERROR),
                Some(format!("record {n} refused for now")),
                "the last error"
            );
            assert_eq!(header(m, headers::STAGE), Some("flaky".into()));
            let first: i64 = header(m, headers::RETRY_FIRST_FAILURE)
                .expect("first failure")
                .parse()
                .expect("ms");
            assert_eq!(header(m, headers::ORIGIN_TOPIC), Some(input.clone()));
            assert_eq!(
                header(m, headers::ORIGIN_PARTITION),
                Some((n % PARTITIONS as u64).to_string())
            );
            assert_eq!(
                header(m, headers::ORIGIN_OFFSET),
                Some((n / PARTITIONS as u64).to_string())
            );
            assert_eq!(m.key(), Some(n.to_string().as_bytes()), "the key is kept");
            let history: Vec<Attempt> =
                serde_json::from_str(&header(m, headers::RETRY_HISTORY).expect("history"))
                    .expect("JSON history");
            assert_eq!(history.len(), level as usize, "{history:?}");
            assert!(history.iter().all(|a| a.stage == "flaky"
                && a.error == format!("record {n} refused for now")));
            let due: i64 = header(m, headers::RETRY_DUE)
                .expect("due")
                .parse()
                .expect("ms");
            let last = history.last().expect("an attempt").at;
            assert_eq!(first, history[0].at, "the first failure's time");
            assert_eq!(
                due - last,
                delays[level as usize - 1].as_millis() as i64,
                "due one delay after the failure"
            );
        }
    }

    // No retried record came back before it was due.
    let returns = flaky.returns.lock().expect("lock").clone();
    assert_eq!(
        returns.len(),
        (N / 5) as usize + forever.len(),
        "each n % 5 record once from level 1, each n % 10 once more from level 2"
    );
    for (n, seen, due) in &returns {
        assert!(
            ms(*seen) >= ms(*due),
            "record {n} came back {} ms before it was due",
            ms(*due) - ms(*seen)
        );
    }

    // The dead-letter topic: the n % 10 records, after 3 attempts, with the
    // original origin and the whole history.
    let letters = read_topic(&brokers, &dead, forever.len(), "read_committed").await;
    assert_eq!(numbers(&letters), forever);
    for m in &letters {
        assert_eq!(header(m, headers::ATTEMPTS), Some("3".into()));
        assert_eq!(header(m, headers::STAGE), Some("flaky".into()));
        assert_eq!(header(m, headers::ORIGIN_TOPIC), Some(input.clone()));
        assert!(header(m, headers::RETRY_ATTEMPT).is_none());
        let history: Vec<Attempt> =
            serde_json::from_str(&header(m, headers::RETRY_HISTORY).expect("history"))
                .expect("JSON history");
        assert_eq!(
            history.iter().map(|a| a.attempt).collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    // The retry consumer committed each retry topic to its end.
    let mut want_ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (records, topic) in [(&first, &levels[0]), (&second, &levels[1])] {
        for m in records.iter() {
            let e = want_ends.entry((topic.clone(), m.partition())).or_default();
            *e = (*e).max(m.offset() + 1);
        }
    }
    for (t, p, o) in retry_ends {
        let want = want_ends.get(&(t.clone(), p)).copied().unwrap_or(0);
        assert_eq!(o, want, "retry group's commit on {t}/{p}");
    }
    assert!(
        retry_handle
            .stats()
            .delayed
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0
    );
}
