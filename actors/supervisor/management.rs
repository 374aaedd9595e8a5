//! The local management socket, served inside the supervisor's loop without
//! blocking: each connection carries one framed JSON request and gets one
//! reply, then is closed. Slow or silent connections are dropped.

use super::{MANAGEMENT_CONN_BASE, Phase, Supervisor};
use mio::{Interest, Token};
use pgagroal::mgmt::{self, Command, MgmtError, ServerStatus};
use serde_json::{Map, Value, json};
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
enum After {
    Nothing,
    StopGracefully,
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
                            After::StopGracefully => self.begin_stop(true),
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

    fn servers(&self) -> Vec<ServerStatus> {
        let states = self.region.header().servers(self.config.servers.len());
        self.config
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| ServerStatus {
                name: s.name.clone(),
                host: s.host.clone(),
                port: s.port,
                state: states.get(i).name(),
            })
            .collect()
    }

    /// Answer one request.
    fn execute(&mut self, request: &Value) -> (Value, After) {
        let started = Instant::now();
        let Some(command) = mgmt::command_of(request).and_then(Command::from_id) else {
            return (mgmt::reply_error(request, mgmt::error_code::UNKNOWN_COMMAND), After::Nothing);
        };
        debug!(self.log, "management command"; "command" => command.name());
        let mut response = Map::new();
        let after = match command {
            Command::Ping => After::Nothing,
            Command::Status => {
                let counts = self.region.slots().counts();
                response = mgmt::status_response(
                    &counts,
                    self.config.main.max_connections,
                    &self.servers(),
                    self.phase == Phase::Graceful,
                );
                // Beyond upstream's keys: the periodic services and their
                // restarts, and the workers running.
                let actors: Vec<Value> = self
                    .service_states()
                    .into_iter()
                    .map(|(kind, s)| {
                        json!({ "Actor": kind.name(), "Pid": s.pid.unwrap_or(0), "State": s.state(),
                                "Restarts": s.restarts })
                    })
                    .collect();
                response.insert("Actors".into(), Value::Array(actors));
                let states: Map<String, Value> = pgagroal::shmem::SlotState::ALL
                    .iter()
                    .filter(|&&state| state != pgagroal::shmem::SlotState::NotInit && counts.get(state) > 0)
                    .map(|&state| (state.name().to_string(), json!(counts.get(state))))
                    .collect();
                response.insert("SlotStates".into(), Value::Object(states));
                response.insert("Workers".into(), json!(self.worker_count()));
                After::Nothing
            }
            Command::Gracefully => After::StopGracefully,
            Command::Shutdown => After::StopNow,
            Command::CancelShutdown => {
                self.cancel_stop();
                After::Nothing
            }
            Command::Reload => match self.reload() {
                Ok(restart) => {
                    response.insert("Restart".into(), json!(restart));
                    After::Nothing
                }
                Err(reason) => {
                    let reply = mgmt::reply_error_with(request, mgmt::error_code::CONF_RELOAD_ERROR, &reason);
                    return (reply, After::Nothing);
                }
            },
            Command::DisableDb | Command::EnableDb => {
                let database = request.pointer("/Request/Database").and_then(Value::as_str).unwrap_or("*");
                let name = (database != "*").then(|| pgagroal::shmem::PackedName::new(database));
                let header = self.region.header();
                let enabled = command == Command::EnableDb;
                let done = if enabled {
                    header.enable(name.as_ref());
                    true
                } else {
                    header.disable(name.as_ref())
                };
                if !done {
                    warn!(self.log, "cannot disable another database: the list is full"; "database" => database);
                }
                info!(self.log, "database {}", if enabled { "enabled" } else { "disabled" }; "database" => database);
                let entries = if done { vec![json!({ "Database": database, "Enabled": enabled })] } else { Vec::new() };
                response.insert("Databases".into(), Value::Array(entries));
                After::Nothing
            }
            Command::SwitchTo | Command::ClearServer => {
                let server = request.pointer("/Request/Server").and_then(Value::as_str).unwrap_or("");
                let (done, code) = if command == Command::SwitchTo {
                    (self.switch_to(server), mgmt::error_code::SWITCH_TO_FAILED)
                } else {
                    (self.clear_server(server), mgmt::error_code::CLEAR_SERVER_ERROR)
                };
                if let Err(reason) = done {
                    return (mgmt::reply_error_with(request, code, &reason), After::Nothing);
                }
                response.insert("Server".into(), json!(server));
                After::Nothing
            }
            _ => return (mgmt::reply_error(request, mgmt::error_code::UNKNOWN_COMMAND), After::Nothing),
        };
        (mgmt::reply_ok(request, response, started.elapsed().as_secs()), after)
    }
}
