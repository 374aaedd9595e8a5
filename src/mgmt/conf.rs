//! `conf ls`, `conf get`, `conf set` and `conf alias`: the documents the
//! daemon answers with, in upstream 2.1's layout, and the CLI's selection of
//! one key from the whole configuration (`key`, `section.key`,
//! `section.context.key`).
//!
//! Durations and sizes are `{"value": N, "string_value": "30s"}`, enumerated
//! keys `{"value": code, "string_value": "name"}`, as upstream's newest
//! version writes them; `conf get KEY` prints the `string_value`.

use crate::config::limits::Limits;
use crate::config::paths::ConfigFiles;
use crate::config::{Config, operations_keys};
use crate::hba::{Address, Hba, Names};
use serde_json::{Map, Value, json};
use std::path::Path;
use std::time::Duration;

fn duration(d: Duration) -> Value {
    json!({ "value": d.as_secs(), "string_value": format!("{}s", d.as_secs()) })
}

fn size(bytes: u64) -> Value {
    json!({ "value": bytes, "string_value": format!("{bytes}B") })
}

fn named(code: i64, name: &str) -> Value {
    json!({ "value": code, "string_value": name })
}

fn path(p: Option<&Path>) -> Value {
    json!(p.map(|p| p.display().to_string()).unwrap_or_default())
}

/// Upstream keys this version reads without acting on, with upstream's
/// defaults as `conf get` shows them when the file does not set them.
const UNAPPLIED_DEFAULTS: &[(&str, &str)] = &[
    ("console", "0"),
    ("connection_retry_delay", "250"),
    ("failover_notify_script", ""),
    ("health_check", "false"),
    ("health_check_period", "30s"),
    ("health_check_timeout", "5s"),
    ("health_check_user", ""),
    ("startup_validation", "try"),
    ("ev_backend", "auto"),
    ("hugepage", "try"),
    ("tracker", "false"),
    ("track_prepared_statements", "false"),
    ("server_reset_query_always", "false"),
    ("server_reset_query_behavior_on_failure", "discard"),
    ("rotate_frontend_password_length", "8"),
];

/// The `[pgagroal]` section as `conf get` reports it.
fn main_section(config: &Config) -> Map<String, Value> {
    let m = &config.main;
    let mut out = Map::new();
    let mut put = |key: &str, value: Value| {
        out.insert(key.to_string(), value);
    };
    put("host", json!(m.host));
    put("port", json!(m.port));
    put("unix_socket_dir", path(Some(&m.unix_socket_dir)));
    put("management", json!(m.management));
    put("metrics", json!(m.metrics));
    put("metrics_cache_max_age", duration(m.metrics_cache_max_age));
    put("metrics_cache_max_size", size(m.metrics_cache_max_size));
    put("metrics_cert_file", path(m.metrics_cert_file.as_deref()));
    put("metrics_key_file", path(m.metrics_key_file.as_deref()));
    put("metrics_ca_file", path(m.metrics_ca_file.as_deref()));
    put("log_type", named(m.log_type as i64, m.log_type.name()));
    put("log_level", named(level_code(m.log_level), m.log_level.name()));
    put("log_path", path(Some(&m.log_path)));
    put("log_rotation_age", duration(m.log_rotation_age));
    put("log_rotation_size", size(m.log_rotation_size));
    put("log_line_prefix", json!(m.log_line_prefix));
    put(
        "log_mode",
        named(if m.log_mode == crate::config::main_keys::LogMode::Create { 0 } else { 1 }, m.log_mode.name()),
    );
    put("log_format", named(m.log_format as i64, m.log_format.name()));
    put("log_connections", json!(m.log_connections));
    put("log_disconnections", json!(m.log_disconnections));
    put("blocking_timeout", duration(m.blocking_timeout));
    put("idle_timeout", duration(m.idle_timeout));
    put("rotate_frontend_password_timeout", duration(m.rotate_frontend_password_timeout));
    put("max_connection_age", json!(m.max_connection_age.as_secs()));
    put("flush_timeout", duration(m.flush_timeout));
    put("validation", json!(m.validation as i64));
    put("background_interval", json!(m.background_interval.as_secs()));
    put("max_retries", json!(m.max_retries));
    put("max_connections", json!(m.max_connections));
    put("max_prepared_statements", json!(m.max_prepared_statements));
    put("allow_unknown_users", json!(m.allow_unknown_users));
    put("authentication_timeout", duration(m.authentication_timeout));
    put("pipeline", named(operations_keys::code_of_pipeline(m.pipeline), m.pipeline.name()));
    put("auth_query", json!(m.auth_query));
    put("failover", json!(m.failover));
    put("failover_script", path(m.failover_script.as_deref()));
    put("tls", json!(m.tls));
    put("tls_cert_file", path(m.tls_cert_file.as_deref()));
    put("tls_key_file", path(m.tls_key_file.as_deref()));
    put("tls_ca_file", path(m.tls_ca_file.as_deref()));
    put("keep_alive", json!(m.keep_alive));
    put("nodelay", json!(m.nodelay));
    put("backlog", json!(m.backlog()));
    put("server_reset_query", json!(m.server_reset_query));
    put("pidfile", path(Some(&m.pidfile())));
    put("update_process_title", named(m.update_process_title as i64, m.update_process_title.name()));
    put("disconnect_client", json!(m.disconnect_client));
    put("disconnect_client_force", json!(m.disconnect_client_force));
    for (key, default) in UNAPPLIED_DEFAULTS {
        let raw = m.unapplied.get(*key).map(String::as_str).unwrap_or(default);
        put(key, unapplied_value(key, raw));
    }
    out
}

/// An unapplied key's value in the shape upstream gives its type.
fn unapplied_value(key: &str, raw: &str) -> Value {
    use crate::config::value;
    match key {
        "health_check_period" | "health_check_timeout" => {
            value::parse_duration(raw).map(duration).unwrap_or_else(|_| json!(raw))
        }
        "console" | "connection_retry_delay" | "rotate_frontend_password_length" => {
            raw.parse::<i64>().map(|n| json!(n)).unwrap_or_else(|_| json!(raw))
        }
        "health_check" | "tracker" | "track_prepared_statements" | "server_reset_query_always" => {
            value::parse_bool(raw).map(|b| json!(b)).unwrap_or_else(|_| json!(raw))
        }
        _ => json!(raw),
    }
}

/// Upstream's numbers for log levels.
fn level_code(level: crate::config::LogLevel) -> i64 {
    use crate::config::LogLevel::*;
    match level {
        Trace => 1,
        Debug => 2,
        Info => 3,
        Warn => 4,
        Error => 5,
        Fatal => 6,
    }
}

fn names(n: &Names) -> String {
    match n {
        Names::All => "all".into(),
        Names::List(list) => list.join(","),
    }
}

/// The whole configuration: the `[pgagroal]` keys at the top, then
/// `server` (by section name), `limit` (by database) and `hba` (by user);
/// for repeated databases or users the last entry wins, as upstream.
pub fn document(config: &Config, hba: &Hba, limits: &Limits) -> Map<String, Value> {
    let mut out = main_section(config);
    let servers: Map<String, Value> = config
        .servers
        .iter()
        .map(|s| {
            let conf = json!({
                "host": s.host, "port": s.port, "primary": s.primary, "tls": s.tls,
                "tls_cert_file": path(s.tls_cert_file.as_deref()),
                "tls_key_file": path(s.tls_key_file.as_deref()),
                "tls_ca_file": path(s.tls_ca_file.as_deref()),
            });
            (s.name.clone(), conf)
        })
        .collect();
    out.insert("server".into(), Value::Object(servers));
    let limit: Map<String, Value> = limits
        .entries
        .iter()
        .map(|l| {
            let database = l.database.name().unwrap_or("all").to_string();
            let conf = json!({
                "database": database, "username": l.user.name().unwrap_or("all"),
                "max_size": l.max_size, "initial_size": l.initial_size, "min_size": l.min_size,
                "number_of_aliases": l.aliases.len(), "aliases": l.aliases,
            });
            (database, conf)
        })
        .collect();
    out.insert("limit".into(), Value::Object(limit));
    let entries: Map<String, Value> = hba
        .entries
        .iter()
        .map(|e| {
            let address = match e.address {
                Address::All => "all".to_string(),
                Address::Net(c) => format!("{}/{}", c.addr, c.prefix),
            };
            let conf = json!({
                "type": e.conn_type.name(), "database": names(&e.database), "username": names(&e.user),
                "address": address, "method": e.method.name(),
            });
            (names(&e.user), conf)
        })
        .collect();
    out.insert("hba".into(), Value::Object(entries));
    out
}

/// `conf ls`: where each file was read from (empty when there is none).
pub fn ls(files: &ConfigFiles) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("main_configuration_path".into(), path(Some(&files.main)));
    out.insert("hba_configuration_path".into(), path(Some(&files.hba)));
    out.insert("limit_configuration_path".into(), path(files.limit.as_deref()));
    out.insert("users_configuration_path".into(), path(files.users.as_deref()));
    out.insert("frontend_users_configuration_path".into(), path(files.frontend_users.as_deref()));
    out.insert("admin_configuration_path".into(), path(files.admins.as_deref()));
    out.insert("superuser_configuration_path".into(), path(files.superuser.as_deref()));
    out
}

/// The text `conf ls` prints.
pub fn ls_text(response: &Value) -> String {
    let rows = [
        ("Main Configuration file", "main_configuration_path"),
        ("HBA file", "hba_configuration_path"),
        ("Limit file", "limit_configuration_path"),
        ("Frontend users file", "frontend_users_configuration_path"),
        ("Admins file", "admin_configuration_path"),
        ("Superuser file", "superuser_configuration_path"),
        ("Users file", "users_configuration_path"),
    ];
    let mut out = String::new();
    for (label, key) in rows {
        let value = response.get(key).and_then(Value::as_str).unwrap_or("");
        out.push_str(format!("{:<27}{}", format!("{label}:"), value).trim_end());
        out.push('\n');
    }
    out
}

/// `conf alias`: each limits entry by database, with its aliases.
pub fn alias(limits: &Limits) -> Map<String, Value> {
    let databases: Map<String, Value> = limits
        .entries
        .iter()
        .map(|l| {
            let conf = json!({
                "username": l.user.name().unwrap_or("all"), "max_size": l.max_size,
                "initial_size": l.initial_size, "min_size": l.min_size, "aliases": l.aliases,
            });
            (l.database.name().unwrap_or("all").to_string(), conf)
        })
        .collect();
    let mut out = Map::new();
    out.insert("Databases".into(), Value::Object(databases));
    out
}

/// The table `conf alias` prints.
pub fn alias_text(response: &Value) -> String {
    let mut out = String::from("# DATABASE=ALIASES                           USER           MAX   INIT   MIN\n");
    out.push_str("#--------------------------------------------------------------------------\n");
    let Some(databases) = response.get("Databases").and_then(Value::as_object) else { return out };
    for (database, entry) in databases {
        let aliases: Vec<&str> =
            entry.get("aliases").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        let name = if aliases.is_empty() { database.clone() } else { format!("{database}={}", aliases.join(",")) };
        let field = |k: &str| entry.get(k).and_then(Value::as_i64).unwrap_or(0);
        let user = entry.get("username").and_then(Value::as_str).unwrap_or("");
        out.push_str(&format!(
            "{name:<44} {user:<14} {:>3} {:>6} {:>5}\n",
            field("max_size"),
            field("initial_size"),
            field("min_size")
        ));
    }
    out
}

/// A `conf get`/`conf set` key, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key<'a> {
    /// Empty for the `[pgagroal]` section.
    pub section: &'a str,
    pub context: &'a str,
    pub name: &'a str,
}

/// Split `key`, `section.key` or `section.context.key`; `pgagroal.key` is
/// the main section's key.
pub fn parse_key(key: &str) -> Option<Key<'_>> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    match parts.as_slice() {
        [name] => Some(Key { section: "", context: "", name }),
        [section, name] if section.eq_ignore_ascii_case("pgagroal") => Some(Key { section: "", context: "", name }),
        [section, name] => Some(Key { section, context: "", name }),
        [section, context, name] => Some(Key { section, context, name }),
        _ => None,
    }
}

/// What `conf get KEY` found in the daemon's `Response`: the text printed
/// and the value kept in the filtered JSON document.
#[derive(Debug, Clone, PartialEq)]
pub struct Selected {
    pub text: String,
    pub value: Value,
    pub name: String,
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Object(o) if o.contains_key("string_value") => {
            o.get("string_value").and_then(Value::as_str).unwrap_or("").to_string()
        }
        Value::Object(o) => {
            let parts: Vec<String> = o.iter().map(|(k, v)| format!("{k}: {}", text_of(v))).collect();
            parts.join(", ")
        }
        other => other.to_string(),
    }
}

/// Find `key` in the `Response` of `conf get`. A whole section (`server`,
/// `limit`, `hba`) is a key too.
pub fn select(response: &Value, key: &str) -> Option<Selected> {
    let k = parse_key(key)?;
    let scope = if k.section.is_empty() { response } else { response.get(k.section)? };
    let value =
        if k.context.is_empty() { scope.get(k.name)? } else { scope.get(k.context)?.as_object()?.get(k.name)? };
    if value.is_null() {
        return None;
    }
    Some(Selected { text: text_of(value), value: value.clone(), name: k.name.to_string() })
}

/// What `conf set` did.
#[derive(Debug, Clone, PartialEq)]
pub enum SetOutcome {
    /// The running configuration now holds the value.
    Applied { old: String, new: String },
    /// The value would only take effect after a restart; nothing changed.
    RestartRequired { current: String, requested: String },
    /// The key is unknown or the value does not parse.
    Invalid(String),
}

/// Apply `key = value` to a copy of the running configuration (and hba).
/// Keys a running pool cannot take give `RestartRequired` and change
/// nothing. On `Applied`, the new configuration and hba are returned.
pub fn set(
    running: &Config,
    hba: &Hba,
    limits: &Limits,
    key: &str,
    value: &str,
) -> (SetOutcome, Option<(Config, Hba)>) {
    let Some(k) = parse_key(key) else {
        return (SetOutcome::Invalid(format!("invalid key format: '{key}'")), None);
    };
    let before = document(running, hba, limits);
    let current = select(&Value::Object(before.clone()), key).map(|s| s.text);
    match k.section {
        "" => {
            let mut next = running.clone();
            match next.main.set(k.name, value) {
                Ok(crate::config::main_keys::Outcome::Applied) => {}
                Ok(crate::config::main_keys::Outcome::NotYetEffective) => {
                    return restart(current, value);
                }
                Ok(crate::config::main_keys::Outcome::Unknown) => {
                    return (SetOutcome::Invalid(format!("unknown configuration key: '{key}'")), None);
                }
                Err(expected) => return (SetOutcome::Invalid(format!("{key}: expected {expected}")), None),
            }
            let merged = crate::config::reload::merge(running, next);
            if !merged.needs_restart.is_empty() {
                return restart(current, value);
            }
            if let Err(e) = crate::config::pipeline::check(&merged.config) {
                return (SetOutcome::Invalid(e.to_string()), None);
            }
            let after = document(&merged.config, hba, limits);
            let new = select(&Value::Object(after), key).map(|s| s.text).unwrap_or_else(|| value.to_string());
            (SetOutcome::Applied { old: current.unwrap_or_default(), new }, Some((merged.config, hba.clone())))
        }
        "server" | "limit" => {
            if current.is_none() {
                return (SetOutcome::Invalid(format!("unknown configuration key: '{key}'")), None);
            }
            restart(current, value)
        }
        "hba" => {
            let Some(entry) = hba.entries.iter().position(|e| names(&e.user) == k.context) else {
                return (SetOutcome::Invalid(format!("no hba entry for user '{}'", k.context)), None);
            };
            let mut next = hba.clone();
            let done = match k.name {
                "method" => crate::hba::Method::parse(value).map(|m| next.entries[entry].method = m),
                _ => None,
            };
            if done.is_none() {
                return (SetOutcome::Invalid(format!("{key}: cannot be set to '{value}'")), None);
            }
            (
                SetOutcome::Applied { old: current.unwrap_or_default(), new: value.to_string() },
                Some((running.clone(), next)),
            )
        }
        _ => (SetOutcome::Invalid(format!("unknown configuration section: '{}'", k.section)), None),
    }
}

fn restart(current: Option<String>, requested: &str) -> (SetOutcome, Option<(Config, Hba)>) {
    (SetOutcome::RestartRequired { current: current.unwrap_or_default(), requested: requested.to_string() }, None)
}

/// The `Response` of `conf set`, upstream's keys.
pub fn set_response(key: &str, outcome: &SetOutcome) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("config_key".into(), json!(key));
    match outcome {
        SetOutcome::Applied { old, new } => {
            out.insert("status".into(), json!("success"));
            out.insert("old_value".into(), json!(old));
            out.insert("new_value".into(), json!(new));
            out.insert("restart_required".into(), json!(false));
            out.insert("message".into(), json!("Configuration change applied successfully"));
        }
        SetOutcome::RestartRequired { current, requested } => {
            out.insert("status".into(), json!("restart_required"));
            out.insert("current_value".into(), json!(current));
            out.insert("requested_value".into(), json!(requested));
            out.insert("restart_required".into(), json!(true));
            out.insert("message".into(), json!("Configuration change requires restart. Current values preserved."));
        }
        SetOutcome::Invalid(why) => {
            out.insert("status".into(), json!("error"));
            out.insert("message".into(), json!(why));
        }
    }
    out
}

/// The text `conf set` prints for a reply.
pub fn set_text(key: &str, reply: &Value) -> String {
    let r = reply.get("Response").cloned().unwrap_or(Value::Null);
    let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("unknown").to_string();
    match r.get("status").and_then(Value::as_str) {
        Some("success") => format!(
            "Configuration change applied successfully\n   Parameter: {key}\n   Old value: {}\n   New value: {}\n   Status: Active (applied to running instance)\n",
            s("old_value"),
            s("new_value")
        ),
        Some("restart_required") => format!(
            "Configuration change requires manual restart\n   Parameter: {key}\n   Current value: {} (unchanged in running instance)\n   Requested value: {} (cannot be applied to live instance)\n   Status: Requires full service restart\n",
            s("current_value"),
            s("requested_value")
        ),
        _ => format!(
            "Configuration change failed\n   {}\n   Valid formats: 'key', 'section.key', or 'section.context.key'\n",
            r.get("message").and_then(Value::as_str).unwrap_or("Invalid key format")
        ),
    }
}

#[cfg(test)]
#[path = "conf_tests.rs"]
mod tests;
