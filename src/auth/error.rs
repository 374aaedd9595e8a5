//! The one error type of the authentication core. Each variant names the
//! step that failed: the message that could not be parsed, the check that
//! did not pass, or the call that came out of order. Reasons are fixed
//! strings, never the bytes received, so an error can be logged as it is
//! without leaking a proof, a key or a password.

/// Which party an authentication failure is to be blamed on, for the
/// disconnect reason the caller logs and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The application connecting to the pooler (the SCRAM or MD5 client
    /// when the pooler verifies a login).
    Client,
    /// PostgreSQL (the SCRAM server when the pooler logs in to it).
    Server,
    /// The pooler itself: a bad stored secret, a bad nonce handed to a
    /// state machine, or a call out of order.
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The mechanism list of an AuthenticationSASL message is malformed.
    #[error("malformed AuthenticationSASL: {0}")]
    Mechanisms(&'static str),

    /// A SASLInitialResponse message body is malformed.
    #[error("malformed SASLInitialResponse: {0}")]
    InitialResponse(&'static str),

    /// A PasswordMessage body (cleartext password or MD5 response) is
    /// malformed.
    #[error("malformed PasswordMessage: {0}")]
    PasswordMessage(&'static str),

    /// A password to be sent holds a NUL byte, which a PasswordMessage
    /// cannot carry.
    #[error("the password holds a NUL byte and cannot be sent in a PasswordMessage")]
    PasswordNul,

    /// The SCRAM client-first-message is malformed or asks for something
    /// not supported (authorization identity, a mandatory extension).
    #[error("malformed SCRAM client-first-message: {0}")]
    ClientFirst(&'static str),

    /// The client selected SCRAM-SHA-256-PLUS (gs2 flag `p=`), which the
    /// pooler never offers.
    #[error("the client selected SCRAM channel binding (SCRAM-SHA-256-PLUS), which is not offered")]
    ChannelBindingNotSupported,

    /// The SCRAM server-first-message is malformed, its nonce does not
    /// extend ours, or it asks for more iterations than accepted.
    #[error("malformed SCRAM server-first-message: {0}")]
    ServerFirst(&'static str),

    /// The SCRAM client-final-message is malformed, or its channel binding
    /// or nonce does not match the exchange so far.
    #[error("malformed SCRAM client-final-message: {0}")]
    ClientFinal(&'static str),

    /// The SCRAM server-final-message is malformed.
    #[error("malformed SCRAM server-final-message: {0}")]
    ServerFinal(&'static str),

    /// The server ended the exchange with `e=`; this is its text.
    #[error("the server reported a SCRAM error: {0}")]
    ServerError(String),

    /// The client's proof does not match the stored secret (SQLSTATE 28P01).
    #[error("password authentication failed")]
    WrongPassword,

    /// The server's signature does not match: it does not know the secret.
    #[error("the server's SCRAM signature does not match")]
    ServerSignature,

    /// A stored SCRAM verifier cannot be parsed.
    #[error("malformed SCRAM secret: {0}")]
    Secret(&'static str),

    /// The nonce handed to a state machine is not 1..=1024 printable ASCII
    /// characters without ','.
    #[error("invalid nonce given to the SCRAM {0}")]
    LocalNonce(&'static str),

    /// A state machine method was called out of order.
    #[error("SCRAM {step} called out of order")]
    OutOfOrder { step: &'static str },
}

impl AuthError {
    /// The party this failure is to be blamed on, assuming the pooler is the
    /// SCRAM server toward applications and the SCRAM client toward
    /// PostgreSQL.
    pub fn side(&self) -> Side {
        match self {
            AuthError::InitialResponse(_)
            | AuthError::PasswordMessage(_)
            | AuthError::ClientFirst(_)
            | AuthError::ChannelBindingNotSupported
            | AuthError::ClientFinal(_)
            | AuthError::WrongPassword => Side::Client,
            AuthError::Mechanisms(_)
            | AuthError::ServerFirst(_)
            | AuthError::ServerFinal(_)
            | AuthError::ServerError(_)
            | AuthError::ServerSignature => Side::Server,
            AuthError::PasswordNul | AuthError::Secret(_) | AuthError::LocalNonce(_) | AuthError::OutOfOrder { .. } => {
                Side::Internal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_step() {
        assert_eq!(
            AuthError::ClientFinal("nonce does not match").to_string(),
            "malformed SCRAM client-final-message: nonce does not match"
        );
        assert_eq!(
            AuthError::OutOfOrder { step: "client_final" }.to_string(),
            "SCRAM client_final called out of order"
        );
        assert_eq!(
            AuthError::ServerError("invalid-proof".into()).to_string(),
            "the server reported a SCRAM error: invalid-proof"
        );
    }

    #[test]
    fn sides() {
        assert_eq!(AuthError::WrongPassword.side(), Side::Client);
        assert_eq!(AuthError::ServerSignature.side(), Side::Server);
        assert_eq!(AuthError::Secret("x").side(), Side::Internal);
    }
}
