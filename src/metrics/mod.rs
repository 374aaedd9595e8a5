//! The Prometheus metrics server's pure parts (the actor is
//! `actors/metrics.rs`):
//!
//! - [`exposition`]: the text format (families, labels, histograms).
//! - [`http`]: request heads parsed with httparse within caps, routes and
//!   chunked responses.
//! - [`report`]: the families `GET /metrics` reports, from a snapshot of
//!   shared memory and the configuration.
//! - [`cache`]: `metrics_cache_max_age` / `metrics_cache_max_size`.
//! - [`latency`]: query and transaction latency from the relay's trackers.

pub mod cache;
pub mod certs;
pub mod exposition;
pub mod http;
pub mod latency;
pub mod pools;
pub mod report;
