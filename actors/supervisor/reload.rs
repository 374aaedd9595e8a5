//! Configuration reloads (SIGHUP, `pgagroal-cli reload`): re-read the files,
//! merge what may change into the running configuration, and pass it on:
//! idle workers are replaced, busy ones exit when their client leaves, and
//! services are sent the new configuration.

use super::{Listener, Phase, Supervisor};
use pgagroal::config::limits::Limits;
use pgagroal::hba::Hba;
use slog::{error, info, warn};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

impl Supervisor {
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
        self.install(new, hba, Some(creds));
        info!(self.log, "configuration reloaded"; "restart_required" => restart);
        Ok(restart)
    }

    /// Run with a new configuration (checked already): listeners' options,
    /// then workers and services, which receive it through their mailboxes
    /// or are replaced when idle.
    pub(super) fn install(
        &mut self,
        new: pgagroal::config::Config,
        hba: Hba,
        creds: Option<pgagroal::auth::credentials::Credentials>,
    ) {
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
        if let Some(creds) = creds {
            self.creds = creds;
        }
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
        // Services apply the new configuration without restarting; the ones
        // it turns on or off are started or stopped.
        self.reload_services();
        self.supervise_services();
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
}
