//! The worker's side of client authentication: the pooler's own check
//! runs through [`crate::frontend::check`]; what stays here is
//! pass-through's replay of a stored password answer.

use super::Session;
use crate::frontend;
use crate::net::Sock;
use pgagroal::auth::{ct::ct_eq, sasl};
use pgagroal::disconnect::Disconnect;
use pgagroal::shmem::{AuthKind, Replay};
use sha2::{Digest, Sha256};
use std::time::Instant;

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
) -> Result<(), Disconnect> {
    let request = match kind {
        AuthKind::PassThroughPassword => sasl::authentication_cleartext_password().to_vec(),
        AuthKind::PassThroughMd5 => sasl::authentication_md5_password(stored.md5_salt).to_vec(),
        _ => return Ok(()),
    };
    if client.write_all(&request, Some(deadline)).is_err() {
        return Err(Disconnect::LoginAbandoned);
    }
    let len = frontend::read_answer(s.who(), client, client_buf, deadline)?;
    let digest: [u8; 32] = Sha256::digest(&client_buf[..len]).into();
    client_buf.drain(..len);
    if ct_eq(&digest, &stored.digest) {
        Ok(())
    } else {
        frontend::wrong_password(s.who(), client);
        Err(Disconnect::AuthFailed)
    }
}
