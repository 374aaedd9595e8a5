//! The words of a `pgagroal-cli` command line turned into a management
//! request: which command, and the `Request` object it carries (upstream's
//! keys: `Database`, `Mode`, `Timeout`, `Server`, `ConfigKey`,
//! `ConfigValue`).

use super::Command;
use serde_json::{Map, Value, json};

/// `flush` modes, upstream's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushMode {
    /// Close idle connections only.
    Idle = 0,
    /// Close idle connections now and the others when they are given back.
    Gracefully = 1,
    /// Close every connection, stopping the clients that use them.
    All = 2,
}

impl FlushMode {
    pub fn from_code(code: i64) -> Option<FlushMode> {
        [FlushMode::Idle, FlushMode::Gracefully, FlushMode::All].into_iter().find(|m| *m as i64 == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            FlushMode::Idle => "idle",
            FlushMode::Gracefully => "gracefully",
            FlushMode::All => "all",
        }
    }
}

/// A parsed command line: the command, its `Request`, and for `conf get`
/// the key the CLI selects from the reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub command: Command,
    pub request: Map<String, Value>,
    pub conf_key: Option<String>,
}

fn parsed(command: Command, pairs: &[(&str, Value)]) -> Parsed {
    let request = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    Parsed { command, request, conf_key: None }
}

/// `-T/--timeout`: a deadline in seconds (`30`, `30s`, `5m`, `1h`, `2d`,
/// `1w`); None means the daemon's `flush_timeout`.
pub fn parse_timeout(text: &str) -> Result<i64, String> {
    crate::config::value::parse_duration(text)
        .ok()
        .filter(|d| d.subsec_nanos() == 0)
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .ok_or_else(|| format!("'--timeout' requires a non-negative duration such as 30, 30s, 5m or 1h, not '{text}'"))
}

/// Parse the command words; `timeout` is `-T` in seconds (-1: not given).
pub fn parse(words: &[String], timeout: i64) -> Result<Parsed, String> {
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let database = |w: Option<&&str>| match w {
        None | Some(&"all") | Some(&"*") => "*".to_string(),
        Some(name) => name.to_string(),
    };
    Ok(match words.as_slice() {
        ["ping"] => parsed(Command::Ping, &[]),
        ["status"] => parsed(Command::Status, &[]),
        ["status", "details"] => parsed(Command::StatusDetails, &[]),
        ["shutdown"] | ["shutdown", "gracefully"] => parsed(Command::Gracefully, &[("Timeout", json!(timeout))]),
        ["shutdown", "immediate"] => parsed(Command::Shutdown, &[]),
        ["shutdown", "cancel"] => parsed(Command::CancelShutdown, &[]),
        ["flush", rest @ ..] if rest.len() <= 2 => {
            let (mode, db) = match rest.first() {
                Some(&"idle") => (FlushMode::Idle, rest.get(1)),
                Some(&"gracefully") => (FlushMode::Gracefully, rest.get(1)),
                Some(&"all") if rest.len() == 2 => (FlushMode::All, rest.get(1)),
                // `flush all` is the mode, as upstream: every connection.
                Some(&"all") => (FlushMode::All, None),
                Some(_) if rest.len() == 1 => (FlushMode::Gracefully, rest.first()),
                None => (FlushMode::Gracefully, None),
                Some(other) => return Err(format!("unknown flush mode '{other}'; use gracefully, idle or all")),
            };
            parsed(
                Command::Flush,
                &[("Mode", json!(mode as i64)), ("Database", json!(database(db))), ("Timeout", json!(timeout))],
            )
        }
        [verb @ ("enable" | "disable")] | [verb @ ("enable" | "disable"), _] => {
            let command = if *verb == "enable" { Command::EnableDb } else { Command::DisableDb };
            parsed(command, &[("Database", json!(database(words.get(1))))])
        }
        ["switch-to", server] => parsed(Command::SwitchTo, &[("Server", json!(server))]),
        ["clear", "prometheus"] => parsed(Command::Clear, &[]),
        ["clear", "server", server] => parsed(Command::ClearServer, &[("Server", json!(server))]),
        ["clear", server] if *server != "server" => parsed(Command::ClearServer, &[("Server", json!(server))]),
        ["conf", "reload"] => parsed(Command::Reload, &[]),
        ["conf", "ls"] => parsed(Command::ConfigLs, &[]),
        ["conf", "alias"] => parsed(Command::ConfigAlias, &[]),
        ["conf", "get"] => parsed(Command::ConfigGet, &[]),
        ["conf", "get", key] => {
            if super::conf::parse_key(key).is_none() {
                return Err(format!(
                    "invalid key format: '{key}'; valid formats: 'key', 'section.key', or 'section.context.key'"
                ));
            }
            Parsed { conf_key: Some(key.to_string()), ..parsed(Command::ConfigGet, &[]) }
        }
        ["conf", "set", key, value] => {
            parsed(Command::ConfigSet, &[("ConfigKey", json!(key)), ("ConfigValue", json!(value))])
        }
        [] => return Err("no command given; try 'pgagroal-cli -?'".into()),
        ["status" | "flush" | "enable" | "disable" | "switch-to" | "clear" | "conf" | "shutdown", ..] => {
            return Err(format!("wrong arguments for '{}'; try 'pgagroal-cli -?'", words.join(" ")));
        }
        _ => return Err(format!("unknown command '{}'; try 'pgagroal-cli -?'", words.join(" "))),
    })
}

/// The database a request names; None for every database (`*` or `all`).
pub fn database_of(request: &Value) -> Option<String> {
    match request.pointer("/Request/Database").and_then(Value::as_str) {
        None | Some("*") | Some("all") | Some("") => None,
        Some(name) => Some(name.to_string()),
    }
}

/// The deadline a request names, in seconds: None when it names none (-1
/// or absent, meaning `flush_timeout`), Some(0) for unbounded.
pub fn timeout_of(request: &Value) -> Option<u64> {
    request.pointer("/Request/Timeout").and_then(Value::as_i64).and_then(|t| u64::try_from(t).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Parsed, String> {
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        parse(&words, -1)
    }

    #[test]
    fn flush_forms_follow_upstream() {
        let mode = |line: &str| {
            let r = p(line).expect(line);
            (r.request["Mode"].as_i64().unwrap_or(-9), r.request["Database"].as_str().unwrap_or("").to_string())
        };
        assert_eq!(mode("flush"), (1, "*".into()));
        assert_eq!(mode("flush idle"), (0, "*".into()));
        assert_eq!(mode("flush all"), (2, "*".into()));
        assert_eq!(mode("flush pgbench"), (1, "pgbench".into()));
        assert_eq!(mode("flush gracefully pgbench"), (1, "pgbench".into()));
        assert_eq!(mode("flush all pgbench"), (2, "pgbench".into()));
        assert_eq!(mode("flush idle all"), (0, "*".into()));
        assert!(p("flush sometimes db").is_err());
        assert!(p("flush a b c").is_err());
    }

    #[test]
    fn every_command_parses() {
        for (line, command) in [
            ("ping", Command::Ping),
            ("status", Command::Status),
            ("status details", Command::StatusDetails),
            ("shutdown", Command::Gracefully),
            ("shutdown immediate", Command::Shutdown),
            ("shutdown cancel", Command::CancelShutdown),
            ("enable", Command::EnableDb),
            ("disable db", Command::DisableDb),
            ("switch-to replica", Command::SwitchTo),
            ("clear prometheus", Command::Clear),
            ("clear server replica", Command::ClearServer),
            ("clear replica", Command::ClearServer),
            ("conf reload", Command::Reload),
            ("conf ls", Command::ConfigLs),
            ("conf alias", Command::ConfigAlias),
            ("conf get", Command::ConfigGet),
            ("conf get limit.db.max_size", Command::ConfigGet),
            ("conf set log_level debug", Command::ConfigSet),
        ] {
            assert_eq!(p(line).map(|r| r.command), Ok(command), "{line}");
        }
        assert_eq!(p("conf get server.primary.port").map(|r| r.conf_key), Ok(Some("server.primary.port".into())));
        for bad in ["", "conf", "conf get a.b.c.d", "conf set x", "status everything", "nonsense", "clear server"] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("30"), Ok(30));
        assert_eq!(parse_timeout("5m"), Ok(300));
        assert_eq!(parse_timeout("0"), Ok(0));
        assert!(parse_timeout("-1").is_err());
        assert!(parse_timeout("soon").is_err());
        let r = parse(&["shutdown".to_string()], 30).expect("parses");
        assert_eq!(timeout_of(&json!({ "Request": r.request })), Some(30));
        assert_eq!(timeout_of(&json!({ "Request": { "Timeout": -1 } })), None);
        assert_eq!(database_of(&json!({ "Request": { "Database": "all" } })), None);
        assert_eq!(database_of(&json!({ "Request": { "Database": "db" } })), Some("db".into()));
    }
}
