//! Shared memory: one region created by the supervisor before its first fork,
//! backed by a memfd and mapped `MAP_SHARED` so that every forked actor sees
//! the same bytes. It holds a header and the slot table.
//!
//! - [`region`]: creating and mapping the region, and the header.
//! - [`auth_kind`]: how a slot's connection was authenticated.
//! - [`clients`]: each worker's minted client key and the slot serving it,
//!   for query cancel.
//! - [`counters`]: event counters for the metrics server, sharded by
//!   process.
//! - [`queue`]: the first-come first-served queue of clients waiting for a
//!   connection.
//! - [`servers`]: the configured servers' states (primary, failed, ...).
//! - [`slot`]: one slot record and its compare-and-swap state machine.
//! - [`statements`]: each server connection's prepared statements, for
//!   the transaction pipeline.
//! - [`table`]: scans over the slots that claim one.

pub mod auth_kind;
pub mod clients;
pub mod counters;
pub mod pools;
pub mod queue;
pub mod region;
pub mod servers;
pub mod slot;
pub mod statements;
pub mod table;

pub use clients::{Binding, CancelTarget, ClientTable};
pub use queue::{Ticket, WaitQueue};
pub use region::{Header, Region};
pub use slot::{AuthKind, AuthKinds, Generation, PackedName, Replay, Slot, SlotId, SlotInfo, SlotState, Word};
pub use table::{Claim, Counts, SlotTable};
