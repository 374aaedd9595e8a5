//! Turning a record into one line: text (`prefix LEVEL file:line message
//! key=value...`, as upstream) or one JSON object. A line never holds a
//! newline of its own, so one record is always exactly one line, whatever a
//! client put into a user name or application_name.

use slog::{KV, Level, OwnedKVList, Record};
use std::fmt::Write as _;

/// A record with its message formatted and its key=value pairs collected.
pub(super) struct Entry<'a> {
    pub level: Level,
    pub file: &'a str,
    pub line: u32,
    pub msg: String,
    /// The record's own pairs in the order written, then the logger's context.
    pub fields: Vec<(String, String)>,
}

/// Collects `key=value` pairs; slog hands them over last first.
struct Collect(Vec<(String, String)>);

impl slog::Serializer for Collect {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments<'_>) -> slog::Result {
        self.0.push((key.to_string(), val.to_string()));
        Ok(())
    }
}

impl<'a> Entry<'a> {
    pub fn of(record: &'a Record<'_>, values: &OwnedKVList) -> Entry<'a> {
        let mut own = Collect(Vec::new());
        let _ = record.kv().serialize(record, &mut own);
        own.0.reverse();
        let mut context = Collect(Vec::new());
        let _ = values.serialize(record, &mut context);
        context.0.reverse();
        own.0.extend(context.0);
        Entry {
            level: record.level(),
            file: record.file(),
            line: record.line(),
            msg: record.msg().to_string(),
            fields: own.0,
        }
    }
}

/// The level as the text format shows it (five columns wide).
pub(super) fn level_name(level: Level) -> &'static str {
    match level {
        Level::Critical => "FATAL",
        Level::Error => "ERROR",
        Level::Warning => "WARN ",
        Level::Info => "INFO ",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    }
}

/// Append `s`, writing line breaks as `\n` and `\r` so the record stays on
/// one line.
fn push_one_line(out: &mut String, s: &str) {
    if !s.contains(['\n', '\r']) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// `prefix LEVEL file:line message key=value...`, without the final newline.
/// `prefix` is the formatted `log_line_prefix`, None for syslog (which
/// stamps lines itself).
pub(super) fn text_line(prefix: Option<&str>, entry: &Entry<'_>) -> String {
    let mut line = String::with_capacity(160);
    if let Some(prefix) = prefix {
        line.push_str(prefix);
        line.push(' ');
    }
    let _ = write!(line, "{} {}:{} ", level_name(entry.level), entry.file, entry.line);
    push_one_line(&mut line, &entry.msg);
    for (key, value) in &entry.fields {
        line.push(' ');
        push_one_line(&mut line, key);
        line.push('=');
        push_one_line(&mut line, value);
    }
    line
}

/// Keys the JSON format writes itself; a pair with one of these names (or a
/// name already used on the line) gets a `_2`, `_3`... suffix.
const RESERVED: [&str; 5] = ["ts", "level", "file", "line", "msg"];

fn push_json_str(out: &mut String, s: &str) {
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        // Serialising a str cannot fail; keep the line valid JSON regardless.
        Err(_) => out.push_str("\"\""),
    }
}

/// A key not taken yet on this line.
fn unique_key(key: &str, used: &[String]) -> String {
    let taken = |k: &str| RESERVED.contains(&k) || used.iter().any(|u| u == k);
    if !taken(key) {
        return key.to_string();
    }
    (2u32..).map(|n| format!("{key}_{n}")).find(|candidate| !taken(candidate)).unwrap_or_else(|| key.to_string())
}

/// `{"ts":...,"level":...,"file":...,"line":N,"msg":...,"key":"value"...}`,
/// without the final newline.
pub(super) fn json_line(ts: &str, entry: &Entry<'_>) -> String {
    let mut line = String::with_capacity(200);
    line.push_str("{\"ts\":");
    push_json_str(&mut line, ts);
    line.push_str(",\"level\":");
    push_json_str(&mut line, level_name(entry.level).trim_end());
    line.push_str(",\"file\":");
    push_json_str(&mut line, entry.file);
    let _ = write!(line, ",\"line\":{},\"msg\":", entry.line);
    push_json_str(&mut line, &entry.msg);
    let mut used: Vec<String> = Vec::with_capacity(entry.fields.len());
    for (key, value) in &entry.fields {
        let key = unique_key(key, &used);
        line.push(',');
        push_json_str(&mut line, &key);
        line.push(':');
        push_json_str(&mut line, value);
        used.push(key);
    }
    line.push('}');
    line
}

/// RFC 3339 local time with milliseconds and the UTC offset (`Z` when the
/// offset is zero), e.g. `2024-05-01T13:04:05.123+02:00`.
pub(super) fn rfc3339(epoch_ms: u64) -> String {
    let secs = (epoch_ms / 1000) as i64;
    let millis = epoch_ms % 1000;
    let local = crate::sys::format_local_time("%Y-%m-%dT%H:%M:%S %z", secs);
    match local.split_once(' ').and_then(|(time, zone)| Some((time, rfc3339_offset(zone)?))) {
        Some((time, zone)) => format!("{time}.{millis:03}{zone}"),
        None => {
            let (y, m, d, hh, mm, ss) = utc_fields(secs);
            format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{millis:03}Z")
        }
    }
}

/// strftime's `%z` (`+0200`) as RFC 3339 wants it (`+02:00`, or `Z`).
fn rfc3339_offset(zone: &str) -> Option<String> {
    let bytes = zone.as_bytes();
    if bytes.len() != 5 || !matches!(bytes[0], b'+' | b'-') || !bytes[1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if &zone[1..] == "0000" {
        return Some("Z".into());
    }
    Some(format!("{}:{}", &zone[..3], &zone[3..]))
}

/// Civil UTC date and time of a Unix time (for when the local time cannot
/// be formatted).
fn utc_fields(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400) as u32;
    // Days to civil date, proleptic Gregorian (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, of_day / 3600, of_day % 3600 / 60, of_day % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(msg: &str, fields: &[(&str, &str)]) -> Entry<'static> {
        Entry {
            level: Level::Warning,
            file: "src/x.rs",
            line: 42,
            msg: msg.into(),
            fields: fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn text_layout_is_upstreams() {
        let e = entry("connect", &[("user", "alice"), ("pid", "12")]);
        assert_eq!(
            text_line(Some("2024-01-02 03:04:05"), &e),
            "2024-01-02 03:04:05 WARN  src/x.rs:42 connect user=alice pid=12"
        );
        assert_eq!(text_line(None, &e), "WARN  src/x.rs:42 connect user=alice pid=12");
    }

    #[test]
    fn text_keeps_a_record_on_one_line() {
        let e = entry("a\nb", &[("application_name", "x\r\n2024-01-01 00:00:00 FATAL forged")]);
        let line = text_line(Some("P"), &e);
        assert!(!line.contains(['\n', '\r']), "{line}");
        assert_eq!(line, "P WARN  src/x.rs:42 a\\nb application_name=x\\r\\n2024-01-01 00:00:00 FATAL forged");
    }

    #[test]
    fn json_shape_and_escaping() {
        let e =
            entry("say \"hi\"\n\\ \u{1} é", &[("user", "bob\"x"), ("msg", "clash"), ("user", "again"), ("line", "l")]);
        let line = json_line("2024-01-02T03:04:05.006Z", &e);
        assert!(!line.contains('\n'), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        let o = v.as_object().expect("an object");
        assert_eq!(o["ts"], "2024-01-02T03:04:05.006Z");
        assert_eq!(o["level"], "WARN");
        assert_eq!(o["file"], "src/x.rs");
        assert_eq!(o["line"], 42);
        assert_eq!(o["msg"], "say \"hi\"\n\\ \u{1} é");
        assert_eq!(o["user"], "bob\"x");
        assert_eq!(o["msg_2"], "clash");
        assert_eq!(o["user_2"], "again");
        assert_eq!(o["line_2"], "l");
        assert_eq!(o.len(), 9);
        // Fields keep their order: the fixed ones first, then the pairs.
        assert!(line.starts_with("{\"ts\":"), "{line}");
        assert!(line.find("\"user\"") < line.find("\"msg_2\""), "{line}");
    }

    #[test]
    fn json_levels_are_trimmed() {
        for (level, name) in [(Level::Critical, "FATAL"), (Level::Info, "INFO"), (Level::Trace, "TRACE")] {
            let e = Entry { level, ..entry("m", &[]) };
            let v: serde_json::Value = serde_json::from_str(&json_line("t", &e)).expect("json");
            assert_eq!(v["level"], name);
        }
    }

    #[test]
    fn offsets() {
        assert_eq!(rfc3339_offset("+0000").as_deref(), Some("Z"));
        assert_eq!(rfc3339_offset("-0000").as_deref(), Some("Z"));
        assert_eq!(rfc3339_offset("+0200").as_deref(), Some("+02:00"));
        assert_eq!(rfc3339_offset("-0930").as_deref(), Some("-09:30"));
        assert_eq!(rfc3339_offset("CET"), None);
        assert_eq!(rfc3339_offset("+02:00"), None);
    }

    #[test]
    fn utc_fallback() {
        assert_eq!(utc_fields(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(utc_fields(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(utc_fields(1_700_000_000), (2023, 11, 14, 22, 13, 20));
        assert_eq!(utc_fields(-1), (1969, 12, 31, 23, 59, 59));
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let ts = rfc3339(1_700_000_000_123);
        // 2023-11-14T22:13:20.123Z in UTC; the local form has the same shape.
        assert_eq!(ts.len(), if ts.ends_with('Z') { 24 } else { 29 }, "{ts}");
        assert_eq!(&ts[19..23], ".123", "{ts}");
        assert_eq!((&ts[4..5], &ts[10..11], &ts[13..14]), ("-", "T", ":"), "{ts}");
    }
}
