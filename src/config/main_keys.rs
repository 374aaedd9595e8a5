//! The `[pgagroal]` section: every key this version acts on, with upstream's
//! defaults, and the list of upstream keys that are recognised but not yet
//! acted on (they warn instead of being reported as unknown).

use super::value::{self, Expected};
use std::path::PathBuf;
use std::time::Duration;

pub use super::operations_keys::{LogFormat, ProcessTitle};

/// Which relay runs between client and server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Pipeline {
    Auto,
    Performance,
    Session,
    Transaction,
}

impl Pipeline {
    pub fn name(self) -> &'static str {
        match self {
            Pipeline::Auto => "auto",
            Pipeline::Performance => "performance",
            Pipeline::Session => "session",
            Pipeline::Transaction => "transaction",
        }
    }
}

/// When server connections are tested with a trivial query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Validation {
    Off,
    /// When a client checks a connection out.
    Foreground,
    /// Every `background_interval`, on idle connections.
    Background,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LogType {
    Console,
    File,
    Syslog,
}

/// pgagroal's levels; `debug2`..`debug5` and `trace` are all the most verbose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum LogLevel {
    Fatal,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LogMode {
    Append,
    Create,
}

/// Values of the `[pgagroal]` section.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MainConfig {
    /// Address to listen on; `*` means every IPv4 and IPv6 address.
    pub host: String,
    pub port: u16,
    /// Directory of `.s.PGSQL.<port>`, the management socket and the default pid file.
    pub unix_socket_dir: PathBuf,
    /// Number of slots, hence of server connections at most.
    pub max_connections: usize,
    pub pipeline: Pipeline,
    pub log_type: LogType,
    pub log_level: LogLevel,
    pub log_path: PathBuf,
    pub log_mode: LogMode,
    /// strftime pattern put before each log line.
    pub log_line_prefix: String,
    pub log_connections: bool,
    pub log_disconnections: bool,
    /// How long a client may wait for a slot before "connection pool is full".
    pub blocking_timeout: Duration,
    /// How long a client has to finish its startup and authentication.
    pub authentication_timeout: Duration,
    pub keep_alive: bool,
    pub nodelay: bool,
    /// listen(2) backlog; None means max(max_connections / 4, 16).
    pub backlog: Option<u32>,
    /// None means `<unix_socket_dir>/pgagroal.<port>.pid`.
    pub pidfile: Option<PathBuf>,
    /// Query run when a session ends and its server connection goes back to the pool.
    pub server_reset_query: String,
    /// Whether users absent from the users file may connect (their
    /// authentication is relayed to the server).
    pub allow_unknown_users: bool,
    /// Fetch users' secrets from the server with the superuser's connection.
    pub auth_query: bool,
    /// Offer TLS to clients (SSLRequest answered 'S').
    pub tls: bool,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// CA certificates client certificates are verified against; set, it
    /// makes a client certificate mandatory for TLS clients.
    pub tls_ca_file: Option<PathBuf>,
    /// Run `failover_script` when the primary cannot be reached.
    pub failover: bool,
    pub failover_script: Option<PathBuf>,
    /// Seconds a client may stay idle before it is disconnected; 0 = never.
    /// Read and checked (it shapes the pipeline), not acted on yet.
    pub disconnect_client: u64,
    /// Disconnect clients after `disconnect_client` even when active.
    pub disconnect_client_force: bool,
    /// Attempts at a slot when `blocking_timeout` is 0.
    pub max_retries: u32,
    /// Transaction pipeline: named prepared statements kept on each server
    /// connection (least recently used closed beyond it); 0 turns the
    /// rewriting of named statements off.
    pub max_prepared_statements: usize,
    pub validation: Validation,
    /// Period of background validation.
    pub background_interval: Duration,
    /// Close pooled connections idle longer than this; 0 = never.
    pub idle_timeout: Duration,
    /// Close pooled connections older than this; 0 = never.
    pub max_connection_age: Duration,
    /// Replace frontend passwords this often; 0 = never.
    pub rotate_frontend_password_timeout: Duration,
    /// Remote management TCP port; 0 = off.
    pub management: u16,
    /// Prometheus metrics TCP port; 0 = off.
    pub metrics: u16,
    /// How long a scrape's body may be served again; 0 = never cached.
    pub metrics_cache_max_age: Duration,
    /// Largest body kept in the cache.
    pub metrics_cache_max_size: u64,
    /// TLS for the metrics port: certificate, key and (to require client
    /// certificates) CA.
    pub metrics_cert_file: Option<PathBuf>,
    pub metrics_key_file: Option<PathBuf>,
    pub metrics_ca_file: Option<PathBuf>,
    /// Deadline of a graceful flush or shutdown when the request names
    /// none; 0 = unbounded.
    pub flush_timeout: Duration,
    /// Start a new log file after this long; 0 = never.
    pub log_rotation_age: Duration,
    /// Start a new log file past this many bytes; 0 = never.
    pub log_rotation_size: u64,
    /// Plain lines, or one JSON object per line (beyond upstream).
    pub log_format: LogFormat,
    pub update_process_title: ProcessTitle,
    /// Upstream keys read but not acted on yet, as written, for `conf get`.
    pub unapplied: std::collections::BTreeMap<String, String>,
}

impl Default for MainConfig {
    fn default() -> Self {
        MainConfig {
            host: String::new(),
            port: 0,
            unix_socket_dir: PathBuf::new(),
            max_connections: 100,
            pipeline: Pipeline::Auto,
            log_type: LogType::Console,
            log_level: LogLevel::Info,
            log_path: PathBuf::from("pgagroal.log"),
            log_mode: LogMode::Append,
            log_line_prefix: "%Y-%m-%d %H:%M:%S".into(),
            log_connections: false,
            log_disconnections: false,
            blocking_timeout: Duration::from_secs(30),
            authentication_timeout: Duration::from_secs(5),
            keep_alive: true,
            nodelay: true,
            backlog: None,
            pidfile: None,
            server_reset_query: "DISCARD ALL".into(),
            allow_unknown_users: true,
            auth_query: false,
            tls: false,
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_file: None,
            failover: false,
            failover_script: None,
            disconnect_client: 0,
            disconnect_client_force: false,
            max_retries: 5,
            max_prepared_statements: 200,
            validation: Validation::Off,
            background_interval: Duration::from_secs(300),
            idle_timeout: Duration::ZERO,
            max_connection_age: Duration::ZERO,
            rotate_frontend_password_timeout: Duration::ZERO,
            management: 0,
            metrics: 0,
            metrics_cache_max_age: Duration::ZERO,
            metrics_cache_max_size: 256 * 1024,
            metrics_cert_file: None,
            metrics_key_file: None,
            metrics_ca_file: None,
            flush_timeout: Duration::from_secs(60),
            log_rotation_age: Duration::ZERO,
            log_rotation_size: 0,
            log_format: LogFormat::Text,
            update_process_title: ProcessTitle::Verbose,
            unapplied: Default::default(),
        }
    }
}

/// Largest `max_prepared_statements`: each server connection's table of
/// statements is sized from it in shared memory.
pub const MAX_PREPARED_STATEMENTS: usize = 10_000;

/// What `set` did with a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// A key of upstream pgagroal that this version reads but does not act on.
    NotYetEffective,
    Unknown,
}

/// Keys of upstream's `[pgagroal]` section that are accepted without effect
/// and without a check of their value.
const NOT_YET_EFFECTIVE: &[&str] = &[
    "console",
    "connection_retry_delay",
    "failover_notify_script",
    "health_check",
    "health_check_period",
    "health_check_timeout",
    "health_check_user",
    "startup_validation",
    "ev_backend",
    "hugepage",
    "tracker",
    "track_prepared_statements",
    "server_reset_query_always",
    "server_reset_query_behavior_on_failure",
    "rotate_frontend_password_length",
];

/// Which required keys were present.
#[derive(Default)]
pub struct Seen(Vec<String>);

impl Seen {
    pub fn mark(&mut self, key: &str) {
        self.0.push(key.to_string());
    }
    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|k| k == key)
    }
}

pub(crate) fn path_value(value: &str) -> Result<PathBuf, Expected> {
    if value.is_empty() {
        return Err("a path".into());
    }
    value::expand_env(value).map(PathBuf::from)
}

impl MainConfig {
    /// Apply one `key = value`; an error is the description of what was expected.
    pub fn set(&mut self, key: &str, raw: &str) -> Result<Outcome, Expected> {
        if self.set_checked_only(key, raw)? {
            return Ok(Outcome::NotYetEffective);
        }
        if let Some(done) = self.set_operations_key(key, raw) {
            return done.map(|()| Outcome::Applied);
        }
        match key {
            "failover" => self.failover = value::parse_bool(raw)?,
            "failover_script" => self.failover_script = Some(path_value(raw)?),
            "validation" => {
                self.validation = match raw.to_ascii_lowercase().as_str() {
                    "off" => Validation::Off,
                    "foreground" => Validation::Foreground,
                    "background" => Validation::Background,
                    _ => return Err(format!("off, foreground or background, not '{raw}'")),
                }
            }
            "background_interval" => self.background_interval = value::parse_duration(raw)?,
            "idle_timeout" => self.idle_timeout = value::parse_duration(raw)?,
            "max_connection_age" => self.max_connection_age = value::parse_duration(raw)?,
            "host" => {
                if raw.is_empty() {
                    return Err("an address to listen on, or '*'".into());
                }
                self.host = raw.to_string();
            }
            "port" => {
                self.port = value::parse_int(raw, "a port number 1-65535")?;
                if self.port == 0 {
                    return Err("a port number 1-65535".into());
                }
            }
            "unix_socket_dir" => self.unix_socket_dir = path_value(raw)?,
            "max_connections" => self.max_connections = value::parse_int(raw, "a number of connections above 0")?,
            "pipeline" => {
                self.pipeline = match raw.to_ascii_lowercase().as_str() {
                    "auto" => Pipeline::Auto,
                    "performance" => Pipeline::Performance,
                    "session" => Pipeline::Session,
                    "transaction" => Pipeline::Transaction,
                    _ => return Err(format!("auto, performance, session or transaction, not '{raw}'")),
                }
            }
            "log_type" => {
                self.log_type = match raw.to_ascii_lowercase().as_str() {
                    "console" => LogType::Console,
                    "file" => LogType::File,
                    "syslog" => LogType::Syslog,
                    _ => return Err(format!("console, file or syslog, not '{raw}'")),
                }
            }
            "log_level" => self.log_level = parse_level(raw)?,
            "log_path" => self.log_path = path_value(raw)?,
            "log_mode" => {
                self.log_mode = match raw.to_ascii_lowercase().as_str() {
                    "append" => LogMode::Append,
                    "create" => LogMode::Create,
                    _ => return Err(format!("append or create, not '{raw}'")),
                }
            }
            "log_line_prefix" => self.log_line_prefix = raw.to_string(),
            "log_connections" => self.log_connections = value::parse_bool(raw)?,
            "log_disconnections" => self.log_disconnections = value::parse_bool(raw)?,
            "blocking_timeout" => self.blocking_timeout = value::parse_duration(raw)?,
            "authentication_timeout" => {
                let timeout = value::parse_duration(raw)?;
                // Upstream treats 0 as the default rather than "wait forever".
                self.authentication_timeout = if timeout.is_zero() { Duration::from_secs(5) } else { timeout };
            }
            "keep_alive" => self.keep_alive = value::parse_bool(raw)?,
            "nodelay" => self.nodelay = value::parse_bool(raw)?,
            "backlog" => {
                let backlog: u32 = value::parse_int(raw, "a listen backlog above 0")?;
                if backlog == 0 {
                    return Err("a listen backlog above 0".into());
                }
                self.backlog = Some(backlog);
            }
            "pidfile" => self.pidfile = Some(path_value(raw)?),
            "server_reset_query" => self.server_reset_query = raw.to_string(),
            "allow_unknown_users" => self.allow_unknown_users = value::parse_bool(raw)?,
            "auth_query" => self.auth_query = value::parse_bool(raw)?,
            "tls" => self.tls = value::parse_bool(raw)?,
            "tls_cert_file" => self.tls_cert_file = Some(path_value(raw)?),
            "tls_key_file" => self.tls_key_file = Some(path_value(raw)?),
            "tls_ca_file" => self.tls_ca_file = Some(path_value(raw)?),
            "disconnect_client" => self.disconnect_client = value::parse_int(raw, "a number of seconds (0 = off)")?,
            "disconnect_client_force" => self.disconnect_client_force = value::parse_bool(raw)?,
            "max_retries" => self.max_retries = value::parse_int(raw, "a number of retries")?,
            "max_prepared_statements" => {
                let n: usize = value::parse_int(raw, "a number of statements 0-10000 (0 = off)")?;
                if n > MAX_PREPARED_STATEMENTS {
                    return Err("a number of statements 0-10000 (0 = off)".into());
                }
                self.max_prepared_statements = n;
            }
            _ if NOT_YET_EFFECTIVE.contains(&key) => {
                self.unapplied.insert(key.to_string(), raw.to_string());
                return Ok(Outcome::NotYetEffective);
            }
            _ => return Ok(Outcome::Unknown),
        }
        Ok(Outcome::Applied)
    }

    /// Keys whose values are read and checked, since other keys' rules
    /// depend on them, but which this version does not act on yet. Returns
    /// whether `key` is one of them.
    fn set_checked_only(&mut self, key: &str, raw: &str) -> Result<bool, Expected> {
        match key {
            "rotate_frontend_password_timeout" => self.rotate_frontend_password_timeout = value::parse_duration(raw)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Prepared statements kept per server connection: only the
    /// transaction pipeline tracks them.
    pub fn prepared_statement_capacity(&self) -> usize {
        if self.effective_pipeline() == Pipeline::Transaction { self.max_prepared_statements } else { 0 }
    }

    /// The listen backlog actually used.
    pub fn backlog(&self) -> u32 {
        self.backlog.unwrap_or_else(|| ((self.max_connections / 4) as u32).max(16))
    }

    /// The pid file actually used.
    pub fn pidfile(&self) -> PathBuf {
        self.pidfile.clone().unwrap_or_else(|| self.unix_socket_dir.join(format!("pgagroal.{}.pid", self.port)))
    }

    /// `.s.PGSQL.<port>` for clients.
    pub fn client_socket_path(&self) -> PathBuf {
        self.unix_socket_dir.join(format!(".s.PGSQL.{}", self.port))
    }

    /// `.s.pgagroal`, the local management socket.
    pub fn management_socket_path(&self) -> PathBuf {
        self.unix_socket_dir.join(".s.pgagroal")
    }

    /// The pipeline `pipeline` stands for: `auto` resolved (see
    /// [`super::pipeline::resolve`]), never [`Pipeline::Auto`].
    pub fn effective_pipeline(&self) -> Pipeline {
        super::pipeline::resolve(self)
    }
}

fn parse_level(raw: &str) -> Result<LogLevel, Expected> {
    let lower = raw.to_ascii_lowercase();
    Ok(match lower.as_str() {
        "fatal" => LogLevel::Fatal,
        "error" => LogLevel::Error,
        "warn" | "warning" => LogLevel::Warn,
        "info" => LogLevel::Info,
        "debug" | "debug1" => LogLevel::Debug,
        "trace" => LogLevel::Trace,
        _ if lower.starts_with("debug") && lower[5..].parse::<u32>().is_ok() => LogLevel::Trace,
        _ => return Err(format!("fatal, error, warn, info, debug, debug1-5 or trace, not '{raw}'")),
    })
}

#[cfg(test)]
#[path = "main_keys_tests.rs"]
mod tests;
