//! Reloads while clients are busy: the limits file, a service's timeout,
//! `log_level` and the hba file change under load. Each change shows in `conf get` and in
//! what new clients get, the busy clients see no error, and a reload whose
//! file is broken changes nothing.

mod common;

use common::load::Load;
use common::*;
use std::time::Duration;

fn get(pooler: &Pooler, key: &str) -> String {
    let out = pooler.cli(&["conf", "get", key]);
    assert!(out.status.success(), "conf get {key}: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

fn reload(pooler: &Pooler) -> serde_json::Value {
    let out = pooler.cli(&["conf", "reload", "-F", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("conf reload: {e}\n{}", pooler.log()))
}

fn rewrite(path: &std::path::Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("read");
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replace(from, to)).expect("write");
}

fn try_connect(pooler: &Pooler, db: &str) -> Result<postgres::Client, postgres::Error> {
    let mut config = postgres::Config::new();
    config.host("127.0.0.1").port(pooler.port).user(MD5_USER).password(MD5_PASSWORD).dbname(db);
    config.connect_timeout(Duration::from_secs(20));
    config.connect(postgres::NoTls)
}

#[test]
fn limits_a_service_timeout_and_hba_reload_under_load() {
    let db = "reload_load";
    postgres().database(db);
    let mut pooler = Pooler::start(PoolerOptions {
        blocking_timeout: "1s",
        extra: "idle_timeout = 600\n".into(),
        hba: format!("host {db} {MD5_USER} 127.0.0.1/32 trust\nhost all all all trust\n"),
        users: vec![(MD5_USER, MD5_PASSWORD)],
        limits: format!("{db} {MD5_USER} 2\n"),
        ..Default::default()
    });
    let load = Load::start(&pooler, db, 1);

    // Limits: one session besides the load fits under max_size 2, a second
    // one waits out blocking_timeout and is refused.
    let second = pooler.connect_to(db);
    let refused = try_connect(&pooler, db).err().and_then(|e| e.as_db_error().map(|d| d.code().code().to_string()));
    assert_eq!(refused.as_deref(), Some("53300"), "a third connection under max_size 2");
    let limits = pooler.vault_flags.iter().find(|(flag, _)| *flag == "-l").map(|(_, p)| p.clone()).expect("limits");
    rewrite(&limits, &format!("{db} {MD5_USER} 2"), &format!("{db} {MD5_USER} 3"));
    // And a service's timeout, in the same reload.
    rewrite(&pooler.conf(), "idle_timeout = 600", "idle_timeout = 1");
    rewrite(&pooler.conf(), "log_level = debug", "log_level = info");
    assert!(pooler.log().contains(" DEBUG "), "log_level = debug writes debug lines");
    let reply = reload(&pooler);
    assert_eq!((&reply["Outcome"]["Status"], &reply["Response"]["Restart"]), (&true.into(), &false.into()), "{reply}");
    let after_reload = pooler.log().len();
    assert_eq!(get(&pooler, &format!("limit.{db}.max_size")), "3");
    assert_eq!(get(&pooler, "idle_timeout"), "1s");
    assert_eq!(get(&pooler, "log_level"), "info");
    let mut third = try_connect(&pooler, db).unwrap_or_else(|e| panic!("max_size 3 after the reload: {e}"));
    assert_eq!(first_value(&mut third, "SELECT 1"), "1");
    // A new worker and a new server connection: nothing of them at debug
    // level any more, from the supervisor or the worker forked after the
    // reload (workers forked before it keep their level until they exit).
    let worker = pooler.worker_serving(backend_pid(&mut third));
    let since = pooler.log().get(after_reload..).unwrap_or_default().to_string();
    let mine = format!("pid={worker}");
    let debug: Vec<&str> = since
        .lines()
        .filter(|l| l.contains(" DEBUG ") && (l.contains("actor=supervisor") || l.contains(&mine)))
        .collect();
    assert!(debug.is_empty(), "debug lines after log_level = info:\n{}", debug.join("\n"));

    // The idle service now closes a connection given back a second ago; the
    // load's connection, in use, stays.
    let idle = backend_pid(&mut third);
    drop(third);
    pooler.wait_for(|| !postgres().backends_on(db).contains(&idle), "the idle connection closed after the reload");

    // hba: the line for this database now rejects; the busy clients stay.
    rewrite(
        &pooler.dir.path().join("pgagroal_hba.conf"),
        &format!("host {db} {MD5_USER} 127.0.0.1/32 trust"),
        &format!("host {db} {MD5_USER} 127.0.0.1/32 reject"),
    );
    let reply = reload(&pooler);
    assert_eq!(reply["Outcome"]["Status"], true, "{reply}");
    assert_eq!(get(&pooler, &format!("hba.{MD5_USER}.method")), "reject");
    let refused = try_connect(&pooler, db).err().and_then(|e| e.as_db_error().map(|d| d.code().code().to_string()));
    assert_eq!(refused.as_deref(), Some("28000"), "a new client after hba rejects it");
    let mut other = pooler.connect_to(DATABASE);
    assert_eq!(first_value(&mut other, "SELECT 1"), "1");

    // A broken limits file: nothing changes, and the reply says why.
    std::fs::write(&limits, format!("{db} {MD5_USER}\n")).expect("limits");
    let reply = reload(&pooler);
    assert_eq!(reply["Outcome"]["Status"], false, "{reply}");
    assert!(reply["Response"]["Error"].as_str().unwrap_or_default().contains("line 1"), "{reply}");
    assert_eq!(get(&pooler, &format!("limit.{db}.max_size")), "3");
    assert_eq!(get(&pooler, &format!("hba.{MD5_USER}.method")), "reject");

    drop(second);
    load.finish(&pooler);
    assert!(pooler.cli(&["shutdown", "immediate"]).status.success());
    assert_eq!(pooler.wait_exit(Duration::from_secs(20)), Some(0), "{}", pooler.log());
}
