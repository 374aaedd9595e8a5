//! The pgagroal library: everything that decides, with no process or socket
//! ownership of its own. The binaries under `actors/` hold only run loops,
//! sockets, clocks and forks; they call into these modules.
//!
//! Map of the modules:
//!
//! - [`config`]: `pgagroal.conf` (INI dialect or TOML) and command-line file
//!   resolution, with errors that name file, line, key and expectation.
//! - [`disconnect`]: the closed set of reasons a client's connection ends.
//! - [`hba`]: `pgagroal_hba.conf` parsing and first-match lookup.
//! - [`protocol`]: the PostgreSQL wire codec: the startup packet parser,
//!   backend message parsing, a frame tracker for relayed byte streams, and
//!   encoders for the messages the pooler itself sends.
//! - [`shmem`]: the memfd-backed shared region and the slot table whose state
//!   transitions are compare-and-swap operations recording the owner pid.
//! - [`ipc`]: typed mailboxes over `SOCK_SEQPACKET` with fd passing.
//! - [`msg`]: one message contract per actor, carried by the mailboxes.
//! - [`failpoint`]: named fault-injection points (the `failpoints`
//!   feature only).
//! - [`pool`]: pool policy: which connections are idle, too old, due for
//!   validation or missing, given a snapshot of the slot table and `now`.
//! - [`supervision`]: the supervisor's restart policy (backoff, crash
//!   loops, ping deadlines).
//! - [`mgmt`]: the management protocol spoken by `pgagroal-cli`.
//! - [`prepared`]: named prepared statements under the transaction
//!   pipeline: the client's names, server-side names and the rewriting.
//! - [`log`]: the synchronous, lock-free slog drain (console, file with
//!   rotation, syslog; text or JSON lines).
//! - [`sys`]: small, audited wrappers over libc for fds and sockets.
//! - [`arena`]: the fork-aware global allocator that keeps workers small.
//! - [`auth`]: SCRAM-SHA-256 (both roles), MD5 and stored secrets, as pure
//!   state machines with injected nonces and salts.
//! - [`vault`]: the master key and the encrypted users files.
//! - [`tls`]: the rustls configurations toward clients and servers, and
//!   the key files' permission checks.

pub mod arena;
pub mod auth;
pub mod config;
pub mod disconnect;
pub mod failpoint;
pub mod hba;
pub mod ipc;
pub mod log;
pub mod metrics;
pub mod mgmt;
pub mod msg;
pub mod pool;
pub mod prepared;
pub mod proctitle;
pub mod protocol;
pub mod shmem;
pub mod supervision;
pub mod sys;
pub mod tls;
pub mod vault;

/// Version reported by `-V` and in management replies.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
