//! The part of a contract for actors that use pooled server connections
//! (workers and the periodic services).
//!
//! The supervisor keeps a copy of every pooled server connection's fd and the
//! bytes to replay to a client that reuses it (ParameterStatus set and
//! BackendKeyData). An actor that creates a connection registers it; one
//! that claimed a slot by compare-and-swap and does not hold the fd checks
//! it out. Bulk data never travels here.

use crate::shmem::{Generation, SlotId};

/// Calls, answered with a [`PoolAnswer`] or a failure.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PoolCall {
    /// A new server connection now lives in `slot`, which the caller holds
    /// INIT (its fd rides on the packet); `startup` is what a later client
    /// of this slot is sent between AuthenticationOk and ReadyForQuery.
    Register { slot: SlotId, generation: Generation, startup: Vec<u8> },
    /// The caller claimed `slot` and needs its fd (on the answer's packet).
    Checkout { slot: SlotId, generation: Generation },
}

/// What a successful [`PoolCall`] is answered with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PoolAnswer {
    Registered,
    CheckedOut { startup: Vec<u8> },
}

/// Notices: no answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PoolNotice {
    /// The caller terminated the connection in `slot`; drop the copy.
    Killed { slot: SlotId, generation: Generation },
}
