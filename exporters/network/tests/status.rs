//! The status page (`/`) and its JSON (`/api/v1/status`) against real nodes: two anvil chains
//! (a split on the execution layer), a stalled copy of one (behind), a target nobody answers,
//! and a Lodestar dev chain paired with one of the anvils; then a node dies. Also the execution and consensus exporters'
//! landing pages with their live values, over the same nodes. Tools come from `scripts/test.sh`
//! (ETHWATCH_ANVIL, ETHWATCH_LODESTAR).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::Value;
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

/// An anvil chain; `accounts` changes the genesis, so two chains never share a block hash.
fn anvil(accounts: u32) -> (Proc, String) {
    let port = free_port();
    let p = Proc(
        Command::new(tool("ETHWATCH_ANVIL"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--block-time", "1", "--prune-history", "--silent"])
            .args(["--accounts", &accounts.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("anvil"),
    );
    wait_port(port, 20);
    (p, format!("http://127.0.0.1:{port}"))
}

/// A node that stopped following `of`: anvil forked from it at its current block, mining
/// nothing. It shares the chain's history, so it agrees at the common height, and falls behind.
fn stalled_copy(of: &str) -> (Proc, String) {
    let port = free_port();
    let p = Proc(
        Command::new(tool("ETHWATCH_ANVIL"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--fork-url", of, "--no-mining", "--silent"])
            .stdout(Stdio::null())
            .spawn()
            .expect("anvil --fork-url"),
    );
    wait_port(port, 20);
    (p, format!("http://127.0.0.1:{port}"))
}

/// A Lodestar dev chain in a scratch directory, stopped with the two signals it needs.
struct Lodestar {
    child: Child,
    dir: std::path::PathBuf,
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
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn lodestar() -> (Lodestar, String) {
    let dir = std::env::temp_dir().join(format!("ethwatch-status-lodestar-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (rest, p2p) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{rest}");
    let child = Command::new(tool("ETHWATCH_LODESTAR"))
        .current_dir(&dir)
        .args([
            "dev",
            "--genesisValidators",
            "8",
            "--startValidators",
            "0..7",
        ])
        .args(["--reset", "--rest", "--rest.address", "127.0.0.1"])
        .args(["--rest.port", &rest.to_string(), "--beaconNodes", &url])
        .args(["--rest.namespace", "*", "--listenAddress", "127.0.0.1"])
        .args([
            "--port",
            &p2p.to_string(),
            "--discv5",
            "false",
            "--mdns",
            "false",
        ])
        .args(["--targetPeers", "0", "--params.SECONDS_PER_SLOT", "2"])
        .args(["--params.ALTAIR_FORK_EPOCH", "0"])
        .args(["--dataDir", &dir.join("data").display().to_string()])
        .env_remove("LODESTAR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("lodestar");
    let l = Lodestar { child, dir };
    wait_port(rest, 60);
    (l, url)
}

#[derive(Parser)]
struct NetCli {
    #[command(flatten)]
    args: ethwatch_network::NetworkArgs,
}

#[derive(Parser)]
struct ElCli {
    #[command(flatten)]
    args: ethwatch_execution::ExecutionArgs,
}

#[derive(Parser)]
struct ClCli {
    #[command(flatten)]
    args: ethwatch_consensus::ConsensusArgs,
}

const LISTEN: [&str; 3] = ["t", "--web.listen-address", "127.0.0.1:0"];

async fn get(url: &str) -> (String, String) {
    let r = reqwest::get(url).await.expect(url);
    assert_eq!(r.status().as_u16(), 200, "{url}");
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (ctype, r.text().await.expect("body"))
}

async fn status(base: &str) -> Value {
    let (ctype, body) = get(&format!("{base}/api/v1/status")).await;
    assert_eq!(ctype, "application/json");
    serde_json::from_str(&body).expect("JSON")
}

async fn wait_status(base: &str, secs: u64, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = status(base).await;
        if cond(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn node<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node {name} in {s:#}"))
}

fn layer<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .find(|l| l["layer"] == name)
        .unwrap_or_else(|| panic!("no layer {name} in {s:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_and_api_show_every_node_a_split_and_a_death() {
    ethwatch_core::upstream::install_crypto();
    let (_a, a) = anvil(10);
    let (b_proc, b) = anvil(3);
    let (_l, cl) = lodestar();
    let (_s, stalled) = stalled_copy(&a);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut argv: Vec<String> = LISTEN.iter().map(|s| s.to_string()).collect();
    for f in [
        "--poll-interval=300ms".to_string(),
        "--request-timeout=500ms".into(),
        format!("--execution-target=el-a1={a}"),
        format!("--execution-target=el-a2={a}"),
        format!("--execution-target=el-b={b}"),
        format!("--execution-target=el-dead={dead}"),
        format!("--execution-target=el-stalled={stalled}"),
        format!("--beacon-target=cl-1={cl}"),
        "--pair=el-a1=cl-1".into(),
    ] {
        argv.push(f);
    }
    let token = CancellationToken::new();
    let r = ethwatch_network::start(NetCli::parse_from(argv).args, token.clone())
        .await
        .expect("start");
    let base = format!("http://{}", r.addr);

    let s = wait_status(&base, 90, "every node seen, Lodestar past slot 1", |s| {
        s["nodes"].as_array().is_some_and(|n| n.len() == 6)
            && node(s, "cl-1")["head"].as_u64().is_some_and(|h| h >= 1)
            && node(s, "el-stalled")["lag"].as_u64().is_some_and(|l| l > 2)
            && node(s, "el-a1")["version"].is_string()
            && node(s, "cl-1")["version"].is_string()
    })
    .await;
    assert_eq!(s["schema_version"], 1);
    assert!(s["updated_ms"].as_u64().is_some());
    let names: Vec<&str> = s["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["el-a1", "el-a2", "el-b", "el-dead", "el-stalled", "cl-1"]
    );

    let a1 = node(&s, "el-a1");
    assert_eq!(
        (a1["layer"].as_str(), a1["client"].as_str()),
        (Some("execution"), Some("anvil"))
    );
    assert_eq!(a1["version"], "1.7.1");
    assert_eq!(a1["syncing"], false);
    assert!(
        a1["head_root"].as_str().is_some_and(|r| r.len() == 66),
        "{a1}"
    );
    assert!(a1["latency_ms"].as_f64().is_some_and(|l| l >= 0.0), "{a1}");
    assert!(a1["last_answer_ms"].as_u64().is_some(), "{a1}");
    assert_eq!(a1["paired_with"], "cl-1");
    // anvil has no net_peerCount: unknown, not 0.
    assert!(a1["peers"].is_null(), "{a1}");
    // el-b is its own chain: a minority at the common height.
    assert_eq!(node(&s, "el-b")["on_majority"], false);
    assert_eq!(a1["on_majority"], true);

    // The stalled copy is on the majority's chain, but more than --behind-tolerance behind.
    let stalled_node = node(&s, "el-stalled");
    assert_eq!(stalled_node["state"], "behind", "{stalled_node}");
    assert_eq!(stalled_node["on_majority"], true, "{stalled_node}");

    let dead_node = node(&s, "el-dead");
    assert_eq!(dead_node["state"], "down");
    assert!(dead_node["last_answer_ms"].is_null() && dead_node["head"].is_null());

    let c1 = node(&s, "cl-1");
    assert_eq!(
        (c1["layer"].as_str(), c1["state"].as_str()),
        (Some("consensus"), Some("up"))
    );
    assert!(
        c1["client"]
            .as_str()
            .is_some_and(|c| c.eq_ignore_ascii_case("lodestar")),
        "{c1}"
    );
    assert_eq!(c1["version"], "v1.5.1");
    assert_eq!(c1["peers"], 0, "{c1}");
    assert!(c1["finalized_epoch"].as_u64().is_some(), "{c1}");
    assert!(s["finalized"]["min"].as_u64().is_some(), "{s:#}");

    let el = layer(&s, "execution");
    assert_eq!(el["distinct_heads"], 2, "{el}");
    let groups: Vec<Vec<&str>> = el["heads"]
        .as_array()
        .expect("heads")
        .iter()
        .map(|g| {
            g["nodes"]
                .as_array()
                .expect("nodes")
                .iter()
                .map(|n| n.as_str().expect("name"))
                .collect()
        })
        .collect();
    assert_eq!(
        groups,
        vec![vec!["el-a1", "el-a2", "el-stalled"], vec!["el-b"]]
    );
    assert_eq!(layer(&s, "consensus")["distinct_heads"], 1);
    // The pair is listed; Lodestar's dev chain has no execution payload, so no distance.
    assert_eq!(s["pairs"][0]["execution"], "el-a1");
    assert_eq!(s["pairs"][0]["consensus"], "cl-1");
    assert!(s["pairs"][0]["matches"].is_null());
    let events = s["events"].as_array().expect("events");
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "split" && e["layer"] == "execution"),
        "{s:#}"
    );

    // The server-rendered page: a row per node, the split, and no external asset.
    let (ctype, html) = get(&format!("{base}/")).await;
    assert_eq!(ctype, "text/html; charset=utf-8");
    for n in ["el-a1", "el-a2", "el-b", "el-dead", "el-stalled", "cl-1"] {
        assert!(
            html.contains(&format!("<tr data-node=\"{n}\"")),
            "no row for {n}:\n{html}"
        );
    }
    assert!(
        html.contains("<tr data-node=\"el-dead\" data-layer=\"execution\" data-state=\"down\">")
    );
    assert!(
        html.contains(
            "<tr data-node=\"el-stalled\" data-layer=\"execution\" data-state=\"behind\">"
        )
    );
    assert!(
        html.contains("data-layer=\"execution\" data-distinct=\"2\""),
        "{html}"
    );
    assert!(html.contains("anvil 1.7.1"));
    assert!(html.contains("other chain"));
    assert!(!html.contains("src=") && !html.contains("https://"));

    // A node dies: it shows as down, and the execution layer is one chain again (a heal).
    drop(b_proc);
    let s = wait_status(&base, 15, "el-b down and the split healed", |s| {
        node(s, "el-b")["state"] == "down" && layer(s, "execution")["distinct_heads"] == 1
    })
    .await;
    assert_eq!(s["events"][0]["kind"], "heal", "{s:#}");
    assert!(node(&s, "el-b")["last_answer_ms"].as_u64().is_some());
    let (_, html) = get(&format!("{base}/")).await;
    assert!(html.contains("<tr data-node=\"el-b\" data-layer=\"execution\" data-state=\"down\">"));

    // The exporters' landing pages carry their live values beside the collector table.
    let t2 = CancellationToken::new();
    let mut argv: Vec<String> = LISTEN.iter().map(|s| s.to_string()).collect();
    argv.push(format!("--rpc-url={a}"));
    let el_exp = ethwatch_execution::start(ElCli::parse_from(argv).args, t2.clone())
        .await
        .expect("execution exporter");
    let mut argv: Vec<String> = LISTEN.iter().map(|s| s.to_string()).collect();
    argv.push(format!("--beacon-url={cl}"));
    let cl_exp = ethwatch_consensus::start(ClCli::parse_from(argv).args, t2.clone())
        .await
        .expect("consensus exporter");
    for (addr, want) in [
        (el_exp.addr, ["head", "head age", "peers", "sync"]),
        (cl_exp.addr, ["head slot", "head age", "peers", "sync"]),
    ] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, html) = get(&format!("http://{addr}/")).await;
            let known = |k: &str| {
                html.contains(&format!("<tr><td>{k}</td><td>"))
                    && !html.contains(&format!("<tr><td>{k}</td><td>–</td>"))
            };
            // Peers stay unknown on anvil (no net_peerCount); the others must fill in.
            if html.contains("<table id=\"live\"")
                && want.iter().filter(|k| **k != "peers").all(|k| known(k))
                && html.contains("<tr><td>peers</td>")
                && html.contains("collector")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "landing page lacks live values:\n{html}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    t2.cancel();
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), el_exp.task).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), cl_exp.task).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), r.task).await;
}
