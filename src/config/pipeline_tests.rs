use super::*;
use crate::config::{Loaded, parse};
use std::path::Path;

/// `[pgagroal]` opens on line 1; `extra` starts on line 5; the server
/// section follows it.
fn conf(extra: &str, server_extra: &str) -> String {
    format!(
        "[pgagroal]\nhost = *\nport = 2345\nunix_socket_dir = /tmp\n{extra}\n[primary]\nhost = localhost\n\
         port = 5432\n{server_extra}\n"
    )
}

fn load(extra: &str) -> Result<Loaded, ConfigError> {
    parse(Path::new("p.conf"), &conf(extra, ""))
}

fn ok(extra: &str) -> Loaded {
    load(extra).unwrap_or_else(|e| panic!("{e}"))
}

fn err(extra: &str) -> String {
    match load(extra) {
        Ok(_) => panic!("accepted: {extra}"),
        Err(e) => e.to_string(),
    }
}

const CERTS: &str = "tls_cert_file = /c.pem\ntls_key_file = /k.pem\n";

#[test]
fn auto_resolves_to_session_only_when_a_key_needs_it() {
    assert_eq!(ok("").config.main.effective_pipeline(), Pipeline::Performance);
    assert_eq!(ok("pipeline = auto").config.main.effective_pipeline(), Pipeline::Performance);
    assert_eq!(ok(&format!("tls = on\n{CERTS}")).config.main.effective_pipeline(), Pipeline::Session);
    assert_eq!(ok("failover = on").config.main.effective_pipeline(), Pipeline::Session);
    assert_eq!(ok("disconnect_client = 30").config.main.effective_pipeline(), Pipeline::Session);
    assert_eq!(ok("disconnect_client = 0").config.main.effective_pipeline(), Pipeline::Performance);
    assert_eq!(ok("pipeline = session").config.main.effective_pipeline(), Pipeline::Session);
    assert_eq!(ok("pipeline = performance").config.main.effective_pipeline(), Pipeline::Performance);
    let mut main = MainConfig { pipeline: Pipeline::Auto, tls: true, ..MainConfig::default() };
    assert_eq!(resolve(&main), Pipeline::Performance, "tls without its files does not count");
    main.tls_cert_file = Some("/c".into());
    main.tls_key_file = Some("/k".into());
    assert_eq!(resolve(&main), Pipeline::Session);
}

#[test]
fn performance_refuses_what_it_cannot_do_on_the_key_s_line() {
    let e = err("pipeline = performance\nlog_level = info\nfailover = on");
    assert!(e.starts_with("p.conf: line 7: failover = on"), "{e}");
    assert!(e.contains("pipeline = performance (line 5)"), "{e}");
    let e = err(&format!("tls = on\n{CERTS}pipeline = performance"));
    assert!(e.starts_with("p.conf: line 5: tls = on") && e.contains("(line 8)"), "{e}");
    let e = err("disconnect_client = 60\npipeline = performance");
    assert!(e.starts_with("p.conf: line 5: disconnect_client = 60") && e.contains("(line 6)"), "{e}");
    assert!(load("pipeline = performance\ndisconnect_client = 0\nfailover = off").is_ok());
    assert!(load("pipeline = session\nfailover = on\ndisconnect_client = 9").is_ok());
}

const TRANSACTION: &str = "pipeline = transaction\nallow_unknown_users = off\nblocking_timeout = 0";

#[test]
fn transaction_is_accepted_with_known_users() {
    let loaded = ok(TRANSACTION);
    assert_eq!(loaded.config.main.effective_pipeline(), Pipeline::Transaction);
    assert!(loaded.warnings.iter().all(|w| !w.contains("pipeline")), "{:?}", loaded.warnings);
    // auth_query knows every user: allow_unknown_users does not matter.
    assert!(load("pipeline = transaction\nauth_query = on\nblocking_timeout = 0").is_ok());
}

#[test]
fn transaction_refusals_name_the_key_s_line() {
    // allow_unknown_users left at its default: the error is on pipeline's line.
    let e = err("pipeline = transaction");
    assert!(e.starts_with("p.conf: line 5: allow_unknown_users = on (the default)"), "{e}");
    assert!(!e.contains("(line"), "the message is on pipeline's line: {e}");
    let e = err("pipeline = transaction\nallow_unknown_users = on");
    assert!(e.starts_with("p.conf: line 6: allow_unknown_users = on") && e.contains("(line 5)"), "{e}");
    let e = err(&format!("{TRANSACTION}\ndisconnect_client = 10"));
    assert!(e.starts_with("p.conf: line 8: disconnect_client = 10") && e.contains("(line 5)"), "{e}");
    // A server section's tls: its own line, not the [primary] header's (line 8).
    let text = conf(TRANSACTION, "tls = on");
    let e = parse(Path::new("p.conf"), &text).map(|_| ()).unwrap_err().to_string();
    assert!(e.starts_with("p.conf: line 11: tls = on in server section [primary]"), "{e}");
    assert!(e.contains("pipeline = transaction (line 5)"), "{e}");
    assert!(parse(Path::new("p.conf"), &conf("pipeline = session", "tls = on")).is_ok());
}

#[test]
fn transaction_warns_about_keys_that_work_against_sharing() {
    let loaded = ok("pipeline = transaction\nallow_unknown_users = off");
    let w = &loaded.warnings;
    assert!(
        w.iter().any(|w| w.starts_with("p.conf: line 5: blocking_timeout = 30s (the default) is not recommended")),
        "{w:?}"
    );
    let loaded = ok(&format!(
        "{TRANSACTION}\nidle_timeout = 10m\nmax_connection_age = 1h\nrotate_frontend_password_timeout = 1d\n\
         validation = foreground\nvalidation_unused = 1"
    ));
    let w: Vec<&String> = loaded.warnings.iter().filter(|w| w.contains("not recommended")).collect();
    assert_eq!(w.len(), 4, "{w:?}");
    for (line, key) in [
        (8, "idle_timeout = 600s"),
        (9, "max_connection_age = 3600s"),
        (10, "rotate_frontend_password_timeout = 86400s"),
        (11, "validation = foreground"),
    ] {
        assert!(w.iter().any(|w| w.starts_with(&format!("p.conf: line {line}: {key} "))), "{key}: {w:?}");
    }
    assert!(ok("validation = background\nidle_timeout = 10").warnings.iter().all(|w| !w.contains("recommended")));
}

#[test]
fn transaction_needs_a_users_file_unless_auth_query() {
    let config = ok(TRANSACTION).config;
    let e = check_files(&config, &[], None).unwrap_err().to_string();
    assert!(e.starts_with("p.conf: line 5: pipeline = transaction needs") && e.contains("users file (-u)"), "{e}");
    assert!(check_files(&config, &["alice"], None).is_ok());
    let config = ok("pipeline = transaction\nauth_query = on\nblocking_timeout = 0").config;
    assert!(check_files(&config, &[], None).is_ok());
    // Other pipelines pass users through.
    assert!(check_files(&ok("").config, &[], None).is_ok());
}

#[test]
fn check_files_checks_prefill_users() {
    let config = ok("").config;
    let (limits, _) = Limits::parse(Path::new("l.conf"), "db alice 4 2\ndb bob 4\n", 100).expect("limits");
    assert!(check_files(&config, &["alice"], Some(&limits)).is_ok());
    let e = check_files(&config, &["bob"], Some(&limits)).unwrap_err().to_string();
    assert!(e.starts_with("l.conf: line 1:") && e.contains("'alice'"), "{e}");
}

#[test]
fn other_cross_key_errors_name_their_own_line() {
    let e = err("log_level = info\nmax_connections = 0");
    assert!(e.contains("line 6") && e.contains("max_connections"), "{e}");
    let loaded = ok("max_connections = 20000");
    assert!(loaded.warnings.iter().any(|w| w.contains("line 5") && w.contains("max_connections")), "{loaded:?}");
    let e = err("log_level = info\ntls = on\ntls_cert_file = /c.pem");
    assert!(e.starts_with("p.conf: line 6: tls = on") && e.contains("tls_key_file"), "{e}");
    let text = conf("", "host = /run/postgresql\ntls = on");
    let e = parse(Path::new("p.conf"), &text).map(|_| ()).unwrap_err().to_string();
    assert!(e.starts_with("p.conf: line 10: tls = on in [primary]") && e.contains("(line 9)"), "{e}");
    let text = conf("", "tls_key_file = /k.pem");
    let e = parse(Path::new("p.conf"), &text).map(|_| ()).unwrap_err().to_string();
    assert!(e.starts_with("p.conf: line 9: tls_key_file") && e.contains("tls_cert_file"), "{e}");
}

#[test]
fn toml_files_get_the_same_lines() {
    let text = "[pgagroal]\nhost = \"*\"\nport = 2345\nunix_socket_dir = \"/tmp\"\npipeline = \"performance\"\n\
        failover = true\n\n[primary]\nhost = \"localhost\"\nport = 5432\n";
    let e = parse(Path::new("p.toml"), text).map(|_| ()).unwrap_err().to_string();
    assert!(e.starts_with("p.toml: line 6: failover = on") && e.contains("(line 5)"), "{e}");
}
