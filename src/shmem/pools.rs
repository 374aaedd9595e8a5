//! What the per-pool gauges and the per-server metrics are read from: a
//! registry of the (database, user) pairs clients have come for, and what
//! the workers learnt about each server when they connected to it.
//!
//! A worker registers its client's pair once per session ([`PoolTable::intern`])
//! and keeps the pair's index in its client entry; the metrics server joins
//! the entries and the slots on the names. Registering is lock-free: a free
//! entry is claimed with a compare-and-swap, filled, then published. Two
//! workers registering the same new pair at once may each claim an entry;
//! readers merge entries by name, so that only costs a place. Entries are
//! never taken back: at most [`POOL_ENTRIES`] pairs are told apart, and
//! clients of pairs beyond that count under no pool.
//!
//! Everything here is written only while a metrics port is on.

use super::slot::{NAME_WORDS, PackedName};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Pairs told apart.
pub const POOL_ENTRIES: usize = 256;

const EMPTY: u32 = 0;
const WRITING: u32 = 1;
const READY: u32 = 2;

/// One (database, user) pair.
#[repr(C, align(64))]
pub struct PoolEntry {
    state: AtomicU32,
    database: [AtomicU64; NAME_WORDS],
    user: [AtomicU64; NAME_WORDS],
}

/// A borrowed view of the registry.
#[derive(Clone, Copy)]
pub struct PoolTable<'a> {
    entries: &'a [PoolEntry],
}

fn matches(cells: &[AtomicU64; NAME_WORDS], name: &PackedName) -> bool {
    cells.iter().zip(name.words()).all(|(c, w)| c.load(Ordering::Relaxed) == w)
}

fn read(cells: &[AtomicU64; NAME_WORDS]) -> PackedName {
    let mut words = [0u64; NAME_WORDS];
    for (w, c) in words.iter_mut().zip(cells) {
        *w = c.load(Ordering::Relaxed);
    }
    PackedName::from_words(words)
}

impl<'a> PoolTable<'a> {
    pub fn new(entries: &'a [PoolEntry]) -> Self {
        PoolTable { entries }
    }

    /// The pair's index plus one (0: the registry is full).
    pub fn intern(&self, database: &PackedName, user: &PackedName) -> u32 {
        for (i, e) in self.entries.iter().enumerate() {
            match e.state.load(Ordering::Acquire) {
                READY if matches(&e.database, database) && matches(&e.user, user) => return i as u32 + 1,
                EMPTY => {
                    if e.state.compare_exchange(EMPTY, WRITING, Ordering::AcqRel, Ordering::Acquire).is_err() {
                        // Someone else is filling it: maybe with this pair,
                        // maybe not; look on (a duplicate is merged by readers).
                        continue;
                    }
                    for (c, w) in e.database.iter().zip(database.words()) {
                        c.store(w, Ordering::Relaxed);
                    }
                    for (c, w) in e.user.iter().zip(user.words()) {
                        c.store(w, Ordering::Relaxed);
                    }
                    e.state.store(READY, Ordering::Release);
                    return i as u32 + 1;
                }
                _ => {}
            }
        }
        0
    }

    /// The pair registered as `pool` (an index from [`PoolTable::intern`]).
    pub fn names(&self, pool: u32) -> Option<(String, String)> {
        let e = self.entries.get((pool as usize).checked_sub(1)?)?;
        (e.state.load(Ordering::Acquire) == READY)
            .then(|| (read(&e.database).to_string_lossy(), read(&e.user).to_string_lossy()))
    }

    /// Every registered pair, as (database, user).
    pub fn all(&self) -> Vec<(String, String)> {
        (1..=self.entries.len() as u32).filter_map(|p| self.names(p)).collect()
    }
}

/// What the workers learnt about one server.
#[repr(C, align(64))]
pub struct ServerFacts {
    /// New connections that could not be made (unreachable, refused, login
    /// failed): upstream's `pgagroal_server_error`.
    errors: AtomicU64,
    /// 0 unknown, then [`Health`] + 1 as of the last connection attempt.
    health: AtomicU32,
    /// The authentication request code of the last login (0 none, 3
    /// cleartext, 5 md5, 10 SASL), plus one; 0 before any.
    auth: AtomicU32,
    /// The major version the server reported (`server_version`); 0 unknown.
    version: AtomicU32,
}

/// A server's health as the last connection attempt found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Down,
    Up,
    Unknown,
}

impl Health {
    /// Upstream's gauge value: 0 down, 1 up, 2 unknown.
    pub fn value(self) -> u32 {
        match self {
            Health::Down => 0,
            Health::Up => 1,
            Health::Unknown => 2,
        }
    }
}

/// One server's facts, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerReport {
    pub errors: u64,
    pub health: Health,
    /// The last login's authentication request code, if any login was made.
    pub auth: Option<u32>,
    pub version: Option<u32>,
}

/// How the pooler authenticated to a server, as a label.
pub fn auth_label(code: Option<u32>) -> &'static str {
    match code {
        None => "unknown",
        Some(0) => "trust",
        Some(3) => "password",
        Some(5) => "md5",
        Some(10) => "scram-sha-256",
        Some(_) => "error",
    }
}

impl ServerFacts {
    /// A new connection to the server was made.
    pub fn connected(&self, auth_code: u32, version: Option<u32>) {
        self.health.store(1 + 1, Ordering::Relaxed);
        if self.auth.load(Ordering::Relaxed) != auth_code + 1 {
            self.auth.store(auth_code + 1, Ordering::Relaxed);
        }
        if let Some(v) = version
            && self.version.load(Ordering::Relaxed) != v
        {
            self.version.store(v, Ordering::Relaxed);
        }
    }

    /// A new connection to the server could not be made.
    pub fn failed(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.health.store(1, Ordering::Relaxed);
    }

    pub fn report(&self) -> ServerReport {
        let health = match self.health.load(Ordering::Relaxed) {
            1 => Health::Down,
            2 => Health::Up,
            _ => Health::Unknown,
        };
        let auth = self.auth.load(Ordering::Relaxed).checked_sub(1);
        let version = Some(self.version.load(Ordering::Relaxed)).filter(|&v| v > 0);
        ServerReport { errors: self.errors.load(Ordering::Relaxed), health, auth, version }
    }

    /// Forget the counts (`clear prometheus`); health, auth and version stay.
    pub fn clear(&self) {
        self.errors.store(0, Ordering::Relaxed);
    }
}

/// The major version in a `server_version` report: `15.18 (Debian ...)` is
/// 15, `9.6.24` is 9, `17beta1` is 17.
pub fn major_version(value: &[u8]) -> Option<u32> {
    let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(value.get(..digits)?).ok()?.parse().ok().filter(|&v| v > 0)
}

/// Microseconds on the system-wide monotonic clock (the same in every
/// process), never 0.
pub fn monotonic_micros() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always
    // exists on Linux, and a failure leaves the zeroes, which read as "now
    // unknown" below.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000).saturating_add(ts.tv_nsec as u64 / 1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(n: usize) -> Vec<PoolEntry> {
        // SAFETY: PoolEntry is only atomics, for which zeroes are valid.
        (0..n).map(|_| unsafe { std::mem::zeroed() }).collect()
    }

    #[test]
    fn pairs_are_registered_once_and_read_back() {
        let entries = table(3);
        let t = PoolTable::new(&entries);
        let (a, b, u) = (PackedName::new("app"), PackedName::new("other"), PackedName::new("alice"));
        assert_eq!(t.intern(&a, &u), 1);
        assert_eq!(t.intern(&b, &u), 2);
        assert_eq!(t.intern(&a, &u), 1);
        assert_eq!(t.intern(&a, &PackedName::new("bob")), 3);
        assert_eq!(t.intern(&b, &PackedName::new("bob")), 0, "full");
        assert_eq!(t.names(2), Some(("other".into(), "alice".into())));
        assert_eq!(t.names(0), None);
        assert_eq!(t.names(4), None);
        assert_eq!(t.all().len(), 3);
    }

    #[test]
    fn server_facts_follow_attempts() {
        // SAFETY: ServerFacts is only atomics, for which zeroes are valid.
        let f: ServerFacts = unsafe { std::mem::zeroed() };
        assert_eq!(f.report(), ServerReport { errors: 0, health: Health::Unknown, auth: None, version: None });
        f.failed();
        assert_eq!((f.report().errors, f.report().health), (1, Health::Down));
        f.connected(10, Some(15));
        let r = f.report();
        assert_eq!((r.errors, r.health, auth_label(r.auth), r.version), (1, Health::Up, "scram-sha-256", Some(15)));
        f.clear();
        assert_eq!(f.report().errors, 0);
        assert_eq!(auth_label(Some(0)), "trust");
    }

    #[test]
    fn major_versions() {
        assert_eq!(major_version(b"15.18 (Debian 15.18-0+deb12u1)"), Some(15));
        assert_eq!(major_version(b"9.6.24"), Some(9));
        assert_eq!(major_version(b"17beta1"), Some(17));
        assert_eq!(major_version(b""), None);
        assert_eq!(major_version(b"x"), None);
        assert_eq!(major_version(b"99999999999999999999"), None);
    }
}
