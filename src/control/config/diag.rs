//! Diagnostics: byte spans turned into `file:line: message` errors (naming the section a
//! TOML error is in), and the duplicate check that points at a value's second occurrence.

use super::ConfigError;
use std::collections::HashMap;
use std::ops::Range;

/// The text being parsed and its name: turns byte spans into `file:line` errors.
pub(super) struct Cx<'a> {
    pub(super) text: &'a str,
    pub(super) source: &'a str,
}

impl Cx<'_> {
    /// 1-based line of byte offset `at` (clamped to the text).
    pub(super) fn line(&self, at: usize) -> usize {
        let end = at.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    pub(super) fn error(&self, span: Range<usize>, message: String) -> ConfigError {
        ConfigError::Invalid {
            location: format!("{}:{}", self.source, self.line(span.start)),
            message,
        }
    }

    /// A syntax or shape error from toml/serde, with the enclosing section and key when the text
    /// shows them, and toml's own words in our vocabulary ("key", not "field").
    pub(super) fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let mut message = e
            .message()
            .trim()
            .lines()
            .collect::<Vec<_>>()
            .join("; ")
            .replace("unknown field", "unknown key")
            .replace("missing field", "missing key")
            .replace("expected i64", "expected an integer");
        if message.starts_with("unknown key") {
            message.push_str(" (check the spelling, or remove it)");
        } else if message.starts_with("missing key") {
            message.push_str(" (add it)");
        }
        let Some(span) = e.span() else {
            return ConfigError::Invalid {
                location: self.source.to_string(),
                message,
            };
        };
        let line = self.line(span.start);
        let line_text = self.text.lines().nth(line - 1).unwrap_or("");
        let line_start = self.text.len().min(span.start) - self.column(span.start);
        let mut context = Vec::new();
        if let Some(section) = self.section_of(line, &message) {
            context.push(section);
        }
        // A value error ("invalid type ...") points after `key =`: name the key.
        let in_line = span.start.saturating_sub(line_start);
        if let Some((key, _)) = line_text.split_once('=') {
            let key = key.trim();
            if in_line > key.len() && !key.is_empty() && !key.starts_with('[') {
                context.push(format!("key '{}'", key.escape_debug()));
            }
        }
        context.push(message);
        ConfigError::Invalid {
            location: format!("{}:{line}", self.source),
            message: context.join(": "),
        }
    }

    /// Bytes between the start of the line holding `at` and `at`.
    pub(super) fn column(&self, at: usize) -> usize {
        let at = at.min(self.text.len());
        let before = &self.text.as_bytes()[..at];
        before.iter().rev().take_while(|&&b| b != b'\n').count()
    }

    /// The table header in force at `line` ("[network]", "[[port]] #2"), found by scanning the
    /// text; `None` when the error is about the header itself or there is none.
    pub(super) fn section_of(&self, line: usize, message: &str) -> Option<String> {
        let mut current = None;
        let mut counts: HashMap<String, usize> = HashMap::new();
        for (i, text) in self.text.lines().take(line).enumerate() {
            let Some((name, is_array)) = table_header(text) else {
                continue;
            };
            if i + 1 == line && message.starts_with("unknown key") {
                return None;
            }
            current = Some(if is_array {
                let n = counts.entry(name.to_string()).or_default();
                *n += 1;
                format!("[[{name}]] #{n}")
            } else {
                format!("[{name}]")
            });
        }
        current
    }
}

/// `[name]` → `("name", false)`, `[[name]]` → `("name", true)`; anything else → `None`.
pub(super) fn table_header(line: &str) -> Option<(&str, bool)> {
    let line = line.trim();
    let (inner, is_array) = if let Some(rest) = line.strip_prefix("[[") {
        (rest.split_once("]]")?.0, true)
    } else {
        (line.strip_prefix('[')?.split_once(']')?.0, false)
    };
    let inner = inner.trim();
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-. ".contains(c);
    (!inner.is_empty() && inner.chars().all(plain)).then_some((inner, is_array))
}

/// `'value'` for messages, with control characters escaped so a message stays on one line.
pub(super) fn q(value: &str) -> String {
    format!("'{}'", value.escape_debug())
}

/// Remembers where each value of one key was first seen; reports the second occurrence.
pub(super) struct Unique<'a> {
    pub(super) cx: &'a Cx<'a>,
    pub(super) first_line: HashMap<String, usize>,
}

impl<'a> Unique<'a> {
    pub(super) fn new(cx: &'a Cx<'a>) -> Self {
        Unique {
            cx,
            first_line: HashMap::new(),
        }
    }

    /// `entry: key 'value' is already used on line N (why; what to do)`.
    pub(super) fn check(
        &mut self,
        value: String,
        span: &Range<usize>,
        entry: &str,
        key: &str,
        rule: &str,
    ) -> Result<(), ConfigError> {
        let line = self.cx.line(span.start);
        if let Some(first) = self.first_line.insert(value.clone(), line) {
            return Err(self.cx.error(
                span.clone(),
                format!(
                    "{entry}: {key} {} is already used on line {first} ({rule}; change one)",
                    q(&value)
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;

    use crate::control::config::*;

    #[test]
    fn unknown_key_names_the_key_and_section() {
        let text = MINIMAL.replace("domain", "domian");
        let (location, message) = invalid(parse(&text, "t.toml"));
        assert_eq!(location, "t.toml:6");
        assert!(message.contains("[network]"), "{message}");
        assert!(message.contains("unknown key `domian`"), "{message}");
        assert!(message.contains("`domain`"), "{message}");

        assert_err(
            with(&format!("{HOST_AND_PORT}isolatd = true\n")),
            18,
            &["[[port]] #1", "unknown key `isolatd`", "spelling"],
        );
        assert_err(with("[bogus]\n"), 7, &["unknown key `bogus`"]);
    }

    #[test]
    fn wrong_type_names_the_key() {
        assert_err(
            with(&format!("{HOST_AND_PORT}isolated = \"yes\"\n")),
            18,
            &["[[port]] #1", "key 'isolated'", "boolean"],
        );
    }

    #[test]
    fn missing_required_key() {
        assert_err(
            with("[[host]]\nname = \"a\"\n"),
            7,
            &["host 'a'", "missing key 'mac'"],
        );
        assert_err(
            with("[[port]]\nname = \"p\"\nkind = \"tap\"\n"),
            7,
            &["port 'p'", "missing key 'ifname'"],
        );
        assert_err(parse("", "t.toml"), 1, &["missing [network]"]);
    }

    #[test]
    fn toml_syntax_error_has_its_line() {
        assert_err(with("[[host]]\nname = \"a\nmac = 1\n"), 8, &[]);
        assert_err(with("\n\nmtu = = 3\n"), 9, &[]);
    }

    #[test]
    fn duplicates_point_at_the_second_occurrence() {
        let two_hosts = |second: &str| {
            with(&format!(
                "[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nipv4 = \"10.0.0.5\"\n\
                 [[host]]\n{second}"
            ))
        };
        assert_err(
            two_hosts("name = \"a\"\nmac = \"52:54:00:00:00:02\"\n"),
            12,
            &["host 'a'", "name 'a'", "line 8"],
        );
        assert_err(
            two_hosts("name = \"b\"\nmac = \"52:54:00:00:00:01\"\n"),
            13,
            &["host 'b'", "mac", "line 9"],
        );
        assert_err(
            two_hosts("name = \"b\"\nmac = \"52:54:00:00:00:02\"\nipv4 = \"10.0.0.5\"\n"),
            14,
            &["host 'b'", "ipv4 '10.0.0.5'", "line 10"],
        );

        let port = |name: &str, ifname: &str, netns: &str| {
            format!("[[port]]\nname = \"{name}\"\nkind = \"tap\"\nifname = \"{ifname}\"\nnetns = \"{netns}\"\n")
        };
        let first = port("p", "if1", "ns1");
        assert_err(
            with(&(first.clone() + &port("p", "if2", "ns2"))),
            13,
            &["port 'p'", "name 'p'", "line 8"],
        );
        assert_err(
            with(&(first.clone() + &port("q", "if1", "ns2"))),
            15,
            &["port 'q'", "ifname 'if1'", "line 10"],
        );
        assert_err(
            with(&(first + &port("q", "if2", "ns1"))),
            16,
            &["port 'q'", "netns 'ns1'", "line 11"],
        );
    }
}
