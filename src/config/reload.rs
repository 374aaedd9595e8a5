//! What a reload may change. Keys that shape sockets, shared memory or
//! logging keep their running values until a restart; everything else takes
//! effect for clients that start after the reload. The pipeline that runs
//! and the limits file's rules are kept too.

use super::limits::Limits;
use super::{Config, ServerConfig};

/// The outcome of merging a freshly read configuration into the running one.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The configuration to run with from now on.
    pub config: Config,
    /// Keys whose new value waits for a restart (empty when none changed).
    pub needs_restart: Vec<&'static str>,
}

/// Merge `new` into `running`: restart-only keys keep their running values.
pub fn merge(running: &Config, mut new: Config) -> Reloaded {
    let mut needs_restart = Vec::new();
    let (old, next) = (&running.main, &mut new.main);
    macro_rules! keep {
        ($($field:ident => $key:literal),* $(,)?) => {
            $(
                if old.$field != next.$field {
                    needs_restart.push($key);
                    next.$field = old.$field.clone();
                }
            )*
        };
    }
    keep!(
        host => "host",
        port => "port",
        unix_socket_dir => "unix_socket_dir",
        max_connections => "max_connections",
        max_prepared_statements => "max_prepared_statements",
        log_type => "log_type",
        log_path => "log_path",
        log_mode => "log_mode",
        log_line_prefix => "log_line_prefix",
        log_rotation_age => "log_rotation_age",
        log_rotation_size => "log_rotation_size",
        log_format => "log_format",
        management => "management",
        metrics => "metrics",
        metrics_cert_file => "metrics_cert_file",
        metrics_key_file => "metrics_key_file",
        metrics_ca_file => "metrics_ca_file",
        pidfile => "pidfile",
        backlog => "backlog",
        tls => "tls",
        tls_cert_file => "tls_cert_file",
        tls_key_file => "tls_key_file",
        tls_ca_file => "tls_ca_file",
    );
    // The pipeline that runs is kept, whichever keys changed it: `auto`
    // resolves anew from failover, disconnect_client and tls.
    let pipeline = old.effective_pipeline();
    if next.effective_pipeline() != pipeline {
        needs_restart.push("pipeline");
        next.pipeline = pipeline;
    }
    if !same_servers(&running.servers, &new.servers) {
        needs_restart.push("server sections");
        new.servers = running.servers.clone();
        new.lines.servers = running.lines.servers.clone();
    }
    Reloaded { config: new, needs_restart }
}

/// Whether two lists of server sections say the same, wherever their
/// lines are.
fn same_servers(a: &[ServerConfig], b: &[ServerConfig]) -> bool {
    let unplaced = |s: &ServerConfig| ServerConfig { line: 0, ..s.clone() };
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| unplaced(x) == unplaced(y))
}

/// What a reload does with the limits file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitsReload {
    /// The same rules (perhaps written elsewhere in the file).
    Same,
    /// New sizes or aliases, or entries added at the end: clients that
    /// start afterwards get them. Every running entry stays at its place,
    /// so the connections made under it keep counting against it.
    Apply,
    /// An entry moved, was replaced or removed: its place (which running
    /// connections, workers started before the reload and wait queues are
    /// keyed by) would mean another entry, or none. The running limits are
    /// kept; the text says why.
    Restart(String),
}

/// Compare a reloaded limits file with the running one.
pub fn limits_reload(running: &Limits, new: &Limits) -> LimitsReload {
    if running.same_rules(new) {
        return LimitsReload::Same;
    }
    let moved =
        running.entries.iter().enumerate().find(|(i, a)| new.entries.get(*i).is_none_or(|b| !a.same_identity(b)));
    match moved {
        None => LimitsReload::Apply,
        Some((i, entry)) => {
            let file = if new.path.as_os_str().is_empty() { &running.path } else { &new.path };
            LimitsReload::Restart(format!(
                "{}: entry {} is no longer \"{} {}\" (a reload may change entries' sizes and aliases and add \
                 entries at the end; moving, replacing or removing one needs a restart); the running limits are kept",
                file.display(),
                i + 1,
                entry.database.text(),
                entry.user.text(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Pipeline;
    use std::path::Path;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[pgagroal]\nhost = *\nport = 2345\nunix_socket_dir = /tmp\n{extra}\n[primary]\nhost = localhost\nport = 5432\n"
        );
        crate::config::parse(Path::new("p.conf"), &text).expect("valid").config
    }

    #[test]
    fn restart_keys_keep_their_running_values() {
        let running = config("max_connections = 8\nblocking_timeout = 5");
        let reloaded = merge(&running, config("max_connections = 16\nblocking_timeout = 9"));
        assert_eq!(reloaded.needs_restart, vec!["max_connections"]);
        assert_eq!(reloaded.config.main.max_connections, 8);
        assert_eq!(reloaded.config.main.blocking_timeout.as_secs(), 9, "other keys take effect");
        let same = merge(&running, running.clone());
        assert!(same.needs_restart.is_empty());
    }

    #[test]
    fn the_running_pipeline_is_kept() {
        let running = config("pipeline = auto");
        assert!(merge(&running, config("pipeline = performance")).needs_restart.is_empty(), "same pipeline");
        let reloaded = merge(&running, config("failover = on"));
        assert_eq!(reloaded.needs_restart, vec!["pipeline"]);
        assert_eq!(reloaded.config.main.effective_pipeline(), Pipeline::Performance);
        // The merged configuration is checked again: performance cannot fail over.
        assert!(crate::config::pipeline::check(&reloaded.config).is_err());
        let reloaded = merge(&running, config("pipeline = session"));
        assert_eq!(reloaded.config.main.pipeline, Pipeline::Performance);
    }

    #[test]
    fn moved_server_lines_are_no_change() {
        let running = config("");
        let moved = config("\n# a comment\n");
        assert_ne!(running.servers[0].line, moved.servers[0].line);
        assert!(merge(&running, moved).needs_restart.is_empty());
        let other = config("").servers[0].clone();
        let mut changed = config("");
        changed.servers[0] = ServerConfig { port: 5433, ..other };
        assert_eq!(merge(&running, changed).needs_restart, vec!["server sections"]);
    }

    #[test]
    fn limits_keep_each_entry_at_its_place() {
        let parse = |text: &str| Limits::parse(Path::new("l.conf"), text, 10).expect("limits").0;
        let running = parse("db alice 4\nother bob 2\n");
        assert_eq!(limits_reload(&running, &parse("# moved\ndb alice 4\nother bob 2\n")), LimitsReload::Same);
        assert_eq!(limits_reload(&running, &parse("db=app alice 5 1 1\nother bob 3\n")), LimitsReload::Apply);
        assert_eq!(limits_reload(&running, &parse("db alice 4\nother bob 2\nthird carol 1\n")), LimitsReload::Apply);
        assert!(matches!(limits_reload(&running, &parse("db alice 4\n")), LimitsReload::Restart(_)), "a removed entry");
        assert!(matches!(limits_reload(&running, &Limits::default()), LimitsReload::Restart(_)), "a removed file");
        assert_eq!(limits_reload(&Limits::default(), &parse("db alice 4\n")), LimitsReload::Apply, "a new file");
        let LimitsReload::Restart(why) = limits_reload(&running, &parse("other bob 2\ndb alice 4\n")) else {
            panic!("a moved entry applied")
        };
        assert!(why.contains("l.conf") && why.contains("entry 1") && why.contains("\"db alice\""), "{why}");
        assert!(matches!(limits_reload(&running, &parse("db alice 4\nother carol 2\n")), LimitsReload::Restart(_)));
        assert_eq!(limits_reload(&Limits::default(), &Limits::default()), LimitsReload::Same);
    }
}
