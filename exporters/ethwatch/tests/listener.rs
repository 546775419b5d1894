//! The `ethwatch` binary's listener as a hostile client or a full file table meets it (issue 15,
//! items 2 and 3): SIGTERM ends the process within a bound whatever clients hold open, and a
//! full file descriptor table does not flood the log.
//!
//! The watcher (`ethwatch network`) is used because it needs no node: its one static target is a
//! closed loopback port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use ethwatch_testkit::{Proc, Scratch, free_port, wait_port};

/// `ethwatch network` on `port`, started through `sh` so a file limit can be set first; its
/// output goes to `DIR/stderr.log`.
fn watcher(port: u16, nofile: Option<u32>, dir: &Scratch) -> Proc {
    let limit = nofile
        .map(|n| format!("ulimit -n {n}; "))
        .unwrap_or_default();
    let script = format!(
        "{limit}exec \"$0\" network --execution-target el=http://127.0.0.1:1 --web.listen-address 127.0.0.1:{port}"
    );
    Proc::spawn(
        "stderr",
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(env!("CARGO_BIN_EXE_ethwatch"))
            .env("RUST_LOG", "info"),
        dir.path(),
    )
}

#[test]
fn sigterm_exits_in_bounded_time_while_clients_hold_half_requests() {
    let dir = Scratch::new("listener-term");
    let port = free_port();
    let mut p = watcher(port, None, &dir);
    wait_port(port, 20);
    // Half a request head, an idle connection, and a scrape left unread.
    let mut half = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-Half: ")
        .expect("write");
    let _idle = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut unread = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    unread
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    std::thread::sleep(Duration::from_millis(300));

    let start = Instant::now();
    let ok = Command::new("kill")
        .args(["-TERM", &p.pid().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    let deadline = start + Duration::from_secs(12);
    let status = loop {
        if let Some(s) = p.child().try_wait().expect("wait") {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
    let status = status.unwrap_or_else(|| {
        panic!("still running 12 s after SIGTERM while a client holds half a request:\n{log}")
    });
    assert!(status.success(), "exit {status:?}:\n{log}");
    // The default drain deadline is 5 s.
    assert!(
        start.elapsed() < Duration::from_secs(9),
        "{:?}",
        start.elapsed()
    );
    let mut b = [0u8; 64];
    assert!(matches!(half.read(&mut b), Ok(0) | Err(_)));
}

#[test]
fn a_full_file_table_does_not_flood_the_log() {
    let dir = Scratch::new("listener-emfile");
    let port = free_port();
    // Enough descriptors to start; a few more connections fill the table.
    let mut p = watcher(port, Some(40), &dir);
    wait_port(port, 20);
    std::thread::sleep(Duration::from_millis(300));
    let mut held = Vec::new();
    for _ in 0..80 {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            held.push(s);
        }
    }
    std::thread::sleep(Duration::from_secs(4));
    let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
    let lines = log.lines().filter(|l| l.contains("accept failed")).count();
    assert!(
        lines >= 1,
        "the file table never filled (no accept error), test is void:\n{log}"
    );
    assert!(
        lines <= 2,
        "{lines} 'accept failed' lines in 4 s (at most one per 10 s wanted):\n{}",
        log.lines().take(10).collect::<Vec<_>>().join("\n")
    );
    // With the connections gone the exporter serves again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = TcpStream::connect(("127.0.0.1", port))
            .and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")?;
                let mut out = String::new();
                s.read_to_string(&mut out)?;
                Ok(out.starts_with("HTTP/1.1 200"))
            })
            .unwrap_or(false);
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery after the file table emptied"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        p.child().try_wait().expect("wait").is_none(),
        "the exporter died"
    );
}
