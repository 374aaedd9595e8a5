//! The PostgreSQL messages that carry authentication: the backend's
//! `Authentication*` requests (cleartext, MD5, SASL, SASLContinue,
//! SASLFinal) and the frontend's answers (PasswordMessage,
//! SASLInitialResponse, SASLResponse), all `'p'` on the wire. Parsers take
//! a message body already split off by [`crate::protocol::frame`] (so its
//! length is bounded) and borrow from it; encoders return whole messages,
//! tag and length included.
//!
//! The SCRAM payloads inside SASL messages are the business of
//! [`super::scram`]; this file only frames them.

use crate::auth::AuthError;
use crate::protocol::backend::auth_code;
use crate::protocol::encode::{begin, cstr, finish};
use crate::protocol::frame::Reader;
use crate::protocol::frontend::PASSWORD_MESSAGE;

/// The one SASL mechanism the pooler speaks, in both roles.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

/// The channel-binding variant, which the pooler never offers.
pub const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// Most mechanism names accepted in one AuthenticationSASL (PostgreSQL
/// sends one or two).
pub const MAX_MECHANISMS: usize = 16;

/// A frontend SASLInitialResponse: the mechanism the client chose and its
/// first message, if it sent one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitialResponse<'a> {
    pub mechanism: &'a str,
    /// `None` when the declared length is -1 (no initial response).
    pub data: Option<&'a [u8]>,
}

/// The mechanism names of an AuthenticationSASL, given the body after its
/// Int32 code: NUL-terminated names, the list ending with an empty name.
/// At most [`MAX_MECHANISMS`] names; nothing may follow the terminator.
pub fn parse_mechanisms(data: &[u8]) -> Result<Vec<&str>, AuthError> {
    let mut r = Reader::new(data);
    let mut names = Vec::new();
    loop {
        let name = r.cstr().ok_or(AuthError::Mechanisms("the list is not terminated"))?;
        if name.is_empty() {
            break;
        }
        if names.len() == MAX_MECHANISMS {
            return Err(AuthError::Mechanisms("more than 16 mechanisms"));
        }
        names.push(core::str::from_utf8(name).map_err(|_| AuthError::Mechanisms("a name is not UTF-8"))?);
    }
    if names.is_empty() {
        return Err(AuthError::Mechanisms("no mechanism offered"));
    }
    if !r.rest().is_empty() {
        return Err(AuthError::Mechanisms("bytes after the end of the list"));
    }
    Ok(names)
}

/// A SASLInitialResponse body: the mechanism name as a C string, an Int32
/// length (-1 for no data) and exactly that many bytes of data.
pub fn parse_initial_response(body: &[u8]) -> Result<InitialResponse<'_>, AuthError> {
    let mut r = Reader::new(body);
    let mechanism = r.cstr().ok_or(AuthError::InitialResponse("the mechanism name is not terminated"))?;
    if mechanism.is_empty() {
        return Err(AuthError::InitialResponse("the mechanism name is empty"));
    }
    let mechanism =
        core::str::from_utf8(mechanism).map_err(|_| AuthError::InitialResponse("the mechanism name is not UTF-8"))?;
    let declared = r.i32().ok_or(AuthError::InitialResponse("the data length is missing"))?;
    let rest = r.rest();
    let data = match declared {
        -1 if rest.is_empty() => None,
        -1 => return Err(AuthError::InitialResponse("data follows a length of -1")),
        n => {
            let n = usize::try_from(n).map_err(|_| AuthError::InitialResponse("negative data length"))?;
            if n != rest.len() {
                return Err(AuthError::InitialResponse("the data length does not match the message"));
            }
            Some(rest)
        }
    };
    Ok(InitialResponse { mechanism, data })
}

/// A PasswordMessage body: one C string (a cleartext password or an MD5
/// response) and nothing after its NUL. Returns the bytes before the NUL.
pub fn parse_password_message(body: &[u8]) -> Result<&[u8], AuthError> {
    let mut r = Reader::new(body);
    let password = r.cstr().ok_or(AuthError::PasswordMessage("the password is not terminated"))?;
    if !r.rest().is_empty() {
        return Err(AuthError::PasswordMessage("bytes after the password's NUL"));
    }
    Ok(password)
}

fn authentication(code: i32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + data.len());
    let at = begin(&mut out, Some(b'R'));
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(data);
    finish(&mut out, at);
    out
}

/// AuthenticationSASL (`R`, code 10) offering `mechanisms`. NUL bytes in a
/// name are dropped and names left empty are skipped, since either would
/// end the list early.
pub fn authentication_sasl(mechanisms: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + mechanisms.iter().map(|m| m.len() + 1).sum::<usize>());
    let at = begin(&mut out, Some(b'R'));
    out.extend_from_slice(&auth_code::SASL.to_be_bytes());
    for name in mechanisms.iter().filter(|m| m.bytes().any(|b| b != 0)) {
        cstr(&mut out, name);
    }
    out.push(0);
    finish(&mut out, at);
    out
}

/// AuthenticationSASLContinue (`R`, code 11) carrying a server-first-message.
pub fn authentication_sasl_continue(data: &[u8]) -> Vec<u8> {
    authentication(auth_code::SASL_CONTINUE, data)
}

/// AuthenticationSASLFinal (`R`, code 12) carrying a server-final-message.
pub fn authentication_sasl_final(data: &[u8]) -> Vec<u8> {
    authentication(auth_code::SASL_FINAL, data)
}

/// AuthenticationMD5Password (`R`, code 5) with its 4-byte salt.
pub fn authentication_md5_password(salt: [u8; 4]) -> [u8; 13] {
    let [c0, c1, c2, c3] = auth_code::MD5_PASSWORD.to_be_bytes();
    let [s0, s1, s2, s3] = salt;
    [b'R', 0, 0, 0, 12, c0, c1, c2, c3, s0, s1, s2, s3]
}

/// AuthenticationCleartextPassword (`R`, code 3).
pub fn authentication_cleartext_password() -> [u8; 9] {
    let [c0, c1, c2, c3] = auth_code::CLEARTEXT_PASSWORD.to_be_bytes();
    [b'R', 0, 0, 0, 8, c0, c1, c2, c3]
}

/// SASLInitialResponse (`p`): the chosen mechanism, then the client's first
/// message with its length, or length -1 when `data` is `None`.
pub fn sasl_initial_response(mechanism: &str, data: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + mechanism.len() + data.map_or(0, <[u8]>::len));
    let at = begin(&mut out, Some(PASSWORD_MESSAGE));
    cstr(&mut out, mechanism);
    match data {
        Some(data) => {
            // Messages from the SCRAM state machines are a few hundred bytes.
            let len = i32::try_from(data.len()).unwrap_or(i32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(data);
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
    finish(&mut out, at);
    out
}

/// SASLResponse (`p`): a later client message, with no length of its own.
pub fn sasl_response(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + data.len());
    let at = begin(&mut out, Some(PASSWORD_MESSAGE));
    out.extend_from_slice(data);
    finish(&mut out, at);
    out
}

/// PasswordMessage (`p`) with a cleartext password or an MD5 response as a
/// C string. A password holding a NUL byte cannot be sent and is refused
/// rather than cut short.
pub fn password_message(password: &[u8]) -> Result<Vec<u8>, AuthError> {
    if password.contains(&0) {
        return Err(AuthError::PasswordNul);
    }
    let mut out = Vec::with_capacity(6 + password.len());
    let at = begin(&mut out, Some(PASSWORD_MESSAGE));
    out.extend_from_slice(password);
    out.push(0);
    finish(&mut out, at);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::backend::{self, BackendMessage};
    use crate::protocol::frame;

    fn body(msg: &[u8]) -> (u8, &[u8]) {
        let f = frame::split(msg, 1 << 16).expect("frame").expect("whole");
        assert_eq!(f.len(), msg.len());
        (f.tag, f.body)
    }

    #[test]
    fn mechanisms_round_trip() {
        let msg = authentication_sasl(&[SCRAM_SHA_256_PLUS, SCRAM_SHA_256]);
        let f = frame::split(&msg, 1 << 16).expect("frame").expect("whole");
        let BackendMessage::Authentication { code, data } = backend::parse(&f).expect("parses") else {
            panic!("not an authentication request")
        };
        assert_eq!(code, auth_code::SASL);
        assert_eq!(parse_mechanisms(data), Ok(vec![SCRAM_SHA_256_PLUS, SCRAM_SHA_256]));
        // What PostgreSQL 15 sent in the recorded exchange (scram/tests.rs).
        let recorded = b"R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256\0\0";
        assert_eq!(authentication_sasl(&[SCRAM_SHA_256]), recorded);
        assert_eq!(authentication_sasl(&["", "\0", SCRAM_SHA_256]), authentication_sasl(&[SCRAM_SHA_256]));
    }

    #[test]
    fn mechanisms_bounds() {
        assert!(matches!(parse_mechanisms(b""), Err(AuthError::Mechanisms(_))));
        assert!(matches!(parse_mechanisms(b"\0"), Err(AuthError::Mechanisms(_))));
        assert!(matches!(parse_mechanisms(b"SCRAM-SHA-256"), Err(AuthError::Mechanisms(_))));
        assert!(matches!(parse_mechanisms(b"SCRAM-SHA-256\0"), Err(AuthError::Mechanisms(_))));
        assert!(matches!(parse_mechanisms(b"A\0\0junk"), Err(AuthError::Mechanisms(_))));
        assert!(matches!(parse_mechanisms(b"\xff\0\0"), Err(AuthError::Mechanisms(_))));
        let sixteen = b"A\0".repeat(16);
        let mut list = sixteen.clone();
        list.push(0);
        assert_eq!(parse_mechanisms(&list).map(|v| v.len()), Ok(16));
        let mut list = sixteen;
        list.extend_from_slice(b"B\0\0");
        assert_eq!(parse_mechanisms(&list), Err(AuthError::Mechanisms("more than 16 mechanisms")));
    }

    #[test]
    fn initial_response_round_trip() {
        // The SASLInitialResponse libpq sent in the recorded exchange.
        let recorded = b"SCRAM-SHA-256\0\0\0\0\x20n,,n=,r=hTB4Gt/BH7Vx56OiE2UmmRLd";
        let parsed = parse_initial_response(recorded).expect("parses");
        assert_eq!(parsed.mechanism, SCRAM_SHA_256);
        assert_eq!(parsed.data, Some(&b"n,,n=,r=hTB4Gt/BH7Vx56OiE2UmmRLd"[..]));
        let msg = sasl_initial_response(SCRAM_SHA_256, parsed.data);
        assert_eq!(body(&msg), (b'p', &recorded[..]));

        let none = sasl_initial_response(SCRAM_SHA_256, None);
        let (_, b) = body(&none);
        assert_eq!(parse_initial_response(b), Ok(InitialResponse { mechanism: SCRAM_SHA_256, data: None }));
        let empty = sasl_initial_response(SCRAM_SHA_256, Some(b""));
        let (_, b) = body(&empty);
        assert_eq!(parse_initial_response(b).map(|r| r.data), Ok(Some(&b""[..])));
    }

    #[test]
    fn initial_response_rejects_bad_lengths() {
        let bad: [&[u8]; 8] = [
            b"",
            b"SCRAM-SHA-256",
            b"\0\0\0\0\0",
            b"SCRAM-SHA-256\0\0\0",
            b"SCRAM-SHA-256\0\0\0\0\x02a",
            b"SCRAM-SHA-256\0\0\0\0\x01ab",
            b"SCRAM-SHA-256\0\xff\xff\xff\xffa",
            b"SCRAM-SHA-256\0\xff\xff\xff\xfe",
        ];
        for b in bad {
            assert!(matches!(parse_initial_response(b), Err(AuthError::InitialResponse(_))), "{b:?}");
        }
        assert!(parse_initial_response(b"SCRAM-SHA-256\0\x80\0\0\0").is_err());
    }

    #[test]
    fn fixed_requests() {
        let md5 = authentication_md5_password([0x44, 0xe3, 0x6c, 0xfc]);
        let f = frame::split(&md5, 64).expect("frame").expect("whole");
        assert_eq!(f.len(), md5.len());
        assert_eq!(
            backend::parse(&f),
            Ok(BackendMessage::Authentication { code: auth_code::MD5_PASSWORD, data: &[0x44, 0xe3, 0x6c, 0xfc] })
        );
        let clear = authentication_cleartext_password();
        let f = frame::split(&clear, 64).expect("frame").expect("whole");
        assert_eq!(f.len(), clear.len());
        assert_eq!(backend::parse(&f), Ok(BackendMessage::Authentication { code: 3, data: &[] }));
        assert_eq!(body(&authentication_sasl_continue(b"r=abc")), (b'R', &b"\0\0\0\x0br=abc"[..]));
        assert_eq!(body(&authentication_sasl_final(b"v=x")), (b'R', &b"\0\0\0\x0cv=x"[..]));
    }

    #[test]
    fn frontend_answers() {
        assert_eq!(sasl_response(b"c=biws"), b"p\0\0\0\x0ac=biws");
        let pw = password_message(b"md5df16a6413d72488af720903e31a10857").expect("no NUL");
        let (tag, b) = body(&pw);
        assert_eq!(tag, b'p');
        assert_eq!(parse_password_message(b), Ok(&b"md5df16a6413d72488af720903e31a10857"[..]));
        assert_eq!(password_message(b"a\0b"), Err(AuthError::PasswordNul));
        assert_eq!(password_message(b"").map(|m| m.len()), Ok(6));
        assert!(parse_password_message(b"abc").is_err());
        assert!(parse_password_message(b"abc\0d").is_err());
        assert_eq!(parse_password_message(b"\0"), Ok(&b""[..]));
    }
}
