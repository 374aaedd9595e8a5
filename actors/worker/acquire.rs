//! Getting a server connection for a client: reuse a FREE slot
//! authenticated in a way this client may take (preferring the one this
//! worker used last, then one holding the client's settings), create one in
//! an empty slot (under the client's limit rule's lock), or close an idle
//! connection the client cannot use to make room; new connections are made
//! in [`super::create`]. When none of that works the client waits in its
//! first-come, first-served queue until `blocking_timeout`.

use super::fds::Fds;
use super::pool::{Access, Conn, Reuse, kill};
use super::reset::{check_alive, settle_reset};
use super::{Session, refuse};
use crate::net::Sock;
use pgagroal::config::Validation;
use pgagroal::disconnect::Disconnect;
use pgagroal::protocol::sqlstate;
use pgagroal::shmem::counters::Histogram;
use pgagroal::shmem::{AuthKind, Claim, PackedName, Ticket};
use slog::{debug, info};
use std::time::{Duration, Instant};

/// Longest sleep between two looks at the client while waiting outside the
/// queue (slot releases wake the waiter at once).
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// The fd of a claimed FREE slot: the one this worker kept when it is
/// still that connection, else the supervisor's copy.
fn fetch(s: &Session<'_>, claim: Claim, fds: &mut Fds) -> Option<(Sock, Vec<u8>)> {
    match fds.take(claim.id, claim.word.generation) {
        Some(kept) => Some((kept.sock, kept.startup)),
        None => checkout(s, claim),
    }
}

/// Why a client got no connection.
pub enum Unserved {
    /// The session is over.
    Left(Disconnect),
    /// A CancelRequest for the client came while it waited (only when the
    /// wait was `cancellable`): the request it waited with is not run.
    Cancelled,
}

/// Get a server connection for the client: reuse a FREE one (preferring
/// the one this worker used last and one already holding the client's
/// settings), make one in an empty slot, or close an idle one the client
/// cannot use to make room; else wait for a release until
/// `blocking_timeout`, or (`cancellable`) until a cancel comes for the
/// client. The slot is bound to the client for cancel.
pub fn acquire(
    s: &Session<'_>,
    client: &Sock,
    client_buf: &mut Vec<u8>,
    reuse: &mut Reuse,
    access: &Access,
    cancellable: bool,
) -> Result<Conn, Unserved> {
    let conn = find(s, client, client_buf, &mut reuse.fds, access, (reuse.entry, cancellable))?;
    if let Some(entry) = reuse.entry {
        s.region.clients().bind(entry, conn.id, conn.word.generation);
    }
    Ok(conn)
}

fn find(
    s: &Session<'_>,
    client: &Sock,
    client_buf: &mut Vec<u8>,
    fds: &mut Fds,
    access: &Access,
    (entry, cancellable): (Option<usize>, bool),
) -> Result<Conn, Unserved> {
    // The clock is read only when the wait is recorded.
    let began = pgagroal::shmem::counters::enabled().then(Instant::now);
    let mut wait = Waiting::new(s, entry, cancellable);
    loop {
        if wait.may_claim() {
            match claim(s, client, client_buf, fds, access) {
                Claimed::Conn(conn) => {
                    wait.served();
                    pgagroal::shmem::counters::record(pgagroal::shmem::counters::Event::ConnectionGet);
                    if let Some(began) = began {
                        pgagroal::shmem::counters::observe(Histogram::WaitTime, began.elapsed());
                    }
                    if let Some(slot) = s.region.slots().get(conn.id) {
                        slot.set_appname(&s.appname);
                    }
                    return Ok(conn);
                }
                Claimed::Failed(reason) => {
                    wait.served();
                    return Err(Unserved::Left(reason));
                }
                Claimed::Retry => continue,
                Claimed::Full => {}
            }
        }
        if wait.cancelled() {
            debug!(s.log, "request cancelled while waiting for a connection");
            return Err(Unserved::Cancelled);
        }
        if let Err(reason) = wait.sleep(client) {
            if reason == Disconnect::PoolFull {
                info!(s.log, "connection pool is full");
                pgagroal::shmem::counters::record(pgagroal::shmem::counters::Event::ConnectionTimeout);
                refuse(client, sqlstate::TOO_MANY_CONNECTIONS, "connection pool is full");
            } else {
                debug!(s.log, "client left while waiting for a connection");
            }
            return Err(Unserved::Left(reason));
        }
    }
}

/// What one look at the slot table gave.
enum Claimed {
    Conn(Conn),
    /// A slot was taken but its connection could not be made; the client
    /// has been told.
    Failed(Disconnect),
    /// A pooled connection was dead or one was closed to make room: look again.
    Retry,
    /// Nothing to take.
    Full,
}

fn claim(s: &Session<'_>, client: &Sock, client_buf: &mut Vec<u8>, fds: &mut Fds, access: &Access) -> Claimed {
    let table = s.region.slots();
    let user = PackedName::new(&s.startup.user);
    let database = PackedName::new(&s.startup.database);
    let kinds = access.kinds();
    if let Some(claim) = table.claim_reusable(fds.preferred(), &user, &database, kinds, s.params.hash(), s.pid) {
        pgagroal::fail_point!("worker-after-slot-claim");
        let slot = table.get(claim.id);
        let owed = slot.map_or(0, |slot| slot.take_reset_pending());
        fds.retire_tls_except(s.region, s.mailbox, s.pid, Some(claim.id));
        return match fetch(s, claim, fds) {
            // Reading the reset's answers shows the connection alive; with
            // none owed, peek that nothing (an error, an EOF) is waiting.
            // `validation = foreground` asks the server itself.
            Some((sock, startup)) if usable(s, &sock, owed) => Claimed::Conn(Conn {
                sock,
                id: claim.id,
                word: claim.word,
                auth: slot.map_or(AuthKind::Unknown, |slot| slot.auth()),
                server_method: slot.map_or(0, |slot| slot.server_method() as i32),
                replay: slot.map(|slot| slot.replay()).unwrap_or_default(),
                registered: true,
                startup,
                client_authenticated: false,
            }),
            other => {
                debug!(s.log, "pooled connection is gone"; "slot" => claim.id.0);
                kill(s, claim.id, claim.word, other.as_ref().map(|(sock, _)| sock), false);
                Claimed::Retry
            }
        };
    }
    // Under a limit rule, counting the rule's connections and claiming an
    // empty slot for it happen under the rule's lock: never one too many.
    let (room, created) = {
        let _lock = s.rule.and_then(|(rule, _)| s.region.header().lock_rule(rule, s.pid));
        let room = s.rule.is_none_or(|(rule, max)| table.rule_count(rule) < max);
        let created = room.then(|| table.claim_empty(s.pid)).flatten();
        if let (Some(claim), Some((rule, _))) = (created, s.rule)
            && let Some(slot) = table.get(claim.id)
        {
            slot.set_rule(Some(rule));
        }
        (room, created)
    };
    if let Some(claim) = created {
        pgagroal::fail_point!("worker-after-slot-claim");
        fds.retire_tls_except(s.region, s.mailbox, s.pid, None);
        return match super::create::connect_new(s, client, client_buf, claim, access) {
            Ok(conn) => Claimed::Conn(conn),
            Err(reason) => Claimed::Failed(reason),
        };
    }
    // At the rule's limit, closing someone else's idle connection would not
    // make room for this client.
    if !room {
        return Claimed::Full;
    }
    if let Some(claim) = table.claim_evictable(&user, &database, kinds, s.pid) {
        debug!(s.log, "closing an idle connection this client cannot use to make room"; "slot" => claim.id.0);
        if let Some(kept) = fds.take_any(claim.id) {
            // This worker's own kept connection (TLS or not).
            kill(s, claim.id, claim.word, Some(&kept.sock), kept.generation == claim.word.generation);
            return Claimed::Retry;
        }
        // Another worker's TLS connection cannot be spoken to in plaintext:
        // it is only shut down.
        let tls_elsewhere = table.get(claim.id).is_some_and(|slot| !slot.usable_by(s.pid));
        let sock = checkout(s, claim).map(|(sock, _)| sock);
        kill(s, claim.id, claim.word, sock.as_ref(), !tls_elsewhere);
        return Claimed::Retry;
    }
    Claimed::Full
}

/// A client's wait for a connection: its place in the wait queue (taken
/// when the pool is full, or at once when others are waiting already), and
/// the `blocking_timeout` deadline, or with `blocking_timeout = 0` the
/// `max_retries` attempts.
struct Waiting<'s, 'a> {
    s: &'s Session<'a>,
    entry: Option<usize>,
    /// The wait queue: the client's limit rule's, or the one for clients
    /// under none.
    queue: usize,
    ticket: Option<Ticket>,
    deadline: Option<Instant>,
    attempts: u32,
    /// Futex value read before the last look, so a wake-up in between is not lost.
    seen: u32,
    release_seen: u32,
    /// The client entry says it waits (metrics on, and it slept once).
    shown_waiting: bool,
    /// With a cancellable wait: the entry's cancel count when it began.
    cancel_asks: Option<u32>,
}

/// Longest sleep between two looks at the client while waiting in line.
const QUEUE_SLICE: Duration = Duration::from_secs(1);

impl<'s, 'a> Waiting<'s, 'a> {
    fn new(s: &'s Session<'a>, entry: Option<usize>, cancellable: bool) -> Self {
        let timeout = s.config.main.blocking_timeout;
        let deadline = (!timeout.is_zero()).then(|| Instant::now() + timeout);
        let queue = s.rule.map_or(0, |(rule, _)| rule + 1);
        let mut w = Waiting {
            s,
            entry,
            queue,
            ticket: None,
            deadline,
            attempts: 0,
            seen: 0,
            release_seen: 0,
            shown_waiting: false,
            cancel_asks: entry.filter(|_| cancellable).map(|e| s.region.clients().cancel_asks(e)),
        };
        // Nobody jumps the queue: with others waiting, a newcomer takes a
        // ticket before it looks.
        if w.deadline.is_some() && !s.region.queue(w.queue).is_empty() {
            w.join();
        }
        w.remember();
        w
    }

    fn join(&mut self) {
        if let Some(entry) = self.entry {
            self.ticket = self.s.region.queue(self.queue).enqueue(entry);
            if let Some(ticket) = self.ticket {
                debug!(self.s.log, "waiting in line for a connection"; "ticket" => ticket.0);
            }
        }
    }

    fn remember(&mut self) {
        self.release_seen = self.s.region.header().release_ticket();
        if let Some(entry) = self.entry {
            self.seen = self.s.region.queue(self.queue).wake_seq(entry);
        }
    }

    fn may_claim(&mut self) -> bool {
        self.remember();
        match self.ticket {
            Some(ticket) => self.s.region.queue(self.queue).is_turn(ticket),
            None => true,
        }
    }

    /// A cancel came for the client since the wait began (a cancellable
    /// one): it leaves the queue (on drop).
    fn cancelled(&self) -> bool {
        match (self.cancel_asks, self.entry) {
            (Some(asks), Some(entry)) => self.s.region.clients().cancel_asks(entry) != asks,
            _ => false,
        }
    }

    /// Got a slot (or gave up after taking one): the next waiter's turn.
    fn served(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.s.region.served(self.queue, ticket);
        }
    }

    fn leave(&mut self) {
        if let (Some(ticket), Some(entry)) = (self.ticket.take(), self.entry) {
            self.s.region.queue(self.queue).cancel(ticket, entry);
        }
    }

    /// Before the first sleep, with metrics on: the client entry says since
    /// when the client waits (for `pgagroal_pool_cl_waiting` and maxwait).
    fn show_waiting(&mut self) {
        if !self.shown_waiting
            && let Some(entry) = self.entry
            && pgagroal::shmem::counters::enabled()
        {
            self.s.region.clients().set_waiting(entry, pgagroal::shmem::pools::monotonic_micros());
            self.shown_waiting = true;
        }
    }

    /// Wait for a release; Err when the wait is over without a slot.
    fn sleep(&mut self, client: &Sock) -> Result<(), Disconnect> {
        let queue = self.s.region.queue(self.queue);
        let Some(deadline) = self.deadline else {
            // blocking_timeout = 0: a few quick retries, then give up.
            self.attempts += 1;
            if self.attempts > self.s.config.main.max_retries {
                return Err(Disconnect::PoolFull);
            }
            self.show_waiting();
            std::thread::sleep(Duration::from_millis(1 << self.attempts.min(8)));
            return Ok(());
        };
        if self.ticket.is_none() {
            self.join();
            if self.ticket.is_some() {
                // In line now: look once more before sleeping, in case the
                // release came before the ticket.
                return Ok(());
            }
        }
        let now = Instant::now();
        if now >= deadline {
            self.leave();
            return Err(Disconnect::PoolFull);
        }
        let left = deadline - now;
        self.show_waiting();
        let woken = match (self.ticket, self.entry) {
            (Some(_), Some(entry)) => queue.wait(entry, self.seen, QUEUE_SLICE.min(left)),
            _ => self.s.region.header().wait_release(self.release_seen, WAIT_SLICE.min(left)),
        };
        // Woken by a release: look for a slot at once. The client is looked
        // at when a slice passes with none, so one that left is noticed
        // within a slice; its request is run only when it was served
        // before that, as PostgreSQL runs what a client sent just before
        // going away.
        if woken {
            return Ok(());
        }
        let mut fds = [libc::pollfd { fd: client.raw(), events: libc::POLLIN, revents: 0 }];
        if crate::net::poll(&mut fds, 0).unwrap_or(0) > 0 && client.closed_by_peer() {
            self.leave();
            return Err(Disconnect::WaitAbandoned);
        }
        Ok(())
    }
}

impl Drop for Waiting<'_, '_> {
    fn drop(&mut self) {
        self.leave();
        if let (true, Some(entry)) = (self.shown_waiting, self.entry) {
            self.s.region.clients().set_waiting(entry, 0);
        }
    }
}

/// Whether a claimed pooled connection can be used: the last reset's
/// answers (`owed`) came clean, or with none owed nothing (an error, an
/// EOF) is waiting; with `validation = foreground` an empty query must be
/// answered too.
fn usable(s: &Session<'_>, sock: &Sock, owed: u32) -> bool {
    if s.config.main.validation == Validation::Foreground {
        return (owed > 0 || sock.idle_and_open()) && check_alive(sock, owed);
    }
    settle_reset(sock, owed) && (owed > 0 || sock.idle_and_open())
}

/// Ask the supervisor for the fd of a slot this worker claimed.
fn checkout(s: &Session<'_>, claim: Claim) -> Option<(Sock, Vec<u8>)> {
    crate::pooled::checkout(s.mailbox, claim.id, claim.word, &s.log)
}
