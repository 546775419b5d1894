//! Flags every exporter shares, value parsers, and the optional YAML config file.
//!
//! Precedence, highest first: command-line flag, its environment variable, the config file,
//! the default. Config file keys are the long flag names without dashes
//! (`rpc-url: http://...`, `web.listen-address: ":9545"`).

use std::ffi::OsString;
use std::time::Duration;

use crate::telemetry::LogFormat;

/// The environment twin of the flag `--{long}`: `ETHWATCH_` and the long name in upper case,
/// `.` and `-` as `_` (`--web.listen-address`: `ETHWATCH_WEB_LISTEN_ADDRESS`).
pub fn env_twin(long: &str) -> String {
    format!(
        "ETHWATCH_{}",
        long.to_ascii_uppercase().replace(['.', '-'], "_")
    )
}

/// Gives every flag of `cmd` and its subcommands its [`env_twin`], unless its `#[arg]` names
/// another variable (`OTEL_*`, the plural names of list flags). The one place the twins are
/// named: every parse of the exporters' flags goes through [`try_parse`].
pub fn env_twins(cmd: clap::Command) -> clap::Command {
    let cmd = cmd.mut_args(|a| {
        let plain = matches!(
            a.get_action(),
            clap::ArgAction::Help | clap::ArgAction::Version
        );
        match a.get_long() {
            Some(long) if a.get_env().is_none() && !plain => {
                let env = env_twin(long);
                a.env(env)
            }
            _ => a,
        }
    });
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    subs.into_iter()
        .fold(cmd, |cmd, name| cmd.mut_subcommand(name, env_twins))
}

/// Parses `args` (the program name first) as `P`, every flag with its [`env_twin`].
pub fn try_parse<P, I, T>(args: I) -> Result<P, clap::Error>
where
    P: clap::Parser,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut cmd = env_twins(P::command());
    let mut m = cmd.try_get_matches_from_mut(args)?;
    P::from_arg_matches_mut(&mut m).map_err(|e| e.format(&mut cmd))
}

/// The HTTP server and logging flags of every exporter.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Address to serve /metrics, /healthz, /readyz and the landing page on.
    #[arg(long = "web.listen-address", default_value = "0.0.0.0:9545")]
    pub listen_address: String,

    /// Path under which metrics are served.
    #[arg(long = "web.telemetry-path", default_value = "/metrics", value_parser = parse_telemetry_path)]
    pub telemetry_path: String,

    /// Maximum number of HTTP requests served at once (counted until the answer is handed over);
    /// more get 503. /healthz and /readyz are not counted, so probes keep working.
    #[arg(long = "web.max-requests", default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_requests: u32,

    /// Maximum number of open HTTP connections. At the limit a new connection closes the one
    /// that has waited longest without being answered (idle or a slow head), so hostile clients
    /// cannot lock scrapers out; if all are being answered, the new one is closed.
    #[arg(long = "web.max-connections", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_connections: u32,

    /// A request head (request line and headers) must arrive within this from its first byte;
    /// otherwise the connection is closed.
    #[arg(long = "web.read-header-timeout", default_value = "10s", value_parser = parse_positive_duration)]
    pub read_header_timeout: Duration,

    /// A connection waiting for its next request, or on which no byte moves while it is being
    /// answered, is closed after this.
    #[arg(long = "web.idle-timeout", default_value = "60s", value_parser = parse_positive_duration)]
    pub idle_timeout: Duration,

    /// On SIGTERM, open connections get this long to finish their request; then they are
    /// closed and the exporter exits.
    #[arg(long = "web.shutdown-timeout", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// TLS and basic auth for the HTTP server: a file in the Prometheus exporter-toolkit format
    /// (`tls_server_config`, `basic_auth_users` with bcrypt hashes), read at start-up.
    /// /healthz and /readyz need no credentials.
    #[arg(long = "web.config.file")]
    pub web_config_file: Option<std::path::PathBuf>,

    /// Log line format. Text lines carry colour codes only when stderr is a terminal.
    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Optional YAML file with flag values (keys are long flag names, e.g. `rpc-url`).
    #[arg(long = "config.file")]
    pub config_file: Option<std::path::PathBuf>,

    /// Filesystem paths (the node's data volume) to report usage of with statvfs. Repeatable.
    #[arg(long = "volume.path", value_delimiter = ',')]
    pub volume_paths: Vec<std::path::PathBuf>,

    /// Trace export (OTLP) settings.
    #[command(flatten)]
    pub traces: crate::traces::TraceArgs,

    /// How often to read volume usage.
    #[arg(long = "volume.interval", default_value = "15s", value_parser = parse_duration)]
    pub volume_interval: Duration,
}

fn parse_telemetry_path(s: &str) -> Result<String, ValueError> {
    if !s.starts_with('/') {
        return Err(ValueError::NotAPath);
    }
    if ["/", "/healthz", "/readyz"].contains(&s) {
        return Err(ValueError::Reserved(s.to_string()));
    }
    Ok(s.to_string())
}

/// A flag value that does not parse; clap shows the text after the flag's name.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    #[error("'{0}' is not a duration (examples: 500ms, 2s, 1m)")]
    NotADuration(String),
    #[error("'{0}' must be a non-negative duration")]
    Negative(String),
    #[error("'{0}' is longer than a year")]
    TooLong(String),
    #[error("'{0}' must be more than 0")]
    Zero(String),
    #[error("'{0}' is not a number")]
    NotANumber(String),
    #[error("{0} is not between 0 and 1")]
    NotARatio(f64),
    #[error("'{input}' is not a URL: {cause}")]
    NotAUrl {
        input: String,
        cause: url::ParseError,
    },
    #[error("scheme '{scheme}' is not {wanted}")]
    Scheme {
        scheme: String,
        wanted: &'static str,
    },
    #[error("must start with '/'")]
    NotAPath,
    #[error("{0} is reserved")]
    Reserved(String),
}

/// The longest duration any flag takes: longer ones are typos (`1e20`) and would overflow the
/// clock arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// Parses a duration (see [`parse_duration`]) that must be more than zero.
pub fn parse_positive_duration(s: &str) -> Result<Duration, ValueError> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(ValueError::Zero(s.to_string()));
    }
    Ok(d)
}

/// Parses `500ms`, `2s`, `1m`, `1h`, or a plain number of seconds (`2`, `0.5`), at most
/// [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| ValueError::NotADuration(s.to_string()))?;
    if !v.is_finite() || v < 0.0 {
        return Err(ValueError::Negative(s.to_string()));
    }
    match Duration::try_from_secs_f64(v * mult) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(ValueError::TooLong(s.to_string())),
    }
}

/// Parses a URL and checks its scheme is one of `schemes` (`wanted` names them in the message).
fn parse_url(s: &str, schemes: [&str; 2], wanted: &'static str) -> Result<url::Url, ValueError> {
    let u = url::Url::parse(s).map_err(|cause| ValueError::NotAUrl {
        input: s.to_string(),
        cause,
    })?;
    if schemes.contains(&u.scheme()) {
        Ok(u)
    } else {
        Err(ValueError::Scheme {
            scheme: u.scheme().to_string(),
            wanted,
        })
    }
}

/// Parses a URL and checks it is http or https.
pub fn parse_http_url(s: &str) -> Result<url::Url, ValueError> {
    parse_url(s, ["http", "https"], "http or https")
}

/// Parses a websocket URL (ws or wss).
pub fn parse_ws_url(s: &str) -> Result<url::Url, ValueError> {
    parse_url(s, ["ws", "wss"], "ws or wss")
}

/// A configuration error that names the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {msg}")]
    File { path: String, msg: String },
    #[error("config file {path}: unknown field `{field}` (not a flag of `{command}`)")]
    UnknownField {
        path: String,
        field: String,
        command: String,
    },
    #[error("config file {path}: field `{field}`: {msg}")]
    BadField {
        path: String,
        field: String,
        msg: String,
    },
    #[error("{field}: {msg}")]
    Invalid { field: String, msg: String },
}

impl ConfigError {
    /// The flag `--{flag}` has a value that does not fit (`msg` says why).
    pub fn invalid(flag: &str, msg: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: format!("--{flag}"),
            msg: msg.into(),
        }
    }

    /// Fails unless `--{flag}`'s duration `d` is at least `min`.
    pub fn check_min(flag: &str, d: Duration, min: Duration) -> Result<(), Self> {
        if d < min {
            return Err(Self::invalid(
                flag,
                format!("{d:?} is below the minimum of {min:?}"),
            ));
        }
        Ok(())
    }

    /// Fails unless `--{flag}`'s byte limit `n` is at least 1024.
    pub fn check_bytes(flag: &str, n: usize) -> Result<(), Self> {
        if n < 1024 {
            return Err(Self::invalid(
                flag,
                format!("{n} is below the minimum of 1024"),
            ));
        }
        Ok(())
    }
}

/// Merges a YAML config file into the argument list of a subcommand-style CLI.
///
/// `args[1]` is taken as the subcommand. The file is named by `--config.file` in `args` or by
/// `ETHWATCH_CONFIG_FILE`. Each key must be a long flag of that subcommand; keys whose flag is
/// already on the command line or whose environment variable is set are left out, so flags and
/// environment win over the file. File values are inserted right after the subcommand.
pub fn merge_config_file(
    cmd: &clap::Command,
    args: Vec<OsString>,
) -> Result<Vec<OsString>, ConfigError> {
    let Some(sub_name) = args.get(1).and_then(|s| s.to_str()).map(str::to_string) else {
        return Ok(args);
    };
    let Some(sub) = cmd.find_subcommand(&sub_name) else {
        return Ok(args);
    };
    let strs: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let from_args = strs.iter().enumerate().find_map(|(i, a)| {
        if let Some(v) = a.strip_prefix("--config.file=") {
            Some(v.to_string())
        } else if a == "--config.file" {
            strs.get(i + 1).cloned()
        } else {
            None
        }
    });
    let Some(path) = from_args.or_else(|| std::env::var("ETHWATCH_CONFIG_FILE").ok()) else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::File {
        path: path.clone(),
        msg: e.to_string(),
    })?;
    // Read as a generic document (YAML scalars, sequences and string-keyed mappings map onto JSON
    // values one to one); the flag parsers check the values.
    let doc: serde_json::Value = serde_saphyr::from_str(&text).map_err(|e| ConfigError::File {
        path: path.clone(),
        msg: e.to_string(),
    })?;
    let map = match doc {
        serde_json::Value::Object(m) => m,
        serde_json::Value::Null => return Ok(args),
        _ => {
            return Err(ConfigError::File {
                path,
                msg: "the top level must be a mapping of flag names to values".into(),
            });
        }
    };
    let mut extra: Vec<OsString> = Vec::new();
    for (key, v) in map {
        let Some(arg) = sub
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
        else {
            return Err(ConfigError::UnknownField {
                path,
                field: key,
                command: sub_name,
            });
        };
        if key == "config.file" {
            continue;
        }
        let flag = format!("--{key}");
        let on_cli = strs
            .iter()
            .any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
        let env_set = arg.get_env().is_some_and(|e| std::env::var_os(e).is_some());
        if on_cli || env_set {
            continue;
        }
        let takes_value = arg.get_action().takes_values();
        let bad = |msg: &str| ConfigError::BadField {
            path: path.clone(),
            field: key.clone(),
            msg: msg.to_string(),
        };
        let scalars: Vec<String> = match v {
            serde_json::Value::Array(items) => items
                .into_iter()
                .map(|i| scalar(&i).ok_or_else(|| bad("list items must be scalars")))
                .collect::<Result<_, _>>()?,
            other => vec![scalar(&other).ok_or_else(|| bad("must be a scalar or a list"))?],
        };
        if takes_value {
            for s in scalars {
                extra.push(format!("{flag}={s}").into());
            }
        } else {
            match scalars.as_slice() {
                [s] if s == "true" => extra.push(flag.into()),
                [s] if s == "false" => {}
                _ => return Err(bad("must be true or false")),
            }
        }
    }
    let mut out = Vec::with_capacity(args.len() + extra.len());
    let mut it = args.into_iter();
    out.extend(it.by_ref().take(2));
    out.extend(extra);
    out.extend(it);
    Ok(out)
}

fn scalar(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser, Subcommand};

    #[derive(Parser, Debug)]
    #[command(args_override_self = true)]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(Subcommand, Debug)]
    enum Cmd {
        Run {
            #[command(flatten)]
            common: CommonArgs,
            #[arg(long = "rpc-url", env = "ETHWATCH_TEST_ONLY_RPC_URL", value_parser = parse_http_url)]
            rpc_url: url::Url,
            #[arg(long = "poll-interval", env = "ETHWATCH_TEST_ONLY_POLL", default_value = "1s", value_parser = parse_duration)]
            interval: Duration,
            #[arg(long = "flag")]
            flag: bool,
        },
    }

    fn parse(args: &[&str]) -> anyhow::Result<Cli> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let merged = merge_config_file(&Cli::command(), args)?;
        Ok(Cli::try_parse_from(merged)?)
    }

    fn file(text: &str) -> tempfile_path::TempPath {
        tempfile_path::TempPath::new(text)
    }

    mod tempfile_path {
        pub struct TempPath(pub std::path::PathBuf);
        impl TempPath {
            pub fn new(text: &str) -> Self {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let p = std::env::temp_dir()
                    .join(format!("ethwatch-config-{}-{n}.yaml", std::process::id()));
                std::fs::write(&p, text).expect("write");
                TempPath(p)
            }
            pub fn arg(&self) -> String {
                format!("--config.file={}", self.0.display())
            }
        }
        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1e20").is_err());
        assert!(parse_duration("1e20h").is_err());
        assert!(parse_duration("9000h").is_err());
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86400)));
        assert!(parse_positive_duration("0s").is_err());
    }

    #[test]
    fn file_values_apply_and_flags_win() {
        let f = file(
            "rpc-url: http://127.0.0.1:1\npoll-interval: 3s\nflag: true\nweb.listen-address: 127.0.0.1:0\n",
        );
        let Cli {
            cmd:
                Cmd::Run {
                    rpc_url,
                    interval,
                    flag,
                    common,
                },
        } = parse(&["ethwatch", "run", &f.arg(), "--poll-interval=5s"]).expect("parse");
        assert_eq!(rpc_url.as_str(), "http://127.0.0.1:1/");
        assert_eq!(interval, Duration::from_secs(5));
        assert!(flag);
        assert_eq!(common.listen_address, "127.0.0.1:0");
    }

    #[test]
    fn unknown_field_is_named() {
        let f = file("rpc-url: http://127.0.0.1:1\nrpc-ulr: x\n");
        let err = parse(&["ethwatch", "run", &f.arg()])
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("unknown field `rpc-ulr`"), "{err}");
    }

    #[test]
    fn bad_value_in_file_names_the_flag() {
        let f = file("rpc-url: ftp://x\n");
        let err = parse(&["ethwatch", "run", &f.arg()])
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("--rpc-url"), "{err}");
        assert!(err.contains("not http"), "{err}");
    }

    #[test]
    fn yaml_lists_numbers_and_hostile_documents() {
        // Lists, plain numbers and booleans become flag values.
        let f = file(
            "rpc-url: http://127.0.0.1:1\npoll-interval: 2\nflag: false\nvolume.path: [/a, /b]\n",
        );
        let Cli {
            cmd:
                Cmd::Run {
                    interval,
                    flag,
                    common,
                    ..
                },
        } = parse(&["ethwatch", "run", &f.arg()]).expect("parse");
        assert_eq!(interval, Duration::from_secs(2));
        assert!(!flag);
        assert_eq!(common.volume_paths.len(), 2);
        // A billion-laughs alias bomb (10^7 nodes), a top-level list, a nested mapping and broken
        // syntax fail with the file named, without panicking or expanding the bomb.
        let bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n";
        for text in [
            bomb,
            "- a\n- b\n",
            "rpc-url: {nested: 1}\n",
            "rpc-url: [unclosed\n",
        ] {
            let f = file(text);
            let err = parse(&["ethwatch", "run", &f.arg()])
                .expect_err(text)
                .to_string();
            assert!(err.contains("config file"), "{text}: {err}");
            // Rejected by the parser's limits, before any key is looked at.
            assert!(!err.contains("unknown field"), "{text}: {err}");
        }
    }

    #[test]
    fn bad_telemetry_path_is_rejected() {
        let err = parse(&[
            "ethwatch",
            "run",
            "--rpc-url=http://x",
            "--web.telemetry-path=metrics",
        ])
        .expect_err("must fail");
        assert!(err.to_string().contains("--web.telemetry-path"), "{err}");
    }
}
