//! Making server connections: connecting (TCP or Unix socket), then the
//! start-up, either relaying the server's authentication to the client
//! (pass-through) or logging in with the pooler's own credentials, and
//! collecting the ParameterStatus set and BackendKeyData replayed to later
//! clients. Also the short-lived connections: `auth_query`'s superuser
//! lookup and forwarded cancel requests.

use super::pool::Conn;
use super::{Session, refuse};
use crate::net::{FrameFail, Sock};
use pgagroal::auth::login::{LoginError, LoginSecret, LoginStep, ServerLogin};
use pgagroal::auth::policy::{self, Floor};
use pgagroal::config::{Config, ServerConfig};
use pgagroal::disconnect::Disconnect;
use pgagroal::protocol::backend::{self, BackendMessage, auth_code};
use pgagroal::protocol::frame::{self, Frame};
use pgagroal::protocol::{encode, sqlstate};
use pgagroal::shmem::{AuthKind, Generation, Region, SlotId};
use sha2::{Digest, Sha256};
use slog::{debug, info, warn};
use std::net::ToSocketAddrs;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// Largest message the pooler reads from a server during start-up.
const MAX_STARTUP_MESSAGE: usize = 64 * 1024;

/// What a finished start-up leaves for later clients of the connection.
pub struct Started {
    /// ParameterStatus set and BackendKeyData, replayed to reusing clients.
    pub cached: Vec<u8>,
    pub backend_pid: i32,
    pub backend_secret: u32,
    /// The major version in the server's `server_version` report.
    pub server_version: Option<u32>,
}

pub fn connect_server(server: &ServerConfig, config: &Config, deadline: Instant) -> std::io::Result<Sock> {
    let fd: OwnedFd = if server.is_unix() {
        std::os::unix::net::UnixStream::connect(server.unix_path())?.into()
    } else {
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        let mut connected = None;
        for addr in (server.host.as_str(), server.port).to_socket_addrs()? {
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
            match std::net::TcpStream::connect_timeout(&addr, left) {
                Ok(stream) => {
                    connected = Some(stream);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let stream = connected.ok_or(last)?;
        stream.set_nodelay(config.main.nodelay)?;
        pgagroal::sys::set_keepalive(std::os::fd::AsRawFd::as_raw_fd(&stream), config.main.keep_alive)?;
        stream.into()
    };
    Sock::new(fd)
}

/// Connect to a server and, when its section says `tls = on`, negotiate
/// TLS (SSLRequest, then the handshake, verified as its configuration
/// says). The error is worded for the client.
pub fn open_server(s: &Session<'_>, index: usize, server: &ServerConfig, deadline: Instant) -> Result<Sock, String> {
    let where_ = format!("server \"{}\" ({}:{})", server.name, server.host, server.port);
    let sock = connect_server(server, s.config, deadline).map_err(|e| format!("could not connect to {where_}: {e}"))?;
    let Some(tls) = s.tls.servers.get(index).cloned().flatten() else { return Ok(sock) };
    sock.write_all(&encode::ssl_request(), Some(deadline)).map_err(|e| format!("{where_}: {e}"))?;
    let mut answer = Vec::with_capacity(1);
    sock.read_some(&mut answer, Some(deadline)).map_err(|e| format!("{where_}: no answer to SSLRequest: {e}"))?;
    match answer.as_slice() {
        [b'S'] => {}
        [b'N'] => return Err(format!("{where_} does not accept TLS, which its section asks for (tls = on)")),
        _ => return Err(format!("{where_} answered SSLRequest with something other than S or N")),
    }
    let name = pgagroal::tls::server_name(&server.host).map_err(|e| format!("{where_}: {e}"))?;
    sock.connect_tls(tls, name, deadline).map_err(|e| format!("{where_}: {e}"))
}

/// What the client is sent for a server's start-up failure.
pub fn server_failure(client: &Sock, to_client: &mut Vec<u8>, e: &FrameFail) -> Disconnect {
    let text = format!("server connection failed during start-up: {e}");
    encode::append_error_response(to_client, "FATAL", sqlstate::CONNECTION_FAILURE, &text);
    let _ = client.write_all(to_client, Some(Instant::now() + Duration::from_secs(1)));
    Disconnect::ServerLoginFailed
}

/// Read the server's next whole message into `buf`.
fn next_message<'b>(sock: &Sock, buf: &'b mut Vec<u8>, deadline: Instant) -> Result<Frame<'b>, FrameFail> {
    sock.read_frame(buf, MAX_STARTUP_MESSAGE, Some(deadline))
}

/// After AuthenticationOk: the ParameterStatus set, BackendKeyData, notices
/// and ReadyForQuery. The ParameterStatus set and BackendKeyData are
/// returned (a client is greeted with its own version of them).
fn finish_startup(sock: &Sock, buf: &mut Vec<u8>, deadline: Instant) -> Result<Started, StartupFail> {
    let mut started =
        Started { cached: Vec::with_capacity(512), backend_pid: 0, backend_secret: 0, server_version: None };
    loop {
        let f = next_message(sock, buf, deadline).map_err(StartupFail::Io)?;
        let (raw, len) = (f.raw, f.len());
        match backend::parse(&f).map_err(|e| StartupFail::Protocol(e.to_string()))? {
            BackendMessage::ParameterStatus { name, value } => {
                if name == b"server_version" {
                    started.server_version = pgagroal::shmem::pools::major_version(value);
                }
                started.cached.extend_from_slice(raw);
            }
            BackendMessage::BackendKeyData { pid, secret } => {
                let mut four = [0u8; 4];
                if let Some(first) = secret.get(..4) {
                    four.copy_from_slice(first);
                }
                started.backend_pid = pid;
                started.backend_secret = u32::from_be_bytes(four);
                started.cached.extend_from_slice(raw);
            }
            BackendMessage::NoticeResponse | BackendMessage::NegotiateProtocolVersion => {}
            BackendMessage::ReadyForQuery { .. } => {
                buf.drain(..len);
                if !buf.is_empty() {
                    return Err(StartupFail::Protocol("server sent data before the first query".into()));
                }
                return Ok(started);
            }
            BackendMessage::ErrorResponse(_) => return Err(StartupFail::Refused(raw.to_vec())),
            _ => {
                return Err(StartupFail::Protocol(format!(
                    "unexpected message '{}' from server during start-up",
                    char::from(f.tag).escape_default()
                )));
            }
        }
        buf.drain(..len);
    }
}

/// Why a start-up did not complete.
pub enum StartupFail {
    Io(FrameFail),
    /// The server broke the protocol.
    Protocol(String),
    /// The server sent this ErrorResponse (a wrong stored password, a
    /// database that does not exist, too many connections...).
    Refused(Vec<u8>),
    /// The pooler cannot answer what the server asks.
    Login(LoginError),
}

impl StartupFail {
    /// The ErrorResponse for the client.
    pub fn for_client(&self) -> Vec<u8> {
        match self {
            StartupFail::Refused(raw) => raw.clone(),
            StartupFail::Io(e) => encode::error_response(
                "FATAL",
                sqlstate::CONNECTION_FAILURE,
                &format!("server connection failed during start-up: {e}"),
            ),
            StartupFail::Protocol(text) => encode::error_response("FATAL", sqlstate::PROTOCOL_VIOLATION, text),
            StartupFail::Login(e) => encode::error_response("FATAL", sqlstate::INVALID_AUTHORIZATION, &e.to_string()),
        }
    }

    /// For the log: the server's message when it refused.
    pub fn describe(&self) -> String {
        match self {
            StartupFail::Refused(raw) => {
                match frame::split(raw, MAX_STARTUP_MESSAGE).ok().flatten().map(|f| backend::parse(&f)) {
                    Some(Ok(BackendMessage::ErrorResponse(e))) => format!("{} ({})", e.message, e.code),
                    _ => "error response".into(),
                }
            }
            StartupFail::Io(e) => e.to_string(),
            StartupFail::Protocol(text) => text.clone(),
            StartupFail::Login(e) => e.to_string(),
        }
    }
}

/// Log in to a fresh server connection as `user` with the pooler's own
/// secret; nothing is relayed to the client. Returns the start-up state and
/// the code of the server's first authentication request.
pub fn login(
    sock: &Sock,
    user: &str,
    database: &str,
    secret: LoginSecret,
    deadline: Instant,
) -> Result<(Started, i32), StartupFail> {
    let hello = encode::startup_message(&[("user", user), ("database", database)]);
    sock.write_all(&hello, Some(deadline)).map_err(|e| StartupFail::Io(FrameFail::Io(e)))?;
    let mut login = ServerLogin::new(user, secret, &pgagroal::sys::random_nonce());
    let mut buf = Vec::with_capacity(1024);
    loop {
        let f = next_message(sock, &mut buf, deadline).map_err(StartupFail::Io)?;
        let len = f.len();
        let step = match backend::parse(&f).map_err(|e| StartupFail::Protocol(e.to_string()))? {
            BackendMessage::Authentication { code, data } => {
                login.on_request(code, data).map_err(StartupFail::Login)?
            }
            BackendMessage::ErrorResponse(_) => return Err(StartupFail::Refused(f.raw.to_vec())),
            BackendMessage::NoticeResponse | BackendMessage::NegotiateProtocolVersion => LoginStep::Wait,
            _ => return Err(StartupFail::Protocol("unexpected message from server during authentication".into())),
        };
        buf.drain(..len);
        match step {
            LoginStep::Send(bytes) => {
                sock.write_all(&bytes, Some(deadline)).map_err(|e| StartupFail::Io(FrameFail::Io(e)))?
            }
            LoginStep::Wait => {}
            LoginStep::Authenticated => break,
        }
    }
    let method = login.server_method().unwrap_or(auth_code::OK);
    let started = finish_startup(sock, &mut buf, deadline)?;
    Ok((started, method))
}

/// Pass-through start-up on a new server connection: authentication
/// requests are relayed to the client and its answers back, after checking
/// that the server asks for at least what the hba line demands. The server's
/// AuthenticationOk is forwarded to the client (the rest of the greeting is
/// the pooler's). Sets the connection's kind and what
/// later clients are checked against.
pub fn relay_login(
    s: &Session<'_>,
    client: &Sock,
    client_buf: &mut Vec<u8>,
    conn: &mut Conn,
    floor: Floor,
    deadline: Instant,
) -> Result<Started, Disconnect> {
    let user = s.startup.user.as_str();
    // Only user and database: the client's settings are applied afterwards
    // (see settings.rs), so that RESET ALL returns the server's defaults.
    let hello = encode::startup_message(&[("user", user), ("database", &s.startup.database)]);
    let mut to_client = Vec::with_capacity(1024);
    if let Err(e) = conn.sock.write_all(&hello, Some(deadline)) {
        return Err(server_failure(client, &mut to_client, &FrameFail::Io(e)));
    }
    let mut buf = Vec::with_capacity(1024);
    let mut first: Option<i32> = None;
    loop {
        let f = match next_message(&conn.sock, &mut buf, deadline) {
            Ok(f) => f,
            Err(e) => return Err(server_failure(client, &mut to_client, &e)),
        };
        let len = f.len();
        let message = match backend::parse(&f) {
            Ok(m) => m,
            Err(e) => {
                encode::append_error_response(&mut to_client, "FATAL", sqlstate::PROTOCOL_VIOLATION, &e.to_string());
                let _ = client.write_all(&to_client, Some(deadline));
                return Err(Disconnect::ServerError);
            }
        };
        let BackendMessage::Authentication { code, data } = message else {
            if let BackendMessage::ErrorResponse(e) = &message {
                info!(s.log, "server refused the connection"; "code" => &e.code, "message" => &e.message);
            }
            let refused = matches!(message, BackendMessage::ErrorResponse(_));
            to_client.extend_from_slice(&buf[..len]);
            let _ = client.write_all(&to_client, Some(deadline));
            return Err(if refused { Disconnect::ServerLoginFailed } else { Disconnect::ServerError });
        };
        if first.is_none() {
            first = Some(code);
            if !policy::can_relay(code) {
                info!(s.log, "server asked for an unsupported authentication method"; "code" => code);
                refuse(client, sqlstate::INVALID_AUTHORIZATION, "unsupported security model");
                return Err(Disconnect::ServerLoginFailed);
            }
            if !floor.admits(code) {
                info!(s.log, "server asks for less than the hba line demands"; "server_request" => code);
                refuse(
                    client,
                    sqlstate::INVALID_AUTHORIZATION,
                    &format!(
                        "pgagroal_hba.conf asks {} of user \"{user}\", which the pooler cannot check itself (the \
                         user is not in pgagroal_users.conf), and the server asks for less",
                        floor.name()
                    ),
                );
                return Err(Disconnect::HbaRejected);
            }
            let kind = policy::pass_through_kind(code);
            conn.auth = kind;
            conn.server_method = code;
            if kind == AuthKind::PassThroughMd5 {
                conn.replay.md5_salt = data.get(..4).and_then(|s| s.try_into().ok()).unwrap_or_default();
            }
        }
        match code {
            auth_code::OK => {
                to_client.extend_from_slice(&buf[..len]);
                buf.drain(..len);
                break;
            }
            auth_code::SASL_FINAL => {
                to_client.extend_from_slice(&buf[..len]);
                buf.drain(..len);
            }
            auth_code::CLEARTEXT_PASSWORD | auth_code::MD5_PASSWORD | auth_code::SASL | auth_code::SASL_CONTINUE => {
                to_client.extend_from_slice(&buf[..len]);
                buf.drain(..len);
                if client.write_all(&to_client, Some(deadline)).is_err() {
                    return Err(Disconnect::LoginAbandoned);
                }
                to_client.clear();
                let answer = crate::frontend::read_answer(s.who(), client, client_buf, deadline)?;
                if matches!(code, auth_code::CLEARTEXT_PASSWORD | auth_code::MD5_PASSWORD) {
                    conn.replay.digest = Sha256::digest(&client_buf[..answer]).into();
                }
                if let Err(e) = conn.sock.write_all(&client_buf[..answer], Some(deadline)) {
                    return Err(server_failure(client, &mut to_client, &FrameFail::Io(e)));
                }
                client_buf.drain(..answer);
            }
            other => {
                info!(s.log, "server asked for an unsupported authentication method"; "code" => other);
                refuse(client, sqlstate::INVALID_AUTHORIZATION, "unsupported security model");
                return Err(Disconnect::ServerLoginFailed);
            }
        }
    }
    // The greeting (ParameterStatus, BackendKeyData, ReadyForQuery) is not
    // relayed: the client gets its own, with its settings and minted key.
    match finish_startup(&conn.sock, &mut buf, deadline) {
        Ok(started) => {
            if !to_client.is_empty() && client.write_all(&to_client, Some(deadline)).is_err() {
                return Err(Disconnect::LoginAbandoned);
            }
            Ok(started)
        }
        Err(fail) => {
            info!(s.log, "server start-up failed"; "reason" => fail.describe());
            to_client.extend_from_slice(&fail.for_client());
            let _ = client.write_all(&to_client, Some(deadline));
            Err(Disconnect::ServerLoginFailed)
        }
    }
}

/// `auth_query`: the user's stored secret (`pg_shadow.passwd`), read over a
/// short-lived connection as the superuser. None when the user has no
/// password or the lookup fails (logged).
pub fn fetch_secret(s: &Session<'_>, deadline: Instant) -> Option<String> {
    let (superuser, password) = s.creds.superuser()?;
    let index = s.region.header().servers(s.config.servers.len()).primary()?;
    let server = s.config.servers.get(index)?;
    let sock = match open_server(s, index, server, deadline) {
        Ok(sock) => sock,
        Err(e) => {
            warn!(s.log, "auth_query: cannot connect to the server"; "error" => e);
            return None;
        }
    };
    let secret = LoginSecret::Password(password.as_str().to_string());
    if let Err(e) = login(&sock, superuser, &s.startup.database, secret, deadline) {
        warn!(s.log, "auth_query: the superuser cannot log in"; "superuser" => superuser, "reason" => e.describe());
        return None;
    }
    let query = "SELECT passwd FROM pg_catalog.pg_shadow WHERE usename = $1";
    if sock.write_all(&encode::extended_query(query, &[&s.startup.user]), Some(deadline)).is_err() {
        return None;
    }
    let mut buf = Vec::with_capacity(1024);
    let mut found = None;
    loop {
        let Ok(f) = next_message(&sock, &mut buf, deadline) else { return None };
        let len = f.len();
        match f.tag {
            b'D' => {
                if let Ok(columns) = backend::data_row(f.body) {
                    found = columns.first().copied().flatten().map(|v| String::from_utf8_lossy(v).into_owned());
                }
            }
            b'E' => {
                if let Ok(BackendMessage::ErrorResponse(e)) = backend::parse(&f) {
                    warn!(s.log, "auth_query: the lookup failed"; "code" => &e.code, "message" => &e.message);
                }
            }
            b'Z' => break,
            _ => {}
        }
        buf.drain(..len);
    }
    let _ = sock.write_all(&encode::terminate(), Some(deadline));
    sock.shutdown();
    found.filter(|secret| !secret.is_empty())
}

/// Forward a CancelRequest carrying a key the pooler minted to the server
/// connection serving that client now, with the real backend's key. The
/// client's slot is not handed on until this is done (see `ClientTable`),
/// so the cancel cannot reach another client's query. A client that holds
/// no connection is told of the cancel (a client waiting in the queue with
/// a request then gives it up); an unknown key is dropped.
pub fn forward_cancel(config: &Config, region: &Region, pid: i32, secret: &[u8], log: &slog::Logger) {
    let Some(secret4) = secret.get(..4).filter(|_| secret.len() == 4) else {
        debug!(log, "cancel request with an unexpected key length dropped");
        return;
    };
    let minted = u32::from_be_bytes([secret4[0], secret4[1], secret4[2], secret4[3]]);
    let clients = region.clients();
    let Some(target) = clients.cancel_begin(pid, minted) else {
        if clients.cancel_unbound(pid, minted) {
            debug!(log, "cancel request for a client without a connection passed to its worker"; "pid" => pid);
        } else {
            debug!(log, "cancel request with an unknown key dropped"; "pid" => pid);
        }
        return;
    };
    cancel_slot(config, region, target.slot, target.generation, log);
    clients.cancel_done(target);
}

/// Send a CancelRequest for whatever the backend of `slot` (as long as it
/// still holds the connection of `generation`) is running, and wait until
/// the server has taken it.
pub fn cancel_slot(config: &Config, region: &Region, id: SlotId, generation: Generation, log: &slog::Logger) {
    let Some(slot) = region.slots().get(id) else { return };
    let before = slot.load();
    let (backend_pid, backend_secret, server) = (slot.info().backend_pid, slot.backend_secret(), slot.info().server);
    std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
    let after = slot.load();
    // The key read belongs to the connection the client is bound to.
    let same = before.generation == generation && after.generation == generation;
    if !same || !after.state.is_claimed() || backend_pid == 0 {
        debug!(log, "cancel request dropped: the connection has moved on"; "slot" => id.0);
        return;
    }
    let Some(server) = config.servers.get(server as usize) else { return };
    let deadline = Instant::now() + Duration::from_secs(2);
    match connect_server(server, config, deadline) {
        Ok(sock) => {
            let _ = sock.write_all(&encode::cancel_request(backend_pid, &backend_secret.to_be_bytes()), Some(deadline));
            // Wait for the server to close: the cancel has been passed to
            // the backend before the client's slot may change hands.
            let mut sink = Vec::new();
            let _ = sock.read_some(&mut sink, Some(deadline));
            debug!(log, "cancel request forwarded"; "backend_pid" => backend_pid);
        }
        Err(e) => warn!(log, "cannot forward cancel request"; "error" => %e),
    }
}
