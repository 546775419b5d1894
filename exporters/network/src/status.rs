//! The watcher's live status page: `/` (server-rendered HTML that a small inline script keeps
//! fresh) and `/api/v1/status` (JSON, a stable API: see docs/network.md).
//!
//! Over 600 lines on purpose: the page's HTML, its inline script and the JSON they read are one
//! contract (the script reads the JSON this file writes, the first view renders the same rows),
//! kept in one file so a change to one is seen beside the others.
//!
//! The poll cycle hands its observations to the [`Board`] at its end; the board keeps what the
//! page needs across cycles (when each node last answered, the last splits and heals) and the
//! server renders from an in-memory copy, never calling a node. Memory is bounded: one entry per
//! current node and at most [`MAX_EVENTS`] splits and heals.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::B256;
use ethwatch_core::server::{Page, Pages, html_escape as esc};
use serde::Serialize;

use crate::compare::{Head, NodeStatus};
use crate::discovery::Layer;
use crate::metrics::NetworkState;

/// Splits and heals kept for the page, newest first.
pub const MAX_EVENTS: usize = 20;

/// The version of the `/api/v1/status` document; raised only on an incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Per node of one layer: its name, head and hash at the common height (as compared).
pub type AtCommon = Vec<(String, Option<Head>, Option<B256>)>;

/// One node as the cycle saw it (the poller's input to [`Board::update`]).
#[derive(Debug, Clone)]
pub struct NodeSeen {
    pub name: String,
    pub layer: Layer,
    pub status: NodeStatus,
    pub head: Option<Head>,
    pub finalized: Option<u64>,
    pub peers: Option<u64>,
    /// Client name and version.
    pub client: Option<(String, String)>,
    /// How long the node took to answer the cycle's first requests.
    pub latency: Option<Duration>,
    /// Pair key shared with the other layer's node of the same participant.
    pub pair: Option<String>,
}

/// One node on the page.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeView {
    pub name: String,
    pub layer: &'static str,
    /// `up`, `behind`, `syncing` or `down`.
    pub state: &'static str,
    pub client: Option<String>,
    pub version: Option<String>,
    /// Head block number (execution) or slot (consensus).
    pub head: Option<u64>,
    /// Head block hash (execution) or root (consensus), 0x-prefixed hex.
    pub head_root: Option<String>,
    /// The layer's highest head minus this node's head.
    pub lag: Option<u64>,
    /// Whether the node's block at the common height is the majority's (absent when unknown).
    pub on_majority: Option<bool>,
    pub finalized_epoch: Option<u64>,
    pub peers: Option<u64>,
    pub syncing: Option<bool>,
    /// Unix milliseconds of the node's last answer.
    pub last_answer_ms: Option<u64>,
    /// Milliseconds the node took to answer the last cycle.
    pub latency_ms: Option<f64>,
    /// The other layer's node of the same participant.
    pub paired_with: Option<String>,
}

/// A head at the common height and the nodes on it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HeadGroup {
    pub root: String,
    pub nodes: Vec<String>,
}

/// One layer's agreement.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LayerView {
    pub layer: &'static str,
    pub common_height: Option<u64>,
    pub highest: Option<u64>,
    pub spread: Option<u64>,
    /// Distinct heads at the common height (more than 1 is a split).
    pub distinct_heads: usize,
    /// The heads at the common height, most nodes first.
    pub heads: Vec<HeadGroup>,
}

/// An execution node and its beacon node.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PairView {
    pub execution: String,
    pub consensus: String,
    /// Execution head minus the execution block in the beacon node's head block.
    pub distance: Option<i64>,
    /// Whether the distance is within `--pair-tolerance` (absent when unknown).
    pub matches: Option<bool>,
}

/// The finalized epochs across the answering beacon nodes.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct FinalizedRange {
    pub min: u64,
    pub max: u64,
}

/// A split (the layer went from one head to several at the common height) or a heal.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    pub at_ms: u64,
    pub layer: &'static str,
    /// `split` or `heal`.
    pub kind: &'static str,
    pub height: Option<u64>,
    pub heads: Vec<HeadGroup>,
}

/// The `/api/v1/status` document.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Status {
    pub schema_version: u32,
    /// Unix milliseconds when this document was served.
    pub now_ms: u64,
    /// Unix milliseconds when the last cycle ended (absent before the first).
    pub updated_ms: Option<u64>,
    pub cycle_duration_ms: Option<f64>,
    /// Blocks (slots) below the highest head before a node is `behind`.
    pub behind_tolerance: u64,
    pub nodes: Vec<NodeView>,
    pub layers: Vec<LayerView>,
    pub pairs: Vec<PairView>,
    pub finalized: Option<FinalizedRange>,
    /// The last splits and heals, newest first.
    pub events: Vec<Event>,
}

#[derive(Debug)]
struct Inner {
    status: Status,
    last_answer: HashMap<String, u64>,
    /// Whether each layer (execution, consensus) was split in the last cycle.
    split: [bool; 2],
    events: VecDeque<Event>,
    pair_tolerance: u64,
}

/// The status page's state, shared by the poller and the server.
#[derive(Debug, Clone)]
pub struct Board(Arc<Mutex<Inner>>);

fn hex(h: &B256) -> String {
    format!("{h:#x}")
}

fn groups(at_common: &[(String, Option<Head>, Option<B256>)]) -> Vec<HeadGroup> {
    let mut by: Vec<(B256, Vec<String>)> = Vec::new();
    for (name, _, at) in at_common {
        let Some(h) = at else { continue };
        match by.iter_mut().find(|(r, _)| r == h) {
            Some((_, v)) => v.push(name.clone()),
            None => by.push((*h, vec![name.clone()])),
        }
    }
    by.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    by.into_iter()
        .map(|(r, nodes)| HeadGroup {
            root: hex(&r),
            nodes,
        })
        .collect()
}

impl Board {
    /// An empty board.
    pub fn new(behind_tolerance: u64, pair_tolerance: u64) -> Self {
        Board(Arc::new(Mutex::new(Inner {
            status: Status {
                schema_version: SCHEMA_VERSION,
                now_ms: 0,
                updated_ms: None,
                cycle_duration_ms: None,
                behind_tolerance,
                nodes: Vec::new(),
                layers: Vec::new(),
                pairs: Vec::new(),
                finalized: None,
                events: Vec::new(),
            },
            last_answer: HashMap::new(),
            split: [false; 2],
            events: VecDeque::new(),
            pair_tolerance,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current document, stamped with the time of the call.
    pub fn status(&self) -> Status {
        let mut s = self.lock().status.clone();
        s.now_ms = ethwatch_core::unix_now_ms();
        s
    }

    /// Takes one cycle's result: the nodes, each layer's hashes at the common height, and the
    /// comparison the metrics carry.
    pub fn update(
        &self,
        seen: Vec<NodeSeen>,
        compared: &[(Layer, AtCommon)],
        state: &NetworkState,
        took: Duration,
    ) {
        self.update_at(ethwatch_core::unix_now_ms(), seen, compared, state, took);
    }

    /// [`Board::update`] at a given time (tests).
    pub fn update_at(
        &self,
        now_ms: u64,
        mut seen: Vec<NodeSeen>,
        compared: &[(Layer, AtCommon)],
        state: &NetworkState,
        took: Duration,
    ) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        seen.sort_by(|a, b| (a.layer, &a.name).cmp(&(b.layer, &b.name)));
        inner
            .last_answer
            .retain(|name, _| seen.iter().any(|s| &s.name == name));
        for s in &seen {
            if s.status != NodeStatus::Down {
                inner.last_answer.insert(s.name.clone(), now_ms);
            }
        }
        let highest = |layer: Layer| {
            seen.iter()
                .filter(|s| s.layer == layer)
                .filter_map(|s| s.head.map(|h| h.0))
                .max()
        };
        let agreement = |layer: Layer| match layer {
            Layer::Execution => &state.execution.agreement,
            Layer::Consensus => &state.consensus.agreement,
        };
        let tolerance = inner.status.behind_tolerance;
        let nodes: Vec<NodeView> = seen
            .iter()
            .map(|s| {
                let lag = highest(s.layer)
                    .zip(s.head)
                    .map(|(top, (h, _))| top.saturating_sub(h));
                let state = match s.status {
                    NodeStatus::Down => "down",
                    NodeStatus::Syncing => "syncing",
                    NodeStatus::Up if lag.is_some_and(|l| l > tolerance) => "behind",
                    NodeStatus::Up => "up",
                };
                let paired_with = s.pair.as_ref().and_then(|p| {
                    seen.iter()
                        .find(|o| o.layer != s.layer && o.pair.as_ref() == Some(p))
                        .map(|o| o.name.clone())
                });
                NodeView {
                    name: s.name.clone(),
                    layer: s.layer.as_str(),
                    state,
                    client: s.client.as_ref().map(|c| c.0.clone()),
                    version: s.client.as_ref().map(|c| c.1.clone()),
                    head: s.head.map(|h| h.0),
                    head_root: s.head.map(|h| hex(&h.1)),
                    lag,
                    on_majority: agreement(s.layer)
                        .on_majority
                        .iter()
                        .find(|(n, _)| n == &s.name)
                        .map(|(_, m)| *m),
                    finalized_epoch: s.finalized,
                    peers: s.peers,
                    syncing: (s.status != NodeStatus::Down)
                        .then_some(s.status == NodeStatus::Syncing),
                    last_answer_ms: inner.last_answer.get(&s.name).copied(),
                    latency_ms: s.latency.map(|d| (d.as_secs_f64() * 1e4).round() / 10.0),
                    paired_with,
                }
            })
            .collect();
        let mut layers = Vec::new();
        for (i, layer) in [Layer::Execution, Layer::Consensus].into_iter().enumerate() {
            let heads = compared
                .iter()
                .find(|(l, _)| *l == layer)
                .map(|(_, at)| groups(at))
                .unwrap_or_default();
            let a = agreement(layer);
            let split = a.distinct > 1;
            if split != inner.split[i] {
                inner.events.push_front(Event {
                    at_ms: now_ms,
                    layer: layer.as_str(),
                    kind: if split { "split" } else { "heal" },
                    height: a.common_height,
                    heads: heads.clone(),
                });
                inner.events.truncate(MAX_EVENTS);
                inner.split[i] = split;
            }
            if seen.iter().any(|s| s.layer == layer) {
                layers.push(LayerView {
                    layer: layer.as_str(),
                    common_height: a.common_height,
                    highest: highest(layer),
                    spread: a.spread,
                    distinct_heads: a.distinct,
                    heads,
                });
            }
        }
        let mut pairs = Vec::new();
        for cl in seen.iter().filter(|s| s.layer == Layer::Consensus) {
            let Some(key) = &cl.pair else { continue };
            let Some(el) = seen
                .iter()
                .find(|s| s.layer == Layer::Execution && s.pair.as_ref() == Some(key))
            else {
                continue;
            };
            let distance = state
                .pairs
                .iter()
                .find(|(n, _)| n == &cl.name)
                .map(|(_, d)| *d);
            pairs.push(PairView {
                execution: el.name.clone(),
                consensus: cl.name.clone(),
                distance,
                matches: distance.map(|d| d.unsigned_abs() <= inner.pair_tolerance),
            });
        }
        inner.status = Status {
            schema_version: SCHEMA_VERSION,
            now_ms,
            updated_ms: Some(now_ms),
            cycle_duration_ms: Some((took.as_secs_f64() * 1e4).round() / 10.0),
            behind_tolerance: tolerance,
            nodes,
            layers,
            pairs,
            finalized: state
                .finalized
                .map(|(min, max)| FinalizedRange { min, max }),
            events: inner.events.iter().cloned().collect(),
        };
    }
}

/// Serves `/` and `/api/v1/status` from a [`Board`].
pub struct StatusPages {
    pub board: Board,
    /// How often the page's script asks for fresh values.
    pub refresh: Duration,
}

impl Pages for StatusPages {
    fn route(&self, path: &str) -> Option<Page> {
        match path {
            "/" => Some(Page {
                status: 200,
                content_type: "text/html; charset=utf-8",
                body: render(&self.board.status(), self.refresh),
            }),
            "/api/v1/status" => Some(Page {
                status: 200,
                content_type: "application/json",
                body: serde_json::to_string(&self.board.status()).unwrap_or_else(|e| {
                    tracing::error!(error = %e, "encoding the status failed");
                    "{}".into()
                }),
            }),
            _ => None,
        }
    }
}

/// `0x1234ab…cdef`.
pub fn short_root(root: &str) -> String {
    if root.len() <= 14 {
        return root.to_string();
    }
    format!("{}…{}", &root[..8], &root[root.len() - 4..])
}

/// `YYYY-MM-DD HH:MM:SS UTC` of Unix milliseconds.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn ago(ms: Option<u64>, now: u64) -> String {
    match ms {
        None => "never".into(),
        Some(t) => format!("{:.1} s ago", now.saturating_sub(t) as f64 / 1000.0),
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "–".into(), |v| esc(&v.to_string()))
}

fn node_row(out: &mut String, n: &NodeView, now: u64) {
    let fork = if n.on_majority == Some(false) {
        " <span class=\"st fork\">other chain</span>"
    } else {
        ""
    };
    let client = match (&n.client, &n.version) {
        (Some(c), Some(v)) => esc(&format!("{c} {v}")),
        _ => "–".into(),
    };
    let root = match &n.head_root {
        Some(r) => format!("<code title=\"{}\">{}</code>", esc(r), esc(&short_root(r))),
        None => "–".into(),
    };
    let sync = match n.syncing {
        Some(true) => "syncing",
        Some(false) => "synced",
        None => "–",
    };
    let _ = writeln!(
        out,
        "<tr data-node=\"{name}\" data-layer=\"{layer}\" data-state=\"{st}\">\
<td><span class=\"st {st}\">{st}</span>{fork}</td><td>{l}</td><td class=\"name\">{name}</td>\
<td>{client}</td><td class=\"num head\">{head}</td><td>{root}</td><td class=\"num\">{lag}</td>\
<td class=\"num\">{fin}</td><td class=\"num\">{peers}</td><td>{sync}</td><td>{last}</td>\
<td class=\"num\">{lat}</td></tr>",
        name = esc(&n.name),
        layer = n.layer,
        st = n.state,
        l = if n.layer == "execution" { "EL" } else { "CL" },
        head = opt(n.head),
        lag = opt(n.lag),
        fin = opt(n.finalized_epoch),
        peers = opt(n.peers),
        last = ago(n.last_answer_ms, now),
        lat = n
            .latency_ms
            .map_or_else(|| "–".into(), |l| format!("{l:.0} ms")),
    );
}

fn head_list(out: &mut String, heads: &[HeadGroup]) {
    out.push_str("<ul class=\"heads\">");
    for h in heads {
        let _ = write!(
            out,
            "<li><code title=\"{}\">{}</code>: {}</li>",
            esc(&h.root),
            esc(&short_root(&h.root)),
            esc(&h.nodes.join(", "))
        );
    }
    out.push_str("</ul>");
}

fn agreement(out: &mut String, s: &Status) {
    for l in &s.layers {
        let split = l.distinct_heads > 1;
        let verdict = if split {
            format!(
                "<span class=\"st down\">split: {} heads</span>",
                l.distinct_heads
            )
        } else if l.distinct_heads == 1 {
            "<span class=\"st up\">agree</span>".into()
        } else {
            "<span class=\"st syncing\">no heads</span>".into()
        };
        let _ = write!(
            out,
            "<div class=\"layer\" data-layer=\"{layer}\" data-distinct=\"{d}\"><h3>{layer} {verdict}</h3>\
<p>common height {c} · highest {h} · spread {sp}</p>",
            layer = l.layer,
            d = l.distinct_heads,
            c = opt(l.common_height),
            h = opt(l.highest),
            sp = opt(l.spread),
        );
        head_list(out, &l.heads);
        out.push_str("</div>");
    }
    out.push_str("<h3>EL ↔ CL pairs</h3>");
    if s.pairs.is_empty() {
        out.push_str("<p>no pairs</p>");
    } else {
        out.push_str(
            "<div class=\"scroll\"><table id=\"pairs\"><thead><tr><th>execution</th><th>consensus</th>\
<th>distance</th><th>match</th></tr></thead><tbody>",
        );
        for p in &s.pairs {
            let m = match p.matches {
                Some(true) => "<span class=\"st up\">match</span>",
                Some(false) => "<span class=\"st down\">mismatch</span>",
                None => "unknown",
            };
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{m}</td></tr>",
                esc(&p.execution),
                esc(&p.consensus),
                opt(p.distance)
            );
        }
        out.push_str("</tbody></table></div>");
    }
    let _ = write!(
        out,
        "<p id=\"finalized\">finalized epochs: {}</p><h3>Splits and heals</h3>",
        match s.finalized {
            Some(f) if f.min == f.max => f.min.to_string(),
            Some(f) => format!("{} – {}", f.min, f.max),
            None => "–".into(),
        }
    );
    if s.events.is_empty() {
        out.push_str("<p>none since the watcher started</p>");
    } else {
        out.push_str("<ol id=\"events\">");
        for e in &s.events {
            let _ = write!(
                out,
                "<li data-kind=\"{k}\" data-layer=\"{l}\"><time>{t}</time> {l} <b>{k}</b> at {h}",
                k = e.kind,
                l = e.layer,
                t = utc(e.at_ms),
                h = opt(e.height),
            );
            head_list(out, &e.heads);
            out.push_str("</li>");
        }
        out.push_str("</ol>");
    }
}

/// The part of the page the script replaces: summary, node rows, agreement.
fn live(s: &Status) -> (String, String, String) {
    let down = s.nodes.iter().filter(|n| n.state != "up").count();
    let summary = format!(
        "{} nodes, {} not up · updated {}",
        s.nodes.len(),
        down,
        s.updated_ms
            .map_or_else(|| "never (no cycle yet)".into(), utc)
    );
    let mut rows = String::new();
    for n in &s.nodes {
        node_row(&mut rows, n, s.now_ms);
    }
    let mut agree = String::new();
    agreement(&mut agree, s);
    (summary, rows, agree)
}

const STYLE: &str = "\
:root{color-scheme:light dark;font-family:system-ui,sans-serif}\
body{margin:0 auto;padding:.5rem 1rem;max-width:80rem}\
h1{font-size:1.3rem;margin:.3rem 0}h2{font-size:1.1rem;margin:1rem 0 .3rem}h3{font-size:1rem;margin:.8rem 0 .2rem}\
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.9rem;width:100%}\
th,td{padding:.25rem .5rem;border-bottom:1px solid #8884;text-align:left;white-space:nowrap}\
td.num{text-align:right;font-variant-numeric:tabular-nums}\
.st{display:inline-block;padding:0 .4rem;border-radius:.6rem;font-size:.8rem;font-weight:600;color:#fff;background:#777}\
.st.up{background:#1a7f37}.st.behind{background:#b35900}.st.syncing{background:#0969da}.st.down{background:#cf222e}\
.st.fork{background:#8250df}#conn.bad{color:#cf222e;font-weight:600}\
ul.heads{margin:.2rem 0;padding-left:1.2rem}code{font-size:.85rem}footer{margin:1rem 0;font-size:.85rem}";

/// The inline script: reads `/api/v1/status` every refresh and rebuilds the same markup.
const SCRIPT: &str = r#"(function () {
  "use strict";
  var every = Number(document.body.getAttribute("data-refresh-ms")) || 2000;
  var conn = document.getElementById("conn");
  function esc(v) {
    return String(v).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function opt(v) { return v === null || v === undefined ? "\u2013" : esc(v); }
  function shortRoot(r) { return r.length <= 14 ? r : r.slice(0, 8) + "\u2026" + r.slice(-4); }
  function utc(ms) { return new Date(ms).toISOString().slice(0, 19).replace("T", " ") + " UTC"; }
  function ago(ms, now) {
    return ms === null || ms === undefined ? "never" : (Math.max(0, now - ms) / 1000).toFixed(1) + " s ago";
  }
  function code(r) { return '<code title="' + esc(r) + '">' + esc(shortRoot(r)) + "</code>"; }
  function row(n, now) {
    var fork = n.on_majority === false ? ' <span class="st fork">other chain</span>' : "";
    var client = n.client && n.version ? esc(n.client + " " + n.version) : "\u2013";
    var sync = n.syncing === true ? "syncing" : n.syncing === false ? "synced" : "\u2013";
    var lat = n.latency_ms === null || n.latency_ms === undefined ? "\u2013" : n.latency_ms.toFixed(0) + " ms";
    return '<tr data-node="' + esc(n.name) + '" data-layer="' + esc(n.layer) + '" data-state="' + esc(n.state) + '">' +
      '<td><span class="st ' + esc(n.state) + '">' + esc(n.state) + "</span>" + fork + "</td>" +
      "<td>" + (n.layer === "execution" ? "EL" : "CL") + '</td><td class="name">' + esc(n.name) + "</td>" +
      "<td>" + client + '</td><td class="num head">' + opt(n.head) + "</td>" +
      "<td>" + (n.head_root ? code(n.head_root) : "\u2013") + '</td><td class="num">' + opt(n.lag) + "</td>" +
      '<td class="num">' + opt(n.finalized_epoch) + '</td><td class="num">' + opt(n.peers) + "</td>" +
      "<td>" + sync + "</td><td>" + ago(n.last_answer_ms, now) + '</td><td class="num">' + lat + "</td></tr>";
  }
  function heads(list) {
    return '<ul class="heads">' + list.map(function (h) {
      return "<li>" + code(h.root) + ": " + esc(h.nodes.join(", ")) + "</li>";
    }).join("") + "</ul>";
  }
  function agreement(s) {
    var out = s.layers.map(function (l) {
      var v = l.distinct_heads > 1 ? '<span class="st down">split: ' + l.distinct_heads + " heads</span>"
        : l.distinct_heads === 1 ? '<span class="st up">agree</span>' : '<span class="st syncing">no heads</span>';
      return '<div class="layer" data-layer="' + esc(l.layer) + '" data-distinct="' + l.distinct_heads + '"><h3>' +
        esc(l.layer) + " " + v + "</h3><p>common height " + opt(l.common_height) + " \u00b7 highest " +
        opt(l.highest) + " \u00b7 spread " + opt(l.spread) + "</p>" + heads(l.heads) + "</div>";
    }).join("");
    out += "<h3>EL \u2194 CL pairs</h3>";
    if (!s.pairs.length) { out += "<p>no pairs</p>"; } else {
      out += '<div class="scroll"><table id="pairs"><thead><tr><th>execution</th><th>consensus</th>' +
        "<th>distance</th><th>match</th></tr></thead><tbody>" + s.pairs.map(function (p) {
          var m = p.matches === true ? '<span class="st up">match</span>'
            : p.matches === false ? '<span class="st down">mismatch</span>' : "unknown";
          return "<tr><td>" + esc(p.execution) + "</td><td>" + esc(p.consensus) + '</td><td class="num">' +
            opt(p.distance) + "</td><td>" + m + "</td></tr>";
        }).join("") + "</tbody></table></div>";
    }
    var f = s.finalized;
    out += '<p id="finalized">finalized epochs: ' + (f ? (f.min === f.max ? f.min : f.min + " \u2013 " + f.max) : "\u2013") +
      "</p><h3>Splits and heals</h3>";
    if (!s.events.length) { out += "<p>none since the watcher started</p>"; } else {
      out += '<ol id="events">' + s.events.map(function (e) {
        return '<li data-kind="' + esc(e.kind) + '" data-layer="' + esc(e.layer) + '"><time>' + utc(e.at_ms) +
          "</time> " + esc(e.layer) + " <b>" + esc(e.kind) + "</b> at " + opt(e.height) + heads(e.heads) + "</li>";
      }).join("") + "</ol>";
    }
    return out;
  }
  function render(s) {
    var notUp = s.nodes.filter(function (n) { return n.state !== "up"; }).length;
    document.getElementById("summary").textContent = s.nodes.length + " nodes, " + notUp + " not up \u00b7 updated " +
      (s.updated_ms ? utc(s.updated_ms) : "never (no cycle yet)");
    document.getElementById("rows").innerHTML = s.nodes.map(function (n) { return row(n, s.now_ms); }).join("");
    document.getElementById("agreement").innerHTML = agreement(s);
    conn.textContent = "live";
    conn.className = "";
  }
  function tick() {
    fetch("/api/v1/status", { cache: "no-store" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(render)
      .catch(function (e) {
        conn.textContent = "cannot reach the watcher (" + e.message + "); showing the last values";
        conn.className = "bad";
      })
      .then(function () { setTimeout(tick, every); });
  }
  setTimeout(tick, every);
})();"#;

/// The whole page, rendered on the server so that it reads without JavaScript.
pub fn render(s: &Status, refresh: Duration) -> String {
    let (summary, rows, agree) = live(s);
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><link rel=\"icon\" href=\"data:,\">\
<title>ethwatch network</title><style>{STYLE}</style></head>\
<body data-refresh-ms=\"{refresh}\"><h1>ethwatch network</h1>\
<p><span id=\"summary\">{summary}</span> · <span id=\"conn\">live</span></p>\
<h2>Nodes</h2><div class=\"scroll\"><table id=\"nodes\"><thead><tr><th>state</th><th>layer</th>\
<th>node</th><th>client</th><th>head</th><th>root</th><th>lag</th><th>finalized</th><th>peers</th>\
<th>sync</th><th>last answer</th><th>latency</th></tr></thead><tbody id=\"rows\">\n{rows}</tbody></table></div>\
<h2>Agreement</h2><div id=\"agreement\">{agree}</div>\
<footer>ethwatch {ver} · <a href=\"/api/v1/status\">/api/v1/status</a> · <a href=\"/metrics\">metrics</a> · \
<a href=\"/healthz\">healthz</a> · <a href=\"/readyz\">readyz</a></footer>\
<script>{SCRIPT}</script></body></html>\n",
        refresh = refresh.as_millis(),
        ver = ethwatch_core::VERSION,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::agree;
    use crate::metrics::LayerReport;

    fn h(b: u8) -> B256 {
        B256::repeat_byte(b)
    }

    fn node(name: &str, status: NodeStatus, head: Option<Head>) -> NodeSeen {
        NodeSeen {
            name: name.into(),
            layer: Layer::Execution,
            status,
            head,
            finalized: None,
            peers: Some(3),
            client: Some(("anvil".into(), "1.7.1".into())),
            latency: Some(Duration::from_millis(4)),
            pair: None,
        }
    }

    /// One cycle over execution nodes `(name, status, head, hash at common height)`.
    fn cycle(b: &Board, at: u64, nodes: &[(&str, NodeStatus, Option<Head>, Option<B256>)]) {
        let at_common: Vec<(String, Option<Head>, Option<B256>)> = nodes
            .iter()
            .map(|(n, _, h, c)| (n.to_string(), *h, *c))
            .collect();
        let state = NetworkState {
            execution: LayerReport {
                agreement: agree(&at_common),
            },
            ..NetworkState::default()
        };
        let seen = nodes.iter().map(|(n, s, h, _)| node(n, *s, *h)).collect();
        b.update_at(
            at,
            seen,
            &[(Layer::Execution, at_common)],
            &state,
            Duration::from_millis(7),
        );
    }

    #[test]
    fn states_lag_and_last_answer() {
        let b = Board::new(2, 2);
        cycle(
            &b,
            1_000,
            &[
                ("a", NodeStatus::Up, Some((10, h(1))), Some(h(1))),
                ("b", NodeStatus::Up, Some((7, h(2))), Some(h(2))),
                ("c", NodeStatus::Syncing, Some((3, h(3))), None),
            ],
        );
        cycle(
            &b,
            5_000,
            &[
                ("a", NodeStatus::Up, Some((10, h(1))), Some(h(1))),
                ("b", NodeStatus::Up, Some((7, h(2))), Some(h(2))),
                ("c", NodeStatus::Down, None, None),
            ],
        );
        let s = b.status();
        let by = |n: &str| s.nodes.iter().find(|x| x.name == n).expect(n).clone();
        assert_eq!((by("a").state, by("a").lag), ("up", Some(0)));
        assert_eq!((by("b").state, by("b").lag), ("behind", Some(3)));
        // A node that stopped answering keeps the time of its last answer.
        assert_eq!(
            (by("c").state, by("c").last_answer_ms, by("c").syncing),
            ("down", Some(1_000), None)
        );
        assert_eq!(by("a").last_answer_ms, Some(5_000));
        assert_eq!(by("a").head_root, Some(hex(&h(1))));
        assert_eq!(s.layers[0].distinct_heads, 2);
    }

    #[test]
    fn splits_and_heals_are_recorded_once_and_bounded() {
        let b = Board::new(2, 2);
        let one = [
            ("a", NodeStatus::Up, Some((5, h(1))), Some(h(1))),
            ("b", NodeStatus::Up, Some((5, h(1))), Some(h(1))),
        ];
        let two = [
            ("a", NodeStatus::Up, Some((5, h(1))), Some(h(1))),
            ("b", NodeStatus::Up, Some((5, h(2))), Some(h(2))),
        ];
        cycle(&b, 1, &one);
        assert!(b.status().events.is_empty());
        cycle(&b, 2, &two);
        cycle(&b, 3, &two);
        let e = b.status().events;
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!((e[0].kind, e[0].at_ms, e[0].height), ("split", 2, Some(5)));
        assert_eq!(e[0].heads.len(), 2);
        cycle(&b, 4, &one);
        let e = b.status().events;
        assert_eq!((e[0].kind, e[0].at_ms, e[1].kind), ("heal", 4, "split"));
        for t in 5..100 {
            cycle(&b, t, if t % 2 == 0 { &one } else { &two });
        }
        assert_eq!(b.status().events.len(), MAX_EVENTS);
    }

    #[test]
    fn the_page_escapes_names_and_shows_rows() {
        let b = Board::new(2, 2);
        cycle(
            &b,
            1_000,
            &[
                ("<x>", NodeStatus::Up, Some((10, h(1))), Some(h(1))),
                ("ok", NodeStatus::Down, None, None),
            ],
        );
        let html = render(&b.status(), Duration::from_secs(2));
        assert!(html.contains("data-node=\"&lt;x&gt;\""), "{html}");
        assert!(!html.contains("<x>"));
        assert!(
            html.contains("<tr data-node=\"ok\" data-layer=\"execution\" data-state=\"down\">")
        );
        assert!(html.contains("data-refresh-ms=\"2000\""));
        // No external asset of any kind.
        assert!(!html.contains("src=") && !html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn utc_and_short_root() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_803_000_000_000), "2027-02-19 01:20:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(short_root(&hex(&h(0xab))), "0xababab…abab");
    }
}
