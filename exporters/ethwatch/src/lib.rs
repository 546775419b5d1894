//! Library side of the `ethwatch` binary: what the binary and its tests share.
//!
//! - [`docs`]: generates the metrics reference (`docs/metrics.md`) from the exporters' registries,
//!   so the reference cannot drift from the code (a test compares them).

pub mod docs;
