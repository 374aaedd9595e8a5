//! The transaction pipeline: the client holds a server connection only from
//! its first message after an idle moment until the server's ReadyForQuery
//! says idle (`I`) with every request answered and no extended-protocol
//! batch open (see `Tracker::settled`). Then the slot goes back to the pool
//! (a compare-and-swap), the worker keeps its fd, and waits for the client's
//! next message with no connection at all.
//!
//! Per transaction, once the worker has used a slot before: a claim and a
//! return (two compare-and-swaps on the slot table, plus a futex wake only
//! when someone waits), one peek at the pooled socket, and the relay's own
//! reads, writes and waits. No message to the supervisor.

use super::acquire::Unserved;
use super::pool::{self, Access, Conn, Reuse};
use super::relay::{self, End};
use super::{Session, settings};
use crate::net::{IoFail, Sock};
use pgagroal::disconnect::Disconnect;
use pgagroal::prepared::Engine;
use pgagroal::protocol::frontend::{TERMINATE, first_request};
use pgagroal::protocol::params;
use pgagroal::protocol::{encode, sqlstate};

/// Serve the client, transaction by transaction, starting on `conn`.
pub fn run(
    s: &Session<'_>,
    client: &Sock,
    mut buf: Vec<u8>,
    reuse: &mut Reuse,
    access: &Access,
    conn: Conn,
) -> Disconnect {
    let mode = relay::Mode { stop_at_idle: true, inspect: true, disconnect_after: None, force: false };
    // The client's settings: its startup ones, with what it has since set
    // of the ones the server reports (`SET DateStyle`, `SET TimeZone`, ...),
    // so every connection it gets agrees with what it was told.
    let mut params = s.params.clone();
    // The client's named prepared statements, for every connection it gets.
    let mut engine =
        (s.config.main.prepared_statement_capacity() > 0).then(|| Engine::with_context(s.params.statement_context()));
    // A client that has logged in and sent nothing yet holds no connection.
    let mut current = if buf.is_empty() {
        pool::give_back(s, reuse, conn, Some(s.params.hash()));
        None
    } else {
        Some(conn)
    };
    loop {
        let conn = match current.take() {
            Some(conn) => conn,
            None => {
                if buf.is_empty()
                    && let Err(reason) = next_request(client, &mut buf)
                {
                    return reason;
                }
                if buf.first() == Some(&TERMINATE) {
                    return Disconnect::ClientTerminate;
                }
                match checkout(s, &params, client, &mut buf, reuse, access) {
                    Ok(conn) => conn,
                    Err(Unserved::Left(reason)) => return reason,
                    Err(Unserved::Cancelled) => {
                        if let Err(reason) = cancelled(client, &mut buf) {
                            return reason;
                        }
                        continue;
                    }
                }
            }
        };
        pgagroal::fail_point!("worker-mid-transaction");
        let table = s.region.statements(conn.id.0 as usize);
        let prepared =
            engine.as_mut().zip(table.as_ref()).map(|(engine, t)| relay::Prepared { engine, table: t.clone() });
        let end = relay::run(
            client,
            &conn.sock,
            std::mem::take(&mut buf),
            &mut reuse.buffers,
            mode,
            pool::counted(s, &conn),
            prepared,
        );
        // A statement that may change settings was run from its name alone.
        let mut bound_change = false;
        if let Some(engine) = engine.as_mut() {
            record(engine.take_activity());
            bound_change = engine.take_session_change();
        }
        if let (Some(engine), Some(table)) = (engine.as_mut(), table.as_ref())
            && !(matches!(end, End::Idle { .. }) && engine.settled())
        {
            // What the connection has is not known for sure any more.
            engine.abandon(table);
        }
        match end {
            End::Idle { client: ct, server: st, owed } => {
                for (name, value) in &st.reported {
                    params.carry(name, value);
                }
                let changed = ct.session_change || st.session_change || bound_change;
                let hash = if changed { params::UNKNOWN } else { params.hash() };
                pool::give_back(s, reuse, conn, Some(hash));
                if let Err(reason) = relay::deliver(client, &reuse.buffers, owed, &mut buf) {
                    return reason;
                }
            }
            mut end => {
                // `finish` knows the startup settings only.
                if let End::Client { client, .. } = &mut end {
                    client.session_change |= bound_change || params != s.params;
                }
                return pool::finish(s, conn, end, reuse);
            }
        }
    }
}

/// Count what the prepared-statement engine did (with metrics on).
fn record(activity: pgagroal::prepared::Activity) {
    use pgagroal::shmem::counters::Event;
    relay::count(Event::PreparedClientParse, activity.client_parses);
    relay::count(Event::PreparedServerParse, activity.server_parses);
    relay::count(Event::PreparedBind, activity.binds);
    relay::count(Event::PreparedEviction, activity.evictions);
}

/// Wait for the client's next bytes (no connection is held meanwhile).
fn next_request(client: &Sock, buf: &mut Vec<u8>) -> Result<(), Disconnect> {
    loop {
        match client.read_some(buf, None) {
            Ok(_) if !buf.is_empty() => return Ok(()),
            Ok(_) => {}
            Err(IoFail::Eof) => return Err(Disconnect::ClientClosed),
            Err(IoFail::Timeout) => {}
            Err(IoFail::Io(_)) => return Err(Disconnect::ClientError),
        }
    }
}

/// A connection for the client's next transaction, holding its settings.
/// A cancel for the client ends the wait for one when what the client sent
/// holds a whole request, which the cancel is then for.
fn checkout(
    s: &Session<'_>,
    params: &params::SessionParams,
    client: &Sock,
    buf: &mut Vec<u8>,
    reuse: &mut Reuse,
    access: &Access,
) -> Result<Conn, Unserved> {
    let cancellable = first_request(buf).is_some();
    let conn = super::acquire::acquire(s, client, buf, reuse, access, cancellable)?;
    match settings::bring_in_line(s, params, &conn) {
        Ok(_) => Ok(conn),
        Err(failure) => Err(Unserved::Left(pool::settings_failed(s, client, reuse, conn, failure))),
    }
}

/// The client's first request was cancelled before it reached a server:
/// it gets what PostgreSQL answers a cancelled statement with (57014, and
/// ReadyForQuery: the client is between transactions), and the request is
/// dropped; what the client sent after it stays.
fn cancelled(client: &Sock, buf: &mut Vec<u8>) -> Result<(), Disconnect> {
    let len = first_request(buf).unwrap_or(buf.len());
    buf.drain(..len);
    let mut answer =
        encode::error_response("ERROR", sqlstate::QUERY_CANCELED, "canceling statement due to user request");
    answer.extend_from_slice(&encode::ready_for_query(b'I'));
    let deadline = std::time::Instant::now() + super::HOUSEKEEPING_TIMEOUT;
    client.write_all(&answer, Some(deadline)).map_err(|_| Disconnect::ClientError)
}
