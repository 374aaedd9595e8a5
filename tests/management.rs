//! The management commands against the real daemon: flush modes seen in
//! pg_stat_activity, `status details`, `conf ls|get|set|alias`, shutdown
//! deadlines, and malformed management frames. Each test that counts
//! server connections has its own database.

mod common;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", String::from_utf8_lossy(&out.stdout), stderr(out)))
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Run the CLI and insist on success.
fn ok(pooler: &Pooler, args: &[&str]) -> std::process::Output {
    let out = pooler.cli(args);
    assert!(out.status.success(), "{args:?} failed: {}{}\n{}", stdout(&out), stderr(&out), pooler.log());
    out
}

#[test]
fn flush_idle_closes_only_idle_connections() {
    let db = "mgmt_flush_idle";
    let pooler = Pooler::start_on(db, "", String::new());
    let (a, mut b) = (pooler.connect_to(db), pooler.connect_to(db));
    let busy = backend_pid(&mut b);
    drop(a.close());
    pooler.wait_for(|| pooler.status()["Response"]["ActiveConnections"] == 1, "one connection given back");
    assert_eq!(postgres().backends_on(db).len(), 2);
    let reply = json_of(&ok(&pooler, &["flush", "idle", "-F", "json"]));
    assert_eq!(reply["Response"]["Closed"], 1, "{reply}");
    pooler.wait_for(|| postgres().backends_on(db) == vec![busy], "the idle connection closed, the busy one kept");
    assert_eq!(first_value(&mut b, "SELECT 1"), "1");
}

#[test]
fn flush_gracefully_closes_busy_connections_when_given_back() {
    let db = "mgmt_flush_graceful";
    let other = "mgmt_flush_other";
    postgres().database(other);
    let pooler = Pooler::start_on(db, "", String::new());
    let mut busy = pooler.connect_to(db);
    let busy_pid = backend_pid(&mut busy);
    let mut elsewhere = pooler.connect_to(other);
    let elsewhere_pid = backend_pid(&mut elsewhere);
    drop(elsewhere);
    pooler.wait_for(|| pooler.status()["Response"]["ActiveConnections"] == 1, "one connection given back");
    // Only the named database is flushed.
    let reply = json_of(&ok(&pooler, &["flush", "gracefully", db, "-F", "json"]));
    assert_eq!((reply["Response"]["Marked"].as_i64(), reply["Response"]["Closed"].as_i64()), (Some(1), Some(0)));
    assert_eq!(postgres().backends_on(other), vec![elsewhere_pid], "another database's idle connection kept");
    let details = json_of(&ok(&pooler, &["status", "details", "-F", "json"]));
    let states: Vec<&str> = details["Response"]["Connections"]
        .as_array()
        .expect("Connections")
        .iter()
        .filter_map(|c| c["State"].as_str())
        .collect();
    assert!(states.contains(&"gracefully"), "{states:?}");
    // The session goes on, and its connection is closed when it ends.
    assert_eq!(first_value(&mut busy, "SELECT 1"), "1");
    assert_eq!(postgres().backends_on(db), vec![busy_pid]);
    drop(busy);
    pooler.wait_for(|| postgres().backends_on(db).is_empty(), "the flushed connection closed on return");
    // The pool makes a new one for the next client.
    let mut next = pooler.connect_to(db);
    assert_ne!(backend_pid(&mut next), busy_pid);
}

#[test]
fn flush_all_stops_the_sessions_using_connections() {
    let db = "mgmt_flush_all";
    let pooler = Pooler::start_on(db, "", String::new());
    let mut busy = pooler.connect_to(db);
    let busy_pid = backend_pid(&mut busy);
    let mut in_tx = pooler.connect_to(db);
    in_tx.batch_execute("BEGIN; SELECT 1").expect("begin");
    let reply = json_of(&ok(&pooler, &["flush", "all", "-F", "json"]));
    assert_eq!(reply["Response"]["Stopped"], 2, "{reply}");
    pooler.wait_for(|| postgres().backends_on(db).is_empty(), "every connection of the database closed");
    assert!(busy.query_one("SELECT 1", &[]).is_err(), "a flushed session ends");
    pooler.wait_for(|| pooler.status()["Response"]["TotalConnections"] == 0, "no slot left");
    let mut next = pooler.connect_to(db);
    assert_ne!(backend_pid(&mut next), busy_pid);
}

#[test]
fn graceful_flush_with_a_deadline_becomes_flush_all() {
    let db = "mgmt_flush_deadline";
    let pooler = Pooler::start_on(db, "", String::new());
    let mut busy = pooler.connect_to(db);
    backend_pid(&mut busy);
    ok(&pooler, &["flush", "gracefully", db, "--timeout", "1s"]);
    assert_eq!(postgres().backends_on(db).len(), 1, "kept until the deadline");
    pooler.wait_for(|| postgres().backends_on(db).is_empty(), "closed at the deadline");
    assert!(busy.query_one("SELECT 1", &[]).is_err());
}

#[test]
fn status_details_lists_connections_limits_and_databases() {
    let db = "mgmt_details";
    let limits = format!("{db} {MD5_USER} 3 0 0\n");
    let pooler = Pooler::start_on(db, "max_connections = 4\n", limits);
    let mut config = postgres::Config::new();
    config.host("127.0.0.1").port(pooler.port).user(MD5_USER).password(MD5_PASSWORD).dbname(db);
    let mut client = config.application_name("details-test").connect(postgres::NoTls).expect("connect");
    let pid = backend_pid(&mut client);
    let reply = json_of(&ok(&pooler, &["status", "details", "-F", "json"]));
    let r = &reply["Response"];
    assert_eq!(reply["Header"]["Command"], "status-details");
    let connections = r["Connections"].as_array().expect("Connections");
    assert_eq!(connections.len(), 4, "one entry per slot");
    let used: Vec<&Value> = connections.iter().filter(|c| c["State"] == "in_use").collect();
    assert_eq!(used.len(), 1, "{connections:?}");
    assert_eq!((used[0]["Database"].as_str(), used[0]["Username"].as_str()), (Some(db), Some(MD5_USER)));
    assert!(used[0]["PID"].as_i64().is_some_and(|p| p > 0) && used[0]["StartTime"].as_i64().is_some_and(|t| t > 0));
    for key in ["FD", "Timestamp"] {
        assert!(used[0].get(key).is_some(), "{key} missing: {}", used[0]);
    }
    assert_eq!(used[0]["AppName"], "details-test");
    let limit = &r["Limits"][0];
    assert_eq!((limit["Database"].as_str(), limit["ActiveConnections"].as_i64()), (Some(db), Some(1)));
    assert_eq!(limit["MaxConnections"], 3);
    assert_eq!(r["Databases"], serde_json::json!([{ "Database": "*", "Enabled": true }]));
    assert_eq!(r["Status"], "Running");
    let text = stdout(&ok(&pooler, &["status", "details"]));
    assert!(text.contains("Connections:") && text.contains("State: in_use"), "{text}");
    drop(client);
    let _ = pid;
}

#[test]
fn conf_ls_get_set_and_alias() {
    let db = "mgmt_conf";
    let limits = format!("{db}=mgmt_alias1,mgmt_alias2 {MD5_USER} 2 0 0\n");
    let pooler = Pooler::start_on(db, "idle_timeout = 30\n", limits);

    let ls = stdout(&ok(&pooler, &["conf", "ls"]));
    assert!(ls.starts_with(&format!("Main Configuration file:   {}\n", pooler.conf().display())), "{ls}");
    assert!(ls.contains("Limit file:") && ls.contains("pgagroal_databases.conf"), "{ls}");
    let ls = json_of(&ok(&pooler, &["conf", "ls", "-F", "json"]));
    assert_eq!(ls["Response"]["main_configuration_path"], pooler.conf().display().to_string());

    // Whole configuration, a section, and each key form.
    let whole = json_of(&ok(&pooler, &["conf", "get", "-F", "json"]));
    let r = &whole["Response"];
    assert_eq!(r["port"], pooler.port);
    assert_eq!(r["idle_timeout"], serde_json::json!({ "value": 30, "string_value": "30s" }));
    assert!(r["server"]["primary"].is_object() && r["limit"][db].is_object() && r["hba"]["all"].is_object());
    let get = |key: &str| stdout(&ok(&pooler, &["conf", "get", key])).trim_end().to_string();
    assert_eq!(get("idle_timeout"), "30s");
    assert_eq!(get("pgagroal.max_connections"), "8");
    assert_eq!(get("log_level"), "debug");
    assert_eq!(get("server.primary.port"), postgres().port.to_string());
    assert_eq!(get(&format!("limit.{db}.max_size")), "2");
    assert_eq!(get("hba.all.method"), "trust");
    let one = json_of(&ok(&pooler, &["conf", "get", "idle_timeout", "-F", "json"]));
    assert_eq!(one["Response"], serde_json::json!({ "idle_timeout": { "value": 30, "string_value": "30s" } }));
    let verbose = ok(&pooler, &["conf", "get", "max_connections", "-v"]);
    assert_eq!(stdout(&verbose), "max_connections = 8\n");
    let missing = pooler.cli(&["conf", "get", "no_such_key"]);
    assert_eq!((missing.status.code(), stdout(&missing).as_str()), (Some(1), "Error\n"));
    let missing = pooler.cli(&["conf", "get", "server.nowhere.port", "-F", "json"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(json_of(&missing)["Outcome"]["Status"], false);

    // A key the running pool takes; then one that needs a restart.
    let set = stdout(&ok(&pooler, &["conf", "set", "idle_timeout", "1m"]));
    assert!(set.starts_with("Configuration change applied successfully\n"), "{set}");
    assert!(set.contains("Old value: 30s") && set.contains("New value: 60s"), "{set}");
    assert_eq!(get("idle_timeout"), "60s");
    let restart = json_of(&ok(&pooler, &["conf", "set", "max_connections", "50", "-F", "json"]));
    assert_eq!(restart["Response"]["status"], "restart_required", "{restart}");
    assert_eq!(restart["Response"]["current_value"], "8");
    assert_eq!(get("max_connections"), "8");
    let bad = pooler.cli(&["conf", "set", "max_connectionz", "5"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stdout(&bad).starts_with("Configuration change failed"), "{}", stdout(&bad));
    let bad = pooler.cli(&["conf", "set", "idle_timeout", "soon"]);
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(get("idle_timeout"), "60s", "a bad value changes nothing");

    let alias = stdout(&ok(&pooler, &["conf", "alias"]));
    let row = alias.lines().nth(2).unwrap_or_default();
    assert!(row.starts_with(&format!("{db}=mgmt_alias1,mgmt_alias2")) && row.contains(MD5_USER), "{alias}");
    let alias = json_of(&ok(&pooler, &["conf", "alias", "-F", "json"]));
    assert_eq!(alias["Response"]["Databases"][db]["aliases"], serde_json::json!(["mgmt_alias1", "mgmt_alias2"]));
}

#[test]
fn conf_set_reaches_the_running_services() {
    let db = "mgmt_set_idle";
    let pooler = Pooler::start_on(db, "", String::new());
    let mut client = pooler.connect_to(db);
    backend_pid(&mut client);
    drop(client);
    pooler.wait_for(|| pooler.status()["Response"]["ActiveConnections"] == 0, "connection given back");
    assert_eq!(postgres().backends_on(db).len(), 1);
    // Turning the idle timeout on with `conf set` starts the service.
    ok(&pooler, &["conf", "set", "idle_timeout", "1"]);
    pooler.wait_for(|| postgres().backends_on(db).is_empty(), "the idle connection closed by the new timeout");
}

#[test]
fn shutdown_gracefully_with_a_deadline_stops_remaining_clients() {
    let mut pooler = Pooler::start(PoolerOptions::default());
    let mut client = pooler.connect(TRUST_USER);
    client.query_one("SELECT 1", &[]).expect("query");
    ok(&pooler, &["shutdown", "gracefully", "--timeout", "2"]);
    assert_eq!(pooler.wait_exit(Duration::from_millis(800)), None, "waits for the client first");
    assert_eq!(pooler.wait_exit(Duration::from_secs(15)), Some(0), "stopped at the deadline");
    assert!(client.query_one("SELECT 1", &[]).is_err());
}

#[test]
fn shutdown_cancel_keeps_the_pool_running() {
    let mut pooler = Pooler::start(PoolerOptions::default());
    let client = pooler.connect(TRUST_USER);
    ok(&pooler, &["shutdown"]);
    assert_eq!(pooler.status()["Response"]["Status"], "Graceful shutdown");
    ok(&pooler, &["shutdown", "cancel"]);
    assert_eq!(pooler.status()["Response"]["Status"], "Running");
    drop(client.close());
    assert_eq!(pooler.wait_exit(Duration::from_secs(1)), None);
    pooler.connect(TRUST_USER).query_one("SELECT 1", &[]).expect("new clients served again");
}

#[test]
fn clear_prometheus_and_bad_arguments() {
    let pooler = Pooler::start(PoolerOptions::default());
    ok(&pooler, &["clear", "prometheus"]);
    for args in
        [&["flush", "sometimes", "db"][..], &["conf", "get", "a.b.c.d"], &["conf", "set", "x"], &["status", "x"]]
    {
        let out = pooler.cli(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(!stderr(&out).is_empty(), "{args:?} says why");
    }
    let timeout = pooler.cli(&["shutdown", "--timeout", "soon"]);
    assert_eq!(timeout.status.code(), Some(1));
    assert_eq!(pooler.status()["Response"]["Status"], "Running");
}

/// One exchange on the management socket; the reply frame's document, or
/// None when the daemon closed the connection without one.
fn raw_exchange(pooler: &Pooler, bytes: &[u8]) -> Option<Value> {
    let mut s = UnixStream::connect(pooler.dir.path().join(".s.pgagroal")).expect("management socket");
    s.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    let _ = s.write_all(bytes);
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let len = u32::from_be_bytes(reply.get(2..6)?.try_into().ok()?) as usize;
    serde_json::from_slice(reply.get(6..6 + len)?).ok()
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[test]
fn malformed_management_frames_get_an_error_and_hurt_nothing() {
    let pooler = Pooler::start(PoolerOptions::default());
    let supervisor = pooler.pid();
    // A client that never finishes its frame does not hold up the others.
    let mut stalled = UnixStream::connect(pooler.dir.path().join(".s.pgagroal")).expect("connect");
    stalled.write_all(&[0, 0, 0, 0, 0, 100, b'{']).expect("partial frame");
    let bad_payload =
        |doc: Option<Value>| doc.is_some_and(|d| d["Outcome"]["Status"] == false && d["Outcome"]["Error"] == 1);
    assert!(bad_payload(raw_exchange(&pooler, &frame(b"not json"))), "garbage JSON");
    assert!(bad_payload(raw_exchange(&pooler, &[0, 0, 0xff, 0xff, 0xff, 0xff])), "huge length");
    assert!(bad_payload(raw_exchange(&pooler, &[0, 0, 0, 0, 0, 0])), "empty frame");
    assert!(bad_payload(raw_exchange(&pooler, &[9, 9, 0, 0, 0, 2, b'{', b'}'])), "unknown compression");
    let unknown = raw_exchange(&pooler, &frame(br#"{"Header":{"Command":999},"Request":{}}"#));
    assert_eq!(unknown.map(|d| d["Outcome"]["Error"].clone()), Some(Value::from(2)), "unknown command");
    let no_header = raw_exchange(&pooler, &frame(br#"[1,2,3]"#));
    assert_eq!(no_header.map(|d| d["Outcome"]["Status"].clone()), Some(Value::Bool(false)));
    let wrong_types = raw_exchange(&pooler, &frame(br#"{"Header":{"Command":8},"Request":{"Mode":"x","Database":7}}"#));
    assert!(wrong_types.is_some(), "a flush with wrong field types gets a reply");
    // A connection closed mid-frame.
    drop(UnixStream::connect(pooler.dir.path().join(".s.pgagroal")).map(|mut s| s.write_all(&[0, 0, 0])));
    assert_eq!(pooler.status()["Response"]["Status"], "Running");
    assert_eq!(pooler.pid(), supervisor);
    pooler.connect(TRUST_USER).query_one("SELECT 1", &[]).expect("clients still served");
    drop(stalled);
}

#[test]
fn reload_applies_hba_and_a_bad_reload_changes_nothing() {
    let pooler = Pooler::start(PoolerOptions::default());
    let hba = pooler.dir.path().join("pgagroal_hba.conf");
    assert!(hba.exists(), "the harness writes pgagroal_hba.conf in the daemon directory");
    std::fs::write(&hba, format!("host all {MD5_USER} all reject\nhost all all all trust\n")).expect("hba");
    give_to_daemon(&hba);
    pooler.signal(libc::SIGHUP);
    pooler.wait_for(
        || pooler.cli(&["conf", "get", &format!("hba.{MD5_USER}.method")]).stdout == b"reject\n",
        "hba reloaded",
    );
    pooler.connect(TRUST_USER).query_one("SELECT 1", &[]).expect("other users still served");
    // An invalid file: the reload fails, says why, and keeps what runs.
    std::fs::write(&hba, "host all all all sometimes\n").expect("hba");
    let out = pooler.cli(&["conf", "reload"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("sometimes"), "{}", stdout(&out));
    assert_eq!(stdout(&ok(&pooler, &["conf", "get", &format!("hba.{MD5_USER}.method")])), "reject\n");
}

#[test]
fn process_titles_show_each_actor() {
    let db = "mgmt_titles";
    let pooler = Pooler::start_on(db, "idle_timeout = 60\n", String::new());
    assert_eq!(cmdline(pooler.pid()), "pgagroal: main");
    let service = pooler.wait_for_service("idle");
    assert_eq!(cmdline(service), "pgagroal: idle");
    let mut client = pooler.connect_to(db);
    let worker = pooler.worker_serving(backend_pid(&mut client));
    let expected = format!("pgagroal: {MD5_USER}@127.0.0.1:{}/{db}", postgres().port);
    assert_eq!(cmdline(worker), expected);
    drop(client);
    pooler.wait_for(|| cmdline(worker) == "pgagroal: worker", "the worker's title after its client left");

    let quiet = Pooler::start_on("mgmt_titles_off", "update_process_title = never\n", String::new());
    assert!(cmdline(quiet.pid()).contains("pgagroal.conf"), "{}", cmdline(quiet.pid()));
}
