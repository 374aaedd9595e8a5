//! The queries the pooler sends on its own on a server connection (the
//! reset between clients, validation) and reading their answers, without
//! I/O: the caller writes the bytes and feeds back the frames it reads.
//! None of it reaches a client.

use super::backend::{self, BackendMessage, ErrorFields, MalformedBackend};
use super::encode;
use super::frame::Frame;
use super::params::SessionParams;

/// The reset sent when a client leaves: ROLLBACK when a transaction is
/// open (`tx_status` other than `I`), the reset query (none when empty),
/// then `reapply`'s settings. Returns the bytes and how many ReadyForQuery
/// messages answer them.
pub fn reset(tx_status: u8, reset_query: &str, reapply: Option<&SessionParams>) -> (Vec<u8>, u32) {
    let mut queries = Vec::with_capacity(64);
    let mut expected = 0;
    if tx_status != b'I' {
        encode::append_query(&mut queries, "ROLLBACK");
        expected += 1;
    }
    if !reset_query.is_empty() {
        encode::append_query(&mut queries, reset_query);
        expected += 1;
    }
    if let Some(params) = reapply {
        let (apply, count) = params.apply_queries(true);
        queries.extend_from_slice(&apply);
        expected += count;
    }
    (queries, expected)
}

/// Validation: an empty query, answered by a live idle connection with
/// EmptyQueryResponse and ReadyForQuery `I` (one answer).
pub fn validation() -> Vec<u8> {
    let mut query = Vec::with_capacity(8);
    encode::append_query(&mut query, "");
    query
}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answers {
    /// ParameterStatus values, in order.
    pub reported: Vec<(String, String)>,
    /// The first ErrorResponse.
    pub error: Option<ErrorFields>,
    /// The status of the last ReadyForQuery (`?` before any).
    pub status: u8,
}

impl Answers {
    /// No error, and the connection is idle.
    pub fn clean(&self) -> bool {
        self.error.is_none() && self.status == b'I'
    }
}

/// Collects the answers to `count` queries, frame by frame.
#[derive(Debug)]
pub struct AnswerReader {
    left: u32,
    answers: Answers,
}

impl AnswerReader {
    pub fn new(count: u32) -> Self {
        AnswerReader { left: count, answers: Answers { reported: Vec::new(), error: None, status: b'?' } }
    }

    /// Whether every answer has come.
    pub fn done(&self) -> bool {
        self.left == 0
    }

    /// Take one frame from the server.
    pub fn feed(&mut self, frame: &Frame<'_>) -> Result<(), MalformedBackend> {
        match backend::parse(frame)? {
            BackendMessage::ReadyForQuery { status } => {
                self.left = self.left.saturating_sub(1);
                self.answers.status = status;
            }
            BackendMessage::ParameterStatus { name, value } => self
                .answers
                .reported
                .push((String::from_utf8_lossy(name).into_owned(), String::from_utf8_lossy(value).into_owned())),
            BackendMessage::ErrorResponse(e) => {
                self.answers.error.get_or_insert(e);
            }
            _ => {}
        }
        Ok(())
    }

    pub fn finish(self) -> Answers {
        self.answers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame;

    fn feed_all(reader: &mut AnswerReader, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let Ok(Some(f)) = frame::split(bytes, 1 << 20) else { panic!("not a frame") };
            let len = f.len();
            reader.feed(&f).expect("parses");
            bytes = &bytes[len..];
        }
    }

    #[test]
    fn reset_counts_its_answers() {
        assert_eq!(reset(b'I', "", None), (Vec::new(), 0));
        let (bytes, n) = reset(b'T', "DISCARD ALL", None);
        assert_eq!(n, 2);
        assert!(bytes.starts_with(b"Q\0\0\0\x0dROLLBACK\0"));
        assert_eq!(reset(b'E', "", None).1, 1);
    }

    #[test]
    fn answers_are_collected_until_the_last_ready() {
        let mut reader = AnswerReader::new(2);
        let mut server = Vec::new();
        encode::append_parameter_status(&mut server, "TimeZone", "UTC");
        server.extend_from_slice(&encode::ready_for_query(b'I'));
        feed_all(&mut reader, &server);
        assert!(!reader.done());
        let mut more = encode::error_response("ERROR", "42704", "no such setting");
        more.extend_from_slice(&encode::ready_for_query(b'I'));
        feed_all(&mut reader, &more);
        assert!(reader.done());
        let answers = reader.finish();
        assert_eq!(answers.reported, vec![("TimeZone".to_string(), "UTC".to_string())]);
        assert_eq!(answers.error.as_ref().map(|e| e.code.as_str()), Some("42704"));
        assert!(!answers.clean());
    }

    #[test]
    fn validation_is_one_empty_query() {
        assert_eq!(validation(), b"Q\0\0\0\x05\0".to_vec());
        let mut reader = AnswerReader::new(1);
        feed_all(&mut reader, &[b'I', 0, 0, 0, 4]);
        feed_all(&mut reader, &encode::ready_for_query(b'I'));
        assert!(reader.done() && reader.finish().clean());
    }
}
