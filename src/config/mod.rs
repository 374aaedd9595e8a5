//! The daemon's configuration: `pgagroal.conf` read from pgagroal's INI
//! dialect or from a `.toml` file with the same sections and keys, checked
//! completely before anything is bound. Errors name the file, the line, the
//! key and what was expected; unknown keys become warnings.

pub mod error;
pub mod ini;
pub mod key_lines;
pub mod limits;
pub mod main_keys;
pub mod operations_keys;
pub mod paths;
pub mod pipeline;
pub mod reload;
mod toml_file;
pub mod value;

pub use error::ConfigError;
pub use key_lines::KeyLines;
pub use main_keys::{LogLevel, LogType, MainConfig, Pipeline, Validation};
pub use operations_keys::{LogFormat, ProcessTitle};
pub use paths::{ConfigFiles, FileOverrides};

use std::path::{Path, PathBuf};

/// Upper bound on server sections, as upstream.
pub const MAX_SERVERS: usize = 64;
/// Upper bound on `max_connections`, as upstream.
pub const MAX_CONNECTIONS_LIMIT: usize = 10_000;

/// One `[name]` server section.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerConfig {
    pub name: String,
    /// Host name or address; a value starting with `/` is a Unix socket directory.
    pub host: String,
    pub port: u16,
    /// Operator's hint that this server is the primary.
    pub primary: bool,
    /// Negotiate TLS with this server.
    pub tls: bool,
    /// CA certificates the server's certificate is verified against (with
    /// its host name); without it the connection is encrypted but the
    /// server is not verified.
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate and key to present to the server.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Line of the section header, for messages.
    pub line: usize,
}

impl ServerConfig {
    /// Whether the server is reached through a Unix socket directory.
    pub fn is_unix(&self) -> bool {
        self.host.starts_with('/')
    }

    /// `<dir>/.s.PGSQL.<port>` for Unix-socket servers.
    pub fn unix_path(&self) -> PathBuf {
        Path::new(&self.host).join(format!(".s.PGSQL.{}", self.port))
    }
}

/// The whole of `pgagroal.conf`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    pub main: MainConfig,
    pub servers: Vec<ServerConfig>,
    /// Path the configuration was read from.
    pub path: PathBuf,
    /// Where each key was written, for messages about combinations of keys.
    pub lines: Lines,
}

/// Where the keys of each section were written. Kept beside the values, so
/// that two configurations that say the same compare equal wherever their
/// lines are.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lines {
    /// `[pgagroal]`'s keys.
    pub main: KeyLines,
    /// Each server section's keys, in the order of `Config::servers`.
    pub servers: Vec<KeyLines>,
}

impl Config {
    /// The server new connections go to: the first marked primary, else the first.
    pub fn primary_server(&self) -> Option<(usize, &ServerConfig)> {
        self.servers.iter().enumerate().find(|(_, s)| s.primary).or_else(|| self.servers.iter().enumerate().next())
    }

    /// Where the keys of server section `index` were written.
    pub fn server_lines(&self, index: usize) -> KeyLines {
        let header = self.servers.get(index).map_or(0, |s| s.line);
        self.lines.servers.get(index).cloned().unwrap_or_else(|| KeyLines::new(header))
    }
}

/// A configuration plus the warnings found while reading it (unknown keys,
/// clamped values), to be logged once logging is set up.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Read and validate `pgagroal.conf` (INI) or `*.toml`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { file: path.to_path_buf(), source })?;
    parse(path, &text)
}

/// Parse configuration text; the format follows the file extension.
pub fn parse(path: &Path, text: &str) -> Result<Loaded, ConfigError> {
    let is_toml = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    let (sections, orphans) = if is_toml { toml_file::sections(path, text)? } else { ini::parse(path, text)? };
    from_sections(path, sections, orphans)
}

fn from_sections(path: &Path, sections: Vec<ini::Section>, orphans: Vec<ini::Entry>) -> Result<Loaded, ConfigError> {
    let mut warnings: Vec<String> = orphans
        .iter()
        .map(|e| format!("{}: line {}: key '{}' is outside any section and is ignored", path.display(), e.line, e.key))
        .collect();
    let invalid = |line: usize, key: &str, expected: String| ConfigError::Invalid {
        file: path.to_path_buf(),
        line,
        key: key.to_string(),
        expected,
    };

    let mut main: Option<(MainConfig, KeyLines)> = None;
    let mut servers: Vec<ServerConfig> = Vec::new();
    let mut server_lines: Vec<KeyLines> = Vec::new();
    for section in &sections {
        if section.name == "pgagroal" {
            let mut cfg = MainConfig::default();
            let mut lines = KeyLines::new(section.line);
            let mut seen = main_keys::Seen::default();
            for entry in &section.entries {
                match cfg.set(&entry.key, &entry.value) {
                    Ok(main_keys::Outcome::Applied) => {
                        seen.mark(&entry.key);
                        lines.record(&entry.key, entry.line);
                    }
                    Ok(main_keys::Outcome::NotYetEffective) => {
                        lines.record(&entry.key, entry.line);
                        warnings.push(format!(
                            "{}: line {}: key '{}' is recognised but has no effect in this version",
                            path.display(),
                            entry.line,
                            entry.key
                        ))
                    }
                    Ok(main_keys::Outcome::Unknown) => warnings.push(format!(
                        "{}: line {}: unknown key '{}' in [pgagroal] is ignored",
                        path.display(),
                        entry.line,
                        entry.key
                    )),
                    Err(expected) => return Err(invalid(entry.line, &entry.key, expected)),
                }
            }
            for key in ["host", "port", "unix_socket_dir"] {
                if !seen.has(key) {
                    return Err(ConfigError::Missing {
                        file: path.to_path_buf(),
                        section: "pgagroal".into(),
                        line: section.line,
                        key: key.into(),
                    });
                }
            }
            main = Some((cfg, lines));
        } else {
            let (server, lines) = server_section(path, section, &mut warnings)?;
            servers.push(server);
            server_lines.push(lines);
        }
    }

    let Some((mut main, main_lines)) = main else {
        return Err(ConfigError::Semantic {
            file: path.to_path_buf(),
            message: "no [pgagroal] section: it must hold host, port and unix_socket_dir".into(),
        });
    };
    if servers.is_empty() {
        return Err(ConfigError::Semantic {
            file: path.to_path_buf(),
            message: "no server section: add one such as [primary] with host and port".into(),
        });
    }
    if servers.len() > MAX_SERVERS {
        return Err(ConfigError::Semantic {
            file: path.to_path_buf(),
            message: format!("{} server sections; at most {MAX_SERVERS} are allowed", servers.len()),
        });
    }
    for (i, a) in servers.iter().enumerate() {
        if let Some(b) = servers[..i].iter().find(|b| b.host == a.host && b.port == a.port) {
            return Err(invalid(
                a.line,
                &format!("[{}]", a.name),
                format!("a server other than [{}] (line {}): both are {}:{}", b.name, b.line, a.host, a.port),
            ));
        }
    }
    if servers.iter().filter(|s| s.primary).count() > 1 {
        warnings.push(format!("{}: more than one server is marked primary; the first one is used", path.display()));
    }
    if main.max_connections == 0 {
        let line = main_lines.line("max_connections");
        return Err(invalid(line, "max_connections", "a number of connections above 0".into()));
    }
    if main.max_connections > MAX_CONNECTIONS_LIMIT {
        warnings.push(format!(
            "{}: line {}: max_connections {} is above the limit; using {MAX_CONNECTIONS_LIMIT}",
            path.display(),
            main_lines.line("max_connections"),
            main.max_connections
        ));
        main.max_connections = MAX_CONNECTIONS_LIMIT;
    }
    if main.tls && (main.tls_cert_file.is_none() || main.tls_key_file.is_none()) {
        let missing = if main.tls_cert_file.is_none() { "tls_cert_file" } else { "tls_key_file" };
        return Err(ConfigError::Conflict {
            file: path.to_path_buf(),
            line: main_lines.line("tls"),
            key: "tls".into(),
            message: format!("tls = on needs tls_cert_file and tls_key_file; {missing} is not set"),
        });
    }
    let lines = Lines { main: main_lines, servers: server_lines };
    let config = Config { main, servers, path: path.to_path_buf(), lines };
    warnings.extend(pipeline::check(&config)?);
    Ok(Loaded { config, warnings })
}

fn server_section(
    path: &Path,
    section: &ini::Section,
    warnings: &mut Vec<String>,
) -> Result<(ServerConfig, KeyLines), ConfigError> {
    let mut host = None;
    let mut port = None;
    let mut primary = false;
    let mut tls = false;
    let (mut tls_ca_file, mut tls_cert_file, mut tls_key_file) = (None, None, None);
    let mut lines = KeyLines::new(section.line);
    for entry in &section.entries {
        lines.record(&entry.key, entry.line);
        let invalid = |expected: String| ConfigError::Invalid {
            file: path.to_path_buf(),
            line: entry.line,
            key: entry.key.clone(),
            expected,
        };
        match entry.key.as_str() {
            "host" => {
                if entry.value.is_empty() {
                    return Err(invalid("a host name, address or socket directory".into()));
                }
                host = Some(entry.value.clone());
            }
            "port" => port = Some(value::parse_int::<u16>(&entry.value, "a port number 1-65535").map_err(invalid)?),
            "primary" => primary = value::parse_bool(&entry.value).map_err(invalid)?,
            "tls" => tls = value::parse_bool(&entry.value).map_err(invalid)?,
            "tls_ca_file" => tls_ca_file = Some(main_keys::path_value(&entry.value).map_err(invalid)?),
            "tls_cert_file" => tls_cert_file = Some(main_keys::path_value(&entry.value).map_err(invalid)?),
            "tls_key_file" => tls_key_file = Some(main_keys::path_value(&entry.value).map_err(invalid)?),
            "channel_binding" => warnings.push(format!(
                "{}: line {}: key '{}' in [{}] is recognised but has no effect in this version",
                path.display(),
                entry.line,
                entry.key,
                section.name
            )),
            other => warnings.push(format!(
                "{}: line {}: unknown key '{other}' in server section [{}] is ignored",
                path.display(),
                entry.line,
                section.name
            )),
        }
    }
    let missing = |key: &str| ConfigError::Missing {
        file: path.to_path_buf(),
        section: section.name.clone(),
        line: section.line,
        key: key.into(),
    };
    let host = host.ok_or_else(|| missing("host"))?;
    let port = port.ok_or_else(|| missing("port"))?;
    if port == 0 {
        return Err(ConfigError::Invalid {
            file: path.to_path_buf(),
            line: lines.line("port"),
            key: "port".into(),
            expected: "a port number 1-65535".into(),
        });
    }
    if tls && host.starts_with('/') {
        return Err(ConfigError::Conflict {
            file: path.to_path_buf(),
            line: lines.line("tls"),
            key: "tls".into(),
            message: format!(
                "tls = on in [{}] needs a TCP host, not the socket directory host = {}{}: PostgreSQL offers no TLS \
                 on Unix sockets",
                section.name,
                host,
                lines.at("host")
            ),
        });
    }
    if tls_cert_file.is_some() != tls_key_file.is_some() {
        let (set, unset) =
            if tls_cert_file.is_some() { ("tls_cert_file", "tls_key_file") } else { ("tls_key_file", "tls_cert_file") };
        return Err(ConfigError::Conflict {
            file: path.to_path_buf(),
            line: lines.line(set),
            key: set.into(),
            message: format!(
                "{set} in [{}] needs {unset} too: a client certificate and its key go together",
                section.name
            ),
        });
    }
    let server = ServerConfig {
        name: section.name.clone(),
        host,
        port,
        primary,
        tls,
        tls_ca_file,
        tls_cert_file,
        tls_key_file,
        line: section.line,
    };
    Ok((server, lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "[pgagroal]\nhost = *\nport = 2345\nunix_socket_dir = /tmp\n\
        max_connections = 8\nblocking_timeout = 2m\nlog_type = console\n\n[primary]\nhost = localhost\nport = 5432\n";

    #[test]
    fn reads_the_minimal_file() {
        let loaded = parse(Path::new("pgagroal.conf"), GOOD).expect("valid");
        let c = loaded.config;
        assert_eq!(c.main.port, 2345);
        assert_eq!(c.main.max_connections, 8);
        assert_eq!(c.main.blocking_timeout.as_secs(), 120);
        assert_eq!(c.servers.len(), 1);
        assert_eq!(c.primary_server().map(|(i, _)| i), Some(0));
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }

    #[test]
    fn unknown_keys_warn_by_name() {
        let text = GOOD.replace("log_type = console", "log_type = console\nfrobnicate = 1");
        let loaded = parse(Path::new("p.conf"), &text).expect("valid");
        assert!(loaded.warnings.iter().any(|w| w.contains("frobnicate")), "{:?}", loaded.warnings);
    }

    #[test]
    fn bad_values_name_file_line_key() {
        let text = GOOD.replace("max_connections = 8", "max_connections = eight");
        let err = parse(Path::new("p.conf"), &text).unwrap_err().to_string();
        assert!(err.contains("p.conf") && err.contains("line 5") && err.contains("max_connections"), "{err}");
    }

    #[test]
    fn missing_pieces_are_fatal() {
        assert!(parse(Path::new("p.conf"), "[pgagroal]\nhost=*\nport=1\n[s]\nhost=a\nport=1\n").is_err());
        assert!(parse(Path::new("p.conf"), "[pgagroal]\nhost=*\nport=1\nunix_socket_dir=/tmp\n").is_err());
        let dup = format!("{GOOD}[other]\nhost = localhost\nport = 5432\n");
        let err = parse(Path::new("p.conf"), &dup).unwrap_err().to_string();
        assert!(err.contains("[other]"), "{err}");
        let t = GOOD.replace("max_connections = 8", "max_connections = 0");
        assert!(parse(Path::new("p.conf"), &t).is_err());
        // The transaction pipeline relays no pass-through users.
        let t = GOOD.replace("max_connections = 8", "pipeline = transaction");
        assert!(parse(Path::new("p.conf"), &t).is_err());
        let t = GOOD.replace("max_connections = 8", "pipeline = transaction\nallow_unknown_users = off");
        assert!(parse(Path::new("p.conf"), &t).is_ok());
    }

    #[test]
    fn toml_has_the_same_keys() {
        let text = "[pgagroal]\nhost = \"*\"\nport = 2345\nunix_socket_dir = \"/tmp\"\nkeep_alive = false\n\
            blocking_timeout = \"10s\"\n\n[primary]\nhost = \"localhost\"\nport = 5432\nprimary = true\n";
        let loaded = parse(Path::new("pgagroal.toml"), text).expect("valid toml");
        assert_eq!(loaded.config.main.port, 2345);
        assert!(!loaded.config.main.keep_alive);
        assert!(loaded.config.servers[0].primary);
        let bad = text.replace("port = 2345", "port = \"many\"");
        let err = parse(Path::new("pgagroal.toml"), &bad).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("port"), "{err}");
    }
}
