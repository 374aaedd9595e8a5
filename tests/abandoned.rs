//! Clients that leave a transaction pool in the middle of an exchange: after
//! an extended-protocol batch with no Sync yet, or while the server waits
//! for their COPY data. Nothing they did is committed, nothing owed to them
//! reaches the next client, and their connection is not held while the
//! pooler waits for an answer that cannot come.

mod common;

use common::*;
use pgagroal::protocol::encode;

const PASSWORD: &str = "trust user password";

/// One server connection, and a wait for it shorter than the 5 s a
/// leaving client's worker gives the server to finish answering: a
/// connection kept for that long fails the next client's login.
fn one_connection_pool() -> Pooler {
    Pooler::start(PoolerOptions {
        max_connections: 1,
        extra: "pipeline = transaction\nallow_unknown_users = off\nblocking_timeout = 3\n".into(),
        users: vec![(TRUST_USER, PASSWORD)],
        ..Default::default()
    })
}

fn login(pooler: &Pooler) -> wire::Raw {
    let mut raw = wire::Raw::start(pooler.port, TRUST_USER, DATABASE);
    if let Err(e) = raw.until_ready() {
        panic!("the next client could not log in ({e}):\n{}", pooler.log());
    }
    raw
}

/// An extended-protocol round for `sql` without its Sync.
fn unsynced(sql: &str) -> Vec<u8> {
    let mut bytes = encode::extended_query(sql, &[]);
    bytes.truncate(bytes.len() - 5);
    bytes
}

fn flush() -> [u8; 5] {
    [b'H', 0, 0, 0, 4]
}

fn copy_data(row: &str) -> Vec<u8> {
    let mut out = vec![b'd'];
    out.extend_from_slice(&(4 + row.len() as u32).to_be_bytes());
    out.extend_from_slice(row.as_bytes());
    out
}

/// The next client's one query: every message it gets, which must be the
/// answer to that query alone (one row, its tag, ReadyForQuery idle).
fn only_answer(raw: &mut wire::Raw, sql: &str) -> String {
    let mut q = Vec::new();
    encode::append_query(&mut q, sql);
    raw.send(&q);
    let mut tags = Vec::new();
    let mut value = String::new();
    loop {
        match raw.read() {
            Some((b'D', body)) => {
                tags.push('D');
                value = String::from_utf8_lossy(&body[6..]).into_owned();
            }
            Some((b'Z', body)) => {
                tags.push('Z');
                tags.push(char::from(body[0]));
                break;
            }
            Some((tag, _)) => tags.push(char::from(tag)),
            None => panic!("closed after {tags:?}"),
        }
    }
    assert_eq!(tags.iter().collect::<String>(), "TDCZI", "answer to {sql:?}");
    value
}

/// What the next client on the only connection sees: no transaction left
/// open, and no row of `table` committed.
fn check_next(pooler: &Pooler, table: &str, case: &str) {
    let mut next = login(pooler);
    let state = only_answer(
        &mut next,
        &format!("SELECT (now() = statement_timestamp())::text || ' ' || (SELECT count(*) FROM {table})::text"),
    );
    assert_eq!(state, "true 0", "{case}: a transaction was left open or the abandoned row committed");
    pooler.wait_idle();
}

#[test]
fn a_batch_without_its_sync_is_rolled_back_when_the_client_leaves() {
    table("abandoned_batch", "x int");
    let pooler = one_connection_pool();
    let insert = unsynced("INSERT INTO abandoned_batch VALUES (1)");
    let mut failing = unsynced("SELECT 1/0");
    failing.extend_from_slice(&flush());
    let cases: [(&str, Vec<u8>, bool); 4] = [
        ("insert, hang up", insert.clone(), false),
        ("insert, Terminate", insert.clone(), true),
        ("insert and Flush, hang up", [insert.clone(), flush().to_vec()].concat(), false),
        ("error and Flush, Terminate", failing, true),
    ];
    for (case, bytes, terminate) in cases {
        let mut raw = login(&pooler);
        raw.send(&bytes);
        if terminate {
            raw.send(&encode::terminate());
        } else {
            raw.stream.shutdown(std::net::Shutdown::Both).expect("hang up");
        }
        check_next(&pooler, "abandoned_batch", case);
        drop(raw);
    }
}

#[test]
fn a_copy_the_client_leaves_is_rolled_back_and_does_not_hold_the_connection() {
    table("abandoned_copy", "x int");
    let pooler = one_connection_pool();
    let mut extended = encode::extended_query("COPY abandoned_copy FROM STDIN", &[]);
    extended.extend_from_slice(&copy_data("1\n"));
    let mut simple = Vec::new();
    encode::append_query(&mut simple, "COPY abandoned_copy FROM STDIN");
    for (case, bytes) in [("simple protocol", simple), ("extended protocol", extended)] {
        let mut raw = login(&pooler);
        raw.send(&bytes);
        // The server is in copy-in mode once it has said so.
        loop {
            match raw.read() {
                Some((b'G', _)) => break,
                Some((b'1' | b'2', _)) => {}
                other => panic!("{case}: expected CopyInResponse, got {:?}", other.map(|(tag, _)| char::from(tag))),
            }
        }
        raw.send(&copy_data("2\n"));
        raw.stream.shutdown(std::net::Shutdown::Both).expect("hang up");
        check_next(&pooler, "abandoned_copy", case);
    }
}

fn table(name: &str, columns: &str) {
    postgres().table(name, columns);
}
