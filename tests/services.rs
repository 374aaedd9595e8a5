//! The periodic services against a real PostgreSQL: idle timeout, max
//! connection age, validation (background and foreground) and pool
//! maintenance (min_size kept after kills). Each test has its own database,
//! so the server connections it counts are its pooler's.

mod common;

use common::*;
use std::time::Duration;

fn total(pooler: &Pooler) -> i64 {
    pooler.status()["Response"]["TotalConnections"].as_i64().expect("TotalConnections")
}

#[test]
fn idle_connections_are_closed_after_idle_timeout() {
    let db = "svc_idle";
    let pooler = Pooler::start_on(db, "idle_timeout = 1\n", String::new());
    let (mut a, mut b) = (pooler.connect_to(db), pooler.connect_to(db));
    let pids = [backend_pid(&mut a), backend_pid(&mut b)];
    drop(a);
    // b stays in use: an idle timeout never touches a connection in use.
    pooler.wait_for(|| postgres().backends_on(db) == vec![pids[1]], "the idle connection closed");
    assert_eq!(first_value(&mut b, "SELECT 1"), "1");
    assert_eq!(total(&pooler), 1);
    drop(b);
    pooler.wait_for(|| postgres().backends_on(db).is_empty() && total(&pooler) == 0, "every connection closed");
    assert!(pooler.log().contains("idle_timeout"), "{}", pooler.log());
    // The pool serves the next client with a new connection.
    let mut c = pooler.connect_to(db);
    assert!(!pids.contains(&backend_pid(&mut c)));
}

#[test]
fn old_connections_are_closed_after_max_connection_age() {
    let db = "svc_age";
    let pooler = Pooler::start_on(db, "max_connection_age = 2\n", String::new());
    // A connection given back after its age is closed on return...
    let mut a = pooler.connect_to(db);
    let first = backend_pid(&mut a);
    std::thread::sleep(Duration::from_millis(2_200));
    drop(a);
    pooler.wait_for(|| !postgres().backends_on(db).contains(&first), "the old connection closed on return");
    // ...and a FREE one by the service once it is old.
    let mut b = pooler.connect_to(db);
    let second = backend_pid(&mut b);
    assert_ne!(first, second);
    drop(b);
    assert!(postgres().backends_on(db).contains(&second) || total(&pooler) == 0);
    pooler.wait_for(|| postgres().backends_on(db).is_empty() && total(&pooler) == 0, "the FREE old connection closed");
}

#[test]
fn background_validation_replaces_a_connection_terminated_behind_the_pool() {
    let db = "svc_validate";
    let pooler = Pooler::start_on(db, "validation = background\nbackground_interval = 1\n", String::new());
    let mut a = pooler.connect_to(db);
    let victim = backend_pid(&mut a);
    drop(a);
    pooler.wait_idle();
    postgres().psql(&format!("SELECT pg_terminate_backend({victim})"));
    pooler.wait_for(|| total(&pooler) == 0, "validation noticed the dead connection");
    assert!(pooler.log().contains("failed validation"), "{}", pooler.log());
    let mut b = pooler.connect_to(db);
    assert_ne!(backend_pid(&mut b), victim);
}

#[test]
fn foreground_validation_means_the_next_client_never_sees_57p01() {
    let db = "svc_foreground";
    let pooler = Pooler::start_on(db, "validation = foreground\n", String::new());
    for round in 0..3 {
        let mut a = pooler.connect_to(db);
        let victim = backend_pid(&mut a);
        drop(a);
        pooler.wait_idle();
        postgres().psql(&format!("SELECT pg_terminate_backend({victim})"));
        pooler.wait_for(|| !postgres().backends_on(db).contains(&victim), "the backend is gone");
        let mut b = pooler.connect_to(db);
        let rows = b.simple_query("SELECT 1").unwrap_or_else(|e| panic!("round {round}: the client saw {e}"));
        assert!(!rows.is_empty());
        assert_ne!(backend_pid(&mut b), victim);
    }
}

#[test]
fn maintenance_keeps_min_size_after_kills() {
    let db = "svc_minimum";
    let pooler = Pooler::start_on(db, "", format!("{db} {MD5_USER} 4 2 2\n"));
    pooler.wait_for(|| postgres().backends_on(db).len() == 2, "prefill opened 2 connections");
    for _ in 0..3 {
        let service = pooler.wait_for_service("maintenance");
        // SAFETY: signalling a process of the daemon under test.
        unsafe { libc::kill(service, libc::SIGKILL) };
        pooler.wait_for_new_service("maintenance", service, Duration::from_secs(5));
        let victim = postgres().backends_on(db)[0];
        postgres().psql(&format!("SELECT pg_terminate_backend({victim})"));
        // pg_terminate_backend returns once the signal is sent: the backend
        // has said FATAL and gone only when it has left pg_stat_activity.
        pooler.wait_for(|| !postgres().backends_on(db).contains(&victim), "the victim backend gone");
        // The FREE dead connection is noticed at its next use; a client
        // takes both, the dead one is replaced, and min_size holds again.
        let (mut a, mut b) = (pooler.connect_to(db), pooler.connect_to(db));
        assert_eq!(first_value(&mut a, "SELECT 1"), "1");
        assert_eq!(first_value(&mut b, "SELECT 1"), "1");
        drop((a, b));
        pooler.wait_for(
            || {
                let now = postgres().backends_on(db);
                now.len() >= 2 && !now.contains(&victim) && now.len() as i64 == total(&pooler)
            },
            "min_size restored",
        );
    }
}

#[test]
fn a_reload_reaches_a_running_service_without_a_restart() {
    let db = "svc_reload";
    let pooler = Pooler::start_on(db, "idle_timeout = 600\n", String::new());
    let service = pooler.wait_for_service("idle");
    let mut a = pooler.connect_to(db);
    let pid = backend_pid(&mut a);
    drop(a);
    pooler.wait_idle();
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(postgres().backends_on(db).contains(&pid), "not idle for 600 s yet");
    let conf = std::fs::read_to_string(pooler.conf()).expect("conf").replace("idle_timeout = 600", "idle_timeout = 1");
    std::fs::write(pooler.conf(), conf).expect("conf");
    let out = pooler.cli(&["conf", "reload"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    pooler.wait_for(|| !postgres().backends_on(db).contains(&pid), "the idle connection closed after the reload");
    assert_eq!(pooler.service_pid("idle"), Some(service), "the same idle service applied the reload");
    // A reload that turns the key off stops the service.
    let conf = std::fs::read_to_string(pooler.conf()).expect("conf").replace("idle_timeout = 1", "idle_timeout = 0");
    std::fs::write(pooler.conf(), conf).expect("conf");
    assert!(pooler.cli(&["conf", "reload"]).status.success());
    pooler.wait_for(|| pooler.service_pid("idle").is_none(), "the idle service stopped");
}
