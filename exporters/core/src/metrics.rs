//! The exporter's own health metrics (`ethwatch_*`), shared by every exporter.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

/// One label: the collector name.
pub type CollectorLabels = [(&'static str, &'static str); 1];

/// A float gauge.
pub type FloatGauge = Gauge<f64, AtomicU64>;

/// What the landing page shows about one collector.
#[derive(Debug, Clone, Default)]
pub struct CollectorReport {
    /// Unix seconds of the last successful run.
    pub last_success: Option<f64>,
    /// The last error message, if the last run failed.
    pub last_error: Option<String>,
    /// Whether the collector is switched on.
    pub enabled: bool,
}

/// Per-collector self-metrics: `ethwatch_collector_duration_seconds`,
/// `ethwatch_collector_success`, `ethwatch_collector_last_success_timestamp_seconds`.
#[derive(Clone)]
pub struct CollectorStatus {
    duration: Family<CollectorLabels, FloatGauge>,
    success: Family<CollectorLabels, Gauge>,
    last_success: Family<CollectorLabels, FloatGauge>,
    reports: Arc<Mutex<BTreeMap<&'static str, CollectorReport>>>,
}

impl CollectorStatus {
    /// Registers the self-metrics under the `ethwatch_` prefix the caller's registry carries.
    pub fn register(registry: &mut Registry) -> Self {
        let s = CollectorStatus {
            duration: Family::default(),
            success: Family::default(),
            last_success: Family::default(),
            reports: Arc::default(),
        };
        registry.register_with_unit(
            "ethwatch_collector_duration",
            "How long the collector's last run took",
            Unit::Seconds,
            s.duration.clone(),
        );
        registry.register(
            "ethwatch_collector_success",
            "1 if the collector's last run succeeded, 0 if it failed or its method is unsupported",
            s.success.clone(),
        );
        registry.register_with_unit(
            "ethwatch_collector_last_success_timestamp",
            "Unix time of the collector's last successful run; time() minus this is how stale its values are",
            Unit::Seconds,
            s.last_success.clone(),
        );
        s
    }

    /// Declares a collector so it shows on the landing page even before its first run.
    pub fn declare(&self, collector: &'static str, enabled: bool) {
        let mut r = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        r.entry(collector).or_default().enabled = enabled;
    }

    /// Records one run.
    pub fn record(&self, collector: &'static str, elapsed: Duration, result: Result<(), String>) {
        let l = [("collector", collector)];
        self.duration.get_or_create(&l).set(elapsed.as_secs_f64());
        let now = crate::unix_now();
        let ok = result.is_ok();
        self.success.get_or_create(&l).set(i64::from(ok));
        if ok {
            self.last_success.get_or_create(&l).set(now);
        }
        let mut r = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        let rep = r.entry(collector).or_default();
        rep.enabled = true;
        match result {
            Ok(()) => {
                rep.last_success = Some(now);
                rep.last_error = None;
            }
            Err(e) => rep.last_error = Some(e),
        }
    }

    /// A snapshot for the landing page.
    pub fn reports(&self) -> BTreeMap<&'static str, CollectorReport> {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The success gauge's value (tests).
    pub fn success(&self, collector: &'static str) -> i64 {
        self.success
            .get_or_create(&[("collector", collector)])
            .get()
    }
}

/// A label value escaped as the exposition formats require (`\\` for a backslash, `\"` for a
/// double quote, `\n` for a line feed), in OpenMetrics and in the Prometheus text alike.
///
/// The metrics library writes label values as given, so one `"` from a node (a client version
/// string) or an operator (a `--volume.path`, a watcher target name) would make the whole
/// scrape unparseable. Every label value that does not come from a fixed `&'static str` is
/// wrapped in this.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Escaped<T>(pub T);

impl<T: AsRef<str>> prometheus_client::encoding::EncodeLabelValue for Escaped<T> {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> std::fmt::Result {
        write_escaped(encoder, self.0.as_ref())
    }
}

/// Writes `s` escaped for a label value (see [`Escaped`]).
pub fn write_escaped(w: &mut impl std::fmt::Write, s: &str) -> std::fmt::Result {
    let mut rest = s;
    while let Some(i) = rest.find(['\\', '"', '\n']) {
        w.write_str(&rest[..i])?;
        w.write_str(match rest.as_bytes()[i] {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            _ => "\\n",
        })?;
        rest = &rest[i + 1..];
    }
    w.write_str(rest)
}

/// Build metadata labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    revision: &'static str,
}

/// Registers `ethwatch_build_info{version,revision}` (a gauge of 1, as in the Prometheus
/// convention; the OpenMetrics `info` type is not understood by promtool's linter).
pub fn register_build_info(registry: &mut Registry) {
    let family = Family::<BuildLabels, Gauge>::default();
    family
        .get_or_create(&BuildLabels {
            version: crate::VERSION,
            revision: crate::REVISION,
        })
        .set(1);
    registry.register("ethwatch_build_info", "ethwatch build metadata", family);
}

/// State shared between the pollers that update it and the collector that encodes it at scrape
/// time. A poisoned lock is recovered: the state is plain data.
#[derive(Debug, Default)]
pub struct Shared<T>(Arc<Mutex<T>>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T> Shared<T> {
    /// Locks the state.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Encodes one unlabelled gauge when the value is known; an unknown value is left out (absent,
/// not 0), which is how exporters show what a node does not provide.
pub fn encode_gauge<V: prometheus_client::encoding::EncodeGaugeValue + std::fmt::Debug>(
    enc: &mut prometheus_client::encoding::DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: Option<V>,
) -> std::fmt::Result {
    use prometheus_client::encoding::EncodeMetric;
    if let Some(v) = v {
        let m = enc.encode_descriptor(
            name,
            help,
            unit,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        prometheus_client::metrics::gauge::ConstGauge::new(v).encode(m)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hostile label values survive both formats and read back as given.
    #[test]
    fn escaped_label_values_round_trip() {
        let hostile = [
            "a\"b",
            "back\\slash",
            "two\nlines",
            "x # {y=\"z\"} 1",
            "\\\"\n",
        ];
        let mut reg = Registry::default();
        let fam = Family::<[(&'static str, Escaped<String>); 1], Gauge>::default();
        reg.register("hostile", "Hostile label values", fam.clone());
        for (i, v) in hostile.iter().enumerate() {
            fam.get_or_create(&[("v", Escaped(v.to_string()))])
                .set(i as i64 + 1);
        }
        let mut om = String::new();
        prometheus_client::encoding::text::encode(&mut om, &reg).expect("encode");
        let prom = crate::server::to_prometheus_text(&om);
        for text in [&om, &prom] {
            let s = crate::exposition::parse(text);
            for (i, v) in hostile.iter().enumerate() {
                assert_eq!(
                    crate::exposition::value(&s, "hostile", &[("v", v)]),
                    Some(i as f64 + 1.0),
                    "{v:?} in\n{text}"
                );
            }
            // One line per sample: no raw line feed inside a value.
            assert_eq!(
                text.lines().filter(|l| l.starts_with("hostile{")).count(),
                5
            );
        }
    }
}
