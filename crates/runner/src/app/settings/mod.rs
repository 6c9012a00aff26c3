//! Everything the reference pipeline can be told, with its defaults.
//!
//! Settings come from three places, strongest first: a flag (or its
//! environment variable, see [`cli`](crate::app::cli)), a key in the optional TOML
//! file given with `--config`, and the defaults, each written once in
//! [`defaults`](crate::app::defaults). The TOML file mirrors the struct;
//! every key is optional (the values below are examples):
//!
//! ```toml
//! [kafka]
//! brokers = "10.0.0.5:9092"       # leave out for the embedded mock cluster
//! group = "sluicegate"
//! input_topic = "events"
//! output_topic = "events-clean"   # "" to produce nothing
//! dead_letter_topic = "events-dlq"
//! workers = 1                     # consumers of the group in this process
//! commit_interval_ms = 1000
//! commit_every = 1000
//! pause_after_ms = 500
//! revoke_timeout_ms = 10000
//! connect_timeout_ms = 10000
//! window_limit = 10000           # per partition: records behind its oldest unfinished one
//! exactly_once = false            # true: outputs and offsets in Kafka transactions
//! transactional_id = ""           # "" = "sluicegate-{group}"; unique per process
//! [kafka.properties]              # any librdkafka property, passed through
//! "security.protocol" = "SASL_SSL"
//!
//! [store]
//! url = "postgres://app@db/events" # or sqlite://PATH
//! table = "events"
//! batch = 500
//! batch_wait_ms = 50
//! offsets = false                 # true: the group's offsets kept here, with the rows
//!
//! [validate]
//! schema = "orders.schema.json"   # a JSON Schema file (draft 2020-12 unless its $schema
//!                                 # names another); leave out for the built-in event schema
//! formats = false                 # true: "format" (email, date-time, uuid, ...) is asserted
//! max_payload_bytes = 8192        # larger records are dead-lettered before parsing
//!
//! [transform]
//! pseudonymise = ["email"]        # top-level fields replaced by their keyed HMAC; [] for none
//! cents = "amount"                # a top-level number converted to integer cents; "" for none
//! cents_field = ""                # where the cents go; "" = "<cents>_cents" (amount_cents)
//!
//! [stages.transform]
//! capacity = 512                  # batches of up to half of it to the blocking pool
//! workers = 2
//! overflow = "block"              # or "drop-newest", "drop-oldest"
//!
//! [run]
//! http = "127.0.0.1:9898"         # "off" for no HTTP server
//! drain_timeout_s = 30
//! ```

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod check;
mod error;
mod kafka;
mod records;
mod run;
mod stages;
mod store;

pub use error::SettingsError;
pub use kafka::KafkaSettings;
pub use records::{TransformSettings, ValidateSettings};
pub use run::{EmbeddedSettings, RunSettings};
pub use stages::{OrderSetting, OverflowSetting, StageSettings, StagesSettings};
pub use store::{StoreSettings, parse_delay};

/// All settings of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The Kafka side: brokers, group, topics, commits.
    pub kafka: KafkaSettings,
    /// The database the `store` stage writes to.
    pub store: StoreSettings,
    /// What a valid record is: the schema, formats, the payload limit.
    pub validate: ValidateSettings,
    /// Which fields the transform pseudonymises and converts.
    pub transform: TransformSettings,
    /// Mailboxes and workers of each stage.
    pub stages: StagesSettings,
    /// The embedded default's generated input.
    pub embedded: EmbeddedSettings,
    /// HTTP, drain, stop condition, fault injection.
    pub run: RunSettings,
}

impl Settings {
    /// Reads the TOML file at `path`.
    ///
    /// # Errors
    ///
    /// [`SettingsError::Read`] or [`SettingsError::Parse`], naming the file.
    pub fn from_file(path: &Path) -> Result<Settings, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| SettingsError::Parse {
            path: path.display().to_string(),
            message: e.to_string().trim().replace('\n', " "),
        })
    }

    /// The status server's address, `None` when off.
    ///
    /// # Errors
    ///
    /// When `run.http` is neither `off` nor a socket address.
    pub fn http_addr(&self) -> Result<Option<std::net::SocketAddr>, std::net::AddrParseError> {
        match self.run.http.trim() {
            "off" | "" => Ok(None),
            addr => addr.parse().map(Some),
        }
    }

    /// The drain deadline.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.run.drain_timeout_s)
    }

    /// The retry levels' delays (`store.retry_delays`), first level first.
    ///
    /// # Errors
    ///
    /// The first delay that does not parse, and why.
    pub fn retry_delays(&self) -> Result<Vec<Duration>, String> {
        self.store
            .retry_delays
            .iter()
            .map(|d| parse_delay(d))
            .collect()
    }

    /// The consumer group of the retry topics: `{kafka.group}.retry`.
    pub fn retry_group(&self) -> String {
        format!("{}.retry", self.kafka.group)
    }

    /// The transactional producer's id in exactly-once mode.
    pub fn transactional_id(&self) -> String {
        if self.kafka.transactional_id.is_empty() {
            format!("sluicegate-{}", self.kafka.group)
        } else {
            self.kafka.transactional_id.clone()
        }
    }

    /// Whether this run uses the in-process mock cluster.
    pub fn is_embedded(&self) -> bool {
        self.kafka.brokers.is_none()
    }
}
