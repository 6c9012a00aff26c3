//! The offset tracker's unit and property tests.

use std::time::Duration;

use super::*;
use proptest::prelude::*;

#[test]
fn commits_only_the_contiguous_prefix() {
    let mut t = OffsetTracker::new();
    for o in 10..15 {
        t.track("t", 0, o);
    }
    assert_eq!(t.to_commit(), vec![("t".into(), 0, 10)]);
    assert_eq!(t.finish("t", 0, 12), Finish::Done);
    assert_eq!(t.finish("t", 0, 11), Finish::Done);
    assert_eq!(t.to_commit(), vec![("t".into(), 0, 10)], "10 is unfinished");
    assert_eq!(t.finish("t", 0, 10), Finish::Done);
    assert_eq!(t.to_commit(), vec![("t".into(), 0, 13)]);
    t.committed("t", 0, 13);
    assert!(t.to_commit().is_empty());
    t.finish("t", 0, 13);
    t.finish("t", 0, 14);
    assert_eq!(t.to_commit(), vec![("t".into(), 0, 15)]);
    assert_eq!(t.finish("t", 0, 14), Finish::Unknown, "finished twice");
    assert_eq!(t.finish("t", 9, 1), Finish::Untracked);
}

#[test]
fn gaps_are_not_waited_for() {
    let mut t = OffsetTracker::new();
    t.track("t", 0, 5);
    t.track("t", 0, 9);
    t.finish("t", 0, 9);
    assert_eq!(t.to_commit(), vec![("t".into(), 0, 5)]);
    t.finish("t", 0, 5);
    assert_eq!(t.to_commit(), vec![("t".into(), 0, 10)]);
}

#[test]
fn offsets_handed_out_again_are_skipped() {
    let mut t = OffsetTracker::new();
    assert!(t.track("t", 0, 5));
    assert!(t.track("t", 0, 6));
    assert!(!t.track("t", 0, 6), "the same offset again");
    assert!(!t.track("t", 0, 3), "an offset below the last one");
    assert_eq!(t.in_flight(None), 2);
    assert!(t.track("t", 0, 8), "a gap ahead is fine");
    // Held records taken back may be read again.
    t.rewind("t", 0, 6);
    assert!(t.track("t", 0, 6));
    assert_eq!(t.states()[0].next, Some(7));
}

#[test]
fn a_transaction_commits_as_if_its_records_were_finished() {
    let mut t = OffsetTracker::new();
    for o in 0..6 {
        t.track("t", 0, o);
    }
    t.track("t", 1, 0);
    t.finish("t", 0, 0);
    t.finish("t", 0, 3); // e.g. filtered: finished without the sink
    let batch = |offsets: &[i64]| {
        let mut m = BTreeMap::new();
        m.insert(
            ("t".to_string(), 0),
            offsets.iter().map(|o| (*o, 1)).collect(),
        );
        m
    };
    // 1 and 2 in the batch, 3 finished, 4 not: the commit stops at 4.
    assert_eq!(
        t.to_commit_with(&batch(&[1, 2])),
        vec![("t".into(), 0, 4), ("t".into(), 1, 0)]
    );
    // 1 missing: the commit cannot pass it, whatever the batch holds.
    assert_eq!(
        t.to_commit_with(&batch(&[2, 4, 5])),
        vec![("t".into(), 0, 1), ("t".into(), 1, 0)]
    );
    // Everything: one past the last.
    assert_eq!(
        t.to_commit_with(&batch(&[1, 2, 4, 5]))[0],
        ("t".into(), 0, 6)
    );
    // Nothing changed in the tracker itself.
    assert_eq!(t.states()[0].committable, Some(1));
    t.committed("t", 1, 0);
    assert_eq!(t.to_commit_with(&BTreeMap::new()), vec![("t".into(), 0, 1)]);
    assert!(t.owns("t", 1));
    assert!(!t.owns("t", 2));
}

/// A record fanned out to two branches is finishing with a batch only
/// once its other part finished, and never when one ended unfinished.
#[test]
fn a_record_in_the_batch_counts_only_once_its_other_parts_finished() {
    let mut t = OffsetTracker::new();
    for o in 0..3 {
        t.track("t", 0, o);
    }
    let batch = |offsets: &[(i64, usize)]| {
        let mut m = BTreeMap::new();
        m.insert(("t".to_string(), 0), offsets.iter().copied().collect());
        m
    };
    let all = batch(&[(0, 1), (1, 1), (2, 1)]);
    // 1 was split in two, neither part resolved: the batch holds one.
    t.parts("t", 0, 1, 2, false);
    assert_eq!(t.to_commit_with(&all), vec![("t".into(), 0, 1)]);
    // Holding both parts (a flat_map into one batch) is enough.
    assert_eq!(
        t.to_commit_with(&batch(&[(0, 1), (1, 2), (2, 1)])),
        vec![("t".into(), 0, 3)]
    );
    // The other part finished: one left, the batch's own.
    t.parts("t", 0, 1, 1, false);
    assert_eq!(t.to_commit_with(&all), vec![("t".into(), 0, 3)]);
    // A late report of two left does not undo it.
    t.parts("t", 0, 1, 2, false);
    assert_eq!(t.to_commit_with(&all), vec![("t".into(), 0, 3)]);
    // 2's other part failed: the record will not finish.
    t.parts("t", 0, 2, 1, true);
    assert_eq!(t.to_commit_with(&all), vec![("t".into(), 0, 2)]);
    // A record that ended unfinished is never finishing.
    t.fail("t", 0, 0);
    assert_eq!(t.to_commit_with(&all), vec![("t".into(), 0, 0)]);
}

#[test]
fn a_record_that_ends_unfinished_holds_the_commit_but_is_not_in_flight() {
    let mut t = OffsetTracker::new();
    for o in 0..5 {
        t.track("t", 0, o);
    }
    assert_eq!(t.finish("t", 0, 0), Finish::Done);
    assert_eq!(t.fail("t", 0, 3), Finish::Done);
    assert_eq!(t.give_up("t", 0, 1), Finish::Done);
    assert_eq!(t.in_flight(None), 2, "2 and 4 only");
    assert_eq!(t.first_failure(), Some(("t".into(), 0, 3)));
    for o in [2, 4] {
        t.finish("t", 0, o);
    }
    assert_eq!(t.in_flight(None), 0);
    assert_eq!(t.to_commit(), vec![("t".into(), 0, 1)], "stops at 1");
    assert_eq!(t.states()[0].oldest_unfinished, Some(1));
    assert_eq!(t.window("t", 0), 4, "1 to 4");
    // Resolved once: a later outcome for the same record changes nothing.
    assert_eq!(t.finish("t", 0, 1), Finish::Unknown);
    assert_eq!(t.fail("t", 0, 9), Finish::Unknown);
    assert_eq!(t.give_up("u", 0, 1), Finish::Untracked);
    assert_eq!(t.to_commit(), vec![("t".into(), 0, 1)]);
}

#[test]
fn the_state_shows_the_frontier_and_the_age_of_what_holds_it() {
    let start = Instant::now();
    let mut t = OffsetTracker::new();
    for o in 10..15 {
        t.track_at("t", 2, o, start + Duration::from_secs(o as u64));
    }
    t.finish("t", 2, 10);
    t.finish("t", 2, 12);
    t.committed("t", 2, 11);
    let now = start + Duration::from_secs(30);
    assert_eq!(
        t.states_at(now),
        vec![PartitionState {
            topic: "t".into(),
            partition: 2,
            committed: Some(11),
            committable: Some(11),
            in_flight: 3,
            next: Some(15),
            window: 4,
            oldest_unfinished: Some(11),
            oldest_unfinished_age: Some(Duration::from_secs(19)),
            window_paused: false,
            window_pauses: 0,
        }]
    );
    t.finish("t", 2, 11);
    let s = &t.states_at(now)[0];
    assert_eq!((s.oldest_unfinished, s.window), (Some(13), 2));
    assert_eq!(s.oldest_unfinished_age, Some(Duration::from_secs(17)));
    t.finish("t", 2, 13);
    t.finish("t", 2, 14);
    let s = &t.states_at(now)[0];
    assert_eq!((s.oldest_unfinished, s.oldest_unfinished_age), (None, None));
    assert_eq!((s.committable, s.window), (Some(15), 0));
    let json = serde_json::to_value(&t.states_at(now)[0]).expect("json");
    assert_eq!(json["oldest_unfinished_age_s"], serde_json::Value::Null);
}

#[test]
fn a_full_window_pauses_its_partition_until_it_is_below_three_quarters() {
    let mut t = OffsetTracker::new();
    t.assign(&[("t".into(), 0), ("t".into(), 1)]);
    for o in 0..7 {
        t.track("t", 0, o);
        assert!(!t.pause_if_full("t", 0, 8), "7 records, limit 8");
    }
    t.track("t", 0, 7);
    assert!(t.pause_if_full("t", 0, 8), "8 records: pause");
    assert!(!t.pause_if_full("t", 0, 8), "once");
    assert!(t.is_window_paused("t", 0));
    assert!(!t.is_window_paused("t", 1));
    // Behind offset 0, the others finish: the window stays 8.
    for o in 1..8 {
        t.finish("t", 0, o);
    }
    assert!(t.resumable(8).is_empty());
    t.finish("t", 0, 0);
    assert_eq!(t.resumable(8), vec![("t".to_string(), 0)]);
    assert!(t.resumable(8).is_empty(), "resumed once");
    let s = &t.states()[0];
    assert_eq!((s.window, s.window_paused, s.window_pauses), (0, false, 1));

    // Hysteresis: 6 of 8 is 75%, not below; 5 is.
    for o in 8..16 {
        t.track("t", 0, o);
    }
    assert!(t.pause_if_full("t", 0, 8));
    t.finish("t", 0, 8);
    t.finish("t", 0, 9);
    assert_eq!(t.window("t", 0), 6);
    assert!(t.resumable(8).is_empty(), "at 75%");
    t.finish("t", 0, 10);
    assert_eq!(t.resumable(8).len(), 1, "below 75%");
    assert_eq!(t.states()[0].window_pauses, 2);

    // A revoked partition forgets its pause; a new assignment starts afresh.
    for o in 16..24 {
        t.track("t", 0, o);
    }
    assert!(t.pause_if_full("t", 0, 8));
    t.remove(&[("t".into(), 0)]);
    assert!(t.resumable(8).is_empty());
    t.assign(&[("t".into(), 0)]);
    assert!(!t.is_window_paused("t", 0));
    assert_eq!(t.states()[0].window_pauses, 0);
}

proptest! {
    /// For any order of completions, the commit offset never passes an
    /// unfinished record, and once all are finished it is one past the last.
    #[test]
    fn never_commits_past_an_unfinished_offset(
        offsets in prop::collection::btree_set(0i64..500, 1..100),
        order in prop::collection::vec(any::<prop::sample::Index>(), 0..100),
    ) {
        let offsets: Vec<i64> = offsets.into_iter().collect();
        let mut t = OffsetTracker::new();
        for o in &offsets {
            t.track("t", 3, *o);
        }
        let mut unfinished: Vec<i64> = offsets.clone();
        for idx in order {
            if unfinished.is_empty() { break; }
            let o = unfinished.remove(idx.index(unfinished.len()));
            prop_assert_eq!(t.finish("t", 3, o), Finish::Done);
            let commit = t.states()[0].committable;
            let min_unfinished = unfinished.iter().min().copied();
            match min_unfinished {
                Some(m) => prop_assert_eq!(commit, Some(m), "commit must stop at the first unfinished"),
                None => prop_assert_eq!(commit, Some(offsets[offsets.len() - 1] + 1)),
            }
            if let Some(c) = commit {
                t.committed("t", 3, c);
                prop_assert!(t.to_commit().is_empty(), "nothing new to commit right after a commit");
            }
        }
        prop_assert_eq!(t.in_flight(None), unfinished.len());
    }

    /// A transaction's offsets stop at the first record that is neither
    /// finished nor in the transaction, and never pass one.
    #[test]
    fn transaction_offsets_never_pass_a_record_outside_the_commit(
        offsets in prop::collection::btree_set(0i64..300, 1..60),
        finished in prop::collection::vec(any::<bool>(), 60),
        in_batch in prop::collection::vec(any::<bool>(), 60),
    ) {
        let offsets: Vec<i64> = offsets.into_iter().collect();
        let mut t = OffsetTracker::new();
        let mut batch = BTreeMap::new();
        for (i, o) in offsets.iter().enumerate() {
            t.track("t", 1, *o);
            if in_batch[i] {
                batch.insert(*o, 1);
            }
        }
        for (i, o) in offsets.iter().enumerate() {
            if finished[i] && !in_batch[i] {
                t.finish("t", 1, *o);
            }
        }
        let expected = offsets
            .iter()
            .enumerate()
            .find(|(i, o)| !batch.contains_key(o) && !finished[*i])
            .map(|(_, o)| *o)
            .unwrap_or(offsets[offsets.len() - 1] + 1);
        let mut finishing = BTreeMap::new();
        finishing.insert(("t".to_string(), 1), batch);
        prop_assert_eq!(t.to_commit_with(&finishing), vec![("t".to_string(), 1, expected)]);
    }
}
