//! The pooler's side of a frontend's first steps over a [`Sock`], shared by
//! client workers and the remote-management actor: reading the startup
//! packet (answering SSLRequest and GSSENCRequest), refusing with a FATAL
//! ErrorResponse, and driving `pgagroal::auth`'s exchange that checks the
//! frontend's password. Every read is bounded by the caller's deadline; the
//! random parts (salts, nonces) come from the operating system here.

use crate::net::{FrameFail, IoFail, Sock, TlsFail};
use pgagroal::auth::exchange::{ClientExchange, Expect, Failure, Proven, Random, Step};
use pgagroal::auth::policy::Ask;
use pgagroal::disconnect::Disconnect;
use pgagroal::protocol::startup::{self, Startup, StartupError, StartupPacket};
use pgagroal::protocol::{encode, frontend, sqlstate};
use pgagroal::shmem::counters::{Event, record};
use slog::{debug, info};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgagroal::sys::{fill_random, random_nonce};

fn random() -> Random {
    let mut md5_salt = [0u8; 4];
    let mut scram_salt = [0u8; 16];
    fill_random(&mut md5_salt);
    fill_random(&mut scram_salt);
    Random { md5_salt, scram_nonce: random_nonce(), scram_salt }
}

/// Send a FATAL ErrorResponse and give up on the frontend.
pub fn refuse(client: &Sock, code: &str, message: &str) {
    let bytes = encode::error_response("FATAL", code, message);
    let _ = client.write_all(&bytes, Some(Instant::now() + Duration::from_secs(1)));
}

/// What the first packets were.
pub enum First {
    /// A StartupMessage, on `client` (now carrying TLS if it asked), and
    /// the bytes that came after it.
    Startup { client: Sock, startup: Startup, leftover: Vec<u8> },
    /// A CancelRequest with its key.
    Cancel { pid: i32, secret: Vec<u8> },
}

/// Read SSLRequest / GSSENCRequest until a StartupMessage or a
/// CancelRequest arrives; TLS is offered when `tls` is given. Err says why
/// the frontend is done (closed, refused or too slow).
pub fn read_startup(
    mut client: Sock,
    tls: Option<&Arc<rustls::ServerConfig>>,
    deadline: Instant,
    log: &slog::Logger,
) -> Result<First, Disconnect> {
    let mut buf = Vec::with_capacity(512);
    let mut negotiated = 0;
    loop {
        match startup::parse(&buf) {
            Ok(Some((packet, used))) => {
                buf.drain(..used);
                match packet {
                    StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                        negotiated += 1;
                        // Bytes sent after the request, before the answer,
                        // would be read as if they came over TLS.
                        if negotiated > 2 || !buf.is_empty() || client.is_tls() {
                            refuse(
                                &client,
                                sqlstate::PROTOCOL_VIOLATION,
                                "invalid startup packet layout: repeated encryption request",
                            );
                            return Err(Disconnect::ClientProtocolViolation);
                        }
                        match (packet, tls) {
                            (StartupPacket::SslRequest, Some(config)) => {
                                client.write_all(b"S", Some(deadline)).map_err(|_| Disconnect::ClientError)?;
                                client = match client.accept_tls(config.clone(), deadline) {
                                    Ok(tls) => tls,
                                    Err(TlsFail::Io(IoFail::Timeout)) => {
                                        info!(log, "authentication timeout"; "step" => "TLS handshake");
                                        return Err(Disconnect::AuthTimeout);
                                    }
                                    Err(e) => {
                                        info!(log, "TLS handshake with the client failed"; "error" => %e);
                                        return Err(Disconnect::TlsFailed);
                                    }
                                };
                            }
                            // GSS encryption is never offered, TLS only when configured.
                            _ => client.write_all(b"N", Some(deadline)).map_err(|_| Disconnect::ClientError)?,
                        }
                    }
                    StartupPacket::Cancel { pid, secret } => return Ok(First::Cancel { pid, secret }),
                    StartupPacket::Startup(s) => {
                        if s.minor > 0 {
                            let unknown: Vec<&str> =
                                s.params.iter().map(|(k, _)| k.as_str()).filter(|k| k.starts_with("_pq_.")).collect();
                            let nego = encode::negotiate_protocol_version(startup::PROTOCOL_3_0, &unknown);
                            client.write_all(&nego, Some(deadline)).map_err(|_| Disconnect::ClientError)?;
                        }
                        return Ok(First::Startup { client, startup: s, leftover: buf });
                    }
                }
            }
            Ok(None) => match client.read_some(&mut buf, Some(deadline)) {
                Ok(_) => {}
                Err(IoFail::Eof) => {
                    debug!(log, "client closed before start-up");
                    return Err(Disconnect::LoginAbandoned);
                }
                Err(IoFail::Timeout) => {
                    refuse(&client, sqlstate::QUERY_CANCELED, "canceling authentication due to timeout");
                    info!(log, "authentication timeout"; "step" => "waiting for the startup packet");
                    return Err(Disconnect::AuthTimeout);
                }
                Err(IoFail::Io(e)) => {
                    debug!(log, "client read failed during start-up"; "error" => %e);
                    return Err(Disconnect::ClientError);
                }
            },
            Err(e) => {
                let code = match e {
                    StartupError::UnsupportedVersion { .. } => sqlstate::FEATURE_NOT_SUPPORTED,
                    StartupError::NoUser => sqlstate::INVALID_AUTHORIZATION,
                    _ => sqlstate::PROTOCOL_VIOLATION,
                };
                info!(log, "bad startup packet"; "error" => %e);
                refuse(&client, code, &e.to_string());
                return Err(Disconnect::ClientProtocolViolation);
            }
        }
    }
}

/// Who is being checked, for messages and the log.
#[derive(Clone, Copy)]
pub struct Who<'a> {
    pub user: &'a str,
    pub log: &'a slog::Logger,
}

/// Refuse a frontend whose password does not match, in PostgreSQL's words.
pub fn wrong_password(who: Who<'_>, client: &Sock) {
    info!(who.log, "password authentication failed");
    refuse(client, sqlstate::INVALID_PASSWORD, &format!("password authentication failed for user \"{}\"", who.user));
}

/// Read the frontend's answer to an authentication request: one whole `p`
/// message in `client_buf`; returns its length (the caller drains it).
pub fn read_answer(
    who: Who<'_>,
    client: &Sock,
    client_buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<usize, Disconnect> {
    let answer = match client.read_frame(client_buf, frontend::MAX_AUTH_MESSAGE, Some(deadline)) {
        Ok(f) => f,
        Err(FrameFail::Io(IoFail::Eof)) => return Err(Disconnect::LoginAbandoned),
        Err(FrameFail::Io(IoFail::Timeout)) => {
            info!(who.log, "authentication timeout"; "step" => "waiting for the client's password");
            refuse(client, sqlstate::QUERY_CANCELED, "canceling authentication due to timeout");
            return Err(Disconnect::AuthTimeout);
        }
        Err(e) => {
            refuse(client, sqlstate::PROTOCOL_VIOLATION, &format!("invalid authentication response: {e}"));
            return Err(Disconnect::ClientProtocolViolation);
        }
    };
    match answer.tag {
        frontend::PASSWORD_MESSAGE => Ok(answer.len()),
        other => {
            let tag = char::from(other).escape_default();
            refuse(
                client,
                sqlstate::PROTOCOL_VIOLATION,
                &format!("expected password response, got message type {tag}"),
            );
            Err(Disconnect::ClientProtocolViolation)
        }
    }
}

/// Check the frontend's password as `ask` says, against `expect`. On
/// failure the frontend has been refused and the reason is returned.
pub fn check(
    who: Who<'_>,
    client: &Sock,
    client_buf: &mut Vec<u8>,
    ask: Ask,
    expect: Expect,
    deadline: Instant,
) -> Result<Proven, Disconnect> {
    let mocked = matches!(expect, Expect::Mock(_));
    let (mut exchange, mut step) = ClientExchange::start(ask, who.user, expect, random());
    loop {
        match step {
            Step::Send(bytes) => {
                if client.write_all(&bytes, Some(deadline)).is_err() {
                    return Err(Disconnect::LoginAbandoned);
                }
                let len = read_answer(who, client, client_buf, deadline)?;
                let body = client_buf.get(5..len).unwrap_or_default();
                step = exchange.answer(frontend::PASSWORD_MESSAGE, body);
                client_buf.drain(..len);
            }
            Step::Done { send, proven } => {
                if !send.is_empty() && client.write_all(&send, Some(deadline)).is_err() {
                    return Err(Disconnect::LoginAbandoned);
                }
                record(Event::AuthSuccess);
                return Ok(proven);
            }
            Step::Failed(Failure::WrongPassword) => {
                record(Event::AuthBadPassword);
                wrong_password(who, client);
                return Err(if mocked { Disconnect::UnknownUser } else { Disconnect::AuthFailed });
            }
            Step::Failed(Failure::Protocol(text)) => {
                record(Event::AuthError);
                info!(who.log, "client broke the authentication exchange"; "error" => &text);
                refuse(client, sqlstate::PROTOCOL_VIOLATION, &text);
                return Err(Disconnect::ClientProtocolViolation);
            }
        }
    }
}
