//! How the run is hosted ([`RunSettings`]) and the embedded default's
//! generated input ([`EmbeddedSettings`]).

use serde::{Deserialize, Serialize};

use crate::app::defaults;

/// The generated input of the embedded default (and of `sluicegate produce`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedSettings {
    /// Records generated into the input topic.
    pub records: u64,
    /// Partitions of the generated topics.
    pub partitions: i32,
    /// Share of malformed records, 0.0 to 1.0.
    pub malformed: f64,
}

impl Default for EmbeddedSettings {
    fn default() -> Self {
        EmbeddedSettings {
            records: defaults::RECORDS,
            partitions: defaults::PARTITIONS,
            malformed: defaults::MALFORMED,
        }
    }
}

/// How the run is hosted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RunSettings {
    /// Address of the status server, or `"off"`.
    pub http: String,
    /// After a signal, how long the pipeline may take to drain.
    pub drain_timeout_s: u64,
    /// Stop by itself once the group has committed everything that was in
    /// the input topic when the run started (always on in the embedded
    /// default).
    pub until_caught_up: bool,
    /// HMAC rounds per pseudonymised field (the transform's CPU cost).
    pub hash_rounds: u32,
    /// Fault injection for tests: the transform panics on records whose
    /// `id` ends with this suffix. Off when empty.
    pub panic_on_id_suffix: String,
    /// Fault injection for tests: in exactly-once mode, each transaction
    /// stays open this long after its records are acknowledged, before it
    /// commits (a crash then most likely leaves one open). 0: off.
    pub fault_hold_transaction_ms: u64,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            http: defaults::HTTP.into(),
            drain_timeout_s: defaults::DRAIN_TIMEOUT_S,
            until_caught_up: false,
            hash_rounds: defaults::HASH_ROUNDS,
            panic_on_id_suffix: String::new(),
            fault_hold_transaction_ms: 0,
        }
    }
}
