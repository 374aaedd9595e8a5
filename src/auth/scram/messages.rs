//! The four SCRAM messages (RFC 5802, section 7), parsed with bounds and
//! built as PostgreSQL and libpq build them:
//!
//! ```text
//! client-first  n,,n=,r=<client nonce>                  (gs2 header, then the "bare" part)
//! server-first  r=<client nonce><server nonce>,s=<base64 salt>,i=<iterations>
//! client-final  c=biws,r=<combined nonce>,p=<base64 ClientProof>
//! server-final  v=<base64 ServerSignature>   or   e=<error text>
//! ```
//!
//! Every message is 1..=[`MAX_SCRAM_MESSAGE`] bytes without NUL. Attribute
//! order is fixed. Extensions in their designated places are ignored, as
//! RFC 5802 requires, except the reserved mandatory-extension attribute
//! `m`, whose presence fails the exchange. Authorization identities
//! (`a=`) are refused, as PostgreSQL refuses them; the user name (`n=`) is
//! read but not used, as PostgreSQL takes the user from the startup packet.

use core::fmt;

use super::{KEY_LEN, MAX_ITERATIONS, MAX_NONCE_LEN, MAX_SALT_LEN, MAX_SCRAM_MESSAGE};
use super::{b64_decode, b64_decode_key, b64_encode, is_printable_nonce};
use crate::auth::AuthError;

/// The channel-binding flag of the gs2 header. `p=` (binding requested) is
/// refused at parse time, so only the two unbound forms exist here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelBinding {
    /// `n,,`: the client does not support channel binding.
    Unsupported,
    /// `y,,`: the client supports it but thinks the server does not.
    NotOffered,
}

impl ChannelBinding {
    /// The gs2 header as sent.
    pub fn gs2_header(self) -> &'static str {
        match self {
            ChannelBinding::Unsupported => "n,,",
            ChannelBinding::NotOffered => "y,,",
        }
    }

    /// The `c=` value the client-final-message must carry: the base64 of
    /// the gs2 header.
    pub fn attribute(self) -> &'static str {
        match self {
            ChannelBinding::Unsupported => "biws",
            ChannelBinding::NotOffered => "eSws",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientFirst<'a> {
    pub channel_binding: ChannelBinding,
    /// client-first-message-bare: everything after the gs2 header, the
    /// first part of the AuthMessage.
    pub bare: &'a [u8],
    /// The `n=` value as sent (saslname-escaped, possibly empty). Not used.
    pub user: &'a [u8],
    /// The client's nonce, 1..=[`MAX_NONCE_LEN`] printable characters.
    pub nonce: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFirst<'a> {
    /// The combined nonce, up to twice [`MAX_NONCE_LEN`].
    pub nonce: &'a str,
    /// 1..=[`MAX_SALT_LEN`] bytes.
    pub salt: Vec<u8>,
    /// 1..=[`MAX_ITERATIONS`].
    pub iterations: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ClientFinal<'a> {
    /// The `c=` value, still in base64.
    pub channel_binding: &'a [u8],
    pub nonce: &'a str,
    /// client-final-message-without-proof, the last part of the AuthMessage.
    pub without_proof: &'a [u8],
    pub proof: [u8; KEY_LEN],
}

impl fmt::Debug for ClientFinal<'_> {
    // The proof together with a stored key yields the ClientKey: keep it out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientFinal")
            .field("channel_binding", &String::from_utf8_lossy(self.channel_binding))
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFinal {
    /// `v=`: the ServerSignature.
    Verifier([u8; KEY_LEN]),
    /// `e=`: the server's error text (lossily decoded, at most a message long).
    Error(String),
}

type Fail = fn(&'static str) -> AuthError;

/// The checks every SCRAM message passes before its attributes are read.
fn check_message(data: &[u8], fail: Fail) -> Result<(), AuthError> {
    if data.is_empty() {
        return Err(fail("the message is empty"));
    }
    if data.len() > MAX_SCRAM_MESSAGE {
        return Err(fail("the message is longer than 8 KiB"));
    }
    if data.contains(&0) {
        return Err(fail("the message holds a NUL byte"));
    }
    Ok(())
}

/// The value of `part` if it is the attribute `name` (`name=value`).
fn attr(part: Option<&[u8]>, name: u8) -> Option<&[u8]> {
    match part? {
        [n, b'=', value @ ..] if *n == name => Some(value),
        _ => None,
    }
}

/// Extensions in their designated place: each must look like an attribute,
/// `m` fails the exchange, anything else is ignored.
fn extensions<'a>(parts: impl Iterator<Item = &'a [u8]>, fail: Fail) -> Result<(), AuthError> {
    for part in parts {
        match part {
            [b'm', b'=', ..] => return Err(fail("a mandatory extension (m=) is not supported")),
            [name, b'=', ..] if name.is_ascii_alphabetic() => {}
            _ => return Err(fail("an extension is not an attribute")),
        }
    }
    Ok(())
}

fn nonce(value: &[u8], max: usize) -> Option<&str> {
    if !is_printable_nonce(value, max) {
        return None;
    }
    core::str::from_utf8(value).ok()
}

/// A positive decimal number without sign or leading zero, at most `max`.
/// Digits are added one at a time and the bound checked after each, so no
/// input can overflow.
pub(crate) fn positive_number(digits: &[u8], max: u32) -> Option<u32> {
    if digits.first() == Some(&b'0') {
        return None;
    }
    let mut value: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u64::from(d - b'0');
        if value > u64::from(max) {
            return None;
        }
    }
    u32::try_from(value).ok().filter(|&v| v >= 1)
}

/// Whether `digits` is a well-formed positive number, however large.
fn is_decimal(digits: &[u8]) -> bool {
    matches!(digits.first(), Some(b'1'..=b'9')) && digits.iter().all(u8::is_ascii_digit)
}

/// Parse a client-first-message (the server role reads it).
pub fn parse_client_first(data: &[u8]) -> Result<ClientFirst<'_>, AuthError> {
    let fail: Fail = AuthError::ClientFirst;
    check_message(data, fail)?;
    let (flag, rest) = match data {
        [b'n', b',', rest @ ..] => (ChannelBinding::Unsupported, rest),
        [b'y', b',', rest @ ..] => (ChannelBinding::NotOffered, rest),
        [b'p', b'=', ..] => return Err(AuthError::ChannelBindingNotSupported),
        _ => return Err(fail("the gs2 header does not start with n, y or p=")),
    };
    let bare = match rest {
        [b',', bare @ ..] => bare,
        [b'a', b'=', ..] => return Err(fail("an authorization identity (a=) is not supported")),
        _ => return Err(fail("the gs2 header is malformed")),
    };
    let mut parts = bare.split(|&b| b == b',');
    let first = parts.next();
    if attr(first, b'm').is_some() {
        return Err(fail("a mandatory extension (m=) is not supported"));
    }
    let user = attr(first, b'n').ok_or(fail("the user name (n=) is missing"))?;
    let value = attr(parts.next(), b'r').ok_or(fail("the nonce (r=) is missing"))?;
    let nonce = nonce(value, MAX_NONCE_LEN).ok_or(fail("the nonce is not 1..=1024 printable characters"))?;
    extensions(parts, fail)?;
    Ok(ClientFirst { channel_binding: flag, bare, user, nonce })
}

/// Parse a server-first-message (the client role reads it). An iteration
/// count above [`MAX_ITERATIONS`] is refused before any work is done.
pub fn parse_server_first(data: &[u8]) -> Result<ServerFirst<'_>, AuthError> {
    let fail: Fail = AuthError::ServerFirst;
    check_message(data, fail)?;
    let mut parts = data.split(|&b| b == b',');
    let first = parts.next();
    if attr(first, b'm').is_some() {
        return Err(fail("a mandatory extension (m=) is not supported"));
    }
    let value = attr(first, b'r').ok_or(fail("the nonce (r=) is missing"))?;
    let nonce = nonce(value, 2 * MAX_NONCE_LEN).ok_or(fail("the nonce is not 1..=2048 printable characters"))?;
    let value = attr(parts.next(), b's').ok_or(fail("the salt (s=) is missing"))?;
    let salt = b64_decode(value, MAX_SALT_LEN)
        .filter(|s| !s.is_empty())
        .ok_or(fail("the salt is not base64 of 1..=1024 bytes"))?;
    let value = attr(parts.next(), b'i').ok_or(fail("the iteration count (i=) is missing"))?;
    let iterations = match positive_number(value, MAX_ITERATIONS) {
        Some(n) => n,
        None if is_decimal(value) => return Err(fail("the iteration count is above 1000000")),
        None => return Err(fail("the iteration count is not a positive decimal number")),
    };
    extensions(parts, fail)?;
    Ok(ServerFirst { nonce, salt, iterations })
}

/// Parse a client-final-message (the server role reads it). The proof must
/// be the last attribute; extensions may stand between the nonce and it.
pub fn parse_client_final(data: &[u8]) -> Result<ClientFinal<'_>, AuthError> {
    let fail: Fail = AuthError::ClientFinal;
    check_message(data, fail)?;
    let mut parts = data.split(|&b| b == b',');
    let channel_binding = attr(parts.next(), b'c').ok_or(fail("the channel binding (c=) is missing"))?;
    let value = attr(parts.next(), b'r').ok_or(fail("the nonce (r=) is missing"))?;
    let nonce = nonce(value, 2 * MAX_NONCE_LEN).ok_or(fail("the nonce is not 1..=2048 printable characters"))?;
    let mut rest: Vec<&[u8]> = parts.collect();
    let proof_part = rest.pop();
    let proof = attr(proof_part, b'p').ok_or(fail("the proof (p=) is missing or not last"))?;
    let proof = b64_decode_key(proof).ok_or(fail("the proof is not base64 of 32 bytes"))?;
    if rest.iter().any(|part| part.starts_with(b"p=")) {
        return Err(fail("the proof (p=) is not last"));
    }
    extensions(rest.into_iter(), fail)?;
    let cut = data.len().saturating_sub(proof_part.map_or(0, <[u8]>::len) + 1);
    let without_proof = data.get(..cut).ok_or(fail("the message is malformed"))?;
    Ok(ClientFinal { channel_binding, nonce, without_proof, proof })
}

/// Parse a server-final-message (the client role reads it).
pub fn parse_server_final(data: &[u8]) -> Result<ServerFinal, AuthError> {
    let fail: Fail = AuthError::ServerFinal;
    check_message(data, fail)?;
    if let Some(text) = data.strip_prefix(b"e=") {
        // server-error-value holds no ','; extensions may follow it.
        let text = text.split(|&b| b == b',').next().unwrap_or_default();
        return Ok(ServerFinal::Error(String::from_utf8_lossy(text).into_owned()));
    }
    let mut parts = data.split(|&b| b == b',');
    let value = attr(parts.next(), b'v').ok_or(fail("neither a verifier (v=) nor an error (e=)"))?;
    let signature = b64_decode_key(value).ok_or(fail("the verifier is not base64 of 32 bytes"))?;
    extensions(parts, fail)?;
    Ok(ServerFinal::Verifier(signature))
}

/// Escape a user name for `n=` (RFC 5802 saslname: `,` and `=` escaped).
pub fn escape_user(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// client-first-message-bare: `n=<user>,r=<nonce>`; `user` already escaped.
pub(crate) fn client_first_bare(user: &str, nonce: &str) -> Vec<u8> {
    format!("n={user},r={nonce}").into_bytes()
}

/// server-first-message.
pub(crate) fn server_first(nonce: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    format!("r={nonce},s={},i={iterations}", b64_encode(salt)).into_bytes()
}

/// client-final-message-without-proof.
pub(crate) fn client_final_without_proof(channel_binding: ChannelBinding, nonce: &str) -> Vec<u8> {
    format!("c={},r={nonce}", channel_binding.attribute()).into_bytes()
}

/// server-final-message carrying the ServerSignature.
pub(crate) fn server_final(signature: &[u8; KEY_LEN]) -> Vec<u8> {
    format!("v={}", b64_encode(signature)).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROOF: &str = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";

    fn client_first_reason(data: &[u8]) -> &'static str {
        match parse_client_first(data) {
            Err(AuthError::ClientFirst(reason)) => reason,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(data)),
        }
    }

    #[test]
    fn client_first_accepts() {
        let first = parse_client_first(b"n,,n=,r=hTB4Gt/BH7Vx56OiE2UmmRLd").expect("libpq");
        assert_eq!(first.channel_binding, ChannelBinding::Unsupported);
        assert_eq!(
            (first.bare, first.user, first.nonce),
            (&b"n=,r=hTB4Gt/BH7Vx56OiE2UmmRLd"[..], &b""[..], "hTB4Gt/BH7Vx56OiE2UmmRLd")
        );
        let first = parse_client_first(b"y,,n=us=2Cer,r=!~,x=ignored,q=").expect("y flag");
        assert_eq!(
            (first.channel_binding, first.user, first.nonce),
            (ChannelBinding::NotOffered, &b"us=2Cer"[..], "!~")
        );
        assert_eq!(first.bare, b"n=us=2Cer,r=!~,x=ignored,q=");
        let long = format!("n,,n=,r={}", "a".repeat(MAX_NONCE_LEN));
        assert!(parse_client_first(long.as_bytes()).is_ok());
    }

    #[test]
    fn client_first_refuses() {
        assert_eq!(parse_client_first(b"p=tls-server-end-point,,n=,r=abc"), Err(AuthError::ChannelBindingNotSupported));
        assert!(client_first_reason(b"n,a=admin,n=,r=abc").contains("authorization identity"));
        assert!(client_first_reason(b"n,,m=ext,n=,r=abc").contains("mandatory extension"));
        assert!(client_first_reason(b"n,,n=,r=abc,m=ext").contains("mandatory extension"));
        let too_long_nonce = format!("n,,n=,r={}", "a".repeat(MAX_NONCE_LEN + 1));
        let too_long_message = format!("n,,n=,r=abc,x={}", "a".repeat(MAX_SCRAM_MESSAGE));
        for bad in [
            &b""[..],
            b"n",
            b"n,",
            b"n,,",
            b"x,,n=,r=abc",
            b"n,,r=abc",
            b"n,,n=",
            b"n,,n=,r=",
            b"n,,n=,r=a b",
            b"n,,n=,r=caf\xc3\xa9",
            b"n,,n=,r=abc,",
            b"n,,n=,r=abc,1=x",
            b"n,,n=,r=abc,xy",
            b"n,,n=\0,r=abc",
            b"n,x,n=,r=abc",
            too_long_nonce.as_bytes(),
            too_long_message.as_bytes(),
        ] {
            client_first_reason(bad);
        }
    }

    #[test]
    fn server_first_accepts() {
        let first = parse_server_first(b"r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096").expect("postgres");
        assert_eq!((first.nonce, first.salt.len(), first.iterations), ("abcdef", 16, 4096));
        let first = parse_server_first(b"r=ab,s=AA==,i=1,x=ignored").expect("extension, 1-byte salt");
        assert_eq!((first.salt, first.iterations), (vec![0], 1));
        let big_salt = format!("r=ab,s={},i=1000000", b64_encode(&[7; MAX_SALT_LEN]));
        assert_eq!(
            parse_server_first(big_salt.as_bytes()).map(|f| (f.salt.len(), f.iterations)),
            Ok((1024, 1_000_000))
        );
        let long = format!("r={},s=AA==,i=1", "n".repeat(2 * MAX_NONCE_LEN));
        assert!(parse_server_first(long.as_bytes()).is_ok());
    }

    #[test]
    fn server_first_refuses() {
        let too_big_salt = format!("r=ab,s={},i=1", b64_encode(&[7; MAX_SALT_LEN + 1]));
        let too_long_nonce = format!("r={},s=AA==,i=1", "n".repeat(2 * MAX_NONCE_LEN + 1));
        for bad in [
            &b"m=x,r=ab,s=AA==,i=1"[..],
            b"r=ab,s=AA==,i=1,m=x",
            b"r=ab,s=,i=1",
            b"r=ab,s=AA=,i=1",
            b"r=ab,s=A,i=1",
            b"r=ab,s=AA==",
            b"r=ab,i=1,s=AA==",
            b"s=AA==,r=ab,i=1",
            b"r=,s=AA==,i=1",
            b"r=ab,s=AA==,i=",
            b"r=ab,s=AA==,i=0",
            b"r=ab,s=AA==,i=01",
            b"r=ab,s=AA==,i=-1",
            b"r=ab,s=AA==,i=+1",
            b"r=ab,s=AA==,i=1a",
            b"r=ab,s=AA==,i=1000001",
            b"r=ab,s=AA==,i=18446744073709551617",
            too_big_salt.as_bytes(),
            too_long_nonce.as_bytes(),
        ] {
            assert!(
                matches!(parse_server_first(bad), Err(AuthError::ServerFirst(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn client_final_accepts() {
        let msg = format!("c=biws,r=abc,p={PROOF}");
        let last = parse_client_final(msg.as_bytes()).expect("libpq");
        assert_eq!((last.channel_binding, last.nonce, last.without_proof), (&b"biws"[..], "abc", &b"c=biws,r=abc"[..]));
        let msg = format!("c=eSws,r=abc,x=1,y=2,p={PROOF}");
        let last = parse_client_final(msg.as_bytes()).expect("extensions");
        assert_eq!(last.without_proof, b"c=eSws,r=abc,x=1,y=2");
        assert_eq!(b64_encode(&last.proof), PROOF);
        assert!(!format!("{last:?}").contains("dHzb"));
    }

    #[test]
    fn client_final_refuses() {
        for bad in [
            format!("r=abc,p={PROOF}"),
            format!("c=biws,p={PROOF}"),
            "c=biws,r=abc".to_owned(),
            format!("c=biws,r=abc,p={PROOF},x=1"),
            format!("c=biws,r=abc,p={PROOF},p={PROOF}"),
            format!("c=biws,r=abc,m=1,p={PROOF}"),
            format!("c=biws,r=abc,,p={PROOF}"),
            "c=biws,r=abc,p=AAAA".to_owned(),
            format!("c=biws,r=abc,p={PROOF}A"),
            format!("c=biws,r=,p={PROOF}"),
            format!("c=biws,r=a\x7f,p={PROOF}"),
        ] {
            assert!(matches!(parse_client_final(bad.as_bytes()), Err(AuthError::ClientFinal(_))), "{bad}");
        }
    }

    #[test]
    fn server_final_forms() {
        let v = format!("v={PROOF}");
        let Ok(ServerFinal::Verifier(sig)) = parse_server_final(v.as_bytes()) else { panic!("verifier") };
        assert_eq!(b64_encode(&sig), PROOF);
        assert!(matches!(parse_server_final(format!("v={PROOF},x=1").as_bytes()), Ok(ServerFinal::Verifier(_))));
        assert_eq!(parse_server_final(b"e=invalid-proof"), Ok(ServerFinal::Error("invalid-proof".into())));
        assert_eq!(parse_server_final(b"e=other-error,x=1"), Ok(ServerFinal::Error("other-error".into())));
        for bad in [&b""[..], b"v=", b"v=AAAA", b"x=1", b"v=AAAA,e=x", format!("v={PROOF},m=1").as_bytes()] {
            assert!(
                matches!(parse_server_final(bad), Err(AuthError::ServerFinal(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn builders_round_trip() {
        let mut first = ChannelBinding::NotOffered.gs2_header().as_bytes().to_vec();
        first.extend_from_slice(&client_first_bare(&escape_user("a,=b"), "nonce"));
        let parsed = parse_client_first(&first).expect("built");
        assert_eq!((parsed.user, parsed.nonce), (&b"a=2C=3Db"[..], "nonce"));
        let sf = server_first("noncesrv", b"salt", 7);
        assert_eq!(
            parse_server_first(&sf),
            Ok(ServerFirst { nonce: "noncesrv", salt: b"salt".to_vec(), iterations: 7 })
        );
        let mut cf = client_final_without_proof(ChannelBinding::Unsupported, "noncesrv");
        cf.extend_from_slice(format!(",p={PROOF}").as_bytes());
        assert_eq!(parse_client_final(&cf).map(|c| c.without_proof.len()), Ok("c=biws,r=noncesrv".len()));
        assert_eq!(parse_server_final(&server_final(&[9; 32])), Ok(ServerFinal::Verifier([9; 32])));
    }

    #[test]
    fn numbers_never_overflow() {
        assert_eq!(positive_number(b"4096", MAX_ITERATIONS), Some(4096));
        assert_eq!(positive_number(b"4294967295", u32::MAX), Some(u32::MAX));
        assert_eq!(positive_number(b"4294967296", u32::MAX), None);
        assert_eq!(positive_number(&[b'9'; 400], u32::MAX), None);
        assert_eq!(positive_number(b"", 10), None);
        assert_eq!(positive_number(b"0", 10), None);
    }
}
