//! The settings of a run: the flags given over the `--config` file over
//! the defaults ([`RunArgs::settings`]).

use super::RunArgs;
use crate::app::settings::{Settings, SettingsError};

impl RunArgs {
    /// Whether the flag of field `id` was given, on the command line or by
    /// its environment variable (not left at its default).
    fn given(&self, id: &str) -> bool {
        self.given.contains(id)
    }

    /// The settings: defaults, then the `--config` file, then the flags
    /// given (a flag left out keeps the file's value, although its field
    /// holds the default that `--help` shows). Parse with [`Cli::parse_args`](super::Cli::parse_args),
    /// which notes the flags given.
    ///
    /// # Errors
    ///
    /// An unreadable or invalid file, a malformed `--kafka-property`, or a
    /// setting out of range, each naming what is wrong.
    pub fn settings(&self) -> Result<Settings, SettingsError> {
        let mut s = match &self.config {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        // `set!(target, field)`: the flag's value, when given.
        macro_rules! set {
            ($target:expr, $field:ident) => {
                if self.given(stringify!($field)) {
                    $target = self.$field.clone();
                }
            };
        }
        fn set_some<T: Clone>(target: &mut T, value: &Option<T>) {
            if let Some(v) = value {
                *target = v.clone();
            }
        }
        let k = &mut s.kafka;
        if self.brokers.is_some() {
            k.brokers.clone_from(&self.brokers);
        }
        set!(k.group, group);
        set!(k.input_topic, input_topic);
        set!(k.output_topic, output_topic);
        set!(k.dead_letter_topic, dead_letter_topic);
        set!(k.workers, workers);
        set!(k.commit_interval_ms, commit_interval_ms);
        set!(k.commit_every, commit_every);
        set!(k.pause_after_ms, pause_after_ms);
        set!(k.revoke_timeout_ms, revoke_timeout_ms);
        set!(k.connect_timeout_ms, connect_timeout_ms);
        set!(k.window_limit, window_limit);
        if self.exactly_once {
            k.exactly_once = true;
        }
        set_some(&mut k.transactional_id, &self.transactional_id);
        for prop in &self.kafka_properties {
            let Some((key, value)) = prop.split_once('=') else {
                return Err(SettingsError::Invalid {
                    key: "--kafka-property".into(),
                    message: format!("expected KEY=VALUE, got {:?}", key_only(prop)),
                });
            };
            k.properties.insert(key.trim().into(), value.into());
        }
        if self.store.is_some() {
            s.store.url.clone_from(&self.store);
        }
        set!(s.store.table, table);
        set!(s.store.batch, store_batch);
        set!(s.store.batch_wait_ms, store_batch_wait_ms);
        if self.store_offsets {
            s.store.offsets = true;
        }
        if let Some(delays) = &self.retry_delays {
            s.store.retry_delays = delays.iter().filter(|d| !d.is_empty()).cloned().collect();
        }
        let st = &mut s.stages;
        if self.given("overflow") {
            for stage in [
                &mut st.decode,
                &mut st.validate,
                &mut st.transform,
                &mut st.store,
                &mut st.produce,
                &mut st.dead_letters,
            ] {
                stage.overflow = self.overflow;
            }
        }
        set!(st.decode.capacity, decode_capacity);
        set!(st.validate.capacity, validate_capacity);
        set!(st.transform.capacity, transform_capacity);
        set_some(&mut st.transform.workers, &self.transform_workers);
        set!(st.transform.order, transform_order);
        set_some(&mut st.transform.overflow, &self.transform_overflow);
        set!(st.store.capacity, store_capacity);
        set!(st.produce.capacity, produce_capacity);
        set!(st.produce.workers, produce_in_flight);
        set!(s.run.hash_rounds, hash_rounds);
        if self.schema.is_some() {
            s.validate.schema.clone_from(&self.schema);
        }
        if self.validate_formats {
            s.validate.formats = true;
        }
        set!(s.validate.max_payload_bytes, max_payload_bytes);
        if self.given("pseudonymise") {
            // `--pseudonymise ""` (or the flag alone) clears the list.
            s.transform.pseudonymise = self
                .pseudonymise
                .iter()
                .filter(|f| !f.is_empty())
                .cloned()
                .collect();
        }
        set!(s.transform.cents, cents);
        set_some(&mut s.transform.cents_field, &self.cents_field);
        set!(s.embedded.records, records);
        set!(s.embedded.partitions, partitions);
        set!(s.embedded.malformed, malformed);
        set!(s.run.http, http);
        set!(s.run.drain_timeout_s, drain_timeout);
        set_some(&mut s.run.panic_on_id_suffix, &self.panic_on_id_suffix);
        set_some(
            &mut s.run.fault_hold_transaction_ms,
            &self.fault_hold_transaction_ms,
        );
        if self.until_caught_up {
            s.run.until_caught_up = true;
        }
        s.validate()?;
        Ok(s)
    }
}

/// The key of a `KEY=VALUE` argument without its value (which may be a secret).
fn key_only(prop: &str) -> String {
    if sluicegate_kafka_io::is_secret(prop.trim()) {
        "<redacted>".into()
    } else {
        prop.chars().take(64).collect()
    }
}
