//! `pgagroal_databases.conf`: a rule's `max_size` caps its connections
//! exactly, whatever room the pool has; aliases reach the real database
//! and share its connections.

mod common;

use common::*;
use std::time::Duration;

fn pooler(limits: &str, pipeline: &str) -> Pooler {
    Pooler::start(PoolerOptions {
        max_connections: 8,
        blocking_timeout: "1",
        extra: format!("pipeline = {pipeline}\nallow_unknown_users = off\n"),
        users: vec![(TRUST_USER, "a password")],
        limits: limits.into(),
        ..Default::default()
    })
}

fn connect(pooler: &Pooler, database: &str) -> Result<postgres::Client, postgres::Error> {
    let mut config = postgres::Config::new();
    config.host("127.0.0.1").port(pooler.port).user(TRUST_USER).password("a password").dbname(database);
    config.connect_timeout(Duration::from_secs(20));
    config.connect(postgres::NoTls)
}

fn one(client: &mut postgres::Client, sql: &str) -> String {
    first_value(client, sql)
}

#[test]
fn max_size_caps_a_rule_and_aliases_share_it() {
    let pooler = pooler(&format!("{DATABASE}=alias_one,alias_two {TRUST_USER} 2\n"), "session");
    let mut a = connect(&pooler, "alias_one").expect("first");
    let mut b = connect(&pooler, "alias_two").expect("second");
    assert_eq!(one(&mut a, "SELECT current_database()"), DATABASE, "the server sees the real name");
    assert_eq!(one(&mut b, "SELECT current_database()"), DATABASE);
    // The pool has room for 8, the rule for 2: a third waits, then 53300.
    let err = connect(&pooler, DATABASE).err().expect("over the rule's max_size");
    assert_eq!(code_of(&err).as_deref(), Some("53300"), "{}", message_of(&err));
    let status = pooler.status();
    assert_eq!(status["Response"]["TotalConnections"], 2, "{status}");
    // Through either alias or the real name, the rule's connections are reused.
    let pid_a = one(&mut a, "SELECT pg_backend_pid()");
    drop(a);
    assert!(eventually(Duration::from_secs(10), || pooler.status()["Response"]["ActiveConnections"] == 1));
    let mut c = connect(&pooler, DATABASE).expect("after a left");
    assert_eq!(one(&mut c, "SELECT pg_backend_pid()"), pid_a, "the alias's connection serves the real name");
    drop((b, c));
}

#[test]
fn many_clients_never_exceed_a_rule_in_transaction_mode() {
    let pooler = pooler(&format!("{DATABASE} {TRUST_USER} 3\n"), "transaction");
    let port = pooler.port;
    let threads: Vec<_> = (0..24)
        .map(|_| {
            std::thread::spawn(move || {
                let mut config = postgres::Config::new();
                config.host("127.0.0.1").port(port).user(TRUST_USER).password("a password").dbname(DATABASE);
                // Marks this test's server connections (other tests share the cluster).
                config.application_name("limits-tx");
                let mut c = config.connect(postgres::NoTls).expect("connect");
                for _ in 0..20 {
                    c.batch_execute("BEGIN; SELECT pg_sleep(0.001); COMMIT").expect("transaction");
                }
            })
        })
        .collect();
    let mut most = 0;
    while threads.iter().any(|t| !t.is_finished()) {
        let n: u32 = postgres()
            .psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'limits-tx'")
            .parse()
            .expect("count");
        most = most.max(n);
        std::thread::sleep(Duration::from_millis(20));
    }
    for t in threads {
        t.join().expect("client");
    }
    assert!(most <= 3, "{most} server connections for a rule of 3");
    assert!(most >= 1);
}

#[test]
fn initial_size_connections_are_opened_at_start_and_used() {
    let pooler = Pooler::start(PoolerOptions {
        users: vec![(SCRAM_USER, SCRAM_PASSWORD)],
        limits: format!("{DATABASE} {SCRAM_USER} 3 2\n"),
        ..Default::default()
    });
    let backends = || {
        postgres().psql(&format!(
            "SELECT coalesce(string_agg(pid::text, ',' ORDER BY pid), '') FROM pg_stat_activity WHERE usename = '{SCRAM_USER}'"
        ))
    };
    assert!(
        eventually(Duration::from_secs(10), || backends().split(',').filter(|p| !p.is_empty()).count() == 2),
        "prefill did not open 2 connections: {}\n{}",
        backends(),
        pooler.log()
    );
    let prefilled = backends();
    assert_eq!(pooler.status()["Response"]["TotalConnections"], 2);
    let mut config = postgres::Config::new();
    config.host("127.0.0.1").port(pooler.port).user(SCRAM_USER).password(SCRAM_PASSWORD).dbname(DATABASE);
    let mut c = config.connect(postgres::NoTls).expect("connect");
    let pid = one(&mut c, "SELECT pg_backend_pid()");
    assert!(prefilled.split(',').any(|p| p == pid), "{pid} is not one of the prefilled {prefilled}");
}

#[test]
fn min_size_is_restored_after_a_connection_dies() {
    let pooler = Pooler::start(PoolerOptions {
        users: vec![(MD5_USER, MD5_PASSWORD)],
        limits: format!("{DATABASE} {MD5_USER} 3 2 2\n"),
        ..Default::default()
    });
    let backends = || {
        let list = postgres().psql(&format!(
            "SELECT coalesce(string_agg(pid::text, ',' ORDER BY pid), '') FROM pg_stat_activity WHERE usename = '{MD5_USER}'"
        ));
        list.split(',').filter(|p| !p.is_empty()).map(str::to_string).collect::<Vec<_>>()
    };
    assert!(eventually(Duration::from_secs(10), || backends().len() == 2), "prefill: {:?}", backends());
    let mut config = postgres::Config::new();
    config.host("127.0.0.1").port(pooler.port).user(MD5_USER).password(MD5_PASSWORD).dbname(DATABASE);
    let mut c = config.connect(postgres::NoTls).expect("connect");
    let victim = one(&mut c, "SELECT pg_backend_pid()");
    postgres().psql(&format!("SELECT pg_terminate_backend({victim})"));
    assert!(c.simple_query("SELECT 1").is_err(), "the client's connection was terminated");
    drop(c);
    // The dead connection's slot is freed; the entry is below min_size and
    // a new connection is opened without any client asking.
    assert!(
        eventually(Duration::from_secs(20), || {
            let now = backends();
            now.len() == 2 && !now.contains(&victim)
        }),
        "min_size not restored: {:?}\n{}",
        backends(),
        pooler.log()
    );
}

#[test]
fn disabled_databases_refuse_new_clients_with_53300() {
    let pooler = Pooler::start(PoolerOptions::default());
    let mut kept = pooler.connect(TRUST_USER);
    let disable = pooler.cli(&["disable", DATABASE, "-F", "json"]);
    assert!(disable.status.success(), "{}", String::from_utf8_lossy(&disable.stderr));
    let reply: serde_json::Value = serde_json::from_slice(&disable.stdout).expect("json");
    assert_eq!(reply["Response"]["Databases"][0]["Database"], DATABASE, "{reply}");
    assert_eq!(reply["Response"]["Databases"][0]["Enabled"], false, "{reply}");
    let err = connect_err(&pooler.url(TRUST_USER, None));
    assert_eq!(code_of(&err).as_deref(), Some("53300"), "{}", message_of(&err));
    assert!(message_of(&err).contains("connection refused"), "{}", message_of(&err));
    // A client already in is not touched; another database is served.
    assert_eq!(one(&mut kept, "SELECT 1"), "1");
    let mut config = postgres::Config::new();
    config.host("127.0.0.1").port(pooler.port).user(TRUST_USER).dbname("postgres");
    config.connect(postgres::NoTls).expect("another database is still served");
    assert!(pooler.cli(&["enable", DATABASE]).status.success());
    pooler.connect(TRUST_USER);
    // `disable` alone (or `all`) refuses every database; `enable` ends it.
    assert!(pooler.cli(&["disable"]).status.success());
    let err = config.connect(postgres::NoTls).err().expect("every database refused");
    assert_eq!(code_of(&err).as_deref(), Some("53300"));
    assert!(pooler.cli(&["enable", "all"]).status.success());
    config.connect(postgres::NoTls).expect("served again");
}
