//! Whether the nodes agree: pure functions over one cycle's observations.

use std::collections::HashMap;

use alloy_primitives::B256;

/// What one node looked like in a cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    /// Answered and not syncing.
    Up,
    /// Answered and syncing.
    Syncing,
    /// Did not answer (or answered garbage).
    Down,
}

impl NodeStatus {
    /// The `state` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Up => "up",
            NodeStatus::Syncing => "syncing",
            NodeStatus::Down => "down",
        }
    }
}

/// One node's head (number or slot, hash or root).
pub type Head = (u64, B256);

/// The outcome of comparing one layer's nodes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Agreement {
    /// The highest height every answering node has reached.
    pub common_height: Option<u64>,
    /// Highest head minus lowest head among answering nodes.
    pub spread: Option<u64>,
    /// Distinct hashes at the common height among nodes whose hash there is known.
    pub distinct: usize,
    /// Per node: whether its hash at the common height is the majority's. A node whose hash is
    /// unknown is left out. With a tie for the most nodes there is no majority and every node
    /// reports 0.
    pub on_majority: Vec<(String, bool)>,
}

/// The height the nodes are compared at: the lowest head among nodes that answered.
pub fn common_height<'a>(heads: impl IntoIterator<Item = &'a Option<Head>>) -> Option<u64> {
    heads.into_iter().flatten().map(|(n, _)| *n).min()
}

/// Compares hashes at the common height. `at_common` holds, per node, its head and its hash at
/// the common height when known.
pub fn agree(nodes: &[(String, Option<Head>, Option<B256>)]) -> Agreement {
    let common = common_height(nodes.iter().map(|(_, h, _)| h));
    let max = nodes
        .iter()
        .filter_map(|(_, h, _)| *h)
        .map(|(n, _)| n)
        .max();
    let mut counts: HashMap<B256, usize> = HashMap::new();
    for (_, _, at) in nodes {
        if let Some(h) = at {
            *counts.entry(*h).or_default() += 1;
        }
    }
    let top = counts.values().copied().max().unwrap_or(0);
    let leaders: Vec<B256> = counts
        .iter()
        .filter(|(_, c)| **c == top)
        .map(|(h, _)| *h)
        .collect();
    let majority = (leaders.len() == 1).then(|| leaders[0]);
    Agreement {
        common_height: common,
        spread: match (max, common) {
            (Some(a), Some(b)) => Some(a - b),
            _ => None,
        },
        distinct: counts.len(),
        on_majority: nodes
            .iter()
            .filter_map(|(name, _, at)| at.map(|h| (name.clone(), Some(h) == majority)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(b: u8) -> B256 {
        B256::repeat_byte(b)
    }

    #[test]
    fn all_agree() {
        let a = agree(&[
            ("a".into(), Some((10, h(1))), Some(h(1))),
            ("b".into(), Some((12, h(2))), Some(h(1))),
        ]);
        assert_eq!(a.common_height, Some(10));
        assert_eq!(a.spread, Some(2));
        assert_eq!(a.distinct, 1);
        assert!(a.on_majority.iter().all(|(_, m)| *m));
    }

    #[test]
    fn a_split_with_a_majority() {
        let a = agree(&[
            ("a".into(), Some((10, h(1))), Some(h(1))),
            ("b".into(), Some((10, h(1))), Some(h(1))),
            ("c".into(), Some((10, h(9))), Some(h(9))),
            ("down".into(), None, None),
        ]);
        assert_eq!(a.distinct, 2);
        assert_eq!(
            a.on_majority,
            vec![("a".into(), true), ("b".into(), true), ("c".into(), false)]
        );
    }

    #[test]
    fn a_tie_has_no_majority() {
        let a = agree(&[
            ("a".into(), Some((10, h(1))), Some(h(1))),
            ("b".into(), Some((10, h(2))), Some(h(2))),
        ]);
        assert_eq!(a.distinct, 2);
        assert!(a.on_majority.iter().all(|(_, m)| !*m));
    }

    #[test]
    fn nothing_answered() {
        let a = agree(&[("a".into(), None, None)]);
        assert_eq!((a.common_height, a.spread, a.distinct), (None, None, 0));
        assert!(a.on_majority.is_empty());
    }
}
