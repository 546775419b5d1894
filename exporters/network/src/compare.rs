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

/// A split or heal of one layer, for the one log line each gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitChange {
    /// The nodes now disagree at the common height: the distinct heads, each with its nodes.
    Split { height: u64, heads: String },
    /// They agree again at the common height.
    Healed { height: u64, head: String },
}

/// Remembers whether a layer is split, so a split and its heal are logged once each, not at
/// every cycle.
#[derive(Debug, Default)]
pub struct SplitWatch {
    split: bool,
}

impl SplitWatch {
    /// The change this cycle's comparison makes, if any. A cycle where no two nodes could be
    /// compared (nothing answered) changes nothing.
    pub fn observe(
        &mut self,
        a: &Agreement,
        nodes: &[(String, Option<Head>, Option<B256>)],
    ) -> Option<SplitChange> {
        let height = a.common_height?;
        match (self.split, a.distinct) {
            (false, d) if d > 1 => {
                self.split = true;
                Some(SplitChange::Split {
                    height,
                    heads: describe_heads(nodes),
                })
            }
            (true, 1) => {
                self.split = false;
                Some(SplitChange::Healed {
                    height,
                    head: describe_heads(nodes),
                })
            }
            _ => None,
        }
    }
}

/// The distinct hashes at the common height, each with the nodes on it and their own heads:
/// `0x1234…abcd: el-1 (head 60), el-2 (head 61); 0x5678…ef01: el-3 (head 58)`, in a stable
/// order (most nodes first, then by hash).
pub fn describe_heads(nodes: &[(String, Option<Head>, Option<B256>)]) -> String {
    let mut groups: Vec<(B256, Vec<String>)> = Vec::new();
    for (name, head, at) in nodes {
        let Some(hash) = at else { continue };
        let who = match head {
            Some((n, _)) => format!("{name} (head {n})"),
            None => name.clone(),
        };
        match groups.iter_mut().find(|(h, _)| h == hash) {
            Some((_, v)) => v.push(who),
            None => groups.push((*hash, vec![who])),
        }
    }
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    groups
        .iter()
        .map(|(h, v)| {
            let hex = format!("{h:#x}");
            let short = if *h == B256::ZERO {
                "empty slot".to_string()
            } else {
                format!("{}…{}", &hex[..6], &hex[hex.len() - 4..])
            };
            format!("{short}: {}", v.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
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

    #[test]
    fn a_split_and_its_heal_are_reported_once_each() {
        let mut w = SplitWatch::default();
        let nodes = |b: u8| {
            vec![
                ("el-1".to_string(), Some((10, h(1))), Some(h(1))),
                ("el-2".to_string(), Some((11, h(9))), Some(h(1))),
                ("el-3".to_string(), Some((10, h(b))), Some(h(b))),
            ]
        };
        let agreeing = nodes(1);
        assert_eq!(w.observe(&agree(&agreeing), &agreeing), None);
        let split = nodes(2);
        let change = w.observe(&agree(&split), &split);
        let Some(SplitChange::Split { height, heads }) = change else {
            panic!("a split: {change:?}");
        };
        assert_eq!(height, 10);
        assert_eq!(
            heads,
            "0x0101…0101: el-1 (head 10), el-2 (head 11); 0x0202…0202: el-3 (head 10)"
        );
        // Still split: nothing more; nothing answered: nothing either.
        assert_eq!(w.observe(&agree(&split), &split), None);
        let none: Vec<(String, Option<Head>, Option<B256>)> = vec![("el-1".into(), None, None)];
        assert_eq!(w.observe(&agree(&none), &none), None);
        let change = w.observe(&agree(&agreeing), &agreeing);
        assert!(
            matches!(&change, Some(SplitChange::Healed { height: 10, head }) if head.starts_with("0x0101…0101: el-1")),
            "{change:?}"
        );
        assert_eq!(w.observe(&agree(&agreeing), &agreeing), None);
    }
}
