//! Messages the pooler writes itself. Each encoder writes the header with a
//! placeholder length and backfills it once the body is known.

pub(crate) fn begin(out: &mut Vec<u8>, tag: Option<u8>) -> usize {
    if let Some(tag) = tag {
        out.push(tag);
    }
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    at
}

pub(crate) fn finish(out: &mut [u8], at: usize) {
    let len = (out.len() - at) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

pub(crate) fn cstr(out: &mut Vec<u8>, s: &str) {
    // A NUL inside would end the string early on the other side.
    out.extend(s.bytes().filter(|&b| b != 0));
    out.push(0);
}

/// StartupMessage for protocol 3.0.
pub fn startup_message(params: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let at = begin(&mut out, None);
    out.extend_from_slice(&super::startup::PROTOCOL_3_0.to_be_bytes());
    for (k, v) in params {
        cstr(&mut out, k);
        cstr(&mut out, v);
    }
    out.push(0);
    finish(&mut out, at);
    out
}

/// ErrorResponse with severity, SQLSTATE and message.
pub fn error_response(severity: &str, code: &str, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + message.len());
    append_error_response(&mut out, severity, code, message);
    out
}

pub fn append_error_response(out: &mut Vec<u8>, severity: &str, code: &str, message: &str) {
    append_error_fields(out, &[(b'S', severity), (b'V', severity), (b'C', code), (b'M', message)]);
}

/// An ErrorResponse with these fields (kind, text), in this order.
pub fn append_error_fields(out: &mut Vec<u8>, fields: &[(u8, &str)]) {
    let at = begin(out, Some(b'E'));
    for (kind, text) in fields {
        out.push(*kind);
        cstr(out, text);
    }
    out.push(0);
    finish(out, at);
}

pub fn authentication_ok() -> [u8; 9] {
    [b'R', 0, 0, 0, 8, 0, 0, 0, 0]
}

pub fn ready_for_query(status: u8) -> [u8; 6] {
    [b'Z', 0, 0, 0, 5, status]
}

/// ParameterStatus: a setting's name and value, as the server reports it.
pub fn append_parameter_status(out: &mut Vec<u8>, name: &str, value: &str) {
    let at = begin(out, Some(b'S'));
    cstr(out, name);
    cstr(out, value);
    finish(out, at);
}

/// BackendKeyData with a protocol 3.0 (four-byte) secret.
pub fn append_backend_key_data(out: &mut Vec<u8>, pid: i32, secret: u32) {
    out.push(b'K');
    out.extend_from_slice(&12u32.to_be_bytes());
    out.extend_from_slice(&pid.to_be_bytes());
    out.extend_from_slice(&secret.to_be_bytes());
}

pub fn terminate() -> [u8; 5] {
    [b'X', 0, 0, 0, 4]
}

/// Append a simple Query.
pub fn append_query(out: &mut Vec<u8>, sql: &str) {
    let at = begin(out, Some(b'Q'));
    cstr(out, sql);
    finish(out, at);
}

/// A one-statement extended-protocol round: Parse (unnamed, untyped
/// parameters), Bind with text parameters, Execute and Sync. Values travel
/// as parameters, never inside the SQL text.
pub fn extended_query(sql: &str, params: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + sql.len());
    let at = begin(&mut out, Some(b'P'));
    cstr(&mut out, "");
    cstr(&mut out, sql);
    out.extend_from_slice(&0u16.to_be_bytes());
    finish(&mut out, at);
    let at = begin(&mut out, Some(b'B'));
    cstr(&mut out, "");
    cstr(&mut out, "");
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&(params.len() as u16).to_be_bytes());
    for p in params {
        out.extend_from_slice(&(p.len() as u32).to_be_bytes());
        out.extend_from_slice(p.as_bytes());
    }
    out.extend_from_slice(&0u16.to_be_bytes());
    finish(&mut out, at);
    let at = begin(&mut out, Some(b'E'));
    cstr(&mut out, "");
    out.extend_from_slice(&0u32.to_be_bytes());
    finish(&mut out, at);
    out.extend_from_slice(&[b'S', 0, 0, 0, 4]);
    out
}

/// NegotiateProtocolVersion: the newest minor version spoken and the
/// protocol options (`_pq_.*`) that were not recognised.
pub fn negotiate_protocol_version(minor: u32, unrecognised: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    let at = begin(&mut out, Some(b'v'));
    out.extend_from_slice(&minor.to_be_bytes());
    out.extend_from_slice(&(unrecognised.len() as u32).to_be_bytes());
    for name in unrecognised {
        cstr(&mut out, name);
    }
    finish(&mut out, at);
    out
}

/// SSLRequest packet.
pub fn ssl_request() -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&8u32.to_be_bytes());
    out[4..].copy_from_slice(&super::startup::SSL_REQUEST_CODE.to_be_bytes());
    out
}

/// CancelRequest packet.
pub fn cancel_request(pid: i32, secret: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + secret.len());
    let at = begin(&mut out, None);
    out.extend_from_slice(&super::startup::CANCEL_REQUEST_CODE.to_be_bytes());
    out.extend_from_slice(&pid.to_be_bytes());
    out.extend_from_slice(secret);
    finish(&mut out, at);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_backfilled() {
        let mut q = Vec::new();
        append_query(&mut q, "SELECT 1");
        assert_eq!(q, b"Q\0\0\0\x0dSELECT 1\0");
        let s = startup_message(&[("user", "u")]);
        assert_eq!(u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize, s.len());
        let c = cancel_request(5, &[1, 2, 3, 4]);
        assert_eq!(c.len(), 16);
    }
}
