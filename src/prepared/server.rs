//! The server's side of the engine: backend messages in, what the client
//! gets out. Each message is matched with the request at the head of the
//! queue when its header is whole: forwarded, dropped (answers to what the
//! pooler sent itself), or taken whole to be rewritten (an error that names
//! a statement by its server-side name). After the last message of an
//! answer the request leaves the queue, and the answers the pooler owes
//! next are given right behind it.
//!
//! A chunk that needs no change is forwarded as it is: nothing is copied
//! until the first change.

use super::engine::{Action, Engine, Request, declared_len};
use super::messages;
use super::statement::id_of_server_name;
use crate::protocol::frame::HEADER_LEN;
use crate::shmem::statements::Statements;

/// Largest ErrorResponse taken whole to rename a statement in it; a larger
/// one is forwarded as it is.
const MAX_RENAMED: u32 = 1 << 20;

/// What happens to the current message's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Mode {
    #[default]
    Forward,
    Drop,
    Capture,
}

/// What to do once the current message has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Then {
    #[default]
    Nothing,
    /// The head request's answer is complete.
    Done,
    /// The head extended request failed.
    Failed,
    /// The head Query's or Sync's ReadyForQuery.
    Ready,
    /// Give the head's own error (a refused message) in place of this one.
    Refused,
    /// Give CommandComplete `DEALLOCATE` in place of this one.
    Deallocated,
}

/// The place in the server's byte stream.
#[derive(Debug, Default)]
pub struct Framing {
    header: [u8; HEADER_LEN],
    /// Header bytes held (0 between messages and inside a body).
    have: usize,
    /// Body bytes of the current message still to come.
    remaining: u64,
    mode: Mode,
    then: Then,
    /// A message taken whole.
    captured: Vec<u8>,
}

impl Framing {
    pub(crate) fn at_boundary(&self) -> bool {
        self.have == 0 && self.remaining == 0
    }
}

/// The chunk's output, copied only once something changes.
struct Output<'c, 'o> {
    chunk: &'c [u8],
    out: &'o mut Vec<u8>,
    edited: bool,
}

impl Output<'_, '_> {
    /// Bytes `from..to` of the chunk go out as they are.
    fn keep(&mut self, from: usize, to: usize) {
        if self.edited {
            self.out.extend_from_slice(&self.chunk[from..to]);
        }
    }

    /// Something other than the chunk's bytes from `at` on goes out.
    fn edit(&mut self, at: usize) {
        if !self.edited {
            self.out.extend_from_slice(&self.chunk[..at]);
            self.edited = true;
        }
    }
}

impl Engine {
    /// Server bytes arrived. Returns false when `chunk` goes to the client
    /// as it is; true when what goes is in `out` (appended) instead.
    pub fn server_bytes(&mut self, chunk: &[u8], table: &Statements<'_>, out: &mut Vec<u8>) -> bool {
        let mut o = Output { chunk, out, edited: false };
        let mut i = 0;
        while i < chunk.len() {
            let f = &mut self.server;
            if f.remaining > 0 {
                let take = (chunk.len() - i).min(usize::try_from(f.remaining).unwrap_or(usize::MAX));
                match f.mode {
                    Mode::Forward => o.keep(i, i + take),
                    Mode::Drop => o.edit(i),
                    Mode::Capture => {
                        o.edit(i);
                        f.captured.extend_from_slice(&chunk[i..i + take]);
                    }
                }
                i += take;
                f.remaining -= take as u64;
                if f.remaining == 0 {
                    self.message_done(table, &mut o, i);
                }
                continue;
            }
            // A header, possibly begun in an earlier chunk (then held back).
            let started_here = f.have == 0;
            let take = (HEADER_LEN - f.have).min(chunk.len() - i);
            f.header[f.have..f.have + take].copy_from_slice(&chunk[i..i + take]);
            f.have += take;
            let header_from = i;
            i += take;
            if f.have < HEADER_LEN {
                o.edit(header_from);
                continue;
            }
            f.have = 0;
            let header = f.header;
            let declared = declared_len(&header).unwrap_or(4);
            self.begin_message(header[0], declared);
            let f = &mut self.server;
            match (f.mode, started_here) {
                (Mode::Forward, true) => o.keep(header_from, i),
                (Mode::Forward, false) => {
                    o.edit(header_from);
                    o.out.extend_from_slice(&header);
                }
                (Mode::Drop, _) => o.edit(header_from),
                (Mode::Capture, _) => {
                    o.edit(header_from);
                    f.captured.clear();
                    f.captured.extend_from_slice(&header);
                }
            }
            f.remaining = u64::from(declared - 4);
            if f.remaining == 0 {
                self.message_done(table, &mut o, i);
            }
        }
        o.edited
    }

    /// Decide what happens to a message from its tag.
    fn begin_message(&mut self, tag: u8, declared: u32) {
        let (mode, then) = match self.queue.front_mut() {
            _ if matches!(tag, b'N' | b'A' | b'S') => (Mode::Forward, Then::Nothing),
            None => (Mode::Forward, Then::Nothing),
            Some(head) if head.request.extended() => {
                let own = matches!(head.action, Action::Swallow | Action::Refuse(_));
                if tag == b'E' {
                    match &head.action {
                        Action::Refuse(_) => (Mode::Drop, Then::Refused),
                        Action::Renamed { .. } if declared <= MAX_RENAMED => (Mode::Capture, Then::Failed),
                        _ => (Mode::Forward, Then::Failed),
                    }
                } else if head.request.ends_with(tag) {
                    (if own { Mode::Drop } else { Mode::Forward }, Then::Done)
                } else {
                    (if own { Mode::Drop } else { Mode::Forward }, Then::Nothing)
                }
            }
            Some(head) => match tag {
                b'Z' => (Mode::Forward, Then::Ready),
                b'E' => {
                    head.failed = true;
                    (Mode::Forward, Then::Nothing)
                }
                b'T' | b'D' if head.action == Action::DeallocateAs => (Mode::Drop, Then::Nothing),
                b'C' if head.action == Action::DeallocateAs => (Mode::Drop, Then::Deallocated),
                _ => (Mode::Forward, Then::Nothing),
            },
        };
        self.server.mode = mode;
        self.server.then = then;
    }

    /// The error `body` answers the head request. When that is a Bind or
    /// Describe of a shared statement and says the statement no longer
    /// holds (its result type changed, or a table, column or function it
    /// names is gone or changed: SQLSTATE 0A000 or class 42), or is not
    /// there (26000), the connection's copy is forgotten: its next user
    /// prepares the text afresh (the Parse goes behind a Close of the old
    /// one) instead of every later client getting the same error from it.
    /// A changed result type also moves the text's epoch on, so that every
    /// client's statement of it prepared before is refused as stale instead
    /// of being prepared again in a shape its client was not told.
    fn forget_if_stale(&self, body: &[u8], table: &Statements<'_>) {
        let Some(head) = self.queue.front() else { return };
        let Action::Renamed { server, client } = &head.action else { return };
        if !matches!(head.request, Request::Bind | Request::Describe) {
            return;
        }
        let code = crate::protocol::backend::error_fields(body).code;
        // 26000: the server lacks the statement after all (something it
        // ran deallocated it behind the pooler's back).
        if !(code == "0A000" || code == "26000" || code.starts_with("42")) {
            return;
        }
        if let Some(id) = id_of_server_name(server) {
            table.remove(id);
        }
        // Its result type changed: every statement of this text prepared
        // before now is stale, on every connection and for every client
        // (this one's included), as each client's own would be on a direct
        // connection.
        if code == "0A000"
            && let Some(statement) = self.statements.get(client)
        {
            table.outdate(statement.base);
        }
    }

    /// The current message has passed (its last byte was at `at - 1`).
    fn message_done(&mut self, table: &Statements<'_>, o: &mut Output<'_, '_>, at: usize) {
        let then = std::mem::take(&mut self.server.then);
        let mode = std::mem::take(&mut self.server.mode);
        match then {
            Then::Nothing => {}
            Then::Done => self.pop_done(),
            Then::Ready => {
                // A ReadyForQuery's last byte is its status.
                if at > 0 {
                    self.failed = o.chunk[at - 1] == b'E';
                }
                self.finish_head(table)
            }
            Then::Deallocated => {
                o.edit(at);
                o.out.extend_from_slice(&messages::command_complete("DEALLOCATE"));
            }
            Then::Refused => {
                if let Some(Action::Refuse(error)) = self.queue.front().map(|h| &h.action) {
                    o.edit(at);
                    o.out.extend_from_slice(error);
                }
                self.fail_head(table);
            }
            Then::Failed => {
                if mode == Mode::Capture {
                    let captured = std::mem::take(&mut self.server.captured);
                    self.forget_if_stale(&captured[HEADER_LEN..], table);
                    let renamed = match self.queue.front().map(|h| &h.action) {
                        Some(Action::Renamed { server, client }) => {
                            messages::rename_in_fields(&captured[HEADER_LEN..], server, client)
                                .map(|body| messages::message(b'E', &body))
                        }
                        _ => None,
                    };
                    o.edit(at);
                    o.out.extend_from_slice(renamed.as_deref().unwrap_or(&captured));
                }
                self.fail_head(table);
            }
        }
        if matches!(then, Then::Done | Then::Ready | Then::Failed | Then::Refused) {
            let mut answers = Vec::new();
            self.answer_head(&mut answers);
            if !answers.is_empty() {
                o.edit(at);
                o.out.extend_from_slice(&answers);
            }
        }
    }
}
