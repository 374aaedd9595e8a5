//! The session parameters a client asks for in its startup packet
//! (`application_name`, `client_encoding`, `DateStyle`, `TimeZone`,
//! `search_path`, `-c` settings in `options`, ...), and how a pooled server
//! connection is brought in line with them.
//!
//! Server connections are opened with only the user and the database, so
//! that `RESET ALL` on them returns every setting to the server's own
//! default for that user and database. A client's parameters are applied
//! with `set_config` when it is given a connection whose settings differ;
//! each slot records the [`SessionParams::hash`] of the settings it holds,
//! so a client whose settings match (the usual case: one application, one
//! driver) is given the connection with no extra round trip.

use super::encode;
use super::frame::{self, Reader};

/// A slot whose settings are unknown (a client may have changed them):
/// never equal to a client's hash, so the next user resets and applies.
pub const UNKNOWN: u64 = 0;

/// Settings the server reports to the client (ParameterStatus) whose
/// value a client set follows the client from one pooled connection to
/// the next ([`SessionParams::carry`]).
const CARRIED: [&str; 6] =
    ["application_name", "client_encoding", "datestyle", "intervalstyle", "standard_conforming_strings", "timezone"];

/// Startup parameters that are not settings.
const NOT_SETTINGS: [&str; 4] = ["user", "database", "replication", "options"];

/// A client's requested settings, by lower-cased name, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionParams {
    pairs: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("invalid command-line argument for server process: {0}")]
    Option(String),
    #[error("invalid parameter name \"{0}\"")]
    Name(String),
}

impl SessionParams {
    /// From a StartupMessage's parameters, in order (a later value of the
    /// same name wins, as in PostgreSQL). `options` is split as the server
    /// splits it; only `-c name=value` and `--name=value` are accepted.
    pub fn from_startup(params: &[(String, String)]) -> Result<SessionParams, ParamError> {
        let mut out = SessionParams::default();
        for (name, value) in params {
            if name == "options" {
                for (n, v) in parse_options(value)? {
                    out.set(&n, v)?;
                }
            } else if !NOT_SETTINGS.contains(&name.as_str()) && !name.starts_with("_pq_.") {
                out.set(name, value.clone())?;
            }
        }
        Ok(out)
    }

    fn set(&mut self, name: &str, value: String) -> Result<(), ParamError> {
        let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
        if !valid {
            return Err(ParamError::Name(name.to_string()));
        }
        let name = name.to_ascii_lowercase();
        match self.pairs.binary_search_by(|(n, _)| n.as_str().cmp(&name)) {
            Ok(i) => self.pairs[i].1 = value,
            Err(i) => self.pairs.insert(i, (name, value)),
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The server reported `value` for setting `name` to the client (it
    /// ran a `SET`, say): for a setting the pooler carries, that value
    /// becomes the client's, so that its next connection is brought in
    /// line with what the client was told. Whether anything changed.
    pub fn carry(&mut self, name: &str, value: &str) -> bool {
        let name = name.to_ascii_lowercase();
        if !CARRIED.contains(&name.as_str()) || self.get(&name) == Some(value) {
            return false;
        }
        self.set(&name, value.to_string()).is_ok()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.pairs.binary_search_by(|(n, _)| n.as_str().cmp(&name)).ok().map(|i| self.pairs[i].1.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// A stable 64-bit digest (FNV-1a) of the settings, the same in every
    /// process; never [`UNKNOWN`].
    pub fn hash(&self) -> u64 {
        let h = fnv(self.pairs.iter());
        if h == UNKNOWN { 1 } else { h }
    }

    /// A digest of the settings that can change what a statement's text
    /// means (every one but `application_name`), for the names of shared
    /// prepared statements; 0 when there are none.
    pub fn statement_context(&self) -> u64 {
        let mut meaningful = self.pairs.iter().filter(|(n, _)| n != "application_name").peekable();
        if meaningful.peek().is_none() { 0 } else { fnv(meaningful).max(1) }
    }

    /// The queries that bring a server connection in line with these
    /// settings, as Query messages, and how many ReadyForQuery messages
    /// answer them. `from_defaults` says the connection already has the
    /// server's defaults (fresh, or reset by `DISCARD ALL`), so nothing
    /// needs resetting first.
    ///
    /// The reset is its own query, so the values that follow are parsed
    /// with the default `standard_conforming_strings`; `client_encoding`
    /// is set in its own query before the others, so the other values are
    /// read in the client's encoding, the one they were sent in. Values go
    /// through `set_config`, which takes the text exactly as a startup
    /// packet gives it (a list such as `search_path` included).
    pub fn apply_queries(&self, from_defaults: bool) -> (Vec<u8>, u32) {
        let mut out = Vec::with_capacity(128);
        let mut count = 0;
        if !from_defaults {
            encode::append_query(&mut out, "SET SESSION AUTHORIZATION DEFAULT; RESET ALL");
            count += 1;
        }
        if let Some(encoding) = self.get("client_encoding") {
            encode::append_query(
                &mut out,
                &format!("SELECT pg_catalog.set_config('client_encoding', {}, false)", literal(encoding)),
            );
            count += 1;
        }
        let calls: Vec<String> = self
            .iter()
            .filter(|(n, _)| *n != "client_encoding")
            .map(|(n, v)| format!("pg_catalog.set_config({}, {}, false)", literal(n), literal(v)))
            .collect();
        if !calls.is_empty() {
            encode::append_query(&mut out, &format!("SELECT {}", calls.join(", ")));
            count += 1;
        }
        (out, count)
    }

    /// The greeting for a client of a pooled connection: the connection's
    /// ParameterStatus set with each value the client asked for (or the
    /// server reported while applying it, in `reported`) in place of the
    /// connection's, then BackendKeyData with the client's own key. Other
    /// messages in `cached` are dropped.
    pub fn greeting(&self, cached: &[u8], reported: &[(String, String)], key: (i32, u32)) -> Vec<u8> {
        let mut out = Vec::with_capacity(cached.len() + 16);
        let mut rest = cached;
        while let Ok(Some(f)) = frame::split(rest, 1 << 20) {
            let len = f.len();
            if f.tag == b'S' {
                let mut r = Reader::new(f.body);
                if let (Some(name), Some(value)) = (r.cstr(), r.cstr()) {
                    let name = String::from_utf8_lossy(name);
                    let ours = reported
                        .iter()
                        .rev()
                        .find(|(n, _)| n.eq_ignore_ascii_case(&name))
                        .map(|(_, v)| v.as_str())
                        .or_else(|| self.get(&name));
                    let value = match ours {
                        Some(v) if name.eq_ignore_ascii_case("client_encoding") => canonical_encoding(v),
                        Some(v) => v.to_string(),
                        None => String::from_utf8_lossy(value).into_owned(),
                    };
                    encode::append_parameter_status(&mut out, &name, &value);
                }
            }
            rest = &rest[len..];
        }
        encode::append_backend_key_data(&mut out, key.0, key.1);
        out
    }
}

/// An encoding name as PostgreSQL reports it (`utf-8` and `unicode` are
/// `UTF8`; other names in capitals).
fn canonical_encoding(name: &str) -> String {
    match name.to_ascii_lowercase().as_str() {
        "utf8" | "utf-8" | "unicode" => "UTF8".into(),
        _ => name.to_ascii_uppercase(),
    }
}

/// A string literal that reads the same whatever
/// `standard_conforming_strings` is.
fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 3);
    out.push_str("E'");
    for c in text.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Split `options` as PostgreSQL does (whitespace separates, a backslash
/// keeps the next character) and read its `-c name=value` and
/// `--name=value` switches; dashes in names become underscores.
/// FNV-1a over names and values, each followed by a NUL.
fn fnv<'a>(pairs: impl Iterator<Item = &'a (String, String)>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (n, v) in pairs {
        for b in n.bytes().chain([0]).chain(v.bytes()).chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn parse_options(options: &str) -> Result<Vec<(String, String)>, ParamError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
                in_word = true;
            }
            c if c.is_ascii_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    let mut out = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let setting = if w == "-c" {
            it.next().ok_or_else(|| ParamError::Option("-c without a setting".into()))?
        } else if let Some(s) = w.strip_prefix("--") {
            s.to_string()
        } else if let Some(s) = w.strip_prefix("-c") {
            s.to_string()
        } else {
            return Err(ParamError::Option(format!("{w} (only -c name=value and --name=value are accepted)")));
        };
        let Some((name, value)) = setting.split_once('=') else {
            return Err(ParamError::Option(format!("-c {setting} requires a value")));
        };
        out.push((name.replace('-', "_"), value.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::backend::{self, BackendMessage};

    fn params(pairs: &[(&str, &str)]) -> Result<SessionParams, ParamError> {
        let owned: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        SessionParams::from_startup(&owned)
    }

    #[test]
    fn settings_from_startup_and_options() {
        let p = params(&[
            ("user", "u"),
            ("database", "d"),
            ("application_name", "app"),
            ("TimeZone", "Asia/Tokyo"),
            ("options", "-c search_path=a,\\ b --statement-timeout=5s -cwork_mem=8MB"),
            ("_pq_.x", "y"),
        ])
        .expect("valid");
        let got: Vec<(&str, &str)> = p.iter().collect();
        assert_eq!(
            got,
            vec![
                ("application_name", "app"),
                ("search_path", "a, b"),
                ("statement_timeout", "5s"),
                ("timezone", "Asia/Tokyo"),
                ("work_mem", "8MB"),
            ]
        );
        assert_eq!(p.get("TIMEZONE"), Some("Asia/Tokyo"));
        assert!(params(&[("options", "-B 100")]).is_err());
        assert!(params(&[("options", "-c novalue")]).is_err());
        assert!(params(&[("bad name", "x")]).is_err());
        assert!(params(&[("user", "u")]).expect("valid").is_empty());
    }

    #[test]
    fn reported_settings_the_pooler_carries_become_the_clients() {
        let mut p = params(&[("application_name", "a"), ("options", "-c work_mem=8MB")]).expect("valid");
        let before = p.hash();
        assert!(p.carry("DateStyle", "German, DMY"));
        assert!(!p.carry("DateStyle", "German, DMY"), "unchanged");
        assert!(p.carry("application_name", "b"));
        assert!(!p.carry("is_superuser", "on"), "not a setting a client sets");
        assert!(!p.carry("work_mem", "1MB"), "not reported by the server");
        assert_eq!(p.get("datestyle"), Some("German, DMY"));
        assert_eq!(p.get("application_name"), Some("b"));
        assert_eq!(p.get("work_mem"), Some("8MB"));
        assert_ne!(p.hash(), before);
    }

    #[test]
    fn the_statement_context_leaves_out_the_application_name() {
        let none = params(&[("application_name", "a")]).expect("valid");
        assert_eq!(none.statement_context(), 0);
        assert_eq!(SessionParams::default().statement_context(), 0);
        let s1 = params(&[("application_name", "a"), ("options", "-c search_path=s1")]).expect("valid");
        let s1_other_app = params(&[("application_name", "b"), ("options", "-c search_path=s1")]).expect("valid");
        let s2 = params(&[("options", "-c search_path=s2")]).expect("valid");
        assert_ne!(s1.statement_context(), 0);
        assert_eq!(s1.statement_context(), s1_other_app.statement_context());
        assert_ne!(s1.statement_context(), s2.statement_context());
    }

    #[test]
    fn hash_is_order_and_case_insensitive_and_never_unknown() {
        let a = params(&[("TimeZone", "UTC"), ("application_name", "x")]).expect("valid");
        let b = params(&[("application_name", "x"), ("timezone", "UTC")]).expect("valid");
        let c = params(&[("application_name", "y"), ("timezone", "UTC")]).expect("valid");
        assert_eq!(a.hash(), b.hash());
        assert_ne!(a.hash(), c.hash());
        assert_ne!(SessionParams::default().hash(), UNKNOWN);
        // Moving a byte from name to value changes the digest.
        let d = params(&[("ab", "c")]).expect("valid");
        let e = params(&[("a", "bc")]).expect("valid");
        assert_ne!(d.hash(), e.hash());
    }

    #[test]
    fn apply_queries_reset_then_encoding_then_the_rest() {
        let p = params(&[("client_encoding", "UTF8"), ("search_path", "it's\\here")]).expect("valid");
        let (bytes, count) = p.apply_queries(false);
        assert_eq!(count, 3);
        let mut rest = bytes.as_slice();
        let mut texts = Vec::new();
        while let Ok(Some(f)) = frame::split(rest, 1 << 20) {
            assert_eq!(f.tag, b'Q');
            texts.push(String::from_utf8_lossy(&f.body[..f.body.len() - 1]).into_owned());
            rest = &rest[f.len()..];
        }
        assert_eq!(texts[0], "SET SESSION AUTHORIZATION DEFAULT; RESET ALL");
        assert_eq!(texts[1], "SELECT pg_catalog.set_config('client_encoding', E'UTF8', false)");
        assert_eq!(texts[2], "SELECT pg_catalog.set_config(E'search_path', E'it\\'s\\\\here', false)");
        assert_eq!(SessionParams::default().apply_queries(true).1, 0);
    }

    #[test]
    fn greeting_replaces_values_and_the_key() {
        let mut cached = Vec::new();
        encode::append_parameter_status(&mut cached, "application_name", "");
        encode::append_parameter_status(&mut cached, "TimeZone", "UTC");
        encode::append_parameter_status(&mut cached, "client_encoding", "UTF8");
        encode::append_backend_key_data(&mut cached, 77, 88);
        let p = params(&[("application_name", "psql"), ("timezone", "asia/tokyo"), ("client_encoding", "utf-8")])
            .expect("valid");
        let reported = vec![("TimeZone".to_string(), "Asia/Tokyo".to_string())];
        let out = p.greeting(&cached, &reported, (5, 6));
        let mut rest = out.as_slice();
        let mut seen = Vec::new();
        while let Ok(Some(f)) = frame::split(rest, 1 << 20) {
            match backend::parse(&f).expect("valid") {
                BackendMessage::ParameterStatus { name, value } => {
                    seen.push(format!("{}={}", String::from_utf8_lossy(name), String::from_utf8_lossy(value)))
                }
                BackendMessage::BackendKeyData { pid, secret } => seen.push(format!("key {pid} {secret:?}")),
                other => panic!("unexpected {other:?}"),
            }
            rest = &rest[f.len()..];
        }
        assert_eq!(
            seen,
            vec!["application_name=psql", "TimeZone=Asia/Tokyo", "client_encoding=UTF8", "key 5 [0, 0, 0, 6]"]
        );
    }
}
