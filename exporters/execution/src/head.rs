//! Following the chain head: new blocks, missed blocks, intervals and reorgs.
//!
//! [`HeadTracker`] keeps a window of recent `(number, hash, timestamp)` entries. Given a new
//! head it walks the head's ancestry back to a block it knows, fetching missing parents by number
//! in bounded batches, and reports how many heights the chain grew by, the timestamp intervals
//! between the new blocks, and the depth of a reorg when the old head is not an ancestor.
//!
//! # Counting each height once
//!
//! The tracker keeps the highest height it has counted. A new head adds to the block count (and
//! to the transaction count) only the heights above that mark: after a reorg to a lower height
//! the chain grows back through heights already counted, and those are not counted again (the
//! transactions of a replacing block at such a height are not added; those of the block it
//! replaced stay counted). So `eth_el_blocks_total` grows by exactly the chain's height gain, and
//! a rate of it is the block rate, whatever reorgs happened.

use std::collections::VecDeque;
use std::ops::RangeInclusive;

use alloy_primitives::B256;
use ethwatch_core::upstream::UpstreamError;

use crate::types::Header;

/// Where the tracker fetches blocks it missed: the canonical blocks for a range of numbers,
/// ascending (fewer when the node has fewer).
pub trait BlockSource {
    fn blocks(
        &self,
        range: RangeInclusive<u64>,
    ) -> impl std::future::Future<Output = Result<Vec<Header>, UpstreamError>> + Send;
}

/// A block the tracker remembers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    number: u64,
    hash: B256,
    timestamp: u64,
    /// Transactions in the block, when the header said (a `newHeads` header does not).
    transactions: Option<u64>,
}

/// What a new head meant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Advance {
    /// The head is new (not the current head and not an older block we already passed).
    pub is_new: bool,
    /// Heights above the highest counted so far (new blocks observed, including skipped-over
    /// ones; a height is counted once, whatever reorgs happen).
    pub new_blocks: u64,
    /// Transactions in the blocks at those heights, as far as the tracker saw them (a gap beyond
    /// the backfill bound leaves the unfetched blocks' transactions out).
    pub new_transactions: u64,
    /// Intervals in seconds between consecutive new blocks' timestamps (for fetched blocks).
    pub intervals: Vec<f64>,
    /// Depth of the reorg (old head height minus common ancestor height), if there was one.
    pub reorg_depth: Option<u64>,
    /// The ancestry could not be fully resolved (gap beyond the backfill bound or the node
    /// changed its chain mid-walk); blocks were counted by height difference.
    pub incomplete: bool,
}

/// Tracks the chain head. See the module docs.
#[derive(Debug)]
pub struct HeadTracker {
    window: VecDeque<Entry>,
    capacity: usize,
    max_backfill: u64,
    recent_intervals: VecDeque<u64>,
    /// The highest height counted in `new_blocks` (see the module docs).
    highest: Option<u64>,
}

/// How many recent intervals the learnt expected interval is the median of.
const INTERVAL_SAMPLES: usize = 32;
/// Blocks fetched per step when walking back through a reorg.
const REORG_STEP: u64 = 8;

impl HeadTracker {
    /// `capacity` recent blocks are remembered (reorgs deeper than this are not resolved);
    /// at most `max_backfill` blocks are fetched for one new head.
    pub fn new(capacity: usize, max_backfill: u64) -> Self {
        HeadTracker {
            window: VecDeque::with_capacity(capacity),
            capacity: capacity.max(2),
            max_backfill: max_backfill.max(1),
            recent_intervals: VecDeque::with_capacity(INTERVAL_SAMPLES),
            highest: None,
        }
    }

    /// The current head (number, hash), if any.
    pub fn head(&self) -> Option<(u64, B256)> {
        self.window.back().map(|e| (e.number, e.hash))
    }

    /// The median of recent block intervals, in seconds, once a few were seen.
    pub fn learnt_interval(&self) -> Option<f64> {
        if self.recent_intervals.len() < 3 {
            return None;
        }
        let mut v: Vec<u64> = self.recent_intervals.iter().copied().collect();
        v.sort_unstable();
        Some(v[v.len() / 2] as f64)
    }

    fn known(&self, number: u64) -> Option<&Entry> {
        let first = self.window.front()?.number;
        let idx = number.checked_sub(first)?;
        self.window.get(usize::try_from(idx).ok()?)
    }

    /// Processes a head seen by a poll or a subscription. `fetch` returns the canonical blocks
    /// for a range of numbers, ascending.
    pub async fn advance<S: BlockSource>(
        &mut self,
        head: &Header,
        source: &S,
    ) -> Result<Advance, UpstreamError> {
        let new = Entry {
            number: head.number(),
            hash: head.hash,
            timestamp: head.timestamp(),
            transactions: head.transactions,
        };
        let Some(last) = self.window.back().copied() else {
            self.window.push_back(new);
            self.highest = Some(self.highest.map_or(new.number, |h| h.max(new.number)));
            return Ok(Advance {
                is_new: true,
                ..Advance::default()
            });
        };
        if self.known(new.number).is_some_and(|e| e.hash == new.hash) {
            // The current head again, or an older block of our chain (a poll behind the stream).
            return Ok(Advance::default());
        }

        // Walk back from the head to a block in the window. `segment` is newest first.
        let mut segment: Vec<Entry> = vec![new];
        let mut parent_hash = head.parent_hash;
        let mut fetched: u64 = 0;
        let mut ancestor: Option<Entry> = None;
        let oldest = self.window.front().map_or(0, |e| e.number);
        'walk: loop {
            let cursor = *segment.last().unwrap_or(&new);
            let Some(parent_no) = cursor.number.checked_sub(1) else {
                break;
            };
            if let Some(e) = self.known(parent_no)
                && e.hash == parent_hash
            {
                ancestor = Some(*e);
                break;
            }
            if parent_no < oldest || fetched >= self.max_backfill {
                break;
            }
            let budget = self.max_backfill - fetched;
            let lo = if parent_no > last.number {
                (last.number + 1).max(parent_no + 1 - budget.min(parent_no + 1))
            } else {
                parent_no
                    .saturating_sub(REORG_STEP - 1)
                    .max(oldest)
                    .max(parent_no + 1 - budget.min(parent_no + 1))
            };
            let blocks = source.blocks(lo..=parent_no).await?;
            fetched += parent_no - lo + 1;
            if blocks.len() as u64 != parent_no - lo + 1 {
                break;
            }
            for b in blocks.iter().rev() {
                let expected = segment.last().map_or(0, |c| c.number.saturating_sub(1));
                if b.number() != expected || b.hash != parent_hash {
                    // The node moved to another chain while we walked; stop here.
                    break 'walk;
                }
                segment.push(Entry {
                    number: b.number(),
                    hash: b.hash,
                    timestamp: b.timestamp(),
                    transactions: b.transactions,
                });
                parent_hash = b.parent_hash;
                if let Some(e) = b.number().checked_sub(1).and_then(|n| self.known(n))
                    && e.hash == parent_hash
                {
                    ancestor = Some(*e);
                    break 'walk;
                }
            }
        }

        // Only heights above the highest counted so far are new (see the module docs).
        let counted = self.highest.unwrap_or(last.number).max(last.number);
        let mut out = Advance {
            is_new: true,
            new_blocks: new.number.saturating_sub(counted),
            ..Advance::default()
        };
        self.highest = Some(counted.max(new.number));
        segment.reverse(); // oldest first
        out.new_transactions = segment
            .iter()
            .filter(|e| e.number > counted)
            .filter_map(|e| e.transactions)
            .sum();
        match ancestor {
            Some(a) => {
                if a.number < last.number {
                    out.reorg_depth = Some(last.number - a.number);
                }
                let mut prev = a;
                for e in &segment {
                    if e.number > counted {
                        out.intervals
                            .push(e.timestamp.saturating_sub(prev.timestamp) as f64);
                        self.push_interval(e.timestamp.saturating_sub(prev.timestamp));
                    }
                    prev = *e;
                }
                while self.window.back().is_some_and(|e| e.number > a.number) {
                    self.window.pop_back();
                }
            }
            None => {
                out.incomplete = true;
                for w in segment.windows(2) {
                    if w[1].number > counted {
                        out.intervals
                            .push(w[1].timestamp.saturating_sub(w[0].timestamp) as f64);
                        self.push_interval(w[1].timestamp.saturating_sub(w[0].timestamp));
                    }
                }
                self.window.clear();
            }
        }
        for e in segment {
            self.window.push_back(e);
        }
        while self.window.len() > self.capacity {
            self.window.pop_front();
        }
        Ok(out)
    }

    fn push_interval(&mut self, secs: u64) {
        if self.recent_intervals.len() == INTERVAL_SAMPLES {
            self.recent_intervals.pop_front();
        }
        self.recent_intervals.push_back(secs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Quantity;
    use std::collections::HashMap;

    /// A chain the fake node serves by number; fork `f` gives different hashes.
    fn block(number: u64, fork: u8, parent_fork: u8) -> Header {
        let h = |n: u64, f: u8| {
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&n.to_be_bytes());
            b[8] = f;
            B256::from(b)
        };
        Header {
            number: Quantity(number),
            hash: h(number, fork),
            parent_hash: h(number.saturating_sub(1), parent_fork),
            timestamp: Quantity(1_000 + number * 2),
            gas_used: Quantity(0),
            gas_limit: Quantity(30_000_000),
            base_fee_per_gas: None,
            transactions: Some(0),
        }
    }

    struct Node {
        canonical: HashMap<u64, Header>,
        calls: std::sync::Mutex<Vec<RangeInclusive<u64>>>,
    }

    impl Node {
        fn linear(to: u64) -> Self {
            Node {
                canonical: (0..=to).map(|n| (n, block(n, 0, 0))).collect(),
                calls: Default::default(),
            }
        }
        fn calls(&self) -> Vec<RangeInclusive<u64>> {
            self.calls.lock().expect("lock").clone()
        }
    }

    impl BlockSource for Node {
        async fn blocks(&self, r: RangeInclusive<u64>) -> Result<Vec<Header>, UpstreamError> {
            self.calls.lock().expect("lock").push(r.clone());
            Ok(r.filter_map(|n| self.canonical.get(&n).cloned()).collect())
        }
    }

    async fn adv(t: &mut HeadTracker, node: &mut Node, n: u64) -> Advance {
        let head = node.canonical[&n].clone();
        t.advance(&head, &*node).await.expect("advance")
    }

    #[tokio::test]
    async fn consecutive_heads_need_no_fetch() {
        let mut node = Node::linear(10);
        let mut t = HeadTracker::new(64, 32);
        assert_eq!(adv(&mut t, &mut node, 5).await.new_blocks, 0);
        let a = adv(&mut t, &mut node, 6).await;
        assert_eq!(
            (a.new_blocks, a.intervals.clone(), a.reorg_depth),
            (1, vec![2.0], None)
        );
        assert!(node.calls().is_empty());
        // The same head again and an older one are not new.
        assert!(!adv(&mut t, &mut node, 6).await.is_new);
        assert!(!adv(&mut t, &mut node, 5).await.is_new);
    }

    #[tokio::test]
    async fn skipped_blocks_are_fetched_and_counted() {
        let mut node = Node::linear(20);
        let mut t = HeadTracker::new(64, 32);
        adv(&mut t, &mut node, 5).await;
        let a = adv(&mut t, &mut node, 9).await;
        assert_eq!(a.new_blocks, 4);
        assert_eq!(a.intervals, vec![2.0; 4]);
        assert!(!a.incomplete);
        assert_eq!(node.calls(), vec![6..=8]);
    }

    #[tokio::test]
    async fn a_gap_beyond_the_bound_counts_by_height() {
        let mut node = Node::linear(200);
        let mut t = HeadTracker::new(64, 10);
        adv(&mut t, &mut node, 5).await;
        let a = adv(&mut t, &mut node, 105).await;
        assert_eq!(a.new_blocks, 100);
        assert!(a.incomplete);
        assert_eq!(a.intervals.len(), 10);
        assert_eq!(node.calls(), vec![95..=104]);
        // The tracker continues from the new head.
        let b = adv(&mut t, &mut node, 106).await;
        assert_eq!((b.new_blocks, b.incomplete), (1, false));
    }

    #[tokio::test]
    async fn reorg_depth_is_measured() {
        let mut node = Node::linear(10);
        let mut t = HeadTracker::new(64, 32);
        for n in 5..=10 {
            adv(&mut t, &mut node, n).await;
        }
        // Blocks 9 and 10 are replaced by fork 1 blocks 9, 10, 11.
        node.canonical.insert(9, block(9, 1, 0));
        node.canonical.insert(10, block(10, 1, 1));
        node.canonical.insert(11, block(11, 1, 1));
        let a = adv(&mut t, &mut node, 11).await;
        assert_eq!(a.reorg_depth, Some(2));
        assert_eq!(a.new_blocks, 1);
        assert_eq!(t.head().map(|h| h.0), Some(11));
        // The next block on the new fork is an ordinary step.
        node.canonical.insert(12, block(12, 1, 1));
        let b = adv(&mut t, &mut node, 12).await;
        assert_eq!((b.new_blocks, b.reorg_depth), (1, None));
    }

    #[tokio::test]
    async fn same_height_reorg() {
        let mut node = Node::linear(10);
        let mut t = HeadTracker::new(64, 32);
        for n in 8..=10 {
            adv(&mut t, &mut node, n).await;
        }
        node.canonical.insert(10, block(10, 1, 0));
        let a = adv(&mut t, &mut node, 10).await;
        assert_eq!((a.new_blocks, a.reorg_depth), (0, Some(1)));
    }

    #[tokio::test]
    async fn a_reorg_to_a_lower_height_counts_no_height_twice() {
        let mut node = Node::linear(10);
        let mut t = HeadTracker::new(64, 32);
        let mut blocks = 0;
        for n in 0..=10 {
            blocks += adv(&mut t, &mut node, n).await.new_blocks;
        }
        assert_eq!(blocks, 10);
        // The node drops back to a fork from 4 (a revert), at height 5 ...
        for n in 5..=14 {
            node.canonical
                .insert(n, block(n, 1, if n == 5 { 0 } else { 1 }));
        }
        let a = adv(&mut t, &mut node, 5).await;
        assert_eq!((a.is_new, a.new_blocks, a.reorg_depth), (true, 0, Some(6)));
        // ... and grows again through heights 6..=10 (counted before) to 14.
        for n in 6..=14 {
            blocks += adv(&mut t, &mut node, n).await.new_blocks;
        }
        assert_eq!(
            blocks, 14,
            "each height once: the chain is 14 blocks above genesis"
        );
    }

    #[tokio::test]
    async fn transactions_of_new_heights_are_counted_once() {
        let mut node = Node::linear(10);
        for n in 0..=10 {
            node.canonical.get_mut(&n).expect("block").transactions = Some(n);
        }
        let mut t = HeadTracker::new(64, 32);
        assert_eq!(adv(&mut t, &mut node, 5).await.new_transactions, 0);
        assert_eq!(adv(&mut t, &mut node, 6).await.new_transactions, 6);
        // Skipped blocks 7 and 8 are fetched and counted with the head 9.
        assert_eq!(adv(&mut t, &mut node, 9).await.new_transactions, 7 + 8 + 9);
        // A same-height reorg of 9: the replacing block's transactions are not added.
        let mut b = block(9, 1, 0);
        b.transactions = Some(100);
        node.canonical.insert(9, b);
        assert_eq!(adv(&mut t, &mut node, 9).await.new_transactions, 0);
        let mut b = block(10, 1, 1);
        b.transactions = Some(3);
        node.canonical.insert(10, b);
        assert_eq!(adv(&mut t, &mut node, 10).await.new_transactions, 3);
    }

    #[tokio::test]
    async fn learns_the_interval() {
        let mut node = Node::linear(10);
        let mut t = HeadTracker::new(64, 32);
        assert_eq!(t.learnt_interval(), None);
        for n in 1..=6 {
            adv(&mut t, &mut node, n).await;
        }
        assert_eq!(t.learnt_interval(), Some(2.0));
    }
}
