//! TLS through the real daemon: psql (libpq) negotiating TLS with the pooler
//! (sslmode require and verify-full against a CA made here), client
//! certificates required and refused, hostssl and hostnossl, and the pooler
//! speaking TLS to a PostgreSQL started with ssl = on.

mod common;

use common::certs::{Pem, TestCa};
use common::*;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

/// The certificates of this test binary.
struct Pki {
    _dir: tempfile::TempDir,
    ca: TestCa,
    /// A CA nobody trusts.
    stranger: TestCa,
    /// The pooler's certificate (localhost, 127.0.0.1), its key owned by the
    /// daemon's account.
    pooler: Pem,
    /// A client certificate for trust_user, signed by `ca`; root's key.
    client: Pem,
    /// A client certificate signed by `stranger`.
    forged: Pem,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = daemon_dir();
        let ca = TestCa::new(dir.path(), "ca");
        let stranger = TestCa::new(dir.path(), "stranger");
        let pooler = ca.issue(dir.path(), "pooler", &["localhost", "127.0.0.1"]);
        give_to_daemon(&pooler.key);
        let client = ca.issue(dir.path(), "client", &[TRUST_USER]);
        let forged = stranger.issue(dir.path(), "forged", &[TRUST_USER]);
        Pki { _dir: dir, ca, stranger, pooler, client, forged }
    })
}

/// The test cluster with ssl = on, its certificate signed by the test CA.
fn postgres_with_ssl() -> &'static Postgres {
    static DONE: OnceLock<()> = OnceLock::new();
    let pg = postgres();
    DONE.get_or_init(|| {
        let server = pki().ca.issue(&pg.dir, "postgres-server", &["localhost", "127.0.0.1"]);
        // PostgreSQL runs as the daemon's account and wants its key 0600.
        give_to_daemon(&server.key);
        pg.psql(&format!("ALTER SYSTEM SET ssl_cert_file = '{}'", server.cert.display()));
        pg.psql(&format!("ALTER SYSTEM SET ssl_key_file = '{}'", server.key.display()));
        pg.psql("ALTER SYSTEM SET ssl = on");
        pg.psql("SELECT pg_reload_conf()");
        let direct = || {
            Command::new(pg.bin("psql"))
                .args(["-h", "127.0.0.1", "-p", &pg.port.to_string(), "-U", "postgres", "-d", "postgres", "-X"])
                .args(["-A", "-t", "-c", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"])
                .env("PGSSLMODE", "require")
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "t")
        };
        assert!(eventually(Duration::from_secs(10), direct), "PostgreSQL did not turn ssl on");
    });
    pg
}

fn tls_pooler(hba: &str, extra: &str, server_extra: &str) -> Pooler {
    let pki = pki();
    Pooler::start(PoolerOptions {
        hba: hba.into(),
        extra: format!(
            "tls = on\ntls_cert_file = {}\ntls_key_file = {}\n{extra}",
            pki.pooler.cert.display(),
            pki.pooler.key.display()
        ),
        server_extra: server_extra.into(),
        ..Default::default()
    })
}

/// psql through the pooler with these libpq settings (`sslmode=...` etc.).
fn psql(pooler: &Pooler, host: &str, settings: &[(&str, String)], sql: &str) -> Output {
    let mut conninfo =
        format!("host={host} port={} user={TRUST_USER} dbname={DATABASE} connect_timeout=10", pooler.port);
    for (key, value) in settings {
        conninfo.push_str(&format!(" {key}={value}"));
    }
    Command::new(postgres().bin("psql"))
        .arg(conninfo)
        .args(["-X", "-A", "-t", "-c", sql])
        .env_remove("PGSSLMODE")
        .output()
        .expect("psql")
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "psql failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "psql was expected to fail: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn psql_negotiates_tls_with_require_and_verify_full() {
    let pki = pki();
    let pooler = tls_pooler("hostssl all all all trust\n", "", "");
    let conninfo = ok(&psql(&pooler, "127.0.0.1", &[("sslmode", "require".into())], "\\conninfo"));
    assert!(conninfo.contains("SSL connection"), "{conninfo}");
    let verify = [("sslmode", "verify-full".to_string()), ("sslrootcert", pki.ca.cert.display().to_string())];
    assert_eq!(ok(&psql(&pooler, "localhost", &verify, "SELECT current_user")), TRUST_USER);
    // The pooler's certificate does not name this host, or comes from a CA
    // the client does not trust.
    let elsewhere = [
        ("sslmode", "verify-full".to_string()),
        ("sslrootcert", pki.ca.cert.display().to_string()),
        ("hostaddr", "127.0.0.1".to_string()),
    ];
    let err = failed(&psql(&pooler, "db.example.org", &elsewhere, "SELECT 1"));
    assert!(err.contains("does not match") || err.contains("certificate"), "{err}");
    let untrusted = [("sslmode", "verify-full".to_string()), ("sslrootcert", pki.stranger.cert.display().to_string())];
    let err = failed(&psql(&pooler, "localhost", &untrusted, "SELECT 1"));
    assert!(err.contains("certificate verify failed"), "{err}");
    // hostssl refuses plaintext.
    let err = failed(&psql(&pooler, "127.0.0.1", &[("sslmode", "disable".into())], "SELECT 1"));
    assert!(err.contains("no pgagroal_hba.conf entry"), "{err}");
}

#[test]
fn hostnossl_refuses_tls_clients() {
    let pooler = tls_pooler("hostnossl all all all trust\n", "", "");
    let err = failed(&psql(&pooler, "127.0.0.1", &[("sslmode", "require".into())], "SELECT 1"));
    assert!(err.contains("no pgagroal_hba.conf entry"), "{err}");
    assert_eq!(ok(&psql(&pooler, "127.0.0.1", &[("sslmode", "disable".into())], "SELECT 7")), "7");
}

#[test]
fn client_certificates_are_required_with_tls_ca_file() {
    let pki = pki();
    let pooler = tls_pooler("hostssl all all all trust\n", &format!("tls_ca_file = {}", pki.ca.cert.display()), "");
    let with = |pem: &Pem| {
        [
            ("sslmode", "require".to_string()),
            ("sslcert", pem.cert.display().to_string()),
            ("sslkey", pem.key.display().to_string()),
        ]
    };
    assert_eq!(ok(&psql(&pooler, "127.0.0.1", &with(&pki.client), "SELECT 1")), "1");
    let err = failed(&psql(&pooler, "127.0.0.1", &[("sslmode", "require".into())], "SELECT 1"));
    assert!(err.to_lowercase().contains("certificate") || err.contains("SSL"), "{err}");
    let err = failed(&psql(&pooler, "127.0.0.1", &with(&pki.forged), "SELECT 1"));
    assert!(err.to_lowercase().contains("certificate") || err.contains("SSL"), "{err}");
    assert!(
        eventually(Duration::from_secs(5), || pooler.log().contains("TLS handshake with the client failed")),
        "{}",
        pooler.log()
    );
    // The refused handshakes left the pool untouched.
    assert_eq!(ok(&psql(&pooler, "127.0.0.1", &with(&pki.client), "SELECT 2")), "2");
}

#[test]
fn a_stalled_tls_handshake_ends_at_authentication_timeout() {
    let pooler = tls_pooler("hostssl all all all trust\n", "authentication_timeout = 2", "");
    let mut raw = wire::Raw { stream: std::net::TcpStream::connect(("127.0.0.1", pooler.port)).expect("connect") };
    raw.stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    raw.send(&pgagroal::protocol::encode::ssl_request());
    let mut answer = [0u8; 1];
    std::io::Read::read_exact(&mut raw.stream, &mut answer).expect("answer");
    assert_eq!(&answer, b"S");
    let started = std::time::Instant::now();
    let rest = read_until_close(&mut raw.stream, Duration::from_secs(20));
    assert!(rest.is_empty(), "nothing but the close: {rest:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    // The connection closes as the handshake gives up; the log line follows.
    assert!(
        eventually(Duration::from_secs(5), || pooler.log().contains("authentication timeout step=TLS handshake")),
        "{}",
        pooler.log()
    );
}

#[test]
fn the_pooler_speaks_tls_to_postgresql() {
    let pg = postgres_with_ssl();
    let _ = pg;
    let pki = pki();
    let pooler = Pooler::start(PoolerOptions {
        server_extra: format!("tls = on\ntls_ca_file = {}\n", pki.ca.cert.display()),
        max_connections: 4,
        ..Default::default()
    });
    let mut backends = Vec::new();
    for _ in 0..8 {
        let mut client = pooler.connect(TRUST_USER);
        let row = client
            .query_one("SELECT ssl, pg_backend_pid() FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
            .expect("pg_stat_ssl");
        assert!(row.get::<_, bool>(0), "the server connection is not encrypted");
        backends.push(row.get::<_, i32>(1));
        drop(client);
        pooler.wait_idle();
    }
    backends.sort_unstable();
    backends.dedup();
    assert!(backends.len() < 8, "TLS server connections are reused by the worker that made them: {backends:?}");
    // A server the section's CA did not sign is refused, with a reason.
    let untrusted = Pooler::start(PoolerOptions {
        server_extra: format!("tls = on\ntls_ca_file = {}\n", pki.stranger.cert.display()),
        ..Default::default()
    });
    let err = connect_err(&untrusted.url(TRUST_USER, None));
    assert_eq!(code_of(&err).as_deref(), Some("08006"), "{err}");
    assert!(message_of(&err).contains("certificate"), "{}", message_of(&err));
    untrusted.wait_idle();
    assert_eq!(untrusted.status()["Response"]["TotalConnections"], 0, "no slot kept for the failed connection");
    // Without a CA: encrypted, not verified, and the log says so.
    let unverified = Pooler::start(PoolerOptions { server_extra: "tls = on\n".into(), ..Default::default() });
    let row = unverified
        .connect(TRUST_USER)
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .expect("pg_stat_ssl");
    assert!(row.get::<_, bool>(0));
    assert!(unverified.log().contains("not verified"), "{}", unverified.log());
}
