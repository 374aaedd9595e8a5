//! Making a new server connection in an empty slot: connect (with TLS when
//! the server's section asks for it), then either relay the server's
//! authentication (pass-through) or log in with the pooler's own secret,
//! record how it was authenticated in the slot, and hand the connection's
//! fd to the supervisor so that later workers can reuse it.

use super::connect::{self, Started};
use super::pool::{Access, Conn, kill};
use super::{Session, refuse};
use crate::net::Sock;
use pgagroal::disconnect::Disconnect;
use pgagroal::protocol::sqlstate;
use pgagroal::shmem::{AuthKind, Claim, PackedName, Replay, SlotState};
use slog::{debug, info, warn};
use std::time::{Duration, Instant};

/// Make a new server connection in an empty slot.
pub fn connect_new(
    s: &Session<'_>,
    client: &Sock,
    client_buf: &mut Vec<u8>,
    claim: Claim,
    access: &Access,
) -> Result<Conn, Disconnect> {
    let table = s.region.slots();
    // A new connection has no prepared statements, whatever the slot's last
    // connection had.
    if let Some(statements) = s.region.statements(claim.id.0 as usize) {
        statements.clear();
    }
    let began = Instant::now();
    let sock = match reach_server(s, client, claim) {
        Ok(sock) => sock,
        Err(reason) => {
            pgagroal::shmem::counters::record(pgagroal::shmem::counters::Event::ConnectionError);
            kill(s, claim.id, claim.word, None, false);
            return Err(reason);
        }
    };
    let deadline = Instant::now() + s.config.main.authentication_timeout;
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
                    Err(Disconnect::ServerLoginFailed)
                }
            }
        }
    };
    let started: Started = match started {
        Ok(started) => {
            pgagroal::shmem::counters::record(pgagroal::shmem::counters::Event::ConnectionSuccess);
            let server = table.get(conn.id).map_or(0, |slot| slot.server() as usize);
            if let Some(facts) = pgagroal::shmem::counters::server(server) {
                facts.connected(conn.server_method as u32, started.server_version);
            }
            pgagroal::shmem::counters::observe(pgagroal::shmem::counters::Histogram::ConnectTime, began.elapsed());
            started
        }
        Err(failure) => {
            pgagroal::shmem::counters::record(pgagroal::shmem::counters::Event::ConnectionError);
            let server = table.get(conn.id).map_or(0, |slot| slot.server() as usize);
            if let Some(facts) = pgagroal::shmem::counters::server(server) {
                facts.failed();
            }
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
            return Err(Disconnect::Internal);
        }
    }
    debug!(s.log, "new server connection"; "slot" => conn.id.0, "backend_pid" => started.backend_pid);
    Ok(conn)
}

/// Connect to the server new connections go to. While no server is known
/// to be the primary, the one marked primary and then the others are tried
/// in turn, and the first reachable becomes the primary. With `failover =
/// on`, an unreachable primary is marked for failover (the supervisor runs
/// `failover_script`) and the client, like every client while the failover
/// runs, is refused with 53300 `server failover`. The slot records the
/// server; the client has been told of any failure.
fn reach_server(s: &Session<'_>, client: &Sock, claim: Claim) -> Result<Sock, Disconnect> {
    use pgagroal::shmem::servers::{self, ServerState};
    let states = s.region.header().servers(s.config.servers.len());
    let now = states.all();
    let failover = s.config.main.failover;
    if failover && now.contains(&ServerState::Failover) {
        refuse(client, sqlstate::TOO_MANY_CONNECTIONS, "server failover");
        return Err(Disconnect::ServerUnavailable);
    }
    let mut order = servers::candidates(&now);
    if order.is_empty() {
        order.extend(servers::primary(&now));
    }
    let Some(&last) = order.last() else {
        refuse(client, sqlstate::CONNECTION_FAILURE, "no server is available");
        return Err(Disconnect::ServerUnavailable);
    };
    for index in order {
        let Some(server) = s.config.servers.get(index) else { continue };
        if let Some(slot) = s.region.slots().get(claim.id) {
            slot.set_identity(
                &PackedName::new(&s.startup.user),
                &PackedName::new(&s.startup.database),
                index as u32,
                pgagroal::sys::now_ms(),
            );
        }
        let deadline = Instant::now() + s.config.main.authentication_timeout;
        match connect::open_server(s, index, server, deadline) {
            Ok(sock) => {
                if states.change(index, &[ServerState::NotInit, ServerState::NotInitPrimary], ServerState::Primary) {
                    info!(s.log, "server is the primary"; "server" => &server.name);
                }
                return Ok(sock);
            }
            Err(e) => {
                warn!(s.log, "cannot connect to server"; "server" => &server.name, "error" => &e);
                if let Some(facts) = pgagroal::shmem::counters::server(index) {
                    facts.failed();
                }
                let from = [ServerState::Primary, ServerState::NotInit, ServerState::NotInitPrimary];
                if failover
                    && (states.change(index, &from, ServerState::Failover)
                        || states.get(index) == ServerState::Failover)
                {
                    warn!(s.log, "server unreachable: failover"; "server" => &server.name);
                    refuse(client, sqlstate::TOO_MANY_CONNECTIONS, "server failover");
                    return Err(Disconnect::ServerUnavailable);
                }
                if index == last {
                    refuse(client, sqlstate::CONNECTION_FAILURE, &e);
                    return Err(Disconnect::ServerUnavailable);
                }
            }
        }
    }
    refuse(client, sqlstate::CONNECTION_FAILURE, "no server is available");
    Err(Disconnect::ServerUnavailable)
}
