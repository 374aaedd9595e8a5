//! Which pipeline runs and the keys each one accepts.
//!
//! `pipeline = auto` resolves to `session` when a key needs it (client TLS
//! with its certificate and key, `failover`, `disconnect_client`), else to
//! `performance`. An explicit `performance` refuses those keys. `transaction`
//! shares one server connection between the transactions of many clients,
//! so the pooler must log in to servers by itself: it refuses pass-through
//! users (`allow_unknown_users = on`) and needs a users file (or
//! `auth_query`); it also refuses server-side TLS and `disconnect_client`,
//! and warns about keys that work against sharing. Unlike upstream it needs
//! no limits file and no prefill: connections are opened on demand.
//!
//! [`check`] needs only `pgagroal.conf` and runs when it is read;
//! [`check_files`] needs the users and limits files and runs once the
//! daemon has read them. Every error names the line of the key at fault and
//! the line of the key it conflicts with.

use super::limits::Limits;
use super::{Config, ConfigError, KeyLines, MainConfig, Pipeline, Validation};
use std::time::Duration;

/// The pipeline `main.pipeline` stands for; never [`Pipeline::Auto`].
pub fn resolve(main: &MainConfig) -> Pipeline {
    match main.pipeline {
        Pipeline::Auto if needs_session(main) => Pipeline::Session,
        Pipeline::Auto => Pipeline::Performance,
        explicit => explicit,
    }
}

/// Keys the performance pipeline cannot serve.
fn needs_session(main: &MainConfig) -> bool {
    (main.tls && main.tls_cert_file.is_some() && main.tls_key_file.is_some())
        || main.failover
        || main.disconnect_client > 0
}

/// Builds errors and warnings about `key` against `pipeline = NAME`.
struct Rules<'a> {
    config: &'a Config,
    pipeline: Pipeline,
}

impl Rules<'_> {
    fn main(&self) -> &MainConfig {
        &self.config.main
    }

    fn lines(&self) -> &KeyLines {
        &self.config.lines.main
    }

    /// "pipeline = NAME (line N)"; without the line when the message is
    /// already on it.
    fn pipeline_text(&self, with_line: bool) -> String {
        let at = if with_line { self.lines().at("pipeline") } else { String::new() };
        match self.main().pipeline {
            Pipeline::Auto => format!("pipeline = auto{at}, which resolves to {},", self.pipeline.name()),
            p => format!("pipeline = {}{at}", p.name()),
        }
    }

    /// The line of `key`, else (when it holds its default) of `pipeline`,
    /// and the text of the pipeline key for a message on that line.
    fn placed(&self, key: &str, value: &str) -> (usize, String, String) {
        let lines = self.lines();
        match lines.get(key) {
            Some(line) => (line, format!("{key} = {value}"), self.pipeline_text(true)),
            None => (lines.line("pipeline"), format!("{key} = {value} (the default)"), self.pipeline_text(false)),
        }
    }

    /// `key` set to `value` cannot be used with this pipeline.
    fn refuse(&self, key: &str, value: &str, why: &str) -> ConfigError {
        let (line, setting, pipeline) = self.placed(key, value);
        let at_fault = if self.lines().get(key).is_some() { key } else { "pipeline" };
        ConfigError::Conflict {
            file: self.config.path.clone(),
            line,
            key: at_fault.to_string(),
            message: format!("{setting} cannot be used with {pipeline}: {why}"),
        }
    }

    /// `key = value` works against this pipeline.
    fn discourage(&self, key: &str, value: &str, why: &str) -> String {
        let (line, setting, pipeline) = self.placed(key, value);
        format!("{}: line {line}: {setting} is not recommended with {pipeline}: {why}", self.config.path.display())
    }
}

fn duration_text(d: Duration) -> String {
    if d.subsec_millis() == 0 { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
}

/// The rules that need only `pgagroal.conf`; returns warnings.
pub fn check(config: &Config) -> Result<Vec<String>, ConfigError> {
    let main = &config.main;
    let rules = Rules { config, pipeline: resolve(main) };
    let mut warnings = Vec::new();
    match rules.pipeline {
        Pipeline::Performance => {
            const USE_SESSION: &str = "use pipeline = session (or auto)";
            if main.failover {
                let why = format!("the performance pipeline does not fail over; {USE_SESSION}");
                return Err(rules.refuse("failover", "on", &why));
            }
            if main.tls {
                let why = format!("the performance pipeline does not speak TLS to clients; {USE_SESSION}");
                return Err(rules.refuse("tls", "on", &why));
            }
            if main.disconnect_client > 0 {
                let why = format!("the performance pipeline does not track idle clients; {USE_SESSION}");
                return Err(rules.refuse("disconnect_client", &main.disconnect_client.to_string(), &why));
            }
        }
        Pipeline::Transaction => {
            if let Some((index, server)) = config.servers.iter().enumerate().find(|(_, s)| s.tls) {
                return Err(ConfigError::Conflict {
                    file: config.path.clone(),
                    line: config.server_lines(index).line("tls"),
                    key: "tls".into(),
                    message: format!(
                        "tls = on in server section [{}] cannot be used with {}: a TLS server connection stays \
                         with the worker that opened it, and the transaction pipeline passes connections between \
                         workers",
                        server.name,
                        rules.pipeline_text(true)
                    ),
                });
            }
            if main.disconnect_client > 0 {
                let why = "a client between two transactions holds no server connection to cancel; use \
                           pipeline = session";
                return Err(rules.refuse("disconnect_client", &main.disconnect_client.to_string(), why));
            }
            if main.allow_unknown_users && !main.auth_query {
                let why = "the transaction pipeline logs in to servers by itself, so every user needs its \
                           password in the users file (-u) or auth_query = on; set allow_unknown_users = off";
                return Err(rules.refuse("allow_unknown_users", "on", why));
            }
            if !main.blocking_timeout.is_zero() {
                let why = "clients wait for a server connection at every transaction, so while the pool is \
                           full each transaction may wait this long before it starts";
                warnings.push(rules.discourage("blocking_timeout", &duration_text(main.blocking_timeout), why));
            }
            let closes = "closing shared connections makes the transactions that follow open new ones";
            if !main.idle_timeout.is_zero() {
                warnings.push(rules.discourage("idle_timeout", &duration_text(main.idle_timeout), closes));
            }
            if !main.max_connection_age.is_zero() {
                warnings.push(rules.discourage("max_connection_age", &duration_text(main.max_connection_age), closes));
            }
            if !main.rotate_frontend_password_timeout.is_zero() {
                let why = "clients keep connecting for every session while their passwords change under them";
                let value = duration_text(main.rotate_frontend_password_timeout);
                warnings.push(rules.discourage("rotate_frontend_password_timeout", &value, why));
            }
            if main.validation == Validation::Foreground {
                let why = "it adds a round trip to the server before every transaction";
                warnings.push(rules.discourage("validation", "foreground", why));
            }
        }
        Pipeline::Session | Pipeline::Auto => {}
    }
    Ok(warnings)
}

/// The rules that need the other files, run once they are read: `users`
/// are the names in the users file (`-u`, empty when there is none),
/// `limits` the limits file when there is one. Returns warnings.
pub fn check_files(config: &Config, users: &[&str], limits: Option<&Limits>) -> Result<Vec<String>, ConfigError> {
    let main = &config.main;
    let rules = Rules { config, pipeline: resolve(main) };
    if rules.pipeline == Pipeline::Transaction && !main.auth_query && users.is_empty() {
        let lines = &config.lines.main;
        return Err(ConfigError::Conflict {
            file: config.path.clone(),
            line: lines.line("pipeline"),
            key: "pipeline".into(),
            message: format!(
                "{} needs a users file (-u) with at least one user, or auth_query = on{}: the transaction \
                 pipeline logs in to servers by itself",
                rules.pipeline_text(false),
                lines.at("auth_query")
            ),
        });
    }
    if let Some(limits) = limits {
        limits.check_prefill_users(&|user| users.contains(&user))?;
    }
    check_failover(config)?;
    Ok(Vec::new())
}

/// `failover = on` needs a second server to fail over to and a
/// `failover_script` the daemon can run, as upstream requires.
fn check_failover(config: &Config) -> Result<(), ConfigError> {
    let main = &config.main;
    if !main.failover {
        return Ok(());
    }
    let lines = &config.lines.main;
    let refuse = |message: String| ConfigError::Conflict {
        file: config.path.clone(),
        line: lines.line("failover"),
        key: "failover".into(),
        message: format!("failover = on {message}"),
    };
    if config.servers.len() < 2 {
        return Err(refuse("needs at least two server sections: there is no server to fail over to".into()));
    }
    let Some(script) = &main.failover_script else {
        return Err(refuse("needs failover_script, the program run to promote the new primary".into()));
    };
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(script) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(_) => Err(refuse(format!(
            "needs an executable failover_script{}: {} is not an executable file",
            lines.at("failover_script"),
            script.display()
        ))),
        Err(e) => {
            Err(refuse(format!("needs failover_script{}: {}: {e}", lines.at("failover_script"), script.display())))
        }
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
