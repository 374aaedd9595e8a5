use super::*;
use crate::auth::exchange::{ClientExchange, Failure, Random, Step};
use crate::auth::policy::Ask;
use crate::protocol::frame;
use serde_json::{Map, json};
use std::net::IpAddr;

const MOCK: [u8; 32] = [7; 32];

fn hba(text: &str) -> Hba {
    Hba::parse(std::path::Path::new("pgagroal_hba.conf"), text).expect("hba")
}

fn admins() -> Vec<Login> {
    vec![Login { user: "admin".into(), password: "s3cret".into() }]
}

fn tcp(addr: &str, tls: bool) -> Transport {
    Transport::Tcp { addr: addr.parse::<IpAddr>().expect("address"), tls }
}

fn random() -> Random {
    Random { md5_salt: [1, 2, 3, 4], scram_nonce: "servernonce".into(), scram_salt: [9; 16] }
}

/// Play the CLI's login against the daemon's check; returns what the CLI
/// ended with and whether the daemon's check passed.
fn login(password: &str, expect: Expect) -> (Result<AdminStep, AdminLoginError>, Option<Failure>) {
    let (mut cli, startup) = AdminLogin::start("admin", password, "clientnonce");
    assert_eq!(startup.get(4..8), Some(&crate::protocol::startup::PROTOCOL_3_0.to_be_bytes()[..]));
    let (mut daemon, mut step) = ClientExchange::start(Ask::Scram, "admin", expect, random());
    loop {
        let to_cli = match step {
            Step::Send(bytes) => bytes,
            Step::Done { send, .. } => {
                let mut bytes = send;
                bytes.extend_from_slice(&encode::authentication_ok());
                bytes
            }
            Step::Failed(failure) => {
                let error =
                    encode::error_response("FATAL", sqlstate::INVALID_PASSWORD, "password authentication failed");
                let parsed = frame::split(&error, 1024).expect("frame").expect("whole");
                return (cli.on_message(&parsed), Some(failure));
            }
        };
        let mut rest = &to_cli[..];
        let mut reply = None;
        while let Some(f) = frame::split(rest, 1 << 16).expect("frame") {
            let used = f.len();
            match cli.on_message(&f) {
                Ok(AdminStep::Send(bytes)) => reply = Some(bytes),
                Ok(AdminStep::Wait) => {}
                other => return (other, None),
            }
            rest = &rest[used..];
        }
        let reply = reply.expect("the CLI answers each request");
        let body = reply.get(5..).expect("a whole message");
        step = daemon.answer(reply[0], body);
    }
}

#[test]
fn the_right_password_logs_in_and_a_wrong_one_is_bad_credentials() {
    let expect = || Expect::Password("s3cret".into());
    assert_eq!(login("s3cret", expect()).0, Ok(AdminStep::LoggedIn));
    let (cli, daemon) = login("wrong", expect());
    assert_eq!(cli, Err(AdminLoginError::BadCredentials));
    assert_eq!(daemon, Some(Failure::WrongPassword));
    let (cli, daemon) = login("s3cret", Expect::Mock(ScramSecret::mock("admin", &MOCK)));
    assert_eq!((cli, daemon), (Err(AdminLoginError::BadCredentials), Some(Failure::WrongPassword)));
}

#[test]
fn admission_follows_hba_and_the_admins_file() {
    let lines = hba("host admin admin 127.0.0.1/32 scram-sha-256\nhost admin all 10.0.0.0/8 reject\n\
                     hostssl admin tls 0.0.0.0/0 md5\n");
    let secrets = admin_secrets(&admins(), &MOCK);
    let admit_as = |user: &str, db: &str, transport| admit(user, db, "127.0.0.1", transport, &lines, &secrets, &MOCK);
    let Admission::Check(Expect::Scram(secret)) = admit_as("admin", "admin", tcp("127.0.0.1", false)) else {
        panic!("the admin is not checked against its secret")
    };
    assert_eq!(secret.to_verifier(), secrets[0].1.to_verifier());
    let refused = |a: Admission| match a {
        Admission::Refuse(r) => r,
        other => panic!("admitted: {other:?}"),
    };
    let r = refused(admit_as("admin", "postgres", tcp("127.0.0.1", false)));
    assert_eq!((r.sqlstate, r.reason), (sqlstate::INVALID_AUTHORIZATION, "not the admin database"));
    assert!(r.message.contains("\"postgres\""), "{}", r.message);
    let r = refused(admit_as("admin", "admin", tcp("192.168.1.1", false)));
    assert_eq!(r.message, "no pgagroal_hba.conf entry for host \"127.0.0.1\", user \"admin\", database \"admin\"");
    assert_eq!(refused(admit_as("admin", "admin", tcp("10.1.2.3", false))).reason, "rejected by hba");
    // hostssl lines match TLS connections only; the method is always SCRAM.
    assert_eq!(refused(admit_as("tls", "admin", tcp("1.2.3.4", false))).reason, "no hba entry");
    assert!(matches!(admit_as("tls", "admin", tcp("1.2.3.4", true)), Admission::Check(Expect::Mock(_))));
}

#[test]
fn an_admin_and_a_stranger_show_the_same_salt_every_time() {
    let secrets = admin_secrets(&admins(), &MOCK);
    let mock = ScramSecret::mock("admin", &MOCK);
    assert_eq!(secrets[0].1.salt, mock.salt, "the admin's salt is the mock's for the name");
    assert_eq!(secrets[0].1.iterations, mock.iterations);
    assert_eq!(admin_secrets(&admins(), &MOCK)[0].1.to_verifier(), secrets[0].1.to_verifier(), "stable");
    // The secret still checks the admin's real password.
    assert_eq!(login("s3cret", Expect::Scram(secrets[0].1.clone())).0, Ok(AdminStep::LoggedIn));
    assert_eq!(login("wrong", Expect::Scram(secrets[0].1.clone())).0, Err(AdminLoginError::BadCredentials));
}

#[test]
fn conf_reload_stays_local() {
    let request = |command| crate::mgmt::request(command, crate::mgmt::Output::Text, Map::new());
    assert_eq!(
        relay(&request(Command::Reload)),
        Relay::Refuse(
            error_code::CONF_RELOAD_LOCAL_ONLY,
            "conf reload is only accepted on the local management socket"
        )
    );
    for command in [Command::Ping, Command::Status, Command::ConfigSet, Command::Shutdown, Command::Flush] {
        assert_eq!(relay(&request(command)), Relay::Forward, "{command:?}");
    }
    assert_eq!(relay(&json!({"Header": {"Command": "x"}})), Relay::Forward);
}

#[test]
fn the_cli_never_answers_anything_but_scram() {
    for request in [
        crate::auth::sasl::authentication_cleartext_password().to_vec(),
        crate::auth::sasl::authentication_md5_password([1, 2, 3, 4]).to_vec(),
        encode::authentication_ok().to_vec(),
    ] {
        let (mut cli, _) = AdminLogin::start("admin", "s3cret", "clientnonce");
        let f = frame::split(&request, 1024).expect("frame").expect("whole");
        assert!(matches!(cli.on_message(&f), Err(AdminLoginError::Protocol(_))), "{request:?}");
    }
    let (mut cli, _) = AdminLogin::start("admin", "s3cret", "clientnonce");
    let refused = encode::error_response("FATAL", sqlstate::INVALID_AUTHORIZATION, "no pgagroal_hba.conf entry");
    let f = frame::split(&refused, 1024).expect("frame").expect("whole");
    assert_eq!(cli.on_message(&f), Err(AdminLoginError::Refused("no pgagroal_hba.conf entry".into())));
}
