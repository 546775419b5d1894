//! The real execution exporter against a misbehaving node.
//!
//! Each test starts a [`FakeNode`](ethwatch_testkit::FakeNode) and the exporter (`ethwatch_execution::start`, 200 ms
//! polls, 500 ms request timeout, 1 MiB body cap) on loopback ports, lets it learn good values,
//! switches the node to one bad behaviour and checks, only by scraping `/metrics` and `/readyz`
//! over HTTP, that:
//! - the failure is counted in `eth_el_rpc_errors_total` under the right `kind`;
//! - `eth_el_up` drops to 0 when the node gave no usable JSON-RPC answer;
//! - the last good values are still served and their staleness is visible
//!   (`ethwatch_collector_success` 0, `ethwatch_collector_last_success_timestamp_seconds` frozen);
//! - `/metrics` keeps answering fast (it never waits for the node) and `/readyz` turns 503 once
//!   the node has not answered for the readiness window;
//! - the problem is logged once, not once per poll;
//! - the process's memory stays bounded (huge and endless bodies);
//! - everything recovers when the node behaves again, and the exporter shuts down cleanly.
//!
//! Waits are bounded polling loops, never fixed sleeps on the happy path.
//!
//! (Over 600 lines: one scenario every bad behaviour goes through, with what each must look
//! like from outside, plus the scenarios of their own; the fake node is the test kit's.)

use ethwatch_testkit::jsonrpc as support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ethwatch_core::exposition::{self, Sample};
use ethwatch_execution::Running;
use ethwatch_testkit::mem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{CHAIN_ID, FakeNode, Mode, PEERS, Style, TXPOOL};

/// The exporter's readiness window: `max(poll interval x ready intervals, 2 s)`.
const READY_WINDOW: Duration = Duration::from_secs(2);
/// Upper bound for any single wait on the exporter.
const PATIENCE: Duration = Duration::from_secs(8);
/// A scrape slower than this fails the test outright (the node is never called by a scrape).
const SCRAPE_LIMIT: Duration = Duration::from_secs(1);

// Log capture (one global subscriber); tests find their lines by the fake node's address or
// method.
use ethwatch_testkit::logs::{capture as capture_logs, matching as log_lines};

// ---------------------------------------------------------------------------------------------
// The exporter under test and its HTTP endpoints.

struct Exporter {
    addr: SocketAddr,
    inner: ethwatch_testkit::Exporter<Running>,
}

impl Exporter {
    async fn start(node: &FakeNode, extra: &[&str]) -> Exporter {
        capture_logs();
        let url = node.url();
        let mut argv = vec![
            "--rpc-url",
            &url,
            "--poll-interval",
            "200ms",
            "--rpc-timeout",
            "500ms",
            "--rpc-max-body-bytes",
            "1048576",
            "--ready-intervals",
            "3",
        ];
        argv.extend_from_slice(extra);
        let inner = ethwatch_testkit::execution(&argv).await;
        Exporter {
            addr: inner.addr,
            inner,
        }
    }

    async fn get(&self, path: &str) -> (u16, String, Duration) {
        let start = Instant::now();
        let fut = async {
            let mut s = TcpStream::connect(self.addr)
                .await
                .expect("connect to the exporter");
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                self.addr
            );
            s.write_all(req.as_bytes()).await.expect("send request");
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await.expect("read answer");
            buf
        };
        let buf = tokio::time::timeout(SCRAPE_LIMIT, fut)
            .await
            .unwrap_or_else(|_| panic!("GET {path} took longer than {SCRAPE_LIMIT:?}"));
        let took = start.elapsed();
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        (status, body.to_string(), took)
    }

    async fn scrape(&self) -> Scrape {
        let (status, body, took) = self.get("/metrics").await;
        assert_eq!(status, 200, "/metrics answered {status}: {body}");
        Scrape {
            samples: exposition::parse(&body),
            text: body,
            took,
        }
    }

    async fn readyz(&self) -> u16 {
        self.get("/readyz").await.0
    }

    /// Scrapes until `ok` holds; fails after `within` with the last scrape.
    async fn wait_metrics(
        &self,
        what: &str,
        within: Duration,
        ok: impl Fn(&Scrape) -> bool,
    ) -> Scrape {
        let deadline = Instant::now() + within;
        loop {
            let s = self.scrape().await;
            if ok(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {within:?} waiting until {what}; last scrape:\n{}",
                    s.ours()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_ready(&self, want: u16, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.readyz().await == want {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "/readyz did not answer {want} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Cancels and waits for every task to drain.
    async fn stop(self) {
        self.inner.drain().await;
    }
}

/// One `/metrics` answer.
struct Scrape {
    text: String,
    samples: Vec<Sample>,
    took: Duration,
}

impl Scrape {
    /// The value of the series `name` whose labels include `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        exposition::value(&self.samples, name, labels)
    }

    fn has(&self, name: &str) -> bool {
        self.get(name, &[]).is_some()
    }

    fn up(&self) -> Option<f64> {
        self.get("eth_el_up", &[])
    }

    fn head(&self) -> Option<f64> {
        self.get("eth_el_head_block_number", &[])
    }

    fn success(&self, collector: &str) -> Option<f64> {
        self.get("ethwatch_collector_success", &[("collector", collector)])
    }

    fn last_success(&self, collector: &str) -> Option<f64> {
        self.get(
            "ethwatch_collector_last_success_timestamp_seconds",
            &[("collector", collector)],
        )
    }

    fn errors(&self, method: &str, kind: &str) -> f64 {
        self.get(
            "eth_el_rpc_errors_total",
            &[("method", method), ("kind", kind)],
        )
        .unwrap_or(0.0)
    }

    /// Requests counted under `method` (`batch` for a request of several calls).
    fn requests(&self, method: &str) -> f64 {
        self.get("eth_el_rpc_requests_total", &[("method", method)])
            .unwrap_or(0.0)
    }

    /// Calls of `method` so far (latency observations, failed ones included).
    fn calls(&self, method: &str) -> f64 {
        self.get(
            "eth_el_rpc_request_duration_seconds_count",
            &[("method", method)],
        )
        .unwrap_or(0.0)
    }

    /// Polls so far: every poll's batch has one `eth_syncing`.
    fn polls(&self) -> f64 {
        self.calls("eth_syncing")
    }

    /// The lines worth showing in a failure message.
    fn ours(&self) -> String {
        self.text
            .lines()
            .filter(|l| {
                !l.starts_with('#')
                    && (l.starts_with("eth_el_") || l.starts_with("ethwatch_collector_success"))
                    && !l.contains("_bucket")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Resident set size and its high-water mark of this process, in bytes.
fn memory() -> (u64, u64) {
    (mem::rss_kib() * 1024, mem::hwm_kib() * 1024)
}

const MIB: f64 = 1024.0 * 1024.0;

// ---------------------------------------------------------------------------------------------
// The scenario every bad behaviour goes through.

/// What a bad behaviour should look like from the outside.
struct Expect {
    mode: Mode,
    /// The `kind` label the failure is counted under.
    kind: &'static str,
    /// The node gave no usable JSON-RPC answer: `eth_el_up` 0 and `/readyz` 503. When false the
    /// node answered the batch but a value in it is bad: only the collectors fail.
    node_down: bool,
    /// Measure the process's memory around the bad phase.
    measure_memory: bool,
}

async fn misbehave(e: Expect) {
    let node = FakeNode::start(100).await;
    let exp = Exporter::start(&node, &[]).await;
    let here = node.authority();

    // Healthy: the exporter learns the head, chain id and the rest, and follows new blocks.
    exp.wait_metrics("the first good poll", PATIENCE, |s| {
        s.up() == Some(1.0)
            && s.head() == Some(100.0)
            && s.get("eth_el_chain_id", &[]) == Some(CHAIN_ID as f64)
    })
    .await;
    node.mine(3);
    let good = exp
        .wait_metrics("the exporter follows new blocks", PATIENCE, |s| {
            s.head() == Some(103.0)
                && s.success("head") == Some(1.0)
                && s.get("eth_el_peers", &[]) == Some(PEERS as f64)
        })
        .await;
    exp.wait_ready(200, PATIENCE).await;
    let blocks_before = good
        .get("eth_el_blocks_total", &[])
        .expect("eth_el_blocks_total");
    let method = "eth_getBlockByNumber";
    // A request that fails as a whole is one error under `batch` (a poll is one batch); a bad
    // value in an answered batch is an error of its method.
    let counted_as = if e.node_down { "batch" } else { method };
    let errors_before = good.errors(counted_as, e.kind);
    let (calls_before, polls_before) = (good.calls(method), good.polls());
    let requests_before = good.requests("batch");

    // Misbehave.
    let mem_before = memory();
    node.set_mode(e.mode);
    let bad_since = Instant::now();
    let counted = exp
        .wait_metrics(
            &format!("a `{}` error is counted for {:?}", e.kind, e.mode),
            PATIENCE,
            |s| s.errors(counted_as, e.kind) > errors_before,
        )
        .await;
    let counted_after = bad_since.elapsed();
    if e.node_down {
        let s = &counted;
        assert_eq!(
            (s.errors("eth_syncing", e.kind), s.errors(method, e.kind)),
            (0.0, 0.0),
            "a failed request is one error, not one per method of its batch:\n{}",
            s.ours()
        );
    }
    let stale = exp
        .wait_metrics("the head collector reports failure", PATIENCE, |s| {
            s.success("head") == Some(0.0) && (!e.node_down || s.up() == Some(0.0))
        })
        .await;
    let frozen_at = stale.last_success("head").expect("head last success");
    // The chain moves on while the exporter cannot see it.
    node.mine(2);

    let mut took = Vec::new();
    if e.node_down {
        // /readyz turns 503 once the node has not answered for the window.
        let start = Instant::now();
        loop {
            let s = exp.scrape().await;
            took.push(s.took);
            if exp.readyz().await == 503 {
                // Not at the first failure: after the window since the last good poll (which
                // was at most one poll interval before the switch).
                let unready_after = bad_since.elapsed();
                assert!(
                    unready_after >= READY_WINDOW - Duration::from_millis(300),
                    "/readyz turned 503 after only {unready_after:?}"
                );
                break;
            }
            assert!(
                start.elapsed() < READY_WINDOW + PATIENCE,
                "/readyz still 200 after {:?}",
                start.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    } else {
        // The node answers, so the exporter stays ready; only the values are stale.
        let until = Instant::now() + READY_WINDOW + Duration::from_millis(300);
        while Instant::now() < until {
            took.push(exp.scrape().await.took);
            assert_eq!(
                exp.readyz().await,
                200,
                "the node answers; the exporter stays ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let s = exp.scrape().await;
    assert_eq!(
        s.head(),
        Some(103.0),
        "the last good head is still served:\n{}",
        s.ours()
    );
    assert_eq!(
        s.get("eth_el_chain_id", &[]),
        Some(CHAIN_ID as f64),
        "the chain id is still served"
    );
    assert_eq!(
        s.get("eth_el_peers", &[]),
        Some(PEERS as f64),
        "the peer count is still served"
    );
    assert!(
        s.has("eth_el_head_age_seconds"),
        "head age is still computed"
    );
    assert_eq!(
        s.get("eth_el_blocks_total", &[]),
        Some(blocks_before),
        "no block is counted while blind"
    );
    assert_eq!(s.success("head"), Some(0.0), "the staleness is visible");
    assert_eq!(
        s.last_success("head"),
        Some(frozen_at),
        "the last success timestamp does not advance"
    );
    if e.node_down {
        assert_eq!(
            s.up(),
            Some(0.0),
            "eth_el_up is 0 while the node misbehaves"
        );
        // Info is polled every --info-interval only, but is as blind as the rest.
        for c in ["info", "sync", "peers", "txpool", "finality"] {
            assert_eq!(s.success(c), Some(0.0), "collector {c} reports the failure");
        }
    } else {
        assert_eq!(s.up(), Some(1.0), "the node answered the batch");
    }
    let (bad_errors, bad_calls) = (
        s.errors(counted_as, e.kind) - errors_before,
        s.calls(method) - calls_before,
    );
    if e.node_down {
        // Each failed request is counted once, like the request itself (at most one good poll
        // may have run between the last good scrape and the switch).
        let bad_requests = s.requests("batch") - requests_before;
        assert!(
            bad_errors >= 1.0 && bad_errors <= bad_requests && bad_errors >= bad_requests - 1.0,
            "{bad_errors} errors for {bad_requests} requests:\n{}",
            s.ours()
        );
    } else {
        // Each failed call is counted once (a poll asks for three blocks in one batch).
        assert!(
            bad_errors >= 1.0 && bad_errors <= bad_calls,
            "{bad_errors} errors for {bad_calls} calls"
        );
    }
    let bad_polls = s.polls() - polls_before;
    took.sort();
    let median = took[took.len() / 2];
    let slowest = took[took.len() - 1];
    assert!(
        median < Duration::from_millis(100),
        "/metrics median {median:?} while the node misbehaves"
    );

    // One log line for the whole episode, not one per poll.
    let lines = if e.node_down {
        log_lines(&["execution node unreachable or misbehaving", &here, e.kind])
    } else {
        log_lines(&["collector failed", &here, "collector=\"head\"", method])
    };
    assert_eq!(lines.len(), 1, "logged once for {:?}: {lines:#?}", e.mode);

    let mem_after = memory();
    if e.measure_memory {
        let rss = mem_after.0 as f64 - mem_before.0 as f64;
        let hwm = mem_after.1 as f64 - mem_before.1 as f64;
        println!(
            "{:?}: {} polls, {} failed calls in {:.1} s; VmRSS {:.1} -> {:.1} MiB ({:+.1}), VmHWM {:.1} -> {:.1} MiB ({:+.1})",
            e.mode,
            bad_polls,
            bad_errors,
            bad_since.elapsed().as_secs_f64(),
            mem_before.0 as f64 / MIB,
            mem_after.0 as f64 / MIB,
            rss / MIB,
            mem_before.1 as f64 / MIB,
            mem_after.1 as f64 / MIB,
            hwm / MIB,
        );
        assert!(hwm < 40.0 * MIB, "peak memory grew by {:.1} MiB", hwm / MIB);
        assert!(
            rss < 40.0 * MIB,
            "resident memory grew by {:.1} MiB",
            rss / MIB
        );
    }

    // Recovery: the next good poll brings everything back.
    node.set_mode(Mode::Correct);
    let back = Instant::now();
    let s = exp
        .wait_metrics("the exporter recovers", PATIENCE, |s| {
            s.up() == Some(1.0)
                && s.head() == Some(105.0)
                && s.success("head") == Some(1.0)
                && s.last_success("head").is_some_and(|t| t > frozen_at)
                && s.success("info") == Some(1.0)
        })
        .await;
    let recovered_after = back.elapsed();
    assert_eq!(
        s.get("eth_el_blocks_total", &[]),
        Some(blocks_before + 2.0),
        "the blocks missed while blind are counted"
    );
    exp.wait_ready(200, PATIENCE).await;
    if e.node_down {
        let again = log_lines(&["execution node answers again", &here]);
        assert_eq!(again.len(), 1, "recovery is logged once: {again:#?}");
    }
    println!(
        "{:?}: counted as {} after {counted_after:?}; /metrics median {median:?}, slowest {slowest:?}; recovered {recovered_after:?} after the node behaved",
        e.mode, e.kind
    );
    exp.stop().await;
}

macro_rules! bad_node {
    ($name:ident, $mode:expr, $kind:literal, node_down = $down:literal, memory = $mem:literal) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            misbehave(Expect {
                mode: $mode,
                kind: $kind,
                node_down: $down,
                measure_memory: $mem,
            })
            .await;
        }
    };
}

bad_node!(
    garbage_body,
    Mode::Garbage,
    "decode",
    node_down = true,
    memory = false
);
bad_node!(
    not_http_at_all,
    Mode::NotHttp,
    "connect",
    node_down = true,
    memory = false
);
bad_node!(
    connection_reset,
    Mode::Reset,
    "connect",
    node_down = true,
    memory = false
);
bad_node!(
    http_500,
    Mode::Status(500),
    "http_status",
    node_down = true,
    memory = false
);
bad_node!(
    http_429,
    Mode::Status(429),
    "http_status",
    node_down = true,
    memory = false
);
bad_node!(
    wrong_ids,
    Mode::WrongIds,
    "decode",
    node_down = true,
    memory = false
);
bad_node!(
    huge_body_with_length,
    Mode::Huge {
        content_length: true
    },
    "too_large",
    node_down = true,
    memory = true
);
bad_node!(
    huge_body_chunked,
    Mode::Huge {
        content_length: false
    },
    "too_large",
    node_down = true,
    memory = true
);
bad_node!(
    endless_body,
    Mode::Endless,
    "too_large",
    node_down = true,
    memory = true
);
bad_node!(
    trickling_endless_body,
    Mode::Trickle,
    "timeout",
    node_down = true,
    memory = true
);
bad_node!(
    accepts_and_never_answers,
    Mode::Hang,
    "timeout",
    node_down = true,
    memory = false
);
bad_node!(
    invalid_hex_quantities,
    Mode::InvalidHex,
    "decode",
    node_down = false,
    memory = false
);
bad_node!(
    numbers_beyond_u64,
    Mode::BeyondU64,
    "decode",
    node_down = false,
    memory = false
);

/// anvil has no `net_peerCount`: the signal is absent, its collector fails, the method is
/// logged once and re-probed rarely, and there is no error per poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_method_is_absent_without_an_error_storm() {
    let node = FakeNode::start(100).await;
    let exp = Exporter::start(&node, &["--reprobe-interval", "2s"]).await;
    exp.wait_metrics("peers are known", PATIENCE, |s| {
        s.get("eth_el_peers", &[]) == Some(PEERS as f64) && s.success("peers") == Some(1.0)
    })
    .await;

    node.set_unsupported("net_peerCount", true);
    let s = exp
        .wait_metrics("net_peerCount is found unsupported", PATIENCE, |s| {
            !s.has("eth_el_peers")
                && s.success("peers") == Some(0.0)
                && s.errors("net_peerCount", "rpc_error") >= 1.0
        })
        .await;
    let (errors0, polls0) = (s.errors("net_peerCount", "rpc_error"), s.polls());
    // Watch ten polls: no error storm, everything else unaffected.
    let s = exp
        .wait_metrics("ten more polls", PATIENCE, |s| s.polls() >= polls0 + 10.0)
        .await;
    let errors1 = s.errors("net_peerCount", "rpc_error");
    assert!(
        errors1 <= errors0 + 1.0,
        "rpc_error for net_peerCount grew from {errors0} to {errors1} over {} polls (re-probe every 2 s)",
        s.polls() - polls0
    );
    assert!(!s.has("eth_el_peers"), "eth_el_peers is absent, not 0");
    assert_eq!(s.success("peers"), Some(0.0));
    assert_eq!(
        s.up(),
        Some(1.0),
        "an unsupported method does not make the node down"
    );
    assert_eq!(s.success("head"), Some(1.0));
    assert_eq!(s.success("txpool"), Some(1.0));
    assert_eq!(exp.readyz().await, 200);
    let logged = log_lines(&["does not support this method", "net_peerCount"]);
    assert_eq!(logged.len(), 1, "logged once: {logged:#?}");
    let twice = log_lines(&["collector failed", &node.authority()]);
    assert!(
        twice.is_empty(),
        "not logged again as a failing collector: {twice:#?}"
    );

    // The node learns the method (an upgrade): the re-probe finds it.
    node.set_unsupported("net_peerCount", false);
    exp.wait_metrics("peers come back after the re-probe", PATIENCE, |s| {
        s.get("eth_el_peers", &[]) == Some(PEERS as f64) && s.success("peers") == Some(1.0)
    })
    .await;
    assert_eq!(
        log_lines(&["now supports this method", "net_peerCount"]).len(),
        1
    );
    exp.stop().await;
}

/// Decimal strings and JSON numbers (some clients and proxies) read exactly like hex.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decimal_and_number_quantities_read_like_hex() {
    let node = FakeNode::start(101).await;
    node.set_style(Style::Decimal);
    // Info on every poll, so chain id and network id are read in every style.
    let exp = Exporter::start(&node, &["--info-interval", "200ms"]).await;
    for (style, head) in [
        (Style::Decimal, 101),
        (Style::Number, 102),
        (Style::Hex, 103),
    ] {
        node.set_style(style);
        if head > 101 {
            node.mine(1);
        }
        let s = exp
            .wait_metrics(&format!("{style:?} quantities are read"), PATIENCE, |s| {
                s.head() == Some(head as f64)
            })
            .await;
        let want = [
            (
                "eth_el_head_transactions",
                support::block_transactions(head) as f64,
            ),
            (
                "eth_el_head_base_fee_per_gas_wei",
                support::block_base_fee(head) as f64,
            ),
            ("eth_el_head_gas_limit", 30_000_000.0),
            (
                "eth_el_safe_block_number",
                (head - support::SAFE_LAG) as f64,
            ),
            (
                "eth_el_finalized_block_number",
                (head - support::FINALIZED_LAG) as f64,
            ),
            ("eth_el_peers", PEERS as f64),
            ("eth_el_chain_id", CHAIN_ID as f64),
            ("eth_el_network_id", CHAIN_ID as f64),
        ];
        for (name, v) in want {
            assert_eq!(
                s.get(name, &[]),
                Some(v),
                "{name} with {style:?} quantities:\n{}",
                s.ours()
            );
        }
        assert_eq!(
            s.get("eth_el_txpool_transactions", &[("status", "pending")]),
            Some(TXPOOL.0 as f64)
        );
        assert_eq!(
            s.get("eth_el_txpool_transactions", &[("status", "queued")]),
            Some(TXPOOL.1 as f64)
        );
        assert_eq!(
            s.get(
                "eth_el_client_info",
                &[("client", "geth"), ("version", "1.14.11-stable-f3c696fa")]
            ),
            Some(1.0)
        );
        assert_eq!(s.errors("eth_getBlockByNumber", "decode"), 0.0);
    }
    exp.stop().await;
}
