//! Following message boundaries in a relayed byte stream without buffering it.
//!
//! The relay hands every chunk it read to a [`Tracker`] before writing it on.
//! The tracker keeps only a partial header between chunks and reports what
//! the session needs: on the client side, where a `Terminate` starts (it is
//! not forwarded: the server connection outlives the client) and how many
//! messages that each produce one ReadyForQuery were sent (`Query`, `Sync`,
//! `FunctionCall`); on the server side, how many ReadyForQuery messages came
//! back and the last transaction status.

use super::frame::HEADER_LEN;

/// Which way the stream flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to server: frontend messages.
    Frontend,
    /// Server to client: backend messages.
    Backend,
}

/// PostgreSQL's own ceiling for one message (`PQ_LARGE_MESSAGE_LIMIT`).
pub const MAX_RELAYED_MESSAGE: u32 = 0x3fff_ffff;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("message '{}' at offset {offset} declares invalid length {declared}", *tag as char)]
pub struct TrackError {
    /// Offset in the chunk where the bad message starts; bytes before it are
    /// whole messages.
    pub offset: usize,
    pub tag: u8,
    pub declared: u32,
}

#[derive(Debug, Clone)]
pub struct Tracker {
    direction: Direction,
    header: [u8; HEADER_LEN],
    /// Header bytes collected so far (0 when at a boundary or inside a body).
    have: usize,
    /// Offset in the current chunk where the pending header began.
    header_start: usize,
    /// Body bytes of the current message not yet seen.
    remaining: u64,
    /// The current message is a ReadyForQuery whose status byte is still due.
    want_status: bool,
    /// Messages sent that will each be answered by one ReadyForQuery.
    pub sync_points: u64,
    /// ReadyForQuery messages seen.
    pub ready_count: u64,
    /// ReadyForQuery messages that said `I`: transactions (and statements
    /// outside one) finished.
    pub idle_count: u64,
    /// Status of the last ReadyForQuery: `I`, `T` or `E`.
    pub tx_status: u8,
    /// Client side: an extended-protocol message (Parse, Bind, Describe,
    /// Execute, Close) was sent after the last Sync, so the server holds
    /// state of an unfinished batch.
    pub open_batch: bool,
    /// Client side: Syncs sent since the last Execute. If copy messages
    /// follow, that Execute started COPY FROM STDIN and those Syncs reached
    /// the server in copy-in mode, where it ignores them: they will not be
    /// answered (drivers such as rust-postgres send Sync with the Execute).
    syncs_since_execute: u64,
    /// Server side: the last message that started or ended a COPY FROM
    /// STDIN (or COPY BOTH) started one, so the server waits for copy data
    /// and answers nothing else until CopyDone or CopyFail.
    pub copy_in: bool,
    /// Look into query texts (client side) and ParameterStatus (server
    /// side) to set `session_change`.
    inspect: bool,
    /// With `inspect`: a query may have changed session settings (see
    /// [`super::sql::changes_session`]; a query text split across chunks
    /// counts as one), or the server reported a setting's new value.
    pub session_change: bool,
    /// Server side, with `inspect`: the last value the server reported
    /// (ParameterStatus) for each setting, in the order first reported; a
    /// report not whole in one chunk is left out.
    pub reported: Vec<(String, String)>,
}

impl Tracker {
    pub fn new(direction: Direction) -> Self {
        Tracker {
            direction,
            header: [0; HEADER_LEN],
            have: 0,
            header_start: 0,
            remaining: 0,
            want_status: false,
            sync_points: 0,
            ready_count: 0,
            idle_count: 0,
            tx_status: b'I',
            open_batch: false,
            syncs_since_execute: 0,
            copy_in: false,
            inspect: false,
            session_change: false,
            reported: Vec::new(),
        }
    }

    /// A tracker that also watches for session-setting changes.
    pub fn inspecting(direction: Direction) -> Self {
        Tracker { inspect: true, ..Tracker::new(direction) }
    }

    /// Whether the exchange is over with nothing owed either way: the
    /// client's requests are whole and answered, no extended-protocol batch
    /// is open, and the last ReadyForQuery said `status`. `client` is the
    /// frontend tracker, `self` the backend one.
    pub fn settled(&self, client: &Tracker, status: u8) -> bool {
        client.at_boundary()
            && !client.open_batch
            && self.at_boundary()
            && self.ready_count == client.sync_points
            && self.tx_status == status
    }

    /// True between messages.
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.remaining == 0
    }

    /// Follow one chunk. Returns `Ok(Some(offset))` when a client `Terminate`
    /// starts at `offset` (bytes from there on are not to be forwarded).
    pub fn scan(&mut self, data: &[u8]) -> Result<Option<usize>, TrackError> {
        let mut i = 0;
        while i < data.len() {
            if self.remaining > 0 {
                let take = (data.len() - i).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                if self.want_status {
                    self.tx_status = data[i];
                    self.idle_count += u64::from(data[i] == b'I');
                    self.want_status = false;
                }
                i += take;
                self.remaining -= take as u64;
                continue;
            }
            if self.have == 0 {
                if self.direction == Direction::Frontend && data[i] == super::frontend::TERMINATE {
                    return Ok(Some(i));
                }
                self.header_start = i;
                if let Some(header) = data.get(i..i + HEADER_LEN) {
                    self.header.copy_from_slice(header);
                    i += HEADER_LEN;
                    self.have = HEADER_LEN;
                } else {
                    self.header[0] = data[i];
                    self.have = 1;
                    i += 1;
                }
            } else {
                self.header[self.have] = data[i];
                self.have += 1;
                i += 1;
            }
            if self.have == HEADER_LEN {
                self.have = 0;
                self.begin_message(i, data)?;
            }
        }
        Ok(None)
    }

    fn begin_message(&mut self, end_of_header: usize, data: &[u8]) -> Result<(), TrackError> {
        let tag = self.header[0];
        let declared = u32::from_be_bytes([self.header[1], self.header[2], self.header[3], self.header[4]]);
        if !(4..=MAX_RELAYED_MESSAGE).contains(&declared) {
            // A header split across chunks started in an earlier chunk.
            let offset = if end_of_header >= HEADER_LEN { self.header_start } else { 0 };
            return Err(TrackError { offset, tag, declared });
        }
        self.remaining = u64::from(declared - 4);
        match (self.direction, tag) {
            (Direction::Frontend, super::frontend::QUERY | super::frontend::FUNCTION_CALL) => {
                self.sync_points += 1;
                self.syncs_since_execute = 0;
                if self.inspect && tag == super::frontend::QUERY {
                    self.inspect_query(data, end_of_header, false);
                }
            }
            (Direction::Frontend, super::frontend::SYNC) => {
                self.sync_points += 1;
                self.syncs_since_execute += 1;
                self.open_batch = false;
            }
            (Direction::Frontend, b'd' | b'c' | b'f') => {
                self.sync_points -= self.syncs_since_execute;
                self.syncs_since_execute = 0;
            }
            (Direction::Frontend, b'P' | b'B' | b'D' | b'E' | b'C') => {
                if tag == b'E' {
                    self.syncs_since_execute = 0;
                }
                self.open_batch = true;
                if self.inspect && tag == b'P' {
                    self.inspect_query(data, end_of_header, true);
                }
            }
            (Direction::Backend, b'Z') => {
                self.ready_count += 1;
                self.want_status = self.remaining > 0;
                self.copy_in = false;
            }
            // CopyInResponse, CopyBothResponse; CommandComplete and
            // ErrorResponse end a copy.
            (Direction::Backend, b'G' | b'W') => self.copy_in = true,
            (Direction::Backend, b'C' | b'E') => self.copy_in = false,
            (Direction::Backend, b'S') if self.inspect => {
                self.session_change = true;
                if let Some((name, value)) = self.body(data, end_of_header).and_then(reported_setting) {
                    // The latest value of each setting (a handful of names).
                    match self.reported.iter_mut().find(|(n, _)| *n == name) {
                        Some(kept) => kept.1 = value,
                        None => self.reported.push((name, value)),
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The body of the message whose body starts at `start`, when it is
    /// whole in `data`.
    fn body<'d>(&self, data: &'d [u8], start: usize) -> Option<&'d [u8]> {
        let end = usize::try_from(self.remaining).ok().and_then(|n| start.checked_add(n))?;
        data.get(start..end)
    }

    /// Look at the text of the Query (or Parse, after its statement name)
    /// whose body starts at `start`; a body not wholly in this chunk is
    /// taken as a change.
    fn inspect_query(&mut self, data: &[u8], start: usize, parse: bool) {
        let Some(body) = self.body(data, start) else {
            self.session_change = true;
            return;
        };
        let text = if parse {
            match body.iter().position(|&b| b == 0) {
                Some(nul) => &body[nul + 1..],
                None => body,
            }
        } else {
            body
        };
        let text = text.split(|&b| b == 0).next().unwrap_or_default();
        if super::sql::changes_session(text) {
            self.session_change = true;
        }
    }
}

/// A ParameterStatus body as an owned name and value.
fn reported_setting(body: &[u8]) -> Option<(String, String)> {
    let (name, value) = super::backend::parameter_status(body)?;
    Some((std::str::from_utf8(name).ok()?.to_string(), std::str::from_utf8(value).ok()?.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encode;

    fn query(sql: &str) -> Vec<u8> {
        let mut v = Vec::new();
        encode::append_query(&mut v, sql);
        v
    }

    #[test]
    fn finds_terminate_at_a_boundary_only() {
        let mut stream = query("SELECT 'X'");
        let x_at = stream.len();
        stream.extend_from_slice(&encode::terminate());
        let mut t = Tracker::new(Direction::Frontend);
        assert_eq!(t.scan(&stream), Ok(Some(x_at)));
        assert_eq!(t.sync_points, 1);
        // Byte by byte gives the same answer.
        let mut t = Tracker::new(Direction::Frontend);
        let mut found = None;
        for (i, b) in stream.iter().enumerate() {
            if let Some(off) = t.scan(std::slice::from_ref(b)).expect("valid") {
                found = Some(i + off);
                break;
            }
        }
        assert_eq!(found, Some(x_at));
    }

    #[test]
    fn follows_ready_for_query_status_split_anywhere() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&[b'C', 0, 0, 0, 9, b'B', b'E', b'G', b'I', 0]);
        stream.extend_from_slice(&encode::ready_for_query(b'T'));
        for cut in 0..stream.len() {
            let mut t = Tracker::new(Direction::Backend);
            t.scan(&stream[..cut]).expect("valid");
            t.scan(&stream[cut..]).expect("valid");
            assert_eq!((t.ready_count, t.tx_status), (1, b'T'), "cut at {cut}");
            assert!(t.at_boundary());
        }
    }

    #[test]
    fn settles_only_when_every_request_is_answered() {
        let mut batch = Vec::new();
        batch.extend_from_slice(&encode::extended_query("SELECT 1", &[]));
        let mut c = Tracker::inspecting(Direction::Frontend);
        let mut s = Tracker::inspecting(Direction::Backend);
        assert!(s.settled(&c, b'I'), "nothing sent yet");
        // Parse and Bind without Sync: a batch is open.
        let sync_at = batch.len() - 5;
        c.scan(&batch[..sync_at]).expect("valid");
        assert!(c.open_batch && !s.settled(&c, b'I'));
        c.scan(&batch[sync_at..]).expect("valid");
        assert!(!c.open_batch && !s.settled(&c, b'I'), "the Sync is unanswered");
        s.scan(&encode::ready_for_query(b'T')).expect("valid");
        assert!(s.settled(&c, b'T') && !s.settled(&c, b'I'));
        assert!(!c.session_change && !s.session_change);
        c.scan(&query("SET x = 1")).expect("valid");
        assert!(c.session_change);
        let mut status = Vec::new();
        status.extend_from_slice(&[b'S', 0, 0, 0, 8, b'a', 0, b'b', 0]);
        s.scan(&status).expect("valid");
        assert!(s.session_change);
        // A query text cut by the chunk end counts as a change.
        let mut c = Tracker::inspecting(Direction::Frontend);
        let q = query("SELECT 1");
        c.scan(&q[..7]).expect("valid");
        assert!(c.session_change);
    }

    #[test]
    fn syncs_sent_during_copy_in_are_not_counted() {
        // Bind, Execute and Sync at once, then the copy data: the server
        // was in copy-in mode when the Sync arrived and ignores it.
        let mut stream = Vec::new();
        stream.extend_from_slice(&[b'B', 0, 0, 0, 4, b'E', 0, 0, 0, 4, b'S', 0, 0, 0, 4]);
        stream.extend_from_slice(&[b'd', 0, 0, 0, 6, b'1', b'\n', b'c', 0, 0, 0, 4, b'S', 0, 0, 0, 4]);
        let mut t = Tracker::new(Direction::Frontend);
        t.scan(&stream).expect("valid");
        assert_eq!(t.sync_points, 1);
        // A COPY TO STDOUT's Sync is answered: no copy messages follow it.
        let mut t = Tracker::new(Direction::Frontend);
        t.scan(&[b'E', 0, 0, 0, 4, b'S', 0, 0, 0, 4, b'Q', 0, 0, 0, 5, 0]).expect("valid");
        assert_eq!(t.sync_points, 2);
    }

    #[test]
    fn the_server_side_knows_when_it_waits_for_copy_data() {
        // CopyInResponse (text, no columns); a NoticeResponse does not end
        // the copy, CommandComplete does.
        let copy_in = [b'G', 0, 0, 0, 7, 0, 0, 0];
        let notice = [b'N', 0, 0, 0, 5, 0];
        let complete = [b'C', 0, 0, 0, 11, b'C', b'O', b'P', b'Y', b' ', b'1', 0];
        let mut t = Tracker::new(Direction::Backend);
        t.scan(&copy_in).expect("valid");
        assert!(t.copy_in);
        t.scan(&notice).expect("valid");
        assert!(t.copy_in);
        t.scan(&complete).expect("valid");
        assert!(!t.copy_in);
        // An error ends it too, and so does a ReadyForQuery.
        t.scan(&copy_in).expect("valid");
        t.scan(&[b'E', 0, 0, 0, 5, 0]).expect("valid");
        assert!(!t.copy_in);
        t.scan(&[b'W', 0, 0, 0, 7, 0, 0, 0, b'Z', 0, 0, 0, 5, b'I']).expect("valid");
        assert!(!t.copy_in);
        // Copy-out is not copy-in.
        t.scan(&[b'H', 0, 0, 0, 7, 0, 0, 0]).expect("valid");
        assert!(!t.copy_in);
    }

    #[test]
    fn the_server_side_collects_reported_settings() {
        let mut stream = Vec::new();
        encode::append_parameter_status(&mut stream, "DateStyle", "German, DMY");
        encode::append_parameter_status(&mut stream, "TimeZone", "UTC");
        let mut t = Tracker::inspecting(Direction::Backend);
        t.scan(&stream).expect("valid");
        assert!(t.session_change);
        assert_eq!(
            t.reported,
            vec![("DateStyle".to_string(), "German, DMY".to_string()), ("TimeZone".to_string(), "UTC".to_string())]
        );
        // A report split across chunks is left out, but still counts as a change.
        let mut t = Tracker::inspecting(Direction::Backend);
        t.scan(&stream[..8]).expect("valid");
        t.scan(&stream[8..]).expect("valid");
        assert!(t.session_change);
        assert_eq!(t.reported, vec![("TimeZone".to_string(), "UTC".to_string())]);
        // A later value replaces an earlier one.
        let mut again = Vec::new();
        encode::append_parameter_status(&mut again, "TimeZone", "Asia/Tokyo");
        t.scan(&again).expect("valid");
        assert_eq!(t.reported, vec![("TimeZone".to_string(), "Asia/Tokyo".to_string())]);
        // Without inspection nothing is collected.
        let mut t = Tracker::new(Direction::Backend);
        t.scan(&stream).expect("valid");
        assert!(t.reported.is_empty());
    }

    #[test]
    fn rejects_impossible_lengths() {
        let mut t = Tracker::new(Direction::Frontend);
        let mut data = query("SELECT 1");
        let bad_at = data.len();
        data.extend_from_slice(&[b'Q', 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(t.scan(&data).map_err(|e| e.offset), Err(bad_at));
        let mut t = Tracker::new(Direction::Backend);
        assert!(t.scan(&[b'Z', 0, 0, 0, 2]).is_err());
    }
}
