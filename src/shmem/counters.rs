//! Event counters in shared memory, for the metrics server: connection
//! events, authentication outcomes, log lines by level, actor restarts and
//! client disconnects by reason.
//!
//! Recording is one relaxed `fetch_add` on a cache line of the recording
//! process's own shard (chosen from its pid when it starts, so no system
//! call per event), with no lock; the metrics server sums the shards when
//! it is scraped. The counters live in the region, so a restarted metrics
//! server loses nothing, and `clear prometheus` zeroes them.
//!
//! [`record`] is a free function so that code without a [`super::Region`]
//! at hand (the logger) can count too: the region the process runs with is
//! installed once ([`install`]) and inherited by every forked child.

use super::pools::{POOL_ENTRIES, PoolEntry, PoolTable, ServerFacts};
use super::slot::PackedName;
use crate::disconnect::{DISCONNECTS, Disconnect};
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// Shards the counters are spread over.
pub const SHARDS: usize = 16;

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Event {
    /// A client was given a server connection.
    ConnectionGet,
    /// A client gave its connection back to the pool.
    ConnectionReturn,
    /// A connection was closed because it broke or a client died with it.
    ConnectionKill,
    /// A connection was closed on purpose (reset failed, flush, ...).
    ConnectionRemove,
    /// A client waited out `blocking_timeout` (53300 pool full).
    ConnectionTimeout,
    /// A new server connection failed.
    ConnectionError,
    /// A new server connection was made.
    ConnectionSuccess,
    /// A pooled connection failed validation.
    ConnectionInvalid,
    /// The idle service closed a connection.
    ConnectionIdleTimeout,
    /// A connection was closed for `max_connection_age`.
    ConnectionMaxAge,
    /// A connection was closed by `flush`.
    ConnectionFlush,
    AuthSuccess,
    AuthBadPassword,
    AuthError,
    /// Queries answered (ReadyForQuery messages relayed).
    Query,
    /// Transactions finished (ReadyForQuery messages saying idle).
    Transaction,
    /// Bytes relayed from clients to servers.
    NetworkReceived,
    /// Bytes relayed from servers to clients.
    NetworkSent,
    LogInfo,
    LogWarn,
    LogError,
    LogFatal,
    /// Restarts of a crashed or hung actor, by kind.
    RestartIdle,
    RestartMaxAge,
    RestartValidation,
    RestartMaintenance,
    RestartManagement,
    RestartMetrics,
    /// A worker that died abnormally (it is replaced, not restarted with
    /// its client).
    RestartWorker,
    /// Transaction pipeline: a client's Parse of a named statement.
    PreparedClientParse,
    /// A Parse of a named statement sent to a server (the client's own, or
    /// the pooler's for a connection that lacked the statement).
    PreparedServerParse,
    /// A Bind of a named statement.
    PreparedBind,
    /// A statement closed on a server beyond `max_prepared_statements`.
    PreparedEviction,
}

/// Number of [`Event`]s.
pub const EVENTS: usize = Event::PreparedEviction as usize + 1;

/// What is measured in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Histogram {
    /// How long client sessions last (upstream's buckets).
    SessionTime,
    /// How long a client waits for a server connection.
    WaitTime,
    /// How long making a new server connection takes (connect and login).
    ConnectTime,
    /// From a client's request to the server's ReadyForQuery.
    QueryTime,
    /// From a transaction's first request to the ReadyForQuery that ends it.
    TransactionTime,
}

/// Number of [`Histogram`]s.
pub const HISTOGRAMS: usize = 5;
/// Most finite buckets a histogram has.
pub const MAX_BUCKETS: usize = 17;

impl Histogram {
    pub const ALL: [Histogram; HISTOGRAMS] = [
        Histogram::SessionTime,
        Histogram::WaitTime,
        Histogram::ConnectTime,
        Histogram::QueryTime,
        Histogram::TransactionTime,
    ];

    /// Upper bounds of the finite buckets, in seconds.
    pub fn bounds(self) -> &'static [f64] {
        match self {
            Histogram::SessionTime => &[
                5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 300.0, 600.0, 1200.0, 1800.0, 2700.0, 3600.0, 7200.0, 14400.0,
                21600.0, 43200.0, 86400.0,
            ],
            Histogram::WaitTime => &[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0],
            Histogram::ConnectTime => &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
            Histogram::QueryTime | Histogram::TransactionTime => &[
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                60.0,
            ],
        }
    }
}

/// One histogram's cells in a shard: observations per finite bucket (not
/// cumulative), then the sum in microseconds, then the count.
type HistogramCells = [AtomicU64; MAX_BUCKETS + 2];

/// One process group's counters, on cache lines of their own.
#[repr(C, align(64))]
pub struct Shard {
    cells: [AtomicU64; EVENTS],
    histograms: [HistogramCells; HISTOGRAMS],
    /// Client connections ended, by reason.
    disconnects: [AtomicU64; DISCONNECTS],
}

/// A histogram summed over the shards, as the exposition wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramTotals {
    /// Cumulative counts, one per finite bound.
    pub cumulative: Vec<u64>,
    pub sum_seconds: f64,
    pub count: u64,
}

/// The counters' part of the region.
#[repr(C)]
pub struct CounterBlock {
    shards: [Shard; SHARDS],
    /// The last client's wait for a connection, in microseconds (upstream's
    /// `pgagroal_wait_time`).
    last_wait_micros: AtomicU64,
    /// The (database, user) pairs of clients, for the per-pool gauges.
    pools: [PoolEntry; POOL_ENTRIES],
    /// What the workers learnt about each configured server.
    servers: [ServerFacts; crate::config::MAX_SERVERS],
}

impl CounterBlock {
    /// The sum over the shards.
    pub fn total(&self, event: Event) -> u64 {
        self.total_at(event as usize)
    }

    /// The sum over the shards of the counter at `index` (an [`Event`] as
    /// a number; 0 past the last).
    pub fn total_at(&self, index: usize) -> u64 {
        self.shards
            .iter()
            .filter_map(|s| s.cells.get(index))
            .map(|c| c.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// A histogram summed over the shards.
    pub fn histogram(&self, h: Histogram) -> HistogramTotals {
        let bounds = h.bounds().len();
        let sum_of = |i: usize| -> u64 {
            self.shards.iter().map(|s| s.histograms[h as usize][i].load(Ordering::Relaxed)).fold(0, u64::wrapping_add)
        };
        let mut running = 0u64;
        let cumulative = (0..bounds)
            .map(|i| {
                running = running.wrapping_add(sum_of(i));
                running
            })
            .collect();
        HistogramTotals { cumulative, sum_seconds: sum_of(MAX_BUCKETS) as f64 / 1e6, count: sum_of(MAX_BUCKETS + 1) }
    }

    /// Record one observation of `h` in `shard`.
    pub fn observe(&self, shard: usize, h: Histogram, took: std::time::Duration) {
        let Some(s) = self.shards.get(shard % SHARDS) else { return };
        let cells = &s.histograms[h as usize];
        let secs = took.as_secs_f64();
        if let Some(bucket) = h.bounds().iter().position(|&bound| secs <= bound) {
            cells[bucket].fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        if h == Histogram::WaitTime {
            self.last_wait_micros.store(micros, Ordering::Relaxed);
        }
        cells[MAX_BUCKETS].fetch_add(micros, Ordering::Relaxed);
        cells[MAX_BUCKETS + 1].fetch_add(1, Ordering::Relaxed);
    }

    /// Add `n` to `event` in `shard`.
    pub fn add(&self, shard: usize, event: Event, n: u64) {
        if let Some(s) = self.shards.get(shard % SHARDS) {
            s.cells[event as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Count one client connection ended for `why` in `shard`.
    pub fn add_disconnect(&self, shard: usize, why: Disconnect) {
        if let Some(s) = self.shards.get(shard % SHARDS) {
            s.disconnects[why as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Client connections ended for `why`, summed over the shards.
    pub fn disconnects(&self, why: Disconnect) -> u64 {
        self.shards.iter().map(|s| s.disconnects[why as usize].load(Ordering::Relaxed)).fold(0, u64::wrapping_add)
    }

    /// The last client's wait for a connection.
    pub fn last_wait(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.last_wait_micros.load(Ordering::Relaxed))
    }

    /// The registry of clients' (database, user) pairs.
    pub fn pools(&self) -> PoolTable<'_> {
        PoolTable::new(&self.pools)
    }

    /// What is known of the configured server at `index`.
    pub fn server(&self, index: usize) -> Option<&ServerFacts> {
        self.servers.get(index)
    }

    /// Zero every counter and histogram (`clear prometheus`).
    pub fn clear(&self) {
        self.last_wait_micros.store(0, Ordering::Relaxed);
        self.servers.iter().for_each(ServerFacts::clear);
        for shard in &self.shards {
            let cells = shard.cells.iter().chain(shard.histograms.iter().flatten()).chain(&shard.disconnects);
            for cell in cells {
                cell.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// The block [`record`] counts into (null before [`install`]).
static INSTALLED: AtomicPtr<CounterBlock> = AtomicPtr::new(std::ptr::null_mut());
/// This process's shard.
static SHARD: AtomicUsize = AtomicUsize::new(0);

/// Count into `block` from now on, in this process and the ones it forks.
/// `block` must stay mapped while the pointer is installed: the region
/// takes it back when it is unmapped ([`uninstall`]).
pub fn install(block: &CounterBlock) {
    INSTALLED.store(block as *const CounterBlock as *mut CounterBlock, Ordering::Release);
    enter_process(std::process::id());
}

/// Stop counting into `block` (its mapping is going away).
pub fn uninstall(block: &CounterBlock) {
    let _ = INSTALLED.compare_exchange(
        block as *const CounterBlock as *mut CounterBlock,
        std::ptr::null_mut(),
        Ordering::AcqRel,
        Ordering::Acquire,
    );
}

/// In a freshly forked child: take the shard of its own pid.
pub fn enter_process(pid: u32) {
    SHARD.store(pid as usize % SHARDS, Ordering::Relaxed);
}

/// Count one `event`.
pub fn record(event: Event) {
    add(event, 1);
}

/// Whether anything is counted in this process (a metrics port is on):
/// callers that would read the clock only to record skip it otherwise.
pub fn enabled() -> bool {
    !INSTALLED.load(Ordering::Relaxed).is_null()
}

/// Record how long something measured by `h` took.
pub fn observe(h: Histogram, took: std::time::Duration) {
    if let Some(block) = installed() {
        block.observe(SHARD.load(Ordering::Relaxed), h, took);
    }
}

fn installed() -> Option<&'static CounterBlock> {
    let block = INSTALLED.load(Ordering::Acquire);
    // SAFETY: a non-null pointer was installed from a live CounterBlock in
    // the region's shared mapping, which stays mapped until the region is
    // dropped, and the region uninstalls it before it unmaps. Every field is
    // an atomic, valid for any bit pattern and only accessed atomically.
    (!block.is_null()).then(|| unsafe { &*block })
}

/// Register a client's (database, user) pair; its index plus one, or 0
/// (no metrics, or the registry is full).
pub fn intern_pool(database: &PackedName, user: &PackedName) -> u32 {
    installed().map_or(0, |block| block.pools().intern(database, user))
}

/// What is recorded about the configured server at `index` (None without
/// metrics).
pub fn server(index: usize) -> Option<&'static ServerFacts> {
    installed().and_then(|block| block.server(index))
}

/// Count one client connection ended for `why`.
pub fn disconnected(why: Disconnect) {
    if let Some(block) = installed() {
        block.add_disconnect(SHARD.load(Ordering::Relaxed), why);
    }
}

/// Count `n` of `event`.
pub fn add(event: Event, n: u64) {
    if let Some(block) = installed() {
        block.add(SHARD.load(Ordering::Relaxed), event, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_sum_and_clear() {
        // SAFETY: CounterBlock is only atomics, for which zeroes are valid.
        let block: Box<CounterBlock> = Box::new(unsafe { std::mem::zeroed() });
        block.add(0, Event::ConnectionGet, 2);
        block.add(5, Event::ConnectionGet, 3);
        block.add(SHARDS + 1, Event::AuthSuccess, 1);
        block.add_disconnect(3, Disconnect::PoolFull);
        block.add_disconnect(4, Disconnect::PoolFull);
        assert_eq!(block.disconnects(Disconnect::PoolFull), 2);
        assert_eq!(block.disconnects(Disconnect::ClientTerminate), 0);
        assert_eq!(block.total(Event::ConnectionGet), 5);
        assert_eq!(block.total(Event::AuthSuccess), 1);
        assert_eq!(block.total(Event::LogFatal), 0);
        block.clear();
        assert_eq!(block.total(Event::ConnectionGet), 0);
        assert_eq!(block.disconnects(Disconnect::PoolFull), 0);
        assert_eq!(std::mem::size_of::<Shard>() % 64, 0);
        assert_eq!(EVENTS, 33);
    }

    #[test]
    fn histograms_are_cumulative_and_cleared() {
        // SAFETY: CounterBlock is only atomics, for which zeroes are valid.
        let block: Box<CounterBlock> = Box::new(unsafe { std::mem::zeroed() });
        let ms = std::time::Duration::from_millis;
        block.observe(0, Histogram::WaitTime, ms(3));
        block.observe(3, Histogram::WaitTime, ms(3));
        block.observe(1, Histogram::WaitTime, ms(700));
        block.observe(1, Histogram::WaitTime, std::time::Duration::from_secs(3600));
        let h = block.histogram(Histogram::WaitTime);
        assert_eq!(h.count, 4);
        assert_eq!(h.cumulative.len(), Histogram::WaitTime.bounds().len());
        assert_eq!((h.cumulative[2], h.cumulative[3], h.cumulative[8]), (0, 2, 3), "{h:?}");
        assert_eq!(*h.cumulative.last().unwrap_or(&0), 3, "an hour is only in +Inf");
        assert!((h.sum_seconds - 3600.706).abs() < 1e-6, "{}", h.sum_seconds);
        assert!(Histogram::ALL.iter().all(|h| h.bounds().len() <= MAX_BUCKETS));
        assert!(Histogram::ALL.iter().all(|h| h.bounds().windows(2).all(|w| w[0] < w[1])));
        block.clear();
        assert_eq!(block.histogram(Histogram::WaitTime).count, 0);
    }
}
