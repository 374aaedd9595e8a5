//! Messages from the client that the pooler reads itself: the answers to
//! authentication requests while a new server connection is being set up.
//! Everything after start-up is relayed and only followed by the tracker.

/// `Terminate`.
pub const TERMINATE: u8 = b'X';
/// `PasswordMessage`, `SASLInitialResponse`, `SASLResponse` (all `'p'`).
pub const PASSWORD_MESSAGE: u8 = b'p';
/// `Query`.
pub const QUERY: u8 = b'Q';
/// `Sync`.
pub const SYNC: u8 = b'S';
/// `FunctionCall`.
pub const FUNCTION_CALL: u8 = b'F';

/// Largest authentication answer accepted from a client (SCRAM messages are
/// a few hundred bytes; cloud IAM tokens used as passwords reach a few KiB).
pub const MAX_AUTH_MESSAGE: usize = 16 * 1024;
