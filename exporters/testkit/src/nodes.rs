//! Launchers for the real parts tests run against, on loopback ports: anvil, a Lodestar dev
//! chain, Prometheus; and a JSON-RPC client to drive a node.
//!
//! The binaries come from `scripts/test.sh` (`ETHWATCH_ANVIL`, `ETHWATCH_LODESTAR`,
//! `ETHWATCH_PROMETHEUS`); without them the tests fail, they never skip.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::proc::{Proc, Scratch};
use crate::{free_port, tool, wait_port};

/// A JSON-RPC call that must succeed; returns its `result`.
pub async fn rpc(url: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let v: Value = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("rpc send")
        .json()
        .await
        .expect("rpc json");
    assert!(v.get("error").is_none(), "{method} failed: {v}");
    v["result"].clone()
}

/// A `0x` quantity.
pub fn hex(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().expect("hex string").trim_start_matches("0x"), 16).expect("hex")
}

/// A running anvil, stopped when dropped (also when a test panics).
pub struct Anvil {
    proc: Proc,
    pub port: u16,
}

impl Anvil {
    /// `anvil --host 127.0.0.1 --port PORT ARGS`, once it listens.
    pub fn launch(port: u16, args: &[&str]) -> Anvil {
        let mut cmd = Command::new(tool("ETHWATCH_ANVIL"));
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(args);
        let proc = Proc::start("anvil", &mut cmd);
        wait_port(port, 20);
        Anvil { proc, port }
    }

    /// A chain with one-second blocks (history pruned so memory stays flat) on `port`, plus `extra`
    /// flags (`--accounts N` changes the genesis, so two chains never share a block hash).
    pub fn start_on_with(port: u16, extra: &[&str]) -> Anvil {
        let mut args = vec!["--block-time", "1", "--prune-history", "--silent"];
        args.extend_from_slice(extra);
        Anvil::launch(port, &args)
    }

    /// A chain with one-second blocks on a free port.
    pub fn start() -> Anvil {
        Anvil::start_on_with(free_port(), &[])
    }

    /// The same with `extra` flags.
    pub fn start_with(extra: &[&str]) -> Anvil {
        Anvil::start_on_with(free_port(), extra)
    }

    /// A chain with one-second blocks on `port` (a restart on the same port).
    pub fn start_on(port: u16) -> Anvil {
        Anvil::start_on_with(port, &[])
    }

    /// A node that stopped following `of`: forked from it at its current block, mining nothing.
    pub fn stalled_copy(of: &str) -> Anvil {
        Anvil::launch(free_port(), &["--fork-url", of, "--no-mining", "--silent"])
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `ws://127.0.0.1:PORT` (anvil serves websockets on the HTTP port).
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Kills it at once (the node dies).
    pub fn kill(&mut self) {
        self.proc.kill();
    }
}

/// A Lodestar 1.5.1 dev chain (the command line of docs/consensus.md and TOOLS.md): 8 genesis
/// validators, 2 s slots, Altair at genesis, no peers, REST on a loopback port, in a scratch
/// directory (it writes genesis.ssz to its working directory). Either one process with its
/// validators ([`Lodestar::dev`]) or the beacon node and `lodestar validator` apart
/// ([`Lodestar::start_node`], [`Lodestar::start_validator`]), so the chain can be stalled on
/// demand. Both stop with the two signals Lodestar needs.
pub struct Lodestar {
    bin: String,
    // Declared first: dropped (stopped) before the node.
    validator: Option<Proc>,
    node: Option<Proc>,
    pub rest_port: u16,
    pub p2p_port: u16,
    validator_runs: u32,
    dir: Scratch,
}

impl Lodestar {
    /// Nothing started yet: ports and a directory.
    pub fn new() -> Lodestar {
        ethwatch_core::upstream::install_crypto();
        Lodestar {
            bin: tool("ETHWATCH_LODESTAR"),
            validator: None,
            node: None,
            rest_port: free_port(),
            p2p_port: free_port(),
            validator_runs: 0,
            dir: Scratch::new("lodestar"),
        }
    }

    /// The dev chain with its 8 validators in the one process, once its REST port listens.
    pub fn dev() -> Lodestar {
        let mut l = Lodestar::new();
        let mut cmd = l.node_command();
        cmd.args(["--startValidators", "0..7", "--beaconNodes", &l.url()]);
        l.node = Some(Proc::spawn("lodestar", &mut cmd, l.dir.path()));
        wait_port(l.rest_port, 60);
        l
    }

    /// `http://127.0.0.1:REST_PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rest_port)
    }

    /// `--params.*` the node and the validator client must agree on.
    const PARAMS: [&str; 4] = [
        "--params.SECONDS_PER_SLOT",
        "2",
        "--params.ALTAIR_FORK_EPOCH",
        "0",
    ];

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        // Lodestar exits with "Unknown argument" when a variable is named LODESTAR.
        cmd.env_remove("LODESTAR");
        cmd
    }

    /// `lodestar dev` without validators (and so without `--beaconNodes`, a validator option).
    fn node_command(&self) -> Command {
        let mut cmd = self.command();
        cmd.args(["dev", "--genesisValidators", "8", "--reset"])
            .args(["--rest", "--rest.address", "127.0.0.1"])
            .args(["--rest.port", &self.rest_port.to_string()])
            .args(["--rest.namespace", "*"])
            .args(["--listenAddress", "127.0.0.1"])
            .args(["--port", &self.p2p_port.to_string()])
            .args(["--discv5", "false", "--mdns", "false", "--targetPeers", "0"])
            .args(Self::PARAMS)
            .arg("--dataDir")
            .arg(self.dir.path().join("beacon"));
        cmd
    }

    /// The beacon node alone (start the validators with [`Lodestar::start_validator`]).
    pub fn start_node(&mut self) {
        let mut cmd = self.node_command();
        self.node = Some(Proc::spawn("lodestar-beacon", &mut cmd, self.dir.path()));
    }

    /// The validator client with the 8 interop keys. A fresh data directory each run: after a
    /// restart on a new genesis, slashing protection would refuse the new chain's early slots.
    pub fn start_validator(&mut self) {
        self.validator_runs += 1;
        let mut cmd = self.command();
        cmd.args(["validator", "--network", "dev"])
            .args(Self::PARAMS)
            .args(["--interopIndexes", "0..7", "--beaconNodes", &self.url()])
            .arg("--dataDir")
            .arg(
                self.dir
                    .path()
                    .join(format!("validator-{}", self.validator_runs)),
            );
        self.validator = Some(Proc::spawn("lodestar-validator", &mut cmd, self.dir.path()));
    }

    pub fn stop_validator(&mut self) {
        if let Some(mut v) = self.validator.take() {
            v.stop();
        }
    }

    /// Kills the beacon node at once.
    pub fn kill_node(&mut self) {
        if let Some(mut n) = self.node.take() {
            n.kill();
        }
    }

    /// Waits until the REST API answers; panics after `secs`, or with the log's tail when the
    /// node exits.
    pub async fn wait_rest(&mut self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.get("/eth/v1/node/version").await.is_some() {
                return;
            }
            if let Some(n) = self.node.as_mut()
                && n.exited()
            {
                panic!("lodestar exited during start-up:\n{}", n.tail(30));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("lodestar's REST API did not answer within {secs} s");
    }

    /// `GET PATH` as JSON; `None` on any failure.
    pub async fn get(&self, path: &str) -> Option<Value> {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", self.url()))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        let bytes = r.bytes().await.ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The decimal string at `pointer` of `GET PATH`, as a number.
    pub async fn num(&self, path: &str, pointer: &str) -> u64 {
        let v = self
            .get(path)
            .await
            .unwrap_or_else(|| panic!("GET {path} failed"));
        v.pointer(pointer)
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{path} {pointer} in {v}"))
    }
}

impl Default for Lodestar {
    fn default() -> Self {
        Lodestar::new()
    }
}

/// A real Prometheus on a loopback port, in a scratch directory, stopped when dropped.
pub struct Prometheus {
    proc: Proc,
    pub port: u16,
    dir: Scratch,
}

impl Prometheus {
    /// Prometheus with this `prometheus.yml` and extra `flags`, once it listens.
    pub fn start(config: &str, flags: &[&str]) -> Prometheus {
        let dir = Scratch::new("prometheus");
        std::fs::write(dir.join("prometheus.yml"), config).expect("prometheus.yml");
        let port = free_port();
        let mut cmd = Command::new(tool("ETHWATCH_PROMETHEUS"));
        cmd.arg("--config.file=prometheus.yml")
            .arg("--storage.tsdb.path=data")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(flags);
        let proc = Proc::spawn("prometheus", &mut cmd, dir.path());
        wait_port(port, 20);
        Prometheus { proc, port, dir }
    }

    /// Prometheus scraping `target` (`HOST:PORT`) every second as job `ethwatch`.
    pub fn scraping(target: &str, flags: &[&str]) -> Prometheus {
        Prometheus::start(
            &format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: ethwatch\n    static_configs: [{{targets: ['{target}']}}]\n"
            ),
            flags,
        )
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its directory (where prometheus.yml is).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// `GET /api/v1/PATH_AND_QUERY` as JSON; `Null` when it does not answer.
    pub async fn api(&self, path_and_query: &str) -> Value {
        match reqwest::get(format!("{}/api/v1/{path_and_query}", self.url())).await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => Value::Null,
        }
    }

    /// An instant query; `Null` when it does not answer.
    pub async fn query(&self, q: &str) -> Value {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query", self.url()),
            &[("query", q)],
        )
        .expect("url");
        let text = match reqwest::get(url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}
