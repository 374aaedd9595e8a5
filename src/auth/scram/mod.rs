//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, in both
//! roles, with no I/O: the nonces are arguments and every method takes and
//! returns message bytes, so a recorded exchange replays as a test.
//!
//! This file owns the bounds every SCRAM message is held to and the
//! primitives both roles share: the password preparation rule, PBKDF2,
//! HMAC, SHA-256 and base64. The rest:
//!
//! - [`messages`]: parsing and building the four SCRAM messages.
//! - [`secret`]: [`ScramSecret`], PostgreSQL's stored verifier, and the mock
//!   secret that hides which users exist.
//! - [`server`]: [`ScramServer`], the pooler verifying an application.
//! - [`client`]: [`ScramClient`], the pooler logging in to PostgreSQL, with a
//!   password or with a ClientKey recovered from an application's proof.
//!
//! Channel binding (SCRAM-SHA-256-PLUS) is not supported in either role.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

pub mod client;
pub mod messages;
pub mod secret;
pub mod server;

#[cfg(test)]
mod tests;

pub use client::ScramClient;
pub use secret::ScramSecret;
pub use server::{ScramServer, ServerSuccess};

/// Iteration count of new secrets, PostgreSQL's default.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Largest SCRAM message accepted in either direction, in bytes.
pub const MAX_SCRAM_MESSAGE: usize = 8 * 1024;

/// Longest nonce part accepted from or given to one side. Clients send 24
/// (libpq), 32 (asyncpg) or more characters; the combined nonce of the
/// later messages may be twice this long.
pub const MAX_NONCE_LEN: usize = 1024;

/// Longest salt accepted, in bytes after base64 decoding. PostgreSQL uses
/// 16; other servers use other lengths.
pub const MAX_SALT_LEN: usize = 1024;

/// Highest iteration count the client role agrees to compute, so a hostile
/// or misconfigured server cannot make it spin.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// Length of every SCRAM-SHA-256 key, proof and signature.
pub const KEY_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA-256 of the concatenated `parts` under a 32-byte key.
///
/// HMAC pads a key shorter than the hash's 64-byte block with zeros
/// (RFC 2104, section 2), so the key is placed in a zeroed block and the
/// infallible fixed-size constructor is used.
pub(crate) fn hmac_sha256(key: &[u8; KEY_LEN], parts: &[&[u8]]) -> [u8; KEY_LEN] {
    let mut block = [0u8; 64];
    for (b, k) in block.iter_mut().zip(key) {
        *b = *k;
    }
    let mut mac = <HmacSha256 as KeyInit>::new(&block.into());
    super::ct::wipe(&mut block);
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

pub(crate) fn sha256(data: &[u8]) -> [u8; KEY_LEN] {
    Sha256::digest(data).into()
}

/// SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, iterations). An
/// iteration count of 0 is computed as 1.
pub(crate) fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; KEY_LEN] {
    pbkdf2::pbkdf2_hmac_array::<Sha256, KEY_LEN>(password, salt, iterations.max(1))
}

/// ClientKey and ServerKey from a SaltedPassword.
pub(crate) fn client_and_server_keys(salted: &[u8; KEY_LEN]) -> ([u8; KEY_LEN], [u8; KEY_LEN]) {
    (hmac_sha256(salted, &[b"Client Key"]), hmac_sha256(salted, &[b"Server Key"]))
}

/// The bytes a password is hashed as, by PostgreSQL's rule (pg_saslprep):
/// a password that is valid UTF-8 and passes SASLprep (RFC 4013) is used
/// in its prepared form; anything else (not UTF-8, a prohibited or
/// unassigned character, bad bidirectional text, or a password that
/// SASLprep maps to nothing) is used as the raw bytes. Pure ASCII is used
/// as it is, as PostgreSQL does.
///
/// Both roles apply this rule, so a password stored by PostgreSQL matches
/// the one the pooler is configured with.
pub fn prepare_password(password: &[u8]) -> Cow<'_, [u8]> {
    let Ok(text) = core::str::from_utf8(password) else { return Cow::Borrowed(password) };
    if text.is_ascii() {
        return Cow::Borrowed(password);
    }
    match stringprep::saslprep(text) {
        Ok(Cow::Borrowed(prepared)) if !prepared.is_empty() => Cow::Borrowed(prepared.as_bytes()),
        Ok(Cow::Owned(prepared)) if !prepared.is_empty() => Cow::Owned(prepared.into_bytes()),
        _ => Cow::Borrowed(password),
    }
}

/// Wipe a prepared password if preparation made a copy of it.
pub(crate) fn wipe_prepared(prepared: Cow<'_, [u8]>) {
    if let Cow::Owned(mut copy) = prepared {
        super::ct::wipe(&mut copy);
    }
}

pub(crate) fn b64_encode(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Decode canonical, padded base64 of at most `max` bytes. The encoded
/// length is checked before anything is decoded or allocated.
pub(crate) fn b64_decode(encoded: &[u8], max: usize) -> Option<Vec<u8>> {
    if encoded.len() > max.div_ceil(3) * 4 {
        return None;
    }
    let decoded = STANDARD.decode(encoded).ok()?;
    (decoded.len() <= max).then_some(decoded)
}

/// Decode the base64 of exactly one 32-byte key, proof or signature.
pub(crate) fn b64_decode_key(encoded: &[u8]) -> Option<[u8; KEY_LEN]> {
    b64_decode(encoded, KEY_LEN)?.try_into().ok()
}

/// Whether `nonce` is 1..=`max` printable ASCII characters other than ','
/// (RFC 5802 `printable`).
pub(crate) fn is_printable_nonce(nonce: &[u8], max: usize) -> bool {
    (1..=max).contains(&nonce.len()) && nonce.iter().all(|&b| (0x21..=0x7e).contains(&b) && b != b',')
}
