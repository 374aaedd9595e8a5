//! The users files (`pgagroal_users.conf`, `pgagroal_frontend_users.conf`,
//! `pgagroal_admins.conf`, `pgagroal_superuser.conf`): one `user:BASE64`
//! entry per line; blank lines and lines whose first non-blank character is
//! `#` or `;` are comments. [`UsersFile`] is the file as lines, so entries can
//! be added, replaced and removed while every other line is kept as it was.
//! Nothing here decrypts; see [`super::load_users`] for that.

use super::cipher::MAX_BLOB_BASE64;
use super::error::VaultError;
use super::files;
use super::{MAX_FILE_BYTES, MAX_LINE_BYTES, MAX_USER_NAME_BYTES};
use std::path::{Path, PathBuf};

/// Mode of a users file this program creates.
pub const NEW_FILE_MODE: u32 = 0o600;

/// Why `name` cannot be a user name in a users file, if it cannot.
pub fn user_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("the user name is empty".into());
    }
    if name.len() > MAX_USER_NAME_BYTES {
        return Some(format!("the user name is {} bytes, more than the {MAX_USER_NAME_BYTES} allowed", name.len()));
    }
    if name.contains(':') {
        return Some("the user name contains ':'".into());
    }
    if name.chars().any(char::is_control) {
        return Some("the user name contains a control character".into());
    }
    if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        return Some("the user name starts or ends with white space".into());
    }
    if name.starts_with(['#', ';']) {
        return Some("the user name starts with a comment character ('#' or ';')".into());
    }
    None
}

/// Check a user name given on the command line.
pub fn validate_user_name(name: &str) -> Result<(), VaultError> {
    match user_name_problem(name) {
        Some(reason) => Err(VaultError::BadUserName { reason }),
        None => Ok(()),
    }
}

/// One line of a users file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    /// `user:BASE64`.
    Entry { user: String, blob: String, number: usize },
    /// A comment or a blank line, kept byte for byte (without its `\n`).
    Other(String),
}

/// An entry as found in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    pub user: &'a str,
    /// The base64 text after `:`, surrounding blanks removed.
    pub blob: &'a str,
    /// 1-based line number in the file as read (0 for entries added since).
    pub line: usize,
}

/// A users file as a sequence of lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersFile {
    path: PathBuf,
    lines: Vec<Line>,
}

fn is_blank(text: &str) -> bool {
    text.chars().all(|c| matches!(c, ' ' | '\t' | '\r'))
}

fn is_comment(text: &str) -> bool {
    text.trim_start_matches([' ', '\t']).starts_with(['#', ';'])
}

fn is_base64(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

impl UsersFile {
    /// An empty file that will be written to `path`.
    pub fn empty(path: &Path) -> UsersFile {
        UsersFile { path: path.to_path_buf(), lines: Vec::new() }
    }

    /// Parse the bytes of a users file; `path` is for messages and for [`UsersFile::write`].
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<UsersFile, VaultError> {
        if bytes.len() > MAX_FILE_BYTES {
            return Err(VaultError::FileTooLarge {
                path: path.to_path_buf(),
                size: bytes.len() as u64,
                limit: MAX_FILE_BYTES,
            });
        }
        let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        let mut lines = Vec::new();
        let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        if bytes.is_empty() {
            return Ok(UsersFile { path: path.to_path_buf(), lines });
        }
        for (index, raw) in body.split(|b| *b == b'\n').enumerate() {
            let number = index + 1;
            if raw.len() > MAX_LINE_BYTES {
                return Err(VaultError::LineTooLong { path: path.to_path_buf(), line: number, limit: MAX_LINE_BYTES });
            }
            let text = std::str::from_utf8(raw).map_err(|_| VaultError::syntax(path, number, "is not valid UTF-8"))?;
            if is_blank(text) || is_comment(text) {
                lines.push(Line::Other(text.to_string()));
                continue;
            }
            let trimmed = text.strip_suffix('\r').unwrap_or(text);
            let Some((user, blob)) = trimmed.split_once(':') else {
                return Err(VaultError::syntax(path, number, "expected 'user:password' (base64), found no ':'"));
            };
            if let Some(problem) = user_name_problem(user) {
                return Err(VaultError::syntax(path, number, problem));
            }
            let blob = blob.trim_matches([' ', '\t']);
            if blob.is_empty() {
                return Err(VaultError::syntax(path, number, format!("user '{user}' has no password after ':'")));
            }
            if blob.len() > MAX_BLOB_BASE64 || !is_base64(blob) {
                let why = if blob.len() > MAX_BLOB_BASE64 { "is too long" } else { "is not base64" };
                return Err(VaultError::syntax(path, number, format!("the encrypted password of user '{user}' {why}")));
            }
            if let Some(first) = seen.insert(user, number) {
                return Err(VaultError::Duplicate {
                    path: path.to_path_buf(),
                    user: user.to_string(),
                    first,
                    second: number,
                });
            }
            lines.push(Line::Entry { user: user.to_string(), blob: blob.to_string(), number });
        }
        Ok(UsersFile { path: path.to_path_buf(), lines })
    }

    /// Read and parse `path`.
    pub fn read(path: &Path) -> Result<UsersFile, VaultError> {
        let bytes = files::read_bounded(path, MAX_FILE_BYTES)?;
        UsersFile::parse(path, &bytes)
    }

    /// Read `path`, or start an empty file if it does not exist.
    pub fn read_or_empty(path: &Path) -> Result<UsersFile, VaultError> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UsersFile::empty(path)),
            _ => UsersFile::read(path),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entries, in file order.
    pub fn entries(&self) -> impl Iterator<Item = Entry<'_>> {
        self.lines.iter().filter_map(|l| match l {
            Line::Entry { user, blob, number } => Some(Entry { user, blob, line: *number }),
            Line::Other(_) => None,
        })
    }

    /// The user names, in file order.
    pub fn names(&self) -> Vec<&str> {
        self.entries().map(|e| e.user).collect()
    }

    pub fn len(&self) -> usize {
        self.entries().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn find(&self, user: &str) -> Option<Entry<'_>> {
        self.entries().find(|e| e.user == user)
    }

    /// Append an entry for a new user; the file may hold at most `max`.
    pub fn add(&mut self, user: &str, blob: &str, max: usize) -> Result<(), VaultError> {
        validate_user_name(user)?;
        if let Some(existing) = self.find(user) {
            return Err(VaultError::UserExists { path: self.path.clone(), user: user.into(), line: existing.line });
        }
        if self.len() >= max {
            return Err(VaultError::Full { path: self.path.clone(), max });
        }
        self.lines.push(Line::Entry { user: user.into(), blob: blob.into(), number: 0 });
        Ok(())
    }

    /// Replace the password of an existing user, in place.
    pub fn replace(&mut self, user: &str, new_blob: &str) -> Result<(), VaultError> {
        for line in &mut self.lines {
            if let Line::Entry { user: u, blob, .. } = line
                && u == user
            {
                *blob = new_blob.into();
                return Ok(());
            }
        }
        Err(VaultError::UserMissing { path: self.path.clone(), user: user.into() })
    }

    /// Remove a user's entry.
    pub fn remove(&mut self, user: &str) -> Result<(), VaultError> {
        let before = self.lines.len();
        self.lines.retain(|l| !matches!(l, Line::Entry { user: u, .. } if u == user));
        if self.lines.len() == before {
            return Err(VaultError::UserMissing { path: self.path.clone(), user: user.into() });
        }
        Ok(())
    }

    /// The file's text: every line, each ending in `\n`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Entry { user, blob, .. } => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(blob);
                }
                Line::Other(text) => out.push_str(text),
            }
            out.push('\n');
        }
        out
    }

    /// Replace the file on disk atomically (created with mode 0600 if new).
    pub fn write(&self) -> Result<(), VaultError> {
        files::replace_file(&self.path, self.render().as_bytes(), NEW_FILE_MODE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "/etc/pgagroal/pgagroal_users.conf";

    fn parse(text: &str) -> Result<UsersFile, VaultError> {
        UsersFile::parse(Path::new(P), text.as_bytes())
    }

    #[test]
    fn comments_blank_lines_and_entries() {
        let text = "# users\n\nalice:QUJD\n  ; old\n\t\nbob:REVG==\r\n";
        let file = parse(text).expect("parse");
        assert_eq!(file.names(), ["alice", "bob"]);
        assert_eq!(file.find("bob"), Some(Entry { user: "bob", blob: "REVG==", line: 6 }));
        assert_eq!(file.render(), "# users\n\nalice:QUJD\n  ; old\n\t\nbob:REVG==\n");
        assert!(parse("").expect("empty").is_empty());
        assert!(parse("\n").expect("one blank line").is_empty());
        assert_eq!(parse("a:QUJD").expect("no final newline").render(), "a:QUJD\n");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = |text: &str| parse(text).expect_err("bad").to_string();
        assert_eq!(err("# c\nalice\n"), format!("{P}: line 2: expected 'user:password' (base64), found no ':'"));
        assert_eq!(err(":QUJD\n"), format!("{P}: line 1: the user name is empty"));
        assert_eq!(err("alice:\n"), format!("{P}: line 1: user 'alice' has no password after ':'"));
        assert_eq!(err("alice:QU JD\n"), format!("{P}: line 1: the encrypted password of user 'alice' is not base64"));
        assert_eq!(err("alice:a:b\n"), format!("{P}: line 1: the encrypted password of user 'alice' is not base64"));
        assert!(err(" alice:QUJD\n").contains("white space"));
        assert!(err(&format!("{}:QUJD\n", "u".repeat(MAX_USER_NAME_BYTES + 1))).contains("more than the 127"));
        assert!(err(&format!("a:{}\n", "A".repeat(MAX_LINE_BYTES))).contains("line 1: is longer than 65536 bytes"));
        assert!(err(&format!("a:{}\n", "A".repeat(MAX_BLOB_BASE64 + 1))).contains("is too long"));
        assert_eq!(err("a:QUJD\nb:QUJD\na:REVG\n"), format!("{P}: user 'a' appears twice, on lines 1 and 3"));
    }

    #[test]
    fn invalid_utf8_is_reported_not_panicked_on() {
        let err = UsersFile::parse(Path::new(P), b"a:QUJD\n\xc3\x28:QUJD\n").expect_err("bad");
        assert_eq!(err.to_string(), format!("{P}: line 2: is not valid UTF-8"));
    }

    #[test]
    fn edits_keep_other_lines() {
        let mut file = parse("# head\nalice:QUJD\n\n# mid\nbob:REVG\n# tail\n").expect("parse");
        file.add("carol", "R0hJ", 64).expect("add");
        file.replace("alice", "WFla").expect("replace");
        file.remove("bob").expect("remove");
        assert_eq!(file.render(), "# head\nalice:WFla\n\n# mid\n# tail\ncarol:R0hJ\n");
        let err = file.add("alice", "QUJD", 64).expect_err("exists").to_string();
        assert_eq!(err, format!("{P}: user 'alice' already exists (line 2)"));
        assert_eq!(file.remove("bob").expect_err("gone").to_string(), format!("{P}: user 'bob' not found"));
        assert!(matches!(file.replace("zed", "QUJD"), Err(VaultError::UserMissing { .. })));
        assert!(matches!(file.add("dave", "QUJD", 2), Err(VaultError::Full { max: 2, .. })));
        assert!(matches!(file.add("a:b", "QUJD", 64), Err(VaultError::BadUserName { .. })));
    }

    #[test]
    fn user_names() {
        for good in ["alice", "app_user-1", "ü", "has space", &"u".repeat(MAX_USER_NAME_BYTES)] {
            assert_eq!(user_name_problem(good), None, "{good}");
        }
        for bad in ["", "a:b", "a\nb", "a\tb", " a", "a ", "#a", ";a", &"u".repeat(MAX_USER_NAME_BYTES + 1)] {
            assert!(user_name_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn write_creates_0600_and_keeps_an_existing_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users.conf");
        let mut file = UsersFile::read_or_empty(&path).expect("missing is empty");
        file.add("alice", "QUJD", 64).expect("add");
        file.write().expect("write");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let mut file = UsersFile::read(&path).expect("read");
        file.add("bob", "REVG", 64).expect("add");
        file.write().expect("write");
        assert_eq!(mode(&path), 0o640);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "alice:QUJD\nbob:REVG\n");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1, "no temporary file left");
        // Through a symbolic link, the target is replaced and the link kept.
        let link = dir.path().join("link.conf");
        std::os::unix::fs::symlink(&path, &link).expect("symlink");
        let mut file = UsersFile::read(&link).expect("read");
        file.remove("alice").expect("remove");
        file.write().expect("write");
        assert!(std::fs::symlink_metadata(&link).expect("stat").file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "bob:REVG\n");
    }
}
