//! Property tests over generated inputs (bounded, stable Rust): the SSE parser and the Beacon API
//! decoders never panic, keep their memory bound, and do not depend on how bytes are chunked.

use ethwatch_consensus::sse::{SseItem, SseParser};
use ethwatch_consensus::types::{PeerEntry, for_each_at, parse_client_version};
use proptest::prelude::*;

const MAX_LINE: usize = 64;
const MAX_EVENT: usize = 128;

/// SSE-ish input: fragments that favour field names, separators and line ends.
fn sse_bytes() -> impl Strategy<Value = Vec<u8>> {
    let frag = prop_oneof![
        Just(b"event: head\n".to_vec()),
        Just(b"data: {\"slot\":\"1\"}\n".to_vec()),
        Just(b"data:".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b": keep-alive\n".to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just(b"\xff\xfe".to_vec()),
        prop::collection::vec(any::<u8>(), 0..200),
    ];
    prop::collection::vec(frag, 0..40).prop_map(|v| v.concat())
}

fn run(p: &mut SseParser, chunks: &[&[u8]]) -> (Vec<SseItem>, usize) {
    let mut items = Vec::new();
    let mut peak = 0;
    for c in chunks {
        p.push(c, &mut |i| items.push(i));
        peak = peak.max(p.buffered());
    }
    (items, peak)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn sse_is_bounded_and_chunking_does_not_matter(
        bytes in sse_bytes(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let (whole, peak) = run(&mut SseParser::new(MAX_LINE, MAX_EVENT), &[&bytes]);
        prop_assert!(peak <= MAX_LINE + MAX_EVENT, "buffered {peak}");

        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        at.sort_unstable();
        let mut chunks: Vec<&[u8]> = Vec::new();
        let mut from = 0;
        for a in at {
            chunks.push(&bytes[from..a]);
            from = a;
        }
        chunks.push(&bytes[from..]);
        // A BOM is only dropped when whole in the first push, and a `\r` at a cut followed by
        // `\n` is one line end either way: compare only inputs without a BOM.
        if !bytes.starts_with(b"\xEF") {
            let (split, peak) = run(&mut SseParser::new(MAX_LINE, MAX_EVENT), &chunks);
            prop_assert!(peak <= MAX_LINE + MAX_EVENT, "buffered {peak}");
            prop_assert_eq!(whole, split);
        }
    }

    #[test]
    fn decoders_never_panic_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut n = 0usize;
        let _ = for_each_at(&bytes, &["data"], |_: PeerEntry| n += 1);
        let _ = for_each_at(&bytes, &["data", "total_rewards"], |_: serde_json::Value| n += 1);
        let (c, v) = parse_client_version(&String::from_utf8_lossy(&bytes));
        prop_assert!(c.chars().count() <= 32 && v.chars().count() <= 32);
        prop_assert!(!c.is_empty() && !v.is_empty());
    }

    #[test]
    fn the_streaming_walk_counts_every_element(
        dirs in prop::collection::vec(prop_oneof![Just("inbound"), Just("outbound")], 0..50),
        pad in "[ \n\t]{0,3}",
    ) {
        let items: Vec<String> = dirs
            .iter()
            .map(|d| format!(r#"{{"peer_id":"p","state":"connected","direction":"{d}"}}"#))
            .collect();
        let body = format!(r#"{{"meta":{{"count":1}},{pad}"data":{pad}[{}]}}"#, items.join(&format!(",{pad}")));
        let mut inbound = 0;
        let found = for_each_at(body.as_bytes(), &["data"], |p: PeerEntry| {
            inbound += usize::from(p.direction.as_deref() == Some("inbound"));
        })
        .expect("valid body");
        prop_assert!(found);
        prop_assert_eq!(inbound, dirs.iter().filter(|d| **d == "inbound").count());
    }
}
