//! `pgagroal_client_disconnects_total{reason}` and the worker restarts
//! through the real daemon: each way a client can leave is played once (or
//! a known number of times), and afterwards every reason has moved by
//! exactly what was played and no other reason has moved at all.

mod common;

use common::http::*;
use common::wire::Raw;
use common::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

/// Every reason's count in an exposition.
fn disconnects(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter_map(|l| l.strip_prefix("pgagroal_client_disconnects_total{reason=\""))
        .filter_map(|rest| rest.split_once("\"} "))
        .map(|(reason, v)| (reason.to_string(), v.parse().expect("a count")))
        .collect()
}

#[test]
fn each_way_out_is_counted_under_its_reason_and_no_other() {
    let db = "metrics_disconnects";
    postgres().database(db);
    let hba = format!("host all {SCRAM_USER} all reject\nhost all {TRUST_USER} all trust\nhost all all all md5\n");
    let (pooler, port) = metrics_pooler(
        "",
        PoolerOptions {
            max_connections: 1,
            blocking_timeout: "1s",
            hba,
            users: vec![(MD5_USER, MD5_PASSWORD)],
            ..Default::default()
        },
    );
    let before = disconnects(&scrape(port));
    assert!(before.len() >= 20, "every reason is served from the start: {before:?}");
    let mut expected: BTreeMap<&str, f64> = BTreeMap::new();
    let mut played = |reason: &'static str| *expected.entry(reason).or_default() += 1.0;

    // Two whole sessions, ended by Terminate.
    for _ in 0..2 {
        let mut c = pooler.connect_to(db);
        assert_eq!(first_value(&mut c, "SELECT 1"), "1");
        played("client_terminate");
    }
    // A session whose client just closes its socket.
    let mut raw = Raw::start(pooler.port, TRUST_USER, db);
    raw.until_ready().expect("a trust login");
    assert_eq!(raw.query_one("SELECT 2"), "2");
    drop(raw);
    played("client_closed");
    // A client asked for its password that goes away.
    let mut raw = Raw::start(pooler.port, MD5_USER, db);
    assert_eq!(raw.auth_request().0, 5, "md5 is asked");
    drop(raw);
    played("login_abandoned");
    // A wrong password.
    let wrong = connect_err(&pooler.url(MD5_USER, Some("not the password")));
    assert_eq!(code_of(&wrong).as_deref(), Some("28P01"), "{wrong}");
    played("auth_failed");
    // A user the hba file rejects.
    let mut raw = Raw::start(pooler.port, SCRAM_USER, db);
    assert_eq!(raw.until_ready(), Err("28000".to_string()));
    played("hba_rejected");
    // A startup packet that is not one.
    let mut garbage = TcpStream::connect(("127.0.0.1", pooler.port)).expect("connect");
    garbage.write_all(&[0, 0, 0, 8, 0x12, 0x34, 0x56, 0x78]).expect("send");
    let answer = read_until_close(&mut garbage, Duration::from_secs(20));
    assert_eq!(sqlstate_in(&answer).as_deref(), Some("0A000"), "an unsupported protocol: {answer:?}");
    played("client_protocol_violation");

    // The only connection is held: the next client waits, then is refused.
    let mut held = pooler.connect_to(db);
    let backend = backend_pid(&mut held);
    let refused = connect_err(&pooler.url(TRUST_USER, None));
    assert_eq!(code_of(&refused).as_deref(), Some("53300"), "{refused}");
    played("pool_full");
    // A cancel request is a connection of its own.
    held.cancel_token().cancel_query(postgres::NoTls).expect("send a cancel");
    played("cancel_request");
    // The held session's worker dies under it.
    let restarts = value(&scrape(port), "pgagroal_actor_restarts_total{actor=\"worker\"}");
    let worker = pooler.worker_serving(backend);
    // SAFETY: signalling a process of the daemon under test.
    unsafe { libc::kill(worker, libc::SIGKILL) };
    assert!(first_value_result(&mut held).is_err(), "the session died with its worker");
    drop(held);
    played("worker_crashed");

    let total: f64 = expected.values().sum();
    let moved = |body: &str| {
        let now = disconnects(body);
        now.iter().map(|(reason, n)| n - before.get(reason).copied().unwrap_or(0.0)).sum::<f64>()
    };
    pooler.wait_for(|| moved(&scrape(port)) >= total, "every disconnect is counted");
    pooler.wait_for(|| value(&scrape(port), "pgagroal_client_sockets") == 0.0, "every client socket is closed");
    let body = scrape(port);
    let after = disconnects(&body);
    let deltas: BTreeMap<&str, f64> =
        after.iter().map(|(reason, n)| (reason.as_str(), n - before.get(reason).copied().unwrap_or(0.0))).collect();
    for (reason, delta) in &deltas {
        let want = expected.get(reason).copied().unwrap_or(0.0);
        assert_eq!(*delta, want, "reason {reason}: moved {deltas:?}\n{}", pooler.log());
    }
    assert!(expected.keys().all(|reason| deltas.contains_key(reason)), "{expected:?} vs {deltas:?}");
    assert_eq!(value(&body, "pgagroal_actor_restarts_total{actor=\"worker\"}") - restarts, 1.0, "{body}");

    // The pool goes on: the dead worker's slot was taken back.
    let mut c = pooler.connect_to(db);
    assert_eq!(first_value(&mut c, "SELECT 3"), "3");
    drop(c);
    pooler.wait_idle();
    assert!(pooler.cli(&["clear", "prometheus"]).status.success());
    let cleared = disconnects(&scrape(port));
    assert!(cleared.values().all(|&n| n == 0.0) && !cleared.is_empty(), "{cleared:?}");
}

/// A query on a session that may have died.
fn first_value_result(c: &mut postgres::Client) -> Result<String, postgres::Error> {
    c.query_one("SELECT 1", &[]).map(|row| row.get::<_, i32>(0).to_string())
}
