//! Making a new server connection in an empty slot: connect (with TLS when
//! the server's section asks for it), then either relay the server's
//! authentication (pass-through) or log in with the pooler's own secret,
//! record how it was authenticated in the slot, and hand the connection's
//! fd to the supervisor so that later workers can reuse it.

use super::connect::{self, Started};
use super::pool::{Access, Conn, kill};
use super::{Session, refuse};
use crate::net::Sock;
use pgagroal::protocol::sqlstate;
use pgagroal::shmem::{AuthKind, Claim, PackedName, Replay, SlotState};
use slog::{debug, warn};
use std::time::{Duration, Instant};

/// Make a new server connection in an empty slot.
pub fn connect_new(
    s: &Session<'_>,
    client: &Sock,
    client_buf: &mut Vec<u8>,
    claim: Claim,
    access: &Access,
) -> Result<Conn, &'static str> {
    let table = s.region.slots();
    let Some((server_index, server)) = s.config.primary_server() else {
        kill(s, claim.id, claim.word, None, false);
        refuse(client, sqlstate::CONNECTION_FAILURE, "no server is configured");
        return Err("no server");
    };
    if let Some(slot) = table.get(claim.id) {
        slot.set_identity(
            &PackedName::new(&s.startup.user),
            &PackedName::new(&s.startup.database),
            server_index as u32,
            pgagroal::sys::now_ms(),
        );
    }
    let deadline = Instant::now() + s.config.main.authentication_timeout;
    let sock = match connect::open_server(s, server_index, server, deadline) {
        Ok(sock) => sock,
        Err(e) => {
            warn!(s.log, "cannot connect to server"; "server" => &server.name, "error" => &e);
            kill(s, claim.id, claim.word, None, false);
            refuse(client, sqlstate::CONNECTION_FAILURE, &e);
            return Err("server unreachable");
        }
    };
    if sock.is_tls()
        && let Some(slot) = table.get(claim.id)
    {
        slot.set_tls_owner(s.pid);
    }
    let mut conn = Conn {
        sock,
        id: claim.id,
        word: claim.word,
        auth: AuthKind::Unknown,
        server_method: 0,
        replay: Replay::default(),
        registered: false,
        startup: Vec::new(),
        client_authenticated: false,
    };
    let started = match access {
        Access::PassThrough(floor) => connect::relay_login(s, client, client_buf, &mut conn, *floor, deadline),
        Access::Pooler { secret, .. } => {
            let secret = secret.clone();
            match connect::login(&conn.sock, &s.startup.user, &s.startup.database, secret, deadline) {
                Ok((started, method)) => {
                    conn.server_method = method;
                    conn.auth = if method == 0 { AuthKind::Trust } else { AuthKind::Pooler };
                    Ok(started)
                }
                Err(fail) => {
                    warn!(s.log, "the pooler's login to the server failed"; "reason" => fail.describe());
                    let _ = client.write_all(&fail.for_client(), Some(Instant::now() + Duration::from_secs(1)));
                    Err("server login failed")
                }
            }
        }
    };
    let started: Started = match started {
        Ok(started) => started,
        Err(failure) => {
            kill(s, conn.id, conn.word, Some(&conn.sock), false);
            return Err(failure);
        }
    };
    conn.client_authenticated = matches!(access, Access::PassThrough(_));
    if let Some(slot) = table.get(conn.id) {
        slot.set_backend(conn.auth, started.backend_pid, started.backend_secret);
        slot.set_server_method(conn.server_method as u32);
        slot.set_replay(&conn.replay);
    }
    conn.registered =
        crate::pooled::register(s.mailbox, conn.id, conn.word, started.cached.clone(), &conn.sock, &s.log);
    conn.startup = started.cached;
    if !conn.registered {
        warn!(s.log, "supervisor did not take the connection; it will not be pooled"; "slot" => conn.id.0);
    }
    match table.transition(conn.id, conn.word, SlotState::InUse, s.pid) {
        Ok(word) => conn.word = word,
        Err(e) => {
            warn!(s.log, "slot changed during connection set-up"; "slot" => conn.id.0, "error" => %e);
            refuse(client, sqlstate::INTERNAL_ERROR, "connection slot was reclaimed during set-up");
            conn.sock.shutdown();
            return Err("slot lost");
        }
    }
    debug!(s.log, "new server connection"; "slot" => conn.id.0, "backend_pid" => started.backend_pid);
    Ok(conn)
}
