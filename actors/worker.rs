//! The worker actor: a forked process that serves one client at a time. It
//! reads the startup packet, checks hba, gets a slot (reusing a pooled
//! server connection or making a new one), relays the session and gives the
//! server connection back, reset, when the client leaves. Then it tells the
//! supervisor it is idle and waits for the next client's socket, so that
//! forking stays off the connection path. It talks to the supervisor only
//! through its mailbox and shares only the slot table.

mod pool;
mod relay;

use crate::net::{IoFail, Sock};
use pgagroal::config::Config;
use pgagroal::hba::{Hba, Method, Transport};
use pgagroal::ipc::{Mailbox, Received};
use pgagroal::msg::worker::{Peer, WorkerReply, WorkerRequest};
use pgagroal::msg::{Lifecycle, LifecycleReply};
use pgagroal::protocol::startup::{self, Startup, StartupError, StartupPacket};
use pgagroal::protocol::{encode, sqlstate};
use pgagroal::shmem::Region;
use slog::{debug, info, o};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Everything a worker inherits from the supervisor at fork.
pub struct Context<'a> {
    pub config: &'a Config,
    pub hba: &'a Hba,
    pub region: &'a Region,
    pub mailbox: Mailbox,
    /// The client the worker was forked for, if any (spare workers start idle).
    pub first: Option<(OwnedFd, Peer)>,
    /// The configuration epoch `config` belongs to.
    pub epoch: u32,
}

/// The session's identity, fixed after start-up.
pub struct Session<'a> {
    pub config: &'a Config,
    pub region: &'a Region,
    pub mailbox: &'a Mailbox,
    pub log: slog::Logger,
    pub pid: i32,
    pub startup: Startup,
}

/// How long the pooler waits on its own bookkeeping with the server
/// (session reset) or the supervisor before giving up on a connection.
pub const HOUSEKEEPING_TIMEOUT: Duration = Duration::from_secs(5);

/// A worker exits after this many clients, bounding what any slow leak in a
/// long-lived process could grow to.
const MAX_SESSIONS_PER_WORKER: u32 = 10_000;

/// Send a FATAL ErrorResponse and give up on the client.
pub fn refuse(client: &Sock, code: &str, message: &str) {
    let bytes = encode::error_response("FATAL", code, message);
    let _ = client.write_all(&bytes, Some(Instant::now() + Duration::from_secs(1)));
}

/// Serve clients until told to stop; the return value is the exit status.
pub fn run(mut ctx: Context<'_>) -> i32 {
    let pid = std::process::id() as i32;
    let log = pgagroal::log::fresh_root().new(o!("pid" => pid));
    let mut reuse = pool::Reuse::new();
    let mut next = ctx.first.take();
    let mut served = 0u32;
    loop {
        if let Some((client, peer)) = next.take() {
            serve_client(&ctx, client, peer, &mut reuse, &log, pid);
            served += 1;
        }
        if served >= MAX_SESSIONS_PER_WORKER {
            debug!(log, "worker retires"; "sessions" => served);
            return 0;
        }
        let header = ctx.region.header();
        let running =
            header.shutdown.load(std::sync::atomic::Ordering::Acquire) == pgagroal::shmem::region::shutdown::RUNNING;
        // A reload since this worker was forked: its configuration is old.
        let current = header.config_epoch.load(std::sync::atomic::Ordering::Acquire) == ctx.epoch;
        if !running || !current || !header.offer_idle(pid) {
            return 0;
        }
        match wait_for_client(&ctx.mailbox) {
            Some(client) => next = Some(client),
            None => return 0,
        }
    }
}

/// Block until the supervisor hands over a client; None means stop.
fn wait_for_client(mailbox: &Mailbox) -> Option<(OwnedFd, Peer)> {
    loop {
        let mut fds = [libc::pollfd { fd: mailbox.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        crate::net::poll(&mut fds, -1).ok()?;
        match mailbox.recv::<WorkerReply>() {
            Ok(Received::Message(WorkerReply::Client { peer }, Some(fd))) => return Some((fd, peer)),
            Ok(Received::Message(WorkerReply::Lifecycle(Lifecycle::Ping), _)) => {
                let _ = mailbox.send(&WorkerRequest::Lifecycle(LifecycleReply::Pong), None);
            }
            Ok(Received::Empty) => {}
            _ => return None,
        }
    }
}

/// One client, from its first byte to its last.
fn serve_client(
    view: &Context<'_>,
    client: OwnedFd,
    peer: Peer,
    reuse: &mut pool::Reuse,
    log: &slog::Logger,
    pid: i32,
) {
    let log = log.new(o!("client" => peer.host()));
    // Accepted non-blocking, with TCP_NODELAY and SO_KEEPALIVE inherited
    // from the listener.
    let client = Sock::adopt(client);

    let auth_deadline = Instant::now() + view.config.main.authentication_timeout;
    let Some((startup, leftover)) = read_startup(&client, view.config, view.region, auth_deadline, &log) else {
        return;
    };
    let log = log.new(o!("user" => startup.user.clone(), "database" => startup.database.clone()));

    if !admit(&client, view.hba, view.region, &peer, &startup, &log) {
        return;
    }
    if view.config.main.log_connections {
        info!(log, "connect"; "application_name" => startup.application_name.clone().unwrap_or_default());
    }
    let session = Session { config: view.config, region: view.region, mailbox: &view.mailbox, log, pid, startup };
    let outcome = pool::serve(&session, &client, leftover, reuse);
    if session.config.main.log_disconnections {
        info!(session.log, "disconnect"; "reason" => outcome);
    } else {
        debug!(session.log, "session ended"; "reason" => outcome);
    }
}

/// Read SSLRequest / GSSENCRequest / CancelRequest / StartupMessage until a
/// StartupMessage arrives. None means the client is done (cancel handled,
/// closed, refused or too slow). Bytes after the packet are returned too.
fn read_startup(
    client: &Sock,
    config: &Config,
    region: &Region,
    deadline: Instant,
    log: &slog::Logger,
) -> Option<(Startup, Vec<u8>)> {
    let mut buf = Vec::with_capacity(512);
    let mut negotiated = 0;
    loop {
        match startup::parse(&buf) {
            Ok(Some((packet, used))) => {
                buf.drain(..used);
                match packet {
                    StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                        negotiated += 1;
                        if negotiated > 2 || !buf.is_empty() {
                            refuse(
                                client,
                                sqlstate::PROTOCOL_VIOLATION,
                                "invalid startup packet layout: repeated encryption request",
                            );
                            return None;
                        }
                        // Neither TLS nor GSS encryption is offered: 'N'.
                        client.write_all(b"N", Some(deadline)).ok()?;
                    }
                    StartupPacket::Cancel { pid, secret } => {
                        pool::forward_cancel(config, region, pid, &secret, log);
                        return None;
                    }
                    StartupPacket::Startup(s) => {
                        if s.minor > 0 {
                            let unknown: Vec<&str> =
                                s.params.iter().map(|(k, _)| k.as_str()).filter(|k| k.starts_with("_pq_.")).collect();
                            let nego = encode::negotiate_protocol_version(startup::PROTOCOL_3_0, &unknown);
                            client.write_all(&nego, Some(deadline)).ok()?;
                        }
                        return Some((s, buf));
                    }
                }
            }
            Ok(None) => match client.read_some(&mut buf, Some(deadline)) {
                Ok(_) => {}
                Err(IoFail::Eof) => {
                    debug!(log, "client closed before start-up");
                    return None;
                }
                Err(IoFail::Timeout) => {
                    refuse(
                        client,
                        sqlstate::PROTOCOL_VIOLATION,
                        "authentication timeout: no startup packet received in time",
                    );
                    info!(log, "client start-up timed out");
                    return None;
                }
                Err(IoFail::Io(e)) => {
                    debug!(log, "client read failed during start-up"; "error" => %e);
                    return None;
                }
            },
            Err(e) => {
                let code = match e {
                    StartupError::UnsupportedVersion { .. } => sqlstate::FEATURE_NOT_SUPPORTED,
                    StartupError::NoUser => sqlstate::INVALID_AUTHORIZATION,
                    _ => sqlstate::PROTOCOL_VIOLATION,
                };
                info!(log, "bad startup packet"; "error" => %e);
                refuse(client, code, &e.to_string());
                return None;
            }
        }
    }
}

/// Checks before any slot is taken: hba, replication, shutdown.
fn admit(client: &Sock, hba: &Hba, region: &Region, peer: &Peer, s: &Startup, log: &slog::Logger) -> bool {
    let shutdown = region.header().shutdown.load(std::sync::atomic::Ordering::Relaxed);
    if shutdown != pgagroal::shmem::region::shutdown::RUNNING {
        refuse(client, sqlstate::CANNOT_CONNECT_NOW, "the connection pool is shutting down");
        return false;
    }
    let replication =
        s.params.iter().any(|(k, v)| k == "replication" && !matches!(v.as_str(), "false" | "off" | "no" | "0"));
    if replication {
        refuse(
            client,
            sqlstate::FEATURE_NOT_SUPPORTED,
            "replication connections are not supported through the connection pool",
        );
        return false;
    }
    let describe = format!("host \"{}\", user \"{}\", database \"{}\"", peer.host(), s.user, s.database);
    let transport = match peer.ip() {
        Some(addr) => Transport::Tcp { addr, tls: false },
        None => Transport::Unix,
    };
    match hba.find(&s.database, &s.user, transport) {
        None => {
            info!(log, "no hba entry");
            refuse(client, sqlstate::INVALID_AUTHORIZATION, &format!("no pgagroal_hba.conf entry for {describe}"));
            false
        }
        Some(entry) if entry.method == Method::Reject => {
            info!(log, "rejected by hba"; "line" => entry.line);
            refuse(
                client,
                sqlstate::INVALID_AUTHORIZATION,
                &format!("pgagroal_hba.conf rejects connection for {describe}"),
            );
            false
        }
        Some(_) => true,
    }
}
