//! Property tests of the authentication core: no parser panics on
//! arbitrary or nearly valid bytes, encoders and parsers agree, the two
//! SCRAM roles agree on any printable nonces and any password, and any
//! change to a proof or signature is caught.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pgagroal::auth::scram::messages::{self, ServerFinal};
use pgagroal::auth::scram::{MAX_ITERATIONS, MAX_SALT_LEN, prepare_password};
use pgagroal::auth::{AuthError, ScramClient, ScramSecret, ScramServer, md5, sasl};
use pgagroal::protocol::frame;
use proptest::prelude::*;

/// RFC 5802 `printable`: 0x21..=0x7e without ','.
fn nonce() -> impl Strategy<Value = String> {
    "[!-+\\--~]{1,64}"
}

fn password() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[ -~]{0,24}".prop_map(String::into_bytes),
        any::<String>().prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..24),
    ]
}

/// Text that is mostly base64 with some bytes that are not.
fn base64ish() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9+/=]{0,60}", "[A-Za-z0-9+/]{43}=", "[ -~]{0,20}"]
}

fn body_of(message: &[u8]) -> Result<Vec<u8>, TestCaseError> {
    let f = frame::split(message, 1 << 20).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let f = f.ok_or_else(|| TestCaseError::fail("incomplete"))?;
    prop_assert_eq!(f.len(), message.len());
    Ok(f.body.to_vec())
}

/// One whole exchange; the ClientKey the server recovered on success.
fn exchange(mut client: ScramClient, server: &mut ScramServer) -> Result<[u8; 32], AuthError> {
    let server_first = server.client_first(&client.client_first())?;
    let client_final = client.server_first(&server_first)?;
    let ok = server.client_final(&client_final)?;
    client.server_final(&ok.server_final)?;
    Ok(ok.client_key)
}

fn sha256(data: &[u8; 32]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

proptest! {
    #[test]
    fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = messages::parse_client_first(&data);
        let _ = messages::parse_client_final(&data);
        let _ = messages::parse_server_final(&data);
        if let Ok(first) = messages::parse_server_first(&data) {
            prop_assert!((1..=MAX_ITERATIONS).contains(&first.iterations));
            prop_assert!((1..=MAX_SALT_LEN).contains(&first.salt.len()));
        }
        let _ = sasl::parse_mechanisms(&data);
        let _ = sasl::parse_initial_response(&data);
        let _ = sasl::parse_password_message(&data);
        let _ = ScramSecret::parse(&String::from_utf8_lossy(&data));
        let _ = md5::verify(&String::from_utf8_lossy(&data), [1, 2, 3, 4], &data);
        let mut server = ScramServer::new(ScramSecret::from_password("pw", b"salt", 1), "srv");
        let _ = server.client_first(&data);
        let _ = server.client_final(&data);
        let mut client = ScramClient::new("pw", "cli");
        let _ = client.server_first(&data);
        let _ = client.server_final(&data);
    }

    #[test]
    fn nearly_valid_messages_never_panic(
        cli in nonce(), srv in nonce(), salt in base64ish(), iterations in "[-+0-9a]{0,12}",
        proof in base64ish(), ext in "[a-z]=[ -+\\--~]{0,8}", verifier in base64ish(),
    ) {
        let server_first = format!("r={cli}{srv},s={salt},i={iterations},{ext}");
        if let Ok(first) = messages::parse_server_first(server_first.as_bytes()) {
            prop_assert!((1..=MAX_ITERATIONS).contains(&first.iterations));
            prop_assert!(!first.salt.is_empty());
        }
        let mut client = ScramClient::new("pw", &cli);
        let _ = client.server_first(server_first.as_bytes());
        let _ = messages::parse_client_first(format!("n,,n=,r={cli},{ext}").as_bytes());
        let _ = messages::parse_client_final(format!("c=biws,r={cli}{srv},{ext},p={proof}").as_bytes());
        let _ = messages::parse_server_final(format!("v={verifier},{ext}").as_bytes());
        let _ = ScramSecret::parse(&format!("SCRAM-SHA-256${iterations}:{salt}${proof}:{verifier}"));
    }

    #[test]
    fn mutated_exchanges_never_panic(
        cli in nonce(), srv in nonce(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<bool>(),
    ) {
        let mut server = ScramServer::new(ScramSecret::from_password("pw", b"salt", 1), &srv);
        let mut client = ScramClient::new("pw", &cli);
        let mut first = client.client_first();
        let i = at.index(first.len());
        if cut { first.truncate(i) } else { first[i] = byte }
        if let Ok(server_first) = server.client_first(&first)
            && let Ok(last) = client.server_first(&server_first)
        {
            let _ = server.client_final(&last);
        }
    }

    #[test]
    fn initial_response_round_trips(
        mechanism in "[A-Z0-9_-]{1,20}", data in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
    ) {
        let body = body_of(&sasl::sasl_initial_response(&mechanism, data.as_deref()))?;
        let parsed = sasl::parse_initial_response(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed.mechanism, mechanism.as_str());
        prop_assert_eq!(parsed.data, data.as_deref());
    }

    #[test]
    fn mechanisms_round_trip(names in proptest::collection::vec("[A-Z0-9_-]{1,20}", 1..=16)) {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let body = body_of(&sasl::authentication_sasl(&refs))?;
        prop_assert_eq!(body.get(..4), Some(&10i32.to_be_bytes()[..]));
        prop_assert_eq!(sasl::parse_mechanisms(&body[4..]), Ok(refs));
    }

    #[test]
    fn password_message_round_trips(password in proptest::collection::vec(1u8..=255, 0..100)) {
        let body = body_of(&sasl::password_message(&password).map_err(|e| TestCaseError::fail(e.to_string()))?)?;
        prop_assert_eq!(sasl::parse_password_message(&body), Ok(&password[..]));
    }

    #[test]
    fn verifier_round_trips(
        iterations in 1u32..=i32::MAX as u32, salt in proptest::collection::vec(any::<u8>(), 1..=64),
        stored_key in any::<[u8; 32]>(), server_key in any::<[u8; 32]>(),
    ) {
        let secret = ScramSecret { iterations, salt, stored_key, server_key };
        prop_assert_eq!(ScramSecret::parse(&secret.to_verifier()), Ok(secret));
    }

    #[test]
    fn roles_agree(password in password(), cli in nonce(), srv in nonce(), iterations in 1u32..=4) {
        let secret = ScramSecret::from_password_bytes(&password, b"proptest salt", iterations);
        let stored_key = secret.stored_key;
        let server_key = secret.server_key;
        let mut server = ScramServer::new(secret.clone(), &srv);
        let key = exchange(ScramClient::with_password_bytes(&password, &cli), &mut server);
        prop_assert_eq!(key.as_ref().map(sha256), Ok(stored_key));

        // The recovered key logs in again.
        let key = key.map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut server = ScramServer::new(secret, &srv);
        prop_assert_eq!(exchange(ScramClient::with_client_key(key, Some(server_key), &cli), &mut server), Ok(key));
    }

    #[test]
    fn other_passwords_fail(right in password(), wrong in password()) {
        prop_assume!(prepare_password(&right) != prepare_password(&wrong));
        let mut server = ScramServer::new(ScramSecret::from_password_bytes(&right, b"salt", 1), "srv");
        prop_assert_eq!(exchange(ScramClient::with_password_bytes(&wrong, "cli"), &mut server), Err(AuthError::WrongPassword));
    }

    #[test]
    fn any_flipped_proof_byte_fails(
        password in password(), cli in nonce(), srv in nonce(), at in 0usize..32, bit in 0u8..8,
    ) {
        let secret = ScramSecret::from_password_bytes(&password, b"salt", 1);
        let mut server = ScramServer::new(secret, &srv);
        let mut client = ScramClient::with_password_bytes(&password, &cli);
        let server_first = server.client_first(&client.client_first()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let last = client.server_first(&server_first).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let text = String::from_utf8(last).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or_else(|| TestCaseError::fail("no proof"))?;
        let mut proof = STANDARD.decode(proof).map_err(|e| TestCaseError::fail(e.to_string()))?;
        proof[at] ^= 1 << bit;
        let tampered = format!("{without_proof},p={}", STANDARD.encode(&proof));
        prop_assert_eq!(server.client_final(tampered.as_bytes()).map(|_| ()), Err(AuthError::WrongPassword));
    }

    #[test]
    fn any_flipped_signature_byte_fails(cli in nonce(), srv in nonce(), at in 0usize..32, bit in 0u8..8) {
        let mut server = ScramServer::new(ScramSecret::from_password("pw", b"salt", 1), &srv);
        let mut client = ScramClient::new("pw", &cli);
        let server_first = server.client_first(&client.client_first()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let last = client.server_first(&server_first).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let ok = server.client_final(&last).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let Ok(ServerFinal::Verifier(mut signature)) = messages::parse_server_final(&ok.server_final) else {
            return Err(TestCaseError::fail("no verifier"));
        };
        signature[at] ^= 1 << bit;
        let tampered = format!("v={}", STANDARD.encode(signature));
        prop_assert_eq!(client.server_final(tampered.as_bytes()), Err(AuthError::ServerSignature));
    }

    #[test]
    fn md5_answers_verify(user in "[ -~]{0,20}", password in "[ -~]{0,20}", salt in any::<[u8; 4]>(), at in 0usize..35) {
        let hash = md5::password_hash(&user, &password);
        let answer = md5::response(&user, &password, salt);
        prop_assert!(md5::verify(&hash, salt, answer.as_bytes()));
        let mut bad = answer.into_bytes();
        bad[at] ^= 0x20;
        prop_assert!(!md5::verify(&hash, salt, &bad));
    }
}

proptest! {
    // Each case computes PBKDF2 with the mock's 4096 iterations.
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn mock_secrets_refuse_every_login(user in "[ -~]{0,20}", password in password(), proof in any::<[u8; 32]>()) {
        let server_secret = [0x42; 32];
        let mut server = ScramServer::new(ScramSecret::mock(&user, &server_secret), "srv");
        let client = ScramClient::with_password_bytes(&password, "cli");
        prop_assert_eq!(exchange(client, &mut server), Err(AuthError::WrongPassword));

        let mut server = ScramServer::new(ScramSecret::mock(&user, &server_secret), "srv");
        let server_first = server.client_first(b"n,,n=,r=cli").map_err(|e| TestCaseError::fail(e.to_string()))?;
        let first = messages::parse_server_first(&server_first).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!((first.salt.len(), first.iterations), (16, 4096));
        let forged = format!("c=biws,r=clisrv,p={}", STANDARD.encode(proof));
        prop_assert_eq!(server.client_final(forged.as_bytes()).map(|_| ()), Err(AuthError::WrongPassword));
    }
}
