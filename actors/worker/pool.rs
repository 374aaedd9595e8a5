//! The worker's side of the pool: get a slot (reuse one authenticated in a
//! way this client may take, create one, or evict an idle connection the
//! client cannot use to make room; new connections are made in
//! [`super::create`]), greet the client, and at the end reset the
//! connection and give it back, or terminate it. A worker keeps the last
//! connection it gave back for its next client.

use super::auth;
use super::relay::{self, End};
use super::reset::{drain, send_reset, settle_reset};
use super::{HOUSEKEEPING_TIMEOUT, Session, refuse};
use crate::net::Sock;
use pgagroal::auth::login::LoginSecret;
use pgagroal::auth::policy::{self, Floor};
use pgagroal::ipc::Received;
use pgagroal::msg::worker::{WorkerReply, WorkerRequest};
use pgagroal::protocol::{encode, sqlstate};
use pgagroal::shmem::{AuthKind, AuthKinds, Claim, PackedName, Region, Replay, SlotId, SlotState, Word};
use slog::{debug, info, warn};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

/// Longest sleep between two looks at the client while waiting for a slot
/// (slot releases wake the waiter at once).
const WAIT_SLICE: Duration = Duration::from_millis(100);

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
    /// ParameterStatus set and BackendKeyData replayed to a reusing client.
    pub startup: Vec<u8>,
    /// The client has been sent the server's greeting already (a
    /// pass-through start-up relays it).
    pub greeted: bool,
}

/// A pooled connection whose fd this worker kept after giving the slot back,
/// so that its next client can use it without asking the supervisor.
pub struct Cached {
    id: SlotId,
    generation: pgagroal::shmem::Generation,
    sock: Sock,
    startup: Vec<u8>,
}

/// What a worker keeps from one client to the next.
pub struct Reuse {
    pub buffers: relay::Buffers,
    cached: Option<Cached>,
}

impl Reuse {
    pub fn new() -> Self {
        Reuse { buffers: relay::Buffers::new(), cached: None }
    }

    /// Before the worker exits: a TLS connection it kept dies with it, so
    /// it is terminated properly now.
    pub fn release(&mut self, region: &Region, mailbox: &pgagroal::ipc::Mailbox, pid: i32) {
        if let Some(cached) = self.cached.take() {
            retire(region, mailbox, pid, cached);
        }
    }
}

/// Let go of a kept connection this worker will not use next. A plain one
/// stays pooled (the supervisor holds its fd); a TLS one can only be carried
/// on by this worker, so it is terminated and its slot freed, unless
/// someone else has taken the slot meanwhile.
fn retire(region: &Region, mailbox: &pgagroal::ipc::Mailbox, pid: i32, cached: Cached) {
    if !cached.sock.is_tls() {
        return;
    }
    let table = region.slots();
    let Some(slot) = table.get(cached.id) else { return };
    let word = slot.load();
    if word.state != SlotState::Free || word.generation != cached.generation || slot.tls_owner() != pid {
        return;
    }
    let Ok(word) = table.transition(cached.id, word, SlotState::Remove, pid) else { return };
    // Whatever the last reset still owes is read and dropped with the connection.
    let _ = cached.sock.write_all(&encode::terminate(), Some(Instant::now() + Duration::from_secs(1)));
    cached.sock.shutdown();
    if table.transition(cached.id, word, SlotState::NotInit, pid).is_ok() {
        region.header().notify_release();
    }
    let _ = mailbox.send(&WorkerRequest::Killed { slot: cached.id, generation: word.generation }, None);
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
    fn kinds(&self) -> AuthKinds {
        match self {
            Access::Pooler { .. } => policy::CHECKED_REUSE,
            Access::PassThrough(floor) => policy::pass_through_reuse(*floor),
        }
    }
}

/// Serve the client from start to end; returns why the session ended.
pub fn serve(
    s: &Session<'_>,
    client: &Sock,
    mut client_buf: Vec<u8>,
    reuse: &mut Reuse,
    access: Access,
) -> &'static str {
    let conn = match acquire(s, client, &mut client_buf, &mut reuse.cached, &access) {
        Ok(conn) => conn,
        Err(reason) => return reason,
    };
    let conn = match admit_on(s, client, &mut client_buf, conn, &access) {
        Ok(conn) => conn,
        Err((reason, kept)) => {
            if let Some(conn) = kept {
                reuse.cached = give_back(s, conn);
            }
            return reason;
        }
    };
    let end = relay::run(client, &conn.sock, client_buf, &mut reuse.buffers);
    finish(s, conn, end, &mut reuse.cached)
}

/// The checks that come after the connection: hba `all` for a known user
/// (ask what the server asked), or a pass-through client reusing a
/// connection made with a password. Then the greeting. On failure the
/// client has been refused and the connection, untouched, is returned to
/// be given back.
fn admit_on(
    s: &Session<'_>,
    client: &Sock,
    client_buf: &mut Vec<u8>,
    conn: Conn,
    access: &Access,
) -> Result<Conn, (&'static str, Option<Conn>)> {
    if conn.greeted {
        return Ok(conn);
    }
    // Time spent waiting for a slot is the pool's, not the client's: the
    // checks that follow get at least a full authentication_timeout.
    let deadline = s.auth_deadline.max(Instant::now() + s.config.main.authentication_timeout);
    let checked = match access {
        Access::Pooler { then_check: true, .. } => {
            let ask = policy::ask_like_server(conn.server_method as u32);
            auth::check(s, client, client_buf, ask, super::vault_expect(s, ask), deadline).map(|_| ())
        }
        Access::PassThrough(_) => {
            let replay = s.region.slots().get(conn.id).map(|slot| slot.replay()).unwrap_or_default();
            auth::replay(s, client, client_buf, conn.auth, replay, deadline)
        }
        Access::Pooler { then_check: false, .. } => Ok(()),
    };
    if let Err(reason) = checked {
        return Err((reason, Some(conn)));
    }
    greet(s, client, conn).map_err(|(reason, conn)| (reason, Some(conn)))
}

/// The fd of a claimed FREE slot: the one kept from the last client when it
/// is still that connection, else the supervisor's copy.
fn fetch(s: &Session<'_>, claim: Claim, cached: &mut Option<Cached>) -> Option<(Sock, Vec<u8>)> {
    match cached.take() {
        Some(c) if c.id == claim.id && c.generation == claim.word.generation => Some((c.sock, c.startup)),
        Some(other) => {
            retire(s.region, s.mailbox, s.pid, other);
            checkout(s, claim)
        }
        None => checkout(s, claim),
    }
}

fn acquire(
    s: &Session<'_>,
    client: &Sock,
    client_buf: &mut Vec<u8>,
    cached: &mut Option<Cached>,
    access: &Access,
) -> Result<Conn, &'static str> {
    let table = s.region.slots();
    let header = s.region.header();
    let user = PackedName::new(&s.startup.user);
    let database = PackedName::new(&s.startup.database);
    let kinds = access.kinds();
    let deadline = Instant::now() + s.config.main.blocking_timeout;
    loop {
        let ticket = header.release_ticket();
        let prefer = cached.as_ref().map(|c| c.id);
        if let Some(claim) = table.claim_reusable(prefer, &user, &database, kinds, s.pid) {
            let slot = table.get(claim.id);
            let owed = slot.map_or(0, |slot| slot.take_reset_pending());
            match fetch(s, claim, cached) {
                // Reading the reset's answers shows the connection alive; with
                // none owed, peek that nothing (an error, an EOF) is waiting.
                Some((sock, startup)) if settle_reset(&sock, owed) && (owed > 0 || sock.idle_and_open()) => {
                    return Ok(Conn {
                        sock,
                        id: claim.id,
                        word: claim.word,
                        auth: slot.map_or(AuthKind::Unknown, |slot| slot.auth()),
                        server_method: slot.map_or(0, |slot| slot.server_method() as i32),
                        replay: slot.map(|slot| slot.replay()).unwrap_or_default(),
                        registered: true,
                        startup,
                        greeted: false,
                    });
                }
                other => {
                    debug!(s.log, "pooled connection is gone"; "slot" => claim.id.0);
                    kill(s, claim.id, claim.word, other.as_ref().map(|(sock, _)| sock), false);
                    continue;
                }
            }
        }
        if let Some(claim) = table.claim_empty(s.pid) {
            if let Some(other) = cached.take() {
                retire(s.region, s.mailbox, s.pid, other);
            }
            return super::create::connect_new(s, client, client_buf, claim, access);
        }
        if let Some(claim) = table.claim_evictable(&user, &database, kinds, s.pid) {
            debug!(s.log, "closing an idle connection this client cannot use to make room"; "slot" => claim.id.0);
            if cached.as_ref().is_some_and(|c| c.id == claim.id) {
                // This worker's own kept connection (TLS or not).
                let kept = cached.take().map(|c| c.sock);
                kill(s, claim.id, claim.word, kept.as_ref(), true);
                continue;
            }
            // Another worker's TLS connection cannot be spoken to in
            // plaintext: it is only shut down.
            let tls_elsewhere = table.get(claim.id).is_some_and(|slot| !slot.usable_by(s.pid));
            let sock = checkout(s, claim).map(|(sock, _)| sock);
            kill(s, claim.id, claim.word, sock.as_ref(), !tls_elsewhere);
            continue;
        }
        let now = Instant::now();
        if now >= deadline {
            info!(s.log, "connection pool is full");
            refuse(client, sqlstate::TOO_MANY_CONNECTIONS, "connection pool is full");
            return Err("pool full");
        }
        // Sleep until a slot is released (or a slice passes), then make sure
        // the client is still there before looking again.
        header.wait_release(ticket, WAIT_SLICE.min(deadline - now));
        let mut fds = [libc::pollfd { fd: client.raw(), events: libc::POLLIN, revents: 0 }];
        if crate::net::poll(&mut fds, 0).unwrap_or(0) > 0 && !client.idle_and_open() {
            debug!(s.log, "client left while waiting for a connection");
            return Err("client left while waiting");
        }
    }
}

/// Ask the supervisor for the fd of a slot this worker claimed.
fn checkout(s: &Session<'_>, claim: Claim) -> Option<(Sock, Vec<u8>)> {
    let request = WorkerRequest::Checkout { slot: claim.id, generation: claim.word.generation };
    match call(s, &request, None) {
        Some((WorkerReply::CheckedOut { startup }, Some(fd))) => Some((Sock::adopt(fd), startup)),
        Some((reply, _)) => {
            warn!(s.log, "supervisor refused checkout"; "slot" => claim.id.0, "reply" => ?reply);
            None
        }
        None => None,
    }
}

/// One request to the supervisor (with an fd, maybe) and its reply.
pub(super) fn call(
    s: &Session<'_>,
    request: &WorkerRequest,
    fd: Option<&Sock>,
) -> Option<(WorkerReply, Option<OwnedFd>)> {
    if let Err(e) = s.mailbox.send(request, fd.map(|f| f.fd().as_fd())) {
        warn!(s.log, "mailbox send failed"; "error" => %e);
        return None;
    }
    match s.mailbox.recv::<WorkerReply>() {
        Ok(Received::Message(reply, fd)) => Some((reply, fd)),
        Ok(Received::Closed) => {
            warn!(s.log, "supervisor is gone");
            None
        }
        Ok(Received::Empty) => {
            warn!(s.log, "supervisor did not answer in time");
            None
        }
        Err(e) => {
            warn!(s.log, "bad reply from supervisor"; "error" => %e);
            None
        }
    }
}

/// Terminate the connection in a slot this worker holds and free the slot.
/// `clean` means the connection is between messages and may get a Terminate.
pub fn kill(s: &Session<'_>, id: SlotId, word: Word, sock: Option<&Sock>, clean: bool) {
    if let Some(sock) = sock {
        if clean {
            let _ = sock.write(&encode::terminate());
        }
        sock.shutdown();
    }
    let table = s.region.slots();
    let mut word = word;
    if word.state != SlotState::Remove {
        match table.transition(id, word, SlotState::Remove, s.pid) {
            Ok(w) => word = w,
            Err(e) => {
                warn!(s.log, "cannot mark slot for removal"; "slot" => id.0, "error" => %e);
                return;
            }
        }
    }
    if let Err(e) = table.transition(id, word, SlotState::NotInit, s.pid) {
        warn!(s.log, "cannot free slot"; "slot" => id.0, "error" => %e);
    } else {
        s.region.header().notify_release();
    }
    let _ = s.mailbox.send(&WorkerRequest::Killed { slot: id, generation: word.generation }, None);
}

/// AuthenticationOk, the connection's ParameterStatus set and
/// BackendKeyData, and ReadyForQuery.
fn greet(s: &Session<'_>, client: &Sock, mut conn: Conn) -> Result<Conn, (&'static str, Conn)> {
    let mut out = Vec::with_capacity(conn.startup.len() + 16);
    out.extend_from_slice(&encode::authentication_ok());
    out.extend_from_slice(&conn.startup);
    out.extend_from_slice(&encode::ready_for_query(b'I'));
    if let Some(slot) = s.region.slots().get(conn.id) {
        slot.touch(pgagroal::sys::now_ms());
    }
    if client.write_all(&out, Some(Instant::now() + HOUSEKEEPING_TIMEOUT)).is_err() {
        return Err(("client left during start-up", conn));
    }
    conn.greeted = true;
    debug!(s.log, "session on pooled connection"; "slot" => conn.id.0);
    Ok(conn)
}

/// Return a clean slot: IN_USE -> FREE. The worker keeps its copy of the
/// fd for its next client.
fn give_back(s: &Session<'_>, conn: Conn) -> Option<Cached> {
    let table = s.region.slots();
    if let Some(slot) = table.get(conn.id) {
        slot.touch(pgagroal::sys::now_ms());
    }
    match table.transition(conn.id, conn.word, SlotState::Free, s.pid) {
        Ok(word) => {
            s.region.header().notify_release();
            Some(Cached { id: conn.id, generation: word.generation, sock: conn.sock, startup: conn.startup })
        }
        Err(e) => {
            warn!(s.log, "cannot return slot; terminating its connection"; "slot" => conn.id.0, "error" => %e);
            let now = table.get(conn.id).map(|slot| slot.load());
            if let Some(word) = now.filter(|w| w.owner == s.pid) {
                kill(s, conn.id, word, Some(&conn.sock), true);
            } else {
                conn.sock.shutdown();
            }
            None
        }
    }
}

/// After the relay: reset and return the connection, or terminate it.
fn finish(s: &Session<'_>, conn: Conn, end: End, cached: &mut Option<Cached>) -> &'static str {
    match end {
        End::Client { how, client, mut server, clean } => {
            let poolable = conn.auth.is_reusable() && conn.registered;
            if !clean || !client.at_boundary() {
                kill(s, conn.id, conn.word, Some(&conn.sock), false);
                return how;
            }
            if !poolable {
                let clean = drain(&conn.sock, &mut server, client.sync_points, Instant::now() + HOUSEKEEPING_TIMEOUT);
                kill(s, conn.id, conn.word, Some(&conn.sock), clean);
                return how;
            }
            let deadline = Instant::now() + HOUSEKEEPING_TIMEOUT;
            let reset = drain(&conn.sock, &mut server, client.sync_points, deadline)
                .then(|| send_reset(&conn.sock, server.tx_status, &s.config.main.server_reset_query))
                .flatten();
            if let Some(pending) = reset {
                if let Some(slot) = s.region.slots().get(conn.id) {
                    slot.set_reset_pending(pending);
                }
                *cached = give_back(s, conn);
            } else {
                info!(s.log, "server connection could not be reset; terminating it"; "slot" => conn.id.0);
                kill(s, conn.id, conn.word, Some(&conn.sock), false);
            }
            how
        }
        End::Server(reason) => {
            kill(s, conn.id, conn.word, Some(&conn.sock), false);
            reason
        }
    }
}
