//! The status page (`/`) and its JSON (`/api/v1/status`) against real nodes: two anvil chains
//! (a split on the execution layer), a stalled copy of one (behind), a target nobody answers,
//! and a Lodestar dev chain paired with one of the anvils; then a node dies. Also the execution and consensus exporters'
//! landing pages with their live values, over the same nodes. Tools come from `scripts/test.sh`
//! (ETHWATCH_ANVIL, ETHWATCH_LODESTAR).

use std::time::{Duration, Instant};

use ethwatch_testkit::{Anvil, Lodestar, consensus, execution, free_port, network};
use serde_json::Value;

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

/// The entry of the list `s[list]` whose `key` is `name`.
fn entry<'a>(s: &'a Value, list: &str, key: &str, name: &str) -> &'a Value {
    s[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} in {s:#}"))
        .iter()
        .find(|e| e[key] == name)
        .unwrap_or_else(|| panic!("no {key} {name} in {list} of {s:#}"))
}

fn node<'a>(s: &'a Value, name: &str) -> &'a Value {
    entry(s, "nodes", "name", name)
}

fn layer<'a>(s: &'a Value, name: &str) -> &'a Value {
    entry(s, "layers", "layer", name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_and_api_show_every_node_a_split_and_a_death() {
    ethwatch_core::upstream::install_crypto();
    let node_a = Anvil::start_with(&["--accounts", "10"]);
    let a = node_a.url();
    let b_proc = Anvil::start_with(&["--accounts", "3"]);
    let b = b_proc.url();
    let lodestar = Lodestar::dev();
    let cl = lodestar.url();
    let stalled_node = Anvil::stalled_copy(&a);
    let stalled = stalled_node.url();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let exp = network(&[
        "--poll-interval=300ms",
        "--request-timeout=500ms",
        &format!("--execution-target=el-a1={a}"),
        &format!("--execution-target=el-a2={a}"),
        &format!("--execution-target=el-b={b}"),
        &format!("--execution-target=el-dead={dead}"),
        &format!("--execution-target=el-stalled={stalled}"),
        &format!("--beacon-target=cl-1={cl}"),
        "--pair=el-a1=cl-1",
    ])
    .await;
    let base = exp.base.clone();

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
    let el_exp = execution(&[&format!("--rpc-url={a}")]).await;
    let cl_exp = consensus(&cl, &[]).await;
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

    el_exp.stop().await;
    cl_exp.stop().await;
    exp.stop().await;
}
