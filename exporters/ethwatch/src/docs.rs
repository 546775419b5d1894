//! The metrics reference, generated from the code's registries.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use prometheus_client::registry::Registry;

/// One metric family as documented.
#[derive(Debug, Clone, Default)]
struct Family {
    kind: String,
    help: String,
    unit: Option<String>,
    labels: Vec<String>,
}

/// Reads descriptors and label names from an encoded registry.
fn families(registry: &Registry) -> BTreeMap<String, Family> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)
        .expect("encoding an in-memory registry cannot fail");
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(name.to_string()).or_default().kind = kind.to_string();
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(name.to_string()).or_default().help = help.trim_end_matches('.').to_string();
        } else if let Some(rest) = line.strip_prefix("# UNIT ") {
            let (name, unit) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(name.to_string()).or_default().unit = Some(unit.to_string());
        }
    }
    for s in ethwatch_core::exposition::parse(&text) {
        let family = out
            .keys()
            .filter(|f| s.name == **f || s.name.starts_with(&format!("{f}_")))
            .max_by_key(|f| f.len())
            .cloned();
        if let Some(f) = family {
            let fam = out.get_mut(&f).expect("present");
            for (k, _) in &s.labels {
                if k != "le" && !fam.labels.contains(k) {
                    fam.labels.push(k.clone());
                }
            }
        }
    }
    out
}

/// The exposed sample name(s) of a family: counters end in `_total`, info in `_info`,
/// histograms expose `_bucket`, `_sum` and `_count`.
fn exposed_name(name: &str, kind: &str) -> String {
    match kind {
        "counter" => format!("{name}_total"),
        "info" => format!("{name}_info"),
        _ => name.to_string(),
    }
}

fn table(out: &mut String, fams: &BTreeMap<String, Family>, prefix: &str) {
    out.push_str("| metric | type | labels | description |\n|---|---|---|---|\n");
    for (name, f) in fams.iter().filter(|(n, _)| n.starts_with(prefix)) {
        let labels = if f.labels.is_empty() {
            "".to_string()
        } else {
            f.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let kind = match f.kind.as_str() {
            "info" => "info (gauge, value 1)".to_string(),
            "histogram" => "histogram (`_bucket`, `_sum`, `_count`)".to_string(),
            k => k.to_string(),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {}{} |",
            exposed_name(name, &f.kind),
            kind,
            labels,
            f.help.replace('|', "\\|"),
            f.unit
                .as_ref()
                .map(|u| format!(" (unit: {u})"))
                .unwrap_or_default()
        );
    }
}

/// The whole `docs/metrics.md`.
pub fn metrics_markdown() -> String {
    let exec = families(&ethwatch_execution::metrics::registry_for_docs());
    let cons = families(&ethwatch_consensus::metrics::registry_for_docs());
    let net = families(&ethwatch_network::metrics::registry_for_docs());
    let mut out = String::new();
    out.push_str(
        "# Metrics reference\n\n\
<!-- Generated from the exporters' registries by `ETHWATCH_BLESS=1 cargo test -p ethwatch --test metrics_doc`; \
a test fails when this file is stale. Edit the help strings in the code, not here. -->\n\n\
Every metric ethwatch exports, with its type, labels and help text. Label values are bounded: \
methods, routes, collectors, kinds and statuses come from fixed lists in the code; `path` \
comes from the `--volume.path` flag.\n\n\
Error `kind` values (fixed): `timeout`, `connect`, `http_status`, `decode`, `rpc_error`, `too_large`, `redirect` (a 3xx answer: redirects are never followed).\n\n",
    );
    out.push_str("## Exporter health (every exporter)\n\n");
    out.push_str(
        "Staleness: when a node stops answering, its last values keep being served; \
`ethwatch_collector_success` drops to 0 and `time() - ethwatch_collector_last_success_timestamp_seconds` \
tells how old they are. Collectors of `ethwatch execution`: `head`, `finality`, `sync`, `peers`, \
`txpool`, `info`, `subscription` (with `--ws-url`), `volume` (with `--volume.path`).\n\n",
    );
    table(&mut out, &exec, "ethwatch_");
    out.push_str(
        "\nThe process itself, read from `/proc/self` at scrape time, with the names every \
Prometheus client library uses:\n\n",
    );
    table(&mut out, &exec, "process_");
    out.push_str("\n## Execution layer (`ethwatch execution`)\n\n");
    out.push_str(
        "Values the node does not provide (a method it does not implement, such as `net_peerCount` \
on anvil or `txpool_status` on Hardhat) are absent rather than 0. \
`eth_el_block_arrival_delay_seconds` and `eth_el_subscription_connected` exist only with `--ws-url`.\n\n",
    );
    table(&mut out, &exec, "eth_el_");
    out.push_str("\n## Consensus layer (`ethwatch consensus`)\n\n");
    out.push_str(
        "Values the node does not provide (for example `el_offline` on older beacon nodes, or the \
execution block number before the merge) are absent rather than 0. See \
[consensus.md](consensus.md) for the endpoints behind each metric.\n\n",
    );
    table(&mut out, &cons, "eth_cl_");
    out.push_str("\n## Network (`ethwatch network`)\n\n");
    out.push_str(
        "One watcher per enclave compares every node; `node` is the pod or target name, bounded by \
the enclave's size. See [network.md](network.md).\n\n",
    );
    table(&mut out, &net, "eth_network_");
    out
}
