//! The worker's contract with the supervisor.
//!
//! The supervisor keeps a copy of every pooled server connection's fd and the
//! bytes to replay to a client that reuses it (ParameterStatus set and
//! BackendKeyData). A worker that creates a connection registers it; a worker
//! that claims a FREE slot checks its fd out. Workers outlive their clients:
//! one that is done puts itself in the idle list in shared memory and is
//! handed the next client's socket here. Bulk data never travels here.

use super::{Lifecycle, LifecycleReply};
use crate::shmem::{Generation, SlotId};

/// Worker to supervisor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WorkerRequest {
    /// A new server connection now lives in `slot` (its fd rides on the
    /// packet); `startup` is what a later client of this slot is sent between
    /// AuthenticationOk and ReadyForQuery. Answered with `Registered`.
    Register {
        slot: SlotId,
        generation: Generation,
        startup: Vec<u8>,
    },
    /// The worker claimed `slot` FREE -> IN_USE and needs its fd. Answered with
    /// `CheckedOut` (fd on the packet) or `Unavailable`.
    Checkout {
        slot: SlotId,
        generation: Generation,
    },
    /// The worker terminated the connection in `slot`; drop the copy.
    Killed {
        slot: SlotId,
        generation: Generation,
    },
    Lifecycle(LifecycleReply),
}

/// Supervisor to worker.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WorkerReply {
    Registered,
    CheckedOut {
        startup: Vec<u8>,
    },
    /// The supervisor holds no connection for that slot and generation.
    Unavailable {
        reason: String,
    },
    /// A new client for an idle worker (one that put itself in the shared
    /// idle list); its socket rides on the packet.
    Client {
        peer: Peer,
    },
    Lifecycle(Lifecycle),
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
