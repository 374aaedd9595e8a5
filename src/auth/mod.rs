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
//! - [`scram`]: SCRAM-SHA-256 (RFC 5802, RFC 7677): the four SCRAM messages,
//!   [`ScramSecret`] (PostgreSQL's stored verifier and the mock secret for
//!   unknown users), [`ScramServer`] (the pooler checking an application)
//!   and [`ScramClient`] (the pooler logging in to PostgreSQL, with a
//!   password or a recovered ClientKey).
//! - [`md5`]: PostgreSQL's MD5 password hash and salted response, both
//!   roles.
//! - [`ct`]: constant-time comparison and wiping of secret bytes.
//! - [`error`]: [`AuthError`], one variant per failed step, and the [`Side`]
//!   to blame.
//!
//! Nothing here logs: no password, key, proof or signature is ever part of
//! an error or of a `Debug` rendering.

pub mod ct;
pub mod error;
pub mod md5;
pub mod sasl;
pub mod scram;

pub use ct::ct_eq;
pub use error::{AuthError, Side};
pub use sasl::{InitialResponse, SCRAM_SHA_256};
pub use scram::{DEFAULT_ITERATIONS, MAX_SCRAM_MESSAGE, ScramClient, ScramSecret, ScramServer, ServerSuccess};
