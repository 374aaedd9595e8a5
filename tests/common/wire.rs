//! A raw protocol client for tests that must see exactly what the pooler
//! sends: which authentication request comes first, the bytes of a SCRAM
//! server-first-message, the SQLSTATE of a refusal, how long it took.

use pgagroal::auth::sasl;
use pgagroal::protocol::encode;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One message from the server: its tag and body.
pub type Message = (u8, Vec<u8>);

pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    /// Connect and send a StartupMessage for `user` on `database`.
    pub fn start(port: u16, user: &str, database: &str) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the pooler");
        stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        let mut raw = Raw { stream };
        raw.send(&encode::startup_message(&[("user", user), ("database", database)]));
        raw
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the pooler");
    }

    /// The next whole message, or None when the pooler closed (or 20 s passed).
    pub fn read(&mut self) -> Option<Message> {
        let mut header = [0u8; 5];
        self.stream.read_exact(&mut header).ok()?;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut body = vec![0u8; len.checked_sub(4)?];
        self.stream.read_exact(&mut body).ok()?;
        Some((header[0], body))
    }

    /// The next message, which must be an authentication request: its code
    /// and data.
    pub fn auth_request(&mut self) -> (i32, Vec<u8>) {
        match self.read() {
            Some((b'R', body)) if body.len() >= 4 => {
                (i32::from_be_bytes([body[0], body[1], body[2], body[3]]), body[4..].to_vec())
            }
            other => panic!("expected an authentication request, got {:?}", describe(&other)),
        }
    }

    /// Read until ReadyForQuery (true) or an ErrorResponse (its SQLSTATE).
    pub fn until_ready(&mut self) -> Result<(), String> {
        loop {
            match self.read() {
                Some((b'Z', _)) => return Ok(()),
                Some((b'E', body)) => return Err(field(&body, b'C').unwrap_or_default()),
                Some(_) => {}
                None => return Err("closed".into()),
            }
        }
    }

    /// Log in with SCRAM-SHA-256 using `nonce` as the client nonce, after
    /// the AuthenticationSASL request; returns the server-first-message.
    pub fn scram(&mut self, password: &str, nonce: &str) -> Result<String, String> {
        let (code, _) = self.auth_request();
        assert_eq!(code, 10, "expected AuthenticationSASL");
        let mut client = pgagroal::auth::ScramClient::new(password, nonce);
        self.send(&sasl::sasl_initial_response(sasl::SCRAM_SHA_256, Some(&client.client_first())));
        let (code, server_first) = self.auth_request();
        assert_eq!(code, 11, "expected AuthenticationSASLContinue");
        let client_final = client.server_first(&server_first).map_err(|e| e.to_string())?;
        self.send(&sasl::sasl_response(&client_final));
        match self.read() {
            Some((b'R', body)) if body.get(..4) == Some(&12i32.to_be_bytes()[..]) => {
                client.server_final(&body[4..]).map_err(|e| e.to_string())?;
            }
            Some((b'E', body)) => return Err(field(&body, b'C').unwrap_or_default()),
            other => return Err(format!("unexpected {:?}", describe(&other))),
        }
        match self.auth_request() {
            (0, _) => Ok(String::from_utf8_lossy(&server_first).into_owned()),
            (code, _) => Err(format!("expected AuthenticationOk, got code {code}")),
        }
    }

    /// A simple query's first value, after a login.
    pub fn query_one(&mut self, sql: &str) -> String {
        let mut q = Vec::new();
        encode::append_query(&mut q, sql);
        self.send(&q);
        let mut value = None;
        loop {
            match self.read() {
                Some((b'D', body)) if body.len() >= 6 => {
                    let len = i32::from_be_bytes([body[2], body[3], body[4], body[5]]);
                    value = Some(String::from_utf8_lossy(&body[6..6 + len.max(0) as usize]).into_owned());
                }
                Some((b'Z', _)) => return value.expect("a row"),
                Some((b'E', body)) => panic!("query failed: {:?}", field(&body, b'M')),
                Some(_) => {}
                None => panic!("closed during a query"),
            }
        }
    }
}

/// A field (`C` SQLSTATE, `M` message) of an ErrorResponse body.
pub fn field(body: &[u8], kind: u8) -> Option<String> {
    let mut rest = body;
    while let Some((&k, after)) = rest.split_first() {
        if k == 0 {
            break;
        }
        let nul = after.iter().position(|&b| b == 0)?;
        if k == kind {
            return Some(String::from_utf8_lossy(&after[..nul]).into_owned());
        }
        rest = &after[nul + 1..];
    }
    None
}

fn describe(message: &Option<Message>) -> String {
    match message {
        None => "end of stream".into(),
        Some((b'E', body)) => format!("ErrorResponse {:?} {:?}", field(body, b'C'), field(body, b'M')),
        Some((tag, body)) => format!("'{}' with {} bytes", *tag as char, body.len()),
    }
}

/// The `s=` (salt) and `i=` attributes of a server-first-message.
pub fn salt_and_iterations(server_first: &str) -> (String, String) {
    let get =
        |key: &str| server_first.split(',').find_map(|a| a.strip_prefix(key)).map(str::to_string).unwrap_or_default();
    (get("s="), get("i="))
}
