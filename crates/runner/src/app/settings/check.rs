//! [`Settings::validate`]: ranges and consistency, naming the first bad
//! key.

use super::{Settings, SettingsError};

impl Settings {
    /// Checks ranges and consistency.
    ///
    /// # Errors
    ///
    /// [`SettingsError::Invalid`] naming the first bad key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let bad = |key: &str, message: &str| {
            Err(SettingsError::Invalid {
                key: key.into(),
                message: message.into(),
            })
        };
        let stages = [
            ("decode", &self.stages.decode),
            ("validate", &self.stages.validate),
            ("transform", &self.stages.transform),
            ("store", &self.stages.store),
            ("produce", &self.stages.produce),
            ("dead_letters", &self.stages.dead_letters),
        ];
        for (name, s) in stages {
            if s.capacity == 0 {
                return bad(&format!("stages.{name}.capacity"), "must be at least 1");
            }
            if s.workers == 0 {
                return bad(&format!("stages.{name}.workers"), "must be at least 1");
            }
            if s.workers > s.capacity {
                return bad(
                    &format!("stages.{name}.workers"),
                    &format!(
                        "{} workers need a capacity of at least {} (capacity counts records in progress); raise stages.{name}.capacity",
                        s.workers, s.workers
                    ),
                );
            }
        }
        if self.store.batch == 0 {
            return bad("store.batch", "must be at least 1");
        }
        if self.validate.max_payload_bytes == 0 {
            return bad("validate.max_payload_bytes", "must be at least 1");
        }
        if self
            .validate
            .schema
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return bad(
                "validate.schema",
                "must name a file (leave it out for the built-in event schema)",
            );
        }
        let t = &self.transform;
        if t.pseudonymise.iter().any(String::is_empty) {
            return bad("transform.pseudonymise", "a field name must not be empty");
        }
        if let Some((from, to)) = t.cents() {
            if to == from || t.pseudonymise.contains(&to) {
                return bad(
                    "transform.cents_field",
                    &format!("{to:?} would overwrite a field the transform reads; choose another"),
                );
            }
        }
        if self.kafka.workers == 0 {
            return bad("kafka.workers", "must be at least 1");
        }
        if self.kafka.window_limit == 0 {
            return bad("kafka.window_limit", "must be at least 1");
        }
        if self.kafka.input_topic.is_empty() {
            return bad("kafka.input_topic", "must not be empty");
        }
        if self.kafka.dead_letter_topic.is_empty() {
            return bad("kafka.dead_letter_topic", "must not be empty");
        }
        if self.kafka.group.is_empty() {
            return bad("kafka.group", "must not be empty");
        }
        if let Err(message) = self.retry_delays() {
            return bad("store.retry_delays", &message);
        }
        if !self.store.retry_delays.is_empty() {
            if self.store.offsets {
                return bad(
                    "store.retry_delays",
                    "cannot be combined with store.offsets: a batch commits the offsets of its records, and a record sent to retry later would leave a gap",
                );
            }
            if self.kafka.exactly_once {
                return bad(
                    "store.retry_delays",
                    "cannot be combined with kafka.exactly_once: the transactions commit offsets in input order, which a retried record would leave",
                );
            }
        }
        if self.store.offsets && self.kafka.exactly_once {
            return bad(
                "store.offsets",
                "cannot be combined with kafka.exactly_once: the offsets are committed either with the rows or with the output records",
            );
        }
        if self.kafka.exactly_once {
            if self.kafka.output_topic.is_empty() {
                return bad(
                    "kafka.exactly_once",
                    "needs an output topic (kafka.output_topic): the transactions commit its records with the offsets",
                );
            }
            if self.kafka.workers != 1 {
                return bad(
                    "kafka.workers",
                    "must be 1 with kafka.exactly_once (one transactional producer per consumer); run more processes with distinct transactional ids instead",
                );
            }
        }
        if !(0.0..=1.0).contains(&self.embedded.malformed) {
            return bad("embedded.malformed", "must be between 0.0 and 1.0");
        }
        if self.embedded.partitions < 1 {
            return bad("embedded.partitions", "must be at least 1");
        }
        if self.http_addr().is_err() {
            return bad(
                "run.http",
                &format!(
                    "{:?} is not an address like 127.0.0.1:9898 (or \"off\")",
                    self.run.http
                ),
            );
        }
        Ok(())
    }
}
