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

use crate::net::{Epoll, Sock, poll};
use pgagroal::disconnect::Disconnect;
use pgagroal::metrics::latency::Latency;
use pgagroal::protocol::tracker::{Direction, Tracker};
use pgagroal::protocol::{encode, sqlstate};
use pgagroal::shmem::counters::{self, Event, Histogram};
use pgagroal::shmem::slot::Slot;
use std::io::ErrorKind;

/// Size of each relay buffer.
const BUF: usize = 32 * 1024;

/// How the relay stopped.
pub enum End {
    /// The client left; the trackers tell whether the server side is clean.
    /// `clean` is false when the client broke the protocol, after which the
    /// server may hold part of a message.
    Client { how: Disconnect, client: Tracker, server: Tracker, clean: bool },
    /// The server connection failed or closed.
    Server(Disconnect),
    /// With [`Mode::stop_at_idle`]: the transaction is over, the server idle
    /// and nothing is owed either way.
    Idle { client: Tracker, server: Tracker },
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

/// The relay's two buffers, allocated once per worker and reused by every
/// session; their capacity is not initialised up front. A direction takes
/// the first buffer unless the other direction holds it, so a session whose
/// requests and answers alternate (almost all of them) keeps using one
/// buffer, and an idle session has touched only one page of it.
pub struct Buffers {
    bufs: [Vec<u8>; 2],
    /// The worker's epoll set, None where it could not be created (poll(2)
    /// is used then).
    epoll: Option<Epoll>,
}

impl Buffers {
    pub fn new() -> Self {
        Buffers { bufs: [Vec::with_capacity(BUF), Vec::with_capacity(BUF)], epoll: Epoll::new().ok() }
    }
}

/// Bytes one direction read but has not yet written on:
/// `bufs[held][start..]`.
#[derive(Default)]
struct Pending {
    held: Option<usize>,
    start: usize,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.held.is_none()
    }

    /// Read one chunk into a free buffer (`other` is the other direction).
    fn fill(&mut self, bufs: &mut [Vec<u8>; 2], other: &Pending, from: &Sock) -> std::io::Result<usize> {
        let index = if other.held == Some(0) { 1 } else { 0 };
        let buf = &mut bufs[index];
        buf.clear();
        let n = from.read_append(buf)?;
        if n > 0 {
            self.held = Some(index);
            self.start = 0;
        }
        Ok(n)
    }

    /// The bytes not yet written.
    fn bytes<'b>(&self, bufs: &'b [Vec<u8>; 2]) -> &'b [u8] {
        match self.held {
            Some(i) => &bufs[i][self.start..],
            None => &[],
        }
    }

    /// Keep only the first `len` bytes read (the rest is not forwarded).
    fn truncate(&mut self, bufs: &mut [Vec<u8>; 2], len: usize) {
        if let Some(i) = self.held {
            bufs[i].truncate(len);
            if len == 0 {
                self.held = None;
            }
        }
    }

    /// Write as much as the socket takes; Err on a failed socket.
    fn flush(&mut self, bufs: &[Vec<u8>; 2], to: &Sock) -> Result<(), ()> {
        let Some(i) = self.held else { return Ok(()) };
        while self.start < bufs[i].len() {
            match to.write(&bufs[i][self.start..]) {
                Ok(n) => self.start += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(_) => return Err(()),
            }
        }
        self.held = None;
        self.start = 0;
        Ok(())
    }
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
) -> End {
    let waiter = Waiter { epoll: buffers.epoll.as_mut(), active: false, wakeups: 0 };
    relay(client, server, leftover, &mut buffers.bufs, waiter, mode, slot)
}

/// Wake-ups after which a session moves from poll(2) to the worker's epoll
/// set: registering costs four epoll_ctl calls per session, which a short
/// session (a connection per transaction) would not earn back.
const EPOLL_AFTER: u32 = 16;

/// Waits for the client and server sockets: poll(2) at first, the epoll set
/// once the session proves long. Leaves the epoll set empty when dropped.
struct Waiter<'e> {
    epoll: Option<&'e mut Epoll>,
    active: bool,
    wakeups: u32,
}

impl Waiter<'_> {
    /// Wait until client or server is ready for what is wanted of it;
    /// returns their ready events (poll(2) flags).
    fn wait(
        &mut self,
        client: &Sock,
        server: &Sock,
        want: [libc::c_short; 2],
        timeout_ms: i32,
    ) -> std::io::Result<[libc::c_short; 2]> {
        self.wakeups = self.wakeups.saturating_add(1);
        if !self.active
            && self.wakeups >= EPOLL_AFTER
            && let Some(e) = self.epoll.as_deref_mut()
        {
            match e.watch([client.raw(), server.raw()]) {
                Ok(()) => self.active = true,
                Err(_) => {
                    e.clear();
                    self.epoll = None;
                }
            }
        }
        match self.epoll.as_deref_mut().filter(|_| self.active) {
            Some(e) => {
                e.want(0, want[0] as u32)?;
                e.want(1, want[1] as u32)?;
                let ready = e.wait(timeout_ms)?;
                Ok([ready[0] as libc::c_short, ready[1] as libc::c_short])
            }
            None => {
                let mut fds = [
                    libc::pollfd { fd: client.raw(), events: want[0], revents: 0 },
                    libc::pollfd { fd: server.raw(), events: want[1], revents: 0 },
                ];
                poll(&mut fds, timeout_ms)?;
                Ok([fds[0].revents, fds[1].revents])
            }
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if self.active
            && let Some(e) = self.epoll.as_deref_mut()
        {
            // Both sockets may outlive the session (the server's is pooled):
            // never leave them registered.
            e.clear();
        }
    }
}

fn relay(
    client: &Sock,
    server: &Sock,
    leftover: Vec<u8>,
    bufs: &mut [Vec<u8>; 2],
    mut waiter: Waiter<'_>,
    mode: Mode,
    slot: Option<&Slot>,
) -> End {
    let mut up = Pending::default();
    let mut down = Pending::default();
    let (mut ct, mut st) = if mode.inspect {
        (Tracker::inspecting(Direction::Frontend), Tracker::inspecting(Direction::Backend))
    } else {
        (Tracker::new(Direction::Frontend), Tracker::new(Direction::Backend))
    };
    let mut leaving: Option<Disconnect> = None;
    let started = std::time::Instant::now();
    // Query and transaction latency, when metrics are on.
    let mut latency = pgagroal::shmem::counters::enabled().then(|| Latency::new(0, 0));
    let mut last_traffic = started;

    if !leftover.is_empty() {
        let keep = accept_client_bytes(&mut ct, &leftover, &mut leaving, client);
        if let Some(latency) = latency.as_mut() {
            latency.sent(ct.sync_points, started);
        }
        if keep > 0 {
            bufs[0].clear();
            bufs[0].extend_from_slice(&leftover[..keep]);
            up.held = Some(0);
        }
    }

    loop {
        pgagroal::fail_point!("worker-mid-relay");
        if let Some(how) = leaving
            && up.is_empty()
        {
            return End::Client { how, client: ct, server: st, clean: how != Disconnect::ClientProtocolViolation };
        }
        if up.flush(bufs, server).is_err() {
            return End::Server(Disconnect::ServerError);
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
            && leaving.is_none()
            && up.is_empty()
            && down.is_empty()
            && ct.sync_points > 0
            && st.settled(&ct, b'I')
            && !client.wants_write()
            && !server.wants_write()
        {
            return End::Idle { client: ct, server: st };
        }
        let client_reads = up.is_empty() && leaving.is_none();
        let server_reads = down.is_empty();
        let want = [
            if client_reads { libc::POLLIN } else { 0 }
                | if down.is_empty() && !client.wants_write() { 0 } else { libc::POLLOUT },
            if server_reads { libc::POLLIN } else { 0 }
                | if up.is_empty() && !server.wants_write() { 0 } else { libc::POLLOUT },
        ];
        // Bytes TLS already decrypted do not show on the socket.
        let buffered = [client_reads && client.has_buffered(), server_reads && server.has_buffered()];
        let deadline = mode.disconnect_after.and_then(|after| {
            if mode.force {
                Some(started + after)
            } else {
                st.settled(&ct, st.tx_status).then_some(last_traffic + after)
            }
        });
        let now = std::time::Instant::now();
        if let Some(deadline) = deadline
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
        let timeout_ms = deadline.map_or(-1, |d| {
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
        if ready[0] & READABLE != 0 || ready[1] & READABLE != 0 {
            last_traffic = std::time::Instant::now();
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
                    if down.flush(bufs, client).is_err() {
                        return End::Client { how: Disconnect::ClientError, client: ct, server: st, clean: true };
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return End::Server(Disconnect::ServerError),
            }
        }

        if ready[0] & READABLE != 0 && up.is_empty() && leaving.is_none() {
            match up.fill(bufs, &down, client) {
                Ok(0) => leaving = Some(Disconnect::ClientClosed),
                Ok(n) => {
                    count(Event::NetworkReceived, n as u64);
                    let requests = ct.sync_points;
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

/// Count `n` of `event` when there is something to count.
fn count(event: Event, n: u64) {
    if n > 0 {
        counters::add(event, n);
    }
}

/// Send TLS records a socket holds (nothing for a plain one); a full
/// socket is not an error.
fn flush_tls(sock: &Sock) -> Result<(), ()> {
    match sock.flush() {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
        Err(_) => Err(()),
    }
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
            let message = format!("invalid frontend message: {e}");
            let _ = client.write_all(
                &encode::error_response("FATAL", sqlstate::PROTOCOL_VIOLATION, &message),
                Some(std::time::Instant::now() + std::time::Duration::from_secs(1)),
            );
            *leaving = Some(Disconnect::ClientProtocolViolation);
            e.offset
        }
    }
}
