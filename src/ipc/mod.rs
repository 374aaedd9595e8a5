//! Typed mailboxes between the supervisor and its actors.
//!
//! A mailbox is one end of a `SOCK_SEQPACKET` socketpair created
//! close-on-exec, typed by direction: a `Mailbox<Out, In>` sends only `Out`
//! and receives only `In`, and its other end is a `Mailbox<In, Out>`, so an
//! actor can only send what its contract (`crate::msg`) says. Each packet is one message: an 8-byte header (version,
//! contract, reserved, body length) and a bincode body decoded with a size
//! limit. A file descriptor may ride on the same packet as `SCM_RIGHTS`; it
//! becomes an `OwnedFd` the moment it arrives, and a packet carrying more
//! than one is refused (the extras are closed).

use nix::errno::Errno;
use nix::sys::socket::{self, ControlMessage, MsgFlags};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::IoSlice;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Version of the header layout.
pub const MAILBOX_VERSION: u8 = 1;
/// Header bytes before the body.
pub const HEADER_LEN: usize = 8;
/// Largest packet, header included.
pub const MAX_PACKET: usize = 64 * 1024;

/// Which message contract a packet belongs to (the receiver checks it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Contract {
    /// A client worker's (`crate::msg::worker`).
    Worker = 1,
    /// A periodic service's (`crate::msg::service`).
    Service = 2,
    /// The remote-management actor's (`crate::msg::management`).
    Management = 3,
    /// The metrics actor's (`crate::msg::metrics`).
    Metrics = 4,
}

#[derive(Debug, thiserror::Error)]
pub enum MailboxError {
    #[error("mailbox I/O: {0}")]
    Io(#[from] Errno),
    #[error("mailbox packet of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("mailbox packet truncated (more than {MAX_PACKET} bytes or too many descriptors)")]
    Truncated,
    #[error("mailbox header version {0}, expected {MAILBOX_VERSION}")]
    Version(u8),
    #[error("mailbox contract {got}, expected {expected}")]
    Contract { got: u8, expected: u8 },
    #[error("mailbox header declares {declared} body bytes, packet has {actual}")]
    Length { declared: usize, actual: usize },
    #[error("mailbox packet carried {0} descriptors, at most one is accepted")]
    TooManyFds(usize),
    #[error("mailbox body does not decode: {0}")]
    Decode(String),
    #[error("mailbox message of {0} bytes is larger than {MAX_PACKET}")]
    TooLarge(usize),
}

/// One received message.
#[derive(Debug)]
pub enum Received<T> {
    Message(T, Option<OwnedFd>),
    /// The other end is closed.
    Closed,
    /// Non-blocking mailbox with nothing queued.
    Empty,
}

fn codec() -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new().with_limit(MAX_PACKET as u64).with_fixint_encoding()
}

/// One end of a mailbox: sends `Out`, receives `In`.
#[derive(Debug)]
pub struct Mailbox<Out, In> {
    fd: OwnedFd,
    contract: Contract,
    direction: PhantomData<fn(Out) -> In>,
}

impl<Out, In> AsFd for Mailbox<Out, In> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl<Out, In> AsRawFd for Mailbox<Out, In> {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl<Out: Serialize, In: DeserializeOwned> Mailbox<Out, In> {
    /// A connected pair: this end and the other, which sends `In` and
    /// receives `Out`.
    #[allow(clippy::type_complexity)]
    pub fn pair(contract: Contract) -> Result<(Mailbox<Out, In>, Mailbox<In, Out>), MailboxError> {
        let (a, b) = socket::socketpair(
            socket::AddressFamily::Unix,
            socket::SockType::SeqPacket,
            None,
            socket::SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Mailbox { fd: a, contract, direction: PhantomData }, Mailbox { fd: b, contract, direction: PhantomData }))
    }

    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    pub fn set_nonblocking(&self, on: bool) -> Result<(), MailboxError> {
        crate::sys::set_nonblocking(self.fd.as_raw_fd(), on)
            .map_err(|e| MailboxError::Io(Errno::from_raw(e.raw_os_error().unwrap_or(0))))
    }

    /// Bound how long a blocking `recv` waits.
    pub fn set_recv_timeout(&self, timeout: Duration) -> Result<(), MailboxError> {
        let tv = nix::sys::time::TimeVal::new(
            timeout.as_secs() as libc::time_t,
            timeout.subsec_micros() as libc::suseconds_t,
        );
        socket::setsockopt(&self.fd, socket::sockopt::ReceiveTimeout, &tv)?;
        Ok(())
    }

    /// Send one message, with at most one descriptor.
    pub fn send(&self, message: &Out, fd: Option<BorrowedFd<'_>>) -> Result<(), MailboxError> {
        use bincode::Options;
        let body = codec().serialize(message).map_err(|e| MailboxError::Decode(e.to_string()))?;
        if body.len() + HEADER_LEN > MAX_PACKET {
            return Err(MailboxError::TooLarge(body.len() + HEADER_LEN));
        }
        let mut header = [0u8; HEADER_LEN];
        header[0] = MAILBOX_VERSION;
        header[1] = self.contract as u8;
        header[4..8].copy_from_slice(&(body.len() as u32).to_le_bytes());
        let iov = [IoSlice::new(&header), IoSlice::new(&body)];
        let raw_fds;
        let cmsgs: &[ControlMessage<'_>] = match fd {
            Some(fd) => {
                raw_fds = [fd.as_raw_fd()];
                &[ControlMessage::ScmRights(&raw_fds)]
            }
            None => &[],
        };
        loop {
            match socket::sendmsg::<()>(self.fd.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One recvmsg(2) into `buf`'s spare capacity (nothing is zero-filled
    /// first: only the pages the packet lands on are touched). None when a
    /// non-blocking mailbox has nothing queued.
    fn recv_raw(&self, buf: &mut Vec<u8>) -> Result<Option<(usize, Vec<OwnedFd>, libc::c_int)>, MailboxError> {
        // Room for two descriptors so that a second one is seen (and closed)
        // rather than silently discarded by the kernel; u64s for alignment.
        let mut control = [0u64; 8];
        let spare = buf.spare_capacity_mut();
        let mut iov = libc::iovec { iov_base: spare.as_mut_ptr().cast(), iov_len: spare.len() };
        // SAFETY: msghdr is plain data; zero is a valid empty header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = loop {
            // SAFETY: msg points at a live iovec over the vector's spare
            // capacity and at a live, aligned control buffer.
            let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
            if n >= 0 {
                break n as usize;
            }
            match Errno::last() {
                Errno::EINTR => continue,
                Errno::EAGAIN => return Ok(None),
                e => return Err(e.into()),
            }
        };
        // SAFETY: recvmsg initialised exactly n bytes of the spare capacity.
        unsafe { buf.set_len(n) };
        let mut fds = Vec::new();
        // SAFETY: the CMSG_* helpers walk the control buffer the kernel filled
        // in, within msg_controllen; each SCM_RIGHTS payload holds
        // (cmsg_len - CMSG_LEN(0)) / sizeof(int) descriptors, which the kernel
        // installed for us and which nothing else owns.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(cmsg) as *const libc::c_int;
                    let count =
                        ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<libc::c_int>();
                    for i in 0..count {
                        fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        Ok(Some((n, fds, msg.msg_flags)))
    }

    /// Receive one message (blocking or not, as the socket is set).
    pub fn recv(&self) -> Result<Received<In>, MailboxError> {
        use bincode::Options;
        let mut buf = Vec::with_capacity(MAX_PACKET);
        let Some((len, mut fds, flags)) = self.recv_raw(&mut buf)? else { return Ok(Received::Empty) };
        if len == 0 && fds.is_empty() {
            return Ok(Received::Closed);
        }
        if flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
            return Err(MailboxError::Truncated);
        }
        if fds.len() > 1 {
            return Err(MailboxError::TooManyFds(fds.len()));
        }
        let Some(header) = buf.get(..HEADER_LEN).filter(|_| len >= HEADER_LEN) else {
            return Err(MailboxError::Short(len));
        };
        if header[0] != MAILBOX_VERSION {
            return Err(MailboxError::Version(header[0]));
        }
        if header[1] != self.contract as u8 {
            return Err(MailboxError::Contract { got: header[1], expected: self.contract as u8 });
        }
        let declared = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if declared != len - HEADER_LEN {
            return Err(MailboxError::Length { declared, actual: len - HEADER_LEN });
        }
        let message = codec().deserialize(&buf[HEADER_LEN..len]).map_err(|e| MailboxError::Decode(e.to_string()))?;
        Ok(Received::Message(message, fds.pop()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Msg {
        Hello { n: u32, text: String },
        Bye,
    }

    #[test]
    fn round_trip_with_and_without_fd() {
        let (a, b) = Mailbox::<Msg, Msg>::pair(Contract::Worker).expect("pair");
        a.send(&Msg::Hello { n: 7, text: "x".into() }, None).expect("send");
        match b.recv().expect("recv") {
            Received::Message(Msg::Hello { n: 7, .. }, None) => {}
            other => panic!("unexpected {other:?}"),
        }
        let file = std::fs::File::open("/dev/null").expect("open");
        a.send(&Msg::Bye, Some(file.as_fd())).expect("send fd");
        match b.recv().expect("recv") {
            Received::Message(Msg::Bye, Some(fd)) => assert_ne!(fd.as_raw_fd(), file.as_raw_fd()),
            other => panic!("unexpected {other:?}"),
        }
        drop(a);
        assert!(matches!(b.recv().expect("recv"), Received::Closed));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let (a, b) = Mailbox::<Msg, Msg>::pair(Contract::Worker).expect("pair");
        for packet in
            [&b"\x01"[..], b"\x02\x01\0\0\0\0\0\0", b"\x01\x01\0\0\x09\0\0\0abc", b"\x01\x01\0\0\x03\0\0\0\xff\xff\xff"]
        {
            socket::send(a.as_raw_fd(), packet, MsgFlags::empty()).expect("raw send");
            assert!(b.recv().is_err(), "{packet:?}");
        }
        b.set_nonblocking(true).expect("nonblocking");
        assert!(matches!(b.recv().expect("recv"), Received::Empty));
    }
}
