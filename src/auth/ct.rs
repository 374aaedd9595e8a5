//! Comparisons and clean-up for secret bytes. [`ct_eq`] compares proofs,
//! signatures and MD5 responses without letting the position of the first
//! differing byte show in its running time; `wipe` overwrites secret
//! material before its memory is given back.
//!
//! Lengths are not secret here (a SCRAM proof is always 32 bytes, an MD5
//! response always 35), so a length difference returns at once.

use core::hint::black_box;

/// Whether `a` and `b` hold the same bytes, in time that depends only on
/// their lengths.
///
/// Every byte pair is combined into one accumulator with `|=` and the
/// accumulator passes through [`black_box`] at each step, so the compiler
/// cannot turn the loop into one that stops at the first difference.
///
/// ```
/// use pgagroal::auth::ct_eq;
/// assert!(ct_eq(b"proof", b"proof"));
/// assert!(!ct_eq(b"proof", b"pro0f"));
/// ```
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
        diff = black_box(diff);
    }
    black_box(diff) == 0
}

/// `a XOR b` for two 32-byte values (ClientKey XOR ClientSignature).
pub(crate) fn xor32(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x ^ y;
    }
    out
}

/// Overwrite secret bytes with zeros before their memory is released.
///
/// Best effort: the writes go through [`black_box`] so they are not removed
/// as dead stores, but copies the compiler made elsewhere (moves, registers)
/// are out of reach.
pub(crate) fn wipe(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        *b = 0;
    }
    black_box(buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_and_unequal() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"bbc"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"", b"a"));
    }

    #[test]
    fn every_single_bit_flip_is_seen() {
        let a = [0x5au8; 32];
        for i in 0..a.len() {
            for bit in 0..8 {
                let mut b = a;
                b[i] ^= 1 << bit;
                assert!(!ct_eq(&a, &b), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn xor_is_its_own_inverse() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        for i in 0..32 {
            a[i] = i as u8;
            b[i] = 0xff - 3 * i as u8;
        }
        let x = xor32(&a, &b);
        assert_eq!(xor32(&x, &b), a);
        assert_eq!(xor32(&x, &a), b);
        assert_eq!(xor32(&a, &a), [0u8; 32]);
    }

    #[test]
    fn wipe_zeroes() {
        let mut secret = *b"hunter2 hunter2";
        wipe(&mut secret);
        assert_eq!(secret, [0u8; 15]);
        let mut empty: [u8; 0] = [];
        wipe(&mut empty);
    }
}
