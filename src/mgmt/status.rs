//! `status` and `status details`: the documents the daemon answers with, in
//! upstream 2.1's layout (`ActiveConnections`, `TotalConnections`,
//! `MaxConnections`, `NumberOfServers`, `Servers`, and with `details` also
//! `Limits`, `Databases` and one `Connections` entry per slot).

use serde_json::{Map, Value, json};

/// One configured server as `status` reports it.
#[derive(Debug, Clone)]
pub struct ServerStatus {
    pub name: String,
    pub host: String,
    pub port: u16,
    /// "Primary", "Replica", "Not init", ...
    pub state: &'static str,
}

/// The `Response` of `status`.
pub fn status_response(
    counts: &crate::shmem::Counts,
    max_connections: usize,
    servers: &[ServerStatus],
    graceful_shutdown: bool,
) -> Map<String, Value> {
    let servers: Vec<Value> =
        servers.iter().map(|s| json!({ "Host": s.host, "Port": s.port, "Server": s.name, "State": s.state })).collect();
    let mut response = Map::new();
    response.insert("ActiveConnections".into(), json!(counts.active()));
    response.insert("MaxConnections".into(), json!(max_connections));
    response.insert("NumberOfServers".into(), json!(servers.len()));
    response.insert("Servers".into(), Value::Array(servers));
    response.insert("Status".into(), json!(if graceful_shutdown { "Graceful shutdown" } else { "Running" }));
    response.insert("TotalConnections".into(), json!(counts.total()));
    response
}

/// One slot as `status details` reports it.
#[derive(Debug, Clone)]
pub struct ConnectionRow {
    /// Upstream's state name ("free", "in_use", "gracefully", ...).
    pub state: &'static str,
    /// Seconds since the epoch when the connection was made (0: none).
    pub start_time: u64,
    /// Seconds since the epoch when it last changed hands.
    pub timestamp: u64,
    /// The process holding it.
    pub pid: i32,
    /// The supervisor's descriptor of the connection (-1: none).
    pub fd: i32,
    pub database: String,
    pub user: String,
    /// The application name of the client that last took it.
    pub appname: String,
}

/// One limits entry with the connections it holds now.
#[derive(Debug, Clone)]
pub struct LimitRow {
    pub database: String,
    pub user: String,
    pub active: u32,
    pub max: u32,
    pub initial: u32,
    pub min: u32,
}

/// Add `status details`' keys to a `status` response.
pub fn add_details(
    response: &mut Map<String, Value>,
    connections: &[ConnectionRow],
    limits: &[LimitRow],
    disabled: (bool, Vec<String>),
) {
    let limits: Vec<Value> = limits
        .iter()
        .map(|l| {
            json!({ "Database": l.database, "Username": l.user, "ActiveConnections": l.active,
                    "MaxConnections": l.max, "InitialConnections": l.initial, "MinConnections": l.min })
        })
        .collect();
    response.insert("Limits".into(), Value::Array(limits));
    let (all_disabled, names) = disabled;
    let databases: Vec<Value> = if names.is_empty() {
        vec![json!({ "Database": "*", "Enabled": !all_disabled })]
    } else {
        names.iter().map(|d| json!({ "Database": d, "Enabled": false })).collect()
    };
    response.insert("Databases".into(), Value::Array(databases));
    let connections: Vec<Value> = connections
        .iter()
        .map(|c| {
            json!({ "State": c.state, "StartTime": c.start_time, "Timestamp": c.timestamp, "PID": c.pid,
                    "FD": c.fd, "Database": c.database, "Username": c.user, "AppName": c.appname })
        })
        .collect();
    response.insert("Connections".into(), Value::Array(connections));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_follow_upstream_keys() {
        let mut r = Map::new();
        let row = ConnectionRow {
            state: "in_use",
            start_time: 10,
            timestamp: 20,
            pid: 7,
            fd: 9,
            database: "db".into(),
            user: "u".into(),
            appname: "psql".into(),
        };
        let limit = LimitRow { database: "db".into(), user: "u".into(), active: 1, max: 4, initial: 2, min: 1 };
        add_details(&mut r, &[row], &[limit], (false, vec!["x".into()]));
        assert_eq!(r["Connections"][0]["State"], json!("in_use"));
        assert_eq!(r["Connections"][0]["PID"], json!(7));
        assert_eq!(r["Connections"][0]["AppName"], json!("psql"));
        assert_eq!(r["Limits"][0]["MaxConnections"], json!(4));
        assert_eq!(r["Databases"], json!([{ "Database": "x", "Enabled": false }]));
        add_details(&mut r, &[], &[], (true, vec![]));
        assert_eq!(r["Databases"], json!([{ "Database": "*", "Enabled": false }]));
    }
}
