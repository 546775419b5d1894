//! The network watcher against real nodes: anvil for agreement and disagreement, Lodestar for
//! the beacon side. Tools come from `scripts/test.sh` (ETHWATCH_ANVIL, ETHWATCH_LODESTAR).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use ethwatch_core::exposition::{self, Sample};
use tokio_util::sync::CancellationToken;

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn tool(var: &str) -> String {
    std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set: run the tests with scripts/test.sh"))
}

fn wait_port(port: u16, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An anvil chain; `accounts` changes the genesis allocation, so two chains with different
/// values never share a block hash.
fn anvil(accounts: u32) -> (Proc, String) {
    let port = free_port();
    let p = Proc(
        Command::new(tool("ETHWATCH_ANVIL"))
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--block-time",
                "1",
                "--prune-history",
                "--silent",
            ])
            .args(["--accounts", &accounts.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("anvil"),
    );
    wait_port(port, 20);
    (p, format!("http://127.0.0.1:{port}"))
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: ethwatch_network::NetworkArgs,
}

async fn watcher(args: &[&str]) -> (ethwatch_network::Running, CancellationToken, String) {
    let mut argv = vec![
        "t",
        "--web.listen-address",
        "127.0.0.1:0",
        "--poll-interval",
        "300ms",
        "--request-timeout",
        "500ms",
    ];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).expect("args");
    let token = CancellationToken::new();
    let r = ethwatch_network::start(cli.args, token.clone())
        .await
        .expect("start");
    let base = format!("http://{}", r.addr);
    (r, token, base)
}

async fn scrape(base: &str) -> Vec<Sample> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    exposition::parse(&text)
}

async fn wait_for(
    base: &str,
    secs: u64,
    what: &str,
    cond: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = scrape(base).await;
        if cond(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn v(s: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition::value(s, name, labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_nodes_agree_and_disagree() {
    let (_a, a) = anvil(10);
    let (_b, b) = anvil(3);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (r, token, base) = watcher(&[
        "--execution-target",
        &format!("a1={a}"),
        "--execution-target",
        &format!("a2={a}"),
        "--execution-target",
        &format!("b1={b}"),
        "--execution-target",
        &format!("dead={dead}"),
    ])
    .await;
    let s = wait_for(&base, 10, "three nodes up and compared", |s| {
        v(
            s,
            "eth_network_nodes",
            &[("layer", "execution"), ("state", "up")],
        ) == Some(3.0)
            && v(s, "eth_network_common_height", &[("layer", "execution")])
                .is_some_and(|h| h >= 1.0)
    })
    .await;
    // Two targets on one chain agree with each other; the other chain is a split.
    assert_eq!(
        v(&s, "eth_network_distinct_heads", &[("layer", "execution")]),
        Some(2.0)
    );
    assert_eq!(
        v(
            &s,
            "eth_network_node_on_majority_chain",
            &[("layer", "execution"), ("node", "a1")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            &s,
            "eth_network_node_on_majority_chain",
            &[("layer", "execution"), ("node", "a2")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            &s,
            "eth_network_node_on_majority_chain",
            &[("layer", "execution"), ("node", "b1")]
        ),
        Some(0.0)
    );
    assert_eq!(
        v(
            &s,
            "eth_network_node_on_majority_chain",
            &[("layer", "execution"), ("node", "dead")]
        ),
        None
    );
    assert_eq!(
        v(
            &s,
            "eth_network_nodes",
            &[("layer", "execution"), ("state", "down")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            &s,
            "eth_network_node_up",
            &[("layer", "execution"), ("node", "dead")]
        ),
        Some(0.0)
    );
    assert!(
        v(
            &s,
            "eth_network_request_errors_total",
            &[("node", "dead"), ("kind", "connect")]
        )
        .is_some_and(|c| c >= 1.0)
    );
    assert!(v(&s, "eth_network_head_spread", &[("layer", "execution")]).is_some_and(|x| x <= 3.0));
    assert_eq!(
        v(&s, "eth_network_targets", &[("layer", "execution")]),
        Some(4.0)
    );
    assert!(
        v(
            &s,
            "eth_network_request_duration_seconds_count",
            &[("node", "a1"), ("call", "eth_getBlockByNumber")]
        )
        .is_some_and(|c| c >= 1.0)
    );
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), r.task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_chain_seen_twice_agrees() {
    let (_a, a) = anvil(10);
    let (r, token, base) = watcher(&[
        "--execution-target",
        &format!("x={a}"),
        "--execution-target",
        &format!("y={a}"),
    ])
    .await;
    let s = wait_for(&base, 10, "two nodes compared", |s| {
        v(s, "eth_network_distinct_heads", &[("layer", "execution")]).is_some()
    })
    .await;
    assert_eq!(
        v(&s, "eth_network_distinct_heads", &[("layer", "execution")]),
        Some(1.0)
    );
    assert_eq!(
        v(
            &s,
            "eth_network_node_on_majority_chain",
            &[("layer", "execution"), ("node", "x")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            &s,
            "eth_network_node_on_majority_chain",
            &[("layer", "execution"), ("node", "y")]
        ),
        Some(1.0)
    );
    assert!(v(&s, "eth_network_head_spread", &[("layer", "execution")]).is_some_and(|x| x <= 1.0));
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .expect("readyz")
            .status()
            .as_u16(),
        200
    );
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), r.task).await;
}

/// A Lodestar dev chain, stopped with two signals as it needs.
struct Lodestar {
    child: Child,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Lodestar {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lodestar() -> (Lodestar, String) {
    let dir = std::env::temp_dir().join(format!("ethwatch-net-lodestar-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let rest = free_port();
    let p2p = free_port();
    let url = format!("http://127.0.0.1:{rest}");
    let child = Command::new(tool("ETHWATCH_LODESTAR"))
        .current_dir(&dir)
        .args([
            "dev",
            "--genesisValidators",
            "8",
            "--startValidators",
            "0..7",
            "--reset",
            "--rest",
        ])
        .args([
            "--rest.address",
            "127.0.0.1",
            "--rest.port",
            &rest.to_string(),
            "--beaconNodes",
            &url,
        ])
        .args([
            "--rest.namespace",
            "*",
            "--listenAddress",
            "127.0.0.1",
            "--port",
            &p2p.to_string(),
        ])
        .args([
            "--discv5",
            "false",
            "--mdns",
            "false",
            "--targetPeers",
            "0",
            "--params.SECONDS_PER_SLOT",
            "2",
        ])
        .args([
            "--params.ALTAIR_FORK_EPOCH",
            "0",
            "--dataDir",
            &dir.join("data").display().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("lodestar");
    let l = Lodestar {
        child,
        _dir: TempDir(dir),
    };
    wait_port(rest, 60);
    (l, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beacon_nodes_agree_and_report_finality() {
    let (_l, url) = lodestar();
    let (r, token, base) = watcher(&[
        "--beacon-target",
        &format!("cl-a={url}"),
        "--beacon-target",
        &format!("cl-b={url}"),
    ])
    .await;
    let s = wait_for(&base, 60, "beacon heads compared past slot 2", |s| {
        v(s, "eth_network_common_height", &[("layer", "consensus")]).is_some_and(|h| h >= 2.0)
    })
    .await;
    assert_eq!(
        v(
            &s,
            "eth_network_nodes",
            &[("layer", "consensus"), ("state", "up")]
        ),
        Some(2.0)
    );
    assert_eq!(
        v(&s, "eth_network_distinct_heads", &[("layer", "consensus")]),
        Some(1.0)
    );
    assert_eq!(
        v(
            &s,
            "eth_network_node_on_majority_chain",
            &[("layer", "consensus"), ("node", "cl-a")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(&s, "eth_network_finalized_epoch", &[("stat", "min")]),
        v(&s, "eth_network_finalized_epoch", &[("stat", "max")])
    );
    assert!(v(&s, "eth_network_finalized_epoch", &[("stat", "min")]).is_some());
    assert!(
        v(
            &s,
            "eth_network_request_duration_seconds_count",
            &[
                ("node", "cl-a"),
                ("call", "/eth/v1/beacon/headers/{block_id}")
            ]
        )
        .is_some_and(|c| c >= 1.0)
    );
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), r.task).await;
}
