//! The worker actor: a forked process that serves one client at a time. It
//! reads the startup packet, checks hba, authenticates the client as the
//! plan for it says (the pooler's own check, pass-through, or a mock), gets a
//! slot (reusing a pooled server connection or making a new one), relays the
//! session and gives the server connection back, reset, when the client
//! leaves. Then it tells the
//! supervisor it is idle and waits for the next client's socket, so that
//! forking stays off the connection path. It talks to the supervisor only
//! through its mailbox and shares only the slot table.

mod acquire;
mod auth;
pub(crate) mod connect;
mod create;
mod fds;
mod pool;
mod relay;
pub(crate) mod reset;
mod settings;
mod transaction;

use crate::frontend::First;
use crate::net::Sock;
use pgagroal::auth::credentials::Credentials;
use pgagroal::auth::exchange::{Expect, Proven};
use pgagroal::auth::login::LoginSecret;
use pgagroal::auth::policy::{self, Ask, Plan};
use pgagroal::auth::scram::ScramSecret;
use pgagroal::config::limits::Limits;
use pgagroal::config::{Config, Pipeline};
use pgagroal::disconnect::Disconnect;
use pgagroal::hba::{Hba, HbaEntry, Transport};
use pgagroal::ipc::{Mailbox, Received};
use pgagroal::msg::worker::{FromWorker, Peer, ToWorker, WorkerPush};
use pgagroal::msg::{Down, Lifecycle, LifecycleReply, Up};
use pgagroal::protocol::params::{ParamError, SessionParams};
use pgagroal::protocol::sqlstate;
use pgagroal::protocol::startup::Startup;
use pgagroal::shmem::Region;
use pgagroal::tls::TlsConfigs;
use slog::{debug, info, o};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Everything a worker inherits from the supervisor at fork.
pub struct Context<'a> {
    pub config: &'a Config,
    pub hba: &'a Hba,
    pub creds: &'a Credentials,
    pub tls: &'a TlsConfigs,
    pub limits: &'a Limits,
    pub region: &'a Region,
    pub mailbox: WorkerMailbox,
    /// The client the worker was forked for, if any (spare workers start idle).
    pub first: Option<(OwnedFd, Peer)>,
    /// The configuration epoch `config` belongs to.
    pub epoch: u32,
}

/// The worker's end of its mailbox.
pub type WorkerMailbox = Mailbox<FromWorker, ToWorker>;

/// The session's identity, fixed after start-up.
pub struct Session<'a> {
    pub config: &'a Config,
    pub creds: &'a Credentials,
    pub tls: &'a TlsConfigs,
    pub region: &'a Region,
    pub mailbox: &'a WorkerMailbox,
    pub log: slog::Logger,
    pub pid: i32,
    pub startup: Startup,
    /// The settings the client asked for (startup parameters and `options`).
    pub params: SessionParams,
    /// The transaction pipeline: a server connection per transaction.
    pub transaction: bool,
    /// The limit rule the client's connections count against and its
    /// `max_size`, if any.
    pub rule: Option<(usize, u32)>,
    /// When start-up and authentication must be over
    /// (`authentication_timeout` after the client connected).
    pub auth_deadline: Instant,
    /// The client's `application_name`, packed as slots store it once for
    /// every connection the session takes.
    pub appname: pgagroal::shmem::PackedName,
}

impl Session<'_> {
    /// The client, for the authentication exchange.
    pub fn who(&self) -> crate::frontend::Who<'_> {
        crate::frontend::Who { user: &self.startup.user, log: &self.log }
    }
}

/// How long the pooler waits on its own bookkeeping with the server
/// (session reset) or the supervisor before giving up on a connection.
pub const HOUSEKEEPING_TIMEOUT: Duration = Duration::from_secs(5);

/// A worker exits after this many clients, bounding what any slow leak in a
/// long-lived process could grow to.
const MAX_SESSIONS_PER_WORKER: u32 = 10_000;

pub use crate::frontend::refuse;

/// Serve clients until told to stop; the return value is the exit status.
pub fn run(mut ctx: Context<'_>) -> i32 {
    let pid = std::process::id() as i32;
    let log = pgagroal::log::fresh_root().new(o!("pid" => pid));
    let mut reuse = pool::Reuse::new(ctx.region, pid);
    let mut next = ctx.first.take();
    let mut served = 0u32;
    let title = ctx.config.main.update_process_title;
    pgagroal::proctitle::set(title, "worker");
    loop {
        if let Some((client, peer)) = next.take() {
            serve_client(&ctx, client, peer, &mut reuse, &log, pid);
            pgagroal::proctitle::set(title, "worker");
            served += 1;
        }
        if served >= MAX_SESSIONS_PER_WORKER {
            debug!(log, "worker retires"; "sessions" => served);
            break;
        }
        let header = ctx.region.header();
        let running =
            header.shutdown.load(std::sync::atomic::Ordering::Acquire) == pgagroal::shmem::region::shutdown::RUNNING;
        // A reload since this worker was forked: its configuration is old.
        let current = header.config_epoch.load(std::sync::atomic::Ordering::Acquire) == ctx.epoch;
        if !running || !current || !header.offer_idle(pid) {
            break;
        }
        match wait_for_client(&ctx.mailbox) {
            Ok(client) => next = Some(client),
            Err(why) => {
                debug!(log, "worker stops"; "reason" => why);
                break;
            }
        }
    }
    reuse.release(ctx.region, &ctx.mailbox, pid);
    0
}

/// Block until the supervisor hands over a client; Err says why to stop.
fn wait_for_client(mailbox: &WorkerMailbox) -> Result<(OwnedFd, Peer), String> {
    loop {
        let mut fds = [libc::pollfd { fd: mailbox.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        crate::net::poll(&mut fds, -1).map_err(|e| format!("poll failed: {e}"))?;
        match mailbox.recv() {
            Ok(Received::Message(Down::Push(WorkerPush::Client { peer }), Some(fd))) => return Ok((fd, peer)),
            Ok(Received::Message(Down::Lifecycle(Lifecycle::Ping { id }), _)) => {
                let _ = mailbox.send(&Up::Lifecycle(LifecycleReply::Pong { id }), None);
            }
            // A late answer to a call that timed out.
            Ok(Received::Message(Down::Answer { .. }, _)) | Ok(Received::Empty) => {}
            Ok(Received::Message(Down::Lifecycle(Lifecycle::Shutdown { .. }), _)) => return Err("told to stop".into()),
            // This worker's configuration is old.
            Ok(Received::Message(Down::Lifecycle(Lifecycle::Reload(_)), _)) => return Err("reload".into()),
            Ok(Received::Message(Down::Push(WorkerPush::Client { .. }), None)) => {
                return Err("a client came without its socket".into());
            }
            Ok(Received::Closed) => return Err("the supervisor is gone".into()),
            Err(e) => return Err(format!("bad message from the supervisor: {e}")),
        }
    }
}

/// One client, from its first byte to its last: serve it, then count and
/// log why it left.
fn serve_client(
    view: &Context<'_>,
    client: OwnedFd,
    peer: Peer,
    reuse: &mut pool::Reuse,
    log: &slog::Logger,
    pid: i32,
) {
    let log = log.new(o!("client" => peer.host()));
    let socket = SocketShown::new(view.region, reuse.entry);
    // Accepted non-blocking, with TCP_NODELAY and SO_KEEPALIVE inherited
    // from the listener.
    let client = Sock::adopt(client);
    let began = Instant::now();
    let auth_deadline = began + view.config.main.authentication_timeout;
    // No TLS on the Unix socket, as PostgreSQL.
    let tls = view.tls.clients.as_ref().filter(|_| peer.ip().is_some());
    let (why, session_log) = match crate::frontend::read_startup(client, tls, auth_deadline, &log) {
        Ok(First::Startup { client, startup, leftover }) => {
            let log = log.new(o!("user" => startup.user.clone(), "database" => startup.database.clone()));
            let why =
                serve_startup(view, &client, (startup, leftover), &peer, reuse, &log, (pid, began, auth_deadline));
            (why, Some(log))
        }
        Ok(First::Cancel { pid, secret }) => {
            connect::forward_cancel(view.config, view.region, pid, &secret, &log);
            (Disconnect::CancelRequest, None)
        }
        Err(why) => (why, None),
    };
    // Counted while the client entry still shows the socket: whoever waits
    // for `pgagroal_client_sockets` to fall sees the reason counted.
    pgagroal::shmem::counters::disconnected(why);
    drop(socket);
    match session_log {
        Some(log) if view.config.main.log_disconnections => info!(log, "disconnect"; "reason" => why.describe()),
        Some(log) => debug!(log, "session ended"; "reason" => why.describe()),
        None => debug!(log, "connection ended"; "reason" => why.describe()),
    }
}

/// Serve a client that has sent its startup packet; returns why it left.
/// `(pid, began, auth_deadline)`: the worker's pid, when the client
/// connected and when its login must be done.
fn serve_startup(
    view: &Context<'_>,
    client: &Sock,
    (mut startup, leftover): (Startup, Vec<u8>),
    peer: &Peer,
    reuse: &mut pool::Reuse,
    log: &slog::Logger,
    (pid, began, auth_deadline): (i32, Instant, Instant),
) -> Disconnect {
    let entry = match admit(client, view.hba, view.region, peer, &startup, log) {
        Ok(entry) => entry,
        Err(why) => return why,
    };
    let states = view.region.header().servers(view.config.servers.len());
    let server = states.primary().or(Some(0)).and_then(|i| view.config.servers.get(i));
    let title = pgagroal::proctitle::for_client(
        view.config.main.update_process_title,
        &startup.user,
        &startup.database,
        server.map(|s| (s.host.as_str(), s.port)),
    );
    pgagroal::proctitle::set(view.config.main.update_process_title, &title);
    if view.config.main.log_connections {
        info!(log, "connect"; "application_name" => startup.application_name.clone().unwrap_or_default());
    }
    let params = match SessionParams::from_startup(&startup.params) {
        Ok(params) => params,
        Err(e) => {
            info!(log, "startup parameters refused"; "error" => %e);
            let code = match e {
                ParamError::Option(_) => sqlstate::SYNTAX_ERROR,
                ParamError::Name(_) => sqlstate::UNDEFINED_OBJECT,
            };
            refuse(client, code, &e.to_string());
            return Disconnect::StartupRefused;
        }
    };
    // An alias names the real database; the server only ever sees that.
    let rule = view.limits.best_match(&startup.database, &startup.user);
    let requested = std::mem::take(&mut startup.database);
    startup.database = view.limits.real_database(&requested).to_string();
    let header = view.region.header();
    if [&requested, &startup.database].iter().any(|db| header.is_disabled(&pgagroal::shmem::PackedName::new(db))) {
        info!(log, "database is disabled");
        refuse(
            client,
            sqlstate::TOO_MANY_CONNECTIONS,
            &format!("connection refused: database \"{requested}\" is disabled"),
        );
        return Disconnect::StartupRefused;
    }
    let rule = rule.and_then(|r| view.limits.entries.get(r).map(|e| (r, e.max_size)));
    let plan = policy::plan(entry.method, view.creds.known(&startup.user), view.config.main.allow_unknown_users);
    let appname = pgagroal::shmem::PackedName::new(startup.application_name.as_deref().unwrap_or_default());
    let session = Session {
        config: view.config,
        creds: view.creds,
        tls: view.tls,
        region: view.region,
        mailbox: &view.mailbox,
        log: log.clone(),
        pid,
        startup,
        params,
        transaction: view.config.main.effective_pipeline() == Pipeline::Transaction,
        rule,
        auth_deadline,
        appname,
    };
    let outcome = authenticate_and_serve(&session, client, leftover, reuse, plan, peer);
    pgagroal::shmem::counters::observe(pgagroal::shmem::counters::Histogram::SessionTime, began.elapsed());
    outcome
}

/// With metrics on, the worker's client entry says it serves a client
/// socket (`pgagroal_client_sockets`) for as long as this lives.
struct SocketShown<'r> {
    region: &'r Region,
    entry: Option<usize>,
}

impl<'r> SocketShown<'r> {
    fn new(region: &'r Region, entry: Option<usize>) -> Self {
        let entry = entry.filter(|_| pgagroal::shmem::counters::enabled());
        if let Some(entry) = entry {
            region.clients().set_socket(entry, true);
        }
        SocketShown { region, entry }
    }
}

impl Drop for SocketShown<'_> {
    fn drop(&mut self) {
        if let Some(entry) = self.entry {
            self.region.clients().set_socket(entry, false);
        }
    }
}

/// Checks before any slot is taken: shutdown, replication, hba. Returns the
/// matching hba line.
fn admit<'h>(
    client: &Sock,
    hba: &'h Hba,
    region: &Region,
    peer: &Peer,
    s: &Startup,
    log: &slog::Logger,
) -> Result<&'h HbaEntry, Disconnect> {
    let shutdown = region.header().shutdown.load(std::sync::atomic::Ordering::Relaxed);
    if shutdown != pgagroal::shmem::region::shutdown::RUNNING {
        refuse(client, sqlstate::CANNOT_CONNECT_NOW, "the connection pool is shutting down");
        return Err(Disconnect::ShuttingDown);
    }
    let replication =
        s.params.iter().any(|(k, v)| k == "replication" && !matches!(v.as_str(), "false" | "off" | "no" | "0"));
    if replication {
        refuse(
            client,
            sqlstate::FEATURE_NOT_SUPPORTED,
            "replication connections are not supported through the connection pool",
        );
        return Err(Disconnect::StartupRefused);
    }
    let transport = match peer.ip() {
        Some(addr) => Transport::Tcp { addr, tls: client.is_tls() },
        None => Transport::Unix,
    };
    let entry = hba.find(&s.database, &s.user, transport);
    if entry.is_none() {
        info!(log, "no hba entry");
        refuse(
            client,
            sqlstate::INVALID_AUTHORIZATION,
            &format!("no pgagroal_hba.conf entry for {}", describe(peer, s)),
        );
    }
    entry.ok_or(Disconnect::HbaRejected)
}

fn describe(peer: &Peer, s: &Startup) -> String {
    format!("host \"{}\", user \"{}\", database \"{}\"", peer.host(), s.user, s.database)
}

/// Carry out the plan: refuse, check the client, then get a connection and
/// relay. Returns why the session ended.
fn authenticate_and_serve(
    s: &Session<'_>,
    client: &Sock,
    mut buf: Vec<u8>,
    reuse: &mut pool::Reuse,
    plan: Plan,
    peer: &Peer,
) -> Disconnect {
    let user = s.startup.user.as_str();
    let access = match plan {
        Plan::Rejected => {
            info!(s.log, "rejected by hba");
            let text = format!("pgagroal_hba.conf rejects connection for {}", describe(peer, &s.startup));
            refuse(client, sqlstate::INVALID_AUTHORIZATION, &text);
            return Disconnect::HbaRejected;
        }
        Plan::UnknownUser => {
            info!(s.log, "user not served: not in the users file and allow_unknown_users = off");
            refuse(client, sqlstate::INVALID_AUTHORIZATION, &format!("role \"{user}\" does not exist"));
            return Disconnect::UnknownUser;
        }
        Plan::Mock(ask) => {
            let _ = crate::frontend::check(
                s.who(),
                client,
                &mut buf,
                ask,
                Expect::Mock(s.creds.mock(user)),
                s.auth_deadline,
            );
            return Disconnect::UnknownUser;
        }
        Plan::PassThrough { floor } => pool::Access::PassThrough(floor),
        Plan::CheckLikeServer => {
            let Some(password) = s.creds.server_password(user) else { return Disconnect::UnknownUser };
            pool::Access::Pooler { secret: LoginSecret::Password(password.as_str().to_string()), then_check: true }
        }
        Plan::Check(ask) => match check_first(s, client, &mut buf, ask) {
            Ok(secret) => pool::Access::Pooler { secret, then_check: false },
            Err(reason) => return reason,
        },
    };
    pool::serve(s, client, buf, reuse, access)
}

/// What a users-file user's answer to `ask` is checked against: the SCRAM
/// secret made at load time for SCRAM, the password otherwise.
pub fn vault_expect(s: &Session<'_>, ask: Ask) -> Expect {
    let user = s.startup.user.as_str();
    match (ask, s.creds.scram_secret(user), s.creds.client_password(user)) {
        (Ask::Scram, Some(secret), _) => Expect::Scram(secret.clone()),
        (_, _, Some(password)) => Expect::Password(password.as_str().to_string()),
        (_, _, None) => Expect::Mock(s.creds.mock(user)),
    }
}

/// The pooler's own check before any connection is taken; returns what the
/// pooler logs in to PostgreSQL with.
fn check_first(s: &Session<'_>, client: &Sock, buf: &mut Vec<u8>, ask: Ask) -> Result<LoginSecret, Disconnect> {
    let user = s.startup.user.as_str();
    if let Some(server_password) = s.creds.server_password(user) {
        crate::frontend::check(s.who(), client, buf, ask, vault_expect(s, ask), s.auth_deadline)?;
        return Ok(LoginSecret::Password(server_password.as_str().to_string()));
    }
    // auth_query: the secret comes from the server.
    let stored = connect::fetch_secret(s, s.auth_deadline);
    let (expect, is_scram) = match stored.as_deref().map(ScramSecret::parse) {
        Some(Ok(secret)) => (Expect::Scram(secret), true),
        _ => match stored {
            Some(hash) if pgagroal::auth::md5::is_password_hash(&hash) => (Expect::Md5Hash(hash), false),
            _ => (Expect::Mock(s.creds.mock(user)), true),
        },
    };
    let md5_hash = match &expect {
        Expect::Md5Hash(hash) => Some(hash.clone()),
        _ => None,
    };
    let ask = match policy::ask_for_secret(ask, is_scram) {
        Some(ask) => ask,
        None => {
            // A SCRAM line and an md5 secret: nothing the client sends can match.
            crate::frontend::check(
                s.who(),
                client,
                buf,
                Ask::Scram,
                Expect::Mock(s.creds.mock(user)),
                s.auth_deadline,
            )?;
            return Err(Disconnect::AuthFailed);
        }
    };
    match crate::frontend::check(s.who(), client, buf, ask, expect, s.auth_deadline)? {
        Proven::Password(password) => Ok(LoginSecret::Password(password)),
        Proven::ClientKey { client_key, server_key } => Ok(LoginSecret::ClientKey { client_key, server_key }),
        Proven::Md5 => md5_hash.map(LoginSecret::Md5Hash).ok_or(Disconnect::Internal),
        Proven::Nothing => Err(Disconnect::Internal),
    }
}
