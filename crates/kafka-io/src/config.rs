//! Client configuration: every librdkafka property passes through; typed
//! setters for the common ones; secrets never appear in logs or `Debug`.

use std::collections::BTreeMap;
use std::fmt;

use rdkafka::ClientConfig;

use crate::error::KafkaIoError;

/// Properties of a Kafka client (consumer or producer), as librdkafka names
/// them (`bootstrap.servers`, `sasl.password`, ...).
///
/// `Debug` shows every property with secret values (any key containing
/// `password` or `secret`, and `sasl.oauthbearer.config`) replaced by `***`.
///
/// # Example
///
/// ```
/// use sluicegate_kafka_io::KafkaConfig;
///
/// let config = KafkaConfig::new("127.0.0.1:9092")
///     .client_id("orders-pipeline")
///     .set("security.protocol", "SASL_SSL")
///     .set("sasl.password", "hunter2");
/// assert!(!format!("{config:?}").contains("hunter2"));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaConfig {
    props: BTreeMap<String, String>,
}

/// Whether a property holds a secret that must never be shown.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k == "sasl.oauthbearer.config"
        || k.ends_with(".key.pem")
}

impl KafkaConfig {
    /// A configuration for the cluster at `brokers` (`host:port[,host:port]`).
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig::default().set("bootstrap.servers", brokers)
    }

    /// Sets any librdkafka property.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.props.insert(key.into(), value.into());
        self
    }

    /// Sets a property only if it is not set yet (for defaults).
    pub(crate) fn set_default(mut self, key: &str, value: &str) -> Self {
        self.props
            .entry(key.to_string())
            .or_insert_with(|| value.to_string());
        self
    }

    /// A property's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.props.get(key).map(String::as_str)
    }

    /// `client.id`: how this client appears in broker logs and metrics.
    pub fn client_id(self, id: impl Into<String>) -> Self {
        self.set("client.id", id)
    }

    /// `security.protocol`: `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub fn security_protocol(self, protocol: impl Into<String>) -> Self {
        self.set("security.protocol", protocol)
    }

    /// SASL mechanism and credentials (`sasl.mechanism`, `sasl.username`,
    /// `sasl.password`). The password never appears in `Debug` output.
    pub fn sasl(
        self,
        mechanism: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.set("sasl.mechanism", mechanism)
            .set("sasl.username", username)
            .set("sasl.password", password)
    }

    /// The properties with secret values redacted, for logs and status pages.
    pub fn redacted(&self) -> BTreeMap<String, String> {
        self.props
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    if is_secret(k) {
                        "***".to_string()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect()
    }

    /// The librdkafka configuration.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.props {
            c.set(k, v);
        }
        c
    }

    /// Turns a librdkafka configuration error into one that names the
    /// setting (and never shows a secret value).
    ///
    /// Besides errors about one property's value, librdkafka refuses some
    /// combinations only when it creates the client, naming the property
    /// in backquotes at the start of the message: the settings KIP-848's
    /// consumer protocol leaves to the broker (`session.timeout.ms`,
    /// `heartbeat.interval.ms`, `partition.assignment.strategy`, ... with
    /// `group.protocol=consumer`). Those become [`KafkaIoError::Config`]
    /// too, naming the property that was set.
    pub(crate) fn explain(&self, err: rdkafka::error::KafkaError) -> KafkaIoError {
        let shown = |key: &str, value: &str| {
            if is_secret(key) {
                "***".to_string()
            } else {
                value.to_string()
            }
        };
        match &err {
            rdkafka::error::KafkaError::ClientConfig(_, description, key, value) => {
                KafkaIoError::Config {
                    key: key.clone(),
                    value: shown(key, value),
                    reason: description.clone(),
                }
            }
            rdkafka::error::KafkaError::ClientCreation(message) => {
                let named = message
                    .strip_prefix('`')
                    .and_then(|rest| rest.split_once('`'))
                    .and_then(|(key, reason)| Some((key, self.get(key)?, reason.trim())));
                match named {
                    Some((key, value, reason)) => KafkaIoError::Config {
                        key: key.to_string(),
                        value: shown(key, value),
                        reason: reason.to_string(),
                    },
                    None => KafkaIoError::Client(err),
                }
            }
            _ => KafkaIoError::Client(err),
        }
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.redacted()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let c = KafkaConfig::new("b:9092")
            .sasl("PLAIN", "alice", "s3cret-pw")
            .set("ssl.key.password", "k3y-pw")
            .set("sasl.oauthbearer.client.secret", "0auth");
        let shown = format!("{c:?}");
        for secret in ["s3cret-pw", "k3y-pw", "0auth"] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert!(shown.contains("alice"));
        assert_eq!(c.get("sasl.password"), Some("s3cret-pw"));
    }

    /// KIP-848's consumer protocol leaves these to the broker; librdkafka
    /// refuses them when it creates the consumer.
    #[test]
    fn settings_the_consumer_protocol_refuses_are_named() {
        for (key, value) in [
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "500"),
            ("partition.assignment.strategy", "range"),
        ] {
            let c = KafkaConfig::new("127.0.0.1:9")
                .set("group.id", "g")
                .set("group.protocol", "consumer")
                .set(key, value);
            let err = c
                .client_config()
                .create::<rdkafka::consumer::BaseConsumer>()
                .map(|_| ())
                .map_err(|e| c.explain(e))
                .expect_err("refused");
            match &err {
                KafkaIoError::Config {
                    key: k, value: v, ..
                } => assert_eq!((k.as_str(), v.as_str()), (key, value), "{err}"),
                other => panic!("{key}: not a setting error: {other}"),
            }
            assert!(err.to_string().contains("group.protocol=consumer"), "{err}");
        }
    }
}
