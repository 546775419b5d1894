//! The proposals collector: block proposals due to the watched validators (`--validators.id`,
//! a node's own validators), proposed or missed (`eth_cl_validators_proposals_total{result}`).
//!
//! # Endpoints
//! - Once per epoch, `GET /eth/v1/validator/duties/proposer/{epoch}` for the wall-clock epoch
//!   (every client serves the current epoch); the duties of watched validators are kept.
//! - A kept duty is judged once a full slot has passed after its own slot (a block may arrive
//!   late in its slot): `GET /eth/v1/beacon/headers/{slot}` answers the canonical block of that
//!   slot. Proposed when that block's `proposer_index` is the duty's validator; missed on 404 (no
//!   block in the slot: expected, not an error) or when another validator's block is there.
//!
//! Each duty is judged once; a reorg that later removes or restores the block is not re-counted.
//! Without `--validators.id` the collector is off: the network's missed proposals are
//! `eth_cl_missed_slots_total`, and judging every slot would double the header requests.
//! Memory is bounded: at most [`MAX_PENDING_EPOCHS`] epochs of duties wait to be judged (a node
//! that stays down longer loses the oldest, with one log line).

use serde::Deserialize;

use ethwatch_core::upstream::UpstreamError;

use crate::api::{self, BeaconApi};
use crate::types::{DecodeError, U64, for_each_at};
use crate::validators::ValidatorFilter;

/// How many epochs of duties may wait to be judged.
pub const MAX_PENDING_EPOCHS: u64 = 4;

/// Headers judged per run at most, so one run stays within the collector's timeout after an
/// outage; the rest wait for the next run (a slot later).
pub const MAX_JUDGED_PER_RUN: usize = 4;

/// One proposal duty of a watched validator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duty {
    pub slot: u64,
    pub validator_index: u64,
}

/// What became of a duty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Proposed,
    Missed,
}

impl Outcome {
    pub const ALL: [Outcome; 2] = [Outcome::Proposed, Outcome::Missed];

    /// The `result` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Proposed => "proposed",
            Outcome::Missed => "missed",
        }
    }
}

#[derive(Deserialize)]
struct DutyEntry<'a> {
    #[serde(borrow)]
    pubkey: std::borrow::Cow<'a, str>,
    validator_index: U64,
    slot: U64,
}

/// The watched validators' duties in a `duties/proposer` answer, by slot.
pub fn watched_duties(body: &[u8], filter: &ValidatorFilter) -> Result<Vec<Duty>, DecodeError> {
    let mut out = Vec::new();
    let found = for_each_at(body, &["data"], |d: DutyEntry| {
        if filter.matches(d.validator_index.0, &d.pubkey) {
            out.push(Duty {
                slot: d.slot.0,
                validator_index: d.validator_index.0,
            });
        }
    })?;
    if !found {
        return Err(DecodeError::NoArray("data"));
    }
    out.sort_by_key(|d| d.slot);
    out.dedup();
    Ok(out)
}

#[derive(Deserialize)]
struct HeaderEnvelope {
    data: HeaderOnly,
}
#[derive(Deserialize)]
struct HeaderOnly {
    header: SignedHeaderOnly,
}
#[derive(Deserialize)]
struct SignedHeaderOnly {
    message: ProposerOf,
}
#[derive(Deserialize)]
struct ProposerOf {
    slot: U64,
    proposer_index: U64,
}

/// Judges `duty` from the answer to `GET /eth/v1/beacon/headers/{slot}` (status 200 or 404).
pub fn judge(duty: Duty, status: u16, body: &[u8]) -> Result<Outcome, DecodeError> {
    if status == 404 {
        return Ok(Outcome::Missed);
    }
    let h: HeaderEnvelope = serde_json::from_slice(body)?;
    let m = h.data.header.message;
    Ok(
        if m.slot.0 == duty.slot && m.proposer_index.0 == duty.validator_index {
            Outcome::Proposed
        } else {
            Outcome::Missed
        },
    )
}

/// Duties waiting for their slot to pass.
#[derive(Debug, Default)]
pub struct Pending {
    /// The epoch whose duties were fetched last.
    pub fetched_epoch: Option<u64>,
    duties: Vec<Duty>,
}

impl Pending {
    /// Adds the duties of a newly fetched epoch (ones already waiting are not added twice) and
    /// drops the oldest beyond [`MAX_PENDING_EPOCHS`], and any after this epoch (left from a
    /// chain whose clock was ahead: a node restarted on a new genesis); returns how many were
    /// dropped.
    pub fn add(&mut self, epoch: u64, duties: Vec<Duty>, slots_per_epoch: u64) -> usize {
        self.fetched_epoch = Some(epoch);
        for d in duties {
            if !self.duties.contains(&d) {
                self.duties.push(d);
            }
        }
        self.duties.sort_by_key(|d| d.slot);
        let oldest = (epoch + 1)
            .saturating_sub(MAX_PENDING_EPOCHS)
            .saturating_mul(slots_per_epoch);
        let end = (epoch + 1).saturating_mul(slots_per_epoch);
        let before = self.duties.len();
        self.duties.retain(|d| d.slot >= oldest && d.slot < end);
        before - self.duties.len()
    }

    /// The duties that can be judged at wall-clock slot `now` (a full slot after theirs), oldest
    /// first, at most [`MAX_JUDGED_PER_RUN`].
    pub fn ripe(&self, now: u64) -> Vec<Duty> {
        self.duties
            .iter()
            .filter(|d| d.slot + 2 <= now)
            .take(MAX_JUDGED_PER_RUN)
            .copied()
            .collect()
    }

    /// Forgets a judged duty.
    pub fn remove(&mut self, duty: Duty) {
        self.duties.retain(|d| *d != duty);
    }

    /// How many duties wait.
    pub fn len(&self) -> usize {
        self.duties.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.duties.is_empty()
    }
}

/// Fetches the watched duties of `epoch`.
pub async fn fetch_duties(
    api: &BeaconApi,
    filter: &ValidatorFilter,
    epoch: u64,
) -> Result<Vec<Duty>, UpstreamError> {
    let (_, body) = api
        .get_raw(
            api::PROPOSER_DUTIES,
            &format!("/eth/v1/validator/duties/proposer/{epoch}"),
            &[],
        )
        .await?;
    watched_duties(&body, filter).map_err(|e| {
        api.decode_error(
            api::PROPOSER_DUTIES,
            format!("{}: {e}", api::PROPOSER_DUTIES.0),
        )
    })
}

/// Judges one duty: the header of its slot, 404 (an empty slot) being an answer.
pub async fn fetch_outcome(api: &BeaconApi, duty: Duty) -> Result<Outcome, UpstreamError> {
    let (status, body) = api
        .get_raw(
            api::HEADER,
            &format!("/eth/v1/beacon/headers/{}", duty.slot),
            &[404],
        )
        .await?;
    judge(duty, status, &body)
        .map_err(|e| api.decode_error(api::HEADER, format!("{}: {e}", api::HEADER.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fixture_bytes as fixture;

    fn duty(slot: u64, validator_index: u64) -> Duty {
        Duty {
            slot,
            validator_index,
        }
    }

    #[test]
    fn duties_of_watched_validators_from_the_spec_example() {
        let body = fixture("beacon-APIs/duties_proposer.json");
        let one = ValidatorFilter::parse(&["1".into()]).expect("ids");
        assert_eq!(watched_duties(&body, &one).ok(), Some(vec![duty(1, 1)]));
        let other = ValidatorFilter::parse(&["2".into()]).expect("ids");
        assert_eq!(watched_duties(&body, &other).ok(), Some(vec![]));
        // By public key too, in any case.
        let pk = "0x93247F2209abcacf57b75a51dafae777f9dd38bc7053d1af526f220a7489a6d3a2753e5f3e8b1cfe39b56f43611df74a";
        let by_key = ValidatorFilter::parse(&[pk.into()]).expect("ids");
        assert_eq!(watched_duties(&body, &by_key).ok(), Some(vec![duty(1, 1)]));
        assert!(watched_duties(br#"{"dependent_root":"0x00"}"#, &one).is_err());
        assert!(
            watched_duties(
                br#"{"data":[{"pubkey":"0x00","validator_index":"x","slot":"1"}]}"#,
                &one
            )
            .is_err()
        );
    }

    #[test]
    fn a_header_of_the_duty_is_proposed_anything_else_missed() {
        let header = fixture("beacon-APIs/header.json"); // slot 1, proposer 1
        assert_eq!(
            judge(duty(1, 1), 200, &header).ok(),
            Some(Outcome::Proposed)
        );
        assert_eq!(judge(duty(1, 7), 200, &header).ok(), Some(Outcome::Missed));
        assert_eq!(judge(duty(2, 1), 200, &header).ok(), Some(Outcome::Missed));
        assert_eq!(judge(duty(1, 1), 404, b"{}").ok(), Some(Outcome::Missed));
        assert!(judge(duty(1, 1), 200, b"{\"data\":{}}").is_err());
    }

    #[test]
    fn duties_wait_a_full_slot_are_judged_once_and_stay_bounded() {
        let mut p = Pending::default();
        assert_eq!(p.add(10, vec![duty(60, 3), duty(62, 4)], 6), 0);
        // Fetched again (a restart of the cycle): not added twice.
        assert_eq!(p.add(10, vec![duty(60, 3)], 6), 0);
        assert_eq!(p.len(), 2);
        assert!(
            p.ripe(61).is_empty(),
            "slot 60 is not over by a full slot at 61"
        );
        assert_eq!(p.ripe(62), vec![duty(60, 3)]);
        p.remove(duty(60, 3));
        assert_eq!(p.ripe(70), vec![duty(62, 4)]);
        // Epochs 11..=14 arrive while nothing is judged: epoch 10's duty is dropped.
        for e in 11..=14 {
            let dropped = p.add(e, vec![duty(e * 6, 1)], 6);
            assert_eq!(dropped, usize::from(e == 14), "epoch {e}");
        }
        assert_eq!(p.len(), 4);
        assert_eq!(p.ripe(1000).len(), MAX_JUDGED_PER_RUN);
        // A new genesis: the clock is back at epoch 2, the old chain's duties go.
        assert_eq!(p.add(2, vec![duty(13, 5)], 6), 4);
        assert_eq!(p.ripe(1000), vec![duty(13, 5)]);
    }
}
