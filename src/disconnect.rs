//! Why a client's connection to the pooler ended, as one closed set of
//! reasons: the worker returns one from every path that ends a session, logs
//! its description and counts it (`pgagroal_client_disconnects_total`), and
//! the supervisor adds [`Disconnect::WorkerCrashed`] for a client whose
//! worker died under it. The labels are part of the metrics interface: keep
//! them stable, and add new reasons at the end.

/// Why a client's connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum Disconnect {
    /// The client sent Terminate: the normal end of a session.
    ClientTerminate,
    /// The client closed its socket without Terminate.
    ClientClosed,
    /// Reading from or writing to the client failed.
    ClientError,
    /// The client broke the protocol: a bad startup packet, an unexpected
    /// message during authentication, a malformed message in the session.
    ClientProtocolViolation,
    /// The client left during authentication or start-up (psql does so when
    /// it is asked for a password it has not got yet).
    LoginAbandoned,
    /// The client left while it waited for a server connection.
    WaitAbandoned,
    /// The TLS handshake with the client failed.
    TlsFailed,
    /// `authentication_timeout` passed before the client had logged in.
    AuthTimeout,
    /// The client's password was wrong.
    AuthFailed,
    /// A user the pooler does not serve (not in the users file with
    /// `allow_unknown_users = off`, or no password to log in with).
    UnknownUser,
    /// No `pgagroal_hba.conf` line admits the client, its line rejects it,
    /// or the server asks less than the line demands.
    HbaRejected,
    /// The client's start-up was refused: replication, a disabled database,
    /// startup parameters that cannot be applied.
    StartupRefused,
    /// The pool is shutting down.
    ShuttingDown,
    /// No server connection came within `blocking_timeout` (53300).
    PoolFull,
    /// `disconnect_client`: the session was idle too long.
    IdleTimeout,
    /// `disconnect_client_force`: the session lasted too long.
    SessionTimeout,
    /// No server to connect to: none configured up, unreachable, or being
    /// failed over.
    ServerUnavailable,
    /// The server refused the pooler's login or failed during start-up.
    ServerLoginFailed,
    /// The server closed the session's connection.
    ServerClosed,
    /// The server connection failed or broke the protocol.
    ServerError,
    /// The server refused the client's settings.
    SettingsRefused,
    /// The connection carried a CancelRequest.
    CancelRequest,
    /// The worker serving the client died.
    WorkerCrashed,
    /// The pooler's own bookkeeping failed (a slot lost, no secret to log in
    /// with); logged where it happened.
    Internal,
}

/// Number of [`Disconnect`] reasons.
pub const DISCONNECTS: usize = Disconnect::Internal as usize + 1;

impl Disconnect {
    /// Every reason, in label order.
    pub const ALL: [Disconnect; DISCONNECTS] = [
        Disconnect::ClientTerminate,
        Disconnect::ClientClosed,
        Disconnect::ClientError,
        Disconnect::ClientProtocolViolation,
        Disconnect::LoginAbandoned,
        Disconnect::WaitAbandoned,
        Disconnect::TlsFailed,
        Disconnect::AuthTimeout,
        Disconnect::AuthFailed,
        Disconnect::UnknownUser,
        Disconnect::HbaRejected,
        Disconnect::StartupRefused,
        Disconnect::ShuttingDown,
        Disconnect::PoolFull,
        Disconnect::IdleTimeout,
        Disconnect::SessionTimeout,
        Disconnect::ServerUnavailable,
        Disconnect::ServerLoginFailed,
        Disconnect::ServerClosed,
        Disconnect::ServerError,
        Disconnect::SettingsRefused,
        Disconnect::CancelRequest,
        Disconnect::WorkerCrashed,
        Disconnect::Internal,
    ];

    /// The `reason` label of `pgagroal_client_disconnects_total`.
    pub fn label(self) -> &'static str {
        match self {
            Disconnect::ClientTerminate => "client_terminate",
            Disconnect::ClientClosed => "client_closed",
            Disconnect::ClientError => "client_error",
            Disconnect::ClientProtocolViolation => "client_protocol_violation",
            Disconnect::LoginAbandoned => "login_abandoned",
            Disconnect::WaitAbandoned => "wait_abandoned",
            Disconnect::TlsFailed => "tls_failed",
            Disconnect::AuthTimeout => "auth_timeout",
            Disconnect::AuthFailed => "auth_failed",
            Disconnect::UnknownUser => "unknown_user",
            Disconnect::HbaRejected => "hba_rejected",
            Disconnect::StartupRefused => "startup_refused",
            Disconnect::ShuttingDown => "shutting_down",
            Disconnect::PoolFull => "pool_full",
            Disconnect::IdleTimeout => "idle_timeout",
            Disconnect::SessionTimeout => "session_timeout",
            Disconnect::ServerUnavailable => "server_unavailable",
            Disconnect::ServerLoginFailed => "server_login_failed",
            Disconnect::ServerClosed => "server_closed",
            Disconnect::ServerError => "server_error",
            Disconnect::SettingsRefused => "settings_refused",
            Disconnect::CancelRequest => "cancel_request",
            Disconnect::WorkerCrashed => "worker_crashed",
            Disconnect::Internal => "internal",
        }
    }

    /// What the log says.
    pub fn describe(self) -> &'static str {
        match self {
            Disconnect::ClientTerminate => "client sent Terminate",
            Disconnect::ClientClosed => "client closed the connection",
            Disconnect::ClientError => "client connection failed",
            Disconnect::ClientProtocolViolation => "client protocol violation",
            Disconnect::LoginAbandoned => "client left before logging in",
            Disconnect::WaitAbandoned => "client left while waiting for a connection",
            Disconnect::TlsFailed => "TLS handshake with the client failed",
            Disconnect::AuthTimeout => "authentication timeout",
            Disconnect::AuthFailed => "wrong password",
            Disconnect::UnknownUser => "user not served",
            Disconnect::HbaRejected => "refused by pgagroal_hba.conf",
            Disconnect::StartupRefused => "start-up refused",
            Disconnect::ShuttingDown => "the pool is shutting down",
            Disconnect::PoolFull => "pool full",
            Disconnect::IdleTimeout => "disconnect_client: idle too long",
            Disconnect::SessionTimeout => "disconnect_client_force: connected too long",
            Disconnect::ServerUnavailable => "no server available",
            Disconnect::ServerLoginFailed => "server login failed",
            Disconnect::ServerClosed => "server closed the connection",
            Disconnect::ServerError => "server connection failed",
            Disconnect::SettingsRefused => "settings refused by the server",
            Disconnect::CancelRequest => "cancel request",
            Disconnect::WorkerCrashed => "the worker died",
            Disconnect::Internal => "internal error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_once_in_order() {
        for (i, d) in Disconnect::ALL.iter().enumerate() {
            assert_eq!(*d as usize, i, "{d:?}");
        }
        let mut labels: Vec<&str> = Disconnect::ALL.iter().map(|d| d.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), DISCONNECTS);
        let valid = |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        assert!(labels.iter().all(|l| valid(l)), "{labels:?}");
    }
}
