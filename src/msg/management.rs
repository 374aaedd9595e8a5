//! The contract of the remote-management actor (`management = PORT`). It
//! makes no calls and sends no notices: it answers pings and takes each
//! reload's settings, which it applies to the admins that connect after it.
//! Requests it relays reach the supervisor through the local management
//! socket, like `pgagroal-cli`'s.

use super::service::Login;
use super::{Down, Never, NoPush, Up};
use crate::config::Config;
use crate::hba::Hba;

/// Remote management to supervisor.
pub type FromManagement = Up<Never, Never>;

/// Supervisor to remote management.
pub type ToManagement = Down<Never, NoPush, Box<ManagementConfig>>;

/// What the remote-management actor runs with; sent again on every reload.
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ManagementConfig {
    pub config: Config,
    pub hba: Hba,
    /// `pgagroal_admins.conf`: the admins and their passwords.
    pub admins: Vec<Login>,
    /// Seed of the mock SCRAM secrets of names that are not admins.
    pub mock_secret: [u8; 32],
}

impl std::fmt::Debug for ManagementConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementConfig")
            .field("config", &self.config.path)
            .field("admins", &self.admins)
            .finish_non_exhaustive()
    }
}
