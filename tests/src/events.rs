//! Parser for the structured lines quilt-init prints:
//! `quilt: t=1.234567 event=pid1-entry svc=web msg="a b"`.

/// One `quilt:` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The whole line as printed (a kernel `[ 1.23]` prefix included).
    pub line: String,
    /// `key=value` fields in order; quoted values are unquoted.
    pub fields: Vec<(String, String)>,
}

impl Event {
    /// The value of a field.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The `event=` field.
    pub fn name(&self) -> Option<&str> {
        self.get("event")
    }

    /// The `t=` field: guest CLOCK_BOOTTIME seconds.
    pub fn t(&self) -> Option<f64> {
        self.get("t").and_then(|t| t.parse().ok())
    }
}

/// Every `quilt:` line of `text` (console or channel output), in order.
/// Lines may carry a prefix before `quilt:` (kmsg timestamps); tokens without
/// `=` are skipped.
pub fn quilt_events(text: &str) -> Vec<Event> {
    text.lines()
        .filter_map(|raw| {
            let line = raw.trim_end_matches('\r');
            let at = line
                .match_indices("quilt:")
                .find(|(i, _)| {
                    *i == 0
                        || line
                            .as_bytes()
                            .get(i - 1)
                            .is_some_and(u8::is_ascii_whitespace)
                })?
                .0;
            let rest = line.get(at + "quilt:".len()..)?;
            Some(Event {
                line: line.to_owned(),
                fields: fields(rest),
            })
        })
        .collect()
}

fn fields(mut s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start();
        if s.is_empty() {
            return out;
        }
        let token_end = s.find(char::is_whitespace).unwrap_or(s.len());
        let Some(eq) = s.get(..token_end).and_then(|t| t.find('=')) else {
            s = s.get(token_end..).unwrap_or("");
            continue;
        };
        let key = s.get(..eq).unwrap_or("").to_owned();
        let after = s.get(eq + 1..).unwrap_or("");
        if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            out.push((key, value));
            s = quoted.get(end..).unwrap_or("");
        } else {
            let vend = after.find(char::is_whitespace).unwrap_or(after.len());
            out.push((key, after.get(..vend).unwrap_or("").to_owned()));
            s = after.get(vend..).unwrap_or("");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_quotes_and_prefixes() {
        let text = "noise\n\
            quilt: t=1.234567 event=pid1-entry\r\n\
            [    2.5] quilt: t=2.5 event=svc-exit svc=web code=137 msg=\"a \\\"b\\\" c\" stray\n\
            not-quilt: t=1\n";
        let ev = quilt_events(text);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].name(), Some("pid1-entry"));
        assert_eq!(ev[0].t(), Some(1.234567));
        assert_eq!(ev[1].get("svc"), Some("web"));
        assert_eq!(ev[1].get("msg"), Some("a \"b\" c"));
        assert_eq!(ev[1].get("code"), Some("137"));
        assert_eq!(ev[1].fields.len(), 5);
    }
}
