//! The supervisor: a single-threaded mio loop over the listeners, a signalfd,
//! the management socket and every worker's mailbox. It forks one worker per
//! accepted client, keeps a copy of every pooled server connection's fd,
//! reaps children and reclaims the slots a dead one held, and stops the pool
//! on TERM/INT (immediately) or TRAP (after the clients leave). It never
//! relays client traffic and never blocks on PostgreSQL.

mod management;

use crate::worker;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};
use pgagroal::auth::credentials::Credentials;
use pgagroal::config::{Config, ConfigFiles};
use pgagroal::hba::Hba;
use pgagroal::ipc::{Contract, Mailbox, Received};
use pgagroal::msg::Lifecycle;
use pgagroal::msg::worker::{Peer, WorkerReply, WorkerRequest};
use pgagroal::protocol::encode;
use pgagroal::shmem::region::shutdown;
use pgagroal::shmem::{Generation, Region, SlotId, SlotState};
use pgagroal::tls::TlsConfigs;
use slog::{debug, error, info, warn};
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const SIGNALS: Token = Token(64);
const MANAGEMENT: Token = Token(65);
const MANAGEMENT_CONN_BASE: usize = 1 << 20;
const WORKER_BASE: usize = 1 << 40;
/// How long an immediate stop waits for workers before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Idle workers kept ready so that a new client does not wait for a fork.
const SPARE_WORKERS: usize = 2;

/// A pooled server connection's fd, kept so later workers can check it out.
struct Pooled {
    fd: OwnedFd,
    generation: Generation,
    /// ParameterStatus set and BackendKeyData replayed to reusing clients.
    startup: Vec<u8>,
}

enum Listener {
    Tcp(mio::net::TcpListener),
    Unix(mio::net::UnixListener),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Refusing new clients, waiting for the current ones to leave.
    Graceful,
    /// Workers were told to quit; SIGKILL after the deadline.
    Stopping {
        deadline: Instant,
    },
}

/// Paths the supervisor must clean up on exit.
pub struct Paths {
    pub pidfile: PathBuf,
    pub client_socket: PathBuf,
    pub management_socket: PathBuf,
}

pub struct Supervisor {
    config: Config,
    files: ConfigFiles,
    hba: Hba,
    creds: Credentials,
    tls: TlsConfigs,
    region: Region,
    poll: Poll,
    listeners: Vec<Listener>,
    management: Option<mio::net::UnixListener>,
    conns: HashMap<usize, management::Conn>,
    next_conn: usize,
    signals: SignalFd,
    workers: HashMap<i32, Mailbox>,
    /// The configuration epoch each worker was forked under.
    epochs: HashMap<i32, u32>,
    /// The current configuration epoch (see `Header::config_epoch`).
    epoch: u32,
    /// Spare workers forked without a client that are not in the idle list
    /// yet.
    starting: HashSet<i32>,
    pooled: Vec<Option<Pooled>>,
    pid: i32,
    phase: Phase,
    paths: Paths,
    log: slog::Logger,
}

/// Sockets bound by `main` before the supervisor starts.
pub struct Bound {
    pub tcp: Vec<mio::net::TcpListener>,
    pub unix: mio::net::UnixListener,
    pub management: mio::net::UnixListener,
}

fn blocked_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGALRM,
        Signal::SIGTRAP,
        Signal::SIGHUP,
        Signal::SIGCHLD,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
    ] {
        set.add(s);
    }
    set
}

impl Supervisor {
    pub fn new(
        config: Config,
        files: ConfigFiles,
        hba: Hba,
        creds: Credentials,
        tls: TlsConfigs,
        region: Region,
        bound: Bound,
        paths: Paths,
    ) -> std::io::Result<Self> {
        let mask = blocked_signals();
        mask.thread_block().map_err(std::io::Error::from)?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(std::io::Error::from)?;
        let poll = Poll::new()?;
        let mut listeners: Vec<Listener> = bound.tcp.into_iter().map(Listener::Tcp).collect();
        listeners.push(Listener::Unix(bound.unix));
        for (i, l) in listeners.iter_mut().enumerate() {
            match l {
                Listener::Tcp(t) => poll.registry().register(t, Token(i), Interest::READABLE)?,
                Listener::Unix(u) => poll.registry().register(u, Token(i), Interest::READABLE)?,
            }
        }
        let mut management = bound.management;
        poll.registry().register(&mut management, MANAGEMENT, Interest::READABLE)?;
        poll.registry().register(&mut SourceFd(&signals.as_raw_fd()), SIGNALS, Interest::READABLE)?;
        let pooled = (0..config.main.max_connections).map(|_| None).collect();
        Ok(Supervisor {
            config,
            files,
            hba,
            creds,
            tls,
            region,
            poll,
            listeners,
            management: Some(management),
            conns: HashMap::new(),
            next_conn: 0,
            signals,
            workers: HashMap::new(),
            epochs: HashMap::new(),
            epoch: 0,
            starting: HashSet::new(),
            pooled,
            pid: std::process::id() as i32,
            phase: Phase::Running,
            paths,
            log: pgagroal::log::logger().new(slog::o!("actor" => "supervisor")),
        })
    }

    /// Run until stopped; returns the process exit status.
    pub fn run(mut self) -> i32 {
        let mut events = Events::with_capacity(256);
        // From here on the supervisor allocates from a region its workers
        // unmap, so its bookkeeping never dirties pages they share.
        crate::ALLOCATOR.activate();
        self.keep_spares();
        loop {
            if let Err(e) = self.poll.poll(&mut events, Some(Duration::from_secs(1)))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                error!(self.log, "poll failed"; "error" => %e);
                self.stop_now();
                break;
            }
            for event in events.iter() {
                match event.token() {
                    SIGNALS => self.on_signals(),
                    MANAGEMENT => self.accept_management(),
                    Token(t) if t >= WORKER_BASE => self.on_mailbox((t - WORKER_BASE) as i32),
                    Token(t) if t >= MANAGEMENT_CONN_BASE => self.on_management(t),
                    Token(i) => self.accept_clients(i),
                }
            }
            self.expire_management();
            if self.stop_progress() {
                break;
            }
        }
        self.finish();
        0
    }

    fn accept_clients(&mut self, index: usize) {
        loop {
            let accepted: std::io::Result<(OwnedFd, Peer)> = match self.listeners.get(index) {
                Some(Listener::Tcp(l)) => {
                    l.accept().map(|(s, addr)| (OwnedFd::from(std::net::TcpStream::from(s)), Peer::Tcp(addr)))
                }
                Some(Listener::Unix(l)) => {
                    l.accept().map(|(s, _)| (OwnedFd::from(std::os::unix::net::UnixStream::from(s)), Peer::Unix))
                }
                None => return,
            };
            match accepted {
                Ok((fd, peer)) => self.dispatch(fd, peer),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: leave the rest in the backlog.
                    warn!(self.log, "accept failed"; "error" => %e);
                    return;
                }
            }
        }
    }

    /// Hand a new client to an idle worker, or fork one for it.
    fn dispatch(&mut self, client: OwnedFd, peer: Peer) {
        while let Some(pid) = self.region.header().take_idle() {
            self.starting.remove(&pid);
            let Some(mailbox) = self.workers.get(&pid) else { continue };
            if self.epochs.get(&pid) != Some(&self.epoch) {
                // Forked before the last reload: it would serve this client
                // with the old hba rules and users.
                let _ = mailbox.send(&WorkerReply::Lifecycle(Lifecycle::Shutdown { graceful: true }), None);
                continue;
            }
            match mailbox.send(&WorkerReply::Client { peer }, Some(std::os::fd::AsFd::as_fd(&client))) {
                Ok(()) => {
                    drop(client);
                    self.keep_spares();
                    return;
                }
                Err(e) => debug!(self.log, "idle worker did not take a client"; "worker" => pid, "error" => %e),
            }
        }
        self.spawn_worker(Some((client, peer)));
        self.keep_spares();
    }

    /// Fork spare workers until enough are idle or on their way.
    fn keep_spares(&mut self) {
        let header = self.region.header();
        self.starting.retain(|&pid| !header.is_idle(pid));
        while self.phase == Phase::Running && self.region.header().idle_count() + self.starting.len() < SPARE_WORKERS {
            match self.spawn_worker(None) {
                Some(pid) => {
                    self.starting.insert(pid);
                }
                None => return,
            }
        }
    }

    fn spawn_worker(&mut self, first: Option<(OwnedFd, Peer)>) -> Option<i32> {
        let (ours, theirs) = match Mailbox::pair(Contract::Worker) {
            Ok(pair) => pair,
            Err(e) => {
                error!(self.log, "cannot create a worker mailbox"; "error" => %e);
                return None;
            }
        };
        // SAFETY: the supervisor is single-threaded, so the child starts from
        // a consistent copy of its memory; the child never returns from this
        // branch and leaves with _exit.
        match unsafe { nix::unistd::fork() } {
            Ok(ForkResult::Child) => {
                // Before anything allocates: the worker's heap is its own.
                let supervisor_region = crate::ALLOCATOR.activate();
                let code = self.become_worker(first, theirs, supervisor_region);
                // SAFETY: _exit ends the child without running the parent's
                // destructors or atexit handlers on its copies.
                unsafe { libc::_exit(code) }
            }
            Ok(ForkResult::Parent { child }) => {
                drop(first);
                drop(theirs);
                let pid = child.as_raw();
                let registered = ours.set_nonblocking(true).is_ok()
                    && self
                        .poll
                        .registry()
                        .register(
                            &mut SourceFd(&ours.as_raw_fd()),
                            Token(WORKER_BASE + pid as usize),
                            Interest::READABLE,
                        )
                        .is_ok();
                if !registered {
                    warn!(self.log, "cannot watch worker mailbox"; "worker" => pid);
                }
                self.workers.insert(pid, ours);
                self.epochs.insert(pid, self.epoch);
                debug!(self.log, "worker started"; "worker" => pid);
                Some(pid)
            }
            Err(e) => {
                error!(self.log, "fork failed"; "error" => %e);
                if let Some((client, _)) = first {
                    let refusal = encode::error_response("FATAL", "53300", "cannot start a worker for this connection");
                    // SAFETY: a plain non-blocking send on the accepted socket.
                    unsafe {
                        libc::send(
                            client.as_raw_fd(),
                            refusal.as_ptr().cast(),
                            refusal.len(),
                            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                        )
                    };
                }
                None
            }
        }
    }

    /// In the forked child: become a worker. Never touches the supervisor's
    /// own descriptors after closing them.
    fn become_worker(
        &self,
        first: Option<(OwnedFd, Peer)>,
        mailbox: Mailbox,
        supervisor_region: Option<(usize, usize)>,
    ) -> i32 {
        pgagroal::log::after_fork_in_child();
        // SAFETY: prctl with PR_SET_PDEATHSIG and a valid signal number.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
        if nix::unistd::getppid().as_raw() != self.pid {
            return 1;
        }
        crate::child::reset_signals();
        let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
        let mut keep = vec![mailbox.as_raw_fd()];
        keep.extend(first.as_ref().map(|(client, _)| client.as_raw_fd()));
        keep.extend(pgagroal::log::kept_fds());
        if pgagroal::sys::close_all_except(&keep).is_err() {
            return 1;
        }
        let _ = mailbox.set_recv_timeout(worker::HOUSEKEEPING_TIMEOUT);
        // Own copies of what the worker reads, then let go of the
        // supervisor's allocations (see arena.rs). Only these, the shared
        // memory mapping, the pid and values on this stack are used below.
        let config = self.config.clone();
        let hba = self.hba.clone();
        let creds = self.creds.clone();
        let tls = self.tls.clone();
        if let Some(region) = supervisor_region {
            crate::ALLOCATOR.release(region);
        }
        worker::run(worker::Context {
            config: &config,
            hba: &hba,
            creds: &creds,
            tls: &tls,
            region: &self.region,
            mailbox,
            first,
            epoch: self.epoch,
        })
    }

    fn on_signals(&mut self) {
        loop {
            match self.signals.read_signal() {
                Ok(Some(info)) => {
                    let signal = Signal::try_from(info.ssi_signo as i32).ok();
                    match signal {
                        Some(Signal::SIGCHLD) => self.reap(),
                        Some(Signal::SIGTERM | Signal::SIGINT | Signal::SIGALRM | Signal::SIGQUIT) => {
                            info!(self.log, "stopping"; "signal" => ?signal);
                            self.begin_stop(false);
                        }
                        Some(Signal::SIGTRAP) => {
                            info!(self.log, "graceful shutdown requested");
                            self.begin_stop(true);
                        }
                        Some(Signal::SIGHUP) => {
                            let _ = self.reload();
                        }
                        other => debug!(self.log, "signal ignored"; "signal" => ?other),
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    warn!(self.log, "signalfd read failed"; "error" => %e);
                    return;
                }
            }
        }
    }

    /// Re-read pgagroal_hba.conf and the keys of pgagroal.conf that apply to
    /// new clients. Returns whether a restart is needed for other changes,
    /// or why the files could not be used (the running configuration stays).
    fn reload(&mut self) -> Result<bool, String> {
        let read = pgagroal::config::load(&self.files.main)
            .and_then(|loaded| Hba::load(&self.files.hba).map(|hba| (loaded, hba)));
        let (loaded, hba) = match read {
            Ok(both) => both,
            Err(e) => {
                error!(self.log, "reload failed; keeping the running configuration"; "error" => %e);
                return Err(e.to_string());
            }
        };
        let (creds, cred_warnings) = match pgagroal::auth::credentials::Credentials::load(
            &self.files,
            &loaded.config.main,
            None,
            self.creds.mock_secret(),
        ) {
            Ok(both) => both,
            Err(e) => {
                error!(self.log, "reload failed; keeping the running configuration"; "error" => &e);
                return Err(e);
            }
        };
        let reloaded = pgagroal::config::reload::merge(&self.config, loaded.config);
        let restart = !reloaded.needs_restart.is_empty();
        if restart {
            warn!(self.log, "changed settings keep their running values until a restart";
                  "keys" => reloaded.needs_restart.join(", "));
        }
        let new = reloaded.config;
        for w in &cred_warnings {
            warn!(self.log, "{}", w);
        }
        for w in &loaded.warnings {
            warn!(self.log, "{}", w);
        }
        if (new.main.nodelay, new.main.keep_alive) != (self.config.main.nodelay, self.config.main.keep_alive) {
            for l in &self.listeners {
                if let Listener::Tcp(t) = l
                    && let Err(e) =
                        crate::listen::set_client_options(t.as_raw_fd(), new.main.nodelay, new.main.keep_alive)
                {
                    warn!(self.log, "cannot apply nodelay/keep_alive to a listener"; "error" => %e);
                }
            }
        }
        self.config = new;
        self.hba = hba;
        self.creds = creds;
        // Workers hold the configuration they were forked with: idle ones
        // are replaced now, busy ones exit when their client leaves.
        self.epoch = self.epoch.wrapping_add(1);
        self.region.header().config_epoch.store(self.epoch, Ordering::Release);
        if self.phase == Phase::Running {
            self.dismiss_idle();
            // Spares still starting see the new epoch and exit by themselves.
            self.starting.clear();
            self.keep_spares();
        }
        info!(self.log, "configuration reloaded"; "restart_required" => restart);
        Ok(restart)
    }

    fn reap(&mut self) {
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

    fn child_gone(&mut self, pid: i32, abnormal: Option<String>) {
        self.region.header().forget_idle(pid);
        self.starting.remove(&pid);
        if self.workers.contains_key(&pid) {
            // A registration may still be queued behind the exit.
            self.on_mailbox(pid);
            self.epochs.remove(&pid);
            if let Some(mailbox) = self.workers.remove(&pid) {
                let _ = self.poll.registry().deregister(&mut SourceFd(&mailbox.as_raw_fd()));
            }
        }
        if let Some(how) = &abnormal {
            warn!(self.log, "worker ended abnormally"; "worker" => pid, "how" => how);
        }
        self.reclaim(pid);
    }

    /// Take back every slot a dead process held: its connection is in an
    /// unknown protocol state, so it is terminated and the slot goes NOTINIT.
    fn reclaim(&mut self, pid: i32) {
        let table = self.region.slots();
        for (id, first) in table.claimed_by(pid) {
            let mut word = first;
            let was_in_use = word.state == SlotState::InUse;
            loop {
                if word.state == SlotState::Remove {
                    break;
                }
                match table.transition(id, word, SlotState::Remove, self.pid) {
                    Ok(w) => {
                        word = w;
                        break;
                    }
                    Err(pgagroal::shmem::slot::TransitionError::Lost { now })
                        if now.owner == pid && now.state.is_claimed() =>
                    {
                        word = now
                    }
                    Err(_) => break,
                }
            }
            if word.state != SlotState::Remove || !(word.owner == self.pid || word.owner == pid) {
                continue;
            }
            if was_in_use {
                self.cancel_backend(id);
            }
            terminate_pooled(&mut self.pooled, id, word.generation, false);
            if let Err(e) = table.transition(id, word, SlotState::NotInit, self.pid) {
                warn!(self.log, "cannot reset reclaimed slot"; "slot" => id.0, "error" => %e);
            } else {
                self.region.header().notify_release();
                warn!(self.log, "reclaimed slot of a dead worker; its server connection was terminated";
                      "slot" => id.0, "worker" => pid, "state" => first.state.name());
            }
        }
        // Idle TLS connections whose record state died with the worker.
        for (id, word) in table.tls_orphans_of(pid) {
            let Ok(word) = table.transition(id, word, SlotState::Remove, self.pid) else { continue };
            terminate_pooled(&mut self.pooled, id, word.generation, false);
            if table.transition(id, word, SlotState::NotInit, self.pid).is_ok() {
                self.region.header().notify_release();
                debug!(self.log, "closed a TLS server connection whose worker is gone"; "slot" => id.0, "worker" => pid);
            }
        }
    }

    /// Cancel whatever the backend of a reclaimed slot is running, from a
    /// short-lived child so the supervisor never waits on PostgreSQL.
    fn cancel_backend(&self, id: SlotId) {
        let Some(slot) = self.region.slots().get(id) else { return };
        let info = slot.info();
        let secret = slot.backend_secret();
        let Some(server) = self.config.servers.get(info.server as usize).cloned() else { return };
        if info.backend_pid == 0 {
            return;
        }
        // SAFETY: single-threaded supervisor; the child only connects, writes
        // and leaves with _exit.
        if let Ok(ForkResult::Child) = unsafe { nix::unistd::fork() } {
            crate::child::reset_signals();
            let packet = encode::cancel_request(info.backend_pid, &secret.to_be_bytes());
            let _ = crate::child::send_once(&server, &packet);
            // SAFETY: leaving the child without running destructors.
            unsafe { libc::_exit(0) }
        }
    }
}

/// Drop the supervisor's copy of a slot's connection, ending the connection
/// for every holder (shutdown, not only close).
fn terminate_pooled(pooled: &mut [Option<Pooled>], id: SlotId, generation: Generation, clean: bool) {
    {
        let Some(entry) = pooled.get_mut(id.0 as usize) else { return };
        if entry.as_ref().is_some_and(|p| p.generation == generation)
            && let Some(p) = entry.take()
        {
            if clean {
                let x = encode::terminate();
                // SAFETY: non-blocking send of a 5-byte Terminate on our fd.
                unsafe {
                    libc::send(p.fd.as_raw_fd(), x.as_ptr().cast(), x.len(), libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
                };
            }
            // SAFETY: shutdown on a descriptor we own.
            unsafe { libc::shutdown(p.fd.as_raw_fd(), libc::SHUT_RDWR) };
        }
    }
}

impl Supervisor {
    fn on_mailbox(&mut self, pid: i32) {
        loop {
            let Some(mailbox) = self.workers.get(&pid) else { return };
            match mailbox.recv::<WorkerRequest>() {
                Ok(Received::Message(request, fd)) => self.handle(pid, request, fd),
                Ok(Received::Empty) | Ok(Received::Closed) => return,
                Err(pgagroal::ipc::MailboxError::Io(e)) => {
                    debug!(self.log, "mailbox read failed"; "worker" => pid, "error" => %e);
                    return;
                }
                Err(e) => warn!(self.log, "bad message from worker"; "worker" => pid, "error" => %e),
            }
        }
    }

    fn handle(&mut self, pid: i32, request: WorkerRequest, fd: Option<OwnedFd>) {
        let table = self.region.slots();
        let (reply, reply_fd) = match request {
            WorkerRequest::Register { slot, generation, startup } => {
                let word = table.get(slot).map(|s| s.load());
                let valid =
                    word.is_some_and(|w| w.owner == pid && w.generation == generation && w.state == SlotState::Init);
                match (valid, fd, self.pooled.get_mut(slot.0 as usize)) {
                    (true, Some(fd), Some(entry)) => {
                        *entry = Some(Pooled { fd, generation, startup });
                        (WorkerReply::Registered, None)
                    }
                    _ => (
                        WorkerReply::Unavailable {
                            reason: format!("slot {} is not being set up by this worker", slot.0),
                        },
                        None,
                    ),
                }
            }
            WorkerRequest::Checkout { slot, generation } => {
                let word = table.get(slot).map(|s| s.load());
                let valid = word.is_some_and(|w| {
                    w.owner == pid
                        && w.generation == generation
                        && matches!(w.state, SlotState::InUse | SlotState::Remove)
                });
                match self.pooled.get(slot.0 as usize).and_then(Option::as_ref) {
                    Some(p) if valid && p.generation == generation => match p.fd.try_clone() {
                        Ok(copy) => (WorkerReply::CheckedOut { startup: p.startup.clone() }, Some(copy)),
                        Err(e) => (WorkerReply::Unavailable { reason: format!("cannot duplicate fd: {e}") }, None),
                    },
                    _ => {
                        (WorkerReply::Unavailable { reason: format!("no pooled connection for slot {}", slot.0) }, None)
                    }
                }
            }
            WorkerRequest::Killed { slot, generation } => {
                if let Some(entry) = self.pooled.get_mut(slot.0 as usize)
                    && entry.as_ref().is_some_and(|p| p.generation == generation)
                {
                    *entry = None;
                }
                return;
            }
            WorkerRequest::Lifecycle(_) => return,
        };
        if let Some(mailbox) = self.workers.get(&pid)
            && let Err(e) = mailbox.send(&reply, reply_fd.as_ref().map(|f| std::os::fd::AsFd::as_fd(f)))
        {
            warn!(self.log, "cannot answer worker"; "worker" => pid, "error" => %e);
        }
    }

    fn close_listeners(&mut self) {
        for mut l in self.listeners.drain(..) {
            match &mut l {
                Listener::Tcp(t) => {
                    let _ = self.poll.registry().deregister(t);
                }
                Listener::Unix(u) => {
                    let _ = self.poll.registry().deregister(u);
                }
            }
        }
        let _ = std::fs::remove_file(&self.paths.client_socket);
    }

    fn begin_stop(&mut self, graceful: bool) {
        let header = self.region.header();
        match (self.phase, graceful) {
            (Phase::Stopping { .. }, _) | (Phase::Graceful, true) => {}
            (_, true) => {
                header.shutdown.store(shutdown::GRACEFUL, Ordering::Relaxed);
                self.phase = Phase::Graceful;
                self.dismiss_idle();
                info!(self.log, "graceful shutdown: refusing new clients, waiting for active ones"; "workers" => self.workers.len());
            }
            (_, false) => {
                header.shutdown.store(shutdown::STOPPING, Ordering::Relaxed);
                self.close_listeners();
                for pid in self.workers.keys() {
                    let _ = nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGQUIT);
                }
                self.phase = Phase::Stopping { deadline: Instant::now() + STOP_GRACE };
            }
        }
    }

    /// Tell every idle worker to exit (graceful shutdown).
    fn dismiss_idle(&mut self) {
        while let Some(pid) = self.region.header().take_idle() {
            if let Some(mailbox) = self.workers.get(&pid) {
                let _ = mailbox.send(&WorkerReply::Lifecycle(Lifecycle::Shutdown { graceful: true }), None);
            }
        }
    }

    fn cancel_stop(&mut self) -> bool {
        if self.phase == Phase::Graceful {
            self.region.header().shutdown.store(shutdown::RUNNING, Ordering::Relaxed);
            self.phase = Phase::Running;
            info!(self.log, "graceful shutdown cancelled");
            return true;
        }
        false
    }

    /// Whether the loop should end now.
    fn stop_progress(&mut self) -> bool {
        match self.phase {
            Phase::Running => false,
            Phase::Graceful => {
                // A worker may have put itself in the idle list just as the
                // shutdown began.
                self.dismiss_idle();
                if self.workers.is_empty() {
                    self.begin_stop(false);
                    return true;
                }
                false
            }
            Phase::Stopping { deadline } => {
                if self.workers.is_empty() {
                    return true;
                }
                if Instant::now() >= deadline {
                    self.stop_now();
                    return true;
                }
                false
            }
        }
    }

    /// SIGKILL every remaining child and wait for them.
    fn stop_now(&mut self) {
        let pids: Vec<i32> = self.workers.keys().copied().collect();
        for pid in &pids {
            let _ = nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        for pid in pids {
            let _ = waitpid(Pid::from_raw(pid), None);
            self.child_gone(pid, None);
        }
    }

    /// Terminate pooled connections and remove the files the daemon created.
    fn finish(&mut self) {
        self.close_listeners();
        self.reap();
        let table = self.region.slots();
        for (id, slot) in table.iter() {
            let word = slot.load();
            let idle = word.state == SlotState::Free;
            terminate_pooled(&mut self.pooled, id, word.generation, idle);
        }
        self.pooled.clear();
        let _ = std::fs::remove_file(&self.paths.management_socket);
        let _ = std::fs::remove_file(&self.paths.pidfile);
        info!(self.log, "stopped");
    }
}
