//! One pooled server connection's record in shared memory.
//!
//! The state, a generation and the owner pid live together in one `AtomicU64`
//! so every transition is a single compare-and-swap that also records who made
//! it: a process can never observe a state without its owner, and a slot that
//! was recycled between a load and a CAS fails the CAS because its generation
//! moved on. The other fields are written only by the slot's owner while the
//! slot is claimed and read by others after an Acquire load of the word.

pub use super::auth_kind::{AuthKind, AuthKinds, Replay};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

/// Index into the slot table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct SlotId(pub u32);

/// Incremented on every NOTINIT -> INIT, i.e. for every new server connection
/// a slot holds. 24 bits; wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Generation(pub u32);

const GENERATION_MASK: u32 = 0x00ff_ffff;

/// The slot states of pgagroal's state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum SlotState {
    NotInit = 0,
    Init = 1,
    Free = 2,
    InUse = 3,
    Gracefully = 4,
    Flush = 5,
    IdleCheck = 6,
    MaxConnectionAge = 7,
    Validation = 8,
    Remove = 9,
}

impl SlotState {
    pub const ALL: [SlotState; 10] = [
        SlotState::NotInit,
        SlotState::Init,
        SlotState::Free,
        SlotState::InUse,
        SlotState::Gracefully,
        SlotState::Flush,
        SlotState::IdleCheck,
        SlotState::MaxConnectionAge,
        SlotState::Validation,
        SlotState::Remove,
    ];

    pub fn from_u8(value: u8) -> Option<SlotState> {
        SlotState::ALL.get(usize::from(value)).copied()
    }

    /// Name as used by pgagroal's metrics and status output.
    pub fn name(self) -> &'static str {
        match self {
            SlotState::NotInit => "not_init",
            SlotState::Init => "init",
            SlotState::Free => "free",
            SlotState::InUse => "in_use",
            SlotState::Gracefully => "gracefully",
            SlotState::Flush => "flush",
            SlotState::IdleCheck => "idle_check",
            SlotState::MaxConnectionAge => "max_connection_age",
            SlotState::Validation => "validation",
            SlotState::Remove => "remove",
        }
    }

    /// States in which some process holds the slot and is responsible for it.
    pub fn is_claimed(self) -> bool {
        !matches!(self, SlotState::NotInit | SlotState::Free)
    }

    /// Whether the state machine allows `self -> to`.
    pub fn can_become(self, to: SlotState) -> bool {
        use SlotState::*;
        match self {
            NotInit => to == Init,
            Init => matches!(to, InUse | Free | Remove),
            Free => matches!(to, InUse | IdleCheck | MaxConnectionAge | Validation | Flush | Remove),
            InUse => matches!(to, Free | Gracefully | Flush | Remove),
            Gracefully => matches!(to, Remove | Flush),
            Flush => matches!(to, Remove | Gracefully),
            IdleCheck | MaxConnectionAge | Validation => matches!(to, Free | Remove | Flush),
            Remove => to == NotInit,
        }
    }
}

/// A decoded state word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Word {
    pub state: SlotState,
    pub generation: Generation,
    /// Pid of the process that made the last transition (0 never).
    pub owner: i32,
}

impl Word {
    pub fn encode(self) -> u64 {
        (u64::from(self.owner as u32) << 32) | (u64::from(self.generation.0 & GENERATION_MASK) << 8) | self.state as u64
    }

    /// Decode; a word with an unknown state byte (corrupt memory) reads as
    /// `Remove` owned by nobody so that nothing reuses it and the supervisor
    /// can repair it.
    pub fn decode(raw: u64) -> Word {
        let state = SlotState::from_u8((raw & 0xff) as u8).unwrap_or(SlotState::Remove);
        Word { state, generation: Generation(((raw >> 8) as u32) & GENERATION_MASK), owner: (raw >> 32) as u32 as i32 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("slot state machine does not allow {from:?} -> {to:?}")]
    NotAllowed { from: SlotState, to: SlotState },
    #[error("slot changed under us (now {now:?})")]
    Lost { now: Word },
}

/// Bytes kept for a user or database name: PostgreSQL's NAMEDATALEN.
pub const NAME_BYTES: usize = 64;
pub const NAME_WORDS: usize = NAME_BYTES / 8;

/// A name packed into words, the form in which it is stored and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PackedName([u64; NAME_WORDS]);

impl PackedName {
    /// A name as stored.
    pub fn from_words(words: [u64; NAME_WORDS]) -> PackedName {
        PackedName(words)
    }

    /// Pack up to 63 bytes (longer names are cut; callers truncate first).
    pub fn new(name: &str) -> PackedName {
        let mut bytes = [0u8; NAME_BYTES];
        let len = name.len().min(NAME_BYTES - 1);
        bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        let mut words = [0u64; NAME_WORDS];
        for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *w = u64::from_le_bytes(b);
        }
        PackedName(words)
    }

    /// The packed words, as stored.
    pub fn words(&self) -> [u64; NAME_WORDS] {
        self.0
    }

    pub fn to_string_lossy(&self) -> String {
        let mut bytes = Vec::with_capacity(NAME_BYTES);
        for w in self.0 {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    }
}

/// The shared record. 64-byte aligned so that two slots never share a cache line.
#[repr(C, align(64))]
#[derive(Default)]
pub struct Slot {
    word: AtomicU64,
    /// Index of the server in the configuration.
    server: AtomicU32,
    auth: AtomicU32,
    /// The server's BackendKeyData, for cancel requests and status.
    backend_pid: AtomicI32,
    backend_secret: AtomicU32,
    /// Milliseconds since the epoch when the connection was made.
    created_ms: AtomicU64,
    /// Milliseconds since the epoch when the slot last changed hands.
    last_used_ms: AtomicU64,
    /// The authentication request code the server sent when the connection
    /// was made (0 none, 3 cleartext, 5 md5, 10 SASL).
    server_method: AtomicU32,
    /// Pid of the worker holding the connection's TLS state, 0 for a plain
    /// connection: a TLS connection can only be continued by that worker.
    tls_owner: AtomicI32,
    /// [`Replay`]: the md5 salt, then the digest in four words.
    replay_salt: AtomicU32,
    replay_digest: [AtomicU64; 4],
    /// ReadyForQuery messages the server still owes for the reset queries
    /// the last user sent before freeing the slot; the next user reads (and
    /// checks) them before its client's first query. Anyone else touching a
    /// FREE slot's connection must account for them.
    reset_pending: AtomicU32,
    /// [`crate::protocol::params::SessionParams::hash`] of the settings the
    /// connection holds; `params::UNKNOWN` when a client may have changed
    /// them. Written by the owner before it frees the slot.
    params_hash: AtomicU64,
    /// The limit rule (`pgagroal_databases.conf` entry) the connection counts
    /// against, plus one; 0 for none. Set by its creator under the rule's
    /// lock, cleared when the slot goes REMOVE -> NOTINIT.
    rule: AtomicU32,
    /// Set by a graceful flush while the slot is in use: the owner closes
    /// the connection when it gives the slot back instead of freeing it.
    /// Cleared when a new connection is made in the slot.
    flush: AtomicU32,
    user: [AtomicU64; NAME_WORDS],
    database: [AtomicU64; NAME_WORDS],
    /// The `application_name` of the client that last took the connection
    /// (for `status details`); written by the owner when it takes it.
    appname: [AtomicU64; NAME_WORDS],
    /// Queries the connection has answered (`pgagroal_connection_query_count`),
    /// counted by its owner while metrics are on; zeroed for a new connection.
    /// On a line of its own with the tail of `appname`, which scanners
    /// looking for a reusable connection never read.
    queries: AtomicU64,
}

/// What a slot holds, read by its owner or by a scanner after an Acquire load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    pub word: Word,
    pub server: u32,
    pub auth: AuthKind,
    pub backend_pid: i32,
    pub server_method: u32,
    pub created_ms: u64,
    pub last_used_ms: u64,
    pub user: String,
    pub database: String,
    pub appname: String,
    pub queries: u64,
}

impl SlotInfo {
    /// As `status details` and the metrics show a slot: one holding no
    /// connection (NOTINIT) shows no names and no times, whatever its last
    /// connection left behind.
    pub fn shown(mut self) -> SlotInfo {
        if self.word.state == SlotState::NotInit {
            self.user.clear();
            self.database.clear();
            self.appname.clear();
            self.queries = 0;
            self.created_ms = 0;
            self.last_used_ms = 0;
        }
        self
    }
}

impl Slot {
    pub fn load(&self) -> Word {
        Word::decode(self.word.load(Ordering::Acquire))
    }

    /// `from -> to` if the slot still is exactly `from`; records `pid` as owner.
    /// A NOTINIT -> INIT transition starts a new generation.
    pub fn transition(&self, from: Word, to: SlotState, pid: i32) -> Result<Word, TransitionError> {
        if !from.state.can_become(to) {
            return Err(TransitionError::NotAllowed { from: from.state, to });
        }
        let generation = if from.state == SlotState::NotInit {
            Generation(from.generation.0.wrapping_add(1) & GENERATION_MASK)
        } else {
            from.generation
        };
        let next = Word { state: to, generation, owner: pid };
        if from.state == SlotState::Remove && to == SlotState::NotInit {
            // Only the REMOVE slot's owner gets here; the CAS below publishes it.
            self.rule.store(0, Ordering::Relaxed);
        }
        self.word
            .compare_exchange(from.encode(), next.encode(), Ordering::AcqRel, Ordering::Acquire)
            .map(|_| next)
            .map_err(|now| TransitionError::Lost { now: Word::decode(now) })
    }

    /// Set the connection's identity; only the owner of an INIT slot calls this.
    pub fn set_identity(&self, user: &PackedName, database: &PackedName, server: u32, now_ms: u64) {
        for (cell, w) in self.user.iter().zip(user.0) {
            cell.store(w, Ordering::Relaxed);
        }
        for (cell, w) in self.database.iter().zip(database.0) {
            cell.store(w, Ordering::Relaxed);
        }
        self.server.store(server, Ordering::Relaxed);
        self.auth.store(AuthKind::Unknown as u32, Ordering::Relaxed);
        self.backend_pid.store(0, Ordering::Relaxed);
        self.backend_secret.store(0, Ordering::Relaxed);
        self.created_ms.store(now_ms, Ordering::Relaxed);
        self.last_used_ms.store(now_ms, Ordering::Relaxed);
        self.reset_pending.store(0, Ordering::Relaxed);
        self.flush.store(0, Ordering::Relaxed);
        self.params_hash.store(crate::protocol::params::SessionParams::default().hash(), Ordering::Relaxed);
        self.server_method.store(0, Ordering::Relaxed);
        self.tls_owner.store(0, Ordering::Relaxed);
        self.set_replay(&Replay::default());
        self.set_appname(&PackedName::default());
        self.queries.store(0, Ordering::Relaxed);
    }

    /// Count `n` queries answered on the connection; owner only.
    pub fn count_queries(&self, n: u64) {
        self.queries.fetch_add(n, Ordering::Relaxed);
    }

    /// Record the application name of the client taking the connection;
    /// owner only. Words that already hold the name are not written again:
    /// a transaction-pipeline client takes the same connection over and
    /// over, and a store would take the line away from every scanner.
    pub fn set_appname(&self, name: &PackedName) {
        for (cell, w) in self.appname.iter().zip(name.0) {
            if cell.load(Ordering::Relaxed) != w {
                cell.store(w, Ordering::Relaxed);
            }
        }
    }

    /// Record that `pid` holds the connection's TLS state; owner only.
    pub fn set_tls_owner(&self, pid: i32) {
        self.tls_owner.store(pid, Ordering::Relaxed);
    }

    /// The worker holding the connection's TLS state (0: plain).
    pub fn tls_owner(&self) -> i32 {
        self.tls_owner.load(Ordering::Relaxed)
    }

    /// Whether `pid` can carry on the connection: it is plain or `pid`
    /// holds its TLS state.
    pub fn usable_by(&self, pid: i32) -> bool {
        matches!(self.tls_owner(), 0) || self.tls_owner() == pid
    }

    /// Record which authentication request the server made; owner only.
    pub fn set_server_method(&self, code: u32) {
        self.server_method.store(code, Ordering::Relaxed);
    }

    pub fn server_method(&self) -> u32 {
        self.server_method.load(Ordering::Relaxed)
    }

    /// Record what reusing clients are checked against; owner only.
    pub fn set_replay(&self, replay: &Replay) {
        self.replay_salt.store(u32::from_be_bytes(replay.md5_salt), Ordering::Relaxed);
        for (cell, chunk) in self.replay_digest.iter().zip(replay.digest.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            cell.store(u64::from_be_bytes(word), Ordering::Relaxed);
        }
    }

    /// What [`Slot::set_replay`] stored; read by the slot's owner after a claim.
    pub fn replay(&self) -> Replay {
        let mut replay = Replay { md5_salt: self.replay_salt.load(Ordering::Relaxed).to_be_bytes(), digest: [0; 32] };
        for (chunk, cell) in replay.digest.chunks_exact_mut(8).zip(&self.replay_digest) {
            chunk.copy_from_slice(&cell.load(Ordering::Relaxed).to_be_bytes());
        }
        replay
    }

    /// How the connection was authenticated.
    pub fn auth(&self) -> AuthKind {
        AuthKind::from_u32(self.auth.load(Ordering::Relaxed))
    }

    /// Record how the server authenticated and its key; owner only.
    pub fn set_backend(&self, auth: AuthKind, backend_pid: i32, secret: u32) {
        self.auth.store(auth as u32, Ordering::Relaxed);
        self.backend_pid.store(backend_pid, Ordering::Relaxed);
        self.backend_secret.store(secret, Ordering::Relaxed);
    }

    /// The backend secret of the server connection (first 4 bytes).
    pub fn backend_secret(&self) -> u32 {
        self.backend_secret.load(Ordering::Relaxed)
    }

    /// Record the answers owed for reset queries; owner only, before FREE.
    pub fn set_reset_pending(&self, ready_messages: u32) {
        self.reset_pending.store(ready_messages, Ordering::Relaxed);
    }

    /// Take the answers owed for reset queries; the new owner after a claim.
    pub fn take_reset_pending(&self) -> u32 {
        self.reset_pending.swap(0, Ordering::Relaxed)
    }

    /// The limit rule the connection counts against.
    pub fn rule(&self) -> Option<usize> {
        (self.rule.load(Ordering::Acquire) as usize).checked_sub(1)
    }

    /// Record the rule; the creator, under the rule's lock, right after
    /// claiming the empty slot.
    pub fn set_rule(&self, rule: Option<usize>) {
        self.rule.store(rule.map_or(0, |r| r as u32 + 1), Ordering::Release);
    }

    /// The settings the connection holds (see `params_hash`).
    pub fn params_hash(&self) -> u64 {
        self.params_hash.load(Ordering::Relaxed)
    }

    /// Record the settings the connection holds; owner only.
    pub fn set_params_hash(&self, hash: u64) {
        self.params_hash.store(hash, Ordering::Relaxed);
    }

    pub fn touch(&self, now_ms: u64) {
        self.last_used_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Index of the server the connection goes to.
    pub fn server(&self) -> u32 {
        self.server.load(Ordering::Relaxed)
    }

    /// Whether the connection is to `database`.
    pub fn database_is(&self, database: &PackedName) -> bool {
        self.database.iter().zip(database.0).all(|(c, w)| c.load(Ordering::Relaxed) == w)
    }

    /// Ask the holder to close the connection when it is given back.
    pub fn mark_flush(&self) {
        self.flush.store(1, Ordering::Release);
    }

    /// Whether a graceful flush asked for the connection to be closed.
    pub fn flush_marked(&self) -> bool {
        self.flush.load(Ordering::Acquire) != 0
    }

    /// Milliseconds since the epoch when the slot last changed hands.
    pub fn last_used_ms(&self) -> u64 {
        self.last_used_ms.load(Ordering::Relaxed)
    }

    /// Milliseconds since the epoch when the connection was made.
    pub fn created_ms(&self) -> u64 {
        self.created_ms.load(Ordering::Relaxed)
    }

    /// Whether the slot holds a connection for this user and database,
    /// authenticated in one of the ways in `kinds`.
    pub fn reusable_for(&self, user: &PackedName, database: &PackedName, kinds: AuthKinds) -> bool {
        kinds.contains(self.auth())
            && self.user.iter().zip(user.0).all(|(c, w)| c.load(Ordering::Relaxed) == w)
            && self.database.iter().zip(database.0).all(|(c, w)| c.load(Ordering::Relaxed) == w)
    }

    pub fn info(&self) -> SlotInfo {
        let word = self.load();
        let name = |cells: &[AtomicU64; NAME_WORDS]| {
            let mut p = PackedName::default();
            for (w, c) in p.0.iter_mut().zip(cells) {
                *w = c.load(Ordering::Relaxed);
            }
            p.to_string_lossy()
        };
        SlotInfo {
            word,
            server: self.server.load(Ordering::Relaxed),
            auth: AuthKind::from_u32(self.auth.load(Ordering::Relaxed)),
            backend_pid: self.backend_pid.load(Ordering::Relaxed),
            server_method: self.server_method.load(Ordering::Relaxed),
            created_ms: self.created_ms.load(Ordering::Relaxed),
            last_used_ms: self.last_used_ms.load(Ordering::Relaxed),
            user: name(&self.user),
            database: name(&self.database),
            appname: name(&self.appname),
            queries: self.queries.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
#[path = "slot_tests.rs"]
mod tests;
