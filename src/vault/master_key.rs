//! `~/.pgagroal/master.key`: where it lives, the permissions it must have,
//! how it is read and how `pgagroal-admin master-key` creates it.
//!
//! The home directory is `$HOME` (unless the process runs set-user-id or
//! set-group-id), else the password database's entry for the real uid. The
//! directory must be 0700 and the file 0600: no bits for group or others.
//! The file holds two lines: the base64 passphrase and the base64 16-byte
//! master salt. The passphrase is never used as a key itself; see
//! [`super::cipher`] for the derivation.

use super::cipher::{BASE64_IN, BASE64_OUT, MasterKey, SALT_LEN};
use super::error::VaultError;
use super::files;
use super::secret::Secret;
use super::{MAX_LINE_BYTES, MAX_MASTER_KEY_BYTES, MAX_PASSPHRASE_BYTES, MIN_MASTER_KEY_CHARS};
use base64::Engine;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The directory under the home directory.
pub const KEY_DIR: &str = ".pgagroal";
/// The file in [`KEY_DIR`].
pub const KEY_FILE: &str = "master.key";

/// The home directory of the user running the program.
pub fn home_dir() -> Result<PathBuf, VaultError> {
    use nix::unistd::{User, getegid, geteuid, getgid, getuid};
    let privileged = getuid() != geteuid() || getgid() != getegid();
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty() && !privileged) {
        return Ok(PathBuf::from(home));
    }
    match User::from_uid(getuid()) {
        Ok(Some(user)) => Ok(user.dir),
        _ => Err(VaultError::NoHome { uid: getuid().as_raw() }),
    }
}

/// `<home>/.pgagroal`.
pub fn key_dir(home: &Path) -> PathBuf {
    home.join(KEY_DIR)
}

/// `<home>/.pgagroal/master.key`.
pub fn key_path(home: &Path) -> PathBuf {
    key_dir(home).join(KEY_FILE)
}

/// The contents of `master.key`.
#[derive(Debug)]
pub struct MasterKeyFile {
    /// The decoded passphrase.
    pub passphrase: Secret,
    /// The master salt.
    pub salt: [u8; SALT_LEN],
}

impl MasterKeyFile {
    /// Run the (slow) derivation.
    pub fn derive(&self) -> MasterKey {
        MasterKey::derive(self.passphrase.as_bytes(), &self.salt)
    }
}

fn key_line<'a>(path: &Path, lines: &mut impl Iterator<Item = &'a [u8]>, line: usize) -> Result<&'a [u8], VaultError> {
    let text = lines.next().map(|l| l.strip_suffix(b"\r").unwrap_or(l)).unwrap_or(&[]);
    if text.len() > MAX_LINE_BYTES {
        return Err(VaultError::LineTooLong { path: path.to_path_buf(), line, limit: MAX_LINE_BYTES });
    }
    Ok(text)
}

fn format_error(path: &Path, line: usize, problem: impl Into<String>) -> VaultError {
    VaultError::KeyFormat { path: path.to_path_buf(), line, problem: problem.into() }
}

/// Parse the bytes of `master.key` (`path` is for messages).
pub fn parse_key_file(path: &Path, bytes: &[u8]) -> Result<MasterKeyFile, VaultError> {
    let mut lines = bytes.split(|b| *b == b'\n');
    let first = key_line(path, &mut lines, 1)?;
    if first.is_empty() {
        return Err(format_error(path, 1, "expected the base64 passphrase, found an empty line"));
    }
    let passphrase =
        Secret::new(BASE64_IN.decode(first).map_err(|_| format_error(path, 1, "the passphrase is not valid base64"))?);
    let length = passphrase.as_bytes().len();
    if length == 0 {
        return Err(format_error(path, 1, "the passphrase is empty"));
    }
    if length > MAX_PASSPHRASE_BYTES {
        return Err(format_error(
            path,
            1,
            format!("the passphrase is {length} bytes, more than the {MAX_PASSPHRASE_BYTES} pgagroal accepts"),
        ));
    }
    if passphrase.as_bytes().contains(&0) {
        return Err(format_error(path, 1, "the passphrase contains a NUL byte"));
    }
    let second = key_line(path, &mut lines, 2)?;
    if second.is_empty() {
        return Err(format_error(
            path,
            2,
            "the master salt is missing (a master.key from pgagroal 2.0 or older?); \
             create a new one with 'pgagroal-admin master-key' and add the users again",
        ));
    }
    let salt = BASE64_IN.decode(second).map_err(|_| format_error(path, 2, "the master salt is not valid base64"))?;
    let salt: [u8; SALT_LEN] = salt
        .as_slice()
        .try_into()
        .map_err(|_| format_error(path, 2, format!("the master salt is {} bytes, expected {SALT_LEN}", salt.len())))?;
    Ok(MasterKeyFile { passphrase, salt })
}

/// Check the permissions of `<home>/.pgagroal` and its `master.key`, then read it.
pub fn read_key_file(home: &Path) -> Result<MasterKeyFile, VaultError> {
    files::check_key_dir(&key_dir(home))?;
    let path = key_path(home);
    files::check_key_file(&path)?;
    let bytes = Secret::new(files::read_bounded(&path, 2 * MAX_LINE_BYTES)?);
    parse_key_file(&path, bytes.as_bytes())
}

impl MasterKey {
    /// Read `~/.pgagroal/master.key` of the user running the program and derive the key.
    pub fn load() -> Result<MasterKey, VaultError> {
        MasterKey::load_from_home(&home_dir()?)
    }

    /// Read `<home>/.pgagroal/master.key` and derive the key.
    pub fn load_from_home(home: &Path) -> Result<MasterKey, VaultError> {
        Ok(read_key_file(home)?.derive())
    }
}

/// A passphrase `pgagroal-admin master-key` accepts: at least
/// [`MIN_MASTER_KEY_CHARS`] characters, at most [`MAX_MASTER_KEY_BYTES`]
/// bytes (pgagroal reads `master.key` lines of up to 127 characters, the
/// base64 of 93 bytes).
pub fn validate_passphrase(passphrase: &str) -> Result<(), VaultError> {
    let chars = passphrase.chars().count();
    if chars < MIN_MASTER_KEY_CHARS {
        return Err(VaultError::BadPassphrase {
            reason: format!("{chars} characters, it must have at least {MIN_MASTER_KEY_CHARS}"),
        });
    }
    if passphrase.len() > MAX_MASTER_KEY_BYTES {
        return Err(VaultError::BadPassphrase {
            reason: format!("{} bytes, it may have at most {MAX_MASTER_KEY_BYTES}", passphrase.len()),
        });
    }
    if passphrase.contains('\0') {
        return Err(VaultError::BadPassphrase { reason: "contains a NUL character".into() });
    }
    Ok(())
}

/// The text of a `master.key`.
pub fn render_key_file(passphrase: &[u8], salt: &[u8; SALT_LEN]) -> Secret {
    Secret::new(format!("{}\n{}\n", BASE64_OUT.encode(passphrase), BASE64_OUT.encode(salt)).into_bytes())
}

/// Create `<home>/.pgagroal/master.key` (and the directory, 0700, if it is
/// missing). Refuses to replace an existing key. Returns the file's path.
pub fn create_key_file(home: &Path, passphrase: &str, salt: &[u8; SALT_LEN]) -> Result<PathBuf, VaultError> {
    validate_passphrase(passphrase)?;
    let dir = key_dir(home);
    match std::fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(|e| VaultError::io(&dir, "create", e))?;
        }
        Err(e) => return Err(VaultError::io(&dir, "inspect", e)),
        Ok(_) => {}
    }
    files::check_key_dir(&dir)?;
    let path = key_path(home);
    if std::fs::symlink_metadata(&path).is_ok() {
        return Err(VaultError::KeyExists { path });
    }
    let contents = render_key_file(passphrase.as_bytes(), salt);
    match files::create_new_file(&path, contents.as_bytes(), 0o600) {
        Err(VaultError::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(VaultError::KeyExists { path })
        }
        Err(e) => Err(e),
        Ok(()) => Ok(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn create_then_refuse_to_overwrite() {
        let home = tempfile::tempdir().expect("tempdir");
        let path = create_key_file(home.path(), "a passphrase", &[1; SALT_LEN]).expect("create");
        assert_eq!(path, home.path().join(".pgagroal/master.key"));
        assert_eq!(mode(&home.path().join(".pgagroal")), 0o700);
        assert_eq!(mode(&path), 0o600);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, "YSBwYXNzcGhyYXNl\nAQEBAQEBAQEBAQEBAQEBAQ==\n");
        let err = create_key_file(home.path(), "another one", &[2; SALT_LEN]).expect_err("exists");
        assert!(matches!(err, VaultError::KeyExists { .. }), "{err}");
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
        let read = read_key_file(home.path()).expect("read back");
        assert_eq!(read.passphrase.as_bytes(), b"a passphrase");
        assert_eq!(read.salt, [1; SALT_LEN]);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(home.path().join(".pgagroal")).expect("ls").count(), 1);
    }

    #[test]
    fn permissions_are_checked() {
        let home = tempfile::tempdir().expect("tempdir");
        let dir = home.path().join(".pgagroal");
        let err = read_key_file(home.path()).expect_err("no dir");
        assert!(matches!(err, VaultError::DirMissing { .. }), "{err}");
        create_key_file(home.path(), "passphrase", &[0; SALT_LEN]).expect("create");
        chmod(&dir, 0o755);
        let err = read_key_file(home.path()).expect_err("dir 0755");
        assert_eq!(
            err.to_string(),
            format!(
                "master key directory {} must have mode 0700 (no access for group or others), has 0755",
                dir.display()
            )
        );
        assert!(create_key_file(home.path(), "passphrase", &[0; SALT_LEN]).is_err());
        chmod(&dir, 0o700);
        let file = dir.join("master.key");
        chmod(&file, 0o644);
        let err = read_key_file(home.path()).expect_err("file 0644");
        assert_eq!(
            err.to_string(),
            format!("master key file {} must have mode 0600 (no access for group or others), has 0644", file.display())
        );
        chmod(&file, 0o400);
        assert!(read_key_file(home.path()).is_ok());
        chmod(&file, 0o600);
        assert!(read_key_file(home.path()).is_ok());
        std::fs::remove_file(&file).expect("rm");
        std::fs::create_dir(&file).expect("mkdir");
        assert!(matches!(read_key_file(home.path()), Err(VaultError::NotARegularFile { .. })));
    }

    #[test]
    fn a_file_where_the_directory_should_be() {
        let home = tempfile::tempdir().expect("tempdir");
        std::fs::write(home.path().join(".pgagroal"), "").expect("write");
        assert!(matches!(read_key_file(home.path()), Err(VaultError::NotADirectory { .. })));
        assert!(matches!(create_key_file(home.path(), "passphrase", &[0; 16]), Err(VaultError::NotADirectory { .. })));
    }

    #[test]
    fn malformed_contents() {
        let p = Path::new("/h/.pgagroal/master.key");
        let problem = |bytes: &[u8]| parse_key_file(p, bytes).expect_err("malformed").to_string();
        assert!(problem(b"").contains("line 1: expected the base64 passphrase"));
        assert!(problem(b"!!!\nAAAAAAAAAAAAAAAAAAAAAA==\n").contains("line 1: the passphrase is not valid base64"));
        assert!(problem(b"c2VjcmV0\n").contains("line 2: the master salt is missing"));
        assert!(problem(b"c2VjcmV0").contains("line 2: the master salt is missing"));
        assert!(problem(b"c2VjcmV0\nAAAA\n").contains("line 2: the master salt is 3 bytes, expected 16"));
        assert!(problem(b"c2VjcmV0\n@@\n").contains("line 2: the master salt is not valid base64"));
        assert!(problem(b"AGI=\nAAAAAAAAAAAAAAAAAAAAAA==\n").contains("NUL"));
        let long = BASE64_OUT.encode(vec![b'a'; MAX_PASSPHRASE_BYTES + 1]);
        assert!(problem(format!("{long}\nAAAAAAAAAAAAAAAAAAAAAA==\n").as_bytes()).contains("more than the 1023"));
        assert!(problem(&vec![b'A'; MAX_LINE_BYTES + 1]).contains("longer than"));
        // CRLF line ends and a missing final newline are accepted.
        let ok = parse_key_file(p, b"c2VjcmV0\r\nAAAAAAAAAAAAAAAAAAAAAA==").expect("ok");
        assert_eq!(ok.passphrase.as_bytes(), b"secret");
        assert_eq!(
            format!("{ok:?}"),
            "MasterKeyFile { passphrase: Secret(<6 bytes redacted>), salt: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] }"
        );
    }

    #[test]
    fn passphrase_limits() {
        assert!(validate_passphrase("1234567").is_err());
        assert!(validate_passphrase("12345678").is_ok());
        assert!(validate_passphrase("äöüäöüäö").is_ok());
        assert!(validate_passphrase(&"x".repeat(MAX_MASTER_KEY_BYTES)).is_ok());
        let err = validate_passphrase(&"x".repeat(MAX_MASTER_KEY_BYTES + 1)).expect_err("long");
        assert_eq!(err.to_string(), "invalid master key: 94 bytes, it may have at most 93");
        // The longest passphrase still fits a 127-character line.
        assert!(BASE64_OUT.encode([0u8; MAX_MASTER_KEY_BYTES]).len() <= 127);
    }
}
