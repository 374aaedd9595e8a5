//! [`ScramServer`]: the pooler verifying an application's SCRAM-SHA-256
//! login against a [`ScramSecret`].
//!
//! ```text
//! client-first  --client_first-->  server-first
//! client-final  --client_final-->  ServerSuccess { server-final, ClientKey }
//! ```
//!
//! The server part of the nonce is injected. Any failure, and any call out
//! of order, leaves the machine finished: every later call is refused.
//! A wrong proof is [`AuthError::WrongPassword`] (SQLSTATE 28P01 for the
//! caller); every other error is a malformed or mismatched message.
//!
//! On success the ClientKey recovered from the proof is handed back: it is
//! what lets the pooler log in to PostgreSQL as this user without knowing
//! the password ([`super::ScramClient::with_client_key`]), provided
//! PostgreSQL holds the same secret (same salt and iteration count).

use core::fmt;

use super::messages::{self, ChannelBinding};
use super::{KEY_LEN, MAX_NONCE_LEN, MAX_SALT_LEN, ScramSecret, hmac_sha256, is_printable_nonce, sha256};
use crate::auth::AuthError;
use crate::auth::ct::{ct_eq, wipe, xor32};

/// What a successful login yields.
pub struct ServerSuccess {
    /// The server-final-message (`v=...`), to send in AuthenticationSASLFinal.
    pub server_final: Vec<u8>,
    /// ClientProof XOR ClientSignature; SHA-256 of it is the StoredKey.
    /// Password-equivalent for logging in with the same secret.
    pub client_key: [u8; KEY_LEN],
}

impl fmt::Debug for ServerSuccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSuccess").field("server_final_len", &self.server_final.len()).finish_non_exhaustive()
    }
}

enum State {
    /// Waiting for the client-first-message.
    Start,
    /// The server-first-message was returned; waiting for client-final.
    FirstSent {
        channel_binding: ChannelBinding,
        /// client nonce ++ server nonce.
        nonce: String,
        /// client-first-bare "," server-first ",": the AuthMessage so far.
        auth_message: Vec<u8>,
    },
    /// Succeeded, failed, or called out of order.
    Finished,
}

/// The server side of one SCRAM-SHA-256 exchange.
pub struct ScramServer {
    secret: ScramSecret,
    server_nonce: String,
    state: State,
}

impl ScramServer {
    /// A server that checks logins against `secret` (a real one, or
    /// [`ScramSecret::mock`] for an unknown user) and appends `server_nonce`
    /// to the client's nonce. The server nonce must be 1..=1024 printable
    /// ASCII characters other than ',' and fresh for every exchange;
    /// PostgreSQL uses the base64 of 18 random bytes.
    pub fn new(secret: ScramSecret, server_nonce: &str) -> ScramServer {
        ScramServer { secret, server_nonce: server_nonce.to_owned(), state: State::Start }
    }

    /// Read the client-first-message (the data of SASLInitialResponse) and
    /// return the server-first-message (for AuthenticationSASLContinue).
    pub fn client_first(&mut self, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        if !matches!(self.state, State::Start) {
            self.state = State::Finished;
            return Err(AuthError::OutOfOrder { step: "client_first" });
        }
        self.state = State::Finished;
        if !is_printable_nonce(self.server_nonce.as_bytes(), MAX_NONCE_LEN) {
            return Err(AuthError::LocalNonce("server"));
        }
        if self.secret.salt.is_empty() || self.secret.salt.len() > MAX_SALT_LEN {
            return Err(AuthError::Secret("the salt is not 1..=1024 bytes"));
        }
        let first = messages::parse_client_first(data)?;
        let nonce = format!("{}{}", first.nonce, self.server_nonce);
        let server_first = messages::server_first(&nonce, &self.secret.salt, self.secret.iterations.max(1));
        let mut auth_message = Vec::with_capacity(first.bare.len() + server_first.len() + nonce.len() + 64);
        auth_message.extend_from_slice(first.bare);
        auth_message.push(b',');
        auth_message.extend_from_slice(&server_first);
        auth_message.push(b',');
        self.state = State::FirstSent { channel_binding: first.channel_binding, nonce, auth_message };
        Ok(server_first)
    }

    /// Read the client-final-message (the data of SASLResponse): check its
    /// channel binding against the gs2 header, its nonce against the
    /// combined nonce and its proof against the secret.
    pub fn client_final(&mut self, data: &[u8]) -> Result<ServerSuccess, AuthError> {
        let State::FirstSent { channel_binding, nonce, mut auth_message } =
            core::mem::replace(&mut self.state, State::Finished)
        else {
            return Err(AuthError::OutOfOrder { step: "client_final" });
        };
        let last = messages::parse_client_final(data)?;
        if last.channel_binding != channel_binding.attribute().as_bytes() {
            return Err(AuthError::ClientFinal("the channel binding does not match the gs2 header"));
        }
        if last.nonce != nonce {
            return Err(AuthError::ClientFinal("the nonce does not match the server-first-message"));
        }
        auth_message.extend_from_slice(last.without_proof);
        let client_signature = hmac_sha256(&self.secret.stored_key, &[&auth_message]);
        let mut client_key = xor32(&last.proof, &client_signature);
        if !ct_eq(&sha256(&client_key), &self.secret.stored_key) {
            wipe(&mut client_key);
            return Err(AuthError::WrongPassword);
        }
        let server_signature = hmac_sha256(&self.secret.server_key, &[&auth_message]);
        Ok(ServerSuccess { server_final: messages::server_final(&server_signature), client_key })
    }
}

impl fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Start => "start",
            State::FirstSent { .. } => "first sent",
            State::Finished => "finished",
        };
        f.debug_struct("ScramServer").field("secret", &self.secret).field("state", &state).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> ScramServer {
        ScramServer::new(ScramSecret::from_password("secret", b"0123456789abcdef", 16), "SERVERNONCE")
    }

    #[test]
    fn out_of_order_calls_are_errors() {
        let mut s = server();
        assert_eq!(s.client_final(b"c=biws,r=x,p=y").err(), Some(AuthError::OutOfOrder { step: "client_final" }));
        assert_eq!(s.client_first(b"n,,n=,r=abc").err(), Some(AuthError::OutOfOrder { step: "client_first" }));

        let mut s = server();
        assert!(s.client_first(b"n,,n=,r=abc").is_ok());
        assert_eq!(s.client_first(b"n,,n=,r=abc").err(), Some(AuthError::OutOfOrder { step: "client_first" }));
        assert_eq!(s.client_final(b"c=biws,r=x,p=y").err(), Some(AuthError::OutOfOrder { step: "client_final" }));
    }

    #[test]
    fn a_failure_finishes_the_exchange() {
        let mut s = server();
        assert!(matches!(s.client_first(b"n,,n=,r="), Err(AuthError::ClientFirst(_))));
        assert!(matches!(s.client_first(b"n,,n=,r=abc"), Err(AuthError::OutOfOrder { .. })));
    }

    #[test]
    fn server_first_shape() {
        let mut s = server();
        let first = s.client_first(b"y,,n=someone,r=abc").expect("accepted");
        assert_eq!(first, b"r=abcSERVERNONCE,s=MDEyMzQ1Njc4OWFiY2RlZg==,i=16");
    }

    #[test]
    fn final_checks_binding_and_nonce() {
        let proof = "p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        for (first, last, want) in [
            ("n,,n=,r=abc", format!("c=eSws,r=abcSERVERNONCE,{proof}"), "the channel binding does not match"),
            ("y,,n=,r=abc", format!("c=biws,r=abcSERVERNONCE,{proof}"), "the channel binding does not match"),
            ("n,,n=,r=abc", format!("c=biws,r=abcSERVERNONC,{proof}"), "the nonce does not match"),
            ("n,,n=,r=abc", format!("c=biws,r=abcSERVERNONCEx,{proof}"), "the nonce does not match"),
        ] {
            let mut s = server();
            s.client_first(first.as_bytes()).expect("first");
            let Err(AuthError::ClientFinal(reason)) = s.client_final(last.as_bytes()) else { panic!("{last}") };
            assert!(reason.starts_with(want), "{reason}");
        }
        let mut s = server();
        s.client_first(b"n,,n=,r=abc").expect("first");
        let last = format!("c=biws,r=abcSERVERNONCE,{proof}");
        assert_eq!(s.client_final(last.as_bytes()).err(), Some(AuthError::WrongPassword));
    }

    #[test]
    fn bad_local_nonce_or_secret() {
        for nonce in ["", "a,b", "caf\u{e9}", "sp ace"] {
            let mut s = ScramServer::new(ScramSecret::from_password("x", b"salt", 1), nonce);
            assert_eq!(s.client_first(b"n,,n=,r=abc").err(), Some(AuthError::LocalNonce("server")), "{nonce:?}");
        }
        let mut s = ScramServer::new(ScramSecret::from_password("x", b"", 1), "n");
        assert!(matches!(s.client_first(b"n,,n=,r=abc"), Err(AuthError::Secret(_))));
    }

    #[test]
    fn debug_shows_no_secrets() {
        let mut s = server();
        s.client_first(b"n,,n=,r=abc").expect("first");
        let shown = format!("{s:?}");
        assert!(shown.contains("first sent") && !shown.contains("SERVERNONCE"), "{shown}");
        let ok = ServerSuccess { server_final: b"v=x".to_vec(), client_key: [1; 32] };
        assert_eq!(format!("{ok:?}"), "ServerSuccess { server_final_len: 3, .. }");
    }
}
