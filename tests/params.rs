//! What every pipeline owes a client whatever server connection it lands
//! on: its startup settings reach PostgreSQL (application_name, TimeZone,
//! `options`), its greeting reports them, and its BackendKeyData is its own
//! minted key, which cancels its own query and nothing else. In the
//! transaction pipeline, settings the server reports that a client sets
//! (DateStyle, TimeZone, application_name, ...) follow it.

mod common;

use common::*;
use std::time::{Duration, Instant};

const PIPELINES: [&str; 3] = ["performance", "session", "transaction"];

/// A pool of one server connection, so that every client shares it.
fn pool_of_one(pipeline: &str) -> Pooler {
    Pooler::start(PoolerOptions {
        max_connections: 1,
        extra: format!("pipeline = {pipeline}\nallow_unknown_users = off\n"),
        users: vec![(TRUST_USER, "trust user password")],
        ..Default::default()
    })
}

fn client(pooler: &Pooler, app: &str, options: Option<&str>) -> postgres::Client {
    let mut config = postgres::Config::new();
    config.host("127.0.0.1").port(pooler.port).user(TRUST_USER).dbname(DATABASE).application_name(app);
    if let Some(options) = options {
        config.options(options);
    }
    config.connect_timeout(Duration::from_secs(10));
    config.connect(postgres::NoTls).expect("connect through the pooler")
}

fn one(client: &mut postgres::Client, sql: &str) -> String {
    first_value(client, sql)
}

/// The server's own default for a setting, asked directly.
fn server_default(setting: &str) -> String {
    postgres().psql(&format!("SHOW {setting}"))
}

fn check_a(a: &mut postgres::Client, what: &str) {
    assert_eq!(one(a, "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"), "app-a", "{what}");
    assert_eq!(one(a, "SHOW TimeZone"), "Asia/Tokyo", "{what}");
    assert_eq!(one(a, "SHOW search_path"), "pg_catalog,public", "{what}");
}

fn check_b(b: &mut postgres::Client, what: &str) {
    assert_eq!(one(b, "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"), "app-b", "{what}");
    assert_eq!(one(b, "SHOW TimeZone"), server_default("TimeZone"), "{what}");
    assert_eq!(one(b, "SHOW search_path"), server_default("search_path"), "{what}");
}

const A_OPTIONS: &str = "-c TimeZone=Asia/Tokyo -c search_path=pg_catalog,public";

#[test]
fn startup_settings_reach_postgres_on_a_shared_connection() {
    // Session: one client after the other on the one connection.
    let pooler = pool_of_one("session");
    for round in 0..2 {
        check_a(&mut client(&pooler, "app-a", Some(A_OPTIONS)), &format!("session, round {round}"));
        check_b(&mut client(&pooler, "app-b", None), &format!("session, round {round}"));
    }
    // Transaction: both clients at once, taking turns on the connection.
    let pooler = pool_of_one("transaction");
    let mut a = client(&pooler, "app-a", Some(A_OPTIONS));
    let mut b = client(&pooler, "app-b", None);
    for round in 0..3 {
        check_a(&mut a, &format!("transaction, round {round}"));
        check_b(&mut b, &format!("transaction, round {round}"));
    }
}

#[test]
fn the_greeting_reports_the_clients_settings_and_a_minted_key() {
    for pipeline in PIPELINES {
        let pooler = pool_of_one(pipeline);
        // A first client leaves a pooled connection made with other settings.
        drop(client(&pooler, "first", Some("-c TimeZone=UTC")));
        let mut raw = wire::Raw { stream: std::net::TcpStream::connect(("127.0.0.1", pooler.port)).expect("connect") };
        raw.stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        raw.send(&pgagroal::protocol::encode::startup_message(&[
            ("user", TRUST_USER),
            ("database", DATABASE),
            ("application_name", "raw-client"),
            ("TimeZone", "Europe/Paris"),
        ]));
        let (mut statuses, mut key) = (Vec::new(), None);
        loop {
            match raw.read() {
                Some((b'S', body)) => {
                    let text = String::from_utf8_lossy(&body).into_owned();
                    let mut parts = text.split('\0');
                    statuses.push((parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string()));
                }
                Some((b'K', body)) => key = Some(i32::from_be_bytes([body[0], body[1], body[2], body[3]])),
                Some((b'Z', _)) => break,
                Some((b'E', body)) => panic!("{pipeline}: refused: {:?}", wire::field(&body, b'M')),
                Some(_) => {}
                None => panic!("{pipeline}: closed during start-up"),
            }
        }
        let status = |name: &str| statuses.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        assert_eq!(status("application_name").as_deref(), Some("raw-client"), "{pipeline}: {statuses:?}");
        assert_eq!(status("TimeZone").as_deref(), Some("Europe/Paris"), "{pipeline}: {statuses:?}");
        let backend: i32 = raw.query_one("SELECT pg_backend_pid()").parse().expect("pid");
        let minted = key.expect("BackendKeyData");
        assert_ne!(minted, backend, "{pipeline}: the client was given the real backend's key");
    }
}

#[test]
fn bad_options_are_refused_with_postgres_codes() {
    let pooler = pool_of_one("session");
    let mut config = postgres::Config::new();
    config.host("127.0.0.1").port(pooler.port).user(TRUST_USER).dbname(DATABASE).options("-B 100");
    let err = config.connect(postgres::NoTls).err().expect("refused");
    assert_eq!(code_of(&err).as_deref(), Some("42601"), "{}", message_of(&err));
    let mut config = postgres::Config::new();
    config.host("127.0.0.1").port(pooler.port).user(TRUST_USER).dbname(DATABASE).options("-c TimeZone=No/Such");
    let err = config.connect(postgres::NoTls).err().expect("refused");
    assert_eq!(code_of(&err).as_deref(), Some("22023"), "{}", message_of(&err));
    // The refusal left the pool usable.
    assert_eq!(one(&mut client(&pooler, "after", None), "SELECT 1"), "1");
}

/// Run `sql` on a thread; returns its outcome (the SQLSTATE on failure) and
/// how long it took.
fn run_in_thread(
    mut client: postgres::Client,
    sql: &'static str,
) -> std::thread::JoinHandle<(Result<(), String>, Duration, postgres::Client)> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let result = client.simple_query(sql).map(|_| ()).map_err(|e| code_of(&e).unwrap_or_else(|| e.to_string()));
        (result, start.elapsed(), client)
    })
}

fn wait_active(sql_prefix: &str) {
    let query = format!("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '{sql_prefix}%'");
    assert!(eventually(Duration::from_secs(10), || postgres().psql(&query) == "1"), "the query never ran");
}

#[test]
fn cancel_reaches_the_clients_own_query() {
    for pipeline in PIPELINES {
        let pooler = pool_of_one(pipeline);
        let c = client(&pooler, "sleeper", None);
        let token = c.cancel_token();
        let sleeper = run_in_thread(c, "SELECT pg_sleep(30)");
        wait_active("SELECT pg_sleep(30)");
        token.cancel_query(postgres::NoTls).expect("send cancel");
        let (result, took, mut c) = sleeper.join().expect("thread");
        assert_eq!(result, Err("57014".to_string()), "{pipeline}");
        assert!(took < Duration::from_secs(20), "{pipeline}: cancel took {took:?}");
        assert_eq!(one(&mut c, "SELECT 1"), "1", "{pipeline}: the session carries on after the cancel");
    }
}

#[test]
fn a_stale_key_cancels_nobody_else() {
    for pipeline in PIPELINES {
        let pooler = pool_of_one(pipeline);
        let mut early = client(&pooler, "early", None);
        let stale = early.cancel_token();
        assert_eq!(one(&mut early, "SELECT 1"), "1");
        if pipeline != "transaction" {
            // The former client's slot moves on to the next client.
            drop(early);
            let other = client(&pooler, "other", None);
            let sleeper = run_in_thread(other, "SELECT pg_sleep(2)");
            wait_active("SELECT pg_sleep(2)");
            stale.cancel_query(postgres::NoTls).expect("send cancel");
            let (result, _, _) = sleeper.join().expect("thread");
            assert_eq!(result, Ok(()), "{pipeline}: a former client's key cancelled the next client's query");
        } else {
            // `early` is between transactions; its key must not reach the
            // query another client now runs on the same server connection.
            let other = client(&pooler, "other", None);
            let sleeper = run_in_thread(other, "SELECT pg_sleep(2)");
            wait_active("SELECT pg_sleep(2)");
            stale.cancel_query(postgres::NoTls).expect("send cancel");
            let (result, _, _) = sleeper.join().expect("thread");
            assert_eq!(result, Ok(()), "{pipeline}: an idle client's key cancelled another client's query");
            assert_eq!(one(&mut early, "SELECT 2"), "2");
        }
    }
}

#[test]
fn cancel_over_the_unix_socket() {
    let pooler = pool_of_one("session");
    let mut config = postgres::Config::new();
    config.host_path(pooler.dir.path()).port(pooler.port).user(TRUST_USER).dbname(DATABASE);
    let c = config.connect(postgres::NoTls).expect("connect over the Unix socket");
    let token = c.cancel_token();
    let sleeper = run_in_thread(c, "SELECT pg_sleep(31)");
    wait_active("SELECT pg_sleep(31)");
    token.cancel_query(postgres::NoTls).expect("send cancel over the Unix socket");
    let (result, _, _) = sleeper.join().expect("thread");
    assert_eq!(result, Err("57014".to_string()));
}

#[test]
fn reported_settings_a_client_sets_follow_it_to_its_next_transactions() {
    let pooler = pool_of_one("transaction");
    let mut a = client(&pooler, "app-a", None);
    let mut b = client(&pooler, "app-b", None);
    let default_style = one(&mut b, "SHOW DateStyle");
    a.batch_execute("SET DateStyle = 'German'").expect("set DateStyle");
    a.batch_execute("SET application_name = 'renamed'").expect("set application_name");
    a.batch_execute("BEGIN; SET TimeZone = 'Asia/Tokyo'; ROLLBACK").expect("set and roll back");
    // b runs in between, on the same server connection, with its own.
    assert_eq!(one(&mut b, "SHOW DateStyle"), default_style);
    assert_eq!(one(&mut b, "SHOW application_name"), "app-b");
    for round in 0..2 {
        assert_eq!(one(&mut a, "SHOW DateStyle"), "German, DMY", "round {round}");
        assert_eq!(one(&mut a, "SELECT '2020-01-02'::date::text"), "02.01.2020", "round {round}");
        assert_eq!(one(&mut a, "SHOW application_name"), "renamed", "round {round}");
        assert_eq!(one(&mut a, "SHOW TimeZone"), server_default("TimeZone"), "rolled back, round {round}");
        assert_eq!(one(&mut b, "SHOW DateStyle"), default_style, "round {round}");
    }
}
