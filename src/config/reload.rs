//! What a reload may change. Keys that shape sockets, shared memory or
//! logging keep their running values until a restart; everything else takes
//! effect for clients that start after the reload.

use super::Config;

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
        pipeline => "pipeline",
        log_type => "log_type",
        log_path => "log_path",
        log_level => "log_level",
        pidfile => "pidfile",
        backlog => "backlog",
        tls => "tls",
        tls_cert_file => "tls_cert_file",
        tls_key_file => "tls_key_file",
        tls_ca_file => "tls_ca_file",
    );
    if running.servers != new.servers {
        needs_restart.push("server sections");
        new.servers = running.servers.clone();
    }
    Reloaded { config: new, needs_restart }
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
