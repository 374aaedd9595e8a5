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

// ---------------------------------------------------------------------------
// The users vault: the pooler checks clients itself and logs in with the
// stored password.

const VAULT: [(&str, &str); 3] =
    [(SCRAM_USER, SCRAM_PASSWORD), (MD5_USER, MD5_PASSWORD), (TRUST_USER, "trust user pool password")];

fn vault_pooler(hba: &str, extra: &str) -> Pooler {
    Pooler::start(PoolerOptions {
        hba: hba.to_string(),
        extra: extra.to_string(),
        users: VAULT.to_vec(),
        ..Default::default()
    })
}

/// The code of the first authentication request the pooler makes of `user`.
fn first_request(pooler: &Pooler, user: &str) -> i32 {
    wire::Raw::start(pooler.port, user, DATABASE).auth_request().0
}

fn current_user(pooler: &Pooler, user: &str, password: &str) -> Result<String, postgres::Error> {
    let mut client = postgres::Client::connect(&pooler.url(user, Some(password)), postgres::NoTls)?;
    Ok(client.query_one("SELECT current_user::text", &[])?.get(0))
}

fn assert_wrong_password(result: Result<String, postgres::Error>, user: &str) {
    let err = result.expect_err("a wrong password must be refused");
    assert_eq!(code_of(&err).as_deref(), Some("28P01"), "{err}");
    assert_eq!(message_of(&err), format!("password authentication failed for user \"{user}\""));
}

#[test]
fn vault_users_under_every_password_method() {
    for (method, code) in [("password", 3), ("md5", 5), ("scram-sha-256", 10)] {
        let pooler = vault_pooler(&format!("host all all all {method}\n"), "");
        for (user, password) in VAULT {
            assert_eq!(first_request(&pooler, user), code, "{method} for {user}");
            assert_eq!(current_user(&pooler, user, password).expect("right password"), user, "{method}");
            assert_wrong_password(current_user(&pooler, user, "not the password"), user);
        }
    }
}

#[test]
fn hba_all_asks_what_the_server_asks_and_trust_asks_nothing() {
    let pooler = vault_pooler("host all all all all\n", "");
    // PostgreSQL asks SCRAM of scram_user, md5 of md5_user and nothing of
    // trust_user (the test cluster's pg_hba.conf).
    assert_eq!(first_request(&pooler, SCRAM_USER), 10);
    assert_eq!(first_request(&pooler, MD5_USER), 5);
    assert_eq!(first_request(&pooler, TRUST_USER), 0);
    assert_eq!(current_user(&pooler, SCRAM_USER, SCRAM_PASSWORD).expect("scram"), SCRAM_USER);
    assert_wrong_password(current_user(&pooler, SCRAM_USER, "nope"), SCRAM_USER);
    assert_eq!(current_user(&pooler, MD5_USER, MD5_PASSWORD).expect("md5"), MD5_USER);
    assert_wrong_password(current_user(&pooler, MD5_USER, "nope"), MD5_USER);

    let pooler = vault_pooler(&format!("host all {SCRAM_USER} all trust\nhost all {MD5_USER} all reject\n"), "");
    assert_eq!(first_request(&pooler, SCRAM_USER), 0, "trust asks nothing");
    assert_eq!(current_user(&pooler, SCRAM_USER, "whatever").expect("trust"), SCRAM_USER);
    let err = current_user(&pooler, MD5_USER, MD5_PASSWORD).expect_err("reject");
    assert_eq!(code_of(&err).as_deref(), Some("28000"), "{err}");
}

#[test]
fn line_types_host_hostssl_hostnossl_local() {
    let pooler = vault_pooler(
        &format!(
            "hostssl all {MD5_USER} all md5\nhostnossl all {SCRAM_USER} 127.0.0.1/32 scram-sha-256\n\
             local all all password\nhost all {TRUST_USER} 127.0.0.1/32 md5\n"
        ),
        "",
    );
    // hostssl: a plain client matches no line.
    let err = current_user(&pooler, MD5_USER, MD5_PASSWORD).expect_err("hostssl refuses plain clients");
    assert_eq!(code_of(&err).as_deref(), Some("28000"), "{err}");
    assert!(message_of(&err).contains("no pgagroal_hba.conf entry"), "{}", message_of(&err));
    // hostnossl and host over TCP.
    assert_eq!(current_user(&pooler, SCRAM_USER, SCRAM_PASSWORD).expect("hostnossl"), SCRAM_USER);
    assert_wrong_password(current_user(&pooler, SCRAM_USER, "x"), SCRAM_USER);
    assert_eq!(current_user(&pooler, TRUST_USER, VAULT[2].1).expect("host"), TRUST_USER);
    // local: the Unix socket, where the password line applies to everyone.
    let unix = |user: &str, password: &str| {
        let url = format!(
            "host={} port={} user={user} dbname={DATABASE} password='{password}'",
            pooler.dir.path().display(),
            pooler.port
        );
        postgres::Client::connect(&url, postgres::NoTls)
            .and_then(|mut c| c.query_one("SELECT current_user::text", &[]))
            .map(|row| row.get::<_, String>(0))
    };
    assert_eq!(unix(MD5_USER, MD5_PASSWORD).expect("local"), MD5_USER);
    assert_wrong_password(unix(MD5_USER, "x"), MD5_USER);
}

#[test]
fn vault_scram_connections_are_pooled_across_clients() {
    let pooler = vault_pooler("host all all all scram-sha-256\n", "");
    let backend = |password: &str| -> Result<i32, postgres::Error> {
        let mut c = postgres::Client::connect(&pooler.url(SCRAM_USER, Some(password)), postgres::NoTls)?;
        Ok(c.query_one("SELECT pg_backend_pid()", &[])?.get(0))
    };
    let first = backend(SCRAM_PASSWORD).expect("first client");
    pooler.wait_idle();
    let second = backend(SCRAM_PASSWORD).expect("second client");
    assert_eq!(first, second, "the second scram client should get the pooled backend");
    pooler.wait_idle();
    let err = backend("wrong").expect_err("wrong password");
    assert_eq!(code_of(&err).as_deref(), Some("28P01"), "{err}");
    assert_eq!(backend(SCRAM_PASSWORD).expect("third client"), first, "a refused client must not cost the pool");
}

/// Nonces of lengths libpq never sends, from the pooler's own SCRAM client
/// over a raw socket.
#[test]
fn any_client_nonce_length_logs_in() {
    let pooler = vault_pooler("host all all all scram-sha-256\n", "");
    for nonce in ["x".to_string(), "a".repeat(32), "Zz9~!".repeat(40)] {
        let mut raw = wire::Raw::start(pooler.port, SCRAM_USER, DATABASE);
        let server_first =
            raw.scram(SCRAM_PASSWORD, &nonce).unwrap_or_else(|e| panic!("nonce of {}: {e}", nonce.len()));
        assert!(server_first.starts_with(&format!("r={nonce}")), "{server_first}");
        raw.until_ready().expect("ready");
        assert_eq!(raw.query_one("SELECT current_user"), SCRAM_USER);
    }
}

#[test]
fn frontend_passwords_replace_the_vault_password_toward_clients() {
    let pooler = Pooler::start(PoolerOptions {
        hba: "host all all all scram-sha-256\n".into(),
        users: VAULT.to_vec(),
        frontend_users: vec![(SCRAM_USER, "the client-facing password")],
        ..Default::default()
    });
    assert_eq!(current_user(&pooler, SCRAM_USER, "the client-facing password").expect("frontend"), SCRAM_USER);
    assert_wrong_password(current_user(&pooler, SCRAM_USER, SCRAM_PASSWORD), SCRAM_USER);
    // Users without a frontend password keep their vault one.
    assert_eq!(current_user(&pooler, MD5_USER, MD5_PASSWORD).expect("vault"), MD5_USER);
}

// ---------------------------------------------------------------------------
// Pass-through: users not in the vault.

#[test]
fn pass_through_md5_is_replayed_for_the_next_client() {
    let pooler = Pooler::start(PoolerOptions { hba: "host all all all md5\n".into(), ..Default::default() });
    let backend = |password: &str| -> Result<i32, postgres::Error> {
        let mut c = postgres::Client::connect(&pooler.url(MD5_USER, Some(password)), postgres::NoTls)?;
        Ok(c.query_one("SELECT pg_backend_pid()", &[])?.get(0))
    };
    let first = backend(MD5_PASSWORD).expect("first md5 client");
    pooler.wait_idle();
    assert_eq!(backend(MD5_PASSWORD).expect("second md5 client"), first, "md5 pass-through is pooled");
    pooler.wait_idle();
    let err = backend("wrong").expect_err("wrong password on a pooled connection");
    assert_eq!(code_of(&err).as_deref(), Some("28P01"), "{err}");
    // The refused client's worker gives the connection back after telling
    // it: wait for that, or the next client finds it still taken.
    pooler.wait_idle();
    assert_eq!(backend(MD5_PASSWORD).expect("after a refusal"), first);
    // The server's own check for a new connection: a wrong password there
    // is PostgreSQL's 28P01.
    let err = current_user(&pooler, SCRAM_USER, "wrong").expect_err("server-checked");
    assert_eq!(code_of(&err).as_deref(), Some("28P01"), "{err}");
}

#[test]
fn pass_through_scram_is_never_given_to_another_client() {
    let pooler = Pooler::start(PoolerOptions { hba: "host all all all scram-sha-256\n".into(), ..Default::default() });
    let backend = || -> i32 {
        let mut c = postgres::Client::connect(&pooler.url(SCRAM_USER, Some(SCRAM_PASSWORD)), postgres::NoTls)
            .unwrap_or_else(|e| panic!("scram pass-through: {e}\n{}", pooler.log()));
        c.query_one("SELECT pg_backend_pid()", &[]).expect("pid").get(0)
    };
    let first = backend();
    pooler.wait_idle();
    assert_ne!(backend(), first, "a SCRAM pass-through connection cannot be replayed to another client");
    assert_wrong_password(current_user(&pooler, SCRAM_USER, "wrong"), SCRAM_USER);
}

#[test]
fn pass_through_holds_the_hba_method_even_when_the_server_asks_less() {
    let pooler = Pooler::start(PoolerOptions { hba: "host all all all scram-sha-256\n".into(), ..Default::default() });
    // trust_user: PostgreSQL asks nothing; md5_user: PostgreSQL asks md5.
    for (user, password) in [(TRUST_USER, "anything"), (MD5_USER, MD5_PASSWORD)] {
        let err = current_user(&pooler, user, password).expect_err("the server asks less than scram-sha-256");
        assert_eq!(code_of(&err).as_deref(), Some("28000"), "{user}: {err}");
        assert!(message_of(&err).contains("cannot check itself"), "{}", message_of(&err));
    }
}

// ---------------------------------------------------------------------------
// Unknown users when they are not allowed.

#[test]
fn unknown_users_get_a_mock_exchange_like_a_wrong_password() {
    let pooler = vault_pooler("host all all all scram-sha-256\n", "allow_unknown_users = off");
    let probe = |user: &str, password: &str| -> (String, Option<String>, Option<String>) {
        let mut raw = wire::Raw::start(pooler.port, user, DATABASE);
        let (code, mechanisms) = raw.auth_request();
        assert_eq!((code, mechanisms.as_slice()), (10, &b"SCRAM-SHA-256\0\0"[..]), "{user}");
        let mut client = pgagroal::auth::ScramClient::new(password, "fixed-client-nonce");
        raw.send(&pgagroal::auth::sasl::sasl_initial_response("SCRAM-SHA-256", Some(&client.client_first())));
        let (code, server_first) = raw.auth_request();
        assert_eq!(code, 11, "{user}");
        let client_final = client.server_first(&server_first).expect("well-formed server-first");
        raw.send(&pgagroal::auth::sasl::sasl_response(&client_final));
        let error = raw.read();
        let (code, message) = match &error {
            Some((b'E', body)) => (wire::field(body, b'C'), wire::field(body, b'M')),
            other => panic!("{user}: expected an error, got {other:?}"),
        };
        (String::from_utf8_lossy(&server_first).into_owned(), code, message)
    };
    let (ghost, code, message) = probe("ghost", "guess");
    assert_eq!(code.as_deref(), Some("28P01"));
    assert_eq!(message.as_deref(), Some("password authentication failed for user \"ghost\""));
    let (real, real_code, real_message) = probe(SCRAM_USER, "guess");
    assert_eq!(real_code.as_deref(), Some("28P01"));
    assert_eq!(real_message, Some(format!("password authentication failed for user \"{SCRAM_USER}\"")));
    let (ghost_salt, ghost_iterations) = wire::salt_and_iterations(&ghost);
    let (real_salt, real_iterations) = wire::salt_and_iterations(&real);
    assert_eq!(ghost_iterations, real_iterations);
    assert_eq!(ghost_salt.len(), real_salt.len(), "salts of the same length");
    // Stable per user, as a real user's is; different between users.
    assert_eq!(wire::salt_and_iterations(&probe("ghost", "again").0).0, ghost_salt);
    assert_eq!(wire::salt_and_iterations(&probe(SCRAM_USER, "again").0).0, real_salt);
    assert_ne!(wire::salt_and_iterations(&probe("phantom", "x").0).0, ghost_salt);
    // And the real user with the right password gets in.
    assert_eq!(current_user(&pooler, SCRAM_USER, SCRAM_PASSWORD).expect("real user"), SCRAM_USER);
}

#[test]
fn unknown_users_on_a_trust_line_are_refused_when_not_allowed() {
    let pooler = vault_pooler("host all all all trust\n", "allow_unknown_users = off");
    let err = current_user(&pooler, "postgres", "x").expect_err("unknown user");
    assert_eq!(code_of(&err).as_deref(), Some("28000"), "{err}");
    assert_eq!(message_of(&err), "role \"postgres\" does not exist");
    assert_eq!(current_user(&pooler, SCRAM_USER, "").expect("known user on trust"), SCRAM_USER);
}

// ---------------------------------------------------------------------------
// auth_query: secrets fetched by the superuser; the pooler logs in with the
// ClientKey the client's proof yields.

#[test]
fn auth_query_checks_against_the_servers_verifier_and_pools() {
    let pooler = Pooler::start(PoolerOptions {
        hba: "host all all all scram-sha-256\n".into(),
        extra: "auth_query = on".into(),
        superuser: Some(("postgres", "superuser password is not asked by the test cluster")),
        ..Default::default()
    });
    let backend = |password: &str| -> Result<i32, postgres::Error> {
        let mut c = postgres::Client::connect(&pooler.url(SCRAM_USER, Some(password)), postgres::NoTls)?;
        Ok(c.query_one("SELECT pg_backend_pid()", &[])?.get(0))
    };
    let first = backend(SCRAM_PASSWORD).unwrap_or_else(|e| panic!("auth_query login: {e}\n{}", pooler.log()));
    pooler.wait_idle();
    assert_eq!(backend(SCRAM_PASSWORD).expect("second client"), first, "auth_query connections are pooled");
    let err = backend("wrong").expect_err("wrong password");
    assert_eq!(code_of(&err).as_deref(), Some("28P01"), "{err}");
    // A user that does not exist gets the same answer.
    let err = current_user(&pooler, "no_such_role", "x").expect_err("no such role");
    assert_eq!(code_of(&err).as_deref(), Some("28P01"), "{err}");
    assert!(!pooler.log().contains("superuser password is not asked"), "a password reached the log");

    // md5 and all lines are served with SCRAM for a SCRAM verifier, as
    // PostgreSQL serves md5 lines, and with md5 for an md5 hash.
    for method in ["md5", "all"] {
        let pooler = Pooler::start(PoolerOptions {
            hba: format!("host all all all {method}\n"),
            extra: "auth_query = on".into(),
            superuser: Some(("postgres", "unused")),
            ..Default::default()
        });
        assert_eq!(first_request(&pooler, SCRAM_USER), 10, "{method}: a SCRAM verifier");
        assert_eq!(first_request(&pooler, MD5_USER), 5, "{method}: an md5 hash");
        assert_eq!(current_user(&pooler, SCRAM_USER, SCRAM_PASSWORD).expect("scram verifier"), SCRAM_USER);
        assert_eq!(current_user(&pooler, MD5_USER, MD5_PASSWORD).expect("md5 hash"), MD5_USER);
        assert_wrong_password(current_user(&pooler, MD5_USER, "wrong"), MD5_USER);
    }
}

// ---------------------------------------------------------------------------
// authentication_timeout at each step.

fn assert_timed_out(raw: &mut wire::Raw, step: &str) {
    let started = std::time::Instant::now();
    match raw.read() {
        Some((b'E', body)) => {
            assert_eq!(wire::field(&body, b'C').as_deref(), Some("57014"), "{step}");
            assert_eq!(wire::field(&body, b'M').as_deref(), Some("canceling authentication due to timeout"), "{step}");
        }
        other => panic!("{step}: expected the timeout error, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10), "{step}: took {:?}", started.elapsed());
    assert!(raw.read().is_none(), "{step}: the connection must be closed after the timeout");
}

#[test]
fn authentication_timeout_ends_a_stalled_client_at_every_step() {
    let pooler = vault_pooler("host all all all scram-sha-256\n", "authentication_timeout = 2");
    // Before the startup packet.
    let mut silent = wire::Raw { stream: std::net::TcpStream::connect(("127.0.0.1", pooler.port)).expect("connect") };
    silent.stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    assert_timed_out(&mut silent, "startup packet");
    // After the SASL request, before SASLInitialResponse.
    let mut raw = wire::Raw::start(pooler.port, SCRAM_USER, DATABASE);
    assert_eq!(raw.auth_request().0, 10);
    assert_timed_out(&mut raw, "SASLInitialResponse");
    // After server-first, before client-final.
    let mut raw = wire::Raw::start(pooler.port, SCRAM_USER, DATABASE);
    assert_eq!(raw.auth_request().0, 10);
    let client = pgagroal::auth::ScramClient::new(SCRAM_PASSWORD, "nonce-of-the-stalled-client");
    raw.send(&pgagroal::auth::sasl::sasl_initial_response("SCRAM-SHA-256", Some(&client.client_first())));
    assert_eq!(raw.auth_request().0, 11);
    assert_timed_out(&mut raw, "SASLResponse");
    let log = pooler.log();
    assert!(log.matches("authentication timeout").count() >= 3, "each timeout is logged:\n{log}");
    // Nothing was leaked: the pool is idle and serves.
    pooler.wait_idle();
    assert_eq!(current_user(&pooler, SCRAM_USER, SCRAM_PASSWORD).expect("after the timeouts"), SCRAM_USER);

    // A pass-through client stalling on the server's md5 request: the
    // server connection being made for it is not kept.
    let pooler = Pooler::start(PoolerOptions {
        hba: "host all all all md5\n".into(),
        extra: "authentication_timeout = 2".into(),
        ..Default::default()
    });
    let mut raw = wire::Raw::start(pooler.port, MD5_USER, DATABASE);
    assert_eq!(raw.auth_request().0, 5, "the server's md5 request, relayed");
    assert_timed_out(&mut raw, "pass-through password");
    assert!(pooler.log().contains("authentication timeout"), "{}", pooler.log());
    pooler.wait_idle();
    assert_eq!(pooler.status()["Response"]["TotalConnections"], 0, "the half-made connection was terminated");
    assert_eq!(current_user(&pooler, MD5_USER, MD5_PASSWORD).expect("after the timeout"), MD5_USER);
}

#[test]
fn passwords_never_reach_the_log() {
    let pooler = vault_pooler("host all all all md5\n", "log_level = debug5");
    let _ = current_user(&pooler, MD5_USER, MD5_PASSWORD);
    let _ = current_user(&pooler, SCRAM_USER, "a wrong guess 1234");
    let _ = current_user(&pooler, "postgres", "pass-through guess 5678");
    let log = pooler.log();
    for secret in [MD5_PASSWORD, SCRAM_PASSWORD, "a wrong guess 1234", "pass-through guess 5678", MASTER_PASSPHRASE] {
        assert!(!log.contains(secret), "'{secret}' is in the log:\n{log}");
    }
}
