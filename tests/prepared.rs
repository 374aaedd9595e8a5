//! Named prepared statements under the transaction pipeline, through the
//! real daemon: pgbench `-M prepared` with more clients than connections,
//! statements that follow their client from connection to connection, the
//! least recently used ones closed at `max_prepared_statements`, a server
//! connection killed under clients that hold statements, two clients using
//! one name for different texts, and the errors PostgreSQL gives for a
//! duplicate or an unknown name, or a Parse in a failed transaction.

mod common;

use common::http::{scrape, value};
use common::wire::{Raw, field};
use common::*;
use std::time::Duration;

const PASSWORD: &str = "trust user password";

/// A transaction pool; each test has its own `database`, so that its
/// server connections can be told apart from other tests'.
fn transaction_pool(database: &str, max_connections: usize, extra: &str) -> Pooler {
    postgres().database(database);
    Pooler::start(PoolerOptions {
        max_connections,
        extra: format!("pipeline = transaction\nallow_unknown_users = off\n{extra}"),
        users: vec![(TRUST_USER, PASSWORD)],
        ..Default::default()
    })
}

fn connect(pooler: &Pooler, database: &str) -> postgres::Client {
    let mut config = postgres::Config::new();
    config.host("127.0.0.1").port(pooler.port).user(TRUST_USER).dbname(database);
    config.connect_timeout(Duration::from_secs(30));
    config.connect(postgres::NoTls).unwrap_or_else(|e| panic!("connect: {e}\n{}", pooler.log()))
}

/// The pooler's server connections to `database`, as PostgreSQL lists them.
fn server_connections(database: &str) -> Vec<i32> {
    let out = postgres().psql(&format!(
        "SELECT pid FROM pg_stat_activity WHERE datname = '{database}' AND backend_type = 'client backend'"
    ));
    out.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// The names prepared on the connection a transaction of `c` holds, and
/// that connection's backend.
fn prepared_on_held(c: &mut postgres::Client) -> (i32, Vec<String>) {
    let mut tx = c.transaction().expect("begin");
    let rows = tx
        .simple_query("SELECT pg_backend_pid()::text UNION ALL SELECT name FROM pg_prepared_statements")
        .expect("list");
    tx.commit().expect("commit");
    let mut values: Vec<String> = rows
        .iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    let pid = values.remove(0).parse().expect("a pid");
    (pid, values)
}

/// A raw client logged in as the trust user.
fn raw(pooler: &Pooler, database: &str) -> Raw {
    let mut raw = Raw::start(pooler.port, TRUST_USER, database);
    raw.until_ready().expect("logged in");
    raw
}

fn parse(name: &str, text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    pgagroal::prepared::messages::append_parse(&mut out, name.as_bytes(), &[text.as_bytes(), b"\0\0\0"].concat());
    out
}

/// Bind `name` (no parameters), Execute, Sync.
fn run(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    pgagroal::prepared::messages::append_bind(&mut out, b"", name.as_bytes(), &[0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&[b'E', 0, 0, 0, 9, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&SYNC);
    out
}

const SYNC: [u8; 5] = [b'S', 0, 0, 0, 4];

/// Read to ReadyForQuery: the first value of a DataRow, or the first
/// error's SQLSTATE and message.
fn answer(raw: &mut Raw) -> Result<Option<String>, (String, String)> {
    let mut value = None;
    let mut error = None;
    loop {
        match raw.read() {
            Some((b'D', body)) if body.len() >= 6 => {
                let len = i32::from_be_bytes([body[2], body[3], body[4], body[5]]).max(0) as usize;
                value.get_or_insert(String::from_utf8_lossy(&body[6..6 + len]).into_owned());
            }
            Some((b'E', body)) => {
                error.get_or_insert((field(&body, b'C').unwrap_or_default(), field(&body, b'M').unwrap_or_default()));
            }
            Some((b'Z', _)) => return error.map_or(Ok(value), Err),
            Some(_) => {}
            None => panic!("the pooler closed the connection"),
        }
    }
}

#[test]
fn pgbench_prepared_with_32_clients_over_8_connections_fails_nothing() {
    const DB: &str = "prepared_pgbench";
    let pooler = transaction_pool(DB, 8, "");
    let pgbench = |port: u16, args: &[&str]| {
        std::process::Command::new(postgres().bin("pgbench"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", TRUST_USER, "-d", DB])
            .args(args)
            .env("PGPASSWORD", PASSWORD)
            .output()
            .expect("pgbench")
    };
    let init = pgbench(postgres().port, &["-i", "-q", "-s", "1"]);
    assert!(init.status.success(), "pgbench -i: {}", String::from_utf8_lossy(&init.stderr));
    // A thread per client: pgbench prepares a statement synchronously,
    // which would stall every client of a thread while one waits for a
    // connection that another, mid-transaction, holds.
    let run = pgbench(pooler.port, &["-M", "prepared", "-c", "32", "-j", "32", "-t", "40"]);
    let out = String::from_utf8_lossy(&run.stdout);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "pgbench failed: {out}\n{err}\n{}", pooler.log());
    assert!(out.contains("number of transactions actually processed: 1280/1280"), "{out}\n{err}");
    assert!(out.contains("number of failed transactions: 0"), "{out}");
    let backends = server_connections(DB);
    assert!(!backends.is_empty() && backends.len() <= 8, "server connections: {backends:?}");
}

#[test]
fn statements_follow_their_client_and_are_shared_by_equal_texts() {
    const DB: &str = "prepared_follow";
    let pooler = transaction_pool(DB, 2, "");
    let mut a = connect(&pooler, DB);
    let mut b = connect(&pooler, DB);
    let double = a.prepare("SELECT $1::int * 2").expect("prepare");
    let same = b.prepare("SELECT $1::int * 2").expect("the same text, another client");
    for i in 0..30 {
        assert_eq!(a.query_one(&double, &[&i]).expect("run").get::<_, i32>(0), i * 2);
        // b holds one connection: a's statement runs on the other.
        let mut tx = b.transaction().expect("begin");
        assert_eq!(tx.query_one(&same, &[&i]).expect("run").get::<_, i32>(0), i * 2);
        assert_eq!(a.query_one(&double, &[&(i + 1)]).expect("run beside it").get::<_, i32>(0), (i + 1) * 2);
        tx.commit().expect("commit");
    }
    assert_eq!(server_connections(DB).len(), 2, "both connections were used");
    for c in [&mut a, &mut b] {
        let (pid, names) = prepared_on_held(c);
        assert_eq!(names.len(), 1, "one shared statement on backend {pid}: {names:?}");
        assert!(names[0].starts_with("pgagroal_"), "{names:?}");
    }
}

#[test]
fn the_least_recently_used_statements_are_closed_at_the_limit() {
    const DB: &str = "prepared_lru";
    let metrics = free_port();
    let pooler = transaction_pool(DB, 1, &format!("max_prepared_statements = 2\nmetrics = {metrics}\n"));
    let mut c = connect(&pooler, DB);
    let statements: Vec<_> = (1..=4).map(|k| c.prepare(&format!("SELECT $1::int + {k}")).expect("prepare")).collect();
    for round in 0..5 {
        for (k, statement) in statements.iter().enumerate() {
            let got: i32 = c.query_one(statement, &[&round]).expect("run an evicted statement again").get(0);
            assert_eq!(got, round + k as i32 + 1);
            let (_, names) = prepared_on_held(&mut c);
            assert!(names.len() <= 2, "more than max_prepared_statements: {names:?}");
        }
    }
    let body = scrape(metrics);
    let count = |event: &str| value(&body, &format!("pgagroal_prepared_statements_total{{event=\"{event}\"}}"));
    assert_eq!((count("client_parse"), count("bind")), (4.0, 20.0), "{body}");
    assert!(count("eviction") > 0.0, "{body}");
    assert_eq!(count("server_parse") - count("eviction"), 2.0, "two statements stay on the connection: {body}");
}

#[test]
fn a_killed_server_connection_is_replaced_under_prepared_statements() {
    const DB: &str = "prepared_killed";
    let pooler = transaction_pool(DB, 2, "");
    let mut clients: Vec<postgres::Client> = (0..3).map(|_| connect(&pooler, DB)).collect();
    let statements: Vec<_> = clients.iter_mut().map(|c| c.prepare("SELECT $1::int - 1").expect("prepare")).collect();
    for (c, s) in clients.iter_mut().zip(&statements) {
        assert_eq!(c.query_one(s, &[&10]).expect("run").get::<_, i32>(0), 9);
    }
    let killed = server_connections(DB);
    assert!(!killed.is_empty());
    for pid in &killed {
        postgres().psql(&format!("SELECT pg_terminate_backend({pid})"));
    }
    pooler.wait_for(|| server_connections(DB).iter().all(|p| !killed.contains(p)), "the backends are gone");
    for round in 0..3 {
        for (c, s) in clients.iter_mut().zip(&statements) {
            let got = c.query_one(s, &[&round]).unwrap_or_else(|e| panic!("after the kill: {e}\n{}", pooler.log()));
            assert_eq!(got.get::<_, i32>(0), round - 1);
        }
    }
    assert!(server_connections(DB).iter().all(|p| !killed.contains(p)));
}

#[test]
fn one_name_for_two_texts_in_two_clients() {
    const DB: &str = "prepared_names";
    let pooler = transaction_pool(DB, 1, "");
    let mut one = raw(&pooler, DB);
    let mut two = raw(&pooler, DB);
    one.send(&[parse("S_1", "SELECT 'one'"), SYNC.to_vec()].concat());
    assert_eq!(answer(&mut one), Ok(None));
    two.send(&[parse("S_1", "SELECT 'two'"), SYNC.to_vec()].concat());
    assert_eq!(answer(&mut two), Ok(None));
    for _ in 0..3 {
        one.send(&run("S_1"));
        assert_eq!(answer(&mut one), Ok(Some("one".into())));
        two.send(&run("S_1"));
        assert_eq!(answer(&mut two), Ok(Some("two".into())));
    }
}

#[test]
fn duplicate_and_unknown_names_get_postgresqls_errors() {
    const DB: &str = "prepared_errors";
    let pooler = transaction_pool(DB, 2, "");
    let mut c = raw(&pooler, DB);
    c.send(&[parse("S_1", "SELECT 1"), SYNC.to_vec()].concat());
    assert_eq!(answer(&mut c), Ok(None));
    c.send(&[parse("S_1", "SELECT 2"), run("S_1")].concat());
    let dup = ("42P05".to_string(), "prepared statement \"S_1\" already exists".to_string());
    assert_eq!(answer(&mut c), Err(dup));
    for name in ["nope", "pgagroal_00000000000000000000000000000001"] {
        c.send(&run(name));
        let missing = ("26000".to_string(), format!("prepared statement \"{name}\" does not exist"));
        assert_eq!(answer(&mut c), Err(missing));
    }
    c.send(&run("S_1"));
    assert_eq!(answer(&mut c), Ok(Some("1".into())), "the first text is still S_1");
    let mut deallocate = Vec::new();
    pgagroal::protocol::encode::append_query(&mut deallocate, "DEALLOCATE \"S_1\"");
    c.send(&deallocate);
    assert_eq!(answer(&mut c), Ok(None));
    c.send(&run("S_1"));
    let gone = ("26000".to_string(), "prepared statement \"S_1\" does not exist".to_string());
    assert_eq!(answer(&mut c), Err(gone));
}

#[test]
fn a_parse_in_a_failed_transaction_is_refused_even_when_the_connection_has_the_statement() {
    const DB: &str = "prepared_aborted";
    let pooler = transaction_pool(DB, 1, "");
    let mut c = raw(&pooler, DB);
    let query = |sql: &str| {
        let mut q = Vec::new();
        pgagroal::protocol::encode::append_query(&mut q, sql);
        q
    };
    c.send(&[parse("a", "SELECT 1 AS one"), SYNC.to_vec()].concat());
    assert_eq!(answer(&mut c), Ok(None));
    c.send(&query("BEGIN"));
    assert_eq!(answer(&mut c), Ok(None));
    c.send(&query("SELECT 1/0"));
    assert_eq!(answer(&mut c).map_err(|(code, _)| code), Err("22012".to_string()));
    // The connection has the statement; PostgreSQL still refuses the Parse.
    c.send(&[parse("b", "SELECT 1 AS one"), SYNC.to_vec()].concat());
    assert_eq!(answer(&mut c).map_err(|(code, _)| code), Err("25P02".to_string()));
    c.send(&query("ROLLBACK"));
    assert_eq!(answer(&mut c), Ok(None));
    c.send(&run("b"));
    assert_eq!(answer(&mut c).map_err(|(code, _)| code), Err("26000".to_string()), "b was never defined");
    c.send(&run("a"));
    assert_eq!(answer(&mut c), Ok(Some("1".into())));
}
