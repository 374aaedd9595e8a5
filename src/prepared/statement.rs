//! A prepared statement as the pooler knows it, and a client's own names.
//!
//! A statement is the part of a Parse message after the name: the query
//! text, its NUL, and the parameter types. Its id is the first 128 bits of
//! the SHA-256 of those bytes, so equal statements from different clients
//! get one id and share one statement on each server connection, under the
//! server-side name `pgagroal_` followed by the id in hex. A client never
//! sees that name: it keeps its own names, which map to statements here.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::rc::Rc;

/// What every server-side name starts with.
pub const SERVER_PREFIX: &[u8] = b"pgagroal_";
/// Length of a server-side name: the prefix and 32 hex digits.
pub const SERVER_NAME_LEN: usize = SERVER_PREFIX.len() + 32;

/// One statement: its id, its server-side name and what a Parse of it
/// carries after the name.
#[derive(Debug, PartialEq, Eq)]
pub struct Statement {
    pub id: u128,
    pub server_name: [u8; SERVER_NAME_LEN],
    /// Query text, NUL, parameter count and types, as the client sent them.
    pub body: Box<[u8]>,
    /// The text may drop prepared statements (DEALLOCATE, DISCARD): the
    /// server connection's list is forgotten when it is run.
    pub drops_statements: bool,
}

impl Statement {
    /// The statement a Parse carries after its name.
    pub fn new(body: &[u8]) -> Statement {
        let id = id_of(body);
        let text = body.split(|&b| b == 0).next().unwrap_or_default();
        Statement {
            id,
            server_name: server_name(id),
            body: body.into(),
            drops_statements: super::sql::may_drop_statements(text),
        }
    }
}

/// The id of the statement a Parse carries after its name; never zero.
pub fn id_of(body: &[u8]) -> u128 {
    let digest = Sha256::digest(body);
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(first).max(1)
}

/// `pgagroal_` and the id in 32 hex digits.
pub fn server_name(id: u128) -> [u8; SERVER_NAME_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut name = [0u8; SERVER_NAME_LEN];
    name[..SERVER_PREFIX.len()].copy_from_slice(SERVER_PREFIX);
    for (i, cell) in name[SERVER_PREFIX.len()..].iter_mut().enumerate() {
        *cell = HEX[((id >> (124 - 4 * i)) & 0xf) as usize];
    }
    name
}

/// Whether a name a client uses could be a server-side one: such a name
/// never reaches the server unmapped.
pub fn looks_like_server_name(name: &[u8]) -> bool {
    name.len() >= SERVER_PREFIX.len() && name[..SERVER_PREFIX.len()].eq_ignore_ascii_case(SERVER_PREFIX)
}

/// A client's named statements.
#[derive(Debug, Default)]
pub struct ClientStatements {
    by_name: HashMap<Box<[u8]>, Rc<Statement>>,
}

impl ClientStatements {
    pub fn get(&self, name: &[u8]) -> Option<&Rc<Statement>> {
        self.by_name.get(name)
    }

    pub fn contains(&self, name: &[u8]) -> bool {
        self.by_name.contains_key(name)
    }

    pub fn insert(&mut self, name: &[u8], statement: Rc<Statement>) {
        self.by_name.insert(name.into(), statement);
    }

    pub fn remove(&mut self, name: &[u8]) -> Option<Rc<Statement>> {
        self.by_name.remove(name)
    }

    /// Take every name away (DEALLOCATE ALL, DISCARD ALL); the old set is
    /// returned so a failed command can put it back.
    pub fn take_all(&mut self) -> HashMap<Box<[u8]>, Rc<Statement>> {
        std::mem::take(&mut self.by_name)
    }

    pub fn restore(&mut self, all: HashMap<Box<[u8]>, Rc<Statement>>) {
        self.by_name = all;
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_statements_share_an_id_and_types_count() {
        let a = Statement::new(b"SELECT $1\0\0\x01\0\0\0\x17");
        let b = Statement::new(b"SELECT $1\0\0\x01\0\0\0\x17");
        let c = Statement::new(b"SELECT $1\0\0\x01\0\0\0\x19");
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert_eq!(a.server_name.len(), SERVER_NAME_LEN);
        assert!(a.server_name.starts_with(SERVER_PREFIX));
        assert!(a.server_name[SERVER_PREFIX.len()..].iter().all(u8::is_ascii_hexdigit));
        assert!(looks_like_server_name(&a.server_name) && looks_like_server_name(b"PGAGROAL_x"));
        assert!(!looks_like_server_name(b"S_1"));
        assert!(!a.drops_statements && Statement::new(b"DEALLOCATE ALL\0\0\0").drops_statements);
    }

    #[test]
    fn server_names_spell_the_id() {
        assert_eq!(&server_name(1)[..], b"pgagroal_00000000000000000000000000000001");
        assert_eq!(&server_name(u128::MAX)[SERVER_PREFIX.len()..], &[b'f'; 32][..]);
        assert_eq!(id_of(b"x"), id_of(b"x"));
    }
}
