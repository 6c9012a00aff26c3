//! Scenarios run against a cluster (mock or real): each takes the brokers
//! and a function that creates a topic.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluicegate_core::{Graph, StageSpec};
use sluicegate_kafka_io::{KafkaConfig, KafkaSource, KafkaSourceHandle};
use tokio::sync::Semaphore;

use super::*;

const LONG: Duration = Duration::from_secs(90);

/// The consumer group protocols a rebalance can run under.
pub mod protocol {
    /// The classic protocol with short timeouts, the default assignor
    /// (eager).
    pub const CLASSIC: &[(&str, &str)] = &[
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
    ];
    /// The classic protocol, eager `range` assignment: every partition is
    /// revoked at each rebalance.
    pub const EAGER: &[(&str, &str)] = &[
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
        ("partition.assignment.strategy", "range"),
    ];
    /// The classic protocol, incremental `cooperative-sticky` assignment:
    /// only the partitions that move are revoked.
    pub const COOPERATIVE: &[(&str, &str)] = &[
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
        ("partition.assignment.strategy", "cooperative-sticky"),
    ];
    /// KIP-848's consumer protocol: the broker assigns, incrementally (its
    /// timeouts are the broker's; the client may not set them).
    pub const CONSUMER: &[(&str, &str)] = &[("group.protocol", "consumer")];
}

fn source(brokers: &str, group: &str, topic: &str) -> KafkaSource {
    source_with(brokers, group, topic, protocol::CLASSIC)
}

fn source_with(brokers: &str, group: &str, topic: &str, props: &[(&str, &str)]) -> KafkaSource {
    logs();
    let mut config = KafkaConfig::new(brokers);
    for (k, v) in props {
        config = config.set(*k, *v);
    }
    KafkaSource::new(config, group, [topic])
        .commit_interval(Duration::from_millis(20))
        .commit_every(20)
}

fn graph(source: KafkaSource, sink: Recorder, concurrency: usize) -> sluicegate_core::Graph {
    let mut g = Graph::builder("kafka-test");
    g.source("kafka", source).to(StageSpec::new("sink", sink)
        .capacity(concurrency * 2)
        .concurrency(concurrency));
    g.build().expect("valid graph")
}

/// Checks, while the pipeline runs, that no committed offset passes an
/// unfinished record. Returns how many samples it took.
fn spawn_commit_monitor(
    handle: KafkaSourceHandle,
    rec: Recorder,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut samples = 0;
        while !stop.load(Ordering::SeqCst) {
            // Committed first, finished second: anything below a commit finished
            // before the commit was sent, so it is in the later view.
            let parts = handle.partitions();
            let finished = rec.finished();
            for p in parts {
                if let Some(c) = p.state.committed {
                    let first = finished
                        .iter()
                        .filter(|(pp, _)| *pp == p.state.partition)
                        .map(|(_, o)| *o)
                        .min()
                        .unwrap_or(0);
                    for o in first..c {
                        assert!(
                            finished.contains(&(p.state.partition, o)),
                            "committed offset {c} on partition {} passes unfinished offset {o}",
                            p.state.partition
                        );
                    }
                }
            }
            samples += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        samples
    })
}

/// N records through a pipeline with random, out-of-order processing
/// delays; one record held at a gate to open a hole: the commit stops at the
/// hole while everything after it finishes; all N come out exactly once and
/// the final commits cover everything.
pub async fn end_to_end(brokers: &str, create: impl Fn(&str, i32)) {
    const PARTS: i32 = 3;
    const N: u64 = 600;
    let topic = unique("e2e");
    let group = unique("g-e2e");
    create(&topic, PARTS);
    produce_numbers(brokers, &topic, PARTS, N).await;

    let gate = Arc::new(Semaphore::new(0));
    let rec = Recorder {
        max_delay_ms: 3,
        hold: Some((0, 10, gate.clone())),
        ..Recorder::default()
    };
    let src = source(brokers, &group, &topic);
    let handle = src.handle();
    let running = graph(src, rec.clone(), 8).start().await.expect("starts");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let monitor = spawn_commit_monitor(handle.clone(), rec.clone(), stop.clone());

    eventually(LONG, "every record but the held one", || {
        rec.count() == N as usize - 1
    })
    .await;
    eventually(LONG, "partition 0's commit to reach the hole", || {
        handle
            .partitions()
            .iter()
            .any(|p| p.state.partition == 0 && p.state.committed == Some(10))
    })
    .await;
    assert!(
        rec.held_now.load(Ordering::SeqCst),
        "offset 10 of partition 0 is still held"
    );
    let per_partition = (N / PARTS as u64) as i64;
    for p in handle.partitions() {
        if p.state.partition != 0 {
            eventually(LONG, "the other partitions to commit everything", || {
                handle.partitions().iter().any(|q| {
                    q.state.partition == p.state.partition
                        && q.state.committed == Some(per_partition)
                })
            })
            .await;
        }
    }
    gate.add_permits(1);
    eventually(LONG, "the held record", || rec.count() == N as usize).await;
    eventually(LONG, "partition 0 to commit everything", || {
        handle
            .partitions()
            .iter()
            .any(|p| p.state.partition == 0 && p.state.committed == Some(per_partition))
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let samples = monitor.await.expect("monitor");
    assert!(samples > 10, "the monitor sampled only {samples} times");

    let report = within(LONG, "shutdown", running.shutdown(Duration::from_secs(30))).await;
    assert!(report.is_clean(), "{report:?}");
    let h = histogram(&rec.seen());
    assert_eq!(h.len(), N as usize, "every record came out");
    assert!(
        h.values().all(|c| *c == 1),
        "no duplicates without failures"
    );
    assert_eq!(
        committed(brokers, &group, &topic, PARTS),
        vec![Some(per_partition); PARTS as usize]
    );
}

/// The pipeline is dropped mid-stream (no drain) and restarted in the same
/// group: every record comes out at least once; duplicates are no more than
/// what was handed out but not committed when it stopped.
pub async fn crash_and_restart(brokers: &str, create: impl Fn(&str, i32)) {
    const PARTS: i32 = 3;
    const N: u64 = 900;
    let topic = unique("crash");
    let group = unique("g-crash");
    create(&topic, PARTS);
    produce_numbers(brokers, &topic, PARTS, N).await;

    let first = Recorder {
        max_delay_ms: 2,
        ..Recorder::default()
    };
    let src = source(brokers, &group, &topic);
    let handle = src.handle();
    let running = graph(src, first.clone(), 4).start().await.expect("starts");
    eventually(LONG, "a third of the records", || {
        first.count() >= N as usize / 3
    })
    .await;
    drop(running); // no drain: what is in flight is abandoned, never committed
    eventually(LONG, "the first consumer to leave", || handle.is_stopped()).await;
    let window = handle.stats().uncommitted_at_stop.load(Ordering::SeqCst) as usize;

    let second = Recorder::default();
    let src = source(brokers, &group, &topic);
    let running = graph(src, second.clone(), 4)
        .start()
        .await
        .expect("restarts");
    let all = || {
        let mut seen = first.seen();
        seen.extend(second.seen());
        histogram(&seen)
    };
    eventually(LONG, "every record after the restart", || {
        all().len() == N as usize
    })
    .await;
    let report = within(LONG, "shutdown", running.shutdown(Duration::from_secs(30))).await;
    assert!(report.is_clean(), "{report:?}");

    let total = first.count() + second.count();
    let duplicates = total - N as usize;
    assert!(
        duplicates <= window,
        "{duplicates} duplicates, but only {window} records were uncommitted at the crash"
    );
    println!(
        "crash: {} before, {} after, {duplicates} duplicates (bound {window})",
        first.count(),
        second.count()
    );
}

/// Downstream blocked for longer than max.poll.interval.ms: the source
/// pauses and keeps polling, so there is no rebalance and nothing is lost.
pub async fn stall(brokers: &str, create: impl Fn(&str, i32)) {
    logs();
    const PARTS: i32 = 2;
    const N: u64 = 200;
    let topic = unique("stall");
    let group = unique("g-stall");
    create(&topic, PARTS);
    produce_numbers(brokers, &topic, PARTS, N).await;

    let gate = Arc::new(Semaphore::new(0));
    let rec = Recorder {
        block_all: Some(gate.clone()),
        ..Recorder::default()
    };
    let src = KafkaSource::new(
        KafkaConfig::new(brokers)
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .set("max.poll.interval.ms", "6000"),
        &group,
        [topic.as_str()],
    )
    .commit_interval(Duration::from_millis(50));
    let handle = src.handle();
    let running = graph(src, rec.clone(), 2).start().await.expect("starts");
    eventually(LONG, "the source to pause on a full graph", || {
        handle.is_paused()
    })
    .await;
    // The stall itself: longer than max.poll.interval.ms (6 s).
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert!(handle.is_paused(), "still paused while the sink is blocked");
    assert_eq!(
        handle.stats().assignments.load(Ordering::SeqCst),
        1,
        "no rebalance during the stall"
    );
    assert_eq!(
        handle.stats().revocations.load(Ordering::SeqCst),
        0,
        "no revocation during the stall"
    );
    gate.add_permits(1 << 20);
    eventually(LONG, "every record after the stall", || {
        rec.count() == N as usize
    })
    .await;
    let report = within(LONG, "shutdown", running.shutdown(Duration::from_secs(30))).await;
    assert!(report.is_clean(), "{report:?}");
    assert!(
        histogram(&rec.seen()).values().all(|c| *c == 1),
        "no duplicates: no rebalance happened"
    );
    assert_eq!(handle.stats().assignments.load(Ordering::SeqCst), 1);
}

/// A second consumer joins mid-stream and leaves again, under the group
/// protocol `props` (see [`protocol`]): no record is lost, and the group
/// ends with every offset committed.
pub async fn rebalance(brokers: &str, create: impl Fn(&str, i32), props: &[(&str, &str)]) {
    const PARTS: i32 = 4;
    const N: u64 = 2_000;
    let topic = unique("rebalance");
    let group = unique("g-rebalance");
    create(&topic, PARTS);
    produce_numbers(brokers, &topic, PARTS, N).await;

    // a works through 200 records, then waits at a gate until its first
    // revocation begins: b is sure to find work left in whatever it gets.
    let gate = Arc::new(Semaphore::new(200));
    let a = Recorder {
        max_delay_ms: 2,
        block_all: Some(gate.clone()),
        ..Recorder::default()
    };
    let src_a = source_with(brokers, &group, &topic, props);
    let handle_a = src_a.handle();
    let opener = {
        let handle_a = handle_a.clone();
        tokio::spawn(async move {
            eventually(LONG, "a's first revocation", || {
                handle_a.stats().revocations.load(Ordering::SeqCst) >= 1
            })
            .await;
            gate.add_permits(N as usize * 2);
        })
    };
    let running_a = graph(src_a, a.clone(), 4).start().await.expect("a starts");
    eventually(LONG, "a to make progress", || a.count() >= 200).await;

    let b = Recorder {
        max_delay_ms: 2,
        ..Recorder::default()
    };
    let src_b = source_with(brokers, &group, &topic, props);
    let handle_b = src_b.handle();
    let running_b = graph(src_b, b.clone(), 4).start().await.expect("b starts");
    eventually(LONG, "b to get partitions and work", || b.count() >= 100).await;
    within(LONG, "a's gate to open", opener)
        .await
        .expect("the gate opener");
    assert!(
        handle_a.stats().revocations.load(Ordering::SeqCst) >= 1,
        "a gave up partitions for b"
    );

    let report_b = within(
        LONG,
        "b to leave",
        running_b.shutdown(Duration::from_secs(30)),
    )
    .await;
    assert!(report_b.is_clean(), "{report_b:?}");
    assert!(handle_b.is_stopped());
    let all = || {
        let mut seen = a.seen();
        seen.extend(b.seen());
        histogram(&seen)
    };
    let waited = std::time::Instant::now();
    while all().len() != N as usize {
        assert!(
            waited.elapsed() < LONG,
            "every record: {} of {N} (a {}, b {}); a's partitions {:?}, paused {}, stats {:?}",
            all().len(),
            a.count(),
            b.count(),
            handle_a.partitions(),
            handle_a.is_paused(),
            handle_a.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A commit refused during a rebalance (the mock broker refuses commits
    // while one is pending; real Kafka accepts them from the current
    // generation) means the new owner reads some records again: duplicates,
    // never loss. So wait for a to commit everything before stopping it.
    let per_partition = (N / PARTS as u64) as i64;
    eventually(LONG, "a to commit every partition to the end", || {
        committed(brokers, &group, &topic, PARTS) == vec![Some(per_partition); PARTS as usize]
    })
    .await;
    let report_a = within(
        LONG,
        "a to stop",
        running_a.shutdown(Duration::from_secs(30)),
    )
    .await;
    assert!(report_a.is_clean(), "{report_a:?}");
    assert_eq!(
        committed(brokers, &group, &topic, PARTS),
        vec![Some(per_partition); PARTS as usize]
    );
    println!(
        "rebalance: a {} b {} duplicates {}",
        a.count(),
        b.count(),
        a.count() + b.count() - N as usize
    );
}
