//! Load for tests that change the pool under busy clients: sessions as the
//! md5 user running short transactions until stopped, each reporting its
//! first error.

use super::Pooler;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// Clients running short transactions until stopped; each reports its
/// first error.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Result<u64, String>>>,
}

impl Load {
    /// `clients` sessions on `db`, connected before this returns.
    pub fn start(pooler: &Pooler, db: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|i| {
                let mut c = pooler.connect_to(db);
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut done = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        c.batch_execute("BEGIN; SELECT count(*) FROM pg_class; COMMIT")
                            .map_err(|e| format!("load client {i} after {done} transactions: {e}"))?;
                        done += 1;
                    }
                    Ok(done)
                })
            })
            .collect();
        Load { stop, threads }
    }

    /// Stop the clients; panics if any saw an error or none did work.
    pub fn finish(self, pooler: &Pooler) {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        for t in self.threads {
            match t.join() {
                Ok(Ok(n)) => total += n,
                Ok(Err(e)) => panic!("{e}\n{}", pooler.log()),
                Err(_) => panic!("a load client panicked"),
            }
        }
        assert!(total > 0, "the load did no work");
    }
}
