//! A bounded parser for server-sent events (the `text/event-stream` format).
//!
//! Bytes go in as they arrive ([`SseParser::push`]); complete events come out. Lines end with
//! `\n`, `\r\n` or `\r`; `event:` names the event (default `message`), `data:` lines are joined
//! with `\n`, a blank line dispatches, lines starting with `:` are comments (keep-alives), `id:`,
//! `retry:` and unknown fields are ignored, one space after the colon is dropped.
//!
//! Memory is bounded whatever the server sends: a line longer than `max_line` is not kept (the
//! rest of it is skipped up to its end and its event is dropped), and an event whose data grows
//! beyond `max_event` is dropped. Each such case is reported once as [`SseError::TooLarge`]; data
//! that is not UTF-8 is [`SseError::Decode`]. The buffers never exceed `max_line + max_event`.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, `message` when absent.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// What went wrong in the stream; the parser carries on after each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseError {
    /// A line or an event exceeded its limit; that event is dropped.
    TooLarge,
    /// An event's data or name was not UTF-8; that event is dropped.
    Decode,
}

/// What [`SseParser::push`] produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    Event(SseEvent),
    Error(SseError),
}

/// The parser state. See the module docs.
#[derive(Debug)]
pub struct SseParser {
    max_line: usize,
    max_event: usize,
    /// The line being read (without its terminator).
    line: Vec<u8>,
    /// The current line outgrew `max_line`: drop bytes until its end.
    skipping: bool,
    /// The previous byte was `\r`: a following `\n` belongs to the same line end.
    after_cr: bool,
    /// Start of stream: a UTF-8 byte order mark is dropped.
    at_start: bool,
    event: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    /// The current event lost a line or outgrew its limit; it is dropped at dispatch.
    broken: bool,
}

impl SseParser {
    /// A parser keeping lines up to `max_line` bytes and event data up to `max_event` bytes.
    pub fn new(max_line: usize, max_event: usize) -> Self {
        SseParser {
            max_line: max_line.max(16),
            max_event: max_event.max(16),
            line: Vec::new(),
            skipping: false,
            after_cr: false,
            at_start: true,
            event: Vec::new(),
            data: Vec::new(),
            has_data: false,
            broken: false,
        }
    }

    /// Whether part of a line or of an event is waiting for more bytes.
    pub fn pending(&self) -> bool {
        !self.line.is_empty() || self.skipping || self.has_data || !self.event.is_empty()
    }

    /// Bytes held in buffers right now (for tests of the memory bound).
    pub fn buffered(&self) -> usize {
        self.line.len() + self.data.len() + self.event.len()
    }

    /// Feeds bytes; `out` receives events and errors in stream order.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut impl FnMut(SseItem)) {
        if self.at_start && !bytes.is_empty() {
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            // A BOM split over pushes is not worth handling; only a whole one is dropped.
            if let Some(rest) = bytes.strip_prefix(BOM) {
                bytes = rest;
            }
            self.at_start = false;
        }
        while !bytes.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if bytes[0] == b'\n' {
                    bytes = &bytes[1..];
                    continue;
                }
            }
            match bytes.iter().position(|b| *b == b'\n' || *b == b'\r') {
                Some(i) => {
                    self.take(&bytes[..i], out);
                    self.after_cr = bytes[i] == b'\r';
                    bytes = &bytes[i + 1..];
                    self.end_line(out);
                }
                None => {
                    self.take(bytes, out);
                    bytes = &[];
                }
            }
        }
    }

    /// Appends part of a line, switching to skipping when it grows too long.
    fn take(&mut self, part: &[u8], out: &mut impl FnMut(SseItem)) {
        if self.skipping || part.is_empty() {
            return;
        }
        if self.line.len() + part.len() > self.max_line {
            self.line.clear();
            self.line.shrink_to(self.max_line);
            self.skipping = true;
            if !self.broken {
                self.broken = true;
                out(SseItem::Error(SseError::TooLarge));
            }
            return;
        }
        self.line.extend_from_slice(part);
    }

    fn end_line(&mut self, out: &mut impl FnMut(SseItem)) {
        if self.skipping {
            self.skipping = false;
            return;
        }
        let line = std::mem::take(&mut self.line);
        self.process_line(&line, out);
        self.line = line;
        self.line.clear();
    }

    fn process_line(&mut self, line: &[u8], out: &mut impl FnMut(SseItem)) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            b"data" => {
                if self.broken {
                    return;
                }
                let extra = value.len() + usize::from(self.has_data);
                if self.data.len() + extra > self.max_event {
                    self.broken = true;
                    self.data.clear();
                    self.data.shrink_to(self.max_event);
                    out(SseItem::Error(SseError::TooLarge));
                    return;
                }
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut impl FnMut(SseItem)) {
        let broken = std::mem::replace(&mut self.broken, false);
        let has_data = std::mem::replace(&mut self.has_data, false);
        let event = std::mem::take(&mut self.event);
        let data = std::mem::take(&mut self.data);
        if broken || !has_data {
            return;
        }
        match (String::from_utf8(event), String::from_utf8(data)) {
            (Ok(event), Ok(data)) => out(SseItem::Event(SseEvent {
                event: if event.is_empty() {
                    "message".to_string()
                } else {
                    event
                },
                data,
            })),
            _ => out(SseItem::Error(SseError::Decode)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(p: &mut SseParser, input: &[u8]) -> Vec<SseItem> {
        let mut v = Vec::new();
        p.push(input, &mut |i| v.push(i));
        v
    }

    fn ev(event: &str, data: &str) -> SseItem {
        SseItem::Event(SseEvent {
            event: event.into(),
            data: data.into(),
        })
    }

    #[test]
    fn spec_examples_parse_whatever_the_chunking() {
        let text = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/beacon-APIs/events_all.txt"),
        )
        .expect("fixture");
        let mut whole = SseParser::new(64 * 1024, 64 * 1024);
        let all = parse_all(&mut whole, &text);
        assert_eq!(all.len(), 24, "one event per spec example");
        let names: Vec<&str> = all
            .iter()
            .map(|i| match i {
                SseItem::Event(e) => e.event.as_str(),
                SseItem::Error(e) => panic!("{e:?}"),
            })
            .collect();
        for topic in ["head", "block", "chain_reorg", "finalized_checkpoint"] {
            assert!(names.contains(&topic), "{topic} in {names:?}");
        }
        // Byte by byte gives the same events.
        let mut bytewise = SseParser::new(64 * 1024, 64 * 1024);
        let mut v = Vec::new();
        for b in &text {
            bytewise.push(std::slice::from_ref(b), &mut |i| v.push(i));
        }
        assert_eq!(v, all);
        assert!(!bytewise.pending());
    }

    #[test]
    fn line_endings_comments_and_fields() {
        let mut p = SseParser::new(1024, 1024);
        let got = parse_all(
            &mut p,
            b"\xEF\xBB\xBF: keep-alive\r\nevent: head\r\ndata: {\"a\":1}\r\n\r\nevent:block\rdata:x\rdata: y\r\rid: 7\nretry: 10\nunknown: z\ndata\n\n",
        );
        assert_eq!(
            got,
            vec![
                ev("head", "{\"a\":1}"),
                ev("block", "x\ny"),
                ev("message", "")
            ]
        );
    }

    #[test]
    fn no_data_no_event_and_split_crlf() {
        let mut p = SseParser::new(1024, 1024);
        assert!(parse_all(&mut p, b"event: head\n\n").is_empty());
        assert!(parse_all(&mut p, b"data: 1\r").is_empty());
        assert!(p.pending());
        // The \n after a \r in the next chunk is the same line end, not a blank line.
        assert!(parse_all(&mut p, b"\n").is_empty());
        assert_eq!(parse_all(&mut p, b"\n"), vec![ev("message", "1")]);
    }

    #[test]
    fn a_half_event_stays_pending_and_bounded() {
        let mut p = SseParser::new(1024, 1024);
        assert!(parse_all(&mut p, b"event: head\ndata: {\"slot\":\"1").is_empty());
        assert!(p.pending());
        assert!(p.buffered() < 64);
    }

    #[test]
    fn an_endless_line_is_dropped_with_bounded_memory() {
        let mut p = SseParser::new(100, 1000);
        let mut errors = 0;
        let chunk = [b'a'; 4096];
        for _ in 0..1000 {
            p.push(&chunk, &mut |i| {
                assert_eq!(i, SseItem::Error(SseError::TooLarge));
                errors += 1;
            });
            assert!(p.buffered() <= 100);
        }
        assert_eq!(errors, 1, "reported once per line");
        assert!(p.pending());
        // The line ends; its event is dropped, the next one parses.
        let got = parse_all(&mut p, b"\ndata: lost\n\nevent: head\ndata: ok\n\n");
        assert_eq!(got, vec![ev("head", "ok")]);
    }

    #[test]
    fn an_oversized_event_is_dropped() {
        let mut p = SseParser::new(100, 150);
        let mut input = Vec::new();
        for _ in 0..5 {
            input.extend_from_slice(b"data: ");
            input.extend_from_slice(&[b'x'; 60]);
            input.push(b'\n');
        }
        input.extend_from_slice(b"\nevent: head\ndata: fine\n\n");
        let got = parse_all(&mut p, &input);
        assert_eq!(
            got,
            vec![SseItem::Error(SseError::TooLarge), ev("head", "fine")]
        );
        assert_eq!(p.buffered(), 0);
    }

    #[test]
    fn invalid_utf8_is_a_decode_error() {
        let mut p = SseParser::new(100, 100);
        let got = parse_all(&mut p, b"data: \xff\xfe\n\ndata: ok\n\n");
        assert_eq!(
            got,
            vec![SseItem::Error(SseError::Decode), ev("message", "ok")]
        );
    }
}
