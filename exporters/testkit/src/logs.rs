//! Collects log lines for tests that check what is logged (one global subscriber per test
//! binary, at level info).

use std::io::Write;
use std::sync::{Mutex, OnceLock};

static LINES: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();

struct W;
impl Write for W {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        buf_lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn buf_lock() -> std::sync::MutexGuard<'static, Vec<u8>> {
    LINES
        .get_or_init(|| Mutex::new(Vec::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Installs the capturing subscriber (idempotent).
pub fn capture() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_ansi(false)
            .with_writer(|| W)
            .try_init();
    });
}

/// Captured lines containing every one of `parts`.
pub fn matching(parts: &[&str]) -> Vec<String> {
    let text = String::from_utf8_lossy(&buf_lock()).into_owned();
    text.lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .map(str::to_string)
        .collect()
}
