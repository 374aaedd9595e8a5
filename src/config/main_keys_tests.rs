use super::*;

#[test]
fn levels() {
    assert_eq!(parse_level("DEBUG"), Ok(LogLevel::Debug));
    assert_eq!(parse_level("debug5"), Ok(LogLevel::Trace));
    assert_eq!(parse_level("debug9"), Ok(LogLevel::Trace));
    assert!(parse_level("loud").is_err());
}

#[test]
fn defaults_follow_upstream() {
    let mut c = MainConfig::default();
    assert_eq!(c.blocking_timeout, Duration::from_secs(30));
    assert_eq!(c.backlog(), 25);
    c.unix_socket_dir = "/run/p".into();
    c.port = 2345;
    assert_eq!(c.pidfile(), PathBuf::from("/run/p/pgagroal.2345.pid"));
    assert_eq!(c.set("idle_timeout", "5"), Ok(Outcome::Applied));
    assert_eq!(c.set("failover", "on"), Ok(Outcome::Applied));
    assert_eq!(c.set("nonsense", "5"), Ok(Outcome::Unknown));
    assert_eq!(c.set("authentication_timeout", "0"), Ok(Outcome::Applied));
    assert_eq!(c.authentication_timeout, Duration::from_secs(5));
}

#[test]
fn checked_only_keys_keep_their_values() {
    let mut c = MainConfig::default();
    assert_eq!(c.max_retries, 5);
    assert_eq!(c.background_interval, Duration::from_secs(300));
    assert_eq!(c.set("rotate_frontend_password_timeout", "1d"), Ok(Outcome::NotYetEffective));
    for (key, raw) in [
        ("disconnect_client", "60"),
        ("disconnect_client_force", "yes"),
        ("max_retries", "3"),
        ("failover", "on"),
        ("failover_script", "/usr/local/bin/failover.sh"),
        ("validation", "Foreground"),
        ("background_interval", "1m"),
        ("idle_timeout", "10m"),
        ("max_connection_age", "1h"),
        ("max_prepared_statements", "0"),
    ] {
        assert_eq!(c.set(key, raw), Ok(Outcome::Applied), "{key}");
    }
    assert!(c.failover && c.disconnect_client_force);
    assert_eq!(c.failover_script, Some(PathBuf::from("/usr/local/bin/failover.sh")));
    assert_eq!(c.disconnect_client, 60);
    assert_eq!(c.max_retries, 3);
    assert_eq!(c.validation, Validation::Foreground);
    assert_eq!(c.background_interval, Duration::from_secs(60));
    assert_eq!(c.idle_timeout, Duration::from_secs(600));
    assert_eq!(c.max_connection_age, Duration::from_secs(3600));
    assert_eq!(c.rotate_frontend_password_timeout, Duration::from_secs(86_400));
    assert!(c.set("validation", "sometimes").is_err());
    assert!(c.set("disconnect_client", "-1").is_err());
    assert!(c.set("failover", "maybe").is_err());
    assert_eq!(c.max_prepared_statements, 0);
    assert_eq!(MainConfig::default().max_prepared_statements, 200);
    assert!(c.set("max_prepared_statements", "10001").is_err());
    assert!(c.set("max_prepared_statements", "-1").is_err());
}
