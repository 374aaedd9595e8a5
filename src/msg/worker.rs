//! The worker's contract with the supervisor.
//!
//! Workers outlive their clients: one that is done puts itself in the idle
//! list in shared memory and is pushed the next client's socket here. Its
//! calls are the pool part ([`super::pool`]): registering the server
//! connections it makes and checking out the fds of ones it claimed. Its
//! Reload carries the new configuration epoch: a worker's configuration is
//! the one it was forked with, so an idle worker told of a reload exits
//! and a busy one exits when its client leaves.

use super::pool::{PoolAnswer, PoolCall, PoolNotice};
use super::{Down, Up};

/// Worker to supervisor.
pub type FromWorker = Up<PoolCall, PoolNotice>;

/// Supervisor to worker.
pub type ToWorker = Down<PoolAnswer, WorkerPush, u32>;

/// What the supervisor sends a worker unasked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WorkerPush {
    /// A new client for an idle worker (one that put itself in the shared
    /// idle list); its socket rides on the packet.
    Client { peer: Peer },
}

/// Where a client connected from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Peer {
    Tcp(std::net::SocketAddr),
    Unix,
}

impl Peer {
    /// The address hba rules match against; None for Unix-socket clients.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match self {
            Peer::Tcp(addr) => Some(addr.ip()),
            Peer::Unix => None,
        }
    }

    /// As PostgreSQL names hosts in messages (IPv4-mapped IPv6 shown as IPv4).
    pub fn host(&self) -> String {
        match self {
            Peer::Tcp(addr) => match addr.ip() {
                std::net::IpAddr::V6(v6) => {
                    v6.to_ipv4_mapped().map(|v4| v4.to_string()).unwrap_or_else(|| v6.to_string())
                }
                v4 => v4.to_string(),
            },
            Peer::Unix => "[local]".into(),
        }
    }
}
