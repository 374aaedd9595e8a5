//! What the actors serving a TCP port (remote management, metrics) share:
//! QUIT as "stop accepting and finish what is under way", one wait on the
//! mailbox and the listeners, the mailbox's lifecycle messages, bounded
//! accepts, and a cap on the connections served at once.

use pgagroal::ipc::{Mailbox, MailboxError, Received};
use pgagroal::msg::{Down, Lifecycle, LifecycleReply, Never, NoPush, Outcome, Up};
use slog::warn;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The mailbox of an actor whose reloads carry `R`.
pub type PortMailbox<R> = Mailbox<Up<Never, Never>, Down<Never, NoPush, Box<R>>>;

/// Connections accepted in one turn of the loop, so a flood of them never
/// keeps the mailbox (pings, reloads) waiting.
const ACCEPTS_PER_TURN: usize = 64;

/// Set by QUIT.
static QUIT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_quit(_: libc::c_int) {
    QUIT.store(true, Ordering::Relaxed);
}

/// Take the listeners over (non-blocking) and make QUIT end the loop
/// instead of the process; None when a descriptor cannot be set up.
pub fn start<R: serde::Serialize + serde::de::DeserializeOwned>(
    listeners: Vec<OwnedFd>,
    mailbox: &PortMailbox<R>,
) -> Option<Vec<TcpListener>> {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { libc::signal(libc::SIGQUIT, on_quit as *const () as libc::sighandler_t) };
    let listeners: Vec<TcpListener> = listeners.into_iter().map(TcpListener::from).collect();
    let ready = listeners.iter().all(|l| l.set_nonblocking(true).is_ok()) && mailbox.set_nonblocking(true).is_ok();
    ready.then_some(listeners)
}

/// Run until QUIT, Shutdown or the supervisor's end: answer pings, hand
/// each reload to `on_reload` and each accepted connection to `on_conn`.
pub fn serve<R: serde::Serialize + serde::de::DeserializeOwned>(
    mailbox: &PortMailbox<R>,
    listeners: &[TcpListener],
    log: &slog::Logger,
    mut on_reload: impl FnMut(R),
    mut on_conn: impl FnMut(TcpStream, SocketAddr),
) {
    while !QUIT.load(Ordering::Relaxed) {
        let mut fds: Vec<libc::pollfd> = std::iter::once(mailbox.as_raw_fd())
            .chain(listeners.iter().map(|l| l.as_raw_fd()))
            .map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 })
            .collect();
        match crate::net::poll(&mut fds, 500) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                warn!(log, "poll failed"; "error" => %e);
                return;
            }
        }
        if fds[0].revents != 0 && !read_mailbox(mailbox, log, &mut on_reload) {
            return;
        }
        for (listener, fd) in listeners.iter().zip(&fds[1..]) {
            if fd.revents == 0 {
                continue;
            }
            for _ in 0..ACCEPTS_PER_TURN {
                match listener.accept() {
                    Ok((stream, addr)) => on_conn(stream, addr),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        warn!(log, "accept failed"; "error" => %e);
                        break;
                    }
                }
            }
        }
    }
}

/// Handle what the mailbox holds; false when the actor must stop.
fn read_mailbox<R: serde::Serialize + serde::de::DeserializeOwned>(
    mailbox: &PortMailbox<R>,
    log: &slog::Logger,
    on_reload: &mut impl FnMut(R),
) -> bool {
    loop {
        match mailbox.recv() {
            Ok(Received::Message(Down::Lifecycle(Lifecycle::Ping { id }), _)) => {
                let _ = mailbox.send(&Up::Lifecycle(LifecycleReply::Pong { id }), None);
            }
            Ok(Received::Message(Down::Lifecycle(Lifecycle::Reload(new)), _)) => on_reload(*new),
            Ok(Received::Message(Down::Lifecycle(Lifecycle::Shutdown { .. }), _)) | Ok(Received::Closed) => {
                return false;
            }
            Ok(Received::Message(Down::Answer { outcome, .. }, _)) => match outcome {
                Outcome::Ok(never) => match never {},
                Outcome::Failure(_) => {}
            },
            Ok(Received::Message(Down::Push(never), _)) => match never {},
            Ok(Received::Empty) => return true,
            Err(MailboxError::Io(e)) => {
                warn!(log, "mailbox read failed"; "error" => %e);
                return false;
            }
            Err(e) => {
                warn!(log, "bad message from the supervisor"; "error" => %e);
                return true;
            }
        }
    }
}

/// A cap on connections served at once.
#[derive(Clone)]
pub struct Places {
    taken: Arc<AtomicUsize>,
    max: usize,
}

/// One connection's place; given back when dropped, however its thread ends.
pub struct Place(Arc<AtomicUsize>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Places {
    pub fn new(max: usize) -> Places {
        Places { taken: Arc::new(AtomicUsize::new(0)), max }
    }

    /// A place, or None when all are taken.
    pub fn take(&self) -> Option<Place> {
        if self.taken.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.taken.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Place(self.taken.clone()))
    }

    /// Places taken now.
    pub fn taken(&self) -> usize {
        self.taken.load(Ordering::Acquire)
    }
}
