//! Binding the daemon's sockets: TCP on `host:port` (`*` is every IPv6 and
//! IPv4 address through one dual-stack socket, falling back to IPv4), the
//! client Unix socket `.s.PGSQL.<port>` and the management socket
//! `.s.pgagroal`. A Unix socket file left by a dead daemon is removed; one
//! that still answers means another daemon runs, and binding stops.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn relisten(fd: i32, backlog: u32) -> io::Result<()> {
    // SAFETY: listen on a socket we own; calling it again only changes the backlog.
    if unsafe { libc::listen(fd, backlog.min(i32::MAX as u32) as i32) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// TCP_NODELAY and SO_KEEPALIVE on a listener: Linux copies both into every
/// accepted socket, which saves two system calls per client.
pub fn set_client_options(fd: i32, nodelay: bool, keep_alive: bool) -> io::Result<()> {
    pgagroal::sys::set_nodelay(fd, nodelay)?;
    pgagroal::sys::set_keepalive(fd, keep_alive)
}

fn bind_one(addr: SocketAddr, backlog: u32, options: (bool, bool)) -> io::Result<mio::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    set_client_options(listener.as_raw_fd(), options.0, options.1)?;
    relisten(listener.as_raw_fd(), backlog)?;
    listener.set_nonblocking(true)?;
    Ok(mio::net::TcpListener::from_std(listener))
}

/// Bind TCP listeners for `host`; `options` is (nodelay, keep_alive) for
/// the clients they accept.
pub fn tcp(host: &str, port: u16, backlog: u32, options: (bool, bool)) -> io::Result<Vec<mio::net::TcpListener>> {
    if host == "*" {
        return match bind_one(SocketAddr::from(([0u16; 8], port)), backlog, options) {
            Ok(l) => Ok(vec![l]),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(e),
            Err(_) => Ok(vec![bind_one(SocketAddr::from(([0u8; 4], port)), backlog, options)?]),
        };
    }
    let mut listeners = Vec::new();
    let mut last_error = None;
    let mut addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    addrs.sort();
    addrs.dedup();
    for addr in addrs {
        match bind_one(addr, backlog, options) {
            Ok(l) => listeners.push(l),
            Err(e) => last_error = Some(io::Error::new(e.kind(), format!("{addr}: {e}"))),
        }
    }
    match (listeners.is_empty(), last_error) {
        (true, Some(e)) => Err(e),
        (true, None) => Err(io::Error::new(io::ErrorKind::NotFound, format!("host '{host}' has no address"))),
        (false, _) => Ok(listeners),
    }
}

/// Bind a Unix socket at `path` with file mode `mode`.
pub fn unix(path: &Path, mode: u32, backlog: u32) -> io::Result<mio::net::UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use: is another pgagroal running?", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    relisten(listener.as_raw_fd(), backlog)?;
    listener.set_nonblocking(true)?;
    Ok(mio::net::UnixListener::from_std(listener))
}

/// The listeners of an actor's port (`management`, `metrics`) on `host`,
/// as plain descriptors the actor takes over; none for port 0.
pub fn actor_port(host: &str, port: u16, options: (bool, bool)) -> io::Result<Vec<std::os::fd::OwnedFd>> {
    if port == 0 {
        return Ok(Vec::new());
    }
    Ok(tcp(host, port, 16, options)?.into_iter().map(std::os::fd::OwnedFd::from).collect())
}
