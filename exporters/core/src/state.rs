//! Metrics read from an exporter's state at scrape time, declared as tables.
//!
//! Each exporter keeps its node's last known state in memory and encodes it when scraped. Its
//! metrics are a table of [`StateMetric`]s: name, help, unit and labels declared once, next to
//! how the value is read from the state. A value the state does not know is left out (absent,
//! not 0), which is how exporters show what a node does not provide. Adding a state metric is
//! one row (and the state field it reads).

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use crate::metrics::Escaped;

/// A gauge value: whole numbers encode as integers (`5`), others as floats (`0.5`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
}

impl Value {
    /// From a `u64`; values beyond `i64` (no real node sends them) saturate instead of wrapping
    /// to negative numbers.
    pub fn uint(v: u64) -> Value {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(i64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl EncodeGaugeValue for Value {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::GaugeValueEncoder,
    ) -> Result<(), fmt::Error> {
        match self {
            Value::Int(v) => v.encode(encoder),
            Value::Float(v) => v.encode(encoder),
        }
    }
}

/// The labels of an info metric: `(name, value)`.
pub type InfoLabels = Vec<(&'static str, String)>;

/// Series of a family with any labels: `(labels, value)`.
pub type Series = Vec<(Vec<(&'static str, String)>, Value)>;

/// How a plain gauge is read.
pub type GaugeRead<C> = fn(&C) -> Option<Value>;

/// How a metric's value is read from what the scrape sees (`C`: the state, and the time).
pub enum Read<C> {
    /// One unlabelled gauge; `None` leaves it out.
    Gauge(GaugeRead<C>),
    /// One unlabelled gauge read as a whole number (most state is an `Option<u64>`); `None`
    /// leaves it out.
    Uint(fn(&C) -> Option<u64>),
    /// A gauge family with one label (its name given here): one series per `(label value,
    /// value)`; none leaves the family out.
    By(&'static str, fn(&C) -> Vec<(&'static str, Value)>),
    /// An info metric: one series of value 1 whose labels (escaped) carry the facts; `None`
    /// leaves it out.
    Info(fn(&C) -> Option<InfoLabels>),
    /// A gauge family with any labels (escaped): `None` leaves it out; an empty list still
    /// declares it (HELP and TYPE, no series).
    Series(fn(&C) -> Option<Series>),
}

/// One metric of an exporter's state: its name, help, unit and labels, and its value.
pub struct StateMetric<C> {
    pub name: &'static str,
    pub help: &'static str,
    pub unit: Option<Unit>,
    pub read: Read<C>,
}

const fn row<C>(
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    read: Read<C>,
) -> StateMetric<C> {
    StateMetric {
        name,
        help,
        unit,
        read,
    }
}

/// A plain gauge (no unit).
pub const fn gauge<C>(n: &'static str, h: &'static str, r: GaugeRead<C>) -> StateMetric<C> {
    row(n, h, None, Read::Gauge(r))
}

/// A plain gauge of a whole number: the row reads the state's `Option<u64>` as it is.
pub const fn uint<C>(n: &'static str, h: &'static str, r: fn(&C) -> Option<u64>) -> StateMetric<C> {
    row(n, h, None, Read::Uint(r))
}

/// A gauge in seconds.
pub const fn seconds<C>(n: &'static str, h: &'static str, r: GaugeRead<C>) -> StateMetric<C> {
    row(n, h, Some(Unit::Seconds), Read::Gauge(r))
}

/// A gauge family with one label, `label`.
pub const fn family<C>(
    n: &'static str,
    h: &'static str,
    label: &'static str,
    r: fn(&C) -> Vec<(&'static str, Value)>,
) -> StateMetric<C> {
    row(n, h, None, Read::By(label, r))
}

/// An info metric (value 1, facts in its labels).
pub const fn info<C>(
    n: &'static str,
    h: &'static str,
    r: fn(&C) -> Option<InfoLabels>,
) -> StateMetric<C> {
    row(n, h, None, Read::Info(r))
}

/// A gauge family with any labels.
pub const fn series<C>(
    n: &'static str,
    h: &'static str,
    r: fn(&C) -> Option<Series>,
) -> StateMetric<C> {
    row(n, h, None, Read::Series(r))
}

/// One unlabelled gauge of `m`, unless its value is unknown.
fn one<C>(enc: &mut DescriptorEncoder, m: &StateMetric<C>, v: Option<Value>) -> fmt::Result {
    if let Some(v) = v {
        let d = enc.encode_descriptor(m.name, m.help, m.unit.as_ref(), MetricType::Gauge)?;
        ConstGauge::new(v).encode(d)?;
    }
    Ok(())
}

/// Encodes every metric of `table` from `c`, in table order.
pub fn encode<C>(enc: &mut DescriptorEncoder, table: &[StateMetric<C>], c: &C) -> fmt::Result {
    for m in table {
        let unit = m.unit.as_ref();
        match &m.read {
            Read::Gauge(read) => one(enc, m, read(c))?,
            Read::Uint(read) => one(enc, m, read(c).map(Value::uint))?,
            Read::By(label, read) => {
                let values = read(c);
                if !values.is_empty() {
                    let mut d = enc.encode_descriptor(m.name, m.help, unit, MetricType::Gauge)?;
                    for (l, v) in values {
                        ConstGauge::new(v).encode(d.encode_family(&[(*label, l)])?)?;
                    }
                }
            }
            Read::Info(read) => {
                if let Some(labels) = read(c) {
                    let mut d = enc.encode_descriptor(m.name, m.help, unit, MetricType::Gauge)?;
                    let labels: Vec<(&str, Escaped<&str>)> = labels
                        .iter()
                        .map(|(k, v)| (*k, Escaped(v.as_str())))
                        .collect();
                    ConstGauge::new(1i64).encode(d.encode_family(&labels)?)?;
                }
            }
            Read::Series(read) => {
                if let Some(series) = read(c) {
                    let mut d = enc.encode_descriptor(m.name, m.help, unit, MetricType::Gauge)?;
                    for (labels, v) in series {
                        let labels: Vec<(&str, Escaped<&str>)> = labels
                            .iter()
                            .map(|(k, v)| (*k, Escaped(v.as_str())))
                            .collect();
                        ConstGauge::new(v).encode(d.encode_family(&labels)?)?;
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::collector::Collector;
    use prometheus_client::registry::Registry;

    struct S {
        a: Option<u64>,
        f: Option<f64>,
        by: Vec<(&'static str, Value)>,
        who: Option<String>,
    }

    const TABLE: &[StateMetric<S>] = &[
        uint("t_a", "A.", |s| s.a),
        seconds("t_f", "F.", |s| s.f.map(Value::from)),
        family("t_by", "By.", "kind", |s| s.by.clone()),
        info("t_info", "Info.", |s| {
            s.who
                .clone()
                .map(|w| vec![("client", w), ("version", "1".into())])
        }),
        series("t_series", "Series.", |s| {
            s.a.map(|_| vec![(vec![("l", "v".into()), ("n", "x\\y".into())], Value::Int(7))])
        }),
    ];

    #[derive(Debug)]
    struct C(std::sync::Mutex<Option<S>>);
    impl std::fmt::Debug for S {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("S")
        }
    }
    impl Collector for C {
        fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
            let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
            encode(&mut enc, TABLE, g.as_ref().ok_or(fmt::Error)?)
        }
    }

    fn text(s: S) -> String {
        let mut r = Registry::default();
        r.register_collector(Box::new(C(std::sync::Mutex::new(Some(s)))));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).expect("encode");
        out
    }

    #[test]
    fn rows_encode_in_order_and_unknowns_are_absent() {
        let t = text(S {
            a: Some(u64::MAX),
            f: Some(0.5),
            by: vec![("x", Value::Int(2)), ("y", Value::Float(1.5))],
            who: Some("a\"b".into()),
        });
        let want = "# HELP t_a A.\n# TYPE t_a gauge\nt_a 9223372036854775807\n\
                    # HELP t_f_seconds F.\n# TYPE t_f_seconds gauge\n# UNIT t_f_seconds seconds\nt_f_seconds 0.5\n\
                    # HELP t_by By.\n# TYPE t_by gauge\nt_by{kind=\"x\"} 2\nt_by{kind=\"y\"} 1.5\n\
                    # HELP t_info Info.\n# TYPE t_info gauge\nt_info{client=\"a\\\"b\",version=\"1\"} 1\n\
                    # HELP t_series Series.\n# TYPE t_series gauge\nt_series{l=\"v\",n=\"x\\\\y\"} 7\n# EOF\n";
        assert_eq!(t, want);
        let t = text(S {
            a: None,
            f: None,
            by: vec![],
            who: None,
        });
        assert_eq!(t, "# EOF\n");
    }
}
