//! The encryption of users-file entries, as pgagroal 2.1 does it.
//!
//! The master key is PBKDF2-HMAC-SHA256 of the passphrase in `master.key`
//! over its 16-byte salt, 600 000 iterations, 64 bytes of output; it is
//! derived once per process and held in a [`MasterKey`]. Each entry has its
//! own 16-byte salt: PBKDF2-HMAC-SHA256 of the 64 master-key bytes over that
//! salt, one iteration, gives 44 bytes, the AES-256 key (32) and a nonce (12).
//! The stored blob is `salt ‖ nonce ‖ AES-256-GCM(password) ‖ tag`, with no
//! associated data; decryption uses the stored nonce. The functions here take
//! the salt as an argument so a known answer can be replayed in a test.

use super::MAX_PASSWORD_BYTES;
use super::error::{EntryProblem, VaultError};
use super::secret::{Password, wipe};
use base64::Engine;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::pbkdf2;
use ring::rand::SecureRandom;
use std::num::NonZeroU32;

/// Length of the master salt and of each entry's salt.
pub const SALT_LEN: usize = 16;
/// Length of the AES-GCM nonce stored in each entry.
pub const NONCE_LEN: usize = 12;
/// Length of the AES-GCM tag.
pub const TAG_LEN: usize = 16;
/// Length of the AES-256 key.
pub const AES_KEY_LEN: usize = 32;
/// Bytes a blob holds besides the ciphertext.
pub const BLOB_OVERHEAD: usize = SALT_LEN + NONCE_LEN + TAG_LEN;
/// Longest blob: one holding a password of [`MAX_PASSWORD_BYTES`].
pub const MAX_BLOB_BYTES: usize = BLOB_OVERHEAD + MAX_PASSWORD_BYTES;
/// Longest base64 text of a blob.
pub const MAX_BLOB_BASE64: usize = MAX_BLOB_BYTES.div_ceil(3) * 4;
/// PBKDF2 iterations from the passphrase to the master key.
pub const MASTER_ITERATIONS: u32 = 600_000;
/// Length of the derived master key (OpenSSL's `EVP_MAX_KEY_LENGTH`).
pub const MASTER_KEY_LEN: usize = 64;

/// Standard alphabet with padding on output, padding optional on input.
pub(crate) const BASE64_OUT: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
pub(crate) const BASE64_IN: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT;

/// The derived master key. Cheap to use: each entry costs one PBKDF2
/// iteration. `Debug` shows nothing of it; dropping it wipes it.
pub struct MasterKey {
    bytes: [u8; MASTER_KEY_LEN],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        wipe(&mut self.bytes);
    }
}

fn iterations(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl MasterKey {
    /// Derive the master key from the passphrase and master salt of
    /// `master.key` (600 000 PBKDF2 iterations: about half a second).
    pub fn derive(passphrase: &[u8], master_salt: &[u8; SALT_LEN]) -> MasterKey {
        let mut bytes = [0u8; MASTER_KEY_LEN];
        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations(MASTER_ITERATIONS), master_salt, passphrase, &mut bytes);
        MasterKey { bytes }
    }

    /// A master key from already derived bytes (tests, or a key cached elsewhere).
    pub fn from_derived(bytes: [u8; MASTER_KEY_LEN]) -> MasterKey {
        MasterKey { bytes }
    }

    /// The entry key and nonce for an entry salt.
    fn entry_key(&self, salt: &[u8; SALT_LEN]) -> ([u8; AES_KEY_LEN], [u8; NONCE_LEN]) {
        let mut derived = [0u8; AES_KEY_LEN + NONCE_LEN];
        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations(1), salt, &self.bytes, &mut derived);
        let mut key = [0u8; AES_KEY_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        let (k, n) = derived.split_at(AES_KEY_LEN);
        key.copy_from_slice(k);
        nonce.copy_from_slice(n);
        wipe(&mut derived);
        (key, nonce)
    }

    /// Encrypt `password` with the given entry salt: `salt ‖ nonce ‖ ciphertext ‖ tag`.
    pub fn seal_with_salt(&self, password: &Password, salt: &[u8; SALT_LEN]) -> Result<Vec<u8>, VaultError> {
        let (mut key, nonce) = self.entry_key(salt);
        let sealing = UnboundKey::new(&AES_256_GCM, &key).map(LessSafeKey::new);
        wipe(&mut key);
        let sealing = sealing.map_err(|_| VaultError::BadPassword { reason: "cannot set up AES-256-GCM".into() })?;
        let mut blob = Vec::with_capacity(BLOB_OVERHEAD + password.len());
        blob.extend_from_slice(salt);
        blob.extend_from_slice(&nonce);
        let mut body = password.as_bytes().to_vec();
        let sealed = sealing.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut body);
        if sealed.is_err() {
            wipe(&mut body);
            return Err(VaultError::BadPassword { reason: "too long to encrypt".into() });
        }
        blob.extend_from_slice(&body);
        Ok(blob)
    }

    /// Encrypt `password` under a fresh random entry salt.
    pub fn seal(&self, password: &Password, rng: &dyn SecureRandom) -> Result<Vec<u8>, VaultError> {
        let mut salt = [0u8; SALT_LEN];
        rng.fill(&mut salt).map_err(|_| VaultError::Random)?;
        self.seal_with_salt(password, &salt)
    }

    /// The base64 text of [`MasterKey::seal`], as written after `user:`.
    pub fn seal_base64(&self, password: &Password, rng: &dyn SecureRandom) -> Result<String, VaultError> {
        Ok(BASE64_OUT.encode(self.seal(password, rng)?))
    }

    /// Decrypt a blob.
    pub fn open(&self, blob: &[u8]) -> Result<Password, EntryProblem> {
        if blob.len() < BLOB_OVERHEAD {
            return Err(EntryProblem::TooShort { len: blob.len() });
        }
        if blob.len() > MAX_BLOB_BYTES {
            return Err(EntryProblem::TooLong { len: blob.len() });
        }
        let (salt, rest) = blob.split_at(SALT_LEN);
        let (stored_nonce, sealed) = rest.split_at(NONCE_LEN);
        let mut salt_bytes = [0u8; SALT_LEN];
        salt_bytes.copy_from_slice(salt);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(stored_nonce);
        let (mut key, _) = self.entry_key(&salt_bytes);
        let opening = UnboundKey::new(&AES_256_GCM, &key).map(LessSafeKey::new);
        wipe(&mut key);
        let opening = opening.map_err(|_| EntryProblem::Authentication)?;
        let mut body = sealed.to_vec();
        let plain_len = match opening.open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut body) {
            Ok(plain) => plain.len(),
            Err(_) => {
                wipe(&mut body);
                return Err(EntryProblem::Authentication);
            }
        };
        let mut tail = body.split_off(plain_len);
        wipe(&mut tail);
        if body.contains(&0) {
            wipe(&mut body);
            return Err(EntryProblem::Nul);
        }
        match String::from_utf8(body) {
            Ok(text) => Password::new(text).map_err(|_| EntryProblem::TooLong { len: blob.len() }),
            Err(e) => {
                wipe(&mut e.into_bytes());
                Err(EntryProblem::NotUtf8)
            }
        }
    }

    /// Decode the base64 text of an entry and decrypt it.
    pub fn open_base64(&self, text: &str) -> Result<Password, EntryProblem> {
        let text = text.trim_matches([' ', '\t', '\r', '\n']);
        if text.len() > MAX_BLOB_BASE64 {
            return Err(EntryProblem::TooLong { len: text.len() / 4 * 3 });
        }
        let blob = BASE64_IN.decode(text).map_err(|_| EntryProblem::Base64)?;
        self.open(&blob)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    fn key(seed: u8) -> MasterKey {
        MasterKey::from_derived([seed; MASTER_KEY_LEN])
    }

    fn pw(s: &str) -> Password {
        Password::new(s.into()).expect("password")
    }

    #[test]
    fn round_trip_and_layout() {
        let rng = SystemRandom::new();
        let k = key(7);
        for text in ["", "secret", "pässwörd ✓", &"x".repeat(MAX_PASSWORD_BYTES)] {
            let blob = k.seal(&pw(text), &rng).expect("seal");
            assert_eq!(blob.len(), BLOB_OVERHEAD + text.len());
            assert_eq!(k.open(&blob).expect("open").as_str(), text);
        }
        // The stored nonce is the one derived from the salt.
        let salt = [3u8; SALT_LEN];
        let blob = k.seal_with_salt(&pw("a"), &salt).expect("seal");
        assert_eq!(&blob[..SALT_LEN], &salt);
        assert_eq!(&blob[SALT_LEN..SALT_LEN + NONCE_LEN], &k.entry_key(&salt).1);
        // Same key and salt, same bytes.
        assert_eq!(k.seal_with_salt(&pw("a"), &salt).expect("seal"), blob);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let k = key(1);
        let blob = k.seal_with_salt(&pw("correct horse"), &[9; SALT_LEN]).expect("seal");
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x01;
            assert_eq!(k.open(&bad), Err(EntryProblem::Authentication), "byte {i}");
        }
    }

    #[test]
    fn wrong_key_short_long_and_bad_base64() {
        let rng = SystemRandom::new();
        let blob = key(1).seal(&pw("p"), &rng).expect("seal");
        assert_eq!(key(2).open(&blob), Err(EntryProblem::Authentication));
        assert_eq!(key(1).open(&blob[..BLOB_OVERHEAD - 1]), Err(EntryProblem::TooShort { len: BLOB_OVERHEAD - 1 }));
        assert_eq!(key(1).open(&[]), Err(EntryProblem::TooShort { len: 0 }));
        let long = vec![0u8; MAX_BLOB_BYTES + 1];
        assert_eq!(key(1).open(&long), Err(EntryProblem::TooLong { len: MAX_BLOB_BYTES + 1 }));
        assert_eq!(key(1).open_base64("not base64!"), Err(EntryProblem::Base64));
        assert!(matches!(key(1).open_base64(&"A".repeat(MAX_BLOB_BASE64 + 4)), Err(EntryProblem::TooLong { .. })));
        let text = key(1).seal_base64(&pw("p"), &rng).expect("seal");
        assert_eq!(key(1).open_base64(&format!("{text}\r\n")).expect("open").as_str(), "p");
        assert_eq!(key(1).open_base64(text.trim_end_matches('=')).expect("unpadded").as_str(), "p");
    }

    #[test]
    fn plaintext_that_is_not_a_password_is_refused() {
        // Encrypt raw bytes the way seal does, bypassing Password's checks.
        let k = key(5);
        let salt = [4u8; SALT_LEN];
        let raw = |plain: &[u8]| {
            let (key_bytes, nonce) = k.entry_key(&salt);
            let sealing = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key_bytes).expect("key"));
            let mut body = plain.to_vec();
            sealing
                .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut body)
                .expect("seal");
            [&salt[..], &nonce[..], &body[..]].concat()
        };
        assert_eq!(k.open(&raw(b"a\xffb")), Err(EntryProblem::NotUtf8));
        assert_eq!(k.open(&raw(b"a\0b")), Err(EntryProblem::Nul));
    }

    #[test]
    fn debug_shows_no_key() {
        assert_eq!(format!("{:?}", key(0xAB)), "MasterKey(<redacted>)");
    }
}
