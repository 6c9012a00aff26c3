//! Each stage's mailbox and workers ([`StagesSettings`]), with the
//! overflow and order settings that mirror the core's.

use serde::{Deserialize, Serialize};
use sluicegate_core::{Order, Overflow};

use crate::app::defaults;

/// How to handle a full mailbox (mirrors [`Overflow`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OverflowSetting {
    /// Wait for room: nothing is lost, the slowness travels upstream.
    #[default]
    Block,
    /// Drop the new record (counted; its offset still commits).
    DropNewest,
    /// Drop the oldest waiting record (counted; its offset still commits).
    DropOldest,
}

impl From<OverflowSetting> for Overflow {
    fn from(o: OverflowSetting) -> Self {
        match o {
            OverflowSetting::Block => Overflow::Block,
            OverflowSetting::DropNewest => Overflow::DropNewest,
            OverflowSetting::DropOldest => Overflow::DropOldest,
        }
    }
}

/// Output order of a stage with several workers (mirrors [`Order`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OrderSetting {
    /// Results leave as they finish (offsets still commit in order).
    #[default]
    Unordered,
    /// Results leave in input order.
    Preserve,
    /// Results with the same Kafka key leave in input order.
    PerKey,
}

impl From<OrderSetting> for Order {
    fn from(o: OrderSetting) -> Self {
        match o {
            OrderSetting::Unordered => Order::Unordered,
            OrderSetting::Preserve => Order::Preserve,
            OrderSetting::PerKey => Order::PerKey,
        }
    }
}

/// One stage's mailbox and workers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StageSettings {
    /// Records waiting plus in progress, at most.
    pub capacity: usize,
    /// What a full mailbox does to the stage before it.
    pub overflow: OverflowSetting,
    /// Records processed at once.
    pub workers: usize,
    /// Output order when `workers > 1`.
    pub order: OrderSetting,
}

impl StageSettings {
    fn with(capacity: usize, workers: usize) -> Self {
        StageSettings {
            capacity,
            overflow: OverflowSetting::default(),
            workers,
            order: OrderSetting::default(),
        }
    }
}

impl Default for StageSettings {
    fn default() -> Self {
        StageSettings::with(defaults::DECODE_CAPACITY, defaults::STAGE_WORKERS)
    }
}

/// The stages of the reference pipeline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StagesSettings {
    /// Bytes to JSON.
    pub decode: StageSettings,
    /// The schema rules.
    pub validate: StageSettings,
    /// Enrich, hash and encode, on the blocking pool: batches of up to half
    /// its capacity, each split across its `workers`; it keeps its input
    /// order (its `order` has no effect).
    pub transform: StageSettings,
    /// The database writes (its `workers` is ignored: one batch at a time).
    pub store: StageSettings,
    /// Producing to the output topic (`workers` = deliveries in flight).
    pub produce: StageSettings,
    /// Producing failures to the dead-letter topic.
    pub dead_letters: StageSettings,
}

impl Default for StagesSettings {
    fn default() -> Self {
        StagesSettings {
            decode: StageSettings::with(defaults::DECODE_CAPACITY, defaults::STAGE_WORKERS),
            validate: StageSettings::with(defaults::VALIDATE_CAPACITY, defaults::STAGE_WORKERS),
            // Batches of up to half the capacity go to the blocking pool.
            transform: StageSettings::with(
                defaults::TRANSFORM_CAPACITY,
                defaults::transform_workers(),
            ),
            store: StageSettings::with(defaults::STORE_CAPACITY, defaults::STAGE_WORKERS),
            produce: StageSettings::with(defaults::PRODUCE_CAPACITY, defaults::PRODUCE_IN_FLIGHT),
            dead_letters: StageSettings::with(
                defaults::DEAD_LETTERS_CAPACITY,
                defaults::DEAD_LETTERS_IN_FLIGHT,
            ),
        }
    }
}
