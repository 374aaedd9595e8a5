//! The worker actor: one forked process per client connection. It reads the
//! startup packet, checks hba, gets a slot (reusing a pooled server
//! connection or making a new one), relays the session and gives the server
//! connection back, reset, when the client leaves. It talks to the
//! supervisor only through its mailbox and shares only the slot table.

mod pool;
mod relay;

use crate::net::{IoFail, Sock};
use pgagroal::config::Config;
use pgagroal::hba::{Hba, Method};
use pgagroal::ipc::Mailbox;
use pgagroal::protocol::startup::{self, Startup, StartupError, StartupPacket};
use pgagroal::protocol::{encode, sqlstate};
use pgagroal::shmem::Region;
use slog::{debug, info, o, warn};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// Where the client came from.
#[derive(Debug, Clone, Copy)]
pub enum Peer {
    Tcp(SocketAddr),
    Unix,
}

impl Peer {
    fn ip(&self) -> Option<IpAddr> {
        match self {
            Peer::Tcp(addr) => Some(addr.ip()),
            Peer::Unix => None,
        }
    }

    /// As PostgreSQL names hosts in messages.
    fn host(&self) -> String {
        match self {
            Peer::Tcp(addr) => match addr.ip() {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map(|v4| v4.to_string()).unwrap_or_else(|| v6.to_string()),
                v4 => v4.to_string(),
            },
            Peer::Unix => "[local]".into(),
        }
    }
}

/// Everything a worker inherits from the supervisor at fork.
pub struct Context<'a> {
    pub config: &'a Config,
    pub hba: &'a Hba,
    pub region: &'a Region,
    pub mailbox: Mailbox,
    pub client: OwnedFd,
    pub peer: Peer,
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

/// Send a FATAL ErrorResponse and give up on the client.
pub fn refuse(client: &Sock, code: &str, message: &str) {
    let bytes = encode::error_response("FATAL", code, message);
    let _ = client.write_all(&bytes, Some(Instant::now() + Duration::from_secs(1)));
}

/// Run one client's session; the return value is the process exit status.
pub fn run(ctx: Context<'_>) -> i32 {
    let pid = std::process::id() as i32;
    let log = pgagroal::log::logger().new(o!("pid" => pid, "client" => ctx.peer.host()));
    let client = match Sock::new(ctx.client) {
        Ok(c) => c,
        Err(e) => {
            warn!(log, "cannot set up client socket"; "error" => %e);
            return 1;
        }
    };
    if matches!(ctx.peer, Peer::Tcp(_)) {
        let main = &ctx.config.main;
        let _ = pgagroal::sys::set_nodelay(client.raw(), main.nodelay);
        let _ = pgagroal::sys::set_keepalive(client.raw(), main.keep_alive);
    }

    let auth_deadline = Instant::now() + ctx.config.main.authentication_timeout;
    let (startup, leftover) = match read_startup(&client, ctx.config, ctx.region, auth_deadline, &log) {
        Some(found) => found,
        None => return 0,
    };
    let log = log.new(o!("user" => startup.user.clone(), "database" => startup.database.clone()));

    if !admit(&client, ctx.hba, ctx.region, &ctx.peer, &startup, &log) {
        return 0;
    }
    if ctx.config.main.log_connections {
        info!(log, "connect"; "application_name" => startup.application_name.clone().unwrap_or_default());
    }
    let session = Session { config: ctx.config, region: ctx.region, mailbox: &ctx.mailbox, log, pid, startup };
    let outcome = pool::serve(&session, &client, leftover);
    if session.config.main.log_disconnections {
        info!(session.log, "disconnect"; "reason" => outcome);
    } else {
        debug!(session.log, "session ended"; "reason" => outcome);
    }
    0
}

/// Read SSLRequest / GSSENCRequest / CancelRequest / StartupMessage until a
/// StartupMessage arrives. None means the client is done (cancel handled,
/// closed, refused or too slow). Bytes after the packet are returned too.
fn read_startup(client: &Sock, config: &Config, region: &Region, deadline: Instant, log: &slog::Logger) -> Option<(Startup, Vec<u8>)> {
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
                            refuse(client, sqlstate::PROTOCOL_VIOLATION, "invalid startup packet layout: repeated encryption request");
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
                            let unknown: Vec<&str> = s
                                .params
                                .iter()
                                .map(|(k, _)| k.as_str())
                                .filter(|k| k.starts_with("_pq_."))
                                .collect();
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
                    refuse(client, sqlstate::PROTOCOL_VIOLATION, "authentication timeout: no startup packet received in time");
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
    let replication = s.params.iter().any(|(k, v)| k == "replication" && !matches!(v.as_str(), "false" | "off" | "no" | "0"));
    if replication {
        refuse(client, sqlstate::FEATURE_NOT_SUPPORTED, "replication connections are not supported through the connection pool");
        return false;
    }
    let describe = format!("host \"{}\", user \"{}\", database \"{}\"", peer.host(), s.user, s.database);
    match hba.find(&s.database, &s.user, peer.ip(), false) {
        None => {
            info!(log, "no hba entry");
            refuse(client, sqlstate::INVALID_AUTHORIZATION, &format!("no pgagroal_hba.conf entry for {describe}"));
            false
        }
        Some(entry) if entry.method == Method::Reject => {
            info!(log, "rejected by hba"; "line" => entry.line);
            refuse(client, sqlstate::INVALID_AUTHORIZATION, &format!("pgagroal_hba.conf rejects connection for {describe}"));
            false
        }
        Some(_) => true,
    }
}
