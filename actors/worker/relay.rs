//! The session relay: bytes both ways between client and server until the
//! client leaves (Terminate or EOF), the server goes away, or the supervisor
//! does. Every chunk passes through a [`Tracker`] so the session always knows
//! where message boundaries are, whether a Terminate arrived (it is not
//! forwarded) and the transaction status of the last ReadyForQuery.
//!
//! One wait per wake-up (poll(2), then epoll once a session proves long),
//! one read and one write per chunk; buffers and the epoll set are made once
//! per worker. The mailbox is not watched here: a stopping
//! supervisor sends QUIT, and a dead one takes its workers with it
//! (PR_SET_PDEATHSIG).

mod io;

pub use io::Buffers;
pub use io::{Owed, deliver};
use io::{Pending, Waiter, flush_tls};

use crate::net::Sock;
use pgagroal::disconnect::Disconnect;
use pgagroal::metrics::latency::Latency;
use pgagroal::prepared::{Engine, EngineError};
use pgagroal::protocol::tracker::{Direction, Tracker};
use pgagroal::protocol::{encode, sqlstate};
use pgagroal::shmem::counters::{self, Event, Histogram};
use pgagroal::shmem::slot::Slot;
use pgagroal::shmem::statements::Statements;
use std::io::ErrorKind;

/// How the relay stopped.
pub enum End {
    /// The client left; the trackers tell whether the server side is clean.
    /// `clean` is false when the client broke the protocol, after which the
    /// server may hold part of a message.
    Client { how: Disconnect, client: Tracker, server: Tracker, clean: bool },
    /// The server connection failed or closed.
    Server(Disconnect),
    /// With [`Mode::stop_at_idle`]: the transaction is over, the server idle
    /// and nothing is owed to it. The end of the server's answer may still
    /// be `owed` to the client: the connection goes back to the pool first
    /// ([`deliver`] then sends it), so a worker the kernel switches out as
    /// its client wakes does not hold the connection meanwhile.
    Idle { client: Tracker, server: Tracker, owed: Owed },
}

/// What the relay watches for.
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    /// Stop as soon as the exchange is settled at an idle ReadyForQuery
    /// (the transaction pipeline).
    pub stop_at_idle: bool,
    /// Watch for statements and reports that change session settings.
    pub inspect: bool,
    /// `disconnect_client`: end the session once it has been at rest (every
    /// request answered) with no traffic for this long; with `force`, once
    /// it has lasted this long, whatever it is doing.
    pub disconnect_after: Option<std::time::Duration>,
    pub force: bool,
}

const READABLE: libc::c_short = libc::POLLIN | libc::POLLHUP | libc::POLLERR;

/// Relay until the session or transaction ends. `slot` is the server
/// connection's record, given when metrics are on: the queries it answers
/// are counted there too.
pub fn run(
    client: &Sock,
    server: &Sock,
    leftover: Vec<u8>,
    buffers: &mut Buffers,
    mode: Mode,
    slot: Option<&Slot>,
    prepared: Option<Prepared<'_, '_>>,
) -> End {
    let waiter = Waiter { epoll: buffers.epoll.as_mut(), active: false, wakeups: 0 };
    let rewrite = prepared.map(|p| Rewrite { p, scratch: &mut buffers.scratch, answers: &mut buffers.answers });
    relay(client, server, leftover, &mut buffers.bufs, waiter, mode, (slot, rewrite))
}

/// Named prepared statements (transaction pipeline): the session's engine
/// and the statements of the connection at hand.
pub struct Prepared<'e, 't> {
    pub engine: &'e mut Engine,
    pub table: Statements<'t>,
}

/// The engine with the buffers it writes into.
struct Rewrite<'e, 't, 'b> {
    p: Prepared<'e, 't>,
    scratch: &'b mut Vec<u8>,
    answers: &'b mut Vec<u8>,
}

impl Rewrite<'_, '_, '_> {
    /// Client bytes just read into `up`: replaced by what goes to the
    /// server; the pooler's own answers join `down`.
    fn client(&mut self, up: &mut Pending, down: &mut Pending, bufs: &mut [Vec<u8>; 2]) -> Result<(), EngineError> {
        self.scratch.clear();
        self.answers.clear();
        let result = self.p.engine.client_bytes(up.bytes(bufs), &self.p.table, self.scratch, self.answers);
        up.replace(bufs, self.scratch);
        down.append(bufs, up, self.answers);
        result
    }

    /// Server bytes just read into `down`: replaced by what goes to the
    /// client when anything changes. Client bytes that waited for them go
    /// on into `up`.
    fn server(&mut self, up: &mut Pending, down: &mut Pending, bufs: &mut [Vec<u8>; 2]) -> Result<(), EngineError> {
        self.scratch.clear();
        if self.p.engine.server_bytes(down.bytes(bufs), &self.p.table, self.scratch) {
            down.replace(bufs, self.scratch);
        }
        if !self.p.engine.stalled() {
            return Ok(());
        }
        self.scratch.clear();
        self.answers.clear();
        let result = self.p.engine.resume(&self.p.table, self.scratch, self.answers);
        up.append(bufs, down, self.scratch);
        down.append(bufs, up, self.answers);
        result
    }
}

fn relay(
    client: &Sock,
    server: &Sock,
    leftover: Vec<u8>,
    bufs: &mut [Vec<u8>; 2],
    mut waiter: Waiter<'_>,
    mode: Mode,
    (slot, mut rewrite): (Option<&Slot>, Option<Rewrite<'_, '_, '_>>),
) -> End {
    let mut up = Pending::default();
    let mut down = Pending::default();
    let (mut ct, mut st) = if mode.inspect {
        (Tracker::inspecting(Direction::Frontend), Tracker::inspecting(Direction::Backend))
    } else {
        (Tracker::new(Direction::Frontend), Tracker::new(Direction::Backend))
    };
    let mut leaving: Option<Disconnect> = None;
    // Query and transaction latency, when metrics are on.
    let mut latency = pgagroal::shmem::counters::enabled().then(|| Latency::new(0, 0));
    // The clock is read only for the latencies and `disconnect_client`.
    let timed = mode.disconnect_after.is_some();
    let started = (latency.is_some() || timed).then(std::time::Instant::now);
    let mut last_traffic = started;

    if !leftover.is_empty() {
        up.append(bufs, &down, &leftover);
        if let Some(r) = rewrite.as_mut()
            && let Err(e) = r.client(&mut up, &mut down, bufs)
        {
            refuse_client_bytes(client, &e, &mut leaving);
        }
        let keep = accept_client_bytes(&mut ct, up.bytes(bufs), &mut leaving, client);
        if let (Some(latency), Some(started)) = (latency.as_mut(), started) {
            latency.sent(ct.sync_points, started);
        }
        up.truncate(bufs, keep);
    }

    loop {
        pgagroal::fail_point!("worker-mid-relay");
        if up.flush(bufs, server).is_err() {
            return End::Server(Disconnect::ServerError);
        }
        // Checked once what the client sent before leaving has gone on: a
        // batch without a Sync gets no answer to wait for.
        if let Some(how) = leaving
            && up.is_empty()
        {
            return End::Client { how, client: ct, server: st, clean: how != Disconnect::ClientProtocolViolation };
        }
        if down.flush(bufs, client).is_err() {
            return End::Client { how: Disconnect::ClientError, client: ct, server: st, clean: true };
        }
        // TLS records waiting for the socket go out first.
        if flush_tls(server).is_err() {
            return End::Server(Disconnect::ServerError);
        }
        if flush_tls(client).is_err() {
            return End::Client { how: Disconnect::ClientError, client: ct, server: st, clean: true };
        }
        if mode.stop_at_idle
            && down.is_empty()
            && !client.wants_write()
            && at_idle(server, &ct, &st, &up, &rewrite, leaving)
        {
            return End::Idle { client: ct, server: st, owed: Owed::default() };
        }
        let stalled = rewrite.as_ref().is_some_and(|r| r.p.engine.stalled());
        let client_reads = up.is_empty() && leaving.is_none() && !stalled;
        let server_reads = down.is_empty();
        let want = [
            if client_reads { libc::POLLIN } else { 0 }
                | if down.is_empty() && !client.wants_write() { 0 } else { libc::POLLOUT },
            if server_reads { libc::POLLIN } else { 0 }
                | if up.is_empty() && !server.wants_write() { 0 } else { libc::POLLOUT },
        ];
        // Bytes TLS already decrypted do not show on the socket.
        let buffered = [client_reads && client.has_buffered(), server_reads && server.has_buffered()];
        let deadline = mode.disconnect_after.zip(started.zip(last_traffic)).and_then(|(after, (started, last))| {
            if mode.force { Some(started + after) } else { st.settled(&ct, st.tx_status).then_some(last + after) }
        });
        let now = deadline.map(|_| std::time::Instant::now());
        if let (Some(deadline), Some(now)) = (deadline, now)
            && now >= deadline
            && leaving.is_none()
        {
            let (how, code) = if mode.force {
                (Disconnect::SessionTimeout, sqlstate::ADMIN_SHUTDOWN)
            } else {
                (Disconnect::IdleTimeout, sqlstate::IDLE_SESSION_TIMEOUT)
            };
            if down.is_empty() && st.at_boundary() {
                let text = format!("terminating connection: {}", how.describe());
                let _ = client.write_all(
                    &encode::error_response("FATAL", code, &text),
                    Some(now + std::time::Duration::from_secs(1)),
                );
            }
            return End::Client { how, client: ct, server: st, clean: true };
        }
        let timeout_ms = deadline.zip(now).map_or(-1, |(d, now)| {
            i32::try_from(d.saturating_duration_since(now).as_millis().saturating_add(1)).unwrap_or(i32::MAX)
        });
        let ready = if buffered[0] || buffered[1] {
            [if buffered[0] { libc::POLLIN } else { 0 }, if buffered[1] { libc::POLLIN } else { 0 }]
        } else {
            match waiter.wait(client, server, want, timeout_ms) {
                Ok(ready) => ready,
                Err(_) => return End::Server(Disconnect::Internal),
            }
        };
        if timed && (ready[0] & READABLE != 0 || ready[1] & READABLE != 0) {
            last_traffic = Some(std::time::Instant::now());
        }

        if ready[1] & READABLE != 0 && down.is_empty() {
            match down.fill(bufs, &up, server) {
                Ok(0) => return End::Server(Disconnect::ServerClosed),
                Ok(n) => {
                    let (queries, transactions) = (st.ready_count, st.idle_count);
                    if st.scan(down.bytes(bufs)).is_err() {
                        return End::Server(Disconnect::ServerError);
                    }
                    count(Event::NetworkSent, n as u64);
                    count(Event::Query, st.ready_count - queries);
                    if let Some(slot) = slot
                        && st.ready_count != queries
                    {
                        slot.count_queries(st.ready_count - queries);
                    }
                    count(Event::Transaction, st.idle_count - transactions);
                    if let Some(latency) = latency.as_mut()
                        && st.ready_count != queries
                    {
                        let now = std::time::Instant::now();
                        let observe = |d| counters::observe(Histogram::QueryTime, d);
                        if let Some(tx) = latency.answered(st.ready_count, st.tx_status, now, observe) {
                            counters::observe(Histogram::TransactionTime, tx);
                        }
                    }
                    if let Some(r) = rewrite.as_mut() {
                        let (before, requests) = (up.bytes(bufs).len(), ct.sync_points);
                        if let Err(e) = r.server(&mut up, &mut down, bufs) {
                            refuse_client_bytes(client, &e, &mut leaving);
                        }
                        let keep = accept_client_bytes(&mut ct, &up.bytes(bufs)[before..], &mut leaving, client);
                        up.truncate(bufs, before + keep);
                        if let Some(latency) = latency.as_mut()
                            && ct.sync_points != requests
                        {
                            latency.sent(ct.sync_points, std::time::Instant::now());
                        }
                    }
                    if mode.stop_at_idle && at_idle(server, &ct, &st, &up, &rewrite, leaving) {
                        // The connection goes back before the client is written to.
                        return End::Idle { client: ct, server: st, owed: Owed(down) };
                    }
                    if down.flush(bufs, client).is_err() {
                        return End::Client { how: Disconnect::ClientError, client: ct, server: st, clean: true };
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return End::Server(Disconnect::ServerError),
            }
        }

        if ready[0] & READABLE != 0 && client_reads {
            match up.fill(bufs, &down, client) {
                Ok(0) => leaving = Some(Disconnect::ClientClosed),
                Ok(n) => {
                    count(Event::NetworkReceived, n as u64);
                    let requests = ct.sync_points;
                    if let Some(r) = rewrite.as_mut()
                        && let Err(e) = r.client(&mut up, &mut down, bufs)
                    {
                        refuse_client_bytes(client, &e, &mut leaving);
                    }
                    let keep = accept_client_bytes(&mut ct, up.bytes(bufs), &mut leaving, client);
                    if let Some(latency) = latency.as_mut()
                        && ct.sync_points != requests
                    {
                        latency.sent(ct.sync_points, std::time::Instant::now());
                    }
                    up.truncate(bufs, keep);
                    if up.flush(bufs, server).is_err() {
                        return End::Server(Disconnect::ServerError);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => leaving = Some(Disconnect::ClientError),
            }
        }
    }
}

/// Whether the transaction is over as far as the server is concerned: every
/// request answered, the last ReadyForQuery idle, no client bytes waiting for
/// it (TLS records included) and no statement the engine still has to
/// prepare or close.
fn at_idle(
    server: &Sock,
    ct: &Tracker,
    st: &Tracker,
    up: &Pending,
    rewrite: &Option<Rewrite<'_, '_, '_>>,
    leaving: Option<Disconnect>,
) -> bool {
    leaving.is_none()
        && up.is_empty()
        && !server.wants_write()
        && ct.sync_points > 0
        && st.settled(ct, b'I')
        && rewrite.as_ref().is_none_or(|r| r.p.engine.settled())
}

/// Count `n` of `event` when there is something to count.
pub(super) fn count(event: Event, n: u64) {
    if n > 0 {
        counters::add(event, n);
    }
}

/// The engine could not read the client's bytes: the client is told and
/// leaves (what was whole before the bad message has gone on).
fn refuse_client_bytes(client: &Sock, e: &EngineError, leaving: &mut Option<Disconnect>) {
    violation(client, &e.to_string(), leaving);
}

/// The client sent a malformed message: it gets FATAL 08P01 and leaves.
fn violation(client: &Sock, what: &str, leaving: &mut Option<Disconnect>) {
    let message = format!("invalid frontend message: {what}");
    let _ = client.write_all(
        &encode::error_response("FATAL", sqlstate::PROTOCOL_VIOLATION, &message),
        Some(std::time::Instant::now() + std::time::Duration::from_secs(1)),
    );
    *leaving = Some(Disconnect::ClientProtocolViolation);
}

/// Follow client bytes; returns how many of them are to be forwarded (a
/// Terminate and anything after it, or a malformed message, are not).
fn accept_client_bytes(ct: &mut Tracker, bytes: &[u8], leaving: &mut Option<Disconnect>, client: &Sock) -> usize {
    match ct.scan(bytes) {
        Ok(None) => bytes.len(),
        Ok(Some(terminate_at)) => {
            *leaving = Some(Disconnect::ClientTerminate);
            terminate_at
        }
        Err(e) => {
            violation(client, &e.to_string(), leaving);
            e.offset
        }
    }
}
