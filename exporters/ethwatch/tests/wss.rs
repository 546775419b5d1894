//! `--ws-url wss://...` really connects (issue 15, item 7): a real anvil node behind a TLS front
//! (tokio-rustls, a self-signed certificate made by `openssl` for 127.0.0.1), the `ethwatch`
//! binary trusting that certificate through `SSL_CERT_FILE`, and the newHeads subscription must
//! come up (`eth_el_subscription_connected` 1).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ethwatch_testkit::{Anvil, Proc, listening, tls, wait_port};
use tokio::net::{TcpListener, TcpStream};

/// A TLS front: accepts TLS on a loopback port and pipes the plaintext to `backend`.
async fn tls_front(cert: &std::path::Path, key: &std::path::Path, backend: u16) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    ethwatch_core::upstream::install_crypto();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("cert")
        .collect::<Result<_, _>>()
        .expect("cert pem");
    let key = PrivateKeyDer::from_pem_file(key).expect("key");
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(("127.0.0.1", backend)).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_subscription_connects_through_tls() {
    let dir = std::env::temp_dir().join(format!("ethwatch-wss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    // A CA (what the exporter trusts) and a server certificate for 127.0.0.1 signed by it.
    let tls::Certs { ca, cert, key } = tls::certificates(&dir);

    let anvil = Anvil::start();
    let front = tls_front(&cert, &key, anvil.port).await;

    let ws = format!("wss://127.0.0.1:{front}");
    let (mut cmd, port) = listening(
        env!("CARGO_BIN_EXE_ethwatch"),
        &["execution", "--rpc-url", &anvil.url(), "--ws-url", &ws],
    );
    let _exp = Proc::spawn(
        "ethwatch",
        cmd.env("SSL_CERT_FILE", &ca).env_remove("SSL_CERT_DIR"),
        &dir,
    );
    wait_port(port, 20);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body");
        let s = ethwatch_core::exposition::parse(&text);
        let connected = ethwatch_core::exposition::value(&s, "eth_el_subscription_connected", &[]);
        let blocks =
            ethwatch_core::exposition::value(&s, "eth_el_block_arrival_delay_seconds_count", &[]);
        if connected == Some(1.0) && blocks.is_some_and(|b| b >= 1.0) {
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("ethwatch.log")).unwrap_or_default();
            panic!(
                "the wss subscription did not come up (connected {connected:?}, headers {blocks:?}):\n{log}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
