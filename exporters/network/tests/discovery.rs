//! Kubernetes discovery against `tower_test` mocks of the API server: list, then a watch stream
//! in which a pod gets its IP (and counts while not yet ready), another changes IP, one is added
//! and deleted, and one that has failed is left out.

use std::time::{Duration, Instant};

use ethwatch_network::discovery::{DiscoveryHealth, Layer, PodRules, Preset, Targets, watch_pods};
use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn pod(id: &str, ready: bool, ip: &str, rv: &str) -> Value {
    pod_in(id, "Running", ready, ip, rv)
}

fn pod_in(id: &str, phase: &str, ready: bool, ip: &str, rv: &str) -> Value {
    let port = if id.starts_with("el-") {
        json!({"name": "rpc", "containerPort": 8545})
    } else {
        json!({"name": "http", "containerPort": 4000})
    };
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("{id}-pod"),
            "namespace": "kt-devnet",
            "resourceVersion": rv,
            "labels": {"kurtosistech.com/resource-type": "user-service", "kurtosistech.com/id": id}
        },
        "spec": {"containers": [{"name": "node", "image": "x", "ports": [port]}]},
        "status": {
            "phase": phase,
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]
        }
    })
}

/// `watch_pods` with the Kurtosis preset in namespace `kt-devnet`, against a mock API server.
struct Watching {
    handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
    rx: watch::Receiver<Targets>,
    token: CancellationToken,
    health: DiscoveryHealth,
    task: tokio::task::JoinHandle<()>,
}

/// Starts [`Watching`]; `up` is what discovery health says before the first answer.
fn watching(up: bool) -> Watching {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "kt-devnet");
    let rules = PodRules {
        preset: Preset::Kurtosis,
        selector: None,
        execution_port: "rpc".into(),
        beacon_port: "http".into(),
    };
    let (tx, rx) = watch::channel(Targets::new());
    let token = CancellationToken::new();
    let health = DiscoveryHealth::default();
    health.up.set(i64::from(up));
    let task = tokio::spawn(watch_pods(
        client,
        "kt-devnet".into(),
        rules,
        tx,
        health.clone(),
        token.clone(),
    ));
    Watching {
        handle,
        rx,
        token,
        health,
        task,
    }
}

async fn body_bytes(b: Body) -> Vec<u8> {
    use http_body_util::BodyExt;
    b.collect()
        .await
        .map(|c| c.to_bytes().to_vec())
        .unwrap_or_default()
}

#[tokio::test]
async fn list_then_watch_events_update_the_targets() {
    let Watching {
        mut handle,
        mut rx,
        token,
        health,
        task,
    } = watching(false);

    // 1. The initial list: namespace-scoped, with the preset's selector.
    let (req, send) = handle.next_request().await.expect("list request");
    let uri = req.uri().to_string();
    assert_eq!(req.method(), "GET");
    assert!(
        uri.starts_with("/api/v1/namespaces/kt-devnet/pods?"),
        "{uri}"
    );
    assert!(
        uri.contains("labelSelector=kurtosistech.com%2Fresource-type%3Duser-service"),
        "{uri}"
    );
    assert!(!uri.contains("watch=true"), "{uri}");
    let _ = body_bytes(req.into_body()).await;
    let list = json!({
        "apiVersion": "v1", "kind": "PodList",
        "metadata": {"resourceVersion": "10"},
        "items": [pod("el-1-reth-lighthouse", true, "10.0.0.1", "5"), pod_in("cl-1-lighthouse-reth", "Pending", false, "", "6")]
    });
    send.send_response(
        Response::builder()
            .status(200)
            .body(Body::from(serde_json::to_vec(&list).expect("json")))
            .expect("response"),
    );

    wait(&mut rx, |t| {
        t.len() == 1
            && t.get("el-1-reth-lighthouse-pod")
                .is_some_and(|t| t.url.as_str() == "http://10.0.0.1:8545/")
    })
    .await;

    assert!(
        health.listed.load(std::sync::atomic::Ordering::Relaxed),
        "listed after the first list"
    );
    assert_eq!(health.up.get(), 1);

    // 2. The watch: continues from the list's resource version.
    let (req, send) = handle.next_request().await.expect("watch request");
    let uri = req.uri().to_string();
    assert!(uri.contains("watch=true"), "{uri}");
    assert!(uri.contains("resourceVersion=10"), "{uri}");
    let events = [
        json!({"type": "MODIFIED", "object": pod("cl-1-lighthouse-reth", false, "10.0.0.2", "11")}),
        json!({"type": "MODIFIED", "object": pod("el-1-reth-lighthouse", true, "10.0.0.3", "12")}),
        // Failed before the others, so no state with only the two expected targets follows
        // it if it were wrongly counted.
        json!({"type": "ADDED", "object": pod_in("el-3-besu-teku", "Failed", false, "10.0.0.5", "13")}),
        json!({"type": "ADDED", "object": pod("el-2-geth-teku", true, "10.0.0.4", "14")}),
        json!({"type": "DELETED", "object": pod("el-2-geth-teku", true, "10.0.0.4", "15")}),
    ];
    let mut body = Vec::new();
    for e in events {
        body.extend(serde_json::to_vec(&e).expect("json"));
        body.push(b'\n');
    }
    send.send_response(
        Response::builder()
            .status(200)
            .body(Body::from(body))
            .expect("response"),
    );

    let t = wait(&mut rx, |t| {
        t.len() == 2
            && t.get("el-1-reth-lighthouse-pod")
                .is_some_and(|t| t.url.as_str() == "http://10.0.0.3:8545/")
            && t.get("cl-1-lighthouse-reth-pod").is_some()
    })
    .await;
    let cl = &t["cl-1-lighthouse-reth-pod"];
    assert_eq!(
        (cl.layer, cl.name.as_str(), cl.url.as_str()),
        (
            Layer::Consensus,
            "cl-1-lighthouse-reth",
            "http://10.0.0.2:4000/"
        )
    );
    assert_eq!(
        cl.pair, t["el-1-reth-lighthouse-pod"].pair,
        "paired by the participant index"
    );

    token.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops")
        .expect("task");
}

async fn wait(rx: &mut watch::Receiver<Targets>, cond: impl Fn(&Targets) -> bool) -> Targets {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        {
            let t = rx.borrow_and_update();
            if cond(&t) {
                return t.clone();
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "targets never matched: {:?}", rx.borrow());
        let _ = tokio::time::timeout(left, rx.changed()).await;
    }
}

#[tokio::test]
async fn a_failing_api_server_is_visible_and_retried_with_backoff() {
    let Watching {
        mut handle,
        token,
        health,
        task,
        rx: _rx,
    } = watching(true);
    let forbidden = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
        "message": "pods is forbidden", "code": 403});
    let mut times = Vec::new();
    for _ in 0..3 {
        let (req, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
            .await
            .expect("the watcher retries")
            .expect("a request");
        times.push(Instant::now());
        assert!(
            !req.uri().to_string().contains("watch=true"),
            "still listing"
        );
        send.send_response(
            Response::builder()
                .status(403)
                .body(Body::from(serde_json::to_vec(&forbidden).expect("json")))
                .expect("response"),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(health.up.get(), 0, "a failing watch shows as down");
        assert!(!health.listed.load(std::sync::atomic::Ordering::Relaxed));
    }
    // Exponential backoff: the second wait is longer than the first.
    let first = times[1] - times[0];
    let second = times[2] - times[1];
    assert!(
        first >= Duration::from_millis(700),
        "no hot retry: {first:?}"
    );
    assert!(second > first, "backoff grows: {first:?} then {second:?}");
    token.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops")
        .expect("task");
}
