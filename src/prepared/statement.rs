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
    /// The id of its text and context alone (see [`id_in_context`]).
    pub base: u128,
    /// The statement epoch of `base` when it was prepared (see
    /// [`crate::shmem::statements::Statements::epoch`]); part of `id`.
    pub epoch: u32,
    pub id: u128,
    pub server_name: [u8; SERVER_NAME_LEN],
    /// Query text, NUL, parameter count and types, as the client sent them.
    pub body: Box<[u8]>,
    /// The text may drop prepared statements (DEALLOCATE, DISCARD): the
    /// server connection's list is forgotten when it is run.
    pub drops_statements: bool,
    /// The text may change session settings (`SET`, `set_config`, ...):
    /// a connection it runs on is reset before another client gets it.
    pub changes_session: bool,
}

impl Statement {
    /// The statement a Parse carries after its name.
    pub fn new(body: &[u8]) -> Statement {
        Statement::in_context(body, 0)
    }

    /// The statement a Parse carries after its name, from a client whose
    /// settings that can change what a text means (`search_path` first)
    /// digest to `context`: clients with other settings get another
    /// statement for the same text. 0 stands for none.
    pub fn in_context(body: &[u8], context: u64) -> Statement {
        Statement::at_epoch(body, context, |_| 0)
    }

    /// [`Statement::in_context`] at the epoch `epoch_of` gives for its text:
    /// a later epoch gives another id, so a statement prepared before the
    /// server said the text's result changed is never taken for one
    /// prepared after.
    pub fn at_epoch(body: &[u8], context: u64, epoch_of: impl FnOnce(u128) -> u32) -> Statement {
        let base = id_in_context(body, context);
        let epoch = epoch_of(base);
        let id = if epoch == 0 { base } else { id_in_context(&base.to_be_bytes(), u64::from(epoch)) };
        let text = body.split(|&b| b == 0).next().unwrap_or_default();
        Statement {
            base,
            epoch,
            id,
            server_name: server_name(id),
            body: body.into(),
            drops_statements: super::sql::may_drop_statements(text),
            changes_session: crate::protocol::sql::changes_session(text),
        }
    }
}

/// The id of the statement a Parse carries after its name; never zero.
pub fn id_of(body: &[u8]) -> u128 {
    id_from(&Sha256::digest(body))
}

/// The first 128 bits of a SHA-256 digest, never zero.
fn id_from(digest: &[u8]) -> u128 {
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(first).max(1)
}

/// [`id_of`] for a client whose settings digest to `context` (0: none).
pub fn id_in_context(body: &[u8], context: u64) -> u128 {
    if context == 0 {
        return id_of(body);
    }
    id_from(&Sha256::new().chain_update(context.to_be_bytes()).chain_update(body).finalize())
}

/// The id a server-side name spells; None for any other name.
pub fn id_of_server_name(name: &[u8]) -> Option<u128> {
    let hex = name.strip_prefix(SERVER_PREFIX).filter(|hex| hex.len() == 32)?;
    u128::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
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

/// Bytes of a statement name PostgreSQL tells apart (NAMEDATALEN - 1):
/// names equal up to there are one name.
pub const NAME_SIGNIFICANT: usize = 63;

/// A client's named statements.
#[derive(Debug, Default)]
pub struct ClientStatements {
    by_name: HashMap<Box<[u8]>, Rc<Statement>>,
}

/// The part of a name that tells it apart.
fn key(name: &[u8]) -> &[u8] {
    &name[..name.len().min(NAME_SIGNIFICANT)]
}

impl ClientStatements {
    pub fn get(&self, name: &[u8]) -> Option<&Rc<Statement>> {
        self.by_name.get(key(name))
    }

    pub fn contains(&self, name: &[u8]) -> bool {
        self.by_name.contains_key(key(name))
    }

    pub fn insert(&mut self, name: &[u8], statement: Rc<Statement>) {
        self.by_name.insert(key(name).into(), statement);
    }

    pub fn remove(&mut self, name: &[u8]) -> Option<Rc<Statement>> {
        self.by_name.remove(key(name))
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
        assert!(!a.changes_session && Statement::new(b"SELECT set_config('x.y', $1, false)\0\0\0").changes_session);
    }

    #[test]
    fn server_names_spell_the_id() {
        assert_eq!(&server_name(1)[..], b"pgagroal_00000000000000000000000000000001");
        assert_eq!(&server_name(u128::MAX)[SERVER_PREFIX.len()..], &[b'f'; 32][..]);
        assert_eq!(id_of(b"x"), id_of(b"x"));
        let id = id_of(b"SELECT 1\0\0\0");
        assert_eq!(id_of_server_name(&server_name(id)), Some(id));
        assert_eq!(id_of_server_name(b"pgagroal_12"), None);
        assert_eq!(id_of_server_name(b"S_1"), None);
    }

    #[test]
    fn a_later_epoch_gives_another_statement_of_the_same_text() {
        let body = b"SELECT * FROM t\0\0\0";
        let first = Statement::at_epoch(body, 0, |_| 0);
        let later = Statement::at_epoch(body, 0, |_| 1);
        assert_eq!(first, Statement::new(body));
        assert_eq!((first.base, later.base), (first.id, first.id));
        assert_ne!(later.id, first.id);
        assert_eq!(later.epoch, 1);
    }

    #[test]
    fn names_are_told_apart_by_their_first_63_bytes_as_postgresql_does() {
        let mut names = ClientStatements::default();
        let long = [b'n'; 72];
        let mut other = long;
        other[70] = b'x';
        names.insert(&long, Rc::new(Statement::new(b"SELECT 1\0\0\0")));
        assert!(names.contains(&other) && names.contains(&long[..63]));
        assert!(!names.contains(&long[..62]));
        assert!(names.remove(&other).is_some() && names.is_empty());
    }

    #[test]
    fn settings_that_differ_give_another_statement() {
        let body = b"SELECT * FROM t\0\0\0";
        assert_eq!(Statement::in_context(body, 0), Statement::new(body));
        assert_eq!(Statement::in_context(body, 7), Statement::in_context(body, 7));
        assert_ne!(Statement::in_context(body, 7).id, Statement::in_context(body, 8).id);
        assert_ne!(Statement::in_context(body, 7).id, Statement::new(body).id);
    }
}
