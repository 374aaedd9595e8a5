//! Messages from the server that the pooler reads itself (during connection
//! start-up and session reset). Everything else is relayed without parsing.

use super::frame::{Frame, Reader};

/// The `Authentication*` request codes.
pub mod auth_code {
    pub const OK: i32 = 0;
    pub const KERBEROS_V5: i32 = 2;
    pub const CLEARTEXT_PASSWORD: i32 = 3;
    pub const MD5_PASSWORD: i32 = 5;
    pub const GSS: i32 = 7;
    pub const GSS_CONTINUE: i32 = 8;
    pub const SSPI: i32 = 9;
    pub const SASL: i32 = 10;
    pub const SASL_CONTINUE: i32 = 11;
    pub const SASL_FINAL: i32 = 12;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendMessage<'a> {
    /// `R` with its code; the rest of the body is left to the caller.
    Authentication {
        code: i32,
        data: &'a [u8],
    },
    ParameterStatus {
        name: &'a [u8],
        value: &'a [u8],
    },
    BackendKeyData {
        pid: i32,
        secret: &'a [u8],
    },
    ReadyForQuery {
        status: u8,
    },
    ErrorResponse(ErrorFields),
    NoticeResponse,
    CommandComplete,
    NegotiateProtocolVersion,
    /// Any other tag; relayed or ignored by the caller.
    Other {
        tag: u8,
    },
}

/// The fields of an ErrorResponse that decisions and logs need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    /// Non-localised severity (`V`), else the localised one (`S`).
    pub severity: String,
    pub code: String,
    pub message: String,
}

impl ErrorFields {
    /// FATAL and PANIC end the server session.
    pub fn is_fatal(&self) -> bool {
        self.severity == "FATAL" || self.severity == "PANIC"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed '{}' message from the server", *tag as char)]
pub struct MalformedBackend {
    pub tag: u8,
}

/// The fields of an ErrorResponse (or NoticeResponse) body.
pub fn error_fields(body: &[u8]) -> ErrorFields {
    let mut fields = ErrorFields::default();
    let mut reader = Reader::new(body);
    let mut localised = String::new();
    while let Some(kind) = reader.u8() {
        if kind == 0 {
            break;
        }
        let Some(text) = reader.cstr() else { break };
        let text = String::from_utf8_lossy(text).into_owned();
        match kind {
            b'V' => fields.severity = text,
            b'S' => localised = text,
            b'C' => fields.code = text,
            b'M' => fields.message = text,
            _ => {}
        }
    }
    if fields.severity.is_empty() {
        fields.severity = localised;
    }
    fields
}

/// Most columns accepted in one DataRow read by the pooler itself.
pub const MAX_DATA_ROW_COLUMNS: usize = 64;

/// The columns of a DataRow body (`D`): each a value or NULL. Lengths are
/// checked against the body before anything is taken.
pub fn data_row(body: &[u8]) -> Result<Vec<Option<&[u8]>>, MalformedBackend> {
    let bad = MalformedBackend { tag: b'D' };
    let (count, mut rest) = body.split_first_chunk::<2>().ok_or(bad)?;
    let count = usize::from(u16::from_be_bytes(*count));
    if count > MAX_DATA_ROW_COLUMNS {
        return Err(bad);
    }
    let mut columns = Vec::with_capacity(count);
    for _ in 0..count {
        let (len, after) = rest.split_first_chunk::<4>().ok_or(bad)?;
        let len = i32::from_be_bytes(*len);
        if len == -1 {
            columns.push(None);
            rest = after;
            continue;
        }
        let len = usize::try_from(len).map_err(|_| bad)?;
        let value = after.get(..len).ok_or(bad)?;
        columns.push(Some(value));
        rest = &after[len..];
    }
    if !rest.is_empty() {
        return Err(bad);
    }
    Ok(columns)
}

/// A ParameterStatus body: the setting's name and value.
pub fn parameter_status(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut r = Reader::new(body);
    Some((r.cstr()?, r.cstr()?))
}

/// Interpret a whole message from the server.
pub fn parse<'a>(frame: &Frame<'a>) -> Result<BackendMessage<'a>, MalformedBackend> {
    let bad = MalformedBackend { tag: frame.tag };
    let mut r = Reader::new(frame.body);
    Ok(match frame.tag {
        b'R' => {
            let code = r.i32().ok_or(bad)?;
            BackendMessage::Authentication { code, data: r.rest() }
        }
        b'S' => {
            let (name, value) = parameter_status(frame.body).ok_or(bad)?;
            BackendMessage::ParameterStatus { name, value }
        }
        b'K' => {
            let pid = r.i32().ok_or(bad)?;
            let secret = r.rest();
            if secret.len() < 4 || secret.len() > 256 {
                return Err(bad);
            }
            BackendMessage::BackendKeyData { pid, secret }
        }
        b'Z' => {
            let status = r.u8().ok_or(bad)?;
            if !matches!(status, b'I' | b'T' | b'E') || !r.rest().is_empty() {
                return Err(bad);
            }
            BackendMessage::ReadyForQuery { status }
        }
        b'E' => BackendMessage::ErrorResponse(error_fields(frame.body)),
        b'N' => BackendMessage::NoticeResponse,
        b'C' => BackendMessage::CommandComplete,
        b'v' => BackendMessage::NegotiateProtocolVersion,
        tag => BackendMessage::Other { tag },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{encode, frame};

    fn one(bytes: &[u8]) -> BackendMessage<'_> {
        let f = frame::split(bytes, 1 << 20).expect("frame").expect("whole");
        parse(&f).expect("parses")
    }

    #[test]
    fn error_response_fields() {
        let bytes = encode::error_response("FATAL", "53300", "connection pool is full");
        let BackendMessage::ErrorResponse(e) = one(&bytes) else { panic!("not an error") };
        assert_eq!((e.severity.as_str(), e.code.as_str()), ("FATAL", "53300"));
        assert_eq!(e.message, "connection pool is full");
        assert!(e.is_fatal());
    }

    #[test]
    fn data_rows_are_bounded() {
        assert_eq!(data_row(&[0, 2, 0, 0, 0, 1, b'x', 0xff, 0xff, 0xff, 0xff]), Ok(vec![Some(&b"x"[..]), None]));
        assert!(data_row(&[0, 1, 0, 0, 0, 9, b'x']).is_err(), "declared past the end");
        assert!(data_row(&[0, 1, 0x80, 0, 0, 0]).is_err(), "negative length");
        assert!(data_row(&[0, 0, 1]).is_err(), "trailing bytes");
        assert!(data_row(&[0xff, 0xff]).is_err(), "too many columns");
    }

    #[test]
    fn ready_and_key() {
        assert_eq!(one(&encode::ready_for_query(b'T')), BackendMessage::ReadyForQuery { status: b'T' });
        let key = [b'K', 0, 0, 0, 12, 0, 0, 0, 7, 1, 2, 3, 4];
        assert_eq!(one(&key), BackendMessage::BackendKeyData { pid: 7, secret: &[1, 2, 3, 4] });
        let f = frame::split(&[b'Z', 0, 0, 0, 5, b'Q'], 10).expect("f").expect("w");
        assert!(parse(&f).is_err());
        let f = frame::split(&[b'K', 0, 0, 0, 6, 0, 0], 10).expect("f").expect("w");
        assert!(parse(&f).is_err());
    }
}
