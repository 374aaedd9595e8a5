//! Where each key of a section was written. Values carry no line numbers,
//! so a check that involves two keys (`pipeline` and `failover`, `tls` and
//! its certificate) looks the lines up here and names the key at fault.

use std::collections::BTreeMap;

/// Lines of the keys of one section; a key written twice keeps its last
/// line, as it keeps its last value.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyLines {
    /// Line of the `[section]` header: the fallback for keys left at their default.
    section: usize,
    keys: BTreeMap<String, usize>,
}

impl KeyLines {
    pub fn new(section: usize) -> KeyLines {
        KeyLines { section, keys: BTreeMap::new() }
    }

    pub fn record(&mut self, key: &str, line: usize) {
        self.keys.insert(key.to_string(), line);
    }

    /// The line `key` was written on, None when it was not written.
    pub fn get(&self, key: &str) -> Option<usize> {
        self.keys.get(key).copied()
    }

    /// The line of `key`, else of the section header.
    pub fn line(&self, key: &str) -> usize {
        self.get(key).unwrap_or(self.section)
    }

    /// The line of the section header.
    pub fn section(&self) -> usize {
        self.section
    }

    /// " (line N)" when `key` was written, for messages that name a second key.
    pub fn at(&self, key: &str) -> String {
        self.get(key).map(|line| format!(" (line {line})")).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_line_wins_and_defaults_fall_back_to_the_section() {
        let mut lines = KeyLines::new(3);
        lines.record("tls", 5);
        lines.record("tls", 9);
        assert_eq!(lines.get("tls"), Some(9));
        assert_eq!(lines.line("tls"), 9);
        assert_eq!(lines.get("port"), None);
        assert_eq!(lines.line("port"), 3);
        assert_eq!(lines.at("tls"), " (line 9)");
        assert_eq!(lines.at("port"), "");
    }
}
