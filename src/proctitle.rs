//! Process titles (`update_process_title`): what `ps` shows for each
//! process, `pgagroal: main`, `pgagroal: worker`, `pgagroal: idle-timeout`,
//! or for a worker serving a client `pgagroal: user@host:port/database`
//! (verbose) or `pgagroal: user/database` (minimal, strict).
//!
//! Linux shows a process's command line from the memory that held its
//! arguments, so the title is written there, NUL-padded to the original
//! length; a longer title is cut. The environment strings after it are
//! left alone, so the title never grows past the command line.

use crate::config::ProcessTitle;
use std::sync::atomic::{AtomicUsize, Ordering};

static AREA_START: AtomicUsize = AtomicUsize::new(0);
static AREA_LEN: AtomicUsize = AtomicUsize::new(0);

/// `arg_start` and `arg_end` from the text of `/proc/self/stat` (fields 48
/// and 49; the command name in field 2 may hold spaces and parentheses).
pub fn arg_area(stat: &str) -> Option<(usize, usize)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 3 is the first after the name.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let start: usize = fields.get(48 - 3)?.parse().ok()?;
    let end: usize = fields.get(49 - 3)?.parse().ok()?;
    (end > start).then_some((start, end - start))
}

/// Find the argument area; called once by the daemon before it forks.
pub fn init() {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return };
    if let Some((start, len)) = arg_area(&stat) {
        AREA_START.store(start, Ordering::Relaxed);
        AREA_LEN.store(len, Ordering::Relaxed);
    }
}

/// The title as it will be written into `len` bytes: cut to leave one NUL.
pub fn fit(title: &str, len: usize) -> &[u8] {
    let bytes = title.as_bytes();
    &bytes[..bytes.len().min(len.saturating_sub(1))]
}

/// Show `pgagroal: <what>` for this process, unless titles are off.
pub fn set(mode: ProcessTitle, what: &str) {
    if mode == ProcessTitle::Never {
        return;
    }
    let (start, len) = (AREA_START.load(Ordering::Relaxed), AREA_LEN.load(Ordering::Relaxed));
    if start == 0 || len == 0 {
        return;
    }
    let title = format!("pgagroal: {what}");
    let bytes = fit(&title, len);
    // SAFETY: [start, start + len) is this process's argument area as the
    // kernel reports it: writable memory the process owns for its whole
    // life, which nothing else reads (the arguments were parsed at start).
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, len);
        area[..bytes.len()].copy_from_slice(bytes);
        area[bytes.len()..].fill(0);
    }
}

/// What a worker serving a client shows.
pub fn for_client(mode: ProcessTitle, user: &str, database: &str, server: Option<(&str, u16)>) -> String {
    match (mode, server) {
        (ProcessTitle::Verbose, Some((host, port))) => format!("{user}@{host}:{port}/{database}"),
        _ => format!("{user}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_found_after_the_name() {
        let mut fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        fields[48 - 3] = "1000".into();
        fields[49 - 3] = "1040".into();
        let stat = format!("4242 (pg (a) b) {}", fields.join(" "));
        assert_eq!(arg_area(&stat), Some((1000, 40)));
        assert_eq!(arg_area("4242 (short) S 1"), None);
        assert_eq!(arg_area("no name"), None);
    }

    #[test]
    fn titles() {
        assert_eq!(for_client(ProcessTitle::Verbose, "u", "db", Some(("10.0.0.1", 5432))), "u@10.0.0.1:5432/db");
        assert_eq!(for_client(ProcessTitle::Minimal, "u", "db", Some(("10.0.0.1", 5432))), "u/db");
        assert_eq!(for_client(ProcessTitle::Verbose, "u", "db", None), "u/db");
        assert_eq!(fit("pgagroal: main", 8), b"pgagroa");
        assert_eq!(fit("abc", 10), b"abc");
        assert_eq!(fit("abc", 0), b"");
    }
}
