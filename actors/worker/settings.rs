//! Bringing a server connection in line with the client's settings before
//! the client uses it: when the slot's settings hash differs from the
//! client's, the queries from [`SessionParams::apply_queries`] are sent and
//! their answers read here (nothing of them reaches the client). The values
//! the server reports while applying them are returned for the client's
//! greeting.

use super::Session;
use super::pool::Conn;
use crate::net::Sock;
use pgagroal::protocol::params::{self, SessionParams};
use pgagroal::protocol::{encode, sqlstate};
use std::time::Instant;

/// Why the settings could not be applied.
pub enum Failure {
    /// The server refused a value; the connection itself is fine.
    Refused(Vec<u8>),
    /// The connection failed.
    Broken(Vec<u8>),
}

impl Failure {
    /// The FATAL ErrorResponse for the client.
    pub fn for_client(&self) -> &[u8] {
        match self {
            Failure::Refused(bytes) | Failure::Broken(bytes) => bytes,
        }
    }

    pub fn is_broken(&self) -> bool {
        matches!(self, Failure::Broken(_))
    }
}

/// Apply the client's settings (`params`: its startup ones, or in the
/// transaction pipeline those with what it has set since) to `conn` unless
/// it holds them already.
pub fn bring_in_line(s: &Session<'_>, params: &SessionParams, conn: &Conn) -> Result<Vec<(String, String)>, Failure> {
    let Some(slot) = s.region.slots().get(conn.id) else { return Ok(Vec::new()) };
    let want = params.hash();
    let have = slot.params_hash();
    if have == want {
        return Ok(Vec::new());
    }
    let (queries, count) = params.apply_queries(have == SessionParams::default().hash());
    // Until the answers are in, nobody knows what the connection holds.
    slot.set_params_hash(params::UNKNOWN);
    let deadline = Instant::now() + super::HOUSEKEEPING_TIMEOUT;
    if count > 0 {
        if conn.sock.write_all(&queries, Some(deadline)).is_err() {
            return Err(broken("the server connection failed while applying the client's settings"));
        }
        let reported = read_answers(&conn.sock, count, deadline)?;
        slot.set_params_hash(want);
        return Ok(reported);
    }
    slot.set_params_hash(want);
    Ok(Vec::new())
}

fn broken(text: &str) -> Failure {
    Failure::Broken(encode::error_response("FATAL", sqlstate::CONNECTION_FAILURE, text))
}

/// Read the answers: the values the server reported, or the first error
/// it sent, as PostgreSQL says it of a bad startup setting (FATAL: the
/// client cannot start with it).
fn read_answers(sock: &Sock, count: u32, deadline: Instant) -> Result<Vec<(String, String)>, Failure> {
    let answers = super::reset::read_answers(sock, count, deadline)
        .ok_or_else(|| broken("the server connection failed while applying the client's settings"))?;
    match answers.error {
        Some(e) => Err(Failure::Refused(encode::error_response("FATAL", &e.code, &e.message))),
        None => Ok(answers.reported),
    }
}
