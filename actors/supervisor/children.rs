//! The supervisor's table of children by kind: forking a child into its
//! role (a worker, a service, a short-lived helper), the child's side of
//! the fork, reaping, and what is taken back when any child dies. Every
//! child starts the same way (`child::enter`): it dies with the supervisor
//! (PR_SET_PDEATHSIG) and closes every fd it does not need.

use super::services::Actor;
use super::{CHILD_BASE, Supervisor};
use crate::management::{self, ManagementMailbox};
use crate::metrics::{self, MetricsMailbox};
use crate::service::{self, ServiceMailbox};
use crate::worker::{self, WorkerMailbox};
use mio::unix::SourceFd;
use mio::{Interest, Token};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};
use pgagroal::disconnect::Disconnect;
use pgagroal::ipc::{Mailbox, MailboxError, Received};
use pgagroal::msg::management::{FromManagement, ToManagement};
use pgagroal::msg::metrics::{FromMetrics, ToMetrics};
use pgagroal::msg::pool::PoolAnswer;
use pgagroal::msg::service::{FromService, ServiceKind, ToService};
use pgagroal::msg::worker::{FromWorker, Peer, ToWorker};
use pgagroal::msg::{Down, Lifecycle, LifecycleReply, Never, Outcome, RequestId, Up};
use pgagroal::shmem::counters;
use slog::{debug, error, warn};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Instant;

/// What a child is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Worker,
    /// A long-lived actor, restarted when it dies.
    Actor(Actor),
    /// Short-lived (a forwarded cancel): owns nothing, has no mailbox.
    Helper,
}

/// The supervisor's end of a child's mailbox.
pub(super) enum Link {
    Worker(Mailbox<ToWorker, FromWorker>),
    Service(Mailbox<ToService, FromService>),
    Management(Mailbox<ToManagement, FromManagement>),
    Metrics(Mailbox<ToMetrics, FromMetrics>),
    None,
}

/// What the supervisor tells any child with a mailbox, whatever its contract.
#[derive(Debug, Clone, Copy)]
pub(super) enum Control {
    Ping(RequestId),
    Shutdown { graceful: bool },
}

fn control<A, P, R>(c: Control) -> Down<A, P, R> {
    Down::Lifecycle(match c {
        Control::Ping(id) => Lifecycle::Ping { id },
        Control::Shutdown { graceful } => Lifecycle::Shutdown { graceful },
    })
}

/// Copies of a port's listeners for the actor that serves it; None when
/// one cannot be made (the actor would serve fewer addresses).
fn copies(listeners: &[OwnedFd]) -> Option<Vec<OwnedFd>> {
    listeners.iter().map(|l| l.try_clone().ok()).collect()
}

/// What an actor whose contract has no calls or notices sent, in the
/// shape the pool's actors' messages are read in.
fn lifecycle_only(
    received: Result<Received<Up<Never, Never>>, MailboxError>,
) -> Result<Received<FromService>, MailboxError> {
    match received {
        Ok(Received::Message(Up::Lifecycle(reply), _)) => Ok(Received::Message(Up::Lifecycle(reply), None)),
        Ok(Received::Message(Up::Call { call, .. } | Up::Notice(call), _)) => match call {},
        Ok(Received::Empty) => Ok(Received::Empty),
        Ok(Received::Closed) => Ok(Received::Closed),
        Err(e) => Err(e),
    }
}

impl Link {
    /// The mailbox's descriptor, if there is one.
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        match self {
            Link::Worker(m) => Some(m.as_raw_fd()),
            Link::Service(m) => Some(m.as_raw_fd()),
            Link::Management(m) => Some(m.as_raw_fd()),
            Link::Metrics(m) => Some(m.as_raw_fd()),
            Link::None => None,
        }
    }

    fn set_nonblocking(&self) -> bool {
        match self {
            Link::Worker(m) => m.set_nonblocking(true).is_ok(),
            Link::Service(m) => m.set_nonblocking(true).is_ok(),
            Link::Management(m) => m.set_nonblocking(true).is_ok(),
            Link::Metrics(m) => m.set_nonblocking(true).is_ok(),
            Link::None => false,
        }
    }

    /// Send a control message; false when it could not be sent.
    fn send_control(&self, c: Control) -> bool {
        let sent = match self {
            Link::Worker(m) => m.send(&control(c), None),
            Link::Service(m) => m.send(&control(c), None),
            Link::Management(m) => m.send(&control(c), None),
            Link::Metrics(m) => m.send(&control(c), None),
            Link::None => return false,
        };
        sent.is_ok()
    }
}

pub(super) struct Child {
    pub kind: Kind,
    pub link: Link,
    /// The configuration epoch it was forked under.
    pub epoch: u32,
    pub born: Instant,
    /// A ping not answered yet: its id and when it was sent.
    pub ping: Option<(RequestId, Instant)>,
    /// Told to stop: its death is not a crash.
    pub retiring: bool,
}

/// What a forked child becomes, with its end of the mailbox.
pub(super) enum Role {
    Worker {
        first: Option<(OwnedFd, Peer)>,
        mailbox: WorkerMailbox,
    },
    Service {
        kind: ServiceKind,
        mailbox: ServiceMailbox,
    },
    Management {
        mailbox: ManagementMailbox,
    },
    Metrics {
        mailbox: MetricsMailbox,
    },
    /// Run a job and exit with its status.
    Helper(Box<dyn FnOnce() -> i32>),
}

impl Supervisor {
    /// Fork a child into `role`; `link` is the supervisor's end of its
    /// mailbox. On failure the role comes back (a worker's client is in it).
    pub(super) fn spawn(&mut self, role: Role, link: Link) -> Result<i32, Role> {
        let kind = match &role {
            Role::Worker { .. } => Kind::Worker,
            Role::Service { kind, .. } => Kind::Actor(Actor::Service(*kind)),
            Role::Management { .. } => Kind::Actor(Actor::Management),
            Role::Metrics { .. } => Kind::Actor(Actor::Metrics),
            Role::Helper(_) => Kind::Helper,
        };
        // SAFETY: the supervisor is single-threaded, so the child starts from
        // a consistent copy of its memory; the child never returns from this
        // branch and leaves with _exit.
        match unsafe { nix::unistd::fork() } {
            Ok(ForkResult::Child) => {
                // Before anything allocates: the child's heap is its own.
                let supervisor_region = crate::ALLOCATOR.activate();
                let code = self.become_child(role, supervisor_region);
                // SAFETY: _exit ends the child without running the parent's
                // destructors or atexit handlers on its copies.
                unsafe { libc::_exit(code) }
            }
            Ok(ForkResult::Parent { child }) => {
                drop(role);
                let pid = child.as_raw();
                let fd = link.raw_fd().filter(|_| link.set_nonblocking());
                if !matches!(link, Link::None) {
                    let watched = fd.is_some_and(|fd| {
                        self.poll
                            .registry()
                            .register(&mut SourceFd(&fd), Token(CHILD_BASE + pid as usize), Interest::READABLE)
                            .is_ok()
                    });
                    if !watched {
                        warn!(self.log, "cannot watch a child's mailbox"; "pid" => pid);
                    }
                }
                let now = Instant::now();
                self.children
                    .insert(pid, Child { kind, link, epoch: self.epoch, born: now, ping: None, retiring: false });
                debug!(self.log, "child started"; "pid" => pid, "kind" => ?kind);
                Ok(pid)
            }
            Err(e) => {
                error!(self.log, "fork failed"; "error" => %e);
                Err(role)
            }
        }
    }

    /// In the forked child: become `role`. Never touches the supervisor's
    /// own descriptors after closing them.
    fn become_child(&self, role: Role, supervisor_region: Option<(usize, usize)>) -> i32 {
        let mut keep = Vec::new();
        match &role {
            Role::Worker { first, mailbox } => {
                keep.push(mailbox.as_raw_fd());
                keep.extend(first.as_ref().map(|(client, _)| client.as_raw_fd()));
            }
            Role::Service { mailbox, .. } => keep.push(mailbox.as_raw_fd()),
            Role::Management { mailbox } => {
                keep.push(mailbox.as_raw_fd());
                keep.extend(self.remote.iter().map(|l| l.as_raw_fd()));
            }
            Role::Metrics { mailbox } => {
                keep.push(mailbox.as_raw_fd());
                keep.extend(self.metrics.iter().map(|l| l.as_raw_fd()));
            }
            Role::Helper(_) => {}
        }
        if !crate::child::enter(self.pid, &keep) {
            return 1;
        }
        let pid = std::process::id() as i32;
        match role {
            Role::Worker { first, mailbox } => {
                let _ = mailbox.set_recv_timeout(worker::HOUSEKEEPING_TIMEOUT);
                // Own copies of what the worker reads, then let go of the
                // supervisor's allocations (see arena.rs). Only these, the
                // shared memory mapping, the pid and values on this stack
                // are used below.
                let config = self.config.clone();
                let hba = self.hba.clone();
                let creds = self.creds.clone();
                let tls = self.tls.clone();
                let limits = self.limits.clone();
                if let Some(region) = supervisor_region {
                    crate::ALLOCATOR.release(region);
                }
                worker::run(worker::Context {
                    config: &config,
                    hba: &hba,
                    creds: &creds,
                    tls: &tls,
                    limits: &limits,
                    region: &self.region,
                    mailbox,
                    first,
                    epoch: self.epoch,
                })
            }
            Role::Service { kind, mailbox } => {
                let _ = mailbox.set_recv_timeout(worker::HOUSEKEEPING_TIMEOUT);
                let settings = self.service_config();
                let tls = self.tls.clone();
                if let Some(region) = supervisor_region {
                    crate::ALLOCATOR.release(region);
                }
                service::run(service::Context {
                    kind,
                    settings,
                    tls: &tls,
                    region: &self.region,
                    mailbox,
                    pid,
                    log: self.log.clone(),
                })
            }
            Role::Management { mailbox } => {
                let Some(listeners) = copies(&self.remote) else { return 1 };
                let settings = self.management_config();
                let tls = self.tls.clients.clone();
                if let Some(region) = supervisor_region {
                    crate::ALLOCATOR.release(region);
                }
                management::run(management::Context { settings, tls, listeners, mailbox, pid })
            }
            Role::Metrics { mailbox } => {
                let Some(listeners) = copies(&self.metrics) else { return 1 };
                let settings = self.metrics_config();
                let tls = self.tls.metrics.clone();
                if let Some(region) = supervisor_region {
                    crate::ALLOCATOR.release(region);
                }
                metrics::run(metrics::Context { settings, tls, listeners, mailbox, region: &self.region, pid })
            }
            Role::Helper(job) => {
                pgagroal::proctitle::set(self.config.main.update_process_title, "helper");
                job()
            }
        }
    }

    /// Run `job` in a short-lived child (so the supervisor never waits on
    /// PostgreSQL or a script); its return value is the child's exit
    /// status. The supervisor waits for it before it exits.
    pub(super) fn spawn_helper(&mut self, job: impl FnOnce() -> i32 + 'static) -> Option<i32> {
        let pid = self.spawn(Role::Helper(Box::new(job)), Link::None).ok();
        if pid.is_none() {
            warn!(self.log, "cannot fork a helper");
        }
        pid
    }

    pub(super) fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    self.child_gone(pid.as_raw(), if code == 0 { None } else { Some(format!("exit status {code}")) })
                }
                Ok(WaitStatus::Signaled(pid, signal, _)) => {
                    self.child_gone(pid.as_raw(), Some(format!("killed by {signal:?}")))
                }
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return,
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    warn!(self.log, "waitpid failed"; "error" => %e);
                    return;
                }
            }
        }
    }

    /// A child is gone: read what its mailbox still holds, take back every
    /// slot, lock, queue place and client entry it held, and (for a
    /// service) schedule its restart.
    pub(super) fn child_gone(&mut self, pid: i32, abnormal: Option<String>) {
        let Some(kind) = self.children.get(&pid).map(|c| c.kind) else { return };
        if kind == Kind::Helper {
            self.children.remove(&pid);
            if let Some(job) = self.failover.filter(|job| job.pid == pid) {
                self.failover = None;
                self.failover_done(job, abnormal.as_deref());
            }
            return;
        }
        // A registration may still be queued behind the exit.
        self.on_mailbox(pid);
        let Some(child) = self.children.remove(&pid) else { return };
        if let Some(fd) = child.link.raw_fd() {
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
        let header = self.region.header();
        header.forget_idle(pid);
        let clients = self.region.clients();
        for entry in clients.entries_of(pid) {
            // A dead worker could not count why its client left.
            if abnormal.is_some() && clients.has_socket(entry) {
                counters::disconnected(Disconnect::WorkerCrashed);
            }
            self.region.cancel_waits_of(entry);
        }
        header.release_rule_locks(pid);
        self.region.clients().release(pid);
        self.starting.remove(&pid);
        match kind {
            Kind::Actor(actor) => self.actor_gone(actor, &child, abnormal.as_deref()),
            _ => {
                if let Some(how) = &abnormal {
                    warn!(self.log, "worker ended abnormally"; "worker" => pid, "how" => how);
                    counters::record(counters::Event::RestartWorker);
                }
            }
        }
        self.reclaim(pid);
    }

    /// Read a child's mailbox until it is empty.
    pub(super) fn on_mailbox(&mut self, pid: i32) {
        loop {
            let received = match self.children.get(&pid).map(|c| &c.link) {
                Some(Link::Worker(m)) => m.recv(),
                Some(Link::Service(m)) => m.recv(),
                Some(Link::Management(m)) => lifecycle_only(m.recv()),
                Some(Link::Metrics(m)) => lifecycle_only(m.recv()),
                _ => return,
            };
            match received {
                Ok(Received::Message(Up::Call { id, call }, fd)) => {
                    let (outcome, fd) = self.pool_call(pid, call, fd);
                    self.answer(pid, id, outcome, fd);
                }
                Ok(Received::Message(Up::Notice(notice), _)) => self.pool_notice(notice),
                Ok(Received::Message(Up::Lifecycle(LifecycleReply::Pong { id }), _)) => {
                    if let Some(child) = self.children.get_mut(&pid)
                        && child.ping.is_some_and(|(sent, _)| sent == id)
                    {
                        child.ping = None;
                    }
                }
                Ok(Received::Empty) | Ok(Received::Closed) => return,
                Err(MailboxError::Io(e)) => {
                    debug!(self.log, "mailbox read failed"; "pid" => pid, "error" => %e);
                    return;
                }
                Err(e) => warn!(self.log, "bad message from a child"; "pid" => pid, "error" => %e),
            }
        }
    }

    fn answer(&self, pid: i32, id: RequestId, outcome: Outcome<PoolAnswer>, fd: Option<OwnedFd>) {
        let fd = fd.as_ref().map(|f| f.as_fd());
        let sent = match self.children.get(&pid).map(|c| &c.link) {
            Some(Link::Worker(m)) => m.send(&Down::Answer { id, outcome }, fd),
            Some(Link::Service(m)) => m.send(&Down::Answer { id, outcome }, fd),
            _ => return,
        };
        if let Err(e) = sent {
            warn!(self.log, "cannot answer a child"; "pid" => pid, "error" => %e);
        }
    }

    /// Tell a child to stop; false when the message could not be sent.
    pub(super) fn shut_down(&self, pid: i32, graceful: bool) -> bool {
        self.children.get(&pid).is_some_and(|c| c.link.send_control(Control::Shutdown { graceful }))
    }

    /// Ping a child; false when the ping could not be sent.
    pub(super) fn ping(&self, pid: i32, id: RequestId) -> bool {
        self.children.get(&pid).is_some_and(|c| c.link.send_control(Control::Ping(id)))
    }

    /// Pids of the children of a kind.
    pub(super) fn pids_of(&self, wanted: impl Fn(Kind) -> bool) -> Vec<i32> {
        self.children.iter().filter(|(_, c)| wanted(c.kind)).map(|(pid, _)| *pid).collect()
    }
}
