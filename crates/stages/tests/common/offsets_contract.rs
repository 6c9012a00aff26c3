//! The consumer-offsets contract of `Store::write_with_offsets` and
//! `Store::read_offsets`, for every backend (run by `store_contract`).

use std::collections::BTreeMap;

use serde_json::json;
use sluicegate_core::testing::within;
use sluicegate_stages::store::{Row, Store, Written};

use super::LIMIT;

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
