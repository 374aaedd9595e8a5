//! `pgagroal-cli` against the real daemon, and the daemon's start-up checks
//! of its configuration files.

mod common;

use common::*;
use std::process::Command;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn ping_in_text_and_json() {
    let pooler = Pooler::start(PoolerOptions::default());
    let text = pooler.cli(&["ping"]);
    assert!(text.status.success(), "{}", String::from_utf8_lossy(&text.stderr));
    let t = stdout(&text);
    assert!(t.starts_with("Header:\n"), "{t}");
    assert!(t.contains("  Command: ping\n") && t.contains("Outcome:\n  Status: true\n"), "{t}");

    let json = pooler.cli(&["-F", "json", "ping"]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("ping json");
    assert_eq!(doc["Header"]["Command"], "ping");
    assert_eq!(doc["Header"]["Output"], "json");
    assert_eq!(doc["Outcome"]["Status"], true);
    assert!(doc["Response"]["ServerVersion"].is_string());

    let raw = pooler.cli(&["-F", "raw", "ping"]);
    let doc: serde_json::Value = serde_json::from_slice(&raw.stdout).expect("ping raw");
    assert_eq!(doc["Header"]["Command"], 11);
}

#[test]
fn status_reports_connections_and_servers() {
    let pooler = Pooler::start(PoolerOptions { max_connections: 5, ..Default::default() });
    let mut client = pooler.connect(TRUST_USER);
    client.query_one("SELECT 1", &[]).expect("query");
    let out = pooler.cli(&["status", "-F", "json"]);
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    let r = &doc["Response"];
    assert_eq!(r["Status"], "Running");
    assert_eq!(r["ActiveConnections"], 1);
    assert_eq!(r["TotalConnections"], 1);
    assert_eq!(r["MaxConnections"], 5);
    assert_eq!(r["NumberOfServers"], 1);
    let server = &r["Servers"][0];
    assert_eq!(server["Server"], "primary");
    assert_eq!(server["Host"], "127.0.0.1");
    assert_eq!(server["Port"], postgres().port);
    assert_eq!(server["State"], "Primary");
    drop(client);
    pooler.wait_idle();
    assert_eq!(pooler.status()["Response"]["TotalConnections"], 1);
    let text = stdout(&pooler.cli(&["status"]));
    assert!(text.contains("  Servers:\n    - Host: 127.0.0.1\n"), "{text}");
    assert!(text.contains("  Status: Running"), "{text}");
}

#[test]
fn cli_errors_are_clear() {
    let pooler = Pooler::start(PoolerOptions::default());
    let unknown = pooler.cli(&["frobnicate"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown command"));

    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("pgagroal.conf");
    std::fs::write(
        &conf,
        format!(
            "[pgagroal]\nhost = 127.0.0.1\nport = 1\nunix_socket_dir = {}\n[s]\nhost = x\nport = 1\n",
            dir.path().display()
        ),
    )
    .expect("conf");
    let down = Command::new(cli_binary()).arg("-c").arg(&conf).arg("ping").output().expect("cli");
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("is pgagroal running?"), "{down:?}");

    let missing = Command::new(cli_binary()).args(["-c", "/nonexistent/pgagroal.conf", "ping"]).output().expect("cli");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/pgagroal.conf"));
}

/// Run `daemon` on files that should be refused; returns its stderr.
fn refused_by(mut daemon: Command, dir: &std::path::Path, conf: &str, hba: &str) -> String {
    let conf = conf.replace("DIR", &dir.display().to_string());
    std::fs::write(dir.join("pgagroal.conf"), conf).expect("conf");
    std::fs::write(dir.join("pgagroal_hba.conf"), hba).expect("hba");
    let out = daemon
        .arg("-c")
        .arg(dir.join("pgagroal.conf"))
        .arg("-a")
        .arg(dir.join("pgagroal_hba.conf"))
        .output()
        .expect("daemon");
    assert_eq!(out.status.code(), Some(1), "the daemon must refuse to start: {out:?}");
    let socket = dir.join(".s.PGSQL.6543");
    assert!(!socket.exists(), "bound a socket before refusing");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The daemon, as its unprivileged account, on files that should be refused.
fn refused(conf: &str, hba: &str) -> String {
    let dir = daemon_dir();
    refused_by(daemon_command(dir.path()), dir.path(), conf, hba)
}

const GOOD: &str =
    "[pgagroal]\nhost = 127.0.0.1\nport = 6543\nunix_socket_dir = DIR\n\n[primary]\nhost = 127.0.0.1\nport = 5432\n";

#[test]
fn bad_configuration_stops_the_daemon_before_binding() {
    let err = refused(&GOOD.replace("port = 6543", "port = 6543\nmax_connections = lots"), "host all all all trust\n");
    assert!(err.contains("pgagroal.conf") && err.contains("line 4") && err.contains("max_connections"), "{err}");
    let err = refused(&GOOD.replace("port = 6543", "port = 6543\nlog_type = loud"), "host all all all trust\n");
    assert!(err.contains("line 4") && err.contains("log_type") && err.contains("console, file or syslog"), "{err}");
    let err = refused(GOOD, "host all all all trust\nhost all all 10.0.0.0/99 trust\n");
    assert!(err.contains("pgagroal_hba.conf") && err.contains("line 2") && err.contains("ADDRESS"), "{err}");
    let err = refused(&GOOD.replace("[primary]\nhost = 127.0.0.1\nport = 5432\n", ""), "host all all all trust\n");
    assert!(err.contains("no server section"), "{err}");
    let err =
        refused(&GOOD.replace("port = 5432", "port = 5432\n[primary]\nhost = b\nport = 1"), "host all all all trust\n");
    assert!(err.contains("[primary]"), "{err}");
}

#[test]
fn unknown_keys_warn_and_toml_works() {
    let pg = postgres();
    let dir = daemon_dir();
    let port = free_port();
    let toml = format!(
        "[pgagroal]\nhost = \"127.0.0.1\"\nport = {port}\nunix_socket_dir = \"{}\"\nmax_connections = 2\n\
         shiny_new_key = 1\n\n[primary]\nhost = \"127.0.0.1\"\nport = {}\n",
        dir.path().display(),
        pg.port
    );
    std::fs::write(dir.path().join("pgagroal.toml"), toml).expect("toml");
    std::fs::write(dir.path().join("pgagroal_hba.conf"), "host all all all trust\n").expect("hba");
    let log = std::fs::File::create(dir.path().join("log")).expect("log");
    let mut child = daemon_command(dir.path()).arg("-D").arg(dir.path()).stderr(log).spawn().expect("daemon");
    let url = format!("host=127.0.0.1 port={port} user={TRUST_USER} dbname={DATABASE}");
    let ok =
        eventually(std::time::Duration::from_secs(10), || postgres::Client::connect(&url, postgres::NoTls).is_ok());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let text = std::fs::read_to_string(dir.path().join("log")).expect("log");
    assert!(ok, "daemon on a TOML file did not serve:\n{text}");
    assert!(text.contains("unknown key 'shiny_new_key'") && text.contains("line 6"), "{text}");
}

#[test]
fn the_daemon_refuses_root() {
    if daemon_user().is_none() {
        // Not root: there is no root account to refuse; the daemon runs as
        // this user in every other test.
        eprintln!("not running as root: nothing to check");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let stderr = refused_by(Command::new(built_pooler_binary()), dir.path(), GOOD, "host all all all trust\n");
    assert!(stderr.contains("Using the root account is not allowed"), "{stderr}");
}
