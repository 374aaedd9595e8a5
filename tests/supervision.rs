//! Crashes and stops, by signalling the real processes: a killed worker's
//! slot is reclaimed and its server session terminated; TERM and INT stop
//! the whole tree; pid files are handled.

mod common;

use common::*;
use std::time::Duration;

fn backend_gone(pid: i32) -> bool {
    postgres().psql(&format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}")) == "0"
}

#[test]
fn killed_worker_inside_a_transaction_leaves_nothing_behind() {
    let pooler = Pooler::start(PoolerOptions { max_connections: 1, blocking_timeout: "5", ..Default::default() });
    let mut client = pooler.connect(TRUST_USER);
    client.batch_execute("BEGIN; CREATE TEMP TABLE t (x int); INSERT INTO t VALUES (1);").expect("open transaction");
    let backend: i32 = client.query_one("SELECT pg_backend_pid()", &[]).expect("pid").get(0);
    let state = postgres().psql(&format!("SELECT state FROM pg_stat_activity WHERE pid = {backend}"));
    assert_eq!(state, "idle in transaction");

    let worker = pooler.worker_serving(backend);
    // SAFETY: signalling a child of the daemon under test.
    unsafe { libc::kill(worker, libc::SIGKILL) };

    assert!(
        eventually(Duration::from_secs(10), || backend_gone(backend)),
        "backend {backend} is still in pg_stat_activity:\n{}",
        postgres().psql(&format!("SELECT pid, state FROM pg_stat_activity WHERE pid = {backend}"))
    );
    assert!(eventually(Duration::from_secs(5), || {
        let s = pooler.status();
        s["Response"]["TotalConnections"] == 0 && s["Response"]["ActiveConnections"] == 0
    }));
    let mut next = pooler.connect(TRUST_USER);
    let fresh: i32 = next.query_one("SELECT pg_backend_pid()", &[]).expect("next client").get(0);
    assert_ne!(fresh, backend);
    assert!(pooler.log().contains("reclaimed slot"), "{}", pooler.log());
}

#[test]
fn killed_worker_running_a_query_has_the_query_cancelled() {
    let pooler = Pooler::start(PoolerOptions { max_connections: 1, ..Default::default() });
    let url = pooler.url(TRUST_USER, None);
    let (tx, rx) = std::sync::mpsc::channel();
    let client = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).expect("pid").get(0);
        tx.send(pid).expect("send pid");
        let _ = c.simple_query("SELECT pg_sleep(60)");
    });
    let backend = rx.recv_timeout(Duration::from_secs(10)).expect("backend pid");
    assert!(eventually(Duration::from_secs(5), || {
        postgres().psql(&format!("SELECT state FROM pg_stat_activity WHERE pid = {backend}")) == "active"
    }));
    let worker = pooler.worker_serving(backend);
    // SAFETY: signalling a child of the daemon under test.
    unsafe { libc::kill(worker, libc::SIGKILL) };
    assert!(eventually(Duration::from_secs(10), || backend_gone(backend)), "the sleeping backend survived");
    client.join().expect("client thread");
    pooler.connect(TRUST_USER).query_one("SELECT 1", &[]).expect("pool works after the crash");
}

fn stop_with(signal: i32) {
    let mut pooler = Pooler::start(PoolerOptions::default());
    let dir = pooler.dir.path().to_path_buf();
    let pidfile = dir.join(format!("pgagroal.{}.pid", pooler.port));
    assert!(pidfile.exists(), "pid file {} missing", pidfile.display());
    let written: i32 = std::fs::read_to_string(&pidfile).expect("pidfile").trim().parse().expect("pid");
    assert_eq!(written, pooler.pid());

    // One pooled idle connection and two clients in session.
    let idle: i32 = pooler.connect(TRUST_USER).query_one("SELECT pg_backend_pid()", &[]).expect("pid").get(0);
    let mut a = pooler.connect(TRUST_USER);
    let mut b = pooler.connect(TRUST_USER);
    let pa: i32 = a.query_one("SELECT pg_backend_pid()", &[]).expect("a").get(0);
    let pb: i32 = b.query_one("SELECT pg_backend_pid()", &[]).expect("b").get(0);

    pooler.signal(signal);
    let code = pooler.wait_exit(Duration::from_secs(15));
    assert_eq!(code, Some(0), "daemon did not stop cleanly:\n{}", pooler.log());
    let left = processes_mentioning(&dir.display().to_string());
    assert!(left.is_empty(), "processes left behind: {left:?}");
    assert!(!pidfile.exists(), "pid file left behind");
    assert!(!dir.join(format!(".s.PGSQL.{}", pooler.port)).exists(), "client socket left behind");
    assert!(!dir.join(".s.pgagroal").exists(), "management socket left behind");
    for backend in [idle, pa, pb] {
        assert!(eventually(Duration::from_secs(10), || backend_gone(backend)), "backend {backend} survived the stop");
    }
    assert!(a.query_one("SELECT 1", &[]).is_err(), "session survived the stop");
}

#[test]
fn term_stops_the_whole_tree() {
    stop_with(libc::SIGTERM);
}

#[test]
fn int_stops_the_whole_tree() {
    stop_with(libc::SIGINT);
}

#[test]
fn stale_pid_file_does_not_block_a_restart() {
    let mut pooler = Pooler::start(PoolerOptions::default());
    pooler.signal(libc::SIGTERM);
    assert_eq!(pooler.wait_exit(Duration::from_secs(15)), Some(0));
    // A pid that certainly is not running: a child we already reaped.
    let mut dead = std::process::Command::new("true").spawn().expect("spawn true");
    let dead_pid = dead.id();
    dead.wait().expect("wait");
    let pidfile = pooler.dir.path().join(format!("pgagroal.{}.pid", pooler.port));
    std::fs::write(&pidfile, format!("{dead_pid}\n")).expect("stale pid file");
    pooler.spawn();
    pooler.connect(TRUST_USER).query_one("SELECT 1", &[]).expect("restarted over a stale pid file");
    assert!(pooler.log().contains("stale pid file"), "{}", pooler.log());
}

#[test]
fn live_pid_file_blocks_a_second_daemon() {
    let pooler = Pooler::start(PoolerOptions::default());
    // Same configuration, so same pid file and sockets: refused, and the
    // running daemon is untouched.
    let out = daemon_command(&pooler.home())
        .arg("-c")
        .arg(pooler.conf())
        .arg("-a")
        .arg(pooler.dir.path().join("pgagroal_hba.conf"))
        .output()
        .expect("second daemon");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another pgagroal"), "{stderr}");
    pooler.connect(TRUST_USER).query_one("SELECT 1", &[]).expect("first daemon still serves");
}

#[test]
fn graceful_shutdown_waits_for_clients() {
    let mut pooler = Pooler::start(PoolerOptions::default());
    let mut client = pooler.connect(TRUST_USER);
    let out = pooler.cli(&["shutdown", "gracefully"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // New clients are refused while the current one keeps working.
    std::thread::sleep(Duration::from_millis(200));
    let refused = connect_err(&pooler.url(TRUST_USER, None));
    assert_eq!(code_of(&refused).as_deref(), Some("57P03"), "{refused:?}");
    client.query_one("SELECT 1", &[]).expect("existing session goes on");
    assert_eq!(pooler.wait_exit(Duration::from_millis(500)), None, "stopped while a client was active");
    drop(client);
    assert_eq!(pooler.wait_exit(Duration::from_secs(15)), Some(0));
}

#[test]
fn workers_serve_one_client_after_another() {
    let pooler = Pooler::start(PoolerOptions::default());
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let mut c = pooler.connect(TRUST_USER);
        c.query_one("SELECT 1", &[]).expect("query");
        drop(c);
        pooler.wait_idle();
        seen.extend(pooler.workers());
    }
    // Sequential clients are served by recycled workers, not a fork each.
    assert!(seen.len() <= 4, "20 sequential clients used {} worker processes", seen.len());
}

#[test]
fn killed_idle_workers_are_replaced() {
    let pooler = Pooler::start(PoolerOptions::default());
    pooler.connect(TRUST_USER).query_one("SELECT 1", &[]).expect("warm up");
    pooler.wait_idle();
    let idle = pooler.workers();
    assert!(!idle.is_empty(), "no idle workers");
    for w in &idle {
        // SAFETY: signalling children of the daemon under test.
        unsafe { libc::kill(*w, libc::SIGKILL) };
    }
    assert!(eventually(Duration::from_secs(5), || pooler.workers().iter().all(|w| !idle.contains(w))));
    for _ in 0..3 {
        pooler.connect(TRUST_USER).query_one("SELECT 1", &[]).expect("served after idle workers died");
    }
    assert!(!pooler.log().contains("reclaimed slot"), "idle workers held no slot:\n{}", pooler.log());
}
