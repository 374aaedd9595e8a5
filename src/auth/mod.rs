//! Authentication without I/O: SCRAM-SHA-256 in both roles, MD5, stored
//! secrets and the SASL message formats. Nonces and salts are arguments, so
//! every exchange replays as a test; the worker's I/O code only drives these
//! state machines.
//!
//! Map of the module:
//!
//! - [`sasl`]: the PostgreSQL messages that carry authentication
//!   (AuthenticationSASL / SASLContinue / SASLFinal / MD5Password /
//!   CleartextPassword, SASLInitialResponse, SASLResponse, PasswordMessage):
//!   bounded parsers and whole-message encoders.
//! - [`scram`]: SCRAM-SHA-256 (RFC 5802, RFC 7677).
//! - [`md5`]: PostgreSQL's MD5 password hash and salted response, both
//!   roles.
//! - [`ct`]: constant-time comparison and wiping of secret bytes.
//! - [`error`]: [`AuthError`], one variant per failed step, and the [`Side`]
//!   to blame.

pub mod ct;
pub mod error;
pub mod md5;
pub mod sasl;
pub mod scram;

pub use ct::ct_eq;
pub use error::{AuthError, Side};
pub use sasl::{InitialResponse, SCRAM_SHA_256};
