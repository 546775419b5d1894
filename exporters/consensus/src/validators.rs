//! The validators collector: counts by status, total balance, and the participation of the
//! latest complete epoch.
//!
//! # Endpoints
//! - Counts and balance: `GET /eth/v1/beacon/states/head/validators`, with no status filter
//!   (Lodestar 1.5 answers `status=active` with an empty list: the umbrella statuses are not
//!   supported everywhere, so statuses are counted here). With `--validators.id`, the ids are sent
//!   as repeated `id=` parameters (Lodestar 1.5 answers `id=0,1` with an empty list), 64 per
//!   request (the spec's limit).
//! - Participation of epoch `N = clock epoch - 2` (the latest epoch whose attestations can no
//!   longer be included, so the ratios are final):
//!   1. `POST /eth/v1/beacon/rewards/attestations/{N}` (standard; Lighthouse, Teku, Prysm, Nimbus,
//!      newer Lodestar). A validator voted correctly and in time for source or target when that
//!      reward is not negative (a missed source or target vote is always penalised; during an
//!      inactivity leak correct votes earn 0), and for head when the head reward is positive.
//!      When no ideal head reward is positive (an inactivity leak), the head ratio is unknown and
//!      left absent.
//!   2. When the node does not offer it (404, 405 or 501, as Lodestar 1.5.1), the participation
//!      flags of the beacon state after the last block of epoch `N + 1` (found by reading
//!      `GET /eth/v1/beacon/headers/{slot}` back from the epoch's last slot; an empty slot has no
//!      state of its own): `GET /eth/v2/debug/beacon/states/{slot}`, field
//!      `previous_epoch_participation` (bits 0, 1,
//!      2 = timely source, target, head), over the validators active in `N` (slashed ones count as
//!      not participating). The state is large on big networks: it is only fetched when the
//!      rewards endpoint is missing, and re-probing the rewards endpoint happens every
//!      `--reprobe-interval`. A phase0 state has no flags: participation is then absent.
//!
//! Ratios are by validator count: the share of active validators (of the ones watched) whose vote
//! for the duty was timely and correct.

use std::collections::HashSet;

use ethwatch_core::upstream::UpstreamError;

use crate::api::{self, BeaconApi};
use crate::metrics::{Participation, VALIDATOR_STATUSES};
use crate::types::{
    AttestationReward, DecodeError, IdealReward, StateValidator, U64, ValidatorEntry, for_each_at,
};

/// The spec's limit of `id` values per validators request.
pub const IDS_PER_REQUEST: usize = 64;

/// Which validators to watch: all, or the ones named by `--validators.id`.
#[derive(Debug, Clone, Default)]
pub struct ValidatorFilter {
    /// The ids as given (indices and `0x` public keys).
    ids: Vec<String>,
    indices: HashSet<u64>,
    pubkeys: HashSet<String>,
}

impl ValidatorFilter {
    /// Parses ids: decimal indices or `0x` + 96 hex digit public keys.
    pub fn parse(ids: &[String]) -> Result<Self, DecodeError> {
        let mut f = ValidatorFilter::default();
        for raw in ids {
            let id = raw.trim();
            if id.is_empty() {
                continue;
            }
            if let Some(hex) = id.strip_prefix("0x") {
                if hex.len() != 96 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(DecodeError::ValidatorId(id.to_string()));
                }
                let key = id.to_ascii_lowercase();
                if f.pubkeys.insert(key.clone()) {
                    f.ids.push(key);
                }
            } else {
                let n: u64 = id
                    .parse()
                    .map_err(|_| DecodeError::ValidatorId(id.to_string()))?;
                if f.indices.insert(n) {
                    f.ids.push(n.to_string());
                }
            }
        }
        Ok(f)
    }

    /// Whether every validator is watched.
    pub fn is_all(&self) -> bool {
        self.ids.is_empty()
    }

    /// The number of ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no id is given (every validator is watched).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub(crate) fn matches(&self, index: u64, pubkey: &str) -> bool {
        self.is_all()
            || self.indices.contains(&index)
            || (!self.pubkeys.is_empty() && self.pubkeys.contains(&pubkey.to_ascii_lowercase()))
    }

    /// The validators request paths: one for all, or one per 64 ids.
    pub fn validator_paths(&self) -> Vec<String> {
        const BASE: &str = "/eth/v1/beacon/states/head/validators";
        if self.is_all() {
            return vec![BASE.to_string()];
        }
        self.ids
            .chunks(IDS_PER_REQUEST)
            .map(|chunk| {
                let q: Vec<String> = chunk.iter().map(|id| format!("id={id}")).collect();
                format!("{BASE}?{}", q.join("&"))
            })
            .collect()
    }

    /// The rewards request body: every validator (`[]`) or the ids.
    pub fn rewards_body(&self) -> Vec<u8> {
        serde_json::to_vec(&self.ids).unwrap_or_else(|_| b"[]".to_vec())
    }
}

/// Counts by status (in the order of [`VALIDATOR_STATUSES`]) and the total balance in gwei.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub by_status: [u64; VALIDATOR_STATUSES.len()],
    pub balance_gwei: u64,
}

impl Counts {
    /// Adds the validators of one `/validators` answer.
    pub fn add_body(&mut self, body: &[u8]) -> Result<(), DecodeError> {
        let other = VALIDATOR_STATUSES.len() - 1;
        let found = for_each_at(body, &["data"], |v: ValidatorEntry| {
            let i = VALIDATOR_STATUSES[..other]
                .iter()
                .position(|s| *s == v.status)
                .unwrap_or(other);
            self.by_status[i] += 1;
            self.balance_gwei = self.balance_gwei.saturating_add(v.balance.0);
        })?;
        if found {
            Ok(())
        } else {
            Err(DecodeError::NoArray("data"))
        }
    }
}

/// Fetches counts and balance.
pub async fn fetch_counts(
    api: &BeaconApi,
    filter: &ValidatorFilter,
) -> Result<Counts, UpstreamError> {
    let mut counts = Counts::default();
    for path in filter.validator_paths() {
        let (_, body) = api.get_raw(api::VALIDATORS, &path, &[]).await?;
        counts.add_body(&body).map_err(|e| {
            api.decode_error(api::VALIDATORS, format!("{}: {e}", api::VALIDATORS.0))
        })?;
    }
    Ok(counts)
}

/// Where participation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Rewards,
    State,
}

fn ratio(n: u64, of: u64) -> Option<f64> {
    (of > 0).then(|| n as f64 / of as f64)
}

/// Participation from an attestation rewards answer (see the module docs).
pub fn from_rewards(body: &[u8], epoch: u64) -> Result<Participation, DecodeError> {
    let mut head_signal = false;
    let found = for_each_at(body, &["data", "ideal_rewards"], |r: IdealReward| {
        head_signal |= r.head.0 > 0;
    })?;
    if !found {
        return Err(DecodeError::NoArray("data.ideal_rewards"));
    }
    let (mut n, mut source, mut target, mut head) = (0u64, 0u64, 0u64, 0u64);
    let found = for_each_at(body, &["data", "total_rewards"], |r: AttestationReward| {
        n += 1;
        source += u64::from(r.source.0 >= 0);
        target += u64::from(r.target.0 >= 0);
        head += u64::from(r.head.0 > 0);
    })?;
    if !found {
        return Err(DecodeError::NoArray("data.total_rewards"));
    }
    Ok(Participation {
        epoch,
        source: ratio(source, n),
        target: ratio(target, n),
        head: if head_signal { ratio(head, n) } else { None },
    })
}

/// Participation from a beacon state's `previous_epoch_participation` (see the module docs).
/// `Ok(None)` when the state has no flags (phase0).
pub fn from_state(
    body: &[u8],
    epoch: u64,
    filter: &ValidatorFilter,
) -> Result<Option<Participation>, DecodeError> {
    // For each validator: 0 = not counted, 1 = active and unslashed, 2 = active and slashed.
    let mut eligible: Vec<u8> = Vec::new();
    let found = for_each_at(body, &["data", "validators"], |v: StateValidator| {
        let index = eligible.len() as u64;
        let active = v.activation_epoch.0 <= epoch && epoch < v.exit_epoch.0;
        let watched = filter.matches(index, &v.pubkey);
        eligible.push(match (active && watched, v.slashed) {
            (false, _) => 0,
            (true, false) => 1,
            (true, true) => 2,
        });
    })?;
    if !found {
        return Err(DecodeError::NoArray("data.validators"));
    }
    let (mut i, mut n, mut source, mut target, mut head) = (0usize, 0u64, 0u64, 0u64, 0u64);
    let mut overflow = false;
    let found = for_each_at(
        body,
        &["data", "previous_epoch_participation"],
        |flags: U64| {
            match eligible.get(i) {
                Some(0) => {}
                Some(e) => {
                    n += 1;
                    if *e == 1 {
                        source += flags.0 & 1;
                        target += (flags.0 >> 1) & 1;
                        head += (flags.0 >> 2) & 1;
                    }
                }
                None => overflow = true,
            }
            i += 1;
        },
    )?;
    if !found {
        return Ok(None);
    }
    if overflow || i != eligible.len() {
        return Err(DecodeError::Participation {
            flags: i,
            validators: eligible.len(),
        });
    }
    // Validators the list did not cover are active ones that did not vote.
    Ok(Some(Participation {
        epoch,
        source: ratio(source, n),
        target: ratio(target, n),
        head: ratio(head, n),
    }))
}

/// Fetches the participation of `epoch`, from the rewards endpoint unless `try_rewards` is false
/// or the node lacks it. Returns the source used.
pub async fn fetch_participation(
    api: &BeaconApi,
    filter: &ValidatorFilter,
    epoch: u64,
    slots_per_epoch: u64,
    try_rewards: bool,
) -> Result<(Option<Participation>, Source), UpstreamError> {
    if try_rewards {
        let path = format!("/eth/v1/beacon/rewards/attestations/{epoch}");
        match api
            .post_raw(api::REWARDS, &path, filter.rewards_body())
            .await
        {
            Ok(body) => {
                let p = from_rewards(&body, epoch).map_err(|e| {
                    api.decode_error(api::REWARDS, format!("{}: {e}", api::REWARDS.0))
                })?;
                return Ok((Some(p), Source::Rewards));
            }
            Err(UpstreamError::HttpStatus {
                status: 404 | 405 | 501,
                ..
            }) => {}
            Err(e) => return Err(e),
        }
    }
    let slot = state_slot(api, epoch, slots_per_epoch).await?;
    let (_, body) = api
        .get_raw(
            api::DEBUG_STATE,
            &format!("/eth/v2/debug/beacon/states/{slot}"),
            &[],
        )
        .await?;
    let p = from_state(&body, epoch, filter)
        .map_err(|e| api.decode_error(api::DEBUG_STATE, format!("{}: {e}", api::DEBUG_STATE.0)))?;
    Ok((p, Source::State))
}

/// The slot whose state holds the participation flags of `epoch`: the last slot of epoch
/// `epoch + 1` that has a block. A slot without a block has no state of its own (a node may
/// answer 500 for it, as Lodestar does); the state after the last block at or before it carries
/// the same flags, since no attestation was included after that block. The headers are read
/// from the last slot back (an empty slot answers 404, not counted as an error); when the whole
/// epoch is empty, the last slot itself is asked for.
async fn state_slot(
    api: &BeaconApi,
    epoch: u64,
    slots_per_epoch: u64,
) -> Result<u64, UpstreamError> {
    let first = (epoch + 1) * slots_per_epoch;
    let last = (epoch + 2) * slots_per_epoch - 1;
    for s in (first..=last).rev() {
        if let Some(h) = api.header_at_slot(s).await? {
            if (first..=s).contains(&h.slot) {
                return Ok(h.slot);
            }
            return Err(api.decode_error(
                api::HEADER,
                format!("the header asked for slot {s} is at slot {}", h.slot),
            ));
        }
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fixture_bytes as fixture;

    fn status(c: &Counts, s: &str) -> u64 {
        c.by_status[VALIDATOR_STATUSES
            .iter()
            .position(|x| *x == s)
            .expect("status")]
    }

    #[test]
    fn counts_lodestar_validators_and_the_spec_example() {
        let mut c = Counts::default();
        c.add_body(&fixture("lodestar-1.5.1/validators.json"))
            .expect("lodestar");
        assert_eq!(status(&c, "active_ongoing"), 8);
        assert!(c.balance_gwei > 8 * 31_000_000_000, "{}", c.balance_gwei);
        let mut s = Counts::default();
        s.add_body(&fixture("beacon-APIs/validators.json"))
            .expect("spec");
        assert_eq!((status(&s, "active_ongoing"), s.balance_gwei), (1, 1));
    }

    #[test]
    fn lodestar_quirks_are_why_statuses_are_counted_here() {
        // `status=active` and `id=0,1` answer nothing on Lodestar 1.5.1; repeated ids work.
        for empty in [
            "lodestar-1.5.1/validators_status_active.json",
            "lodestar-1.5.1/validators_id_comma.json",
        ] {
            let mut c = Counts::default();
            c.add_body(&fixture(empty)).expect("decode");
            assert_eq!(c, Counts::default(), "{empty}");
        }
        let mut c = Counts::default();
        c.add_body(&fixture("lodestar-1.5.1/validators_id_repeated.json"))
            .expect("decode");
        assert_eq!(status(&c, "active_ongoing"), 2);
    }

    #[test]
    fn unknown_statuses_count_as_other() {
        let mut c = Counts::default();
        c.add_body(br#"{"data":[{"index":"1","balance":"5","status":"hibernating","validator":{}},{"balance":"7","status":"active_exiting"}]}"#)
            .expect("decode");
        assert_eq!(
            (
                status(&c, "other"),
                status(&c, "active_exiting"),
                c.balance_gwei
            ),
            (1, 1, 12)
        );
        assert!(
            c.add_body(br#"{"data":[{"balance":"x","status":"active_ongoing"}]}"#)
                .is_err()
        );
        assert!(c.add_body(br#"{"nodata":1}"#).is_err());
    }

    #[test]
    fn filters_and_request_paths() {
        assert!(ValidatorFilter::parse(&["0x12".into()]).is_err());
        assert!(ValidatorFilter::parse(&["-1".into()]).is_err());
        let ids: Vec<String> = (0..130).map(|i| i.to_string()).collect();
        let f = ValidatorFilter::parse(&ids).expect("ids");
        let paths = f.validator_paths();
        assert_eq!(paths.len(), 3);
        assert!(paths[0].ends_with("?id=0&id=1&id=2&id=3&id=4&id=5&id=6&id=7&id=8&id=9&id=10&id=11&id=12&id=13&id=14&id=15&id=16&id=17&id=18&id=19&id=20&id=21&id=22&id=23&id=24&id=25&id=26&id=27&id=28&id=29&id=30&id=31&id=32&id=33&id=34&id=35&id=36&id=37&id=38&id=39&id=40&id=41&id=42&id=43&id=44&id=45&id=46&id=47&id=48&id=49&id=50&id=51&id=52&id=53&id=54&id=55&id=56&id=57&id=58&id=59&id=60&id=61&id=62&id=63"));
        assert!(!paths[0].contains(','));
        assert_eq!(
            String::from_utf8(ValidatorFilter::default().rewards_body()).expect("utf8"),
            "[]"
        );
        let pk = format!("0x{}", "Ab".repeat(48));
        let f = ValidatorFilter::parse(&["3".into(), pk.clone(), "3".into()]).expect("ids");
        assert_eq!(f.len(), 2);
        assert_eq!(
            String::from_utf8(f.rewards_body()).expect("utf8"),
            format!("[\"3\",\"{}\"]", pk.to_ascii_lowercase())
        );
        assert!(f.matches(3, "0x00") && f.matches(9, &pk) && !f.matches(4, "0x00"));
    }

    #[test]
    fn participation_from_the_spec_rewards_example() {
        let p =
            from_rewards(&fixture("beacon-APIs/rewards_attestations.json"), 7).expect("rewards");
        assert_eq!(
            p,
            Participation {
                epoch: 7,
                source: Some(1.0),
                target: Some(1.0),
                head: Some(1.0)
            }
        );
    }

    #[test]
    fn participation_from_rewards_with_misses_and_a_leak() {
        let body = br#"{"data":{"ideal_rewards":[{"effective_balance":"32000000000","head":"10","target":"20","source":"10","inactivity":"0"}],
            "total_rewards":[
              {"validator_index":"0","head":"10","target":"20","source":"10","inactivity":"0"},
              {"validator_index":"1","head":"0","target":"-20","source":"10","inactivity":"0"},
              {"validator_index":"2","head":"0","target":"-20","source":"-10","inactivity":"-5"},
              {"validator_index":"3","head":"10","target":"20","source":"10","inactivity":"0","future":"x"}]},"finalized":true}"#;
        let p = from_rewards(body, 1).expect("rewards");
        assert_eq!(
            (p.source, p.target, p.head),
            (Some(0.75), Some(0.5), Some(0.5))
        );
        let leak = br#"{"data":{"ideal_rewards":[{"effective_balance":"1","head":"0","target":"0","source":"0"}],"total_rewards":[{"validator_index":"0","head":"0","target":"0","source":"0"},{"validator_index":"1","head":"0","target":"-3","source":"-2"}]}}"#;
        let p = from_rewards(leak, 1).expect("leak");
        assert_eq!((p.source, p.target, p.head), (Some(0.5), Some(0.5), None));
        let none = br#"{"data":{"ideal_rewards":[],"total_rewards":[]}}"#;
        assert_eq!(from_rewards(none, 1).expect("empty").source, None);
        assert!(from_rewards(br#"{"data":{}}"#, 1).is_err());
    }

    #[test]
    fn participation_from_a_lodestar_state() {
        let body = fixture("lodestar-1.5.1/debug_state.json");
        let p = from_state(&body, 5, &ValidatorFilter::default())
            .expect("state")
            .expect("altair flags");
        assert_eq!(
            (p.source, p.target, p.head),
            (Some(1.0), Some(1.0), Some(1.0))
        );
        let f = ValidatorFilter::parse(&["0".into(), "1".into()]).expect("ids");
        let p = from_state(&body, 5, &f).expect("state").expect("flags");
        assert_eq!(p.source, Some(1.0));
    }

    #[test]
    fn participation_from_a_state_with_misses_slashings_and_inactive_validators() {
        let v = |act: u64, exit: u64, slashed: bool| {
            format!(
                r#"{{"pubkey":"0x00","withdrawal_credentials":"0x00","effective_balance":"32000000000","slashed":{slashed},"activation_eligibility_epoch":"0","activation_epoch":"{act}","exit_epoch":"{exit}","withdrawable_epoch":"18446744073709551615"}}"#
            )
        };
        let body = format!(
            r#"{{"version":"electra","data":{{"slot":"31","validators":[{},{},{},{},{}],"previous_epoch_participation":["7","3","0","7","7"],"extra":[1]}}}}"#,
            v(0, u64::MAX, false),
            v(0, u64::MAX, false),
            v(0, u64::MAX, false),
            v(0, u64::MAX, true),
            v(9, u64::MAX, false),
        );
        let p = from_state(body.as_bytes(), 2, &ValidatorFilter::default())
            .expect("state")
            .expect("flags");
        // Four active (the fifth activates at 9); the slashed one counts as not voting.
        assert_eq!(
            (p.source, p.target, p.head),
            (Some(0.5), Some(0.5), Some(0.25))
        );
        let phase0 =
            r#"{"version":"phase0","data":{"validators":[],"previous_epoch_attestations":[]}}"#;
        assert_eq!(
            from_state(phase0.as_bytes(), 2, &ValidatorFilter::default()).expect("phase0"),
            None
        );
        let short = format!(
            r#"{{"data":{{"validators":[{}],"previous_epoch_participation":["7","7"]}}}}"#,
            v(0, u64::MAX, false)
        );
        assert!(from_state(short.as_bytes(), 2, &ValidatorFilter::default()).is_err());
    }
}
