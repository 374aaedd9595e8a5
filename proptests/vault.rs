//! Property tests for the vault: any password survives encryption and
//! decryption, a changed byte never decrypts to anything, generated users
//! files read back to the entries written, and arbitrary bytes fed to the
//! users-file parser, the master.key parser and the blob decoder produce an
//! error or a value, never a panic. The master key is built from fixed bytes
//! with `MasterKey::from_derived`: the 600 000-iteration derivation per case
//! would make this suite take hours.

use pgagroal::vault::cipher::{BLOB_OVERHEAD, MASTER_KEY_LEN, SALT_LEN};
use pgagroal::vault::{self, MasterKey, Password, UsersFile, master_key};
use proptest::prelude::*;
use ring::rand::SystemRandom;
use std::path::Path;

fn key(seed: u8) -> MasterKey {
    MasterKey::from_derived([seed; MASTER_KEY_LEN])
}

/// Passwords of any Unicode text except NUL, up to the byte limit.
fn password_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[^\\x00]{0,64}",
        "[ -~]{0,300}",
        proptest::collection::vec(any::<char>().prop_filter("no NUL", |c| *c != '\0'), 0..200)
            .prop_map(|chars| chars.into_iter().collect::<String>()),
    ]
    .prop_filter("within the limit", |s| s.len() <= vault::MAX_PASSWORD_BYTES)
}

/// User names the writer accepts.
fn user_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_.@-]{0,30}"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn seal_then_open_returns_the_password(
        text in password_text(),
        seed in any::<u8>(),
        salt in any::<[u8; SALT_LEN]>(),
    ) {
        let k = key(seed);
        let password = Password::new(text.clone()).expect("valid password");
        let blob = k.seal_with_salt(&password, &salt).expect("seal");
        prop_assert_eq!(blob.len(), BLOB_OVERHEAD + text.len());
        let opened = k.open(&blob).expect("open");
        prop_assert_eq!(opened.as_str(), text.as_str());
        let text_form = k.seal_base64(&password, &SystemRandom::new()).expect("seal");
        let opened = k.open_base64(&text_form).expect("open");
        prop_assert_eq!(opened.as_str(), text.as_str());
    }

    #[test]
    fn a_changed_byte_or_another_key_never_opens(
        text in password_text(),
        index in any::<prop::sample::Index>(),
        flip in 1u8..,
        other in any::<u8>(),
    ) {
        let k = key(0x5A);
        let blob = k.seal(&Password::new(text).expect("valid"), &SystemRandom::new()).expect("seal");
        let mut bad = blob.clone();
        let i = index.index(bad.len());
        bad[i] ^= flip;
        prop_assert!(k.open(&bad).is_err());
        if other != 0x5A {
            prop_assert!(key(other).open(&blob).is_err());
        }
    }

    #[test]
    fn written_files_read_back(
        names in proptest::collection::btree_set(user_name(), 0..12),
        comment in "[ \\t]{0,3}[#;][ -~]{0,20}",
    ) {
        let k = key(3);
        let rng = SystemRandom::new();
        let path = Path::new("users.conf");
        let mut file = UsersFile::parse(path, format!("{comment}\n").as_bytes()).expect("comment only");
        for (i, name) in names.iter().enumerate() {
            let blob = k.seal_base64(&Password::new(format!("pw-{i}")).expect("valid"), &rng).expect("seal");
            file.add(name, &blob, vault::MAX_USERS).expect("add");
        }
        let text = file.render();
        prop_assert!(text.starts_with(&format!("{comment}\n")), "comment kept");
        let users = vault::decrypt_users(&UsersFile::parse(path, text.as_bytes()).expect("parse"), &k, vault::MAX_USERS)
            .expect("decrypt");
        prop_assert_eq!(users.names().collect::<Vec<_>>(), names.iter().map(String::as_str).collect::<Vec<_>>());
        for (i, name) in names.iter().enumerate() {
            let expected = format!("pw-{i}");
            prop_assert_eq!(users.get(name).map(Password::as_str), Some(expected.as_str()));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_users_parser(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(file) = UsersFile::parse(Path::new("fuzz.conf"), &bytes) {
            let _ = vault::decrypt_users(&file, &key(1), vault::MAX_USERS);
            // What parses renders to text that parses to the same entries.
            let again = UsersFile::parse(Path::new("fuzz.conf"), file.render().as_bytes()).expect("reparse");
            prop_assert_eq!(again.names(), file.names());
        }
    }

    #[test]
    fn line_shaped_text_never_panics_the_users_parser(
        lines in proptest::collection::vec("[a-z#; :\\t\\r=+/A-Z0-9]{0,80}", 0..20),
    ) {
        let text = lines.join("\n");
        if let Ok(file) = UsersFile::parse(Path::new("fuzz.conf"), text.as_bytes()) {
            let _ = vault::decrypt_users(&file, &key(2), vault::MAX_USERS);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_blob_decoder(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        text in "[A-Za-z0-9+/=\\r\\n ]{0,200}",
    ) {
        let opened = key(4).open(&bytes);
        if bytes.len() < BLOB_OVERHEAD {
            prop_assert!(opened.is_err());
        }
        let _ = key(4).open_base64(&text);
        let _ = key(4).open_base64(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_master_key_parser(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = master_key::parse_key_file(Path::new("master.key"), &bytes);
    }
}
