//! The local management socket, served inside the supervisor's loop without
//! blocking: each connection carries one framed JSON request and gets one
//! reply, then is closed. Slow or silent connections are dropped.

use super::{MANAGEMENT_CONN_BASE, Supervisor};
use mio::{Interest, Token};
use pgagroal::mgmt::{self, MgmtError};
use serde_json::Value;
use slog::{debug, info, warn};
use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

/// A management client must finish its exchange within this time.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Conn {
    stream: mio::net::UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    started: Instant,
    /// Applied once the reply is written (stop commands).
    after: After,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
    Nothing,
    StopGracefully(Duration),
    StopNow,
}

impl Supervisor {
    pub(super) fn accept_management(&mut self) {
        loop {
            let Some(listener) = &self.management else { return };
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let token = MANAGEMENT_CONN_BASE + (self.next_conn % MANAGEMENT_CONN_BASE);
                    self.next_conn += 1;
                    if self.conns.contains_key(&token)
                        || self.poll.registry().register(&mut stream, Token(token), Interest::READABLE).is_err()
                    {
                        continue;
                    }
                    self.conns.insert(
                        token,
                        Conn {
                            stream,
                            input: Vec::with_capacity(512),
                            output: Vec::new(),
                            written: 0,
                            started: Instant::now(),
                            after: After::Nothing,
                        },
                    );
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!(self.log, "management accept failed"; "error" => %e);
                    return;
                }
            }
        }
    }

    pub(super) fn on_management(&mut self, token: usize) {
        let Some(mut conn) = self.conns.remove(&token) else { return };
        if conn.output.is_empty() {
            let mut chunk = [0u8; 4096];
            loop {
                match conn.stream.read(&mut chunk) {
                    Ok(0) => return self.drop_conn(conn),
                    Ok(n) => conn.input.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => return self.drop_conn(conn),
                }
                if conn.input.len() > mgmt::MAX_DOCUMENT + mgmt::FRAME_HEADER {
                    return self.drop_conn(conn);
                }
            }
            let reply = match mgmt::decode_frame(&conn.input) {
                Ok(None) => {
                    self.conns.insert(token, conn);
                    return;
                }
                Ok(Some((request, _))) => {
                    let (reply, after) = self.execute(&request);
                    conn.after = after;
                    reply
                }
                Err(e) => {
                    info!(self.log, "bad management request"; "error" => %e);
                    let code = match e {
                        MgmtError::Json(_) | MgmtError::Empty | MgmtError::TooLarge(_) | MgmtError::Unsupported(..) => {
                            mgmt::error_code::BAD_PAYLOAD
                        }
                    };
                    mgmt::reply_error(&Value::Null, code)
                }
            };
            conn.output = mgmt::encode_frame(&reply);
            let _ = self.poll.registry().reregister(&mut conn.stream, Token(token), Interest::WRITABLE);
        }
        loop {
            match conn.stream.write(&conn.output[conn.written..]) {
                Ok(n) => {
                    conn.written += n;
                    if conn.written == conn.output.len() {
                        let after = conn.after;
                        self.drop_conn(conn);
                        match after {
                            After::Nothing => {}
                            After::StopGracefully(timeout) => self.begin_graceful(timeout),
                            After::StopNow => self.begin_stop(false),
                        }
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return self.drop_conn(conn),
            }
        }
        self.conns.insert(token, conn);
    }

    fn drop_conn(&mut self, mut conn: Conn) {
        let _ = self.poll.registry().deregister(&mut conn.stream);
    }

    pub(super) fn expire_management(&mut self) {
        let expired: Vec<usize> =
            self.conns.iter().filter(|(_, c)| c.started.elapsed() > EXCHANGE_TIMEOUT).map(|(t, _)| *t).collect();
        for token in expired {
            if let Some(conn) = self.conns.remove(&token) {
                debug!(self.log, "management connection timed out");
                self.drop_conn(conn);
            }
        }
    }
}
