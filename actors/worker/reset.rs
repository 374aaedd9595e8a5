//! Resetting a server connection between clients: drain what the last
//! client's requests still owe, send ROLLBACK (when a transaction is open)
//! and the reset query, and let the next user of the slot read and check
//! their answers, so a leaving client's worker does not wait on the server
//! once more; and validation. The bytes and the reading of the answers are
//! `pgagroal::protocol::own_queries`; this file does the socket part.

use super::HOUSEKEEPING_TIMEOUT;
use crate::net::Sock;
use pgagroal::protocol::own_queries::{self, AnswerReader, Answers};
use pgagroal::protocol::params::SessionParams;
use pgagroal::protocol::tracker::Tracker;
use std::time::Instant;

/// Largest message accepted in the answers to the pooler's own queries.
const MAX_ANSWER: usize = 1 << 20;

/// Read from the server until the tracker is at a message boundary and every
/// request sent has been answered, discarding what arrives.
pub fn drain(sock: &Sock, server: &mut Tracker, expected_ready: u64, deadline: Instant) -> bool {
    if server.ready_count >= expected_ready && server.at_boundary() {
        return server.ready_count == expected_ready;
    }
    let mut chunk = Vec::with_capacity(8192);
    while server.ready_count < expected_ready || !server.at_boundary() {
        chunk.clear();
        // End of stream, a failed read and the deadline all mean the
        // connection cannot be reused.
        if sock.read_some(&mut chunk, Some(deadline)).is_err() || server.scan(&chunk).is_err() {
            return false;
        }
    }
    server.ready_count == expected_ready
}

/// Send the reset: ROLLBACK when a transaction is open, then the reset
/// query, then (`reapply`) the leaving client's settings again, so that a
/// next client with the same ones needs no round trip. Returns how many
/// ReadyForQuery messages answer it, or None when the server cannot be
/// written to. The answers are read by the next user of the slot
/// ([`settle_reset`]), so a leaving client's worker does not wait on the
/// server once more.
pub fn send_reset(sock: &Sock, tx_status: u8, reset_query: &str, reapply: Option<&SessionParams>) -> Option<u32> {
    let (queries, expected) = own_queries::reset(tx_status, reset_query, reapply);
    if expected > 0 && sock.write_all(&queries, Some(Instant::now() + HOUSEKEEPING_TIMEOUT)).is_err() {
        return None;
    }
    Some(expected)
}

/// Read the answers to the previous user's reset; true when they came with
/// no error and the connection is idle. Usually they are already there.
pub fn settle_reset(sock: &Sock, expected: u32) -> bool {
    if expected == 0 {
        return true;
    }
    read_answers(sock, expected, Instant::now() + HOUSEKEEPING_TIMEOUT).is_some_and(|a| a.clean())
}

/// Read until `count` ReadyForQuery messages have come. None when the
/// connection fails or times out, a message is malformed, or more bytes
/// follow the last answer (the connection is then not in a known state).
pub fn read_answers(sock: &Sock, count: u32, deadline: Instant) -> Option<Answers> {
    let mut buf = Vec::with_capacity(512);
    let mut reader = AnswerReader::new(count);
    while !reader.done() {
        let f = sock.read_frame(&mut buf, MAX_ANSWER, Some(deadline)).ok()?;
        let len = f.len();
        reader.feed(&f).ok()?;
        buf.drain(..len);
    }
    buf.is_empty().then(|| reader.finish())
}

/// Validation: an empty query, answered with EmptyQueryResponse and
/// ReadyForQuery 'I' by a live, idle connection. Reads the slot's owed reset
/// answers first (`owed`).
pub fn check_alive(sock: &Sock, owed: u32) -> bool {
    if !settle_reset(sock, owed) {
        return false;
    }
    let deadline = Instant::now() + HOUSEKEEPING_TIMEOUT;
    sock.write_all(&own_queries::validation(), Some(deadline)).is_ok()
        && read_answers(sock, 1, deadline).is_some_and(|a| a.clean())
}
