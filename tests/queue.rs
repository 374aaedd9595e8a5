//! Waiting for a connection when the pool is full: first come, first
//! served; `blocking_timeout` and `max_retries` as configured; a waiter
//! whose client hangs up leaves the line, and one whose client cancels
//! gives up the request it waits with.

mod common;

use common::*;
use std::time::{Duration, Instant};

fn pool_of_one(extra: &str, blocking_timeout: &'static str) -> Pooler {
    Pooler::start(PoolerOptions { max_connections: 1, blocking_timeout, extra: extra.into(), ..Default::default() })
}

fn waiting(pooler: &Pooler) -> usize {
    pooler.log().matches("waiting in line for a connection").count()
}

#[test]
fn waiters_are_served_in_arrival_order() {
    for pipeline in ["session", "transaction"] {
        let extra = if pipeline == "transaction" {
            "pipeline = transaction\nallow_unknown_users = off\n"
        } else {
            "pipeline = session\n"
        };
        let pooler = Pooler::start(PoolerOptions {
            max_connections: 1,
            extra: extra.into(),
            users: vec![(TRUST_USER, "a password")],
            ..Default::default()
        });
        let url = pooler.url(TRUST_USER, Some("a password"));
        // The order in which the waiters ran their first query, as the
        // server saw it (one connection: one transaction at a time).
        postgres().table("fifo_order", "id serial, n int");
        // In transaction mode the waiters log in first (a login holds a
        // connection for a moment) and wait for their first transaction; in
        // session mode they wait to log in.
        let mut clients: Vec<postgres::Client> = Vec::new();
        if pipeline == "transaction" {
            for _ in 0..5 {
                clients.push(postgres::Client::connect(&url, postgres::NoTls).expect("waiter"));
            }
            clients.reverse();
        }
        // The holder keeps the one connection inside a transaction.
        let mut holder = postgres::Client::connect(&url, postgres::NoTls).expect("holder");
        holder.batch_execute("BEGIN; SELECT 1").expect("hold");
        let mut threads = Vec::new();
        let before = waiting(&pooler);
        for n in 0..5 {
            let url = url.clone();
            let early = clients.pop();
            threads.push(std::thread::spawn(move || {
                let mut c = early.unwrap_or_else(|| postgres::Client::connect(&url, postgres::NoTls).expect("waiter"));
                c.batch_execute(&format!("INSERT INTO fifo_order (n) VALUES ({n})")).expect("first query");
                c.batch_execute("SELECT pg_sleep(0.05)").expect("hold a moment");
            }));
            assert!(
                eventually(Duration::from_secs(10), || waiting(&pooler) == before + n + 1),
                "{pipeline}: waiter {n} never got in line:\n{}",
                pooler.log()
            );
        }
        holder.batch_execute("COMMIT").expect("release");
        drop(holder);
        for t in threads {
            t.join().expect("waiter thread");
        }
        let order = postgres().as_test_user("SELECT string_agg(n::text, ',' ORDER BY id) FROM fifo_order");
        assert_eq!(order, "0,1,2,3,4", "{pipeline}: not first come, first served");
    }
}

#[test]
fn blocking_timeout_ends_the_wait_with_pool_full() {
    let pooler = pool_of_one("", "1");
    let _holder = pooler.connect(TRUST_USER);
    let start = Instant::now();
    let err = connect_err(&pooler.url(TRUST_USER, None));
    assert_eq!(code_of(&err).as_deref(), Some("53300"), "{}", message_of(&err));
    assert!(message_of(&err).contains("connection pool is full"), "{}", message_of(&err));
    assert!(start.elapsed() >= Duration::from_millis(950), "gave up after {:?}", start.elapsed());
}

#[test]
fn without_blocking_timeout_max_retries_are_tried_then_pool_full() {
    let pooler = pool_of_one("max_retries = 2", "0");
    let _holder = pooler.connect(TRUST_USER);
    let err = connect_err(&pooler.url(TRUST_USER, None));
    assert_eq!(code_of(&err).as_deref(), Some("53300"), "{}", message_of(&err));
    assert!(!pooler.log().contains("waiting in line"), "blocking_timeout = 0 does not queue");
}

#[test]
fn a_waiter_whose_client_hangs_up_leaves_the_line() {
    let pooler = pool_of_one("", "30");
    let holder = pooler.connect(TRUST_USER);
    // A raw client that sends its startup packet and goes away while waiting.
    let gone = wire::Raw::start(pooler.port, TRUST_USER, DATABASE);
    assert!(eventually(Duration::from_secs(10), || waiting(&pooler) == 1));
    let url = pooler.url(TRUST_USER, None);
    let next = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("next waiter");
        c.batch_execute("SELECT 1").expect("query");
    });
    assert!(eventually(Duration::from_secs(10), || waiting(&pooler) == 2));
    gone.stream.shutdown(std::net::Shutdown::Both).expect("hang up");
    drop(gone);
    drop(holder);
    next.join().expect("the second waiter got the connection");
    pooler.wait_idle();
}

#[test]
fn a_cancel_ends_the_wait_of_a_transaction_client_and_only_its_request() {
    let pooler = Pooler::start(PoolerOptions {
        max_connections: 1,
        blocking_timeout: "10",
        extra: "pipeline = transaction\nallow_unknown_users = off\n".into(),
        users: vec![(TRUST_USER, "a password")],
        ..Default::default()
    });
    let url = pooler.url(TRUST_USER, Some("a password"));
    let waiter = postgres::Client::connect(&url, postgres::NoTls).expect("waiter logs in");
    let token = waiter.cancel_token();
    let mut holder = postgres::Client::connect(&url, postgres::NoTls).expect("holder");
    holder.batch_execute("BEGIN; SELECT 1").expect("hold the one connection");
    let before = waiting(&pooler);
    let thread = std::thread::spawn(move || {
        let mut waiter = waiter;
        let result = waiter.batch_execute("SELECT 'never run'").map_err(|e| code_of(&e));
        (result, waiter)
    });
    assert!(
        eventually(Duration::from_secs(10), || waiting(&pooler) == before + 1),
        "the waiter never got in line:\n{}",
        pooler.log()
    );
    token.cancel_query(postgres::NoTls).expect("send cancel");
    let (result, mut waiter) = thread.join().expect("waiter thread");
    assert_eq!(result, Err(Some("57014".to_string())), "the waiting request was not cancelled");
    // The holder kept its connection, and the cancelled client goes on.
    holder.batch_execute("COMMIT").expect("the holder's transaction was untouched");
    assert_eq!(first_value(&mut waiter, "SELECT 'next'"), "next");
    pooler.wait_idle();
}
