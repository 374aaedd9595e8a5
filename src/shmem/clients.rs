//! The client table: one entry per worker, holding the BackendKeyData the
//! pooler minted for the worker's current client and the server connection
//! (slot and generation) serving that client right now, if any.
//!
//! A CancelRequest carries a minted key. Whoever receives it finds the
//! entry with that key and, in one compare-and-swap on the entry's binding
//! word, counts itself in as a cancel in flight for the bound slot; it then
//! checks the key once more (the client may have left in between), forwards
//! the cancel with the real backend's key and counts itself out. The worker
//! unbinds a slot only with a compare-and-swap that requires no cancel in
//! flight, and waits otherwise: so a cancel can reach only the connection
//! that was serving the client when it was counted in, and that connection
//! is not handed to anyone else until PostgreSQL has taken the cancel.

use super::slot::{Generation, SlotId};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Entries in the table: at most this many workers have a cancellable
/// client at once (a worker beyond it serves its client without cancel).
pub const CLIENT_ENTRIES: usize = 16_384;

/// One worker's entry. 32-byte aligned; two entries share a cache line,
/// which is fine: only cancels and queue wake-ups touch others' entries.
#[repr(C, align(32))]
#[derive(Default)]
pub struct ClientEntry {
    /// The worker's pid (the minted key's process id), 0 when free.
    pid: AtomicI32,
    /// The minted key's secret, 0 while the worker has no client.
    secret: AtomicU32,
    /// [`Binding`], encoded.
    binding: AtomicU64,
    /// Futex word the worker sleeps on while it waits in the queue for a
    /// connection: a count bumped to wake it, and [`SLEEPING`] (see
    /// [`super::queue`]).
    wake: AtomicU32,
    /// With metrics on: [`SOCKET`] while the worker serves a client's
    /// socket, with the client's (database, user) pair in [`super::pools`]
    /// in the low bits once it is known (0 there: none, or the registry
    /// full). Written by the worker only.
    pool: AtomicU32,
    /// When the client began to wait for a connection, in
    /// [`super::pools::monotonic_micros`]; 0 while it does not wait.
    waiting_since: AtomicU64,
    /// CancelRequests for the client that found it holding no connection,
    /// a count: a client waiting for one gives up its request when it moves
    /// on ([`ClientTable::cancel_unbound`]).
    cancel_asks: AtomicU32,
}

/// Flag in [`ClientEntry::wake`]: its worker sleeps (or is about to) on the
/// word, so a wake-up needs the futex call; the low 31 bits count wake-ups.
const SLEEPING: u32 = 1 << 31;

/// The wake word after one more wake-up: the count moves on, the flag goes.
fn next_wake(word: u32) -> u32 {
    (word & !SLEEPING).wrapping_add(1) & !SLEEPING
}

/// Flag in [`ClientEntry::pool`]: the worker serves a client socket.
const SOCKET: u32 = 1 << 31;

/// One client socket as the metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientView {
    /// Its pair in [`super::pools`] (0 none or not known yet).
    pub pool: u32,
    /// Past start-up and authentication, with a minted key.
    pub logged_in: bool,
    /// Since when it waits for a connection (monotonic microseconds).
    pub waiting_since: Option<u64>,
}

/// Which server connection serves the client, and how many cancels are on
/// their way to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub slot: Option<(SlotId, Generation)>,
    pub cancels: u8,
}

impl Binding {
    const UNBOUND: Binding = Binding { slot: None, cancels: 0 };

    fn encode(self) -> u64 {
        match self.slot {
            None => u64::from(self.cancels),
            Some((id, generation)) => {
                (u64::from(id.0 + 1) << 32) | (u64::from(generation.0 & 0x00ff_ffff) << 8) | u64::from(self.cancels)
            }
        }
    }

    fn decode(raw: u64) -> Binding {
        let cancels = (raw & 0xff) as u8;
        let id = (raw >> 32) as u32;
        let slot = (id != 0).then(|| (SlotId(id - 1), Generation(((raw >> 8) as u32) & 0x00ff_ffff)));
        Binding { slot, cancels }
    }
}

/// A borrowed view of the entries.
#[derive(Clone, Copy)]
pub struct ClientTable<'a> {
    entries: &'a [ClientEntry],
    /// Bumped when a cancel counts itself out; what unbinding waits on.
    done: &'a AtomicU32,
}

/// What a cancel counted in for: forward it to this slot's backend, then
/// call [`ClientTable::cancel_done`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelTarget {
    pub entry: usize,
    pub slot: SlotId,
    pub generation: Generation,
}

/// Why unbinding failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnbindError {
    /// A cancel stayed in flight past the deadline: the connection may still
    /// receive it and must not be given to anyone else.
    CancelInFlight,
}

impl<'a> ClientTable<'a> {
    pub fn new(entries: &'a [ClientEntry], done: &'a AtomicU32) -> Self {
        ClientTable { entries, done }
    }

    /// A worker takes an entry for its lifetime; None when all are taken.
    pub fn claim(&self, pid: i32) -> Option<usize> {
        self.entries.iter().position(|e| e.pid.compare_exchange(0, pid, Ordering::AcqRel, Ordering::Relaxed).is_ok())
    }

    /// Free the entries of a process that is gone (the supervisor, on its
    /// death; the worker itself before it exits).
    pub fn release(&self, pid: i32) {
        for e in self.entries.iter().filter(|e| e.pid.load(Ordering::Acquire) == pid) {
            e.secret.store(0, Ordering::Release);
            e.binding.store(Binding::UNBOUND.encode(), Ordering::Release);
            e.pool.store(0, Ordering::Relaxed);
            e.waiting_since.store(0, Ordering::Relaxed);
            e.pid.store(0, Ordering::Release);
        }
        self.wake();
    }

    /// A new client of the entry's worker: its minted secret (never 0).
    pub fn begin_client(&self, entry: usize, secret: u32) {
        if let Some(e) = self.entries.get(entry) {
            e.secret.store(secret.max(1), Ordering::Release);
        }
    }

    /// Clients connected now: entries whose worker has a client with a
    /// minted key (for the metrics).
    pub fn active_clients(&self) -> u64 {
        self.entries.iter().filter(|e| e.secret.load(Ordering::Relaxed) != 0).count() as u64
    }

    /// The client left (unbind first): its key stops matching.
    pub fn end_client(&self, entry: usize) {
        if let Some(e) = self.entries.get(entry) {
            e.secret.store(0, Ordering::Release);
            e.waiting_since.store(0, Ordering::Relaxed);
        }
    }

    /// The entry's worker took a client socket (`open`) or is done with it.
    pub fn set_socket(&self, entry: usize, open: bool) {
        if let Some(e) = self.entries.get(entry) {
            e.pool.store(if open { SOCKET } else { 0 }, Ordering::Relaxed);
        }
    }

    /// Whether the entry's worker serves a client socket (recorded with
    /// metrics on).
    pub fn has_socket(&self, entry: usize) -> bool {
        self.entries.get(entry).is_some_and(|e| e.pool.load(Ordering::Relaxed) & SOCKET != 0)
    }

    /// Which (database, user) pair the entry's client came for.
    pub fn set_pool(&self, entry: usize, pool: u32) {
        if let Some(e) = self.entries.get(entry) {
            e.pool.store(SOCKET | (pool & !SOCKET), Ordering::Relaxed);
        }
    }

    /// The entry's client waits for a connection from `since` (monotonic
    /// microseconds; 0 when it stops waiting).
    pub fn set_waiting(&self, entry: usize, since: u64) {
        if let Some(e) = self.entries.get(entry) {
            e.waiting_since.store(since, Ordering::Relaxed);
        }
    }

    /// Every client socket a worker serves (recorded with metrics on).
    pub fn sockets(&self) -> Vec<ClientView> {
        self.entries
            .iter()
            .filter_map(|e| {
                let pool = e.pool.load(Ordering::Relaxed);
                let since = e.waiting_since.load(Ordering::Relaxed);
                (pool & SOCKET != 0).then(|| ClientView {
                    pool: pool & !SOCKET,
                    logged_in: e.secret.load(Ordering::Relaxed) != 0,
                    waiting_since: (since != 0).then_some(since),
                })
            })
            .collect()
    }

    /// The client is now served by `slot`. Only the entry's worker binds,
    /// and only while unbound.
    pub fn bind(&self, entry: usize, slot: SlotId, generation: Generation) {
        if let Some(e) = self.entries.get(entry) {
            let bound = Binding { slot: Some((slot, generation)), cancels: 0 };
            e.binding.store(bound.encode(), Ordering::Release);
        }
    }

    /// The client no longer uses its slot. Waits (up to `timeout`) while a
    /// cancel for it is in flight.
    pub fn unbind(&self, entry: usize, timeout: Duration) -> Result<(), UnbindError> {
        let Some(e) = self.entries.get(entry) else { return Ok(()) };
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.done.load(Ordering::Acquire);
            let raw = e.binding.load(Ordering::Acquire);
            let now = Binding::decode(raw);
            if now.cancels == 0 {
                if e.binding
                    .compare_exchange(raw, Binding::UNBOUND.encode(), Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Ok(());
                }
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(UnbindError::CancelInFlight);
            }
            super::region::futex_wait(self.done, seen, left);
        }
    }

    /// Force an entry unbound after [`UnbindError::CancelInFlight`] (its
    /// connection is being closed, so a late cancel can hurt no one).
    pub fn force_unbind(&self, entry: usize) {
        if let Some(e) = self.entries.get(entry) {
            e.binding.store(Binding::UNBOUND.encode(), Ordering::Release);
        }
    }

    pub fn binding(&self, entry: usize) -> Option<Binding> {
        self.entries.get(entry).map(|e| Binding::decode(e.binding.load(Ordering::Acquire)))
    }

    /// A CancelRequest with key (`pid`, `secret`): count it in for the slot
    /// serving that client now. None when the key is unknown or the client
    /// is between transactions (nothing to cancel), or too many cancels are
    /// in flight already.
    pub fn cancel_begin(&self, pid: i32, secret: u32) -> Option<CancelTarget> {
        let (index, e) = self.with_key(pid, secret)?;
        loop {
            let raw = e.binding.load(Ordering::Acquire);
            let now = Binding::decode(raw);
            let (slot, generation) = now.slot?;
            let next = Binding { slot: now.slot, cancels: now.cancels.checked_add(1)? };
            if e.binding.compare_exchange(raw, next.encode(), Ordering::AcqRel, Ordering::Acquire).is_err() {
                continue;
            }
            // Counted in. The key is checked again: if the client left and
            // another took the worker since the lookup, this binding is
            // someone else's.
            let target = CancelTarget { entry: index, slot, generation };
            if e.secret.load(Ordering::Acquire) != secret || e.pid.load(Ordering::Acquire) != pid {
                self.cancel_done(target);
                return None;
            }
            return Some(target);
        }
    }

    /// The entry holding the minted key (`pid`, `secret`).
    fn with_key(&self, pid: i32, secret: u32) -> Option<(usize, &ClientEntry)> {
        if pid == 0 || secret == 0 {
            return None;
        }
        self.entries
            .iter()
            .enumerate()
            .find(|(_, e)| e.pid.load(Ordering::Acquire) == pid && e.secret.load(Ordering::Acquire) == secret)
    }

    /// A CancelRequest with key (`pid`, `secret`) whose client holds no
    /// connection: counted in the entry's [`ClientTable::cancel_asks`], and
    /// its worker woken, so that a client waiting in the queue for a
    /// connection gives up the request it waits with. Whether the key was
    /// found.
    pub fn cancel_unbound(&self, pid: i32, secret: u32) -> bool {
        let Some((index, e)) = self.with_key(pid, secret) else { return false };
        e.cancel_asks.fetch_add(1, Ordering::AcqRel);
        self.wake_waiter(index);
        true
    }

    /// How many cancels found the entry's client holding no connection:
    /// read when it starts to wait; a change since means its request was
    /// cancelled.
    pub fn cancel_asks(&self, entry: usize) -> u32 {
        self.entries.get(entry).map_or(0, |e| e.cancel_asks.load(Ordering::Acquire))
    }

    /// The cancel was delivered (or given up): count it out.
    pub fn cancel_done(&self, target: CancelTarget) {
        if let Some(e) = self.entries.get(target.entry) {
            loop {
                let raw = e.binding.load(Ordering::Acquire);
                let now = Binding::decode(raw);
                // Forced unbound or released meanwhile: nothing to count out.
                if now.slot != Some((target.slot, target.generation)) || now.cancels == 0 {
                    break;
                }
                let next = Binding { slot: now.slot, cancels: now.cancels - 1 };
                if e.binding.compare_exchange(raw, next.encode(), Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    break;
                }
            }
        }
        self.wake();
    }

    fn wake(&self) {
        self.done.fetch_add(1, Ordering::AcqRel);
        super::region::futex_wake(self.done);
    }

    /// Wake the worker of `entry` from [`ClientTable::wait_woken`]: the
    /// word's count moves on (so a waiter about to sleep does not), and
    /// the futex is woken only when the waiter said it sleeps.
    pub fn wake_waiter(&self, entry: usize) {
        if let Some(e) = self.entries.get(entry) {
            let before = e.wake.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| Some(next_wake(w)));
            if before.is_ok_and(|w| w & SLEEPING != 0) {
                super::region::futex_wake(&e.wake);
            }
        }
    }

    /// The value to pass to [`ClientTable::wait_woken`], read before
    /// looking; a wake-up after it changes it.
    pub fn wake_seq(&self, entry: usize) -> u32 {
        self.entries.get(entry).map_or(0, |e| e.wake.load(Ordering::SeqCst) & !SLEEPING)
    }

    /// Sleep until woken after `seen` was read, or `timeout` passes;
    /// whether a wake-up came (the count moved on).
    pub fn wait_woken(&self, entry: usize, seen: u32, timeout: Duration) -> bool {
        let Some(e) = self.entries.get(entry) else { return false };
        // Say it sleeps, unless a wake-up came already. A waker that read
        // the word before this saw no flag, but then its count change came
        // first and this exchange fails.
        let flagged = seen | SLEEPING;
        match e.wake.compare_exchange(seen, flagged, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => {}
            Err(now) if now == flagged => {}
            Err(_) => return true,
        }
        super::region::futex_wait(&e.wake, flagged, timeout);
        e.wake.load(Ordering::SeqCst) & !SLEEPING != seen
    }

    /// The entries `pid` holds.
    pub fn entries_of(&self, pid: i32) -> Vec<usize> {
        (0..self.entries.len()).filter(|&i| self.entries[i].pid.load(Ordering::Acquire) == pid).collect()
    }
}

#[cfg(test)]
#[path = "clients_tests.rs"]
mod tests;
