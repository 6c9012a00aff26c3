//! The HTTP status server against a real graph whose sink is held shut, so
//! its mailbox fills: `/health`, `/metrics`, `/status`, and the page in
//! headless Chromium.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sluicegate_core::testing::{AckLog, Gate, GatedSink, VecSource, within};
use sluicegate_core::{Graph, Metrics, RunningGraph, StageSpec, map};
use sluicegate_runner::http::{Phase, StatusBoard, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const CHROMIUM: &str = "/usr/bin/chromium";
const ITEMS: u64 = 100;
const DOUBLE_CAPACITY: usize = 4;
const SINK_CAPACITY: usize = 8;
const STAGES: [&str; 3] = ["numbers", "double", "sink"];

/// numbers (0..100) → double (capacity 4) → sink (capacity 8) behind a
/// closed gate.
struct Held {
    running: RunningGraph,
    metrics: Arc<Metrics>,
    gate: Gate,
    sink: GatedSink<u64>,
    acks: AckLog,
}

async fn start_held() -> Held {
    let acks = AckLog::new();
    let gate = Gate::new();
    let sink = GatedSink::new(gate.clone());
    let mut g = Graph::builder("held");
    g.source(
        "numbers",
        VecSource::new((0..ITEMS).collect(), acks.clone()),
    )
    .via(StageSpec::new("double", map(|x: u64| x * 2)).capacity(DOUBLE_CAPACITY))
    .to(StageSpec::new("sink", sink.clone()).capacity(SINK_CAPACITY));
    let graph = g.build().expect("the graph builds");
    let metrics = graph.metrics().clone();
    let running = within(Duration::from_secs(5), "the graph to start", graph.start())
        .await
        .expect("the graph starts");
    Held {
        running,
        metrics,
        gate,
        sink,
        acks,
    }
}

impl Held {
    /// Waits until both mailboxes are full (the source is blocked behind
    /// them) with one record held at the gate.
    async fn wait_until_full(&self) {
        within(
            Duration::from_secs(10),
            "the mailboxes of double and sink to fill",
            async {
                self.gate.wait_for_waiting(1).await;
                // Metrics have no change notification: poll, yielding to the
                // graph between reads (no timer, so a paused clock stays put).
                loop {
                    tokio::task::yield_now().await;
                    let s = self.metrics.snapshot();
                    let full =
                        |stage: &str| s.mailbox(stage).is_some_and(|m| m.depth == m.capacity);
                    if full("double") && full("sink") {
                        return;
                    }
                }
            },
        )
        .await;
    }

    /// Opens the gate and lets the graph finish; checks every record arrived.
    async fn finish(self) {
        self.gate.open_all();
        let report = within(
            Duration::from_secs(10),
            "the graph to finish once the gate opened",
            self.running.wait(),
        )
        .await;
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(self.sink.collected().len() as u64, ITEMS);
        self.acks.assert_each_once(ITEMS as i64);
        assert_eq!(self.acks.delivered() as u64, ITEMS);
    }
}

/// A response: status code, headers (names in lower case), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// The status server on a free loopback port, for one test.
struct Served {
    addr: SocketAddr,
    shutdown: CancellationToken,
    server: sluicegate_runner::http::HttpServer,
}

impl Served {
    async fn start(board: &StatusBoard) -> Served {
        let shutdown = CancellationToken::new();
        let server = serve(
            "127.0.0.1:0".parse().expect("an address"),
            board.clone(),
            shutdown.clone(),
        )
        .await
        .expect("the server binds a free port");
        Served {
            addr: server.local_addr(),
            shutdown,
            server,
        }
    }

    /// Stops it, within 5 s.
    async fn stop(self) {
        self.shutdown.cancel();
        within(
            Duration::from_secs(5),
            "the HTTP server to stop",
            self.server.stopped(),
        )
        .await;
    }
}

/// A minimal HTTP/1.1 GET (one request per connection).
async fn get(addr: SocketAddr, path: &str) -> Reply {
    within(Duration::from_secs(10), &format!("GET {path}"), async {
        let mut stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("sending the request");
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .await
            .expect("reading the response");
        parse(&raw)
    })
    .await
}

fn parse(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16)
            .unwrap_or_else(|e| panic!("bad chunk size {size:?}: {e}"));
        if size == 0 {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    body
}

/// The `<g ...>` start tags of `dom` that carry `attr` (e.g. `data-stage="x"`).
fn tags_with<'a>(dom: &'a str, attr: &str) -> Vec<&'a str> {
    dom.match_indices("<g ")
        .filter_map(|(i, _)| dom[i..].find('>').map(|end| &dom[i..i + end + 1]))
        .filter(|tag| tag.contains(attr))
        .collect()
}

fn has_class(tag: &str, class: &str) -> bool {
    tag.split("class=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .is_some_and(|classes| classes.split_whitespace().any(|c| c == class))
}

/// Runs headless Chromium on `url` and returns the DOM after the page ran
/// for five seconds of virtual time.
///
/// # Panics
///
/// When Chromium is missing (scripts/browser-up installs it; the test
/// command runs that), or it fails or hangs.
async fn dump_dom(url: &str) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/browser-up (the test command does)"
    );
    let profile = tempfile::tempdir().expect("a temporary Chromium profile");
    let mut cmd = tokio::process::Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(["--virtual-time-budget=5000", "--dump-dom", url])
    .kill_on_drop(true);
    let out = within(
        Duration::from_secs(90),
        "headless Chromium to dump the status page",
        cmd.output(),
    )
    .await
    .unwrap_or_else(|e| panic!("running {CHROMIUM}: {e}"));
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "chromium exited with {}: {}\n{dom}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_server_reports_a_full_mailbox_to_http_and_the_page() {
    let held = start_held().await;
    held.wait_until_full().await;

    let board = StatusBoard::new(held.metrics.clone());
    board.set_phase(Phase::Running);
    board.set_extra(|| json!({ "answer": 42 }));
    let server = Served::start(&board).await;
    let addr = server.addr;
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");

    // /health
    let health = get(addr, "/health").await;
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.json()["phase"], "running");

    // /metrics
    let metrics = get(addr, "/metrics").await;
    assert_eq!(metrics.status, 200);
    let content_type = metrics.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    for stage in STAGES {
        let line = format!("sluicegate_stage_items_in_total{{graph=\"held\",stage=\"{stage}\"}} ");
        assert!(
            metrics.body.contains(&line),
            "no {line:?} in\n{}",
            metrics.body
        );
    }
    for line in [
        format!("sluicegate_mailbox_depth{{graph=\"held\",stage=\"sink\"}} {SINK_CAPACITY}\n"),
        format!("sluicegate_mailbox_capacity{{graph=\"held\",stage=\"sink\"}} {SINK_CAPACITY}\n"),
        format!("sluicegate_mailbox_depth{{graph=\"held\",stage=\"double\"}} {DOUBLE_CAPACITY}\n"),
        "sluicegate_phase{graph=\"held\",phase=\"running\"} 1\n".to_string(),
        "sluicegate_phase{graph=\"held\",phase=\"failed\"} 0\n".to_string(),
    ] {
        assert!(
            metrics.body.contains(&line),
            "no {line:?} in\n{}",
            metrics.body
        );
    }

    // /status
    let status = get(addr, "/status").await;
    assert_eq!(status.status, 200);
    let st = status.json();
    assert_eq!(st["graph"], "held");
    assert_eq!(st["phase"], "running");
    assert_eq!(st["error"], Value::Null);
    assert_eq!(st["extra"], json!({ "answer": 42 }));
    assert!(st["uptime_s"].as_f64().is_some_and(|u| u > 0.0), "{st}");
    assert!(st["window_s"].as_f64().is_some_and(|w| w > 0.0), "{st}");
    let names: Vec<&str> = st["snapshot"]["stages"]
        .as_array()
        .expect("snapshot.stages")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, STAGES);
    for stage in STAGES {
        assert!(st["rates"][stage].is_number(), "no rate for {stage}: {st}");
        for part in ["busy", "blocked", "idle"] {
            assert!(
                st["split"][stage][part].is_number(),
                "no {part} for {stage}: {st}"
            );
        }
    }
    let mailbox = |stage: &str| {
        st["snapshot"]["mailboxes"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["stage"] == stage))
            .unwrap_or_else(|| panic!("no mailbox for {stage}: {st}"))
            .clone()
    };
    let sink = mailbox("sink");
    assert_eq!(sink["depth"], SINK_CAPACITY);
    assert_eq!(sink["capacity"], SINK_CAPACITY);
    assert_eq!(sink["from"], json!(["double"]));
    assert_eq!(mailbox("double")["depth"], DOUBLE_CAPACITY);

    // The page, served and drawn.
    let page = get(addr, "/").await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{:?}",
        page.headers
    );
    let dom = dump_dom(&format!("http://{addr}/")).await;
    let app = dom
        .find("<div id=\"app\"")
        .and_then(|i| dom[i..].find('>').map(|end| &dom[i..i + end + 1]))
        .unwrap_or_else(|| panic!("no #app element:\n{dom}"));
    assert!(
        app.contains("data-ready=\"1\""),
        "the page never drew a status: {app}\n{dom}"
    );
    assert!(app.contains("data-phase=\"running\""), "{app}");
    for stage in STAGES {
        let nodes = tags_with(&dom, &format!("data-stage=\"{stage}\""));
        assert_eq!(nodes.len(), 1, "one node for {stage}:\n{dom}");
        assert!(has_class(nodes[0], "node"), "{}", nodes[0]);
    }
    let sink_mailbox = tags_with(&dom, "data-mailbox=\"sink\"");
    assert_eq!(
        sink_mailbox.len(),
        2,
        "an edge and a mailbox for sink:\n{dom}"
    );
    for tag in sink_mailbox {
        assert!(has_class(tag, "full"), "not marked full: {tag}");
        assert!(tag.contains("data-fill=\"1\""), "not at fill 1: {tag}");
    }
    let edges = tags_with(&dom, "data-from=\"numbers\"");
    assert_eq!(edges.len(), 1, "one edge from numbers:\n{dom}");
    assert!(edges[0].contains("data-to=\"double\""), "{}", edges[0]);
    assert!(has_class(edges[0], "full"), "{}", edges[0]);
    assert!(
        tags_with(&dom, "data-mailbox=\"numbers\"").is_empty(),
        "a source has no mailbox:\n{dom}"
    );

    held.finish().await;

    // Once the graph stopped, /health says so.
    board.set_phase(Phase::Stopped);
    let health = get(addr, "/health").await;
    assert_eq!(health.status, 503, "{}", health.body);
    assert_eq!(health.json()["phase"], "stopped");
    let st = get(addr, "/status").await.json();
    assert_eq!(
        st["snapshot"]["stages"][2]["items_in"], ITEMS,
        "the sink took in every record: {st}"
    );

    server.stop().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "{addr} still accepts connections after shutdown"
    );
}

#[tokio::test]
async fn health_is_503_with_the_error_once_failed() {
    let board = StatusBoard::new(Graph::builder("idle").metrics());
    let server = Served::start(&board).await;
    let addr = server.addr;

    for (phase, code) in [
        (Phase::Starting, 200),
        (Phase::Running, 200),
        (Phase::Draining, 200),
        (Phase::Stopped, 503),
        (Phase::Failed("store: connection refused".into()), 503),
    ] {
        board.set_phase(phase.clone());
        assert_eq!(board.phase(), phase);
        let health = get(addr, "/health").await;
        assert_eq!(health.status, code, "{phase}: {}", health.body);
        assert_eq!(health.json()["phase"], phase.name());
    }
    let body = get(addr, "/health").await.json();
    assert_eq!(
        body,
        json!({ "status": "unavailable", "phase": "failed", "error": "store: connection refused" })
    );
    let st = get(addr, "/status").await.json();
    assert_eq!(st["phase"], "failed");
    assert_eq!(st["error"], "store: connection refused");
    assert_eq!(st["bottleneck"], Value::Null);
    assert_eq!(st["extra"], Value::Null);
    assert_eq!(st["kafka"], Value::Null, "no Kafka source, no frontier");
    let metrics = get(addr, "/metrics").await.body;
    assert!(!metrics.contains("sluicegate_kafka_"), "{metrics}");
    assert!(
        metrics.contains("sluicegate_phase{graph=\"idle\",phase=\"failed\"} 1\n"),
        "{metrics}"
    );
    assert_eq!(get(addr, "/nowhere").await.status, 404);

    server.stop().await;
}

#[tokio::test]
async fn serve_names_the_address_when_it_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = taken.local_addr().expect("its address");
    let board = StatusBoard::new(Graph::builder("idle").metrics());
    let err = serve(addr, board, CancellationToken::new())
        .await
        .expect_err("the address is taken");
    let message = format!("{err:#}");
    assert!(
        message.contains(&addr.to_string()) && message.contains("--http"),
        "{message}"
    );
}

/// Rates and the split cover the period since the newest sample at least a
/// second old (time is paused, so the window is exact).
#[tokio::test(start_paused = true)]
async fn status_measures_over_a_recent_window() {
    let held = start_held().await;
    held.wait_until_full().await;
    let board = StatusBoard::new(held.metrics.clone());

    // No baseline yet: the figures cover the whole run.
    let first = board.status();
    assert_eq!(first["window_s"], first["uptime_s"], "{first}");

    // A stalled graph moves nothing in the window.
    tokio::time::advance(Duration::from_millis(1_200)).await;
    let stalled = board.status();
    assert_eq!(stalled["window_s"], 1.2, "{stalled}");
    for stage in STAGES {
        assert_eq!(stalled["rates"][stage], 0.0, "{stage}: {stalled}");
    }

    // Ten records through the gate, measured over the next second.
    held.gate.open(10);
    within(
        Duration::from_secs(10),
        "ten records to pass the gate",
        held.sink.collected().wait_for(10),
    )
    .await;
    held.wait_until_full().await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let moved = board.status();
    assert_eq!(moved["window_s"], 1.0, "{moved}");
    let taken_in = |st: &Value, i: usize| {
        st["snapshot"]["stages"][i]["items_in"]
            .as_u64()
            .expect("items_in")
    };
    for (i, stage) in STAGES.iter().enumerate() {
        let expected = (taken_in(&moved, i) - taken_in(&stalled, i)) as f64;
        assert_eq!(moved["rates"][*stage], expected, "{stage}: {moved}");
    }
    let delivered = |st: &Value| {
        st["snapshot"]["stages"][2]["items_out"]
            .as_u64()
            .expect("items_out")
    };
    assert_eq!(
        delivered(&moved) - delivered(&stalled),
        10,
        "the sink delivered the ten records let through in the window: {moved}"
    );

    held.finish().await;
}

/// A stage that holds one record (partition 0, offset [`HELD_AT`]) until
/// its gate opens and passes every other at once.
struct HoldOne {
    gate: Arc<tokio::sync::Semaphore>,
}

const HELD_AT: i64 = 3;

impl sluicegate_core::Stage for HoldOne {
    type In = bytes::Bytes;
    type Out = ();
    type Error = String;

    async fn process(
        &self,
        _payload: bytes::Bytes,
        origin: &sluicegate_core::Origin,
    ) -> Result<sluicegate_core::Outputs<()>, String> {
        if (origin.partition, origin.offset) == (Some(0), Some(HELD_AT)) {
            self.gate
                .acquire()
                .await
                .map_err(|e| e.to_string())?
                .forget();
        }
        Ok(sluicegate_core::Outputs::one(()))
    }
}

/// The text of the cell `col` in the row of `partition` of the page's
/// partition table.
fn cell(dom: &str, partition: i32, col: &str) -> String {
    let row_start = dom
        .find(&format!(
            "data-topic=\"orders\" data-partition=\"{partition}\""
        ))
        .unwrap_or_else(|| panic!("no row for orders/{partition}:\n{dom}"));
    let row = &dom[row_start..];
    let row = &row[..row.find("</tr>").unwrap_or(row.len())];
    let at = row
        .find(&format!("data-col=\"{col}\""))
        .unwrap_or_else(|| panic!("no {col} cell in {row}"));
    let open = &row[at..];
    let text = &open[open.find('>').map_or(0, |i| i + 1)..];
    let text = &text[..text.find("</td>").unwrap_or(text.len())];
    // The text before a chart, without the markup around it (bars, spans).
    let text = &text[..text.find("<svg").unwrap_or(text.len())];
    let mut out = String::new();
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}

/// A Kafka source on librdkafka's mock cluster, two partitions of 40
/// records, record 3 of partition 0 held, a window limit of 20 (well above
/// the 7 records the graph holds): partition 0 is held back at offset 3 and
/// paused by its window after offset 22; partition 1 is committed to its
/// end. `/metrics`, `/status` and the page
/// show exactly that, and the page draws each partition's lag and commit
/// rate as charts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commit_frontier_on_metrics_status_and_the_page() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use sluicegate_kafka_io::{KafkaConfig, KafkaSource};
    use sluicegate_runner::frontier::Frontier;

    const RECORDS: i64 = 40;
    const LIMIT: usize = 20;
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("a mock cluster");
    cluster.create_topic("orders", 2, 1).expect("a topic");
    let brokers = cluster.bootstrap_servers();
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("a producer");
    for partition in 0..2 {
        for i in 0..RECORDS {
            let payload = i.to_string();
            producer
                .send(
                    BaseRecord::<(), String>::to("orders")
                        .payload(&payload)
                        .partition(partition),
                )
                .map_err(|(e, _)| e)
                .expect("enqueued");
        }
    }
    producer
        .flush(Duration::from_secs(10))
        .expect("every record delivered");

    let source = KafkaSource::new(KafkaConfig::new(&brokers), "frontier-page", ["orders"])
        .commit_interval(Duration::from_millis(20))
        .lag_interval(Duration::from_millis(50))
        .window_limit(LIMIT);
    let frontier = Frontier::with_history([source.handle()], Duration::from_millis(100), 60);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let mut g = Graph::builder("frontier");
    g.source("kafka", source)
        .to(StageSpec::new("hold", HoldOne { gate: gate.clone() })
            .capacity(4)
            .concurrency(2));
    let graph = g.build().expect("the graph builds");
    let board = StatusBoard::new(graph.metrics().clone());
    board.set_frontier(frontier.clone());
    board.set_phase(Phase::Running);
    let running = within(Duration::from_secs(5), "the graph to start", graph.start())
        .await
        .expect("the graph starts");
    let server = Served::start(&board).await;
    let addr = server.addr;

    // Wait (real time: the consumer runs on its own thread) until the
    // frontier has settled: partition 0 at the held record, paused by its
    // window, partition 1 committed, both high watermarks read, and a few
    // points of history.
    within(
        Duration::from_secs(60),
        "partition 0 held back at offset 3 and partition 1 committed",
        async {
            loop {
                let parts = frontier.partitions();
                let settled = parts.len() == 2
                    && parts[0].state.committed == Some(HELD_AT)
                    && parts[0].state.window_paused
                    && parts[0].lag.is_some()
                    && parts[1].state.committed == Some(RECORDS)
                    && parts[1].lag == Some(0);
                let points = frontier.status()["partitions"][0]["trend"]["t"]
                    .as_array()
                    .map_or(0, Vec::len);
                if settled && points >= 3 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await;

    // /metrics: the exact frontier.
    let metrics = get(addr, "/metrics").await.body;
    let p0 = "graph=\"frontier\",topic=\"orders\",partition=\"0\"";
    let p1 = "graph=\"frontier\",topic=\"orders\",partition=\"1\"";
    // Partition 0's window filled at LIMIT records from its oldest
    // unfinished one, which was one of the records before the held one
    // when the source handed them out in one burst before any finished
    // (fetched at LIMIT), or the held one when they had finished in time
    // (fetched at HELD_AT + LIMIT). Either way the window then stays above
    // 75% of its limit, so the partition is not resumed: the offset stays.
    let fetched: i64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "sluicegate_kafka_partition_fetched_offset{{{p0}}} "
            ))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no fetched offset of partition 0 in\n{metrics}"));
    assert!(
        (LIMIT as i64..=HELD_AT + LIMIT as i64).contains(&fetched),
        "partition 0 fetched to {fetched}"
    );
    let held_window = fetched - HELD_AT;
    // Partition 1's 40 records may come in a burst too, handed out before
    // any finished: its window of 20 then pauses it until they finish.
    let p1_window_pauses: i64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "sluicegate_kafka_partition_window_pauses_total{{{p1}}} "
            ))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no window pauses of partition 1 in\n{metrics}"));
    let window_pauses = 1 + p1_window_pauses;
    for line in [
        format!("sluicegate_kafka_partition_committed_offset{{{p0}}} {HELD_AT}"),
        format!("sluicegate_kafka_partition_finished_offset{{{p0}}} {HELD_AT}"),
        format!("sluicegate_kafka_partition_oldest_unfinished_offset{{{p0}}} {HELD_AT}"),
        format!("sluicegate_kafka_partition_window_records{{{p0}}} {held_window}"),
        format!("sluicegate_kafka_partition_window_limit{{{p0}}} {LIMIT}"),
        format!("sluicegate_kafka_partition_in_flight{{{p0}}} 1"),
        format!("sluicegate_kafka_partition_high_watermark{{{p0}}} {RECORDS}"),
        format!(
            "sluicegate_kafka_partition_lag{{{p0}}} {}",
            RECORDS - HELD_AT
        ),
        format!("sluicegate_kafka_partition_paused{{{p0},reason=\"window\"}} 1"),
        format!("sluicegate_kafka_partition_paused{{{p0},reason=\"graph_full\"}} 0"),
        format!("sluicegate_kafka_partition_window_pauses_total{{{p0}}} 1"),
        format!(
            "sluicegate_kafka_pauses_total{{graph=\"frontier\",reason=\"window\"}} {window_pauses}"
        ),
        format!("sluicegate_kafka_partition_committed_offset{{{p1}}} {RECORDS}"),
        format!("sluicegate_kafka_partition_fetched_offset{{{p1}}} {RECORDS}"),
        format!("sluicegate_kafka_partition_lag{{{p1}}} 0"),
        format!("sluicegate_kafka_partition_window_records{{{p1}}} 0"),
        format!("sluicegate_kafka_partition_oldest_unfinished_age_seconds{{{p1}}} 0"),
        format!("sluicegate_kafka_partition_paused{{{p1},reason=\"window\"}} 0"),
        "sluicegate_kafka_assignments_total{graph=\"frontier\"} 1".to_string(),
        "sluicegate_kafka_revocations_total{graph=\"frontier\"} 0".to_string(),
        format!(
            "sluicegate_kafka_records_total{{graph=\"frontier\"}} {}",
            RECORDS + fetched
        ),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no line {line:?} in\n{metrics}"
        );
    }
    let age: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "sluicegate_kafka_partition_oldest_unfinished_age_seconds{{{p0}}} "
            ))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no age for partition 0 in\n{metrics}"));
    assert!(age > 0.0, "the held record has an age: {age}");
    assert!(
        !metrics.contains(&format!(
            "sluicegate_kafka_partition_oldest_unfinished_offset{{{p1}}}"
        )),
        "nothing unfinished on partition 1"
    );

    // /status: the same, as JSON.
    let st = get(addr, "/status").await.json();
    let parts = &st["kafka"]["partitions"];
    assert_eq!(parts[0]["topic"], "orders");
    assert_eq!(parts[0]["partition"], 0);
    assert_eq!(parts[0]["committed"], HELD_AT);
    assert_eq!(parts[0]["oldest_unfinished"], HELD_AT);
    assert!(
        parts[0]["oldest_unfinished_age_s"]
            .as_f64()
            .is_some_and(|a| a > 0.0)
    );
    assert_eq!(parts[0]["paused"], "window");
    assert_eq!(parts[0]["window"], held_window);
    assert_eq!(parts[1]["committed"], RECORDS);
    assert_eq!(parts[1]["oldest_unfinished"], Value::Null);
    assert_eq!(parts[1]["paused"], Value::Null);
    assert!(
        parts[0]["trend"]["lag"]
            .as_array()
            .is_some_and(|l| l.len() >= 3),
        "{st}"
    );
    assert_eq!(st["kafka"]["counters"]["window_pauses"], window_pauses);

    // The page: a row per partition with those values, and the charts.
    let dom = dump_dom(&format!("http://{addr}/")).await;
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page never drew:\n{dom}"
    );
    assert_eq!(
        dom.matches("data-topic=\"orders\" data-partition=").count(),
        2,
        "two partition rows:\n{dom}"
    );
    for (col, text) in [
        ("partition", "orders/0".to_string()),
        ("fetched", fetched.to_string()),
        ("finished", HELD_AT.to_string()),
        ("committed", HELD_AT.to_string()),
        ("lag", (RECORDS - HELD_AT).to_string()),
        ("oldest", HELD_AT.to_string()),
        ("window", format!("{held_window}/{LIMIT}")),
        ("in_flight", "1".to_string()),
        ("paused", "window".to_string()),
    ] {
        assert_eq!(cell(&dom, 0, col), text, "partition 0, {col}");
    }
    assert_ne!(cell(&dom, 0, "age"), "-", "the held record's age");
    for (col, text) in [
        ("committed", RECORDS.to_string()),
        ("lag", "0".to_string()),
        ("oldest", "-".to_string()),
        ("age", "-".to_string()),
        ("window", format!("0/{LIMIT}")),
        ("paused", "-".to_string()),
    ] {
        assert_eq!(cell(&dom, 1, col), text, "partition 1, {col}");
    }
    let row0 = tags_with_tr(&dom, "data-partition=\"0\"");
    assert!(
        row0.contains("class=\"partition paused\"") && row0.contains("data-paused=\"window\""),
        "{row0}"
    );
    for series in ["lag", "rate"] {
        let charts = dom
            .matches(&format!("class=\"sparkline\" data-series=\"{series}\""))
            .count();
        assert_eq!(charts, 2, "a {series} chart per partition:\n{dom}");
    }
    assert!(
        dom.contains("<polyline points="),
        "the charts draw lines through several points:\n{dom}"
    );

    // Released: everything commits.
    gate.add_permits(1);
    within(Duration::from_secs(60), "every record committed", async {
        while frontier
            .partitions()
            .iter()
            .any(|p| p.state.committed != Some(RECORDS))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let metrics = get(addr, "/metrics").await.body;
    assert!(
        metrics.contains(&format!(
            "sluicegate_kafka_partition_paused{{{p0},reason=\"window\"}} 0\n"
        )),
        "{metrics}"
    );
    let report = within(
        Duration::from_secs(30),
        "the graph to drain",
        running.shutdown(Duration::from_secs(20)),
    )
    .await;
    assert!(report.is_clean(), "{report:?}");
    server.stop().await;
}

/// The `<tr ...>` start tag that carries `attr`.
fn tags_with_tr<'a>(dom: &'a str, attr: &str) -> &'a str {
    dom.match_indices("<tr ")
        .filter_map(|(i, _)| dom[i..].find('>').map(|end| &dom[i..i + end + 1]))
        .find(|tag| tag.contains(attr))
        .unwrap_or_else(|| panic!("no <tr> with {attr}:\n{dom}"))
}
