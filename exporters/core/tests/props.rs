//! Property tests over generated inputs (bounded, stable Rust): any label value comes out of both
//! exposition formats readable and unchanged; the config file merge never panics on any text.

use std::ffi::OsString;

use ethwatch_core::metrics::Escaped;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use proptest::prelude::*;

fn cmd() -> clap::Command {
    clap::Command::new("ethwatch").subcommand(
        clap::Command::new("run")
            .arg(clap::Arg::new("rpc-url").long("rpc-url"))
            .arg(clap::Arg::new("poll-interval").long("poll-interval"))
            .arg(
                clap::Arg::new("flag")
                    .long("flag")
                    .action(clap::ArgAction::SetTrue),
            )
            .arg(clap::Arg::new("config.file").long("config.file")),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_label_value_round_trips(values in prop::collection::vec("\\PC*|[\"\\\\\n #{}=,]{0,12}", 1..6)) {
        let mut reg = Registry::default();
        let fam = Family::<[(&'static str, Escaped<String>); 1], Gauge>::default();
        reg.register("v", "Values", fam.clone());
        let mut uniq: Vec<String> = values.clone();
        uniq.sort();
        uniq.dedup();
        for (i, v) in uniq.iter().enumerate() {
            fam.get_or_create(&[("l", Escaped(v.clone()))]).set(i as i64);
        }
        let mut om = String::new();
        prometheus_client::encoding::text::encode(&mut om, &reg).expect("encode");
        let prom = ethwatch_core::server::to_prometheus_text(&om);
        for text in [&om, &prom] {
            let samples = ethwatch_core::exposition::parse(text);
            prop_assert_eq!(samples.len(), uniq.len(), "{}", text);
            for (i, v) in uniq.iter().enumerate() {
                prop_assert_eq!(
                    ethwatch_core::exposition::value(&samples, "v", &[("l", v)]),
                    Some(i as f64),
                    "{:?} in {}", v, text
                );
            }
        }
    }

    #[test]
    fn config_merge_never_panics(text in "\\PC{0,200}|([a-z.-]{1,12}: [^\\n]{0,20}\\n){0,8}") {
        let path = std::env::temp_dir().join(format!(
            "ethwatch-props-{}-{:?}.yaml",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, &text).expect("write");
        let args: Vec<OsString> = vec![
            "ethwatch".into(),
            "run".into(),
            format!("--config.file={}", path.display()).into(),
        ];
        let _ = ethwatch_core::config::merge_config_file(&cmd(), args);
        let _ = std::fs::remove_file(&path);
    }
}
