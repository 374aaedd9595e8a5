//! The PostgreSQL wire protocol (version 3.0), without any I/O.
//!
//! - [`startup`]: the untagged first packet (StartupMessage, SSLRequest,
//!   GSSENCRequest, CancelRequest), with its own parser.
//! - [`frame`]: splitting a buffer into tagged messages, bounding every
//!   declared length before anything is allocated.
//! - [`backend`]: messages from the server that the pooler reads itself.
//! - [`frontend`]: messages from the client that the pooler reads itself.
//! - [`tracker`]: a streaming scanner that follows message boundaries of a
//!   relayed byte stream without buffering it.
//! - [`params`]: a client's startup settings and bringing a pooled
//!   connection in line with them.
//! - [`sql`]: whether a query's text may change session settings.
//! - [`own_queries`]: the pooler's own queries (reset, validation) and
//!   reading their answers.
//! - [`encode`]: messages the pooler writes itself.
//!
//! Frontend and backend tags collide (`'E'` is Execute one way and
//! ErrorResponse the other), so each direction has its own types.

pub mod backend;
pub mod encode;
pub mod frame;
pub mod frontend;
pub mod own_queries;
pub mod params;
pub mod sql;
pub mod startup;
pub mod tracker;

/// SQLSTATE codes the pooler itself reports.
pub mod sqlstate {
    /// too_many_connections: pool full, refused connection.
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    /// invalid_authorization_specification: no hba entry, rejected, unsupported method.
    pub const INVALID_AUTHORIZATION: &str = "28000";
    /// invalid_password: a wrong password (or a user the pool does not serve).
    pub const INVALID_PASSWORD: &str = "28P01";
    /// query_canceled: PostgreSQL's code for "canceling authentication due to timeout".
    pub const QUERY_CANCELED: &str = "57014";
    /// protocol_violation: malformed startup or message.
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    /// feature_not_supported: a protocol version the pooler does not speak.
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    /// connection_failure: the server could not be reached.
    pub const CONNECTION_FAILURE: &str = "08006";
    /// admin_shutdown: `disconnect_client_force` ended a session.
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    /// idle_session_timeout: `disconnect_client` ended an idle session.
    pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
    /// cannot_connect_now: the pooler is shutting down.
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    /// syntax_error: a malformed `options` startup parameter.
    pub const SYNTAX_ERROR: &str = "42601";
    /// undefined_object: PostgreSQL's code for an unknown setting name.
    pub const UNDEFINED_OBJECT: &str = "42704";
    /// internal_error.
    pub const INTERNAL_ERROR: &str = "XX000";
}
