//! The metrics actor through the real daemon (`metrics = PORT`): endpoints
//! and status codes, chunked bodies, counters that move with known traffic,
//! a waiting client in `pgagroal_connection_awaiting`, the cache, several
//! scrapes at once beside a trickling client, malformed requests, a crash
//! of the actor (nothing lost), `clear prometheus`, and TLS with the 301 for
//! plain HTTP.

mod common;

use common::certs::TestCa;
use common::http::*;
use common::tools::{debian_command, python_package, run_with_input};
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn endpoints_status_codes_and_malformed_requests() {
    let (pooler, port) = metrics_pooler("", PoolerOptions::default());
    let index = get(port, "/");
    assert_eq!((index.status, index.header("content-type")), (200, Some("text/html; charset=utf-8")));
    assert_eq!(index.header("transfer-encoding"), Some("chunked"));
    assert!(index.body.contains("pgagroal_active_connections"), "{}", index.body);
    assert_eq!(get(port, "/index.html").status, 200);
    let metrics = get(port, "/metrics");
    assert_eq!(metrics.status, 200);
    assert_eq!(metrics.header("content-type"), Some("text/plain; version=0.0.3; charset=utf-8"));
    assert!(metrics.header("date").is_some());
    assert_eq!(value(&metrics.body, "pgagroal_state"), 1.0);
    assert_eq!(value(&metrics.body, "pgagroal_max_connections"), 8.0);
    assert_eq!(get(port, "/secret").status, 403);
    assert_eq!(request(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").status, 400);
    assert_eq!(request(port, b"\x00\x01garbage\r\n\r\n").status, 400);
    let huge = format!("GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024));
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let _ = stream.write_all(huge.as_bytes());
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(answer.starts_with(b"HTTP/1.1 400"), "{}", String::from_utf8_lossy(&answer));

    // A client trickling its request holds up no other scrape.
    let mut trickle = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    trickle.write_all(b"GET /met").expect("trickle");
    let scrapes: Vec<_> = (0..6).map(|_| std::thread::spawn(move || get(port, "/metrics").status)).collect();
    for s in scrapes {
        assert_eq!(s.join().expect("scrape"), 200);
    }
    let _ = trickle.write_all(b"rics HTTP/1.1\r\n\r\n");
    let mut answer = Vec::new();
    let _ = trickle.read_to_end(&mut answer);
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    assert!(pooler.cli(&["ping"]).status.success());
}

#[test]
fn counters_move_with_traffic_survive_a_crash_and_clear() {
    let db = "metrics_counts";
    postgres().database(db);
    let (pooler, port) = metrics_pooler(
        "",
        PoolerOptions {
            max_connections: 1,
            blocking_timeout: "20s",
            users: vec![(MD5_USER, MD5_PASSWORD)],
            ..Default::default()
        },
    );
    let before = scrape(port);
    let (gets, auths) = (value(&before, "pgagroal_connection_get"), value(&before, "pgagroal_auth_user_success"));
    let (queries, transactions) = (value(&before, "pgagroal_query_count"), value(&before, "pgagroal_tx_count"));
    let sessions = value(&before, "pgagroal_session_time_seconds_count");
    let waits = value(&before, "pgagroal_client_wait_seconds_count");
    let timed = value(&before, "pgagroal_query_duration_seconds_count");
    let timed_tx = value(&before, "pgagroal_transaction_duration_seconds_count");
    for _ in 0..5 {
        let mut c = pooler.connect_to(db);
        assert_eq!(first_value(&mut c, "SELECT 1"), "1");
    }
    pooler.wait_idle();
    let after = scrape(port);
    assert_eq!(value(&after, "pgagroal_connection_get") - gets, 5.0, "{after}");
    assert_eq!(value(&after, "pgagroal_auth_user_success") - auths, 5.0, "{after}");
    assert!(value(&after, "pgagroal_connection_return") >= 5.0);
    // One query (one ReadyForQuery, idle) per session; the pooler's own
    // greeting and reset are not the client's queries.
    assert_eq!(value(&after, "pgagroal_query_count") - queries, 5.0, "{after}");
    assert_eq!(value(&after, "pgagroal_tx_count") - transactions, 5.0, "{after}");
    assert!(value(&after, "pgagroal_network_sent") > 0.0 && value(&after, "pgagroal_network_received") > 0.0);
    assert_eq!(value(&after, "pgagroal_session_time_seconds_count") - sessions, 5.0, "{after}");
    assert_eq!(value(&after, "pgagroal_client_wait_seconds_count") - waits, 5.0, "{after}");
    assert!(value(&after, "pgagroal_client_wait_seconds_bucket{le=\"+Inf\"}") >= 5.0);
    assert!(value(&after, "pgagroal_server_connect_seconds_count") >= 1.0, "{after}");
    assert_eq!(value(&after, "pgagroal_query_duration_seconds_count") - timed, 5.0, "{after}");
    assert_eq!(value(&after, "pgagroal_transaction_duration_seconds_count") - timed_tx, 5.0, "{after}");
    assert!(value(&after, "pgagroal_query_duration_seconds_sum") > 0.0);
    assert!(value(&after, "pgagroal_logging_info") > 0.0);
    // One server connection served all five sessions.
    let queries_on_0 = format!(
        "pgagroal_connection_query_count{{id=\"0\",user=\"{MD5_USER}\",database=\"{db}\",application_name=\"\"}}"
    );
    assert_eq!(value(&after, &queries_on_0), 5.0, "{after}");
    let major: f64 = {
        let mut c = pooler.connect_to(db);
        first_value(&mut c, "SELECT current_setting('server_version_num')::int / 10000").parse().expect("a version")
    };
    assert_eq!(first_sample(&after, "pgagroal_server_version{"), major, "{after}");
    assert_eq!(first_sample(&after, "pgagroal_server_health{"), 1.0, "{after}");
    assert_eq!(first_sample(&after, "pgagroal_server_error{"), 0.0, "{after}");

    // A held connection and a client waiting for it.
    let mut held = pooler.connect_to(db);
    backend_pid(&mut held);
    let waiter = {
        let port = pooler.port;
        std::thread::spawn(move || {
            let mut config = postgres::Config::new();
            config.host("127.0.0.1").port(port).user(MD5_USER).password(MD5_PASSWORD).dbname(db);
            config.connect(postgres::NoTls).map(|_| ())
        })
    };
    // Earlier sessions' workers may still be closing their sockets.
    let shown = |b: &str| value(b, "pgagroal_connection_awaiting") == 1.0 && value(b, "pgagroal_client_sockets") == 2.0;
    pooler.wait_for(|| shown(&scrape(port)), "the waiting client shows");
    let body = scrape(port);
    assert_eq!(value(&body, "pgagroal_active_connections"), 1.0);
    assert_eq!(value(&body, "pgagroal_client_wait"), 1.0);
    assert_eq!(value(&body, "pgagroal_client_active"), 2.0, "both clients are connected, the waiting one too");
    let in_use = format!(
        "pgagroal_connection{{id=\"0\",user=\"{MD5_USER}\",database=\"{db}\",application_name=\"\",state=\"in_use\"}}"
    );
    assert_eq!(value(&body, &in_use), 1.0);
    let pool = format!("{{database=\"{db}\",user=\"{MD5_USER}\"}}");
    assert_eq!(value(&body, &format!("pgagroal_pool_cl_active{pool}")), 1.0, "{body}");
    assert_eq!(value(&body, &format!("pgagroal_pool_cl_waiting{pool}")), 1.0, "{body}");
    assert_eq!(value(&body, &format!("pgagroal_pool_sv_active{pool}")), 1.0, "{body}");
    assert_eq!(value(&body, &format!("pgagroal_pool_sv_idle{pool}")), 0.0, "{body}");
    assert!(value(&body, &format!("pgagroal_pool_maxwait_seconds{pool}")) > 0.0, "{body}");
    drop(held);
    waiter.join().expect("waiter").expect("the waiting client got the connection");
    pooler.wait_for(|| value(&scrape(port), "pgagroal_client_sockets") == 0.0, "every client socket is closed");
    let served = scrape(port);
    assert_eq!(value(&served, &format!("pgagroal_pool_cl_waiting{pool}")), 0.0, "{served}");
    assert_eq!(value(&served, &format!("pgagroal_pool_cl_active{pool}")), 0.0, "{served}");
    assert_eq!(value(&served, &format!("pgagroal_pool_sv_idle{pool}")), 1.0, "{served}");

    // The actor dies; what it reports does not.
    let actor = pooler.wait_for_service("metrics");
    // SAFETY: signalling a process of the daemon under test.
    unsafe { libc::kill(actor, libc::SIGKILL) };
    pooler.wait_for_new_service("metrics", actor, Duration::from_secs(5));
    let again = scrape(port);
    assert!(value(&again, "pgagroal_connection_get") >= gets + 6.0, "{again}");
    assert_eq!(value(&again, "pgagroal_actor_restarts_total{actor=\"metrics\"}"), 1.0);

    assert!(pooler.cli(&["clear", "prometheus"]).status.success());
    let cleared = scrape(port);
    assert_eq!(value(&cleared, "pgagroal_connection_get"), 0.0, "{cleared}");
    assert_eq!(value(&cleared, "pgagroal_auth_user_success"), 0.0);
    assert_eq!(value(&cleared, "pgagroal_session_time_seconds_count"), 0.0);
}

#[test]
fn the_cache_serves_the_same_body_until_it_is_old() {
    let (pooler, port) = metrics_pooler("metrics_cache_max_age = 60s\n", PoolerOptions::default());
    let first = scrape(port);
    let mut c = pooler.connect(TRUST_USER);
    assert_eq!(first_value(&mut c, "SELECT 1"), "1");
    drop(c);
    pooler.wait_idle();
    assert_eq!(scrape(port), first, "served from the cache");
    // Too small to be kept: every scrape is fresh.
    let (pooler, port) =
        metrics_pooler("metrics_cache_max_age = 60s\nmetrics_cache_max_size = 16\n", PoolerOptions::default());
    let first = scrape(port);
    let mut c = pooler.connect(TRUST_USER);
    assert_eq!(first_value(&mut c, "SELECT 1"), "1");
    drop(c);
    pooler.wait_idle();
    let fresh = scrape(port);
    assert!(value(&fresh, "pgagroal_connection_get") > value(&first, "pgagroal_connection_get"), "{fresh}");
}

#[test]
fn tls_scrapes_and_a_301_for_plain_http() {
    let certs = daemon_dir();
    let ca = TestCa::new(certs.path(), "ca");
    let server = ca.issue(certs.path(), "metrics", &["localhost", "127.0.0.1"]);
    give_to_daemon(&server.key);
    let extra = format!("metrics_cert_file = {}\nmetrics_key_file = {}\n", server.cert.display(), server.key.display());
    let (_pooler, port) = metrics_pooler(&extra, PoolerOptions::default());
    let plain = get(port, "/metrics");
    assert_eq!(plain.status, 301);
    assert_eq!(plain.header("location"), Some(format!("https://localhost:{port}/metrics").as_str()));

    let config = pgagroal::tls::client_config(Some(&ca.cert), None).expect("client config");
    let name = pgagroal::tls::server_name("localhost").expect("name");
    let conn = rustls::ClientConnection::new(config, name).expect("client");
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("request");
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer);
    let r = parse_response(&answer);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(value(&r.body, "pgagroal_state"), 1.0);
    // The metrics certificate, freshly made, is counted and valid.
    assert_eq!(value(&r.body, "pgagroal_certificates_total"), 1.0, "{}", r.body);
    assert_eq!(value(&r.body, "pgagroal_certificates_valid"), 1.0, "{}", r.body);
    assert_eq!(value(&r.body, "pgagroal_certificates_expired"), 0.0, "{}", r.body);
    assert_eq!(first_sample(&r.body, "pgagroal_tls_certificate_status{server=\"metrics\""), 1.0, "{}", r.body);
    assert!(first_sample(&r.body, "pgagroal_tls_certificate_expiration_seconds{server=\"metrics\"}") > 1.7e9);
}

/// Upstream's counter names, kept for the dashboards built on them, lack
/// the `_total` suffix promtool's linter asks counters for (and two end in
/// `_count`, which it keeps for histograms).
const UPSTREAM_COUNTERS: &[&str] = &[
    "pgagroal_server_error",
    "pgagroal_max_connections",
    "pgagroal_connection_query_count",
    "pgagroal_connection_error",
    "pgagroal_connection_kill",
    "pgagroal_connection_remove",
    "pgagroal_connection_timeout",
    "pgagroal_connection_return",
    "pgagroal_connection_invalid",
    "pgagroal_connection_get",
    "pgagroal_connection_idletimeout",
    "pgagroal_connection_max_connection_age",
    "pgagroal_connection_flush",
    "pgagroal_connection_success",
    "pgagroal_auth_user_success",
    "pgagroal_auth_user_bad_password",
    "pgagroal_auth_user_error",
    "pgagroal_query_count",
    "pgagroal_tx_count",
];

#[test]
fn the_exposition_passes_promtool_and_the_python_parser() {
    let db = "metrics_valid";
    postgres().database(db);
    let limits = format!("{db} {MD5_USER} 2\n");
    let options = PoolerOptions { users: vec![(MD5_USER, MD5_PASSWORD)], limits, ..Default::default() };
    let (pooler, port) = metrics_pooler("", options);
    let mut c = pooler.connect_to(db);
    assert_eq!(first_value(&mut c, "SELECT 1"), "1");
    let body = scrape(port);
    drop(c);

    let promtool = debian_command("promtool", "prometheus");
    let out = run_with_input(std::process::Command::new(promtool).args(["check", "metrics"]), &body);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Exit 3 is "lint problems"; a parse error would be 1.
    assert!(out.status.success() || out.status.code() == Some(3), "promtool: {said}\n{body}");
    for line in said.lines().filter(|l| !l.trim().is_empty()) {
        // Upstream's gauge of how many certificates are configured.
        let upstream_gauge =
            line == "pgagroal_certificates_total non-counter metrics should not have \"_total\" suffix";
        let known = upstream_gauge
            || UPSTREAM_COUNTERS.iter().any(|name| {
                line == format!("{name} counter metrics should have \"_total\" suffix")
                    || line == format!("{name} non-histogram and non-summary metrics should not have \"_count\" suffix")
            });
        assert!(known, "promtool found more than upstream's names: {line:?}\n{body}");
    }

    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
families = {f.name: f for f in text_string_to_metric_families(sys.stdin.read())}
print(len(families), sum(len(f.samples) for f in families.values()))
for name in sys.argv[1:]:
    assert name in families, name
"#;
    let mut python = std::process::Command::new("python3");
    python
        .args(["-c", script, "pgagroal_connection", "pgagroal_limit", "pgagroal_state", "pgagroal_os_info"])
        .env("PYTHONPATH", python_package("prometheus_client", "prometheus_client"));
    let out = run_with_input(&mut python, &body);
    assert!(out.status.success(), "the Python parser: {}\n{body}", String::from_utf8_lossy(&out.stderr));
    let counts: Vec<usize> =
        String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|n| n.parse().ok()).collect();
    assert!(counts.len() == 2 && counts[0] >= 30 && counts[1] > counts[0], "{counts:?}");

    // Every metric the Grafana dashboard queries is one the pooler serves.
    let dashboard = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grafana-dashboard.json"))
        .expect("docs/grafana-dashboard.json");
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let panels = parsed["panels"].as_array().expect("panels");
    let mut used = Vec::new();
    for expr in
        panels.iter().flat_map(|p| p["targets"].as_array().into_iter().flatten()).filter_map(|t| t["expr"].as_str())
    {
        let mut rest = expr;
        while let Some(at) = rest.find("pgagroal_") {
            let name: String =
                rest[at..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit()).collect();
            rest = &rest[at + name.len()..];
            used.push(name.trim_end_matches("_bucket").to_string());
        }
    }
    assert!(used.len() >= 20, "{used:?}");
    for name in used {
        assert!(body.contains(&format!("# TYPE {name} ")), "the dashboard queries {name}, which is not served");
    }
}

/// The metrics actor killed halfway through writing a scrape's answer: that
/// scrape gets a cut answer, the supervisor starts another actor on the
/// same port, and the next scrape reports the counters kept from before.
#[cfg(feature = "failpoints")]
#[test]
fn a_metrics_actor_killed_mid_scrape_is_replaced_and_loses_nothing() {
    let markers = daemon_dir();
    let env = vec![
        ("PGAGROAL_FAILPOINTS", "metrics-mid-response=once:crash".to_string()),
        ("PGAGROAL_FAILPOINT_DIR", markers.path().display().to_string()),
    ];
    let (pooler, port) = metrics_pooler("", PoolerOptions { env, ..Default::default() });
    let actor = pooler.wait_for_service("metrics");
    for _ in 0..3 {
        let mut c = pooler.connect(TRUST_USER);
        assert_eq!(first_value(&mut c, "SELECT 1"), "1");
    }
    pooler.wait_idle();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").expect("request");
    let mut cut = Vec::new();
    let _ = stream.read_to_end(&mut cut);
    assert!(markers.path().join("metrics-mid-response").exists(), "the failpoint fired");
    assert!(!cut.ends_with(b"0\r\n\r\n"), "the killed actor's answer is cut short");
    pooler.wait_for_new_service("metrics", actor, Duration::from_secs(5));
    let body = scrape(port);
    assert_eq!(value(&body, "pgagroal_connection_get"), 3.0, "{body}");
    assert_eq!(value(&body, "pgagroal_actor_restarts_total{actor=\"metrics\"}"), 1.0);
}
