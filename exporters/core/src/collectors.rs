//! The typed table of an exporter's collectors.
//!
//! Each exporter declares its collectors once, as an enum implementing [`Collector`] whose
//! [`Collector::spec`] gives the name, what it asks the node, how often, and whether a flag
//! switches it. From that one table come:
//! - the `--collector.<name>` flags and their `ETHWATCH_COLLECTOR_<NAME>` environment twins
//!   ([`Collectors`] is a `clap::Args` to flatten into the exporter's flags);
//! - the `collector` label of the self-metrics (`ethwatch_collector_success{collector=...}`) and
//!   the landing page's collector table ([`Collector::name`]);
//! - the collector table of the exporter's docs page ([`markdown_table`], kept in sync by a test).
//!
//! Adding a collector is one enum variant and its entry in `spec` (the compiler then points at
//! every `match` that must handle it), plus its code.

use std::fmt::Debug;
use std::marker::PhantomData;

/// Whether and how a flag switches a collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// Always runs (no flag).
    Always,
    /// Its own flag, `--collector.<name>`, on by default; the text is the flag's help.
    Flag(&'static str),
    /// Runs when the named collector's flag is on.
    Follows(&'static str),
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectorSpec {
    /// The name: flag suffix, `collector` label, docs.
    pub name: &'static str,
    /// What it asks the node (Markdown, for the docs).
    pub calls: &'static str,
    /// How often (Markdown, for the docs).
    pub interval: &'static str,
    /// How it is switched on and off.
    pub switch: Switch,
}

/// An exporter's collectors: an enum whose variants are the rows of the table.
pub trait Collector: Copy + Eq + Debug + Send + Sync + 'static {
    /// Every collector, in the order the docs and the landing page list them.
    const ALL: &'static [Self];

    /// This collector's row.
    fn spec(self) -> &'static CollectorSpec;

    /// The collector's name (`collector` label of the self-metrics).
    fn name(self) -> &'static str {
        self.spec().name
    }

    /// The collector named `name`, if any.
    fn by_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.name() == name)
    }
}

fn index<C: Collector>(c: C) -> usize {
    C::ALL
        .iter()
        .position(|x| *x == c)
        .expect("Collector::ALL lists every variant")
}

/// Which collectors run: the `--collector.*` flags of the table `C`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Collectors<C> {
    /// Bit `i` set: the flag of `C::ALL[i]` is on (collectors without a flag of their own keep
    /// their bit set).
    on: u64,
    _c: PhantomData<C>,
}

impl<C: Collector> Debug for Collectors<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(
                C::ALL
                    .iter()
                    .filter(|c| self.enabled(**c))
                    .map(|c| c.name()),
            )
            .finish()
    }
}

impl<C: Collector> Default for Collectors<C> {
    /// Every collector on (the flags' defaults).
    fn default() -> Self {
        assert!(C::ALL.len() <= 64, "at most 64 collectors");
        Collectors {
            on: u64::MAX,
            _c: PhantomData,
        }
    }
}

impl<C: Collector> Collectors<C> {
    /// The same set with `c`'s own flag set to `on`.
    pub fn with(mut self, c: C, on: bool) -> Self {
        let bit = 1u64 << index(c);
        if on {
            self.on |= bit;
        } else {
            self.on &= !bit;
        }
        self
    }

    /// Whether `c` runs: its own flag, or the flag it follows.
    pub fn enabled(&self, c: C) -> bool {
        match c.spec().switch {
            Switch::Always => true,
            Switch::Flag(_) => self.on & (1u64 << index(c)) != 0,
            Switch::Follows(other) => C::by_name(other).is_some_and(|o| self.enabled(o)),
        }
    }
}

fn flag_id(name: &str) -> String {
    format!("collector.{name}")
}

impl<C: Collector> clap::FromArgMatches for Collectors<C> {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut s = Self::default();
        s.update_from_arg_matches(m)?;
        Ok(s)
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        for &c in C::ALL {
            if let Switch::Flag(_) = c.spec().switch
                && let Some(v) = m.get_one::<bool>(&flag_id(c.name()))
            {
                *self = self.with(c, *v);
            }
        }
        Ok(())
    }
}

impl<C: Collector> clap::Args for Collectors<C> {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        for &c in C::ALL {
            let s = c.spec();
            if let Switch::Flag(help) = s.switch {
                cmd = cmd.arg(
                    clap::Arg::new(flag_id(s.name))
                        .long(flag_id(s.name))
                        .env(format!("ETHWATCH_COLLECTOR_{}", s.name.to_uppercase()))
                        .help(help)
                        .value_parser(clap::value_parser!(bool))
                        .action(clap::ArgAction::Set)
                        .num_args(0..=1)
                        .default_value("true")
                        .default_missing_value("true"),
                );
            }
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// The collector table of the docs: name, calls, interval, switch.
pub fn markdown_table<C: Collector>() -> String {
    let mut out = String::from("| collector | calls | interval | switch |\n|---|---|---|---|\n");
    for &c in C::ALL {
        let s = c.spec();
        let switch = match s.switch {
            Switch::Always => "always on".to_string(),
            Switch::Flag(_) => format!("`--collector.{}`", s.name),
            Switch::Follows(o) => format!("with `--collector.{o}`"),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            s.name, s.calls, s.interval, switch
        ));
    }
    out
}

/// Checks that the Markdown file at `path` holds [`markdown_table`] between the markers
/// `<!-- collectors:begin -->` and `<!-- collectors:end -->`; with `ETHWATCH_BLESS=1` rewrites
/// it. For the exporters' doc-sync tests.
pub fn check_doc_table<C: Collector>(path: &std::path::Path) -> Result<(), DocTableError> {
    const BEGIN: &str = "<!-- collectors:begin -->\n";
    const END: &str = "<!-- collectors:end -->";
    let io = |cause| DocTableError::Io {
        path: path.to_path_buf(),
        cause,
    };
    let text = std::fs::read_to_string(path).map_err(io)?;
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        return Err(DocTableError::NoMarkers(path.to_path_buf()));
    };
    let generated = markdown_table::<C>();
    if text[b + BEGIN.len()..e] == generated {
        return Ok(());
    }
    if std::env::var_os("ETHWATCH_BLESS").is_some() {
        let new = format!("{}{generated}{}", &text[..b + BEGIN.len()], &text[e..]);
        return std::fs::write(path, new).map_err(io);
    }
    Err(DocTableError::Stale(path.to_path_buf()))
}

/// Why [`check_doc_table`] failed.
#[derive(Debug, thiserror::Error)]
pub enum DocTableError {
    #[error("{}: {cause}", path.display())]
    Io {
        path: std::path::PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: no collectors markers", .0.display())]
    NoMarkers(std::path::PathBuf),
    #[error(
        "{}: the collector table is stale; run the test with ETHWATCH_BLESS=1 and commit it",
        .0.display()
    )]
    Stale(std::path::PathBuf),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum T {
        A,
        B,
        C,
    }
    impl Collector for T {
        const ALL: &'static [Self] = &[T::A, T::B, T::C];
        fn spec(self) -> &'static CollectorSpec {
            match self {
                T::A => &CollectorSpec {
                    name: "a",
                    calls: "`x`",
                    interval: "every cycle",
                    switch: Switch::Always,
                },
                T::B => &CollectorSpec {
                    name: "b",
                    calls: "`y`",
                    interval: "every cycle",
                    switch: Switch::Flag("B collector."),
                },
                T::C => &CollectorSpec {
                    name: "c",
                    calls: "`z`",
                    interval: "per epoch",
                    switch: Switch::Follows("b"),
                },
            }
        }
    }

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        collectors: Collectors<T>,
    }

    fn parse(args: &[&str]) -> Collectors<T> {
        let m = Cli::command().try_get_matches_from(args).expect("parse");
        Cli::from_arg_matches(&m).expect("matches").collectors
    }

    #[test]
    fn flags_come_from_the_table() {
        let all = parse(&["t"]);
        assert!(all.enabled(T::A) && all.enabled(T::B) && all.enabled(T::C));
        let off = parse(&["t", "--collector.b=false"]);
        assert!(off.enabled(T::A) && !off.enabled(T::B) && !off.enabled(T::C));
        let bare = parse(&["t", "--collector.b"]);
        assert!(bare.enabled(T::B));
        // Collectors without a flag of their own have none.
        assert!(
            Cli::command()
                .try_get_matches_from(["t", "--collector.a=false"])
                .is_err()
        );
        assert!(
            Cli::command()
                .try_get_matches_from(["t", "--collector.c=false"])
                .is_err()
        );
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("--collector.b") && help.contains("ETHWATCH_COLLECTOR_B"));
        assert!(help.contains("B collector."));
        assert_eq!(format!("{off:?}"), r#"{"a"}"#);
    }

    #[test]
    fn docs_table() {
        let t = markdown_table::<T>();
        assert!(t.contains("| `a` | `x` | every cycle | always on |"), "{t}");
        assert!(
            t.contains("| `b` | `y` | every cycle | `--collector.b` |"),
            "{t}"
        );
        assert!(
            t.contains("| `c` | `z` | per epoch | with `--collector.b` |"),
            "{t}"
        );
        assert_eq!(T::by_name("c"), Some(T::C));
        assert_eq!(T::by_name("d"), None);
    }
}
