//! The contract of the periodic services: idle timeout, max connection
//! age, validation and pool maintenance. They are one actor kind with four
//! policies (see `src/pool/`), so they share this contract.
//!
//! A service claims a FREE slot by compare-and-swap before it looks at it
//! and checks out the slot's fd with the pool calls ([`super::pool`]);
//! maintenance registers the connections it opens. A Reload carries the
//! configuration the service applies from then on, without restarting.

use super::pool::{PoolAnswer, PoolCall, PoolNotice};
use super::{Down, NoPush, Up};
use crate::config::Config;
use crate::config::limits::Limits;

/// Service to supervisor.
pub type FromService = Up<PoolCall, PoolNotice>;

/// Supervisor to service.
pub type ToService = Down<PoolAnswer, NoPush, Box<ServiceConfig>>;

/// Which service an actor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ServiceKind {
    /// Closes FREE connections idle longer than `idle_timeout`.
    Idle,
    /// Closes FREE connections older than `max_connection_age`.
    MaxAge,
    /// Checks FREE connections every `background_interval`
    /// (`validation = background`).
    Validation,
    /// Opens connections up to each limit entry's `initial_size` at start
    /// and keeps its `min_size`.
    Maintenance,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 4] =
        [ServiceKind::Idle, ServiceKind::MaxAge, ServiceKind::Validation, ServiceKind::Maintenance];

    /// Name in logs, process titles and `status`.
    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Idle => "idle",
            ServiceKind::MaxAge => "max-age",
            ServiceKind::Validation => "validation",
            ServiceKind::Maintenance => "maintenance",
        }
    }

    /// Whether `config` gives this service anything to do.
    pub fn enabled(self, config: &Config, has_prefill: bool) -> bool {
        match self {
            ServiceKind::Idle => !config.main.idle_timeout.is_zero(),
            ServiceKind::MaxAge => !config.main.max_connection_age.is_zero(),
            ServiceKind::Validation => config.main.validation == crate::config::Validation::Background,
            ServiceKind::Maintenance => has_prefill,
        }
    }
}

/// What a service runs with; sent again on every reload.
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServiceConfig {
    pub config: Config,
    /// `pgagroal_databases.conf`'s entries (empty without one).
    pub limits: Limits,
    /// Server passwords of the users maintenance opens connections for.
    pub logins: Vec<Login>,
}

/// A user and its server password.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Login {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for ServiceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let users: Vec<&str> = self.logins.iter().map(|l| l.user.as_str()).collect();
        f.debug_struct("ServiceConfig").field("config", &self.config.path).field("logins", &users).finish()
    }
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login").field("user", &self.user).finish_non_exhaustive()
    }
}
