//! The store contract (see `sluicegate_stages::store`), one suite for every
//! backend: exactly once under replays, acknowledgements only after commit,
//! a failed commit, rejected rows, the batch deadline, keys, consumer
//! offsets committed with the rows.
//!
//! A backend's test file implements [`Backend`] (in `common/`) and invokes
//! [`store_contract_tests!`], which makes one test per scenario. Every
//! scenario reads what was stored from the database itself, on the test's
//! own connection, not from the store's counters.
#![allow(async_fn_in_trait)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sluicegate_core::testing::{AckLog, within};
use sluicegate_core::{
    AckReceiver, BatchConfig, BatchSpec, BatchStage, FailureKind, Graph, Origin, Outcome,
};
use sluicegate_stages::store::{
    RetryPolicy, Row, Store, StoreError, StoreStage, StoreStats, Written,
};

use super::{LIMIT, PhasedSource, id, ids, records, run_store, unique_table};

/// A check, on the test's own connection, that the row with an id is in a
/// table (committed).
pub type RowVisible = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// What the contract suite needs of a backend: fresh stores and tables,
/// the rows read back from the database itself, and ways to make it fail.
pub trait Backend: Sized {
    /// The backend's store.
    type Store: Store + 'static;

    /// A fresh database to test in (for PostgreSQL, the test's connections
    /// to the server; a missing server fails the test).
    async fn new() -> Self;

    /// A store on `table`, which it creates if missing.
    async fn open(&self, table: &str) -> Arc<Self::Store>;

    /// A store on `table` that gives up quickly on a lock another
    /// connection holds, where the backend waits for locks in the store.
    async fn open_impatient(&self, table: &str) -> Arc<Self::Store>;

    /// The ids stored in `table`, sorted, read on the test's connection.
    async fn ids(&self, table: &str) -> Vec<String>;

    /// Creates `table` with the store's columns and a deferred foreign key
    /// that every row breaks, so that each commit into it fails.
    async fn create_failing_commit_table(&self, table: &str);

    /// The message of a batch whose commit into such a table failed.
    fn failed_commit_message(&self, table: &str) -> String;

    /// Creates `table` with the store's columns and a check constraint
    /// `amount_not_negative` refusing rows whose payload has a negative
    /// `amount`.
    async fn create_refusing_table(&self, table: &str);

    /// The message of the row `id` that constraint refused.
    fn refused_message(&self, table: &str, id: &str) -> String;

    /// A record `n` (stored as `id`) that this backend cannot store
    /// whatever the table, and its row's message; `None` if there is none.
    fn unstorable(&self, n: i64, id: &str) -> Option<(Value, String)>;

    /// From another connection, stops writes into `table` until
    /// [`unblock`](Self::unblock).
    async fn block_writes(&self, table: &str);

    /// Waits until the store's write into `table` is held by
    /// [`block_writes`](Self::block_writes).
    async fn wait_blocked(&self, table: &str, stats: &StoreStats);

    /// Lets writes through again.
    async fn unblock(&self);

    /// A synchronous check that a row is committed, for checks inside an
    /// acknowledgement; `None` if the test has no synchronous client.
    fn row_visible(&self, table: &str) -> Option<RowVisible>;

    /// The connections `store` has opened, if the backend counts them.
    fn connections(store: &Self::Store) -> Option<u64>;

    /// Drops what the test made (at the end of a passing test), and the
    /// consumer offsets of `groups`.
    async fn cleanup(&self, groups: &[&str]);
}

/// Makes one `#[tokio::test]` per contract scenario, against the
/// [`Backend`] `$backend`. (Test binaries without a store test leave it
/// unused.)
#[allow(unused_macros)]
macro_rules! store_contract_tests {
    ($backend:ty) => {
        $crate::common::store_contract::store_contract_tests!(
            $backend;
            stores_each_record_exactly_once_even_when_written_twice,
            acks_fire_only_after_the_transaction_commits,
            a_failed_commit_fails_every_ack_and_stores_nothing,
            rows_the_database_rejects_fail_alone,
            a_quiet_stream_flushes_at_the_deadline,
            keys_come_from_the_origin_or_a_key_function,
            consumer_offsets_commit_with_the_rows,
        );
    };
    ($backend:ty; $($scenario:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $scenario() {
                use $crate::common::store_contract::Backend as _;
                let backend = <$backend>::new().await;
                $crate::common::store_contract::$scenario(&backend).await;
            }
        )+
    };
}
#[allow(unused_imports)]
pub(crate) use store_contract_tests;

const HOUR: Duration = Duration::from_secs(3600);

async fn count(store: &dyn Store) -> u64 {
    within(LIMIT, "counting rows", store.count())
        .await
        .expect("count")
}

fn row(id: &str) -> Row {
    Row {
        id: id.into(),
        topic: None,
        partition: None,
        offset: None,
        payload: "{}".into(),
    }
}

/// A replay of the same origins, and the same batch written twice (a key
/// repeated inside it), store each row once.
pub async fn stores_each_record_exactly_once_even_when_written_twice<B: Backend>(b: &B) {
    let table = unique_table("once");
    let store = b.open(&table).await;
    assert_eq!(count(&*store).await, 0, "the table is created, empty");

    let first = StoreStage::new(store.clone() as Arc<dyn Store>);
    let stats = first.stats();
    let run = run_store(records(1000), first, 100, HOUR, true).await;
    assert!(run.report.is_clean(), "{:?}", run.report);
    run.acks.assert_each_once(1000);
    assert_eq!(run.acks.delivered(), 1000);
    assert_eq!((stats.inserted(), stats.commits()), (1000, 10));

    // The same records from the same origins again: a replay after a crash.
    let again = StoreStage::new(store.clone() as Arc<dyn Store>);
    let stats = again.stats();
    let run = run_store(records(1000), again, 100, HOUR, true).await;
    assert!(run.report.is_clean(), "{:?}", run.report);
    assert_eq!(run.acks.delivered(), 1000, "replayed rows are acknowledged");
    assert_eq!((stats.inserted(), stats.duplicates()), (0, 1000));
    assert_eq!(count(&*store).await, 1000);
    assert_eq!(b.ids(&table).await, ids(0..1000));

    // The same batch written twice directly, with a key repeated inside it.
    let batch = [row("x1"), row("x2"), row("x1")];
    let w1 = within(LIMIT, "first write", store.write(&batch))
        .await
        .expect("written");
    let w2 = within(LIMIT, "second write", store.write(&batch))
        .await
        .expect("written");
    let w1: Vec<_> = w1.into_iter().map(|r| r.expect("row ok")).collect();
    let w2: Vec<_> = w2.into_iter().map(|r| r.expect("row ok")).collect();
    assert_eq!(
        w1,
        [Written::Inserted, Written::Inserted, Written::Duplicate]
    );
    assert_eq!(w2, [Written::Duplicate; 3]);
    assert_eq!(count(&*store).await, 1002);
    if let Some(n) = B::connections(&store) {
        assert_eq!(n, 1, "one connection for all of it");
    }
    b.cleanup(&[]).await;
}

/// Records each delivered acknowledgement's offset and whether its row
/// was already committed then.
struct SeesCommitted {
    visible: RowVisible,
    seen: Mutex<Vec<(i64, bool)>>,
}

impl AckReceiver for SeesCommitted {
    fn on_ack(&self, origin: &Origin, outcome: Outcome) {
        if !outcome.is_delivered() {
            return;
        }
        let offset = origin.offset.unwrap_or(-1);
        let visible = (self.visible)(&id(offset));
        self.seen.lock().expect("lock").push((offset, visible));
    }
}

/// While another connection holds the store's write back, nothing is
/// acknowledged; once it commits, every record is, each after its row is
/// visible (where the backend can check that inside an acknowledgement).
pub async fn acks_fire_only_after_the_transaction_commits<B: Backend>(b: &B) {
    let table = unique_table("after_commit");
    let store = b.open_impatient(&table).await;
    let checker = b.row_visible(&table).map(|visible| {
        Arc::new(SeesCommitted {
            visible,
            seen: Mutex::new(Vec::new()),
        })
    });
    b.block_writes(&table).await;

    let stage = StoreStage::new(store.clone() as Arc<dyn Store>).retry(RetryPolicy::new(
        10_000,
        Duration::from_millis(2),
        Duration::from_millis(10),
    ));
    let stats = stage.stats();
    let acks = AckLog::new();
    let (_go, go) = tokio::sync::oneshot::channel();
    let mut g = Graph::builder("after-commit");
    g.source(
        "src",
        PhasedSource {
            first: records(50),
            then: Vec::new(),
            go,
            acks: acks.clone(),
            also: checker.clone().map(|c| c as Arc<dyn AckReceiver>),
        },
    )
    .to_batch(BatchSpec::new("store", stage, BatchConfig::new(50, HOUR)));
    let running = g.build().expect("valid").start().await.expect("starts");
    drop(_go);

    b.wait_blocked(&table, &stats).await;
    assert_eq!(acks.resolved(), 0, "nothing acknowledged before the commit");
    assert_eq!(stats.commits(), 0);
    assert!(b.ids(&table).await.is_empty());

    b.unblock().await;
    let report = within(LIMIT, "the graph", running.wait()).await;
    assert!(report.is_clean(), "{report:?}");
    acks.assert_each_once(50);
    assert_eq!(acks.delivered(), 50);
    assert_eq!(stats.commits(), 1);
    assert_eq!(b.ids(&table).await, ids(0..50));
    if let Some(checker) = checker {
        let seen = checker.seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 50);
        assert!(
            seen.iter().all(|(_, visible)| *visible),
            "an ack fired before its row was visible: {seen:?}"
        );
    }
    b.cleanup(&[]).await;
}

/// A commit that fails (a deferred foreign key, checked at COMMIT) fails
/// every record's acknowledgement and stores nothing.
pub async fn a_failed_commit_fails_every_ack_and_stores_nothing<B: Backend>(b: &B) {
    let table = unique_table("bad_commit");
    b.create_failing_commit_table(&table).await;
    let store = b.open(&table).await;
    let stage = StoreStage::new(store.clone() as Arc<dyn Store>);
    let stats = stage.stats();
    let run = run_store(records(20), stage, 20, HOUR, false).await;
    assert!(run.report.is_clean(), "{:?}", run.report);
    run.acks.assert_each_once(20);
    assert_eq!(run.acks.failed(), 20, "no ack resolves as delivered");
    let want = b.failed_commit_message(&table);
    for (offset, outcomes) in run.acks.outcomes() {
        match &outcomes[0] {
            Outcome::Failed(e) => {
                assert_eq!(e.kind(), FailureKind::Error);
                assert_eq!(e.message(), want, "offset {offset}");
            }
            other => panic!("offset {offset} resolved as {other}"),
        }
    }
    assert_eq!(count(&*store).await, 0);
    assert!(b.ids(&table).await.is_empty());
    assert_eq!(
        (stats.commits(), stats.batches_failed(), stats.retries()),
        (0, 1, 0)
    );
    b.cleanup(&[]).await;
}

/// Rows the database refuses (offsets 5 and 13 break a check constraint;
/// offset 9 holds what the backend cannot store, if anything) are
/// dead-lettered each with the database's reason; the others are stored
/// in one commit.
pub async fn rows_the_database_rejects_fail_alone<B: Backend>(b: &B) {
    let table = unique_table("bad_row");
    b.create_refusing_table(&table).await;
    let store = b.open(&table).await;
    let unstorable = b.unstorable(9, &id(9));
    let mut items: Vec<Value> = (0..20)
        .map(|i| json!({"n": i, "amount": if i == 5 || i == 13 { -1 } else { i }}))
        .collect();
    let mut want_dead = vec![
        (5, b.refused_message(&table, &id(5))),
        (13, b.refused_message(&table, &id(13))),
    ];
    if let Some((item, message)) = unstorable {
        items[9] = item;
        want_dead.insert(1, (9, message));
    }
    let refused: Vec<i64> = want_dead.iter().map(|(o, _)| *o).collect();
    let stage = StoreStage::new(store.clone() as Arc<dyn Store>);
    let stats = stage.stats();
    let run = run_store(items, stage, 20, HOUR, true).await;
    assert!(run.report.is_clean(), "{:?}", run.report);
    run.acks.assert_each_once(20);
    assert_eq!(
        (run.acks.delivered(), run.acks.dead_lettered()),
        (20 - refused.len(), refused.len())
    );
    let dead: Vec<(i64, String)> = run
        .dead
        .items()
        .into_iter()
        .map(|d| {
            assert_eq!(d.stage, "store");
            (d.offset, d.message)
        })
        .collect();
    assert_eq!(dead, want_dead);
    assert_eq!(
        b.ids(&table).await,
        ids((0..20).filter(|i| !refused.contains(i)))
    );
    assert_eq!(
        (stats.commits(), stats.rows_failed()),
        (1, refused.len() as u64)
    );
    b.cleanup(&[]).await;
}

/// Five records and then nothing: the batch closes at its deadline, not
/// at its size; the rest come in batches of at most 100.
pub async fn a_quiet_stream_flushes_at_the_deadline<B: Backend>(b: &B) {
    let table = unique_table("deadline");
    let store = b.open(&table).await;
    let stage = StoreStage::new(store.clone() as Arc<dyn Store>);
    let stats = stage.stats();
    let acks = AckLog::new();
    let (go_tx, go) = tokio::sync::oneshot::channel();
    let mut g = Graph::builder("deadline");
    g.source(
        "src",
        PhasedSource {
            first: records(5),
            then: records(300).split_off(5),
            go,
            acks: acks.clone(),
            also: None,
        },
    )
    .to_batch(BatchSpec::new(
        "store",
        stage,
        BatchConfig::new(100, Duration::from_millis(50)),
    ));
    let running = g.build().expect("valid").start().await.expect("starts");
    within(LIMIT, "the first five acks", acks.wait_for(5)).await;
    assert_eq!(acks.delivered(), 5);
    assert_eq!((stats.batches(), stats.commits()), (1, 1));
    assert_eq!(count(&*store).await, 5);
    assert_eq!(b.ids(&table).await, ids(0..5));
    go_tx.send(()).expect("source waiting");
    let report = within(LIMIT, "the graph", running.wait()).await;
    assert!(report.is_clean(), "{report:?}");
    acks.assert_each_once(300);
    assert_eq!(stats.inserted(), 300);
    assert!(stats.commits() >= 4, "{} commits", stats.commits());
    assert_eq!(count(&*store).await, 300);
    assert_eq!(b.ids(&table).await, ids(0..300));
    b.cleanup(&[]).await;
}

/// Keys from the origin; a record without an offset fails alone unless a
/// fallback key function gives it one; a business key for everything
/// stores the same order from two offsets once.
pub async fn keys_come_from_the_origin_or_a_key_function<B: Backend>(b: &B) {
    let table = unique_table("keys");
    let store = b.open(&table).await as Arc<dyn Store>;
    let no_offset = Origin::default();
    let kafka = Origin {
        topic: Some("orders".into()),
        ..Origin::at(3, 42)
    };

    let stage = StoreStage::<Value>::new(store.clone());
    let out = within(
        LIMIT,
        "a batch",
        stage.process_batch(
            vec![json!({"order": "a"}), json!({"order": "b"})],
            &[&kafka, &no_offset],
        ),
    )
    .await
    .expect("batch");
    assert!(out[0].is_ok());
    assert!(matches!(out[1], Err(StoreError::NoKey)), "{:?}", out[1]);

    let stage = StoreStage::<Value>::new(store.clone())
        .key_fallback(|v, _| v["order"].as_str().map(str::to_string));
    let out = within(
        LIMIT,
        "a batch",
        stage.process_batch(vec![json!({"order": "b"})], &[&no_offset]),
    )
    .await
    .expect("batch");
    assert!(out[0].is_ok());

    let stage = StoreStage::<Value>::new(store.clone())
        .key_by(|v, _| v["order"].as_str().map(str::to_string));
    let stats = stage.stats();
    let out = within(
        LIMIT,
        "a batch",
        stage.process_batch(
            vec![json!({"order": "c"}), json!({"order": "c"})],
            &[&Origin::at(0, 1), &Origin::at(0, 2)],
        ),
    )
    .await
    .expect("batch");
    assert!(out.iter().all(Result::is_ok));
    assert_eq!((stats.inserted(), stats.duplicates()), (1, 1));
    assert_eq!(b.ids(&table).await, ["key:b", "key:c", "orders/3/42"]);
    b.cleanup(&[]).await;
}

/// The consumer-offsets contract ([`offsets_contract`]) in one database.
pub async fn consumer_offsets_commit_with_the_rows<B: Backend>(b: &B) {
    let (plain, failing, refusing) = (
        unique_table("offs_plain"),
        unique_table("offs_failing"),
        unique_table("offs_refusing"),
    );
    b.create_failing_commit_table(&failing).await;
    b.create_refusing_table(&refusing).await;
    let group = unique_table("offs_group");
    offsets_contract(
        &*b.open(&plain).await,
        &*b.open(&failing).await,
        &*b.open(&refusing).await,
        &group,
    )
    .await;
    b.cleanup(&[&group]).await;
}

/// A row at origin `t`/`partition`/`offset` with a JSON payload whose
/// `amount` is `amount` (a table can refuse negative ones).
pub fn offset_row(partition: i32, offset: i64, amount: i64) -> Row {
    Row {
        id: format!("t/{partition}/{offset}"),
        topic: Some("t".into()),
        partition: Some(partition),
        offset: Some(offset),
        payload: json!({ "amount": amount }).to_string(),
    }
}

/// The consumer-offsets contract of [`Store::write_with_offsets`] and
/// [`Store::read_offsets`]:
///
/// - `plain`: a table that takes every row;
/// - `failing`: a table whose commit fails (a deferred constraint);
/// - `refusing`: a table that refuses rows with a negative `amount`.
///
/// All three in one database, so they share its offsets table. `group` is
/// unique to the caller's run.
pub async fn offsets_contract(
    plain: &dyn Store,
    failing: &dyn Store,
    refusing: &dyn Store,
    group: &str,
) {
    async fn read(store: &dyn Store, group: String) -> BTreeMap<i32, i64> {
        within(LIMIT, "reading offsets", store.read_offsets(&group, "t"))
            .await
            .expect("offsets read")
    }
    let t = |p: i32, o: i64| ("t".to_string(), p, o);
    assert!(
        read(plain, group.into()).await.is_empty(),
        "nothing stored yet"
    );

    // Rows and offsets in one transaction.
    let rows: Vec<_> = (0..3).map(|o| offset_row(0, o, 1)).collect();
    let written = within(
        LIMIT,
        "a batch with offsets",
        plain.write_with_offsets(&rows, group, &[t(0, 3)]),
    )
    .await
    .expect("written");
    assert!(
        written.iter().all(|r| matches!(r, Ok(Written::Inserted))),
        "{written:?}"
    );
    assert_eq!(read(plain, group.into()).await, [(0, 3)].into());

    // Offsets alone; an offset never moves back; groups are apart.
    within(
        LIMIT,
        "offsets alone",
        plain.write_with_offsets(&[], group, &[t(0, 2), t(1, 5)]),
    )
    .await
    .expect("written");
    assert_eq!(read(plain, group.into()).await, [(0, 3), (1, 5)].into());
    assert!(read(plain, format!("{group}-other")).await.is_empty());

    // A batch whose commit fails commits its offsets no more than its rows.
    let failed = within(
        LIMIT,
        "a batch whose commit fails",
        failing.write_with_offsets(&[offset_row(0, 3, 1)], group, &[t(0, 9)]),
    )
    .await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(
        read(failing, group.into()).await,
        [(0, 3), (1, 5)].into(),
        "the failed batch moved no offset"
    );

    // A refused row holds its partition's offset (it is not finished: it
    // goes to the dead-letter route after the commit).
    let rows = vec![
        offset_row(0, 10, 1),
        offset_row(0, 11, -1),
        offset_row(0, 12, 1),
    ];
    let written = within(
        LIMIT,
        "a batch with a refused row",
        refusing.write_with_offsets(&rows, group, &[t(0, 13)]),
    )
    .await
    .expect("written");
    assert!(matches!(written[0], Ok(Written::Inserted)), "{written:?}");
    assert!(written[1].is_err(), "{written:?}");
    assert!(matches!(written[2], Ok(Written::Inserted)), "{written:?}");
    assert_eq!(
        read(refusing, group.into()).await,
        [(0, 11), (1, 5)].into(),
        "the offset stops at the refused row"
    );
}
