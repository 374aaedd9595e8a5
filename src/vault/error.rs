//! Vault errors. Every variant about a file names it; those about a line of a
//! users file name the line and, where one is known, the user, and say what
//! is wrong there. No variant carries a password, a passphrase or key bytes,
//! so an error can be logged or printed as it is.

use std::path::PathBuf;

/// Why one entry of a users file could not be turned into a password. Carried
/// by [`VaultError::Entry`], which adds the file, the line and the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryProblem {
    /// The text after `:` is not base64.
    Base64,
    /// The decoded blob is shorter than salt, nonce and tag together.
    TooShort { len: usize },
    /// The blob is longer than the longest password allows.
    TooLong { len: usize },
    /// AES-GCM rejected the tag: another master key, or altered bytes.
    Authentication,
    /// The decrypted password is not UTF-8.
    NotUtf8,
    /// The decrypted password holds a NUL byte, which pgagroal cannot carry.
    Nul,
}

impl std::fmt::Display for EntryProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use super::cipher::{BLOB_OVERHEAD, MAX_BLOB_BYTES};
        match self {
            EntryProblem::Base64 => write!(f, "the encrypted password is not valid base64"),
            EntryProblem::TooShort { len } => {
                write!(
                    f,
                    "the encrypted password is {len} bytes, shorter than the {BLOB_OVERHEAD} of salt, nonce and tag"
                )
            }
            EntryProblem::TooLong { len } => {
                write!(f, "the encrypted password is {len} bytes, more than the {MAX_BLOB_BYTES} allowed")
            }
            EntryProblem::Authentication => {
                write!(f, "decryption failed (wrong master key, or the entry was altered)")
            }
            EntryProblem::NotUtf8 => write!(f, "the decrypted password is not valid UTF-8"),
            EntryProblem::Nul => write!(f, "the decrypted password contains a NUL byte"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("cannot find the home directory of the user running pgagroal (HOME is unset and uid {uid} has no entry)")]
    NoHome { uid: u32 },

    #[error("{}: cannot {action}: {source}", path.display())]
    Io { path: PathBuf, action: &'static str, source: std::io::Error },

    #[error("master key directory {} does not exist; create the master key with 'pgagroal-admin master-key'", path.display())]
    DirMissing { path: PathBuf },

    #[error("master key directory {} is not a directory", path.display())]
    NotADirectory { path: PathBuf },

    #[error("master key directory {} must have mode 0700 (no access for group or others), has {mode:04o}", path.display())]
    DirMode { path: PathBuf, mode: u32 },

    #[error("master key file {} does not exist; create it with 'pgagroal-admin master-key'", path.display())]
    KeyMissing { path: PathBuf },

    #[error("master key file {} is not a regular file", path.display())]
    NotARegularFile { path: PathBuf },

    #[error("master key file {} must have mode 0600 (no access for group or others), has {mode:04o}", path.display())]
    KeyMode { path: PathBuf, mode: u32 },

    #[error("master key file {}: line {line}: {problem}", path.display())]
    KeyFormat { path: PathBuf, line: usize, problem: String },

    #[error("master key file {} already exists, refusing to overwrite it (entries encrypted with it would become unreadable)", path.display())]
    KeyExists { path: PathBuf },

    #[error("invalid master key: {reason}")]
    BadPassphrase { reason: String },

    #[error("{}: is {size} bytes, more than the {limit} a users file may hold", path.display())]
    FileTooLarge { path: PathBuf, size: u64, limit: usize },

    #[error("{}: line {line}: is longer than {limit} bytes", path.display())]
    LineTooLong { path: PathBuf, line: usize, limit: usize },

    #[error("{}: line {line}: {problem}", path.display())]
    Syntax { path: PathBuf, line: usize, problem: String },

    #[error("{}: line {line}: cannot decrypt the password of user '{user}': {problem}", path.display())]
    Entry { path: PathBuf, line: usize, user: String, problem: EntryProblem },

    #[error("{}: user '{user}' appears twice, on lines {first} and {second}", path.display())]
    Duplicate { path: PathBuf, user: String, first: usize, second: usize },

    #[error("{}: line {line}: more than {max} users", path.display())]
    TooMany { path: PathBuf, line: usize, max: usize },

    #[error("{}: already holds {max} users, the most it may hold", path.display())]
    Full { path: PathBuf, max: usize },

    #[error("{}: user '{user}' already exists (line {line})", path.display())]
    UserExists { path: PathBuf, user: String, line: usize },

    #[error("{}: user '{user}' not found", path.display())]
    UserMissing { path: PathBuf, user: String },

    #[error("invalid user name: {reason}")]
    BadUserName { reason: String },

    #[error("invalid password: {reason}")]
    BadPassword { reason: String },

    #[error("the system random number generator failed")]
    Random,
}

impl VaultError {
    pub(crate) fn io(path: &std::path::Path, action: &'static str, source: std::io::Error) -> Self {
        VaultError::Io { path: path.to_path_buf(), action, source }
    }

    pub(crate) fn syntax(path: &std::path::Path, line: usize, problem: impl Into<String>) -> Self {
        VaultError::Syntax { path: path.to_path_buf(), line, problem: problem.into() }
    }
}
