//! Small wrappers over libc for descriptors, sockets and clocks, each with the
//! reason it is safe next to it.

use std::io;
use std::os::fd::RawFd;
use std::time::{SystemTime, UNIX_EPOCH};

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

pub fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL only read and write the flags of `fd`; an
    // invalid fd yields EBADF, which is returned.
    unsafe {
        let flags = check(libc::fcntl(fd, libc::F_GETFL))?;
        let flags = if on { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
        check(libc::fcntl(fd, libc::F_SETFL, flags))?;
    }
    Ok(())
}

fn set_int_opt(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: the option value points at a live c_int of the size passed.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// TCP_NODELAY; ignored (Ok) on Unix sockets, which have no such option.
pub fn set_nodelay(fd: RawFd, on: bool) -> io::Result<()> {
    match set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, on as libc::c_int) {
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(()),
        other => other,
    }
}

pub fn set_keepalive(fd: RawFd, on: bool) -> io::Result<()> {
    set_int_opt(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, on as libc::c_int)
}

/// Close every descriptor from 3 up except those in `keep`. Used right after
/// fork so a child holds nothing it does not own (listeners, other actors'
/// mailboxes, pooled server connections, the supervisor's epoll and signalfd).
///
/// The caller must not use or drop any Rust object owning a closed descriptor
/// afterwards: a forked child leaves through `_exit`-like paths only.
pub fn close_all_except(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<u32> = keep.iter().filter(|&&fd| fd >= 3).map(|&fd| fd as u32).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut low: u32 = 3;
    for fd in keep.into_iter().chain(std::iter::once(u32::MAX)) {
        if fd > low {
            // SAFETY: close_range closes descriptors in [low, fd - 1]; the
            // caller guarantees none of them is used afterwards.
            check(unsafe { libc::close_range(low, fd - 1, 0) })?;
        }
        if fd == u32::MAX {
            break;
        }
        low = fd + 1;
    }
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Whether a process exists (signal 0).
pub fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks existence.
    let ret = unsafe { libc::kill(pid, 0) };
    ret == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Local time formatted with strftime.
pub fn format_local_time(pattern: &str, epoch_secs: i64) -> String {
    let Ok(cpattern) = std::ffi::CString::new(pattern) else { return String::new() };
    let t: libc::time_t = epoch_secs as libc::time_t;
    // SAFETY: tm is plain old data, filled by localtime_r from a valid time_t.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return String::new();
    }
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length; cpattern is NUL terminated; tm is initialised.
    let n = unsafe { libc::strftime(buf.as_mut_ptr().cast(), buf.len(), cpattern.as_ptr(), &tm) };
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Fill `bytes` from the operating system's generator. It does not fail on
/// Linux once the kernel pool is ready; a failure leaves the bytes as they
/// were, which is not worth a crash.
pub fn fill_random(bytes: &mut [u8]) {
    use ring::rand::SecureRandom;
    let _ = ring::rand::SystemRandom::new().fill(bytes);
}

/// A fresh SCRAM nonce: 18 random bytes in base64 (24 characters, as libpq).
pub fn random_nonce() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 18];
    fill_random(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn time_formatting() {
        let s = format_local_time("%Y", 0);
        assert!(s == "1970" || s == "1969", "{s}");
        assert!(now_ms() > 1_600_000_000_000);
    }

    #[test]
    fn liveness() {
        assert!(process_alive(std::process::id() as i32));
        assert!(!process_alive(0));
    }

    #[test]
    fn nonblocking_toggle() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("pair");
        set_nonblocking(a.as_raw_fd(), true).expect("set");
        set_nonblocking(a.as_raw_fd(), false).expect("unset");
        assert!(set_nonblocking(-1, true).is_err());
    }
}
