//! Following the beacon chain head: new blocks and missed slots.
//!
//! # Missed slots, exactly
//!
//! A slot is *missed* when it passed with no block on the canonical chain. The tracker keeps a
//! *decided* mark: every slot up to it has been classified exactly once, as a block
//! (`eth_cl_blocks_total`) or as missed (`eth_cl_missed_slots_total`). Slots are decided in two
//! ways, and the mark makes sure no slot is counted twice:
//!
//! 1. **By a new head.** When the head moves to slot `h` above the mark `d`, the new head's
//!    ancestry is walked back (by parent root, fetching at most `max_backfill` headers) to a
//!    block at or below `d`. The blocks found in `(d, h)` are counted as blocks, the other slots
//!    of `(d, h)` as missed, and the mark moves to `h`. When the walk cannot reach `d` within the
//!    bound, the unreached slots stay unclassified (reported as `unresolved`, not counted).
//! 2. **By the clock.** While the node is following the chain tip (its last new head arrived
//!    within two slots of the wall clock), a slot `s` above the mark is counted missed once the
//!    clock reaches slot `s + 2`, i.e. after a full slot of grace for a late block. A node that is
//!    syncing (heads arriving far behind the clock), or that the exporter has not yet seen at the
//!    tip, does not turn its backlog into missed slots.
//!
//! A block that becomes head for a slot already decided (a block later than the grace, or a
//! reorg onto a block at or below the mark) changes no count: every slot is counted exactly once,
//! as the chain looked when it was decided. After a reorg the counters describe the canonical
//! chain for every slot decided since, and keep the first classification of the slots decided
//! before it (counters never go back): `eth_cl_blocks_total + eth_cl_missed_slots_total` never
//! exceeds the slots decided.
//!
//! # Reorgs
//!
//! A head that does not descend from the previous head is a reorg. Its depth is measured as on
//! the execution side: the blocks of the chain followed so far above the common ancestor (the
//! old head minus the common ancestor, in blocks), found by walking the new head's ancestry back
//! (within `max_backfill` headers) to a block the tracker remembers. The node's own
//! `chain_reorg` events are not used for it: clients compute their `depth` differently.

use std::collections::VecDeque;

use ethwatch_core::upstream::UpstreamError;

use crate::types::Root;

/// A block header's identity and parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderInfo {
    pub slot: u64,
    pub root: Root,
    pub parent_root: Root,
}

/// Where the tracker fetches the headers it walks back through.
pub trait HeaderSource {
    fn header(
        &self,
        root: Root,
    ) -> impl std::future::Future<Output = Result<HeaderInfo, UpstreamError>> + Send;
}

/// A head as the node reported it. `parent_root` is unknown when only the event was seen and
/// fetching the block failed; then a gap in slots is taken as missed slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub slot: u64,
    pub root: Root,
    pub parent_root: Option<Root>,
}

/// What a new head meant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The head was not seen before.
    pub is_new: bool,
    /// Blocks to add to `eth_cl_blocks_total`: the head and the blocks found between it and the
    /// mark.
    pub new_blocks: u64,
    /// Slots classified missed.
    pub missed: u64,
    /// Slots the walk could not reach within its bound; not classified.
    pub unresolved: u64,
    /// The head's slot was already decided (late block or reorg below the mark): nothing is
    /// counted for it.
    pub late: bool,
    /// The head does not descend from the previous head: blocks of the previous chain above the
    /// common ancestor (unknown when the ancestor is beyond the walk or the window).
    pub reorg_depth: Option<u64>,
}

/// How far behind the clock (in slots) a head may arrive for the node to count as at the tip.
const TIP_TOLERANCE: u64 = 2;
/// Slots of grace after a slot ends before the clock decides it was missed.
const CLOCK_GRACE: u64 = 2;

/// Tracks the head. See the module docs.
#[derive(Debug)]
pub struct HeadTracker {
    /// Recent blocks of the chain as followed, ascending by slot.
    window: VecDeque<(u64, Root)>,
    capacity: usize,
    max_backfill: u64,
    decided: Option<u64>,
    at_tip: bool,
}

impl HeadTracker {
    /// Remembers `capacity` recent blocks; fetches at most `max_backfill` headers per new head.
    pub fn new(capacity: usize, max_backfill: u64) -> Self {
        HeadTracker {
            window: VecDeque::with_capacity(capacity.max(2)),
            capacity: capacity.max(2),
            max_backfill,
            decided: None,
            at_tip: false,
        }
    }

    /// Forgets everything (the node moved to another chain, e.g. a new genesis).
    pub fn reset(&mut self) {
        self.window.clear();
        self.decided = None;
        self.at_tip = false;
    }

    /// The current head (slot, root).
    pub fn head(&self) -> Option<(u64, Root)> {
        self.window.back().copied()
    }

    /// The highest decided slot.
    pub fn decided(&self) -> Option<u64> {
        self.decided
    }

    /// Whether `root` would be news: not the head and not a block of the chain followed so far
    /// (a poll answering after the stream already moved on).
    pub fn is_new(&self, root: &Root) -> bool {
        !self.window.iter().any(|(_, r)| r == root)
    }

    fn position(&self, root: &Root) -> Option<usize> {
        self.window.iter().rposition(|(_, r)| r == root)
    }

    /// Processes a head. `clock_slot` is the wall-clock slot when it was seen; with `may_walk`
    /// false (the node is syncing) no header is fetched and a gap stays unresolved.
    pub async fn advance<S: HeaderSource>(
        &mut self,
        seen: Seen,
        clock_slot: Option<u64>,
        source: &S,
        may_walk: bool,
    ) -> Result<Outcome, UpstreamError> {
        if !self.is_new(&seen.root) {
            return Ok(Outcome::default());
        }
        let at_tip = clock_slot.is_some_and(|c| c <= seen.slot + TIP_TOLERANCE);
        let Some(decided) = self.decided else {
            self.window.push_back((seen.slot, seen.root));
            self.decided = Some(seen.slot);
            self.at_tip = at_tip;
            return Ok(Outcome {
                is_new: true,
                ..Outcome::default()
            });
        };
        let mut out = Outcome {
            is_new: true,
            ..Outcome::default()
        };

        // Walk back from the head to a block of the window: the common ancestor with the chain
        // followed so far. `chain` holds the fetched blocks, newest first.
        let mut chain: Vec<(u64, Root)> = Vec::new();
        let mut ancestor: Option<usize> = None;
        match seen.parent_root {
            // Only the event is known: the head is taken as a child of the current head, and
            // the slots in between as missed.
            None => ancestor = self.window.len().checked_sub(1),
            Some(mut parent) => {
                let oldest = self.window.front().map(|(s, _)| *s);
                let mut child_slot = seen.slot;
                let mut fetched = 0;
                loop {
                    if let Some(i) = self.position(&parent) {
                        ancestor = Some(i);
                        break;
                    }
                    // Older than the window: no common ancestor can be found.
                    let below_window = chain
                        .last()
                        .is_some_and(|(s, _)| oldest.is_none_or(|o| *s <= o));
                    if below_window || !may_walk || fetched >= self.max_backfill {
                        break;
                    }
                    let h = source.header(parent).await?;
                    fetched += 1;
                    if h.root != parent || h.slot >= child_slot {
                        return Err(UpstreamError::decode(format!(
                            "header {parent} answered as slot {} root {} under a child at slot {child_slot}",
                            h.slot, h.root
                        )));
                    }
                    chain.push((h.slot, h.root));
                    child_slot = h.slot;
                    parent = h.parent_root;
                }
            }
        }
        // The classification of the slots above the mark is known once the walk reached a block
        // at or below it (every block of the window is).
        let resolved = seen.parent_root.is_none()
            || ancestor.is_some()
            || chain.last().is_some_and(|(s, _)| *s <= decided);
        if seen.slot <= decided {
            // The head's slot is decided already (a late block, or a reorg onto a block at or
            // below the mark): no slot is counted again.
            out.late = true;
        } else {
            let between = chain.iter().filter(|(s, _)| *s > decided).count() as u64;
            out.new_blocks = 1 + between;
            let gap = seen.slot - decided - 1;
            let classified = gap.saturating_sub(between);
            if resolved {
                out.missed = classified;
            } else {
                out.unresolved = classified;
            }
            self.decided = Some(seen.slot);
        }
        // A reorg: the head does not descend from the previous head. Its depth is counted like
        // the execution side's, in blocks: those of the chain followed so far above the common
        // ancestor (old head minus common ancestor).
        if let Some(i) = ancestor
            && i + 1 < self.window.len()
        {
            out.reorg_depth = Some((self.window.len() - 1 - i) as u64);
        }
        match ancestor {
            Some(i) => self.window.truncate(i + 1),
            None => self.window.clear(),
        }
        for (slot, root) in chain.into_iter().rev() {
            self.push(slot, root);
        }
        self.push(seen.slot, seen.root);
        self.at_tip = at_tip;
        Ok(out)
    }

    fn push(&mut self, slot: u64, root: Root) {
        self.window.push_back((slot, root));
        while self.window.len() > self.capacity {
            self.window.pop_front();
        }
    }

    /// Lets the clock decide slots that passed with no head; returns how many were missed.
    pub fn on_clock(&mut self, clock_slot: u64) -> u64 {
        if !self.at_tip {
            return 0;
        }
        let Some(decided) = self.decided else {
            return 0;
        };
        let limit = clock_slot.saturating_sub(CLOCK_GRACE);
        if limit > decided {
            self.decided = Some(limit);
            limit - decided
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    fn root(slot: u64, fork: u8) -> Root {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&slot.to_be_bytes());
        b[8] = fork;
        b[31] = 1;
        Root(b)
    }

    /// A chain of blocks at the given slots (fork 0), served by root.
    #[derive(Default)]
    struct Chain {
        headers: HashMap<Root, HeaderInfo>,
        fetches: Mutex<u64>,
    }

    impl Chain {
        fn with(slots: &[u64], fork: u8, base: Option<Root>) -> Self {
            let mut c = Chain::default();
            c.extend(slots, fork, base);
            c
        }
        fn extend(&mut self, slots: &[u64], fork: u8, base: Option<Root>) {
            let mut parent = base.unwrap_or_default();
            for &s in slots {
                let h = HeaderInfo {
                    slot: s,
                    root: root(s, fork),
                    parent_root: parent,
                };
                self.headers.insert(h.root, h);
                parent = h.root;
            }
        }
        fn seen(&self, slot: u64, fork: u8) -> Seen {
            let h = self.headers[&root(slot, fork)];
            Seen {
                slot,
                root: h.root,
                parent_root: Some(h.parent_root),
            }
        }
        fn fetches(&self) -> u64 {
            *self.fetches.lock().expect("lock")
        }
    }

    impl HeaderSource for Chain {
        async fn header(&self, root: Root) -> Result<HeaderInfo, UpstreamError> {
            *self.fetches.lock().expect("lock") += 1;
            self.headers
                .get(&root)
                .copied()
                .ok_or_else(|| UpstreamError::HttpStatus {
                    status: 404,
                    snippet: "not found".into(),
                })
        }
    }

    async fn adv(t: &mut HeadTracker, c: &Chain, slot: u64, clock: u64) -> Outcome {
        t.advance(c.seen(slot, 0), Some(clock), c, true)
            .await
            .expect("advance")
    }

    #[tokio::test]
    async fn consecutive_heads_count_blocks_and_no_missed() {
        let c = Chain::with(&[1, 2, 3, 4], 0, None);
        let mut t = HeadTracker::new(64, 8);
        let first = adv(&mut t, &c, 1, 1).await;
        assert_eq!((first.is_new, first.new_blocks), (true, 0));
        for s in 2..=4 {
            let o = adv(&mut t, &c, s, s).await;
            assert_eq!((o.new_blocks, o.missed, o.unresolved), (1, 0, 0));
            assert_eq!(t.on_clock(s), 0);
        }
        assert_eq!(c.fetches(), 0, "parents were known");
        // The same head again, and an older one from a slow poll, are not news.
        assert!(!adv(&mut t, &c, 4, 4).await.is_new);
        assert!(!adv(&mut t, &c, 3, 5).await.is_new);
    }

    #[tokio::test]
    async fn a_skipped_slot_on_the_stream_is_missed_without_fetching() {
        let c = Chain::with(&[1, 2, 4], 0, None);
        let mut t = HeadTracker::new(64, 8);
        adv(&mut t, &c, 1, 1).await;
        adv(&mut t, &c, 2, 2).await;
        let o = adv(&mut t, &c, 4, 4).await;
        assert_eq!((o.new_blocks, o.missed), (1, 1));
        assert_eq!(c.fetches(), 0);
    }

    #[tokio::test]
    async fn a_gap_seen_by_polling_is_walked_back() {
        // Blocks at 1, 2, 3, 5, 6; the exporter saw 1 then 6 (stream down).
        let c = Chain::with(&[1, 2, 3, 5, 6], 0, None);
        let mut t = HeadTracker::new(64, 8);
        adv(&mut t, &c, 1, 1).await;
        let o = adv(&mut t, &c, 6, 6).await;
        assert_eq!((o.new_blocks, o.missed, o.unresolved), (4, 1, 0));
        assert_eq!(c.fetches(), 3, "5, 3 and 2 fetched; 1 is known");
        assert_eq!(t.decided(), Some(6));
    }

    #[tokio::test]
    async fn a_walk_beyond_the_bound_leaves_slots_unresolved() {
        let slots: Vec<u64> = (1..=40).collect();
        let c = Chain::with(&slots, 0, None);
        let mut t = HeadTracker::new(64, 4);
        adv(&mut t, &c, 1, 1).await;
        let o = adv(&mut t, &c, 40, 40).await;
        assert_eq!((o.new_blocks, o.missed, o.unresolved), (5, 0, 34));
        assert_eq!(c.fetches(), 4);
        // It carries on from the new head.
        let mut c2 = c;
        c2.extend(&[41], 0, Some(root(40, 0)));
        let o = adv(&mut t, &c2, 41, 41).await;
        assert_eq!((o.new_blocks, o.missed), (1, 0));
    }

    #[tokio::test]
    async fn the_clock_decides_missed_slots_at_the_tip_only_once() {
        let mut c = Chain::with(&[1, 2, 3], 0, None);
        let mut t = HeadTracker::new(64, 8);
        for s in 1..=3 {
            adv(&mut t, &c, s, s).await;
        }
        // The chain stalls: slot 4 is missed once the clock reaches 6, and so on.
        assert_eq!(t.on_clock(4), 0);
        assert_eq!(t.on_clock(5), 0);
        assert_eq!(t.on_clock(6), 1);
        assert_eq!(t.on_clock(6), 0);
        assert_eq!(t.on_clock(9), 3);
        assert_eq!(t.decided(), Some(7));
        // The chain resumes at 10: 8 and 9 are missed now, 4..=7 are not counted again.
        c.extend(&[10], 0, Some(root(3, 0)));
        let o = adv(&mut t, &c, 10, 10).await;
        assert_eq!((o.new_blocks, o.missed), (1, 2));
        assert_eq!(c.fetches(), 0);
    }

    #[tokio::test]
    async fn a_late_block_for_a_decided_slot_counts_nothing_again() {
        let mut c = Chain::with(&[1, 2], 0, None);
        let mut t = HeadTracker::new(64, 8);
        adv(&mut t, &c, 1, 1).await;
        adv(&mut t, &c, 2, 2).await;
        assert_eq!(t.on_clock(5), 1); // slot 3 decided missed
        c.extend(&[3], 0, Some(root(2, 0)));
        let o = adv(&mut t, &c, 3, 5).await;
        // Slot 3 was counted (missed) once: it is not counted again as a block.
        assert_eq!((o.new_blocks, o.missed, o.late), (0, 0, true));
        assert_eq!(o.reorg_depth, None, "a child of the head is no reorg");
        assert_eq!(t.head().map(|h| h.0), Some(3));
    }

    #[tokio::test]
    async fn a_syncing_node_does_not_turn_its_backlog_into_missed_slots() {
        let slots: Vec<u64> = (1..=100).collect();
        let c = Chain::with(&slots, 0, None);
        let mut t = HeadTracker::new(64, 8);
        // Heads arrive far behind the clock (slot 1000).
        adv(&mut t, &c, 10, 1000).await;
        assert_eq!(t.on_clock(1000), 0);
        adv(&mut t, &c, 11, 1001).await;
        assert_eq!(t.on_clock(1001), 0);
        // Caught up: now the clock counts.
        adv(&mut t, &c, 100, 100).await;
        assert_eq!(t.on_clock(103), 1);
    }

    #[tokio::test]
    async fn no_walking_while_syncing() {
        let slots: Vec<u64> = (1..=20).collect();
        let c = Chain::with(&slots, 0, None);
        let mut t = HeadTracker::new(64, 8);
        adv(&mut t, &c, 1, 1).await;
        let o = t
            .advance(c.seen(20, 0), Some(20), &c, false)
            .await
            .expect("advance");
        assert_eq!((o.new_blocks, o.missed, o.unresolved), (1, 0, 18));
        assert_eq!(c.fetches(), 0);
    }

    #[tokio::test]
    async fn a_reorg_onto_another_branch() {
        // Fork 0: 1 2 3 4; fork 1 branches from 2 with blocks at 4 and 5.
        let mut c = Chain::with(&[1, 2, 3, 4], 0, None);
        c.extend(&[4, 5], 1, Some(root(2, 0)));
        let mut t = HeadTracker::new(64, 8);
        for s in 1..=4 {
            adv(&mut t, &c, s, s).await;
        }
        let o = t
            .advance(c.seen(5, 1), Some(5), &c, true)
            .await
            .expect("advance");
        // 5 is the head; its parent (fork-1 block 4) is fetched and is at the decided slot 4:
        // nothing between, nothing missed. The common ancestor is 2: blocks 3 and 4 of the old
        // chain were replaced, a reorg of depth 2.
        assert_eq!((o.new_blocks, o.missed, o.reorg_depth), (1, 0, Some(2)));
        assert_eq!(t.head(), Some((5, root(5, 1))));
        // A same-slot reorg (another block for the decided slot 5) is a late head: nothing is
        // counted again; depth 1.
        c.extend(&[5], 2, Some(root(4, 1)));
        let o = t
            .advance(c.seen(5, 2), Some(5), &c, true)
            .await
            .expect("advance");
        assert_eq!((o.new_blocks, o.late, o.reorg_depth), (0, true, Some(1)));
    }

    #[tokio::test]
    async fn a_reorg_to_a_lower_slot_counts_no_slot_twice() {
        // The chain followed: blocks at 1..=10. The other branch forks from 4 with blocks at 6
        // and 8 (5 and 7 empty), then grows at 11 and 12.
        let slots: Vec<u64> = (1..=10).collect();
        let mut c = Chain::with(&slots, 0, None);
        c.extend(&[6, 8, 11, 12], 1, Some(root(4, 0)));
        let mut t = HeadTracker::new(64, 16);
        let (mut blocks, mut missed) = (0, 0);
        for s in 1..=10 {
            let o = adv(&mut t, &c, s, s).await;
            (blocks, missed) = (blocks + o.new_blocks, missed + o.missed);
        }
        assert_eq!((blocks, missed), (9, 0));
        // The node switches to the branch's head at 8, below the decided slot 10.
        let o = t
            .advance(c.seen(8, 1), Some(10), &c, true)
            .await
            .expect("advance");
        assert!(o.late);
        // Depth in blocks of the old chain above the ancestor 4 (5..=10), as the execution
        // side counts it: 6.
        assert_eq!(o.reorg_depth, Some(6));
        (blocks, missed) = (blocks + o.new_blocks, missed + o.missed);
        for s in [11, 12] {
            let o = t
                .advance(c.seen(s, 1), Some(s), &c, true)
                .await
                .expect("advance");
            assert_eq!(o.reorg_depth, None);
            (blocks, missed) = (blocks + o.new_blocks, missed + o.missed);
        }
        // Slots 2..=12 each counted once; 11 and 12 as the canonical chain has them.
        assert_eq!((blocks, missed), (11, 0));
        assert_eq!(blocks + missed, 12 - 1);
    }

    #[tokio::test]
    async fn reorg_depth_counts_blocks_not_slots() {
        // Old chain: 1 2 4 6 (3 and 5 empty); the new branch forks from 2 with 7.
        let mut c = Chain::with(&[1, 2, 4, 6], 0, None);
        c.extend(&[7], 1, Some(root(2, 0)));
        let mut t = HeadTracker::new(64, 8);
        for s in [1, 2, 4, 6] {
            adv(&mut t, &c, s, s).await;
        }
        let o = t
            .advance(c.seen(7, 1), Some(7), &c, true)
            .await
            .expect("advance");
        // Blocks 4 and 6 were replaced: depth 2 (slots would say 4).
        assert_eq!(o.reorg_depth, Some(2));
        assert_eq!((o.new_blocks, o.missed), (1, 0));
        assert_eq!(c.fetches(), 0, "the parent 2 is known");
    }

    #[tokio::test]
    async fn without_a_parent_a_gap_counts_as_missed() {
        let c = Chain::with(&[1], 0, None);
        let mut t = HeadTracker::new(64, 8);
        adv(&mut t, &c, 1, 1).await;
        let o = t
            .advance(
                Seen {
                    slot: 4,
                    root: root(4, 9),
                    parent_root: None,
                },
                Some(4),
                &c,
                true,
            )
            .await
            .expect("advance");
        assert_eq!((o.new_blocks, o.missed), (1, 2));
    }

    #[tokio::test]
    async fn a_lying_node_is_a_decode_error() {
        let mut c = Chain::with(&[1, 2], 0, None);
        // Block 5's parent claims to be at slot 7.
        c.headers.insert(
            root(7, 3),
            HeaderInfo {
                slot: 7,
                root: root(7, 3),
                parent_root: root(2, 0),
            },
        );
        c.headers.insert(
            root(5, 3),
            HeaderInfo {
                slot: 5,
                root: root(5, 3),
                parent_root: root(7, 3),
            },
        );
        let mut t = HeadTracker::new(64, 8);
        adv(&mut t, &c, 1, 1).await;
        let e = t
            .advance(c.seen(5, 3), Some(5), &c, true)
            .await
            .expect_err("must fail");
        assert_eq!(e.kind(), ethwatch_core::upstream::ErrorKind::Decode);
        // Nothing was recorded: the head is still news for the next try.
        assert!(t.is_new(&root(5, 3)));
    }
}
