//! Redirects are never followed (issue 15, item 6): a node answering 307/302 with a `Location`
//! pointing at another loopback server must not make the exporter (or the watcher, which builds
//! its client with the same [`Upstream::http_client`]) call that server; the answer is an error of
//! kind `redirect`, counted under the call's target.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ethwatch_core::upstream::{ErrorKind, RequestMetrics, Upstream, UpstreamOptions};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server answering every connection with `answer`; returns its port and a connection count.
async fn server(answer: String) -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (port, hits)
}

#[tokio::test]
async fn redirects_are_errors_and_never_followed() {
    let (elsewhere, hits) = server(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
            .into(),
    )
    .await;
    for status in [
        "307 Temporary Redirect",
        "302 Found",
        "308 Permanent Redirect",
    ] {
        let (node, _) = server(format!(
            "HTTP/1.1 {status}\r\nLocation: http://user:secret@127.0.0.1:{elsewhere}/steal?token=x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ))
        .await;
        let mut reg = Registry::default();
        let m = RequestMetrics::register(&mut reg, "method", "d", "d", "e", "e");
        let up = Upstream::new(
            &url::Url::parse(&format!("http://127.0.0.1:{node}/")).expect("url"),
            UpstreamOptions::default(),
            m.clone(),
        )
        .expect("upstream");

        let err = up
            .post_json(&["eth_blockNumber"], b"{}".to_vec())
            .await
            .expect_err("a redirect must be an error");
        assert_eq!(err.kind(), ErrorKind::Redirect, "{status}: {err}");
        let msg = err.to_string();
        assert!(!msg.contains("secret") && !msg.contains("token"), "{msg}");
        assert_eq!(m.error_count("eth_blockNumber", ErrorKind::Redirect), 1);

        let err = up
            .get("/eth/v1/node/version", "/eth/v1/node/version", &[])
            .await
            .expect_err("a redirect must be an error");
        assert_eq!(err.kind(), ErrorKind::Redirect, "{status}: {err}");
        let err = up
            .get_stream("/eth/v1/events", "/eth/v1/events?topics=head")
            .await
            .expect_err("a redirect must be an error");
        assert_eq!(err.kind(), ErrorKind::Redirect, "{status}: {err}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a redirect was followed to another address"
    );
}
