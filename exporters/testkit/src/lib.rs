//! The kit every ethwatch test is written with (unpublished; a dev-dependency of the exporter
//! crates only). A test starts what it needs in a line or two, and everything it started stops
//! when it goes out of scope, also when the test panics.
//!
//! # Layout
//!
//! - this file: [`free_port`], [`wait_port`], [`tool`] (a path from the environment
//!   `scripts/test.sh` sets);
//! - [`exporter`]: an exporter started in-process through its public API on `127.0.0.1:0`
//!   ([`execution`], [`consensus`], [`network`]), with its scrape helpers;
//! - [`scrape`]: scrape and parse `/metrics`, find a sample by name and labels ([`val`],
//!   [`must`], [`sum`]), wait until a condition holds ([`wait_for`]);
//! - [`golden`]: fixtures in, exposition out: normalise, lint with promtool, compare or bless;
//! - [`proc`]: child processes in their own process group ([`Proc`]), scratch directories
//!   ([`Scratch`]) and the `ethwatch` binary on a free port ([`listening`]);
//! - [`nodes`]: launchers for the real parts: [`Anvil`], a [`Lodestar`] dev chain, a
//!   [`Prometheus`], and a JSON-RPC client ([`rpc`]);
//! - [`jsonrpc`]: fake execution nodes: [`FakeNode`] (a chain that misbehaves on demand),
//!   [`replay`] (one recorded body) and [`jsonrpc::serve`] (answers from a function);
//! - [`beacon`]: a fake beacon node ([`FakeBeacon`]) whose routes and event stream the test sets;
//! - [`logs`]: captures the process's log lines for tests that check what is logged;
//! - [`mem`]: resident memory of a process;
//! - [`tls`]: a CA and a server certificate for 127.0.0.1, made by openssl.
//!
//! docs/development.md shows how a new test is written with it.

pub mod beacon;
pub mod exporter;
pub mod golden;
pub mod jsonrpc;
pub mod logs;
pub mod mem;
pub mod nodes;
pub mod proc;
pub mod scrape;
pub mod tls;

use std::time::{Duration, Instant};

pub use beacon::FakeBeacon;
pub use exporter::{Exporter, consensus, execution, network};
pub use jsonrpc::{FakeNode, replay};
pub use nodes::{Anvil, Lodestar, Prometheus, hex, rpc};
pub use proc::{Proc, Scratch, listening};
pub use scrape::{must, sum, val, wait_for};

/// A loopback port nothing listens on (at the time of asking).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Blocks until something accepts connections on the loopback `port`; panics after `secs`.
pub fn wait_port(port: u16, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The path of a tool that `scripts/test.sh` exports (`ETHWATCH_ANVIL`, `ETHWATCH_PROMTOOL`...).
/// Tests that need one fail without it, they never skip.
pub fn tool(var: &str) -> String {
    std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set: run the tests with scripts/test.sh"))
}
