//! Query and transaction latency as the pooler sees them, from the two
//! trackers' counts: a query starts when the client sends a message that
//! the server answers with ReadyForQuery (a simple Query, a Sync) and ends
//! at that ReadyForQuery; a transaction starts with the first such message
//! sent while the session is idle and ends at the ReadyForQuery that says
//! idle again. Pipelined requests are matched in order. No I/O: the relay
//! passes the counts and the time, and records what comes back.

use std::time::{Duration, Instant};

/// Requests in flight remembered; older ones are forgotten (not measured).
const IN_FLIGHT: usize = 64;

/// One session's clock.
#[derive(Debug, Clone)]
pub struct Latency {
    /// When each request in flight was sent, oldest first (a ring).
    sent: [Option<Instant>; IN_FLIGHT],
    head: usize,
    len: usize,
    /// Requests sent so far (the client tracker's `sync_points`).
    requests: u64,
    /// Answers seen so far (the server tracker's `ready_count`).
    answers: u64,
    /// When the transaction under way started.
    transaction: Option<Instant>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency { sent: [None; IN_FLIGHT], head: 0, len: 0, requests: 0, answers: 0, transaction: None }
    }
}

impl Latency {
    /// Start from counts already reached (a session's greeting, or a
    /// transaction-pipeline relay taking over trackers).
    pub fn new(requests: u64, answers: u64) -> Latency {
        Latency { requests, answers, ..Latency::default() }
    }

    /// The client has now sent `requests` in all, at `now`.
    pub fn sent(&mut self, requests: u64, now: Instant) {
        while self.requests < requests {
            self.requests += 1;
            if self.len == 0 && self.transaction.is_none() {
                self.transaction = Some(now);
            }
            if self.len == IN_FLIGHT {
                self.head = (self.head + 1) % IN_FLIGHT;
                self.len -= 1;
            }
            self.sent[(self.head + self.len) % IN_FLIGHT] = Some(now);
            self.len += 1;
        }
    }

    /// The server has now answered `answers` in all, the last saying
    /// `status`, at `now`: `query` gets each answered request's latency;
    /// returns the transaction's when one ended.
    pub fn answered(
        &mut self,
        answers: u64,
        status: u8,
        now: Instant,
        mut query: impl FnMut(Duration),
    ) -> Option<Duration> {
        while self.answers < answers {
            self.answers += 1;
            if self.len > 0 {
                if let Some(at) = self.sent[self.head].take() {
                    query(now.saturating_duration_since(at));
                }
                self.head = (self.head + 1) % IN_FLIGHT;
                self.len -= 1;
            }
        }
        if status == b'I' && self.len == 0 {
            return self.transaction.take().map(|at| now.saturating_duration_since(at));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The queries and the transaction that ended.
    fn look(l: &mut Latency, answers: u64, status: u8, now: Instant) -> (Vec<Duration>, Option<Duration>) {
        let mut queries = Vec::new();
        let tx = l.answered(answers, status, now, |d| queries.push(d));
        (queries, tx)
    }

    #[test]
    fn queries_and_transactions_are_timed_in_order() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let ms = Duration::from_millis;
        let mut l = Latency::new(0, 0);
        // Autocommit statement: one query, one transaction.
        l.sent(1, at(0));
        assert_eq!(look(&mut l, 1, b'I', at(5)), (vec![ms(5)], Some(ms(5))));
        // BEGIN; SELECT; COMMIT as three round trips.
        l.sent(2, at(10));
        assert_eq!(look(&mut l, 2, b'T', at(11)), (vec![ms(1)], None));
        l.sent(3, at(20));
        assert_eq!(look(&mut l, 3, b'T', at(22)), (vec![ms(2)], None));
        l.sent(4, at(30));
        assert_eq!(look(&mut l, 4, b'I', at(31)), (vec![ms(1)], Some(ms(21))));
        // Pipelined: three Syncs, answered together.
        l.sent(7, at(40));
        assert_eq!(look(&mut l, 7, b'I', at(48)), (vec![ms(8); 3], Some(ms(8))));
        // An answer nobody waits for (counts taken over) measures nothing.
        assert_eq!(look(&mut l, 8, b'I', at(50)), (vec![], None));
    }

    #[test]
    fn a_flood_of_requests_forgets_the_oldest() {
        let t0 = Instant::now();
        let mut l = Latency::new(0, 0);
        l.sent(IN_FLIGHT as u64 + 10, t0);
        let (queries, tx) = look(&mut l, IN_FLIGHT as u64 + 10, b'I', t0 + Duration::from_millis(1));
        assert_eq!(queries.len(), IN_FLIGHT);
        assert!(tx.is_some());
    }
}
