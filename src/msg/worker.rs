//! The worker's contract with the supervisor.
//!
//! The supervisor keeps a copy of every pooled server connection's fd and the
//! bytes to replay to a client that reuses it (ParameterStatus set and
//! BackendKeyData). A worker that creates a connection registers it; a worker
//! that claims a FREE slot checks its fd out. Bulk data never travels here.

use super::{Lifecycle, LifecycleReply};
use crate::shmem::{Generation, SlotId};

/// Worker to supervisor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WorkerRequest {
    /// A new server connection now lives in `slot` (its fd rides on the
    /// packet); `startup` is what a later client of this slot is sent between
    /// AuthenticationOk and ReadyForQuery. Answered with `Registered`.
    Register { slot: SlotId, generation: Generation, startup: Vec<u8> },
    /// The worker claimed `slot` FREE -> IN_USE and needs its fd. Answered with
    /// `CheckedOut` (fd on the packet) or `Unavailable`.
    Checkout { slot: SlotId, generation: Generation },
    /// The worker terminated the connection in `slot`; drop the copy.
    Killed { slot: SlotId, generation: Generation },
    Lifecycle(LifecycleReply),
}

/// Supervisor to worker.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WorkerReply {
    Registered,
    CheckedOut { startup: Vec<u8> },
    /// The supervisor holds no connection for that slot and generation.
    Unavailable { reason: String },
    Lifecycle(Lifecycle),
}
