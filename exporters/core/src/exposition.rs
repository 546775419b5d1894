//! A small reader for the text exposition format, for tests, the docs generator and tools that
//! read an exporter's `/metrics`.

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of a label, if present.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses every sample line (comments and exemplars are skipped).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let line = strip_exemplar(line);
    let (name, rest, labels) = match line.find('{') {
        Some(i) => {
            let end = closing_brace(&line[i..])? + i;
            (
                &line[..i],
                &line[end + 1..],
                parse_labels(&line[i + 1..end]),
            )
        }
        None => {
            let sp = line.find(' ')?;
            (&line[..sp], &line[sp..], Vec::new())
        }
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// A sample line without its exemplar (` # {...} v`). The exemplar is looked for only after the
/// label set, so a label value holding ` # ` does not cut the line.
pub fn strip_exemplar(line: &str) -> &str {
    let after_labels = match line.find('{') {
        Some(i) => match closing_brace(&line[i..]) {
            Some(end) => i + end,
            None => return line,
        },
        None => 0,
    };
    match line[after_labels..].find(" # ") {
        Some(j) => &line[..after_labels + j],
        None => line,
    }
}

/// The index of the `}` closing the label set at the start of `s`, skipping quoted values
/// (route labels such as `/eth/v1/beacon/headers/{block_id}` contain braces).
fn closing_brace(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        let after = &rest[eq + 1..];
        let Some(after) = after.strip_prefix('"') else {
            break;
        };
        let mut val = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        val.push(match n {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => val.push(c),
            }
        }
        out.push((key, val));
        rest = &after[end..];
    }
    out
}

/// The value of the first sample named `name` whose labels include all of `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .map(|s| s.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_labels_and_exemplars() {
        let text = "# HELP x y\nup 1\nreq_bucket{le=\"0.5\",method=\"a\\\"b\"} 3 # {trace_id=\"abc\"} 0.2 1.0\ninf{le=\"+Inf\"} +Inf\nr_count{route=\"/h/{id}\"} 2\n# EOF\n";
        let s = parse(text);
        assert_eq!(s.len(), 4);
        assert_eq!(value(&s, "r_count", &[("route", "/h/{id}")]), Some(2.0));
        assert_eq!(value(&s, "up", &[]), Some(1.0));
        assert_eq!(
            value(&s, "req_bucket", &[("method", "a\"b"), ("le", "0.5")]),
            Some(3.0)
        );
        assert_eq!(value(&s, "inf", &[]), Some(f64::INFINITY));
        assert_eq!(value(&s, "missing", &[]), None);
    }
}
