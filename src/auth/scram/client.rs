//! [`ScramClient`]: the pooler logging in to PostgreSQL with
//! SCRAM-SHA-256, either with a password or with a ClientKey recovered
//! from an application's own login ([`super::ServerSuccess::client_key`]).
//!
//! ```text
//!                  client_first   -> client-first   ("n,,n=,r=<nonce>", as libpq sends it)
//! server-first --> server_first   -> client-final
//! server-final --> server_final   -> Ok(()) once the server's signature is checked
//! ```
//!
//! The client nonce is injected. The salt and iteration count come from
//! the server; more than [`super::MAX_ITERATIONS`] iterations are refused
//! before any hashing. Any failure, and any call out of order, leaves the
//! machine finished.

use core::fmt;

use super::messages::{self, ChannelBinding, ServerFinal};
use super::{KEY_LEN, MAX_NONCE_LEN, b64_encode, client_and_server_keys, hmac_sha256, is_printable_nonce};
use super::{prepare_password, salted_password, sha256};
use crate::auth::AuthError;
use crate::auth::ct::{ct_eq, wipe, xor32};

enum Credential {
    /// The password, already prepared by PostgreSQL's rule.
    Password(Vec<u8>),
    /// A ClientKey, and the ServerKey if the secret is known, for a login
    /// without the password.
    ClientKey { client_key: [u8; KEY_LEN], server_key: Option<[u8; KEY_LEN]> },
}

enum State {
    /// The client-first-message is (to be) sent; waiting for server-first.
    Start,
    /// The client-final-message was returned; waiting for server-final.
    /// `None` when there is no ServerKey to check the signature with.
    FinalSent { server_signature: Option<[u8; KEY_LEN]> },
    /// Succeeded, failed, or called out of order.
    Finished,
}

/// The client side of one SCRAM-SHA-256 exchange.
pub struct ScramClient {
    credential: Credential,
    nonce: String,
    /// The escaped `n=` value; empty, as libpq sends it, unless set.
    user: String,
    state: State,
}

impl ScramClient {
    /// A client logging in with `password` (prepared by PostgreSQL's rule,
    /// [`super::prepare_password`]) and `client_nonce`, which must be
    /// 1..=1024 printable ASCII characters other than ',' and fresh for
    /// every exchange; libpq uses the base64 of 18 random bytes.
    pub fn new(password: &str, client_nonce: &str) -> ScramClient {
        ScramClient::with_password_bytes(password.as_bytes(), client_nonce)
    }

    /// [`ScramClient::new`] for a password that may not be UTF-8.
    pub fn with_password_bytes(password: &[u8], client_nonce: &str) -> ScramClient {
        let prepared = prepare_password(password).into_owned();
        ScramClient::with_credential(Credential::Password(prepared), client_nonce)
    }

    /// A client logging in with a ClientKey instead of a password: the
    /// salt and iteration count the server sends are then only used to
    /// build the messages, and the key works only if the server's secret
    /// is the one the key was recovered against. With `server_key` the
    /// server's signature is verified; without it the server-final-message
    /// is only checked for form, so the server is not authenticated.
    pub fn with_client_key(
        client_key: [u8; KEY_LEN],
        server_key: Option<[u8; KEY_LEN]>,
        client_nonce: &str,
    ) -> ScramClient {
        ScramClient::with_credential(Credential::ClientKey { client_key, server_key }, client_nonce)
    }

    fn with_credential(credential: Credential, client_nonce: &str) -> ScramClient {
        ScramClient { credential, nonce: client_nonce.to_owned(), user: String::new(), state: State::Start }
    }

    /// Send `user` in `n=` instead of the empty name libpq sends.
    /// PostgreSQL ignores the attribute; other SCRAM servers (and the
    /// RFC 7677 example) need it.
    pub fn with_user_name(mut self, user: &str) -> ScramClient {
        self.user = messages::escape_user(user);
        self
    }

    fn first_bare(&self) -> Vec<u8> {
        messages::client_first_bare(&self.user, &self.nonce)
    }

    /// The client-first-message, the data of SASLInitialResponse:
    /// `n,,n=,r=<nonce>`.
    pub fn client_first(&self) -> Vec<u8> {
        let mut out = ChannelBinding::Unsupported.gs2_header().as_bytes().to_vec();
        out.extend_from_slice(&self.first_bare());
        out
    }

    /// Read the server-first-message (the data of
    /// AuthenticationSASLContinue) and return the client-final-message
    /// (`c=biws,r=<combined nonce>,p=<proof>`) for SASLResponse.
    pub fn server_first(&mut self, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        if !matches!(self.state, State::Start) {
            self.state = State::Finished;
            return Err(AuthError::OutOfOrder { step: "server_first" });
        }
        self.state = State::Finished;
        if !is_printable_nonce(self.nonce.as_bytes(), MAX_NONCE_LEN) {
            return Err(AuthError::LocalNonce("client"));
        }
        let first = messages::parse_server_first(data)?;
        if first.nonce.len() <= self.nonce.len() || !first.nonce.starts_with(&self.nonce) {
            return Err(AuthError::ServerFirst("the nonce does not extend the client's nonce"));
        }
        let (mut client_key, server_key) = match &self.credential {
            Credential::Password(password) => {
                let mut salted = salted_password(password, &first.salt, first.iterations);
                let (client_key, server_key) = client_and_server_keys(&salted);
                wipe(&mut salted);
                (client_key, Some(server_key))
            }
            Credential::ClientKey { client_key, server_key } => (*client_key, *server_key),
        };
        let stored_key = sha256(&client_key);
        let without_proof = messages::client_final_without_proof(ChannelBinding::Unsupported, first.nonce);
        let mut auth_message = self.first_bare();
        auth_message.push(b',');
        auth_message.extend_from_slice(data);
        auth_message.push(b',');
        auth_message.extend_from_slice(&without_proof);
        let proof = xor32(&client_key, &hmac_sha256(&stored_key, &[&auth_message]));
        wipe(&mut client_key);
        let server_signature = server_key.map(|key| hmac_sha256(&key, &[&auth_message]));
        self.state = State::FinalSent { server_signature };
        let mut out = without_proof;
        out.extend_from_slice(b",p=");
        out.extend_from_slice(b64_encode(&proof).as_bytes());
        Ok(out)
    }

    /// Read the server-final-message (the data of AuthenticationSASLFinal)
    /// and check the server's signature in constant time. An `e=` answer
    /// is [`AuthError::ServerError`] with the server's text.
    pub fn server_final(&mut self, data: &[u8]) -> Result<(), AuthError> {
        let State::FinalSent { server_signature } = core::mem::replace(&mut self.state, State::Finished) else {
            return Err(AuthError::OutOfOrder { step: "server_final" });
        };
        match messages::parse_server_final(data)? {
            ServerFinal::Error(text) => Err(AuthError::ServerError(text)),
            ServerFinal::Verifier(signature) => match server_signature {
                Some(expected) if !ct_eq(&signature, &expected) => Err(AuthError::ServerSignature),
                _ => Ok(()),
            },
        }
    }
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let credential = match self.credential {
            Credential::Password(_) => "password",
            Credential::ClientKey { server_key: Some(_), .. } => "client key and server key",
            Credential::ClientKey { server_key: None, .. } => "client key",
        };
        let state = match self.state {
            State::Start => "start",
            State::FinalSent { .. } => "final sent",
            State::Finished => "finished",
        };
        f.debug_struct("ScramClient").field("credential", &credential).field("state", &state).finish_non_exhaustive()
    }
}

impl Drop for ScramClient {
    fn drop(&mut self) {
        match &mut self.credential {
            Credential::Password(password) => wipe(password),
            Credential::ClientKey { client_key, server_key } => {
                wipe(client_key);
                if let Some(key) = server_key {
                    wipe(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_first_is_what_libpq_sends() {
        let c = ScramClient::new("pw", "hTB4Gt/BH7Vx56OiE2UmmRLd");
        assert_eq!(c.client_first(), b"n,,n=,r=hTB4Gt/BH7Vx56OiE2UmmRLd");
        let c = ScramClient::new("pw", "abc").with_user_name("a,b=c");
        assert_eq!(c.client_first(), b"n,,n=a=2Cb=3Dc,r=abc");
    }

    #[test]
    fn nonce_must_extend_ours() {
        for first in ["r=abc,s=c2FsdA==,i=1", "r=ab,s=c2FsdA==,i=1", "r=xabc1,s=c2FsdA==,i=1"] {
            let mut c = ScramClient::new("pw", "abc");
            assert_eq!(
                c.server_first(first.as_bytes()),
                Err(AuthError::ServerFirst("the nonce does not extend the client's nonce")),
                "{first}"
            );
        }
        let mut c = ScramClient::new("pw", "abc");
        assert!(c.server_first(b"r=abcd,s=c2FsdA==,i=1").is_ok());
    }

    #[test]
    fn absurd_iteration_counts_are_refused_before_hashing() {
        for first in [
            "r=abcd,s=c2FsdA==,i=1000001",
            "r=abcd,s=c2FsdA==,i=4294967296",
            "r=abcd,s=c2FsdA==,i=99999999999999999999",
        ] {
            let mut c = ScramClient::new("pw", "abc");
            assert_eq!(
                c.server_first(first.as_bytes()),
                Err(AuthError::ServerFirst("the iteration count is above 1000000")),
                "{first}"
            );
        }
    }

    #[test]
    fn out_of_order_and_after_failure() {
        let mut c = ScramClient::new("pw", "abc");
        assert_eq!(c.server_final(b"v=x"), Err(AuthError::OutOfOrder { step: "server_final" }));
        assert_eq!(
            c.server_first(b"r=abcd,s=c2FsdA==,i=1").err(),
            Some(AuthError::OutOfOrder { step: "server_first" })
        );

        let mut c = ScramClient::new("pw", "abc");
        assert!(c.server_first(b"r=abcd,s=c2FsdA==,i=1").is_ok());
        assert_eq!(
            c.server_first(b"r=abcd,s=c2FsdA==,i=1").err(),
            Some(AuthError::OutOfOrder { step: "server_first" })
        );
        assert_eq!(c.server_final(b"v=x"), Err(AuthError::OutOfOrder { step: "server_final" }));

        let mut c = ScramClient::new("pw", "abc");
        assert!(c.server_first(b"r=abc").is_err());
        assert!(matches!(c.server_first(b"r=abcd,s=c2FsdA==,i=1"), Err(AuthError::OutOfOrder { .. })));
    }

    #[test]
    fn server_error_and_bad_signature() {
        let mut c = ScramClient::new("pw", "abc");
        c.server_first(b"r=abcd,s=c2FsdA==,i=1").expect("final");
        assert_eq!(c.server_final(b"e=invalid-proof"), Err(AuthError::ServerError("invalid-proof".into())));

        let mut c = ScramClient::new("pw", "abc");
        c.server_first(b"r=abcd,s=c2FsdA==,i=1").expect("final");
        assert_eq!(c.server_final(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), Err(AuthError::ServerSignature));

        // Without a server key the signature cannot be checked, only its form.
        let mut c = ScramClient::with_client_key([3; 32], None, "abc");
        c.server_first(b"r=abcd,s=c2FsdA==,i=1").expect("final");
        assert_eq!(c.server_final(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), Ok(()));
        let mut c = ScramClient::with_client_key([3; 32], None, "abc");
        c.server_first(b"r=abcd,s=c2FsdA==,i=1").expect("final");
        assert!(matches!(c.server_final(b"v=AAAA"), Err(AuthError::ServerFinal(_))));
    }

    #[test]
    fn bad_local_nonce() {
        for nonce in ["", "a,b", "tab\t"] {
            let mut c = ScramClient::new("pw", nonce);
            assert_eq!(c.server_first(b"r=abcd,s=c2FsdA==,i=1"), Err(AuthError::LocalNonce("client")), "{nonce:?}");
        }
    }

    #[test]
    fn debug_shows_no_secrets() {
        let c = ScramClient::new("hunter2", "abc");
        assert_eq!(format!("{c:?}"), "ScramClient { credential: \"password\", state: \"start\", .. }");
        let c = ScramClient::with_client_key([0x41; 32], Some([0x42; 32]), "abc");
        assert!(!format!("{c:?}").contains("65"));
    }
}
