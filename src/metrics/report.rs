//! What `GET /metrics` reports: a [`Snapshot`] of the pool read from shared
//! memory (slots, wait queues, server states, event counters) and the
//! running configuration, rendered as upstream's families.

use super::certs::{CertFacts, CertSource};
use super::exposition::{Exposition, Kind};
use super::pools::PoolRow;
use crate::config::Config;
use crate::config::limits::Limits;
use crate::disconnect::{DISCONNECTS, Disconnect};
use crate::shmem::Region;
use crate::shmem::counters::{EVENTS, Event, Histogram, HistogramTotals};
use crate::shmem::pools::{Health, ServerReport, auth_label, monotonic_micros};
use crate::shmem::region::shutdown;
use crate::shmem::servers::ServerState;
use crate::shmem::slot::SlotState;
use std::sync::atomic::Ordering;

/// One slot as `pgagroal_connection` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRow {
    pub id: usize,
    pub state: &'static str,
    pub user: String,
    pub database: String,
    pub appname: String,
    /// Queries the connection answered (metrics on).
    pub queries: u64,
}

impl SlotRow {
    /// The labels naming the slot's connection, `id` being its id as text.
    fn labels<'a>(&'a self, id: &'a str) -> [(&'static str, &'a str); 4] {
        [("id", id), ("user", &self.user), ("database", &self.database), ("application_name", &self.appname)]
    }
}

/// One configured server as the server families show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRow {
    pub name: String,
    pub state: ServerState,
    pub facts: ServerReport,
}

/// One limits entry as `pgagroal_limit` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitRow {
    pub database: String,
    pub user: String,
    pub min: u32,
    pub initial: u32,
    pub max: u32,
    pub active: u32,
    pub awaiting: u64,
}

/// Everything one scrape reports, as plain data.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// 1 running, 2 graceful shutdown, 3 stopping.
    pub state: u32,
    /// 0 performance, 1 session, 2 transaction.
    pub pipeline: i64,
    pub max_connections: usize,
    pub active: u32,
    pub total: u32,
    pub slots: Vec<SlotRow>,
    pub limits: Vec<LimitRow>,
    /// Clients waiting for a connection, in every queue.
    pub awaiting: u64,
    /// Clients connected (past start-up, with a minted key).
    pub clients_active: u64,
    /// The last client's wait for a connection, in seconds.
    pub last_wait: f64,
    /// Client sockets workers serve (upstream's `client_sockets`).
    pub client_sockets: u64,
    /// Per (database, user) pool.
    pub pools: Vec<PoolRow>,
    /// Each server section.
    pub servers: Vec<ServerRow>,
    pub counters: [u64; EVENTS],
    /// Client connections ended, by reason.
    pub disconnects: [u64; DISCONNECTS],
    /// Each histogram, summed.
    pub histograms: Vec<(Histogram, HistogramTotals)>,
    /// Operating system name and kernel version.
    pub os: (String, u32, u32, u32),
    /// The configured certificate files and what they hold.
    pub certs: Vec<(CertSource, CertFacts)>,
    /// Seconds since the epoch when the snapshot was taken.
    pub now_unix: i64,
}

impl Snapshot {
    /// Read the pool as it is now.
    pub fn collect(region: &Region, config: &Config, limits: &Limits, os: (String, u32, u32, u32)) -> Snapshot {
        let table = region.slots();
        let counts = table.counts();
        let header = region.header();
        let state = match header.shutdown.load(Ordering::Relaxed) {
            shutdown::RUNNING => 1,
            shutdown::GRACEFUL => 2,
            _ => 3,
        };
        let slots: Vec<SlotRow> = table
            .iter()
            .map(|(id, slot)| {
                let info = slot.info().shown();
                SlotRow {
                    id: id.0 as usize,
                    state: info.word.state.name(),
                    user: info.user,
                    database: info.database,
                    appname: info.appname,
                    queries: info.queries,
                }
            })
            .collect();
        let limits = limits
            .entries
            .iter()
            .enumerate()
            .map(|(rule, e)| LimitRow {
                database: e.database.text().to_string(),
                user: e.user.text().to_string(),
                min: e.min_size,
                initial: e.initial_size,
                max: e.max_size,
                active: table.rule_count(rule),
                awaiting: region.queue(rule + 1).len(),
            })
            .collect::<Vec<_>>();
        let awaiting = (0..=limits.len()).map(|q| region.queue(q).len()).sum();
        let states = header.servers(config.servers.len());
        let block = region.counters();
        let unknown = ServerReport { errors: 0, health: Health::Unknown, auth: None, version: None };
        let servers = config
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| ServerRow {
                name: s.name.clone(),
                state: states.get(i),
                facts: block.server(i).map_or(unknown, |f| f.report()),
            })
            .collect();
        let sockets = region.clients().sockets();
        let pools = super::pools::rows(&sockets, |p| block.pools().names(p), &slots, monotonic_micros());
        let mut counters = [0u64; EVENTS];
        for (i, c) in counters.iter_mut().enumerate() {
            *c = block.total_at(i);
        }
        let disconnects = Disconnect::ALL.map(|why| block.disconnects(why));
        let histograms = Histogram::ALL.iter().map(|&h| (h, block.histogram(h))).collect();
        let sources = super::certs::sources(
            config.main.tls_cert_file.as_deref(),
            config.main.metrics_cert_file.as_deref(),
            config.servers.iter().map(|s| (s.name.as_str(), s.tls_cert_file.as_deref())),
        );
        let certs = sources
            .into_iter()
            .map(|source| {
                let facts = super::certs::inspect(&source.path);
                (source, facts)
            })
            .collect();
        Snapshot {
            certs,
            now_unix: crate::sys::now_secs(),
            client_sockets: sockets.len() as u64,
            pools,
            histograms,
            clients_active: region.clients().active_clients(),
            last_wait: block.last_wait().as_secs_f64(),
            state,
            pipeline: crate::config::operations_keys::code_of_pipeline(config.main.effective_pipeline()),
            max_connections: config.main.max_connections,
            active: counts.active(),
            total: counts.total(),
            slots,
            limits,
            awaiting,
            servers,
            counters,
            disconnects,
            os,
        }
    }

    /// A pool with nothing in it: every family, without samples of its own.
    fn empty() -> Snapshot {
        let zero = |h: Histogram| HistogramTotals { cumulative: vec![0; h.bounds().len()], sum_seconds: 0.0, count: 0 };
        Snapshot {
            state: 1,
            pipeline: 0,
            max_connections: 0,
            active: 0,
            total: 0,
            slots: Vec::new(),
            limits: Vec::new(),
            awaiting: 0,
            clients_active: 0,
            client_sockets: 0,
            pools: Vec::new(),
            last_wait: 0.0,
            servers: Vec::new(),
            counters: [0; EVENTS],
            disconnects: [0; DISCONNECTS],
            histograms: Histogram::ALL.iter().map(|&h| (h, zero(h))).collect(),
            os: (String::new(), 0, 0, 0),
            certs: Vec::new(),
            now_unix: 0,
        }
    }

    fn count(&self, event: Event) -> u64 {
        self.counters[event as usize]
    }
}

/// Upstream's event counters and their help texts.
const EVENT_FAMILIES: &[(&str, Event, &str)] = &[
    ("pgagroal_connection_error", Event::ConnectionError, "Number of connection errors"),
    ("pgagroal_connection_kill", Event::ConnectionKill, "Number of connection kills"),
    ("pgagroal_connection_remove", Event::ConnectionRemove, "Number of connection removes"),
    ("pgagroal_connection_timeout", Event::ConnectionTimeout, "Number of connection time outs"),
    ("pgagroal_connection_return", Event::ConnectionReturn, "Number of connection returns"),
    ("pgagroal_connection_invalid", Event::ConnectionInvalid, "Number of connection invalids"),
    ("pgagroal_connection_get", Event::ConnectionGet, "Number of connection gets"),
    ("pgagroal_connection_idletimeout", Event::ConnectionIdleTimeout, "Number of connection idle timeouts"),
    ("pgagroal_connection_max_connection_age", Event::ConnectionMaxAge, "Number of connection max age timeouts"),
    ("pgagroal_connection_flush", Event::ConnectionFlush, "Number of connection flushes"),
    ("pgagroal_connection_success", Event::ConnectionSuccess, "Number of connection successes"),
    ("pgagroal_auth_user_success", Event::AuthSuccess, "Number of successful user authentications"),
    ("pgagroal_auth_user_bad_password", Event::AuthBadPassword, "Number of bad passwords during user authentication"),
    ("pgagroal_auth_user_error", Event::AuthError, "Number of errors during user authentication"),
    ("pgagroal_query_count", Event::Query, "Query count"),
    ("pgagroal_tx_count", Event::Transaction, "Transaction count"),
];

/// Bytes relayed (upstream reports them as gauges).
const NETWORK_FAMILIES: &[(&str, Event, &str)] = &[
    ("pgagroal_network_sent", Event::NetworkSent, "Bytes sent to clients"),
    ("pgagroal_network_received", Event::NetworkReceived, "Bytes received from clients"),
];

/// Log lines by level (upstream reports them as gauges).
const LOG_FAMILIES: &[(&str, Event, &str)] = &[
    ("pgagroal_logging_info", Event::LogInfo, "The number of INFO logging statements"),
    ("pgagroal_logging_warn", Event::LogWarn, "The number of WARN logging statements"),
    ("pgagroal_logging_error", Event::LogError, "The number of ERROR logging statements"),
    ("pgagroal_logging_fatal", Event::LogFatal, "The number of FATAL logging statements"),
];

/// Restarts by actor kind (beyond upstream).
const RESTARTS: &[(&str, Event)] = &[
    ("idle", Event::RestartIdle),
    ("max-age", Event::RestartMaxAge),
    ("validation", Event::RestartValidation),
    ("maintenance", Event::RestartMaintenance),
    ("management", Event::RestartManagement),
    ("metrics", Event::RestartMetrics),
    ("worker", Event::RestartWorker),
];

/// `pgagroal_prepared_statements_total`'s `event` label for each counter.
const PREPARED: &[(&str, Event)] = &[
    ("client_parse", Event::PreparedClientParse),
    ("server_parse", Event::PreparedServerParse),
    ("bind", Event::PreparedBind),
    ("eviction", Event::PreparedEviction),
];

/// The exposition of a snapshot.
pub fn render(s: &Snapshot) -> String {
    let mut e = Exposition::new();
    e.single(
        "pgagroal_state",
        "The state of pgagroal (1 running, 2 graceful shutdown, 3 stopping)",
        Kind::Gauge,
        s.state,
    );
    e.single(
        "pgagroal_pipeline_mode",
        "The pipeline mode of pgagroal (0 performance, 1 session, 2 transaction)",
        Kind::Gauge,
        s.pipeline,
    );
    e.single(
        "pgagroal_server_reset_query_behavior_on_failure",
        "What happens when server_reset_query fails (0 discard: the connection is always closed)",
        Kind::Gauge,
        0,
    );
    servers(&mut e, &s.servers);
    for (name, event, help) in LOG_FAMILIES {
        e.single(name, help, Kind::Gauge, s.count(*event));
    }
    e.single("pgagroal_active_connections", "The number of active connections", Kind::Gauge, s.active);
    e.single("pgagroal_total_connections", "The total number of connections", Kind::Gauge, s.total);
    e.single("pgagroal_max_connections", "The maximum number of connections", Kind::Counter, s.max_connections);
    e.family("pgagroal_connection", "Connection information", Kind::Gauge);
    for slot in &s.slots {
        let id = slot.id.to_string();
        let [id, user, database, appname] = slot.labels(&id);
        let labels = [id, user, database, appname, ("state", slot.state)];
        e.sample("pgagroal_connection", &labels, u32::from(slot.state != SlotState::NotInit.name()));
    }
    e.family("pgagroal_connection_query_count", "Queries a connection has answered", Kind::Counter);
    for slot in &s.slots {
        let id = slot.id.to_string();
        e.sample("pgagroal_connection_query_count", &slot.labels(&id), slot.queries);
    }
    e.family("pgagroal_limit", "Limit for a database / user pair", Kind::Gauge);
    for l in &s.limits {
        for (kind, value) in [("min", l.min), ("initial", l.initial), ("max", l.max), ("active", l.active)] {
            e.sample("pgagroal_limit", &[("user", &l.user), ("database", &l.database), ("type", kind)], value);
        }
    }
    e.family("pgagroal_limit_awaiting", "Clients waiting for a connection of a database / user pair", Kind::Gauge);
    for l in &s.limits {
        e.sample("pgagroal_limit_awaiting", &[("user", &l.user), ("database", &l.database)], l.awaiting);
    }
    e.single("pgagroal_connection_awaiting", "Clients waiting for a connection", Kind::Gauge, s.awaiting);
    e.single("pgagroal_wait_time", "The last client's wait for a connection, in seconds", Kind::Gauge, s.last_wait);
    e.single("pgagroal_client_wait", "Clients waiting for a connection", Kind::Gauge, s.awaiting);
    e.single("pgagroal_client_active", "Clients connected", Kind::Gauge, s.clients_active);
    e.single("pgagroal_client_sockets", "Client sockets being served", Kind::Gauge, s.client_sockets);
    e.single("pgagroal_self_sockets", "Server connections pgagroal holds open", Kind::Gauge, s.total);
    pools(&mut e, &s.pools);
    for (name, event, help) in EVENT_FAMILIES {
        e.single(name, help, Kind::Counter, s.count(*event));
    }
    for (name, event, help) in NETWORK_FAMILIES {
        e.single(name, help, Kind::Gauge, s.count(*event));
    }
    e.family("pgagroal_actor_restarts_total", "Restarts of a crashed or hung actor, by actor", Kind::Counter);
    for (actor, event) in RESTARTS {
        e.sample("pgagroal_actor_restarts_total", &[("actor", actor)], s.count(*event));
    }
    e.family(
        "pgagroal_prepared_statements_total",
        "Named prepared statements under the transaction pipeline, by event",
        Kind::Counter,
    );
    for (event, counter) in PREPARED {
        e.sample("pgagroal_prepared_statements_total", &[("event", event)], s.count(*counter));
    }
    e.family("pgagroal_client_disconnects_total", "Client connections ended, by reason", Kind::Counter);
    for why in Disconnect::ALL {
        e.sample("pgagroal_client_disconnects_total", &[("reason", why.label())], s.disconnects[why as usize]);
    }
    for (h, totals) in &s.histograms {
        let (name, help) = histogram_family(*h);
        e.histogram(name, help, h.bounds(), &totals.cumulative, totals.sum_seconds, totals.count);
    }
    let (os, major, minor, patch) = &s.os;
    e.family("pgagroal_os_info", "The operating system", Kind::Gauge);
    let (major, minor, patch) = (major.to_string(), minor.to_string(), patch.to_string());
    e.sample("pgagroal_os_info", &[("os", os), ("major", &major), ("minor", &minor), ("patch", &patch)], 1);
    super::certs::render(&mut e, &s.certs, s.now_unix);
    e.finish()
}

/// The server families: upstream's errors, health, version and streaming.
fn servers(e: &mut Exposition, servers: &[ServerRow]) {
    e.family("pgagroal_server_error", "New connections to the server that could not be made", Kind::Counter);
    for s in servers {
        e.sample("pgagroal_server_error", &[("name", &s.name), ("state", s.state.label())], s.facts.errors);
    }
    e.family(
        "pgagroal_server_streaming",
        "Whether a standby streams from its primary (-1 primary, 0 no, 1 yes; standbys are not checked)",
        Kind::Gauge,
    );
    for s in servers.iter().filter(|s| s.state == ServerState::Primary) {
        e.sample("pgagroal_server_streaming", &[("name", &s.name)], -1);
    }
    let failed = servers.iter().filter(|s| s.state == ServerState::Failed).count();
    e.single("pgagroal_failed_servers", "The number of failed servers", Kind::Gauge, failed);
    e.family(
        "pgagroal_server_health",
        "The server's health as the last new connection found it (0 down, 1 up, 2 unknown)",
        Kind::Gauge,
    );
    for s in servers {
        let health = if s.state == ServerState::Failed { Health::Down } else { s.facts.health };
        e.sample("pgagroal_server_health", &[("server", &s.name), ("auth", auth_label(s.facts.auth))], health.value());
    }
    e.family("pgagroal_server_version", "The PostgreSQL major version of the server", Kind::Gauge);
    for s in servers {
        if let Some(version) = s.facts.version {
            e.sample("pgagroal_server_version", &[("server", &s.name)], version);
        }
    }
}

/// PgBouncer's SHOW POOLS as gauges, per (database, user) (beyond upstream).
fn pools(e: &mut Exposition, pools: &[PoolRow]) {
    type Gauge = fn(&PoolRow) -> f64;
    let families: [(&str, &str, Gauge); 5] = [
        ("pgagroal_pool_cl_active", "Clients of the pool served or idle between requests", |p| p.cl_active as f64),
        ("pgagroal_pool_cl_waiting", "Clients of the pool waiting for a server connection", |p| p.cl_waiting as f64),
        ("pgagroal_pool_sv_active", "Server connections of the pool in use by a client", |p| p.sv_active as f64),
        ("pgagroal_pool_sv_idle", "Server connections of the pool pooled and free", |p| p.sv_idle as f64),
        ("pgagroal_pool_maxwait_seconds", "How long the pool's longest-waiting client has waited", |p| p.maxwait),
    ];
    for (name, help, value) in families {
        e.family(name, help, Kind::Gauge);
        for p in pools {
            e.sample(name, &[("database", &p.database), ("user", &p.user)], value(p));
        }
    }
}

/// A histogram's family name and help.
fn histogram_family(h: Histogram) -> (&'static str, &'static str) {
    match h {
        Histogram::SessionTime => ("pgagroal_session_time_seconds", "Histogram of session times"),
        Histogram::WaitTime => {
            ("pgagroal_client_wait_seconds", "How long clients waited for a server connection (beyond upstream)")
        }
        Histogram::ConnectTime => {
            ("pgagroal_server_connect_seconds", "How long new server connections took to make (beyond upstream)")
        }
        Histogram::QueryTime => (
            "pgagroal_query_duration_seconds",
            "From a client's request to the server's ReadyForQuery, as the pooler sees it (beyond upstream)",
        ),
        Histogram::TransactionTime => (
            "pgagroal_transaction_duration_seconds",
            "From a transaction's first request to the ReadyForQuery that ends it (beyond upstream)",
        ),
    }
}

/// Every family `render` writes, with its help text (from the `# HELP`
/// lines of a pool with nothing in it), for the HTML overview.
pub fn families() -> Vec<(String, String)> {
    render(&Snapshot::empty())
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, help)| (name.to_string(), help.to_string()))
        .collect()
}

/// The HTML overview (`GET /`).
pub fn index_html() -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"><title>pgagroal metrics</title></head>\n<body>\n\
         <h1>pgagroal metrics</h1>\n<p><a href=\"/metrics\">/metrics</a></p>\n<table>\n",
    );
    for (name, help) in families() {
        out.push_str(&format!("<tr><td>{name}</td><td>{help}</td></tr>\n"));
    }
    out.push_str("</table>\n</body>\n</html>\n");
    out
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
