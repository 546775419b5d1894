//! Usage of the node's data volumes from `statvfs` (cheap: no directory walk).

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::metrics::Escaped;

type PathLabels = [(&'static str, Escaped<String>); 1];

/// `ethwatch_volume_size_bytes{path}` and `ethwatch_volume_available_bytes{path}`.
#[derive(Clone)]
pub struct VolumeMetrics {
    paths: Vec<PathBuf>,
    size: Family<PathLabels, Gauge<u64, AtomicU64>>,
    available: Family<PathLabels, Gauge<u64, AtomicU64>>,
}

/// A volume whose usage could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{}: {cause}", path.display())]
    Statvfs {
        path: PathBuf,
        cause: rustix::io::Errno,
    },
    #[error("{0}")]
    Task(tokio::task::JoinError),
}

impl VolumeMetrics {
    /// Registers the gauges for `paths`.
    pub fn register(registry: &mut Registry, paths: Vec<PathBuf>) -> Self {
        let v = VolumeMetrics {
            paths,
            size: Family::default(),
            available: Family::default(),
        };
        registry.register_with_unit(
            "ethwatch_volume_size",
            "Size of the filesystem holding the path",
            Unit::Bytes,
            v.size.clone(),
        );
        registry.register_with_unit(
            "ethwatch_volume_available",
            "Bytes available to unprivileged users on the filesystem holding the path",
            Unit::Bytes,
            v.available.clone(),
        );
        v
    }

    /// Whether any path is configured.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Reads every path once. Returns the first failure (path and cause); other paths still update.
    pub fn update(&self) -> Result<(), VolumeError> {
        let mut first_err = None;
        for p in &self.paths {
            let label = [("path", Escaped(p.display().to_string()))];
            match rustix::fs::statvfs(p) {
                Ok(st) => {
                    let frsize = if st.f_frsize > 0 {
                        st.f_frsize
                    } else {
                        st.f_bsize
                    };
                    self.size
                        .get_or_create(&label)
                        .set(st.f_blocks.saturating_mul(frsize));
                    self.available
                        .get_or_create(&label)
                        .set(st.f_bavail.saturating_mul(frsize));
                }
                Err(e) => {
                    first_err.get_or_insert_with(|| VolumeError::Statvfs {
                        path: p.clone(),
                        cause: e,
                    });
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl VolumeMetrics {
    /// Reads usage every `interval` until shutdown (off the async threads: statvfs can block on
    /// a hung network filesystem), recording the `volume` collector in `status`.
    pub async fn run(
        self,
        status: crate::metrics::CollectorStatus,
        interval: std::time::Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        status.declare("volume", true);
        crate::schedule::every(
            interval,
            std::time::Duration::from_secs(5),
            shutdown,
            move || {
                let v = self.clone();
                let s = status.clone();
                async move {
                    let start = std::time::Instant::now();
                    let r = tokio::task::spawn_blocking(move || v.update())
                        .await
                        .unwrap_or_else(|e| Err(VolumeError::Task(e)));
                    if let Err(e) = &r {
                        tracing::debug!(error = %e, "volume usage");
                    }
                    s.record("volume", start.elapsed(), r.map_err(|e| e.to_string()));
                }
            },
            || tracing::warn!("reading volume usage timed out"),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_real_filesystem_and_reports_a_missing_path() {
        let mut reg = Registry::default();
        let v = VolumeMetrics::register(
            &mut reg,
            vec![
                std::env::temp_dir(),
                PathBuf::from("/no/such/path/ethwatch"),
            ],
        );
        let err = v.update().expect_err("missing path must fail");
        assert!(err.to_string().contains("/no/such/path/ethwatch"), "{err}");
        let size = v
            .size
            .get_or_create(&[("path", Escaped(std::env::temp_dir().display().to_string()))])
            .get();
        let avail = v
            .available
            .get_or_create(&[("path", Escaped(std::env::temp_dir().display().to_string()))])
            .get();
        assert!(size > 0 && avail <= size, "size {size} avail {avail}");
    }
}
