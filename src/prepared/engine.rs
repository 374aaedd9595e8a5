//! The rewriting engine: one per client session under the transaction
//! pipeline. It owns the client's names ([`ClientStatements`]) and, while a
//! server connection is held, the queue of what every request sent on it is
//! owed, so that the server's answers can be forwarded, swallowed, renamed
//! or preceded by answers the pooler gives itself, each at the point where
//! the client expects it.
//!
//! Changes to the client's names and to the connection's statements are
//! made when a request is sent and undone, newest first, if the request
//! fails or the server skips it (after an error, PostgreSQL skips every
//! extended-protocol message until the next Sync). A request that needs to
//! know those sets waits while requests of an earlier batch (before a Sync
//! or a Query) could still undo a change; within one batch no wait is
//! needed, because a failure skips the rest of the batch anyway.
//!
//! Client bytes are handled in [`super::client`], server bytes in
//! [`super::server`].

use super::statement::{ClientStatements, Statement};
use crate::protocol::frame::HEADER_LEN;
use crate::shmem::statements::Statements;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// A request sent to the server (or answered by the pooler) whose answer
/// is owed to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    Parse,
    Bind,
    Describe,
    Execute,
    Close,
    Sync,
    Query,
    FunctionCall,
}

impl Request {
    /// An extended-protocol message: skipped after an error until Sync.
    pub(crate) fn extended(self) -> bool {
        !matches!(self, Request::Sync | Request::Query | Request::FunctionCall)
    }

    /// Whether a backend message with `tag` is the last of this request's
    /// answer (an ErrorResponse ends an extended request too).
    pub(crate) fn ends_with(self, tag: u8) -> bool {
        match self {
            Request::Parse => tag == b'1',
            Request::Bind => tag == b'2',
            Request::Close => tag == b'3',
            Request::Describe => matches!(tag, b'T' | b'n'),
            Request::Execute => matches!(tag, b'C' | b'I' | b's'),
            Request::Sync | Request::Query | Request::FunctionCall => tag == b'Z',
        }
    }
}

/// What to do with a request's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// The client's own message: its answer goes to the client.
    Forward,
    /// The client's message with its statement's server-side name: an
    /// error naming `server` names `client` instead.
    Renamed { server: Box<[u8]>, client: Box<[u8]> },
    /// A message the pooler added: its answer is dropped; an error it
    /// causes goes to the client in place of the answer to the client's
    /// next message, which the server then skips.
    Swallow,
    /// Not sent: these bytes are the answer, given when the request's turn
    /// comes.
    Answer(Vec<u8>),
    /// A Parse that fails on purpose, so that the server skips to the next
    /// Sync as it would after the client's own failed message: its error is
    /// replaced by these bytes.
    Refuse(Vec<u8>),
    /// A Query turned into `SELECT`: its rows are dropped and its
    /// CommandComplete says `DEALLOCATE`.
    DeallocateAs,
}

/// A change made when a request was sent, undone if it fails or is skipped.
#[derive(Debug)]
pub(crate) enum Effect {
    ServerAdded(u128),
    ClientAdded(Box<[u8]>),
    ClientRemoved(Box<[u8]>, Rc<Statement>),
    ClientCleared(HashMap<Box<[u8]>, Rc<Statement>>),
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) request: Request,
    pub(crate) action: Action,
    pub(crate) effects: Vec<Effect>,
    /// Batch (Syncs and Queries sent before it) the request belongs to.
    pub(crate) batch: u64,
    /// A Query's or Sync's answer held an ErrorResponse.
    pub(crate) failed: bool,
}

/// Why the engine cannot go on with a client's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("message '{}' declares invalid length {declared}", *tag as char)]
    BadLength { tag: u8, declared: u32 },
}

/// What the engine did, for the metrics: counts since they were last taken.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Activity {
    /// The client's Parses of named statements.
    pub client_parses: u64,
    /// Parses of named statements sent to the server.
    pub server_parses: u64,
    /// Binds of named statements.
    pub binds: u64,
    /// Statements closed on the server to make room.
    pub evictions: u64,
}

/// One client session's prepared statements and, while a connection is
/// held, what is owed on it.
#[derive(Debug, Default)]
pub struct Engine {
    pub(crate) statements: ClientStatements,
    pub(crate) queue: VecDeque<Entry>,
    /// Syncs, Queries and FunctionCalls sent so far.
    pub(crate) batch: u64,
    /// Entries in the queue with effects.
    pub(crate) with_effects: usize,
    /// The server skips until the next Sync, and no Sync is queued yet.
    pub(crate) skipping: bool,
    /// The last ReadyForQuery said the transaction failed (`E`).
    pub(crate) failed: bool,
    /// Client bytes not handled yet: a message not whole yet, or bytes
    /// waiting for an earlier batch's answers.
    pub(crate) input: Vec<u8>,
    /// Body bytes of a relayed client message still to come.
    pub(crate) passing: u64,
    /// The last client message could not be handled before earlier answers.
    pub(crate) stalled: bool,
    /// The server side's place in the byte stream.
    pub(crate) server: super::server::Framing,
    pub(crate) activity: Activity,
    /// Digest of the client's settings that can change what a statement
    /// means (see [`Statement::in_context`]); 0 for none.
    pub(crate) context: u64,
    /// A statement that may change session settings was bound since the
    /// last [`Engine::take_session_change`].
    pub(crate) session_change: bool,
}

impl Engine {
    pub fn new() -> Engine {
        Engine::default()
    }

    /// An engine for a client whose settings digest to `context`
    /// (`SessionParams::statement_context`).
    pub fn with_context(context: u64) -> Engine {
        Engine { context, ..Engine::default() }
    }

    /// What was done since the last call.
    pub fn take_activity(&mut self) -> Activity {
        std::mem::take(&mut self.activity)
    }

    /// Whether a statement that may change session settings (`SET`,
    /// `set_config`, ...) was bound since the last call: its text reached
    /// the server in an earlier transaction, or in another client's, so
    /// only the engine knows it ran.
    pub fn take_session_change(&mut self) -> bool {
        std::mem::take(&mut self.session_change)
    }

    /// The client's named statements.
    pub fn statements(&self) -> &ClientStatements {
        &self.statements
    }

    /// Client bytes are held: a message not yet whole, or waiting.
    pub fn holds_client_bytes(&self) -> bool {
        !self.input.is_empty()
    }

    /// Handling the client's next message waits for the server's answers.
    pub fn stalled(&self) -> bool {
        self.stalled
    }

    /// Nothing is owed on the connection and no client bytes are held.
    pub fn settled(&self) -> bool {
        self.queue.is_empty() && self.input.is_empty() && self.server.at_boundary()
    }

    /// Whether the server will reach the client's next message outside a
    /// failed transaction, for sure: the last ReadyForQuery did not say `E`
    /// and none is still owed (an earlier batch could yet fail or end a
    /// transaction). Only then may the pooler answer a Parse itself; in a
    /// failed transaction PostgreSQL refuses it (25P02).
    pub(crate) fn known_not_failed(&self) -> bool {
        !self.failed && self.queue.iter().all(|e| e.request.extended())
    }

    /// Whether a decision about statements must wait: a request of an
    /// earlier batch could still undo a change.
    pub(crate) fn must_wait(&self) -> bool {
        self.with_effects > 0 && self.queue.iter().any(|e| !e.effects.is_empty() && e.batch < self.batch)
    }

    /// Queue a request. An [`Action::Answer`] at the head of the queue is
    /// given at once (into `to_client`). While the server skips to a Sync,
    /// every other request is skipped too: its effects are undone at once
    /// and it is not queued.
    pub(crate) fn push(&mut self, entry: Entry, table: &Statements<'_>, to_client: &mut Vec<u8>) {
        if self.skipping && entry.request != Request::Sync {
            undo(&mut self.statements, table, entry.effects);
            return;
        }
        if entry.request == Request::Sync {
            self.skipping = false;
        }
        if !entry.effects.is_empty() {
            self.with_effects += 1;
        }
        self.queue.push_back(entry);
        self.answer_head(to_client);
    }

    /// Give the answers the pooler owes at the head of the queue.
    pub(crate) fn answer_head(&mut self, to_client: &mut Vec<u8>) {
        while let Some(Entry { action: Action::Answer(bytes), .. }) = self.queue.front() {
            to_client.extend_from_slice(bytes);
            self.pop_done();
        }
    }

    /// The head request is answered: its effects stand.
    pub(crate) fn pop_done(&mut self) {
        if let Some(entry) = self.queue.pop_front()
            && !entry.effects.is_empty()
        {
            self.with_effects -= 1;
        }
    }

    /// The head request failed: it and every extended request after it up
    /// to the next Sync are skipped by the server; their effects are undone,
    /// newest first.
    pub(crate) fn fail_head(&mut self, table: &Statements<'_>) {
        let mut dropped = Vec::new();
        if let Some(first) = self.queue.pop_front() {
            dropped.push(first);
        }
        while self.queue.front().is_some_and(|e| e.request != Request::Sync) {
            dropped.extend(self.queue.pop_front());
        }
        self.skipping = self.queue.is_empty();
        for entry in dropped.into_iter().rev() {
            if !entry.effects.is_empty() {
                self.with_effects -= 1;
            }
            undo(&mut self.statements, table, entry.effects);
        }
    }

    /// The head Query or Sync was answered (`failed`: with an error): its
    /// effects stand or are undone.
    pub(crate) fn finish_head(&mut self, table: &Statements<'_>) {
        let failed = self.queue.front().is_some_and(|e| e.failed);
        if !failed {
            self.pop_done();
            return;
        }
        if let Some(entry) = self.queue.pop_front() {
            if !entry.effects.is_empty() {
                self.with_effects -= 1;
            }
            undo(&mut self.statements, table, entry.effects);
        }
    }

    /// The connection is given up before every answer came (the client or
    /// the server left): statements it may lack are forgotten, so that no
    /// later user counts on them, and names the client may not have are
    /// dropped. What is owed is forgotten.
    pub fn abandon(&mut self, table: &Statements<'_>) {
        while let Some(entry) = self.queue.pop_back() {
            for effect in entry.effects.into_iter().rev() {
                match effect {
                    Effect::ServerAdded(id) => {
                        table.remove(id);
                    }
                    other => undo(&mut self.statements, table, vec![other]),
                }
            }
        }
        self.with_effects = 0;
        self.skipping = false;
        self.failed = false;
        self.stalled = false;
        self.input.clear();
        self.passing = 0;
        self.server = Default::default();
    }
}

fn undo(statements: &mut ClientStatements, table: &Statements<'_>, effects: Vec<Effect>) {
    for effect in effects.into_iter().rev() {
        match effect {
            Effect::ServerAdded(id) => {
                table.remove(id);
            }
            Effect::ClientAdded(name) => {
                statements.remove(&name);
            }
            Effect::ClientRemoved(name, statement) => statements.insert(&name, statement),
            Effect::ClientCleared(all) => statements.restore(all),
        }
    }
}

/// A message header's length field, checked.
pub(crate) fn declared_len(header: &[u8; HEADER_LEN]) -> Result<u32, EngineError> {
    let declared = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    if (4..=crate::protocol::tracker::MAX_RELAYED_MESSAGE).contains(&declared) {
        Ok(declared)
    } else {
        Err(EngineError::BadLength { tag: header[0], declared })
    }
}
