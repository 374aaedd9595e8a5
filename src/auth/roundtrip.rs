//! The pooler's two authentication roles against each other, over real
//! message bytes: [`ServerLogin`] (the pooler logging in) talks to
//! [`ClientExchange`] (the pooler checking a client) as PostgreSQL and an
//! application would, for every request kind, right and wrong.

use super::exchange::{ClientExchange, Expect, Failure, Proven, Random, Step};
use super::login::{LoginError, LoginSecret, LoginStep, ServerLogin};
use super::policy::Ask;
use super::scram::ScramSecret;
use crate::protocol::backend::{self, BackendMessage, auth_code};
use crate::protocol::frame;

fn random() -> Random {
    Random { md5_salt: [9, 8, 7, 6], scram_nonce: "server-nonce-part".into(), scram_salt: [3; 16] }
}

/// Drive a login against an exchange. Returns the exchange's outcome, or
/// the login's error.
fn run(user: &str, ask: Ask, expect: Expect, secret: LoginSecret) -> Result<Result<Proven, Failure>, LoginError> {
    let mut login = ServerLogin::new(user, secret, "client-nonce");
    let (mut exchange, mut step) = ClientExchange::start(ask, user, expect, random());
    for _ in 0..8 {
        let request = match step {
            Step::Send(bytes) => bytes,
            Step::Done { send, proven } => {
                // A SASLFinal comes before AuthenticationOk.
                if !send.is_empty() {
                    assert_eq!(deliver(&mut login, &send)?, LoginStep::Wait);
                }
                assert_eq!(deliver(&mut login, &[b'R', 0, 0, 0, 8, 0, 0, 0, 0])?, LoginStep::Authenticated);
                return Ok(Ok(proven));
            }
            Step::Failed(failure) => return Ok(Err(failure)),
        };
        let LoginStep::Send(answer) = deliver(&mut login, &request)? else { panic!("the login sent nothing") };
        let f = frame::split(&answer, 1 << 16).expect("frame").expect("whole");
        step = exchange.answer(f.tag, f.body);
    }
    panic!("the exchange did not end");
}

fn deliver(login: &mut ServerLogin, message: &[u8]) -> Result<LoginStep, LoginError> {
    let f = frame::split(message, 1 << 16).expect("frame").expect("whole");
    let BackendMessage::Authentication { code, data } = backend::parse(&f).expect("parses") else {
        panic!("not an authentication request")
    };
    login.on_request(code, data)
}

fn password(p: &str) -> LoginSecret {
    LoginSecret::Password(p.into())
}

#[test]
fn every_request_with_the_right_password() {
    for ask in [Ask::Cleartext, Ask::Md5, Ask::Scram] {
        let outcome = run("alice", ask, Expect::Password("s3cret".into()), password("s3cret")).expect("login");
        assert!(outcome.is_ok(), "{ask:?}: {outcome:?}");
    }
    let nothing = run("alice", Ask::Nothing, Expect::Password("x".into()), password("x")).expect("login");
    assert!(matches!(nothing, Ok(Proven::Nothing)));
}

#[test]
fn every_request_with_a_wrong_password() {
    for ask in [Ask::Cleartext, Ask::Md5, Ask::Scram] {
        let outcome = run("alice", ask, Expect::Password("s3cret".into()), password("guess")).expect("login");
        assert_eq!(outcome.err(), Some(Failure::WrongPassword), "{ask:?}");
    }
}

#[test]
fn mock_exchanges_always_fail_like_a_wrong_password() {
    let mock = ScramSecret::mock("nobody", &[5; 32]);
    for ask in [Ask::Cleartext, Ask::Md5, Ask::Scram, Ask::Nothing] {
        let outcome = run("nobody", ask, Expect::Mock(mock.clone()), password("anything")).expect("login");
        assert_eq!(outcome.err(), Some(Failure::WrongPassword), "{ask:?}");
    }
}

/// auth_query: the client is checked against the stored verifier, and what
/// its proof yields logs in to a server holding the same verifier.
#[test]
fn a_recovered_client_key_logs_in_again() {
    let verifier = ScramSecret::from_password("pencil", b"salt-of-sixteen!", 4096);
    let proven = run("bob", Ask::Scram, Expect::Scram(verifier.clone()), password("pencil")).expect("login");
    let Ok(Proven::ClientKey { client_key, server_key }) = proven else { panic!("no key: {proven:?}") };
    let again = run("bob", Ask::Scram, Expect::Scram(verifier), LoginSecret::ClientKey { client_key, server_key })
        .expect("login with the key");
    assert!(again.is_ok(), "{again:?}");
    // A key cannot answer an md5 or cleartext request.
    let md5 =
        run("bob", Ask::Md5, Expect::Password("pencil".into()), LoginSecret::ClientKey { client_key, server_key });
    assert!(matches!(md5, Err(LoginError::CannotAnswer(_))), "{:?}", md5.err());
}

#[test]
fn stored_md5_hashes_check_and_answer() {
    let hash = super::md5::password_hash("carol", "tiger");
    let outcome = run("carol", Ask::Md5, Expect::Md5Hash(hash.clone()), password("tiger")).expect("login");
    assert!(matches!(outcome, Ok(Proven::Md5)));
    let by_hash = run("carol", Ask::Md5, Expect::Password("tiger".into()), LoginSecret::Md5Hash(hash.clone()));
    assert!(by_hash.expect("login").is_ok());
    let cleartext = run("carol", Ask::Cleartext, Expect::Md5Hash(hash), password("tiger")).expect("login");
    assert!(matches!(cleartext, Ok(Proven::Password(_))));
}

#[test]
fn a_cleartext_password_is_checked_against_a_scram_verifier() {
    let verifier = ScramSecret::from_password("pencil", b"0123456789abcdef", 4096);
    let right = run("dave", Ask::Cleartext, Expect::Scram(verifier.clone()), password("pencil")).expect("login");
    assert!(matches!(right, Ok(Proven::Password(p)) if p == "pencil"));
    let wrong = run("dave", Ask::Cleartext, Expect::Scram(verifier), password("pen")).expect("login");
    assert_eq!(wrong.err(), Some(Failure::WrongPassword));
}

#[test]
fn out_of_protocol_answers_are_protocol_errors() {
    let (mut exchange, _) = ClientExchange::start(Ask::Scram, "eve", Expect::Password("x".into()), random());
    assert!(matches!(exchange.answer(b'Q', b"SELECT 1\0"), Step::Failed(Failure::Protocol(_))));
    let (mut exchange, _) = ClientExchange::start(Ask::Scram, "eve", Expect::Password("x".into()), random());
    let mut body = b"SCRAM-SHA-256-PLUS\0".to_vec();
    body.extend_from_slice(&(-1i32).to_be_bytes());
    assert!(matches!(exchange.answer(b'p', &body), Step::Failed(Failure::Protocol(_))));
    let (mut exchange, _) = ClientExchange::start(Ask::Md5, "eve", Expect::Password("x".into()), random());
    assert!(matches!(exchange.answer(b'p', b"no terminator"), Step::Failed(Failure::Protocol(_))));
    assert!(matches!(exchange.answer(b'p', b"md5\0"), Step::Failed(Failure::Protocol(_))), "a second answer");
}

#[test]
fn a_login_refuses_what_it_cannot_do() {
    let mut login = ServerLogin::new("u", password("p"), "n");
    assert_eq!(login.on_request(auth_code::GSS, &[]), Err(LoginError::Unsupported(auth_code::GSS)));
    let mut login = ServerLogin::new("u", password("p"), "n");
    assert_eq!(login.on_request(auth_code::SASL, b"SCRAM-SHA-256-PLUS\0\0"), Err(LoginError::NoScram));
    let mut login = ServerLogin::new("u", password("p"), "n");
    assert!(matches!(login.on_request(auth_code::MD5_PASSWORD, &[1, 2]), Err(LoginError::Exchange(_))));
    // A server that says OK in the middle of SCRAM has not proved itself.
    let mut login = ServerLogin::new("u", password("p"), "n");
    assert!(matches!(login.on_request(auth_code::SASL, b"SCRAM-SHA-256\0\0"), Ok(LoginStep::Send(_))));
    assert_eq!(login.on_request(auth_code::OK, &[]), Err(LoginError::IncompleteScram));
    assert_eq!(login.server_method(), Some(auth_code::SASL));
}
