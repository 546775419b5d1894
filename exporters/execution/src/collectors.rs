//! The execution exporter's collectors: the one table a collector is added to.
//!
//! A collector is a variant of [`ElCollector`] with its row in [`Collector::spec`] (name, what it
//! asks, how often, its `--collector.*` flag) and its calls in [`ElCollector::calls`]; the poll
//! cycle ([`crate::poller`]) batches the calls of every enabled collector and hands the answers
//! to the collector's handler (`Poller::handle`, an exhaustive `match`, so the compiler points at
//! it). The flags, the `collector` label of the self-metrics and the table in
//! `docs/execution.md` all come from here.

use ethwatch_core::collectors::{Collector, CollectorSpec, Collectors, Switch};
use serde_json::json;

use crate::rpc::Call;

/// The execution exporter's collectors, in batch order: the one table the `--collector.*`
/// flags, the `collector` label of the self-metrics and the table in `docs/execution.md` come
/// from. What each one asks is [`ElCollector::calls`]; its handler, [`Poller::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElCollector {
    Head,
    Finality,
    Sync,
    Peers,
    Txpool,
    Info,
}

impl Collector for ElCollector {
    const ALL: &'static [Self] = &[
        ElCollector::Head,
        ElCollector::Finality,
        ElCollector::Sync,
        ElCollector::Peers,
        ElCollector::Txpool,
        ElCollector::Info,
    ];

    fn spec(self) -> &'static CollectorSpec {
        const EVERY: &str = "every cycle";
        match self {
            ElCollector::Head => &CollectorSpec {
                name: "head",
                calls: r#"`eth_getBlockByNumber("latest", false)`"#,
                interval: EVERY,
                switch: Switch::Flag(
                    "Head collector: latest block, block rate, intervals, reorgs.",
                ),
            },
            ElCollector::Finality => &CollectorSpec {
                name: "finality",
                calls: r#"`eth_getBlockByNumber("finalized", false)`, `eth_getBlockByNumber("safe", false)`"#,
                interval: EVERY,
                switch: Switch::Flag("Finality collector: finalized and safe block numbers."),
            },
            ElCollector::Sync => &CollectorSpec {
                name: "sync",
                calls: "`eth_syncing`",
                interval: EVERY,
                switch: Switch::Flag("Sync collector: eth_syncing."),
            },
            ElCollector::Peers => &CollectorSpec {
                name: "peers",
                calls: "`net_peerCount`",
                interval: EVERY,
                switch: Switch::Flag("Peers collector: net_peerCount."),
            },
            ElCollector::Txpool => &CollectorSpec {
                name: "txpool",
                calls: "`txpool_status`",
                interval: EVERY,
                switch: Switch::Flag("Transaction pool collector: txpool_status."),
            },
            ElCollector::Info => &CollectorSpec {
                name: "info",
                calls: "`eth_chainId`, `net_version`, `web3_clientVersion`",
                interval: "`--info-interval` (5 m)",
                switch: Switch::Flag("Info collector: chain id, network id, client version."),
            },
        }
    }
}

impl ElCollector {
    /// The calls this collector adds to a poll batch.
    pub fn calls(self) -> Vec<Call> {
        let block = |tag: &str| Call::new("eth_getBlockByNumber", json!([tag, false]));
        let bare = |m: &'static str| Call::new(m, json!([]));
        match self {
            ElCollector::Head => vec![block("latest")],
            ElCollector::Finality => vec![block("finalized"), block("safe")],
            ElCollector::Sync => vec![bare("eth_syncing")],
            ElCollector::Peers => vec![bare("net_peerCount")],
            ElCollector::Txpool => vec![bare("txpool_status")],
            ElCollector::Info => {
                vec![
                    bare("eth_chainId"),
                    bare("net_version"),
                    bare("web3_clientVersion"),
                ]
            }
        }
    }

    /// Whether a node may lack this collector's methods (-32601): they are dropped from the
    /// batch while found unsupported, and re-probed.
    pub(crate) fn optional(self) -> bool {
        !matches!(self, ElCollector::Head | ElCollector::Finality)
    }
}

/// Which collectors run (the `--collector.*` flags).
pub type Enabled = Collectors<ElCollector>;

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/execution.md` lists the collectors as the table declares them
    /// (`ETHWATCH_BLESS=1` rewrites it).
    #[test]
    fn docs_list_the_collector_table() {
        let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/execution.md");
        ethwatch_core::collectors::check_doc_table::<ElCollector>(&doc)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn every_collector_has_calls_and_a_flag() {
        for &c in ElCollector::ALL {
            assert!(!c.calls().is_empty(), "{c:?}");
            assert!(matches!(c.spec().switch, Switch::Flag(_)), "{c:?}");
            assert_eq!(ElCollector::by_name(c.name()), Some(c));
        }
    }
}
