//! pgagroal's INI dialect, read into sections of `key = value` entries that
//! keep their line numbers so later validation can name the exact spot.
//!
//! Rules: `[section]` headers; `#` or `;` start a comment at the beginning of
//! a line or after a value (inline); a value may be wrapped in matching `"` or
//! `'` quotes, which keep spaces, `#` and `;`; blank lines are ignored.

use super::ConfigError;
use std::path::Path;

/// One `key = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key as written, trimmed (keys are matched case-sensitively, as upstream).
    pub key: String,
    /// The value with quotes and inline comment removed.
    pub value: String,
    /// 1-based line number in the file.
    pub line: usize,
}

/// A `[name]` section and the entries under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    /// 1-based line of the `[name]` header.
    pub line: usize,
    pub entries: Vec<Entry>,
}

/// Parse a whole file. Entries before the first section header are returned
/// in `orphans` so the caller can warn about them.
pub fn parse(path: &Path, text: &str) -> Result<(Vec<Section>, Vec<Entry>), ConfigError> {
    let mut sections: Vec<Section> = Vec::new();
    let mut orphans = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            let Some(end) = rest.find(']') else {
                return Err(ConfigError::syntax(path, line, "a section header closed by ']'"));
            };
            let name = rest[..end].trim();
            let after = rest[end + 1..].trim();
            if !(after.is_empty() || after.starts_with('#') || after.starts_with(';')) {
                return Err(ConfigError::syntax(path, line, "nothing but a comment after a section header"));
            }
            if name.is_empty() {
                return Err(ConfigError::syntax(path, line, "a non-empty section name"));
            }
            if let Some(previous) = sections.iter().find(|s| s.name == name) {
                return Err(ConfigError::Invalid {
                    file: path.to_path_buf(),
                    line,
                    key: format!("[{name}]"),
                    expected: format!("a unique section name (also defined on line {})", previous.line),
                });
            }
            sections.push(Section { name: name.to_string(), line, entries: Vec::new() });
            continue;
        }
        let Some(eq) = trimmed.find('=') else {
            return Err(ConfigError::syntax(path, line, "'key = value' or a [section] header"));
        };
        let key = trimmed[..eq].trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(ConfigError::syntax(path, line, "a key name before '='"));
        }
        let value = parse_value(trimmed[eq + 1..].trim()).map_err(|expected| ConfigError::Invalid {
            file: path.to_path_buf(),
            line,
            key: key.to_string(),
            expected: expected.to_string(),
        })?;
        let entry = Entry { key: key.to_string(), value, line };
        match sections.last_mut() {
            Some(section) => section.entries.push(entry),
            None => orphans.push(entry),
        }
    }
    Ok((sections, orphans))
}

/// Strip quotes or an inline comment from the text after `=`.
fn parse_value(text: &str) -> Result<String, &'static str> {
    let mut chars = text.chars();
    match chars.next() {
        Some(quote @ ('"' | '\'')) => {
            let body = &text[1..];
            let Some(close) = body.find(quote) else {
                return Err("a value whose opening quote is closed by the same quote character");
            };
            let after = body[close + 1..].trim();
            if !(after.is_empty() || after.starts_with('#') || after.starts_with(';')) {
                return Err("nothing but a comment after a quoted value");
            }
            Ok(body[..close].to_string())
        }
        _ => {
            let end = text.find(['#', ';']).unwrap_or(text.len());
            Ok(text[..end].trim().to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Vec<Section> {
        parse(Path::new("t.conf"), text).expect("parses").0
    }

    #[test]
    fn comments_quotes_and_inline() {
        let s = p("# top\n[pgagroal]\nhost = * ; any\nlog_type = console#stdout\n\
                   log_line_prefix = \"%Y %H # not a comment\" # comment\nx='a;b'\n");
        let e = &s[0].entries;
        assert_eq!(e[0].value, "*");
        assert_eq!(e[1].value, "console");
        assert_eq!(e[2].value, "%Y %H # not a comment");
        assert_eq!(e[3].value, "a;b");
        assert_eq!(e[3].line, 6);
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse(Path::new("x.conf"), "[pgagroal]\nhost = \"abc'\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("x.conf") && text.contains("line 2") && text.contains("host"), "{text}");
        let err = parse(Path::new("x.conf"), "[a]\n[a]\n").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        assert!(parse(Path::new("x.conf"), "[a]\njunk\n").is_err());
        assert!(parse(Path::new("x.conf"), "[a\n").is_err());
    }

    #[test]
    fn orphans_are_reported() {
        let (s, o) = parse(Path::new("t"), "k = v\n[pgagroal]\n").expect("parses");
        assert_eq!(o.len(), 1);
        assert_eq!(s.len(), 1);
    }
}
