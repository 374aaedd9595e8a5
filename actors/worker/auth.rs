//! The worker's side of client authentication: it drives the exchanges of
//! `pgagroal::auth` over the client socket. Every read from the client is
//! bounded by the session's authentication deadline; the random parts
//! (salts, nonces) come from the operating system here.

use super::{Session, refuse};
use crate::net::{FrameFail, IoFail, Sock};
use base64::Engine;
use pgagroal::auth::exchange::{ClientExchange, Expect, Failure, Proven, Random, Step};
use pgagroal::auth::policy::Ask;
use pgagroal::auth::{ct::ct_eq, sasl};
use pgagroal::protocol::{frontend, sqlstate};
use pgagroal::shmem::{AuthKind, Replay};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use slog::info;
use std::time::Instant;

pub fn fill(bytes: &mut [u8]) {
    // The OS generator does not fail on Linux once the kernel pool is
    // ready; a failure leaves zeros and is not worth a crash of the worker.
    let _ = SystemRandom::new().fill(bytes);
}

/// A fresh SCRAM nonce: 18 random bytes in base64 (24 characters, as libpq).
pub fn nonce() -> String {
    let mut bytes = [0u8; 18];
    fill(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn random() -> Random {
    let mut md5_salt = [0u8; 4];
    let mut scram_salt = [0u8; 16];
    fill(&mut md5_salt);
    fill(&mut scram_salt);
    Random { md5_salt, scram_nonce: nonce(), scram_salt }
}

/// Refuse a client whose password does not match, in PostgreSQL's words.
pub fn wrong_password(s: &Session<'_>, client: &Sock) {
    info!(s.log, "password authentication failed");
    refuse(
        client,
        sqlstate::INVALID_PASSWORD,
        &format!("password authentication failed for user \"{}\"", s.startup.user),
    );
}

/// Read the client's answer to an authentication request: one whole `p`
/// message in `client_buf`; returns its length (the caller drains it).
pub fn read_answer(
    s: &Session<'_>,
    client: &Sock,
    client_buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<usize, &'static str> {
    let answer = match client.read_frame(client_buf, frontend::MAX_AUTH_MESSAGE, Some(deadline)) {
        Ok(f) => f,
        Err(FrameFail::Io(IoFail::Eof)) => return Err("client left during authentication"),
        Err(FrameFail::Io(IoFail::Timeout)) => {
            info!(s.log, "authentication timeout"; "step" => "waiting for the client's password");
            refuse(client, sqlstate::QUERY_CANCELED, "canceling authentication due to timeout");
            return Err("authentication timeout");
        }
        Err(e) => {
            refuse(client, sqlstate::PROTOCOL_VIOLATION, &format!("invalid authentication response: {e}"));
            return Err("bad authentication response");
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
            Err("bad authentication response")
        }
    }
}

/// Run the pooler's own check of the client. On failure the client has been
/// refused and the reason is returned.
pub fn check(
    s: &Session<'_>,
    client: &Sock,
    client_buf: &mut Vec<u8>,
    ask: Ask,
    expect: Expect,
    deadline: Instant,
) -> Result<Proven, &'static str> {
    let mocked = matches!(expect, Expect::Mock(_));
    let (mut exchange, mut step) = ClientExchange::start(ask, &s.startup.user, expect, random());
    loop {
        match step {
            Step::Send(bytes) => {
                if client.write_all(&bytes, Some(deadline)).is_err() {
                    return Err("client left during authentication");
                }
                let len = read_answer(s, client, client_buf, deadline)?;
                let body = client_buf.get(5..len).unwrap_or_default();
                step = exchange.answer(frontend::PASSWORD_MESSAGE, body);
                client_buf.drain(..len);
            }
            Step::Done { send, proven } => {
                if !send.is_empty() && client.write_all(&send, Some(deadline)).is_err() {
                    return Err("client left during authentication");
                }
                return Ok(proven);
            }
            Step::Failed(Failure::WrongPassword) => {
                wrong_password(s, client);
                return Err(if mocked { "user not served" } else { "wrong password" });
            }
            Step::Failed(Failure::Protocol(text)) => {
                info!(s.log, "client broke the authentication exchange"; "error" => &text);
                refuse(client, sqlstate::PROTOCOL_VIOLATION, &text);
                return Err("client protocol violation during authentication");
            }
        }
    }
}

/// A pass-through client reusing a connection the server authenticated with
/// a password: ask the same (md5 with the same salt) and compare the answer
/// with the first client's, by digest.
pub fn replay(
    s: &Session<'_>,
    client: &Sock,
    client_buf: &mut Vec<u8>,
    kind: AuthKind,
    stored: Replay,
    deadline: Instant,
) -> Result<(), &'static str> {
    let request = match kind {
        AuthKind::PassThroughPassword => sasl::authentication_cleartext_password().to_vec(),
        AuthKind::PassThroughMd5 => sasl::authentication_md5_password(stored.md5_salt).to_vec(),
        _ => return Ok(()),
    };
    if client.write_all(&request, Some(deadline)).is_err() {
        return Err("client left during authentication");
    }
    let len = read_answer(s, client, client_buf, deadline)?;
    let digest: [u8; 32] = Sha256::digest(&client_buf[..len]).into();
    client_buf.drain(..len);
    if ct_eq(&digest, &stored.digest) {
        Ok(())
    } else {
        wrong_password(s, client);
        Err("wrong password")
    }
}
