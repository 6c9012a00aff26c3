//! The consumer thread's loop.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use sluicegate_core::{AckReceiver, EmitStop, SourceContext};

use super::KafkaSource;
use super::acker::Acker;
use super::callbacks::Callbacks;
use super::commit::{commit, mirror_committed};
use super::metadata::{check_topics, refresh_watermarks};
use super::pause::{
    hold_until_due, is_holding, pause_full_window, resume_shrunk_windows, set_graph_paused,
    take_due,
};
use super::record::{Records, due_time};
use super::shared::{Shared, lock, release_held};
use crate::error::KafkaIoError;

impl KafkaSource {
    pub(super) fn consume(
        self,
        mut cx: SourceContext<Bytes>,
        rt: tokio::runtime::Handle,
    ) -> Result<(), KafkaIoError> {
        let shared = self.shared.clone();
        let callbacks = Callbacks {
            shared: shared.clone(),
            revoke_timeout: self.revoke_timeout,
        };
        let consumer: BaseConsumer<Callbacks> = self
            .config
            .client_config()
            .create_with_context(callbacks)
            .map_err(|e| self.config.explain(e))?;
        check_topics(&consumer, &self.config, &self.topics, self.connect_timeout)?;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        tracing::info!(source = cx.name(), topics = ?self.topics, group = self.config.get("group.id"), "consuming");

        let receiver: Arc<dyn AckReceiver> = Arc::new(Acker {
            shared: shared.clone(),
            shutdown: cx.shutdown_token(),
        });
        let mut records = Records::new(shared.clone(), receiver, self.keep_raw);
        let transactional = shared.transactional.load(Ordering::SeqCst);
        let window_limit = shared.window_limit.load(Ordering::Relaxed);
        let mut last_commit = Instant::now();
        let mut last_group_metadata = Instant::now();
        let mut last_watermarks = Instant::now();
        let mut draining = false;
        let mut full_since: Option<Instant> = None;
        let result = loop {
            if cx.is_abandoned() {
                tracing::warn!(
                    source = cx.name(),
                    "shutdown deadline passed; committing only what finished"
                );
                break Ok(());
            }
            if let Some(in_flight) = lock(&shared.revoke_failure).take() {
                break Err(KafkaIoError::RevokeTimedOut {
                    in_flight,
                    timeout: self.revoke_timeout,
                });
            }
            if let Some(failure) = shared.take_failure() {
                break Err(failure);
            }
            if let Some(unreadable) = lock(&shared.offset_load_failure).take() {
                break Err(unreadable);
            }
            if transactional {
                // The sink commits; keep the generation it sends current.
                if last_group_metadata.elapsed() >= Duration::from_secs(1) {
                    shared.refresh_group_metadata(&consumer);
                    last_group_metadata = Instant::now();
                }
            } else if last_commit.elapsed() >= self.commit_interval
                || shared.finished_since_commit.load(Ordering::Relaxed) >= self.commit_every
            {
                // Synchronous: one round trip per interval (or per
                // `commit_every` records) keeps the committed view exact,
                // without relying on librdkafka serving commit callbacks.
                let offsets = lock(&shared.tracker).to_commit();
                commit(&consumer, &shared, &offsets, CommitMode::Sync);
                mirror_committed(&consumer, &shared);
                last_commit = Instant::now();
            }
            if last_watermarks.elapsed() >= self.lag_interval {
                refresh_watermarks(&consumer, &shared);
                last_watermarks = Instant::now();
            }
            if cx.is_shutting_down() && !draining {
                draining = true;
                // Never handed out, so nothing to wait for: read again later.
                lock(&shared.delayed).clear();
                release_held(&shared, None, "shutting down before the graph took it");
                set_graph_paused(&consumer, &shared, true);
            }
            if draining {
                if lock(&shared.tracker).in_flight(None) == 0 {
                    break Ok(());
                }
                // Keep serving the group while the graph drains.
                if let Some(Ok(m)) = cx.idle_blocking(|| consumer.poll(Duration::from_millis(10))) {
                    if records.hold(&m) {
                        release_held(&shared, None, "shutting down before the graph took it");
                    }
                }
                continue;
            }
            resume_shrunk_windows(&consumer, &shared, window_limit);
            for message in take_due(&consumer, &shared, |m| due_time(m, &shared)) {
                records.hold(&message);
            }
            if let Err(closed) = emit_held(&mut cx, &shared) {
                // A stage that stopped resolved what it held before its
                // mailbox closed: name that record rather than the closing.
                break Err(shared.take_failure().unwrap_or(closed));
            }
            let paused = shared.paused.load(Ordering::Relaxed);
            if lock(&shared.held).is_empty() {
                full_since = None;
                if paused {
                    set_graph_paused(&consumer, &shared, false);
                }
            } else {
                // The graph is full.
                let since = *full_since.get_or_insert_with(Instant::now);
                if !paused && since.elapsed() >= self.pause_after {
                    set_graph_paused(&consumer, &shared, true);
                }
                let wait = if paused {
                    self.poll_interval
                } else {
                    self.pause_after.saturating_sub(since.elapsed())
                };
                rt.block_on(cx.ready_within(wait.min(self.poll_interval)));
                if !shared.paused.load(Ordering::Relaxed) {
                    // Short stall: wait without polling; the prefetched
                    // records stay in librdkafka's bounded buffer.
                    continue;
                }
            }
            let timeout = if shared.paused.load(Ordering::Relaxed) {
                Duration::ZERO
            } else {
                self.poll_interval
            };
            // One poll that may wait (idle), then what librdkafka already
            // holds, up to a burst, without waiting (busy): the graph gets
            // them in one hand-over instead of one per record.
            let mut polled = 0;
            let mut next = cx.idle_blocking(|| consumer.poll(timeout));
            let failed = loop {
                match next {
                    None => break None,
                    Some(Ok(message)) => {
                        let due = due_time(&message, &shared);
                        if due.is_some()
                            || is_holding(&shared, message.topic(), message.partition())
                        {
                            // Its partition pauses; back to the top, which
                            // hands on what is due.
                            hold_until_due(&consumer, &shared, message.detach(), due);
                            break None;
                        }
                        // Held before the next poll, whose rebalance
                        // callbacks take back what is held.
                        records.hold(&message);
                        // Before the next poll: librdkafka drops what it had
                        // fetched for a partition it pauses, so the window
                        // holds exactly its limit.
                        pause_full_window(
                            &consumer,
                            &shared,
                            message.topic(),
                            message.partition(),
                            window_limit,
                        );
                    }
                    Some(Err(e)) => {
                        if let Some((code, reason)) = consumer.client().fatal_error() {
                            tracing::error!(%reason, "fatal consumer error");
                            break Some(KafkaIoError::Client(
                                rdkafka::error::KafkaError::MessageConsumptionFatal(code),
                            ));
                        }
                        tracing::warn!(error = %e, "consumer error (librdkafka retries)");
                        break None;
                    }
                }
                polled += 1;
                if polled >= POLL_BURST || shared.paused.load(Ordering::Relaxed) {
                    break None;
                }
                if polled % EMIT_EVERY == 0 {
                    // Hand on what the graph takes; a full graph ends the
                    // burst, so the source holds back at most EMIT_EVERY
                    // records beyond the mailboxes (not a whole burst, which
                    // would also fill partitions' windows with records the
                    // graph cannot take yet).
                    if let Err(closed) = emit_held(&mut cx, &shared) {
                        break Some(shared.take_failure().unwrap_or(closed));
                    }
                    if !lock(&shared.held).is_empty() {
                        break None;
                    }
                }
                next = consumer.poll(Duration::ZERO);
            };
            if let Some(e) = failed {
                break Err(e);
            }
        };
        // Final commit of everything finished, synchronously, then leave the
        // group (in transactional mode the sink's last transaction did).
        shared.closing.store(true, Ordering::SeqCst);
        release_held(&shared, None, "shutting down before the graph took it");
        let offsets = if transactional {
            Vec::new()
        } else {
            lock(&shared.tracker).to_commit()
        };
        commit(&consumer, &shared, &offsets, CommitMode::Sync);
        mirror_committed(&consumer, &shared);
        let uncommitted: i64 = lock(&shared.tracker)
            .states()
            .iter()
            .map(|s| s.next.unwrap_or(0) - s.committed.or(s.committable).unwrap_or(0))
            .sum();
        shared
            .stats
            .uncommitted_at_stop
            .store(uncommitted.max(0) as u64, Ordering::Relaxed);
        consumer.unsubscribe();
        drop(consumer);
        shared.stopped.store(true, Ordering::SeqCst);
        tracing::info!(source = cx.name(), committed = ?offsets, uncommitted, "consumer stopped");
        if let Err(e) = &result {
            tracing::error!(source = cx.name(), error = %e, "Kafka source stopped with an error");
        }
        result
    }
}

/// Records read in one go after a poll that waited, at most.
const POLL_BURST: usize = 512;

/// In a burst, the held records are handed to the graph every this many.
const EMIT_EVERY: usize = 16;

/// Hands held envelopes to the graph until it is full (as many per lock
/// as fit).
fn emit_held(cx: &mut SourceContext<Bytes>, shared: &Shared) -> Result<(), KafkaIoError> {
    let mut held = lock(&shared.held);
    if held.is_empty() {
        return Ok(());
    }
    let result = cx.try_emit_batch(&mut held);
    let taken = match result {
        Ok(n) => n,
        Err(EmitStop::Closed | EmitStop::Abandoned) => {
            drop(held);
            release_held(shared, None, "the graph stopped");
            return Err(KafkaIoError::Client(rdkafka::error::KafkaError::Canceled));
        }
    };
    shared
        .stats
        .records
        .fetch_add(taken as u64, Ordering::Relaxed);
    Ok(())
}
