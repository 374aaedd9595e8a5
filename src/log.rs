//! Logging: a synchronous slog drain writing one line per record with a
//! single write(2), so lines from many forked processes never interleave.
//! Targets are the console (stderr), a file opened for append, or syslog.
//! There are no background threads: the supervisor must stay single-threaded
//! to fork safely.

use crate::config::{LogLevel, LogType, MainConfig};
use slog::{Drain, KV, Level, OwnedKVList, Record};
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static LOGGER: OnceLock<slog::Logger> = OnceLock::new();

/// Lines written per level (fatal, error, warn, info), for the metrics.
pub static LINES: [AtomicU64; 4] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

#[derive(Clone, Copy)]
enum Target {
    Stderr,
    /// The log file, opened once by `init` and kept open for the life of
    /// the process (and inherited by workers).
    File(RawFd),
    Syslog,
}

struct LineDrain {
    target: Target,
    prefix: String,
    level: Level,
}

/// Collects `key=value` pairs; slog hands them over last first.
struct KvLine(Vec<String>);

impl slog::Serializer for KvLine {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments<'_>) -> slog::Result {
        self.0.push(format!(" {key}={val}"));
        Ok(())
    }
}

impl KvLine {
    fn append_to(self, line: &mut String) {
        for pair in self.0.into_iter().rev() {
            line.push_str(&pair);
        }
    }
}

fn slog_level(level: LogLevel) -> Level {
    match level {
        LogLevel::Fatal => Level::Critical,
        LogLevel::Error => Level::Error,
        LogLevel::Warn => Level::Warning,
        LogLevel::Info => Level::Info,
        LogLevel::Debug => Level::Debug,
        LogLevel::Trace => Level::Trace,
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Critical => "FATAL",
        Level::Error => "ERROR",
        Level::Warning => "WARN ",
        Level::Info => "INFO ",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    }
}

impl Drain for LineDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        if !record.level().is_at_least(self.level) {
            return Ok(());
        }
        let counter = match record.level() {
            Level::Critical => Some(0),
            Level::Error => Some(1),
            Level::Warning => Some(2),
            Level::Info => Some(3),
            _ => None,
        };
        if let Some(i) = counter {
            LINES[i].fetch_add(1, Ordering::Relaxed);
        }
        let mut line = String::with_capacity(160);
        if !matches!(self.target, Target::Syslog) {
            line.push_str(&crate::sys::format_local_time(&self.prefix, crate::sys::now_secs()));
            line.push(' ');
        }
        let _ = write!(line, "{} {}:{} {}", level_name(record.level()), record.file(), record.line(), record.msg());
        let mut own = KvLine(Vec::new());
        let _ = record.kv().serialize(record, &mut own);
        own.append_to(&mut line);
        let mut context = KvLine(Vec::new());
        let _ = values.serialize(record, &mut context);
        context.append_to(&mut line);
        match &self.target {
            Target::Stderr => {
                line.push('\n');
                let _ = io::stderr().lock().write_all(line.as_bytes());
            }
            Target::File(fd) => {
                line.push('\n');
                // SAFETY: the descriptor stays open for the life of the
                // process (see LOG_FILE); ManuallyDrop keeps this borrowed
                // File from closing it.
                let file =
                    std::mem::ManuallyDrop::new(unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(*fd) });
                let _ = (&*file).write_all(line.as_bytes());
            }
            Target::Syslog => {
                let priority = match record.level() {
                    Level::Critical => libc::LOG_CRIT,
                    Level::Error => libc::LOG_ERR,
                    Level::Warning => libc::LOG_WARNING,
                    Level::Info => libc::LOG_INFO,
                    _ => libc::LOG_DEBUG,
                };
                if let Ok(text) = std::ffi::CString::new(line.replace('\0', " ")) {
                    // SAFETY: "%s" with one valid C string argument.
                    unsafe { libc::syslog(priority, c"%s".as_ptr(), text.as_ptr()) };
                }
            }
        }
        Ok(())
    }
}

/// Set up the process-wide logger from the configuration. Called once, before
/// the first fork.
pub fn init(config: &MainConfig) -> io::Result<()> {
    let target = match config.log_type {
        LogType::Console => Target::Stderr,
        LogType::File => {
            let mut options = std::fs::OpenOptions::new();
            options.create(true);
            match config.log_mode {
                crate::config::main_keys::LogMode::Append => options.append(true),
                crate::config::main_keys::LogMode::Create => options.write(true).truncate(true),
            };
            let file = options.open(&config.log_path).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot open log_path {}: {e}", config.log_path.display()))
            })?;
            let fd = file.as_raw_fd();
            let _ = LOG_FILE.set(file);
            Target::File(fd)
        }
        LogType::Syslog => {
            // SAFETY: the ident is a static C string, as openlog requires.
            unsafe { libc::openlog(c"pgagroal".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
            Target::Syslog
        }
    };
    let settings = Settings { target, prefix: config.log_line_prefix.clone(), level: slog_level(config.log_level) };
    let logger = settings.root();
    let _ = SETTINGS.set(settings);
    LOGGER.set(logger).map_err(|_| io::Error::other("logger already initialised"))
}

/// How lines are written; kept so a worker can build its own root logger.
struct Settings {
    target: Target,
    prefix: String,
    level: Level,
}

impl Settings {
    fn root(&self) -> slog::Logger {
        let drain = LineDrain { target: self.target, prefix: self.prefix.clone(), level: self.level };
        slog::Logger::root(drain.fuse(), slog::o!())
    }
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// A root logger built anew in the calling process. A forked worker uses it
/// instead of [`logger`]: deriving from the supervisor's logger would write
/// reference counts into pages shared with the supervisor (copying them).
pub fn fresh_root() -> slog::Logger {
    match SETTINGS.get() {
        Some(settings) => settings.root(),
        None => fallback(),
    }
}

/// A console logger for tools and for errors before the configuration is read.
fn fallback() -> slog::Logger {
    let drain = LineDrain { target: Target::Stderr, prefix: "%Y-%m-%d %H:%M:%S".into(), level: Level::Info };
    slog::Logger::root(drain.fuse(), slog::o!())
}

/// The process-wide logger.
pub fn logger() -> &'static slog::Logger {
    LOGGER.get_or_init(fallback)
}

/// The log file, kept open for the life of the process.
static LOG_FILE: OnceLock<std::fs::File> = OnceLock::new();

/// Descriptors the logger needs kept open across the post-fork cleanup.
pub fn kept_fds() -> Vec<RawFd> {
    LOG_FILE.get().map(|f| f.as_raw_fd()).into_iter().collect()
}

/// In a freshly forked child, before closing inherited descriptors: drop the
/// syslog connection so that a later syslog(3) reconnects instead of writing
/// into whatever descriptor reuses its number.
pub fn after_fork_in_child() {
    // SAFETY: closelog is safe to call at any time, even without openlog.
    unsafe { libc::closelog() };
}
