//! `--web.config.file` (exporter-toolkit format): a real Prometheus scrapes the `ethwatch` binary
//! over TLS with basic auth; requests without or with wrong credentials get 401, plain HTTP gets
//! nothing, the probes answer without credentials, and a bad file fails at start-up naming the
//! flag and the field. The certificates are made by `openssl` for 127.0.0.1.

use std::process::Command;
use std::time::{Duration, Instant};

use ethwatch_testkit::{Proc, Prometheus, free_port, tls, wait_port};

/// `curl` against the exporter: (HTTP status, body); status 0 when no HTTP answer came.
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn prometheus_scrapes_over_tls_with_basic_auth() {
    let dir = std::env::temp_dir().join(format!("ethwatch-webcfg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    tls::certificates(&dir);

    let hash = bcrypt::hash("s3cret", 6).expect("bcrypt");
    std::fs::write(
        dir.join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: {d}/cert.pem\n  key_file: {d}/key.pem\nbasic_auth_users:\n  prometheus: {hash}\n",
            d = dir.display()
        ),
    )
    .expect("web config");

    // A bad file fails at start-up, naming the flag and the field.
    std::fs::write(
        dir.join("bad.yml"),
        "basic_auth_users:\n  prometheus: s3cret\n",
    )
    .expect("bad");
    let out = Command::new(env!("CARGO_BIN_EXE_ethwatch"))
        .args(["network", "--execution-target", "el=http://127.0.0.1:1"])
        .args(["--web.listen-address", "127.0.0.1:0"])
        .arg("--web.config.file")
        .arg(dir.join("bad.yml"))
        .output()
        .expect("ethwatch");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--web.config.file") && err.contains("basic_auth_users.prometheus"),
        "{err}"
    );

    let port = free_port();
    let _exp = Proc::start(
        "ethwatch",
        Command::new(env!("CARGO_BIN_EXE_ethwatch"))
            .args(["network", "--execution-target", "el=http://127.0.0.1:1"])
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
            .arg("--web.config.file")
            .arg(dir.join("web.yml")),
    );
    wait_port(port, 20);
    let base = format!("https://127.0.0.1:{port}");
    let ca = dir.join("ca.pem").display().to_string();

    // Without, or with wrong, credentials: 401. Probes: 200 without credentials. Plain HTTP: no
    // HTTP answer.
    assert_eq!(curl(&["--cacert", &ca, &format!("{base}/metrics")]).0, 401);
    assert_eq!(
        curl(&[
            "--cacert",
            &ca,
            "-u",
            "prometheus:wrong",
            &format!("{base}/metrics")
        ])
        .0,
        401
    );
    assert_eq!(
        curl(&["--cacert", &ca, "-u", "nobody:s3cret", &format!("{base}/")]).0,
        401
    );
    assert_eq!(curl(&["--cacert", &ca, &format!("{base}/healthz")]).0, 200);
    assert_ne!(curl(&[&format!("http://127.0.0.1:{port}/metrics")]).0, 200);
    let (code, body) = curl(&[
        "--cacert",
        &ca,
        "-u",
        "prometheus:s3cret",
        &format!("{base}/metrics"),
    ]);
    assert_eq!(code, 200);
    let s = ethwatch_core::exposition::parse(&body);
    assert_eq!(
        ethwatch_core::exposition::value(&s, "ethwatch_http_unauthorized_requests_total", &[]),
        Some(3.0),
        "{body}"
    );

    // A real Prometheus scrapes it over TLS with basic auth.
    let prom = Prometheus::start(
        &format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: tls\n    scheme: https\n    tls_config: {{ca_file: {ca}}}\n    basic_auth: {{username: prometheus, password: s3cret}}\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
        ),
        &[],
    );
    let prom_port = prom.port;
    let query = |q: &str| {
        curl(&[
            "-G",
            &format!("http://127.0.0.1:{prom_port}/api/v1/query"),
            "--data-urlencode",
            &format!("query={q}"),
        ])
        .1
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = query("up{job=\"tls\"}");
        let info = query("ethwatch_build_info{job=\"tls\"}");
        if up.contains("\"1\"]") && info.contains("ethwatch_build_info") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape over TLS with basic auth:\n{up}\n{info}\n{}",
            query("scrape_samples_scraped")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
