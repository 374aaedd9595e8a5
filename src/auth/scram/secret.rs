//! [`ScramSecret`]: what a SCRAM server keeps instead of a password, in
//! PostgreSQL's stored form
//! `SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>`
//! (the `rolpassword` of `pg_authid`), derived from a password, parsed from
//! a verifier, or mocked for users that do not exist.
//!
//! The mock secret follows PgBouncer and PostgreSQL: a login as an unknown
//! user (or one without a SCRAM secret) runs the whole exchange against a
//! secret derived from the user name and a per-server secret, with the
//! usual salt length and iteration count, and fails only at the proof with
//! [`AuthError::WrongPassword`], so the answers do not tell which users
//! exist.

use core::fmt;

use super::messages::positive_number;
use super::{DEFAULT_ITERATIONS, KEY_LEN, MAX_SALT_LEN};
use super::{b64_decode, b64_decode_key, b64_encode, client_and_server_keys, hmac_sha256, prepare_password};
use super::{salted_password, sha256, wipe_prepared};
use crate::auth::AuthError;
use crate::auth::ct::{ct_eq, wipe};

/// The mechanism name that opens a stored SCRAM verifier.
pub const VERIFIER_PREFIX: &str = "SCRAM-SHA-256$";

/// Longest stored verifier accepted: a 1024-byte salt and the largest
/// iteration count fit with room to spare.
pub const MAX_VERIFIER_LEN: usize = 2048;

/// Highest iteration count a stored verifier may hold (PostgreSQL keeps it
/// in an `int`).
pub const MAX_STORED_ITERATIONS: u32 = i32::MAX as u32;

/// Salt length of new and mock secrets, PostgreSQL's default.
pub const DEFAULT_SALT_LEN: usize = 16;

/// A SCRAM-SHA-256 secret. `stored_key` and `server_key` are not the
/// password but let anyone who holds them impersonate the server, and,
/// with one observed exchange, the client: keep them as carefully.
#[derive(Clone)]
pub struct ScramSecret {
    pub iterations: u32,
    pub salt: Vec<u8>,
    /// SHA-256(ClientKey).
    pub stored_key: [u8; KEY_LEN],
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: [u8; KEY_LEN],
}

impl ScramSecret {
    /// The secret PostgreSQL would store for `password` with this salt and
    /// iteration count. The password is prepared by PostgreSQL's rule
    /// ([`super::prepare_password`]). Use a salt of 1..=1024 bytes (16 is
    /// the default) and 1..=[`MAX_STORED_ITERATIONS`] iterations, or the
    /// verifier and the server-first-message built from it are refused.
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> ScramSecret {
        ScramSecret::from_password_bytes(password.as_bytes(), salt, iterations)
    }

    /// [`ScramSecret::from_password`] for a password that may not be UTF-8.
    pub fn from_password_bytes(password: &[u8], salt: &[u8], iterations: u32) -> ScramSecret {
        let prepared = prepare_password(password);
        let mut salted = salted_password(&prepared, salt, iterations);
        wipe_prepared(prepared);
        let (mut client_key, server_key) = client_and_server_keys(&salted);
        let stored_key = sha256(&client_key);
        wipe(&mut salted);
        wipe(&mut client_key);
        ScramSecret { iterations: iterations.max(1), salt: salt.to_vec(), stored_key, server_key }
    }

    /// Parse PostgreSQL's stored form. The iteration count must be in
    /// 1..=[`MAX_STORED_ITERATIONS`], the salt 1..=1024 bytes and both keys
    /// exactly 32 bytes, all in canonical base64.
    pub fn parse(verifier: &str) -> Result<ScramSecret, AuthError> {
        if verifier.len() > MAX_VERIFIER_LEN {
            return Err(AuthError::Secret("the verifier is longer than 2048 bytes"));
        }
        let rest = verifier.strip_prefix(VERIFIER_PREFIX).ok_or(AuthError::Secret("not a SCRAM-SHA-256 verifier"))?;
        let (params, keys) = rest.split_once('$').ok_or(AuthError::Secret("the keys are missing"))?;
        let (iterations, salt) = params.split_once(':').ok_or(AuthError::Secret("the salt is missing"))?;
        let (stored_key, server_key) = keys.split_once(':').ok_or(AuthError::Secret("the server key is missing"))?;
        let iterations = positive_number(iterations.as_bytes(), MAX_STORED_ITERATIONS)
            .ok_or(AuthError::Secret("the iteration count is not a number in 1..=2147483647"))?;
        let salt = b64_decode(salt.as_bytes(), MAX_SALT_LEN)
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::Secret("the salt is not base64 of 1..=1024 bytes"))?;
        let stored_key = b64_decode_key(stored_key.as_bytes())
            .ok_or(AuthError::Secret("the stored key is not base64 of 32 bytes"))?;
        let server_key = b64_decode_key(server_key.as_bytes())
            .ok_or(AuthError::Secret("the server key is not base64 of 32 bytes"))?;
        Ok(ScramSecret { iterations, salt, stored_key, server_key })
    }

    /// PostgreSQL's stored form, as [`ScramSecret::parse`] reads it.
    pub fn to_verifier(&self) -> String {
        format!(
            "{VERIFIER_PREFIX}{}:{}${}:{}",
            self.iterations,
            b64_encode(&self.salt),
            b64_encode(&self.stored_key),
            b64_encode(&self.server_key)
        )
    }

    /// A secret for a user that does not exist or has no SCRAM secret, so
    /// that such a login looks like any other until it fails with
    /// [`AuthError::WrongPassword`]. It is stable for a given user and
    /// `server_secret` (a random value the pooler keeps for its lifetime or
    /// longer): 4096 iterations, a 16-byte salt and both keys derived as
    /// HMAC-SHA-256(server_secret, label ++ user) with distinct labels.
    /// Matching it would take a SHA-256 preimage of the stored key.
    pub fn mock(user: &str, server_secret: &[u8; KEY_LEN]) -> ScramSecret {
        let derive = |label: &[u8]| hmac_sha256(server_secret, &[label, user.as_bytes()]);
        let salt = derive(b"salt:").iter().take(DEFAULT_SALT_LEN).copied().collect();
        ScramSecret {
            iterations: DEFAULT_ITERATIONS,
            salt,
            stored_key: derive(b"stored_key:"),
            server_key: derive(b"server_key:"),
        }
    }
}

impl PartialEq for ScramSecret {
    fn eq(&self, other: &ScramSecret) -> bool {
        let keys = ct_eq(&self.stored_key, &other.stored_key) & ct_eq(&self.server_key, &other.server_key);
        keys && self.iterations == other.iterations && self.salt == other.salt
    }
}

impl Eq for ScramSecret {}

impl fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramSecret")
            .field("iterations", &self.iterations)
            .field("salt_len", &self.salt.len())
            .finish_non_exhaustive()
    }
}

impl Drop for ScramSecret {
    fn drop(&mut self) {
        wipe(&mut self.stored_key);
        wipe(&mut self.server_key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The verifier PostgreSQL 15 stored for rec_user (see scram/tests.rs).
    const RECORDED: &str = "SCRAM-SHA-256$4096:FGVfHMC9ZDZ4XXFeLAnPIw==$H9MDzGdVqWYftdsSUo4BlDdPFje1kx4bAAqtwUqmbu8=:Zmq0zL9aNVmzsWOeA0bloDOCkgRMlTmizrPTjsZ14/w=";

    #[test]
    fn parse_and_print_round_trip() {
        let secret = ScramSecret::parse(RECORDED).expect("parses");
        assert_eq!(secret.iterations, 4096);
        assert_eq!(secret.salt.len(), 16);
        assert_eq!(secret.to_verifier(), RECORDED);
        assert_eq!(ScramSecret::parse(&secret.to_verifier()), Ok(secret));
    }

    #[test]
    fn from_password_matches_postgresql() {
        let stored = ScramSecret::parse(RECORDED).expect("parses");
        // The role was created with U+00A0 (mapped to a space by SASLprep) and
        // U+00AD (mapped to nothing): both spellings give the stored secret.
        assert_eq!(ScramSecret::from_password("pool\u{a0}pass\u{ad}word", &stored.salt, 4096), stored);
        assert_eq!(ScramSecret::from_password("pool password", &stored.salt, 4096), stored);
        assert_eq!(ScramSecret::from_password("pool\u{a0}password", &stored.salt, 4096), stored);
        assert_ne!(ScramSecret::from_password("poolpassword", &stored.salt, 4096), stored);
        assert_ne!(ScramSecret::from_password("pool password", &stored.salt, 4097), stored);
    }

    #[test]
    fn parse_rejects() {
        let key = "H9MDzGdVqWYftdsSUo4BlDdPFje1kx4bAAqtwUqmbu8=";
        let long = format!("SCRAM-SHA-256$4096:{}$k:k", "A".repeat(MAX_VERIFIER_LEN));
        let bad = [
            "",
            "md59aca6d0583cae2f7276c15f043fcb3a2",
            "SCRAM-SHA-256$",
            "SCRAM-SHA-256$4096:FGVfHMC9ZDZ4XXFeLAnPIw==",
            &format!("SCRAM-SHA-256$4096$FGVfHMC9ZDZ4XXFeLAnPIw==${key}:{key}"),
            &format!("SCRAM-SHA-256$4096:FGVfHMC9ZDZ4XXFeLAnPIw==${key}"),
            &format!("SCRAM-SHA-256$0:FGVfHMC9ZDZ4XXFeLAnPIw==${key}:{key}"),
            &format!("SCRAM-SHA-256$-1:FGVfHMC9ZDZ4XXFeLAnPIw==${key}:{key}"),
            &format!("SCRAM-SHA-256$04096:FGVfHMC9ZDZ4XXFeLAnPIw==${key}:{key}"),
            &format!("SCRAM-SHA-256$2147483648:FGVfHMC9ZDZ4XXFeLAnPIw==${key}:{key}"),
            &format!("SCRAM-SHA-256$99999999999999999999:FGVfHMC9ZDZ4XXFeLAnPIw==${key}:{key}"),
            &format!("SCRAM-SHA-256$4096:${key}:{key}"),
            &format!("SCRAM-SHA-256$4096:not base64!${key}:{key}"),
            &format!("SCRAM-SHA-256$4096:FGVfHMC9ZDZ4XXFeLAnPIw${key}:{key}"),
            &format!("SCRAM-SHA-256$4096:FGVfHMC9ZDZ4XXFeLAnPIw==${key}:{key}A"),
            &format!("SCRAM-SHA-256$4096:FGVfHMC9ZDZ4XXFeLAnPIw==$AAAA:{key}"),
            &format!("SCRAM-SHA-256$4096:FGVfHMC9ZDZ4XXFeLAnPIw==${key}:{key}:{key}"),
            &long,
        ];
        for verifier in bad {
            assert!(matches!(ScramSecret::parse(verifier), Err(AuthError::Secret(_))), "{verifier}");
        }
        let max = format!("SCRAM-SHA-256$2147483647:FGVfHMC9ZDZ4XXFeLAnPIw==${key}:{key}");
        assert_eq!(ScramSecret::parse(&max).map(|s| s.iterations), Ok(i32::MAX as u32));
    }

    #[test]
    fn mock_is_stable_and_distinct() {
        let server_secret = [7u8; 32];
        let a = ScramSecret::mock("alice", &server_secret);
        assert_eq!(a, ScramSecret::mock("alice", &server_secret));
        assert_ne!(a, ScramSecret::mock("bob", &server_secret));
        assert_ne!(a, ScramSecret::mock("alice", &[8u8; 32]));
        assert_ne!(a.salt, ScramSecret::mock("alice", &[8u8; 32]).salt);
        assert_eq!((a.iterations, a.salt.len()), (DEFAULT_ITERATIONS, DEFAULT_SALT_LEN));
        assert_ne!(a.stored_key, a.server_key);
        assert_eq!(ScramSecret::parse(&a.to_verifier()), Ok(a.clone()));
        // No password of the ordinary kind produces it.
        for guess in ["", "alice", "password"] {
            assert_ne!(ScramSecret::from_password(guess, &a.salt, a.iterations), a);
        }
    }

    #[test]
    fn debug_shows_no_keys() {
        let secret = ScramSecret::parse(RECORDED).expect("parses");
        let shown = format!("{secret:?}");
        assert_eq!(shown, "ScramSecret { iterations: 4096, salt_len: 16, .. }");
    }
}
