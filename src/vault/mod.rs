//! The credential files: the master key (`~/.pgagroal/master.key`) and the
//! AES-256-GCM encrypted users files (`pgagroal_users.conf` and its kin), in
//! pgagroal 2.1's formats, so files written by either program are read by
//! the other.
//!
//! - [`master_key`]: locating `~/.pgagroal`, its permission checks, reading
//!   and creating `master.key`.
//! - [`cipher`]: the derived [`MasterKey`], computed once per process, and
//!   the sealing and opening of one entry.
//! - [`users_file`]: the `user:BASE64` line format, edited line by line.
//! - [`secret`]: the [`Password`] and [`Secret`] types, which never print
//!   their contents, and the password generator.
//! - [`files`]: bounded reads, permission checks and atomic writes.
//! - [`error`]: the one error type, [`VaultError`].
//! - this file: the limits and [`load_users`], which the daemon uses.

pub mod cipher;
pub mod error;
pub mod files;
pub mod master_key;
pub mod secret;
pub mod users_file;

pub use cipher::MasterKey;
pub use error::{EntryProblem, VaultError};
pub use secret::{Password, Secret};
pub use users_file::UsersFile;

use std::path::Path;

/// Most entries in `pgagroal_users.conf` and `pgagroal_frontend_users.conf`.
pub const MAX_USERS: usize = 64;
/// Most entries in `pgagroal_admins.conf`.
pub const MAX_ADMINS: usize = 8;
/// Most entries in `pgagroal_superuser.conf`.
pub const MAX_SUPERUSERS: usize = 1;
/// Longest user name, in bytes (pgagroal keeps names shorter than 128).
pub const MAX_USER_NAME_BYTES: usize = 127;
/// Longest password, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 8192;
/// Longest line of a users file or of `master.key`.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Largest users file.
pub const MAX_FILE_BYTES: usize = 4 << 20;
/// Shortest master key passphrase accepted when creating one, in characters.
pub const MIN_MASTER_KEY_CHARS: usize = 8;
/// Longest master key passphrase accepted when creating one, in bytes: its
/// base64 must fit the 127-character lines pgagroal reads `master.key` with.
pub const MAX_MASTER_KEY_BYTES: usize = 93;
/// Longest passphrase accepted when reading `master.key`, in bytes.
pub const MAX_PASSPHRASE_BYTES: usize = 1023;
/// Length of a generated password when `-l` is not given.
pub const DEFAULT_GENERATED_LENGTH: usize = 64;
/// Longest generated password.
pub const MAX_GENERATED_LENGTH: usize = 1024;

/// One decrypted entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: Password,
    /// Line of the users file it came from.
    pub line: usize,
}

/// The decrypted contents of a users file, in file order, names unique.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Users {
    users: Vec<User>,
}

impl Users {
    /// The password of `name`.
    pub fn get(&self, name: &str) -> Option<&Password> {
        self.users.iter().find(|u| u.name == name).map(|u| &u.password)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// `(name, password)` in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Password)> {
        self.users.iter().map(|u| (u.name.as_str(), &u.password))
    }

    /// The user names in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.users.iter().map(|u| u.name.as_str())
    }

    /// The entries with their line numbers.
    pub fn entries(&self) -> &[User] {
        &self.users
    }
}

/// Decrypt every entry of a parsed users file; at most `max` entries.
pub fn decrypt_users(file: &UsersFile, key: &MasterKey, max: usize) -> Result<Users, VaultError> {
    let mut users = Vec::new();
    for entry in file.entries() {
        if users.len() == max {
            return Err(VaultError::TooMany { path: file.path().to_path_buf(), line: entry.line, max });
        }
        let password = key.open_base64(entry.blob).map_err(|problem| VaultError::Entry {
            path: file.path().to_path_buf(),
            line: entry.line,
            user: entry.user.to_string(),
            problem,
        })?;
        users.push(User { name: entry.user.to_string(), password, line: entry.line });
    }
    Ok(Users { users })
}

/// Read and decrypt a users file (`-u`, `-F`, `-A` or `-S`) with at most
/// `max` entries ([`MAX_USERS`], [`MAX_ADMINS`] or [`MAX_SUPERUSERS`]).
pub fn load_users(path: &Path, key: &MasterKey, max: usize) -> Result<Users, VaultError> {
    decrypt_users(&UsersFile::read(path)?, key, max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use ring::rand::SystemRandom;

    fn pw(s: &str) -> Password {
        Password::new(s.into()).expect("password")
    }

    fn write_users(dir: &Path, key: &MasterKey, users: &[(&str, &str)]) -> std::path::PathBuf {
        let rng = SystemRandom::new();
        let path = dir.join("pgagroal_users.conf");
        let mut file = UsersFile::empty(&path);
        for (user, password) in users {
            file.add(user, &key.seal_base64(&pw(password), &rng).expect("seal"), MAX_USERS).expect("add");
        }
        file.write().expect("write");
        path
    }

    /// A users-file line and a `master.key` made by an independent
    /// implementation of the format, Python's `hashlib` and `cryptography`:
    ///
    /// ```python
    /// import base64, hashlib
    /// from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    /// passphrase = b"correct horse battery staple"
    /// master_salt = bytes(range(16))
    /// entry_salt = bytes(range(0xA0, 0xB0))
    /// password = "s3cret pässword"
    /// mk = hashlib.pbkdf2_hmac("sha256", passphrase, master_salt, 600000, 64)
    /// d = hashlib.pbkdf2_hmac("sha256", mk, entry_salt, 1, 44)
    /// key, iv = d[:32], d[32:]
    /// blob = entry_salt + iv + AESGCM(key).encrypt(iv, password.encode(), None)
    /// print(base64.b64encode(passphrase).decode() + "\n" + base64.b64encode(master_salt).decode())
    /// print("alice:" + base64.b64encode(blob).decode())
    /// print(mk.hex())
    /// ```
    #[test]
    fn known_answer_from_an_independent_implementation() {
        const MASTER_KEY_FILE: &str = "Y29ycmVjdCBob3JzZSBiYXR0ZXJ5IHN0YXBsZQ==\nAAECAwQFBgcICQoLDA0ODw==";
        const LINE: &str = "alice:oKGio6SlpqeoqaqrrK2ur/wx8Uw3rDQKXfh8ChXOzxBf5ECdNEFBych/93P88RajcqPOrliW+GCyA9iB";
        const DERIVED: &str = "ef177144eec9420cbc1093d2a8b344a92bc506d0d4ec9c028dd19f8324d8c1e6\
                               0dfdc1b0fa4770d8351f72180401ea727d02dfd1d37e753361e8425f304d3293";

        let path = Path::new("master.key");
        let file = master_key::parse_key_file(path, MASTER_KEY_FILE.as_bytes()).expect("master.key");
        assert_eq!(file.passphrase.as_bytes(), b"correct horse battery staple");
        let key = file.derive();
        let mut derived = [0u8; cipher::MASTER_KEY_LEN];
        for (i, byte) in derived.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&DERIVED[2 * i..2 * i + 2], 16).expect("hex");
        }
        // The cheap constructor with the same bytes behaves identically.
        let same = MasterKey::from_derived(derived);

        let users_path = Path::new("pgagroal_users.conf");
        let users = UsersFile::parse(users_path, format!("# made elsewhere\n{LINE}\n").as_bytes()).expect("parse");
        for k in [&key, &same] {
            let decrypted = decrypt_users(&users, k, MAX_USERS).expect("decrypt");
            assert_eq!(decrypted.get("alice").map(Password::as_str), Some("s3cret pässword"));
            assert_eq!(decrypted.entries()[0].line, 2);
        }

        // Our encryption with the same entry salt produces the same bytes.
        let entry_salt: [u8; 16] = std::array::from_fn(|i| 0xA0 + i as u8);
        let blob = key.seal_with_salt(&pw("s3cret pässword"), &entry_salt).expect("seal");
        assert_eq!(format!("alice:{}", cipher::BASE64_OUT.encode(blob)), LINE);
        // And the master.key text we would write for that passphrase and salt.
        let ours = master_key::render_key_file(b"correct horse battery staple", &file.salt);
        assert_eq!(ours.as_bytes(), format!("{MASTER_KEY_FILE}\n").as_bytes());
    }

    #[test]
    fn load_keeps_order_and_reads_every_password() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = MasterKey::from_derived([42; 64]);
        let path = write_users(dir.path(), &key, &[("zed", "one"), ("alice", "two"), ("bob", "thrée")]);
        let users = load_users(&path, &key, MAX_USERS).expect("load");
        assert_eq!(users.names().collect::<Vec<_>>(), ["zed", "alice", "bob"]);
        assert_eq!(users.get("bob").map(Password::as_str), Some("thrée"));
        assert!(users.contains("alice") && !users.contains("carol"));
        assert!(!format!("{users:?}").contains("thrée"), "Debug shows no password");
    }

    #[test]
    fn wrong_key_names_line_and_user() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_users(dir.path(), &MasterKey::from_derived([1; 64]), &[("alice", "secret1")]);
        let err = load_users(&path, &MasterKey::from_derived([2; 64]), MAX_USERS).expect_err("wrong key");
        let message = err.to_string();
        assert_eq!(
            message,
            format!(
                "{}: line 1: cannot decrypt the password of user 'alice': \
                 decryption failed (wrong master key, or the entry was altered)",
                path.display()
            )
        );
        assert!(!message.contains("secret1") && !format!("{err:?}").contains("secret1"));
    }

    #[test]
    fn tampered_short_and_bad_base64_entries() {
        let key = MasterKey::from_derived([9; 64]);
        let rng = SystemRandom::new();
        let blob = key.seal(&pw("pw"), &rng).expect("seal");
        let p = Path::new("u.conf");
        let load = |text: String| decrypt_users(&UsersFile::parse(p, text.as_bytes())?, &key, MAX_USERS);
        let mut bad = blob.clone();
        bad[30] ^= 0x80;
        let err = load(format!("a:{}\n", cipher::BASE64_OUT.encode(&bad))).expect_err("tampered");
        assert!(matches!(err, VaultError::Entry { line: 1, problem: EntryProblem::Authentication, .. }), "{err}");
        let err = load(format!("a:{}\n", cipher::BASE64_OUT.encode(&blob[..20]))).expect_err("short");
        assert!(
            err.to_string()
                .contains("line 1: cannot decrypt the password of user 'a': the encrypted password is 20 bytes")
        );
        let err = load("a:QUJD=Q\n".into()).expect_err("bad base64");
        assert!(matches!(err, VaultError::Entry { problem: EntryProblem::Base64, .. }), "{err}");
    }

    #[test]
    fn limits_per_file_kind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = MasterKey::from_derived([3; 64]);
        let path = write_users(dir.path(), &key, &[("a", "1"), ("b", "2")]);
        assert_eq!(load_users(&path, &key, MAX_ADMINS).expect("two admins").len(), 2);
        let err = load_users(&path, &key, MAX_SUPERUSERS).expect_err("one superuser");
        assert_eq!(err.to_string(), format!("{}: line 2: more than 1 users", path.display()));
        let many: Vec<(String, String)> = (0..=MAX_USERS).map(|i| (format!("u{i}"), "p".to_string())).collect();
        let refs: Vec<(&str, &str)> = many.iter().take(MAX_USERS).map(|(u, p)| (u.as_str(), p.as_str())).collect();
        let path = write_users(dir.path(), &key, &refs);
        assert_eq!(load_users(&path, &key, MAX_USERS).expect("64 users").len(), MAX_USERS);
        let mut file = UsersFile::read(&path).expect("read");
        assert!(matches!(file.add("one-more", "QUJD", MAX_USERS), Err(VaultError::Full { .. })));
    }

    #[test]
    fn duplicates_and_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = MasterKey::from_derived([4; 64]);
        let path = dir.path().join("dup.conf");
        let line = format!("alice:{}\n", key.seal_base64(&pw("x"), &SystemRandom::new()).expect("seal"));
        std::fs::write(&path, format!("{line}# c\n{line}")).expect("write");
        let err = load_users(&path, &key, MAX_USERS).expect_err("duplicate");
        assert_eq!(err.to_string(), format!("{}: user 'alice' appears twice, on lines 1 and 3", path.display()));
        let missing = dir.path().join("missing.conf");
        let err = load_users(&missing, &key, MAX_USERS).expect_err("missing");
        assert!(err.to_string().starts_with(&format!("{}: cannot open:", missing.display())), "{err}");
    }
}
