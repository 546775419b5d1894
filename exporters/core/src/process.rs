//! `process_*` metrics of the exporter itself, read from `/proc/self` at scrape time (a few
//! microseconds, no node involved): what the dashboards show as ethwatch's own footprint
//! outside Kubernetes, with the names every Prometheus client library uses.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// The collector; registered by every exporter's frame.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// One reading of `/proc/self`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub start_time_seconds: f64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub threads: u64,
}

/// The units `/proc/self/stat` counts in, as this kernel has them: the page size (4 KiB on most
/// x86-64 kernels, 16 or 64 KiB on some arm64 ones) and clock ticks per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatUnits {
    pub page_size: u64,
    pub clock_ticks: f64,
}

impl StatUnits {
    /// This system's units, asked of the OS.
    pub fn of_this_system() -> Self {
        StatUnits {
            page_size: rustix::param::page_size() as u64,
            clock_ticks: rustix::param::clock_ticks_per_second() as f64,
        }
    }
}

/// Parses `/proc/self/stat` (fields after the command name) with the boot time from
/// `/proc/stat`, in `units`. `None` on anything unexpected (not Linux, a changed format).
pub fn parse_stat(stat: &str, boot_time: f64, units: StatUnits) -> Option<ProcessStats> {
    if units.clock_ticks <= 0.0 {
        return None;
    }
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Field numbers as in proc(5), minus 3 (pid, comm and state are before `rest`'s index 1).
    let num = |i: usize| f.get(i - 3)?.parse::<u64>().ok();
    let utime = num(14)?;
    let stime = num(15)?;
    Some(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / units.clock_ticks,
        threads: num(20)?,
        start_time_seconds: boot_time + num(22)? as f64 / units.clock_ticks,
        virtual_bytes: num(23)?,
        resident_bytes: num(24)?.saturating_mul(units.page_size),
        open_fds: 0,
        max_fds: None,
    })
}

fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let boot_time = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse::<f64>()
        .ok()?;
    let mut s = parse_stat(&stat, boot_time, StatUnits::of_this_system())?;
    s.open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    s.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))?
                .split_whitespace()
                .nth(3)?
                .parse()
                .ok()
        });
    Some(s)
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: f64,
) -> fmt::Result {
    ConstGauge::new(v).encode(enc.encode_descriptor(name, help, unit, MetricType::Gauge)?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let Some(s) = read() else { return Ok(()) };
        ConstCounter::new(s.cpu_seconds).encode(enc.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?)?;
        let e = &mut enc;
        gauge(
            e,
            "process_resident_memory",
            "Resident memory size",
            Some(&Unit::Bytes),
            s.resident_bytes as f64,
        )?;
        gauge(
            e,
            "process_virtual_memory",
            "Virtual memory size",
            Some(&Unit::Bytes),
            s.virtual_bytes as f64,
        )?;
        gauge(
            e,
            "process_start_time",
            "Start time of the process since the Unix epoch",
            Some(&Unit::Seconds),
            s.start_time_seconds,
        )?;
        gauge(
            e,
            "process_open_fds",
            "Open file descriptors",
            None,
            s.open_fds as f64,
        )?;
        if let Some(m) = s.max_fds {
            gauge(
                e,
                "process_max_fds",
                "Maximum number of open file descriptors",
                None,
                m as f64,
            )?;
        }
        gauge(
            e,
            "process_threads",
            "OS threads of the process",
            None,
            s.threads as f64,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_a_tricky_name() {
        // pid (comm) state ppid ... as in proc(5); utime=150 stime=50, threads=3, starttime=1000,
        // vsize=123456789, rss=2048 pages.
        let line = "42 (eth (watch) x) S 1 42 42 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 3 0 1000 123456789 2048 18446744073709551615";
        let x86 = StatUnits {
            page_size: 4096,
            clock_ticks: 100.0,
        };
        let s = parse_stat(line, 1_700_000_000.0, x86).expect("parse");
        assert_eq!(s.cpu_seconds, 2.0);
        assert_eq!(s.threads, 3);
        assert_eq!(s.start_time_seconds, 1_700_000_010.0);
        assert_eq!(s.virtual_bytes, 123_456_789);
        assert_eq!(s.resident_bytes, 2048 * 4096);
        assert!(parse_stat("garbage", 0.0, x86).is_none());
        // A 64 KiB-page kernel with 250 ticks a second: the same line, other bytes and seconds.
        let arm = StatUnits {
            page_size: 65536,
            clock_ticks: 250.0,
        };
        let s = parse_stat(line, 1_700_000_000.0, arm).expect("parse");
        assert_eq!(s.resident_bytes, 2048 * 65536);
        assert_eq!(s.cpu_seconds, 0.8);
        assert_eq!(s.start_time_seconds, 1_700_000_004.0);
    }

    #[test]
    fn units_come_from_the_os() {
        let u = StatUnits::of_this_system();
        assert!(
            u.page_size >= 4096 && u.page_size.is_power_of_two(),
            "{u:?}"
        );
        assert!(u.clock_ticks >= 1.0, "{u:?}");
        // The resident size this process reports is the kernel's own figure in bytes: statm
        // counts pages too, so both agree when the page size is the kernel's.
        let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .expect("rss");
        let s = read().expect("read");
        let diff = s.resident_bytes.abs_diff(pages * u.page_size);
        assert!(
            diff < 64 * u.page_size,
            "{} vs {}",
            s.resident_bytes,
            pages * u.page_size
        );
    }

    #[test]
    fn reads_this_process() {
        let s = read().expect("/proc/self on Linux");
        assert!(s.resident_bytes > 0 && s.open_fds > 0 && s.threads >= 1);
        assert!(s.start_time_seconds > 1_600_000_000.0);
    }
}
