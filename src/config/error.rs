//! Configuration errors. Every variant names the file; those about a line
//! name the line and the key, and say what was expected there; a conflict
//! between two keys names the line of the one at fault and the other's.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", file.display())]
    Io { file: PathBuf, source: std::io::Error },

    #[error("{}: line {line}: expected {expected}", file.display())]
    Syntax { file: PathBuf, line: usize, expected: String },

    #[error("{}: line {line}: key '{key}': expected {expected}", file.display())]
    Invalid { file: PathBuf, line: usize, key: String, expected: String },

    #[error("{}: line {line}: section [{section}] is missing the required key '{key}'", file.display())]
    Missing { file: PathBuf, section: String, line: usize, key: String },

    /// Two keys that cannot go together: `line` and `key` are the one at
    /// fault, the message names the other and its line.
    #[error("{}: line {line}: {message}", file.display())]
    Conflict { file: PathBuf, line: usize, key: String, message: String },

    #[error("{}: {message}", file.display())]
    Semantic { file: PathBuf, message: String },
}

impl ConfigError {
    pub(crate) fn syntax(file: &std::path::Path, line: usize, expected: &str) -> Self {
        ConfigError::Syntax { file: file.to_path_buf(), line, expected: expected.to_string() }
    }
}
