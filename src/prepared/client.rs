//! The client's side of the engine: frontend messages in, the messages
//! for the server out, and the answers the pooler gives itself.
//!
//! Parse, Bind, Describe, Close and Query are read whole; every other
//! message is relayed as it comes, its header looked at. Named statements
//! are sent under their server-side names, prepared first (Close, then
//! Parse, both answered to the pooler only) on a connection that lacks
//! them, after closing the least recently used ones beyond
//! `max_prepared_statements`. The Close before each Parse the pooler sends
//! makes the Parse safe even where the connection still has a statement
//! the table forgot.

use super::engine::{Action, Effect, Engine, EngineError, Entry, Request, declared_len};
use super::messages::{self, CLOSE_COMPLETE, PARSE_COMPLETE};
use super::sql::{self, Command};
use super::statement::{Statement, looks_like_server_name, server_name};
use crate::protocol::frame::HEADER_LEN;
use crate::shmem::statements::Statements;
use std::rc::Rc;

/// SQLSTATE invalid_sql_statement_name.
const UNDEFINED: &str = "26000";
/// A query text no parser accepts: the Parse the pooler sends to make the
/// server skip to the next Sync.
const REFUSED_TEXT: &[u8] = b"pgagroal refuses this message\0\0\0";
const REFUSED_NAME: &[u8] = b"pgagroal_refused";

/// Where a client message's handling ended.
enum Step {
    Done,
    /// It waits for the answers to an earlier batch.
    Wait,
}

impl Engine {
    /// Client bytes arrived: what goes to the server is appended to
    /// `to_server`, answers the pooler gives itself to `to_client`.
    pub fn client_bytes(
        &mut self,
        bytes: &[u8],
        table: &Statements<'_>,
        to_server: &mut Vec<u8>,
        to_client: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        self.input.extend_from_slice(bytes);
        self.resume(table, to_server, to_client)
    }

    /// Go on with held client bytes (after answers came in).
    pub fn resume(
        &mut self,
        table: &Statements<'_>,
        to_server: &mut Vec<u8>,
        to_client: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        let mut at = 0;
        let result = self.consume(&mut at, table, to_server, to_client);
        self.input.drain(..at);
        result
    }

    fn consume(
        &mut self,
        at: &mut usize,
        table: &Statements<'_>,
        to_server: &mut Vec<u8>,
        to_client: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        self.stalled = false;
        let input = std::mem::take(&mut self.input);
        let result = loop {
            let rest = &input[*at..];
            if self.passing > 0 {
                let take = rest.len().min(usize::try_from(self.passing).unwrap_or(usize::MAX));
                to_server.extend_from_slice(&rest[..take]);
                self.passing -= take as u64;
                *at += take;
                if take == 0 {
                    break Ok(());
                }
                continue;
            }
            let Some(header) = rest.first_chunk::<HEADER_LEN>() else { break Ok(()) };
            let declared = match declared_len(header) {
                Ok(d) => d,
                Err(e) => break Err(e),
            };
            let tag = header[0];
            if matches!(tag, b'P' | b'B' | b'D' | b'C' | b'Q') {
                let len = 1 + declared as usize;
                let Some(message) = rest.get(..len) else { break Ok(()) };
                match self.whole(message, table, to_server, to_client) {
                    Step::Done => *at += len,
                    Step::Wait => {
                        self.stalled = true;
                        break Ok(());
                    }
                }
            } else {
                self.relayed(tag, table, to_client);
                to_server.extend_from_slice(header);
                self.passing = u64::from(declared - 4);
                *at += HEADER_LEN;
            }
        };
        self.input = input;
        result
    }

    fn entry(&self, request: Request, action: Action, effects: Vec<Effect>) -> Entry {
        Entry { request, action, effects, batch: self.batch, failed: false }
    }

    /// A message relayed as it comes.
    fn relayed(&mut self, tag: u8, table: &Statements<'_>, to_client: &mut Vec<u8>) {
        let request = match tag {
            b'E' => Request::Execute,
            b'S' => Request::Sync,
            b'F' => Request::FunctionCall,
            b'd' | b'c' | b'f' => {
                // Syncs sent since the Execute that started COPY FROM STDIN
                // reached the server in copy-in mode, which ignores them.
                while self.queue.back().is_some_and(|e| e.request == Request::Sync && e.action == Action::Forward) {
                    self.queue.pop_back();
                }
                return;
            }
            _ => return,
        };
        let entry = self.entry(request, Action::Forward, Vec::new());
        self.push(entry, table, to_client);
        if !request.extended() {
            self.batch += 1;
        }
    }

    fn whole(
        &mut self,
        message: &[u8],
        table: &Statements<'_>,
        to_server: &mut Vec<u8>,
        to_client: &mut Vec<u8>,
    ) -> Step {
        let body = &message[HEADER_LEN..];
        let tag = message[0];
        let command = (tag == b'Q').then(|| sql::classify(query_text(body)));
        let named = match tag {
            b'P' => messages::parse(body).is_some_and(|p| !p.name.is_empty()),
            b'B' => messages::bind(body).is_some_and(|b| !b.statement.is_empty()),
            b'D' | b'C' => messages::target(body).is_some_and(|t| t.kind == b'S' && !t.name.is_empty()),
            _ => !matches!(command, Some(Command::Other { drops: false })),
        };
        if named && self.must_wait() {
            return Step::Wait;
        }
        match tag {
            b'P' => self.parse(message, table, to_server, to_client),
            b'B' => self.bind(message, table, to_server, to_client),
            b'D' => self.describe(message, table, to_server, to_client),
            b'C' => self.close(message, table, to_server, to_client),
            _ => self.query(message, command.unwrap_or(Command::Other { drops: false }), table, to_server, to_client),
        }
        Step::Done
    }

    fn forward(&mut self, request: Request, message: &[u8], table: &Statements<'_>, out: (&mut Vec<u8>, &mut Vec<u8>)) {
        out.0.extend_from_slice(message);
        let entry = self.entry(request, Action::Forward, Vec::new());
        self.push(entry, table, out.1);
    }

    fn parse(&mut self, message: &[u8], table: &Statements<'_>, to_server: &mut Vec<u8>, to_client: &mut Vec<u8>) {
        let Some(p) = messages::parse(&message[HEADER_LEN..]) else {
            return self.forward(Request::Parse, message, table, (to_server, to_client));
        };
        if p.name.is_empty() {
            if super::sql::may_drop_statements(p.rest.split(|&b| b == 0).next().unwrap_or_default()) {
                table.clear();
            }
            return self.forward(Request::Parse, message, table, (to_server, to_client));
        }
        self.activity.client_parses += 1;
        if let Some(existing) = self.statements.get(p.name).cloned() {
            // PostgreSQL reads the text before it finds the name taken: the
            // new text goes to the server under the existing statement's
            // name, which the connection is made to have, so the client
            // gets the text's own error or "already exists" for its name.
            self.ensure(&existing, table, to_server, to_client);
            messages::append_parse(to_server, &existing.server_name, p.rest);
            let action = Action::Renamed { server: existing.server_name.into(), client: p.name.into() };
            let entry = self.entry(Request::Parse, action, Vec::new());
            return self.push(entry, table, to_client);
        }
        let statement = Rc::new(Statement::at_epoch(p.rest, self.context, |base| table.epoch(base)));
        self.statements.insert(p.name, statement.clone());
        let effects = vec![Effect::ClientAdded(p.name.into())];
        if self.known_not_failed() && table.touch(statement.id) {
            let entry = self.entry(Request::Parse, Action::Answer(PARSE_COMPLETE.to_vec()), effects);
            return self.push(entry, table, to_client);
        }
        // The client's own Parse: its answer goes to the client.
        self.prepare_on_server(&statement, Action::Forward, effects, table, (to_server, to_client));
    }

    fn bind(&mut self, message: &[u8], table: &Statements<'_>, to_server: &mut Vec<u8>, to_client: &mut Vec<u8>) {
        match messages::bind(&message[HEADER_LEN..]).filter(|b| !b.statement.is_empty()) {
            Some(b) => self.named(Request::Bind, b.statement, message, table, (to_server, to_client), |out, name| {
                messages::append_bind(out, b.portal, name, b.rest)
            }),
            None => self.forward(Request::Bind, message, table, (to_server, to_client)),
        }
    }

    fn describe(&mut self, message: &[u8], table: &Statements<'_>, to_server: &mut Vec<u8>, to_client: &mut Vec<u8>) {
        match messages::target(&message[HEADER_LEN..]).filter(|t| t.kind == b'S' && !t.name.is_empty()) {
            Some(t) => self.named(Request::Describe, t.name, message, table, (to_server, to_client), |out, name| {
                messages::append_target(out, b'D', b'S', name)
            }),
            None => self.forward(Request::Describe, message, table, (to_server, to_client)),
        }
    }

    /// A Bind or Describe of the client's statement `name`: the connection
    /// is made to have it, and `write` sends the message under its
    /// server-side name.
    fn named(
        &mut self,
        request: Request,
        name: &[u8],
        message: &[u8],
        table: &Statements<'_>,
        (to_server, to_client): (&mut Vec<u8>, &mut Vec<u8>),
        write: impl FnOnce(&mut Vec<u8>, &[u8]),
    ) {
        let Some(statement) = self.statements.get(name).cloned() else {
            return self.unknown(request, name, message, table, (to_server, to_client));
        };
        if table.epoch(statement.base) != statement.epoch {
            // Prepared before the server said its result type changed: as
            // PostgreSQL does for its own stale statement, refuse it rather
            // than prepare it again in a shape the client was not told.
            return self.refuse(messages::stale_error(), table, to_server, to_client);
        }
        if request == Request::Bind {
            self.activity.binds += 1;
            self.session_change |= statement.changes_session;
        }
        self.ensure(&statement, table, to_server, to_client);
        write(to_server, &statement.server_name);
        let action = Action::Renamed { server: statement.server_name.into(), client: name.into() };
        let entry = self.entry(request, action, Vec::new());
        self.push(entry, table, to_client);
    }

    fn close(&mut self, message: &[u8], table: &Statements<'_>, to_server: &mut Vec<u8>, to_client: &mut Vec<u8>) {
        let target = messages::target(&message[HEADER_LEN..]).filter(|t| t.kind == b'S' && !t.name.is_empty());
        let Some(t) = target else {
            return self.forward(Request::Close, message, table, (to_server, to_client));
        };
        // The statement stays on the server for other clients.
        let effects = match self.statements.remove(t.name) {
            Some(statement) => vec![Effect::ClientRemoved(t.name.into(), statement)],
            None if looks_like_server_name(t.name) => Vec::new(),
            None => return self.forward(Request::Close, message, table, (to_server, to_client)),
        };
        let entry = self.entry(Request::Close, Action::Answer(CLOSE_COMPLETE.to_vec()), effects);
        self.push(entry, table, to_client);
    }

    fn query(
        &mut self,
        message: &[u8],
        command: Command,
        table: &Statements<'_>,
        to_server: &mut Vec<u8>,
        to_client: &mut Vec<u8>,
    ) {
        let (action, effects, text): (Action, Vec<Effect>, Option<&[u8]>) = match command {
            Command::Deallocate(name) if self.statements.contains(&name) => {
                let removed = self.statements.remove(&name);
                let effects = removed.map(|s| Effect::ClientRemoved(name.into(), s)).into_iter().collect();
                (Action::DeallocateAs, effects, Some(b"SELECT"))
            }
            Command::DeallocateAll | Command::DiscardAll => {
                table.clear();
                (Action::Forward, vec![Effect::ClientCleared(self.statements.take_all())], None)
            }
            Command::Deallocate(_) | Command::Other { drops: true } => {
                table.clear();
                (Action::Forward, Vec::new(), None)
            }
            Command::Other { drops: false } => (Action::Forward, Vec::new(), None),
        };
        match text {
            Some(text) => crate::protocol::encode::append_query(to_server, &String::from_utf8_lossy(text)),
            None => to_server.extend_from_slice(message),
        }
        let entry = self.entry(Request::Query, action, effects);
        self.push(entry, table, to_client);
        self.batch += 1;
    }

    /// A Bind or Describe of a name the client has not prepared: relayed as
    /// it is (PostgreSQL answers for it), unless it could be a server-side
    /// name, which is refused as PostgreSQL refuses an unknown one.
    fn unknown(
        &mut self,
        request: Request,
        name: &[u8],
        message: &[u8],
        table: &Statements<'_>,
        out: (&mut Vec<u8>, &mut Vec<u8>),
    ) {
        if looks_like_server_name(name) {
            let error = messages::statement_error(UNDEFINED, name, "does not exist");
            return self.refuse(error, table, out.0, out.1);
        }
        self.forward(request, message, table, out);
    }

    /// Make the server fail here, and give the client `error` instead.
    fn refuse(&mut self, error: Vec<u8>, table: &Statements<'_>, to_server: &mut Vec<u8>, to_client: &mut Vec<u8>) {
        messages::append_parse(to_server, REFUSED_NAME, REFUSED_TEXT);
        let entry = self.entry(Request::Parse, Action::Refuse(error), Vec::new());
        self.push(entry, table, to_client);
    }

    /// The connection has the statement (prepared now if it lacked it).
    fn ensure(
        &mut self,
        statement: &Statement,
        table: &Statements<'_>,
        to_server: &mut Vec<u8>,
        to_client: &mut Vec<u8>,
    ) {
        if statement.drops_statements {
            // Running it may drop what the connection has.
            table.clear();
        }
        if table.touch(statement.id) {
            return;
        }
        self.prepare_on_server(statement, Action::Swallow, Vec::new(), table, (to_server, to_client));
    }

    /// Send a Parse of `statement` under its server-side name (after making
    /// room, and after a Close of that name), answered as `action` says;
    /// `effects` are undone with the connection's record of it if it fails.
    fn prepare_on_server(
        &mut self,
        statement: &Statement,
        action: Action,
        mut effects: Vec<Effect>,
        table: &Statements<'_>,
        (to_server, to_client): (&mut Vec<u8>, &mut Vec<u8>),
    ) {
        if !table.contains(statement.id) {
            self.make_room(table, to_server, to_client);
        }
        self.close_on_server(&statement.server_name, table, to_server, to_client);
        messages::append_parse(to_server, &statement.server_name, &statement.body);
        self.activity.server_parses += 1;
        if table.insert(statement.id) {
            effects.push(Effect::ServerAdded(statement.id));
        }
        let entry = self.entry(Request::Parse, action, effects);
        self.push(entry, table, to_client);
    }

    /// Close the least recently used statements until one more fits.
    fn make_room(&mut self, table: &Statements<'_>, to_server: &mut Vec<u8>, to_client: &mut Vec<u8>) {
        while table.len() >= table.capacity().max(1) {
            let Some(oldest) = table.least_recently_used() else { return };
            table.remove(oldest);
            self.activity.evictions += 1;
            self.close_on_server(&server_name(oldest), table, to_server, to_client);
        }
    }

    fn close_on_server(
        &mut self,
        name: &[u8],
        table: &Statements<'_>,
        to_server: &mut Vec<u8>,
        to_client: &mut Vec<u8>,
    ) {
        messages::append_target(to_server, b'C', b'S', name);
        let entry = self.entry(Request::Close, Action::Swallow, Vec::new());
        self.push(entry, table, to_client);
    }
}

/// A Query body's text (up to its NUL).
fn query_text(body: &[u8]) -> &[u8] {
    body.split(|&b| b == 0).next().unwrap_or_default()
}
