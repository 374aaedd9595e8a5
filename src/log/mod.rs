//! Logging: a synchronous slog drain writing one line per record with a
//! single write(2), so lines from many forked processes never interleave and
//! no process can leave a lock held for another (a crash or a fork in the
//! middle of a line blocks nobody). Targets are the console (stderr), a file,
//! or syslog; lines are text or JSON (`format`). The file may be named by
//! a strftime pattern and rotated by size or age, each process noticing on
//! its own when another has rotated (`file`). There are no background
//! threads: the supervisor must stay single-threaded to fork safely.

mod file;
mod format;

use crate::config::{LogFormat, LogLevel, LogType, MainConfig};
use file::{LogFile, Rotation};
use format::Entry;
use slog::{Drain, Level, OwnedKVList, Record};
use std::io;
use std::os::fd::RawFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

static LOGGER: OnceLock<slog::Logger> = OnceLock::new();

#[derive(Clone, Copy)]
enum Target {
    Stderr,
    /// [`LOG_FILE`], opened by `init` and kept open for the life of the
    /// process (and inherited by workers).
    File,
    Syslog,
}

struct LineDrain {
    target: Target,
    prefix: String,
    /// The least severe level written; None: [`LEVEL`], the configured one.
    level: Option<Level>,
    format: LogFormat,
}

/// The configured `log_level` (slog's number), which a reload may change:
/// each process sets its own, and children start with their parent's
/// (0 before `init`: info).
static LEVEL: AtomicUsize = AtomicUsize::new(0);

/// Apply a new `log_level` in this process.
pub fn set_level(level: LogLevel) {
    LEVEL.store(slog_level(level).as_usize(), Ordering::Relaxed);
}

impl LineDrain {
    fn level(&self) -> Level {
        self.level.unwrap_or_else(|| Level::from_usize(LEVEL.load(Ordering::Relaxed)).unwrap_or(Level::Info))
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

/// Lines written per level (fatal, error, warn, info), for the metrics
/// (`pgagroal_logging_*`), in shared memory.
fn count(level: Level) {
    use crate::shmem::counters::{Event, record};
    match level {
        Level::Critical => record(Event::LogFatal),
        Level::Error => record(Event::LogError),
        Level::Warning => record(Event::LogWarn),
        Level::Info => record(Event::LogInfo),
        _ => {}
    }
}

impl LineDrain {
    /// The line for `entry`, with its newline; syslog stamps lines itself,
    /// so its text lines have no prefix.
    fn render(&self, entry: &Entry<'_>, now_ms: u64) -> String {
        let mut line = match self.format {
            LogFormat::Json => format::json_line(&format::rfc3339(now_ms), entry),
            LogFormat::Text if matches!(self.target, Target::Syslog) => format::text_line(None, entry),
            LogFormat::Text => {
                let prefix = crate::sys::format_local_time(&self.prefix, (now_ms / 1000) as i64);
                format::text_line(Some(&prefix), entry)
            }
        };
        if !matches!(self.target, Target::Syslog) {
            line.push('\n');
        }
        line
    }

    fn to_file(&self, log: &LogFile, entry: &Entry<'_>, now_ms: u64) {
        if let Some(failure) = log.prepare(now_ms)
            && Level::Warning.is_at_least(self.level())
        {
            let note = Entry {
                level: Level::Warning,
                file: file!(),
                line: line!(),
                msg: "cannot rotate the log file; writing on to the current one".into(),
                fields: vec![
                    ("path".into(), failure.path.display().to_string()),
                    ("error".into(), failure.error.to_string()),
                ],
            };
            count(note.level);
            let _ = log.write(self.render(&note, now_ms).as_bytes());
        }
        let _ = log.write(self.render(entry, now_ms).as_bytes());
    }
}

impl Drain for LineDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        if !record.level().is_at_least(self.level()) {
            return Ok(());
        }
        count(record.level());
        let entry = Entry::of(record, values);
        let now_ms = crate::sys::now_ms();
        match (self.target, LOG_FILE.get()) {
            (Target::File, Some(log)) => self.to_file(log, &entry, now_ms),
            (Target::Stderr | Target::File, _) => {
                let _ = file::write_fd(libc::STDERR_FILENO, self.render(&entry, now_ms).as_bytes());
            }
            (Target::Syslog, _) => {
                let priority = match record.level() {
                    Level::Critical => libc::LOG_CRIT,
                    Level::Error => libc::LOG_ERR,
                    Level::Warning => libc::LOG_WARNING,
                    Level::Info => libc::LOG_INFO,
                    _ => libc::LOG_DEBUG,
                };
                if let Ok(text) = std::ffi::CString::new(self.render(&entry, now_ms).replace('\0', " ")) {
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
            let rotation = Rotation {
                size: config.log_rotation_size,
                age_ms: u64::try_from(config.log_rotation_age.as_millis()).unwrap_or(u64::MAX),
            };
            let truncate = config.log_mode == crate::config::main_keys::LogMode::Create;
            let log = LogFile::open(&config.log_path, truncate, rotation, crate::sys::now_ms())?;
            if LOG_FILE.set(log).is_err() {
                return Err(io::Error::other("logger already initialised"));
            }
            Target::File
        }
        LogType::Syslog => {
            // SAFETY: the ident is a static C string, as openlog requires.
            unsafe { libc::openlog(c"pgagroal".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
            Target::Syslog
        }
    };
    let settings = Settings { target, prefix: config.log_line_prefix.clone(), level: None, format: config.log_format };
    set_level(config.log_level);
    let logger = settings.root();
    let _ = SETTINGS.set(settings);
    LOGGER.set(logger).map_err(|_| io::Error::other("logger already initialised"))
}

/// How lines are written; kept so a worker can build its own root logger.
struct Settings {
    target: Target,
    prefix: String,
    level: Option<Level>,
    format: LogFormat,
}

impl Settings {
    fn root(&self) -> slog::Logger {
        let drain =
            LineDrain { target: self.target, prefix: self.prefix.clone(), level: self.level, format: self.format };
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
    let drain = LineDrain {
        target: Target::Stderr,
        prefix: "%Y-%m-%d %H:%M:%S".into(),
        level: Some(Level::Info),
        format: LogFormat::Text,
    };
    slog::Logger::root(drain.fuse(), slog::o!())
}

/// The process-wide logger.
pub fn logger() -> &'static slog::Logger {
    LOGGER.get_or_init(fallback)
}

/// The log file, kept open for the life of the process. A rotation replaces
/// the file behind its descriptor but never the descriptor's number.
static LOG_FILE: OnceLock<LogFile> = OnceLock::new();

/// Descriptors the logger needs kept open across the post-fork cleanup.
pub fn kept_fds() -> Vec<RawFd> {
    LOG_FILE.get().map(LogFile::fd).into_iter().collect()
}

/// In a freshly forked child, before closing inherited descriptors: drop the
/// syslog connection so that a later syslog(3) reconnects instead of writing
/// into whatever descriptor reuses its number.
pub fn after_fork_in_child() {
    // SAFETY: closelog is safe to call at any time, even without openlog.
    unsafe { libc::closelog() };
}

#[cfg(test)]
mod level_tests {
    use slog::{Drain, Level, OwnedKVList, Record};
    use std::sync::Mutex;

    struct Levels(Mutex<Vec<Level>>);

    impl Drain for &Levels {
        type Ok = ();
        type Err = slog::Never;
        fn log(&self, record: &Record<'_>, _: &OwnedKVList) -> Result<(), slog::Never> {
            if let Ok(mut seen) = self.0.lock() {
                seen.push(record.level());
            }
            Ok(())
        }
    }

    /// `log_level = debug` and `trace` must find their lines compiled in;
    /// `cargo test --release` checks release builds the same way.
    #[test]
    fn every_level_reaches_the_drain() {
        let levels: &'static Levels = Box::leak(Box::new(Levels(Mutex::new(Vec::new()))));
        let log = slog::Logger::root(levels.fuse(), slog::o!());
        slog::trace!(log, "t");
        slog::debug!(log, "d");
        slog::info!(log, "i");
        let seen = levels.0.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(seen, vec![Level::Trace, Level::Debug, Level::Info]);
    }
}
