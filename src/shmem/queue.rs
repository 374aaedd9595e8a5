//! The wait queue for server connections: clients that find the pool full
//! take a ticket and are served in ticket order.
//!
//! While anyone waits, only the waiter at the head of the queue may claim a
//! slot; a newcomer takes a ticket behind the others instead of taking a
//! slot that was just released. Whoever releases a slot wakes the head
//! waiter alone (a futex word of its own, in its client-table entry), and a
//! head waiter that got a slot wakes the next one. So a release wakes one
//! process, never all of them, and nobody sleeps and retries in a loop.
//!
//! The queue is a ring of cells, one per ticket, each naming the ticket and
//! the waiter's client-table entry. A waiter that gives up (timeout, client
//! gone) marks its cell cancelled; cancelled cells at the head are skipped.
//! The supervisor cancels the cells of a worker that died while waiting.

use super::clients::ClientTable;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A waiter's place in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(pub u64);

/// A borrowed view of the queue.
#[derive(Clone, Copy)]
pub struct WaitQueue<'a> {
    /// The ticket served next.
    head: &'a AtomicU64,
    /// The next ticket to hand out.
    tail: &'a AtomicU64,
    ring: &'a [AtomicU64],
    clients: ClientTable<'a>,
}

/// A cell: the ticket (plus one, so a zeroed cell names no ticket) in the
/// high 48 bits, the waiter's entry plus one in the low 16 (0: cancelled).
fn cell(ticket: u64, entry: Option<usize>) -> u64 {
    ((ticket + 1) << 16) | entry.map_or(0, |e| (e as u64 + 1) & 0xffff)
}

fn cell_ticket(raw: u64) -> Option<u64> {
    (raw >> 16).checked_sub(1)
}

fn cell_entry(raw: u64) -> Option<usize> {
    ((raw & 0xffff) as usize).checked_sub(1)
}

impl<'a> WaitQueue<'a> {
    pub fn new(head: &'a AtomicU64, tail: &'a AtomicU64, ring: &'a [AtomicU64], clients: ClientTable<'a>) -> Self {
        WaitQueue { head, tail, ring, clients }
    }

    fn slot(&self, ticket: u64) -> Option<&AtomicU64> {
        self.ring.get((ticket % self.ring.len().max(1) as u64) as usize)
    }

    /// Tickets handed out and not yet served or skipped (cancelled ones
    /// not yet reached included).
    pub fn len(&self) -> u64 {
        self.tail.load(Ordering::Acquire).saturating_sub(self.head.load(Ordering::Acquire))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Take a ticket for client-table entry `entry`; None when the ring is
    /// full (the caller then waits without a place in line).
    pub fn enqueue(&self, entry: usize) -> Option<Ticket> {
        loop {
            let t = self.tail.load(Ordering::Acquire);
            if t.saturating_sub(self.head.load(Ordering::Acquire)) >= self.ring.len() as u64 {
                return None;
            }
            if self.tail.compare_exchange(t, t + 1, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                self.slot(t)?.store(cell(t, Some(entry)), Ordering::Release);
                return Some(Ticket(t));
            }
        }
    }

    /// Whether `ticket` is at the head (cancelled tickets before it are
    /// skipped first).
    pub fn is_turn(&self, ticket: Ticket) -> bool {
        self.skip_cancelled();
        self.head.load(Ordering::Acquire) == ticket.0
    }

    /// The head waiter got what it waited for: the next one is at the head
    /// and is woken.
    pub fn pop(&self, ticket: Ticket) {
        self.pop_quietly(ticket);
        self.wake_head();
    }

    /// [`WaitQueue::pop`] without waking the next waiter: for a caller that
    /// wakes it only when there is something for it to take. Such a caller
    /// must issue a SeqCst fence between this and its look, as releasers do
    /// between a release and their wake-up, so that one of the two always
    /// sees the other.
    pub fn pop_quietly(&self, ticket: Ticket) {
        let _ = self.head.compare_exchange(ticket.0, ticket.0 + 1, Ordering::AcqRel, Ordering::Acquire);
        self.skip_cancelled();
    }

    /// Leave the queue without being served.
    pub fn cancel(&self, ticket: Ticket, entry: usize) {
        if let Some(c) = self.slot(ticket.0) {
            let _ = c.compare_exchange(
                cell(ticket.0, Some(entry)),
                cell(ticket.0, None),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        // If it had reached the head meanwhile, it is skipped now and the
        // next waiter woken in its place.
        self.skip_cancelled();
        self.wake_head();
    }

    /// Cancel every ticket of `entry` (its worker died while waiting).
    pub fn cancel_entry(&self, entry: usize) {
        for c in self.ring {
            let raw = c.load(Ordering::Acquire);
            if let (Some(t), Some(e)) = (cell_ticket(raw), cell_entry(raw))
                && e == entry
            {
                let _ = c.compare_exchange(raw, cell(t, None), Ordering::AcqRel, Ordering::Acquire);
            }
        }
        self.skip_cancelled();
        self.wake_head();
    }

    fn skip_cancelled(&self) {
        loop {
            let h = self.head.load(Ordering::Acquire);
            if h >= self.tail.load(Ordering::Acquire) {
                return;
            }
            let Some(c) = self.slot(h) else { return };
            if c.load(Ordering::Acquire) != cell(h, None) {
                return;
            }
            let _ = self.head.compare_exchange(h, h + 1, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Wake the waiter at the head, if any (a slot was released, or the
    /// head changed).
    pub fn wake_head(&self) {
        let h = self.head.load(Ordering::Acquire);
        if h >= self.tail.load(Ordering::Acquire) {
            return;
        }
        let Some(raw) = self.slot(h).map(|c| c.load(Ordering::Acquire)) else { return };
        if cell_ticket(raw) == Some(h)
            && let Some(entry) = cell_entry(raw)
        {
            self.clients.wake_waiter(entry);
        }
    }

    /// The value to pass to [`WaitQueue::wait`], read before checking
    /// whether it is `entry`'s turn.
    pub fn wake_seq(&self, entry: usize) -> u32 {
        self.clients.wake_seq(entry)
    }

    /// Sleep until woken after `seen` was read, or `timeout` passes;
    /// whether a wake-up came.
    pub fn wait(&self, entry: usize, seen: u32, timeout: Duration) -> bool {
        self.clients.wait_woken(entry, seen, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shmem::clients::ClientEntry;
    use std::sync::atomic::AtomicU32;

    struct Parts {
        head: AtomicU64,
        tail: AtomicU64,
        ring: Vec<AtomicU64>,
        entries: Vec<ClientEntry>,
        done: AtomicU32,
    }

    fn parts(ring: usize) -> Parts {
        Parts {
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            ring: (0..ring).map(|_| AtomicU64::new(0)).collect(),
            entries: (0..8).map(|_| ClientEntry::default()).collect(),
            done: AtomicU32::new(0),
        }
    }

    fn queue(p: &Parts) -> WaitQueue<'_> {
        WaitQueue::new(&p.head, &p.tail, &p.ring, ClientTable::new(&p.entries, &p.done))
    }

    #[test]
    fn served_in_ticket_order_skipping_the_cancelled() {
        let p = parts(4);
        let q = queue(&p);
        assert!(q.is_empty());
        let a = q.enqueue(0).expect("a");
        let b = q.enqueue(1).expect("b");
        let c = q.enqueue(2).expect("c");
        assert!(q.is_turn(a) && !q.is_turn(b));
        q.cancel(b, 1);
        assert!(!q.is_turn(c), "a is still first");
        let woken = q.wake_seq(2);
        q.pop(a);
        assert!(q.is_turn(c), "b was cancelled, so c is next");
        assert_ne!(q.wake_seq(2), woken, "the new head was woken");
        let d = q.enqueue(3).expect("d");
        q.enqueue(4).expect("e");
        q.enqueue(5).expect("f");
        assert_eq!(q.enqueue(6), None, "the ring is full");
        q.pop(c);
        assert!(q.is_turn(d));
        q.cancel_entry(3);
        assert_eq!(q.len(), 2, "d's cell was skipped");
    }

    #[test]
    fn a_cancel_at_the_head_passes_the_turn_on() {
        let p = parts(8);
        let q = queue(&p);
        let a = q.enqueue(0).expect("a");
        let b = q.enqueue(1).expect("b");
        let seen = q.wake_seq(1);
        q.cancel(a, 0);
        assert!(q.is_turn(b));
        assert_ne!(q.wake_seq(1), seen);
    }

    #[test]
    fn threads_are_served_in_arrival_order() {
        let p = parts(64);
        let q = queue(&p);
        let order = std::sync::Mutex::new(Vec::new());
        let tickets: Vec<Ticket> = (0..6).map(|e| q.enqueue(e).expect("ticket")).collect();
        std::thread::scope(|s| {
            for (e, t) in tickets.iter().enumerate().rev() {
                let (q, order) = (&q, &order);
                let t = *t;
                s.spawn(move || {
                    loop {
                        let seen = q.wake_seq(e);
                        if q.is_turn(t) {
                            order.lock().expect("lock").push(e);
                            q.pop(t);
                            return;
                        }
                        q.wait(e, seen, Duration::from_secs(5));
                    }
                });
            }
        });
        assert_eq!(order.into_inner().expect("lock"), vec![0, 1, 2, 3, 4, 5]);
    }
}
