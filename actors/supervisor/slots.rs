//! Slots and pooled fds as the supervisor sees them: the pool calls of
//! workers and services (register a new connection, check out a claimed
//! one's fd, drop a killed one's), taking back the slots of a dead child,
//! and ending a pooled connection for every holder.

use super::{Pooled, Supervisor};
use pgagroal::config::ServerConfig;
use pgagroal::msg::Outcome;
use pgagroal::msg::pool::{PoolAnswer, PoolCall, PoolNotice};
use pgagroal::protocol::encode;
use pgagroal::shmem::{Generation, SlotId, SlotState, Word};
use slog::{debug, warn};
use std::os::fd::{AsRawFd, OwnedFd};

impl Supervisor {
    /// Answer a pool call from `pid` (with the fd it carried, if any).
    pub(super) fn pool_call(
        &mut self,
        pid: i32,
        call: PoolCall,
        fd: Option<OwnedFd>,
    ) -> (Outcome<PoolAnswer>, Option<OwnedFd>) {
        let table = self.region.slots();
        match call {
            PoolCall::Register { slot, generation, startup } => {
                let word = table.get(slot).map(|s| s.load());
                let valid =
                    word.is_some_and(|w| w.owner == pid && w.generation == generation && w.state == SlotState::Init);
                match (valid, fd, self.pooled.get_mut(slot.0 as usize)) {
                    (true, Some(fd), Some(entry)) => {
                        *entry = Some(Pooled { fd, generation, startup });
                        (Outcome::Ok(PoolAnswer::Registered), None)
                    }
                    _ => (Outcome::Failure(format!("slot {} is not being set up by this process", slot.0)), None),
                }
            }
            PoolCall::Checkout { slot, generation } => {
                pgagroal::fail_point!(
                    "supervisor-before-fd-handoff",
                    return (Outcome::Failure("injected failure before the fd handoff".into()), None)
                );
                let word = table.get(slot).map(|s| s.load());
                // The caller must hold the slot: a worker IN_USE (or on its
                // way to REMOVE), a service in its checking state.
                let valid = word.is_some_and(|w| {
                    w.owner == pid
                        && w.generation == generation
                        && matches!(
                            w.state,
                            SlotState::InUse
                                | SlotState::Remove
                                | SlotState::IdleCheck
                                | SlotState::MaxConnectionAge
                                | SlotState::Validation
                        )
                });
                match self.pooled.get(slot.0 as usize).and_then(Option::as_ref) {
                    Some(p) if valid && p.generation == generation => match p.fd.try_clone() {
                        Ok(copy) => (Outcome::Ok(PoolAnswer::CheckedOut { startup: p.startup.clone() }), Some(copy)),
                        Err(e) => (Outcome::Failure(format!("cannot duplicate fd: {e}")), None),
                    },
                    _ => (Outcome::Failure(format!("no pooled connection for slot {}", slot.0)), None),
                }
            }
        }
    }

    pub(super) fn pool_notice(&mut self, notice: PoolNotice) {
        match notice {
            // The sender ended the connection; ending it here too makes
            // sure no copy another process keeps holds it open (the sender
            // may not have had the fd at all).
            PoolNotice::Killed { slot, generation } => terminate_pooled(&mut self.pooled, slot, generation, false),
        }
    }

    /// Take back every slot a dead process held: its connection is in an
    /// unknown protocol state, so it is terminated and the slot goes NOTINIT.
    pub(super) fn reclaim(&mut self, pid: i32) {
        let table = self.region.slots();
        let mut cancels = Vec::new();
        for (id, first) in table.claimed_by(pid) {
            let mut word = first;
            let was_in_use = word.state == SlotState::InUse;
            loop {
                if word.state == SlotState::Remove {
                    break;
                }
                match table.transition(id, word, SlotState::Remove, self.pid) {
                    Ok(w) => {
                        word = w;
                        break;
                    }
                    Err(pgagroal::shmem::slot::TransitionError::Lost { now })
                        if now.owner == pid && now.state.is_claimed() =>
                    {
                        word = now
                    }
                    Err(_) => break,
                }
            }
            if word.state != SlotState::Remove || !(word.owner == self.pid || word.owner == pid) {
                continue;
            }
            if was_in_use {
                cancels.extend(self.cancel_request(id));
            }
            terminate_pooled(&mut self.pooled, id, word.generation, false);
            if let Err(e) = table.transition(id, word, SlotState::NotInit, self.pid) {
                warn!(self.log, "cannot reset reclaimed slot"; "slot" => id.0, "error" => %e);
            } else {
                self.region.notify_release();
                warn!(self.log, "reclaimed slot of a dead process; its server connection was terminated";
                      "slot" => id.0, "pid" => pid, "state" => first.state.name());
            }
        }
        // Idle TLS connections whose record state died with the worker.
        for (id, word) in table.tls_orphans_of(pid) {
            if self.close_free(id, word, false) {
                debug!(self.log, "closed a TLS server connection whose worker is gone"; "slot" => id.0, "worker" => pid);
            }
        }
        // Cancel whatever the backends of reclaimed IN_USE slots run, from
        // short-lived helpers so the supervisor never waits on PostgreSQL.
        for (server, packet) in cancels {
            self.spawn_helper(move || {
                let _ = crate::child::send_once(&server, &packet);
                0
            });
        }
    }

    /// Take a FREE slot (as `word` says it is) and end its connection for
    /// every holder: FREE -> REMOVE -> NOTINIT. `clean` sends a Terminate
    /// first. False when the slot changed hands meanwhile.
    pub(super) fn close_free(&mut self, id: SlotId, word: Word, clean: bool) -> bool {
        let table = self.region.slots();
        let Ok(word) = table.transition(id, word, SlotState::Remove, self.pid) else { return false };
        terminate_pooled(&mut self.pooled, id, word.generation, clean);
        let freed = table.transition(id, word, SlotState::NotInit, self.pid).is_ok();
        if freed {
            self.region.notify_release();
        }
        freed
    }

    /// The server and CancelRequest that stop what a slot's backend runs.
    fn cancel_request(&self, id: SlotId) -> Option<(ServerConfig, Vec<u8>)> {
        let slot = self.region.slots().get(id)?;
        let info = slot.info();
        let server = self.config.servers.get(info.server as usize).cloned()?;
        (info.backend_pid != 0)
            .then(|| (server, encode::cancel_request(info.backend_pid, &slot.backend_secret().to_be_bytes())))
    }
}

/// Drop the supervisor's copy of a slot's connection, ending the connection
/// for every holder (shutdown, not only close).
pub(super) fn terminate_pooled(pooled: &mut [Option<Pooled>], id: SlotId, generation: Generation, clean: bool) {
    let Some(entry) = pooled.get_mut(id.0 as usize) else { return };
    if entry.as_ref().is_some_and(|p| p.generation == generation)
        && let Some(p) = entry.take()
    {
        if clean {
            let x = encode::terminate();
            // SAFETY: non-blocking send of a 5-byte Terminate on our fd.
            unsafe {
                libc::send(p.fd.as_raw_fd(), x.as_ptr().cast(), x.len(), libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
            };
        }
        // SAFETY: shutdown on a descriptor we own.
        unsafe { libc::shutdown(p.fd.as_raw_fd(), libc::SHUT_RDWR) };
    }
}
