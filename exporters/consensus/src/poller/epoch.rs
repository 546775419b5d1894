//! Once per epoch: validator counts and balance, participation, and the watched validators'
//! proposals.

use std::time::{Duration, Instant};

use ethwatch_core::upstream::{ErrorKind, UpstreamError};
use tracing::Instrument;

use super::*;

impl Poller {
    /// The validators and participation collectors, when their epoch is due.
    pub async fn poll_validators(&self) {
        // Not before the node first answered, nor while it is down (the poll cycle marks these
        // collectors failed then, and they run again once it answers).
        if !self.collector_enabled(ClCollector::Validators)
            || self.last_ok_ms() == 0
            || !self.metrics.state.lock().up
        {
            return;
        }
        let Some(clock) = self.clock() else { return };
        let Some(slot) = clock.now_slot() else { return };
        let epoch = clock.epoch_of(slot);
        let retry_after = Duration::from_millis(clock.slot_ms.max(1000));
        let epoch_len =
            Duration::from_millis(clock.slot_ms.max(1000) * clock.slots_per_epoch.max(1));
        let now = Instant::now();
        let (counts_due, part_due, try_rewards, proposals_due) = {
            let sc = self.sched();
            let ready = |t: Option<Instant>| t.is_none_or(|t| now >= t);
            let proposals_due = !self.cfg.filter.is_all()
                && ready(sc.proposals_retry_at)
                && (sc.proposals.fetched_epoch != Some(epoch)
                    || !sc.proposals.ripe(slot).is_empty());
            (
                sc.validators_epoch != Some(epoch) && ready(sc.validators_retry_at),
                epoch >= 2
                    && sc.participation_epoch != Some(epoch - 2)
                    && sc.participation_failed_in != Some(epoch),
                ready(sc.rewards_unsupported_until),
                proposals_due,
            )
        };
        if counts_due {
            self.poll_validator_counts(epoch, now, retry_after, epoch_len)
                .instrument(collector_span(ClCollector::Validators))
                .await;
        }
        if part_due {
            self.poll_participation(epoch, now, clock.slots_per_epoch, try_rewards)
                .instrument(collector_span(ClCollector::Participation))
                .await;
        }
        if proposals_due {
            self.poll_proposals(epoch, slot, now, retry_after, clock.slots_per_epoch)
                .instrument(collector_span(ClCollector::Proposals))
                .await;
        }
    }

    /// Fetches the epoch's proposal duties of the watched validators once, then judges the ones
    /// whose slot is over by a full slot (see [`proposals`]).
    pub(super) async fn poll_proposals(
        &self,
        epoch: u64,
        slot: u64,
        now: Instant,
        retry_after: Duration,
        slots_per_epoch: u64,
    ) {
        let t = Instant::now();
        let r = async {
            if self.sched().proposals.fetched_epoch != Some(epoch) {
                let duties = proposals::fetch_duties(&self.api, &self.cfg.filter, epoch).await?;
                let dropped = self.sched().proposals.add(epoch, duties, slots_per_epoch);
                if dropped > 0 {
                    tracing::warn!(
                        dropped,
                        "proposal duties dropped unjudged: the node did not answer for {} epochs",
                        proposals::MAX_PENDING_EPOCHS
                    );
                }
            }
            let ripe = self.sched().proposals.ripe(slot);
            for duty in ripe {
                let outcome = proposals::fetch_outcome(&self.api, duty).await?;
                self.metrics.proposal(outcome);
                self.sched().proposals.remove(duty);
                if outcome == proposals::Outcome::Missed {
                    tracing::info!(
                        slot = duty.slot,
                        validator_index = duty.validator_index,
                        "a watched validator missed its block proposal"
                    );
                }
            }
            Ok::<(), UpstreamError>(())
        }
        .await;
        if r.is_err() {
            self.sched().proposals_retry_at = Some(now + retry_after);
        }
        self.record(ClCollector::Proposals, t, r);
    }

    /// How long a failed validators collector waits: one slot, but after an
    /// answer larger than the body cap a growing number of epochs (one log line per streak).
    pub(super) fn retry_delay(
        &self,
        e: &UpstreamError,
        streak: &mut u32,
        collector: &'static str,
        retry_after: Duration,
        epoch_len: Duration,
    ) -> Duration {
        if e.kind() != ErrorKind::TooLarge {
            *streak = 0;
            return retry_after;
        }
        *streak = streak.saturating_add(1);
        let epochs = too_large_backoff_epochs(*streak);
        if *streak == 1 {
            tracing::warn!(
                collector,
                "the answer is larger than --beacon-max-body-bytes; retrying after 1 epoch, then backing off to 32 epochs (raise the flag or narrow --validators.id)"
            );
        }
        epoch_len * epochs
    }

    pub(super) async fn poll_validator_counts(
        &self,
        epoch: u64,
        now: Instant,
        retry_after: Duration,
        epoch_len: Duration,
    ) {
        {
            let t = Instant::now();
            let r = validators::fetch_counts(&self.api, &self.cfg.filter).await;
            match &r {
                Ok(c) => {
                    let mut st = self.metrics.state.lock();
                    st.validators = Some(c.by_status);
                    st.validators_balance_gwei = Some(c.balance_gwei);
                    drop(st);
                    let mut sc = self.sched();
                    sc.validators_epoch = Some(epoch);
                    sc.validators_too_large = 0;
                }
                Err(e) => {
                    let mut sc = self.sched();
                    sc.validators_retry_at = Some(
                        now + self.retry_delay(
                            e,
                            &mut sc.validators_too_large,
                            "validators",
                            retry_after,
                            epoch_len,
                        ),
                    );
                }
            }
            self.record(ClCollector::Validators, t, r.map(|_| ()));
        }
    }

    pub(super) async fn poll_participation(
        &self,
        epoch: u64,
        now: Instant,
        slots_per_epoch: u64,
        try_rewards: bool,
    ) {
        {
            let t = Instant::now();
            let target = epoch - 2;
            let r = validators::fetch_participation(
                &self.api,
                &self.cfg.filter,
                target,
                slots_per_epoch,
                try_rewards,
            )
            .await;
            match &r {
                Ok((p, source)) => {
                    self.metrics.state.lock().participation = *p;
                    let mut sc = self.sched();
                    sc.participation_epoch = Some(target);
                    if try_rewards && *source == validators::Source::State {
                        sc.rewards_unsupported_until = Some(now + self.cfg.reprobe_interval);
                        drop(sc);
                        tracing::info!(
                            reprobe_in = ?self.cfg.reprobe_interval,
                            "the node has no attestation rewards endpoint; participation comes from the beacon state's participation flags"
                        );
                    }
                }
                Err(_) => self.sched().participation_failed_in = Some(epoch),
            }
            self.record(ClCollector::Participation, t, r.map(|_| ()));
        }
    }
}

/// After an answer larger than the body cap, the next try waits this many epochs: 1, 2, 4 ...
/// up to 32 (the state does not shrink by itself; fetching it every slot costs the node and us
/// the full download each time).
pub(super) fn too_large_backoff_epochs(streak: u32) -> u32 {
    1u32 << streak.saturating_sub(1).min(5)
}
