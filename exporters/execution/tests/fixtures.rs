//! Decoding recorded real responses and the quirks clients differ in.
//!
//! The `.io` files under `tests/fixtures/execution-apis/` are copied from the execution-apis
//! test suite (CC0): a `>>` line is a request, a `<<` line its recorded response. Every `<<`
//! response of a method the exporter reads is decoded into the exporter's types, and concrete
//! values are checked against the recording. The quirks (decimal vs hex, JSON numbers, Geth- and
//! Reth-style `eth_syncing`, null results, -32601, numbers beyond `u64`, invalid hex) are
//! written inline, each with the client that sends it.
//!
//! (Over 600 lines: tables of recorded responses and the values each must decode to.)

use ethwatch_testkit::jsonrpc as support;

use std::path::PathBuf;
use std::str::FromStr;

use alloy_primitives::B256;
use ethwatch_core::upstream::{ErrorKind, RequestMetrics, UpstreamError};
use ethwatch_execution::rpc::RpcClient;
use ethwatch_execution::types::{
    ClientVersion, Header, Quantity, Quantity128, SyncStatus, TxpoolStatus, parse_quantity,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/execution-apis")
}

/// A recorded exchange.
struct Exchange {
    file: String,
    request: Value,
    /// The response line exactly as recorded.
    raw: String,
    response: Value,
}

/// Every exchange recorded for `method`.
fn exchanges(method: &str) -> Vec<Exchange> {
    let dir = fixtures_dir().join(method);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "io"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read fixture");
        let mut request = None;
        for line in text.lines() {
            if let Some(r) = line.strip_prefix(">>") {
                request = Some(serde_json::from_str(r.trim()).expect("request is JSON"));
            } else if let Some(r) = line.strip_prefix("<<") {
                out.push(Exchange {
                    file: path
                        .file_name()
                        .expect("name")
                        .to_string_lossy()
                        .into_owned(),
                    request: request.take().expect("a >> line before each << line"),
                    raw: r.trim().to_string(),
                    response: serde_json::from_str(r.trim()).expect("response is JSON"),
                });
            }
        }
    }
    assert!(!out.is_empty(), "no recorded exchange for {method}");
    out
}

/// The one recorded exchange in `method/file`.
fn exchange(method: &str, file: &str) -> Exchange {
    exchanges(method)
        .into_iter()
        .find(|e| e.file == file)
        .unwrap_or_else(|| panic!("no fixture {method}/{file}"))
}

/// Decodes the `result` of a response as the exporter does.
fn result<T: DeserializeOwned>(e: &Exchange) -> T {
    let r = e
        .response
        .get("result")
        .unwrap_or_else(|| panic!("{}: no result", e.file));
    serde_json::from_value(r.clone()).unwrap_or_else(|err| panic!("{}: {err}", e.file))
}

fn decode<T: DeserializeOwned>(v: Value) -> serde_json::Result<T> {
    serde_json::from_value(v)
}

fn hash(s: &str) -> B256 {
    B256::from_str(s).expect("hash")
}

// ---------------------------------------------------------------------------------------------
// Recorded responses.

#[test]
fn every_recorded_response_of_a_method_we_read_decodes() {
    let mut n = 0;
    for m in ["eth_getBlockByNumber", "eth_getBlockByHash"] {
        for e in exchanges(m) {
            assert_eq!(e.request["method"], m, "{}", e.file);
            let _: Option<Header> = result(&e);
            n += 1;
        }
    }
    for e in exchanges("eth_syncing") {
        let _: SyncStatus = result(&e);
        n += 1;
    }
    for e in exchanges("txpool_status") {
        let _: TxpoolStatus = result(&e);
        n += 1;
    }
    for m in ["eth_chainId", "net_version"] {
        for e in exchanges(m) {
            let _: Quantity = result(&e);
            n += 1;
        }
    }
    assert_eq!(n, 17, "every recorded exchange was visited");
}

#[test]
fn blocks_read_the_recorded_values() {
    struct Want {
        file: &'static str,
        number: u64,
        timestamp: u64,
        gas_used: u64,
        gas_limit: u64,
        base_fee: Option<u128>,
        transactions: u64,
        hash: &'static str,
    }
    let block_54 = Want {
        file: "",
        number: 54,
        timestamp: 540,
        gas_used: 339_825,
        gas_limit: 200_000_000,
        base_fee: Some(27_399_063),
        transactions: 4,
        hash: "0xd226371d0b1551adb03fb52b71f08e3e11247fe9b1af994768af8cdaa8e7dcd7",
    };
    let table = [
        Want {
            file: "get-genesis.io",
            number: 0,
            timestamp: 0,
            gas_used: 0,
            gas_limit: 100_000_000,
            base_fee: None,
            transactions: 0,
            hash: "0x44fd89d504659cd58f48f4796b77a7e7012cf296a2409afa2f6c3cb99b5b3d99",
        },
        Want {
            file: "get-block-london-fork.io",
            number: 27,
            timestamp: 270,
            gas_used: 145_736,
            gas_limit: 200_000_000,
            base_fee: Some(1_000_000_000),
            transactions: 4,
            hash: "0xb82be38216daf4487ab4fcafe9413892e7140f6816276560ec10d94d039db1aa",
        },
        Want {
            file: "get-block-merge-fork.io",
            number: 36,
            timestamp: 360,
            gas_used: 255_037,
            gas_limit: 200_000_000,
            base_fee: Some(301_428_417),
            transactions: 4,
            hash: "0xd26a1e23d9d002e78866b369def0241d073eb0642c3dca25ef2f2417242ac9d3",
        },
        Want {
            file: "get-block-shanghai-fork.io",
            number: 39,
            timestamp: 390,
            gas_used: 93_868,
            gas_limit: 200_000_000,
            base_fee: Some(202_147_205),
            transactions: 3,
            hash: "0x8690870c2ff6dd397319efe697eae4aa9459995e9281a9e56363ca1a7bb881d8",
        },
        Want {
            file: "get-block-cancun-fork.io",
            number: 42,
            timestamp: 420,
            gas_used: 176_604,
            gas_limit: 200_000_000,
            base_fee: Some(135_524_923),
            transactions: 4,
            hash: "0x9e5e1e79c57f257def6a0e882d10863e2a98b034e6e0fdaccd7ff7b31312105d",
        },
        Want {
            file: "get-block-prague-fork.io",
            number: 45,
            timestamp: 450,
            gas_used: 431_552,
            gas_limit: 200_000_000,
            base_fee: Some(90_870_291),
            transactions: 6,
            hash: "0xe4165d5a6e4d31469f4a9354c30bffec633a640940b40bc0bc1ae86d1b391643",
        },
        // latest, safe and finalized are the same block on this test chain; full transactions.
        Want {
            file: "get-latest.io",
            ..block_54
        },
        Want {
            file: "get-safe.io",
            ..block_54
        },
        Want {
            file: "get-finalized.io",
            ..block_54
        },
    ];
    for w in table {
        let e = exchange("eth_getBlockByNumber", w.file);
        let h: Option<Header> = result(&e);
        let h = h.unwrap_or_else(|| panic!("{}: null block", w.file));
        assert_eq!(h.number(), w.number, "{}", w.file);
        assert_eq!(h.timestamp(), w.timestamp, "{}", w.file);
        assert_eq!(h.gas_used.0, w.gas_used, "{}", w.file);
        assert_eq!(h.gas_limit.0, w.gas_limit, "{}", w.file);
        assert_eq!(h.base_fee_per_gas.map(|q| q.0), w.base_fee, "{}", w.file);
        assert_eq!(h.transactions, Some(w.transactions), "{}", w.file);
        assert_eq!(h.hash, hash(w.hash), "{}", w.file);
    }
}

#[test]
fn block_by_hash_links_to_its_parent() {
    let genesis: Option<Header> = result(&exchange("eth_getBlockByNumber", "get-genesis.io"));
    let genesis = genesis.expect("genesis");
    assert_eq!(genesis.parent_hash, B256::ZERO);
    let e = exchange("eth_getBlockByHash", "get-block-by-hash.io");
    assert_eq!(
        e.request["params"][1], true,
        "recorded with full transaction objects"
    );
    let one: Option<Header> = result(&e);
    let one = one.expect("block 1");
    assert_eq!(one.number(), 1);
    assert_eq!(
        one.hash,
        hash(e.request["params"][0].as_str().expect("hash param"))
    );
    assert_eq!(
        one.parent_hash, genesis.hash,
        "block 1's parent is the genesis block"
    );
    assert_eq!(one.timestamp(), 10);
    assert_eq!(one.gas_used.0, 337_899);
    assert_eq!(
        one.transactions,
        Some(4),
        "full transaction objects are counted too"
    );
    assert_eq!(one.base_fee_per_gas, None, "pre-London");
}

#[test]
fn not_found_blocks_are_null() {
    for (m, f) in [
        ("eth_getBlockByNumber", "get-block-notfound.io"),
        ("eth_getBlockByHash", "get-block-by-notfound-hash.io"),
        ("eth_getBlockByHash", "get-block-by-empty-hash.io"),
    ] {
        let h: Option<Header> = result(&exchange(m, f));
        assert_eq!(h, None, "{m}/{f}");
    }
}

#[test]
fn chain_id_network_id_sync_and_txpool() {
    let chain: Quantity = result(&exchange("eth_chainId", "get-chain-id.io"));
    let network: Quantity = result(&exchange("net_version", "get-network-id.io"));
    assert_eq!(
        chain,
        Quantity(3_503_995_874_084_926),
        "hex 0xc72dd9d5e883e"
    );
    assert_eq!(
        network, chain,
        "net_version is a decimal string of the same id"
    );
    let sync: SyncStatus = result(&exchange("eth_syncing", "check-syncing.io"));
    assert_eq!(sync, SyncStatus::Synced);
    let pool: TxpoolStatus = result(&exchange("txpool_status", "get-status.io"));
    assert_eq!((pool.pending, pool.queued), (Quantity(6), Quantity(0)));
}

/// The recorded responses through the real client (framing, ids, the upstream call path).
#[tokio::test]
async fn recorded_responses_through_the_rpc_client() {
    async fn client(body: String) -> (RpcClient, RequestMetrics) {
        support::replay_client(body).await
    }

    let e = exchange("eth_getBlockByNumber", "get-latest.io");
    let (rpc, _) = client(e.raw.clone()).await;
    let h: Option<Header> = rpc
        .call("eth_getBlockByNumber", e.request["params"].clone())
        .await
        .expect("latest block");
    assert_eq!(h.map(|h| h.number()), Some(54));

    let e = exchange("eth_getBlockByNumber", "get-block-notfound.io");
    let (rpc, _) = client(e.raw.clone()).await;
    let h: Option<Header> = rpc
        .call("eth_getBlockByNumber", e.request["params"].clone())
        .await
        .expect("null block");
    assert_eq!(h, None);

    let e = exchange("eth_chainId", "get-chain-id.io");
    let (rpc, _) = client(e.raw.clone()).await;
    let q: Quantity = rpc.call("eth_chainId", json!([])).await.expect("chain id");
    assert_eq!(q.0, 3_503_995_874_084_926);

    // -32601 as anvil answers net_peerCount: an rpc_error, counted for the method.
    let (rpc, m) = client(
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}}"#.into(),
    )
    .await;
    let r: Result<Quantity, _> = rpc.call("net_peerCount", json!([])).await;
    match r {
        Err(UpstreamError::Rpc { code, ref message }) => {
            assert_eq!((code, message.as_str()), (-32601, "Method not found"));
        }
        other => panic!("expected a -32601 error, got {other:?}"),
    }
    assert_eq!(m.error_count("net_peerCount", ErrorKind::RpcError), 1);

    // A recorded answer whose value is out of range: a decode error, counted for the method.
    let (rpc, m) =
        client(r#"{"jsonrpc":"2.0","id":1,"result":"0x10000000000000000"}"#.into()).await;
    let r: Result<Quantity, _> = rpc.call("eth_chainId", json!([])).await;
    assert!(matches!(r, Err(UpstreamError::Decode(_))), "{r:?}");
    assert_eq!(m.error_count("eth_chainId", ErrorKind::Decode), 1);
}

// ---------------------------------------------------------------------------------------------
// Quirks.

#[test]
fn quantities_hex_decimal_and_numbers() {
    let ok = [
        (json!("0x1a"), 26),
        (json!("0X1A"), 26),
        (json!("26"), 26),
        (json!(26), 26),
        (json!("0x0"), 0),
        (json!("0"), 0),
        (json!(0), 0),
        // Leading zeros are not canonical hex, but clients send them and they are unambiguous.
        (json!("0x001a"), 26),
        (json!("0xffffffffffffffff"), u64::MAX),
        (json!("18446744073709551615"), u64::MAX),
        (json!(u64::MAX), u64::MAX),
    ];
    for (v, want) in ok {
        assert_eq!(parse_quantity(&v), Ok(want), "{v}");
        assert_eq!(
            decode::<Quantity>(v.clone()).ok(),
            Some(Quantity(want)),
            "{v}"
        );
    }
    let bad = [
        json!("0x"), // empty
        json!(""),
        json!("0xzz"), // not hex
        json!("0x1g"),
        json!("0x+1"), // a sign is not a digit
        json!("+26"),
        json!("-1"),
        json!("0x-1"),
        json!("1a"), // hex without its prefix
        json!("1e3"),
        json!("0x10000000000000000"), // 2^64: beyond u64
        json!("18446744073709551616"),
        json!(18_446_744_073_709_551_616.0_f64),
        json!(-1),
        json!(1.5),
        json!(null),
        json!(true),
        json!([1]),
        json!({"value": 1}),
    ];
    for v in bad {
        assert!(
            parse_quantity(&v).is_err(),
            "{v} must not parse, got {:?}",
            parse_quantity(&v)
        );
        assert!(decode::<Quantity>(v.clone()).is_err(), "{v}");
    }
    // A number beyond u64 in the raw text (serde_json reads it as a float): an error, no wrap.
    assert!(serde_json::from_str::<Quantity>("18446744073709551616").is_err());
    assert!(serde_json::from_str::<Quantity>("340282366920938463463374607431768211456").is_err());
}

#[test]
fn base_fees_are_128_bit() {
    let ok = [
        (json!("0x3b9aca00"), 1_000_000_000u128),
        (json!("1000000000"), 1_000_000_000),
        (json!(1_000_000_000), 1_000_000_000),
        (json!("0x10000000000000000"), 1u128 << 64),
        (json!("0xffffffffffffffffffffffffffffffff"), u128::MAX),
    ];
    for (v, want) in ok {
        assert_eq!(
            decode::<Quantity128>(v.clone()).ok(),
            Some(Quantity128(want)),
            "{v}"
        );
    }
    for v in [
        json!("0x"),
        json!("0xzz"),
        json!("0x+1"),
        json!("0x100000000000000000000000000000000"), // 2^128
        json!(-1),
        json!(null),
    ] {
        assert!(decode::<Quantity128>(v.clone()).is_err(), "{v}");
    }
}

fn block_json() -> Value {
    json!({
        "number": "0x10",
        "hash": "0x9e5e1e79c57f257def6a0e882d10863e2a98b034e6e0fdaccd7ff7b31312105d",
        "parentHash": "0xe956f744bb860c7aa762919d66f5e3501da555956d42be5c03c0db5a80990c61",
        "timestamp": "0x1a4",
        "gasUsed": "0x5208",
        "gasLimit": "0x1c9c380",
        "baseFeePerGas": "0x7",
        "transactions": ["0x9e5e1e79c57f257def6a0e882d10863e2a98b034e6e0fdaccd7ff7b31312105d"]
    })
}

#[test]
fn headers_with_quirks() {
    // JSON numbers and decimal strings (proxies, some clients).
    let mut b = block_json();
    b["number"] = json!(16);
    b["timestamp"] = json!("420");
    b["gasLimit"] = json!(30_000_000);
    let h: Header = decode(b).expect("numbers and decimal strings");
    assert_eq!(
        (h.number(), h.timestamp(), h.gas_limit.0),
        (16, 420, 30_000_000)
    );

    // A newHeads header has no transactions; a pre-London block no base fee.
    let mut b = block_json();
    b.as_object_mut().expect("object").remove("transactions");
    b.as_object_mut().expect("object").remove("baseFeePerGas");
    let h: Header = decode(b).expect("header without transactions");
    assert_eq!((h.transactions, h.base_fee_per_gas), (None, None));
    let mut b = block_json();
    b["transactions"] = json!(null);
    b["baseFeePerGas"] = json!(null);
    let h: Header = decode(b).expect("explicit nulls");
    assert_eq!((h.transactions, h.base_fee_per_gas), (None, None));
    let mut b = block_json();
    b["transactions"] = json!([]);
    assert_eq!(
        decode::<Header>(b).expect("empty block").transactions,
        Some(0)
    );

    // A null result is no block, not an error.
    assert_eq!(decode::<Option<Header>>(json!(null)).ok(), Some(None));

    // Broken fields are errors, never a wrap-around or a default.
    for (field, v) in [
        ("number", json!("0x10000000000000000")),
        ("number", json!(18_446_744_073_709_551_616.0_f64)),
        ("number", json!("0xzz")),
        ("number", json!("0x")),
        ("timestamp", json!(null)),
        ("gasUsed", json!(-5)),
        ("hash", json!("0x1234")),
        ("parentHash", json!("not a hash")),
        ("transactions", json!("0x1")),
    ] {
        let mut b = block_json();
        b[field] = v.clone();
        assert!(
            decode::<Header>(b).is_err(),
            "{field} = {v} must not decode"
        );
    }
    let mut b = block_json();
    b.as_object_mut().expect("object").remove("number");
    assert!(decode::<Header>(b).is_err(), "a block without a number");
}

#[test]
fn eth_syncing_false_or_progress() {
    assert_eq!(
        decode::<SyncStatus>(json!(false)).ok(),
        Some(SyncStatus::Synced)
    );
    // Geth.
    let geth = json!({
        "startingBlock": "0x0", "currentBlock": "0x1d4c0", "highestBlock": "0x1e848",
        "syncedAccounts": "0x0", "syncedAccountBytes": "0x0", "syncedBytecodes": "0x0",
        "syncedBytecodeBytes": "0x0", "syncedStorage": "0x0", "syncedStorageBytes": "0x0",
        "healedTrienodes": "0x0", "healedTrienodeBytes": "0x0", "healedBytecodes": "0x0",
        "healedBytecodeBytes": "0x0", "healingTrienodes": "0x0", "healingBytecode": "0x0",
        "txIndexFinishedBlocks": "0x0", "txIndexRemainingBlocks": "0x0"
    });
    assert_eq!(
        decode::<SyncStatus>(geth).ok(),
        Some(SyncStatus::Syncing {
            current: 120_000,
            highest: 125_000
        })
    );
    // Reth adds its pipeline stages.
    let reth = json!({
        "startingBlock": "0x0", "currentBlock": "0x1234", "highestBlock": "0x5678",
        "warpChunksAmount": null, "warpChunksProcessed": null,
        "stages": [
            {"name": "Headers", "block": "0x5678"},
            {"name": "Bodies", "block": "0x1234"},
            {"name": "Execution", "block": "0x1000"}
        ]
    });
    assert_eq!(
        decode::<SyncStatus>(reth).ok(),
        Some(SyncStatus::Syncing {
            current: 0x1234,
            highest: 0x5678
        })
    );
    // Nethermind adds isSyncing; decimal progress from a proxy.
    let other = json!({"isSyncing": true, "startingBlock": "0", "currentBlock": "100", "highestBlock": 200});
    assert_eq!(
        decode::<SyncStatus>(other).ok(),
        Some(SyncStatus::Syncing {
            current: 100,
            highest: 200
        })
    );
    for bad in [
        json!(true),
        json!(null),
        json!("false"),
        json!(0),
        json!({"currentBlock": "0x1"}),
        json!({"currentBlock": "0xzz", "highestBlock": "0x2"}),
        json!({"currentBlock": "0x1", "highestBlock": "0x10000000000000000"}),
    ] {
        assert!(decode::<SyncStatus>(bad.clone()).is_err(), "{bad}");
    }
}

#[test]
fn txpool_status_hex_or_decimal() {
    for v in [
        json!({"pending": "0x6", "queued": "0x0"}),
        json!({"pending": "6", "queued": "0"}),
        json!({"pending": 6, "queued": 0}),
        json!({"pending": 6, "queued": "0x0", "baseFee": "0x7"}),
    ] {
        let t: TxpoolStatus = decode(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!((t.pending.0, t.queued.0), (6, 0), "{v}");
    }
    for bad in [
        json!({"pending": "0x6"}),
        json!({"pending": "0xzz", "queued": "0x0"}),
        json!(null),
    ] {
        assert!(decode::<TxpoolStatus>(bad.clone()).is_err(), "{bad}");
    }
}

#[test]
fn error_objects_are_not_results() {
    // -32601 from a client without the method: the response has no result to decode.
    let r: Value = serde_json::from_str(
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"the method net_peerCount does not exist/is not available"}}"#,
    )
    .expect("json");
    assert!(r.get("result").is_none());
    assert_eq!(r["error"]["code"], -32601);
    assert_eq!(ethwatch_execution::rpc::METHOD_NOT_FOUND, -32601);
}

// ---------------------------------------------------------------------------------------------
// web3_clientVersion.

#[test]
fn client_versions() {
    let cases = [
        (
            "Geth/v1.14.11-stable-f3c696fa/linux-amd64/go1.23.2",
            "geth",
            "1.14.11-stable-f3c696fa",
        ),
        (
            "reth/v1.1.0-1ba631b/x86_64-unknown-linux-gnu",
            "reth",
            "1.1.0-1ba631b",
        ),
        (
            "Nethermind/v1.25.4+20b10b35/linux-x64/dotnet8.0.0",
            "nethermind",
            "1.25.4+20b10b35",
        ),
        ("anvil/v1.7.1", "anvil", "1.7.1"),
        (
            "HardhatNetwork/2.29.1/@ethereumjs/vm/5.9.3",
            "hardhatnetwork",
            "2.29.1",
        ),
        ("erigon/2.60.0/linux-amd64/go1.21.5", "erigon", "2.60.0"),
        (
            "besu/v24.1.0/linux-x86_64/openjdk-java-17",
            "besu",
            "24.1.0",
        ),
        ("Geth", "geth", "unknown"),
        ("", "unknown", "unknown"),
        ("/", "unknown", "unknown"),
        ("/v1.0", "unknown", "1.0"),
    ];
    for (raw, client, version) in cases {
        let c = ClientVersion::parse(raw);
        assert_eq!(
            (c.client.as_str(), c.version.as_str()),
            (client, version),
            "{raw:?}"
        );
    }
}

#[test]
fn client_version_garbage_is_bounded() {
    let long = "X".repeat(100_000);
    let garbage = [
        long.clone(),
        format!("{long}/{long}"),
        "<script>alert(1)</script>/v\"1\n2\\3{}".to_string(),
        "Гет/в1.0/линукс".to_string(),
        "\u{0}\u{1}\u{7f}/\u{0}".to_string(),
        "a b c/d e f".to_string(),
    ];
    for raw in garbage {
        let c = ClientVersion::parse(&raw);
        assert!(c.client.len() <= 32, "client {:?} is bounded", c.client);
        assert!(c.version.len() <= 48, "version {:?} is bounded", c.version);
        for s in [&c.client, &c.version] {
            assert!(!s.is_empty());
            assert!(
                s.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_' | '+')),
                "{s:?} is safe as a label value"
            );
        }
    }
}
