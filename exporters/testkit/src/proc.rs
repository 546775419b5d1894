//! Child processes that are always stopped (process group, two SIGTERMs, then SIGKILL; also
//! when a test panics) and scratch directories.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A scratch directory under the system's temporary directory, removed when dropped (kept, and
/// named, when the test panics).
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

    /// A path inside the directory.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.0.join(rel)
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
/// after 10 s. Its output goes to `<name>.log` in its directory; the last lines are printed when
/// a test panics.
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
    /// The directory a [`Proc::start`] made for it.
    _dir: Option<Scratch>,
}

impl Proc {
    /// Starts `cmd` in `dir`, output to `dir/<name>.log`.
    pub fn spawn(name: &str, cmd: &mut Command, dir: &Path) -> Proc {
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
            _dir: None,
        }
    }

    /// Starts `cmd` in a scratch directory of its own, removed when it stops.
    pub fn start(name: &str, cmd: &mut Command) -> Proc {
        let dir = Scratch::new(name);
        let mut p = Proc::spawn(name, cmd, dir.path());
        p._dir = Some(dir);
        p
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child itself (to wait for it or read its status).
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
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

    /// Its whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal_group(&self, sig: rustix::process::Signal) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, sig);
        }
    }

    /// Waits up to `within` for it to exit.
    pub fn wait_exit(&mut self, within: Duration) -> bool {
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

/// `BIN ARGS --web.listen-address 127.0.0.1:PORT` on a free port (the `ethwatch` binary of a
/// test: `env!("CARGO_BIN_EXE_ethwatch")`); returns the command, to add variables to, and the
/// port.
pub fn listening(bin: &str, args: &[&str]) -> (Command, u16) {
    let port = crate::free_port();
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")]);
    (cmd, port)
}
