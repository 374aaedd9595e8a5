//! The supervisor's lifecycle: the signals it acts on, configuration
//! reloads, and stopping the pool, either gracefully (refusing new clients
//! and waiting for the current ones to leave, which can be cancelled) or
//! immediately (SIGQUIT to every worker, SIGKILL after a grace period),
//! then terminating the pooled server connections and removing the files
//! the daemon created.

use super::{Listener, Phase, Pooled, STOP_GRACE, Supervisor};
use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use pgagroal::config::limits::Limits;
use pgagroal::hba::Hba;
use pgagroal::msg::Lifecycle;
use pgagroal::msg::worker::WorkerReply;
use pgagroal::protocol::encode;
use pgagroal::shmem::region::shutdown;
use pgagroal::shmem::{Generation, SlotId, SlotState};
use slog::{debug, error, info, warn};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::Instant;

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

    /// Re-read pgagroal_hba.conf, the credential files and the keys of
    /// pgagroal.conf that apply to new clients; the limits file is read and
    /// checked, but its rules wait for a restart. Returns whether a restart
    /// is needed for other changes, or why the files could not be used
    /// (the running configuration stays).
    pub(super) fn reload(&mut self) -> Result<bool, String> {
        let read = pgagroal::config::load(&self.files.main)
            .and_then(|loaded| Hba::load(&self.files.hba).map(|hba| (loaded, hba)));
        let (loaded, hba) = match read {
            Ok(both) => both,
            Err(e) => {
                error!(self.log, "reload failed; keeping the running configuration"; "error" => %e);
                return Err(e.to_string());
            }
        };
        let (creds, cred_warnings) = match pgagroal::auth::credentials::Credentials::load(
            &self.files,
            &loaded.config.main,
            None,
            self.creds.mock_secret(),
        ) {
            Ok(both) => both,
            Err(e) => {
                error!(self.log, "reload failed; keeping the running configuration"; "error" => &e);
                return Err(e);
            }
        };
        let reloaded = pgagroal::config::reload::merge(&self.config, loaded.config);
        let (limit_warnings, limits_changed) = match self.check_reloaded(&reloaded.config, &creds) {
            Ok(both) => both,
            Err(e) => {
                error!(self.log, "reload failed; keeping the running configuration"; "error" => &e);
                return Err(e);
            }
        };
        let restart = !reloaded.needs_restart.is_empty() || limits_changed.is_some();
        if !reloaded.needs_restart.is_empty() {
            warn!(self.log, "changed settings keep their running values until a restart";
                  "keys" => reloaded.needs_restart.join(", "));
        }
        if let Some(w) = &limits_changed {
            warn!(self.log, "{}", w);
        }
        let new = reloaded.config;
        for w in cred_warnings.iter().chain(&loaded.warnings).chain(&limit_warnings) {
            warn!(self.log, "{}", w);
        }
        if (new.main.nodelay, new.main.keep_alive) != (self.config.main.nodelay, self.config.main.keep_alive) {
            for l in &self.listeners {
                if let Listener::Tcp(t) = l
                    && let Err(e) =
                        crate::listen::set_client_options(t.as_raw_fd(), new.main.nodelay, new.main.keep_alive)
                {
                    warn!(self.log, "cannot apply nodelay/keep_alive to a listener"; "error" => %e);
                }
            }
        }
        self.config = new;
        self.hba = hba;
        self.creds = creds;
        // Workers hold the configuration they were forked with: idle ones
        // are replaced now, busy ones exit when their client leaves.
        self.epoch = self.epoch.wrapping_add(1);
        self.region.header().config_epoch.store(self.epoch, Ordering::Release);
        if self.phase == Phase::Running {
            self.dismiss_idle();
            // Spares still starting see the new epoch and exit by themselves.
            self.starting.clear();
            self.keep_spares();
        }
        info!(self.log, "configuration reloaded"; "restart_required" => restart);
        Ok(restart)
    }

    /// Check a merged configuration against the rules of the pipeline
    /// that keeps running and the new credentials, and re-read the limits
    /// file. Returns the warnings, and the one to report when the limits
    /// file changed (its running rules are kept).
    fn check_reloaded(
        &self,
        config: &pgagroal::config::Config,
        creds: &pgagroal::auth::credentials::Credentials,
    ) -> Result<(Vec<String>, Option<String>), String> {
        // The file passed these checks when it was read (and its warnings
        // are logged with it); the merge may have kept a pipeline it does
        // not name.
        let running = config.main.effective_pipeline().name();
        pgagroal::config::pipeline::check(config)
            .map_err(|e| format!("{e} (the running pipeline is {running} until a restart)"))?;
        let (limits, limit_warnings) = match &self.files.limit {
            Some(path) => Limits::load(path, self.config.main.max_connections).map_err(|e| e.to_string())?,
            None => (Limits::default(), Vec::new()),
        };
        let mut warnings = limit_warnings;
        let users: Vec<&str> = creds.user_names().collect();
        let file_warnings =
            pgagroal::config::pipeline::check_files(config, &users, Some(&self.limits)).map_err(|e| e.to_string())?;
        warnings.extend(file_warnings);
        Ok((warnings, pgagroal::config::reload::limits_changed(&self.limits, &limits)))
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
        let header = self.region.header();
        match (self.phase, graceful) {
            (Phase::Stopping { .. }, _) | (Phase::Graceful, true) => {}
            (_, true) => {
                header.shutdown.store(shutdown::GRACEFUL, Ordering::Relaxed);
                self.phase = Phase::Graceful;
                self.dismiss_idle();
                info!(self.log, "graceful shutdown: refusing new clients, waiting for active ones"; "workers" => self.workers.len());
            }
            (_, false) => {
                header.shutdown.store(shutdown::STOPPING, Ordering::Relaxed);
                self.close_listeners();
                for pid in self.workers.keys() {
                    let _ = nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGQUIT);
                }
                self.phase = Phase::Stopping { deadline: Instant::now() + STOP_GRACE };
            }
        }
    }

    /// Tell every idle worker to exit (graceful shutdown).
    fn dismiss_idle(&mut self) {
        while let Some(pid) = self.region.header().take_idle() {
            if let Some(mailbox) = self.workers.get(&pid) {
                let _ = mailbox.send(&WorkerReply::Lifecycle(Lifecycle::Shutdown { graceful: true }), None);
            }
        }
    }

    pub(super) fn cancel_stop(&mut self) -> bool {
        if self.phase == Phase::Graceful {
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
            Phase::Graceful => {
                // A worker may have put itself in the idle list just as the
                // shutdown began.
                self.dismiss_idle();
                if self.workers.is_empty() {
                    // Helpers still running are waited for as stopping.
                    self.begin_stop(false);
                    return self.helpers.is_empty();
                }
                false
            }
            Phase::Stopping { deadline } => {
                if self.workers.is_empty() && self.helpers.is_empty() {
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
        let pids: Vec<i32> = self.workers.keys().chain(self.helpers.iter()).copied().collect();
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

/// Drop the supervisor's copy of a slot's connection, ending the connection
/// for every holder (shutdown, not only close).
pub(super) fn terminate_pooled(pooled: &mut [Option<Pooled>], id: SlotId, generation: Generation, clean: bool) {
    {
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
}
