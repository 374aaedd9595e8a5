//! Remote management (`management = PORT`), both ends, without I/O.
//!
//! An admin connects over TCP and starts as a PostgreSQL client would: an
//! optional SSLRequest, then a StartupMessage for the database `admin`.
//! The daemon checks the hba file for `admin`, then always asks for
//! SCRAM-SHA-256 and checks the answer against `pgagroal_admins.conf`
//! ([`admit`]); a name that is not an admin goes through a mock exchange
//! that fails like a wrong password. An admin's secret is made once
//! ([`admin_secrets`]) with the salt the mock would show for the name, so
//! the exchange looks the same for admins and strangers (same salt on every
//! login, no key derivation while the peer waits): names cannot be probed. After
//! AuthenticationOk the admin sends one management frame, which the
//! daemon relays to its local management socket unless it is `conf reload`
//! ([`relay`]), and the reply comes back the same way.
//!
//! [`AdminLogin`] is `pgagroal-cli`'s side of that login: it only ever
//! answers SCRAM-SHA-256, so a server that asks for the password in clear
//! (or in md5) never gets it.

use super::{Command, error_code};
use crate::auth::exchange::Expect;
use crate::auth::login::{LoginError, LoginSecret, LoginStep, ServerLogin};
use crate::auth::scram::{DEFAULT_ITERATIONS, ScramSecret};
use crate::hba::{Hba, Method, Transport};
use crate::msg::service::Login;
use crate::protocol::backend::{self, BackendMessage, auth_code};
use crate::protocol::frame::Frame;
use crate::protocol::{encode, sqlstate};
use serde_json::Value;

/// The database an admin's StartupMessage names.
pub const ADMIN_DATABASE: &str = "admin";

/// Why an admin is refused before a password is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub sqlstate: &'static str,
    pub message: String,
    /// For the log.
    pub reason: &'static str,
}

/// What to do with an admin's StartupMessage.
#[derive(Debug)]
pub enum Admission {
    /// Ask for SCRAM-SHA-256 and check the answer against this.
    Check(Expect),
    Refuse(Refusal),
}

/// The admins' SCRAM secrets, each salted as the mock secret of its name
/// would be (one key derivation per admin, when the settings arrive).
pub fn admin_secrets(admins: &[Login], mock_secret: &[u8; 32]) -> Vec<(String, ScramSecret)> {
    admins
        .iter()
        .map(|a| {
            let salt = ScramSecret::mock(&a.user, mock_secret).salt.clone();
            (a.user.clone(), ScramSecret::from_password(&a.password, &salt, DEFAULT_ITERATIONS))
        })
        .collect()
}

/// Decide on an admin's StartupMessage: `host` is how messages name the
/// peer (PostgreSQL's spelling), `transport` how hba lines see it;
/// `secrets` come from [`admin_secrets`].
pub fn admit(
    user: &str,
    database: &str,
    host: &str,
    transport: Transport,
    hba: &Hba,
    secrets: &[(String, ScramSecret)],
    mock_secret: &[u8; 32],
) -> Admission {
    let describe = || format!("host \"{host}\", user \"{user}\", database \"{ADMIN_DATABASE}\"");
    if database != ADMIN_DATABASE {
        return Admission::Refuse(Refusal {
            sqlstate: sqlstate::INVALID_AUTHORIZATION,
            message: format!("the management port serves only the database \"{ADMIN_DATABASE}\", not \"{database}\""),
            reason: "not the admin database",
        });
    }
    match hba.find(ADMIN_DATABASE, user, transport).map(|e| e.method) {
        None => Admission::Refuse(Refusal {
            sqlstate: sqlstate::INVALID_AUTHORIZATION,
            message: format!("no pgagroal_hba.conf entry for {}", describe()),
            reason: "no hba entry",
        }),
        Some(Method::Reject) => Admission::Refuse(Refusal {
            sqlstate: sqlstate::INVALID_AUTHORIZATION,
            message: format!("pgagroal_hba.conf rejects connection for {}", describe()),
            reason: "rejected by hba",
        }),
        // Admins always prove their password with SCRAM-SHA-256, whatever
        // the line's method says, as upstream.
        Some(_) => match secrets.iter().find(|(name, _)| name == user) {
            Some((_, secret)) => Admission::Check(Expect::Scram(secret.clone())),
            None => Admission::Check(Expect::Mock(ScramSecret::mock(user, mock_secret))),
        },
    }
}

/// What to do with a request an authenticated admin sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relay {
    /// Send it to the local management socket.
    Forward,
    /// Answer it here with this error code and reason.
    Refuse(i64, &'static str),
}

/// Whether a request may travel from the management port to the daemon.
pub fn relay(request: &Value) -> Relay {
    match super::command_of(request).and_then(Command::from_id) {
        Some(Command::Reload) => Relay::Refuse(
            error_code::CONF_RELOAD_LOCAL_ONLY,
            "conf reload is only accepted on the local management socket",
        ),
        _ => Relay::Forward,
    }
}

/// Why an admin login failed, as `pgagroal-cli` reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminLoginError {
    /// The daemon said the password is wrong (or the name is no admin).
    #[error("bad credentials")]
    BadCredentials,
    /// The daemon refused the login for another reason (its message).
    #[error("refused: {0}")]
    Refused(String),
    /// The daemon broke the protocol or asked for something other than SCRAM.
    #[error("{0}")]
    Protocol(String),
}

/// What `pgagroal-cli` does next in a login.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminStep {
    /// Send these bytes, then read the next message.
    Send(Vec<u8>),
    /// Read the next message.
    Wait,
    /// AuthenticationOk after a verified SCRAM exchange: send the request.
    LoggedIn,
}

/// `pgagroal-cli` logging in to the management port.
pub struct AdminLogin {
    login: ServerLogin,
    scram_seen: bool,
}

impl std::fmt::Debug for AdminLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminLogin").field("scram_seen", &self.scram_seen).finish_non_exhaustive()
    }
}

impl AdminLogin {
    /// Begin; returns the StartupMessage to send first.
    pub fn start(user: &str, password: &str, client_nonce: &str) -> (AdminLogin, Vec<u8>) {
        let login = ServerLogin::new(user, LoginSecret::Password(password.to_string()), client_nonce);
        let startup = encode::startup_message(&[("user", user), ("database", ADMIN_DATABASE)]);
        (AdminLogin { login, scram_seen: false }, startup)
    }

    /// Handle one message from the daemon.
    pub fn on_message(&mut self, frame: &Frame<'_>) -> Result<AdminStep, AdminLoginError> {
        let message = backend::parse(frame).map_err(|e| AdminLoginError::Protocol(e.to_string()))?;
        match message {
            BackendMessage::Authentication { code, data } => {
                match code {
                    auth_code::SASL => self.scram_seen = true,
                    auth_code::SASL_CONTINUE | auth_code::SASL_FINAL | auth_code::OK if self.scram_seen => {}
                    auth_code::OK => {
                        return Err(AdminLoginError::Protocol("the daemon accepted the login without SCRAM".into()));
                    }
                    other => {
                        return Err(AdminLoginError::Protocol(format!(
                            "the daemon asks for authentication method {other}; admins use SCRAM-SHA-256 only"
                        )));
                    }
                }
                match self.login.on_request(code, data) {
                    Ok(LoginStep::Send(bytes)) => Ok(AdminStep::Send(bytes)),
                    Ok(LoginStep::Wait) => Ok(AdminStep::Wait),
                    Ok(LoginStep::Authenticated) => Ok(AdminStep::LoggedIn),
                    Err(LoginError::Exchange(text)) => {
                        Err(AdminLoginError::Protocol(format!("the SCRAM exchange failed: {text}")))
                    }
                    Err(e) => Err(AdminLoginError::Protocol(e.to_string())),
                }
            }
            BackendMessage::ErrorResponse(e) if e.code == sqlstate::INVALID_PASSWORD => {
                Err(AdminLoginError::BadCredentials)
            }
            BackendMessage::ErrorResponse(e) => Err(AdminLoginError::Refused(e.message)),
            BackendMessage::NoticeResponse | BackendMessage::NegotiateProtocolVersion => Ok(AdminStep::Wait),
            _ => Err(AdminLoginError::Protocol(format!(
                "unexpected message '{}' during the login",
                char::from(frame.tag).escape_default()
            ))),
        }
    }
}

#[cfg(test)]
#[path = "remote_tests.rs"]
mod tests;
