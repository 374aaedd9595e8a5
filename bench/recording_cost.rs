//! What recording metrics costs one transaction in the pooler's data path,
//! measured directly: the calls the relay makes per transaction with the
//! metrics port on (bytes both ways, the query and transaction counts, the
//! slot's query count, two clock reads, the query and transaction latency
//! observations), plus what a transaction-pipeline checkout adds (the get
//! count, a clock read and the wait observation). Prints the median over
//! rounds of nanoseconds per transaction as JSON; the bench divides it by
//! pgagroal's CPU per transaction from the same run.

use pgagroal::metrics::latency::Latency;
use pgagroal::shmem::counters::{self, CounterBlock, Event, Histogram};
use pgagroal::shmem::slot::Slot;
use std::time::Instant;

const TRANSACTIONS: u64 = 1_000_000;
const ROUNDS: usize = 9;

fn one_transaction(latency: &mut Latency, slot: &Slot, i: u64) {
    let began = Instant::now();
    counters::record(Event::ConnectionGet);
    counters::observe(Histogram::WaitTime, began.elapsed());
    counters::add(Event::NetworkReceived, 42);
    latency.sent(i, Instant::now());
    counters::add(Event::NetworkSent, 180);
    counters::add(Event::Query, 1);
    counters::add(Event::Transaction, 1);
    slot.count_queries(1);
    let observe = |d| counters::observe(Histogram::QueryTime, d);
    if let Some(tx) = latency.answered(i, b'I', Instant::now(), observe) {
        counters::observe(Histogram::TransactionTime, tx);
    }
}

fn main() {
    // SAFETY: CounterBlock is only atomics, for which zeroes are valid. It
    // is leaked, so it stays alive for as long as it is installed.
    let block: &'static CounterBlock = Box::leak(Box::new(unsafe { std::mem::zeroed() }));
    counters::install(block);
    let slot = Slot::default();
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let mut latency = Latency::new(0, 0);
        let start = Instant::now();
        for i in 1..=TRANSACTIONS {
            one_transaction(&mut latency, &slot, i);
        }
        rounds.push(start.elapsed().as_nanos() as f64 / TRANSACTIONS as f64);
    }
    rounds.sort_by(f64::total_cmp);
    let recorded = block.total(Event::Transaction);
    println!("{{\"ns_per_transaction\": {:.1}, \"transactions\": {recorded}}}", rounds[ROUNDS / 2]);
}
