//! The `[pgagroal]` keys of operating the daemon: remote management, the
//! flush deadline, log rotation and format, process titles. Also the names
//! `conf get` prints for every enumerated key, as upstream's newest version
//! prints them.

use super::main_keys::{LogLevel, LogMode, LogType, MainConfig, Pipeline, Validation};
use super::value::{self, Expected};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LogFormat {
    /// `prefix LEVEL file:line message key=value...`, as upstream.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// What `ps` shows for each process (`update_process_title`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum ProcessTitle {
    /// Leave the command line as it was.
    Never,
    /// `user/database`, within the original command line's length.
    Strict,
    /// `user/database`.
    Minimal,
    /// `user@host:port/database`.
    Verbose,
}

impl MainConfig {
    /// Set one of this file's keys; None when `key` is not one of them.
    pub(super) fn set_operations_key(&mut self, key: &str, raw: &str) -> Option<Result<(), Expected>> {
        let done = match key {
            "management" => value::parse_int(raw, "a port number (0 = off)").map(|p| self.management = p),
            "metrics" => value::parse_int(raw, "a port number (0 = off)").map(|p| self.metrics = p),
            "metrics_cache_max_age" => value::parse_duration(raw).map(|d| self.metrics_cache_max_age = d),
            "metrics_cache_max_size" => value::parse_size(raw).map(|s| self.metrics_cache_max_size = s),
            "metrics_cert_file" => super::main_keys::path_value(raw).map(|p| self.metrics_cert_file = Some(p)),
            "metrics_key_file" => super::main_keys::path_value(raw).map(|p| self.metrics_key_file = Some(p)),
            "metrics_ca_file" => super::main_keys::path_value(raw).map(|p| self.metrics_ca_file = Some(p)),
            "flush_timeout" => value::parse_duration(raw).map(|d| self.flush_timeout = d),
            "log_rotation_age" => value::parse_duration(raw).map(|d| self.log_rotation_age = d),
            "log_rotation_size" => value::parse_size(raw).map(|s| self.log_rotation_size = s),
            "log_format" => match raw.to_ascii_lowercase().as_str() {
                "text" => Ok(LogFormat::Text),
                "json" => Ok(LogFormat::Json),
                _ => Err(format!("text or json, not '{raw}'")),
            }
            .map(|f| self.log_format = f),
            "update_process_title" => match raw.to_ascii_lowercase().as_str() {
                "never" | "off" => Ok(ProcessTitle::Never),
                "strict" => Ok(ProcessTitle::Strict),
                "minimal" => Ok(ProcessTitle::Minimal),
                "verbose" | "full" => Ok(ProcessTitle::Verbose),
                _ => Err(format!("never, off, strict, minimal, verbose or full, not '{raw}'")),
            }
            .map(|t| self.update_process_title = t),
            _ => return None,
        };
        Some(done)
    }
}

impl LogLevel {
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Fatal => "fatal",
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "debug5",
        }
    }
}

impl LogType {
    pub fn name(self) -> &'static str {
        match self {
            LogType::Console => "console",
            LogType::File => "file",
            LogType::Syslog => "syslog",
        }
    }
}

impl LogMode {
    pub fn name(self) -> &'static str {
        match self {
            LogMode::Append => "append",
            LogMode::Create => "create",
        }
    }
}

impl LogFormat {
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl ProcessTitle {
    pub fn name(self) -> &'static str {
        match self {
            ProcessTitle::Never => "never",
            ProcessTitle::Strict => "strict",
            ProcessTitle::Minimal => "minimal",
            ProcessTitle::Verbose => "verbose",
        }
    }
}

impl Validation {
    pub fn name(self) -> &'static str {
        match self {
            Validation::Off => "off",
            Validation::Foreground => "foreground",
            Validation::Background => "background",
        }
    }
}

/// Upstream's numbers for the enumerated keys (the `value` beside the name).
pub fn code_of_pipeline(p: Pipeline) -> i64 {
    match p {
        Pipeline::Auto => -1,
        Pipeline::Performance => 0,
        Pipeline::Session => 1,
        Pipeline::Transaction => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn operations_keys() {
        let mut c = MainConfig::default();
        assert_eq!(c.flush_timeout, Duration::from_secs(60));
        assert_eq!(c.update_process_title, ProcessTitle::Verbose);
        for (key, raw) in [
            ("management", "2346"),
            ("flush_timeout", "5m"),
            ("log_rotation_age", "1d"),
            ("log_rotation_size", "10M"),
            ("log_format", "JSON"),
            ("update_process_title", "off"),
        ] {
            assert_eq!(c.set(key, raw), Ok(super::super::main_keys::Outcome::Applied), "{key}");
        }
        assert_eq!(c.management, 2346);
        assert_eq!(c.flush_timeout, Duration::from_secs(300));
        assert_eq!(c.log_rotation_age, Duration::from_secs(86_400));
        assert_eq!(c.log_rotation_size, 10 << 20);
        assert_eq!((c.log_format, c.update_process_title), (LogFormat::Json, ProcessTitle::Never));
        assert!(c.set("log_format", "xml").is_err());
        assert!(c.set("management", "-1").is_err());
        assert!(c.set("update_process_title", "loud").is_err());
    }
}
