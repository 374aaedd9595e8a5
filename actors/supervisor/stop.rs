//! The supervisor's signals and stopping the pool, either gracefully
//! (refusing new clients and waiting for the current ones to leave, which
//! can be cancelled) or immediately (SIGQUIT to every child, SIGKILL after a
//! grace period), then terminating the pooled server connections and
//! removing the files the daemon created.

use super::slots::terminate_pooled;
use super::{Listener, Phase, STOP_GRACE, Supervisor};
use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use pgagroal::shmem::SlotState;
use pgagroal::shmem::region::shutdown;
use slog::{debug, info, warn};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl Supervisor {
    pub(super) fn on_signals(&mut self) {
        loop {
            match self.signals.read_signal() {
                Ok(Some(info)) => {
                    let signal = Signal::try_from(info.ssi_signo as i32).ok();
                    match signal {
                        Some(Signal::SIGCHLD) => self.reap(),
                        Some(Signal::SIGTERM | Signal::SIGINT | Signal::SIGALRM | Signal::SIGQUIT) => {
                            info!(self.log, "stopping"; "signal" => ?signal);
                            self.begin_stop(false);
                        }
                        Some(Signal::SIGTRAP) => {
                            info!(self.log, "graceful shutdown requested");
                            self.begin_stop(true);
                        }
                        Some(Signal::SIGHUP) => {
                            let _ = self.reload();
                        }
                        other => debug!(self.log, "signal ignored"; "signal" => ?other),
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    warn!(self.log, "signalfd read failed"; "error" => %e);
                    return;
                }
            }
        }
    }

    fn close_listeners(&mut self) {
        for mut l in self.listeners.drain(..) {
            match &mut l {
                Listener::Tcp(t) => {
                    let _ = self.poll.registry().deregister(t);
                }
                Listener::Unix(u) => {
                    let _ = self.poll.registry().deregister(u);
                }
            }
        }
        let _ = std::fs::remove_file(&self.paths.client_socket);
    }

    pub(super) fn begin_stop(&mut self, graceful: bool) {
        if graceful {
            self.begin_graceful(self.config.main.flush_timeout);
        } else {
            self.stop_all();
        }
    }

    /// Refuse new clients and stop once the current ones have left, or
    /// after `timeout` (zero: no bound) at the latest.
    pub(super) fn begin_graceful(&mut self, timeout: Duration) {
        if self.phase != Phase::Running {
            return;
        }
        let header = self.region.header();
        header.shutdown.store(shutdown::GRACEFUL, Ordering::Relaxed);
        let deadline = (!timeout.is_zero()).then(|| Instant::now() + timeout);
        self.phase = Phase::Graceful { deadline };
        self.dismiss_idle();
        info!(self.log, "graceful shutdown: refusing new clients, waiting for active ones";
              "workers" => self.worker_count(), "timeout_s" => timeout.as_secs());
    }

    fn stop_all(&mut self) {
        let header = self.region.header();
        match self.phase {
            Phase::Stopping { .. } => {}
            _ => {
                header.shutdown.store(shutdown::STOPPING, Ordering::Relaxed);
                self.close_listeners();
                for pid in self.children.keys() {
                    let _ = nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGQUIT);
                }
                self.phase = Phase::Stopping { deadline: Instant::now() + STOP_GRACE };
            }
        }
    }

    /// Tell every idle worker to exit (graceful shutdown).
    pub(super) fn dismiss_idle(&mut self) {
        while let Some(pid) = self.region.header().take_idle() {
            self.shut_down(pid, true);
        }
    }

    pub(super) fn cancel_stop(&mut self) -> bool {
        if matches!(self.phase, Phase::Graceful { .. }) {
            self.region.header().shutdown.store(shutdown::RUNNING, Ordering::Relaxed);
            self.phase = Phase::Running;
            info!(self.log, "graceful shutdown cancelled");
            return true;
        }
        false
    }

    /// Whether the loop should end now.
    pub(super) fn stop_progress(&mut self) -> bool {
        match self.phase {
            Phase::Running => false,
            Phase::Graceful { deadline } => {
                // A worker may have put itself in the idle list just as the
                // shutdown began.
                self.dismiss_idle();
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    warn!(self.log, "graceful shutdown timed out; stopping the remaining clients";
                          "workers" => self.worker_count());
                    self.begin_stop(false);
                    return false;
                }
                if self.worker_count() == 0 {
                    // Services and helpers still running are stopped and
                    // waited for as stopping.
                    self.begin_stop(false);
                    return self.children.is_empty();
                }
                false
            }
            Phase::Stopping { deadline } => {
                if self.children.is_empty() {
                    return true;
                }
                if Instant::now() >= deadline {
                    self.stop_now();
                    return true;
                }
                false
            }
        }
    }

    /// SIGKILL every remaining child and wait for them.
    pub(super) fn stop_now(&mut self) {
        let pids: Vec<i32> = self.children.keys().copied().collect();
        for pid in &pids {
            let _ = nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        for pid in pids {
            let _ = waitpid(Pid::from_raw(pid), None);
            self.child_gone(pid, None);
        }
    }

    /// Terminate pooled connections and remove the files the daemon created.
    pub(super) fn finish(&mut self) {
        self.close_listeners();
        self.reap();
        let table = self.region.slots();
        for (id, slot) in table.iter() {
            let word = slot.load();
            let idle = word.state == SlotState::Free;
            terminate_pooled(&mut self.pooled, id, word.generation, idle);
        }
        self.pooled.clear();
        let _ = std::fs::remove_file(&self.paths.management_socket);
        let _ = std::fs::remove_file(&self.paths.pidfile);
        info!(self.log, "stopped");
    }
}
