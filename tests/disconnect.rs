//! `disconnect_client` (session pipeline): a session at rest for longer
//! than the setting is ended (57P05) and its server connection goes back
//! to the pool; a running query is not "at rest"; with
//! `disconnect_client_force` a session is ended once it has lasted that
//! long, its running query cancelled first (57P01).

mod common;

use common::*;
use std::time::{Duration, Instant};

fn pooler(extra: &str) -> Pooler {
    Pooler::start(PoolerOptions {
        max_connections: 2,
        extra: format!("pipeline = session\n{extra}\n"),
        ..Default::default()
    })
}

#[test]
fn an_idle_session_is_ended_and_its_connection_pooled() {
    let pooler = pooler("disconnect_client = 1");
    let mut c = pooler.connect(TRUST_USER);
    let backend: i32 = c.query_one("SELECT pg_backend_pid()", &[]).expect("pid").get(0);
    assert!(
        eventually(Duration::from_secs(10), || pooler.log().contains("disconnect_client: idle too long")),
        "the idle session was not ended:\n{}",
        pooler.log()
    );
    let err = c.simple_query("SELECT 1").expect_err("the session is over");
    assert!(code_of(&err).as_deref() == Some("57P05") || err.is_closed(), "unexpected error: {}", message_of(&err));
    pooler.wait_idle();
    let mut next = pooler.connect(TRUST_USER);
    let again: i32 = next.query_one("SELECT pg_backend_pid()", &[]).expect("pid").get(0);
    assert_eq!(again, backend, "the server connection went back to the pool");
}

#[test]
fn a_running_query_is_not_idle() {
    let pooler = pooler("disconnect_client = 1");
    let mut c = pooler.connect(TRUST_USER);
    c.simple_query("SELECT pg_sleep(2.5)").expect("a query longer than disconnect_client runs to its end");
}

#[test]
fn force_ends_a_long_session_and_cancels_its_query() {
    let pooler = pooler("disconnect_client = 2\ndisconnect_client_force = on");
    let mut c = pooler.connect(TRUST_USER);
    let start = Instant::now();
    let err = c.simple_query("SELECT pg_sleep(60)").expect_err("ended by force");
    assert!(start.elapsed() < Duration::from_secs(30), "took {:?}", start.elapsed());
    let code = code_of(&err);
    assert!(
        matches!(code.as_deref(), Some("57014") | Some("57P01")) || err.is_closed(),
        "unexpected error: {}",
        message_of(&err)
    );
    assert!(
        eventually(Duration::from_secs(10), || {
            postgres()
                .psql("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'")
                == "0"
        }),
        "the query still runs"
    );
    assert!(pooler.log().contains("disconnect_client_force"), "{}", pooler.log());
}
