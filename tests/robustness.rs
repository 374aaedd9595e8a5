//! Bad input from clients: each gets an error or a closed connection, only
//! that client's worker is affected, and the next client works.

mod common;

use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

fn assert_next_client_works(pooler: &Pooler, supervisor: i32) {
    assert_eq!(pooler.pid(), supervisor);
    assert!(pgagroal_alive(supervisor), "the supervisor died:\n{}", pooler.log());
    let mut client = pooler.connect(TRUST_USER);
    assert_eq!(client.query_one("SELECT 5", &[]).expect("next client").get::<_, i32>(0), 5);
}

fn pgagroal_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn send_raw(pooler: &Pooler, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", pooler.port)).expect("connect");
    s.write_all(bytes).expect("write");
    let _ = s.shutdown(std::net::Shutdown::Write);
    read_until_close(&mut s, Duration::from_secs(10))
}

/// A raw protocol session, returned once the pooler sent ReadyForQuery.
fn raw_session(pooler: &Pooler) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", pooler.port)).expect("connect");
    let mut startup = vec![0, 0, 0, 0, 0, 3, 0, 0];
    startup.extend_from_slice(format!("user\0{TRUST_USER}\0database\0{DATABASE}\0\0").as_bytes());
    let len = startup.len() as u32;
    startup[..4].copy_from_slice(&len.to_be_bytes());
    s.write_all(&startup).expect("startup");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    while !got.windows(6).any(|w| w == [b'Z', 0, 0, 0, 5, b'I']) {
        let n = std::io::Read::read(&mut s, &mut buf).expect("read");
        assert!(n > 0, "closed before ReadyForQuery");
        got.extend_from_slice(&buf[..n]);
    }
    s
}

#[test]
fn garbage_bytes_get_an_error_or_a_close() {
    let pooler = Pooler::start(PoolerOptions::default());
    let supervisor = pooler.pid();
    let reply = send_raw(&pooler, b"GET / HTTP/1.1\r\nHost: example\r\n\r\n");
    if !reply.is_empty() {
        assert_eq!(sqlstate_in(&reply).as_deref(), Some("08P01"), "{reply:?}");
    }
    let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    send_raw(&pooler, &noise);
    assert_next_client_works(&pooler, supervisor);
}

#[test]
fn huge_declared_length_is_refused() {
    let pooler = Pooler::start(PoolerOptions::default());
    let supervisor = pooler.pid();
    let reply = send_raw(&pooler, &[0xff, 0xff, 0xff, 0xff, 0, 3, 0, 0]);
    assert_eq!(sqlstate_in(&reply).as_deref(), Some("08P01"), "{reply:?}");
    assert_next_client_works(&pooler, supervisor);
}

#[test]
fn truncated_startup_packet_is_dropped() {
    let pooler = Pooler::start(PoolerOptions { extra: "authentication_timeout = 2".into(), ..Default::default() });
    let supervisor = pooler.pid();
    // Declares 64 bytes, sends 12, then closes its side.
    let mut packet = vec![0, 0, 0, 64, 0, 3, 0, 0];
    packet.extend_from_slice(b"user");
    send_raw(&pooler, &packet);
    // Declares 64 bytes, sends 12 and then goes silent: the authentication
    // timeout ends it.
    let mut silent = TcpStream::connect(("127.0.0.1", pooler.port)).expect("connect");
    silent.write_all(&packet).expect("write");
    let reply = read_until_close(&mut silent, Duration::from_secs(10));
    assert!(reply.is_empty() || sqlstate_in(&reply).is_some(), "{reply:?}");
    assert_next_client_works(&pooler, supervisor);
}

#[test]
fn unsupported_protocol_and_missing_user_are_refused() {
    let pooler = Pooler::start(PoolerOptions::default());
    let supervisor = pooler.pid();
    let v2 = send_raw(&pooler, &[0, 0, 0, 8, 0, 2, 0, 0]);
    assert_eq!(sqlstate_in(&v2).as_deref(), Some("0A000"), "{v2:?}");
    let mut no_user = vec![0, 0, 0, 0, 0, 3, 0, 0];
    no_user.extend_from_slice(b"database\0x\0\0");
    let len = no_user.len() as u32;
    no_user[..4].copy_from_slice(&len.to_be_bytes());
    let reply = send_raw(&pooler, &no_user);
    assert_eq!(sqlstate_in(&reply).as_deref(), Some("28000"), "{reply:?}");
    assert_next_client_works(&pooler, supervisor);
}

#[test]
fn encryption_requests_are_declined() {
    let pooler = Pooler::start(PoolerOptions::default());
    for code in [80_877_103u32, 80_877_104] {
        let mut s = TcpStream::connect(("127.0.0.1", pooler.port)).expect("connect");
        let mut req = vec![0, 0, 0, 8];
        req.extend_from_slice(&code.to_be_bytes());
        s.write_all(&req).expect("write");
        let mut answer = [0u8; 1];
        std::io::Read::read_exact(&mut s, &mut answer).expect("answer");
        assert_eq!(&answer, b"N");
    }
    // libpq-style clients fall back to a plain connection.
    let url = format!("{} sslmode=prefer", pooler.url(TRUST_USER, None));
    let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("sslmode=prefer falls back");
    c.query_one("SELECT 1", &[]).expect("query");
}

#[test]
fn malformed_message_mid_session_ends_only_that_session() {
    let pooler = Pooler::start(PoolerOptions { max_connections: 1, blocking_timeout: "5", ..Default::default() });
    let supervisor = pooler.pid();
    let mut s = raw_session(&pooler);
    s.write_all(&[b'Q', 0, 0, 0, 1]).expect("bad length");
    let reply = read_until_close(&mut s, Duration::from_secs(10));
    assert_eq!(sqlstate_in(&reply).as_deref(), Some("08P01"), "{reply:?}");
    // The single slot was given back or cleaned up: the next client gets it.
    assert_next_client_works(&pooler, supervisor);
}

#[test]
fn client_vanishing_mid_query_does_not_leak_the_slot() {
    let pooler = Pooler::start(PoolerOptions { max_connections: 1, blocking_timeout: "10", ..Default::default() });
    let supervisor = pooler.pid();
    let mut s = raw_session(&pooler);
    let mut query = vec![b'Q', 0, 0, 0, 0];
    query.extend_from_slice(b"SELECT pg_sleep(1)\0");
    let len = (query.len() - 1) as u32;
    query[1..5].copy_from_slice(&len.to_be_bytes());
    s.write_all(&query).expect("query");
    drop(s);
    assert_next_client_works(&pooler, supervisor);
}
