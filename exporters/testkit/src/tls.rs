//! Certificates for TLS tests, made by `openssl`: a CA (what the client trusts) and a server
//! certificate for 127.0.0.1 signed by it, valid one day.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where [`certificates`] wrote the PEM files.
#[derive(Debug, Clone)]
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let st = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(st.success(), "openssl {args:?} failed");
}

/// Writes `ca.pem`, `cert.pem` and `key.pem` (P-256) into `dir`.
pub fn certificates(dir: &Path) -> Certs {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let ca_args = [
        "-days",
        "1",
        "-subj",
        "/CN=ethwatch-test-ca",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
    ];
    openssl(dir, &[&["req", "-x509"][..], &ec, &ca_args].concat());
    let req_args = [
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "key.pem",
        "-out",
        "req.pem",
    ];
    openssl(dir, &[&["req"][..], &ec, &req_args].concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "req.pem",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ],
    );
    Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    }
}
