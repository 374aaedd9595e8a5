//! The worker's side of the pool: get a slot ([`super::acquire`]), bring it in line with the client's settings
//! ([`super::settings`]), greet the client with its own minted key, and at
//! the end reset the connection and give it back, or terminate it. A
//! worker keeps the fds of connections it gave back ([`super::fds`]).

use super::auth;
use super::fds::{Fds, Kept};
use super::relay::{self, End};
use super::reset::{drain, send_reset};
use super::settings;
use super::{HOUSEKEEPING_TIMEOUT, Session};
use crate::net::Sock;
use pgagroal::auth::login::LoginSecret;
use pgagroal::auth::policy::{self, Floor};
use pgagroal::disconnect::Disconnect;
use pgagroal::protocol::{encode, params};
use pgagroal::shmem::servers::ServerState;
use pgagroal::shmem::{AuthKind, AuthKinds, Region, Replay, SlotId, SlotState, Word};
use slog::{debug, info, warn};
use std::time::{Duration, Instant};

/// The server connection a session runs on.
pub struct Conn {
    pub sock: Sock,
    pub id: SlotId,
    pub word: Word,
    pub auth: AuthKind,
    /// The server's first authentication request when the connection was made.
    pub server_method: i32,
    /// What reusing pass-through clients are checked against.
    pub replay: Replay,
    /// The supervisor holds a copy, so the connection can be pooled.
    pub registered: bool,
    /// ParameterStatus set and BackendKeyData from the connection's start-up.
    pub startup: Vec<u8>,
    /// The client was authenticated by the server while this connection was
    /// made (pass-through) and has been sent AuthenticationOk.
    pub client_authenticated: bool,
}

/// What a worker keeps from one client to the next.
pub struct Reuse {
    pub buffers: relay::Buffers,
    pub fds: Fds,
    /// The worker's entry in the client table (None when it is full: the
    /// client's key then cancels nothing).
    pub entry: Option<usize>,
}

impl Reuse {
    pub fn new(region: &Region, pid: i32) -> Self {
        Reuse { buffers: relay::Buffers::new(), fds: Fds::default(), entry: region.clients().claim(pid) }
    }

    /// Before the worker exits.
    pub fn release(&mut self, region: &Region, mailbox: &super::WorkerMailbox, pid: i32) {
        self.fds.release(region, mailbox, pid);
        region.clients().release(pid);
    }
}

/// How the session gets its server connection.
pub enum Access {
    /// The pooler logs in to new connections itself; the client has been
    /// (or, with `then_check`, will be) checked by the pooler.
    Pooler { secret: LoginSecret, then_check: bool },
    /// The server's exchange is relayed; it must ask at least `floor`.
    PassThrough(Floor),
}

impl Access {
    pub fn kinds(&self) -> AuthKinds {
        match self {
            Access::Pooler { .. } => policy::CHECKED_REUSE,
            Access::PassThrough(floor) => policy::pass_through_reuse(*floor),
        }
    }
}

/// Serve the client from start to end; returns why the session ended.
pub fn serve(s: &Session<'_>, client: &Sock, client_buf: Vec<u8>, reuse: &mut Reuse, access: Access) -> Disconnect {
    let mut secret = [0u8; 4];
    pgagroal::sys::fill_random(&mut secret);
    let key = (s.pid, u32::from_be_bytes(secret).max(1));
    if let Some(entry) = reuse.entry {
        s.region.clients().begin_client(entry, key.1);
        if pgagroal::shmem::counters::enabled() {
            let (database, user) = (
                pgagroal::shmem::PackedName::new(&s.startup.database),
                pgagroal::shmem::PackedName::new(&s.startup.user),
            );
            s.region.clients().set_pool(entry, pgagroal::shmem::counters::intern_pool(&database, &user));
        }
    }
    let reason = serve_with_key(s, client, client_buf, reuse, &access, key);
    if let Some(entry) = reuse.entry {
        s.region.clients().end_client(entry);
    }
    reason
}

fn serve_with_key(
    s: &Session<'_>,
    client: &Sock,
    mut client_buf: Vec<u8>,
    reuse: &mut Reuse,
    access: &Access,
    key: (i32, u32),
) -> Disconnect {
    let conn = match super::acquire::acquire(s, client, &mut client_buf, reuse, access, false) {
        Ok(conn) => conn,
        Err(super::acquire::Unserved::Left(reason)) => return reason,
        // Not asked for: nothing the client sent waits on this one.
        Err(super::acquire::Unserved::Cancelled) => return Disconnect::Internal,
    };
    let conn = match admit_on(s, client, &mut client_buf, conn, access) {
        Ok(conn) => conn,
        Err((reason, conn)) => {
            give_back(s, reuse, conn, None);
            return reason;
        }
    };
    let reported = match settings::bring_in_line(s, &s.params, &conn) {
        Ok(reported) => reported,
        Err(failure) => return settings_failed(s, client, reuse, conn, failure),
    };
    let conn = match greet(s, client, conn, &reported, key) {
        Ok(conn) => conn,
        Err((reason, conn)) => {
            give_back(s, reuse, conn, None);
            return reason;
        }
    };
    if s.transaction && matches!(access, Access::Pooler { .. }) {
        return super::transaction::run(s, client, client_buf, reuse, access, conn);
    }
    let main = &s.config.main;
    let mode = relay::Mode {
        stop_at_idle: false,
        inspect: !reset_clears(s),
        disconnect_after: (main.disconnect_client > 0).then(|| Duration::from_secs(main.disconnect_client)),
        force: main.disconnect_client_force,
    };
    let end = relay::run(client, &conn.sock, client_buf, &mut reuse.buffers, mode, counted(s, &conn), None);
    finish(s, conn, end, reuse)
}

/// The connection's slot, where its queries are counted, when metrics are on.
pub fn counted<'r>(s: &Session<'r>, conn: &Conn) -> Option<&'r pgagroal::shmem::slot::Slot> {
    pgagroal::shmem::counters::enabled().then(|| s.region.slots().get(conn.id)).flatten()
}

/// Whether the session reset (`server_reset_query`) returns every setting
/// to its default, as `DISCARD ALL` and `RESET ALL` do.
fn reset_clears(s: &Session<'_>) -> bool {
    let q = s.config.main.server_reset_query.to_ascii_lowercase();
    !s.transaction && (q.contains("discard all") || q.contains("reset all"))
}

/// The checks that come after the connection: hba `all` for a known user
/// (ask what the server asked), or a pass-through client reusing a
/// connection made with a password. On failure the client has been
/// refused and the connection, untouched, is returned to be given back.
fn admit_on(
    s: &Session<'_>,
    client: &Sock,
    client_buf: &mut Vec<u8>,
    conn: Conn,
    access: &Access,
) -> Result<Conn, (Disconnect, Conn)> {
    if conn.client_authenticated {
        return Ok(conn);
    }
    // Time spent waiting for a slot is the pool's, not the client's: the
    // checks that follow get at least a full authentication_timeout.
    let deadline = s.auth_deadline.max(Instant::now() + s.config.main.authentication_timeout);
    let checked = match access {
        Access::Pooler { then_check: true, .. } => {
            let ask = policy::ask_like_server(conn.server_method as u32);
            crate::frontend::check(s.who(), client, client_buf, ask, super::vault_expect(s, ask), deadline).map(|_| ())
        }
        Access::PassThrough(_) => auth::replay(s, client, client_buf, conn.auth, conn.replay, deadline),
        Access::Pooler { then_check: false, .. } => Ok(()),
    };
    match checked {
        Ok(()) => Ok(conn),
        Err(reason) => Err((reason, conn)),
    }
}

/// Let the client's binding go before its slot changes hands; false when a
/// cancel stayed in flight, in which case the connection must not be given
/// to anyone else.
pub fn unbind(s: &Session<'_>, entry: Option<usize>) -> bool {
    let Some(entry) = entry else { return true };
    let clients = s.region.clients();
    match clients.unbind(entry, HOUSEKEEPING_TIMEOUT) {
        Ok(()) => true,
        Err(_) => {
            warn!(s.log, "a cancel request is still on its way to the server connection; closing it");
            clients.force_unbind(entry);
            false
        }
    }
}

/// Terminate the connection in a slot this worker holds and free the slot.
/// `clean` means the connection is between messages and may get a Terminate.
pub fn kill(s: &Session<'_>, id: SlotId, word: Word, sock: Option<&Sock>, clean: bool) {
    crate::pooled::kill(s.region, s.mailbox, s.pid, (id, word), sock, clean, &s.log);
}

/// AuthenticationOk (unless the server's was relayed), the connection's
/// ParameterStatus set with the client's own settings, the client's minted
/// BackendKeyData, and ReadyForQuery.
fn greet(
    s: &Session<'_>,
    client: &Sock,
    conn: Conn,
    reported: &[(String, String)],
    key: (i32, u32),
) -> Result<Conn, (Disconnect, Conn)> {
    let mut out = Vec::with_capacity(conn.startup.len() + 32);
    if !conn.client_authenticated {
        out.extend_from_slice(&encode::authentication_ok());
    }
    out.extend_from_slice(&s.params.greeting(&conn.startup, reported, key));
    out.extend_from_slice(&encode::ready_for_query(b'I'));
    if let Some(slot) = s.region.slots().get(conn.id) {
        slot.touch(pgagroal::sys::now_ms());
    }
    if client.write_all(&out, Some(Instant::now() + HOUSEKEEPING_TIMEOUT)).is_err() {
        return Err((Disconnect::LoginAbandoned, conn));
    }
    debug!(s.log, "session on pooled connection"; "slot" => conn.id.0);
    Ok(conn)
}

/// The client's settings could not be applied to `conn`: tell the client,
/// then give the connection back (the server only refused a value) or
/// close it (it failed). Returns why the session ends.
pub fn settings_failed(
    s: &Session<'_>,
    client: &Sock,
    reuse: &mut Reuse,
    conn: Conn,
    failure: settings::Failure,
) -> Disconnect {
    debug!(s.log, "settings could not be applied to the connection"; "slot" => conn.id.0);
    let _ = client.write_all(failure.for_client(), Some(Instant::now() + Duration::from_secs(1)));
    if failure.is_broken() {
        unbind(s, reuse.entry);
        kill(s, conn.id, conn.word, Some(&conn.sock), false);
    } else {
        give_back(s, reuse, conn, None);
    }
    Disconnect::SettingsRefused
}

/// Return a clean slot: IN_USE -> FREE, recording the settings it holds
/// (`params`; None: unchanged). The worker keeps its copy of the fd.
pub fn give_back(s: &Session<'_>, reuse: &mut Reuse, conn: Conn, params: Option<u64>) {
    if !unbind(s, reuse.entry) {
        kill(s, conn.id, conn.word, Some(&conn.sock), false);
        return;
    }
    let table = s.region.slots();
    let now = pgagroal::sys::now_ms();
    let max_age = s.config.main.max_connection_age;
    if let Some(slot) = table.get(conn.id) {
        slot.touch(now);
        if let Some(hash) = params {
            slot.set_params_hash(hash);
        }
        if pgagroal::pool::too_old(slot.created_ms(), now, max_age) {
            debug!(s.log, "connection reached max_connection_age; closing it"; "slot" => conn.id.0);
            pgagroal::shmem::counters::record(pgagroal::shmem::counters::Event::ConnectionMaxAge);
            kill(s, conn.id, conn.word, Some(&conn.sock), true);
            return;
        }
        if slot.flush_marked() {
            debug!(s.log, "connection flushed while in use; closing it"; "slot" => conn.id.0);
            pgagroal::shmem::counters::record(pgagroal::shmem::counters::Event::ConnectionFlush);
            kill(s, conn.id, conn.word, Some(&conn.sock), true);
            return;
        }
        // The server was failed over from (or switched away from).
        let server = slot.server() as usize;
        if s.region.header().servers(s.config.servers.len()).get(server) == ServerState::Failed {
            debug!(s.log, "connection to a failed server; closing it"; "slot" => conn.id.0);
            kill(s, conn.id, conn.word, Some(&conn.sock), true);
            return;
        }
    }
    if !conn.registered {
        kill(s, conn.id, conn.word, Some(&conn.sock), true);
        return;
    }
    match table.transition(conn.id, conn.word, SlotState::Free, s.pid) {
        Ok(word) => {
            s.region.notify_release();
            pgagroal::shmem::counters::record(pgagroal::shmem::counters::Event::ConnectionReturn);
            let kept = Kept { id: conn.id, generation: word.generation, sock: conn.sock, startup: conn.startup };
            reuse.fds.put(s.region, kept);
        }
        Err(e) => {
            warn!(s.log, "cannot return slot; terminating its connection"; "slot" => conn.id.0, "error" => %e);
            let now = table.get(conn.id).map(|slot| slot.load());
            if let Some(word) = now.filter(|w| w.owner == s.pid) {
                kill(s, conn.id, word, Some(&conn.sock), true);
            } else {
                conn.sock.shutdown();
            }
        }
    }
}

/// After the relay: reset and return the connection, or terminate it.
pub fn finish(s: &Session<'_>, conn: Conn, end: End, reuse: &mut Reuse) -> Disconnect {
    match end {
        End::Client { how, client, mut server, clean } => {
            if how == Disconnect::SessionTimeout && server.ready_count < client.sync_points {
                // Stop what the backend runs before waiting for its answers.
                super::connect::cancel_slot(s.config, s.region, conn.id, conn.word.generation, &s.log);
            }
            let poolable = conn.auth.is_reusable() && conn.registered;
            // A batch with no Sync yet, or a COPY FROM STDIN the server still
            // waits on, cannot be ended by the pooler without committing or
            // failing the client's work in its name: the connection goes, and
            // PostgreSQL rolls back what it did, as when a client hangs up.
            let unfinished = client.open_batch || server.copy_in;
            if !clean || !client.at_boundary() || !poolable || unfinished {
                let clean = clean
                    && client.at_boundary()
                    && (unfinished
                        || drain(&conn.sock, &mut server, client.sync_points, Instant::now() + HOUSEKEEPING_TIMEOUT));
                unbind(s, reuse.entry);
                kill(s, conn.id, conn.word, Some(&conn.sock), clean);
                return how;
            }
            let deadline = Instant::now() + HOUSEKEEPING_TIMEOUT;
            // Transaction pooling runs no reset query; a session's reset that
            // clears every setting is followed by the client's own settings,
            // so the next client with the same ones needs nothing.
            let clears = reset_clears(s);
            let reset_query = if s.transaction { "" } else { s.config.main.server_reset_query.as_str() };
            let reapply = (clears && !s.params.is_empty()).then_some(&s.params);
            let changed = client.session_change || server.session_change;
            let hash = if clears || !changed { s.params.hash() } else { params::UNKNOWN };
            let reset = drain(&conn.sock, &mut server, client.sync_points, deadline)
                .then(|| send_reset(&conn.sock, server.tx_status, reset_query, reapply))
                .flatten();
            if let Some(pending) = reset {
                if let Some(slot) = s.region.slots().get(conn.id) {
                    slot.set_reset_pending(pending);
                }
                give_back(s, reuse, conn, Some(hash));
            } else {
                info!(s.log, "server connection could not be reset; terminating it"; "slot" => conn.id.0);
                unbind(s, reuse.entry);
                kill(s, conn.id, conn.word, Some(&conn.sock), false);
            }
            how
        }
        End::Idle { .. } | End::Server(_) => {
            let reason = match end {
                End::Server(reason) => reason,
                _ => Disconnect::Internal,
            };
            unbind(s, reuse.entry);
            kill(s, conn.id, conn.word, Some(&conn.sock), false);
            reason
        }
    }
}
