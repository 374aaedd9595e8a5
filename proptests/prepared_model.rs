//! A model of what a PostgreSQL backend does with prepared statements, for
//! the tests of the rewriting engine: named statements that a Parse creates
//! and a Close or DEALLOCATE drops, errors for duplicate and unknown names,
//! a query text containing `fail` that does not parse, and skipping every
//! message after an extended-protocol error until the next Sync. Used two
//! ways: as the server connections behind the engine, and as a direct
//! connection whose answers the client behind the engine must get too.
//!
//! Self-contained (no use of the crate), so that the unit tests and the
//! property tests can both include it.

#![allow(dead_code)]

use std::collections::HashSet;

/// One backend's statements and its skip state.
#[derive(Debug, Default, Clone)]
pub struct Backend {
    pub statements: HashSet<Vec<u8>>,
    skipping: bool,
    /// Frontend bytes not yet whole.
    pending: Vec<u8>,
    /// Every Bind or Describe of a server-side name this backend lacked
    /// (what the pooler must never cause).
    pub misses: Vec<String>,
}

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// An ErrorResponse as the backend words it.
pub fn error(code: &str, message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in [(b'S', "ERROR"), (b'V', "ERROR"), (b'C', code), (b'M', message)] {
        body.push(k);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    msg(b'E', &body)
}

fn cstr(body: &[u8]) -> (&[u8], &[u8]) {
    match body.iter().position(|&b| b == 0) {
        Some(n) => (&body[..n], &body[n + 1..]),
        None => (body, &[]),
    }
}

fn quote(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

impl Backend {
    /// Take frontend bytes; returns the backend's answers.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            if self.pending.len() < 5 {
                return out;
            }
            let len = u32::from_be_bytes([self.pending[1], self.pending[2], self.pending[3], self.pending[4]]) as usize;
            if self.pending.len() < 1 + len {
                return out;
            }
            let message: Vec<u8> = self.pending.drain(..1 + len).collect();
            self.one(message[0], &message[5..], &mut out);
        }
    }

    fn fail(&mut self, out: &mut Vec<u8>, code: &str, message: &str) {
        out.extend_from_slice(&error(code, message));
        self.skipping = true;
    }

    fn one(&mut self, tag: u8, body: &[u8], out: &mut Vec<u8>) {
        if tag == b'S' {
            self.skipping = false;
            out.extend_from_slice(&msg(b'Z', b"I"));
            return;
        }
        if self.skipping || tag == b'H' {
            return;
        }
        match tag {
            b'P' => {
                let (name, rest) = cstr(body);
                let (text, _) = cstr(rest);
                if text.windows(4).any(|w| w == b"fail") || text.starts_with(b"pgagroal") {
                    return self.fail(out, "42601", "syntax error");
                }
                if !name.is_empty() && self.statements.contains(name) {
                    return self.fail(out, "42P05", &format!("prepared statement \"{}\" already exists", quote(name)));
                }
                if !name.is_empty() {
                    self.statements.insert(name.to_vec());
                }
                out.extend_from_slice(&msg(b'1', b""));
            }
            b'B' => {
                let (_, rest) = cstr(body);
                let (name, _) = cstr(rest);
                if !name.is_empty() && !self.statements.contains(name) {
                    if name.starts_with(b"pgagroal_") {
                        self.misses.push(format!("Bind of {} it lacked", quote(name)));
                    }
                    return self.fail(out, "26000", &format!("prepared statement \"{}\" does not exist", quote(name)));
                }
                out.extend_from_slice(&msg(b'2', b""));
            }
            b'D' => {
                let (name, _) = cstr(&body[1..]);
                if body[0] == b'S' {
                    if !name.is_empty() && !self.statements.contains(name) {
                        if name.starts_with(b"pgagroal_") {
                            self.misses.push(format!("Describe of {} it lacked", quote(name)));
                        }
                        let text = format!("prepared statement \"{}\" does not exist", quote(name));
                        return self.fail(out, "26000", &text);
                    }
                    out.extend_from_slice(&msg(b't', b"\0\0"));
                }
                out.extend_from_slice(&msg(b'n', b""));
            }
            b'E' => {
                out.extend_from_slice(&msg(b'D', b"\0\x01\0\0\0\x011"));
                out.extend_from_slice(&msg(b'C', b"SELECT 1\0"));
            }
            b'C' => {
                let (name, _) = cstr(&body[1..]);
                if body[0] == b'S' {
                    self.statements.remove(name);
                }
                out.extend_from_slice(&msg(b'3', b""));
            }
            b'Q' => {
                self.query(cstr(body).0, out);
                out.extend_from_slice(&msg(b'Z', b"I"));
            }
            _ => {}
        }
    }

    /// The few statements the tests send as simple Queries.
    fn query(&mut self, text: &[u8], out: &mut Vec<u8>) {
        let text = String::from_utf8_lossy(text).trim().trim_end_matches(';').to_string();
        let lower = text.to_ascii_lowercase();
        if lower == "deallocate all" || lower == "discard all" {
            self.statements.clear();
            out.extend_from_slice(&msg(b'C', format!("{}\0", text.to_ascii_uppercase()).as_bytes()));
        } else if let Some(name) = lower.strip_prefix("deallocate ") {
            if self.statements.remove(name.as_bytes()) {
                out.extend_from_slice(&msg(b'C', b"DEALLOCATE\0"));
            } else {
                out.extend_from_slice(&error("26000", &format!("prepared statement \"{name}\" does not exist")));
            }
        } else {
            out.extend_from_slice(&msg(b'T', b"\0\0"));
            out.extend_from_slice(&msg(b'D', b"\0\0"));
            out.extend_from_slice(&msg(b'C', b"SELECT 1\0"));
        }
    }
}

/// The engine under test, as the harness drives it.
pub trait Rewriter: Default {
    /// A server connection's table of statements.
    type Table;
    fn table(capacity: usize) -> Self::Table;
    fn client_bytes(&mut self, bytes: &[u8], table: &Self::Table, to_server: &mut Vec<u8>, to_client: &mut Vec<u8>);
    fn resume(&mut self, table: &Self::Table, to_server: &mut Vec<u8>, to_client: &mut Vec<u8>);
    fn server_bytes(&mut self, chunk: &[u8], table: &Self::Table, out: &mut Vec<u8>) -> bool;
    fn stalled(&self) -> bool;
    fn settled(&self) -> bool;
}

/// Clients (each with its engine and a direct backend to compare with)
/// over shared server connections.
pub struct Harness<E: Rewriter> {
    pub clients: Vec<(E, Backend, Vec<u8>, Vec<u8>)>,
    pub servers: Vec<(Backend, E::Table)>,
    /// Server answers are handed over this many bytes at a time.
    pub split: usize,
    /// Bytes each server connection received.
    pub received: Vec<Vec<u8>>,
}

impl<E: Rewriter> Harness<E> {
    pub fn new(clients: usize, servers: usize, capacity: usize) -> Self {
        Harness::<E> {
            clients: (0..clients).map(|_| (E::default(), Backend::default(), Vec::new(), Vec::new())).collect(),
            servers: (0..servers).map(|_| (Backend::default(), E::table(capacity))).collect(),
            split: usize::MAX,
            received: vec![Vec::new(); servers],
        }
    }

    /// Client `c` writes `bytes` on connection `conn`; everything runs
    /// until the server has answered all of it.
    pub fn send(&mut self, c: usize, conn: usize, bytes: &[u8]) {
        let (engine, direct, got, want) = &mut self.clients[c];
        let (backend, owned) = &mut self.servers[conn];
        let table = &*owned;
        want.extend_from_slice(&direct.feed(bytes));
        let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
        engine.client_bytes(bytes, table, &mut to_server, &mut to_client);
        got.append(&mut to_client);
        loop {
            self.received[conn].extend_from_slice(&to_server);
            let answer = backend.feed(&to_server);
            to_server.clear();
            for piece in answer.chunks(self.split.max(1)) {
                let mut out = Vec::new();
                if engine.server_bytes(piece, table, &mut out) {
                    got.extend_from_slice(&out);
                } else {
                    got.extend_from_slice(piece);
                }
            }
            if engine.stalled() {
                engine.resume(table, &mut to_server, &mut to_client);
                got.append(&mut to_client);
            }
            if to_server.is_empty() {
                break;
            }
        }
        assert!(engine.settled(), "the connection is free again");
    }

    pub fn check(&self) {
        for (i, (_, _, got, want)) in self.clients.iter().enumerate() {
            assert_eq!(describe(got), describe(want), "client {i}");
            // A server-side name reaches a client only where the client
            // used that very name itself.
            let count = |s: &[u8]| String::from_utf8_lossy(s).matches("pgagroal_").count();
            assert_eq!(count(got), count(want), "client {i} saw a server-side name");
        }
        for (backend, _) in &self.servers {
            assert!(backend.misses.is_empty(), "{:?}", backend.misses);
        }
    }
}

/// Frontend messages, for the tests' clients.
pub mod front {
    use super::msg;

    fn z(s: &[u8]) -> Vec<u8> {
        let mut v = s.to_vec();
        v.push(0);
        v
    }

    pub fn parse(name: &str, text: &str) -> Vec<u8> {
        let mut body = z(name.as_bytes());
        body.extend_from_slice(&z(text.as_bytes()));
        body.extend_from_slice(&[0, 0]);
        msg(b'P', &body)
    }

    pub fn bind(name: &str) -> Vec<u8> {
        let mut body = z(b"");
        body.extend_from_slice(&z(name.as_bytes()));
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        msg(b'B', &body)
    }

    pub fn describe(name: &str) -> Vec<u8> {
        let mut body = vec![b'S'];
        body.extend_from_slice(&z(name.as_bytes()));
        msg(b'D', &body)
    }

    pub fn close(name: &str) -> Vec<u8> {
        let mut body = vec![b'S'];
        body.extend_from_slice(&z(name.as_bytes()));
        msg(b'C', &body)
    }

    pub fn execute() -> Vec<u8> {
        msg(b'E', b"\0\0\0\0\0")
    }

    pub fn sync() -> Vec<u8> {
        msg(b'S', b"")
    }

    pub fn flush() -> Vec<u8> {
        msg(b'H', b"")
    }

    pub fn query(text: &str) -> Vec<u8> {
        msg(b'Q', &z(text.as_bytes()))
    }
}

/// The tags of a backend byte stream, with each ErrorResponse's code and
/// message, for comparing what two clients got.
pub fn describe(stream: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = stream;
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let Some(message) = rest.get(..1 + len) else { break };
        let body = &message[5..];
        let mut line = (message[0] as char).to_string();
        if message[0] == b'E' || message[0] == b'C' {
            line.push(' ');
            line.push_str(&String::from_utf8_lossy(body).replace('\0', "|"));
        }
        out.push(line);
        rest = &rest[1 + len..];
    }
    if !rest.is_empty() {
        out.push(format!("{} trailing bytes", rest.len()));
    }
    out
}
