//! Errors and panics: one bad item fails alone (to the dead-letter route),
//! the stage keeps running; fatal errors stop the graph and are reported.

use std::time::Duration;

use sluicegate_core::testing::{AckLog, CollectSink, VecSource, run_to_end};
use sluicegate_core::{
    BoxError, DeadLetter, FailureKind, Fatal, Graph, GraphError, Origin, Outcome, Outputs, Source,
    SourceContext, Stage, StageSpec, Transient, map, try_map,
};

const LIMIT: Duration = Duration::from_secs(30);

fn panics_on_3(x: u64) -> u64 {
    if x == 3 {
        panic!("boom on {x}");
    }
    x
}

#[tokio::test]
async fn panic_fails_one_item_and_the_stage_continues() {
    for concurrency in [1, 3] {
        let acks = AckLog::new();
        let sink = CollectSink::new();
        let dlq = CollectSink::<(String, FailureKind, String)>::new();
        let dlq_stage = {
            let dlq = dlq.clone();
            sluicegate_core::sink(move |d: DeadLetter| {
                let dlq = dlq.clone();
                async move {
                    dlq.process(
                        (
                            d.error.stage().to_string(),
                            d.error.kind(),
                            d.error.message().to_string(),
                        ),
                        &Origin::default(),
                    )
                    .await
                    .map(|_| ())
                }
            })
        };
        let mut g = Graph::builder("panics");
        g.dead_letters(StageSpec::new("dlq", dlq_stage));
        g.source("src", VecSource::new((0..10u64).collect(), acks.clone()))
            .via(
                StageSpec::new("fragile", map(panics_on_3))
                    .capacity(4)
                    .concurrency(concurrency),
            )
            .to(StageSpec::new("sink", sink.clone()));
        let metrics = g.metrics();
        let report = run_to_end(g, LIMIT).await;
        assert!(report.is_clean(), "{report:?}");
        let mut got = sink.items();
        got.sort_unstable();
        assert_eq!(
            got,
            vec![0, 1, 2, 4, 5, 6, 7, 8, 9],
            "concurrency {concurrency}"
        );
        let letters = dlq.items();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].0, "fragile");
        assert_eq!(letters[0].1, FailureKind::Panic);
        assert!(
            letters[0].2.contains("boom on 3"),
            "message: {}",
            letters[0].2
        );
        acks.assert_each_once(10);
        assert_eq!(acks.delivered(), 9);
        assert!(
            matches!(acks.outcome(3), Some(Outcome::DeadLettered(e)) if e.kind() == FailureKind::Panic)
        );
        let snap = metrics.snapshot();
        let fragile = snap.stage("fragile").expect("stage");
        assert_eq!(
            (fragile.failed, fragile.panics, fragile.items_out),
            (1, 1, 9)
        );
    }
}

#[tokio::test]
async fn error_without_dead_letter_route_resolves_failed() {
    let acks = AckLog::new();
    let sink = CollectSink::new();
    let mut g = Graph::builder("errors");
    g.source("src", VecSource::new((0..6u64).collect(), acks.clone()))
        .via(StageSpec::new(
            "parse",
            try_map(|x: u64| {
                if x % 2 == 0 {
                    Ok(x)
                } else {
                    Err(format!("odd value {x}"))
                }
            }),
        ))
        .to(StageSpec::new("sink", sink.clone()));
    let report = run_to_end(g, LIMIT).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(sink.items(), vec![0, 2, 4]);
    acks.assert_each_once(6);
    match acks.outcome(3) {
        Some(Outcome::Failed(e)) => {
            assert_eq!(e.stage(), "parse");
            assert_eq!(e.message(), "odd value 3");
            assert!(
                !Outcome::Failed(e.clone()).is_finished(),
                "a failure with nowhere to go is not finished"
            );
        }
        other => panic!("offset 3 resolved as {other:?}"),
    }
}

/// A failing dead-letter sink does not turn failures into successes.
#[tokio::test]
async fn dead_letter_failure_resolves_failed() {
    let acks = AckLog::new();
    let mut g = Graph::builder("dlq-fails");
    g.dead_letters(StageSpec::new(
        "dlq",
        try_map(|_: DeadLetter| Err::<(), _>("dead-letter store down")),
    ));
    g.source("src", VecSource::new(vec![1u64, 2], acks.clone()))
        .via(StageSpec::new(
            "bad",
            try_map(|x: u64| if x == 2 { Err("bad") } else { Ok(x) }),
        ))
        .to(StageSpec::new("sink", CollectSink::new()));
    let report = run_to_end(g, LIMIT).await;
    assert!(report.is_clean(), "{report:?}");
    assert!(acks.outcome(0).is_some_and(|o| o.is_delivered()));
    assert!(matches!(acks.outcome(1), Some(Outcome::Failed(e)) if e.message() == "bad"));
}

struct FatalOn(u64);

impl Stage for FatalOn {
    type In = u64;
    type Out = u64;
    type Error = BoxError;

    async fn process(&self, input: u64, _origin: &Origin) -> Result<Outputs<u64>, BoxError> {
        if input == self.0 {
            Err(Fatal::new("database credentials rejected").into())
        } else {
            Ok(Outputs::one(input))
        }
    }
}

#[tokio::test]
async fn fatal_error_stops_the_graph_and_is_reported() {
    let acks = AckLog::new();
    let mut g = Graph::builder("fatal");
    g.source("src", VecSource::new((0..1_000u64).collect(), acks.clone()))
        .via(StageSpec::new("store", FatalOn(5)).capacity(2))
        .to(StageSpec::new("sink", CollectSink::new()));
    let report = run_to_end(g, LIMIT).await;
    assert_eq!(report.errors.len(), 1, "{report:?}");
    match &report.errors[0] {
        GraphError::Fatal { stage, source } => {
            assert_eq!(stage, "store");
            assert!(
                source.to_string().contains("database credentials rejected"),
                "{source}"
            );
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(matches!(acks.outcome(5), Some(Outcome::Failed(e)) if e.kind() == FailureKind::Fatal));
    // Everything that entered resolved once, and nothing after the fatal item was delivered.
    let outcomes = acks.outcomes();
    assert!(outcomes.values().all(|v| v.len() == 1));
    assert!(
        acks.offsets_where(Outcome::is_delivered)
            .iter()
            .all(|o| *o < 5)
    );
    assert!(
        outcomes.len() < 1_000,
        "the source kept going after a fatal error"
    );
}

struct FailsToStart;

impl Stage for FailsToStart {
    type In = u64;
    type Out = ();
    type Error = std::io::Error;

    async fn start(&self) -> Result<(), std::io::Error> {
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ))
    }

    async fn process(&self, _input: u64, _origin: &Origin) -> Result<Outputs<()>, std::io::Error> {
        Ok(Outputs::one(()))
    }
}

#[tokio::test]
async fn failed_start_names_the_stage() {
    let mut g = Graph::builder("start");
    g.source("src", VecSource::new(vec![1u64], AckLog::new()))
        .to(StageSpec::new("db", FailsToStart));
    match g.build().expect("valid").start().await {
        Err(GraphError::StartFailed { stage, source }) => {
            assert_eq!(stage, "db");
            assert_eq!(source.to_string(), "connection refused");
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("graph started with a failing start hook"),
    }
}

struct BrokenSource;

impl Source for BrokenSource {
    type Out = u64;

    async fn run(self, _cx: SourceContext<u64>) -> Result<(), BoxError> {
        Err("broker unreachable at 127.0.0.1:1".into())
    }
}

#[tokio::test]
async fn source_error_is_fatal_and_reported() {
    let mut g = Graph::builder("src-err");
    g.source("kafka", BrokenSource)
        .to(StageSpec::new("sink", CollectSink::new()));
    let report = run_to_end(g, LIMIT).await;
    assert_eq!(report.errors.len(), 1);
    assert!(
        report.errors[0].to_string().contains("broker unreachable"),
        "{}",
        report.errors[0]
    );
    assert!(report.errors[0].to_string().contains("kafka"));
}

#[test]
fn build_errors_are_clear() {
    let mut g = Graph::builder("bad");
    let _dangling = g
        .source("src", VecSource::new(vec![1u64], AckLog::new()))
        .via(StageSpec::new("a", map(|x: u64| x)));
    let err = g
        .build()
        .err()
        .expect("dangling stream must fail the build");
    assert_eq!(
        err.to_string(),
        "the output of `a` is not connected to anything"
    );

    let mut g = Graph::builder("bad");
    g.source("src", VecSource::new(vec![1u64], AckLog::new()))
        .to(StageSpec::new("sink", CollectSink::new())
            .capacity(2)
            .concurrency(4));
    let err = g
        .build()
        .err()
        .expect("capacity below concurrency must fail");
    assert!(
        err.to_string()
            .contains("capacity 2 is below the concurrency 4"),
        "{err}"
    );

    let mut g = Graph::builder("bad");
    g.source("x", VecSource::new(vec![1u64], AckLog::new()))
        .to(StageSpec::new("x", CollectSink::new()));
    let err = g.build().err().expect("duplicate names must fail");
    assert!(matches!(err, GraphError::DuplicateName { .. }), "{err}");

    let mut g = Graph::builder("bad");
    g.source("src", VecSource::new(vec![1u64], AckLog::new()))
        .to(StageSpec::new("sink", CollectSink::new()).capacity(0));
    let err = g.build().err().expect("zero capacity must fail");
    assert!(err.to_string().contains("no unbounded queues"), "{err}");
}

/// A stage whose error for odd items is transient (by `is_transient`) and
/// for multiples of 4 is not; 6 returns a boxed [`Transient`]; 2 passes.
struct Flaky;

#[derive(Debug, thiserror::Error)]
#[error("flaky on {0}")]
struct FlakyError(u64);

impl Stage for Flaky {
    type In = u64;
    type Out = u64;
    type Error = BoxError;

    async fn process(&self, x: u64, _: &Origin) -> Result<Outputs<u64>, BoxError> {
        match x {
            6 => Err(Box::new(Transient::new(FlakyError(x)))),
            x if x % 2 == 1 || x % 4 == 0 => Err(Box::new(FlakyError(x))),
            x => Ok(Outputs::one(x)),
        }
    }

    fn is_transient(&self, e: &BoxError) -> bool {
        e.downcast_ref::<FlakyError>().is_some_and(|f| f.0 % 2 == 1)
    }
}

/// The same rule as a batch stage, plus a batch of its own that fails as a
/// whole (transiently) when it holds 100.
struct FlakyBatch;

impl sluicegate_core::BatchStage for FlakyBatch {
    type In = u64;
    type Out = u64;
    type Error = BoxError;

    async fn process_batch(
        &self,
        batch: Vec<u64>,
        _: &[&Origin],
    ) -> sluicegate_core::stage::BatchResult<u64, BoxError> {
        if batch.contains(&100) {
            return Err(Box::new(FlakyError(101)));
        }
        Ok(batch
            .into_iter()
            .map(|x| match x {
                6 => Err(Box::new(Transient::new(FlakyError(x))) as BoxError),
                x if x % 2 == 1 || x % 4 == 0 => Err(Box::new(FlakyError(x)) as BoxError),
                x => Ok(Outputs::one(x)),
            })
            .collect())
    }

    fn is_transient(&self, e: &BoxError) -> bool {
        e.downcast_ref::<FlakyError>().is_some_and(|f| f.0 % 2 == 1)
    }
}

/// A failure marked transient by the stage (typed or as a [`Transient`])
/// reaches the dead-letter route saying so, with the stage's own error and
/// message unwrapped; other failures do not.
#[tokio::test]
async fn transient_failures_say_so_at_the_dead_letter_route() {
    for batch in [false, true] {
        let acks = AckLog::new();
        let letters = CollectSink::<(u64, bool, String, bool)>::new();
        let dlq_stage = {
            let letters = letters.clone();
            sluicegate_core::sink(move |d: DeadLetter| {
                let letters = letters.clone();
                async move {
                    let e = &d.error;
                    let n = e
                        .error()
                        .and_then(|s| s.downcast_ref::<FlakyError>())
                        .map_or(u64::MAX, |f| f.0);
                    let item = (
                        n,
                        e.is_transient(),
                        e.message().to_string(),
                        e.kind() == FailureKind::Error,
                    );
                    letters.process(item, &Origin::default()).await.map(|_| ())
                }
            })
        };
        let mut g = Graph::builder("transient");
        g.dead_letters(StageSpec::new("dlq", dlq_stage));
        let items: Vec<u64> = if batch {
            (0..10).chain([100]).collect()
        } else {
            (0..10).collect()
        };
        let src = g.source("src", VecSource::new(items, acks.clone()));
        let sink = CollectSink::new();
        if batch {
            src.via_batch(sluicegate_core::BatchSpec::new(
                "flaky",
                FlakyBatch,
                sluicegate_core::BatchConfig::new(10, Duration::from_millis(10)),
            ))
            .to(StageSpec::new("sink", sink.clone()));
        } else {
            src.via(StageSpec::new("flaky", Flaky))
                .to(StageSpec::new("sink", sink.clone()));
        }
        let report = run_to_end(g, LIMIT).await;
        assert!(report.is_clean(), "{report:?}");
        let mut got = letters.items();
        got.sort_unstable();
        let mut want: Vec<(u64, bool, String, bool)> = [0, 1, 3, 4, 5, 6, 7, 8, 9]
            .into_iter()
            .map(|n| (n, n % 2 == 1 || n == 6, format!("flaky on {n}"), true))
            .collect();
        if batch {
            // The whole batch [100] failed with one transient error.
            want.push((101, true, "flaky on 101".into(), true));
        }
        assert_eq!(got, want, "batch stage: {batch}");
        assert_eq!(sink.items(), vec![2], "only 2 passes");
        acks.assert_each_once(if batch { 11 } else { 10 });
    }
}
