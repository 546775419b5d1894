//! The JSON shapes the execution exporter reads, decoded leniently where clients differ.
//!
//! Quantities are accepted as `0x` hex strings (the spec), decimal strings and JSON numbers (some
//! clients and proxies); numbers beyond `u64` are a decode error, not a wrap-around.

use alloy_primitives::B256;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};

/// A quantity that does not parse; the text goes into the decode error's log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("{0} is not a non-negative integer within u64")]
    NotU64(String),
    #[error("{0} is not a non-negative integer")]
    NotUint(String),
    #[error("expected a quantity, got {0}")]
    NotAQuantity(&'static str),
    #[error("empty hex quantity \"0x\"")]
    EmptyHex,
    #[error("bad hex quantity {value:?}: {cause}")]
    BadHex {
        value: String,
        cause: std::num::ParseIntError,
    },
    #[error("bad quantity {value:?}: {cause}")]
    BadDecimal {
        value: String,
        cause: std::num::ParseIntError,
    },
    #[error("bad quantity {value:?}: not a base-{radix} number")]
    NotDigits { value: String, radix: u32 },
}

/// Parses a quantity: `"0x1a"`, `"26"` or `26`.
pub fn parse_quantity(v: &serde_json::Value) -> Result<u64, QuantityError> {
    match v {
        serde_json::Value::String(s) => parse_quantity_str(s),
        serde_json::Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| QuantityError::NotU64(n.to_string())),
        other => Err(QuantityError::NotAQuantity(kind_of(other))),
    }
}

/// Parses a quantity string, hex (`0x`) or decimal.
pub fn parse_quantity_str(s: &str) -> Result<u64, QuantityError> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if hex.is_empty() {
            return Err(QuantityError::EmptyHex);
        }
        digits(hex, 16, s)?;
        u64::from_str_radix(hex, 16).map_err(|cause| QuantityError::BadHex {
            value: short(s),
            cause,
        })
    } else {
        digits(s, 10, s)?;
        s.parse::<u64>().map_err(|cause| QuantityError::BadDecimal {
            value: short(s),
            cause,
        })
    }
}

/// Only digits of the radix: `from_str_radix` and `parse` also accept a leading `+`.
fn digits(d: &str, radix: u32, whole: &str) -> Result<(), QuantityError> {
    if d.chars().all(|c| c.is_digit(radix)) {
        Ok(())
    } else {
        Err(QuantityError::NotDigits {
            value: short(whole),
            radix,
        })
    }
}

/// Like [`parse_quantity_str`] but for 128-bit values (base fee in wei).
pub fn parse_quantity_u128(s: &str) -> Result<u128, QuantityError> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        digits(hex, 16, s)?;
        u128::from_str_radix(hex, 16).map_err(|cause| QuantityError::BadHex {
            value: short(s),
            cause,
        })
    } else {
        digits(s, 10, s)?;
        s.parse::<u128>()
            .map_err(|cause| QuantityError::BadDecimal {
                value: short(s),
                cause,
            })
    }
}

fn short(s: &str) -> String {
    ethwatch_core::upstream::truncate(s, 40)
}

fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A quantity field for serde.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(pub u64);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        parse_quantity(&v).map(Quantity).map_err(de::Error::custom)
    }
}

/// A 128-bit quantity field for serde.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity128(pub u128);

impl<'de> Deserialize<'de> for Quantity128 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        match &v {
            serde_json::Value::String(s) => parse_quantity_u128(s),
            serde_json::Value::Number(n) => n
                .as_u64()
                .map(u128::from)
                .ok_or_else(|| QuantityError::NotUint(n.to_string())),
            other => Err(QuantityError::NotAQuantity(kind_of(other))),
        }
        .map(Quantity128)
        .map_err(de::Error::custom)
    }
}

/// The fields of a block (or a `newHeads` header) the exporter uses. Everything else in the
/// block is skipped without being stored, so a huge block costs no memory beyond its body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    pub number: Quantity,
    pub hash: B256,
    pub parent_hash: B256,
    pub timestamp: Quantity,
    pub gas_used: Quantity,
    pub gas_limit: Quantity,
    #[serde(default)]
    pub base_fee_per_gas: Option<Quantity128>,
    /// Number of transactions; absent in `newHeads` headers.
    #[serde(default, deserialize_with = "count_seq")]
    pub transactions: Option<u64>,
}

impl Header {
    /// The block number.
    pub fn number(&self) -> u64 {
        self.number.0
    }
    /// The block timestamp, Unix seconds.
    pub fn timestamp(&self) -> u64 {
        self.timestamp.0
    }
}

fn count_seq<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct Count;
    impl<'de> Visitor<'de> for Count {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of transactions")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut n = 0u64;
            while seq.next_element::<IgnoredAny>()?.is_some() {
                n += 1;
            }
            Ok(Some(n))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(Count)
}

/// The answer of `eth_syncing`: `false`, or an object with progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStatus {
    /// Not syncing.
    Synced,
    /// Syncing, with the block it has reached and the highest it knows of.
    Syncing { current: u64, highest: u64 },
}

impl<'de> Deserialize<'de> for SyncStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Progress {
            current_block: Quantity,
            highest_block: Quantity,
        }
        let v = serde_json::Value::deserialize(d)?;
        match v {
            serde_json::Value::Bool(false) => Ok(SyncStatus::Synced),
            serde_json::Value::Bool(true) => Err(de::Error::custom(
                "eth_syncing returned true without progress",
            )),
            obj @ serde_json::Value::Object(_) => {
                let p: Progress = serde_json::from_value(obj).map_err(de::Error::custom)?;
                Ok(SyncStatus::Syncing {
                    current: p.current_block.0,
                    highest: p.highest_block.0,
                })
            }
            other => Err(de::Error::custom(format!(
                "eth_syncing: expected false or an object, got {}",
                kind_of(&other)
            ))),
        }
    }
}

/// The answer of `txpool_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TxpoolStatus {
    pub pending: Quantity,
    pub queued: Quantity,
}

/// A client name and version parsed from `web3_clientVersion`, bounded in length and charset
/// so the info metric stays one small series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientVersion {
    pub client: String,
    pub version: String,
}

impl ClientVersion {
    /// Parses `Geth/v1.14.0-stable-abc/linux-amd64/go1.22`, `reth/v1.1.0-abc/x86_64-...`,
    /// `anvil/v1.7.1`, `Nethermind/v1.25.4+...`, `HardhatNetwork/2.29.1/@ethereumjs/vm/...`.
    pub fn parse(s: &str) -> ClientVersion {
        let mut parts = s.split('/');
        let client = sanitize(parts.next().unwrap_or(""), 32).to_ascii_lowercase();
        let version = sanitize(parts.next().unwrap_or("").trim_start_matches('v'), 48);
        ClientVersion {
            client: if client.is_empty() {
                "unknown".into()
            } else {
                client
            },
            version: if version.is_empty() {
                "unknown".into()
            } else {
                version
            },
        }
    }
}

fn sanitize(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
        .take(max)
        .collect()
}
