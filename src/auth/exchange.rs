//! The pooler checking a client: the exchange that follows a
//! [`Plan::Check`](super::policy::Plan) or a mock, as a state machine with
//! no I/O. The worker sends what [`Step::Send`] holds, reads the client's
//! next message and hands it to [`ClientExchange::answer`], until the
//! exchange is [`Step::Done`] or has [`Step::Failed`].
//!
//! Salts and nonces come in as arguments ([`Random`]); what a successful
//! exchange proved comes out as [`Proven`], which the worker logs in to
//! PostgreSQL with when it has no stored password (`auth_query`).

use super::md5;
use super::policy::Ask;
use super::sasl;
use super::scram::{ScramSecret, ScramServer};
use super::{AuthError, ct::ct_eq};
use crate::protocol::frontend::PASSWORD_MESSAGE;

/// What the client's answer is checked against.
pub enum Expect {
    /// A password from the users file (or the frontend users file). Any
    /// request can be checked against it.
    Password(String),
    /// A SCRAM verifier fetched with `auth_query`.
    Scram(ScramSecret),
    /// An md5 hash (`md5...`) fetched with `auth_query`.
    Md5Hash(String),
    /// Nothing: a mock exchange for a user the pooler does not serve. The
    /// SCRAM secret is [`ScramSecret::mock`] for the user, so the exchange
    /// looks like a real one to the end.
    Mock(ScramSecret),
}

impl std::fmt::Debug for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Expect::Password(_) => "Expect::Password(..)",
            Expect::Scram(_) => "Expect::Scram(..)",
            Expect::Md5Hash(_) => "Expect::Md5Hash(..)",
            Expect::Mock(_) => "Expect::Mock(..)",
        })
    }
}

/// The random parts of an exchange, drawn by the caller.
#[derive(Debug, Clone)]
pub struct Random {
    /// The salt of an md5 request.
    pub md5_salt: [u8; 4],
    /// The server's part of the SCRAM nonce (printable, no ',').
    pub scram_nonce: String,
    /// The salt of a SCRAM secret made from a password for this exchange.
    pub scram_salt: [u8; 16],
}

/// What a successful exchange showed about the client.
pub enum Proven {
    /// Nothing was asked.
    Nothing,
    /// The client sent this cleartext password, which matched.
    Password(String),
    /// The client's md5 answer matched.
    Md5,
    /// The client's SCRAM proof matched; these keys log in to a server
    /// holding the same verifier.
    ClientKey { client_key: [u8; 32], server_key: [u8; 32] },
}

impl std::fmt::Debug for Proven {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proven::Nothing => "Proven::Nothing",
            Proven::Password(_) => "Proven::Password(..)",
            Proven::Md5 => "Proven::Md5",
            Proven::ClientKey { .. } => "Proven::ClientKey(..)",
        })
    }
}

/// Why the exchange failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The answer does not match (SQLSTATE 28P01), or the user is mocked.
    WrongPassword,
    /// The client broke the protocol (SQLSTATE 08P01); the text says how.
    Protocol(String),
}

/// What the worker does next.
#[derive(Debug)]
pub enum Step {
    /// Send these bytes, then read the client's next message.
    Send(Vec<u8>),
    /// The client is authenticated: send these bytes (a SASLFinal, or
    /// nothing), then AuthenticationOk and the rest of the greeting.
    Done {
        send: Vec<u8>,
        proven: Proven,
    },
    Failed(Failure),
}

enum State {
    /// Waiting for a PasswordMessage answering a cleartext or md5 request.
    Password,
    /// Waiting for SASLInitialResponse.
    SaslInitial(Box<ScramServer>),
    /// Waiting for SASLResponse with the client-final-message.
    SaslFinal(Box<ScramServer>),
    Finished,
}

/// One client's check.
pub struct ClientExchange {
    ask: Ask,
    user: String,
    expect: Expect,
    md5_salt: [u8; 4],
    state: State,
}

impl std::fmt::Debug for ClientExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientExchange").field("ask", &self.ask).field("user", &self.user).finish_non_exhaustive()
    }
}

fn protocol(e: AuthError) -> Step {
    match e {
        AuthError::WrongPassword => Step::Failed(Failure::WrongPassword),
        other => Step::Failed(Failure::Protocol(other.to_string())),
    }
}

impl ClientExchange {
    /// Begin: the first step is the request to send (or `Done` when nothing
    /// is asked).
    pub fn start(ask: Ask, user: &str, expect: Expect, random: Random) -> (ClientExchange, Step) {
        let mut exchange =
            ClientExchange { ask, user: user.to_string(), expect, md5_salt: random.md5_salt, state: State::Finished };
        let step = match ask {
            Ask::Nothing => match exchange.expect {
                Expect::Mock(_) => Step::Failed(Failure::WrongPassword),
                _ => Step::Done { send: Vec::new(), proven: Proven::Nothing },
            },
            Ask::Cleartext => {
                exchange.state = State::Password;
                Step::Send(sasl::authentication_cleartext_password().to_vec())
            }
            Ask::Md5 => {
                exchange.state = State::Password;
                Step::Send(sasl::authentication_md5_password(random.md5_salt).to_vec())
            }
            Ask::Scram => {
                let secret = match &exchange.expect {
                    Expect::Password(password) => {
                        ScramSecret::from_password(password, &random.scram_salt, super::scram::DEFAULT_ITERATIONS)
                    }
                    Expect::Scram(secret) => secret.clone(),
                    Expect::Mock(secret) => secret.clone(),
                    // An md5 hash cannot serve SCRAM; the policy never asks
                    // for it, but a mock keeps the exchange uniform.
                    Expect::Md5Hash(_) => ScramSecret::mock(user, &[0; 32]),
                };
                exchange.state = State::SaslInitial(Box::new(ScramServer::new(secret, &random.scram_nonce)));
                Step::Send(sasl::authentication_sasl(&[sasl::SCRAM_SHA_256]))
            }
        };
        (exchange, step)
    }

    /// The client's next message: its tag and body.
    pub fn answer(&mut self, tag: u8, body: &[u8]) -> Step {
        if tag != PASSWORD_MESSAGE {
            self.state = State::Finished;
            return Step::Failed(Failure::Protocol(format!(
                "expected password response, got message type {}",
                char::from(tag).escape_default()
            )));
        }
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Password => self.check_password(body),
            State::SaslInitial(mut server) => {
                let initial = match sasl::parse_initial_response(body) {
                    Ok(initial) => initial,
                    Err(e) => return protocol(e),
                };
                if initial.mechanism != sasl::SCRAM_SHA_256 {
                    return Step::Failed(Failure::Protocol(
                        "client selected an invalid SASL authentication mechanism".into(),
                    ));
                }
                let Some(data) = initial.data else {
                    return Step::Failed(Failure::Protocol(
                        "SASLInitialResponse carries no client-first-message".into(),
                    ));
                };
                match server.client_first(data) {
                    Ok(server_first) => {
                        self.state = State::SaslFinal(server);
                        Step::Send(sasl::authentication_sasl_continue(&server_first))
                    }
                    Err(e) => protocol(e),
                }
            }
            State::SaslFinal(mut server) => match server.client_final(body) {
                Ok(success) => {
                    if matches!(self.expect, Expect::Mock(_)) {
                        return Step::Failed(Failure::WrongPassword);
                    }
                    let server_key = match &self.expect {
                        Expect::Scram(secret) => secret.server_key,
                        _ => [0; 32],
                    };
                    let proven = Proven::ClientKey { client_key: success.client_key, server_key };
                    Step::Done { send: sasl::authentication_sasl_final(&success.server_final), proven }
                }
                Err(e) => protocol(e),
            },
            State::Finished => Step::Failed(Failure::Protocol("unexpected password message".into())),
        }
    }

    fn check_password(&self, body: &[u8]) -> Step {
        let answer = match sasl::parse_password_message(body) {
            Ok(answer) => answer,
            Err(e) => return protocol(e),
        };
        if answer.is_empty() {
            // PostgreSQL refuses an empty password outright.
            return Step::Failed(Failure::WrongPassword);
        }
        let matched = match (self.ask, &self.expect) {
            (_, Expect::Mock(_)) => false,
            (Ask::Md5, Expect::Password(password)) => {
                md5::verify(&md5::password_hash(&self.user, password), self.md5_salt, answer)
            }
            (Ask::Md5, Expect::Md5Hash(hash)) => md5::verify(hash, self.md5_salt, answer),
            (Ask::Md5, Expect::Scram(_)) => false,
            (_, Expect::Password(password)) => ct_eq(password.as_bytes(), answer),
            (_, Expect::Md5Hash(hash)) => {
                let given = String::from_utf8_lossy(answer);
                ct_eq(md5::password_hash(&self.user, &given).as_bytes(), hash.as_bytes())
            }
            (_, Expect::Scram(secret)) => {
                let given = String::from_utf8_lossy(answer);
                let derived = ScramSecret::from_password(&given, &secret.salt, secret.iterations);
                ct_eq(&derived.stored_key, &secret.stored_key) & ct_eq(&derived.server_key, &secret.server_key)
            }
        };
        if !matched {
            return Step::Failed(Failure::WrongPassword);
        }
        let proven = match self.ask {
            Ask::Md5 => Proven::Md5,
            _ => Proven::Password(String::from_utf8_lossy(answer).into_owned()),
        };
        Step::Done { send: Vec::new(), proven }
    }
}
