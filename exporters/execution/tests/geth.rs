//! geth v1.17.10's recorded answers (tests/fixtures/geth-1.17.10, recorded by its record.sh from
//! the real post-merge devnet of tests/e2e/realnet.py, with signed transactions in flight): every
//! answer of a method the exporter calls decoded into the exporter's types with the recorded
//! values checked, the exporter's cycle as one batch through the real client (before and after
//! finality), geth's error objects, and a `newHeads` notification.

use ethwatch_testkit::jsonrpc as support;

use std::path::PathBuf;
use std::str::FromStr;

use alloy_primitives::B256;
use ethwatch_core::upstream::UpstreamError;
use ethwatch_execution::rpc::{Call, METHOD_NOT_FOUND, RpcClient};
use ethwatch_execution::types::{ClientVersion, Header, Quantity, SyncStatus, TxpoolStatus};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// One recorded exchange: the request and geth's answer exactly as sent.
struct Exchange {
    request: Value,
    raw: String,
    response: Value,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/geth-1.17.10")
}

fn exchange(rel: &str) -> Exchange {
    let p = dir().join(rel);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut request = None;
    let mut answer = None;
    for line in text.lines() {
        if let Some(r) = line.strip_prefix(">>") {
            request = Some(serde_json::from_str(r.trim()).expect("request is JSON"));
        } else if let Some(r) = line.strip_prefix("<<") {
            answer = Some(r.trim().to_string());
        }
    }
    let raw = answer.unwrap_or_else(|| panic!("{rel}: no << line"));
    Exchange {
        request: request.unwrap_or_else(|| panic!("{rel}: no >> line")),
        response: serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{rel}: {e}")),
        raw,
    }
}

fn result<T: DeserializeOwned>(rel: &str) -> T {
    let e = exchange(rel);
    let r = e
        .response
        .get("result")
        .unwrap_or_else(|| panic!("{rel}: no result: {}", e.raw));
    serde_json::from_value(r.clone()).unwrap_or_else(|err| panic!("{rel}: {err}"))
}

fn hash(s: &str) -> B256 {
    B256::from_str(s).expect("hash")
}

#[test]
fn blocks_read_the_recorded_values() {
    struct Want {
        file: &'static str,
        number: u64,
        hash: &'static str,
        gas_used: u64,
        base_fee: u128,
        transactions: u64,
    }
    for w in [
        Want {
            file: "get-latest.io",
            number: 0x49,
            hash: "0x1e14e30ebb5e8ff8d508f0049c14d763d82939b42ebaf9e994dc0620e64bc0a0",
            gas_used: 0x99cf0,
            base_fee: 0xe52a,
            transactions: 30,
        },
        Want {
            file: "get-block-with-transactions.io",
            number: 0x4a,
            hash: "0x584aaf3ca7c7f9a1f8eeff841b5049b698a67cf943280c0a54c1bd81741d87fc",
            gas_used: 0x9eef8,
            base_fee: 0xc91f,
            transactions: 31,
        },
        Want {
            file: "get-finalized.io",
            number: 0x3c,
            hash: "0x31ffe5531ff37e9d0a2373b027a2af328b135128dfc6dde495b49cdab80a54cd",
            gas_used: 0,
            base_fee: 0x51440,
            transactions: 0,
        },
        Want {
            file: "get-safe.io",
            number: 0x42,
            hash: "0x2887e3de61a7c76fd9dd21b5d620a43eef794e8573f7ce80dedf80a0f7bef6b1",
            gas_used: 0,
            base_fee: 0x2478d,
            transactions: 0,
        },
        Want {
            file: "get-genesis.io",
            number: 0,
            hash: "0xbe6589cc483473e0e7e624ad6aecd958d0223218676586dc112790e17181d1b1",
            gas_used: 0,
            base_fee: 1_000_000_000,
            transactions: 0,
        },
    ] {
        let h: Option<Header> = result(&format!("eth_getBlockByNumber/{}", w.file));
        let h = h.unwrap_or_else(|| panic!("{}: null", w.file));
        assert_eq!(h.number(), w.number, "{}", w.file);
        assert_eq!(h.hash, hash(w.hash), "{}", w.file);
        assert_eq!(h.gas_used.0, w.gas_used, "{}", w.file);
        assert_eq!(
            h.gas_limit.0, 0x3938700,
            "{}: the genesis gas limit",
            w.file
        );
        assert_eq!(
            h.base_fee_per_gas.map(|b| b.0),
            Some(w.base_fee),
            "{}",
            w.file
        );
        assert_eq!(h.transactions, Some(w.transactions), "{}", w.file);
    }
    // The block by number is the latest's child: what the gap walk relies on.
    let latest: Option<Header> = result("eth_getBlockByNumber/get-latest.io");
    let next: Option<Header> = result("eth_getBlockByNumber/get-block-with-transactions.io");
    assert_eq!(
        next.expect("block").parent_hash,
        latest.expect("latest").hash
    );
    // A number beyond the head: null, not an error.
    let none: Option<Header> = result("eth_getBlockByNumber/get-notfound.io");
    assert_eq!(none, None);
}

#[test]
fn sync_ids_peers_version_and_pool() {
    assert_eq!(
        result::<SyncStatus>("eth_syncing/check-syncing.io"),
        SyncStatus::Synced
    );
    let chain: Quantity = result("eth_chainId/get-chain-id.io");
    let network: Quantity = result("net_version/get-network-id.io");
    assert_eq!(chain, Quantity(32382), "0x7e7e");
    assert_eq!(network, chain, "net_version is the same id in decimal");
    let peers: Quantity = result("net_peerCount/get-peer-count.io");
    assert_eq!(peers, Quantity(1), "the other geth of the two-pair devnet");
    let v: String = result("web3_clientVersion/get-client-version.io");
    assert_eq!(v, "Geth/v1.17.10-stable/linux-amd64/go1.26.8");
    assert_eq!(
        ClientVersion::parse(&v),
        ClientVersion {
            client: "geth".into(),
            version: "1.17.10-stable".into()
        }
    );
    let pool: TxpoolStatus = result("txpool_status/get-status.io");
    assert_eq!((pool.pending, pool.queued), (Quantity(9), Quantity(1)));
    // txpool_content (recorded right after) lists the same transactions: address -> nonce -> tx.
    let content: Value = result("txpool_content/get-content.io");
    let count = |k: &str| -> u64 {
        content[k]
            .as_object()
            .unwrap_or_else(|| panic!("{k} is an object"))
            .values()
            .map(|by_nonce| by_nonce.as_object().expect("nonce map").len() as u64)
            .sum()
    };
    assert_eq!((count("pending"), count("queued")), (9, 1));
}

#[test]
fn geth_error_objects() {
    // Before the first finalized checkpoint, safe and finalized are errors (-32000), not null.
    for (file, msg) in [
        (
            "eth_getBlockByNumber/get-finalized-before-finality.io",
            "finalized block not found",
        ),
        (
            "eth_getBlockByNumber/get-safe-before-finality.io",
            "safe block not found",
        ),
    ] {
        let e = exchange(file);
        assert!(e.response.get("result").is_none(), "{file}");
        assert_eq!(e.response["error"]["code"], -32000, "{file}");
        assert_eq!(e.response["error"]["message"], msg, "{file}");
    }
    for file in ["errors/method-not-found.io", "errors/api-not-enabled.io"] {
        let e = exchange(file);
        assert_eq!(e.response["error"]["code"], METHOD_NOT_FOUND, "{file}");
        let m = e.request["method"].as_str().expect("method");
        assert_eq!(
            e.response["error"]["message"],
            format!("the method {m} does not exist/is not available"),
            "{file}"
        );
    }
    // An empty batch: one error object with a null id, not an empty array.
    let e = exchange("errors/empty-batch.io");
    assert_eq!(e.response["error"]["code"], -32600);
    assert_eq!(e.response["id"], Value::Null);
}

#[test]
fn a_new_heads_notification_decodes_as_a_header() {
    let e = exchange("eth_subscribe/newHeads.io");
    let id = e.response["result"].as_str().expect("a subscription id");
    let p = dir().join("eth_subscribe/newHeads-notification.json");
    let n: Value = serde_json::from_str(&std::fs::read_to_string(&p).expect("read")).expect("json");
    assert_eq!(n["method"], "eth_subscription");
    assert_eq!(n["params"]["subscription"], id);
    let h: Header = serde_json::from_value(n["params"]["result"].clone()).expect("header");
    assert_eq!(h.number(), 0x4c);
    assert_eq!(
        h.hash,
        hash("0xbe6edfcbd88d8a0780d83feeb607677877ec0bffbd2ed333ad2dd508a9e762da")
    );
    assert_eq!(h.base_fee_per_gas.map(|b| b.0), Some(0x9a9a));
    // No transaction list in a notification: the count comes from the block.
    assert_eq!(h.transactions, None);
    // geth 1.17 adds fields the exporter does not read (and must not choke on).
    assert!(n["params"]["result"].get("slotNumber").is_some());
}

/// The exporter's cycle (poller.rs) as one batch, through the real client: per-item results, in
/// order, errors beside results.
#[tokio::test]
async fn the_cycle_batch_through_the_rpc_client() {
    async fn client(body: String) -> RpcClient {
        support::replay_client(body).await.0
    }
    fn calls(request: &Value) -> Vec<Call> {
        request
            .as_array()
            .expect("a batch")
            .iter()
            .map(|r| {
                let m: &'static str = match r["method"].as_str().expect("method") {
                    "eth_getBlockByNumber" => "eth_getBlockByNumber",
                    "eth_syncing" => "eth_syncing",
                    "net_peerCount" => "net_peerCount",
                    "txpool_status" => "txpool_status",
                    "eth_mining" => "eth_mining",
                    other => panic!("unexpected {other}"),
                };
                Call::new(m, r["params"].clone())
            })
            .collect()
    }
    fn rpc_error(r: &Result<Box<serde_json::value::RawValue>, UpstreamError>) -> (i64, String) {
        match r {
            Err(UpstreamError::Rpc { code, message }) => (*code, message.clone()),
            other => panic!("expected an RPC error, got {other:?}"),
        }
    }

    for (file, finalized) in [
        ("batch/cycle-before-finality.io", false),
        ("batch/cycle.io", true),
    ] {
        let e = exchange(file);
        let rpc = client(e.raw.clone()).await;
        let items = rpc.batch(&calls(&e.request)).await.expect(file);
        assert_eq!(items.len(), 7, "{file}");
        let latest: Option<Header> =
            serde_json::from_str(items[0].as_ref().expect("latest").get()).expect("latest decodes");
        let latest = latest.expect("a head");
        if finalized {
            for (i, what) in [(1, "finalized"), (2, "safe")] {
                let h: Option<Header> =
                    serde_json::from_str(items[i].as_ref().expect(what).get()).expect(what);
                assert!(h.expect(what).number() < latest.number(), "{file}: {what}");
            }
        } else {
            assert_eq!(
                rpc_error(&items[1]),
                (-32000, "finalized block not found".into())
            );
            assert_eq!(
                rpc_error(&items[2]),
                (-32000, "safe block not found".into())
            );
        }
        let sync: SyncStatus =
            serde_json::from_str(items[3].as_ref().expect("sync").get()).expect("sync");
        assert_eq!(sync, SyncStatus::Synced, "{file}");
        let peers: Quantity =
            serde_json::from_str(items[4].as_ref().expect("peers").get()).expect("peers");
        assert_eq!(peers, Quantity(1), "{file}");
        let _: TxpoolStatus =
            serde_json::from_str(items[5].as_ref().expect("txpool").get()).expect("txpool");
        assert_eq!(rpc_error(&items[6]).0, METHOD_NOT_FOUND, "{file}");
    }
}
