//! The reconciliation every end-to-end scenario ends in (see
//! tests/reliability.rs), built from what the broker and the database hold.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use sluicegate_runner::generate;

use super::*;

pub fn scale() -> u64 {
    std::env::var("SLUICEGATE_RELIABILITY_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// How long a whole scenario may take, scaled with its records.
pub fn patience() -> Duration {
    PATIENCE * scale() as u32
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The input topic, record by record: which generated record (good) sits
/// at each origin, and which origins hold malformed ones.
pub struct Input {
    /// (partition, offset) → the generated index of a good record.
    pub good: BTreeMap<(i32, i64), u64>,
    pub malformed: BTreeSet<(i32, i64)>,
    /// A good record's id → its origin.
    pub origin_of: HashMap<String, (i32, i64)>,
}

impl Input {
    pub fn read(cluster: &Cluster, records: u64, share: f64) -> Input {
        let payloads: HashMap<Vec<u8>, u64> = (0..records)
            .filter(|&i| generate::is_malformed(i, share).is_none())
            .map(|i| (generate::record(i, share).1.to_vec(), i))
            .collect();
        let msgs = read_topic(
            &cluster.brokers,
            &cluster.input,
            "read_uncommitted",
            patience(),
        );
        assert_eq!(msgs.len() as u64, records, "the input topic");
        let mut input = Input {
            good: BTreeMap::new(),
            malformed: BTreeSet::new(),
            origin_of: HashMap::new(),
        };
        for m in msgs {
            let at = (m.partition, m.offset);
            match payloads.get(&m.payload) {
                Some(&i) => {
                    input.good.insert(at, i);
                    input.origin_of.insert(generate::id(i), at);
                }
                None => {
                    input.malformed.insert(at);
                }
            }
        }
        assert_eq!(
            input.good.len() as u64,
            payloads.len() as u64,
            "every good generated record is in the input once"
        );
        input
    }

    pub fn all(&self) -> BTreeSet<(i32, i64)> {
        self.good.keys().chain(&self.malformed).copied().collect()
    }
}

/// The reconciliation of one scenario (all from the broker and the table).
#[derive(Debug, Default)]
pub struct Reconciliation {
    pub records_in: u64,
    pub stored: u64,
    pub dead_lettered: u64,
    pub dead_letter_duplicates: u64,
    pub produced: u64,
    pub output_duplicates: u64,
}

impl std::fmt::Display for Reconciliation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "in {} = stored {} + dead-lettered {} (disjoint); output {} distinct ids (+{} duplicates), dead letters +{} duplicates; lost 0",
            self.records_in,
            self.stored,
            self.dead_lettered,
            self.produced,
            self.output_duplicates,
            self.dead_letter_duplicates
        )
    }
}

/// One scenario's pipeline: its topics, table and group.
pub struct Pipeline<'a> {
    pub cluster: &'a Cluster,
    pub records: u64,
    pub table: String,
    pub group: String,
    pub input: Input,
    /// Good records the scenario makes fail (they must be dead-lettered).
    pub fails: Box<dyn Fn(u64) -> bool>,
    /// Whether those fail in the store branch, after the fan-out: then the
    /// output branch produced them all the same.
    pub fail_after_output: bool,
}

impl<'a> Pipeline<'a> {
    pub fn new(cluster: &'a Cluster, name: &str, records: u64, malformed: f64) -> Self {
        let table = format!("rel_{name}_{}", std::process::id());
        psql(&format!("DROP TABLE IF EXISTS {table}"));
        Pipeline {
            cluster,
            records,
            table,
            group: format!("{name}-{}", std::process::id()),
            input: Input::read(cluster, records, malformed),
            fails: Box::new(|_| false),
            fail_after_output: false,
        }
    }

    pub fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut a = vec!["run".to_string()];
        a.extend(self.cluster.args());
        a.extend(
            [
                "--group",
                &self.group,
                "--store",
                DATABASE,
                "--table",
                &self.table,
            ]
            .map(String::from),
        );
        // Faster failure detection than the default 45 s (classic protocol
        // only: KIP-848's consumer protocol leaves it to the broker).
        if !extra.contains(&"group.protocol=consumer") {
            a.extend(["--kafka-property", "session.timeout.ms=6000"].map(String::from));
        }
        if !extra.contains(&"--http") {
            a.extend(["--http", "off"].map(String::from));
        }
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }

    pub fn spawn(&self, extra: &[&str]) -> (std::process::Child, StderrLog) {
        let args = self.args(extra);
        let mut child = sluicegate(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .env("RUST_LOG", "info,librdkafka=warn")
            .spawn()
            .expect("spawn sluicegate");
        let log = watch_stderr(&mut child);
        (child, log)
    }

    /// Good records that end up stored.
    pub fn to_store(&self) -> BTreeSet<(i32, i64)> {
        self.input
            .good
            .iter()
            .filter(|(_, i)| !(self.fails)(**i))
            .map(|(at, _)| *at)
            .collect()
    }

    /// Records that end up dead-lettered.
    pub fn to_dead_letter(&self) -> BTreeSet<(i32, i64)> {
        let all = self.input.all();
        let stored = self.to_store();
        all.difference(&stored).copied().collect()
    }

    /// The table's origins (empty before the binary created it).
    pub fn stored(&self) -> BTreeSet<(i32, i64)> {
        if psql(&format!("SELECT to_regclass('{}') IS NOT NULL", self.table)) != "t" {
            return BTreeSet::new();
        }
        psql(&format!(
            "SELECT \"partition\", \"offset\" FROM {}",
            self.table
        ))
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (p, o) = l.split_once('|').expect("partition|offset");
            (p.parse().expect("partition"), o.parse().expect("offset"))
        })
        .collect()
    }

    /// Waits until every record that should be stored is (watching the
    /// table, the binary's own view does not count).
    pub fn wait_stored(&self, log: &StderrLog) {
        let want = self.to_store().len();
        poll_until(Duration::from_millis(200), log, || {
            let n = self.stored().len();
            (n >= want)
                .then_some(())
                .ok_or_else(|| format!("{n} of {want} rows"))
        });
    }

    /// Waits until the group committed every partition to its end.
    pub fn wait_committed_all(&self, log: &StderrLog) {
        let ends = end_offsets(&self.cluster.brokers, &self.cluster.input);
        poll_until(Duration::from_millis(100), log, || {
            let c = committed_offsets(&self.cluster.brokers, &self.group, &self.cluster.input);
            (c == ends)
                .then_some(())
                .ok_or_else(|| format!("committed {c:?} of {ends:?}"))
        });
    }

    pub fn committed(&self) -> BTreeMap<i32, i64> {
        committed_offsets(&self.cluster.brokers, &self.group, &self.cluster.input)
    }

    pub fn read(&self, topic: &str, isolation: &str) -> Vec<Msg> {
        read_topic(&self.cluster.brokers, topic, isolation, patience())
    }

    /// At-least-once at a moment when no process runs: every record below
    /// a committed offset is finished: stored and produced, or
    /// dead-lettered. (A commit past unfinished work shows up here.)
    pub fn check_committed_only_finished(&self, committed: &BTreeMap<i32, i64>, what: &str) {
        let stored = self.stored();
        let dead: BTreeSet<(i32, i64)> = self
            .read(&self.cluster.dead_letters, "read_uncommitted")
            .iter()
            .map(Msg::origin)
            .collect();
        let produced: BTreeSet<String> = self
            .read(&self.cluster.output, "read_uncommitted")
            .iter()
            .map(Msg::id)
            .collect();
        let want_stored = self.to_store();
        let mut below = 0;
        for at in self.input.all() {
            if at.1 >= committed.get(&at.0).copied().unwrap_or(0) {
                continue;
            }
            below += 1;
            if want_stored.contains(&at) {
                let id = generate::id(self.input.good[&at]);
                assert!(
                    stored.contains(&at) && produced.contains(&id),
                    "{what}: {at:?} is below the committed offsets {committed:?} but not finished (stored {}, produced {})",
                    stored.contains(&at),
                    produced.contains(&id)
                );
            } else {
                assert!(
                    dead.contains(&at),
                    "{what}: {at:?} is below the committed offsets {committed:?} but not dead-lettered"
                );
            }
        }
        println!("{what}: the {below} records below the committed offsets are all finished");
    }

    /// Reconciles the input against the table, the dead-letter topic and
    /// the output topic (read with `isolation`), and checks the group
    /// committed everything; panics on any loss, naming it.
    pub fn reconcile(&self, what: &str, isolation: &str) -> Reconciliation {
        let stored = self.stored();
        let dead_msgs = self.read(&self.cluster.dead_letters, "read_uncommitted");
        let output = self.read(&self.cluster.output, isolation);

        let mut dead = BTreeSet::new();
        for d in &dead_msgs {
            let reason = d
                .headers
                .get("sluicegate.error")
                .cloned()
                .unwrap_or_default();
            assert!(
                !reason.is_empty(),
                "{what}: a dead letter without a reason: {d:?}"
            );
            assert_eq!(
                d.headers.get("sluicegate.origin.topic"),
                Some(&self.cluster.input),
                "{what}: {d:?}"
            );
            dead.insert(d.origin());
        }
        let want_stored = self.to_store();
        let want_dead = self.to_dead_letter();
        same_set(
            what,
            &want_stored,
            &stored,
            "good records not stored",
            "rows that should not exist",
        );
        same_set(
            what,
            &want_dead,
            &dead,
            "records not dead-lettered",
            "dead letters of good records",
        );
        assert!(
            stored.is_disjoint(&dead),
            "{what}: stored and dead-lettered"
        );

        let mut out_ids: BTreeMap<String, u64> = BTreeMap::new();
        for m in &output {
            *out_ids.entry(m.id()).or_default() += 1;
        }
        let want_ids: BTreeSet<String> = if self.fail_after_output {
            self.input.good.values().map(|&i| generate::id(i)).collect()
        } else {
            want_stored
                .iter()
                .map(|at| generate::id(self.input.good[at]))
                .collect()
        };
        let got_ids: BTreeSet<String> = out_ids.keys().cloned().collect();
        same_set(
            what,
            &want_ids,
            &got_ids,
            "stored records not in the output",
            "output records never stored",
        );

        let ends = end_offsets(&self.cluster.brokers, &self.cluster.input);
        assert_eq!(
            self.committed(),
            ends,
            "{what}: the group committed every partition to its end"
        );

        self.cross_check(what, &output, isolation, &dead_msgs);
        let r = Reconciliation {
            records_in: self.records,
            stored: stored.len() as u64,
            dead_lettered: dead.len() as u64,
            dead_letter_duplicates: dead_msgs.len() as u64 - dead.len() as u64,
            produced: got_ids.len() as u64,
            output_duplicates: output.len() as u64 - got_ids.len() as u64,
        };
        println!("{what}: {r}");
        r
    }

    /// The outside witness reads the output and dead-letter topics and must
    /// see the same records (positions, ids, origins) as this reconciliation.
    pub fn cross_check(&self, what: &str, output: &[Msg], isolation: &str, dead: &[Msg]) {
        let brokers = &self.cluster.brokers;
        let seen: BTreeSet<(i32, i64, String)> =
            witness(brokers, &self.cluster.output, isolation, output.len())
                .into_iter()
                .map(|(p, o, _, value)| {
                    let v: serde_json::Value = serde_json::from_str(&value).unwrap_or_else(|e| {
                        panic!("{what}: witness value not JSON ({e}): {value}")
                    });
                    (p, o, v["id"].as_str().expect("id").to_string())
                })
                .collect();
        let ours: BTreeSet<(i32, i64, String)> = output
            .iter()
            .map(|m| (m.partition, m.offset, m.id()))
            .collect();
        assert_eq!(
            seen, ours,
            "{what}: the Java consumer reads another output ({isolation})"
        );
        let seen: BTreeSet<(i32, i64, String, String)> = witness(
            brokers,
            &self.cluster.dead_letters,
            "read_uncommitted",
            dead.len(),
        )
        .into_iter()
        .map(|(p, o, h, _)| {
            let get = |k: &str| h.get(k).cloned().unwrap_or_default();
            (
                p,
                o,
                get("sluicegate.origin.partition"),
                get("sluicegate.origin.offset"),
            )
        })
        .collect();
        let ours: BTreeSet<(i32, i64, String, String)> = dead
            .iter()
            .map(|m| {
                let (p, o) = m.origin();
                (m.partition, m.offset, p.to_string(), o.to_string())
            })
            .collect();
        assert_eq!(
            seen, ours,
            "{what}: the Java consumer reads other dead letters"
        );
        println!(
            "{what}: the Java console consumer read the same {} output and {} dead-letter records",
            output.len(),
            dead.len()
        );
    }

    /// Every record produced after run `k` started has its origin at or
    /// past the offsets committed when it started (`starts[k]` = (start
    /// time in ms, committed offsets then)): a restart never re-reads below
    /// a commit, so duplicates come only from what was uncommitted at a kill.
    pub fn check_rereads(&self, starts: &[(i64, BTreeMap<i32, i64>)], what: &str) {
        let mut checked = 0;
        let mut topics = vec![(&self.cluster.output, false)];
        topics.push((&self.cluster.dead_letters, true));
        for (topic, dead) in topics {
            for m in self.read(topic, "read_uncommitted") {
                let at = if dead {
                    m.origin()
                } else {
                    self.input.origin_of[&m.id()]
                };
                let ts = m.timestamp.expect("a timestamp");
                let Some((_, committed)) = starts.iter().rev().find(|(t, _)| *t <= ts) else {
                    panic!("{what}: a record produced before the first run: {m:?}");
                };
                let floor = committed.get(&at.0).copied().unwrap_or(0);
                assert!(
                    at.1 >= floor,
                    "{what}: {at:?} was processed again after a restart although {floor} was committed on its partition"
                );
                checked += 1;
            }
        }
        println!("{what}: {checked} produced records checked against the commits at each restart");
    }
}

impl Pipeline<'_> {
    /// Creates the table as the binary would, with a trigger that counts
    /// every attempt to insert each row (a `BEFORE INSERT` row trigger runs
    /// for a row the key then turns away too; an attempt in a transaction
    /// that rolls back is rolled back with it).
    pub fn count_attempts(&self) {
        let t = &self.table;
        psql(&format!(
            "CREATE TABLE {t} (id TEXT PRIMARY KEY, topic TEXT, \"partition\" INTEGER, \"offset\" BIGINT, \
             payload JSONB NOT NULL, stored_at TIMESTAMPTZ NOT NULL DEFAULT now());
             CREATE TABLE {t}_attempts (id TEXT PRIMARY KEY, n INTEGER NOT NULL);
             CREATE OR REPLACE FUNCTION {t}_attempt() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN
                    INSERT INTO {t}_attempts VALUES (NEW.id, 1)
                      ON CONFLICT (id) DO UPDATE SET n = {t}_attempts.n + 1;
                    RETURN NEW;
                  END $$;
             CREATE TRIGGER {t}_attempt BEFORE INSERT ON {t} FOR EACH ROW EXECUTE FUNCTION {t}_attempt();"
        ));
    }

    /// (rows attempted, rows attempted more than once), from the trigger's
    /// table.
    pub fn attempts(&self) -> (u64, u64) {
        let t = &self.table;
        let line = psql(&format!(
            "SELECT count(*), count(*) FILTER (WHERE n > 1) FROM {t}_attempts"
        ));
        let (a, b) = line.split_once('|').expect("two counts");
        (a.parse().expect("count"), b.parse().expect("count"))
    }

    /// The offsets the group keeps in the database (`--store-offsets`).
    pub fn stored_offsets(&self) -> BTreeMap<i32, i64> {
        psql(&format!(
            "SELECT \"partition\", next_offset FROM sluicegate_offsets \
             WHERE group_id = '{}' AND topic = '{}'",
            self.group, self.cluster.input
        ))
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (p, o) = l.split_once('|').expect("partition|offset");
            (p.parse().expect("partition"), o.parse().expect("offset"))
        })
        .collect()
    }
}

impl Drop for Pipeline<'_> {
    fn drop(&mut self) {
        let t = &self.table;
        // One statement per `-c`: each commits (or fails) on its own.
        let _ = std::process::Command::new("psql")
            .arg(DATABASE)
            .arg("-q")
            .args(["-c", &format!("DROP TABLE IF EXISTS {t}")])
            .args(["-c", &format!("DROP TABLE IF EXISTS {t}_attempts")])
            .args([
                "-c",
                &format!("DROP FUNCTION IF EXISTS {t}_attempt() CASCADE"),
            ])
            .args([
                "-c",
                &format!(
                    "DELETE FROM sluicegate_offsets WHERE group_id = '{}'",
                    self.group
                ),
            ])
            .output();
    }
}

/// Asserts `got` is `want`, naming up to ten records `missing` from it
/// and ten `extra` in it.
fn same_set<T: Ord + std::fmt::Debug>(
    what: &str,
    want: &BTreeSet<T>,
    got: &BTreeSet<T>,
    missing: &str,
    extra: &str,
) {
    let absent: Vec<_> = want.difference(got).take(10).collect();
    assert!(absent.is_empty(), "{what}: {missing}, e.g. {absent:?}");
    let more: Vec<_> = got.difference(want).take(10).collect();
    assert!(more.is_empty(), "{what}: {extra}, e.g. {more:?}");
}

/// Whether `child` is still running (reaped children are not).
pub fn running(child: &mut std::process::Child) -> bool {
    child.try_wait().expect("try_wait").is_none()
}

/// Asks `probe` every `every` until it answers `Ok`, for up to three times
/// [`patience`]; then fails with the last answer (what was seen) and the
/// binary's log.
fn poll_until(every: Duration, log: &StderrLog, mut probe: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    loop {
        match probe() {
            Ok(()) => return,
            Err(seen) => assert!(
                start.elapsed() < patience() * 3,
                "{seen}; log:\n{}",
                log.text()
            ),
        }
        std::thread::sleep(every);
    }
}
