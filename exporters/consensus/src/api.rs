//! Typed Beacon API calls over the core's upstream call path.
//!
//! Every request goes through [`Upstream`] (timeout, body cap, latency histogram, error kinds)
//! under a templated [`Route`]; bodies that do not decode are counted here as `decode` under the
//! same route.

use bytes::Bytes;
use ethwatch_core::upstream::{ErrorKind, Upstream, UpstreamError};
use serde::de::DeserializeOwned;

use crate::head::{HeaderInfo, HeaderSource};
use crate::types::{BlockData, Envelope, HeaderData, Root};

/// A templated route: the label value of request metrics, never the raw URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route(pub &'static str);

pub const GENESIS: Route = Route("/eth/v1/beacon/genesis");
pub const SPEC: Route = Route("/eth/v1/config/spec");
pub const SYNCING: Route = Route("/eth/v1/node/syncing");
pub const HEALTH: Route = Route("/eth/v1/node/health");
pub const PEER_COUNT: Route = Route("/eth/v1/node/peer_count");
pub const PEERS: Route = Route("/eth/v1/node/peers");
pub const VERSION: Route = Route("/eth/v1/node/version");
pub const FINALITY: Route = Route("/eth/v1/beacon/states/{state_id}/finality_checkpoints");
pub const HEADER: Route = Route("/eth/v1/beacon/headers/{block_id}");
pub const BLOCK: Route = Route("/eth/v2/beacon/blocks/{block_id}");
pub const VALIDATORS: Route = Route("/eth/v1/beacon/states/{state_id}/validators");
pub const REWARDS: Route = Route("/eth/v1/beacon/rewards/attestations/{epoch}");
pub const DEBUG_STATE: Route = Route("/eth/v2/debug/beacon/states/{state_id}");
pub const EVENTS: Route = Route("/eth/v1/events");
pub const PROPOSER_DUTIES: Route = Route("/eth/v1/validator/duties/proposer/{epoch}");

/// Every route, for documentation.
pub const ROUTES: [Route; 15] = [
    GENESIS,
    SPEC,
    SYNCING,
    HEALTH,
    PEER_COUNT,
    PEERS,
    VERSION,
    FINALITY,
    HEADER,
    BLOCK,
    VALIDATORS,
    REWARDS,
    DEBUG_STATE,
    EVENTS,
    PROPOSER_DUTIES,
];

/// The event stream path: `topics` repeated, never comma-separated (Lodestar 1.5 hangs on the
/// comma form).
pub const EVENTS_PATH: &str =
    "/eth/v1/events?topics=head&topics=block&topics=chain_reorg&topics=finalized_checkpoint";

/// A Beacon API client for one node.
#[derive(Debug, Clone)]
pub struct BeaconApi {
    up: Upstream,
}

impl BeaconApi {
    pub fn new(up: Upstream) -> Self {
        BeaconApi { up }
    }

    /// The endpoint (for the redacted URL, metrics and the event stream).
    pub fn upstream(&self) -> &Upstream {
        &self.up
    }

    /// Counts a decode error under `route` and returns it.
    pub fn decode_error(&self, route: Route, msg: impl std::fmt::Display) -> UpstreamError {
        self.up.metrics().error(route.0, ErrorKind::Decode);
        UpstreamError::decode(msg)
    }

    /// GETs `path` under `route`: status and raw body.
    pub async fn get_raw(
        &self,
        route: Route,
        path: &str,
        accept_status: &[u16],
    ) -> Result<(u16, Bytes), UpstreamError> {
        self.up.get(route.0, path, accept_status).await
    }

    /// [`BeaconApi::get_raw`] with a smaller body cap for this call.
    pub async fn get_raw_capped(
        &self,
        route: Route,
        path: &str,
        max_body_bytes: usize,
    ) -> Result<(u16, Bytes), UpstreamError> {
        self.up.get_capped(route.0, path, &[], max_body_bytes).await
    }

    /// POSTs a JSON body to `path` under `route`.
    pub async fn post_raw(
        &self,
        route: Route,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Bytes, UpstreamError> {
        self.up.post(route.0, path, body, &[]).await.map(|(_, b)| b)
    }

    /// GETs `path` and decodes the `data` of its envelope.
    pub async fn get_data<T: DeserializeOwned>(
        &self,
        route: Route,
        path: &str,
    ) -> Result<T, UpstreamError> {
        let (_, body) = self.get_raw(route, path, &[]).await?;
        self.parse(route, &body)
    }

    /// Decodes the `data` of an envelope, counting a failure under `route`.
    pub fn parse<T: DeserializeOwned>(
        &self,
        route: Route,
        body: &[u8],
    ) -> Result<T, UpstreamError> {
        serde_json::from_slice::<Envelope<T>>(body)
            .map(|e| e.data)
            .map_err(|e| self.decode_error(route, format!("{}: {e}", route.0)))
    }

    /// The header of a block (`head`, a slot or a root).
    pub async fn header(&self, block_id: &str) -> Result<HeaderInfo, UpstreamError> {
        let h: HeaderData = self
            .get_data(HEADER, &format!("/eth/v1/beacon/headers/{block_id}"))
            .await?;
        Ok(HeaderInfo {
            slot: h.header.message.slot.0,
            root: h.root,
            parent_root: h.header.message.parent_root,
        })
    }

    /// The header of the block at `slot`; `None` when the slot has no block. The node's 404 for
    /// an empty slot is the expected answer, not an error, and is not counted as one.
    pub async fn header_at_slot(&self, slot: u64) -> Result<Option<HeaderInfo>, UpstreamError> {
        let (status, body) = self
            .get_raw(HEADER, &format!("/eth/v1/beacon/headers/{slot}"), &[404])
            .await?;
        if status == 404 {
            return Ok(None);
        }
        let h: HeaderData = self.parse(HEADER, &body)?;
        Ok(Some(HeaderInfo {
            slot: h.header.message.slot.0,
            root: h.root,
            parent_root: h.header.message.parent_root,
        }))
    }

    /// A block by root: slot, parent and the execution payload's number.
    pub async fn block(&self, root: Root) -> Result<BlockData, UpstreamError> {
        self.get_data(BLOCK, &format!("/eth/v2/beacon/blocks/{root}"))
            .await
    }
}

impl HeaderSource for BeaconApi {
    async fn header(&self, root: Root) -> Result<HeaderInfo, UpstreamError> {
        BeaconApi::header(self, &root.to_string()).await
    }
}
