//! Telling, from a query's text, whether it may change session settings
//! that would outlive its transaction: a statement that starts with `SET`
//! (but not `SET LOCAL`, `SET TRANSACTION` or `SET CONSTRAINTS`), `RESET`
//! or `DISCARD`, or any call of `set_config`. Under transaction pooling
//! such a connection is reset before another client uses it.
//!
//! The lexer knows comments, quoted strings and identifiers and dollar
//! quoting, so `UPDATE t SET ...`, `'...; SET x'` and `ALTER ROLE ... SET`
//! are not mistaken for one. It errs on the side of "yes": a wrong "yes"
//! costs one reset, a wrong "no" would leak a setting.

/// Whether `sql` (one Query or one Parse's text, possibly several
/// statements) may change session settings.
pub fn changes_session(sql: &[u8]) -> bool {
    if contains_ignore_case(sql, b"set_config") {
        return true;
    }
    let mut i = 0;
    loop {
        i = skip_blank(sql, i);
        if i >= sql.len() {
            return false;
        }
        let (first, after) = word(sql, i);
        if first.eq_ignore_ascii_case(b"reset") || first.eq_ignore_ascii_case(b"discard") {
            return true;
        }
        if first.eq_ignore_ascii_case(b"set") {
            let (second, _) = word(sql, skip_blank(sql, after));
            let local = [&b"local"[..], b"transaction", b"constraints"].iter().any(|w| second.eq_ignore_ascii_case(w));
            if !local {
                return true;
            }
        }
        i = next_statement(sql, after);
    }
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// The keyword at `i` (letters and underscores) and where it ends.
fn word(sql: &[u8], i: usize) -> (&[u8], usize) {
    let end = sql[i.min(sql.len())..]
        .iter()
        .position(|b| !(b.is_ascii_alphabetic() || *b == b'_'))
        .map_or(sql.len(), |n| i + n);
    (&sql[i.min(end)..end], end)
}

/// Skip whitespace, `--` comments and (nested) `/* */` comments.
pub(crate) fn skip_blank(sql: &[u8], mut i: usize) -> usize {
    loop {
        while i < sql.len() && (sql[i].is_ascii_whitespace() || sql[i] == b'(') {
            i += 1;
        }
        if sql[i..].starts_with(b"--") {
            i = sql[i..].iter().position(|&b| b == b'\n').map_or(sql.len(), |n| i + n + 1);
        } else if sql[i..].starts_with(b"/*") {
            i = skip_block_comment(sql, i);
        } else {
            return i;
        }
    }
}

fn skip_block_comment(sql: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < sql.len() {
        if sql[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if sql[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    sql.len()
}

/// The position after the next `;` that is outside quotes and comments.
pub(crate) fn next_statement(sql: &[u8], mut i: usize) -> usize {
    while i < sql.len() {
        match sql[i] {
            b';' => return i + 1,
            b'\'' => {
                let escapes = i > 0 && sql[i - 1].eq_ignore_ascii_case(&b'e');
                i = skip_quoted(sql, i + 1, b'\'', escapes);
            }
            b'"' => i = skip_quoted(sql, i + 1, b'"', false),
            b'-' if sql[i..].starts_with(b"--") => {
                i = sql[i..].iter().position(|&b| b == b'\n').map_or(sql.len(), |n| i + n + 1)
            }
            b'/' if sql[i..].starts_with(b"/*") => i = skip_block_comment(sql, i),
            b'$' => i = skip_dollar(sql, i),
            _ => i += 1,
        }
    }
    sql.len()
}

/// After an opening quote: the position after the closing one (a doubled
/// quote is part of the text; with `escapes`, so is a backslashed one).
fn skip_quoted(sql: &[u8], mut i: usize, quote: u8, escapes: bool) -> usize {
    while i < sql.len() {
        if escapes && sql[i] == b'\\' {
            i += 2;
        } else if sql[i] == quote {
            if sql.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    sql.len()
}

/// At a `$`: a dollar-quoted string `$tag$ ... $tag$` is skipped whole;
/// a parameter such as `$1` is one character.
fn skip_dollar(sql: &[u8], i: usize) -> usize {
    let tag_end = sql[i + 1..].iter().position(|b| !(b.is_ascii_alphanumeric() || *b == b'_')).map(|n| i + 1 + n);
    match tag_end {
        Some(end) if sql[end] == b'$' && !sql.get(i + 1).is_some_and(u8::is_ascii_digit) => {
            let tag = &sql[i..=end];
            let body = end + 1;
            sql[body..].windows(tag.len()).position(|w| w == tag).map_or(sql.len(), |n| body + n + tag.len())
        }
        _ => i + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_that_change_the_session() {
        for sql in [
            "SET search_path = x",
            "  set TimeZone TO 'UTC'",
            "BEGIN; SET work_mem = '8MB'; COMMIT",
            "SET SESSION statement_timeout = 5",
            "/* hi */ RESET ALL",
            "-- c\nDISCARD ALL",
            "SELECT pg_catalog.set_config('a.b', 'c', false)",
            "select SET_CONFIG('x', 'y', true)",
            "SELECT 1;set role admin",
            "(SET x = 1)",
        ] {
            assert!(changes_session(sql.as_bytes()), "{sql}");
        }
    }

    #[test]
    fn statements_that_do_not() {
        for sql in [
            "SELECT 1",
            "UPDATE t SET a = 1 WHERE b = 2",
            "ALTER ROLE r SET search_path = x",
            "BEGIN; SET LOCAL work_mem = '1MB'; COMMIT",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET CONSTRAINTS ALL DEFERRED",
            "SELECT '; SET x = 1'",
            "SELECT E'\\'; SET x = 1'",
            "SELECT \"; SET\" FROM t",
            "SELECT $$; SET x = 1$$",
            "SELECT $tag$; RESET ALL $tag$",
            "SELECT $1; SELECT 2",
            "SELECT 1 /* ; SET x */",
            "SELECT 1 -- ; SET x",
            "INSERT INTO offsets(reset_at) VALUES (now())",
            "",
        ] {
            assert!(!changes_session(sql.as_bytes()), "{sql}");
        }
    }

    #[test]
    fn never_panics_on_fragments() {
        let samples = ["SELECT $", "SELECT $a", "'", "\"", "/*", "/* /* */", "--", "E'\\", "$$", "SET", ";;;", "$1$"];
        for s in samples {
            for cut in 0..=s.len() {
                let _ = changes_session(&s.as_bytes()[..cut]);
            }
        }
    }
}
