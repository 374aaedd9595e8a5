//! `flush [idle|gracefully|all] [database]`: close pooled connections.
//! Idle ones are closed at once (the supervisor claims FREE slots as any
//! service does). Connections in use belong to their worker, so the
//! supervisor never changes their state: a graceful flush marks the slot
//! and the worker closes the connection when it gives it back; `all` (or a
//! graceful flush whose deadline passed) also stops the workers using them,
//! whose slots are then reclaimed (cancelled and terminated) as after any
//! worker's death.

use super::Supervisor;
use super::children::Kind;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use pgagroal::mgmt::command::FlushMode;
use pgagroal::shmem::{PackedName, SlotState};
use slog::info;
use std::time::{Duration, Instant};

/// A graceful flush waiting for its deadline.
pub struct Job {
    database: Option<PackedName>,
    deadline: Instant,
}

/// What a flush did, for the reply.
#[derive(Debug, Default, Clone, Copy)]
pub struct Flushed {
    /// Idle connections closed now.
    pub closed: usize,
    /// Connections in use marked to close when given back.
    pub marked: usize,
    /// Workers stopped.
    pub stopped: usize,
}

impl Supervisor {
    /// Run a flush; `timeout` bounds a graceful one (zero: no bound).
    pub(super) fn flush(&mut self, mode: FlushMode, database: Option<&str>, timeout: Duration) -> Flushed {
        let name = database.map(|d| PackedName::new(self.limits.real_database(d)));
        let table = self.region.slots();
        let mut done = Flushed::default();
        let mut idle = Vec::new();
        let mut owners = Vec::new();
        for (id, slot) in table.iter() {
            if name.is_some_and(|n| !slot.database_is(&n)) {
                continue;
            }
            let word = slot.load();
            match word.state {
                SlotState::Free => idle.push((id, word)),
                SlotState::InUse if mode != FlushMode::Idle => {
                    slot.mark_flush();
                    done.marked += 1;
                    if mode == FlushMode::All {
                        owners.push(word.owner);
                    }
                }
                _ => {}
            }
        }
        for (id, word) in idle {
            if self.close_free(id, word, true) {
                done.closed += 1;
            }
        }
        done.stopped = self.stop_workers(owners);
        if mode == FlushMode::Gracefully && done.marked > 0 && !timeout.is_zero() {
            self.flushes.push(Job { database: name, deadline: Instant::now() + timeout });
        }
        info!(self.log, "flush"; "mode" => mode.name(), "database" => database.unwrap_or("*"),
              "closed" => done.closed, "marked" => done.marked, "workers_stopped" => done.stopped);
        done
    }

    /// Stop the workers (and only workers) among `pids`; SIGQUIT ends one
    /// at once, and its slots are reclaimed when it is reaped.
    fn stop_workers(&mut self, mut pids: Vec<i32>) -> usize {
        pids.sort_unstable();
        pids.dedup();
        pids.into_iter()
            .filter(|pid| self.children.get(pid).is_some_and(|c| c.kind == Kind::Worker))
            .filter(|pid| nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGQUIT).is_ok())
            .count()
    }

    /// Graceful flushes whose deadline passed become `flush all` for the
    /// connections still marked.
    pub(super) fn expire_flushes(&mut self) {
        let now = Instant::now();
        if self.flushes.iter().all(|j| j.deadline > now) {
            return;
        }
        let (due, waiting): (Vec<Job>, Vec<Job>) =
            std::mem::take(&mut self.flushes).into_iter().partition(|j| j.deadline <= now);
        self.flushes = waiting;
        let table = self.region.slots();
        let mut owners = Vec::new();
        for job in &due {
            for (_, slot) in table.iter() {
                let word = slot.load();
                if word.state == SlotState::InUse
                    && slot.flush_marked()
                    && job.database.is_none_or(|n| slot.database_is(&n))
                {
                    owners.push(word.owner);
                }
            }
        }
        let stopped = self.stop_workers(owners);
        info!(self.log, "graceful flush deadline passed"; "workers_stopped" => stopped);
    }
}
