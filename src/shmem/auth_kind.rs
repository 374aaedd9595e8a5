//! How a slot's server connection was authenticated ([`AuthKind`]), which
//! decides which later clients may reuse it, and what a pass-through client
//! reusing it is checked against ([`Replay`]).

/// How the slot's server connection was authenticated, which decides which
/// later clients may reuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[repr(u32)]
pub enum AuthKind {
    Unknown = 0,
    /// The server asked for nothing: a client the pooler admitted may reuse it.
    Trust = 1,
    /// The server ran an exchange with the client that cannot be replayed
    /// (SCRAM): the connection is never given to another client.
    PassThrough = 2,
    /// The server asked the client for a cleartext password; a later client
    /// must send the same one (checked against a digest in the slot).
    PassThroughPassword = 3,
    /// The server asked for md5 with the salt kept in the slot; a later
    /// client must answer that salt the same way.
    PassThroughMd5 = 4,
    /// The pooler logged in with its own credentials (users file or
    /// auth_query) after checking the client itself.
    Pooler = 5,
}

impl AuthKind {
    pub(super) fn from_u32(value: u32) -> AuthKind {
        match value {
            1 => AuthKind::Trust,
            2 => AuthKind::PassThrough,
            3 => AuthKind::PassThroughPassword,
            4 => AuthKind::PassThroughMd5,
            5 => AuthKind::Pooler,
            _ => AuthKind::Unknown,
        }
    }

    /// Whether another client can ever reuse such a connection.
    pub fn is_reusable(self) -> bool {
        !matches!(self, AuthKind::Unknown | AuthKind::PassThrough)
    }
}

/// A set of [`AuthKind`]s, for "reuse a slot authenticated in one of these ways".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuthKinds(u32);

impl AuthKinds {
    pub const fn of(kinds: &[AuthKind]) -> AuthKinds {
        let mut bits = 0;
        let mut i = 0;
        while i < kinds.len() {
            bits |= 1 << kinds[i] as u32;
            i += 1;
        }
        AuthKinds(bits)
    }

    pub fn contains(self, kind: AuthKind) -> bool {
        kind.is_reusable() && self.0 & (1 << kind as u32) != 0
    }
}

/// What a pass-through client's answer is checked against when it reuses a
/// connection the server authenticated with a password or md5: the md5 salt
/// the server used and a SHA-256 digest of the first client's answer (the
/// password itself is never kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Replay {
    pub md5_salt: [u8; 4],
    pub digest: [u8; 32],
}
