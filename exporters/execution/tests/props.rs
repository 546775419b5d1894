//! Property tests over generated inputs (bounded, stable Rust): quantity parsing round-trips every
//! value, refuses everything beyond `u64`/`u128` and never panics.

use ethwatch_execution::types::{
    ClientVersion, parse_quantity, parse_quantity_str, parse_quantity_u128,
};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn quantities_round_trip(n in any::<u64>(), w in any::<u128>()) {
        let (lower, upper) = (format!("0x{n:x}"), format!("0X{n:X}"));
        prop_assert_eq!(parse_quantity_str(&lower), Ok(n));
        prop_assert_eq!(parse_quantity_str(&upper), Ok(n));
        prop_assert_eq!(parse_quantity_str(&n.to_string()), Ok(n));
        prop_assert_eq!(parse_quantity(&serde_json::json!(n)), Ok(n));
        let wide = format!("0x{w:x}");
        prop_assert_eq!(parse_quantity_u128(&wide), Ok(w));
        prop_assert_eq!(parse_quantity_u128(&w.to_string()), Ok(w));
    }

    #[test]
    fn beyond_u64_is_an_error_not_a_wrap(extra in 1u128..=u128::from(u64::MAX)) {
        let v = u128::from(u64::MAX) + extra;
        let hex = format!("0x{v:x}");
        let dec = v.to_string();
        prop_assert!(parse_quantity_str(&hex).is_err());
        prop_assert!(parse_quantity_str(&dec).is_err());
    }

    #[test]
    fn any_string_is_an_answer_or_an_error(s in "\\PC{0,40}|[+-]?(0[xX])?[0-9a-fA-F_ ]{0,40}") {
        if let Ok(v) = parse_quantity_str(&s) {
            // Whatever parses, parses to the digits given (no sign, no separators).
            let t = s.trim();
            let hex = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X"));
            match hex {
                Some(h) => prop_assert_eq!(u64::from_str_radix(h, 16).ok(), Some(v)),
                None => prop_assert_eq!(t.parse::<u64>().ok(), Some(v)),
            }
            prop_assert!(!t.starts_with('+'));
        }
        let _ = parse_quantity_u128(&s);
        let c = ClientVersion::parse(&s);
        prop_assert!(c.client.len() <= 32 && c.version.len() <= 48);
        prop_assert!(c.client.chars().chain(c.version.chars()).all(|ch| ch.is_ascii_alphanumeric() || ".-_+".contains(ch)));
    }
}
