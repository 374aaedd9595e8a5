//! PostgreSQL's MD5 password authentication, in both roles.
//!
//! The stored form is `"md5" + hex(md5(password ++ user))`. On a login the
//! server sends a random 4-byte salt (AuthenticationMD5Password) and the
//! client answers `"md5" + hex(md5(hex_of_stored_form ++ salt))` in a
//! PasswordMessage. The stored hash is therefore all a pooler needs, both
//! to check a client and to log in to PostgreSQL: it is password-equivalent
//! and is to be kept as carefully as a password.

use md5::{Digest, Md5};

use crate::auth::ct::ct_eq;

/// The prefix PostgreSQL puts before the 32 hex digits of an MD5 hash.
pub const MD5_PREFIX: &str = "md5";

/// Length of a stored hash or a response: the prefix and 32 hex digits.
pub const MD5_PASSWORD_LEN: usize = 35;

fn hex_digest(parts: &[&[u8]]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hasher = Md5::new();
    for part in parts {
        hasher.update(part);
    }
    let digest: [u8; 16] = hasher.finalize().into();
    let mut out = String::with_capacity(MD5_PASSWORD_LEN);
    out.push_str(MD5_PREFIX);
    for byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

/// The form PostgreSQL stores in `pg_authid.rolpassword` for an MD5
/// password: `"md5" + hex(md5(password ++ user))`.
pub fn password_hash(user: &str, password: &str) -> String {
    hex_digest(&[password.as_bytes(), user.as_bytes()])
}

/// Whether `s` has the shape of a stored MD5 hash: `md5` and 32 lowercase
/// hex digits (the test PostgreSQL applies to tell it from a cleartext or
/// SCRAM secret).
pub fn is_password_hash(s: &str) -> bool {
    s.len() == MD5_PASSWORD_LEN
        && s.starts_with(MD5_PREFIX)
        && s.bytes().skip(MD5_PREFIX.len()).all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The answer to AuthenticationMD5Password given the stored hash:
/// `"md5" + hex(md5(hash_without_md5_prefix ++ salt))`. A `hash` without
/// the `md5` prefix is taken as the bare hex digits.
pub fn response_from_hash(hash: &str, salt: [u8; 4]) -> String {
    let hex = hash.strip_prefix(MD5_PREFIX).unwrap_or(hash);
    hex_digest(&[hex.as_bytes(), &salt])
}

/// The answer to AuthenticationMD5Password given the user and password.
pub fn response(user: &str, password: &str, salt: [u8; 4]) -> String {
    response_from_hash(&password_hash(user, password), salt)
}

/// Whether a client's answer to AuthenticationMD5Password with `salt`
/// matches the stored `hash`, compared in constant time.
///
/// `client_response` may be the PasswordMessage body as received (with its
/// terminating NUL) or the string with the NUL already stripped (what
/// [`crate::auth::sasl::parse_password_message`] returns): one trailing NUL,
/// if present, is ignored. A `hash` that is not a stored MD5 hash (see
/// [`is_password_hash`]) matches nothing.
pub fn verify(hash: &str, salt: [u8; 4], client_response: &[u8]) -> bool {
    if !is_password_hash(hash) {
        return false;
    }
    let answer = client_response.strip_suffix(&[0]).unwrap_or(client_response);
    let expected = response_from_hash(hash, salt);
    ct_eq(expected.as_bytes(), answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_primitive_matches_rfc_1321() {
        assert_eq!(hex_digest(&[b""]), "md5d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex_digest(&[b"a", b"bc"]), "md5900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(hex_digest(&[b"message digest"]), "md5f96b697d7cb7938d525a2f31aaf161d0");
    }

    #[test]
    fn stored_hash_known_answers() {
        // Computed independently with Python: "md5" + hashlib.md5(b"passworduser").hexdigest().
        assert_eq!(password_hash("user", "password"), "md54d45974e13472b5a0be3533de4666414");
        // Python's hashlib gives the same, and PostgreSQL 15 stored exactly this in
        // pg_authid for CREATE ROLE md5_user PASSWORD 'md5 pass' (password_encryption = md5).
        assert_eq!(password_hash("md5_user", "md5 pass"), "md59aca6d0583cae2f7276c15f043fcb3a2");
        assert!(is_password_hash(&password_hash("u", "p")));
    }

    #[test]
    fn response_known_answer() {
        // Computed independently with Python's hashlib:
        //   h = hashlib.md5(b"md5 passmd5_user").hexdigest()
        //   "md5" + hashlib.md5(h.encode() + bytes([1, 2, 3, 4])).hexdigest()
        const EXPECTED: &str = "md561465a3f69b767df1f7ac07895ba16e8";
        let salt = [1, 2, 3, 4];
        assert_eq!(response("md5_user", "md5 pass", salt), EXPECTED);
        let hash = password_hash("md5_user", "md5 pass");
        assert_eq!(response_from_hash(&hash, salt), EXPECTED);
        assert_eq!(response_from_hash(&hash[3..], salt), EXPECTED);
        assert!(verify(&hash, salt, EXPECTED.as_bytes()));
        assert!(verify(&hash, salt, b"md561465a3f69b767df1f7ac07895ba16e8\0"));
    }

    #[test]
    fn recorded_postgresql_exchange() {
        // psql 15 logging in to PostgreSQL 15 as md5_user / "md5 pass" through a
        // printing TCP proxy: AuthenticationMD5Password carried this salt and the
        // PasswordMessage this answer (with its NUL).
        let salt = [0x44, 0xe3, 0x6c, 0xfc];
        let answer = b"md5df16a6413d72488af720903e31a10857\0";
        assert_eq!(response("md5_user", "md5 pass", salt).as_bytes(), &answer[..35]);
        assert!(verify("md59aca6d0583cae2f7276c15f043fcb3a2", salt, answer));
    }

    #[test]
    fn verify_rejects() {
        let hash = password_hash("md5_user", "md5 pass");
        let salt = [1, 2, 3, 4];
        let good = response("md5_user", "md5 pass", salt);
        assert!(!verify(&hash, salt, response("md5_user", "md5 pas", salt).as_bytes()));
        assert!(!verify(&hash, [1, 2, 3, 5], good.as_bytes()));
        assert!(!verify(&hash, salt, &good.as_bytes()[..34]));
        assert!(!verify(&hash, salt, format!("{good}\0\0").as_bytes()));
        assert!(!verify(&hash, salt, good.to_uppercase().as_bytes()));
        assert!(!verify(&hash, salt, b""));
        // Not a stored MD5 hash: never matches, even an answer built from it.
        for bad in ["", "md5", &hash[3..], &hash.to_uppercase(), "SCRAM-SHA-256$4096:x$y:z"] {
            assert!(!verify(bad, salt, response_from_hash(bad, salt).as_bytes()), "{bad}");
        }
    }

    #[test]
    fn every_flipped_byte_fails() {
        let hash = password_hash("u", "p");
        let salt = [9, 8, 7, 6];
        let good = response_from_hash(&hash, salt).into_bytes();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert!(!verify(&hash, salt, &bad), "byte {i}");
        }
    }
}
