//! `--web.config.file`: TLS and basic auth for the HTTP server, in the format of the Prometheus
//! exporter-toolkit (the file node_exporter and every official exporter take):
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: /etc/ethwatch/tls/tls.crt
//!   key_file: /etc/ethwatch/tls/tls.key
//!   min_version: TLS12          # optional: TLS12 (default) or TLS13
//! basic_auth_users:
//!   prometheus: $2y$10$...      # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! The file is read and checked at start-up; a bad file, an unreadable certificate or an
//! invalid hash fails with a message naming the flag and the field. Fields of the toolkit format
//! this server does not implement (client certificates, cipher and curve choices, HTTP/2,
//! response headers) are refused by name rather than silently ignored.
//!
//! `/healthz` and `/readyz` answer without credentials, so kubelet probes (which send none, and
//! over HTTPS do not verify the certificate) keep working; `/metrics` and `/` need them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

/// The file, as the toolkit defines it (the subset implemented here).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsServerConfig>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfig {
    cert_file: PathBuf,
    key_file: PathBuf,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    client_auth_type: Option<String>,
}

/// What the server enforces.
#[derive(Clone, Default)]
pub struct WebConfig {
    /// TLS for every connection, when configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// User name to bcrypt hash; empty: no authentication.
    users: BTreeMap<String, String>,
    /// Credentials verified once (bcrypt is slow on purpose): user and password that matched.
    verified: Arc<Mutex<Vec<(String, String)>>>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Successful checks kept so a scrape does not pay bcrypt each time.
const VERIFIED_CACHE: usize = 16;

/// A `--web.config.file` that cannot be used: the file and what is wrong in it.
#[derive(Debug, thiserror::Error)]
#[error("--web.config.file {}: {problem}", path.display())]
pub struct WebConfigError {
    pub path: PathBuf,
    pub problem: Box<Problem>,
}

/// What is wrong in a `--web.config.file`.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Yaml(#[from] serde_saphyr::Error),
    #[error("basic_auth_users: bad user name {0:?}")]
    UserName(String),
    #[error("basic_auth_users.{0}: not a bcrypt hash")]
    NotBcrypt(String),
    #[error("tls_server_config.client_auth_type {0}: only NoClientCert is supported")]
    ClientAuth(String),
    #[error("tls_server_config.min_version {0}: TLS12 or TLS13")]
    MinVersion(String),
    #[error("tls_server_config.cert_file {}: {cause}", file.display())]
    CertFile {
        file: PathBuf,
        cause: rustls::pki_types::pem::Error,
    },
    #[error("tls_server_config.cert_file {}: no certificate", .0.display())]
    NoCertificate(PathBuf),
    #[error("tls_server_config.key_file {}: {cause}", file.display())]
    KeyFile {
        file: PathBuf,
        cause: rustls::pki_types::pem::Error,
    },
    #[error("tls_server_config: certificate and key do not fit: {0}")]
    CertKey(#[from] rustls::Error),
}

impl WebConfig {
    /// Reads and checks the file.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        Self::read(path).map_err(|problem| WebConfigError {
            path: path.to_path_buf(),
            problem: Box::new(problem),
        })
    }

    fn read(path: &Path) -> Result<WebConfig, Problem> {
        let text = std::fs::read_to_string(path)?;
        let file: File = serde_saphyr::from_str(&text)?;
        let mut out = WebConfig::default();
        if let Some(users) = file.basic_auth_users {
            for (user, hash) in &users {
                if user.is_empty() || user.contains(':') {
                    return Err(Problem::UserName(user.clone()));
                }
                // A hash that cannot verify anything would lock everyone out silently.
                if bcrypt::verify("", hash).is_err() {
                    return Err(Problem::NotBcrypt(user.clone()));
                }
            }
            out.users = users;
        }
        if let Some(tls) = file.tls_server_config {
            if let Some(t) = tls.client_auth_type.as_deref()
                && t != "NoClientCert"
            {
                return Err(Problem::ClientAuth(t.to_string()));
            }
            let versions: &[&'static rustls::SupportedProtocolVersion] =
                match tls.min_version.as_deref() {
                    None | Some("TLS12") => &[&rustls::version::TLS12, &rustls::version::TLS13],
                    Some("TLS13") => &[&rustls::version::TLS13],
                    Some(v) => return Err(Problem::MinVersion(v.to_string())),
                };
            out.tls = Some(Arc::new(server_config(&tls, versions)?));
        }
        Ok(out)
    }

    /// Whether requests other than probes need credentials.
    pub fn needs_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// Checks an `Authorization` header value.
    pub fn authorized(&self, header: Option<&str>) -> bool {
        if self.users.is_empty() {
            return true;
        }
        let Some((user, pass)) = header.and_then(parse_basic) else {
            return false;
        };
        let Some(hash) = self.users.get(&user) else {
            // Same cost as a real check, so the answer time does not tell which users exist.
            if let Some(any) = self.users.values().next() {
                let _ = bcrypt::verify(&pass, any);
            }
            return false;
        };
        {
            let v = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if v.iter().any(|(u, p)| *u == user && *p == pass) {
                return true;
            }
        }
        if bcrypt::verify(&pass, hash).unwrap_or(false) {
            let mut v = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if v.len() >= VERIFIED_CACHE {
                v.remove(0);
            }
            v.push((user, pass));
            true
        } else {
            false
        }
    }
}

fn parse_basic(h: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let b64 = h
        .strip_prefix("Basic ")
        .or_else(|| h.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn server_config(
    tls: &TlsServerConfig,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<rustls::ServerConfig, Problem> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    crate::upstream::install_crypto();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert_file)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|cause| Problem::CertFile {
            file: tls.cert_file.clone(),
            cause,
        })?;
    if certs.is_empty() {
        return Err(Problem::NoCertificate(tls.cert_file.clone()));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key_file).map_err(|cause| Problem::KeyFile {
        file: tls.key_file.clone(),
        cause,
    })?;
    Ok(
        rustls::ServerConfig::builder_with_protocol_versions(versions)
            .with_no_client_auth()
            .with_single_cert(certs, key)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("ethwatch-web-{}-{n}.yml", std::process::id()));
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn basic_auth_and_field_errors() {
        let hash = bcrypt::hash("s3cret", 4).expect("hash");
        let p = write(&format!("basic_auth_users:\n  prom: {hash}\n"));
        let c = WebConfig::load(&p).expect("load");
        assert!(c.needs_auth());
        use base64::Engine as _;
        let h = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        assert!(c.authorized(Some(&h("prom", "s3cret"))));
        assert!(c.authorized(Some(&h("prom", "s3cret"))), "cached");
        assert!(!c.authorized(Some(&h("prom", "wrong"))));
        assert!(!c.authorized(Some(&h("other", "s3cret"))));
        assert!(!c.authorized(None));
        assert!(!c.authorized(Some("Bearer x")));

        for (text, field) in [
            (
                "basic_auth_users:\n  prom: plaintext\n",
                "basic_auth_users.prom",
            ),
            (
                "tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n",
                "cert_file",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
                "client_auth_type",
            ),
            ("http_server_config:\n  http2: true\n", "http_server_config"),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [x]\n",
                "cipher_suites",
            ),
        ] {
            let p = write(text);
            let e = WebConfig::load(&p).expect_err(text).to_string();
            assert!(
                e.contains("--web.config.file") && e.contains(field),
                "{text}: {e}"
            );
        }
    }
}
