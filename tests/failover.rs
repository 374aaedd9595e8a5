//! Failover against a real PostgreSQL: the primary is a TCP proxy in front
//! of the test cluster, the second server section the cluster itself.
//! Stopping the proxy makes the primary unreachable: `failover_script` is
//! run with the old and new host and port, clients meanwhile get 53300
//! `server failover`, the old server is marked failed until `clear
//! server`, and clients are served by the new primary. `switch-to` moves
//! the pool back.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A TCP proxy to the test cluster that can be stopped (its listener
/// closed and every connection through it cut).
struct Proxy {
    port: u16,
    stop: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    accepted: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    fn start(port: u16) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("proxy bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let target = postgres().port;
        let thread = {
            let (stop, streams, accepted) = (stop.clone(), streams.clone(), accepted.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((client, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                    let _ = client.set_nonblocking(false);
                    accepted.fetch_add(1, Ordering::Relaxed);
                    for (from, to) in [(&client, &server), (&server, &client)] {
                        let (mut from, mut to) = (from.try_clone().expect("clone"), to.try_clone().expect("clone"));
                        std::thread::spawn(move || {
                            let mut buf = [0u8; 16384];
                            while let Ok(n) = from.read(&mut buf) {
                                if n == 0 || to.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                            let _ = to.shutdown(Shutdown::Both);
                        });
                    }
                    let mut all = streams.lock().expect("lock");
                    all.push(client);
                    all.push(server);
                }
            })
        };
        Proxy { port, stop, streams, accepted, thread: Some(thread) }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for s in self.streams.lock().expect("lock").drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A pool whose primary is `proxy` and whose second server is the cluster;
/// the failover script records its arguments and exits with `exit`.
fn failover_pool(proxy: &Proxy, exit: i32) -> (Pooler, tempfile::TempDir) {
    let dir = daemon_dir();
    let script = dir.path().join("failover.sh");
    let record = dir.path().join("failover.args");
    std::fs::write(&script, format!("#!/bin/sh\necho \"$@\" >> {}\nexit {exit}\n", record.display())).expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let pooler = Pooler::start(PoolerOptions {
        extra: format!("pipeline = session\nfailover = on\nfailover_script = {}\n", script.display()),
        primary_port: Some(proxy.port),
        server_extra: format!("primary = on\n\n[replica]\nhost = 127.0.0.1\nport = {}\n", postgres().port),
        ..Default::default()
    });
    (pooler, dir)
}

fn server_states(pooler: &Pooler) -> Vec<(String, String)> {
    let status = pooler.status();
    status["Response"]["Servers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| (s["Server"].as_str().unwrap_or("").to_string(), s["State"].as_str().unwrap_or("").to_string()))
        .collect()
}

fn states(primary: &str, replica: &str) -> Vec<(String, String)> {
    vec![("primary".into(), primary.into()), ("replica".into(), replica.into())]
}

#[test]
fn an_unreachable_primary_is_failed_over_with_the_script() {
    let mut proxy = Proxy::start(0);
    let (pooler, dir) = failover_pool(&proxy, 0);
    assert_eq!(server_states(&pooler), states("Not init (primary)", "Not init"));
    let mut c = pooler.connect(TRUST_USER);
    assert_eq!(first_value(&mut c, "SELECT 1"), "1");
    assert_eq!(server_states(&pooler), states("Primary", "Not init"));
    assert!(proxy.accepted.load(Ordering::Relaxed) >= 1, "the first connection went through the primary");
    // The primary goes away.
    proxy.stop();
    assert!(c.simple_query("SELECT 1").is_err());
    drop(c);
    let err = connect_err(&pooler.url(TRUST_USER, None));
    assert_eq!(code_of(&err).as_deref(), Some("53300"), "{}", message_of(&err));
    assert!(message_of(&err).contains("server failover"), "{}", message_of(&err));
    let record = dir.path().join("failover.args");
    pooler.wait_for(|| record.exists(), "the failover script ran");
    let args = std::fs::read_to_string(&record).expect("args");
    assert_eq!(args.trim(), format!("127.0.0.1 {} 127.0.0.1 {}", proxy.port, postgres().port));
    pooler.wait_for(|| server_states(&pooler) == states("Failed", "Primary"), "the replica is the primary");
    // Clients are served by the new primary (the proxy is gone).
    let mut d = pooler.connect(TRUST_USER);
    assert_eq!(first_value(&mut d, "SELECT 1"), "1");
    drop(d);
    // The failed server stays failed until it is cleared.
    let out = pooler.cli(&["clear", "server", "primary"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(server_states(&pooler), states("Not init", "Primary"));
    // switch-to moves new connections back to a primary that is up again.
    let proxy = Proxy::start(proxy.port);
    let out = pooler.cli(&["switch-to", "primary"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(server_states(&pooler), states("Primary", "Failed"));
    let before = proxy.accepted.load(Ordering::Relaxed);
    let mut e = pooler.connect(TRUST_USER);
    assert_eq!(first_value(&mut e, "SELECT 1"), "1");
    assert!(proxy.accepted.load(Ordering::Relaxed) > before, "the new connection went through the primary");
    assert!(!pooler.cli(&["switch-to", "nonexistent"]).status.success());
}

#[test]
fn a_failing_script_marks_both_servers_failed() {
    let mut proxy = Proxy::start(0);
    let (pooler, dir) = failover_pool(&proxy, 3);
    proxy.stop();
    let err = connect_err(&pooler.url(TRUST_USER, None));
    assert_eq!(code_of(&err).as_deref(), Some("53300"), "{}", message_of(&err));
    pooler.wait_for(|| server_states(&pooler) == states("Failed", "Failed"), "both servers failed");
    assert!(dir.path().join("failover.args").exists());
    assert!(pooler.log().contains("the failover script failed"), "{}", pooler.log());
    // Nothing is left to serve clients: they are told so.
    let err = connect_err(&pooler.url(TRUST_USER, None));
    assert!(code_of(&err).is_some(), "{}", message_of(&err));
}

#[test]
fn failover_needs_a_script_and_two_servers() {
    let dir = daemon_dir();
    let conf = dir.path().join("pgagroal.conf");
    let base = "[pgagroal]\nhost = 127.0.0.1\nport = 6432\nunix_socket_dir = /tmp\npipeline = session\nfailover = on\n";
    for (extra, expect) in [
        ("\n[primary]\nhost = 127.0.0.1\nport = 5432\n", "at least two server sections"),
        ("\n[a]\nhost = 127.0.0.1\nport = 5432\n\n[b]\nhost = 127.0.0.1\nport = 5433\n", "needs failover_script"),
        (
            "failover_script = /etc/passwd\n\n[a]\nhost = 127.0.0.1\nport = 5432\n\n[b]\nhost = 127.0.0.1\nport = 5433\n",
            "not an executable file",
        ),
    ] {
        std::fs::write(&conf, format!("{base}{extra}")).expect("conf");
        let hba = dir.path().join("pgagroal_hba.conf");
        std::fs::write(&hba, "host all all all trust\n").expect("hba");
        let out =
            daemon_command(&dir.path().join("home")).arg("-c").arg(&conf).arg("-a").arg(&hba).output().expect("run");
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("line 6: failover = on") && stderr.contains(expect), "{stderr}");
    }
}
