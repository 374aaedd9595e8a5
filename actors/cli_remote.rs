//! `pgagroal-cli -h HOST -p PORT`: one request over the daemon's management
//! port. As upstream, TLS is used when `~/.pgagroal/pgagroal.key` (mode
//! 0600) and `~/.pgagroal/pgagroal.crt` exist, presented as the client
//! certificate; `~/.pgagroal/root.crt`, when present, verifies the daemon.
//! The login is `pgagroal::mgmt::remote::AdminLogin` (SCRAM-SHA-256 only).

use crate::prompt;
use pgagroal::mgmt::remote::{AdminLogin, AdminLoginError, AdminStep};
use pgagroal::protocol::{encode, frame};
use pgagroal::vault;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

/// Largest message read from the daemon during the login.
const MAX_LOGIN_MESSAGE: usize = 64 * 1024;

/// Where to connect and as whom.
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
}

/// Why a remote exchange failed.
pub enum RemoteError {
    /// The daemon refused the admin's name or password.
    BadCredentials(String),
    Other(String),
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let addrs = (host, port).to_socket_addrs().map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut last = format!("{host} has no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => {
                stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
                stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = format!("cannot connect to {host}:{port}: {e}"),
        }
    }
    Err(last)
}

/// The client key and certificate under `~/.pgagroal`, when TLS is to be used.
fn client_files() -> Option<(PathBuf, PathBuf, Option<PathBuf>)> {
    let dir = vault::master_key::key_dir(&vault::master_key::home_dir().ok()?);
    let (key, cert, root) = (dir.join("pgagroal.key"), dir.join("pgagroal.crt"), dir.join("root.crt"));
    let mode = std::fs::metadata(&key).ok().filter(|m| m.is_file())?.permissions().mode();
    if mode & 0o077 != 0 || !cert.is_file() {
        return None;
    }
    Some((key, cert, root.is_file().then_some(root)))
}

/// TLS when the client files are there. A daemon that declines gets no
/// login in the clear: someone between could relay it and send requests of
/// their own.
fn maybe_tls(mut stream: TcpStream, host: &str) -> Result<Stream, String> {
    let Some((key, cert, root)) = client_files() else { return Ok(Stream::Plain(stream)) };
    stream.write_all(&encode::ssl_request()).map_err(|e| format!("cannot send SSLRequest: {e}"))?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).map_err(|e| format!("no answer to SSLRequest: {e}"))?;
    if answer[0] != b'S' {
        return Err(format!(
            "{host} does not offer TLS, and ~/.pgagroal/pgagroal.key and pgagroal.crt ask for it; \
             the login is not sent in the clear"
        ));
    }
    let config = pgagroal::tls::client_config(root.as_deref(), Some((&cert, &key)))?;
    let name = pgagroal::tls::server_name(host)?;
    let mut conn = rustls::ClientConnection::new(config, name).map_err(|e| format!("TLS set-up failed: {e}"))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut stream).map_err(|e| format!("TLS handshake with {host} failed: {e}"))?;
    }
    Ok(Stream::Tls(Box::new(rustls::StreamOwned::new(conn, stream))))
}

/// Read until `buf` starts with one whole message; returns its length.
fn read_message(stream: &mut Stream, buf: &mut Vec<u8>) -> Result<usize, String> {
    let mut chunk = [0u8; 4096];
    loop {
        match frame::split(buf, MAX_LOGIN_MESSAGE) {
            Ok(Some(f)) => return Ok(f.len()),
            Ok(None) => {}
            Err(e) => return Err(format!("bad message from the daemon: {e}")),
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err("the daemon closed the connection during the login".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("no answer during the login: {e}")),
        }
    }
}

fn login(stream: &mut Stream, user: &str, password: &str) -> Result<Vec<u8>, RemoteError> {
    let other = RemoteError::Other;
    let (mut admin, startup) = AdminLogin::start(user, password, &pgagroal::sys::random_nonce());
    stream.write_all(&startup).map_err(|e| other(format!("cannot send the startup message: {e}")))?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        let len = read_message(stream, &mut buf).map_err(other)?;
        let step = match frame::split(&buf, MAX_LOGIN_MESSAGE) {
            Ok(Some(f)) => admin.on_message(&f),
            _ => Err(AdminLoginError::Protocol("bad message from the daemon".into())),
        };
        buf.drain(..len);
        match step {
            Ok(AdminStep::Send(bytes)) => {
                stream.write_all(&bytes).map_err(|e| other(format!("cannot answer the daemon: {e}")))?;
            }
            Ok(AdminStep::Wait) => {}
            // Bytes after AuthenticationOk would be the reply to a request not sent yet.
            Ok(AdminStep::LoggedIn) => return Ok(buf),
            Err(AdminLoginError::BadCredentials) => return Err(RemoteError::BadCredentials(user.to_string())),
            Err(e) => return Err(other(e.to_string())),
        }
    }
}

/// Log in and send one request; the daemon's reply.
pub fn exchange(target: &Target, request: &Value, timeout: Duration) -> Result<Value, RemoteError> {
    let other = RemoteError::Other;
    let user = match &target.user {
        Some(user) => user.clone(),
        None if prompt::interactive() => prompt::line("User name: ", vault::MAX_USER_NAME_BYTES).map_err(other)?,
        None => return Err(other("remote management needs a user name: give -U".into())),
    };
    let password = match &target.password {
        Some(password) => password.clone(),
        None if prompt::interactive() => prompt::hidden("Password : ", vault::MAX_PASSWORD_BYTES).map_err(other)?,
        None => return Err(other("remote management needs the admin's password: give -P".into())),
    };
    let stream = connect(&target.host, target.port, timeout).map_err(other)?;
    let mut stream = maybe_tls(stream, &target.host).map_err(other)?;
    let early = login(&mut stream, &user, &password)?;
    if !early.is_empty() {
        return Err(other("the daemon sent data before the request".into()));
    }
    pgagroal::mgmt::exchange(&mut stream, request).map_err(other)
}
