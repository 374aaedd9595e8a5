//! The SQL commands that act on prepared statements: `DEALLOCATE [PREPARE]
//! name | ALL` and `DISCARD ALL`. A simple Query that is exactly one of them
//! is handled on the client's own names; any other text that contains one
//! may drop statements on the server connection, which is then forgotten.
//! The lexer is the one that finds session changes
//! ([`crate::protocol::sql`]).

use crate::protocol::sql::{next_statement, skip_blank};

/// What a Query's text does to prepared statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Only `DEALLOCATE [PREPARE] ALL`.
    DeallocateAll,
    /// Only `DISCARD ALL`.
    DiscardAll,
    /// Only `DEALLOCATE [PREPARE] name`: the name as PostgreSQL resolves it
    /// (unquoted folded to lower case, at most 63 bytes).
    Deallocate(Vec<u8>),
    /// Anything else; `drops` when some statement in it is a DEALLOCATE or
    /// a DISCARD.
    Other { drops: bool },
}

/// PostgreSQL's identifier length limit (NAMEDATALEN - 1).
const MAX_IDENTIFIER: usize = 63;

/// Classify a simple Query's text.
pub fn classify(sql: &[u8]) -> Command {
    // Most texts name neither command: one pass over the bytes settles it.
    if !mentions_drop(sql) {
        return Command::Other { drops: false };
    }
    let mut statements = Vec::new();
    let mut i = 0;
    while i < sql.len() {
        let start = skip_blank(sql, i);
        if start >= sql.len() {
            break;
        }
        let end = next_statement(sql, start);
        let body = sql[start..end].strip_suffix(b";").unwrap_or(&sql[start..end]);
        if !body.iter().all(u8::is_ascii_whitespace) {
            statements.push(body);
        }
        i = end;
    }
    let drops = statements.iter().any(|s| drops(s));
    if let [only] = statements[..]
        && let Some(command) = single(only)
    {
        return command;
    }
    Command::Other { drops }
}

/// Whether `sql` has `deallocate` or `discard` anywhere (any case).
fn mentions_drop(sql: &[u8]) -> bool {
    sql.iter().enumerate().any(|(i, b)| {
        (b | 0x20) == b'd' && {
            let rest = &sql[i + 1..];
            let word = |w: &[u8]| rest.len() >= w.len() && rest[..w.len()].eq_ignore_ascii_case(w);
            word(b"eallocate") || word(b"iscard")
        }
    })
}

/// Whether any statement in `sql` (a Query's or a Parse's text) starts with
/// DEALLOCATE or DISCARD.
pub fn may_drop_statements(sql: &[u8]) -> bool {
    if !mentions_drop(sql) {
        return false;
    }
    let mut i = 0;
    while i < sql.len() {
        let start = skip_blank(sql, i);
        if start >= sql.len() {
            return false;
        }
        if drops(&sql[start..]) {
            return true;
        }
        i = next_statement(sql, start);
    }
    false
}

fn drops(statement: &[u8]) -> bool {
    let (first, _) = keyword(statement, 0);
    first.eq_ignore_ascii_case(b"deallocate") || first.eq_ignore_ascii_case(b"discard")
}

/// The keyword (letters only) at `i` and where it ends.
fn keyword(sql: &[u8], i: usize) -> (&[u8], usize) {
    let i = i.min(sql.len());
    let end = sql[i..].iter().position(|b| !b.is_ascii_alphabetic()).map_or(sql.len(), |n| i + n);
    (&sql[i..end], end)
}

fn single(statement: &[u8]) -> Option<Command> {
    let (first, after) = keyword(statement, 0);
    let at = skip_blank(statement, after);
    if first.eq_ignore_ascii_case(b"discard") {
        let (second, end) = keyword(statement, at);
        return (second.eq_ignore_ascii_case(b"all") && only_blank(statement, end)).then_some(Command::DiscardAll);
    }
    if !first.eq_ignore_ascii_case(b"deallocate") {
        return None;
    }
    let (second, end) = keyword(statement, at);
    let at = if second.eq_ignore_ascii_case(b"prepare") { skip_blank(statement, end) } else { at };
    let (name, end) = identifier(statement, at)?;
    if !only_blank(statement, end) {
        return None;
    }
    // ALL is a keyword only unquoted.
    if statement.get(at) != Some(&b'"') && name == b"all" {
        return Some(Command::DeallocateAll);
    }
    Some(Command::Deallocate(name))
}

fn only_blank(sql: &[u8], i: usize) -> bool {
    skip_blank(sql, i) >= sql.len()
}

/// An identifier at `i`: quoted (doubled quotes inside) or unquoted
/// (folded to lower case); None when there is none.
fn identifier(sql: &[u8], i: usize) -> Option<(Vec<u8>, usize)> {
    let mut name = Vec::new();
    let mut i = i;
    if sql.get(i) == Some(&b'"') {
        i += 1;
        loop {
            match sql.get(i) {
                None => return None,
                Some(b'"') if sql.get(i + 1) == Some(&b'"') => {
                    name.push(b'"');
                    i += 2;
                }
                Some(b'"') => {
                    i += 1;
                    break;
                }
                Some(&b) => {
                    name.push(b);
                    i += 1;
                }
            }
        }
        if name.is_empty() {
            return None;
        }
    } else {
        let first = *sql.get(i)?;
        if !(first.is_ascii_alphabetic() || first == b'_' || first >= 0x80) {
            return None;
        }
        while let Some(&b) = sql.get(i) {
            if !(b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80) {
                break;
            }
            name.push(b.to_ascii_lowercase());
            i += 1;
        }
    }
    name.truncate(MAX_IDENTIFIER);
    Some((name, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_commands() {
        assert_eq!(classify(b"DEALLOCATE ALL"), Command::DeallocateAll);
        assert_eq!(classify(b"  deallocate prepare all ;"), Command::DeallocateAll);
        assert_eq!(classify(b"DISCARD ALL;"), Command::DiscardAll);
        assert_eq!(classify(b"/* c */ DEALLOCATE S_1"), Command::Deallocate(b"s_1".to_vec()));
        assert_eq!(classify(b"DEALLOCATE \"S_1\""), Command::Deallocate(b"S_1".to_vec()));
        assert_eq!(classify(b"DEALLOCATE \"all\""), Command::Deallocate(b"all".to_vec()));
        assert_eq!(classify(b"DEALLOCATE PREPARE \"a\"\"b\";"), Command::Deallocate(b"a\"b".to_vec()));
        assert_eq!(classify(b"DEALLOCATE \"prepare\""), Command::Deallocate(b"prepare".to_vec()));
        let long = format!("DEALLOCATE {}", "x".repeat(70));
        assert_eq!(classify(long.as_bytes()), Command::Deallocate(vec![b'x'; 63]));
    }

    #[test]
    fn other_texts_say_whether_they_drop() {
        assert_eq!(classify(b"SELECT 1"), Command::Other { drops: false });
        assert_eq!(classify(b"DEALLOCATE a; SELECT 1"), Command::Other { drops: true });
        assert_eq!(classify(b"SELECT 1; DISCARD PLANS"), Command::Other { drops: true });
        assert_eq!(classify(b"DISCARD TEMP"), Command::Other { drops: true });
        assert_eq!(classify(b"SELECT 'DEALLOCATE ALL'"), Command::Other { drops: false });
        assert_eq!(classify(b"DEALLOCATE"), Command::Other { drops: true });
        assert_eq!(classify(b"DEALLOCATE a b"), Command::Other { drops: true });
        assert_eq!(classify(b""), Command::Other { drops: false });
        assert!(may_drop_statements(b"select 1; deallocate x"));
        assert!(!may_drop_statements(b"SELECT $$DISCARD ALL$$"));
    }

    #[test]
    fn never_panics_on_fragments() {
        let s = "DEALLOCATE \"a\"\"b PREPARE ALL; DISCARD ALL /* x";
        for cut in 0..=s.len() {
            let _ = classify(&s.as_bytes()[..cut]);
            let _ = may_drop_statements(&s.as_bytes()[..cut]);
        }
    }
}
