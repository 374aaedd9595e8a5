//! The remote-management actor (`management = PORT`): a long-lived forked
//! process that owns the management port's listeners (bound by the daemon
//! at start, so a restart of this actor keeps the port). Each admin is
//! served on a thread of its own, so a slow or silent one never holds up
//! another, the pings or a reload: the login (`pgagroal::mgmt::remote`
//! decides, [`crate::frontend`] drives the exchange), then one request
//! relayed to the local management socket and its reply relayed back.
//!
//! The actor answers pings, applies each reload's hba and admins to the
//! admins that connect after it, and on QUIT or Shutdown stops accepting
//! and lets the exchanges under way finish (briefly) before it exits, so a
//! remote `shutdown` still gets its reply.

use crate::frontend::{self, First, Who};
use crate::net::{IoFail, Sock};
use crate::port_actor::{self, Places};
use pgagroal::auth::policy::Ask;
use pgagroal::auth::scram::ScramSecret;
use pgagroal::hba::Transport;
use pgagroal::ipc::Mailbox;
use pgagroal::mgmt::remote::{self, Admission, Relay};
use pgagroal::mgmt::{self, MgmtError, error_code};
use pgagroal::msg::management::{FromManagement, ManagementConfig, ToManagement};
use pgagroal::msg::worker::Peer;
use pgagroal::protocol::{encode, sqlstate};
use serde_json::Value;
use slog::{debug, info, o, warn};
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The actor's end of its mailbox.
pub type ManagementMailbox = Mailbox<FromManagement, ToManagement>;

/// Admins served at once; more are refused at accept (53300).
const MAX_EXCHANGES: usize = 16;
/// After the login: the request must arrive, and the daemon answer, within this.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long exchanges under way may take to finish once the actor stops.
const DRAIN: Duration = Duration::from_secs(3);

/// The settings and what is derived from them once per reload.
struct Prepared {
    settings: ManagementConfig,
    /// The admins' SCRAM secrets (see `remote::admin_secrets`).
    secrets: Vec<(String, ScramSecret)>,
}

impl Prepared {
    fn new(settings: ManagementConfig) -> Arc<Prepared> {
        let secrets = remote::admin_secrets(&settings.admins, &settings.mock_secret);
        Arc::new(Prepared { settings, secrets })
    }
}

/// What the actor runs with.
pub struct Context {
    pub settings: ManagementConfig,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The management port's listening sockets.
    pub listeners: Vec<OwnedFd>,
    pub mailbox: ManagementMailbox,
    pub pid: i32,
}

/// Serve admins until told to stop; the return value is the exit status.
pub fn run(ctx: Context) -> i32 {
    let log = pgagroal::log::fresh_root().new(o!("actor" => "management", "pid" => ctx.pid));
    pgagroal::proctitle::set(ctx.settings.config.main.update_process_title, "management");
    let Some(listeners) = port_actor::start(ctx.listeners, &ctx.mailbox) else {
        warn!(log, "cannot make the management listeners or the mailbox non-blocking");
        return 1;
    };
    info!(log, "remote management started"; "port" => ctx.settings.config.main.management);
    // Both closures below use it: reloads replace it, connections clone it.
    let prepared = std::cell::RefCell::new(Prepared::new(ctx.settings));
    let places = Places::new(MAX_EXCHANGES);
    port_actor::serve(
        &ctx.mailbox,
        &listeners,
        &log,
        |new: ManagementConfig| {
            pgagroal::log::set_level(new.config.main.log_level);
            *prepared.borrow_mut() = Prepared::new(new);
            info!(log, "configuration reloaded");
        },
        |stream, addr| {
            let Some(place) = places.take() else {
                info!(log, "too many admins at once; refusing a new connection"; "host" => addr.ip().to_string());
                // Best effort, without waiting: the peer is told why.
                let _ = stream.set_nonblocking(true);
                let refusal =
                    encode::error_response("FATAL", sqlstate::TOO_MANY_CONNECTIONS, "sorry, too many clients already");
                let _ = (&stream).write(&refusal);
                return;
            };
            let (prepared, tls, thread_log) = (prepared.borrow().clone(), ctx.tls.clone(), log.clone());
            let spawned = std::thread::Builder::new().name("admin".into()).spawn(move || {
                let _place = place;
                serve(OwnedFd::from(stream), addr, &prepared, tls.as_ref(), &thread_log);
            });
            if let Err(e) = spawned {
                warn!(log, "cannot start a thread for an admin"; "error" => %e);
            }
        },
    );
    drop(listeners);
    let until = Instant::now() + DRAIN;
    while places.taken() > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    debug!(log, "remote management stops");
    0
}

/// One admin: login, one request relayed, its reply.
fn serve(
    fd: OwnedFd,
    addr: SocketAddr,
    prepared: &Prepared,
    tls: Option<&Arc<rustls::ServerConfig>>,
    log: &slog::Logger,
) {
    let settings = &prepared.settings;
    let peer = Peer::Tcp(addr);
    let log = log.new(o!("client" => peer.host()));
    let Ok(client) = Sock::new(fd) else { return };
    let deadline = Instant::now() + settings.config.main.authentication_timeout;
    let (client, startup, mut buf) = match frontend::read_startup(client, tls, deadline, &log) {
        Ok(First::Startup { client, startup, leftover }) => (client, startup, leftover),
        Ok(First::Cancel { .. }) => {
            debug!(log, "a cancel request on the management port");
            return;
        }
        Err(_) => return,
    };
    let log = log.new(o!("user" => startup.user.clone()));
    let transport = Transport::Tcp { addr: addr.ip(), tls: client.is_tls() };
    let admission = remote::admit(
        &startup.user,
        &startup.database,
        &peer.host(),
        transport,
        &settings.hba,
        &prepared.secrets,
        &settings.mock_secret,
    );
    let expect = match admission {
        Admission::Check(expect) => expect,
        Admission::Refuse(refusal) => {
            info!(log, "admin refused"; "reason" => refusal.reason);
            frontend::refuse(&client, refusal.sqlstate, &refusal.message);
            return;
        }
    };
    let who = Who { user: &startup.user, log: &log };
    if let Err(reason) = frontend::check(who, &client, &mut buf, Ask::Scram, expect, deadline) {
        info!(log, "admin login failed"; "reason" => reason.describe());
        return;
    }
    if client.write_all(&encode::authentication_ok(), Some(deadline)).is_err() {
        return;
    }
    let deadline = Instant::now() + EXCHANGE_TIMEOUT;
    let reply = match read_request(&client, &mut buf, deadline) {
        Ok(request) => {
            let command = mgmt::command_of(&request).unwrap_or(-1);
            info!(log, "admin request"; "command" => command);
            match remote::relay(&request) {
                Relay::Refuse(code, why) => mgmt::reply_error_with(&request, code, why),
                Relay::Forward => {
                    forward(&settings.config.main.management_socket_path(), &request).unwrap_or_else(|e| {
                        warn!(log, "cannot relay an admin request to the local management socket"; "error" => &e);
                        mgmt::reply_error_with(&request, error_code::BAD_PAYLOAD, &e)
                    })
                }
            }
        }
        Err(Some(e)) => {
            info!(log, "bad management request"; "error" => %e);
            mgmt::reply_error(&Value::Null, error_code::BAD_PAYLOAD)
        }
        Err(None) => return,
    };
    // The reply's own deadline: a slow answer from the daemon does not
    // leave it without time.
    let _ = client.write_all(&mgmt::encode_frame(&reply), Some(Instant::now() + EXCHANGE_TIMEOUT));
    client.shutdown();
}

/// Read one management frame. `Err(None)`: the admin left or was too slow.
fn read_request(client: &Sock, buf: &mut Vec<u8>, deadline: Instant) -> Result<Value, Option<MgmtError>> {
    loop {
        match mgmt::decode_frame(buf) {
            Ok(Some((request, _))) => return Ok(request),
            Ok(None) => {}
            Err(e) => return Err(Some(e)),
        }
        match client.read_some(buf, Some(deadline)) {
            Ok(_) => {}
            Err(IoFail::Eof | IoFail::Timeout | IoFail::Io(_)) => return Err(None),
        }
    }
}

/// The local management socket's answer to `request`.
fn forward(socket: &std::path::Path, request: &Value) -> Result<Value, String> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| format!("cannot connect to {}: {e}", socket.display()))?;
    stream.set_read_timeout(Some(EXCHANGE_TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(EXCHANGE_TIMEOUT)).map_err(|e| e.to_string())?;
    mgmt::exchange(&mut stream, request)
}
