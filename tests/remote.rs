//! Remote management through the real daemon (`management = PORT`) and
//! `pgagroal-cli -h/-p`: the admin's SCRAM login against
//! pgagroal_admins.conf with right and wrong passwords, hba lines for the
//! `admin` database, TLS with the client files under `~/.pgagroal`, the
//! same replies as the local socket, `conf reload` refused, and an actor
//! that survives slow, malformed and oversized input and comes back after a
//! crash on the same port.

mod common;

use common::certs::TestCa;
use common::*;
use pgagroal::mgmt::remote::{AdminLogin, AdminStep};
use pgagroal::protocol::frame;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "admin's own password";

/// A pooler with the management port on and one admin.
fn remote_pooler(hba: &str, extra: &str) -> (Pooler, u16) {
    let management = free_port();
    let pooler = Pooler::start(PoolerOptions {
        hba: hba.into(),
        extra: format!("management = {management}\n{extra}"),
        admins: vec![(ADMIN, ADMIN_PASSWORD)],
        ..Default::default()
    });
    pooler.wait_for_service("management");
    (pooler, management)
}

/// `pgagroal-cli -h 127.0.0.1 -p PORT -U user -P password args...` with
/// `home` as its home directory (where `.pgagroal/` is looked for).
fn remote(port: u16, home: &Path, user: &str, password: &str, args: &[&str]) -> Output {
    Command::new(cli_binary())
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", user, "-P", password])
        .args(args)
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()
        .expect("run pgagroal-cli")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

#[test]
fn an_admin_with_the_right_password_gets_the_local_answers() {
    let (mut pooler, port) = remote_pooler("host all all all trust\n", "");
    let home = tempfile::tempdir().expect("home");
    let ping = remote(port, home.path(), ADMIN, ADMIN_PASSWORD, &["ping"]);
    assert!(ping.status.success(), "{}", text(&ping));

    // The same document as the local socket gives.
    let far = remote(port, home.path(), ADMIN, ADMIN_PASSWORD, &["status", "details", "-F", "json"]);
    assert!(far.status.success(), "{}", text(&far));
    let near = pooler.cli(&["status", "details", "-F", "json"]);
    let (far, near) = (json(&far), json(&near));
    assert_eq!(far["Outcome"]["Status"], true);
    assert_eq!(keys(&far["Response"]), keys(&near["Response"]));
    assert!(keys(&far["Response"]).contains(&"Connections".to_string()), "{far}");
    assert_eq!(far["Response"]["MaxConnections"], near["Response"]["MaxConnections"]);

    let get = remote(port, home.path(), ADMIN, ADMIN_PASSWORD, &["conf", "get", "max_connections"]);
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "8", "{}", text(&get));

    // conf reload is for the local socket only.
    let reload = remote(port, home.path(), ADMIN, ADMIN_PASSWORD, &["conf", "reload", "-F", "json"]);
    assert_eq!(reload.status.code(), Some(1), "{}", text(&reload));
    let refused = json(&reload);
    assert_eq!(refused["Outcome"]["Error"], pgagroal::mgmt::error_code::CONF_RELOAD_LOCAL_ONLY, "{refused}");
    assert!(pooler.cli(&["conf", "reload"]).status.success());

    // A graceful shutdown waiting for a client can be cancelled remotely.
    let mut client = pooler.connect(TRUST_USER);
    assert_eq!(first_value(&mut client, "SELECT 1"), "1");
    let graceful = remote(port, home.path(), ADMIN, ADMIN_PASSWORD, &["shutdown", "gracefully"]);
    assert!(graceful.status.success(), "{}", text(&graceful));
    let cancel = remote(port, home.path(), ADMIN, ADMIN_PASSWORD, &["shutdown", "cancel"]);
    assert!(cancel.status.success(), "{}\n{}", text(&cancel), pooler.log());
    drop(client);
    let mut after = pooler.connect(TRUST_USER);
    assert_eq!(first_value(&mut after, "SELECT 1"), "1", "the pool runs on");
    drop(after);

    assert!(!pooler.log().contains(ADMIN_PASSWORD), "the admin's password reached the log");
    // A remote shutdown gets its reply before the daemon stops.
    let stop = remote(port, home.path(), ADMIN, ADMIN_PASSWORD, &["shutdown", "immediate"]);
    assert!(stop.status.success(), "{}", text(&stop));
    assert_eq!(pooler.wait_exit(Duration::from_secs(20)), Some(0), "{}", pooler.log());
}

#[test]
fn wrong_passwords_unknown_admins_and_hba_refusals_exit_1() {
    let hba =
        "host admin admin 10.0.0.0/8 scram-sha-256\nhost admin nobody 127.0.0.1/32 reject\nhost all all all trust\n";
    let (pooler, port) = remote_pooler(hba, "");
    let home = tempfile::tempdir().expect("home");
    for (user, password) in [(ADMIN, "not the password"), ("stranger", ADMIN_PASSWORD), (ADMIN, "")] {
        let out = remote(port, home.path(), user, password, &["ping"]);
        assert_eq!(out.status.code(), Some(1), "{user}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!("Bad credentials for {user}")),
            "{user}: {}",
            text(&out)
        );
    }
    let out = remote(port, home.path(), "nobody", ADMIN_PASSWORD, &["ping"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pgagroal_hba.conf rejects connection"), "{}", text(&out));
    // Without -U there is no one to log in as, and no terminal to ask.
    let out = Command::new(cli_binary())
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "ping"])
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .output()
        .expect("cli");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // -c and -h/-p together name two endpoints.
    let out = Command::new(cli_binary())
        .args(["-c", &pooler.conf().display().to_string(), "-h", "127.0.0.1", "-p", &port.to_string(), "ping"])
        .output()
        .expect("cli");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(pooler.cli(&["ping"]).status.success(), "{}", pooler.log());
    assert!(remote(port, home.path(), ADMIN, ADMIN_PASSWORD, &["ping"]).status.success());

    // Client files ask for TLS, which this daemon does not offer: no login
    // goes out in the clear.
    let certs = tempfile::tempdir().expect("certs");
    let with_files = tempfile::tempdir().expect("home");
    client_files(with_files.path(), &TestCa::new(certs.path(), "ca"), None);
    let out = remote(port, with_files.path(), ADMIN, ADMIN_PASSWORD, &["ping"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not offer TLS"), "{}", text(&out));

    // A reload reaches the actor: the admin is now rejected.
    let hba = pooler.dir.path().join("pgagroal_hba.conf");
    let text_before = std::fs::read_to_string(&hba).expect("hba");
    std::fs::write(&hba, format!("host admin {ADMIN} 127.0.0.1/32 reject\n{text_before}")).expect("hba");
    assert!(pooler.cli(&["conf", "reload"]).status.success(), "{}", pooler.log());
    let out = remote(port, home.path(), ADMIN, ADMIN_PASSWORD, &["ping"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rejects connection"), "{}", text(&out));
}

/// `home/.pgagroal/` with the client key and certificate, and `root` as
/// root.crt when given.
fn client_files(home: &Path, ca: &TestCa, root: Option<&Path>) {
    let dir = home.join(".pgagroal");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let pem = ca.issue(&dir, "pgagroal", &[ADMIN]);
    assert!(pem.key.ends_with("pgagroal.key") && pem.cert.ends_with("pgagroal.crt"));
    if let Some(root) = root {
        std::fs::copy(root, dir.join("root.crt")).expect("root.crt");
    }
}

#[test]
fn tls_with_the_client_files_and_hostssl_lines() {
    let certs = daemon_dir();
    let ca = TestCa::new(certs.path(), "ca");
    let stranger = TestCa::new(certs.path(), "stranger");
    let server = ca.issue(certs.path(), "pooler", &["localhost", "127.0.0.1"]);
    give_to_daemon(&server.key);
    // Admins must come over TLS; everything else is trusted.
    let hba = "hostnossl admin all all reject\nhostssl admin all 127.0.0.1/32 scram-sha-256\nhost all all all trust\n";
    let extra =
        format!("tls = on\ntls_cert_file = {}\ntls_key_file = {}\n", server.cert.display(), server.key.display());
    let (pooler, port) = remote_pooler(hba, &extra);

    let plain = tempfile::tempdir().expect("home");
    let out = remote(port, plain.path(), ADMIN, ADMIN_PASSWORD, &["ping"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rejects connection"), "{}", text(&out));

    let verified = tempfile::tempdir().expect("home");
    client_files(verified.path(), &ca, Some(&ca.cert));
    let out = remote(port, verified.path(), ADMIN, ADMIN_PASSWORD, &["status", "-F", "json"]);
    assert!(out.status.success(), "{}\n{}", text(&out), pooler.log());
    assert_eq!(json(&out)["Outcome"]["Status"], true);
    let out = remote(port, verified.path(), ADMIN, "wrong", &["ping"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Bad credentials"), "{}", text(&out));

    // Without root.crt the channel is encrypted but the daemon not verified.
    let unverified = tempfile::tempdir().expect("home");
    client_files(unverified.path(), &ca, None);
    assert!(remote(port, unverified.path(), ADMIN, ADMIN_PASSWORD, &["ping"]).status.success());

    // A root.crt that did not sign the daemon's certificate stops the CLI.
    let distrusting = tempfile::tempdir().expect("home");
    client_files(distrusting.path(), &ca, Some(&stranger.cert));
    let out = remote(port, distrusting.path(), ADMIN, ADMIN_PASSWORD, &["ping"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TLS handshake with 127.0.0.1 failed") && stderr.contains("certificate"), "{}", text(&out));
}

/// Log in as the admin over a raw socket; the stream is then ready for a
/// management frame.
fn logged_in(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let (mut login, startup) = AdminLogin::start(ADMIN, ADMIN_PASSWORD, "test-nonce");
    stream.write_all(&startup).expect("startup");
    let mut buf = Vec::new();
    loop {
        let f = loop {
            if let Some(f) = frame::split(&buf, 1 << 16).expect("frame") {
                break f.len();
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).expect("read");
            assert!(n > 0, "closed during the login");
            buf.extend_from_slice(&chunk[..n]);
        };
        let whole = frame::split(&buf, 1 << 16).expect("frame").expect("whole");
        let step = login.on_message(&whole).expect("login");
        buf.drain(..f);
        match step {
            AdminStep::Send(bytes) => stream.write_all(&bytes).expect("answer"),
            AdminStep::Wait => {}
            AdminStep::LoggedIn => return stream,
        }
    }
}

fn reply_of(stream: &mut TcpStream) -> Value {
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).expect("reply");
    match pgagroal::mgmt::decode_frame(&buf) {
        Ok(Some((reply, _))) => reply,
        other => panic!("no reply frame: {other:?} from {buf:?}"),
    }
}

#[test]
fn the_actor_survives_slow_malformed_and_oversized_input_and_a_crash() {
    // Longer than any wait below: an actor serving one admin at a time
    // would keep the next ones waiting on the silent one.
    let (pooler, port) = remote_pooler("host all all all trust\n", "authentication_timeout = 60\n");
    let home = tempfile::tempdir().expect("home");
    let actor = pooler.wait_for_service("management");
    assert_eq!(cmdline(actor), "pgagroal: management");

    // An admin who never says anything does not hold up the next one.
    let _silent = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut garbage = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    garbage.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("garbage");
    let mut answer = Vec::new();
    garbage.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let _ = garbage.read_to_end(&mut answer);
    assert_eq!(answer.first(), Some(&b'E'), "garbage gets an ErrorResponse: {answer:?}");
    assert!(remote(port, home.path(), ADMIN, ADMIN_PASSWORD, &["ping"]).status.success());

    // After the login: a frame declaring 4 GiB, then one that is not JSON.
    let mut huge = logged_in(port);
    huge.write_all(&[0, 0, 0xff, 0xff, 0xff, 0xff]).expect("frame");
    let reply = reply_of(&mut huge);
    assert_eq!(reply["Outcome"]["Error"], pgagroal::mgmt::error_code::BAD_PAYLOAD, "{reply}");
    let mut broken = logged_in(port);
    broken.write_all(&[0, 0, 0, 0, 0, 3, b'{', b'{', b'{']).expect("frame");
    let reply = reply_of(&mut broken);
    assert_eq!(reply["Outcome"]["Status"], false, "{reply}");
    assert_eq!(pooler.service_pid("management"), Some(actor), "the actor kept running");

    // A crash: the supervisor starts another on the same port.
    // SAFETY: signalling a process of the daemon under test.
    unsafe { libc::kill(actor, libc::SIGKILL) };
    pooler.wait_for_new_service("management", actor, Duration::from_secs(5));
    let out = remote(port, home.path(), ADMIN, ADMIN_PASSWORD, &["ping"]);
    assert!(out.status.success(), "{}\n{}", text(&out), pooler.log());
    assert!(pooler.cli(&["ping"]).status.success());
}
