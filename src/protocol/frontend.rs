//! Messages from the client that the pooler reads itself: the answers to
//! authentication requests while a new server connection is being set up.
//! Everything after start-up is relayed and only followed by the tracker.

/// `Terminate`.
pub const TERMINATE: u8 = b'X';
/// `PasswordMessage`, `SASLInitialResponse`, `SASLResponse` (all `'p'`).
pub const PASSWORD_MESSAGE: u8 = b'p';
/// `Query`.
pub const QUERY: u8 = b'Q';
/// `Sync`.
pub const SYNC: u8 = b'S';
/// `FunctionCall`.
pub const FUNCTION_CALL: u8 = b'F';

/// Largest authentication answer accepted from a client (SCRAM messages are
/// a few hundred bytes; cloud IAM tokens used as passwords reach a few KiB).
pub const MAX_AUTH_MESSAGE: usize = 16 * 1024;

/// Length of the first whole request at the start of `bytes`: a Query or
/// FunctionCall, or extended-protocol messages (Parse, Bind, Describe,
/// Execute, Close, Flush) up to and including their Sync. None when that
/// is not whole yet, or the bytes start with anything else (copy data, a
/// Terminate) or declare an impossible length.
pub fn first_request(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let frame = super::frame::split(bytes.get(at..)?, usize::MAX).ok()??;
        at += frame.len();
        match frame.tag {
            QUERY | FUNCTION_CALL if at == frame.len() => return Some(at),
            SYNC => return Some(at),
            b'P' | b'B' | b'D' | b'E' | b'C' | b'H' => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encode;

    #[test]
    fn the_first_request_ends_with_its_query_or_sync() {
        let mut q = Vec::new();
        encode::append_query(&mut q, "SELECT 1");
        let mut two = q.clone();
        two.extend_from_slice(&q);
        assert_eq!(first_request(&two), Some(q.len()));
        let extended = encode::extended_query("SELECT $1", &["1"]);
        let mut pipelined = extended.clone();
        pipelined.extend_from_slice(&q);
        assert_eq!(first_request(&pipelined), Some(extended.len()));
        // Not whole yet: no Sync, or cut short.
        assert_eq!(first_request(&extended[..extended.len() - 5]), None);
        assert_eq!(first_request(&q[..q.len() - 1]), None);
        assert_eq!(first_request(&[]), None);
        // Anything else first.
        assert_eq!(first_request(&encode::terminate()), None);
        assert_eq!(first_request(&[b'd', 0, 0, 0, 5, b'x']), None);
        assert_eq!(first_request(&[b'Q', 0, 0, 0, 2]), None);
        assert_eq!(first_request(&[b'Q', 0xff, 0xff, 0xff, 0xff]), None);
    }
}
