//! The store contract (see `sluicegate_stages::store`), one suite for every
//! backend: exactly once under replays, acknowledgements only after commit,
//! a failed commit, rejected rows, the batch deadline, keys, consumer
//! offsets committed with the rows.
//!
//! A backend's test file invokes [`store_contract_tests!`] with its
//! [`Backend`] fixture (in `common/`), making one test per scenario. Every
//! scenario reads what was stored from the database itself, on the test's
//! own connection, not from the store's counters.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sluicegate_core::testing::within;
use sluicegate_core::{AckReceiver, BatchConfig, BatchStage, FailureKind, Origin, Outcome};
use sluicegate_stages::store::{RetryPolicy, Row, Store, StoreError, StoreStage, Written};

use super::backend::{Backend, RowVisible};
use super::offsets_contract::offsets_contract;
use super::{LIMIT, Phased, id, ids, records, run_store, start_phased, unique_table};

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
                use $crate::common::backend::Backend as _;
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
    let Phased {
        acks, go, running, ..
    } = start_phased(
        records(50),
        Vec::new(),
        stage,
        BatchConfig::new(50, HOUR),
        checker.clone().map(|c| c as Arc<dyn AckReceiver>),
    )
    .await;
    drop(go);

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
    let Phased { acks, go, running } = start_phased(
        records(5),
        records(300).split_off(5),
        stage,
        BatchConfig::new(100, Duration::from_millis(50)),
        None,
    )
    .await;
    within(LIMIT, "the first five acks", acks.wait_for(5)).await;
    assert_eq!(acks.delivered(), 5);
    assert_eq!((stats.batches(), stats.commits()), (1, 1));
    assert_eq!(count(&*store).await, 5);
    assert_eq!(b.ids(&table).await, ids(0..5));
    go.send(()).expect("source waiting");
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
