//! The engine between clients and modelled backends: what each client gets
//! must be what a direct connection would have given it.

use super::Engine;
use crate::shmem::statements::OwnedStatements;

#[path = "../../proptests/prepared_model.rs"]
mod model;

use model::{Rewriter, front};

type Harness = model::Harness<Engine>;

impl Rewriter for Engine {
    type Table = OwnedStatements;
    fn table(capacity: usize) -> OwnedStatements {
        OwnedStatements::new(capacity)
    }
    fn client_bytes(&mut self, bytes: &[u8], t: &OwnedStatements, to_server: &mut Vec<u8>, to_client: &mut Vec<u8>) {
        Engine::client_bytes(self, bytes, &t.table(), to_server, to_client).expect("valid client bytes");
    }
    fn resume(&mut self, t: &OwnedStatements, to_server: &mut Vec<u8>, to_client: &mut Vec<u8>) {
        Engine::resume(self, &t.table(), to_server, to_client).expect("valid client bytes");
    }
    fn server_bytes(&mut self, chunk: &[u8], t: &OwnedStatements, out: &mut Vec<u8>) -> bool {
        Engine::server_bytes(self, chunk, &t.table(), out)
    }
    fn stalled(&self) -> bool {
        Engine::stalled(self)
    }
    fn settled(&self) -> bool {
        Engine::settled(self)
    }
}

fn batch(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut v: Vec<u8> = parts.concat();
    v.extend_from_slice(&front::sync());
    v
}

fn run(name: &str) -> Vec<u8> {
    batch(&[front::bind(name), front::execute()])
}

#[test]
fn a_statement_follows_its_client_to_another_connection() {
    let mut h = Harness::new(1, 2, 10);
    h.send(0, 0, &batch(&[front::parse("S_1", "SELECT 1"), front::bind("S_1"), front::execute()]));
    h.send(0, 1, &run("S_1"));
    h.send(0, 1, &run("S_1"));
    h.send(0, 0, &batch(&[front::describe("S_1")]));
    h.check();
    assert_eq!(h.servers[1].0.statements.len(), 1, "prepared once on the second connection");
    let sent = String::from_utf8_lossy(&h.received[1]).into_owned();
    assert_eq!(sent.matches('P').count(), 1, "{sent:?}");
}

#[test]
fn equal_statements_are_shared_and_equal_names_are_not() {
    let mut h = Harness::new(2, 1, 10);
    h.send(0, 0, &batch(&[front::parse("a", "SELECT 1"), front::bind("a"), front::execute()]));
    let before = h.received[0].len();
    h.send(1, 0, &batch(&[front::parse("b", "SELECT 1")]));
    assert_eq!(&h.received[0][before..], &front::sync()[..], "the shared statement is not prepared again");
    h.send(1, 0, &batch(&[front::parse("a", "SELECT 2"), front::bind("a"), front::execute()]));
    h.send(0, 0, &run("a"));
    h.send(1, 0, &run("b"));
    h.check();
    assert_eq!(h.servers[0].0.statements.len(), 2);
}

#[test]
fn duplicate_unknown_and_server_looking_names_fail_as_postgresql_says() {
    let mut h = Harness::new(1, 1, 10);
    h.send(0, 0, &batch(&[front::parse("s", "SELECT 1")]));
    h.send(0, 0, &batch(&[front::parse("s", "SELECT 2"), front::bind("s"), front::execute()]));
    h.send(0, 0, &batch(&[front::bind("nope"), front::execute()]));
    h.send(0, 0, &batch(&[front::describe("pgagroal_00000000000000000000000000000001")]));
    h.send(0, 0, &batch(&[front::close("pgagroal_x"), front::close("never")]));
    h.send(0, 0, &run("s"));
    h.check();
}

#[test]
fn an_error_undoes_what_the_rest_of_its_batch_did() {
    let mut h = Harness::new(2, 1, 10);
    h.send(1, 0, &batch(&[front::parse("x", "SELECT 7")]));
    // The server has SELECT 7: client 0's Parse would be answered by the
    // pooler, but the Bind before it fails and the server skips it.
    h.send(0, 0, &batch(&[front::bind("missing"), front::parse("y", "SELECT 7"), front::close("z")]));
    h.send(0, 0, &run("y"));
    h.send(0, 0, &batch(&[front::parse("y", "SELECT fail")]));
    h.send(0, 0, &run("y"));
    h.check();
}

#[test]
fn least_recently_used_statements_are_closed_beyond_the_limit() {
    let mut h = Harness::new(1, 1, 2);
    for (name, text) in [("a", "SELECT 1"), ("b", "SELECT 2"), ("c", "SELECT 3")] {
        h.send(0, 0, &batch(&[front::parse(name, text)]));
        assert!(h.servers[0].0.statements.len() <= 2);
    }
    for round in 0..3 {
        for name in ["a", "b", "c", "a"] {
            h.send(0, 0, &run(name));
            assert!(h.servers[0].0.statements.len() <= 2, "round {round}");
        }
    }
    h.check();
}

#[test]
fn deallocate_and_discard_act_on_the_clients_own_names() {
    let mut h = Harness::new(2, 1, 10);
    h.send(0, 0, &batch(&[front::parse("a", "SELECT 1"), front::parse("b", "SELECT 2")]));
    h.send(1, 0, &batch(&[front::parse("a", "SELECT 1")]));
    h.send(0, 0, &front::query("DEALLOCATE a"));
    h.send(0, 0, &run("a"));
    h.send(0, 0, &run("b"));
    h.send(1, 0, &run("a"));
    h.send(0, 0, &front::query("deallocate nothing"));
    h.send(0, 0, &front::query("DISCARD ALL"));
    h.send(0, 0, &run("b"));
    h.send(1, 0, &run("a"));
    h.send(0, 0, &batch(&[front::parse("a", "SELECT 1")]));
    h.send(0, 0, &front::query("DEALLOCATE ALL"));
    h.send(1, 0, &run("a"));
    h.check();
}

#[test]
fn pipelined_batches_wait_for_the_answers_they_depend_on() {
    let mut h = Harness::new(1, 2, 10);
    h.send(0, 0, &batch(&[front::parse("s", "SELECT 1"), front::parse("f", "SELECT 1 fail")]));
    let mut pipeline = run("s");
    pipeline.extend_from_slice(&run("s"));
    pipeline.extend_from_slice(&batch(&[front::parse("t", "SELECT 2")]));
    pipeline.extend_from_slice(&run("t"));
    pipeline.extend_from_slice(&front::query("DEALLOCATE t"));
    pipeline.extend_from_slice(&run("t"));
    h.send(0, 1, &pipeline);
    h.check();
}

#[test]
fn answers_split_anywhere_come_out_the_same() {
    for split in [1, 2, 3, 7] {
        let mut h = Harness::new(1, 2, 1);
        h.split = split;
        h.send(0, 0, &batch(&[front::parse("a", "SELECT 1"), front::flush()]));
        h.send(0, 0, &batch(&[front::parse("b", "SELECT 2"), front::bind("b"), front::execute()]));
        h.send(0, 1, &run("a"));
        h.send(0, 1, &run("b"));
        h.send(0, 1, &batch(&[front::bind("nope")]));
        h.send(0, 1, &batch(&[front::bind("pgagroal_1")]));
        h.send(0, 0, &front::query("DEALLOCATE b"));
        h.check();
    }
}

#[test]
fn an_abandoned_connection_forgets_what_it_may_lack() {
    let owned = OwnedStatements::new(4);
    let table = owned.table();
    let mut engine = Engine::new();
    let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
    let bytes = batch(&[front::parse("a", "SELECT 1")]);
    engine.client_bytes(&bytes, &table, &mut to_server, &mut to_client).expect("valid");
    assert_eq!(table.len(), 1, "counted on as soon as it is sent");
    engine.abandon(&table);
    assert!(table.is_empty() && engine.settled());
    assert!(engine.statements().is_empty(), "the client's Parse was never answered");
}

/// The server's answer to a Close and Parse the pooler sent, and their Sync.
fn closed_and_parsed() -> Vec<u8> {
    [&[b'3', 0, 0, 0, 4, b'1', 0, 0, 0, 4][..], &crate::protocol::encode::ready_for_query(b'I')].concat()
}

/// A Bind of statement `name` that the server refuses with `code`: whether
/// the connection still counts on having the statement afterwards.
fn kept_after_bind_error(code: &str) -> bool {
    use super::statement::Statement;
    let owned = OwnedStatements::new(4);
    let table = owned.table();
    let mut engine = Engine::with_context(9);
    let (mut to_server, mut to_client, mut out) = (Vec::new(), Vec::new(), Vec::new());
    let parse = batch(&[front::parse("s", "SELECT * FROM t")]);
    engine.client_bytes(&parse, &table, &mut to_server, &mut to_client).expect("valid");
    // The Parse goes behind a Close of the server-side name.
    assert_eq!(to_server.first(), Some(&b'C'));
    engine.server_bytes(&closed_and_parsed(), &table, &mut out);
    let id = Statement::in_context(b"SELECT * FROM t\0\0\0", 9).id;
    assert!(table.contains(id) && engine.settled());
    engine.client_bytes(&run("s"), &table, &mut to_server, &mut to_client).expect("valid");
    let error = crate::protocol::encode::error_response("ERROR", code, "it changed");
    let refused = [&error[..], &crate::protocol::encode::ready_for_query(b'I')].concat();
    out.clear();
    engine.server_bytes(&refused, &table, &mut out);
    assert!(engine.settled());
    table.contains(id)
}

#[test]
fn a_statement_the_server_says_no_longer_holds_is_prepared_afresh_next_time() {
    // "cached plan must not change result type", an undefined column or
    // table: the connection's copy is forgotten.
    assert!(!kept_after_bind_error("0A000"));
    assert!(!kept_after_bind_error("42703"));
    assert!(!kept_after_bind_error("42P01"));
    assert!(!kept_after_bind_error("26000"));
    // A bad parameter value or an aborted transaction says nothing about
    // the statement.
    assert!(kept_after_bind_error("22P02"));
    assert!(kept_after_bind_error("25P02"));
}

#[test]
fn a_parse_in_a_failed_transaction_is_refused_as_postgresql_refuses_it() {
    use crate::protocol::encode::{error_response, ready_for_query};
    let owned = OwnedStatements::new(4);
    let table = owned.table();
    let mut engine = Engine::new();
    let (mut to_server, mut to_client, mut out) = (Vec::new(), Vec::new(), Vec::new());
    let prepare = |name| batch(&[front::parse(name, "SELECT 1")]);
    engine.client_bytes(&prepare("a"), &table, &mut to_server, &mut to_client).expect("valid");
    engine.server_bytes(&closed_and_parsed(), &table, &mut out);
    // Outside a failed transaction the connection's statement answers a
    // second client name at once.
    to_server.clear();
    engine.client_bytes(&prepare("b"), &table, &mut to_server, &mut to_client).expect("valid");
    assert_eq!(to_server, front::sync(), "answered by the pooler");
    engine.server_bytes(&ready_for_query(b'I'), &table, &mut out);
    // The transaction fails (the client's BEGIN and a failing query).
    engine.client_bytes(&front::query("BEGIN; SELECT 1/0"), &table, &mut to_server, &mut to_client).expect("valid");
    let failed = [&error_response("ERROR", "22012", "division by zero")[..], &ready_for_query(b'E')].concat();
    engine.server_bytes(&failed, &table, &mut out);
    // Now the Parse goes to the server (behind a Close), which refuses it.
    to_server.clear();
    to_client.clear();
    engine.client_bytes(&prepare("c"), &table, &mut to_server, &mut to_client).expect("valid");
    assert_eq!(to_server.first(), Some(&b'C'), "sent to the server: {to_server:?}");
    assert!(to_client.is_empty());
    let aborted = error_response("ERROR", "25P02", "current transaction is aborted");
    out.clear();
    let answer = [&aborted[..], &ready_for_query(b'E')].concat();
    let seen = if engine.server_bytes(&answer, &table, &mut out) { out } else { answer };
    assert!(engine.settled());
    assert!(String::from_utf8_lossy(&seen).contains("25P02"), "the client is told: {seen:?}");
    assert!(engine.statements().get(b"c").is_none(), "the refused Parse defined nothing");
    assert!(engine.statements().get(b"b").is_some());
}

#[test]
fn after_a_result_type_change_every_client_statement_prepared_before_is_refused() {
    use crate::protocol::encode::{error_response, ready_for_query};
    let (conn1, conn2) = (OwnedStatements::new(4), OwnedStatements::new(4));
    let (t1, t2) = (conn1.table(), conn2.table_with_epochs(&conn1));
    let (mut x, mut y) = (Engine::new(), Engine::new());
    let (mut to_server, mut to_client, mut out) = (Vec::new(), Vec::new(), Vec::new());
    let prepared = closed_and_parsed();
    for (engine, table) in [(&mut x, &t1), (&mut y, &t2)] {
        let parse = batch(&[front::parse("s", "SELECT * FROM t")]);
        engine.client_bytes(&parse, table, &mut to_server, &mut to_client).expect("valid");
        engine.server_bytes(&prepared, table, &mut out);
        assert!(engine.settled());
    }
    // The table changed: x's Bind on the first connection is refused by the server.
    x.client_bytes(&run("s"), &t1, &mut to_server, &mut to_client).expect("valid");
    let stale =
        [&error_response("ERROR", "0A000", "cached plan must not change result type")[..], &ready_for_query(b'I')]
            .concat();
    x.server_bytes(&stale, &t1, &mut out);
    assert!(x.settled() && t1.is_empty());
    // y's statement, prepared before, is refused too, though the second
    // connection still has it: no Bind of it goes out.
    to_server.clear();
    y.client_bytes(&run("s"), &t2, &mut to_server, &mut to_client).expect("valid");
    let sent = String::from_utf8_lossy(&to_server).into_owned();
    assert!(sent.starts_with('P') && sent.contains("pgagroal refuses this message"), "{sent:?}");
    let refused = [&error_response("ERROR", "42601", "syntax error")[..], &ready_for_query(b'I')].concat();
    out.clear();
    assert!(y.server_bytes(&refused, &t2, &mut out));
    assert!(String::from_utf8_lossy(&out).contains("cached plan must not change result type"), "{out:?}");
    assert!(y.settled());
    // Prepared again, the text is a new statement: the connection's old
    // copy is not used.
    to_server.clear();
    let again = batch(&[front::parse("s2", "SELECT * FROM t")]);
    y.client_bytes(&again, &t2, &mut to_server, &mut to_client).expect("valid");
    assert!(String::from_utf8_lossy(&to_server).contains("SELECT * FROM t"), "prepared on the server: {to_server:?}");
    assert_eq!(t2.len(), 2, "the old copy and the new statement");
}

#[test]
fn impossible_lengths_are_refused() {
    let owned = OwnedStatements::new(4);
    let mut engine = Engine::new();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let bad = [b'B', 0, 0, 0, 2];
    assert!(engine.client_bytes(&bad, &owned.table(), &mut a, &mut b).is_err());
}
