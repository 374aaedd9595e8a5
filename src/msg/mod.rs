//! Message contracts: one per actor, each a request enum and a reply enum in
//! one file, carried by [`crate::ipc::Mailbox`]. Lifecycle messages are
//! common to every actor.
//!
//! - [`worker`]: client workers and the supervisor (server connection fds).

pub mod worker;

/// Sent by the supervisor to any actor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Lifecycle {
    /// Stop; `graceful` lets the current client finish first.
    Shutdown { graceful: bool },
    /// Configuration files were re-read.
    Reload,
    /// Liveness check, answered with [`LifecycleReply::Pong`].
    Ping,
}

/// An actor's answer to a lifecycle message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LifecycleReply {
    Pong,
}
