//! Which partitions are fetched: a partition is paused while the graph is
//! full (all of them, see [`KafkaSource::pause_after`](super::KafkaSource::pause_after)),
//! while its own window is at its limit (see
//! [`KafkaSource::window_limit`](super::KafkaSource::window_limit)), or
//! while it holds a record until its due time (see
//! [`KafkaSource::due_header`](super::KafkaSource::due_header)), and
//! fetched when none holds. The reasons are kept apart: resuming after a
//! full graph leaves a partition paused by its window or a due time
//! paused, and a window that shrinks or a record that comes due does not
//! resume a partition while another reason holds.
//!
//! Everything here runs on the consumer thread (the loop and librdkafka's
//! rebalance callbacks), so the flags and librdkafka's pause state change
//! together.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

use super::shared::{Shared, lock};

/// Pauses (`true`) or resumes every assigned partition because the graph is
/// full or has room again; a resume leaves the partitions paused by their
/// window paused.
pub(super) fn set_graph_paused<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    shared: &Shared,
    pause: bool,
) {
    let assignment = match consumer.assignment() {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the assignment");
            return;
        }
    };
    shared.paused.store(pause, Ordering::Relaxed);
    let result = if pause {
        shared.stats.pauses.fetch_add(1, Ordering::Relaxed);
        consumer.pause(&assignment)
    } else {
        let tracker = lock(&shared.tracker);
        let delayed = lock(&shared.delayed);
        let mut fetch = TopicPartitionList::new();
        for e in assignment.elements() {
            if !tracker.is_window_paused(e.topic(), e.partition())
                && !delayed.contains_key(&(e.topic().to_string(), e.partition()))
            {
                fetch.add_partition(e.topic(), e.partition());
            }
        }
        drop((tracker, delayed));
        consumer.resume(&fetch)
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, pause, "pause/resume failed");
    }
}

/// Sets each partition of `tpl` (newly assigned) to what the source wants:
/// paused while the graph is full or its window is at its limit, fetched
/// otherwise. librdkafka keeps a partition's pause flag across a revoke and
/// a later assignment, so a partition paused while owned before would
/// otherwise never be fetched again.
pub(super) fn set_assigned<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    shared: &Shared,
    tpl: &TopicPartitionList,
) {
    let graph_paused = shared.paused.load(Ordering::Relaxed);
    let (mut pause, mut fetch) = (TopicPartitionList::new(), TopicPartitionList::new());
    {
        let tracker = lock(&shared.tracker);
        for e in tpl.elements() {
            if graph_paused || tracker.is_window_paused(e.topic(), e.partition()) {
                pause.add_partition(e.topic(), e.partition());
            } else {
                fetch.add_partition(e.topic(), e.partition());
            }
        }
    }
    for (list, pausing) in [(&pause, true), (&fetch, false)] {
        if list.count() == 0 {
            continue;
        }
        let result = if pausing {
            consumer.pause(list)
        } else {
            consumer.resume(list)
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not set the pause state of newly assigned partitions");
        }
    }
}

/// Pauses `topic`/`partition` when its window has reached `limit` (call it
/// after each record handed out on it). Logged once per pause, at warn.
pub(super) fn pause_full_window<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    shared: &Shared,
    topic: &str,
    partition: i32,
    limit: usize,
) {
    let mut tracker = lock(&shared.tracker);
    if !tracker.pause_if_full(topic, partition, limit) {
        return;
    }
    let state = tracker
        .states()
        .into_iter()
        .find(|s| s.topic == topic && s.partition == partition);
    drop(tracker);
    shared.stats.window_pauses.fetch_add(1, Ordering::Relaxed);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    if let Err(e) = consumer.pause(&tpl) {
        tracing::warn!(error = %e, %topic, partition, "could not pause a partition whose window is full");
    }
    let (window, oldest, age) = state.map_or((0, None, None), |s| {
        (s.window, s.oldest_unfinished, s.oldest_unfinished_age)
    });
    tracing::warn!(
        %topic,
        partition,
        window,
        limit,
        oldest_unfinished = ?oldest,
        oldest_unfinished_age = ?age.map(|a| Duration::from_millis(a.as_millis() as u64)),
        "partition paused: its window (records handed out from its oldest unfinished one on) reached the limit; it resumes once the window is below 75% of it"
    );
}

/// Resumes the partitions paused by their window whose window shrank below
/// 75% of `limit` (unless the graph is full: the graph's resume fetches them
/// then). Logged at info.
pub(super) fn resume_shrunk_windows<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    shared: &Shared,
    limit: usize,
) {
    let mut resumable = lock(&shared.tracker).resumable(limit);
    resumable.retain(|(t, p)| !lock(&shared.delayed).contains_key(&(t.clone(), *p)));
    if resumable.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in &resumable {
        tpl.add_partition(topic, *partition);
        tracing::info!(%topic, partition, "partition resumed: its window is below 75% of the limit");
    }
    if shared.paused.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = consumer.resume(&tpl) {
        tracing::warn!(error = %e, "could not resume partitions whose window shrank");
    }
}

/// Holds `message` (fetched before `due`) and pauses its partition until
/// then; see [`KafkaSource::due_header`](super::KafkaSource::due_header).
/// A record of a partition already holding one queues behind it.
pub(super) fn hold_until_due<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    shared: &Shared,
    message: rdkafka::message::OwnedMessage,
    due: Option<std::time::Instant>,
) {
    use rdkafka::Message as _;
    let key = (message.topic().to_string(), message.partition());
    let mut delayed = lock(&shared.delayed);
    if let Some(d) = delayed.get_mut(&key) {
        d.messages.push_back(message);
        return;
    }
    let due = due.unwrap_or_else(std::time::Instant::now);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&key.0, key.1);
    // Pausing drops what was fetched after it; the position stays after
    // the last record polled, so the partition goes on from there.
    if let Err(e) = consumer.pause(&tpl) {
        tracing::warn!(error = %e, topic = %key.0, partition = key.1, "could not pause a partition holding a record until its due time");
    }
    shared.stats.delayed.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(topic = %key.0, partition = key.1, offset = message.offset(), wait = ?due.saturating_duration_since(std::time::Instant::now()), "record not due yet; partition paused until it is");
    delayed.insert(
        key,
        super::shared::Delayed {
            due,
            messages: [message].into(),
        },
    );
}

/// Whether the partition of `message` holds a record until its due time
/// (then `message` must queue behind it).
pub(super) fn is_holding(shared: &Shared, topic: &str, partition: i32) -> bool {
    lock(&shared.delayed).contains_key(&(topic.to_string(), partition))
}

/// The held records that are due, each partition's in order, up to the
/// first that is not due yet (held again, with those behind it); each
/// partition left with nothing held is fetched again unless another reason
/// keeps it paused. `due_of` says when a record is due (`None`: now).
pub(super) fn take_due<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    shared: &Shared,
    due_of: impl Fn(&rdkafka::message::OwnedMessage) -> Option<std::time::Instant>,
) -> Vec<rdkafka::message::OwnedMessage> {
    let now = std::time::Instant::now();
    let mut delayed = lock(&shared.delayed);
    if delayed.values().all(|d| d.due > now) {
        return Vec::new();
    }
    let due: Vec<(String, i32)> = delayed
        .iter()
        .filter(|(_, d)| d.due <= now)
        .map(|(k, _)| k.clone())
        .collect();
    let mut ready = Vec::new();
    let mut fetch = TopicPartitionList::new();
    let graph_paused = shared.paused.load(Ordering::Relaxed);
    for key in due {
        let Some(mut held) = delayed.remove(&key) else {
            continue;
        };
        while let Some(m) = held.messages.pop_front() {
            match due_of(&m) {
                Some(later) if later > now => {
                    held.messages.push_front(m);
                    held.due = later;
                    break;
                }
                _ => ready.push(m),
            }
        }
        if held.messages.is_empty() {
            if !graph_paused && !lock(&shared.tracker).is_window_paused(&key.0, key.1) {
                fetch.add_partition(&key.0, key.1);
            }
        } else {
            delayed.insert(key, held);
        }
    }
    drop(delayed);
    if fetch.count() > 0 {
        if let Err(e) = consumer.resume(&fetch) {
            tracing::warn!(error = %e, "could not resume partitions whose held records came due");
        }
    }
    ready
}
