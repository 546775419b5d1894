//! Test harness: the exporter started through its public API, scrapes, child processes that are
//! always stopped (process group, two SIGTERMs, then SIGKILL; also when a test panics), and
//! scratch directories.

#![allow(dead_code)]

pub mod fake;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use ethwatch_core::exposition::{self, Sample};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: ethwatch_consensus::ConsensusArgs,
}

/// A running exporter, stopped when dropped.
pub struct Exporter {
    pub running: Option<ethwatch_consensus::Running>,
    pub token: CancellationToken,
    pub base: String,
}

impl Exporter {
    /// Starts `ethwatch consensus --beacon-url URL --web.listen-address 127.0.0.1:0 EXTRA...`.
    pub async fn start(beacon_url: &str, extra: &[&str]) -> Exporter {
        ethwatch_core::upstream::install_crypto();
        let mut argv = vec![
            "t",
            "--beacon-url",
            beacon_url,
            "--web.listen-address",
            "127.0.0.1:0",
        ];
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv).expect("args");
        let token = CancellationToken::new();
        let running = ethwatch_consensus::start(cli.args, token.clone())
            .await
            .expect("start exporter");
        let base = format!("http://{}", running.addr);
        Exporter {
            running: Some(running),
            token,
            base,
        }
    }

    pub async fn scrape(&self) -> Vec<Sample> {
        exposition::parse(&self.text().await)
    }

    pub async fn text(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body")
    }

    pub async fn status(&self, path: &str) -> u16 {
        reqwest::get(format!("{}{path}", self.base))
            .await
            .expect("get")
            .status()
            .as_u16()
    }

    /// Scrapes until `cond` holds or `secs` pass.
    pub async fn wait_for(
        &self,
        secs: u64,
        what: &str,
        cond: impl Fn(&[Sample]) -> bool,
    ) -> Vec<Sample> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.scrape().await;
            if cond(&s) {
                return s;
            }
            if Instant::now() > deadline {
                let dump: Vec<String> = s
                    .iter()
                    .filter(|x| x.name.starts_with("eth_cl_") && !x.name.contains("bucket"))
                    .map(|x| format!("{} {:?} {}", x.name, x.labels, x.value))
                    .collect();
                panic!(
                    "timed out after {secs} s waiting for: {what}\n{}",
                    dump.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(mut self) {
        self.token.cancel();
        if let Some(r) = self.running.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), r.task).await;
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// The value of a sample.
pub fn val(s: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition::value(s, name, labels)
}

/// A value that must be there.
pub fn must(s: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    val(s, name, labels).unwrap_or_else(|| panic!("{name}{labels:?} is missing"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A scratch directory, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("ethwatch-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("scratch dir");
        Scratch(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("keeping {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A child process in its own process group, stopped when dropped (also on panic): SIGTERM to
/// the group, a second SIGTERM after 1 s (Lodestar stops only on the second signal), SIGKILL
/// after 10 s.
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` in `dir`, output to `dir/<name>.log`.
    pub fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Proc {
        use std::os::unix::process::CommandExt;
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        cmd.current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        Proc {
            name: name.into(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// The last lines of its log.
    pub fn tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let v: Vec<&str> = text.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }

    fn signal_group(&self, sig: rustix::process::Signal) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, sig);
        }
    }

    fn wait_exit(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.exited() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.exited()
    }

    /// Stops the whole group: SIGTERM, SIGTERM again after 1 s, SIGKILL after 10 s.
    pub fn stop(&mut self) {
        use rustix::process::Signal;
        if !self.exited() {
            self.signal_group(Signal::TERM);
            if !self.wait_exit(Duration::from_secs(1)) {
                self.signal_group(Signal::TERM);
                if !self.wait_exit(Duration::from_secs(9)) {
                    self.signal_group(Signal::KILL);
                    let _ = self.child.wait();
                }
            }
        }
        // Whatever else is left in the group (workers of the node) goes too.
        self.signal_group(Signal::KILL);
    }

    /// Kills the group at once.
    pub fn kill(&mut self) {
        self.signal_group(rustix::process::Signal::KILL);
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of {} ({}) ---\n{}",
                self.name,
                self.log.display(),
                self.tail(15)
            );
        }
        self.stop();
    }
}

/// Collects log lines for tests that check what is logged (one global subscriber per test binary).
pub mod logs {
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
}
