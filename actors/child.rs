//! What every forked child does first, and small jobs run in short-lived
//! children so the supervisor itself never waits on PostgreSQL.

use pgagroal::config::ServerConfig;
use std::io::{Read, Write};
use std::net::ToSocketAddrs;
use std::time::Duration;

extern "C" fn quit_now(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(0) }
}

/// Undo the supervisor's signal set-up: unblock everything, restore default
/// actions, and make QUIT mean "stop now" without a core dump.
pub fn reset_signals() {
    // SAFETY: sigset_t is plain data initialised by sigemptyset; the handlers
    // installed are SIG_DFL or an async-signal-safe function.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        for sig in
            [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGCHLD, libc::SIGALRM, libc::SIGTRAP, libc::SIGUSR1]
        {
            libc::signal(sig, libc::SIG_DFL);
        }
        libc::signal(libc::SIGQUIT, quit_now as *const () as libc::sighandler_t);
    }
}

/// What every forked child does first: end with the supervisor
/// (PR_SET_PDEATHSIG, and a check that it is still the parent), undo its
/// signal set-up, take its own process group and close every fd but
/// `keep` and the log's. False when the child must leave at once.
pub fn enter(supervisor: i32, keep: &[std::os::fd::RawFd]) -> bool {
    pgagroal::log::after_fork_in_child();
    pgagroal::shmem::counters::enter_process(std::process::id());
    // SAFETY: prctl with PR_SET_PDEATHSIG and a valid signal number.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    if nix::unistd::getppid().as_raw() != supervisor {
        return false;
    }
    reset_signals();
    let _ = nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0));
    let mut keep = keep.to_vec();
    keep.extend(pgagroal::log::kept_fds());
    pgagroal::sys::close_all_except(&keep).is_ok()
}

/// Connect to a server, send one packet and wait (briefly) for it to close.
pub fn send_once(server: &ServerConfig, packet: &[u8]) -> std::io::Result<()> {
    let timeout = Duration::from_secs(2);
    if server.is_unix() {
        let mut stream = std::os::unix::net::UnixStream::connect(server.unix_path())?;
        stream.set_read_timeout(Some(timeout))?;
        stream.write_all(packet)?;
        let _ = stream.read(&mut [0u8; 16]);
        return Ok(());
    }
    let addr = (server.host.as_str(), server.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "server has no address"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(packet)?;
    let _ = stream.read(&mut [0u8; 16]);
    Ok(())
}
