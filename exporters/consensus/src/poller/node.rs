//! The node's own facts, on their schedules: clock (genesis and spec), version, health,
//! finality checkpoints and peers.

use std::sync::atomic::Ordering;

use ethwatch_core::upstream::{ErrorKind, UpstreamError};

use super::*;

impl Poller {
    pub(super) async fn refresh_clock(&self) -> Result<(), UpstreamError> {
        let (g, s) = tokio::join!(
            self.api
                .get_data::<Genesis>(api::GENESIS, "/eth/v1/beacon/genesis"),
            self.api
                .get_data::<SpecTiming>(api::SPEC, "/eth/v1/config/spec"),
        );
        let (g, s) = (g?, s?);
        let (slot_ms, slots_per_epoch) = s
            .timing()
            .map_err(|e| self.api.decode_error(api::SPEC, e))?;
        // Unknown (a spec without the key): every block may carry a payload.
        self.payload_from_epoch
            .store(s.BELLATRIX_FORK_EPOCH.map_or(0, |e| e.0), Ordering::Relaxed);
        let clock = Clock {
            genesis_time: g.genesis_time.0,
            slot_ms,
            slots_per_epoch,
        };
        let old = self.metrics.state.lock().clock;
        if old == Some(clock) {
            return Ok(());
        }
        if let Some(old) = old {
            tracing::warn!(
                old_genesis = old.genesis_time,
                new_genesis = clock.genesis_time,
                "the beacon node is on a different chain now (genesis or slot timing changed); following it from scratch"
            );
            self.tracker.lock().await.reset();
            let mut st = self.metrics.state.lock();
            st.head_slot = None;
            st.head_execution_block_number = None;
            st.finalized_epoch = None;
            st.justified_epoch = None;
            st.participation = None;
            drop(st);
            let mut sc = self.sched();
            sc.validators_epoch = None;
            sc.participation_epoch = None;
        } else {
            tracing::info!(
                genesis_time = clock.genesis_time,
                seconds_per_slot = clock.seconds_per_slot(),
                slots_per_epoch,
                "chain clock known"
            );
        }
        self.metrics.state.lock().clock = Some(clock);
        Ok(())
    }

    pub(super) async fn poll_version(&self) -> Result<(), UpstreamError> {
        let v: NodeVersion = self
            .api
            .get_data(api::VERSION, "/eth/v1/node/version")
            .await?;
        self.metrics.state.lock().client = Some(parse_client_version(&v.version));
        Ok(())
    }

    pub(super) async fn poll_health(&self) -> Result<(), UpstreamError> {
        let (status, _) = self
            .api
            .get_raw(api::HEALTH, "/eth/v1/node/health", &[206, 503])
            .await?;
        let h = Health::from_status(status).ok_or_else(|| {
            self.api
                .decode_error(api::HEALTH, format!("unexpected health status {status}"))
        })?;
        self.metrics.state.lock().health = Some(h);
        Ok(())
    }

    pub(super) async fn poll_finality(&self) -> Result<(), UpstreamError> {
        let head_epoch = self.head_epoch();
        let f: FinalityCheckpoints = self
            .api
            .get_data(
                api::FINALITY,
                "/eth/v1/beacon/states/head/finality_checkpoints",
            )
            .await?;
        let mut st = self.metrics.state.lock();
        st.finalized_epoch = Some(f.finalized.epoch.0);
        st.justified_epoch = Some(f.current_justified.epoch.0);
        drop(st);
        self.sched().finality_epoch = head_epoch;
        Ok(())
    }

    pub(super) async fn poll_peers(&self) -> Result<(), UpstreamError> {
        let pc: PeerCount = self
            .api
            .get_data(api::PEER_COUNT, "/eth/v1/node/peer_count")
            .await?;
        self.metrics.state.lock().peers = Some([
            pc.disconnected.0,
            pc.connecting.0,
            pc.connected.0,
            pc.disconnecting.0,
        ]);
        if pc.connected.0 == 0 {
            // Nothing to list.
            self.metrics.state.lock().peers_by_direction = Some([0, 0]);
            return Ok(());
        }
        let max = self.cfg.peers_list_max;
        if pc.connected.0 > max {
            self.peers_list_too_long(pc.connected.0);
            return Ok(());
        }
        // The list is cut once it is longer than --peers.list-max entries could be, so the
        // memory it takes is bounded by that flag, not by --beacon-max-body-bytes.
        let cap = peers_body_cap(max);
        let (_, body) = match self
            .api
            .get_raw_capped(api::PEERS, "/eth/v1/node/peers?state=connected", cap)
            .await
        {
            Err(UpstreamError::TooLarge { .. }) => {
                self.peers_list_too_long(max + 1);
                return Ok(());
            }
            r => r?,
        };
        let (mut inbound, mut outbound, mut listed) = (0u64, 0u64, 0u64);
        let found = for_each_at(&body, &["data"], |p: PeerEntry| {
            listed += 1;
            if listed > max || p.state.as_deref().is_some_and(|s| s != "connected") {
                return;
            }
            match p.direction.as_deref() {
                Some("inbound") => inbound += 1,
                Some("outbound") => outbound += 1,
                _ => {}
            }
        })
        .map_err(|e| {
            self.api
                .decode_error(api::PEERS, format!("{}: {e}", api::PEERS.0))
        })?;
        if !found {
            return Err(self
                .api
                .decode_error(api::PEERS, "no data array in the peer list"));
        }
        if listed > max {
            self.metrics.error(api::PEERS, ErrorKind::TooLarge);
            self.peers_list_too_long(listed);
            return Ok(());
        }
        self.metrics.state.lock().peers_by_direction = Some([inbound, outbound]);
        Ok(())
    }

    pub(super) fn peers_list_too_long(&self, n: u64) {
        self.metrics.state.lock().peers_by_direction = None;
        let mut sc = self.sched();
        if !sc.peers_list_too_long_logged {
            sc.peers_list_too_long_logged = true;
            tracing::warn!(
                peers = n,
                max = self.cfg.peers_list_max,
                "more connected peers than --peers.list-max; eth_cl_peers_by_direction is left out"
            );
        }
    }
}

/// Bytes one peer list entry may take (peer id, ENR, address, state, direction): real entries are
/// 300 to 700 bytes.
pub const PEER_ENTRY_BYTES: usize = 2048;

/// The body cap of the peer list: `list_max` generous entries and the envelope.
pub fn peers_body_cap(list_max: u64) -> usize {
    (list_max as usize)
        .saturating_mul(PEER_ENTRY_BYTES)
        .saturating_add(4096)
}
