use super::*;
use std::path::Path;

fn fixture() -> (Config, Hba, Limits) {
    let text = "[pgagroal]\nhost = localhost\nport = 2345\nunix_socket_dir = /tmp\nblocking_timeout = 2m\n\
                log_level = debug3\nmetrics = 9100\n\n[primary]\nhost = 10.0.0.1\nport = 5432\n";
    let config = crate::config::parse(Path::new("pgagroal.conf"), text).expect("config").config;
    let hba = Hba::parse(Path::new("hba"), "host all all all trust\nhost mydb alice 10.0.0.0/8 scram-sha-256\n")
        .expect("hba");
    let (limits, _) =
        Limits::parse(Path::new("db.conf"), "mydb=m1,m2 alice 10 2 1\n", config.main.max_connections).expect("limits");
    (config, hba, limits)
}

fn get(key: &str) -> Option<String> {
    let (config, hba, limits) = fixture();
    select(&Value::Object(document(&config, &hba, &limits)), key).map(|s| s.text)
}

#[test]
fn every_key_form_selects() {
    assert_eq!(get("port").as_deref(), Some("2345"));
    assert_eq!(get("pgagroal.port").as_deref(), Some("2345"));
    assert_eq!(get("blocking_timeout").as_deref(), Some("120s"));
    assert_eq!(get("log_level").as_deref(), Some("debug5"));
    assert_eq!(get("pipeline").as_deref(), Some("auto"));
    assert_eq!(get("metrics").as_deref(), Some("9100"));
    assert_eq!(get("metrics_cache_max_size").as_deref(), Some("262144B"));
    assert_eq!(get("server.primary.port").as_deref(), Some("5432"));
    assert_eq!(get("server.primary.host").as_deref(), Some("10.0.0.1"));
    assert_eq!(get("limit.mydb.max_size").as_deref(), Some("10"));
    assert_eq!(get("limit.mydb.username").as_deref(), Some("alice"));
    assert_eq!(get("hba.alice.method").as_deref(), Some("scram-sha-256"));
    assert_eq!(get("hba.alice.address").as_deref(), Some("10.0.0.0/8"));
    assert_eq!(get("hba.all.method").as_deref(), Some("trust"));
    for missing in ["nonsense", "server.replica.port", "limit.other.max_size", "a.b.c.d", "hba..method"] {
        assert_eq!(get(missing), None, "{missing}");
    }
}

#[test]
fn whole_document_has_upstream_sections() {
    let (config, hba, limits) = fixture();
    let doc = Value::Object(document(&config, &hba, &limits));
    assert_eq!(doc["blocking_timeout"], json!({ "value": 120, "string_value": "120s" }));
    assert_eq!(doc["pipeline"], json!({ "value": -1, "string_value": "auto" }));
    assert_eq!(doc["limit"]["mydb"]["aliases"], json!(["m1", "m2"]));
    assert_eq!(doc["limit"]["mydb"]["number_of_aliases"], json!(2));
    assert!(doc["server"]["primary"].is_object());
    assert!(doc["hba"]["alice"].is_object());
    let alias = Value::Object(alias(&limits));
    assert_eq!(alias["Databases"]["mydb"]["username"], json!("alice"));
    let table = alias_text(&alias);
    assert!(table.lines().nth(2).is_some_and(|l| l.starts_with("mydb=m1,m2") && l.contains("alice")), "{table}");
}

#[test]
fn set_applies_live_keys_and_refuses_restart_keys() {
    let (config, hba, limits) = fixture();
    let (outcome, next) = set(&config, &hba, &limits, "idle_timeout", "10m");
    assert_eq!(outcome, SetOutcome::Applied { old: "0s".into(), new: "600s".into() });
    let (next, _) = next.expect("a new configuration");
    assert_eq!(next.main.idle_timeout, Duration::from_secs(600));

    let (outcome, next) = set(&config, &hba, &limits, "max_connections", "5");
    assert_eq!(outcome, SetOutcome::RestartRequired { current: "100".into(), requested: "5".into() });
    assert!(next.is_none());
    let (outcome, _) = set(&config, &hba, &limits, "server.primary.port", "6432");
    assert!(matches!(outcome, SetOutcome::RestartRequired { .. }), "{outcome:?}");
    let (outcome, _) = set(&config, &hba, &limits, "limit.mydb.max_size", "3");
    assert!(matches!(outcome, SetOutcome::RestartRequired { .. }), "{outcome:?}");

    let (outcome, next) = set(&config, &hba, &limits, "hba.alice.method", "password");
    assert_eq!(outcome, SetOutcome::Applied { old: "scram-sha-256".into(), new: "password".into() });
    assert_eq!(next.expect("new hba").1.entries[1].method, crate::hba::Method::Password);

    for (key, value) in [("max_connectionz", "1"), ("idle_timeout", "soon"), ("hba.bob.method", "trust"), ("x.y", "1")]
    {
        let (outcome, next) = set(&config, &hba, &limits, key, value);
        assert!(matches!(outcome, SetOutcome::Invalid(_)), "{key}: {outcome:?}");
        assert!(next.is_none());
    }
    let reply = json!({ "Response": set_response("max_connections", &SetOutcome::RestartRequired {
        current: "100".into(), requested: "5".into() }) });
    assert_eq!(reply["Response"]["status"], json!("restart_required"));
    assert!(set_text("max_connections", &reply).starts_with("Configuration change requires manual restart"));
}

#[test]
fn ls_lists_every_file() {
    let files = ConfigFiles {
        main: "/etc/pgagroal/pgagroal.conf".into(),
        hba: "/etc/pgagroal/pgagroal_hba.conf".into(),
        limit: None,
        users: Some("/etc/pgagroal/pgagroal_users.conf".into()),
        frontend_users: None,
        admins: None,
        superuser: None,
    };
    let r = Value::Object(ls(&files));
    assert_eq!(r["limit_configuration_path"], json!(""));
    let text = ls_text(&r);
    assert!(text.starts_with("Main Configuration file:   /etc/pgagroal/pgagroal.conf\n"), "{text}");
    assert!(text.contains("Superuser file:\n"), "{text}");
}
