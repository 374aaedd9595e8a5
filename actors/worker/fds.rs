//! The server connections whose fds a worker keeps after giving their slots
//! back, keyed by slot and generation, so that the next time it claims one
//! of those slots (its next client, or its client's next transaction) it
//! needs no message to the supervisor. A kept fd whose slot has moved on to
//! a new connection (another generation) is closed when that is noticed.
//!
//! A plain connection may be kept by many workers at once (only the slot's
//! owner uses it). A TLS connection can be carried on only by the worker
//! holding its TLS state: when that worker takes another slot it terminates
//! the TLS one rather than leave it stranded in the pool.

use super::WorkerMailbox;
use crate::net::Sock;
use pgagroal::msg::Up;
use pgagroal::msg::pool::PoolNotice;
use pgagroal::protocol::encode;
use pgagroal::shmem::{Generation, Region, SlotId, SlotState};
use std::time::{Duration, Instant};

/// A pooled connection's fd kept by this worker.
pub struct Kept {
    pub id: SlotId,
    pub generation: Generation,
    pub sock: Sock,
    /// ParameterStatus set and BackendKeyData from the connection's start-up.
    pub startup: Vec<u8>,
}

/// The worker's kept fds, most recently returned last.
#[derive(Default)]
pub struct Fds {
    kept: Vec<Kept>,
}

impl Fds {
    /// The slot most recently given back, tried first by the next claim.
    pub fn preferred(&self) -> Option<SlotId> {
        self.kept.last().map(|k| k.id)
    }

    /// Take the kept fd of a claimed slot, if it is still that connection.
    pub fn take(&mut self, id: SlotId, generation: Generation) -> Option<Kept> {
        let at = self.kept.iter().position(|k| k.id == id)?;
        let kept = self.kept.remove(at);
        // An older connection of the slot: its socket is dead (whoever
        // killed it shut it down); the fd just closes.
        (kept.generation == generation).then_some(kept)
    }

    /// Keep a returned connection's fd; fds of slots that moved on are
    /// dropped.
    pub fn put(&mut self, region: &Region, kept: Kept) {
        let table = region.slots();
        self.kept
            .retain(|k| k.id != kept.id && table.get(k.id).is_some_and(|slot| slot.load().generation == k.generation));
        self.kept.push(kept);
    }

    /// Before this worker uses slot `using` (or a new connection): its kept
    /// TLS connections in other slots are terminated.
    pub fn retire_tls_except(&mut self, region: &Region, mailbox: &WorkerMailbox, pid: i32, using: Option<SlotId>) {
        let mut i = 0;
        while i < self.kept.len() {
            if self.kept[i].sock.is_tls() && Some(self.kept[i].id) != using {
                let kept = self.kept.remove(i);
                retire(region, mailbox, pid, kept);
            } else {
                i += 1;
            }
        }
    }

    /// Take the kept fd of `id` whatever its generation (for eviction of a
    /// slot this worker holds the TLS state of).
    pub fn take_any(&mut self, id: SlotId) -> Option<Kept> {
        let at = self.kept.iter().position(|k| k.id == id)?;
        Some(self.kept.remove(at))
    }

    /// Before the worker exits: TLS connections die with it, so they are
    /// terminated properly now.
    pub fn release(&mut self, region: &Region, mailbox: &WorkerMailbox, pid: i32) {
        self.retire_tls_except(region, mailbox, pid, None);
        self.kept.clear();
    }
}

/// Terminate a kept TLS connection and free its slot, unless someone else
/// has taken the slot meanwhile.
fn retire(region: &Region, mailbox: &WorkerMailbox, pid: i32, kept: Kept) {
    let table = region.slots();
    let Some(slot) = table.get(kept.id) else { return };
    let word = slot.load();
    if word.state != SlotState::Free || word.generation != kept.generation || slot.tls_owner() != pid {
        return;
    }
    let Ok(word) = table.transition(kept.id, word, SlotState::Remove, pid) else { return };
    // Whatever the last reset still owes is read and dropped with the connection.
    let _ = kept.sock.write_all(&encode::terminate(), Some(Instant::now() + Duration::from_secs(1)));
    kept.sock.shutdown();
    if table.transition(kept.id, word, SlotState::NotInit, pid).is_ok() {
        region.notify_release();
    }
    let _ = mailbox.send(&Up::Notice(PoolNotice::Killed { slot: kept.id, generation: word.generation }), None);
}
