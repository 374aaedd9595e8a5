//! Named prepared statements under the transaction pipeline.
//!
//! A client that prepares a statement expects to find it in its next
//! transaction, which may run on another server connection. The pooler
//! keeps each client's statements ([`statement::ClientStatements`]: the
//! client's name, the statement's text and parameter types), sends them to
//! the server under a pooler-wide name derived from a hash of the
//! statement, so that equal statements of different clients share one
//! server-side statement, and records which statements each server
//! connection has in its slot ([`crate::shmem::statements`]). Bind,
//! Describe and Close are rewritten to the server's name, a Parse is sent
//! first where the connection at hand lacks the statement, and the answers
//! to what the pooler sent itself are kept from the client
//! ([`engine::Engine`]).
//!
//! - [`statement`]: statements, their ids and server-side names, and a
//!   client's names.
//! - [`messages`]: reading and writing Parse, Bind, Describe and Close, and
//!   the answers the pooler writes.
//! - [`sql`]: `DEALLOCATE` and `DISCARD ALL` in a Query's text.
//! - [`engine`]: the queue of owed answers and the undo of changes; the
//!   client's side in `client.rs`, the server's in `server.rs`.
//!
//! Everything here works on bytes and plain data: no socket, no clock.

pub mod engine;
pub mod messages;
pub mod sql;
pub mod statement;

mod client;
mod server;

pub use engine::{Activity, Engine, EngineError};

#[cfg(test)]
mod tests;
