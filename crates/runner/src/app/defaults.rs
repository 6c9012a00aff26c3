//! The one table of the reference pipeline's defaults.
//!
//! Each default is written here once. The [settings](crate::app::settings)'
//! `Default` impls read it, and so does the command line, whose `--help`
//! shows each value through clap's `default_value_t` / `default_value`
//! (a flag left out still lets the `--config` file decide: see
//! [`RunArgs::settings`](crate::app::cli::RunArgs::settings)).
//!
//! Some defaults are not one value and are described in words where they
//! apply: the store (SQLite at
//! [`DEFAULT_SQLITE_PATH`](sluicegate_stages::store::DEFAULT_SQLITE_PATH),
//! or a temporary file when embedded), the transform's workers (the
//! machine's cores, [`transform_workers`]), the transactional id
//! (`sluicegate-{group}`) and the cents field (`{cents}_cents`).

use sluicegate_kafka_io::KafkaSource;

use crate::host::RunnerOptions;

// [kafka]

/// `kafka.group`, `--group`.
pub const GROUP: &str = "sluicegate";
/// `kafka.input_topic`, `--input-topic`; also `sluicegate produce --topic`.
pub const INPUT_TOPIC: &str = "events";
/// `kafka.output_topic`, `--output-topic`.
pub const OUTPUT_TOPIC: &str = "events-clean";
/// `kafka.dead_letter_topic`, `--dead-letter-topic`.
pub const DEAD_LETTER_TOPIC: &str = "events-dlq";
/// `kafka.workers`, `--workers`: consumers of the group in this process.
pub const WORKERS: usize = 1;
/// `kafka.commit_interval_ms`, `--commit-interval-ms`.
pub const COMMIT_INTERVAL_MS: u64 = 1_000;
/// `kafka.commit_every`, `--commit-every`.
pub const COMMIT_EVERY: usize = 1_000;
/// `kafka.pause_after_ms`, `--pause-after-ms`.
pub const PAUSE_AFTER_MS: u64 = 500;
/// `kafka.revoke_timeout_ms`, `--revoke-timeout-ms`.
pub const REVOKE_TIMEOUT_MS: u64 = 10_000;
/// `kafka.connect_timeout_ms`, `--connect-timeout-ms`.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// `kafka.window_limit`, `--window-limit`: the Kafka source's own default.
pub const WINDOW_LIMIT: usize = KafkaSource::DEFAULT_WINDOW_LIMIT;

// [store]

/// `store.table`, `--table`.
pub const TABLE: &str = "events";
/// `store.batch`, `--store-batch`: rows per transaction at most.
pub const STORE_BATCH: usize = 500;
/// `store.batch_wait_ms`, `--store-batch-wait-ms`.
pub const STORE_BATCH_WAIT_MS: u64 = 50;

// [validate]

/// `validate.max_payload_bytes`, `--max-payload-bytes`: room for the
/// generated records ([`generate::MAX_PAYLOAD_BYTES`](crate::app::generate::MAX_PAYLOAD_BYTES)).
pub const MAX_PAYLOAD_BYTES: usize = crate::app::generate::MAX_PAYLOAD_BYTES;

// [transform]

/// `transform.pseudonymise`, `--pseudonymise`: comma separated.
pub const PSEUDONYMISE: &str = "email";
/// `transform.cents`, `--cents`.
pub const CENTS: &str = "amount";

// [stages.*]: mailbox capacities and workers

/// `stages.decode.capacity`, `--decode-capacity`; also the capacity of a
/// stage left out of the file's `[stages]`.
pub const DECODE_CAPACITY: usize = 256;
/// `stages.validate.capacity`, `--validate-capacity`.
pub const VALIDATE_CAPACITY: usize = 256;
/// `stages.transform.capacity`, `--transform-capacity`.
pub const TRANSFORM_CAPACITY: usize = 512;
/// `stages.store.capacity`, `--store-capacity`.
pub const STORE_CAPACITY: usize = 2_000;
/// `stages.produce.capacity`, `--produce-capacity`.
pub const PRODUCE_CAPACITY: usize = 2_048;
/// `stages.produce.workers`, `--produce-in-flight`: deliveries in flight.
pub const PRODUCE_IN_FLIGHT: usize = 1_024;
/// `stages.dead_letters.capacity`.
pub const DEAD_LETTERS_CAPACITY: usize = 256;
/// `stages.dead_letters.workers`: dead-letter deliveries in flight.
pub const DEAD_LETTERS_IN_FLIGHT: usize = 64;
/// `stages.*.workers` of the stages that take one record at a time.
pub const STAGE_WORKERS: usize = 1;
/// `run.hash_rounds`, `--hash-rounds`: HMAC rounds per pseudonymised field.
pub const HASH_ROUNDS: u32 = 16;

/// `stages.transform.workers`, `--transform-workers`: the machine's cores
/// (2 when they cannot be counted).
pub fn transform_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

// [embedded] (and `sluicegate produce`)

/// `embedded.records`, `--records`.
pub const RECORDS: u64 = 100_000;
/// `embedded.partitions`, `--partitions`.
pub const PARTITIONS: i32 = 8;
/// `embedded.malformed`, `--malformed`: the share of malformed records.
pub const MALFORMED: f64 = 0.02;

// [run]

/// `run.http`, `--http`: the status server's address, on loopback only.
pub const HTTP: &str = "127.0.0.1:9898";
/// `run.drain_timeout_s`, `--drain-timeout`: the host's own default.
pub const DRAIN_TIMEOUT_S: u64 = RunnerOptions::DEFAULT_DRAIN_TIMEOUT.as_secs();
