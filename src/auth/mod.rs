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
//! - [`policy`]: which authentication a client goes through (the pooler's
//!   own check, pass-through, a mock) and which pooled connections it may
//!   be given.
//! - [`exchange`]: the pooler checking a client, as a state machine.
//! - [`login`]: the pooler logging in to PostgreSQL, as a state machine.
//! - [`credentials`]: the users, frontend users, admins and superuser the
//!   daemon loaded from the vault files.
//!
//! Nothing here logs: no password, key, proof or signature is ever part of
//! an error or of a `Debug` rendering.
//!
//! Errors: [`AuthError::WrongPassword`] (and a failed MD5 [`md5::verify`])
//! is SQLSTATE 28P01 for the application; a malformed or mismatched
//! message is a protocol violation (08P01) of the [`Side`] that sent it;
//! [`AuthError::ServerError`] carries PostgreSQL's own `e=` text.
//!
//! # Example
//!
//! An application logs in to the pooler with SCRAM-SHA-256, and the pooler
//! then logs in to PostgreSQL, which holds the same verifier, with the
//! ClientKey recovered from the application's proof. The nonces are fixed
//! here; in the pooler they are fresh random values.
//!
//! ```
//! use pgagroal::auth::{ScramClient, ScramSecret, ScramServer, sasl};
//!
//! // What PostgreSQL stores in pg_authid and the pooler keeps too.
//! let verifier = ScramSecret::from_password("app password", b"sixteen byte sal", 4096).to_verifier();
//!
//! // The application, here played by the client role.
//! let mut app = ScramClient::new("app password", "appnonce");
//!
//! // The pooler toward the application: AuthenticationSASL, then the
//! // SASLInitialResponse it answers with.
//! let _offer = sasl::authentication_sasl(&[sasl::SCRAM_SHA_256]);
//! let initial = sasl::sasl_initial_response(sasl::SCRAM_SHA_256, Some(&app.client_first()));
//! let initial = sasl::parse_initial_response(initial.get(5..).unwrap_or_default())?;
//! let mut front = ScramServer::new(ScramSecret::parse(&verifier)?, "frontnonce");
//! let server_first = front.client_first(initial.data.unwrap_or_default())?;
//! let client_final = app.server_first(&server_first)?;
//! let success = front.client_final(&client_final)?;
//! app.server_final(&success.server_final)?;
//!
//! // The pooler toward PostgreSQL (played by the server role), without the
//! // password; the ServerKey lets it check PostgreSQL's signature.
//! let server_key = ScramSecret::parse(&verifier)?.server_key;
//! let mut back = ScramClient::with_client_key(success.client_key, Some(server_key), "backnonce");
//! let mut postgres = ScramServer::new(ScramSecret::parse(&verifier)?, "pgnonce");
//! let server_first = postgres.client_first(&back.client_first())?;
//! let client_final = back.server_first(&server_first)?;
//! back.server_final(&postgres.client_final(&client_final)?.server_final)?;
//! # Ok::<(), pgagroal::auth::AuthError>(())
//! ```

pub mod credentials;
pub mod ct;
pub mod error;
pub mod exchange;
pub mod login;
pub mod md5;
pub mod policy;
#[cfg(test)]
mod roundtrip;
pub mod sasl;
pub mod scram;

pub use ct::ct_eq;
pub use error::{AuthError, Side};
pub use sasl::{InitialResponse, SCRAM_SHA_256};
pub use scram::{DEFAULT_ITERATIONS, MAX_SCRAM_MESSAGE, ScramClient, ScramSecret, ScramServer, ServerSuccess};
