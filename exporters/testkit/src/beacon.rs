//! A misbehaving beacon node: a raw HTTP/1.1 server on 127.0.0.1 whose answers the test changes
//! while the exporter runs. Good answers are built around a chain whose clock is real (genesis
//! in the past, 2 s slots) so the exporter's clock and head logic engage.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a route answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A status and a JSON (or any) body.
    Body(u16, String),
    /// Never answers.
    Hang,
    /// A 200 whose body is `prefix`, `count` copies of `item` joined by commas, then `suffix`.
    Repeat {
        prefix: String,
        item: String,
        count: usize,
        suffix: String,
    },
}

/// How the event stream behaves.
#[derive(Clone, Debug)]
pub enum Stream {
    /// Sends these bytes, then stays open and silent.
    Send(Vec<u8>),
    /// Sends half an event, then stalls with the connection open.
    HalfThenStall,
    /// Sends one line that never ends.
    EndlessLine,
    /// Sends these bytes and closes after `Duration`.
    CloseAfter(Vec<u8>, Duration),
    /// Answers with this status.
    Status(u16),
    /// A live chain: a head event for every wall-clock slot of this genesis (2 s slots) as it
    /// starts, for as long as the stream setting stays `Heads`; then silent with the connection
    /// open.
    Heads { genesis: u64 },
}

#[derive(Default)]
struct Behaviour {
    routes: HashMap<String, Reply>,
    stream: Option<Stream>,
}

/// The fake node.
pub struct FakeBeacon {
    pub url: String,
    pub port: u16,
    behaviour: Arc<Mutex<Behaviour>>,
    /// Event stream connections accepted.
    pub stream_opens: Arc<AtomicU64>,
    /// Bytes written on event streams.
    pub stream_bytes: Arc<AtomicU64>,
    /// Requests served, by path without query.
    requests: Arc<Mutex<HashMap<String, u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeBeacon {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A root made from a number.
pub fn root(n: u64) -> String {
    format!("0x{n:064x}")
}

/// The good answers of a healthy node at head `slot` with genesis `genesis`.
pub fn healthy(genesis: u64, slot: u64) -> Vec<(String, Reply)> {
    let ok = |b: String| Reply::Body(200, b);
    vec![
        ("/eth/v1/beacon/genesis".into(), ok(format!(r#"{{"data":{{"genesis_time":"{genesis}","genesis_validators_root":"{}","genesis_fork_version":"0x00000000"}}}}"#, root(1)))),
        ("/eth/v1/config/spec".into(), ok(r#"{"data":{"SECONDS_PER_SLOT":"2","SLOTS_PER_EPOCH":"8","SOMETHING_NEW":"x"}}"#.into())),
        ("/eth/v1/node/syncing".into(), ok(r#"{"data":{"head_slot":"5","sync_distance":"0","is_syncing":false,"is_optimistic":false,"el_offline":false}}"#.into())),
        ("/eth/v1/node/health".into(), Reply::Body(200, String::new())),
        ("/eth/v1/node/version".into(), ok(r#"{"data":{"version":"Fakehouse/v9.9.9/x86_64-linux"}}"#.into())),
        ("/eth/v1/node/peer_count".into(), ok(r#"{"data":{"disconnected":"1","connecting":"0","connected":"3","disconnecting":"0"}}"#.into())),
        ("/eth/v1/node/peers".into(), ok(r#"{"data":[{"peer_id":"a","enr":null,"last_seen_p2p_address":"/ip4/1.2.3.4","state":"connected","direction":"inbound"},{"peer_id":"b","state":"connected","direction":"outbound"},{"peer_id":"c","state":"connected","direction":"outbound"}],"meta":{"count":3}}"#.into())),
        ("/eth/v1/beacon/states/head/finality_checkpoints".into(), ok(format!(r#"{{"data":{{"previous_justified":{{"epoch":"1","root":"{r}"}},"current_justified":{{"epoch":"2","root":"{r}"}},"finalized":{{"epoch":"1","root":"{r}"}}}},"execution_optimistic":false}}"#, r = root(1)))),
        ("/eth/v1/beacon/headers/head".to_string(), ok(header(slot))),
        (format!("/eth/v1/beacon/headers/{}", root(slot)), ok(header(slot))),
        (format!("/eth/v2/beacon/blocks/{}", root(slot)), ok(block(slot))),
        ("/eth/v1/beacon/states/head/validators".into(), ok(r#"{"data":[{"index":"0","balance":"32000000000","status":"active_ongoing","validator":{}}]}"#.into())),
    ]
}

/// A header at `slot` whose root encodes the slot and whose parent is the previous slot.
pub fn header(slot: u64) -> String {
    format!(
        r#"{{"data":{{"root":"{}","canonical":true,"header":{{"message":{{"slot":"{slot}","proposer_index":"0","parent_root":"{}","state_root":"{}","body_root":"{}"}},"signature":"0x00"}}}},"execution_optimistic":false}}"#,
        root(slot),
        root(slot.saturating_sub(1)),
        root(0),
        root(0)
    )
}

/// A post-merge block at `slot` with execution block number `1000 + slot`.
pub fn block(slot: u64) -> String {
    format!(
        r#"{{"version":"deneb","execution_optimistic":false,"finalized":false,"data":{{"message":{{"slot":"{slot}","proposer_index":"0","parent_root":"{}","state_root":"{}","body":{{"execution_payload":{{"block_number":"{}","block_hash":"{}","transactions":["0x00"]}}}}}},"signature":"0x00"}}}}"#,
        root(slot.saturating_sub(1)),
        root(0),
        1000 + slot,
        root(77)
    )
}

/// A `head` event for `slot`.
pub fn head_event(slot: u64) -> String {
    format!(
        "event: head\ndata: {{\"slot\":\"{slot}\",\"block\":\"{}\",\"state\":\"{}\",\"epoch_transition\":false,\"execution_optimistic\":false}}\n\n",
        root(slot),
        root(0)
    )
}

impl FakeBeacon {
    pub async fn start() -> FakeBeacon {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let behaviour: Arc<Mutex<Behaviour>> = Arc::default();
        let stream_opens = Arc::new(AtomicU64::new(0));
        let stream_bytes = Arc::new(AtomicU64::new(0));
        let requests: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let (b, o, by, rq) = (
            behaviour.clone(),
            stream_opens.clone(),
            stream_bytes.clone(),
            requests.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let (b, o, by, rq) = (b.clone(), o.clone(), by.clone(), rq.clone());
                tokio::spawn(async move {
                    let _ = serve(sock, b, o, by, rq).await;
                });
            }
        });
        FakeBeacon {
            url: format!("http://127.0.0.1:{port}"),
            port,
            behaviour,
            stream_opens,
            stream_bytes,
            requests,
            task,
        }
    }

    /// Sets the answer of `path`; a path ending in `*` answers every path with that prefix.
    pub fn set(&self, path: &str, reply: Reply) {
        self.behaviour
            .lock()
            .expect("lock")
            .routes
            .insert(path.to_string(), reply);
    }

    pub fn set_all(&self, replies: Vec<(String, Reply)>) {
        let mut b = self.behaviour.lock().expect("lock");
        for (p, r) in replies {
            b.routes.insert(p, r);
        }
    }

    /// Every route answers `reply` (the stream too, when it is a status).
    pub fn break_all(&self, reply: Reply) {
        let mut b = self.behaviour.lock().expect("lock");
        for r in b.routes.values_mut() {
            *r = reply.clone();
        }
    }

    pub fn stream(&self, s: Stream) {
        self.behaviour.lock().expect("lock").stream = Some(s);
    }

    pub fn requests(&self, path: &str) -> u64 {
        self.requests
            .lock()
            .expect("lock")
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

async fn serve(
    mut sock: TcpStream,
    behaviour: Arc<Mutex<Behaviour>>,
    opens: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    requests: Arc<Mutex<HashMap<String, u64>>>,
) -> std::io::Result<()> {
    // Read the request head (and a small body, ignored).
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let path = target.split('?').next().unwrap_or("/").to_string();
    *requests
        .lock()
        .expect("lock")
        .entry(path.clone())
        .or_default() += 1;
    if path == "/eth/v1/events" {
        let s = behaviour.lock().expect("lock").stream.clone();
        return stream(sock, s, opens, bytes, behaviour).await;
    }
    // An exact path, else the longest `prefix*` route that matches.
    let reply = {
        let b = behaviour.lock().expect("lock");
        b.routes.get(&path).cloned().or_else(|| {
            b.routes
                .iter()
                .filter_map(|(k, v)| {
                    k.strip_suffix('*')
                        .filter(|p| path.starts_with(p))
                        .map(|p| (p.len(), v))
                })
                .max_by_key(|(n, _)| *n)
                .map(|(_, v)| v.clone())
        })
    }
    .unwrap_or(Reply::Body(
        404,
        r#"{"code":404,"message":"not found"}"#.into(),
    ));
    match reply {
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }
        Reply::Body(status, body) => {
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            sock.write_all(head.as_bytes()).await?;
            sock.write_all(body.as_bytes()).await?;
            sock.shutdown().await
        }
        Reply::Repeat {
            prefix,
            item,
            count,
            suffix,
        } => {
            // No Content-Length: the exporter must cap the body while it streams in.
            sock.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
            )
            .await?;
            sock.write_all(prefix.as_bytes()).await?;
            let mut batch = String::new();
            for i in 0..count {
                if i > 0 {
                    batch.push(',');
                }
                batch.push_str(&item);
                if batch.len() > 64 * 1024 {
                    sock.write_all(batch.as_bytes()).await?;
                    batch.clear();
                }
            }
            sock.write_all(batch.as_bytes()).await?;
            sock.write_all(suffix.as_bytes()).await?;
            sock.shutdown().await
        }
    }
}

async fn stream(
    mut sock: TcpStream,
    s: Option<Stream>,
    opens: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    behaviour: Arc<Mutex<Behaviour>>,
) -> std::io::Result<()> {
    let s = s.unwrap_or(Stream::Send(Vec::new()));
    if let Stream::Status(code) = s {
        let head = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return sock.write_all(head.as_bytes()).await;
    }
    opens.fetch_add(1, Ordering::SeqCst);
    sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n")
        .await?;
    let send = |data: &[u8]| {
        bytes.fetch_add(data.len() as u64, Ordering::SeqCst);
        data.to_vec()
    };
    match s {
        Stream::Send(data) => {
            sock.write_all(&send(&data)).await?;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Stream::HalfThenStall => {
            sock.write_all(&send(b"event: head\ndata: {\"slot\":\"1"))
                .await?;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Stream::EndlessLine => {
            sock.write_all(&send(b"data: ")).await?;
            let chunk = vec![b'a'; 64 * 1024];
            loop {
                sock.write_all(&send(&chunk)).await?;
            }
        }
        Stream::CloseAfter(data, after) => {
            sock.write_all(&send(&data)).await?;
            tokio::time::sleep(after).await;
        }
        Stream::Heads { genesis } => loop {
            let still = matches!(
                behaviour.lock().expect("lock").stream,
                Some(Stream::Heads { .. })
            );
            if !still {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                break;
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("time")
                .as_secs_f64();
            let slot = ((now - genesis as f64) / 2.0).floor() as u64;
            sock.write_all(&send(head_event(slot).as_bytes())).await?;
            let next = genesis as f64 + (slot + 1) as f64 * 2.0;
            tokio::time::sleep(Duration::from_secs_f64((next - now).max(0.01))).await;
        },
        Stream::Status(_) => {}
    }
    Ok(())
}

/// A chain whose clock is real: genesis 100 s ago, 2 s slots; returns (genesis, head slot).
pub fn live_chain() -> (u64, u64) {
    let now = ethwatch_core::unix_now() as u64;
    let genesis = now - 100;
    (genesis, (now - genesis) / 2)
}

/// The consensus exporter's `eth_cl_api_errors_total` for `route` and error `kind`.
pub fn api_errors(s: &[crate::scrape::Sample], route: &str, kind: &str) -> Option<f64> {
    crate::val(
        s,
        "eth_cl_api_errors_total",
        &[("route", route), ("kind", kind)],
    )
}
