//! Offsets kept with the store's rows (`store.offsets`): the consumers'
//! offset store in the database, and the commit frontier the store's
//! batches write with their rows.

use std::sync::Arc;

use sluicegate_core::{BoxError, CommitLedger, Origin};
use sluicegate_kafka_io::{KafkaSourceHandle, OffsetStore};
use sluicegate_stages::store::Store;

/// The consumers' offsets kept in the store (`store.offsets`): read at each
/// assignment and written at the sources' commits, from the consumer
/// threads (blocking on the runtime).
pub(super) struct StoredOffsets {
    pub(super) store: Arc<dyn Store>,
    pub(super) runtime: tokio::runtime::Handle,
}

impl OffsetStore for StoredOffsets {
    fn describe(&self) -> String {
        self.store.describe()
    }

    fn load(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<std::collections::BTreeMap<i32, i64>, BoxError> {
        Ok(self
            .runtime
            .block_on(self.store.read_offsets(group, topic))?)
    }

    fn save(&self, group: &str, offsets: &[(String, i32, i64)]) -> Result<(), BoxError> {
        self.runtime
            .block_on(self.store.write_with_offsets(&[], group, offsets))?;
        Ok(())
    }
}

/// The commit frontier of every consumer in this process (each answers for
/// the partitions it owns), for the store's batches.
pub(super) struct Ledgers(pub(super) Vec<KafkaSourceHandle>);

impl CommitLedger for Ledgers {
    fn group(&self) -> String {
        self.0.first().map(CommitLedger::group).unwrap_or_default()
    }

    fn offsets_with(&self, origins: &[&Origin]) -> Vec<(String, i32, i64)> {
        self.0
            .iter()
            .flat_map(|h| h.offsets_with(origins))
            .collect()
    }

    fn committed(&self, offsets: &[(String, i32, i64)]) {
        for h in &self.0 {
            let own: Vec<_> = offsets
                .iter()
                .filter(|(t, p, _)| h.owns(t, *p))
                .cloned()
                .collect();
            CommitLedger::committed(h, &own);
        }
    }
}
