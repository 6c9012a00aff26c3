//! The window limit: pausing a partition whose window is full, resuming
//! it once it shrank.

use super::OffsetTracker;

impl OffsetTracker {
    /// The size of a partition's window (0 when it is not tracked).
    pub fn window(&self, topic: &str, partition: i32) -> usize {
        self.partitions
            .get(&(topic.to_string(), partition))
            .map_or(0, |p| p.window.len())
    }

    /// Marks `topic`/`partition` paused by its window when the window holds
    /// `limit` records or more and it is not paused yet; returns whether it
    /// just did (the caller then pauses the partition's fetching).
    pub fn pause_if_full(&mut self, topic: &str, partition: i32, limit: usize) -> bool {
        let Some(p) = self.partitions.get_mut(&(topic.to_string(), partition)) else {
            return false;
        };
        if p.window_paused || p.window.len() < limit.max(1) {
            return false;
        }
        p.window_paused = true;
        p.window_pauses += 1;
        self.window_paused += 1;
        true
    }

    /// The partitions paused by their window whose window is now below three
    /// quarters of `limit`: marked resumed, and returned for the caller to
    /// resume their fetching.
    pub fn resumable(&mut self, limit: usize) -> Vec<(String, i32)> {
        if self.window_paused == 0 {
            return Vec::new();
        }
        let limit = limit.max(1);
        let mut out = Vec::new();
        for (key, p) in &mut self.partitions {
            if p.window_paused && p.window.len() * 4 < limit * 3 {
                p.window_paused = false;
                out.push(key.clone());
            }
        }
        self.window_paused -= out.len();
        out
    }

    /// Whether the window limit paused `topic`/`partition`.
    pub fn is_window_paused(&self, topic: &str, partition: i32) -> bool {
        self.partitions
            .get(&(topic.to_string(), partition))
            .is_some_and(|p| p.window_paused)
    }
}
