//! The contract of the metrics actor (`metrics = PORT`). It makes no calls
//! and sends no notices: it answers pings and takes each reload's
//! configuration and limits, which the next scrapes report.

use super::{Down, Never, NoPush, Up};
use crate::config::Config;
use crate::config::limits::Limits;

/// Metrics to supervisor.
pub type FromMetrics = Up<Never, Never>;

/// Supervisor to metrics.
pub type ToMetrics = Down<Never, NoPush, Box<MetricsConfig>>;

/// What the metrics actor runs with; sent again on every reload.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricsConfig {
    pub config: Config,
    pub limits: Limits,
}
