//! Which authentication a client goes through: decided from its hba line's
//! method, what the pooler knows about the user and `allow_unknown_users`,
//! with no I/O. The worker carries the plan out.
//!
//! - A user in the users file is checked by the pooler itself, which then
//!   logs in to PostgreSQL with the stored password: such connections are
//!   pooled across clients, SCRAM included.
//! - With `auth_query`, the user's secret is fetched from the server and the
//!   client is checked against it; the pooler logs in with what the client's
//!   answer proves (its password, or SCRAM's ClientKey).
//! - An unknown user, when allowed, is passed through: the server's challenge
//!   is relayed. The hba method is still enforced: the server must ask for at
//!   least as much as the line demands, since the pooler cannot check the
//!   answer itself.
//! - An unknown user, when not allowed, gets a mock exchange that always
//!   fails like a wrong password, so user names cannot be probed.

use crate::hba::Method;
use crate::protocol::backend::auth_code;
use crate::shmem::{AuthKind, AuthKinds};

/// What the pooler holds for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// In the users file.
    Vault,
    /// `auth_query` is on: the secret is fetched from the server.
    Query,
    /// Neither.
    Unknown,
}

/// What the pooler asks the client for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    Nothing,
    Cleartext,
    Md5,
    Scram,
}

/// The weakest authentication request a server may make of a passed-through
/// client for its hba line to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Floor {
    /// Anything, asking nothing included (`trust`, `all`).
    Any,
    /// Some password: cleartext, md5 or SCRAM (`password`).
    Password,
    /// md5 or SCRAM (`md5`; as in PostgreSQL, SCRAM satisfies an md5 line).
    Md5,
    /// SCRAM only (`scram-sha-256`).
    Scram,
}

/// Whether the pooler can relay a server's first authentication request
/// (AuthenticationOk, cleartext, md5 or SASL) to a client.
pub fn can_relay(code: i32) -> bool {
    matches!(code, auth_code::OK | auth_code::CLEARTEXT_PASSWORD | auth_code::MD5_PASSWORD | auth_code::SASL)
}

impl Floor {
    /// What the floor demands, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Floor::Any => "nothing",
            Floor::Password => "a password",
            Floor::Md5 => "md5 or scram-sha-256",
            Floor::Scram => "scram-sha-256",
        }
    }

    /// Whether the server's first authentication request (its code; 0 when it
    /// sent AuthenticationOk at once) meets this floor.
    pub fn admits(self, code: i32) -> bool {
        let strength = match code {
            auth_code::OK => Floor::Any,
            auth_code::CLEARTEXT_PASSWORD => Floor::Password,
            auth_code::MD5_PASSWORD => Floor::Md5,
            auth_code::SASL => Floor::Scram,
            _ => return false,
        };
        strength >= self
    }

    fn of(method: Method) -> Floor {
        match method {
            Method::Trust | Method::All | Method::Reject => Floor::Any,
            Method::Password => Floor::Password,
            Method::Md5 => Floor::Md5,
            Method::ScramSha256 => Floor::Scram,
        }
    }
}

/// The plan for one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The hba line says `reject`.
    Rejected,
    /// Refused before any exchange: the user is unknown, unknown users are
    /// not allowed, and the line asks for no password (so there is nothing
    /// to hide behind a mock exchange).
    UnknownUser,
    /// The pooler checks the client with this request, then uses a
    /// connection it logged in to itself.
    Check(Ask),
    /// hba `all` for a known user: get the connection first and ask the
    /// client what the server asked when that connection was made.
    CheckLikeServer,
    /// Relay the server's exchange; the server must ask at least `floor`.
    PassThrough { floor: Floor },
    /// A mock exchange that ends as a wrong password does.
    Mock(Ask),
}

pub fn plan(method: Method, known: Known, allow_unknown_users: bool) -> Plan {
    if method == Method::Reject {
        return Plan::Rejected;
    }
    let ask = match method {
        Method::Trust => Ask::Nothing,
        Method::Password => Ask::Cleartext,
        Method::Md5 => Ask::Md5,
        Method::ScramSha256 | Method::All | Method::Reject => Ask::Scram,
    };
    match (known, method) {
        (Known::Vault, Method::All) => Plan::CheckLikeServer,
        (Known::Vault, _) => Plan::Check(ask),
        // Without the client's proof there is nothing to log in with: the
        // server decides.
        (Known::Query, Method::Trust) => Plan::PassThrough { floor: Floor::Any },
        // `all`: what the stored secret serves ([`ask_for_secret`] turns md5
        // into SCRAM for a SCRAM verifier), as PostgreSQL's md5 lines.
        (Known::Query, Method::All) => Plan::Check(Ask::Md5),
        (Known::Query, _) => Plan::Check(ask),
        (Known::Unknown, _) if allow_unknown_users => Plan::PassThrough { floor: Floor::of(method) },
        (Known::Unknown, Method::Trust) => Plan::UnknownUser,
        (Known::Unknown, _) => Plan::Mock(ask),
    }
}

/// With `auth_query`, the request to make once the user's stored secret is
/// known: as in PostgreSQL, an md5 line is served with SCRAM when the secret
/// is a SCRAM verifier. None means the secret cannot serve the line (a
/// SCRAM line with an md5 secret), which ends as a wrong password.
pub fn ask_for_secret(ask: Ask, secret_is_scram: bool) -> Option<Ask> {
    match (ask, secret_is_scram) {
        (Ask::Md5, true) => Some(Ask::Scram),
        (Ask::Scram, false) => None,
        (other, _) => Some(other),
    }
}

/// For hba `all`: what to ask the client, given the request the server made
/// when the connection was made.
pub fn ask_like_server(server_code: u32) -> Ask {
    match server_code as i32 {
        auth_code::OK => Ask::Nothing,
        auth_code::CLEARTEXT_PASSWORD => Ask::Cleartext,
        auth_code::MD5_PASSWORD => Ask::Md5,
        _ => Ask::Scram,
    }
}

/// How a connection made for a passed-through client was authenticated,
/// from the server's first request.
pub fn pass_through_kind(server_code: i32) -> AuthKind {
    match server_code {
        auth_code::OK => AuthKind::Trust,
        auth_code::CLEARTEXT_PASSWORD => AuthKind::PassThroughPassword,
        auth_code::MD5_PASSWORD => AuthKind::PassThroughMd5,
        _ => AuthKind::PassThrough,
    }
}

/// The pooled connections a client the pooler checked itself may be given:
/// those the server trusted and those the pooler logged in to.
pub const CHECKED_REUSE: AuthKinds = AuthKinds::of(&[AuthKind::Trust, AuthKind::Pooler]);

/// The pooled connections a passed-through client may be given: those whose
/// authentication can be checked again (by replay) and meets the floor.
pub fn pass_through_reuse(floor: Floor) -> AuthKinds {
    match floor {
        Floor::Any => AuthKinds::of(&[AuthKind::Trust, AuthKind::PassThroughPassword, AuthKind::PassThroughMd5]),
        Floor::Password => AuthKinds::of(&[AuthKind::PassThroughPassword, AuthKind::PassThroughMd5]),
        Floor::Md5 => AuthKinds::of(&[AuthKind::PassThroughMd5]),
        // SCRAM cannot be replayed.
        Floor::Scram => AuthKinds::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_users_are_checked_by_the_pooler() {
        assert_eq!(plan(Method::Trust, Known::Vault, true), Plan::Check(Ask::Nothing));
        assert_eq!(plan(Method::Password, Known::Vault, false), Plan::Check(Ask::Cleartext));
        assert_eq!(plan(Method::Md5, Known::Vault, true), Plan::Check(Ask::Md5));
        assert_eq!(plan(Method::ScramSha256, Known::Vault, true), Plan::Check(Ask::Scram));
        assert_eq!(plan(Method::All, Known::Vault, true), Plan::CheckLikeServer);
        assert_eq!(plan(Method::Reject, Known::Vault, true), Plan::Rejected);
        assert_eq!(plan(Method::Md5, Known::Query, true), Plan::Check(Ask::Md5));
        assert_eq!(plan(Method::Trust, Known::Query, true), Plan::PassThrough { floor: Floor::Any });
        assert_eq!(plan(Method::All, Known::Query, true), Plan::Check(Ask::Md5));
        assert!(can_relay(auth_code::SASL) && !can_relay(auth_code::GSS) && !can_relay(auth_code::SASL_CONTINUE));
    }

    #[test]
    fn unknown_users_pass_through_or_get_a_mock() {
        assert_eq!(plan(Method::Md5, Known::Unknown, true), Plan::PassThrough { floor: Floor::Md5 });
        assert_eq!(plan(Method::All, Known::Unknown, true), Plan::PassThrough { floor: Floor::Any });
        assert_eq!(plan(Method::ScramSha256, Known::Unknown, false), Plan::Mock(Ask::Scram));
        assert_eq!(plan(Method::All, Known::Unknown, false), Plan::Mock(Ask::Scram));
        assert_eq!(plan(Method::Password, Known::Unknown, false), Plan::Mock(Ask::Cleartext));
        assert_eq!(plan(Method::Trust, Known::Unknown, false), Plan::UnknownUser);
        assert_eq!(plan(Method::Reject, Known::Unknown, true), Plan::Rejected);
    }

    #[test]
    fn floors_order_the_server_requests() {
        assert!(Floor::Any.admits(auth_code::OK));
        assert!(!Floor::Password.admits(auth_code::OK));
        assert!(Floor::Password.admits(auth_code::CLEARTEXT_PASSWORD));
        assert!(!Floor::Md5.admits(auth_code::CLEARTEXT_PASSWORD));
        assert!(Floor::Md5.admits(auth_code::MD5_PASSWORD));
        assert!(Floor::Md5.admits(auth_code::SASL));
        assert!(!Floor::Scram.admits(auth_code::MD5_PASSWORD));
        assert!(Floor::Scram.admits(auth_code::SASL));
        assert!(!Floor::Any.admits(auth_code::GSS), "methods the pooler cannot relay are never admitted");
    }

    #[test]
    fn reuse_follows_what_can_be_checked() {
        let check = CHECKED_REUSE;
        assert!(check.contains(AuthKind::Pooler) && check.contains(AuthKind::Trust));
        assert!(!check.contains(AuthKind::PassThroughPassword));
        let md5 = pass_through_reuse(Floor::Md5);
        assert!(md5.contains(AuthKind::PassThroughMd5) && !md5.contains(AuthKind::PassThroughPassword));
        assert!(!md5.contains(AuthKind::Trust), "a trusted connection cannot prove an md5 line");
        let scram = pass_through_reuse(Floor::Scram);
        for kind in [AuthKind::Trust, AuthKind::PassThrough, AuthKind::PassThroughMd5, AuthKind::Pooler] {
            assert!(!scram.contains(kind), "{kind:?}");
        }
        assert_eq!(pass_through_kind(auth_code::SASL), AuthKind::PassThrough);
        assert_eq!(pass_through_kind(auth_code::MD5_PASSWORD), AuthKind::PassThroughMd5);
        assert_eq!(ask_for_secret(Ask::Md5, true), Some(Ask::Scram));
        assert_eq!(ask_for_secret(Ask::Scram, false), None);
        assert_eq!(ask_like_server(auth_code::MD5_PASSWORD as u32), Ask::Md5);
    }
}
