//! Resident memory of a process, from `/proc/PID/status`.

/// A `kB` field of `/proc/<pid>/status` (`"self"` for this process), in KiB; panics when it
/// cannot be read (a memory bound must never pass on a missing reading).
pub fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Resident set size of this process, KiB.
pub fn rss_kib() -> u64 {
    status_kib("self", "VmRSS")
}

/// Peak resident set size of this process, KiB.
pub fn hwm_kib() -> u64 {
    status_kib("self", "VmHWM")
}

/// Resident set size of process `pid`, KiB.
pub fn rss_kib_of(pid: u32) -> u64 {
    status_kib(&pid.to_string(), "VmRSS")
}
