//! The long-lived actors as the supervisor sees them (the periodic
//! services and remote management): started when the configuration gives
//! them work, told of reloads, stopped when a reload takes their work away,
//! pinged, and restarted after a crash or a hang with the backoff of
//! `pgagroal::supervision`.

use super::children::{Child, Kind, Link, Role};
use super::{Phase, Supervisor};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use pgagroal::ipc::{Contract, Mailbox};
use pgagroal::msg::management::ManagementConfig;
use pgagroal::msg::metrics::MetricsConfig;
use pgagroal::msg::service::{Login, ServiceConfig, ServiceKind};
use pgagroal::msg::{Down, Lifecycle};
use pgagroal::shmem::counters::Event;
use pgagroal::supervision::{self, PING_EVERY, PONG_WITHIN};
use slog::{error, warn};
use std::time::{Duration, Instant};

/// A long-lived actor the supervisor keeps running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Actor {
    Service(ServiceKind),
    /// The management port (`management = PORT`).
    Management,
    /// The Prometheus metrics port (`metrics = PORT`).
    Metrics,
}

impl Actor {
    pub const ALL: [Actor; 6] = [
        Actor::Service(ServiceKind::Idle),
        Actor::Service(ServiceKind::MaxAge),
        Actor::Service(ServiceKind::Validation),
        Actor::Service(ServiceKind::Maintenance),
        Actor::Management,
        Actor::Metrics,
    ];

    /// Name in logs, process titles and `status`.
    pub fn name(self) -> &'static str {
        match self {
            Actor::Service(kind) => kind.name(),
            Actor::Management => "management",
            Actor::Metrics => "metrics",
        }
    }

    /// What its restarts are counted as.
    fn restart_event(self) -> Event {
        match self {
            Actor::Service(ServiceKind::Idle) => Event::RestartIdle,
            Actor::Service(ServiceKind::MaxAge) => Event::RestartMaxAge,
            Actor::Service(ServiceKind::Validation) => Event::RestartValidation,
            Actor::Service(ServiceKind::Maintenance) => Event::RestartMaintenance,
            Actor::Management => Event::RestartManagement,
            Actor::Metrics => Event::RestartMetrics,
        }
    }
}

/// One actor's state across its restarts.
#[derive(Debug, Clone, Default)]
pub(super) struct Service {
    pub pid: Option<i32>,
    /// Deaths in a row soon after a start.
    pub quick_deaths: u32,
    /// Not before this may it start again.
    pub start_at: Option<Instant>,
    /// Restarts after a crash or hang since the pool started.
    pub restarts: u64,
    /// When the running one started.
    pub started: Option<Instant>,
}

impl Service {
    /// As `status` shows it.
    pub fn state(&self) -> &'static str {
        let looping = supervision::crash_looping(self.quick_deaths);
        let settled = self.started.is_some_and(|at| at.elapsed() >= supervision::QUICK_DEATH);
        match self.pid {
            Some(_) if settled || !looping => "running",
            _ if looping => "crashing repeatedly",
            _ => "restarting",
        }
    }
}

impl Supervisor {
    /// Whether the configuration gives an actor work.
    fn wanted(&self, actor: Actor) -> bool {
        match actor {
            Actor::Service(kind) => {
                self.phase == Phase::Running && kind.enabled(&self.config, self.limits.prefill().next().is_some())
            }
            // Through a graceful shutdown too: an admin may cancel it.
            Actor::Management => {
                matches!(self.phase, Phase::Running | Phase::Graceful { .. }) && !self.remote.is_empty()
            }
            // Scraped through a graceful shutdown too.
            Actor::Metrics => matches!(self.phase, Phase::Running | Phase::Graceful { .. }) && !self.metrics.is_empty(),
        }
    }

    /// What the metrics actor runs with.
    pub(super) fn metrics_config(&self) -> MetricsConfig {
        MetricsConfig { config: self.config.clone(), limits: self.limits.clone() }
    }

    /// What remote management runs with: the configuration, hba and the
    /// admins' passwords.
    pub(super) fn management_config(&self) -> ManagementConfig {
        let admins = self
            .creds
            .admins()
            .iter()
            .map(|(user, password)| Login { user: user.to_string(), password: password.as_str().to_string() })
            .collect();
        ManagementConfig {
            config: self.config.clone(),
            hba: self.hba.clone(),
            admins,
            mock_secret: self.creds.mock_secret(),
        }
    }

    /// What services run with: the configuration, the limits and the
    /// server passwords of the users maintenance opens connections for.
    pub(super) fn service_config(&self) -> ServiceConfig {
        let logins = self
            .limits
            .prefill()
            .filter_map(|(_, _, user, _)| {
                let password = self.creds.server_password(user)?;
                Some(Login { user: user.to_string(), password: password.as_str().to_string() })
            })
            .collect();
        ServiceConfig { config: self.config.clone(), limits: self.limits.clone(), logins }
    }

    /// Start the actors that should run and are not, stop the ones the
    /// configuration no longer asks for, and ping the ones running.
    pub(super) fn supervise_services(&mut self) {
        let now = Instant::now();
        for actor in Actor::ALL {
            let wanted = self.wanted(actor);
            let state = self.services.entry(actor).or_default().clone();
            match state.pid {
                None if wanted && state.start_at.is_none_or(|at| at <= now) => self.start_actor(actor),
                Some(pid) if !wanted => {
                    if let Some(child) = self.children.get_mut(&pid)
                        && !child.retiring
                    {
                        child.retiring = true;
                        self.shut_down(pid, true);
                    }
                }
                _ => {}
            }
        }
        if now >= self.next_ping {
            self.next_ping = now + PING_EVERY;
            self.ping_services(now);
        }
    }

    fn start_actor(&mut self, actor: Actor) {
        let pair = match actor {
            Actor::Service(kind) => Mailbox::pair(Contract::Service)
                .map(|(ours, theirs)| (Role::Service { kind, mailbox: theirs }, Link::Service(ours))),
            Actor::Management => Mailbox::pair(Contract::Management)
                .map(|(ours, theirs)| (Role::Management { mailbox: theirs }, Link::Management(ours))),
            Actor::Metrics => Mailbox::pair(Contract::Metrics)
                .map(|(ours, theirs)| (Role::Metrics { mailbox: theirs }, Link::Metrics(ours))),
        };
        let (role, link) = match pair {
            Ok(pair) => pair,
            Err(e) => {
                error!(self.log, "cannot create an actor's mailbox"; "actor" => actor.name(), "error" => %e);
                return;
            }
        };
        let pid = self.spawn(role, link).ok();
        let state = self.services.entry(actor).or_default();
        state.pid = pid;
        state.started = Some(Instant::now());
        if pid.is_none() {
            state.start_at = Some(Instant::now() + Duration::from_secs(1));
        }
    }

    /// Ping every service; kill one whose last ping went unanswered for too
    /// long (it is restarted when reaped).
    fn ping_services(&mut self, now: Instant) {
        for pid in self.pids_of(|k| matches!(k, Kind::Actor(_))) {
            let Some(child) = self.children.get(&pid) else { continue };
            match child.ping {
                Some((_, sent)) if now.duration_since(sent) > PONG_WITHIN => {
                    warn!(self.log, "actor did not answer a ping; killing it as hung";
                          "service" => ?child.kind, "pid" => pid);
                    let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                Some(_) => {}
                None => {
                    let id = crate::pooled::next_id();
                    if self.ping(pid, id)
                        && let Some(child) = self.children.get_mut(&pid)
                    {
                        child.ping = Some((id, now));
                    }
                }
            }
        }
    }

    /// Send every running actor the reloaded configuration.
    pub(super) fn reload_services(&mut self) {
        let settings = self.service_config();
        let management = self.management_config();
        for pid in self.pids_of(|k| matches!(k, Kind::Actor(_))) {
            let sent = match self.children.get(&pid).map(|c| &c.link) {
                Some(Link::Service(m)) => m.send(&Down::Lifecycle(Lifecycle::Reload(Box::new(settings.clone()))), None),
                Some(Link::Management(m)) => {
                    m.send(&Down::Lifecycle(Lifecycle::Reload(Box::new(management.clone()))), None)
                }
                Some(Link::Metrics(m)) => {
                    m.send(&Down::Lifecycle(Lifecycle::Reload(Box::new(self.metrics_config()))), None)
                }
                _ => continue,
            };
            if let Err(e) = sent {
                // It would go on with the old hba, admins or timeouts: a
                // restarted one starts from the new configuration.
                warn!(self.log, "cannot send an actor its new configuration; restarting it"; "pid" => pid,
                      "error" => %e);
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }

    /// An actor died: schedule its restart unless it was told to stop.
    pub(super) fn actor_gone(&mut self, actor: Actor, child: &Child, abnormal: Option<&str>) {
        let running = self.phase == Phase::Running;
        let state = self.services.entry(actor).or_default();
        state.pid = None;
        if child.retiring || !running {
            return;
        }
        let lived = child.born.elapsed();
        state.quick_deaths = supervision::quick_deaths(state.quick_deaths, lived);
        state.restarts += 1;
        pgagroal::shmem::counters::record(actor.restart_event());
        let delay = supervision::restart_delay(state.quick_deaths);
        state.start_at = Some(Instant::now() + delay);
        let how = abnormal.unwrap_or("exited");
        if supervision::crash_looping(state.quick_deaths) {
            error!(self.log, "actor keeps crashing; restarting it after a delay";
                   "actor" => actor.name(), "how" => how, "deaths_in_a_row" => state.quick_deaths,
                   "delay_ms" => delay.as_millis() as u64);
        } else {
            warn!(self.log, "actor ended; restarting it"; "actor" => actor.name(), "how" => how,
                  "delay_ms" => delay.as_millis() as u64);
        }
    }

    /// Time until the next scheduled start or ping. A start already due
    /// was made (or is not wanted) in this turn of the loop, so only future
    /// ones count: the loop never spins.
    pub(super) fn next_wake(&self) -> Duration {
        let now = Instant::now();
        self.services
            .values()
            .filter(|s| s.pid.is_none())
            .filter_map(|s| s.start_at)
            .filter(|&at| at > now)
            .chain([self.next_ping])
            .map(|at| at.saturating_duration_since(now))
            .min()
            .unwrap_or(PING_EVERY)
    }

    /// Everything the supervisor keeps running: services and spare workers.
    pub(super) fn supervise(&mut self) {
        self.supervise_failover();
        self.supervise_services();
        self.keep_spares();
    }

    /// Each service the configuration asks for (or still running), for
    /// `status`.
    pub(super) fn service_states(&self) -> Vec<(Actor, Service)> {
        let mut all: Vec<_> = self
            .services
            .iter()
            .filter(|(k, s)| s.pid.is_some() || self.wanted(**k))
            .map(|(k, s)| (*k, s.clone()))
            .collect();
        all.sort_by_key(|(k, _)| k.name());
        all
    }
}
