//! The live terminal view: frames rendered from fixed and real snapshots.

use std::time::Duration;

use sluicegate_core::metrics::{HistogramSnapshot, MailboxSnapshot, NodeKind, StageSnapshot};
use sluicegate_core::testing::{AckLog, CollectSink, VecSource, within};
use sluicegate_core::{Graph, Overflow, Snapshot, StageSpec, map};
use sluicegate_runner::view::{render, spawn};
use tokio_util::sync::CancellationToken;

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// A node with `items_in` taken in and its time split in milliseconds.
fn node(name: &str, kind: NodeKind, items_in: u64, split_ms: [u64; 3]) -> StageSnapshot {
    StageSnapshot {
        name: name.to_string(),
        kind,
        concurrency: 1,
        items_in,
        items_out: items_in,
        filtered: 0,
        failed: 0,
        panics: 0,
        abandoned: 0,
        busy_ns: split_ms[0] * MS,
        blocked_ns: split_ms[1] * MS,
        idle_ns: split_ms[2] * MS,
        latency: HistogramSnapshot {
            bounds_us: vec![1],
            counts: vec![0, 0],
            sum_ns: 0,
        },
        first_in_ns: None,
        last_out_ns: None,
    }
}

fn mailbox(stage: &str, from: &str, depth: usize, capacity: usize) -> MailboxSnapshot {
    MailboxSnapshot {
        stage: stage.to_string(),
        from: vec![from.to_string()],
        capacity,
        depth,
        peak_depth: depth,
        max_bytes: None,
        bytes: 0,
        overflow: Overflow::Block,
        accepted: 0,
        dropped: 0,
    }
}

/// numbers → double → sink, `uptime_ns` in, with the items each node took
/// in, each node's busy / blocked / idle milliseconds, and the depths of the
/// two mailboxes (capacity 8 each).
fn pipe(uptime_ns: u64, items: [u64; 3], split_ms: [[u64; 3]; 3], depths: [usize; 2]) -> Snapshot {
    Snapshot {
        graph: "pipe".to_string(),
        uptime_ns,
        stages: vec![
            node("numbers", NodeKind::Source, items[0], split_ms[0]),
            node("double", NodeKind::Stage, items[1], split_ms[1]),
            node("sink", NodeKind::Sink, items[2], split_ms[2]),
        ],
        mailboxes: vec![
            mailbox("double", "numbers", depths[0], 8),
            mailbox("sink", "double", depths[1], 8),
        ],
    }
}

/// Two seconds in: the source and `double` mostly blocked, the sink busy.
fn two_seconds_in(double_depth: usize) -> Snapshot {
    pipe(
        2 * S,
        [2_000, 1_992, 1_980],
        [[100, 1_800, 100], [200, 1_700, 100], [1_900, 0, 100]],
        [double_depth, 4],
    )
}

#[test]
fn renders_every_stage_since_the_start() {
    let frame = render(&two_seconds_in(8), None, 100);
    let expected = "\
pipe  up 0:00:02  since start  bottleneck: sink (busy 95%, blocked 0%)
stage       rec/s  mailbox                   busy  blocked  idle
numbers      1000  -                           5%      90%    5%
double        996  [##########]         8/8   10%      85%    5%
sink          990  [#####.....]         4/8   95%       0%    5%  <- bottleneck
";
    assert_eq!(frame, expected);
}

#[test]
fn rates_and_split_cover_the_period_between_two_snapshots() {
    let before = pipe(
        S,
        [1_000, 1_000, 1_000],
        [[100, 800, 100], [200, 700, 100], [900, 0, 100]],
        [3, 8],
    );
    let now = pipe(
        3 * S,
        [5_000, 4_992, 4_980],
        [[100, 2_800, 100], [200, 2_700, 100], [2_900, 0, 100]],
        [8, 8],
    );
    let expected = "\
pipe  up 0:00:03  window 2.0s  bottleneck: sink (busy 100%, blocked 0%)
stage       rec/s  mailbox                   busy  blocked  idle
numbers      2000  -                           0%     100%    0%
double       1996  [##########]         8/8    0%     100%    0%
sink         1990  [##########]         8/8  100%       0%    0%  <- bottleneck
";
    assert_eq!(render(&now, Some(&before), 100), expected);
}

#[test]
fn a_baseline_not_older_than_now_is_ignored() {
    let now = two_seconds_in(8);
    assert_eq!(
        render(&now, Some(&now), 100),
        render(&now, None, 100),
        "a baseline at the same uptime measures nothing; the frame covers the whole run"
    );
}

#[test]
fn the_bar_is_full_only_when_the_mailbox_is() {
    for (depth, mailbox) in [
        (0, "[..........]         0/8"),
        (1, "[##........]         1/8"),
        (4, "[#####.....]         4/8"),
        (7, "[#########.]         7/8"),
        (8, "[##########]         8/8"),
    ] {
        let frame = render(&two_seconds_in(depth), None, 100);
        let row = frame.lines().nth(3).unwrap_or_default();
        assert_eq!(
            row,
            format!("double        996  {mailbox}   10%      85%    5%"),
            "depth {depth} of 8"
        );
    }
}

#[test]
fn nothing_accounted_shows_dashes_and_no_bottleneck() {
    let idle = pipe(0, [0; 3], [[0; 3]; 3], [0, 0]);
    let expected = "\
pipe  up 0:00:00  since start  bottleneck: none
stage       rec/s  mailbox                   busy  blocked  idle
numbers         -  -                            -        -     -
double          -  [..........]         0/8     -        -     -
sink            -  [..........]         0/8     -        -     -
";
    assert_eq!(render(&idle, None, 100), expected);
}

#[test]
fn rates_are_compact_at_every_scale() {
    let mut now = two_seconds_in(0);
    now.uptime_ns = S;
    for (items, shown) in [
        (3, "3.0"),
        (42, "42"),
        (9_876, "9876"),
        (12_345, "12.3k"),
        (4_560_000, "4.56M"),
    ] {
        now.stages[0].items_in = items;
        let frame = render(&now, None, 100);
        let row = frame.lines().nth(2).unwrap_or_default();
        assert_eq!(
            row,
            format!("numbers  {shown:>8}  -                           5%      90%    5%"),
            "{items} records in one second"
        );
    }
}

#[test]
fn long_names_are_cut_and_rows_fit_the_width() {
    let mut now = two_seconds_in(8);
    now.stages[2].name = "a-sink-with-a-very-long-name-indeed".to_string();
    now.mailboxes[1].stage = now.stages[2].name.clone();
    let frame = render(&now, None, 100);
    let row = frame.lines().nth(4).unwrap_or_default();
    assert_eq!(
        row,
        "a-sink-with-a-very-…       990  [#####.....]         4/8   95%       0%    5%  <- bottleneck"
    );
    for line in frame.lines() {
        assert!(
            line.chars().count() <= 100,
            "wider than 100 columns: {line:?}"
        );
    }

    let narrow = render(&now, None, 40);
    assert_eq!(narrow.lines().count(), 5);
    for line in narrow.lines() {
        assert!(
            line.chars().count() <= 40,
            "wider than 40 columns: {line:?}"
        );
    }
    assert_eq!(
        narrow.lines().nth(4),
        Some("a-sink-with-a-very-…       990  [#####..")
    );
}

#[tokio::test]
async fn renders_the_snapshot_of_a_real_graph() {
    let acks = AckLog::new();
    let sink = CollectSink::new();
    let mut g = Graph::builder("doubler");
    g.source("numbers", VecSource::new((1..=50).collect(), acks.clone()))
        .via(StageSpec::new("double", map(|x: u64| x * 2)).capacity(8))
        .to(StageSpec::new("collect", sink.clone()).capacity(4));
    let graph = g.build().expect("the graph builds");
    let running = within(Duration::from_secs(5), "the graph to start", graph.start())
        .await
        .expect("the graph starts");
    let report = within(
        Duration::from_secs(10),
        "the graph to finish",
        running.wait(),
    )
    .await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(acks.delivered(), 50);

    let frame = render(&report.snapshot, None, 100);
    let lines: Vec<&str> = frame.lines().collect();
    assert_eq!(lines.len(), 5, "{frame}");
    assert!(
        lines[0].starts_with("doubler  up 0:00:00  since start  bottleneck: "),
        "{frame}"
    );
    assert!(lines[2].starts_with("numbers  "), "{frame}");
    assert!(lines[3].starts_with("double   "), "{frame}");
    assert!(lines[4].starts_with("collect  "), "{frame}");
    assert_eq!(
        &lines[2][17..21],
        "  - ",
        "a source has no mailbox: {frame}"
    );
    assert_eq!(&lines[3][19..43], "[..........]         0/8", "{frame}");
    assert_eq!(&lines[4][19..43], "[..........]         0/4", "{frame}");
}

#[tokio::test]
async fn the_refresher_stays_quiet_without_a_terminal() {
    // Under the test harness stderr is captured, not a terminal.
    let g = Graph::builder("quiet");
    let shutdown = CancellationToken::new();
    let view = spawn(
        g.metrics(),
        None,
        Duration::from_millis(10),
        false,
        shutdown.clone(),
    );
    within(
        Duration::from_secs(5),
        "the view to end at once when stderr is not a terminal",
        view,
    )
    .await
    .expect("the view task does not panic");
    assert!(!shutdown.is_cancelled());
}

#[tokio::test]
async fn a_forced_refresher_runs_until_shutdown() {
    let g = Graph::builder("forced");
    let shutdown = CancellationToken::new();
    let view = spawn(
        g.metrics(),
        None,
        Duration::from_millis(10),
        true,
        shutdown.clone(),
    );
    tokio::task::yield_now().await;
    assert!(!view.is_finished(), "a forced view draws until shutdown");
    shutdown.cancel();
    within(Duration::from_secs(5), "the view to end on shutdown", view)
        .await
        .expect("the view task does not panic");
}
