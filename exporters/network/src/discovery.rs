//! Which nodes make up the enclave: a static list, or pods found by watching the Kubernetes API.
//!
//! Discovery keeps a map of node name to [`Target`] in a `watch` channel; the poller reads the
//! latest map at every cycle. Kubernetes discovery *watches* pods (list once, then a watch
//! stream) in one namespace by label selector; every pod with an IP counts, Ready or not (a
//! node that is not ready, because it is syncing, behind or not answering, is exactly what the
//! comparison must show, as behind or down, rather than drop), except pods being deleted or
//! finished (`Succeeded`, `Failed`). The port comes from a named container port. It needs only namespace-scoped, read-only
//! RBAC: `get`, `list`, `watch` on `pods`.
//!
//! (Over 600 lines: about 270 are the tests, pod events against the rules of both presets
//! and the static lists; the discovery code itself is under 400.)

use std::collections::BTreeMap;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use url::Url;

/// Which API a node speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layer {
    /// Execution JSON-RPC.
    Execution,
    /// Beacon API.
    Consensus,
}

impl Layer {
    /// The `layer` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Execution => "execution",
            Layer::Consensus => "consensus",
        }
    }
}

/// One node to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The pod or target name; the `node` label.
    pub name: String,
    pub layer: Layer,
    pub url: Url,
    /// Nodes with the same pair key are an execution node and its beacon node.
    pub pair: Option<String>,
}

/// The current set of targets by name.
pub type Targets = BTreeMap<String, Target>;

/// Label conventions of the deployments the watcher understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// This project's chart (`charts/eth-enclave`): pods labelled
    /// `app.kubernetes.io/name=eth-enclave` with `app.kubernetes.io/component` `execution` or
    /// `beacon`, paired by `eth-enclave/participant` and the StatefulSet pod index.
    Ethwatch,
    /// Enclaves Kurtosis created: pods labelled `kurtosistech.com/resource-type=user-service`,
    /// services named `el-<i>-<el>-<cl>` and `cl-<i>-<cl>-<el>` in `kurtosistech.com/id`,
    /// paired by `<i>`.
    Kurtosis,
}

impl Preset {
    /// The label selector of the pods to watch.
    pub fn selector(self) -> &'static str {
        match self {
            Preset::Ethwatch => "app.kubernetes.io/name=eth-enclave",
            Preset::Kurtosis => "kurtosistech.com/resource-type=user-service",
        }
    }
}

/// How pods become targets.
#[derive(Debug, Clone)]
pub struct PodRules {
    pub preset: Preset,
    /// Overrides the preset's selector.
    pub selector: Option<String>,
    /// Named container port of execution nodes' JSON-RPC.
    pub execution_port: String,
    /// Named container port of beacon nodes' API.
    pub beacon_port: String,
}

impl PodRules {
    /// The selector in use.
    pub fn selector(&self) -> &str {
        self.selector.as_deref().unwrap_or(self.preset.selector())
    }

    /// The target a pod stands for, if it is an execution or beacon node with an IP and the
    /// named port that is neither being deleted nor finished (readiness does not matter).
    pub fn target(&self, pod: &Pod) -> Option<Target> {
        let meta = &pod.metadata;
        let labels = meta.labels.as_ref()?;
        let pod_name = meta.name.clone()?;
        let (layer, name, pair) = match self.preset {
            Preset::Ethwatch => {
                let layer = match labels.get("app.kubernetes.io/component")?.as_str() {
                    "execution" => Layer::Execution,
                    "beacon" => Layer::Consensus,
                    _ => return None,
                };
                let pair = labels.get("eth-enclave/participant").map(|p| {
                    let index = labels
                        .get("apps.kubernetes.io/pod-index")
                        .cloned()
                        .or_else(|| pod_name.rsplit('-').next().map(str::to_string))
                        .unwrap_or_default();
                    format!("{p}/{index}")
                });
                (layer, pod_name, pair)
            }
            Preset::Kurtosis => {
                let id = labels.get("kurtosistech.com/id")?;
                let mut parts = id.splitn(3, '-');
                let layer = match parts.next()? {
                    "el" => Layer::Execution,
                    "cl" => Layer::Consensus,
                    _ => return None,
                };
                let index = parts.next().filter(|i| i.parse::<u32>().is_ok());
                (layer, id.clone(), index.map(str::to_string))
            }
        };
        let status = pod.status.as_ref()?;
        let finished = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
        if finished || meta.deletion_timestamp.is_some() {
            return None;
        }
        let ip = status.pod_ip.as_ref().filter(|ip| !ip.is_empty())?;
        let port_name = match layer {
            Layer::Execution => &self.execution_port,
            Layer::Consensus => &self.beacon_port,
        };
        let port = pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(port_name.as_str()))?
            .container_port;
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.clone()
        };
        let url = Url::parse(&format!("http://{host}:{port}")).ok()?;
        Some(Target {
            name,
            layer,
            url,
            pair,
        })
    }
}

/// Applies one watcher event to the target map. `pending` holds the snapshot being listed
/// between `Init` and `InitDone`.
pub fn apply(
    rules: &PodRules,
    targets: &mut Targets,
    pending: &mut Option<Targets>,
    event: watcher::Event<Pod>,
) {
    let upsert = |map: &mut Targets, pod: &Pod| {
        let key = pod.metadata.name.clone().unwrap_or_default();
        match rules.target(pod) {
            Some(t) => {
                // Keyed by pod name; the node label may differ (Kurtosis service id).
                map.retain(|k, _| k != &key);
                map.insert(key, t);
            }
            None => {
                map.remove(&key);
            }
        }
    };
    match event {
        watcher::Event::Init => *pending = Some(Targets::new()),
        // A snapshot starts with its first object when `Init` was not seen (watch_pods drops
        // it, so that it does not reset the backoff before the list has even been tried).
        watcher::Event::InitApply(pod) => upsert(pending.get_or_insert_with(Targets::new), &pod),
        watcher::Event::InitDone => {
            *targets = pending.take().unwrap_or_default();
        }
        watcher::Event::Apply(pod) => upsert(targets, &pod),
        watcher::Event::Delete(pod) => {
            if let Some(name) = &pod.metadata.name {
                targets.remove(name);
            }
        }
    }
}

/// Whether discovery works: `listed` once the first list of pods completed, `up` (the gauge
/// `eth_network_discovery_up`) while the watch works.
#[derive(Debug, Clone, Default)]
pub struct DiscoveryHealth {
    pub listed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub up: prometheus_client::metrics::gauge::Gauge,
}

/// Watches pods and publishes the targets until shutdown. Errors of the watch (API server
/// unreachable, RBAC) are logged once, when they start, and retried with exponential backoff.
pub async fn watch_pods(
    client: kube::Client,
    namespace: String,
    rules: PodRules,
    tx: watch::Sender<Targets>,
    health: DiscoveryHealth,
    shutdown: CancellationToken,
) {
    use kube::runtime::WatchStreamExt;
    let api: kube::Api<Pod> = kube::Api::namespaced(client, &namespace);
    let cfg = watcher::Config::default().labels(rules.selector());
    // `Init` is emitted before the list request is made; letting it through would count as a
    // success, reset the backoff and log a recovery before every failing attempt.
    let mut stream = watcher(api, cfg)
        .filter(|e| futures_util::future::ready(!matches!(e, Ok(watcher::Event::Init))))
        .default_backoff()
        .boxed();
    let mut targets = Targets::new();
    let mut pending = None;
    let mut last_error: Option<String> = None;
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = stream.next() => ev,
        };
        match ev {
            None => return,
            Some(Ok(event)) => {
                let init = matches!(event, watcher::Event::Init | watcher::Event::InitApply(_));
                if !init {
                    if last_error.take().is_some() {
                        tracing::info!(namespace, "pod watch works again");
                    }
                    health.up.set(1);
                }
                if matches!(event, watcher::Event::InitDone) {
                    health
                        .listed
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                apply(&rules, &mut targets, &mut pending, event);
                if !init {
                    tx.send_if_modified(|cur| {
                        if *cur != targets {
                            *cur = targets.clone();
                            true
                        } else {
                            false
                        }
                    });
                }
            }
            Some(Err(e)) => {
                health.up.set(0);
                let msg = e.to_string();
                if last_error.is_none() {
                    tracing::warn!(namespace, selector = rules.selector(), error = %msg, "pod watch failed; retrying with backoff");
                    last_error = Some(msg);
                }
            }
        }
    }
}

/// A `--execution-target`, `--beacon-target` or `--pair` value that does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TargetSyntaxError {
    #[error("'{0}' is not NAME=URL")]
    NotNameUrl(String),
    #[error("'{0}' has an empty name")]
    EmptyName(String),
    #[error(transparent)]
    Url(#[from] ethwatch_core::config::ValueError),
    #[error("'{0}' is not EXECUTION_NAME=BEACON_NAME")]
    NotPair(String),
}

/// Parses `NAME=URL`.
pub fn parse_static(s: &str) -> Result<(String, Url), TargetSyntaxError> {
    let (name, url) = s
        .split_once('=')
        .ok_or_else(|| TargetSyntaxError::NotNameUrl(s.to_string()))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(TargetSyntaxError::EmptyName(s.to_string()));
    }
    let url = ethwatch_core::config::parse_http_url(url.trim())?;
    Ok((name.to_string(), url))
}

/// Parses `EXECUTION_NAME=BEACON_NAME`.
pub fn parse_pair(s: &str) -> Result<(String, String), TargetSyntaxError> {
    let (el, cl) = s
        .split_once('=')
        .ok_or_else(|| TargetSyntaxError::NotPair(s.to_string()))?;
    Ok((el.trim().to_string(), cl.trim().to_string()))
}

/// Static targets that do not fit together; [`TargetsError::flag`] names the flag it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetsError {
    /// A name given twice, reported under the target flag where it appears the second time.
    #[error(
        "target name '{name}' is used twice (already given by --{first}); names must be unique across both lists"
    )]
    Duplicate {
        flag: &'static str,
        first: &'static str,
        name: String,
    },
    /// A pair naming a target that is not in the list of its layer.
    #[error("{el}={cl}: '{name}' is not a --{list}")]
    NotListed {
        el: String,
        cl: String,
        name: String,
        list: &'static str,
    },
}

impl TargetsError {
    /// The flag (without dashes) the error is about.
    pub fn flag(&self) -> &'static str {
        match self {
            TargetsError::Duplicate { flag, .. } => flag,
            TargetsError::NotListed { .. } => "pair",
        }
    }
}

/// The flag of a layer's static targets.
fn target_flag(layer: Layer) -> &'static str {
    match layer {
        Layer::Execution => "execution-target",
        Layer::Consensus => "beacon-target",
    }
}

/// Builds the static target map; pairs refer to names in the lists.
pub fn static_targets(
    execution: &[(String, Url)],
    beacon: &[(String, Url)],
    pairs: &[(String, String)],
) -> Result<Targets, TargetsError> {
    let mut out = Targets::new();
    for (layer, list) in [(Layer::Execution, execution), (Layer::Consensus, beacon)] {
        for (name, url) in list {
            if let Some(first) = out.get(name) {
                return Err(TargetsError::Duplicate {
                    flag: target_flag(layer),
                    first: target_flag(first.layer),
                    name: name.clone(),
                });
            }
            out.insert(
                name.clone(),
                Target {
                    name: name.clone(),
                    layer,
                    url: url.clone(),
                    pair: None,
                },
            );
        }
    }
    for (el, cl) in pairs {
        let key = format!("{el}/{cl}");
        for (n, want) in [(el, Layer::Execution), (cl, Layer::Consensus)] {
            match out.get_mut(n) {
                Some(t) if t.layer == want => t.pair = Some(key.clone()),
                _ => {
                    return Err(TargetsError::NotListed {
                        el: el.clone(),
                        cl: cl.clone(),
                        name: n.clone(),
                        list: target_flag(want),
                    });
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    pub(crate) fn pod(
        name: &str,
        labels: &[(&str, &str)],
        ready: bool,
        ip: Option<&str>,
        port: (&str, i32),
    ) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "node".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some(port.0.into()),
                        container_port: port.1,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: ip.map(str::to_string),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn rules(preset: Preset) -> PodRules {
        PodRules {
            preset,
            selector: None,
            execution_port: "rpc".into(),
            beacon_port: "http".into(),
        }
    }

    #[test]
    fn kurtosis_pods() {
        let r = rules(Preset::Kurtosis);
        let el = pod(
            "el-1-reth-lighthouse-abc",
            &[("kurtosistech.com/id", "el-1-reth-lighthouse")],
            true,
            Some("10.0.0.5"),
            ("rpc", 8545),
        );
        let t = r.target(&el).expect("target");
        assert_eq!(
            (t.name.as_str(), t.layer, t.url.as_str(), t.pair.as_deref()),
            (
                "el-1-reth-lighthouse",
                Layer::Execution,
                "http://10.0.0.5:8545/",
                Some("1")
            )
        );
        let cl = pod(
            "cl-1-lighthouse-reth-x",
            &[("kurtosistech.com/id", "cl-1-lighthouse-reth")],
            true,
            Some("10.0.0.6"),
            ("http", 4000),
        );
        let t = r.target(&cl).expect("target");
        assert_eq!((t.layer, t.pair.as_deref()), (Layer::Consensus, Some("1")));
        // An unready node counts (the comparison shows it behind or down); validators, finished
        // pods, pods without IP or without the named port do not.
        let unready = pod(
            "el-3",
            &[("kurtosistech.com/id", "el-3-nethermind-teku")],
            false,
            Some("10.0.0.9"),
            ("rpc", 8545),
        );
        assert!(r.target(&unready).is_some());
        let mut failed = unready.clone();
        failed.status.as_mut().expect("status").phase = Some("Failed".into());
        assert!(r.target(&failed).is_none());
        // Not targets: a validator client, a node without an IP yet, a node without its API port.
        for (name, id, ip, port) in [
            (
                "vc-1",
                "vc-1-lighthouse-reth",
                Some("10.0.0.7"),
                ("http", 5056),
            ),
            ("el-2", "el-2-geth-teku", None, ("rpc", 8545)),
            (
                "el-2",
                "el-2-geth-teku",
                Some("10.0.0.8"),
                ("metrics", 9001),
            ),
        ] {
            let p = pod(name, &[("kurtosistech.com/id", id)], true, ip, port);
            assert!(r.target(&p).is_none(), "{name} {ip:?} {port:?}");
        }
    }

    #[test]
    fn chart_pods_pair_by_participant_and_index() {
        let r = rules(Preset::Ethwatch);
        let el = pod(
            "t-reth-0-1",
            &[
                ("app.kubernetes.io/component", "execution"),
                ("eth-enclave/participant", "0"),
                ("apps.kubernetes.io/pod-index", "1"),
            ],
            true,
            Some("fd00::5"),
            ("rpc", 8545),
        );
        let t = r.target(&el).expect("target");
        assert_eq!(
            (t.url.as_str(), t.pair.as_deref()),
            ("http://[fd00::5]:8545/", Some("0/1"))
        );
        let cl = pod(
            "t-lighthouse-0-1",
            &[
                ("app.kubernetes.io/component", "beacon"),
                ("eth-enclave/participant", "0"),
            ],
            true,
            Some("10.1.0.9"),
            ("http", 5052),
        );
        assert_eq!(r.target(&cl).expect("target").pair.as_deref(), Some("0/1"));
        let vc = pod(
            "t-vc-0-1",
            &[("app.kubernetes.io/component", "validator")],
            true,
            Some("10.1.0.10"),
            ("http", 5062),
        );
        assert!(r.target(&vc).is_none());
    }

    #[test]
    fn watcher_events_maintain_the_map() {
        let r = rules(Preset::Kurtosis);
        let el = |ready: bool, ip: &str| {
            pod(
                "el-1-pod",
                &[("kurtosistech.com/id", "el-1-reth-lighthouse")],
                ready,
                Some(ip),
                ("rpc", 8545),
            )
        };
        let mut targets = Targets::new();
        let mut pending = None;
        apply(&r, &mut targets, &mut pending, watcher::Event::Init);
        apply(
            &r,
            &mut targets,
            &mut pending,
            watcher::Event::InitApply(el(true, "10.0.0.1")),
        );
        assert!(targets.is_empty(), "not published before InitDone");
        apply(&r, &mut targets, &mut pending, watcher::Event::InitDone);
        assert_eq!(targets["el-1-pod"].url.as_str(), "http://10.0.0.1:8545/");
        // IP change.
        apply(
            &r,
            &mut targets,
            &mut pending,
            watcher::Event::Apply(el(true, "10.0.0.2")),
        );
        assert_eq!(targets["el-1-pod"].url.as_str(), "http://10.0.0.2:8545/");
        // Becomes unready (still compared), finishes (left out), runs again, deleted.
        apply(
            &r,
            &mut targets,
            &mut pending,
            watcher::Event::Apply(el(false, "10.0.0.2")),
        );
        assert_eq!(targets.len(), 1);
        let mut failed = el(false, "10.0.0.2");
        failed.status.as_mut().expect("status").phase = Some("Failed".into());
        apply(
            &r,
            &mut targets,
            &mut pending,
            watcher::Event::Apply(failed),
        );
        assert!(targets.is_empty());
        apply(
            &r,
            &mut targets,
            &mut pending,
            watcher::Event::Apply(el(true, "10.0.0.2")),
        );
        assert_eq!(targets.len(), 1);
        apply(
            &r,
            &mut targets,
            &mut pending,
            watcher::Event::Delete(el(true, "10.0.0.2")),
        );
        assert!(targets.is_empty());
    }

    #[test]
    fn static_lists_and_pairs() {
        let u = |s: &str| Url::parse(s).expect("url");
        let t = static_targets(
            &[("el-1".into(), u("http://127.0.0.1:1"))],
            &[("cl-1".into(), u("http://127.0.0.1:2"))],
            &[("el-1".into(), "cl-1".into())],
        )
        .expect("targets");
        assert_eq!(t["el-1"].pair, t["cl-1"].pair);
        assert!(t["el-1"].pair.is_some());
        let err = static_targets(
            &[("el-1".into(), u("http://127.0.0.1:1"))],
            &[],
            &[("el-1".into(), "cl-9".into())],
        )
        .expect_err("bad pair");
        assert_eq!(err.flag(), "pair");
        assert_eq!(
            err.to_string(),
            "el-1=cl-9: 'cl-9' is not a --beacon-target"
        );
        // A duplicate name is reported under the flag that repeats it, not under --pair.
        let err = static_targets(
            &[("n".into(), u("http://127.0.0.1:1"))],
            &[("n".into(), u("http://127.0.0.1:2"))],
            &[],
        )
        .expect_err("duplicate");
        assert_eq!(err.flag(), "beacon-target", "{err:?}");
        assert_eq!(
            err.to_string(),
            "target name 'n' is used twice (already given by --execution-target); names must be unique across both lists"
        );
        let err = static_targets(
            &[
                ("n".into(), u("http://127.0.0.1:1")),
                ("n".into(), u("http://127.0.0.1:2")),
            ],
            &[],
            &[],
        )
        .expect_err("duplicate");
        assert_eq!(err.flag(), "execution-target", "{err:?}");
        assert!(parse_static("el-1").is_err());
        assert!(parse_static("el-1=ftp://x").is_err());
    }
}
