//! The frontend messages that name prepared statements (Parse, Bind,
//! Describe, Close), read from their bodies and written with another name,
//! and the backend answers the pooler writes in PostgreSQL's place.

use crate::protocol::encode;
use crate::protocol::frame::Reader;

/// A Parse: the statement's name and everything after it.
#[derive(Debug, PartialEq, Eq)]
pub struct Parse<'a> {
    pub name: &'a [u8],
    pub rest: &'a [u8],
}

/// A Bind: portal, statement, and everything after them.
#[derive(Debug, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: &'a [u8],
    pub statement: &'a [u8],
    pub rest: &'a [u8],
}

/// A Describe or Close: `S` (statement) or `P` (portal), and the name.
#[derive(Debug, PartialEq, Eq)]
pub struct Target<'a> {
    pub kind: u8,
    pub name: &'a [u8],
}

pub fn parse(body: &[u8]) -> Option<Parse<'_>> {
    let mut r = Reader::new(body);
    let name = r.cstr()?;
    Some(Parse { name, rest: r.rest() })
}

pub fn bind(body: &[u8]) -> Option<Bind<'_>> {
    let mut r = Reader::new(body);
    let portal = r.cstr()?;
    let statement = r.cstr()?;
    Some(Bind { portal, statement, rest: r.rest() })
}

/// A Describe's or a Close's body.
pub fn target(body: &[u8]) -> Option<Target<'_>> {
    let mut r = Reader::new(body);
    let kind = r.u8()?;
    let name = r.cstr()?;
    (matches!(kind, b'S' | b'P') && r.rest().is_empty()).then_some(Target { kind, name })
}

fn start(out: &mut Vec<u8>, tag: u8) -> usize {
    encode::begin(out, Some(tag))
}

fn name(out: &mut Vec<u8>, name: &[u8]) {
    out.extend_from_slice(name);
    out.push(0);
}

pub fn append_parse(out: &mut Vec<u8>, statement: &[u8], rest: &[u8]) {
    let at = start(out, b'P');
    name(out, statement);
    out.extend_from_slice(rest);
    encode::finish(out, at);
}

pub fn append_bind(out: &mut Vec<u8>, portal: &[u8], statement: &[u8], rest: &[u8]) {
    let at = start(out, b'B');
    name(out, portal);
    name(out, statement);
    out.extend_from_slice(rest);
    encode::finish(out, at);
}

/// A Describe (`tag` `D`) or a Close (`tag` `C`).
pub fn append_target(out: &mut Vec<u8>, tag: u8, kind: u8, statement: &[u8]) {
    let at = start(out, tag);
    out.push(kind);
    name(out, statement);
    encode::finish(out, at);
}

/// ParseComplete.
pub const PARSE_COMPLETE: [u8; 5] = [b'1', 0, 0, 0, 4];
/// CloseComplete.
pub const CLOSE_COMPLETE: [u8; 5] = [b'3', 0, 0, 0, 4];

/// CommandComplete with `tag`.
pub fn command_complete(tag: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(tag.len() + 6);
    let at = start(&mut out, b'C');
    encode::cstr(&mut out, tag);
    encode::finish(&mut out, at);
    out
}

/// An ERROR-level ErrorResponse naming a statement, as PostgreSQL words it.
pub fn statement_error(code: &str, statement: &[u8], what: &str) -> Vec<u8> {
    let message = format!("prepared statement \"{}\" {what}", String::from_utf8_lossy(statement));
    encode::error_response("ERROR", code, &message)
}

/// What PostgreSQL answers a Bind or Describe of a statement whose result
/// type changed since it was prepared, where it says it (PostgreSQL 15's
/// file, line and routine): drivers such as pgjdbc prepare again, and
/// retry, only when the routine is `RevalidateCachedQuery`.
pub fn stale_error() -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    encode::append_error_fields(
        &mut out,
        &[
            (b'S', "ERROR"),
            (b'V', "ERROR"),
            (b'C', "0A000"),
            (b'M', "cached plan must not change result type"),
            (b'F', "plancache.c"),
            (b'L', "722"),
            (b'R', "RevalidateCachedQuery"),
        ],
    );
    out
}

/// Replace every occurrence of `from` by `to` in the message fields of an
/// ErrorResponse or NoticeResponse body (the server names its statements in
/// them); None when nothing was replaced or the body is malformed.
pub fn rename_in_fields(body: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    if from.is_empty() || !body.windows(from.len()).any(|w| w == from) {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() + to.len());
    let mut r = Reader::new(body);
    loop {
        let kind = r.u8()?;
        out.push(kind);
        if kind == 0 {
            return r.rest().is_empty().then_some(out);
        }
        let value = r.cstr()?;
        let mut rest = value;
        while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
            out.extend_from_slice(&rest[..at]);
            out.extend_from_slice(to);
            rest = &rest[at + from.len()..];
        }
        out.extend_from_slice(rest);
        out.push(0);
    }
}

/// A whole message with `tag` and `body`.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    let at = start(&mut out, tag);
    out.extend_from_slice(body);
    encode::finish(&mut out, at);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame;

    fn body_of(msg: &[u8]) -> &[u8] {
        frame::split(msg, 1 << 20).expect("valid").expect("whole").body
    }

    #[test]
    fn round_trips() {
        let mut out = Vec::new();
        append_parse(&mut out, b"s1", b"SELECT 1\0\0\0");
        assert_eq!(parse(body_of(&out)), Some(Parse { name: b"s1", rest: b"SELECT 1\0\0\0" }));
        out.clear();
        append_bind(&mut out, b"", b"s1", b"\0\0\0\0\0\0");
        assert_eq!(bind(body_of(&out)), Some(Bind { portal: b"", statement: b"s1", rest: b"\0\0\0\0\0\0" }));
        out.clear();
        append_target(&mut out, b'D', b'S', b"s1");
        assert_eq!(out[0], b'D');
        assert_eq!(target(body_of(&out)), Some(Target { kind: b'S', name: b"s1" }));
        assert_eq!(target(b"X\0"), None);
        assert_eq!(target(b"Sa"), None);
        assert_eq!(bind(b"p\0"), None);
    }

    #[test]
    fn the_stale_statement_error_says_where_postgresql_says_it() {
        let e = stale_error();
        assert_eq!(e[0], b'E');
        let body = body_of(&e);
        assert_eq!(crate::protocol::backend::error_fields(body).code, "0A000");
        assert!(body.windows(22).any(|w| w == b"RRevalidateCachedQuery"));
        assert_eq!(body.last(), Some(&0));
    }

    #[test]
    fn renames_inside_error_fields() {
        let err = statement_error("26000", b"pgagroal_ab", "does not exist");
        let renamed = rename_in_fields(body_of(&err), b"pgagroal_ab", b"S_1").expect("renamed");
        let back = message(b'E', &renamed);
        assert_eq!(back, statement_error("26000", b"S_1", "does not exist"));
        assert_eq!(rename_in_fields(body_of(&err), b"other", b"x"), None);
        assert_eq!(rename_in_fields(b"Mpgagroal_ab", b"pgagroal_ab", b"x"), None, "malformed");
    }
}
