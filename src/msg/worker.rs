//! The worker's contract with the supervisor.
//!
//! The supervisor keeps a copy of every pooled server connection's fd and the
//! bytes to replay to a client that reuses it (ParameterStatus set and
//! BackendKeyData). A worker that creates a connection registers it; a worker
//! that claims a FREE slot checks its fd out. Workers outlive their clients:
//! one that is done puts itself in the idle list in shared memory and is
//! handed the next client's socket here. Bulk data never travels here.
//!
//! Calls (`Register`, `Checkout`) carry a request id that their answer
//! repeats, so a late answer to a call the worker gave up on is never taken
//! for the answer to the next one.

/// Identifies a call and its answer.
pub type RequestId = u64;

use super::{Lifecycle, LifecycleReply};
use crate::shmem::{Generation, SlotId};

/// Worker to supervisor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WorkerRequest {
    /// A new server connection now lives in `slot` (its fd rides on the
    /// packet); `startup` is what a later client of this slot is sent between
    /// AuthenticationOk and ReadyForQuery. Answered with `Registered`.
    Register {
        id: RequestId,
        slot: SlotId,
        generation: Generation,
        startup: Vec<u8>,
    },
    /// The worker claimed `slot` FREE -> IN_USE and needs its fd. Answered with
    /// `CheckedOut` (fd on the packet) or `Unavailable`.
    Checkout {
        id: RequestId,
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
    Registered {
        id: RequestId,
    },
    CheckedOut {
        id: RequestId,
        startup: Vec<u8>,
    },
    /// The supervisor holds no connection for that slot and generation.
    Unavailable {
        id: RequestId,
        reason: String,
    },
    /// A new client for an idle worker (one that put itself in the shared
    /// idle list); its socket rides on the packet.
    Client {
        peer: Peer,
    },
    Lifecycle(Lifecycle),
}

impl WorkerRequest {
    /// The id of a call, None for a notice that gets no answer.
    pub fn id(&self) -> Option<RequestId> {
        match self {
            WorkerRequest::Register { id, .. } | WorkerRequest::Checkout { id, .. } => Some(*id),
            WorkerRequest::Killed { .. } | WorkerRequest::Lifecycle(_) => None,
        }
    }
}

impl WorkerReply {
    /// The call this answers, None for a push.
    pub fn answers(&self) -> Option<RequestId> {
        match self {
            WorkerReply::Registered { id }
            | WorkerReply::CheckedOut { id, .. }
            | WorkerReply::Unavailable { id, .. } => Some(*id),
            WorkerReply::Client { .. } | WorkerReply::Lifecycle(_) => None,
        }
    }
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
