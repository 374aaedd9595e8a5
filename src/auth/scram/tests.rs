//! Known-answer tests for SCRAM-SHA-256 (the RFC 7677 example and an
//! exchange recorded between libpq and PostgreSQL 15), the shared
//! primitives, and the two roles against each other.

use super::*;
use crate::auth::AuthError;

// RFC 7677, section 3: user "user", password "pencil".
const RFC_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const RFC_CLIENT_FIRST: &[u8] = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_FIRST: &[u8] =
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC_CLIENT_FINAL: &[u8] =
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC_SERVER_FINAL: &[u8] = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

// Recorded once: PostgreSQL 15.18 (initdb -E UTF8, password_encryption =
// scram-sha-256) with `CREATE ROLE rec_user LOGIN PASSWORD
// E'pool\u00A0pass\u00ADword'`, then psql 15 (libpq, PGSSLMODE=disable) logging
// in as rec_user through a small TCP proxy that printed the SASL messages in
// both directions. The verifier is `SELECT rolpassword FROM pg_authid`.
// SASLprep maps U+00A0 to a space and U+00AD to nothing, so the password is
// hashed as "pool password".
const PG_PASSWORD: &str = "pool\u{a0}pass\u{ad}word";
const PG_VERIFIER: &str = "SCRAM-SHA-256$4096:FGVfHMC9ZDZ4XXFeLAnPIw==$H9MDzGdVqWYftdsSUo4BlDdPFje1kx4bAAqtwUqmbu8=:Zmq0zL9aNVmzsWOeA0bloDOCkgRMlTmizrPTjsZ14/w=";
const PG_CLIENT_NONCE: &str = "hTB4Gt/BH7Vx56OiE2UmmRLd";
const PG_SERVER_NONCE: &str = "MVD+ruGvVc9HXqkDd/LurHKy";
const PG_CLIENT_FIRST: &[u8] = b"n,,n=,r=hTB4Gt/BH7Vx56OiE2UmmRLd";
const PG_SERVER_FIRST: &[u8] = b"r=hTB4Gt/BH7Vx56OiE2UmmRLdMVD+ruGvVc9HXqkDd/LurHKy,s=FGVfHMC9ZDZ4XXFeLAnPIw==,i=4096";
const PG_CLIENT_FINAL: &[u8] =
    b"c=biws,r=hTB4Gt/BH7Vx56OiE2UmmRLdMVD+ruGvVc9HXqkDd/LurHKy,p=fZ0P1ItNA0fwV8ATEd1hintGECIFtJqvKBCpA72aybY=";
const PG_SERVER_FINAL: &[u8] = b"v=uruJm2IKK22kG5tPiZdpi+cyK6DmzCM3eS+hBFJBEO4=";

fn rfc_secret() -> ScramSecret {
    let salt = b64_decode(RFC_SALT.as_bytes(), MAX_SALT_LEN).expect("salt");
    ScramSecret::from_password("pencil", &salt, 4096)
}

#[test]
fn rfc7677_client_role() {
    let mut client = ScramClient::new("pencil", RFC_CLIENT_NONCE).with_user_name("user");
    assert_eq!(client.client_first(), RFC_CLIENT_FIRST);
    assert_eq!(client.server_first(RFC_SERVER_FIRST).expect("client-final"), RFC_CLIENT_FINAL);
    assert_eq!(client.server_final(RFC_SERVER_FINAL), Ok(()));
}

#[test]
fn rfc7677_server_role() {
    let mut server = ScramServer::new(rfc_secret(), RFC_SERVER_NONCE);
    assert_eq!(server.client_first(RFC_CLIENT_FIRST).expect("server-first"), RFC_SERVER_FIRST);
    let ok = server.client_final(RFC_CLIENT_FINAL).expect("proof accepted");
    assert_eq!(ok.server_final, RFC_SERVER_FINAL);
    assert_eq!(sha256(&ok.client_key), rfc_secret().stored_key);
}

#[test]
fn recorded_postgresql_exchange_client_role() {
    let mut client = ScramClient::new(PG_PASSWORD, PG_CLIENT_NONCE);
    assert_eq!(client.client_first(), PG_CLIENT_FIRST);
    assert_eq!(client.server_first(PG_SERVER_FIRST).expect("client-final"), PG_CLIENT_FINAL);
    assert_eq!(client.server_final(PG_SERVER_FINAL), Ok(()));
    // The prepared spelling is the same password.
    let mut client = ScramClient::new("pool password", PG_CLIENT_NONCE);
    assert_eq!(client.server_first(PG_SERVER_FIRST).expect("client-final"), PG_CLIENT_FINAL);
}

#[test]
fn recorded_postgresql_exchange_server_role() {
    let secret = ScramSecret::parse(PG_VERIFIER).expect("verifier");
    let stored_key = secret.stored_key;
    let mut server = ScramServer::new(secret, PG_SERVER_NONCE);
    assert_eq!(server.client_first(PG_CLIENT_FIRST).expect("server-first"), PG_SERVER_FIRST);
    let ok = server.client_final(PG_CLIENT_FINAL).expect("proof accepted");
    assert_eq!(ok.server_final, PG_SERVER_FINAL);
    assert_eq!(sha256(&ok.client_key), stored_key);

    // The recovered ClientKey replays the same login toward PostgreSQL.
    let server_key = ScramSecret::parse(PG_VERIFIER).expect("verifier").server_key;
    let mut client = ScramClient::with_client_key(ok.client_key, Some(server_key), PG_CLIENT_NONCE);
    assert_eq!(client.server_first(PG_SERVER_FIRST).expect("client-final"), PG_CLIENT_FINAL);
    assert_eq!(client.server_final(PG_SERVER_FINAL), Ok(()));
}

#[test]
fn hmac_matches_the_slice_constructor() {
    let key = [0x0bu8; 32];
    let mut mac = HmacSha256::new_from_slice(&key).expect("any key length");
    mac.update(b"Hi There");
    let want: [u8; 32] = mac.finalize().into_bytes().into();
    assert_eq!(hmac_sha256(&key, &[b"Hi ", b"There"]), want);
}

#[test]
fn pbkdf2_known_answer() {
    // RFC 7914, section 11: PBKDF2-HMAC-SHA256 (P="passwd", S="salt", c=1), first
    // 32 bytes 55ac046e 56e3089f ec1691c2 2544b605 f9418521 6dde0465 e68b9d57 c20dacbc.
    let want = b64_decode(b"VawEblbjCJ/sFpHCJUS2BflBhSFt3gRl5oudV8INrLw=", 32).expect("b64");
    assert_eq!(salted_password(b"passwd", b"salt", 1).to_vec(), want);
    assert_eq!(salted_password(b"passwd", b"salt", 0), salted_password(b"passwd", b"salt", 1));
}

#[test]
fn password_preparation_follows_postgresql() {
    // Mapped to nothing / mapped to a space.
    assert_eq!(&*prepare_password("I\u{ad}X".as_bytes()), b"IX");
    assert_eq!(&*prepare_password("a\u{2003}b".as_bytes()), b"a b");
    // NFKC.
    assert_eq!(&*prepare_password("\u{2168}".as_bytes()), b"IX");
    // ASCII is used as it is, control characters included.
    assert_eq!(&*prepare_password(b"pass\x07word"), b"pass\x07word");
    assert_eq!(&*prepare_password(b""), b"");
    // SASLprep failures and non-UTF-8 fall back to the raw bytes.
    for raw in ["x\u{e000}".as_bytes(), "\u{627}1".as_bytes(), "\u{221}".as_bytes(), "\u{ad}".as_bytes(), b"\xff\xfe"] {
        assert_eq!(&*prepare_password(raw), raw);
    }
}

#[test]
fn base64_bounds() {
    assert_eq!(b64_decode(b"", 4), Some(Vec::new()));
    assert_eq!(b64_decode(b"AAAA", 3), Some(vec![0; 3]));
    assert_eq!(b64_decode(b"AAAA", 2), None);
    assert_eq!(b64_decode(b"AAAAAAAA", 3), None);
    assert_eq!(b64_decode(b"AAA", 3), None);
    assert_eq!(b64_decode(b"AAB=", 3), None);
    assert_eq!(b64_decode(b"AA A", 3), None);
    assert!(b64_decode_key(&[b'A'; 44]).is_none());
    assert!(b64_decode_key(b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_some());
}

#[test]
fn server_accepts_the_y_flag() {
    // A client that supports channel binding but was not offered it (libpq
    // over TLS to a server without -PLUS) sends "y,," and then c=eSws. The
    // client role never does, so the proof is built here by hand.
    let secret = ScramSecret::from_password("pw", b"salt", 2);
    let (client_key, server_key) = client_and_server_keys(&salted_password(b"pw", b"salt", 2));
    let mut server = ScramServer::new(secret, "srv");
    let server_first = server.client_first(b"y,,n=,r=cli").expect("server-first");
    let without_proof = b"c=eSws,r=clisrv";
    let auth_message = [&b"n=,r=cli,"[..], &server_first, b",", without_proof].concat();
    let proof = crate::auth::ct::xor32(&client_key, &hmac_sha256(&sha256(&client_key), &[&auth_message]));
    let last = format!("c=eSws,r=clisrv,p={}", b64_encode(&proof));
    let ok = server.client_final(last.as_bytes()).expect("accepted");
    assert_eq!(ok.client_key, client_key);
    assert_eq!(ok.server_final, messages::server_final(&hmac_sha256(&server_key, &[&auth_message])));
}

/// Run a whole exchange; Ok with the ClientKey the server recovered.
fn exchange(mut client: ScramClient, server: &mut ScramServer) -> Result<[u8; 32], AuthError> {
    let server_first = server.client_first(&client.client_first())?;
    let client_final = client.server_first(&server_first)?;
    let ok = server.client_final(&client_final)?;
    client.server_final(&ok.server_final)?;
    Ok(ok.client_key)
}

#[test]
fn roles_agree_on_passwords_and_nonces() {
    let passwords: [&[u8]; 6] = [
        b"correct horse battery staple",
        "I\u{ad}X".as_bytes(),
        "p\u{e4}ssw\u{f6}rd \u{1f511}".as_bytes(),
        "x\u{e000}".as_bytes(),
        b"\xff\xfe not UTF-8",
        b"",
    ];
    for password in passwords {
        for len in [1, 24, 32, 200] {
            let client_nonce = "c".repeat(len);
            let server_nonce = "~".repeat(len);
            let secret = ScramSecret::from_password_bytes(password, b"per-user salt", 64);
            let mut server = ScramServer::new(secret.clone(), &server_nonce);
            let client = ScramClient::with_password_bytes(password, &client_nonce);
            let key = exchange(client, &mut server).expect("login");
            assert_eq!(sha256(&key), secret.stored_key);
        }
    }
    // SASLprep makes these the same password.
    let secret = ScramSecret::from_password("I\u{ad}X", b"salt", 16);
    assert!(exchange(ScramClient::new("IX", "n"), &mut ScramServer::new(secret.clone(), "s")).is_ok());
    assert!(exchange(ScramClient::new("\u{2168}", "n"), &mut ScramServer::new(secret, "s")).is_ok());
}

#[test]
fn wrong_password_is_its_own_error() {
    let secret = ScramSecret::from_password("right", b"salt", 16);
    let mut server = ScramServer::new(secret.clone(), "s");
    assert_eq!(exchange(ScramClient::new("wrong", "n"), &mut server), Err(AuthError::WrongPassword));
    let mut server = ScramServer::new(secret, "s");
    assert_eq!(exchange(ScramClient::new("Right", "n"), &mut server), Err(AuthError::WrongPassword));
}

#[test]
fn client_key_login_after_a_server_role_success() {
    let secret = ScramSecret::from_password("app password", b"shared salt", 4096);
    let mut front = ScramServer::new(secret.clone(), "front-nonce");
    let key = exchange(ScramClient::new("app password", "app-nonce"), &mut front).expect("login");

    // Toward a server with the same secret, with and without the ServerKey.
    let mut back = ScramServer::new(secret.clone(), "back-nonce");
    assert!(exchange(ScramClient::with_client_key(key, Some(secret.server_key), "pooler"), &mut back).is_ok());
    let mut back = ScramServer::new(secret.clone(), "back-nonce");
    assert!(exchange(ScramClient::with_client_key(key, None, "pooler"), &mut back).is_ok());

    // A server with a different secret for the same password refuses the key.
    let other = ScramSecret::from_password("app password", b"other salt", 4096);
    let mut back = ScramServer::new(other, "back-nonce");
    let client = ScramClient::with_client_key(key, Some(secret.server_key), "pooler");
    assert_eq!(exchange(client, &mut back), Err(AuthError::WrongPassword));

    // A ServerKey that does not match the server's is caught at server-final.
    let mut back = ScramServer::new(secret, "back-nonce");
    let client = ScramClient::with_client_key(key, Some([0; 32]), "pooler");
    assert_eq!(exchange(client, &mut back), Err(AuthError::ServerSignature));
}

#[test]
fn mock_secret_looks_real_and_refuses_every_proof() {
    let server_secret = [0x5au8; 32];
    let mut server = ScramServer::new(ScramSecret::mock("nobody", &server_secret), "srv");
    let server_first = server.client_first(b"n,,n=,r=cli").expect("server-first");
    let parsed = messages::parse_server_first(&server_first).expect("well-formed");
    assert_eq!((parsed.nonce, parsed.salt.len(), parsed.iterations), ("clisrv", 16, 4096));
    let again = ScramServer::new(ScramSecret::mock("nobody", &server_secret), "srv").client_first(b"n,,n=,r=cli");
    assert_eq!(again.as_ref(), Ok(&server_first));

    for password in ["", "nobody", "password", "secret"] {
        let mut server = ScramServer::new(ScramSecret::mock("nobody", &server_secret), "srv");
        assert_eq!(exchange(ScramClient::new(password, "cli"), &mut server), Err(AuthError::WrongPassword));
    }
}
