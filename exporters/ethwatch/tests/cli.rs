//! The binary's configuration handling: bad configuration fails at start-up, naming the field.

use std::process::Command;

fn ethwatch(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ethwatch"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run ethwatch");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_flags_name_the_field() {
    let cases: &[(&[&str], &str)] = &[
        (&["execution", "--rpc-url", "ftp://x"], "--rpc-url"),
        (&["execution"], "--rpc-url"),
        (
            &[
                "execution",
                "--rpc-url",
                "http://x",
                "--poll-interval",
                "soon",
            ],
            "--poll-interval",
        ),
        (
            &[
                "execution",
                "--rpc-url",
                "http://x",
                "--poll-interval",
                "10ms",
            ],
            "--poll-interval",
        ),
        (
            &[
                "execution",
                "--rpc-url",
                "http://x",
                "--collector.txpool=maybe",
            ],
            "--collector.txpool",
        ),
        (
            &[
                "execution",
                "--rpc-url",
                "http://x",
                "--web.listen-address",
                "nonsense",
            ],
            "--web.listen-address",
        ),
        (
            &[
                "execution",
                "--rpc-url",
                "http://x",
                "--rpc-max-body-bytes",
                "10",
            ],
            "--rpc-max-body-bytes",
        ),
    ];
    for (args, field) in cases {
        let (code, err) = ethwatch(args, &[]);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(field), "{args:?} must name {field}: {err}");
    }
}

#[test]
fn environment_twins_are_validated_too() {
    let (code, err) = ethwatch(&["execution"], &[("ETHWATCH_RPC_URL", "not a url")]);
    assert_eq!(code, 2);
    assert!(err.contains("--rpc-url"), "{err}");
}

#[test]
fn config_file_errors_name_the_field() {
    let dir = std::env::temp_dir().join(format!("ethwatch-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let unknown = dir.join("unknown.yaml");
    std::fs::write(&unknown, "rpc-url: http://127.0.0.1:1\nrpc-ulr: x\n").expect("write");
    let (code, err) = ethwatch(
        &[
            "execution",
            "--config.file",
            unknown.to_str().expect("utf8"),
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("unknown field `rpc-ulr`"), "{err}");

    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "rpc-url: http://127.0.0.1:1\npoll-interval: sometimes\n",
    )
    .expect("write");
    let (code, err) = ethwatch(
        &["execution", "--config.file", bad.to_str().expect("utf8")],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("--poll-interval"), "{err}");

    let (code, err) = ethwatch(&["execution", "--config.file", "/no/such/file.yaml"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("/no/such/file.yaml"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Absurd durations fail with a line naming the flag, not a panic (issue 15, item 8).
#[test]
fn absurd_durations_name_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "execution",
                "--rpc-url",
                "http://x",
                "--poll-interval",
                "1e20",
            ],
            "--poll-interval",
        ),
        (
            &[
                "consensus",
                "--beacon-url",
                "http://x",
                "--beacon-timeout",
                "1e300h",
            ],
            "--beacon-timeout",
        ),
        (
            &[
                "network",
                "--execution-target",
                "a=http://x",
                "--cycle-timeout",
                "9000h",
            ],
            "--cycle-timeout",
        ),
        (
            &[
                "execution",
                "--rpc-url",
                "http://x",
                "--web.read-header-timeout",
                "0s",
            ],
            "--web.read-header-timeout",
        ),
    ];
    for (args, field) in cases {
        let (code, err) = ethwatch(args, &[("RUST_BACKTRACE", "0")]);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert!(err.contains(field), "{args:?} must name {field}: {err}");
    }
}

/// A duplicate watcher target name is reported under the flag that repeats it (issue 15, item 8).
#[test]
fn duplicate_target_name_names_its_flag() {
    let (code, err) = ethwatch(
        &[
            "network",
            "--execution-target",
            "n1=http://127.0.0.1:1",
            "--beacon-target",
            "n1=http://127.0.0.1:2",
            "--web.listen-address",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--beacon-target"), "{err}");
    assert!(!err.contains("--pair"), "{err}");
}

/// Text logs written to a pipe (a file, a log collector) carry no ANSI colour codes.
#[test]
fn text_logs_to_a_pipe_have_no_colour_codes() {
    use std::io::{BufRead, BufReader};
    // Nothing listens on port 1: the exporter logs a warning at the first poll.
    let mut child = Command::new(env!("CARGO_BIN_EXE_ethwatch"))
        .args([
            "execution",
            "--rpc-url",
            "http://127.0.0.1:1",
            "--web.listen-address",
            "127.0.0.1:0",
        ])
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ethwatch");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let warn = line.contains("WARN");
            if tx.send(line).is_err() || warn {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) => {
                let warn = l.contains("WARN");
                lines.push(l);
                if warn {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lines.iter().any(|l| l.contains("WARN")),
        "no warning logged: {lines:?}"
    );
    for l in &lines {
        assert!(
            !l.contains('\u{1b}'),
            "ANSI escape in a piped log line: {l:?}"
        );
    }
}
