//! Secret values: [`Password`] (a user's password, UTF-8 and bounded),
//! [`Secret`] (raw key material such as the master key passphrase) and the
//! password generator behind `pgagroal-admin -g`. Neither type prints its
//! contents in `Debug`, and both overwrite their bytes when dropped.

use super::error::VaultError;
use super::{MAX_GENERATED_LENGTH, MAX_PASSWORD_BYTES};
use ring::rand::SecureRandom;

/// Overwrite `bytes` with zeros in a way the optimiser keeps.
pub(crate) fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    std::hint::black_box(&bytes);
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// A password: valid UTF-8, at most [`MAX_PASSWORD_BYTES`] bytes, no NUL.
pub struct Password(String);

impl Password {
    /// Check the limits and wrap.
    pub fn new(password: String) -> Result<Password, VaultError> {
        if password.len() > MAX_PASSWORD_BYTES {
            let reason = format!("{} bytes, more than the {MAX_PASSWORD_BYTES} allowed", password.len());
            drop(Password(password));
            return Err(VaultError::BadPassword { reason });
        }
        if password.as_bytes().contains(&0) {
            drop(Password(password));
            return Err(VaultError::BadPassword { reason: "contains a NUL character".into() });
        }
        Ok(Password(password))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Length in characters, as pgagroal counts password lengths.
    pub fn chars(&self) -> usize {
        self.0.chars().count()
    }
}

impl Clone for Password {
    fn clone(&self) -> Self {
        Password(self.0.clone())
    }
}

impl PartialEq for Password {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Password {}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        wipe(&mut bytes);
    }
}

/// Raw secret bytes (a master key passphrase as stored in `master.key`).
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// The characters generated passwords are drawn from (pgagroal's set:
/// letters, digits and 28 punctuation characters).
pub const GENERATED_ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!@$%^&*()-_=+[{]}\\|:'\",<.>/?";

/// A random password of `length` characters from [`GENERATED_ALPHABET`],
/// each drawn uniformly (bytes that would bias the choice are discarded).
pub fn generate_password(length: usize, rng: &dyn SecureRandom) -> Result<Password, VaultError> {
    if length == 0 || length > MAX_GENERATED_LENGTH {
        return Err(VaultError::BadPassword {
            reason: format!("a generated password must have 1 to {MAX_GENERATED_LENGTH} characters, not {length}"),
        });
    }
    let n = GENERATED_ALPHABET.len();
    let limit = 256 - 256 % n;
    let mut out = String::with_capacity(length);
    let mut pool = [0u8; 64];
    while out.len() < length {
        rng.fill(&mut pool).map_err(|_| VaultError::Random)?;
        for &byte in pool.iter().filter(|b| usize::from(**b) < limit) {
            if out.len() == length {
                break;
            }
            if let Some(&c) = GENERATED_ALPHABET.get(usize::from(byte) % n) {
                out.push(char::from(c));
            }
        }
    }
    wipe(&mut pool);
    Password::new(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    #[test]
    fn debug_hides_contents() {
        let p = Password::new("hunter2".into()).expect("ok");
        assert_eq!(format!("{p:?}"), "Password(<redacted>)");
        let s = Secret::new(b"passphrase".to_vec());
        assert_eq!(format!("{s:?}"), "Secret(<10 bytes redacted>)");
    }

    #[test]
    fn limits() {
        assert!(Password::new("x".repeat(MAX_PASSWORD_BYTES)).is_ok());
        let err = Password::new("x".repeat(MAX_PASSWORD_BYTES + 1)).expect_err("too long");
        assert_eq!(err.to_string(), "invalid password: 8193 bytes, more than the 8192 allowed");
        assert!(Password::new("a\0b".into()).is_err());
        assert_eq!(Password::new("日本".into()).expect("ok").chars(), 2);
    }

    #[test]
    fn generated_passwords_have_the_length_and_alphabet() {
        let rng = SystemRandom::new();
        for length in [1, 20, 64, MAX_GENERATED_LENGTH] {
            let p = generate_password(length, &rng).expect("generate");
            assert_eq!(p.len(), length);
            assert!(p.as_bytes().iter().all(|b| GENERATED_ALPHABET.contains(b)));
        }
        assert_eq!(GENERATED_ALPHABET.len(), 90);
        assert!(generate_password(0, &rng).is_err());
        assert!(generate_password(MAX_GENERATED_LENGTH + 1, &rng).is_err());
    }
}
