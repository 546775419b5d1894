//! The consensus exporter's collectors: the one table a collector is added to.
//!
//! A collector is a variant of [`ClCollector`] with its row in [`Collector::spec`] (name, what it
//! asks, how often, whether a `--collector.*` flag switches it); the poller runs it on its
//! schedule and records its runs under its name. The flags, the `collector` label of the
//! self-metrics and the table in `docs/consensus.md` all come from here.

use ethwatch_core::collectors::{Collector, CollectorSpec, Collectors, Switch};

/// The consensus exporter's collectors: the one table the `--collector.*` flags, the
/// `collector` label of the self-metrics, the landing page and the table in `docs/consensus.md`
/// come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClCollector {
    Sync,
    Health,
    Head,
    Finality,
    Peers,
    Clock,
    Info,
    Validators,
    Participation,
    Proposals,
    Events,
}

impl Collector for ClCollector {
    const ALL: &'static [Self] = &[
        ClCollector::Sync,
        ClCollector::Health,
        ClCollector::Head,
        ClCollector::Finality,
        ClCollector::Peers,
        ClCollector::Clock,
        ClCollector::Info,
        ClCollector::Validators,
        ClCollector::Participation,
        ClCollector::Proposals,
        ClCollector::Events,
    ];

    fn spec(self) -> &'static CollectorSpec {
        const FULL: &str = "every full cycle";
        const EPOCH: &str = "once per epoch";
        match self {
            ClCollector::Sync => &CollectorSpec {
                name: "sync",
                calls: "`GET /eth/v1/node/syncing`",
                interval: "every full cycle, first; its answer is `eth_cl_up`",
                switch: Switch::Always,
            },
            ClCollector::Health => &CollectorSpec {
                name: "health",
                calls: "`GET /eth/v1/node/health` (200, 206 and 503 are answers, not errors)",
                interval: FULL,
                switch: Switch::Always,
            },
            ClCollector::Head => &CollectorSpec {
                name: "head",
                calls: "`GET /eth/v1/beacon/headers/head` (every full cycle without a live event \
                        stream);<br>`GET /eth/v2/beacon/blocks/{root}` once per new head (event or \
                        poll), for its execution block number and parent;<br>before Bellatrix \
                        (`BELLATRIX_FORK_EPOCH` of the spec) a block has no execution payload: \
                        `GET /eth/v1/beacon/headers/{root}` (its parent) instead, and not even that \
                        for a head in the slot right after the previous head;<br>\
                        `GET /eth/v1/beacon/headers/{root}` per parent walked over a gap (at most \
                        `--max-backfill`)",
                interval: "per new head; a full cycle without a live event stream",
                switch: Switch::Always,
            },
            ClCollector::Finality => &CollectorSpec {
                name: "finality",
                calls: "`GET /eth/v1/beacon/states/head/finality_checkpoints`",
                interval: "every full cycle without a live event stream; with one, once the head \
                           enters a new epoch (checkpoints change only at epoch processing) and \
                           after a reorg",
                switch: Switch::Always,
            },
            ClCollector::Peers => &CollectorSpec {
                name: "peers",
                calls: "`GET /eth/v1/node/peer_count`, then `GET /eth/v1/node/peers?state=connected` \
                        unless no peer is connected",
                interval: "`--peers-interval`, on a full cycle",
                switch: Switch::Flag(
                    "Peers collector: peer counts by state and connected peers by direction.",
                ),
            },
            ClCollector::Clock => &CollectorSpec {
                name: "clock",
                calls: "`GET /eth/v1/beacon/genesis`, `GET /eth/v1/config/spec`",
                interval: "start, `--info-interval`, and when the node answers again after a failure",
                switch: Switch::Always,
            },
            ClCollector::Info => &CollectorSpec {
                name: "info",
                calls: "`GET /eth/v1/node/version`",
                interval: "`--info-interval`",
                switch: Switch::Always,
            },
            ClCollector::Validators => &CollectorSpec {
                name: "validators",
                calls: "`GET /eth/v1/beacon/states/head/validators` (64 ids per request with \
                        `--validators.id`)",
                interval: EPOCH,
                switch: Switch::Flag(
                    "Validators collector: counts by status, balance and participation, once per \
                     epoch. Switch it off (or narrow it with --validators.id) on very large \
                     networks.",
                ),
            },
            ClCollector::Participation => &CollectorSpec {
                name: "participation",
                calls: "`POST /eth/v1/beacon/rewards/attestations/{epoch}`, else \
                        `GET /eth/v1/beacon/headers/{slot}` (back to the epoch's last block) and \
                        `GET /eth/v2/debug/beacon/states/{slot}`",
                interval: "once per epoch, also after a failure",
                switch: Switch::Follows("validators"),
            },
            ClCollector::Proposals => &CollectorSpec {
                name: "proposals",
                calls: "only with `--validators.id`: `GET /eth/v1/validator/duties/proposer/{epoch}`, \
                        then `GET /eth/v1/beacon/headers/{slot}` per duty of a watched validator \
                        (404, an empty slot, is an answer)",
                interval: "duties once per epoch; each duty once, a slot after its slot",
                switch: Switch::Follows("validators"),
            },
            ClCollector::Events => &CollectorSpec {
                name: "events",
                calls: "`GET /eth/v1/events?topics=head&topics=block&topics=chain_reorg&topics=finalized_checkpoint`",
                interval: "one long-lived connection",
                switch: Switch::Flag(
                    "Event stream collector: the head the moment the node has it, reorgs, \
                     finality.",
                ),
            },
        }
    }
}

/// Which collectors run (the `--collector.*` flags).
pub type Enabled = Collectors<ClCollector>;

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/consensus.md` lists the collectors as the table declares them
    /// (`ETHWATCH_BLESS=1` rewrites it).
    #[test]
    fn docs_list_the_collector_table() {
        let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/consensus.md");
        ethwatch_core::collectors::check_doc_table::<ClCollector>(&doc)
            .unwrap_or_else(|e| panic!("{e}"));
    }
}
