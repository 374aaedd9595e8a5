//! What the supervisor answers to each management request. The documents
//! are built by `pgagroal::mgmt` from plain data read here; nothing in
//! this file waits on anything.

use super::management::After;
use super::{Phase, Supervisor};
use pgagroal::mgmt::command::{self, FlushMode};
use pgagroal::mgmt::conf::{self, SetOutcome};
use pgagroal::mgmt::status::{ConnectionRow, LimitRow};
use pgagroal::mgmt::{self, Command, ServerStatus, error_code};
use pgagroal::shmem::{PackedName, SlotState};
use serde_json::{Map, Value, json};
use slog::{debug, info, warn};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

impl Supervisor {
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

    fn status(&self, details: bool) -> Map<String, Value> {
        let table = self.region.slots();
        let counts = table.counts();
        let mut response = mgmt::status_response(
            &counts,
            self.config.main.max_connections,
            &self.servers(),
            matches!(self.phase, Phase::Graceful { .. }),
        );
        // Beyond upstream's keys: the periodic services and their restarts,
        // and the workers running.
        let actors: Vec<Value> = self
            .service_states()
            .into_iter()
            .map(|(kind, s)| {
                json!({ "Actor": kind.name(), "Pid": s.pid.unwrap_or(0), "State": s.state(),
                        "Restarts": s.restarts })
            })
            .collect();
        response.insert("Actors".into(), Value::Array(actors));
        let states: Map<String, Value> = SlotState::ALL
            .iter()
            .filter(|&&state| state != SlotState::NotInit && counts.get(state) > 0)
            .map(|&state| (state.name().to_string(), json!(counts.get(state))))
            .collect();
        response.insert("SlotStates".into(), Value::Object(states));
        response.insert("Workers".into(), json!(self.worker_count()));
        if details {
            let connections: Vec<ConnectionRow> = table
                .iter()
                .map(|(id, slot)| {
                    let info = slot.info().shown();
                    let state = match info.word.state {
                        SlotState::InUse if slot.flush_marked() => SlotState::Gracefully.name(),
                        other => other.name(),
                    };
                    let fd = self.pooled.get(id.0 as usize).and_then(Option::as_ref).map(|p| p.fd.as_raw_fd());
                    ConnectionRow {
                        state,
                        start_time: info.created_ms / 1000,
                        timestamp: info.last_used_ms / 1000,
                        pid: info.word.owner,
                        fd: fd.unwrap_or(-1),
                        database: info.database,
                        user: info.user,
                        appname: info.appname,
                    }
                })
                .collect();
            let limits: Vec<LimitRow> = self
                .limits
                .entries
                .iter()
                .enumerate()
                .map(|(rule, l)| LimitRow {
                    database: l.database.name().unwrap_or("all").to_string(),
                    user: l.user.name().unwrap_or("all").to_string(),
                    active: table.rule_count(rule),
                    max: l.max_size,
                    initial: l.initial_size,
                    min: l.min_size,
                })
                .collect();
            let disabled = self.region.header().disabled_databases();
            pgagroal::mgmt::status::add_details(&mut response, &connections, &limits, disabled);
        }
        response
    }

    fn enable(&mut self, enabled: bool, database: Option<String>) -> Map<String, Value> {
        let name = database.as_deref().map(PackedName::new);
        let header = self.region.header();
        let done = if enabled {
            header.enable(name.as_ref());
            true
        } else {
            header.disable(name.as_ref())
        };
        let shown = database.as_deref().unwrap_or("*");
        if !done {
            warn!(self.log, "cannot disable another database: the list is full"; "database" => shown);
        }
        info!(self.log, "database {}", if enabled { "enabled" } else { "disabled" }; "database" => shown);
        let entries = if done { vec![json!({ "Database": shown, "Enabled": enabled })] } else { Vec::new() };
        let mut response = Map::new();
        response.insert("Databases".into(), Value::Array(entries));
        response
    }

    /// The deadline a request asks for, or `flush_timeout`.
    fn deadline_of(&self, request: &Value) -> Duration {
        command::timeout_of(request).map(Duration::from_secs).unwrap_or(self.config.main.flush_timeout)
    }

    /// Answer one request.
    pub(super) fn execute(&mut self, request: &Value) -> (Value, After) {
        let started = Instant::now();
        let Some(command) = mgmt::command_of(request).and_then(Command::from_id) else {
            return (mgmt::reply_error(request, error_code::UNKNOWN_COMMAND), After::Nothing);
        };
        debug!(self.log, "management command"; "command" => command.name());
        let fail = |code: i64, why: &str| (mgmt::reply_error_with(request, code, why), After::Nothing);
        let mut after = After::Nothing;
        let response = match command {
            Command::Ping => Map::new(),
            Command::Status => self.status(false),
            Command::StatusDetails => self.status(true),
            Command::Gracefully => {
                after = After::StopGracefully(self.deadline_of(request));
                Map::new()
            }
            Command::Shutdown => {
                after = After::StopNow;
                Map::new()
            }
            Command::CancelShutdown => {
                self.cancel_stop();
                Map::new()
            }
            Command::Reload => match self.reload() {
                Ok(restart) => [("Restart".to_string(), json!(restart))].into_iter().collect(),
                Err(reason) => return fail(error_code::CONF_RELOAD_ERROR, &reason),
            },
            Command::DisableDb | Command::EnableDb => {
                self.enable(command == Command::EnableDb, command::database_of(request))
            }
            Command::Flush => {
                let mode = request.pointer("/Request/Mode").and_then(Value::as_i64).unwrap_or(1);
                let Some(mode) = FlushMode::from_code(mode) else {
                    return fail(error_code::BAD_PAYLOAD, "unknown flush mode");
                };
                let database = command::database_of(request);
                let timeout = self.deadline_of(request);
                let done = self.flush(mode, database.as_deref(), timeout);
                let mut response = Map::new();
                response.insert("Mode".into(), json!(mode.name()));
                response.insert("Database".into(), json!(database.as_deref().unwrap_or("*")));
                response.insert("Closed".into(), json!(done.closed));
                response.insert("Marked".into(), json!(done.marked));
                response.insert("Stopped".into(), json!(done.stopped));
                response
            }
            Command::SwitchTo | Command::ClearServer => {
                let server = request.pointer("/Request/Server").and_then(Value::as_str).unwrap_or("");
                let (done, code) = if command == Command::SwitchTo {
                    (self.switch_to(server), error_code::SWITCH_TO_FAILED)
                } else {
                    (self.clear_server(server), error_code::CLEAR_SERVER_ERROR)
                };
                if let Err(reason) = done {
                    return fail(code, &reason);
                }
                [("Server".to_string(), json!(server))].into_iter().collect()
            }
            // The counters the metrics will read are not kept yet: there is
            // nothing to reset, and the command succeeds as upstream's does.
            Command::Clear => {
                self.region.counters().clear();
                Map::new()
            }
            Command::ConfigLs => conf::ls(&self.files),
            Command::ConfigGet => conf::document(&self.config, &self.hba, &self.limits),
            Command::ConfigAlias => conf::alias(&self.limits),
            Command::ConfigSet => {
                let key = request.pointer("/Request/ConfigKey").and_then(Value::as_str);
                let value = request.pointer("/Request/ConfigValue").and_then(Value::as_str);
                let (Some(key), Some(value)) = (key, value) else {
                    return fail(error_code::CONF_SET_NOCONFIG_KEY_OR_VALUE, "ConfigKey and ConfigValue are required");
                };
                let (outcome, next) = conf::set(&self.config, &self.hba, &self.limits, key, value);
                let response = conf::set_response(key, &outcome);
                match (&outcome, next) {
                    (SetOutcome::Applied { old, new }, Some((config, hba))) => {
                        info!(self.log, "configuration changed"; "key" => key, "old" => old, "new" => new);
                        self.install(config, hba, None, None);
                    }
                    (SetOutcome::Invalid(why), _) => {
                        let mut reply = mgmt::reply_error_with(request, error_code::CONF_SET_ERROR, why);
                        if let Some(r) = reply.get_mut("Response").and_then(Value::as_object_mut) {
                            r.extend(response);
                        }
                        return (reply, After::Nothing);
                    }
                    _ => {}
                }
                response
            }
            _ => return (mgmt::reply_error(request, error_code::UNKNOWN_COMMAND), After::Nothing),
        };
        (mgmt::reply_ok(request, response, started.elapsed().as_secs()), after)
    }
}
