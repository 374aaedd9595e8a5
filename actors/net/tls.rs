//! TLS over a non-blocking socket: the handshake with a deadline, then
//! reads and writes that behave like the plain socket's (WouldBlock when
//! the socket cannot go on), with the record state kept in this process.
//! The socket's wait loops ask [`TlsState::wants_write`] and
//! [`TlsState::has_buffered`], since TLS may hold records to send or
//! decrypted bytes to read that the socket's readiness does not show.

use super::{IoFail, TlsFail, poll, read_raw, timeout_ms, write_fd};
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Instant;

/// The socket as rustls reads and writes records on it.
struct Wire(RawFd);

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is a valid, writable slice for its length.
        unsafe { read_raw(self.0, buf.as_mut_ptr(), buf.len()) }
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_fd(self.0, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

pub struct TlsState {
    fd: OwnedFd,
    conn: RefCell<rustls::Connection>,
}

fn wait(fd: RawFd, events: libc::c_short, deadline: Instant) -> Result<(), TlsFail> {
    let mut fds = [libc::pollfd { fd, events, revents: 0 }];
    match poll(&mut fds, timeout_ms(Some(deadline))) {
        Ok(0) => Err(TlsFail::Io(IoFail::Timeout)),
        Ok(_) => Ok(()),
        Err(e) => Err(TlsFail::Io(IoFail::Io(e))),
    }
}

impl TlsState {
    /// Run the handshake to its end, waiting until `deadline`.
    pub fn handshake(fd: OwnedFd, mut conn: rustls::Connection, deadline: Instant) -> Result<TlsState, TlsFail> {
        let raw = fd.as_raw_fd();
        loop {
            while conn.wants_write() {
                match conn.write_tls(&mut Wire(raw)) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait(raw, libc::POLLOUT, deadline)?,
                    Err(e) => return Err(TlsFail::Io(IoFail::Io(e))),
                }
            }
            if !conn.is_handshaking() {
                return Ok(TlsState { fd, conn: RefCell::new(conn) });
            }
            match conn.read_tls(&mut Wire(raw)) {
                Ok(0) => return Err(TlsFail::Io(IoFail::Eof)),
                Ok(_) => {
                    if let Err(e) = conn.process_new_packets() {
                        // Tell the peer why (the alert is queued), best effort.
                        let _ = conn.write_tls(&mut Wire(raw));
                        return Err(TlsFail::Handshake(e.to_string()));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait(raw, libc::POLLIN, deadline)?,
                Err(e) => return Err(TlsFail::Io(IoFail::Io(e))),
            }
        }
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Decrypted bytes appended to `buf` (up to its spare capacity); Ok(0)
    /// at the end of the stream; WouldBlock when more records must arrive.
    pub fn read_append(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let mut conn = self.conn.borrow_mut();
        let old = buf.len();
        if buf.capacity() == old {
            return Ok(0);
        }
        // rustls reads into initialised bytes: zero the spare capacity once.
        buf.resize(buf.capacity(), 0);
        let read = loop {
            match conn.reader().read(&mut buf[old..]) {
                Ok(n) => break Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed the connection without close_notify.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break Ok(0),
                Err(e) => break Err(e),
            }
            if let Err(e) = conn.read_tls(&mut Wire(self.fd.as_raw_fd())) {
                break Err(e);
            }
            if let Err(e) = conn.process_new_packets() {
                break Err(tls_error(e));
            }
            // Answers the records may need (a key update), best effort.
            while conn.wants_write() {
                if conn.write_tls(&mut Wire(self.fd.as_raw_fd())).is_err() {
                    break;
                }
            }
        };
        buf.truncate(old + *read.as_ref().unwrap_or(&0));
        read
    }

    /// Take bytes into records and send what the socket takes; WouldBlock
    /// while earlier records still wait for the socket.
    pub fn write(&self, data: &[u8]) -> io::Result<usize> {
        self.flush()?;
        let mut conn = self.conn.borrow_mut();
        let n = conn.writer().write(data)?;
        if n == 0 && !data.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        while conn.wants_write() {
            match conn.write_tls(&mut Wire(self.fd.as_raw_fd())) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    pub fn wants_write(&self) -> bool {
        self.conn.borrow().wants_write()
    }

    /// Send waiting records; WouldBlock when the socket is full.
    pub fn flush(&self) -> io::Result<()> {
        let mut conn = self.conn.borrow_mut();
        while conn.wants_write() {
            conn.write_tls(&mut Wire(self.fd.as_raw_fd()))?;
        }
        Ok(())
    }

    /// Decrypted bytes wait to be read.
    pub fn has_buffered(&self) -> bool {
        match self.conn.borrow_mut().process_new_packets() {
            Ok(state) => state.plaintext_bytes_to_read() > 0,
            // Let the next read report it.
            Err(_) => true,
        }
    }

    /// Queue close_notify and send it if the socket takes it at once.
    pub fn close_notify(&self) {
        let mut conn = self.conn.borrow_mut();
        conn.send_close_notify();
        while conn.wants_write() {
            if conn.write_tls(&mut Wire(self.fd.as_raw_fd())).is_err() {
                break;
            }
        }
    }
}
