//! The first packet a client sends: it has no tag, only a length and a code.
//! The parser returns `Ok(None)` until the whole packet is there, and bounds
//! the declared length before anything is read into a packet.

/// `SSLRequest` code.
pub const SSL_REQUEST_CODE: u32 = 80_877_103;
/// `GSSENCRequest` code.
pub const GSSENC_REQUEST_CODE: u32 = 80_877_104;
/// `CancelRequest` code.
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;
/// Protocol 3.0 as a StartupMessage version field.
pub const PROTOCOL_3_0: u32 = 3 << 16;
/// Largest startup packet accepted, as PostgreSQL's own limit.
pub const MAX_STARTUP_PACKET: usize = 10_000;
/// PostgreSQL truncates names to NAMEDATALEN - 1 bytes.
pub const MAX_NAME_BYTES: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    /// CancelRequest with the key the client got in BackendKeyData.
    Cancel {
        pid: i32,
        secret: Vec<u8>,
    },
    /// StartupMessage of protocol 3.x.
    Startup(Startup),
}

/// A StartupMessage's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Startup {
    /// Minor protocol version the client asked for (0 for 3.0).
    pub minor: u16,
    pub user: String,
    /// The database, which defaults to the user name.
    pub database: String,
    pub application_name: Option<String>,
    /// Every parameter as sent, in order, including user and database.
    pub params: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartupError {
    #[error("invalid length of startup packet: {0}")]
    BadLength(u32),
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0")]
    UnsupportedVersion { major: u16, minor: u16 },
    #[error("invalid startup packet layout: {0}")]
    Malformed(&'static str),
    #[error("no PostgreSQL user name specified in startup packet")]
    NoUser,
}

/// Parse the first packet. `Ok(None)` means more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<(StartupPacket, usize)>, StartupError> {
    let Some(len_bytes) = buf.get(..4) else { return Ok(None) };
    let declared = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
    let len = declared as usize;
    if !(8..=MAX_STARTUP_PACKET).contains(&len) {
        return Err(StartupError::BadLength(declared));
    }
    let Some(packet) = buf.get(..len) else { return Ok(None) };
    let code = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    let body = &packet[8..];
    let parsed = match code {
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => {
            if len != 8 {
                return Err(StartupError::BadLength(declared));
            }
            if code == SSL_REQUEST_CODE { StartupPacket::SslRequest } else { StartupPacket::GssEncRequest }
        }
        CANCEL_REQUEST_CODE => {
            // 3.0 keys are 4 bytes; 3.2 allows up to 256.
            if body.len() < 8 || body.len() > 4 + 256 {
                return Err(StartupError::BadLength(declared));
            }
            let pid = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
            StartupPacket::Cancel { pid, secret: body[4..].to_vec() }
        }
        _ => {
            let major = (code >> 16) as u16;
            let minor = (code & 0xffff) as u16;
            if major != 3 {
                return Err(StartupError::UnsupportedVersion { major, minor });
            }
            StartupPacket::Startup(parse_params(minor, body)?)
        }
    };
    Ok(Some((parsed, len)))
}

fn truncate_name(mut name: String) -> String {
    if name.len() > MAX_NAME_BYTES {
        let mut end = MAX_NAME_BYTES;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

fn parse_params(minor: u16, body: &[u8]) -> Result<Startup, StartupError> {
    let mut params = Vec::new();
    let mut rest = body;
    loop {
        let Some(nul) = rest.iter().position(|&b| b == 0) else {
            return Err(StartupError::Malformed("missing terminator"));
        };
        if nul == 0 {
            if rest.len() != 1 {
                return Err(StartupError::Malformed("bytes after the terminator"));
            }
            break;
        }
        let name = String::from_utf8_lossy(&rest[..nul]).into_owned();
        rest = &rest[nul + 1..];
        let Some(vnul) = rest.iter().position(|&b| b == 0) else {
            return Err(StartupError::Malformed("parameter without a value"));
        };
        let value = String::from_utf8_lossy(&rest[..vnul]).into_owned();
        rest = &rest[vnul + 1..];
        params.push((name, value));
    }
    let get = |key: &str| params.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let user = get("user").filter(|u| !u.is_empty()).ok_or(StartupError::NoUser)?;
    let database = get("database").filter(|d| !d.is_empty()).unwrap_or_else(|| user.clone());
    Ok(Startup {
        minor,
        user: truncate_name(user),
        database: truncate_name(database),
        application_name: get("application_name"),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encode;

    #[test]
    fn ssl_and_gss_requests() {
        let ssl = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
        assert_eq!(parse(&ssl), Ok(Some((StartupPacket::SslRequest, 8))));
        let gss = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
        assert_eq!(parse(&gss), Ok(Some((StartupPacket::GssEncRequest, 8))));
        assert_eq!(parse(&ssl[..5]), Ok(None));
    }

    #[test]
    fn startup_round_trip() {
        let packet = encode::startup_message(&[("user", "alice"), ("database", "app"), ("application_name", "psql")]);
        let (parsed, used) = parse(&packet).expect("valid").expect("complete");
        assert_eq!(used, packet.len());
        let StartupPacket::Startup(s) = parsed else { panic!("not a startup") };
        assert_eq!((s.user.as_str(), s.database.as_str()), ("alice", "app"));
        assert_eq!(s.application_name.as_deref(), Some("psql"));
        let packet = encode::startup_message(&[("user", "bob")]);
        let Some((StartupPacket::Startup(s), _)) = parse(&packet).expect("valid") else { panic!() };
        assert_eq!(s.database, "bob");
    }

    #[test]
    fn bad_packets() {
        assert_eq!(parse(&[0xff, 0xff, 0xff, 0xff]), Err(StartupError::BadLength(u32::MAX)));
        assert_eq!(parse(&[0, 0, 0, 2]), Err(StartupError::BadLength(2)));
        assert!(matches!(parse(&[0, 0, 0, 8, 0, 2, 0, 0]), Err(StartupError::UnsupportedVersion { major: 2, .. })));
        let no_user = encode::startup_message(&[("database", "x")]);
        assert_eq!(parse(&no_user), Err(StartupError::NoUser));
        let mut broken = encode::startup_message(&[("user", "x")]);
        let last = broken.len() - 1;
        broken[last] = b'y';
        assert!(parse(&broken).is_err());
    }

    #[test]
    fn long_names_are_truncated_like_postgres() {
        let long = "é".repeat(40);
        let packet = encode::startup_message(&[("user", &long)]);
        let Some((StartupPacket::Startup(s), _)) = parse(&packet).expect("valid") else { panic!() };
        assert!(s.user.len() <= MAX_NAME_BYTES);
        assert_eq!(s.user.len(), 62);
    }
}
