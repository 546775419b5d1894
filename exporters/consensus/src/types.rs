//! The JSON shapes the consensus exporter reads from the Beacon API, decoded leniently.
//!
//! - Integers come as decimal strings (`"123"`, the spec); JSON numbers are accepted too (Lodestar
//!   1.5 sends some as numbers). Values beyond the target type are a decode error, never a wrap.
//! - Unknown fields are ignored and optional fields may be missing (`el_offline` on older nodes).
//! - A fork version the exporter has never heard of is not an error: only the fields it reads
//!   matter, wherever the fork put the rest.
//! - Large lists (peers, validators, rewards, state fields) are walked element by element with
//!   [`for_each_at`] instead of being collected, so work and memory stay proportional to what is
//!   counted, not to the body.
//!
//! (Over 600 lines: about 270 are the tests that decode recorded answers of several clients;
//! the shapes and their lenient decoders are one list a reader looks things up in.)

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// An unsigned integer sent as a decimal string or a JSON number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub struct U64(pub u64);

impl<'de> Deserialize<'de> for U64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = U64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an unsigned integer as a decimal string or a number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<U64, E> {
                Ok(U64(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<U64, E> {
                u64::try_from(v)
                    .map(U64)
                    .map_err(|_| E::custom(format!("{v} is negative")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<U64, E> {
                s.trim()
                    .parse::<u64>()
                    .map(U64)
                    .map_err(|_| E::custom(format!("{:?} is not an unsigned integer", short(s))))
            }
        }
        d.deserialize_any(V)
    }
}

/// A signed integer sent as a decimal string or a JSON number (reward amounts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct I64(pub i64);

impl<'de> Deserialize<'de> for I64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = I64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer as a decimal string or a number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<I64, E> {
                i64::try_from(v)
                    .map(I64)
                    .map_err(|_| E::custom(format!("{v} is out of range")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<I64, E> {
                Ok(I64(v))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<I64, E> {
                s.trim()
                    .parse::<i64>()
                    .map(I64)
                    .map_err(|_| E::custom(format!("{:?} is not an integer", short(s))))
            }
        }
        d.deserialize_any(V)
    }
}

/// An answer of the node (or a `--validators.id` value) the exporter cannot read; the text says
/// what was wrong and goes into the log line and the landing page, never into a label.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not the JSON shape expected.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The document has no array at `path` (`data`, `data.total_rewards`, ...).
    #[error("no {0} array")]
    NoArray(&'static str),
    /// A root that is not `0x` and 64 hex digits (`value` cut to 40 characters).
    #[error("{value:?} {problem}")]
    Root {
        value: String,
        problem: &'static str,
    },
    /// The chain spec lacks a positive value of `keys`.
    #[error("the spec has no positive {0}")]
    Spec(&'static str),
    /// A `--validators.id` value that is neither an index nor a public key.
    #[error("{0:?} is neither an index nor a 0x-prefixed 48-byte public key")]
    ValidatorId(String),
    /// A state whose participation flags do not match its validator list.
    #[error("{flags} participation flags for {validators} validators")]
    Participation { flags: usize, validators: usize },
}

/// A 32-byte root (block or state), sent as `0x` and 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Root(pub [u8; 32]);

impl Root {
    /// Parses `0x` followed by 64 hex digits.
    pub fn parse(s: &str) -> Result<Root, DecodeError> {
        let bad = |problem| DecodeError::Root {
            value: short(s),
            problem,
        };
        let hex = s
            .strip_prefix("0x")
            .ok_or_else(|| bad("does not start with 0x"))?;
        if hex.len() != 64 {
            return Err(bad("is not 32 bytes of hex"));
        }
        let mut out = [0u8; 32];
        let b = hex.as_bytes();
        for (i, o) in out.iter_mut().enumerate() {
            let digit = |c| hex_val(c).ok_or_else(|| bad("has a non-hex digit"));
            *o = (digit(b[2 * i])? << 4) | digit(b[2 * i + 1])?;
        }
        Ok(Root(out))
    }

    /// Whether every byte is zero (the execution block hash of a pre-merge payload).
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|b| *b == 0)
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("0x")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<'de> Deserialize<'de> for Root {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Root;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a 0x-prefixed 32-byte hex root")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Root, E> {
                Root::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

fn short(s: &str) -> String {
    ethwatch_core::upstream::truncate(s, 40)
}

/// The `{"data": ...}` envelope of every Beacon API answer; `version`, `execution_optimistic`,
/// `finalized`, `meta` and anything else beside it are ignored.
#[derive(Debug, Deserialize)]
pub struct Envelope<T> {
    pub data: T,
}

/// `/eth/v1/beacon/genesis`.
#[derive(Debug, Deserialize)]
pub struct Genesis {
    pub genesis_time: U64,
}

/// The timing values of `/eth/v1/config/spec` (every other key is ignored).
#[derive(Debug, Deserialize)]
#[allow(non_snake_case)]
pub struct SpecTiming {
    #[serde(default)]
    pub SECONDS_PER_SLOT: Option<U64>,
    /// Newer configurations give the slot length in milliseconds; preferred when present.
    #[serde(default)]
    pub SLOT_DURATION_MS: Option<U64>,
    #[serde(default)]
    pub SLOTS_PER_EPOCH: Option<U64>,
    /// The first epoch with execution payloads in blocks (`18446744073709551615`: never).
    #[serde(default)]
    pub BELLATRIX_FORK_EPOCH: Option<U64>,
}

impl SpecTiming {
    /// Slot length in milliseconds and slots per epoch, or what is missing.
    pub fn timing(&self) -> Result<(u64, u64), DecodeError> {
        let slot_ms = match (self.SLOT_DURATION_MS, self.SECONDS_PER_SLOT) {
            (Some(ms), _) if ms.0 > 0 => ms.0,
            (_, Some(s)) if s.0 > 0 => s.0.saturating_mul(1000),
            _ => {
                return Err(DecodeError::Spec("SECONDS_PER_SLOT or SLOT_DURATION_MS"));
            }
        };
        let spe = match self.SLOTS_PER_EPOCH {
            Some(n) if n.0 > 0 => n.0,
            _ => return Err(DecodeError::Spec("SLOTS_PER_EPOCH")),
        };
        Ok((slot_ms, spe))
    }
}

/// `/eth/v1/node/syncing`.
#[derive(Debug, Clone, Deserialize)]
pub struct Syncing {
    pub head_slot: U64,
    pub sync_distance: U64,
    pub is_syncing: bool,
    #[serde(default)]
    pub is_optimistic: Option<bool>,
    /// Absent on nodes older than the field.
    #[serde(default)]
    pub el_offline: Option<bool>,
}

/// `/eth/v1/node/peer_count`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct PeerCount {
    pub disconnected: U64,
    pub connecting: U64,
    pub connected: U64,
    pub disconnecting: U64,
}

/// `/eth/v1/node/version`.
#[derive(Debug, Deserialize)]
pub struct NodeVersion {
    pub version: String,
}

/// A checkpoint; only the epoch is read.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Checkpoint {
    pub epoch: U64,
}

/// `/eth/v1/beacon/states/{state_id}/finality_checkpoints`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct FinalityCheckpoints {
    pub current_justified: Checkpoint,
    pub finalized: Checkpoint,
}

/// `/eth/v1/beacon/headers/{block_id}`.
#[derive(Debug, Clone, Deserialize)]
pub struct HeaderData {
    pub root: Root,
    pub header: SignedHeader,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SignedHeader {
    pub message: HeaderMessage,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HeaderMessage {
    pub slot: U64,
    pub parent_root: Root,
}

/// `/eth/v2/beacon/blocks/{block_id}`: only the slot, the parent and the execution payload's
/// number are read; transactions and everything else are skipped without being kept.
#[derive(Debug, Clone, Deserialize)]
pub struct BlockData {
    pub message: BlockMessage,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BlockMessage {
    pub slot: U64,
    pub parent_root: Root,
    pub body: BlockBody,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BlockBody {
    /// Present from Bellatrix; absent before it and in forks that moved the payload out.
    #[serde(default)]
    pub execution_payload: Option<PayloadNumber>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct PayloadNumber {
    pub block_number: U64,
    pub block_hash: Root,
}

impl BlockData {
    /// The execution block number of a post-merge block; `None` before the merge (no payload,
    /// or Bellatrix's empty payload with a zero hash) and when the fork has no payload here.
    pub fn execution_block_number(&self) -> Option<u64> {
        self.message
            .body
            .execution_payload
            .filter(|p| !p.block_hash.is_zero())
            .map(|p| p.block_number.0)
    }
}

/// The `head` event.
#[derive(Debug, Clone, Deserialize)]
pub struct HeadEvent {
    pub slot: U64,
    pub block: Root,
}

/// The `block` event.
#[derive(Debug, Clone, Deserialize)]
pub struct BlockEvent {
    pub slot: U64,
}

/// The `chain_reorg` event.
#[derive(Debug, Clone, Deserialize)]
pub struct ReorgEvent {
    pub slot: U64,
    pub depth: U64,
}

/// The `finalized_checkpoint` event.
#[derive(Debug, Clone, Deserialize)]
pub struct FinalizedEvent {
    pub epoch: U64,
}

/// One peer of `/eth/v1/node/peers`: only its direction and state are looked at.
#[derive(Debug, Deserialize)]
pub struct PeerEntry<'a> {
    #[serde(borrow, default)]
    pub direction: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub state: Option<Cow<'a, str>>,
}

/// One validator of `/eth/v1/beacon/states/{state_id}/validators`.
#[derive(Debug, Deserialize)]
pub struct ValidatorEntry<'a> {
    pub balance: U64,
    #[serde(borrow)]
    pub status: Cow<'a, str>,
}

/// One entry of `total_rewards` in `/eth/v1/beacon/rewards/attestations/{epoch}`.
#[derive(Debug, Deserialize)]
pub struct AttestationReward {
    pub head: I64,
    pub target: I64,
    pub source: I64,
}

/// One entry of `ideal_rewards`.
#[derive(Debug, Deserialize)]
pub struct IdealReward {
    pub head: I64,
}

/// One validator record of a beacon state (`/eth/v2/debug/beacon/states/{state_id}`).
#[derive(Debug, Deserialize)]
pub struct StateValidator<'a> {
    #[serde(borrow)]
    pub pubkey: Cow<'a, str>,
    pub slashed: bool,
    pub activation_epoch: U64,
    pub exit_epoch: U64,
}

/// Walks the JSON document in `bytes` along the object keys of `path` and calls `f` for every
/// element of the array found there, without collecting the array. Returns whether the path was
/// found. Elements are decoded as `T`; a bad element is a decode error.
pub fn for_each_at<'de, T, F>(
    bytes: &'de [u8],
    path: &[&str],
    f: F,
) -> Result<bool, serde_json::Error>
where
    T: Deserialize<'de>,
    F: FnMut(T),
{
    let mut f = f;
    let mut found = false;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    PathSeed::<T, F> {
        path,
        f: &mut f,
        found: &mut found,
        _t: PhantomData,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(found)
}

struct PathSeed<'p, 'f, T, F> {
    path: &'p [&'p str],
    f: &'f mut F,
    found: &'f mut bool,
    _t: PhantomData<fn() -> T>,
}

impl<'de, T, F> DeserializeSeed<'de> for PathSeed<'_, '_, T, F>
where
    T: Deserialize<'de>,
    F: FnMut(T),
{
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.path.is_empty() {
            d.deserialize_seq(self)
        } else {
            d.deserialize_map(self)
        }
    }
}

impl<'de, T, F> Visitor<'de> for PathSeed<'_, '_, T, F>
where
    T: Deserialize<'de>,
    F: FnMut(T),
{
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str("an array")
        } else {
            write!(f, "an object with the key {:?}", self.path[0])
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        *self.found = true;
        while let Some(item) = seq.next_element::<T>()? {
            (self.f)(item);
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (head, rest) = (self.path[0], &self.path[1..]);
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == head && !*self.found {
                map.next_value_seed(PathSeed::<T, F> {
                    path: rest,
                    f: &mut *self.f,
                    found: &mut *self.found,
                    _t: PhantomData,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// Splits a `/eth/v1/node/version` string (`Lighthouse/v4.5.0-441fc16/x86_64-linux`,
/// `Lodestar/v1.5.1/2115aa7`, `teku/v23.1.0/linux-x86_64/...`) into client and version, each
/// cut to 32 characters so the info metric stays bounded.
pub fn parse_client_version(s: &str) -> (String, String) {
    let mut parts = s.trim().splitn(3, '/');
    let client = parts.next().unwrap_or("").trim();
    let version = parts.next().unwrap_or("").trim();
    let version = version.split_whitespace().next().unwrap_or("");
    let clip = |v: &str| -> String {
        let v: String = v.chars().filter(|c| !c.is_control()).take(32).collect();
        if v.is_empty() {
            "unknown".to_string()
        } else {
            v
        }
    };
    (clip(client), clip(version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> String {
        String::from_utf8(crate::fixture_bytes(path)).expect("UTF-8 fixture")
    }

    #[test]
    fn numbers_as_strings_or_numbers() {
        let v: Vec<U64> = serde_json::from_str(r#"["0", "18446744073709551615", 7]"#).expect("u64");
        assert_eq!(v, vec![U64(0), U64(u64::MAX), U64(7)]);
        assert!(serde_json::from_str::<U64>(r#""18446744073709551616""#).is_err());
        assert!(serde_json::from_str::<U64>(r#""-1""#).is_err());
        assert!(serde_json::from_str::<U64>("-1").is_err());
        assert!(serde_json::from_str::<U64>(r#""0x10""#).is_err());
        let i: Vec<I64> = serde_json::from_str(r#"["-2000", 4000]"#).expect("i64");
        assert_eq!(i, vec![I64(-2000), I64(4000)]);
    }

    #[test]
    fn roots() {
        let r = Root::parse("0x9a2fefd2fdb57f74993c7780ea5b9030d2897b615b89f808011ca5aebed54eaf")
            .expect("root");
        assert_eq!(
            r.to_string(),
            "0x9a2fefd2fdb57f74993c7780ea5b9030d2897b615b89f808011ca5aebed54eaf"
        );
        assert!(Root::parse("0x1234").is_err());
        assert!(
            Root::parse("9a2fefd2fdb57f74993c7780ea5b9030d2897b615b89f808011ca5aebed54eaf")
                .is_err()
        );
        assert!(
            Root::parse("0xzz2fefd2fdb57f74993c7780ea5b9030d2897b615b89f808011ca5aebed54eaf")
                .is_err()
        );
        assert!(Root::default().is_zero());
    }

    #[test]
    fn spec_example_syncing_and_lodestar_without_el_offline() {
        let s: Envelope<Syncing> =
            serde_json::from_str(&fixture("beacon-APIs/node_syncing.json")).expect("spec");
        assert_eq!((s.data.head_slot.0, s.data.sync_distance.0), (1, 1));
        assert_eq!(
            (s.data.is_syncing, s.data.is_optimistic, s.data.el_offline),
            (false, Some(false), Some(false))
        );
        let l: Envelope<Syncing> =
            serde_json::from_str(&fixture("lodestar-1.5.1/node_syncing.json")).expect("lodestar");
        assert_eq!(l.data.el_offline, None);
        assert_eq!(l.data.is_optimistic, Some(false));
    }

    #[test]
    fn spec_timing_from_lodestar_and_newer_configs() {
        let s: Envelope<SpecTiming> =
            serde_json::from_str(&fixture("lodestar-1.5.1/config_spec.json")).expect("spec");
        assert_eq!(s.data.timing().ok(), Some((2000, 8)));
        let ms: SpecTiming = serde_json::from_str(r#"{"SLOT_DURATION_MS":"12000","SECONDS_PER_SLOT":"12","SLOTS_PER_EPOCH":"32","NEW_THING":{"x":1}}"#).expect("ms");
        assert_eq!(ms.timing().ok(), Some((12000, 32)));
        let none: SpecTiming =
            serde_json::from_str(r#"{"SLOTS_PER_EPOCH":"32"}"#).expect("partial");
        assert!(none.timing().is_err());
    }

    #[test]
    fn genesis_peer_count_version_finality() {
        let g: Envelope<Genesis> =
            serde_json::from_str(&fixture("beacon-APIs/beacon_genesis.json")).expect("genesis");
        assert_eq!(g.data.genesis_time.0, 1590832934);
        let p: Envelope<PeerCount> =
            serde_json::from_str(&fixture("beacon-APIs/node_peer_count.json")).expect("peer_count");
        assert_eq!(
            (
                p.data.disconnected.0,
                p.data.connecting.0,
                p.data.connected.0,
                p.data.disconnecting.0
            ),
            (12, 34, 56, 5)
        );
        let v: Envelope<NodeVersion> =
            serde_json::from_str(&fixture("lodestar-1.5.1/node_version.json")).expect("version");
        assert_eq!(
            parse_client_version(&v.data.version),
            ("Lodestar".into(), "v1.5.1".into())
        );
        let f: Envelope<FinalityCheckpoints> =
            serde_json::from_str(&fixture("lodestar-1.5.1/finality_checkpoints.json"))
                .expect("finality");
        assert!(f.data.finalized.epoch.0 <= f.data.current_justified.epoch.0);
    }

    #[test]
    fn a_recorded_lodestar_event_stream_decodes() {
        let text = fixture("lodestar-1.5.1/events.txt");
        let mut parser = crate::sse::SseParser::new(64 * 1024, 64 * 1024);
        let mut events = Vec::new();
        parser.push(text.as_bytes(), &mut |i| events.push(i));
        let mut heads = 0;
        for item in events {
            let crate::sse::SseItem::Event(e) = item else {
                panic!("{item:?}")
            };
            match e.event.as_str() {
                "head" => {
                    let h: HeadEvent = serde_json::from_str(&e.data).expect("head");
                    assert!(h.slot.0 > 0);
                    heads += 1;
                }
                "block" => {
                    serde_json::from_str::<BlockEvent>(&e.data).expect("block");
                }
                "finalized_checkpoint" => {
                    serde_json::from_str::<FinalizedEvent>(&e.data).expect("finalized");
                }
                other => panic!("unexpected topic {other}"),
            }
        }
        assert!(heads >= 2, "{heads} heads in the recording");
    }

    #[test]
    fn spec_event_examples_decode() {
        let text = fixture("beacon-APIs/events_all.txt");
        let mut parser = crate::sse::SseParser::new(64 * 1024, 64 * 1024);
        let mut seen = Vec::new();
        parser.push(text.as_bytes(), &mut |i| {
            if let crate::sse::SseItem::Event(e) = i {
                match e.event.as_str() {
                    "head" => assert_eq!(
                        serde_json::from_str::<HeadEvent>(&e.data)
                            .expect("head")
                            .slot
                            .0,
                        10
                    ),
                    "block" => assert_eq!(
                        serde_json::from_str::<BlockEvent>(&e.data)
                            .expect("block")
                            .slot
                            .0,
                        10
                    ),
                    "chain_reorg" => {
                        let r: ReorgEvent = serde_json::from_str(&e.data).expect("reorg");
                        assert_eq!((r.slot.0, r.depth.0), (200, 50));
                    }
                    "finalized_checkpoint" => {
                        assert_eq!(
                            serde_json::from_str::<FinalizedEvent>(&e.data)
                                .expect("fin")
                                .epoch
                                .0,
                            2
                        )
                    }
                    _ => return,
                }
                seen.push(e.event);
            }
        });
        assert_eq!(
            seen,
            vec!["head", "block", "finalized_checkpoint", "chain_reorg"]
        );
    }

    #[test]
    fn lodestar_liveness_sends_numbers_as_numbers() {
        #[derive(Deserialize)]
        struct Live {
            index: U64,
            epoch: U64,
        }
        let l: Envelope<Vec<Live>> =
            serde_json::from_str(&fixture("lodestar-1.5.1/liveness_get.json")).expect("liveness");
        assert_eq!(l.data.len(), 2);
        assert_eq!(l.data[1].index.0, 1);
        assert!(l.data[0].epoch.0 > 0);
    }

    #[test]
    fn client_versions() {
        assert_eq!(
            parse_client_version("Lighthouse/v0.1.5 (Linux x86_64)"),
            ("Lighthouse".into(), "v0.1.5".into())
        );
        assert_eq!(
            parse_client_version(
                "teku/v23.1.0/linux-x86_64/-eclipseadoptium-openjdk64bitservervm-java-17"
            ),
            ("teku".into(), "v23.1.0".into())
        );
        assert_eq!(
            parse_client_version("Nimbus"),
            ("Nimbus".into(), "unknown".into())
        );
        assert_eq!(
            parse_client_version(""),
            ("unknown".into(), "unknown".into())
        );
        let long = format!("{}/{}", "x".repeat(500), "y".repeat(500));
        let (c, v) = parse_client_version(&long);
        assert_eq!((c.len(), v.len()), (32, 32));
    }

    #[test]
    fn header_and_blocks_of_known_and_unknown_forks() {
        let h: Envelope<HeaderData> =
            serde_json::from_str(&fixture("lodestar-1.5.1/header_head.json")).expect("header");
        assert!(h.data.header.message.slot.0 > 0);
        // Lodestar 1.5.1 dev chain: Altair, no payload.
        let b: Envelope<BlockData> =
            serde_json::from_str(&fixture("lodestar-1.5.1/block_v2_altair.json")).expect("altair");
        assert_eq!(b.data.execution_block_number(), None);
        // A post-merge block built from the spec's Deneb schema examples.
        let d: Envelope<BlockData> =
            serde_json::from_str(&fixture("beacon-APIs/block_v2_deneb.json")).expect("deneb");
        assert_eq!(d.data.execution_block_number(), Some(1));
        // Bellatrix before the merge: an empty payload with a zero hash.
        let pre: Envelope<BlockData> =
            serde_json::from_str(&fixture("beacon-APIs/block_v2_bellatrix_premerge.json"))
                .expect("pre-merge");
        assert_eq!(pre.data.execution_block_number(), None);
        // Gloas moved the payload out of the block body: absent, not an error.
        let g: Envelope<BlockData> =
            serde_json::from_str(&fixture("beacon-APIs/block_v2_gloas.json")).expect("gloas");
        assert_eq!(g.data.execution_block_number(), None);
        // A fork nobody has heard of, with extra fields everywhere: still read.
        let z: Envelope<BlockData> =
            serde_json::from_str(&fixture("beacon-APIs/block_v2_unknown_fork.json"))
                .expect("unknown fork");
        assert_eq!(z.data.execution_block_number(), Some(1));
        assert_eq!(z.data.message.slot.0, 1);
    }

    #[test]
    fn walks_arrays_without_collecting() {
        let body = br#"{"meta":{"count":3},"data":[{"direction":"inbound","state":"connected","peer_id":"a","enr":null},{"direction":"outbound","state":"connected"},{"direction":"sideways","x":[1,2,{"y":3}]}]}"#;
        let mut dirs = Vec::new();
        let found = for_each_at(body, &["data"], |p: PeerEntry| {
            dirs.push(p.direction.map(|d| d.into_owned()))
        })
        .expect("walk");
        assert!(found);
        assert_eq!(
            dirs,
            vec![
                Some("inbound".into()),
                Some("outbound".into()),
                Some("sideways".into())
            ]
        );
        // A missing path is reported, a wrong shape is an error.
        assert!(!for_each_at(br#"{"other":[]}"#, &["data"], |_: IgnoredAny| {}).expect("walk"));
        assert!(for_each_at(br#"{"data":{"a":1}}"#, &["data"], |_: IgnoredAny| {}).is_err());
        assert!(for_each_at(br#"{"data":[1,2]"#, &["data"], |_: IgnoredAny| {}).is_err());
        // Nested paths.
        let mut n = 0;
        let found = for_each_at(br#"{"data":{"ideal_rewards":[],"total_rewards":[{"head":"1","target":"2","source":"3","validator_index":"0"}]}}"#, &["data", "total_rewards"], |_: AttestationReward| n += 1).expect("nested");
        assert!(found);
        assert_eq!(n, 1);
    }
}
