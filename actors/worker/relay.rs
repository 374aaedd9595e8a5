//! The session relay: bytes both ways between client and server until the
//! client leaves (Terminate or EOF), the server goes away, or the supervisor
//! does. Every chunk passes through a [`Tracker`] so the session always knows
//! where message boundaries are, whether a Terminate arrived (it is not
//! forwarded) and the transaction status of the last ReadyForQuery.
//!
//! One poll(2) per wake-up, one read and one write per chunk; buffers are
//! allocated once per worker. The mailbox is not watched here: a stopping
//! supervisor sends QUIT, and a dead one takes its workers with it
//! (PR_SET_PDEATHSIG).

use crate::net::{Sock, poll};
use pgagroal::protocol::tracker::{Direction, Tracker};
use pgagroal::protocol::{encode, sqlstate};
use std::io::ErrorKind;

/// Client-to-server buffer.
const UP_BUF: usize = 16 * 1024;
/// Server-to-client buffer.
const DOWN_BUF: usize = 32 * 1024;

/// How the relay stopped.
pub enum End {
    /// The client left; the trackers tell whether the server side is clean.
    /// `clean` is false when the client broke the protocol, after which the
    /// server may hold part of a message.
    Client { how: &'static str, client: Tracker, server: Tracker, clean: bool },
    /// The server connection failed or closed.
    Server(&'static str),
}

/// The relay's two buffers, allocated once per worker and reused by every
/// session. Their capacity is not initialised up front, so an idle session
/// touches only the pages its messages used.
pub struct Buffers {
    up: Vec<u8>,
    down: Vec<u8>,
}

impl Buffers {
    pub fn new() -> Self {
        Buffers { up: Vec::with_capacity(UP_BUF), down: Vec::with_capacity(DOWN_BUF) }
    }
}

/// Bytes read but not yet written on: `buf[start..]`.
struct Pending<'b> {
    buf: &'b mut Vec<u8>,
    start: usize,
}

impl<'b> Pending<'b> {
    fn new(buf: &'b mut Vec<u8>) -> Self {
        buf.clear();
        Pending { buf, start: 0 }
    }

    fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }

    /// Read one chunk into the (empty) buffer.
    fn fill(&mut self, from: &Sock) -> std::io::Result<usize> {
        self.buf.clear();
        self.start = 0;
        from.read_append(self.buf)
    }

    /// Write as much as the socket takes; Err on a failed socket.
    fn flush(&mut self, to: &Sock) -> Result<(), ()> {
        while self.start < self.buf.len() {
            match to.write(&self.buf[self.start..]) {
                Ok(n) => self.start += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(_) => return Err(()),
            }
        }
        self.buf.clear();
        self.start = 0;
        Ok(())
    }
}

/// Why a session ends when the client sends a malformed message.
const VIOLATION: &str = "client protocol violation";

const READABLE: libc::c_short = libc::POLLIN | libc::POLLHUP | libc::POLLERR;

pub fn run(client: &Sock, server: &Sock, leftover: Vec<u8>, buffers: &mut Buffers) -> End {
    let mut up = Pending::new(&mut buffers.up);
    let mut down = Pending::new(&mut buffers.down);
    let mut ct = Tracker::new(Direction::Frontend);
    let mut st = Tracker::new(Direction::Backend);
    let mut leaving: Option<&'static str> = None;

    if !leftover.is_empty() {
        let keep = accept_client_bytes(&mut ct, &leftover, &mut leaving, client);
        up.buf.extend_from_slice(&leftover[..keep]);
    }

    loop {
        if let Some(how) = leaving
            && up.is_empty()
        {
            return End::Client { how, client: ct, server: st, clean: how != VIOLATION };
        }
        if !up.is_empty() && up.flush(server).is_err() {
            return End::Server("server connection failed");
        }
        if !down.is_empty() && down.flush(client).is_err() {
            return End::Client { how: "client connection failed", client: ct, server: st, clean: true };
        }
        let mut fds = [
            libc::pollfd {
                fd: client.raw(),
                events: if up.is_empty() && leaving.is_none() { libc::POLLIN } else { 0 }
                    | if down.is_empty() { 0 } else { libc::POLLOUT },
                revents: 0,
            },
            libc::pollfd {
                fd: server.raw(),
                events: if down.is_empty() { libc::POLLIN } else { 0 } | if up.is_empty() { 0 } else { libc::POLLOUT },
                revents: 0,
            },
        ];
        if poll(&mut fds, -1).is_err() {
            return End::Server("poll failed");
        }

        if fds[1].revents & READABLE != 0 && down.is_empty() {
            match down.fill(server) {
                Ok(0) => return End::Server("server closed the connection"),
                Ok(_) => {
                    if st.scan(down.buf).is_err() {
                        return End::Server("server protocol violation");
                    }
                    if down.flush(client).is_err() {
                        return End::Client { how: "client connection failed", client: ct, server: st, clean: true };
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return End::Server("server connection failed"),
            }
        }

        if fds[0].revents & READABLE != 0 && up.is_empty() && leaving.is_none() {
            match up.fill(client) {
                Ok(0) => leaving = Some("client closed the connection"),
                Ok(_) => {
                    let keep = accept_client_bytes(&mut ct, up.buf, &mut leaving, client);
                    up.buf.truncate(keep);
                    if up.flush(server).is_err() {
                        return End::Server("server connection failed");
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => leaving = Some("client connection failed"),
            }
        }

    }
}

/// Follow client bytes; returns how many of them are to be forwarded (a
/// Terminate and anything after it, or a malformed message, are not).
fn accept_client_bytes(ct: &mut Tracker, bytes: &[u8], leaving: &mut Option<&'static str>, client: &Sock) -> usize {
    match ct.scan(bytes) {
        Ok(None) => bytes.len(),
        Ok(Some(terminate_at)) => {
            *leaving = Some("client sent Terminate");
            terminate_at
        }
        Err(e) => {
            let message = format!("invalid frontend message: {e}");
            let _ = client.write_all(
                &encode::error_response("FATAL", sqlstate::PROTOCOL_VIOLATION, &message),
                Some(std::time::Instant::now() + std::time::Duration::from_secs(1)),
            );
            *leaving = Some(VIOLATION);
            e.offset
        }
    }
}
