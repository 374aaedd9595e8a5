//! The relay's sockets and buffers: the two buffers a worker reuses for
//! every session, the bytes one direction holds until the other side takes
//! them, and the wait for both sockets (poll(2) first, the worker's epoll
//! set once a session proves long).

use crate::net::{Epoll, Sock, poll};
use pgagroal::disconnect::Disconnect;
use std::io::ErrorKind;

/// Size of each relay buffer.
const BUF: usize = 32 * 1024;

/// The relay's two buffers, allocated once per worker and reused by every
/// session; their capacity is not initialised up front. A direction takes
/// the first buffer unless the other direction holds it, so a session whose
/// requests and answers alternate (almost all of them) keeps using one
/// buffer, and an idle session has touched only one page of it.
pub struct Buffers {
    pub(super) bufs: [Vec<u8>; 2],
    /// The worker's epoll set, None where it could not be created (poll(2)
    /// is used then).
    pub(super) epoll: Option<Epoll>,
    /// Where rewritten bytes are made (prepared statements), swapped with
    /// the buffer they replace.
    pub(super) scratch: Vec<u8>,
    /// Answers the pooler gives the client itself.
    pub(super) answers: Vec<u8>,
}

impl Buffers {
    pub fn new() -> Self {
        Buffers {
            bufs: [Vec::with_capacity(BUF), Vec::with_capacity(BUF)],
            epoll: Epoll::new().ok(),
            scratch: Vec::new(),
            answers: Vec::new(),
        }
    }
}

/// Bytes one direction read but has not yet written on:
/// `bufs[held][start..]`.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) held: Option<usize>,
    pub(super) start: usize,
}

impl Pending {
    pub(super) fn is_empty(&self) -> bool {
        self.held.is_none()
    }

    /// Read one chunk into a free buffer (`other` is the other direction).
    pub(super) fn fill(&mut self, bufs: &mut [Vec<u8>; 2], other: &Pending, from: &Sock) -> std::io::Result<usize> {
        let index = if other.held == Some(0) { 1 } else { 0 };
        let buf = &mut bufs[index];
        buf.clear();
        // A buffer swapped with the scratch one may have less room.
        buf.reserve(BUF);
        let n = from.read_append(buf)?;
        if n > 0 {
            self.held = Some(index);
            self.start = 0;
        }
        Ok(n)
    }

    /// The bytes not yet written.
    pub(super) fn bytes<'b>(&self, bufs: &'b [Vec<u8>; 2]) -> &'b [u8] {
        match self.held {
            Some(i) => &bufs[i][self.start..],
            None => &[],
        }
    }

    /// Keep only the first `len` bytes held (the rest is not forwarded).
    pub(super) fn truncate(&mut self, bufs: &mut [Vec<u8>; 2], len: usize) {
        if let Some(i) = self.held {
            bufs[i].truncate(self.start + len);
            if bufs[i].len() <= self.start {
                self.held = None;
                self.start = 0;
            }
        }
    }

    /// Put `bytes` after what this direction holds (in the free buffer
    /// when it holds none; `other` is the other direction).
    pub(super) fn append(&mut self, bufs: &mut [Vec<u8>; 2], other: &Pending, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let index = match self.held {
            Some(i) => i,
            None => {
                let i = if other.held == Some(0) { 1 } else { 0 };
                bufs[i].clear();
                self.held = Some(i);
                self.start = 0;
                i
            }
        };
        bufs[index].extend_from_slice(bytes);
    }

    /// Replace what this direction holds from `start` on with `scratch`'s
    /// bytes (the old ones are left in `scratch`).
    pub(super) fn replace(&mut self, bufs: &mut [Vec<u8>; 2], scratch: &mut Vec<u8>) {
        let Some(i) = self.held else { return };
        bufs[i].drain(..self.start);
        self.start = 0;
        std::mem::swap(&mut bufs[i], scratch);
        if bufs[i].is_empty() {
            self.held = None;
        }
    }

    /// Write as much as the socket takes; Err on a failed socket.
    pub(super) fn flush(&mut self, bufs: &[Vec<u8>; 2], to: &Sock) -> Result<(), ()> {
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

/// The end of a server's answer still to be sent to the client once the
/// transaction is over (see [`super::End::Idle`]).
#[derive(Default)]
pub struct Owed(pub(super) Pending);

/// Send the client what is `owed` to it, with no connection held. While its
/// socket is full, what it sends meanwhile (up to one buffer) is read into
/// `next`, as the relay would, so a client that writes before it reads
/// cannot stall both sides.
pub fn deliver(client: &Sock, buffers: &Buffers, mut owed: Owed, next: &mut Vec<u8>) -> Result<(), Disconnect> {
    // Fault injection: act as if the client's socket were full until the
    // client sends something.
    let mut pretend_full = false;
    pgagroal::fail_point!("worker-deliver-held", pretend_full = !owed.0.is_empty());
    loop {
        if !pretend_full {
            if owed.0.flush(&buffers.bufs, client).is_err() || flush_tls(client).is_err() {
                return Err(Disconnect::ClientError);
            }
            if owed.0.is_empty() && !client.wants_write() {
                return Ok(());
            }
        }
        let reads = next.len() < BUF;
        let mut fds = [libc::pollfd {
            fd: client.raw(),
            events: if pretend_full { 0 } else { libc::POLLOUT } | if reads { libc::POLLIN } else { 0 },
            revents: 0,
        }];
        if poll(&mut fds, -1).is_err() {
            return Err(Disconnect::ClientError);
        }
        if reads && fds[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            next.reserve(BUF);
            match client.read_append(next) {
                Ok(0) => return Err(Disconnect::ClientClosed),
                Ok(_) => pretend_full = false,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return Err(Disconnect::ClientError),
            }
        }
    }
}

/// Wake-ups after which a session moves from poll(2) to the worker's epoll
/// set: registering costs four epoll_ctl calls per session, which a short
/// session (a connection per transaction) would not earn back.
pub(super) const EPOLL_AFTER: u32 = 16;

/// Waits for the client and server sockets: poll(2) at first, the epoll set
/// once the session proves long. Leaves the epoll set empty when dropped.
pub(super) struct Waiter<'e> {
    pub(super) epoll: Option<&'e mut Epoll>,
    pub(super) active: bool,
    pub(super) wakeups: u32,
}

impl Waiter<'_> {
    /// Wait until client or server is ready for what is wanted of it;
    /// returns their ready events (poll(2) flags).
    pub(super) fn wait(
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

/// Send TLS records a socket holds (nothing for a plain one); a full
/// socket is not an error.
pub(super) fn flush_tls(sock: &Sock) -> Result<(), ()> {
    match sock.flush() {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
        Err(_) => Err(()),
    }
}
