//! JSON-RPC over the core's upstream call path, with batches.
//!
//! Framing (requests, responses, ids, error objects) uses `alloy-json-rpc`; transport, timeout,
//! body cap, latency and error counting are the core's [`Upstream`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use alloy_json_rpc::{Id, Request, ResponsePacket, ResponsePayload};
use ethwatch_core::upstream::{ErrorKind, Upstream, UpstreamError};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

/// JSON-RPC "method not found": the client does not implement the method.
pub const METHOD_NOT_FOUND: i64 = -32601;

/// One call in a batch.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: &'static str,
    pub params: serde_json::Value,
    /// The span the call's span is a child of (the collector that asked); the current span
    /// when `None`.
    pub parent: Option<tracing::Span>,
}

impl Call {
    /// A call with positional parameters.
    pub fn new(method: &'static str, params: serde_json::Value) -> Self {
        Call {
            method,
            params,
            parent: None,
        }
    }

    /// The same call, traced as a child of `parent`.
    pub fn under(mut self, parent: &tracing::Span) -> Self {
        self.parent = Some(parent.clone());
        self
    }
}

/// A JSON-RPC client span following the OpenTelemetry semantic conventions.
fn call_span(c: &Call, id: u64) -> tracing::Span {
    let parent = c.parent.clone().unwrap_or_else(tracing::Span::current);
    tracing::info_span!(
        parent: &parent,
        "jsonrpc_call",
        otel.name = c.method,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        rpc.system = "jsonrpc",
        rpc.method = c.method,
        rpc.jsonrpc.version = "2.0",
        rpc.jsonrpc.request_id = id,
        rpc.jsonrpc.error_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// The answer to one call of a batch: its raw result or why it has none.
pub type ItemResult = Result<Box<RawValue>, UpstreamError>;

/// A JSON-RPC client for one node.
#[derive(Debug)]
pub struct RpcClient {
    upstream: Upstream,
    next_id: AtomicU64,
}

impl RpcClient {
    /// Wraps an upstream endpoint.
    pub fn new(upstream: Upstream) -> Self {
        RpcClient {
            upstream,
            next_id: AtomicU64::new(1),
        }
    }

    /// The endpoint (for the redacted URL and metrics).
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Sends `calls` in one HTTP request (a batch when there is more than one) and returns one
    /// result per call, in order. `Err` means the whole exchange failed: counted once, under the
    /// one method or `batch` (see [`ethwatch_core::upstream::exchange_target`]). JSON-RPC error
    /// objects in an answer are counted as `rpc_error` for their method, one per call.
    pub async fn batch(&self, calls: &[Call]) -> Result<Vec<ItemResult>, UpstreamError> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let first = self
            .next_id
            .fetch_add(calls.len() as u64, Ordering::Relaxed);
        let reqs: Vec<Request<&serde_json::Value>> = calls
            .iter()
            .enumerate()
            .map(|(i, c)| Request::new(c.method, Id::Number(first + i as u64), &c.params))
            .collect();
        let body = if reqs.len() == 1 {
            serde_json::to_vec(&reqs[0])
        } else {
            serde_json::to_vec(&reqs)
        }
        .map_err(UpstreamError::decode)?;
        let methods: Vec<&'static str> = calls.iter().map(|c| c.method).collect();
        // Every method of the batch is a span of its own (they share the round trip).
        let spans: Vec<tracing::Span> = calls
            .iter()
            .enumerate()
            .map(|(i, c)| call_span(c, first + i as u64))
            .collect();
        let fail_all = |e: &UpstreamError| {
            for s in &spans {
                s.record("error.type", e.kind().as_str());
                s.record("otel.status_code", "ERROR");
            }
        };
        let bytes = match self.upstream.post_json(&methods, body).await {
            Ok(b) => b,
            Err(e) => {
                fail_all(&e);
                return Err(e);
            }
        };
        let (results, refused) = match self.split(&bytes, first, calls.len()) {
            Ok(r) => r,
            Err(e) => {
                fail_all(&e);
                // The answer as a whole is unusable: one failed exchange, like a refused one.
                self.upstream
                    .metrics()
                    .error(ethwatch_core::upstream::exchange_target(&methods), e.kind());
                return Err(e);
            }
        };
        if refused {
            // One error object for the whole batch: one failed exchange.
            self.upstream.metrics().error(
                ethwatch_core::upstream::exchange_target(&methods),
                ErrorKind::RpcError,
            );
        }
        for ((r, m), s) in results.iter().zip(&methods).zip(&spans) {
            if let Err(e) = r {
                if !refused {
                    self.upstream.metrics().error(m, e.kind());
                }
                if let UpstreamError::Rpc { code, .. } = e {
                    s.record("rpc.jsonrpc.error_code", code);
                }
                s.record("error.type", e.kind().as_str());
                s.record("otel.status_code", "ERROR");
            }
        }
        Ok(results)
    }

    /// One call, decoded into `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &'static str,
        params: serde_json::Value,
    ) -> Result<T, UpstreamError> {
        let mut r = self.batch(&[Call::new(method, params)]).await?;
        let item = r
            .pop()
            .unwrap_or_else(|| Err(UpstreamError::decode("empty answer")));
        self.decode(method, item)
    }

    /// Decodes one item's result, counting a decode failure for `method`.
    pub fn decode<T: DeserializeOwned>(
        &self,
        method: &'static str,
        item: ItemResult,
    ) -> Result<T, UpstreamError> {
        let raw = item?;
        serde_json::from_str(raw.get()).map_err(|e| {
            self.upstream.metrics().error(method, ErrorKind::Decode);
            UpstreamError::decode(format!("{method}: {e}"))
        })
    }

    /// The answer's items in call order, and whether one error object refused the whole batch.
    fn split(
        &self,
        bytes: &[u8],
        first: u64,
        n: usize,
    ) -> Result<(Vec<ItemResult>, bool), UpstreamError> {
        let packet: ResponsePacket = serde_json::from_slice(bytes).map_err(|e| {
            UpstreamError::decode(format!(
                "not a JSON-RPC response ({e}); body starts {:?}",
                ethwatch_core::upstream::truncate(
                    &String::from_utf8_lossy(&bytes[..bytes.len().min(80)]),
                    80
                )
            ))
        })?;
        let responses = match packet {
            ResponsePacket::Single(r) => {
                // A single error object with a null id answers a whole batch the server refused.
                if n > 1
                    && matches!(r.id, Id::None)
                    && let ResponsePayload::Failure(e) = &r.payload
                {
                    let err = UpstreamError::Rpc {
                        code: e.code,
                        message: ethwatch_core::upstream::truncate(&e.message, 200),
                    };
                    return Ok(((0..n).map(|_| Err(err.clone())).collect(), true));
                }
                vec![r]
            }
            ResponsePacket::Batch(v) => v,
        };
        let mut by_id: HashMap<u64, ResponsePayload> = HashMap::with_capacity(responses.len());
        for r in responses {
            if let Id::Number(id) = r.id {
                by_id.insert(id, r.payload);
            } else if n == 1 {
                // Some servers answer a single call with a null or string id; accept it.
                by_id.insert(first, r.payload);
            }
        }
        // An answer that carries none of our ids does not answer this request (a proxy mixing up
        // connections, a broken server): the whole exchange failed, not each call.
        if !(0..n).any(|i| by_id.contains_key(&(first + i as u64))) {
            return Err(UpstreamError::decode(format!(
                "the answer carries none of the request's ids ({first}..={})",
                first + n as u64 - 1
            )));
        }
        let items = (0..n)
            .map(|i| match by_id.remove(&(first + i as u64)) {
                Some(ResponsePayload::Success(raw)) => Ok(raw),
                Some(ResponsePayload::Failure(e)) => Err(UpstreamError::Rpc {
                    code: e.code,
                    message: ethwatch_core::upstream::truncate(&e.message, 200),
                }),
                None => Err(UpstreamError::decode(format!(
                    "no response with id {} in the answer",
                    first + i as u64
                ))),
            })
            .collect();
        Ok((items, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One client for every case (building its HTTP client loads the TLS roots).
    fn client() -> &'static RpcClient {
        static C: std::sync::OnceLock<RpcClient> = std::sync::OnceLock::new();
        C.get_or_init(new_client)
    }

    fn new_client() -> RpcClient {
        let mut reg = prometheus_client::registry::Registry::default();
        let m = ethwatch_core::upstream::RequestMetrics::register(
            &mut reg, "method", "d", "d", "e", "e",
        );
        let up = Upstream::new(
            &url::Url::parse("http://127.0.0.1:1/").expect("url"),
            ethwatch_core::upstream::UpstreamOptions::default(),
            m,
        )
        .expect("upstream");
        RpcClient::new(up)
    }

    /// What the generated server does with call `i`.
    #[derive(Debug, Clone, Copy)]
    enum Answer {
        Ok(u64),
        Error(i64),
        Missing,
    }

    fn answer() -> impl Strategy<Value = Answer> {
        prop_oneof![
            3 => any::<u64>().prop_map(Answer::Ok),
            1 => (-32700i64..-32000).prop_map(Answer::Error),
            1 => Just(Answer::Missing),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Answers in any order, some missing, some errors, some with ids of other requests:
        /// each call gets its own answer or a decode error, never another call's.
        #[test]
        fn batch_answers_match_by_id(
            first in 1u64..1_000_000,
            answers in prop::collection::vec(answer(), 1..16),
            foreign in prop::collection::vec(any::<u32>(), 0..4),
            order in any::<prop::sample::Index>(),
        ) {
            let n = answers.len();
            let mut items: Vec<String> = answers
                .iter()
                .enumerate()
                .filter_map(|(i, a)| {
                    let id = first + i as u64;
                    match a {
                        Answer::Ok(v) => Some(format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"0x{v:x}"}}"#)),
                        Answer::Error(c) => Some(format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{c},"message":"no"}}}}"#)),
                        Answer::Missing => None,
                    }
                })
                .collect();
            for f in &foreign {
                let id = first + n as u64 + u64::from(*f);
                items.push(format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"0xdead"}}"#));
            }
            let k = if items.is_empty() { 0 } else { order.index(items.len()) };
            items.rotate_left(k);
            let body = if n == 1 && items.len() == 1 {
                items[0].clone()
            } else {
                format!("[{}]", items.join(","))
            };
            let c = client();
            let got = c.split(body.as_bytes(), first, n);
            if answers.iter().all(|a| matches!(a, Answer::Missing)) {
                prop_assert!(got.is_err(), "an answer with none of our ids must fail the exchange");
                return Ok(());
            }
            let (got, refused) = got.expect("some ids answered");
            prop_assert!(!refused);
            prop_assert_eq!(got.len(), n);
            for (a, r) in answers.iter().zip(&got) {
                match (a, r) {
                    (Answer::Ok(v), Ok(raw)) => prop_assert_eq!(raw.get(), format!("\"0x{v:x}\"")),
                    (Answer::Error(c), Err(UpstreamError::Rpc { code, .. })) => prop_assert_eq!(*code, *c),
                    (Answer::Missing, Err(e)) => prop_assert_eq!(e.kind(), ErrorKind::Decode),
                    (a, r) => prop_assert!(false, "{a:?} answered as {r:?}"),
                }
            }
        }

        #[test]
        fn any_bytes_are_an_answer_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..256), n in 1usize..8) {
            let _ = client().split(&bytes, 1, n);
        }
    }
}
