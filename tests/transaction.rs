//! The transaction pipeline: many clients over few server connections, each
//! client holding one only for a transaction, with nothing of one client's
//! transaction or settings reaching another.

mod common;

use common::*;
use std::io::Read;
use std::time::Duration;

const PASSWORD: &str = "trust user password";

fn transaction_pool(max_connections: usize) -> Pooler {
    transaction_pool_with(max_connections, Vec::new())
}

/// A transaction pool whose daemon has `env` (failpoints, say).
fn transaction_pool_with(max_connections: usize, env: Vec<(&'static str, String)>) -> Pooler {
    Pooler::start(PoolerOptions {
        max_connections,
        extra: "pipeline = transaction\nallow_unknown_users = off\n".into(),
        users: vec![(TRUST_USER, PASSWORD)],
        env,
        ..Default::default()
    })
}

fn connect(pooler: &Pooler) -> postgres::Client {
    let mut config = postgres::Config::new();
    config.host("127.0.0.1").port(pooler.port).user(TRUST_USER).dbname(DATABASE);
    config.connect_timeout(Duration::from_secs(30));
    config.connect(postgres::NoTls).expect("connect through the pooler")
}

fn one(client: &mut postgres::Client, sql: &str) -> String {
    first_value(client, sql)
}

fn table(name: &str, columns: &str) {
    postgres().table(name, columns);
}

fn direct(sql: &str) -> String {
    postgres().as_test_user(sql)
}

#[test]
fn two_hundred_clients_over_eight_connections_see_only_their_own_data() {
    const CLIENTS: i32 = 200;
    const TRANSACTIONS: i32 = 50;
    table("tx_check", "client int, seq int");
    let pooler = transaction_pool(8);
    let port = pooler.port;
    let threads: Vec<_> = (0..CLIENTS)
        .map(|me| {
            std::thread::spawn(move || -> Result<(), String> {
                let mut config = postgres::Config::new();
                config.host("127.0.0.1").port(port).user(TRUST_USER).dbname(DATABASE);
                config.connect_timeout(Duration::from_secs(60));
                let mut c = config.connect(postgres::NoTls).map_err(|e| format!("client {me}: {e}"))?;
                for seq in 0..TRANSACTIONS {
                    let mut tx = c.transaction().map_err(|e| format!("client {me} begin: {e}"))?;
                    let before: i32 = tx.query_one("SELECT pg_backend_pid()", &[]).map_err(|e| e.to_string())?.get(0);
                    tx.execute("INSERT INTO tx_check VALUES ($1, $2)", &[&me, &seq]).map_err(|e| e.to_string())?;
                    let mine: i64 = tx
                        .query_one("SELECT count(*) FROM tx_check WHERE client = $1", &[&me])
                        .map_err(|e| e.to_string())?
                        .get(0);
                    let after: i32 = tx.query_one("SELECT pg_backend_pid()", &[]).map_err(|e| e.to_string())?.get(0);
                    tx.commit().map_err(|e| format!("client {me} commit: {e}"))?;
                    if mine != i64::from(seq) + 1 {
                        return Err(format!("client {me} transaction {seq} saw {mine} of its rows"));
                    }
                    if before != after {
                        return Err(format!("client {me} changed backend inside a transaction"));
                    }
                }
                Ok(())
            })
        })
        .collect();
    let errors: Vec<String> = threads.into_iter().filter_map(|t| t.join().expect("thread").err()).collect();
    assert!(errors.is_empty(), "{} clients failed, first: {:?}", errors.len(), errors.first());
    assert_eq!(direct("SELECT count(*) FROM tx_check"), (CLIENTS * TRANSACTIONS).to_string());
    let status = pooler.status();
    assert!(status["Response"]["TotalConnections"].as_u64().unwrap_or(99) <= 8, "{status}");
    pooler.wait_idle();
}

#[test]
fn pgbench_extended_over_a_small_transaction_pool() {
    let pooler = transaction_pool(4);
    let bench = |args: &[&str]| pgbench(pooler.port, TRUST_USER, Some(PASSWORD), args);
    let init = bench(&["-i", "-s", "1", "-q"]);
    assert!(init.status.success(), "pgbench -i: {}", String::from_utf8_lossy(&init.stderr));
    let run = bench(&["-M", "extended", "-c", "16", "-j", "2", "-t", "100"]);
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "pgbench: {text}{}", String::from_utf8_lossy(&run.stderr));
    assert!(text.contains("number of failed transactions: 0"), "{text}");
    assert!(text.contains("number of transactions actually processed: 1600/1600"), "{text}");
}

/// Log in over a raw socket through the transaction pool.
fn raw_login(pooler: &Pooler) -> wire::Raw {
    let mut raw = wire::Raw::start(pooler.port, TRUST_USER, DATABASE);
    raw.until_ready().expect("login");
    raw
}

/// Send a simple Query without waiting for its answer.
fn send_query(raw: &mut wire::Raw, sql: &str) {
    let mut q = Vec::new();
    pgagroal::protocol::encode::append_query(&mut q, sql);
    raw.send(&q);
}

/// The DataRow values (first column) up to the `readies`-th ReadyForQuery,
/// each of which must say idle.
fn rows_until_ready(raw: &mut wire::Raw, readies: usize) -> Vec<Vec<u8>> {
    let mut rows = Vec::new();
    let mut seen = 0;
    while seen < readies {
        match raw.read() {
            Some((b'D', body)) => rows.push(body[6..].to_vec()),
            Some((b'Z', body)) => {
                assert_eq!(body, b"I");
                seen += 1;
            }
            Some((b'E', body)) => panic!("error: {:?}", wire::field(&body, b'M')),
            Some(_) => {}
            None => panic!("closed after {seen} answers"),
        }
    }
    rows
}

#[test]
fn ten_syncs_in_flight_from_one_client_are_answered_in_order() {
    let pooler = transaction_pool(2);
    let mut raw = raw_login(&pooler);
    let mut batch = Vec::new();
    for n in 0..10 {
        batch.extend_from_slice(&pgagroal::protocol::encode::extended_query(&format!("SELECT {n}"), &[]));
    }
    raw.send(&batch);
    let values: Vec<String> =
        rows_until_ready(&mut raw, 10).iter().map(|row| String::from_utf8_lossy(row).into_owned()).collect();
    let expected: Vec<String> = (0..10).map(|n| n.to_string()).collect();
    assert_eq!(values, expected);
    assert_eq!(raw.query_one("SELECT 'still here'"), "still here");
    pooler.wait_idle();
}

#[test]
fn a_client_gone_mid_transaction_leaves_nothing_open() {
    table("tx_abandoned", "x int");
    let pooler = transaction_pool(1);
    let mut raw = raw_login(&pooler);
    let backend = raw.query_one("SELECT pg_backend_pid()");
    raw.query_one("BEGIN; INSERT INTO tx_abandoned VALUES (1); SELECT 'open'");
    assert_eq!(direct(&format!("SELECT state FROM pg_stat_activity WHERE pid = {backend}")), "idle in transaction");
    raw.stream.shutdown(std::net::Shutdown::Both).expect("hang up");
    drop(raw);
    pooler.wait_idle();
    let mut next = connect(&pooler);
    assert_eq!(one(&mut next, "SELECT count(*) FROM tx_abandoned"), "0", "the abandoned insert was committed");
    assert_eq!(one(&mut next, "SELECT pg_backend_pid()"), backend, "the connection was rolled back and reused");
    assert_eq!(direct(&format!("SELECT state FROM pg_stat_activity WHERE pid = {backend}")), "idle");
}

#[test]
fn settings_changed_by_one_client_do_not_reach_the_next() {
    let pooler = transaction_pool(1);
    let mut a = connect(&pooler);
    let mut b = connect(&pooler);
    let default_path = one(&mut b, "SHOW search_path");
    let default_timeout = one(&mut b, "SHOW statement_timeout");
    a.batch_execute("BEGIN; SET search_path TO pg_catalog; COMMIT").expect("set in a transaction");
    a.batch_execute("SET statement_timeout = '1234ms'").expect("set outside one");
    a.batch_execute("SELECT pg_catalog.set_config('application_name', 'sneaky', false)").expect("set_config");
    assert_eq!(one(&mut b, "SHOW search_path"), default_path);
    assert_eq!(one(&mut b, "SHOW statement_timeout"), default_timeout);
    assert_ne!(one(&mut b, "SHOW application_name"), "sneaky");
    // SET LOCAL ends with its transaction and needs no reset.
    a.batch_execute("BEGIN; SET LOCAL work_mem = '1MB'; COMMIT").expect("set local");
    assert_eq!(one(&mut b, "SHOW work_mem"), one(&mut a, "SHOW work_mem"));
}

#[test]
fn copy_errors_and_transactions_through_the_pool() {
    table("tx_copy", "a int, b text");
    let pooler = transaction_pool(1);
    let mut a = connect(&pooler);
    let mut b = connect(&pooler);
    {
        use std::io::Write;
        let mut writer = a.copy_in("COPY tx_copy FROM STDIN").expect("copy in");
        for i in 0..1000 {
            writeln!(writer, "{i}\trow {i}").expect("write");
        }
        assert_eq!(writer.finish().expect("finish"), 1000);
    }
    assert_eq!(one(&mut b, "SELECT count(*) FROM tx_copy"), "1000");
    let mut out = String::new();
    b.copy_out("COPY (SELECT a FROM tx_copy ORDER BY a LIMIT 3) TO STDOUT")
        .expect("copy out")
        .read_to_string(&mut out)
        .expect("read");
    assert_eq!(out, "0\n1\n2\n");
    // An error inside a transaction keeps the client's transaction (and
    // its connection) until it rolls back; the other client waits.
    a.batch_execute("BEGIN").expect("begin");
    assert!(a.batch_execute("SELECT 1/0").is_err());
    let e = a.batch_execute("SELECT 1").expect_err("aborted transaction");
    assert_eq!(code_of(&e).as_deref(), Some("25P02"));
    a.batch_execute("ROLLBACK").expect("rollback");
    assert_eq!(one(&mut b, "SELECT 'b runs'"), "b runs");
    // A failed COPY inside a transaction is rolled back with it.
    a.batch_execute("BEGIN").expect("begin");
    let writer = a.copy_in("COPY tx_copy FROM STDIN").expect("copy in");
    drop(writer);
    let _ = a.batch_execute("ROLLBACK");
    assert_eq!(one(&mut b, "SELECT count(*) FROM tx_copy"), "1000");
    pooler.wait_idle();
}

#[test]
fn a_late_reader_gets_its_whole_answer_then_the_next_while_others_use_the_connection() {
    // The end of an answer may reach the client after the connection has
    // gone back to the pool. Answers of several sizes, each read late with
    // the next query sent first, come whole and in order, and another client
    // gets the only connection meanwhile.
    let pooler = transaction_pool(1);
    let mut raw = raw_login(&pooler);
    for kib in [16, 64, 128, 256, 512, 1024, 2048, 4096] {
        let size = kib * 1024;
        send_query(&mut raw, &format!("SELECT repeat('x', {size})"));
        std::thread::scope(|scope| {
            let other = scope.spawn(|| one(&mut connect(&pooler), "SELECT 'other'"));
            // The answer fills the client's socket while it does not read.
            std::thread::sleep(Duration::from_millis(100));
            send_query(&mut raw, &format!("SELECT 'after {kib}'"));
            let rows = rows_until_ready(&mut raw, 2);
            assert_eq!(rows.len(), 2, "{kib} KiB");
            assert_eq!(rows[0].len(), size);
            assert!(rows[0].iter().all(|&b| b == b'x'));
            assert_eq!(rows[1], format!("after {kib}").as_bytes());
            assert_eq!(other.join().expect("the other client"), "other");
        });
    }
    pooler.wait_idle();
}

#[cfg(feature = "failpoints")]
#[test]
fn what_a_client_sends_while_the_end_of_its_answer_waits_is_kept() {
    // `worker-deliver-held` makes the worker act as if the client's socket
    // were full once the connection has gone back: the end of the answer
    // waits until the client sends something, and what it sends then is
    // the next query, which must run after the answer is delivered.
    let markers = daemon_dir();
    let pooler = transaction_pool_with(
        1,
        vec![
            ("PGAGROAL_FAILPOINTS", "worker-deliver-held=once:error".into()),
            ("PGAGROAL_FAILPOINT_DIR", markers.path().display().to_string()),
        ],
    );
    let mut raw = raw_login(&pooler);
    send_query(&mut raw, "SELECT 'first'");
    assert!(
        eventually(Duration::from_secs(20), || markers.path().join("worker-deliver-held").exists()),
        "the answer was never held"
    );
    // The connection is back in the pool while the answer waits.
    assert_eq!(one(&mut connect(&pooler), "SELECT 'other'"), "other");
    send_query(&mut raw, "SELECT 'second'");
    assert_eq!(rows_until_ready(&mut raw, 2), [b"first".to_vec(), b"second".to_vec()]);
    pooler.wait_idle();
}
