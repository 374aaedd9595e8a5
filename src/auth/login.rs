//! The pooler logging in to PostgreSQL with its own credentials: a password
//! from the users file, or what a client proved under `auth_query` (its
//! password, an md5 hash, or SCRAM's ClientKey). A state machine with no
//! I/O: the worker hands it each Authentication request the server sends
//! and writes what it returns.

use super::md5;
use super::sasl;
use super::scram::ScramClient;
use crate::protocol::backend::auth_code;

/// What the pooler logs in with.
#[derive(Clone)]
pub enum LoginSecret {
    /// A password: answers cleartext, md5 and SCRAM requests.
    Password(String),
    /// A stored md5 hash: answers md5 requests only.
    Md5Hash(String),
    /// A SCRAM ClientKey (and the ServerKey to check the server with):
    /// answers SCRAM requests only.
    ClientKey { client_key: [u8; 32], server_key: [u8; 32] },
}

impl std::fmt::Debug for LoginSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LoginSecret::Password(_) => "LoginSecret::Password(..)",
            LoginSecret::Md5Hash(_) => "LoginSecret::Md5Hash(..)",
            LoginSecret::ClientKey { .. } => "LoginSecret::ClientKey(..)",
        })
    }
}

/// Why a login cannot go on; the text is fit for the client and the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("the server asks for {0}, which the pooler cannot answer for this user")]
    CannotAnswer(&'static str),
    #[error("the server asks for an authentication method the pooler does not support (code {0})")]
    Unsupported(i32),
    #[error("the server does not offer SCRAM-SHA-256")]
    NoScram,
    #[error("the server's authentication failed: {0}")]
    Exchange(String),
    #[error("the server accepted the login without completing SCRAM")]
    IncompleteScram,
}

/// What the worker does with the server next.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginStep {
    /// Send this message, then read the server's next one.
    Send(Vec<u8>),
    /// Nothing to send; read the server's next message.
    Wait,
    /// AuthenticationOk arrived: the parameter statuses follow.
    Authenticated,
}

/// One login.
pub struct ServerLogin {
    user: String,
    secret: LoginSecret,
    nonce: String,
    scram: Option<ScramClient>,
    scram_done: bool,
    /// The code of the server's first request (0 when it asked nothing).
    first: Option<i32>,
}

impl std::fmt::Debug for ServerLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerLogin").field("user", &self.user).field("first", &self.first).finish_non_exhaustive()
    }
}

impl ServerLogin {
    /// `client_nonce` is used if the server asks for SCRAM.
    pub fn new(user: &str, secret: LoginSecret, client_nonce: &str) -> ServerLogin {
        ServerLogin {
            user: user.to_string(),
            secret,
            nonce: client_nonce.to_string(),
            scram: None,
            scram_done: false,
            first: None,
        }
    }

    /// The server's first request code, once one arrived.
    pub fn server_method(&self) -> Option<i32> {
        self.first
    }

    /// Handle one Authentication request: its code and the data after it.
    pub fn on_request(&mut self, code: i32, data: &[u8]) -> Result<LoginStep, LoginError> {
        self.first.get_or_insert(code);
        match code {
            auth_code::OK => {
                if self.scram.is_some() && !self.scram_done {
                    return Err(LoginError::IncompleteScram);
                }
                Ok(LoginStep::Authenticated)
            }
            auth_code::CLEARTEXT_PASSWORD => match &self.secret {
                LoginSecret::Password(password) => sasl::password_message(password.as_bytes())
                    .map(LoginStep::Send)
                    .map_err(|e| LoginError::Exchange(e.to_string())),
                _ => Err(LoginError::CannotAnswer("a cleartext password")),
            },
            auth_code::MD5_PASSWORD => {
                let salt: [u8; 4] = data
                    .get(..4)
                    .filter(|_| data.len() == 4)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| LoginError::Exchange("malformed AuthenticationMD5Password".into()))?;
                let response = match &self.secret {
                    LoginSecret::Password(password) => md5::response(&self.user, password, salt),
                    LoginSecret::Md5Hash(hash) => md5::response_from_hash(hash, salt),
                    LoginSecret::ClientKey { .. } => return Err(LoginError::CannotAnswer("an md5 password")),
                };
                sasl::password_message(response.as_bytes())
                    .map(LoginStep::Send)
                    .map_err(|e| LoginError::Exchange(e.to_string()))
            }
            auth_code::SASL => {
                let mechanisms = sasl::parse_mechanisms(data).map_err(|e| LoginError::Exchange(e.to_string()))?;
                if !mechanisms.contains(&sasl::SCRAM_SHA_256) {
                    return Err(LoginError::NoScram);
                }
                let client = match &self.secret {
                    LoginSecret::Password(password) => ScramClient::new(password, &self.nonce),
                    LoginSecret::ClientKey { client_key, server_key } => {
                        ScramClient::with_client_key(*client_key, Some(*server_key), &self.nonce)
                    }
                    LoginSecret::Md5Hash(_) => return Err(LoginError::CannotAnswer("a SCRAM exchange")),
                };
                let first = client.client_first();
                self.scram = Some(client);
                Ok(LoginStep::Send(sasl::sasl_initial_response(sasl::SCRAM_SHA_256, Some(&first))))
            }
            auth_code::SASL_CONTINUE => {
                let client = self.scram.as_mut().ok_or(LoginError::Exchange("SASLContinue before SASL".into()))?;
                let client_final = client.server_first(data).map_err(|e| LoginError::Exchange(e.to_string()))?;
                Ok(LoginStep::Send(sasl::sasl_response(&client_final)))
            }
            auth_code::SASL_FINAL => {
                let client = self.scram.as_mut().ok_or(LoginError::Exchange("SASLFinal before SASL".into()))?;
                client.server_final(data).map_err(|e| LoginError::Exchange(e.to_string()))?;
                self.scram_done = true;
                Ok(LoginStep::Wait)
            }
            other => Err(LoginError::Unsupported(other)),
        }
    }
}
