//! Worker processes as the supervisor sees them: handing accepted clients
//! to idle workers or forking new ones, keeping spare workers ready, the
//! child's side of the fork, reaping exited children and reclaiming the
//! slots a dead worker held (cancelling its backend's query), and the
//! worker mailboxes, over which workers register their new server
//! connections, check pooled ones out and report killed ones.

use super::lifecycle::terminate_pooled;
use super::{Phase, Pooled, SPARE_WORKERS, Supervisor, WORKER_BASE};
use crate::worker;
use crate::worker::prefill::Mode as PrefillMode;
use std::time::{Duration, Instant};

/// How often, at most, a prefill worker is started to restore `min_size`.
const MINIMUM_CHECK: Duration = Duration::from_secs(5);
use mio::unix::SourceFd;
use mio::{Interest, Token};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};
use pgagroal::ipc::{Contract, Mailbox, Received};
use pgagroal::msg::Lifecycle;
use pgagroal::msg::worker::{Peer, WorkerReply, WorkerRequest};
use pgagroal::protocol::encode;
use pgagroal::shmem::{SlotId, SlotState};
use slog::{debug, error, warn};
use std::os::fd::{AsRawFd, OwnedFd};

impl Supervisor {
    /// Hand a new client to an idle worker, or fork one for it.
    pub(super) fn dispatch(&mut self, client: OwnedFd, peer: Peer) {
        while let Some(pid) = self.region.header().take_idle() {
            self.starting.remove(&pid);
            let Some(mailbox) = self.workers.get(&pid) else { continue };
            if self.epochs.get(&pid) != Some(&self.epoch) {
                // Forked before the last reload: it would serve this client
                // with the old hba rules and users.
                let _ = mailbox.send(&WorkerReply::Lifecycle(Lifecycle::Shutdown { graceful: true }), None);
                continue;
            }
            match mailbox.send(&WorkerReply::Client { peer }, Some(std::os::fd::AsFd::as_fd(&client))) {
                Ok(()) => {
                    drop(client);
                    self.keep_spares();
                    return;
                }
                Err(e) => debug!(self.log, "idle worker did not take a client"; "worker" => pid, "error" => %e),
            }
        }
        self.spawn_worker(Some((client, peer)), None);
        self.keep_spares();
    }

    /// Fork spare workers until enough are idle or on their way.
    pub(super) fn keep_spares(&mut self) {
        let header = self.region.header();
        self.starting.retain(|&pid| !header.is_idle(pid));
        while self.phase == Phase::Running && self.region.header().idle_count() + self.starting.len() < SPARE_WORKERS {
            match self.spawn_worker(None, None) {
                Some(pid) => {
                    self.starting.insert(pid);
                }
                None => return,
            }
        }
    }

    /// Open the limit entries' initial connections from a short-lived
    /// worker (see actors/worker/prefill.rs).
    pub(super) fn prefill(&mut self) {
        if self.limits.prefill().next().is_some() {
            self.prefill_child = self.spawn_worker(None, Some(PrefillMode::Start));
            self.prefill_at = Instant::now() + MINIMUM_CHECK;
        }
    }

    /// Keep every limit entry at its `min_size`: when one has fewer
    /// connections, a prefill worker makes up the difference (at most one at
    /// a time, and not more often than every few seconds, so an unreachable
    /// server costs a warning per attempt, not a loop).
    pub(super) fn keep_minimum(&mut self) {
        if self.phase != Phase::Running || self.prefill_child.is_some() || Instant::now() < self.prefill_at {
            return;
        }
        let table = self.region.slots();
        let below = self.limits.prefill().any(|(rule, _, _, _)| {
            self.limits.entries.get(rule).is_some_and(|e| e.min_size > 0 && table.rule_count(rule) < e.min_size)
        });
        if below {
            self.prefill_child = self.spawn_worker(None, Some(PrefillMode::Minimum));
            self.prefill_at = Instant::now() + MINIMUM_CHECK;
        }
    }

    fn spawn_worker(&mut self, first: Option<(OwnedFd, Peer)>, prefill: Option<PrefillMode>) -> Option<i32> {
        let (ours, theirs) = match Mailbox::pair(Contract::Worker) {
            Ok(pair) => pair,
            Err(e) => {
                error!(self.log, "cannot create a worker mailbox"; "error" => %e);
                return None;
            }
        };
        // SAFETY: the supervisor is single-threaded, so the child starts from
        // a consistent copy of its memory; the child never returns from this
        // branch and leaves with _exit.
        match unsafe { nix::unistd::fork() } {
            Ok(ForkResult::Child) => {
                // Before anything allocates: the worker's heap is its own.
                let supervisor_region = crate::ALLOCATOR.activate();
                let code = self.become_worker(first, theirs, supervisor_region, prefill);
                // SAFETY: _exit ends the child without running the parent's
                // destructors or atexit handlers on its copies.
                unsafe { libc::_exit(code) }
            }
            Ok(ForkResult::Parent { child }) => {
                drop(first);
                drop(theirs);
                let pid = child.as_raw();
                let registered = ours.set_nonblocking(true).is_ok()
                    && self
                        .poll
                        .registry()
                        .register(
                            &mut SourceFd(&ours.as_raw_fd()),
                            Token(WORKER_BASE + pid as usize),
                            Interest::READABLE,
                        )
                        .is_ok();
                if !registered {
                    warn!(self.log, "cannot watch worker mailbox"; "worker" => pid);
                }
                self.workers.insert(pid, ours);
                self.epochs.insert(pid, self.epoch);
                debug!(self.log, "worker started"; "worker" => pid);
                Some(pid)
            }
            Err(e) => {
                error!(self.log, "fork failed"; "error" => %e);
                if let Some((client, _)) = first {
                    let refusal = encode::error_response("FATAL", "53300", "cannot start a worker for this connection");
                    // SAFETY: a plain non-blocking send on the accepted socket.
                    unsafe {
                        libc::send(
                            client.as_raw_fd(),
                            refusal.as_ptr().cast(),
                            refusal.len(),
                            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                        )
                    };
                }
                None
            }
        }
    }

    /// In the forked child: become a worker. Never touches the supervisor's
    /// own descriptors after closing them.
    fn become_worker(
        &self,
        first: Option<(OwnedFd, Peer)>,
        mailbox: Mailbox,
        supervisor_region: Option<(usize, usize)>,
        prefill: Option<PrefillMode>,
    ) -> i32 {
        pgagroal::log::after_fork_in_child();
        // SAFETY: prctl with PR_SET_PDEATHSIG and a valid signal number.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
        if nix::unistd::getppid().as_raw() != self.pid {
            return 1;
        }
        crate::child::reset_signals();
        let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
        let mut keep = vec![mailbox.as_raw_fd()];
        keep.extend(first.as_ref().map(|(client, _)| client.as_raw_fd()));
        keep.extend(pgagroal::log::kept_fds());
        if pgagroal::sys::close_all_except(&keep).is_err() {
            return 1;
        }
        let _ = mailbox.set_recv_timeout(worker::HOUSEKEEPING_TIMEOUT);
        // Own copies of what the worker reads, then let go of the
        // supervisor's allocations (see arena.rs). Only these, the shared
        // memory mapping, the pid and values on this stack are used below.
        let config = self.config.clone();
        let hba = self.hba.clone();
        let creds = self.creds.clone();
        let tls = self.tls.clone();
        let limits = self.limits.clone();
        if let Some(region) = supervisor_region {
            crate::ALLOCATOR.release(region);
        }
        worker::run(worker::Context {
            config: &config,
            hba: &hba,
            creds: &creds,
            tls: &tls,
            limits: &limits,
            region: &self.region,
            mailbox,
            first,
            epoch: self.epoch,
            prefill,
        })
    }
    pub(super) fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    self.child_gone(pid.as_raw(), if code == 0 { None } else { Some(format!("exit status {code}")) })
                }
                Ok(WaitStatus::Signaled(pid, signal, _)) => {
                    self.child_gone(pid.as_raw(), Some(format!("killed by {signal:?}")))
                }
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return,
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    warn!(self.log, "waitpid failed"; "error" => %e);
                    return;
                }
            }
        }
    }

    pub(super) fn child_gone(&mut self, pid: i32, abnormal: Option<String>) {
        if self.helpers.remove(&pid) {
            return;
        }
        if self.prefill_child == Some(pid) {
            self.prefill_child = None;
        }
        self.region.header().forget_idle(pid);
        for entry in self.region.clients().entries_of(pid) {
            self.region.cancel_waits_of(entry);
        }
        self.region.header().release_rule_locks(pid);
        self.region.clients().release(pid);
        self.starting.remove(&pid);
        if self.workers.contains_key(&pid) {
            // A registration may still be queued behind the exit.
            self.on_mailbox(pid);
            self.epochs.remove(&pid);
            if let Some(mailbox) = self.workers.remove(&pid) {
                let _ = self.poll.registry().deregister(&mut SourceFd(&mailbox.as_raw_fd()));
            }
        }
        if let Some(how) = &abnormal {
            warn!(self.log, "worker ended abnormally"; "worker" => pid, "how" => how);
        }
        self.reclaim(pid);
    }

    /// Take back every slot a dead process held: its connection is in an
    /// unknown protocol state, so it is terminated and the slot goes NOTINIT.
    fn reclaim(&mut self, pid: i32) {
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
                cancels.extend(self.cancel_backend(id));
            }
            terminate_pooled(&mut self.pooled, id, word.generation, false);
            if let Err(e) = table.transition(id, word, SlotState::NotInit, self.pid) {
                warn!(self.log, "cannot reset reclaimed slot"; "slot" => id.0, "error" => %e);
            } else {
                self.region.notify_release();
                warn!(self.log, "reclaimed slot of a dead worker; its server connection was terminated";
                      "slot" => id.0, "worker" => pid, "state" => first.state.name());
            }
        }
        // Idle TLS connections whose record state died with the worker.
        for (id, word) in table.tls_orphans_of(pid) {
            let Ok(word) = table.transition(id, word, SlotState::Remove, self.pid) else { continue };
            terminate_pooled(&mut self.pooled, id, word.generation, false);
            if table.transition(id, word, SlotState::NotInit, self.pid).is_ok() {
                self.region.notify_release();
                debug!(self.log, "closed a TLS server connection whose worker is gone"; "slot" => id.0, "worker" => pid);
            }
        }
        self.helpers.extend(cancels);
    }

    /// Cancel whatever the backend of a reclaimed slot is running, from a
    /// short-lived child so the supervisor never waits on PostgreSQL; returns
    /// the child, which the supervisor waits for before it exits.
    fn cancel_backend(&self, id: SlotId) -> Option<i32> {
        let slot = self.region.slots().get(id)?;
        let info = slot.info();
        let secret = slot.backend_secret();
        let server = self.config.servers.get(info.server as usize).cloned()?;
        if info.backend_pid == 0 {
            return None;
        }
        // SAFETY: single-threaded supervisor; the child only connects, writes
        // and leaves with _exit.
        match unsafe { nix::unistd::fork() } {
            Ok(ForkResult::Child) => {
                crate::child::reset_signals();
                let packet = encode::cancel_request(info.backend_pid, &secret.to_be_bytes());
                let _ = crate::child::send_once(&server, &packet);
                // SAFETY: leaving the child without running destructors.
                unsafe { libc::_exit(0) }
            }
            Ok(ForkResult::Parent { child }) => Some(child.as_raw()),
            Err(e) => {
                warn!(self.log, "cannot fork to cancel a backend"; "error" => %e);
                None
            }
        }
    }

    pub(super) fn on_mailbox(&mut self, pid: i32) {
        loop {
            let Some(mailbox) = self.workers.get(&pid) else { return };
            match mailbox.recv::<WorkerRequest>() {
                Ok(Received::Message(request, fd)) => self.handle(pid, request, fd),
                Ok(Received::Empty) | Ok(Received::Closed) => return,
                Err(pgagroal::ipc::MailboxError::Io(e)) => {
                    debug!(self.log, "mailbox read failed"; "worker" => pid, "error" => %e);
                    return;
                }
                Err(e) => warn!(self.log, "bad message from worker"; "worker" => pid, "error" => %e),
            }
        }
    }

    fn handle(&mut self, pid: i32, request: WorkerRequest, fd: Option<OwnedFd>) {
        let table = self.region.slots();
        let (reply, reply_fd) = match request {
            WorkerRequest::Register { id, slot, generation, startup } => {
                let word = table.get(slot).map(|s| s.load());
                let valid =
                    word.is_some_and(|w| w.owner == pid && w.generation == generation && w.state == SlotState::Init);
                match (valid, fd, self.pooled.get_mut(slot.0 as usize)) {
                    (true, Some(fd), Some(entry)) => {
                        *entry = Some(Pooled { fd, generation, startup });
                        (WorkerReply::Registered { id }, None)
                    }
                    _ => (
                        WorkerReply::Unavailable {
                            id,
                            reason: format!("slot {} is not being set up by this worker", slot.0),
                        },
                        None,
                    ),
                }
            }
            WorkerRequest::Checkout { id, slot, generation } => {
                let word = table.get(slot).map(|s| s.load());
                let valid = word.is_some_and(|w| {
                    w.owner == pid
                        && w.generation == generation
                        && matches!(w.state, SlotState::InUse | SlotState::Remove)
                });
                match self.pooled.get(slot.0 as usize).and_then(Option::as_ref) {
                    Some(p) if valid && p.generation == generation => match p.fd.try_clone() {
                        Ok(copy) => (WorkerReply::CheckedOut { id, startup: p.startup.clone() }, Some(copy)),
                        Err(e) => (WorkerReply::Unavailable { id, reason: format!("cannot duplicate fd: {e}") }, None),
                    },
                    _ => (
                        WorkerReply::Unavailable { id, reason: format!("no pooled connection for slot {}", slot.0) },
                        None,
                    ),
                }
            }
            WorkerRequest::Killed { slot, generation } => {
                if let Some(entry) = self.pooled.get_mut(slot.0 as usize)
                    && entry.as_ref().is_some_and(|p| p.generation == generation)
                {
                    *entry = None;
                }
                return;
            }
            WorkerRequest::Lifecycle(_) => return,
        };
        if let Some(mailbox) = self.workers.get(&pid)
            && let Err(e) = mailbox.send(&reply, reply_fd.as_ref().map(|f| std::os::fd::AsFd::as_fd(f)))
        {
            warn!(self.log, "cannot answer worker"; "worker" => pid, "error" => %e);
        }
    }
}
