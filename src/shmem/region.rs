//! The shared region: a header (magic, layout version, sizes, pool-wide
//! flags) followed by `max_connections` 64-byte-aligned slots.
//!
//! The memory comes from `memfd_create` and is mapped with `MAP_SHARED`
//! (through memmap2's file mapping), so a fork shares it rather than copying
//! it. memmap2's anonymous maps are private after fork and are not used.

use super::clients::{CLIENT_ENTRIES, ClientEntry, ClientTable};
use super::counters::CounterBlock;
use super::queue::WaitQueue;
use super::slot::{NAME_WORDS, PackedName, Slot};
use super::statements::{STATEMENT_EPOCHS, StatementCell, Statements, StatementsHead, cells_for};
use super::table::SlotTable;
use std::io;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicU32, AtomicU64, Ordering};

/// "PGAGROAL" in ASCII.
pub const MAGIC: u64 = 0x5047_4147_524f_414c;
/// Bumped whenever the layout of [`Header`] or [`Slot`] changes.
pub const LAYOUT_VERSION: u32 = 13;
/// Workers that may wait for a client at once (more idle ones exit).
pub const IDLE_WORKERS: usize = 64;

/// Pool-wide state at the start of the region, followed by the client
/// table ([`CLIENT_ENTRIES`] entries), the wait queues' ring, the event
/// counters ([`CounterBlock`]) and the slots.
#[repr(C, align(64))]
pub struct Header {
    pub magic: u64,
    pub layout_version: u32,
    pub slot_count: u32,
    pub slot_size: u32,
    pub supervisor_pid: AtomicI32,
    /// 0 running, 1 graceful shutdown requested, 2 stopping.
    pub shutdown: AtomicU32,
    /// Milliseconds since the epoch when the daemon started.
    pub started_ms: AtomicU64,
    /// Bumped whenever a slot becomes claimable (FREE or NOTINIT); a futex
    /// word that clients waiting for a slot sleep on.
    pub release_seq: AtomicU32,
    /// Processes currently sleeping on `release_seq`.
    pub waiters: AtomicU32,
    /// Bumped by every configuration reload. A worker forked under an older
    /// value holds an old configuration and exits instead of taking another
    /// client.
    pub config_epoch: AtomicU32,
    /// Pids of workers waiting for a client (0 = empty entry). A worker puts
    /// itself here when its client leaves; the supervisor takes one out
    /// (compare-and-swap to 0) to hand it the next client, with no message
    /// and no wake-up of the supervisor for the worker's return.
    pub idle: [AtomicI32; IDLE_WORKERS],
    /// Bumped whenever a forwarded cancel is done; a futex word that a
    /// worker waiting to unbind its slot sleeps on (see [`ClientTable`]).
    pub cancel_done: AtomicU32,
    /// The wait queues' head and tail tickets (see [`WaitQueue`]): queue 0
    /// for clients under no limit rule, queue `r + 1` for rule `r`.
    pub queue_head: [AtomicU64; QUEUES],
    pub queue_tail: [AtomicU64; QUEUES],
    /// Pid holding each limit rule's lock (0: free). Creating a connection
    /// under a rule counts the rule's slots and claims an empty one under
    /// it, so two workers can never both take the last place.
    pub rule_locks: [AtomicI32; MAX_RULES],
    /// Databases refused with 53300 (`pgagroal-cli disable`): names packed
    /// as in the slots; an all-zero entry is unused.
    pub disabled: [[AtomicU64; NAME_WORDS]; MAX_DISABLED],
    /// Every database is disabled.
    pub disabled_all: AtomicU32,
    /// Prepared statements' epochs, shared by every connection (see
    /// [`Statements::epoch`]).
    pub statement_epochs: [AtomicU32; STATEMENT_EPOCHS],
    /// Each configured server's [`super::servers::ServerState`].
    pub servers: [AtomicU8; crate::config::MAX_SERVERS],
}

/// Limit rules (as `pgagroal_databases.conf` allows).
pub const MAX_RULES: usize = 64;
/// Wait queues: one per rule and one for clients under none.
pub const QUEUES: usize = MAX_RULES + 1;
/// Cells in each wait queue's ring, as many as there can be waiters.
pub const QUEUE_CELLS: usize = CLIENT_ENTRIES;
/// Databases that can be disabled at once, as upstream.
pub const MAX_DISABLED: usize = 64;

/// A held rule lock; dropping it releases the rule.
pub struct RuleLock<'a> {
    cell: &'a AtomicI32,
}

impl Drop for RuleLock<'_> {
    fn drop(&mut self) {
        self.cell.store(0, Ordering::Release);
    }
}

fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH) }
}

impl Header {
    /// A worker offers itself for the next client; false when enough
    /// workers are idle already (the caller then exits).
    pub fn offer_idle(&self, pid: i32) -> bool {
        self.idle.iter().any(|e| e.compare_exchange(0, pid, Ordering::AcqRel, Ordering::Relaxed).is_ok())
    }

    /// Take an idle worker (the lowest entry, so a few hot workers serve
    /// most clients).
    pub fn take_idle(&self) -> Option<i32> {
        self.idle.iter().find_map(|e| {
            let pid = e.load(Ordering::Acquire);
            (pid != 0 && e.compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok()).then_some(pid)
        })
    }

    /// Remove a worker that died while idle.
    pub fn forget_idle(&self, pid: i32) {
        for e in &self.idle {
            let _ = e.compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// Whether a worker is in the idle list.
    pub fn is_idle(&self, pid: i32) -> bool {
        self.idle.iter().any(|e| e.load(Ordering::Acquire) == pid)
    }

    /// The configured servers' states.
    pub fn servers(&self, count: usize) -> super::servers::ServerStates<'_> {
        super::servers::ServerStates { cells: &self.servers[..count.min(self.servers.len())] }
    }

    /// Number of idle workers.
    pub fn idle_count(&self) -> usize {
        self.idle.iter().filter(|e| e.load(Ordering::Acquire) != 0).count()
    }

    /// Take limit rule `rule`'s lock (None for an unknown rule). Held only
    /// for a scan and a claim, never across a syscall; a holder that died
    /// is replaced (the supervisor also frees a dead worker's locks).
    pub fn lock_rule(&self, rule: usize, pid: i32) -> Option<RuleLock<'_>> {
        let cell = self.rule_locks.get(rule)?;
        loop {
            match cell.compare_exchange(0, pid, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(RuleLock { cell }),
                Err(holder) if !alive(holder) => {
                    if cell.compare_exchange(holder, pid, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                        return Some(RuleLock { cell });
                    }
                }
                Err(_) => std::thread::yield_now(),
            }
        }
    }

    /// Free the rule locks a dead process held.
    pub fn release_rule_locks(&self, pid: i32) {
        for cell in &self.rule_locks {
            let _ = cell.compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// Whether new clients of `database` are refused.
    pub fn is_disabled(&self, database: &PackedName) -> bool {
        self.disabled_all.load(Ordering::Acquire) != 0
            || self
                .disabled
                .iter()
                .any(|cells| cells.iter().zip(database.words()).all(|(c, w)| c.load(Ordering::Acquire) == w))
    }

    /// Refuse new clients of `database` (None: of every database); false
    /// when the list is full. Naming one database ends "every database",
    /// as upstream.
    pub fn disable(&self, database: Option<&PackedName>) -> bool {
        let Some(database) = database else {
            self.disabled_all.store(1, Ordering::Release);
            return true;
        };
        self.disabled_all.store(0, Ordering::Release);
        if self.is_disabled(database) {
            return true;
        }
        let free = self.disabled.iter().find(|cells| cells.iter().all(|c| c.load(Ordering::Acquire) == 0));
        match free {
            Some(cells) => {
                for (c, w) in cells.iter().zip(database.words()) {
                    c.store(w, Ordering::Release);
                }
                true
            }
            None => false,
        }
    }

    /// Whether every database is refused, and the databases refused by name.
    pub fn disabled_databases(&self) -> (bool, Vec<String>) {
        let names = self
            .disabled
            .iter()
            .map(|cells| PackedName::from_words(std::array::from_fn(|i| cells[i].load(Ordering::Acquire))))
            .filter(|name| *name != PackedName::default())
            .map(|name| name.to_string_lossy())
            .collect();
        (self.disabled_all.load(Ordering::Acquire) != 0, names)
    }

    /// Serve `database` again (None: every database).
    pub fn enable(&self, database: Option<&PackedName>) {
        let clear = |cells: &[AtomicU64; NAME_WORDS]| cells.iter().for_each(|c| c.store(0, Ordering::Release));
        match database {
            None => {
                self.disabled_all.store(0, Ordering::Release);
                self.disabled.iter().for_each(clear);
            }
            Some(database) => self
                .disabled
                .iter()
                .filter(|cells| cells.iter().zip(database.words()).all(|(c, w)| c.load(Ordering::Acquire) == w))
                .for_each(clear),
        }
    }

    /// Wake the processes waiting for a slot. Cheap when nobody waits.
    pub fn notify_release(&self) {
        self.release_seq.fetch_add(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            futex(&self.release_seq, libc::FUTEX_WAKE, i32::MAX as u32, None);
        }
    }

    /// The value to pass to `wait_release`, read before looking for a slot.
    pub fn release_ticket(&self) -> u32 {
        self.release_seq.load(Ordering::SeqCst)
    }

    /// Sleep until a slot is released after `ticket` was read, or `timeout`
    /// passes, and say whether one came. Returns at once if a release
    /// already happened.
    pub fn wait_release(&self, ticket: u32, timeout: std::time::Duration) -> bool {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        if self.release_seq.load(Ordering::SeqCst) == ticket {
            futex(&self.release_seq, libc::FUTEX_WAIT, ticket, Some(timeout));
        }
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        self.release_seq.load(Ordering::SeqCst) != ticket
    }
}

/// Sleep while `word` still holds `value`, at most `timeout`.
pub(super) fn futex_wait(word: &AtomicU32, value: u32, timeout: std::time::Duration) {
    futex(word, libc::FUTEX_WAIT, value, Some(timeout));
}

/// Wake every process sleeping on `word`.
pub(super) fn futex_wake(word: &AtomicU32) {
    futex(word, libc::FUTEX_WAKE, i32::MAX as u32, None);
}

/// futex(2) on a word of the shared mapping (not FUTEX_PRIVATE: the waiters
/// and wakers are different processes).
fn futex(word: &AtomicU32, op: libc::c_int, value: u32, timeout: Option<std::time::Duration>) {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: the address is a live, aligned AtomicU32 in the shared mapping;
    // the timespec, when given, outlives the call. Errors (EAGAIN when the
    // value changed, ETIMEDOUT, EINTR) all mean "look again", which every
    // caller does.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), op, value, ts_ptr, std::ptr::null::<u32>(), 0);
    }
}

/// Values of [`Header::shutdown`].
pub mod shutdown {
    pub const RUNNING: u32 = 0;
    pub const GRACEFUL: u32 = 1;
    pub const STOPPING: u32 = 2;
}

/// The mapped region. Dropping it unmaps the memory in this process only.
pub struct Region {
    map: memmap2::MmapMut,
    slot_count: usize,
    /// `max_prepared_statements`: each slot's statement table is sized for it.
    statement_capacity: usize,
}

impl Drop for Region {
    fn drop(&mut self) {
        // The mapping goes away with the map field: no count may land in it.
        super::counters::uninstall(self.counters());
    }
}

fn header_size() -> usize {
    std::mem::size_of::<Header>().next_multiple_of(std::mem::align_of::<Slot>())
}

fn clients_size() -> usize {
    (CLIENT_ENTRIES * std::mem::size_of::<ClientEntry>()).next_multiple_of(std::mem::align_of::<Slot>())
}

fn queue_size() -> usize {
    (QUEUES * QUEUE_CELLS * std::mem::size_of::<AtomicU64>()).next_multiple_of(std::mem::align_of::<Slot>())
}

fn counters_size() -> usize {
    std::mem::size_of::<CounterBlock>().next_multiple_of(std::mem::align_of::<Slot>())
}

/// Where the slots start.
fn slots_offset() -> usize {
    header_size() + clients_size() + queue_size() + counters_size()
}

/// Where the statement tables' heads start, after the slots.
fn statement_heads_offset(slot_count: usize) -> usize {
    slots_offset() + slot_count * std::mem::size_of::<Slot>()
}

/// Where the statement tables' cells start, after their heads.
fn statement_cells_offset(slot_count: usize) -> usize {
    statement_heads_offset(slot_count) + slot_count * std::mem::size_of::<StatementsHead>()
}

impl Region {
    /// Create the region for `slot_count` slots, zeroed (every slot NOTINIT),
    /// each with a table for `statement_capacity` prepared statements.
    pub fn create(slot_count: usize, statement_capacity: usize) -> io::Result<Region> {
        let cells = slot_count * cells_for(statement_capacity);
        let len = statement_cells_offset(slot_count) + cells * std::mem::size_of::<StatementCell>();
        // SAFETY: the name is a valid NUL-terminated string and the flags are valid.
        let raw = unsafe { libc::memfd_create(c"pgagroal-shm".as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: memfd_create just returned this fd and nothing else owns it.
        let file = unsafe { std::fs::File::from_raw_fd(raw) };
        file.set_len(len as u64)?;
        // SAFETY: the memfd is private to this process tree; its size is only
        // set here, so the mapping never refers past the end of the file.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(&file)? };
        let region = Region { map, slot_count, statement_capacity };
        // SAFETY: the mapping is at least header_size() bytes, page aligned
        // (so aligned for Header), and a fresh memfd is zero-filled, which is
        // a valid Header. No other process exists yet.
        let header = unsafe { &mut *(region.map.as_ptr() as *mut Header) };
        header.magic = MAGIC;
        header.layout_version = LAYOUT_VERSION;
        header.slot_count = slot_count as u32;
        header.slot_size = std::mem::size_of::<Slot>() as u32;
        header.supervisor_pid.store(std::process::id() as i32, Ordering::Relaxed);
        Ok(region)
    }

    /// The event counters, after the queue's ring.
    pub fn counters(&self) -> &CounterBlock {
        // SAFETY: create() sized the mapping for the block at this offset, a
        // multiple of Slot's alignment (64, CounterBlock's too). Its fields
        // are atomics, valid for any bit pattern including a memfd's zeroes.
        unsafe { &*(self.map.as_ptr().add(header_size() + clients_size() + queue_size()) as *const CounterBlock) }
    }

    pub fn header(&self) -> &Header {
        // SAFETY: create() sized and initialised the header at offset 0; the
        // mapping is page aligned. Header's mutable fields are atomics.
        unsafe { &*(self.map.as_ptr() as *const Header) }
    }

    pub fn slots(&self) -> SlotTable<'_> {
        // SAFETY: create() sized the mapping for slot_count slots after the
        // header, the client table and the queue's ring, at an offset that is a multiple of Slot's alignment. All of
        // Slot's fields are atomics, valid for any bit pattern including the
        // zeroes a memfd starts with, and are only accessed atomically.
        let slots = unsafe {
            std::slice::from_raw_parts(self.map.as_ptr().add(slots_offset()) as *const Slot, self.slot_count)
        };
        SlotTable::new(slots)
    }

    /// Slot `slot`'s prepared statements (None for a slot out of range).
    pub fn statements(&self, slot: usize) -> Option<Statements<'_>> {
        if slot >= self.slot_count {
            return None;
        }
        let per_slot = cells_for(self.statement_capacity);
        // SAFETY: create() sized the mapping for slot_count heads after the
        // slots and slot_count * per_slot cells after them, at offsets that
        // are multiples of 64 (Slot's size and StatementsHead's); slot is in
        // range. Both types hold only atomics, valid for any bit pattern,
        // and are only accessed atomically.
        let (head, cells) = unsafe {
            let head =
                &*(self.map.as_ptr().add(statement_heads_offset(self.slot_count)) as *const StatementsHead).add(slot);
            let first = (self.map.as_ptr().add(statement_cells_offset(self.slot_count)) as *const StatementCell)
                .add(slot * per_slot);
            (head, std::slice::from_raw_parts(first, per_slot))
        };
        Some(Statements::new(head, cells, self.statement_capacity, &self.header().statement_epochs))
    }

    pub fn clients(&self) -> ClientTable<'_> {
        // SAFETY: create() sized the mapping for CLIENT_ENTRIES entries right
        // after the header, at an offset that is a multiple of Slot's (and so
        // ClientEntry's) alignment. ClientEntry holds only atomics, valid for
        // any bit pattern including a fresh memfd's zeroes.
        let entries = unsafe {
            std::slice::from_raw_parts(self.map.as_ptr().add(header_size()) as *const ClientEntry, CLIENT_ENTRIES)
        };
        ClientTable::new(entries, &self.header().cancel_done)
    }

    /// Wait queue `index` (0: clients under no limit rule; `r + 1`: rule
    /// `r`); out-of-range indexes give queue 0.
    pub fn queue(&self, index: usize) -> WaitQueue<'_> {
        let index = if index < QUEUES { index } else { 0 };
        // SAFETY: create() sized the mapping for QUEUES rings of QUEUE_CELLS
        // cells right after the client table, at an offset that is a multiple
        // of Slot's (and so AtomicU64's) alignment; index < QUEUES keeps the
        // ring inside; any bit pattern is a valid AtomicU64.
        let ring = unsafe {
            std::slice::from_raw_parts(
                (self.map.as_ptr().add(header_size() + clients_size()) as *const AtomicU64).add(index * QUEUE_CELLS),
                QUEUE_CELLS,
            )
        };
        let header = self.header();
        WaitQueue::new(&header.queue_head[index], &header.queue_tail[index], ring, self.clients())
    }

    /// A slot became claimable (FREE or NOTINIT): wake the head of every
    /// wait queue with someone in it, and anyone waiting outside them.
    pub fn notify_release(&self) {
        // Orders the release before the look at the queues (see
        // `WaitQueue::pop_quietly`).
        std::sync::atomic::fence(Ordering::SeqCst);
        self.header().notify_release();
        let header = self.header();
        for index in 0..QUEUES {
            if header.queue_tail[index].load(Ordering::Acquire) > header.queue_head[index].load(Ordering::Acquire) {
                self.queue(index).wake_head();
            }
        }
    }

    /// A waiter that got a slot leaves queue `index`; the next waiter is
    /// woken only if a slot is there for it to take (a FREE or empty one),
    /// so a saturated pool costs one wake-up per release, not two.
    pub fn served(&self, index: usize, ticket: super::queue::Ticket) {
        let queue = self.queue(index);
        queue.pop_quietly(ticket);
        std::sync::atomic::fence(Ordering::SeqCst);
        let claimable = self.slots().iter().any(|(_, slot)| {
            matches!(slot.load().state, super::slot::SlotState::Free | super::slot::SlotState::NotInit)
        });
        if claimable {
            queue.wake_head();
        }
    }

    /// Cancel a dead worker's tickets in every queue.
    pub fn cancel_waits_of(&self, entry: usize) {
        for index in 0..QUEUES {
            let header = self.header();
            if header.queue_tail[index].load(Ordering::Acquire) > header.queue_head[index].load(Ordering::Acquire) {
                self.queue(index).cancel_entry(entry);
            }
        }
    }
}

#[cfg(test)]
#[path = "region_tests.rs"]
mod tests;
