//! Configuration reloads (SIGHUP, `pgagroal-cli reload`): re-read the files,
//! merge what may change into the running configuration, and pass it on:
//! idle workers are replaced, busy ones exit when their client leaves, and
//! services are sent the new configuration.

use super::{Listener, Phase, Supervisor};
use pgagroal::config::limits::Limits;
use pgagroal::config::reload::{LimitsReload, limits_reload};
use pgagroal::hba::Hba;
use slog::{error, info, warn};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

impl Supervisor {
    /// Re-read pgagroal_hba.conf, the credential files, the limits file and
    /// the keys of pgagroal.conf that apply to new clients. Returns whether
    /// a restart is needed for other changes (keys that need one, limits
    /// entries moved), or why the files could not be used (the running
    /// configuration stays).
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
        let (limit_warnings, limits, change) = match self.check_reloaded(&reloaded.config, &creds) {
            Ok(both) => both,
            Err(e) => {
                error!(self.log, "reload failed; keeping the running configuration"; "error" => &e);
                return Err(e);
            }
        };
        let restart = !reloaded.needs_restart.is_empty() || matches!(change, LimitsReload::Restart(_));
        if !reloaded.needs_restart.is_empty() {
            warn!(self.log, "changed settings keep their running values until a restart";
                  "keys" => reloaded.needs_restart.join(", "));
        }
        if let LimitsReload::Restart(w) = &change {
            warn!(self.log, "{}", w);
        }
        let limits = (change == LimitsReload::Apply).then_some(limits);
        let new = reloaded.config;
        for w in cred_warnings.iter().chain(&loaded.warnings).chain(&limit_warnings) {
            warn!(self.log, "{}", w);
        }
        let limits_applied = limits.is_some();
        self.install(new, hba, Some(creds), limits);
        info!(self.log, "configuration reloaded"; "restart_required" => restart, "limits_applied" => limits_applied);
        Ok(restart)
    }

    /// Run with a new configuration (checked already): listeners' options,
    /// then workers and services, which receive it through their mailboxes
    /// or are replaced when idle. New `limits` keep every running entry at
    /// its place (see `limits_reload`).
    pub(super) fn install(
        &mut self,
        new: pgagroal::config::Config,
        hba: Hba,
        creds: Option<pgagroal::auth::credentials::Credentials>,
        limits: Option<Limits>,
    ) {
        if let Some(limits) = limits {
            self.limits = limits;
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
        if new.main.log_level != self.config.main.log_level {
            pgagroal::log::set_level(new.main.log_level);
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
    /// file. Returns the warnings, the limits read and how they compare
    /// with the running ones.
    fn check_reloaded(
        &self,
        config: &pgagroal::config::Config,
        creds: &pgagroal::auth::credentials::Credentials,
    ) -> Result<(Vec<String>, Limits, LimitsReload), String> {
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
            pgagroal::config::pipeline::check_files(config, &users, Some(&limits)).map_err(|e| e.to_string())?;
        warnings.extend(file_warnings);
        let change = limits_reload(&self.limits, &limits);
        Ok((warnings, limits, change))
    }
}
