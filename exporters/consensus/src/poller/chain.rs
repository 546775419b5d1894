//! Following the head: from a poll or the event stream, with the block/missed-slot accounting,
//! reorgs and finality events.

use std::sync::atomic::Ordering;

use ethwatch_core::upstream::UpstreamError;

use super::*;

impl Poller {
    /// Whether a new head may walk back over headers now (see [`walkable`]).
    pub fn may_walk(&self) -> bool {
        let st = self.metrics.state.lock();
        walkable(
            st.syncing == Some(true),
            st.sync_distance,
            self.cfg.max_backfill,
        )
    }

    pub(super) async fn poll_head(&self, may_walk: bool) -> Result<(), UpstreamError> {
        let h = self.api.header("head").await?;
        let seen = Seen {
            slot: h.slot,
            root: h.root,
            parent_root: Some(h.parent_root),
        };
        self.on_head(seen, HeadSource::Poll, may_walk).await
    }

    /// Processes a head from a poll or the event stream: the head slot and the arrival delay at
    /// once, then the block (execution block number, parent) and the block/missed-slot
    /// accounting. `may_walk` is false while the node syncs (no walking back over its backlog).
    pub async fn on_head(
        &self,
        seen: Seen,
        source: HeadSource,
        may_walk: bool,
    ) -> Result<(), UpstreamError> {
        let now = ethwatch_core::unix_now();
        let clock = self.clock();
        let clock_slot = clock.and_then(|c| c.slot_at(now));
        let mut tracker = self.tracker.lock().await;
        if source == HeadSource::Stream {
            self.stream_missed_heads.store(0, Ordering::Relaxed);
            self.last_stream_head_ms.store(unix_ms(), Ordering::Relaxed);
        }
        if !tracker.is_new(&seen.root) {
            return Ok(());
        }
        // A poll that answers with a head older than the one the open stream delivered is late,
        // not news (a real move to a lower head comes as a stream event too).
        let stream_on = self.stream_active.load(Ordering::Relaxed);
        if source == HeadSource::Poll
            && stream_on
            && tracker.head().is_some_and(|(slot, _)| seen.slot < slot)
        {
            return Ok(());
        }
        if source == HeadSource::Poll && stream_on {
            self.stream_missed_heads.fetch_add(1, Ordering::Relaxed);
        }
        self.metrics.state.lock().head_slot = Some(seen.slot);
        if source == HeadSource::Stream
            && let Some(c) = clock
        {
            let delay = now - c.slot_start(seen.slot);
            let epoch_secs = c.seconds_per_slot() * c.slots_per_epoch as f64;
            if (0.0..epoch_secs).contains(&delay) {
                self.metrics.arrival_delay.observe(delay);
            }
        }

        let mut seen = seen;
        let mut block_err = None;
        let payload_from = self.payload_from_epoch.load(Ordering::Relaxed);
        let no_payload = clock.is_some_and(|c| c.epoch_of(seen.slot) < payload_from);
        // The slot right after the last head leaves no slot between them to classify: its
        // parent changes no count (a depth-1 reorg there goes unseen when the block cannot be
        // fetched; the node's chain_reorg event then only logs it).
        let next_slot = seen.parent_root.is_none()
            && tracker
                .head()
                .is_some_and(|(slot, _)| seen.slot == slot + 1 && tracker.decided() == Some(slot));
        // (route, its answer as slot, parent and execution block number); before Bellatrix a
        // block has no execution payload, so its header (the parent) suffices, and the next
        // slot needs nothing at all.
        let fetched = if no_payload && next_slot {
            None
        } else if no_payload {
            let r = self.api.header(&seen.root.to_string()).await;
            Some((api::HEADER, r.map(|h| (h.slot, h.parent_root, None))))
        } else {
            let r = self.api.block(seen.root).await;
            Some((
                api::BLOCK,
                r.map(|b| {
                    (
                        b.message.slot.0,
                        b.message.parent_root,
                        b.execution_block_number(),
                    )
                }),
            ))
        };
        match fetched {
            None => self.metrics.state.lock().head_execution_block_number = None,
            Some((_, Ok((slot, parent, number)))) if slot == seen.slot => {
                self.metrics.state.lock().head_execution_block_number = number;
                seen.parent_root.get_or_insert(parent);
            }
            Some((route, Ok((slot, _, _)))) => {
                block_err = Some(self.api.decode_error(
                    route,
                    format!(
                        "{} {} is at slot {slot}, the head said {}",
                        route.0, seen.root, seen.slot
                    ),
                ));
            }
            Some((_, Err(e))) => block_err = Some(e),
        }
        let outcome = tracker
            .advance(seen, clock_slot, &self.api, may_walk)
            .await?;
        drop(tracker);
        self.metrics.blocks.inc_by(outcome.new_blocks);
        self.metrics.missed_slots.inc_by(outcome.missed);
        if let Some(d) = outcome.reorg_depth {
            // Another branch may have processed its epoch differently: read finality again.
            self.sched().finality_epoch = None;
            self.metrics.reorgs.inc();
            self.metrics.reorg_depth.observe(d as f64);
            tracing::warn!(depth = d, new_head = seen.slot, "reorg");
        }
        if outcome.unresolved > 0 {
            tracing::debug!(
                slots = outcome.unresolved,
                head = seen.slot,
                "slots left unclassified (gap beyond --max-backfill or node syncing)"
            );
        }
        match block_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A `chain_reorg` event. The reorg itself is counted from the heads (see [`crate::head`]),
    /// like on the execution side: clients compute the event's `depth` differently (Prysm and
    /// Lodestar do not count the old chain's blocks above the common ancestor).
    pub fn on_reorg(&self, slot: u64, depth: u64) {
        // Another branch may have processed its epoch differently: read finality again.
        self.sched().finality_epoch = None;
        tracing::info!(
            slot,
            client_depth = depth,
            "chain reorg reported by the node"
        );
    }

    /// A `finalized_checkpoint` event: finality moves at once, the poll confirms it.
    pub fn on_finalized(&self, epoch: u64) {
        let mut st = self.metrics.state.lock();
        if st.finalized_epoch.is_none_or(|e| epoch > e) {
            st.finalized_epoch = Some(epoch);
        }
    }
}
