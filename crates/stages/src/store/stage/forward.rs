//! The store as a step in a chain: [`ForwardStored`].

use serde::Serialize;
use sluicegate_core::stage::BatchResult;
use sluicegate_core::{BatchStage, Origin, Outputs};

use super::{StoreStage, StoreStats};
use crate::store::StoreError;

impl<T: Serialize + Send + 'static> StoreStage<T> {
    /// This store as a stage that passes each value on once its row is
    /// committed: a stage after it sees only stored records, in the order
    /// they came (one batch at a time). See [`ForwardStored`].
    pub fn forwarding(self) -> ForwardStored<T> {
        ForwardStored(self)
    }
}

/// A [`StoreStage`] that hands each value on after its batch committed
/// (from [`StoreStage::forwarding`]): the store as a step in a chain rather
/// than a branch of a fan-out.
///
/// Its outputs are the stored values, one per stored (or already stored)
/// row, in input order; a row that fails goes to the dead-letter route as
/// with [`StoreStage`] and is not passed on. Whatever comes after it (a
/// transactional Kafka sink committing consumed offsets, say) therefore
/// never sees a record whose row is not committed. (A `broadcast` to a
/// store branch and a sink branch keeps the same promise through the
/// source's ledger, by making the sink wait for the store; the chain makes
/// the order plain and the waits unnecessary.)
pub struct ForwardStored<T>(StoreStage<T>);

impl<T> std::fmt::Debug for ForwardStored<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ForwardStored").field(&self.0).finish()
    }
}

impl<T> ForwardStored<T> {
    /// The store's counters.
    pub fn stats(&self) -> StoreStats {
        self.0.stats.clone()
    }
}

impl<T: Serialize + Send + 'static> BatchStage for ForwardStored<T> {
    type In = T;
    type Out = T;
    type Error = StoreError;

    async fn process_batch(
        &self,
        batch: Vec<T>,
        origins: &[&Origin],
    ) -> BatchResult<T, StoreError> {
        let (early, rows) = self.0.rows(&batch, origins);
        let results = self.0.write_rows(early, rows, origins).await;
        Ok(batch
            .into_iter()
            .zip(results)
            .map(|(value, r)| r.map(|()| Outputs::one(value)))
            .collect())
    }

    fn is_fatal(&self, error: &StoreError) -> bool {
        self.0.is_fatal(error)
    }

    fn is_transient(&self, error: &StoreError) -> bool {
        self.0.is_transient(error)
    }
}
