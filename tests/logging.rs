//! The log file through the real daemon: rotation by size while the
//! supervisor, workers and services all write to it, and the JSON format.

mod common;

use common::*;
use std::path::Path;

/// A directory the daemon's account writes its log files into; kept apart
/// from the pooler's own directory (whose `pgagroal.log` the harness uses
/// for the daemon's stderr).
fn log_dir() -> tempfile::TempDir {
    daemon_dir()
}

const APP_NAME: &str = "logging \"test\"\nsecond line\\";

/// Traffic from several workers: clients at the same time, then one after
/// another, with an application_name a client chose (logged on connect).
fn traffic(pooler: &Pooler, rounds: usize) {
    let mut together: Vec<postgres::Client> = (0..4).map(|_| pooler.connect(TRUST_USER)).collect();
    for client in &mut together {
        let row = client.query_one("SELECT 40 + 2", &[]).expect("select");
        assert_eq!(row.get::<_, i32>(0), 42);
    }
    drop(together);
    for i in 0..rounds {
        let mut config: postgres::Config = pooler.url(TRUST_USER, None).parse().expect("connection string");
        config.application_name(APP_NAME);
        let mut client = config.connect(postgres::NoTls).unwrap_or_else(|e| panic!("connect {i}: {e}"));
        let row = client.query_one("SELECT $1::int", &[&(i as i32)]).expect("select");
        assert_eq!(row.get::<_, i32>(0), i as i32);
    }
}

/// The log files in `dir` (`server.log` and what it was rotated to), by name.
fn log_files(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("read the log directory")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.starts_with("server.log"))
        .map(|name| {
            let text = std::fs::read_to_string(dir.join(&name)).unwrap_or_else(|e| panic!("read {name}: {e}"));
            (name, text)
        })
        .collect();
    files.sort();
    files
}

/// `server.log`, or a rotated `server.log.<YYYYmmddHHMMSS>[.N]`.
fn is_log_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("server.log") else { return false };
    if rest.is_empty() {
        return true;
    }
    let Some(rest) = rest.strip_prefix('.') else { return false };
    let (stamp, n) = rest.split_once('.').unwrap_or((rest, "1"));
    stamp.len() == 14
        && stamp.bytes().all(|b| b.is_ascii_digit())
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
}

const LEVELS: [&str; 6] = ["FATAL", "ERROR", "WARN ", "INFO ", "DEBUG", "TRACE"];

/// Whether `s` starts with a record's header: the default prefix
/// (`%Y-%m-%d %H:%M:%S`), a level and `file:line`.
fn header_at(s: &[u8]) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-dd dd:dd:dd ";
    if s.len() < SHAPE.len() + 6 {
        return false;
    }
    let stamp = SHAPE.iter().zip(s).all(|(want, got)| if *want == b'd' { got.is_ascii_digit() } else { want == got });
    let level = &s[SHAPE.len()..SHAPE.len() + 5];
    stamp && LEVELS.iter().any(|l| l.as_bytes() == level) && s[SHAPE.len() + 5] == b' '
}

fn summary(files: &[(String, String)]) -> String {
    files.iter().map(|(name, text)| format!("== {name} ({} bytes)\n{text}", text.len())).collect()
}

#[test]
fn size_rotation_across_processes_keeps_whole_lines() {
    const LIMIT: usize = 2048;
    let dir = log_dir();
    let pooler = Pooler::start(PoolerOptions {
        extra: format!(
            "log_type = file\nlog_path = {}\nlog_rotation_size = 2K\nlog_level = debug\nidle_timeout = 60\nlog_connections = on\n",
            dir.path().join("server.log").display()
        ),
        ..Default::default()
    });
    traffic(&pooler, 20);
    let service = pooler.wait_for_service_within("idle", std::time::Duration::from_secs(10));
    drop(pooler);
    let files = log_files(dir.path());
    let all = summary(&files);

    let total: usize = files.iter().map(|(_, text)| text.len()).sum();
    assert!(total > 3 * LIMIT, "too little was logged to test rotation ({total} bytes):\n{all}");
    assert!(files.len() >= 3, "the log was not rotated:\n{all}");
    assert!(files.iter().any(|(name, _)| name == "server.log"), "{all}");
    for (name, text) in &files {
        assert!(is_log_name(name), "unexpected file {name}");
        assert!(!text.is_empty() && text.ends_with('\n'), "{name} does not end with a whole line:\n{all}");
        let lines: Vec<&str> = text.lines().collect();
        for line in &lines {
            let bytes = line.as_bytes();
            assert!(header_at(bytes), "{name}: not a record: {line:?}");
            let glued = (1..bytes.len()).any(|i| header_at(&bytes[i..]));
            assert!(!glued, "{name}: two records on one line: {line:?}");
        }
        // A process writes once more when it finds the file below the
        // limit; two finding so at the same moment put one line each.
        let longest = lines.iter().map(|l| l.len() + 1).max().unwrap_or(0);
        assert!(text.len() < LIMIT + 2 * longest, "{name} grew to {} bytes, far past {LIMIT}:\n{all}", text.len());
    }

    let lines: Vec<&str> = files.iter().flat_map(|(_, text)| text.lines()).collect();
    // Several processes wrote: workers and services log with their pid.
    let mut pids: Vec<&str> = lines.iter().flat_map(|l| l.split(' ')).filter_map(|w| w.strip_prefix("pid=")).collect();
    pids.sort_unstable();
    pids.dedup();
    assert!(pids.len() >= 2, "records from one process only: {pids:?}\n{all}");
    assert!(pids.contains(&service.to_string().as_str()), "the idle service ({service}) logged nothing: {pids:?}");
    assert!(lines.iter().any(|l| l[20..].starts_with("DEBUG")), "no debug records:\n{all}");
    // The client's line break stays inside its record.
    let escaped = "application_name=logging \"test\"\\nsecond line\\";
    let connects = lines.iter().filter(|l| l.contains(escaped)).count();
    assert!(connects >= 20, "{connects} connect records with the application_name:\n{all}");
}

#[test]
fn json_lines() {
    let dir = log_dir();
    let pooler = Pooler::start(PoolerOptions {
        extra: format!(
            "log_type = file\nlog_path = {}\nlog_format = json\nlog_rotation_size = 4K\nlog_connections = on\n",
            dir.path().join("server.log").display()
        ),
        ..Default::default()
    });
    traffic(&pooler, 5);
    drop(pooler);
    let files = log_files(dir.path());
    let all = summary(&files);

    let lines: Vec<&str> = files.iter().flat_map(|(_, text)| text.lines()).collect();
    assert!(lines.len() >= 20, "too few records:\n{all}");
    assert!(files.len() >= 2, "the JSON log was not rotated:\n{all}");
    let mut app_names = 0;
    for line in &lines {
        let record: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{all}"));
        let object = record.as_object().unwrap_or_else(|| panic!("not an object: {line}"));
        let ts = object.get("ts").and_then(|v| v.as_str()).unwrap_or_else(|| panic!("no ts: {line}"));
        let shape = ts.len() >= 20 && ts.as_bytes()[10] == b'T' && (ts.ends_with('Z') || ts[19..].contains(['+', '-']));
        assert!(shape, "ts is not RFC 3339: {ts}");
        let level = object.get("level").and_then(|v| v.as_str()).unwrap_or_else(|| panic!("no level: {line}"));
        assert!(LEVELS.iter().any(|l| l.trim_end() == level), "level {level:?}");
        assert!(object.get("msg").is_some_and(|v| v.is_string()), "no msg: {line}");
        assert!(object.get("file").is_some_and(|v| v.is_string()), "no file: {line}");
        assert!(object.get("line").is_some_and(|v| v.is_u64()), "no line: {line}");
        for (key, value) in object {
            assert!(key == "line" || value.is_string(), "{key} is not a string: {line}");
        }
        if object.get("application_name").and_then(|v| v.as_str()) == Some(APP_NAME) {
            app_names += 1;
        }
    }
    assert!(app_names >= 5, "the application_name did not come back intact ({app_names} times):\n{all}");
}
