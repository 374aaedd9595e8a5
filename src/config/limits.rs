//! `pgagroal_databases.conf`: how many server connections a database, a
//! user or a pair of them may hold, how many are opened at start (prefill),
//! and other names (aliases) clients may use for a database.
//!
//! Lines are `DATABASE[=ALIAS,...] USER MAX_SIZE [INITIAL_SIZE [MIN_SIZE]]`
//! with `#` comments, at most [`MAX_LIMITS`] of them. DATABASE and USER are
//! a name or `all`. MAX_SIZE is a number or `all`, which is what the other
//! entries leave of `max_connections`; INITIAL_SIZE and MIN_SIZE are a
//! number or `all` (= MAX_SIZE) and default to 0. Sizes that contradict
//! each other are adjusted with a warning; the MAX_SIZEs may not add up to
//! more than `max_connections`.
//!
//! A client's entry is found by [`Limits::best_match`]; an alias is resolved
//! to its database first ([`Limits::real_database`]), since the server only
//! knows the real name and connections are shared across a database's names.

use super::ConfigError;
use std::path::{Path, PathBuf};

/// Upper bound on entries, as upstream.
pub const MAX_LIMITS: usize = 64;
/// Upper bound on the aliases of one entry, as upstream.
pub const MAX_ALIASES: usize = 8;

/// A DATABASE or USER field: one name, or `all`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Pattern {
    All,
    Name(String),
}

impl Pattern {
    fn parse(token: &str) -> Pattern {
        if token.eq_ignore_ascii_case("all") { Pattern::All } else { Pattern::Name(token.to_string()) }
    }

    /// The name, None for `all`.
    pub fn name(&self) -> Option<&str> {
        match self {
            Pattern::All => None,
            Pattern::Name(name) => Some(name),
        }
    }

    pub fn is_all(&self) -> bool {
        *self == Pattern::All
    }

    fn is(&self, name: &str) -> bool {
        self.name() == Some(name)
    }

    /// As written in the file (`all` for every name).
    pub fn text(&self) -> &str {
        self.name().unwrap_or("all")
    }
}

/// One line of the file, with its sizes resolved and adjusted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LimitEntry {
    pub database: Pattern,
    /// Other names clients may give for `database` (never for `all`).
    pub aliases: Vec<String>,
    pub user: Pattern,
    /// Server connections the entry's clients may hold together.
    pub max_size: u32,
    /// Connections opened at start.
    pub initial_size: u32,
    /// Connections kept open once opened.
    pub min_size: u32,
    /// 1-based line in the file.
    pub line: usize,
}

impl LimitEntry {
    /// The same rule, wherever it is written.
    fn same_rule(&self, other: &LimitEntry) -> bool {
        LimitEntry { line: 0, ..self.clone() } == LimitEntry { line: 0, ..other.clone() }
    }

    /// The same database and user, whatever the sizes and aliases.
    pub fn same_identity(&self, other: &LimitEntry) -> bool {
        self.database == other.database && self.user == other.user
    }
}

/// The whole file, in order; empty when there is none.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// The file the entries were read from, for messages.
    pub path: PathBuf,
    pub entries: Vec<LimitEntry>,
}

/// A size field as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Size {
    All,
    Count(u32),
}

/// A line as written, before sizes are resolved.
struct Raw {
    database: Pattern,
    aliases: Vec<String>,
    user: Pattern,
    max: Size,
    initial: Size,
    min: Size,
    line: usize,
}

impl Limits {
    /// Read and check the file against `max_connections`; returns the
    /// warnings about adjusted sizes too.
    pub fn load(path: &Path, max_connections: usize) -> Result<(Limits, Vec<String>), ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Io { file: path.to_path_buf(), source })?;
        Limits::parse(path, &text, max_connections)
    }

    pub fn parse(path: &Path, text: &str, max_connections: usize) -> Result<(Limits, Vec<String>), ConfigError> {
        let mut raws: Vec<Raw> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            if raws.len() == MAX_LIMITS {
                return Err(ConfigError::syntax(path, line, &format!("at most {MAX_LIMITS} entries")));
            }
            raws.push(parse_line(path, line, content)?);
        }
        check_names(path, &raws)?;
        resolve(path, raws, max_connections)
    }

    /// The entry that limits `user` on `database` (an alias counts as its
    /// database), in this order, the first in the file at each step:
    /// 1. that database and that user;
    /// 2. `all` databases and that user;
    /// 3. that database and `all` users;
    /// 4. `all` databases and `all` users (upstream stops at 3, so such a
    ///    line there limits nobody; here it limits everyone the others
    ///    leave).
    ///
    /// None: only `max_connections` limits the client.
    pub fn best_match(&self, database: &str, user: &str) -> Option<usize> {
        let database = self.real_database(database);
        let find = |db: &dyn Fn(&Pattern) -> bool, us: &dyn Fn(&Pattern) -> bool| {
            self.entries.iter().position(|e| db(&e.database) && us(&e.user))
        };
        let db = |p: &Pattern| p.is(database);
        let us = |p: &Pattern| p.is(user);
        find(&db, &us)
            .or_else(|| find(&Pattern::is_all, &us))
            .or_else(|| find(&db, &Pattern::is_all))
            .or_else(|| find(&Pattern::is_all, &Pattern::is_all))
    }

    /// The database the server is asked for: an alias becomes its entry's
    /// database, any other name stays as it is.
    pub fn real_database<'a>(&'a self, name: &'a str) -> &'a str {
        self.entries
            .iter()
            .find(|e| e.aliases.iter().any(|a| a == name))
            .and_then(|e| e.database.name())
            .unwrap_or(name)
    }

    /// What to open at start: (entry index, database, user, INITIAL_SIZE)
    /// for the entries with a named database and user and an INITIAL_SIZE
    /// above 0 (after adjustment INITIAL_SIZE is at least MIN_SIZE).
    pub fn prefill(&self) -> impl Iterator<Item = (usize, &str, &str, u32)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.initial_size > 0)
            .filter_map(|(i, e)| Some((i, e.database.name()?, e.user.name()?, e.initial_size)))
    }

    /// Entries with an INITIAL_SIZE or MIN_SIZE above 0 open connections
    /// by themselves, which needs the user's password: its user must be one
    /// `known` says is in the users file.
    pub fn check_prefill_users(&self, known: &dyn Fn(&str) -> bool) -> Result<(), ConfigError> {
        for e in &self.entries {
            if e.initial_size == 0 && e.min_size == 0 {
                continue;
            }
            if let Some(user) = e.user.name()
                && !known(user)
            {
                return Err(ConfigError::Invalid {
                    file: self.path.clone(),
                    line: e.line,
                    key: "USER".into(),
                    expected: format!(
                        "a user of the users file (-u) when INITIAL_SIZE or MIN_SIZE is above 0: '{user}' is not \
                         there, and the pooler needs its password to open connections by itself"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Whether `other` holds the same rules, wherever they are written.
    pub fn same_rules(&self, other: &Limits) -> bool {
        self.entries.len() == other.entries.len()
            && self.entries.iter().zip(&other.entries).all(|(a, b)| a.same_rule(b))
    }
}

fn parse_line(path: &Path, line: usize, content: &str) -> Result<Raw, ConfigError> {
    let fields: Vec<&str> = content.split_whitespace().collect();
    let invalid = |key: &str, expected: String| ConfigError::Invalid {
        file: path.to_path_buf(),
        line,
        key: key.to_string(),
        expected,
    };
    let (database, user, max, rest) = match fields.as_slice() {
        [database, user, max, rest @ ..] if rest.len() <= 2 => (*database, *user, *max, rest),
        _ => {
            return Err(ConfigError::Syntax {
                file: path.to_path_buf(),
                line,
                expected: format!(
                    "3 to 5 fields: DATABASE[=ALIAS,...] USER MAX_SIZE [INITIAL_SIZE [MIN_SIZE]], found {}",
                    fields.len()
                ),
            });
        }
    };
    let (database, aliases) = match database.split_once('=') {
        Some((name, list)) => (name, Some(list)),
        None => (database, None),
    };
    if database.is_empty() {
        return Err(invalid("DATABASE", "a database name or all before '='".into()));
    }
    let database = Pattern::parse(database);
    let mut names: Vec<String> = Vec::new();
    if let Some(list) = aliases {
        if database.is_all() {
            return Err(invalid("DATABASE", "aliases only on a named database, not on all".into()));
        }
        for alias in list.split(',') {
            if alias.is_empty() {
                return Err(invalid("DATABASE", format!("a comma-separated list of aliases, not '{list}'")));
            }
            if alias.eq_ignore_ascii_case("all") || database.is(alias) || names.iter().any(|n| n == alias) {
                return Err(invalid(
                    "DATABASE",
                    format!("aliases other than all, the database and each other: '{alias}'"),
                ));
            }
            names.push(alias.to_string());
        }
        if names.len() > MAX_ALIASES {
            return Err(invalid("DATABASE", format!("at most {MAX_ALIASES} aliases, found {}", names.len())));
        }
    }
    let size = |key: &str, token: &str| -> Result<Size, ConfigError> {
        if token.eq_ignore_ascii_case("all") {
            return Ok(Size::All);
        }
        token
            .parse::<u32>()
            .map(Size::Count)
            .map_err(|_| invalid(key, format!("a number of connections or all, not '{token}'")))
    };
    let max = size("MAX_SIZE", max)?;
    if max == Size::Count(0) {
        return Err(invalid(
            "MAX_SIZE",
            "a number above 0 or all (to refuse a database or user, use a reject line in pgagroal_hba.conf)".into(),
        ));
    }
    let initial = match rest.first() {
        Some(token) => size("INITIAL_SIZE", token)?,
        None => Size::Count(0),
    };
    let min = match rest.get(1) {
        Some(token) => size("MIN_SIZE", token)?,
        None => Size::Count(0),
    };
    Ok(Raw { database, aliases: names, user: Pattern::parse(user), max, initial, min, line })
}

/// Aliases are unique across the file and are no entry's database.
fn check_names(path: &Path, raws: &[Raw]) -> Result<(), ConfigError> {
    for (i, r) in raws.iter().enumerate() {
        for alias in &r.aliases {
            let clash = raws[..i]
                .iter()
                .find(|o| o.aliases.contains(alias))
                .map(|o| format!("an alias not already given on line {}: '{alias}'", o.line))
                .or_else(|| {
                    raws.iter()
                        .find(|o| o.database.is(alias))
                        .map(|o| format!("an alias that is no database of the file: '{alias}' is on line {}", o.line))
                });
            if let Some(expected) = clash {
                return Err(ConfigError::Invalid {
                    file: path.to_path_buf(),
                    line: r.line,
                    key: "DATABASE".into(),
                    expected,
                });
            }
        }
    }
    Ok(())
}

/// Resolve `all` sizes, check the total against `max_connections` and
/// adjust sizes that contradict each other.
fn resolve(path: &Path, raws: Vec<Raw>, max_connections: usize) -> Result<(Limits, Vec<String>), ConfigError> {
    let cap = u64::try_from(max_connections).unwrap_or(u64::MAX);
    let at = |line: usize| format!("{}: line {line}", path.display());
    let mut total: u64 = 0;
    let mut remainder_line: Option<usize> = None;
    for r in &raws {
        match r.max {
            Size::Count(n) => {
                total += u64::from(n);
                if total > cap {
                    return Err(ConfigError::Invalid {
                        file: path.to_path_buf(),
                        line: r.line,
                        key: "MAX_SIZE".into(),
                        expected: format!(
                            "MAX_SIZEs that add up to at most max_connections = {max_connections}: up to this \
                             line they add up to {total}"
                        ),
                    });
                }
            }
            Size::All => {
                if let Some(first) = remainder_line {
                    return Err(ConfigError::Invalid {
                        file: path.to_path_buf(),
                        line: r.line,
                        key: "MAX_SIZE".into(),
                        expected: format!("a number: line {first} already takes what remains of max_connections"),
                    });
                }
                remainder_line = Some(r.line);
            }
        }
    }
    let remainder = u32::try_from(cap - total).unwrap_or(u32::MAX);
    let mut warnings = Vec::new();
    let mut entries = Vec::with_capacity(raws.len());
    for r in raws {
        let max_size = match r.max {
            Size::Count(n) => n,
            Size::All if remainder == 0 => {
                return Err(ConfigError::Invalid {
                    file: path.to_path_buf(),
                    line: r.line,
                    key: "MAX_SIZE".into(),
                    expected: format!(
                        "a share of max_connections = {max_connections}: the other entries take all of it, so all \
                         leaves nothing"
                    ),
                });
            }
            Size::All => remainder,
        };
        let value = |s: Size| match s {
            Size::All => max_size,
            Size::Count(n) => n,
        };
        let (mut initial_size, mut min_size) = (value(r.initial), value(r.min));
        if min_size > max_size {
            warnings
                .push(format!("{}: MIN_SIZE {min_size} is above MAX_SIZE {max_size}; using {max_size}", at(r.line)));
            min_size = max_size;
        }
        if initial_size < min_size {
            warnings.push(format!(
                "{}: INITIAL_SIZE {initial_size} is below MIN_SIZE {min_size}; using {min_size}",
                at(r.line)
            ));
            initial_size = min_size;
        }
        if initial_size > max_size {
            warnings.push(format!(
                "{}: INITIAL_SIZE {initial_size} is above MAX_SIZE {max_size}; using {max_size}",
                at(r.line)
            ));
            initial_size = max_size;
        }
        if initial_size > 0 && r.user.is_all() {
            return Err(ConfigError::Invalid {
                file: path.to_path_buf(),
                line: r.line,
                key: "USER".into(),
                expected: "a user name when INITIAL_SIZE or MIN_SIZE is above 0: connections are opened as one user"
                    .into(),
            });
        }
        if initial_size > 0 && r.database.is_all() {
            warnings.push(format!(
                "{}: INITIAL_SIZE and MIN_SIZE need a database name: nothing is opened for database all",
                at(r.line)
            ));
        }
        let entry = LimitEntry {
            database: r.database,
            aliases: r.aliases,
            user: r.user,
            max_size,
            initial_size,
            min_size,
            line: r.line,
        };
        if let Some(first) = entries.iter().find(|e: &&LimitEntry| e.database == entry.database && e.user == entry.user)
        {
            warnings.push(format!(
                "{}: database {} and user {} are already on line {}, which comes first: this line is never used",
                at(entry.line),
                entry.database.text(),
                entry.user.text(),
                first.line
            ));
        }
        entries.push(entry);
    }
    Ok((Limits { path: path.to_path_buf(), entries }, warnings))
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
