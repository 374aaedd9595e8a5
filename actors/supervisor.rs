//! The supervisor: a single-threaded mio loop over the listeners, a signalfd,
//! the management socket and every child's mailbox. It hands accepted
//! clients to workers, keeps a copy of every pooled server connection's fd,
//! runs and restarts the periodic services, reaps children and reclaims
//! what a dead one held, and stops the pool on TERM/INT (immediately) or
//! TRAP (after the clients leave). It never relays client traffic and never
//! blocks on PostgreSQL.
//!
//! By responsibility: accepting and dispatching clients (here and
//! [`workers`]), the table of children by kind, forks, reaping and pings
//! ([`children`]), the services and their restarts ([`services`]), slots
//! and pooled fds ([`slots`]), management ([`management`]), reloads
//! ([`reload`]) and stopping ([`stop`]).

mod children;
mod commands;
mod failover;
mod flush;
mod management;
mod reload;
mod services;
mod slots;
mod stop;
mod workers;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use pgagroal::auth::credentials::Credentials;
use pgagroal::config::limits::Limits;
use pgagroal::config::{Config, ConfigFiles};
use pgagroal::hba::Hba;
use pgagroal::msg::worker::Peer;
use pgagroal::shmem::{Generation, Region};
use pgagroal::tls::TlsConfigs;
use slog::{error, warn};
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const SIGNALS: Token = Token(64);
const MANAGEMENT: Token = Token(65);
const MANAGEMENT_CONN_BASE: usize = 1 << 20;
/// Mailbox tokens: this plus the child's pid.
const CHILD_BASE: usize = 1 << 40;
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
    /// Refusing new clients, waiting for the current ones to leave (until
    /// the deadline, when there is one).
    Graceful {
        deadline: Option<Instant>,
    },
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
    /// The limits file's entries (empty without one). Slots record the
    /// index of the entry they count against, so a reload replaces them
    /// only when every running entry keeps its index (see
    /// `pgagroal::config::reload::limits_reload`).
    limits: Limits,
    region: Region,
    poll: Poll,
    listeners: Vec<Listener>,
    management: Option<mio::net::UnixListener>,
    conns: HashMap<usize, management::Conn>,
    next_conn: usize,
    signals: SignalFd,
    /// Every child by pid: its kind and mailbox.
    children: HashMap<i32, children::Child>,
    /// The long-lived actors' restart state.
    services: HashMap<services::Actor, services::Service>,
    /// The management port's listeners, served by the remote-management
    /// actor (empty without `management`).
    remote: Vec<OwnedFd>,
    /// The metrics port's listeners, served by the metrics actor (empty
    /// without `metrics`).
    metrics: Vec<OwnedFd>,
    /// The current configuration epoch (see `Header::config_epoch`).
    epoch: u32,
    /// Spare workers forked without a client that are not in the idle list
    /// yet.
    starting: HashSet<i32>,
    pooled: Vec<Option<Pooled>>,
    /// When the long-lived actors are pinged next.
    next_ping: Instant,
    /// The failover script running, if any.
    failover: Option<failover::Job>,
    /// Graceful flushes waiting for their deadline.
    flushes: Vec<flush::Job>,
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
    /// `management = PORT`'s listeners.
    pub remote: Vec<OwnedFd>,
    /// `metrics = PORT`'s listeners.
    pub metrics: Vec<OwnedFd>,
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

/// Everything read from the configuration files before start-up.
pub struct Settings {
    pub config: Config,
    pub files: ConfigFiles,
    pub hba: Hba,
    pub creds: Credentials,
    pub tls: TlsConfigs,
    /// `pgagroal_databases.conf`, empty when there is none.
    pub limits: Limits,
}

impl Supervisor {
    pub fn new(settings: Settings, region: Region, bound: Bound, paths: Paths) -> std::io::Result<Self> {
        let Settings { config, files, hba, creds, tls, limits } = settings;
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
            limits,
            region,
            poll,
            listeners,
            management: Some(management),
            conns: HashMap::new(),
            next_conn: 0,
            signals,
            children: HashMap::new(),
            services: HashMap::new(),
            remote: bound.remote,
            metrics: bound.metrics,
            epoch: 0,
            starting: HashSet::new(),
            pooled,
            next_ping: Instant::now() + pgagroal::supervision::PING_EVERY,
            failover: None,
            flushes: Vec::new(),
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
        self.init_servers();
        crate::ALLOCATOR.activate();
        self.supervise();
        loop {
            let timeout = self.next_wake().min(Duration::from_secs(1));
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
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
                    Token(t) if t >= CHILD_BASE => self.on_mailbox((t - CHILD_BASE) as i32),
                    Token(t) if t >= MANAGEMENT_CONN_BASE => self.on_management(t),
                    Token(i) => self.accept_clients(i),
                }
            }
            self.expire_management();
            self.expire_flushes();
            self.supervise();
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
}
