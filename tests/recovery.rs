//! Crash recovery against a real PostgreSQL, under load from concurrent
//! clients in session and transaction mode: every kind of actor is killed
//! (SIGKILL) repeatedly, and each failpoint is triggered (with the
//! `failpoints` feature). After each, the supervisor is the same process,
//! a killed service is back within a second, no slot is left outside FREE,
//! the server connections in pg_stat_activity are exactly the pool's own,
//! and clients the killed process did not serve saw no error.

mod common;

use common::load::Load;
use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const SERVICES: [&str; 4] = ["idle", "max-age", "validation", "maintenance"];

/// A pool with every service running: idle timeout and max connection age
/// (long enough to close nothing under load), background validation every
/// second, and maintenance keeping min_size 2.
fn pool(db: &str, pipeline: &str, env: Vec<(&'static str, String)>) -> Pooler {
    postgres().database(db);
    let pooler = Pooler::start(PoolerOptions {
        max_connections: 12,
        extra: format!(
            "pipeline = {pipeline}\nallow_unknown_users = off\nidle_timeout = 60\nmax_connection_age = 600\n\
             validation = background\nbackground_interval = 1\n"
        ),
        users: vec![(MD5_USER, MD5_PASSWORD)],
        limits: format!("{db} {MD5_USER} 10 2 2\n"),
        env,
        ..Default::default()
    });
    for name in SERVICES {
        pooler.wait_for_service(name);
    }
    pooler
}

fn client(pooler: &Pooler, db: &str) -> Result<postgres::Client, postgres::Error> {
    let mut config = postgres::Config::new();
    config.host("127.0.0.1").port(pooler.port).user(MD5_USER).password(MD5_PASSWORD).dbname(db);
    config.connect_timeout(Duration::from_secs(20));
    config.connect(postgres::NoTls)
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn kill(pid: i32) {
    // SAFETY: signalling a process of the daemon under test.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// What must hold once clients are gone: the same supervisor, every slot
/// FREE, pg_stat_activity showing exactly the pool's connections, and
/// every service running.
fn recovered(pooler: &Pooler, db: &str, supervisor: i32) {
    recovered_within(pooler, db, supervisor, Duration::from_secs(5));
}

/// [`recovered`], giving services killed many times in a row up to
/// `services` to come back (their restarts back off).
fn recovered_within(pooler: &Pooler, db: &str, supervisor: i32, services: Duration) {
    assert_eq!(pooler.pid(), supervisor);
    assert!(alive(supervisor), "the supervisor died:\n{}", pooler.log());
    let mut last = String::new();
    let settled = eventually(Duration::from_secs(20), || {
        let status = pooler.status();
        let response = &status["Response"];
        let states = response["SlotStates"].as_object().cloned().unwrap_or_default();
        let backends = postgres().backends_on(db);
        last = format!("{response} pg_stat_activity: {backends:?}");
        response["ActiveConnections"] == 0
            && states.keys().all(|k| k == "free")
            && response["TotalConnections"].as_u64() == Some(backends.len() as u64)
    });
    assert!(settled, "the pool did not settle: {last}\n{}", pooler.log());
    for name in SERVICES {
        pooler.wait_for_service_within(name, services);
    }
}

/// Kill one service and time its return.
fn kill_service(pooler: &Pooler, name: &str) {
    let pid = pooler.wait_for_service(name);
    kill(pid);
    let killed = Instant::now();
    pooler.wait_for_new_service(name, pid, Duration::from_secs(5));
    let took = killed.elapsed();
    assert!(took <= Duration::from_secs(1), "{name} came back after {took:?}");
}

fn services_killed_under_load(pipeline: &str, db: &str) {
    let pooler = pool(db, pipeline, Vec::new());
    let supervisor = pooler.pid();
    let load = Load::start(&pooler, db, 4);
    for _ in 0..3 {
        for name in SERVICES {
            kill_service(&pooler, name);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    load.finish(&pooler);
    recovered(&pooler, db, supervisor);
    let status = pooler.status();
    let restarts: Vec<u64> =
        status["Response"]["Actors"].as_array().into_iter().flatten().filter_map(|a| a["Restarts"].as_u64()).collect();
    assert_eq!(restarts, vec![3, 3, 3, 3], "{status}");
}

#[test]
fn killed_services_come_back_in_session_mode() {
    services_killed_under_load("session", "rec_services_session");
}

#[test]
fn killed_services_come_back_in_transaction_mode() {
    services_killed_under_load("transaction", "rec_services_tx");
}

/// The worker serving a new client connection, found through the client's
/// TCP port (which this test process opened).
fn connect_and_find_worker(pooler: &Pooler, db: &str) -> (postgres::Client, i32) {
    let before = client_ports_of(pooler.port);
    let mut c = client(pooler, db).expect("victim connects");
    assert_eq!(first_value(&mut c, "SELECT 1"), "1");
    let after = client_ports_of(pooler.port);
    let new: Vec<u16> = after.into_iter().filter(|p| !before.contains(p)).collect();
    assert_eq!(new.len(), 1, "new client connections: {new:?}");
    let worker = holder_of_connection(&pooler.workers(), pooler.port, new[0]).expect("the victim's worker");
    (c, worker)
}

fn workers_killed_under_load(pipeline: &str, db: &str) {
    let pooler = pool(db, pipeline, Vec::new());
    let supervisor = pooler.pid();
    let load = Load::start(&pooler, db, 4);
    for round in 0..3 {
        // A worker in the middle of its client's transaction...
        let (mut victim, worker) = connect_and_find_worker(&pooler, db);
        victim.batch_execute("BEGIN; SELECT 1").expect("begin");
        kill(worker);
        assert!(victim.simple_query("SELECT 1").is_err(), "round {round}: the victim's worker is dead");
        // ...and an idle spare.
        let services: Vec<i32> = SERVICES.iter().filter_map(|s| pooler.service_pid(s)).collect();
        let clients = client_ports_of(pooler.port);
        let spare = pooler.workers().into_iter().find(|&w| {
            !services.contains(&w) && clients.iter().all(|&p| holder_of_connection(&[w], pooler.port, p).is_none())
        });
        if let Some(spare) = spare {
            kill(spare);
        }
    }
    load.finish(&pooler);
    recovered(&pooler, db, supervisor);
    // Spares are kept: a new client is served at once.
    let mut c = client(&pooler, db).expect("a client after the kills");
    assert_eq!(first_value(&mut c, "SELECT 1"), "1");
}

#[test]
fn killed_workers_cost_only_their_client_in_session_mode() {
    workers_killed_under_load("session", "rec_workers_session");
}

#[test]
fn killed_workers_cost_only_their_client_in_transaction_mode() {
    workers_killed_under_load("transaction", "rec_workers_tx");
}

/// Kill random actors for a minute under pgbench load.
#[test]
fn chaos_for_a_minute_under_pgbench() {
    let db = "rec_chaos";
    let pooler = pool(db, "transaction", Vec::new());
    let supervisor = pooler.pid();
    let pg = postgres();
    let init = std::process::Command::new(pg.bin("pgbench"))
        .args(["-h", "127.0.0.1", "-p", &pg.port.to_string(), "-U", TRUST_USER, "-i", "-q", db])
        .output()
        .expect("pgbench -i");
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    pg.psql_on(db, &format!("GRANT ALL ON ALL TABLES IN SCHEMA public TO {MD5_USER}"));
    let stop = Arc::new(AtomicBool::new(false));
    let port = pooler.port;
    let bench = {
        let stop = stop.clone();
        let db = db.to_string();
        std::thread::spawn(move || {
            let mut processed = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Clients of a killed worker abort; each run starts afresh.
                let mut cmd = std::process::Command::new(postgres().bin("pgbench"));
                cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", MD5_USER, "-n", "-c", "6", "-T", "3"])
                    .arg(&db)
                    .env("PGPASSWORD", MD5_PASSWORD);
                let out = cmd.output().expect("pgbench");
                let text = String::from_utf8_lossy(&out.stdout);
                processed += text
                    .lines()
                    .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
                    .and_then(|n| n.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u64>().ok())
                    .unwrap_or(0);
            }
            processed
        })
    };
    let started = Instant::now();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut kills = 0;
    while started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(400));
        let children = pooler.workers();
        if children.is_empty() {
            continue;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        kill(children[(seed % children.len() as u64) as usize]);
        kills += 1;
        assert!(alive(supervisor), "the supervisor died:\n{}", pooler.log());
    }
    stop.store(true, Ordering::Relaxed);
    let processed = bench.join().expect("pgbench loop");
    assert!(processed > 1000, "pgbench processed {processed} transactions");
    assert!(kills > 100);
    // A service killed again and again within seconds of its start is
    // restarted after a delay that doubles up to 30 s.
    recovered_within(&pooler, db, supervisor, Duration::from_secs(40));
    let mut c = client(&pooler, db).expect("a client after the chaos");
    assert_eq!(first_value(&mut c, "SELECT count(*) FROM pgbench_branches"), "1");
}

#[cfg(feature = "failpoints")]
mod failpoints {
    use super::*;

    /// A pool whose daemon has `spec` armed, firing once.
    fn armed(db: &str, pipeline: &str, spec: &str) -> (Pooler, tempfile::TempDir) {
        let markers = daemon_dir();
        let env = vec![
            ("PGAGROAL_FAILPOINTS", spec.to_string()),
            ("PGAGROAL_FAILPOINT_DIR", markers.path().display().to_string()),
        ];
        (pool(db, pipeline, env), markers)
    }

    fn fired(markers: &tempfile::TempDir, name: &str) -> bool {
        markers.path().join(name).exists()
    }

    /// A worker failpoint that crashes the first client's worker: that
    /// client fails, clients after it do not.
    fn worker_crash(point: &str, pipeline: &str, db: &str) {
        let (pooler, markers) = armed(db, pipeline, &format!("{point}=once:crash"));
        let supervisor = pooler.pid();
        let victim = client(&pooler, db).and_then(|mut c| c.batch_execute("BEGIN; SELECT 1; COMMIT"));
        assert!(victim.is_err(), "the first client's worker crashed at {point}");
        assert!(fired(&markers, point));
        let load = Load::start(&pooler, db, 4);
        std::thread::sleep(Duration::from_millis(500));
        load.finish(&pooler);
        recovered(&pooler, db, supervisor);
    }

    #[test]
    fn crash_after_slot_claim() {
        worker_crash("worker-after-slot-claim", "session", "fp_claim");
    }

    #[test]
    fn crash_mid_relay() {
        worker_crash("worker-mid-relay", "session", "fp_relay");
    }

    #[test]
    fn crash_mid_transaction() {
        worker_crash("worker-mid-transaction", "transaction", "fp_transaction");
    }

    #[test]
    fn service_crash_mid_claim_is_restarted() {
        let (pooler, markers) = armed("fp_service", "session", "service-mid-claim=once:crash");
        let supervisor = pooler.pid();
        pooler.wait_for(|| fired(&markers, "service-mid-claim"), "a service reached its claim");
        let load = Load::start(&pooler, "fp_service", 4);
        std::thread::sleep(Duration::from_millis(500));
        load.finish(&pooler);
        recovered(&pooler, "fp_service", supervisor);
        assert!(pooler.log().contains("actor ended; restarting it"), "{}", pooler.log());
    }

    #[test]
    fn hung_service_is_killed_and_restarted() {
        let (pooler, markers) = armed("fp_hang", "transaction", "service-pass=once:hang");
        let supervisor = pooler.pid();
        assert!(fired(&markers, "service-pass"));
        let load = Load::start(&pooler, "fp_hang", 2);
        let noticed = eventually(Duration::from_secs(30), || pooler.log().contains("did not answer a ping"));
        assert!(noticed, "the hang was not noticed:\n{}", pooler.log());
        load.finish(&pooler);
        recovered(&pooler, "fp_hang", supervisor);
    }

    #[test]
    fn failed_fd_handoff_is_retried_without_the_client_noticing() {
        let db = "fp_handoff";
        let (pooler, markers) = armed(db, "session", "supervisor-before-fd-handoff=once:error");
        let supervisor = pooler.pid();
        // The prefilled connections are the supervisor's to hand over: the
        // first checkout fails, the worker makes a connection instead.
        pooler.wait_for(|| postgres().backends_on(db).len() == 2, "prefill");
        let mut c = client(&pooler, db).expect("connect");
        assert_eq!(first_value(&mut c, "SELECT 1"), "1");
        assert!(fired(&markers, "supervisor-before-fd-handoff"));
        drop(c);
        recovered(&pooler, db, supervisor);
    }
}

/// A dead supervisor takes every child with it (workers, services): none
/// is left orphaned, and PostgreSQL sees every connection close.
#[test]
fn children_end_with_the_supervisor() {
    let db = "rec_orphans";
    let mut pooler = pool(db, "session", Vec::new());
    let mut c = client(&pooler, db).expect("connect");
    assert_eq!(first_value(&mut c, "SELECT 1"), "1");
    let children = pooler.workers();
    assert!(children.len() >= 6, "services and workers: {children:?}");
    kill(pooler.pid());
    assert!(pooler.wait_exit(Duration::from_secs(10)).is_some());
    let gone = eventually(Duration::from_secs(10), || children.iter().all(|&p| !alive(p)));
    assert!(gone, "children left behind: {:?}", children.iter().filter(|&&p| alive(p)).collect::<Vec<_>>());
    let closed = eventually(Duration::from_secs(10), || postgres().backends_on(db).is_empty());
    assert!(closed, "server connections left: {:?}", postgres().backends_on(db));
}
