//! The wall-clock slot: genesis time plus slot length, so head lag is measured against time and
//! not against the node's own opinion.

/// The chain's clock, from `/eth/v1/beacon/genesis` and `/eth/v1/config/spec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Unix seconds of slot 0.
    pub genesis_time: u64,
    /// Slot length in milliseconds.
    pub slot_ms: u64,
    pub slots_per_epoch: u64,
}

impl Clock {
    /// Slot length in seconds.
    pub fn seconds_per_slot(&self) -> f64 {
        self.slot_ms as f64 / 1000.0
    }

    /// The slot at Unix time `now` (seconds); `None` before genesis.
    pub fn slot_at(&self, now: f64) -> Option<u64> {
        let since = now - self.genesis_time as f64;
        if since < 0.0 || self.slot_ms == 0 {
            return None;
        }
        Some(((since * 1000.0) as u64) / self.slot_ms)
    }

    /// Unix time (seconds) at which `slot` starts.
    pub fn slot_start(&self, slot: u64) -> f64 {
        self.genesis_time as f64 + slot as f64 * self.seconds_per_slot()
    }

    /// The epoch of `slot`.
    pub fn epoch_of(&self, slot: u64) -> u64 {
        slot / self.slots_per_epoch.max(1)
    }

    /// The current slot, from the system clock.
    pub fn now_slot(&self) -> Option<u64> {
        self.slot_at(ethwatch_core::unix_now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_epochs() {
        let c = Clock {
            genesis_time: 1_000,
            slot_ms: 12_000,
            slots_per_epoch: 32,
        };
        assert_eq!(c.slot_at(999.9), None);
        assert_eq!(c.slot_at(1_000.0), Some(0));
        assert_eq!(c.slot_at(1_011.999), Some(0));
        assert_eq!(c.slot_at(1_012.0), Some(1));
        assert_eq!(c.slot_start(2), 1_024.0);
        assert_eq!(c.epoch_of(31), 0);
        assert_eq!(c.epoch_of(32), 1);
        assert_eq!(c.seconds_per_slot(), 12.0);
        let fast = Clock {
            genesis_time: 0,
            slot_ms: 500,
            slots_per_epoch: 8,
        };
        assert_eq!(fast.slot_at(10.25), Some(20));
    }
}
