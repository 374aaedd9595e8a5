//! The worker's side of the pool: get a slot (reuse, create, or evict an idle
//! connection of another user to make room), authenticate a new server
//! connection by relaying whatever the server asks, hand its fd to the
//! supervisor, and at the end reset it and give it back, or terminate it.

use super::relay::{self, End};
use super::{HOUSEKEEPING_TIMEOUT, Session, refuse};
use crate::net::{FrameFail, IoFail, Sock};
use pgagroal::config::{Config, ServerConfig};
use pgagroal::ipc::Received;
use pgagroal::msg::worker::{WorkerReply, WorkerRequest};
use pgagroal::protocol::backend::{self, BackendMessage, auth_code};
use pgagroal::protocol::tracker::Tracker;
use pgagroal::protocol::{encode, frame, frontend, sqlstate};
use pgagroal::shmem::{AuthKind, AuthKinds, Claim, PackedName, Region, SlotId, SlotState, Word};
use slog::{debug, info, warn};
use std::net::ToSocketAddrs;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

/// Largest message the pooler reads from a server during start-up.
const MAX_STARTUP_MESSAGE: usize = 64 * 1024;
/// Longest sleep between two looks at the client while waiting for a slot
/// (slot releases wake the waiter at once).
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// The server connection a session runs on.
pub struct Conn {
    pub sock: Sock,
    pub id: SlotId,
    pub word: Word,
    pub auth: AuthKind,
    /// The supervisor holds a copy, so the connection can be pooled.
    pub registered: bool,
    /// ParameterStatus set and BackendKeyData replayed to a reusing client.
    pub startup: Vec<u8>,
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
}

/// Serve the client from start to end; returns why the session ended.
pub fn serve(s: &Session<'_>, client: &Sock, mut client_buf: Vec<u8>, reuse: &mut Reuse) -> &'static str {
    let conn = match acquire(s, client, &mut client_buf, &mut reuse.cached) {
        Ok(conn) => conn,
        Err(reason) => return reason,
    };
    let end = relay::run(client, &conn.sock, client_buf, &mut reuse.buffers);
    finish(s, conn, end, &mut reuse.cached)
}

/// The fd of a claimed FREE slot: the one kept from the last client when it
/// is still that connection, else the supervisor's copy.
fn fetch(s: &Session<'_>, claim: Claim, cached: &mut Option<Cached>) -> Option<(Sock, Vec<u8>)> {
    match cached.take() {
        Some(c) if c.id == claim.id && c.generation == claim.word.generation => Some((c.sock, c.startup)),
        _ => checkout(s, claim),
    }
}

fn acquire(
    s: &Session<'_>,
    client: &Sock,
    client_buf: &mut Vec<u8>,
    cached: &mut Option<Cached>,
) -> Result<Conn, &'static str> {
    let table = s.region.slots();
    let header = s.region.header();
    let user = PackedName::new(&s.startup.user);
    let database = PackedName::new(&s.startup.database);
    let deadline = Instant::now() + s.config.main.blocking_timeout;
    loop {
        let ticket = header.release_ticket();
        let prefer = cached.as_ref().map(|c| c.id);
        if let Some(claim) = table.claim_reusable(prefer, &user, &database, AuthKinds::of(&[AuthKind::Trust]), s.pid) {
            let owed = table.get(claim.id).map_or(0, |slot| slot.take_reset_pending());
            match fetch(s, claim, cached) {
                // Reading the reset's answers shows the connection alive; with
                // none owed, peek that nothing (an error, an EOF) is waiting.
                Some((sock, startup)) if settle_reset(&sock, owed) && (owed > 0 || sock.idle_and_open()) => {
                    let conn =
                        Conn { sock, id: claim.id, word: claim.word, auth: AuthKind::Trust, registered: true, startup };
                    return greet_reused(s, client, conn);
                }
                other => {
                    debug!(s.log, "pooled connection is gone"; "slot" => claim.id.0);
                    kill(s, claim.id, claim.word, other.as_ref().map(|(sock, _)| sock), false);
                    continue;
                }
            }
        }
        if let Some(claim) = table.claim_empty(s.pid) {
            *cached = None;
            return connect_new(s, client, client_buf, claim);
        }
        if let Some(claim) = table.claim_evictable(&user, &database, AuthKinds::of(&[AuthKind::Trust]), s.pid) {
            debug!(s.log, "closing an idle connection of another user/database to make room"; "slot" => claim.id.0);
            let sock = checkout(s, claim).map(|(sock, _)| sock);
            kill(s, claim.id, claim.word, sock.as_ref(), true);
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
    match call(s, &request) {
        Some((WorkerReply::CheckedOut { startup }, Some(fd))) => Some((Sock::adopt(fd), startup)),
        Some((reply, _)) => {
            warn!(s.log, "supervisor refused checkout"; "slot" => claim.id.0, "reply" => ?reply);
            None
        }
        None => None,
    }
}

/// One request to the supervisor and its reply.
fn call(s: &Session<'_>, request: &WorkerRequest) -> Option<(WorkerReply, Option<OwnedFd>)> {
    call_with_fd(s, request, None)
}

fn call_with_fd(s: &Session<'_>, request: &WorkerRequest, fd: Option<&Sock>) -> Option<(WorkerReply, Option<OwnedFd>)> {
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

fn greet_reused(s: &Session<'_>, client: &Sock, conn: Conn) -> Result<Conn, &'static str> {
    let mut out = Vec::with_capacity(conn.startup.len() + 16);
    out.extend_from_slice(&encode::authentication_ok());
    out.extend_from_slice(&conn.startup);
    out.extend_from_slice(&encode::ready_for_query(b'I'));
    if let Some(slot) = s.region.slots().get(conn.id) {
        slot.touch(pgagroal::sys::now_ms());
    }
    if client.write_all(&out, Some(Instant::now() + HOUSEKEEPING_TIMEOUT)).is_err() {
        let _ = give_back(s, conn);
        return Err("client left during start-up");
    }
    debug!(s.log, "reusing pooled connection"; "slot" => conn.id.0);
    Ok(conn)
}

fn connect_server(server: &ServerConfig, config: &Config, deadline: Instant) -> std::io::Result<Sock> {
    let fd: OwnedFd = if server.is_unix() {
        std::os::unix::net::UnixStream::connect(server.unix_path())?.into()
    } else {
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        let mut connected = None;
        for addr in (server.host.as_str(), server.port).to_socket_addrs()? {
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
            match std::net::TcpStream::connect_timeout(&addr, left) {
                Ok(stream) => {
                    connected = Some(stream);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let stream = connected.ok_or(last)?;
        stream.set_nodelay(config.main.nodelay)?;
        pgagroal::sys::set_keepalive(std::os::fd::AsRawFd::as_raw_fd(&stream), config.main.keep_alive)?;
        stream.into()
    };
    Sock::new(fd)
}

/// Make a new server connection in an empty slot, relaying authentication.
fn connect_new(s: &Session<'_>, client: &Sock, client_buf: &mut Vec<u8>, claim: Claim) -> Result<Conn, &'static str> {
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
    let sock = match connect_server(server, s.config, deadline) {
        Ok(sock) => sock,
        Err(e) => {
            warn!(s.log, "cannot connect to server"; "server" => &server.name, "error" => %e);
            kill(s, claim.id, claim.word, None, false);
            refuse(
                client,
                sqlstate::CONNECTION_FAILURE,
                &format!("could not connect to server \"{}\" ({}:{}): {e}", server.name, server.host, server.port),
            );
            return Err("server unreachable");
        }
    };
    let mut conn =
        Conn { sock, id: claim.id, word: claim.word, auth: AuthKind::Trust, registered: false, startup: Vec::new() };
    match authenticate(s, client, client_buf, &mut conn, deadline) {
        Ok((startup, key_pid, key_secret)) => {
            if let Some(slot) = table.get(conn.id) {
                slot.set_backend(conn.auth, key_pid, key_secret);
            }
            let request =
                WorkerRequest::Register { slot: conn.id, generation: conn.word.generation, startup: startup.clone() };
            conn.startup = startup;
            conn.registered = matches!(call_with_fd(s, &request, Some(&conn.sock)), Some((WorkerReply::Registered, _)));
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
            debug!(s.log, "new server connection"; "slot" => conn.id.0, "backend_pid" => key_pid);
            Ok(conn)
        }
        Err(failure) => {
            kill(s, conn.id, conn.word, Some(&conn.sock), false);
            Err(failure)
        }
    }
}

/// What the client is sent for a server's start-up failure.
fn server_failure(client: &Sock, to_client: &mut Vec<u8>, e: FrameFail) -> &'static str {
    let text = format!("server connection failed during start-up: {e}");
    encode::append_error_response(to_client, "FATAL", sqlstate::CONNECTION_FAILURE, &text);
    let _ = client.write_all(to_client, Some(Instant::now() + Duration::from_secs(1)));
    "server failed during start-up"
}

/// Start-up on a new server connection. Authentication requests are relayed
/// to the client and its answers back; the ParameterStatus set and
/// BackendKeyData are forwarded and kept for later clients of the slot.
/// Returns (startup bytes to cache, backend pid, backend secret).
fn authenticate(
    s: &Session<'_>,
    client: &Sock,
    client_buf: &mut Vec<u8>,
    conn: &mut Conn,
    deadline: Instant,
) -> Result<(Vec<u8>, i32, u32), &'static str> {
    let user = s.startup.user.as_str();
    let database = s.startup.database.as_str();
    let hello = encode::startup_message(&[("user", user), ("database", database), ("application_name", "pgagroal")]);
    let mut to_client = Vec::with_capacity(1024);
    if let Err(e) = conn.sock.write_all(&hello, Some(deadline)) {
        return Err(server_failure(client, &mut to_client, FrameFail::Io(e)));
    }
    let mut buf = Vec::with_capacity(1024);
    let mut cached = Vec::with_capacity(512);
    let mut key = (0i32, 0u32);
    let mut authenticated = false;
    loop {
        let len = match conn.sock.read_frame(&mut buf, MAX_STARTUP_MESSAGE, Some(deadline)) {
            Ok(len) => len,
            Err(e) => return Err(server_failure(client, &mut to_client, e)),
        };
        let Ok(Some(f)) = frame::split(&buf[..len], MAX_STARTUP_MESSAGE) else {
            return Err(server_failure(client, &mut to_client, FrameFail::Io(IoFail::Eof)));
        };
        let message = match backend::parse(&f) {
            Ok(m) => m,
            Err(e) => {
                encode::append_error_response(&mut to_client, "FATAL", sqlstate::PROTOCOL_VIOLATION, &e.to_string());
                let _ = client.write_all(&to_client, Some(deadline));
                return Err("server protocol violation");
            }
        };
        let raw = &buf[..len];
        match message {
            BackendMessage::Authentication { code: auth_code::OK, .. } if !authenticated => {
                authenticated = true;
                to_client.extend_from_slice(raw);
            }
            BackendMessage::Authentication { code: auth_code::SASL_FINAL, .. } if !authenticated => {
                to_client.extend_from_slice(raw);
            }
            BackendMessage::Authentication {
                code:
                    auth_code::CLEARTEXT_PASSWORD | auth_code::MD5_PASSWORD | auth_code::SASL | auth_code::SASL_CONTINUE,
                ..
            } if !authenticated => {
                conn.auth = AuthKind::PassThrough;
                to_client.extend_from_slice(raw);
                if client.write_all(&to_client, Some(deadline)).is_err() {
                    return Err("client left during authentication");
                }
                to_client.clear();
                let answer = match client.read_frame(client_buf, frontend::MAX_AUTH_MESSAGE, Some(deadline)) {
                    Ok(n) => n,
                    Err(FrameFail::Io(IoFail::Eof)) => return Err("client left during authentication"),
                    Err(FrameFail::Io(IoFail::Timeout)) => {
                        refuse(client, sqlstate::PROTOCOL_VIOLATION, "authentication timeout");
                        return Err("authentication timeout");
                    }
                    Err(e) => {
                        refuse(client, sqlstate::PROTOCOL_VIOLATION, &format!("invalid authentication response: {e}"));
                        return Err("bad authentication response");
                    }
                };
                if client_buf.first() != Some(&frontend::PASSWORD_MESSAGE) {
                    refuse(client, sqlstate::PROTOCOL_VIOLATION, "expected a password response");
                    return Err("bad authentication response");
                }
                if let Err(e) = conn.sock.write_all(&client_buf[..answer], Some(deadline)) {
                    return Err(server_failure(client, &mut to_client, FrameFail::Io(e)));
                }
                client_buf.drain(..answer);
            }
            BackendMessage::Authentication { code, .. } => {
                info!(s.log, "server asked for an unsupported authentication method"; "code" => code);
                refuse(client, sqlstate::INVALID_AUTHORIZATION, "unsupported security model");
                return Err("unsupported authentication");
            }
            BackendMessage::ErrorResponse(e) => {
                info!(s.log, "server refused the connection"; "code" => &e.code, "message" => &e.message);
                to_client.extend_from_slice(raw);
                let _ = client.write_all(&to_client, Some(deadline));
                return Err("server refused");
            }
            BackendMessage::ParameterStatus { .. } if authenticated => {
                to_client.extend_from_slice(raw);
                cached.extend_from_slice(raw);
            }
            BackendMessage::BackendKeyData { pid, secret } if authenticated => {
                let mut four = [0u8; 4];
                if let Some(first) = secret.get(..4) {
                    four.copy_from_slice(first);
                }
                key = (pid, u32::from_be_bytes(four));
                to_client.extend_from_slice(raw);
                cached.extend_from_slice(raw);
            }
            BackendMessage::NoticeResponse | BackendMessage::NegotiateProtocolVersion => {
                to_client.extend_from_slice(raw);
            }
            BackendMessage::ReadyForQuery { .. } if authenticated => {
                to_client.extend_from_slice(raw);
                buf.drain(..len);
                break;
            }
            _ => {
                encode::append_error_response(
                    &mut to_client,
                    "FATAL",
                    sqlstate::PROTOCOL_VIOLATION,
                    &format!("unexpected message '{}' from server during start-up", f.tag as char),
                );
                let _ = client.write_all(&to_client, Some(deadline));
                return Err("server protocol violation");
            }
        }
        buf.drain(..len);
    }
    if !buf.is_empty() {
        refuse(client, sqlstate::PROTOCOL_VIOLATION, "server sent data before the first query");
        return Err("server protocol violation");
    }
    if client.write_all(&to_client, Some(deadline)).is_err() {
        return Err("client left during start-up");
    }
    Ok((cached, key.0, key.1))
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

/// Read from the server until the tracker is at a message boundary and every
/// request sent has been answered, discarding what arrives.
fn drain(sock: &Sock, server: &mut Tracker, expected_ready: u64, deadline: Instant) -> bool {
    if server.ready_count >= expected_ready && server.at_boundary() {
        return server.ready_count == expected_ready;
    }
    let mut chunk = Vec::with_capacity(8192);
    while server.ready_count < expected_ready || !server.at_boundary() {
        chunk.clear();
        // End of stream, a failed read and the deadline all mean the
        // connection cannot be reused.
        if sock.read_some(&mut chunk, Some(deadline)).is_err() || server.scan(&chunk).is_err() {
            return false;
        }
    }
    server.ready_count == expected_ready
}

/// Send the reset: ROLLBACK when a transaction is open, then the reset
/// query. Returns how many ReadyForQuery messages answer it, or None when the
/// server cannot be written to. The answers are read by the next user of the
/// slot ([`settle_reset`]), so a leaving client's worker does not wait on the
/// server once more.
fn send_reset(sock: &Sock, tx_status: u8, reset_query: &str) -> Option<u32> {
    let mut queries = Vec::with_capacity(64);
    let mut expected = 0;
    if tx_status != b'I' {
        encode::append_query(&mut queries, "ROLLBACK");
        expected += 1;
    }
    if !reset_query.is_empty() {
        encode::append_query(&mut queries, reset_query);
        expected += 1;
    }
    if expected > 0 && sock.write_all(&queries, Some(Instant::now() + HOUSEKEEPING_TIMEOUT)).is_err() {
        return None;
    }
    Some(expected)
}

/// Read the answers to the previous user's reset; true when they came with
/// no error and the connection is idle. Usually they are already there.
fn settle_reset(sock: &Sock, expected: u32) -> bool {
    if expected == 0 {
        return true;
    }
    let deadline = Instant::now() + HOUSEKEEPING_TIMEOUT;
    let mut buf = Vec::with_capacity(512);
    let (mut seen, mut failed, mut status) = (0, false, b'?');
    while seen < expected {
        let Ok(len) = sock.read_frame(&mut buf, 1 << 20, Some(deadline)) else { return false };
        match buf.first().copied().unwrap_or(0) {
            b'Z' => {
                seen += 1;
                status = buf.get(5).copied().unwrap_or(b'?');
            }
            b'E' => failed = true,
            _ => {}
        }
        buf.drain(..len);
    }
    !failed && status == b'I' && buf.is_empty()
}

/// After the relay: reset and return the connection, or terminate it.
fn finish(s: &Session<'_>, conn: Conn, end: End, cached: &mut Option<Cached>) -> &'static str {
    match end {
        End::Client { how, client, mut server, clean } => {
            let poolable = conn.auth == AuthKind::Trust && conn.registered;
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

/// Forward a CancelRequest to the server of the in-use slot whose backend
/// key it carries; keys of idle or unknown connections are dropped.
pub fn forward_cancel(config: &Config, region: &Region, pid: i32, secret: &[u8], log: &slog::Logger) {
    let Some(secret4) = secret.get(..4).filter(|_| secret.len() == 4) else {
        debug!(log, "cancel request with an unexpected key length dropped");
        return;
    };
    let want = u32::from_be_bytes([secret4[0], secret4[1], secret4[2], secret4[3]]);
    let table = region.slots();
    let target = table.iter().find_map(|(_, slot)| {
        let info = slot.info();
        let secret = slot.backend_secret();
        (info.word.state == SlotState::InUse && info.backend_pid == pid && secret == want).then_some(info.server)
    });
    let Some(server) = target.and_then(|i| config.servers.get(i as usize)) else {
        debug!(log, "cancel request for no active connection dropped"; "backend_pid" => pid);
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    match connect_server(server, config, deadline) {
        Ok(sock) => {
            let _ = sock.write_all(&encode::cancel_request(pid, secret), Some(deadline));
            // Wait for the server to close, so the cancel is processed before we go.
            let mut sink = Vec::new();
            let _ = sock.read_some(&mut sink, Some(deadline));
            debug!(log, "cancel request forwarded"; "backend_pid" => pid);
        }
        Err(e) => warn!(log, "cannot forward cancel request"; "error" => %e),
    }
}
