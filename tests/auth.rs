//! Client authentication and access rules through the real daemon: hba
//! methods and line types, the users vault, pass-through, and configuration
//! reloads reaching every worker.

mod common;

use common::*;
use std::time::Duration;

/// A `reject` line added by a reload refuses the next client, whichever
/// worker serves it: spare workers forked before the reload, workers that
/// served clients before it, and the worker of a session that was open
/// across it.
#[test]
fn reload_reaches_every_worker() {
    let pooler = Pooler::start(PoolerOptions { max_connections: 4, ..Default::default() });
    // Several recycled workers that have served a client each.
    let clients: Vec<_> = (0..3).map(|_| pooler.connect(TRUST_USER)).collect();
    drop(clients);
    pooler.wait_idle();
    // A session that stays open across the reload.
    let mut open = pooler.connect(TRUST_USER);
    open.query_one("SELECT 1", &[]).expect("open session");
    let busy_workers = pooler.workers();

    std::fs::write(
        pooler.dir.path().join("pgagroal_hba.conf"),
        format!("host all {TRUST_USER} all reject\nhost all all all trust\n"),
    )
    .expect("rewrite hba");
    let out = pooler.cli(&["conf", "reload"]);
    assert!(out.status.success(), "conf reload: {}", String::from_utf8_lossy(&out.stdout));

    for attempt in 0..6 {
        let err = connect_err(&pooler.url(TRUST_USER, None));
        assert_eq!(code_of(&err).as_deref(), Some("28000"), "attempt {attempt}: {err}");
        assert!(message_of(&err).contains("rejects"), "attempt {attempt}: {}", message_of(&err));
    }
    // The open session is not cut, and its worker leaves with its client
    // rather than serving anyone under the old rules.
    open.query_one("SELECT 2", &[]).expect("the open session goes on");
    drop(open);
    assert!(
        eventually(Duration::from_secs(10), || pooler.workers().iter().all(|w| !busy_workers.contains(w))),
        "workers forked before the reload are still alive: {:?} of {busy_workers:?}",
        pooler.workers()
    );
    let err = connect_err(&pooler.url(TRUST_USER, None));
    assert_eq!(code_of(&err).as_deref(), Some("28000"), "{err}");
    // Other users still match the trust line.
    pooler.connect("postgres").query_one("SELECT 1", &[]).expect("other users are still admitted");
}

/// A reload that cannot read its files says so and keeps the running rules.
#[test]
fn failed_reload_keeps_the_running_configuration() {
    let pooler = Pooler::start(PoolerOptions::default());
    std::fs::write(pooler.dir.path().join("pgagroal_hba.conf"), "host all all 10.0.0.0/99 trust\n").expect("hba");
    let out = pooler.cli(&["conf", "reload", "-F", "json"]);
    assert!(!out.status.success(), "a broken hba file must fail the reload");
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(reply["Outcome"]["Status"], false);
    let reason = reply["Response"]["Error"].as_str().unwrap_or_default();
    assert!(reason.contains("pgagroal_hba.conf") && reason.contains("line 1"), "{reply}");
    pooler.connect(TRUST_USER).query_one("SELECT 1", &[]).expect("still serving with the old rules");
}
