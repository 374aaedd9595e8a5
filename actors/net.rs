//! A non-blocking stream socket (TCP or Unix), plain or carrying TLS, with
//! deadline-bounded reads and writes built on poll(2). Workers use it for
//! both the client and the server connection.

mod tls;

use pgagroal::protocol::frame::{self, Frame};

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

/// A connected socket, plain or carrying TLS. A TLS socket's record state
/// lives in this process: it can be handed on only as this value.
pub struct Sock {
    inner: Inner,
}

enum Inner {
    Plain(OwnedFd),
    Tls(Box<tls::TlsState>),
}

/// Why a bounded operation stopped.
#[derive(Debug)]
pub enum IoFail {
    /// Orderly close by the peer.
    Eof,
    Timeout,
    Io(io::Error),
}

impl From<io::Error> for IoFail {
    fn from(e: io::Error) -> Self {
        IoFail::Io(e)
    }
}

impl std::fmt::Display for IoFail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IoFail::Eof => f.write_str("connection closed by peer"),
            IoFail::Timeout => f.write_str("timed out"),
            IoFail::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Milliseconds left until `deadline`, for poll(2); -1 means no deadline.
fn timeout_ms(deadline: Option<Instant>) -> i32 {
    match deadline {
        None => -1,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            left.as_millis().min(i32::MAX as u128) as i32
        }
    }
}

/// poll(2) on a set of descriptors; returns the number ready (0 on timeout).
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    loop {
        // SAFETY: fds is a valid, writable slice of pollfd for its length.
        let ret = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if ret >= 0 {
            return Ok(ret as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// One read(2) of at most `len` bytes into `ptr`, retried on EINTR.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
unsafe fn read_raw(fd: RawFd, ptr: *mut u8, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: the caller guarantees ptr is writable for len bytes.
        let n = unsafe { libc::read(fd, ptr.cast(), len) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Read straight into `buf`'s spare capacity (nothing zero-filled first).
fn read_fd(fd: RawFd, buf: &mut Vec<u8>) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    // SAFETY: the pointer and length describe the vector's spare capacity,
    // which read(2) may write; nothing reads it before the kernel has.
    let n = unsafe { read_raw(fd, spare.as_mut_ptr().cast(), spare.len()) }?;
    // SAFETY: read(2) initialised exactly n bytes past the old length.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// One send(2) that never raises SIGPIPE.
fn write_fd(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: data is valid for data.len() bytes.
        let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

impl Sock {
    /// Adopt a connected socket and make it non-blocking.
    pub fn new(fd: OwnedFd) -> io::Result<Sock> {
        pgagroal::sys::set_nonblocking(fd.as_raw_fd(), true)?;
        Ok(Sock { inner: Inner::Plain(fd) })
    }

    /// Adopt a socket that is already non-blocking: one the supervisor
    /// accepted (mio accepts with SOCK_NONBLOCK) or a pooled server
    /// connection (non-blocking since its worker set it up; the flag belongs
    /// to the socket, not to one descriptor).
    pub fn adopt(fd: OwnedFd) -> Sock {
        Sock { inner: Inner::Plain(fd) }
    }

    pub fn fd(&self) -> &OwnedFd {
        match &self.inner {
            Inner::Plain(fd) => fd,
            Inner::Tls(t) => t.fd(),
        }
    }

    pub fn raw(&self) -> RawFd {
        self.fd().as_raw_fd()
    }

    /// Whether TLS runs on this socket.
    pub fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls(_))
    }

    /// TLS as the server (toward a client that sent SSLRequest and got 'S').
    pub fn accept_tls(self, config: Arc<rustls::ServerConfig>, deadline: Instant) -> Result<Sock, TlsFail> {
        let Inner::Plain(fd) = self.inner else { return Err(TlsFail::Handshake("TLS is already on".into())) };
        let conn = rustls::ServerConnection::new(config).map_err(|e| TlsFail::Handshake(e.to_string()))?;
        tls::TlsState::handshake(fd, conn.into(), deadline).map(|t| Sock { inner: Inner::Tls(Box::new(t)) })
    }

    /// TLS as the client (toward a server that answered SSLRequest with 'S').
    pub fn connect_tls(
        self,
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
        deadline: Instant,
    ) -> Result<Sock, TlsFail> {
        let Inner::Plain(fd) = self.inner else { return Err(TlsFail::Handshake("TLS is already on".into())) };
        let conn = rustls::ClientConnection::new(config, name).map_err(|e| TlsFail::Handshake(e.to_string()))?;
        tls::TlsState::handshake(fd, conn.into(), deadline).map(|t| Sock { inner: Inner::Tls(Box::new(t)) })
    }

    /// One read appended to `buf` without initialising its spare capacity
    /// first (pages of a large buffer are touched only when data arrives).
    /// `Ok(0)` is end of stream (or no spare capacity); WouldBlock when
    /// nothing is there.
    pub fn read_append(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match &self.inner {
            Inner::Plain(fd) => read_fd(fd.as_raw_fd(), buf),
            Inner::Tls(t) => t.read_append(buf),
        }
    }

    /// One write; a TLS socket takes the bytes into records and sends what
    /// the socket takes (see [`Sock::wants_write`]).
    pub fn write(&self, data: &[u8]) -> io::Result<usize> {
        match &self.inner {
            Inner::Plain(fd) => write_fd(fd.as_raw_fd(), data),
            Inner::Tls(t) => t.write(data),
        }
    }

    /// TLS records are waiting for the socket to take them.
    pub fn wants_write(&self) -> bool {
        match &self.inner {
            Inner::Plain(_) => false,
            Inner::Tls(t) => t.wants_write(),
        }
    }

    /// Send waiting TLS records; WouldBlock when the socket is full.
    pub fn flush(&self) -> io::Result<()> {
        match &self.inner {
            Inner::Plain(_) => Ok(()),
            Inner::Tls(t) => t.flush(),
        }
    }

    /// Decrypted bytes are waiting: readable without the socket.
    pub fn has_buffered(&self) -> bool {
        match &self.inner {
            Inner::Plain(_) => false,
            Inner::Tls(t) => t.has_buffered(),
        }
    }

    fn wait(&self, events: libc::c_short, deadline: Option<Instant>) -> Result<(), IoFail> {
        let events = if self.wants_write() { events | libc::POLLOUT } else { events };
        let mut fds = [libc::pollfd { fd: self.raw(), events, revents: 0 }];
        if poll(&mut fds, timeout_ms(deadline))? == 0 {
            return Err(IoFail::Timeout);
        }
        if fds[0].revents & libc::POLLOUT != 0 {
            match self.flush() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(IoFail::Io(e)),
            }
        }
        Ok(())
    }

    /// Read at least one byte, appending to `buf`, waiting until `deadline`.
    pub fn read_some(&self, buf: &mut Vec<u8>, deadline: Option<Instant>) -> Result<usize, IoFail> {
        // Read straight into the vector: no stack buffer (a worker's stack
        // pages are copies of the supervisor's once written).
        if buf.capacity() == buf.len() {
            buf.reserve(buf.len().max(256));
        }
        loop {
            match self.read_append(buf) {
                Ok(0) => return Err(IoFail::Eof),
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(libc::POLLIN, deadline)?,
                Err(e) => return Err(IoFail::Io(e)),
            }
        }
    }

    /// Write everything (TLS records included), waiting until `deadline`.
    pub fn write_all(&self, mut data: &[u8], deadline: Option<Instant>) -> Result<(), IoFail> {
        while !data.is_empty() {
            match self.write(data) {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(libc::POLLOUT, deadline)?,
                Err(e) => return Err(IoFail::Io(e)),
            }
        }
        loop {
            match self.flush() {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(libc::POLLOUT, deadline)?,
                Err(e) => return Err(IoFail::Io(e)),
            }
        }
    }

    /// Read until `buf` (which may already hold bytes) starts with one whole
    /// tagged message, and return it; the caller drains its `len()` bytes
    /// once done with it.
    pub fn read_frame<'b>(
        &self,
        buf: &'b mut Vec<u8>,
        max_body: usize,
        deadline: Option<Instant>,
    ) -> Result<Frame<'b>, FrameFail> {
        loop {
            match frame::split(buf, max_body) {
                Ok(Some(_)) => break,
                Ok(None) => {
                    self.read_some(buf, deadline).map_err(FrameFail::Io)?;
                }
                Err(e) => return Err(FrameFail::Frame(e)),
            }
        }
        // Split again to hand out the frame borrowed for 'b: it is whole.
        frame::split(buf, max_body).map_err(FrameFail::Frame)?.ok_or(FrameFail::Io(IoFail::Eof))
    }

    /// What the socket holds now, without taking it or waiting.
    fn peek(&self) -> Peeked {
        if self.has_buffered() {
            return Peeked::Bytes;
        }
        let mut byte = [0u8; 1];
        // SAFETY: byte is a valid 1-byte buffer.
        let n = unsafe { libc::recv(self.raw(), byte.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
        match n {
            0 => Peeked::Closed,
            n if n > 0 => Peeked::Bytes,
            _ if io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock => Peeked::Nothing,
            _ => Peeked::Closed,
        }
    }

    /// Whether a pooled, idle connection still looks usable: no EOF and no
    /// unsolicited bytes (a server that is going away sends an error first).
    pub fn idle_and_open(&self) -> bool {
        self.peek() == Peeked::Nothing
    }

    /// Whether the peer has closed its end (or the socket failed): bytes
    /// waiting to be read mean it is still there (a client may send its
    /// next requests before it has the answers to the last).
    pub fn closed_by_peer(&self) -> bool {
        self.peek() == Peeked::Closed
    }

    /// shutdown(2) both ways: ends the connection for every process holding
    /// a copy. A TLS socket says close_notify first, when it can at once.
    pub fn shutdown(&self) {
        if let Inner::Tls(t) = &self.inner {
            t.close_notify();
        }
        // SAFETY: shutdown on our own descriptor; errors (already closed) are irrelevant.
        unsafe { libc::shutdown(self.raw(), libc::SHUT_RDWR) };
    }
}

/// What a peek at a socket found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peeked {
    /// Nothing to read, and the peer is there.
    Nothing,
    /// Bytes are waiting.
    Bytes,
    /// End of stream, or the socket failed.
    Closed,
}

/// Why a TLS handshake failed.
#[derive(Debug)]
pub enum TlsFail {
    Io(IoFail),
    Handshake(String),
}

impl std::fmt::Display for TlsFail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsFail::Io(e) => write!(f, "{e}"),
            TlsFail::Handshake(e) => write!(f, "TLS handshake failed: {e}"),
        }
    }
}

#[derive(Debug)]
pub enum FrameFail {
    Io(IoFail),
    Frame(frame::FrameError),
}

impl std::fmt::Display for FrameFail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameFail::Io(e) => write!(f, "{e}"),
            FrameFail::Frame(e) => write!(f, "{e}"),
        }
    }
}

/// A small level-triggered epoll set, created once per worker and reused by
/// its sessions: unlike poll(2) it does not re-register with every socket's
/// wait queue on each wait.
pub struct Epoll {
    fd: OwnedFd,
    /// (descriptor, current interest) of each registered socket.
    watched: [(RawFd, u32); 2],
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 has no memory arguments; the result is checked.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor that nothing else owns.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        Ok(Epoll { fd, watched: [(-1, 0); 2] })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event { events, u64: token };
        // SAFETY: event is a valid epoll_event for the duration of the call.
        if unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut event) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Watch `fds[i]` with token `i` (interest set later by `want`).
    pub fn watch(&mut self, fds: [RawFd; 2]) -> io::Result<()> {
        for (i, fd) in fds.into_iter().enumerate() {
            self.ctl(libc::EPOLL_CTL_ADD, fd, 0, i as u64)?;
            self.watched[i] = (fd, 0);
        }
        Ok(())
    }

    /// Set the interest of socket `i`; a syscall only when it changes.
    pub fn want(&mut self, i: usize, events: u32) -> io::Result<()> {
        let (fd, current) = self.watched[i];
        if current != events {
            self.ctl(libc::EPOLL_CTL_MOD, fd, events, i as u64)?;
            self.watched[i].1 = events;
        }
        Ok(())
    }

    /// Wait for readiness (at most `timeout_ms`, -1 for ever); returns the
    /// ready events of socket 0 and 1 (none on timeout).
    pub fn wait(&self, timeout_ms: i32) -> io::Result<[u32; 2]> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 2];
        loop {
            // SAFETY: events is a writable array of 2 epoll_event.
            let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), 2, timeout_ms) };
            if n >= 0 {
                let mut ready = [0u32; 2];
                for e in &events[..n as usize] {
                    if let Some(slot) = ready.get_mut(e.u64 as usize) {
                        *slot |= e.events;
                    }
                }
                return Ok(ready);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Stop watching both sockets (they may outlive the session).
    pub fn clear(&mut self) {
        for (fd, _) in self.watched {
            if fd >= 0 {
                let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0);
            }
        }
        self.watched = [(-1, 0); 2];
    }
}
