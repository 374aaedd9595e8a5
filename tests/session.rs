//! Session pooling through the real daemon in front of a real PostgreSQL.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn select_over_tcp_and_unix_socket() {
    let pooler = Pooler::start(PoolerOptions::default());
    let mut tcp = pooler.connect(TRUST_USER);
    let row = tcp.query_one("SELECT 40 + 2", &[]).expect("select over tcp");
    assert_eq!(row.get::<_, i32>(0), 42);

    let url = format!("host={} port={} user={TRUST_USER} dbname={DATABASE}", pooler.dir.path().display(), pooler.port);
    let mut unix = postgres::Client::connect(&url, postgres::NoTls).expect("connect over unix socket");
    let row = unix.query_one("SELECT current_user::text, current_database()::text", &[]).expect("select over unix");
    assert_eq!(row.get::<_, String>(0), TRUST_USER);
    assert_eq!(row.get::<_, String>(1), DATABASE);
}

#[test]
fn sequential_clients_share_one_backend() {
    let pooler = Pooler::start(PoolerOptions::default());
    let first: i32 = pooler.connect(TRUST_USER).query_one("SELECT pg_backend_pid()", &[]).expect("pid").get(0);
    pooler.wait_idle();
    let second: i32 = pooler.connect(TRUST_USER).query_one("SELECT pg_backend_pid()", &[]).expect("pid").get(0);
    assert_eq!(first, second, "the second client should get the pooled backend");
}

#[test]
fn session_state_is_reset_between_clients() {
    let pooler = Pooler::start(PoolerOptions { max_connections: 1, ..Default::default() });
    let mut a = pooler.connect(TRUST_USER);
    a.batch_execute("SET application_name = 'dirty'; CREATE TEMP TABLE leftover (x int); BEGIN; SELECT 1;")
        .expect("dirty the session");
    drop(a);
    let mut b = pooler.connect(TRUST_USER);
    let name: String = b.query_one("SHOW application_name", &[]).expect("show").get(0);
    assert_ne!(name, "dirty", "settings leak between clients");
    let temp: i64 = b.query_one("SELECT count(*) FROM pg_class WHERE relname = 'leftover'", &[]).expect("count").get(0);
    assert_eq!(temp, 0, "temporary tables leak between clients");
    let status: String = b.query_one("SELECT 'outside a transaction'", &[]).expect("select").get(0);
    assert_eq!(status, "outside a transaction");
}

#[test]
fn concurrent_clients_each_run_their_queries() {
    let pooler = Pooler::start(PoolerOptions { max_connections: 10, ..Default::default() });
    let threads: Vec<_> = (0..20)
        .map(|t| {
            let url = pooler.url(TRUST_USER, None);
            std::thread::spawn(move || {
                let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
                for q in 0..50i32 {
                    let row = client.query_one("SELECT $1::int * 1000 + $2::int", &[&t, &q]).expect("query");
                    assert_eq!(row.get::<_, i32>(0), t * 1000 + q);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    assert!(pooler.status()["Response"]["TotalConnections"].as_u64().expect("total") <= 10);
    pooler.wait_idle();
}

#[test]
fn errors_reach_the_client_and_the_session_goes_on() {
    let pooler = Pooler::start(PoolerOptions::default());
    let mut client = pooler.connect(TRUST_USER);
    let err = client.query_one("SELECT 1 / 0", &[]).expect_err("division by zero");
    assert_eq!(code_of(&err).as_deref(), Some("22012"));
    let row = client.query_one("SELECT 7", &[]).expect("session continues");
    assert_eq!(row.get::<_, i32>(0), 7);
    client.batch_execute("BEGIN; SELECT 1/0;").expect_err("error in transaction");
    client.batch_execute("ROLLBACK").expect("rollback");
    assert_eq!(client.query_one("SELECT 8", &[]).expect("after rollback").get::<_, i32>(0), 8);
}

#[test]
fn full_pool_answers_53300() {
    let pooler = Pooler::start(PoolerOptions { max_connections: 1, blocking_timeout: "1", ..Default::default() });
    let mut holder = pooler.connect(TRUST_USER);
    holder.query_one("SELECT 1", &[]).expect("holder works");
    let err = connect_err(&pooler.url(TRUST_USER, None));
    assert_eq!(code_of(&err).as_deref(), Some("53300"), "{err}");
    drop(holder);
    let mut next = pooler.connect(TRUST_USER);
    next.query_one("SELECT 1", &[]).expect("slot is free again");
}

#[test]
fn waiting_client_gets_the_slot_when_it_frees_up() {
    let pooler = Pooler::start(PoolerOptions { max_connections: 1, blocking_timeout: "10", ..Default::default() });
    let holder = pooler.connect(TRUST_USER);
    let url = pooler.url(TRUST_USER, None);
    let waiter = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("waits, then connects");
        c.query_one("SELECT 1", &[]).expect("query").get::<_, i32>(0)
    });
    std::thread::sleep(Duration::from_millis(300));
    drop(holder);
    assert_eq!(waiter.join().expect("waiter"), 1);
}

#[test]
fn a_full_pool_of_another_user_makes_room() {
    let pooler = Pooler::start(PoolerOptions { max_connections: 1, blocking_timeout: "5", ..Default::default() });
    let pid_a: i32 = pooler.connect(TRUST_USER).query_one("SELECT pg_backend_pid()", &[]).expect("a").get(0);
    pooler.wait_idle();
    let url = format!("host=127.0.0.1 port={} user=postgres dbname=postgres", pooler.port);
    let mut other = postgres::Client::connect(&url, postgres::NoTls).expect("idle slot of another user is reused");
    let pid_b: i32 = other.query_one("SELECT pg_backend_pid()", &[]).expect("b").get(0);
    assert_ne!(pid_a, pid_b);
    let pg = postgres();
    assert!(eventually(Duration::from_secs(5), || {
        pg.psql(&format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid_a}")) == "0"
    }));
}

#[test]
fn hba_decides_who_gets_in() {
    let hba = format!("host all {MD5_USER} all reject\nhost {DATABASE} all 127.0.0.1/32 trust\n");
    let pooler = Pooler::start(PoolerOptions { hba, ..Default::default() });
    pooler.connect(TRUST_USER).query_one("SELECT 1", &[]).expect("allowed");
    let rejected = connect_err(&pooler.url(MD5_USER, Some(MD5_PASSWORD)));
    assert_eq!(code_of(&rejected).as_deref(), Some("28000"), "{rejected}");
    let url = format!("host=127.0.0.1 port={} user={TRUST_USER} dbname=postgres", pooler.port);
    let no_entry = connect_err(&url);
    assert_eq!(code_of(&no_entry).as_deref(), Some("28000"));
    let message = no_entry.as_db_error().map(|e| e.message().to_string()).unwrap_or_default();
    assert!(message.contains("no pgagroal_hba.conf entry"), "{message}");
}

#[test]
fn server_authentication_is_passed_through() {
    let pooler = Pooler::start(PoolerOptions::default());
    for (user, password) in [(MD5_USER, MD5_PASSWORD), (SCRAM_USER, SCRAM_PASSWORD)] {
        let mut ok = postgres::Client::connect(&pooler.url(user, Some(password)), postgres::NoTls)
            .unwrap_or_else(|e| panic!("{user} with the right password: {e}\n{}", pooler.log()));
        let who: String = ok.query_one("SELECT current_user::text", &[]).expect("whoami").get(0);
        assert_eq!(who, user);
        drop(ok);
        let bad = connect_err(&pooler.url(user, Some("wrong")));
        assert_eq!(code_of(&bad).as_deref(), Some("28P01"), "{user}: {bad}");
        // A password-authenticated connection is never handed to a client
        // that did not authenticate.
        let no_password = postgres::Client::connect(&pooler.url(user, None), postgres::NoTls);
        assert!(no_password.is_err(), "{user} got in without a password");
    }
}

#[test]
fn psql_and_pgbench_work_through_the_pooler() {
    let pooler = Pooler::start(PoolerOptions { max_connections: 4, ..Default::default() });
    let pg = postgres();
    let port = pooler.port.to_string();
    let out = std::process::Command::new(pg.bin("psql"))
        .args(["-h", "127.0.0.1", "-p", &port, "-U", TRUST_USER, "-d", DATABASE, "-X", "-A", "-t"])
        .args(["-c", "SELECT 'hello'", "-c", "SELECT 1/0", "-c", "SELECT 'after'"])
        .output()
        .expect("psql");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("hello") && stdout.contains("after"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("division by zero"));

    let bench = |args: &[&str]| pgbench(pooler.port, TRUST_USER, None, args);
    let init = bench(&["-i", "-s", "1", "-q"]);
    assert!(init.status.success(), "pgbench -i: {}", String::from_utf8_lossy(&init.stderr));
    let run = bench(&["-S", "-c", "4", "-t", "200"]);
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "pgbench: {text}{}", String::from_utf8_lossy(&run.stderr));
    assert!(text.contains("number of failed transactions: 0"), "{text}");
}

#[test]
fn a_failing_reset_retires_the_connection() {
    let pooler = Pooler::start(PoolerOptions {
        max_connections: 1,
        extra: "server_reset_query = 'SELECT 1/0'".into(),
        ..Default::default()
    });
    let first: i32 = pooler.connect(TRUST_USER).query_one("SELECT pg_backend_pid()", &[]).expect("pid").get(0);
    pooler.wait_idle();
    // The reset's error is found by the next user of the slot, which closes
    // that connection and makes a new one: the client never sees it.
    let mut second = pooler.connect(TRUST_USER);
    let pid: i32 = second.query_one("SELECT pg_backend_pid()", &[]).expect("second client works").get(0);
    assert_ne!(pid, first, "a connection whose reset failed was handed out again");
    let pg = postgres();
    assert!(eventually(Duration::from_secs(5), || {
        pg.psql(&format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {first}")) == "0"
    }));
}

#[test]
fn a_custom_reset_query_keeps_the_connection() {
    let pooler =
        Pooler::start(PoolerOptions { extra: "server_reset_query = 'RESET ALL'".into(), ..Default::default() });
    let mut a = pooler.connect(TRUST_USER);
    a.batch_execute("SET work_mem = '7MB'").expect("set");
    let first: i32 = a.query_one("SELECT pg_backend_pid()", &[]).expect("pid").get(0);
    drop(a);
    pooler.wait_idle();
    let mut b = pooler.connect(TRUST_USER);
    let second: i32 = b.query_one("SELECT pg_backend_pid()", &[]).expect("pid").get(0);
    assert_eq!(first, second);
    let work_mem: String = b.query_one("SHOW work_mem", &[]).expect("show").get(0);
    assert_ne!(work_mem, "7MB", "RESET ALL ran before the next client");
}
