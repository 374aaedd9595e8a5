//! The log file: named by a strftime pattern, rotated by size or age, and
//! followed when another process rotated it.
//!
//! Every process (supervisor, workers, services) holds its own descriptor
//! and its own bookkeeping; nothing is shared but the file system, so
//! processes agree through names and inodes only, without locks. Before a
//! line is written a process looks (only when rotation is configured) at
//! its descriptor (fstat: size, inode) and, when its own rotation is due or
//! once a second, at the name the pattern gives now (stat):
//!
//! - the name points at another inode: someone rotated (or the pattern moved
//!   on to a file that exists): reopen it, appending;
//! - the name points at our own inode and a rotation is due: rename the file
//!   aside to `<name>.<YYYYmmddHHMMSS>[.N]` and open a fresh one;
//! - the name is missing and a rotation is due (or our file was deleted):
//!   create it.
//!
//! The new descriptor replaces the old one at the same number (dup3), so
//! the number [`super::kept_fds`] reports stays right for children forked
//! later. A rotation that fails leaves the old descriptor in place; the line
//! goes there and the rotation is tried again a second later.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// When to start a new file; zero turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rotation {
    pub size: u64,
    pub age_ms: u64,
}

impl Rotation {
    pub fn enabled(self) -> bool {
        self.size > 0 || self.age_ms > 0
    }

    /// Whether a file of `size` bytes, open for `age_ms`, is due.
    pub fn due(self, size: u64, age_ms: u64) -> bool {
        (self.size > 0 && size >= self.size) || (self.age_ms > 0 && age_ms >= self.age_ms)
    }
}

/// What the name the pattern gives now points at, next to our descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PathState {
    /// The file we have open.
    Ours,
    /// Another file: someone rotated, or the pattern gives a new name that
    /// exists already.
    Other,
    /// Nothing.
    Missing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// Write to the descriptor we have.
    Keep,
    /// Due by age, but the file is empty and still has the current name:
    /// start the age over instead of making an empty file.
    Restart,
    /// Open the current name (creating it, or appending to what another
    /// process created).
    Open,
    /// Rename our file aside, then open a fresh one under its name.
    RenameAsideThenOpen,
}

/// The rotation decision. `size` and `links` are our descriptor's (fstat).
pub(super) fn decide(due: bool, path: PathState, size: u64, links: u64) -> Action {
    match path {
        PathState::Other => Action::Open,
        PathState::Ours if !due => Action::Keep,
        PathState::Ours if size == 0 => Action::Restart,
        PathState::Ours => Action::RenameAsideThenOpen,
        // Missing while not due: another process is between renaming and
        // creating (the next line will see the new file), unless our file
        // was deleted, which nobody else will repair.
        PathState::Missing if due || links == 0 => Action::Open,
        PathState::Missing => Action::Keep,
    }
}

/// Names to rename a file aside to, best first: `<name>.<stamp>`, then
/// `<name>.<stamp>.1`, `.2`...
pub(super) fn aside_names(name: &Path, stamp: &str) -> impl Iterator<Item = PathBuf> {
    let base = {
        let mut s = name.as_os_str().to_os_string();
        s.push(".");
        s.push(stamp);
        s
    };
    (0u32..10_000).map(move |n| {
        let mut s = base.clone();
        if n > 0 {
            s.push(format!(".{n}"));
        }
        PathBuf::from(s)
    })
}

/// The file name `pattern` gives at `epoch_secs`. Each component is
/// formatted on its own (a component is at most NAME_MAX bytes, which the
/// formatter's buffer holds); a pattern without `%` is used as it is.
pub(super) fn name_at(pattern: &Path, epoch_secs: i64) -> io::Result<PathBuf> {
    if !pattern.as_os_str().as_bytes().contains(&b'%') {
        return Ok(pattern.to_path_buf());
    }
    let mut name = PathBuf::new();
    for part in pattern.components() {
        match part {
            Component::Normal(text) if text.as_bytes().contains(&b'%') => {
                let text = text.to_str().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "a log_path component with % escapes must be UTF-8")
                })?;
                let formatted = crate::sys::format_local_time(text, epoch_secs);
                if formatted.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("log_path component '{text}' formats to nothing"),
                    ));
                }
                name.push(formatted);
            }
            other => name.push(other),
        }
    }
    Ok(name)
}

fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

/// A rotation that started failing (reported once until one succeeds).
#[derive(Debug)]
pub(super) struct Failure {
    pub path: PathBuf,
    pub error: io::Error,
}

/// How long a failed rotation waits before it is tried again.
const RETRY_MS: u64 = 1000;

pub(super) struct LogFile {
    /// Owns the descriptor; rotations replace what it refers to in place.
    file: File,
    /// Absolute `log_path`, possibly with strftime escapes.
    pattern: PathBuf,
    /// Off when the log is not a regular file (a FIFO, /dev/stderr).
    rotation: Rotation,
    /// When this process opened the file it writes to (epoch ms).
    opened_ms: AtomicU64,
    /// The second of the last look at the name (epoch seconds).
    checked_secs: AtomicU64,
    /// No rotation is tried before this (epoch ms), after a failure.
    retry_ms: AtomicU64,
    failing: AtomicBool,
}

/// Open for appending, creating; with O_CLOEXEC (std's default).
fn open_append(name: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).create(true).open(name)
}

impl LogFile {
    /// Open the file `pattern` names now. `truncate` (log_mode = create)
    /// applies to this first open only. A relative pattern is taken from
    /// the current directory now, so later rotations find the same place.
    pub fn open(pattern: &Path, truncate: bool, rotation: Rotation, now_ms: u64) -> io::Result<LogFile> {
        let pattern = match std::env::current_dir() {
            Ok(dir) if pattern.is_relative() => dir.join(pattern),
            _ => pattern.to_path_buf(),
        };
        let name = name_at(&pattern, (now_ms / 1000) as i64)?;
        let file = if truncate {
            // O_APPEND even so: other processes reopen it for appending
            // after a rotation, and writes must never land on each other.
            OpenOptions::new().write(true).create(true).truncate(true).custom_flags(libc::O_APPEND).open(&name)
        } else {
            open_append(&name)
        }
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open log_path {}: {e}", name.display())))?;
        let regular = file.metadata().map(|m| m.is_file()).unwrap_or(false);
        Ok(LogFile {
            file,
            pattern,
            rotation: if regular { rotation } else { Rotation { size: 0, age_ms: 0 } },
            opened_ms: AtomicU64::new(now_ms),
            checked_secs: AtomicU64::new(now_ms / 1000),
            retry_ms: AtomicU64::new(0),
            failing: AtomicBool::new(false),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Write one whole line (a single write(2) unless the kernel takes it
    /// in parts).
    pub fn write(&self, line: &[u8]) -> io::Result<()> {
        write_fd(self.fd(), line)
    }

    /// Before writing at `now_ms`: rotate, or follow another process's
    /// rotation, when due. Returns a failure the first time rotating fails.
    pub fn prepare(&self, now_ms: u64) -> Option<Failure> {
        if !self.rotation.enabled() {
            return None;
        }
        let Ok(own) = self.file.metadata() else { return None };
        let age_ms = now_ms.saturating_sub(self.opened_ms.load(Ordering::Relaxed));
        let due = self.rotation.due(own.len(), age_ms);
        let now_secs = now_ms / 1000;
        if !due && self.checked_secs.load(Ordering::Relaxed) == now_secs {
            return None;
        }
        if now_ms < self.retry_ms.load(Ordering::Relaxed) {
            return None;
        }
        self.checked_secs.store(now_secs, Ordering::Relaxed);
        let name = match name_at(&self.pattern, now_secs as i64) {
            Ok(name) => name,
            Err(error) => return self.failed(now_ms, self.pattern.clone(), error),
        };
        let state = match std::fs::metadata(&name) {
            Ok(m) if same_file(&m, &own) => PathState::Ours,
            Ok(_) => PathState::Other,
            Err(e) if e.kind() == io::ErrorKind::NotFound => PathState::Missing,
            Err(error) if due => return self.failed(now_ms, name, error),
            Err(_) => return None,
        };
        match decide(due, state, own.len(), own.nlink()) {
            Action::Keep => None,
            Action::Restart => {
                self.opened_ms.store(now_ms, Ordering::Relaxed);
                None
            }
            Action::Open => self.reopen(&name, now_ms),
            Action::RenameAsideThenOpen => {
                let stamp = crate::sys::format_local_time("%Y%m%d%H%M%S", now_secs as i64);
                match rename_aside(&name, &stamp, &own) {
                    Ok(()) => self.reopen(&name, now_ms),
                    Err(error) => self.failed(now_ms, name, error),
                }
            }
        }
    }

    /// Make our descriptor refer to `name` (created if need be).
    fn reopen(&self, name: &Path, now_ms: u64) -> Option<Failure> {
        let fresh = match open_append(name) {
            Ok(f) => f,
            Err(error) => return self.failed(now_ms, name.to_path_buf(), error),
        };
        // SAFETY: both descriptors are open and owned by this process: `fresh`
        // until it drops below, `self.file` for the life of the LogFile. dup3
        // atomically closes what the old number referred to and makes it refer
        // to the new file; `self.file` keeps owning that number.
        if unsafe { libc::dup3(fresh.as_raw_fd(), self.fd(), libc::O_CLOEXEC) } < 0 {
            return self.failed(now_ms, name.to_path_buf(), io::Error::last_os_error());
        }
        drop(fresh);
        self.opened_ms.store(now_ms, Ordering::Relaxed);
        self.retry_ms.store(0, Ordering::Relaxed);
        self.failing.store(false, Ordering::Relaxed);
        None
    }

    fn failed(&self, now_ms: u64, path: PathBuf, error: io::Error) -> Option<Failure> {
        self.retry_ms.store(now_ms + RETRY_MS, Ordering::Relaxed);
        if self.failing.swap(true, Ordering::Relaxed) { None } else { Some(Failure { path, error }) }
    }
}

/// rename(2) that fails with EEXIST instead of replacing `to`. Where the
/// file system cannot do that atomically (EINVAL), checks first.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let cstr = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
    };
    let (c_from, c_to) = (cstr(from)?, cstr(to)?);
    // SAFETY: both are valid NUL-terminated paths for the duration of the call.
    let ret = unsafe {
        libc::renameat2(libc::AT_FDCWD, c_from.as_ptr(), libc::AT_FDCWD, c_to.as_ptr(), libc::RENAME_NOREPLACE)
    };
    if ret == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            if std::fs::symlink_metadata(to).is_ok() {
                return Err(io::Error::from_raw_os_error(libc::EEXIST));
            }
            std::fs::rename(from, to)
        }
        _ => Err(error),
    }
}

/// Rename `name` (our file, `own`) to the first free [`aside_names`]. Two
/// processes may decide to rotate at the same moment; if what we moved turns
/// out to be the other's fresh file, it is put back (when its name is still
/// free). Either way `name` is then to be opened.
fn rename_aside(name: &Path, stamp: &str, own: &std::fs::Metadata) -> io::Result<()> {
    for aside in aside_names(name, stamp) {
        match rename_noreplace(name, &aside) {
            Ok(()) => {
                if std::fs::metadata(&aside).is_ok_and(|moved| !same_file(&moved, own)) {
                    let _ = rename_noreplace(&aside, name);
                }
                return Ok(());
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
            // Someone else moved it already.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("no free name to rotate {} to", name.display())))
}

/// Write all of `buf` to `fd` with write(2), going on after partial writes
/// and EINTR, and waiting on a non-blocking descriptor that is full (giving
/// up after about a second without progress). No lock is taken, so a process that crashed or forked mid-write
/// leaves nothing held.
pub(super) fn write_fd(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    let mut full = 0;
    while !buf.is_empty() {
        // SAFETY: `buf` is a live slice; write(2) reads at most buf.len()
        // bytes from it and keeps no reference.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n > 0 {
            buf = buf.get(n as usize..).unwrap_or_default();
            full = 0;
            continue;
        }
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) if full < 10 => {
                full += 1;
                let mut pfd = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
                // SAFETY: one valid pollfd for the duration of the call. Its
                // result does not matter: the write is simply tried again.
                unsafe { libc::poll(&mut pfd, 1, 100) };
            }
            _ => return Err(error),
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
