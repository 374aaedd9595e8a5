//! `pgagroal.toml`: the same sections and keys as the INI file, in TOML.
//! Tables become sections and scalars become the same strings the INI reader
//! would have produced, so one validator serves both formats and errors still
//! carry line numbers (computed from the parser's byte spans).

use super::ConfigError;
use super::ini::{Entry, Section};
use std::path::Path;
use toml::de::{DeTable, DeValue};

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

fn scalar(value: &DeValue<'_>) -> Option<String> {
    match value {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(i) => {
            let text = i.as_str();
            if i.radix() == 10 { Some(text.replace('_', "")) } else { None }
        }
        DeValue::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

pub fn sections(path: &Path, text: &str) -> Result<(Vec<Section>, Vec<Entry>), ConfigError> {
    let document = DeTable::parse(text).map_err(|err| {
        let line = err.span().map(|s| line_of(text, s.start)).unwrap_or(1);
        ConfigError::Syntax { file: path.to_path_buf(), line, expected: format!("valid TOML ({})", err.message()) }
    })?;
    let mut top: Vec<_> = document.get_ref().iter().collect();
    top.sort_by_key(|(k, _)| k.span().start);

    let mut sections = Vec::new();
    let mut orphans = Vec::new();
    for (name, item) in top {
        let line = line_of(text, name.span().start);
        match item.get_ref() {
            DeValue::Table(table) => {
                let mut items: Vec<_> = table.iter().collect();
                items.sort_by_key(|(k, _)| k.span().start);
                let mut entries = Vec::new();
                for (key, value) in items {
                    let key_line = line_of(text, key.span().start);
                    let value = scalar(value.get_ref()).ok_or_else(|| ConfigError::Invalid {
                        file: path.to_path_buf(),
                        line: key_line,
                        key: key.get_ref().to_string(),
                        expected: "a string, a decimal integer or a boolean".into(),
                    })?;
                    entries.push(Entry { key: key.get_ref().to_string(), value, line: key_line });
                }
                sections.push(Section { name: name.get_ref().to_string(), line, entries });
            }
            other => {
                orphans.push(Entry { key: name.get_ref().to_string(), value: scalar(other).unwrap_or_default(), line })
            }
        }
    }
    Ok((sections, orphans))
}
