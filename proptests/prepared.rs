//! Random interleavings of clients over shared server connections through
//! the prepared-statement engine: each client gets what a direct connection
//! would have given it, no server connection is ever sent a Bind or
//! Describe of a statement it lacks (or a Parse of one it has), and no
//! client sees another's statement or a server-side name.

mod prepared_model;

use pgagroal::prepared::Engine;
use pgagroal::shmem::statements::OwnedStatements;
use prepared_model::{Harness, Rewriter, front};
use proptest::prelude::*;

#[derive(Default)]
struct Pooled(Engine);

impl Rewriter for Pooled {
    type Table = OwnedStatements;
    fn table(capacity: usize) -> OwnedStatements {
        OwnedStatements::new(capacity)
    }
    fn client_bytes(&mut self, bytes: &[u8], t: &OwnedStatements, to_server: &mut Vec<u8>, to_client: &mut Vec<u8>) {
        self.0.client_bytes(bytes, &t.table(), to_server, to_client).expect("valid client bytes");
    }
    fn resume(&mut self, t: &OwnedStatements, to_server: &mut Vec<u8>, to_client: &mut Vec<u8>) {
        self.0.resume(&t.table(), to_server, to_client).expect("valid client bytes");
    }
    fn server_bytes(&mut self, chunk: &[u8], t: &OwnedStatements, out: &mut Vec<u8>) -> bool {
        self.0.server_bytes(chunk, &t.table(), out)
    }
    fn stalled(&self) -> bool {
        self.0.stalled()
    }
    fn settled(&self) -> bool {
        self.0.settled()
    }
}

const NAMES: [&str; 4] = ["a", "b", "c", "pgagroal_0"];
const TEXTS: [&str; 4] = ["SELECT 1", "SELECT 2", "SELECT 3", "SELECT fail"];

/// One client message.
#[derive(Debug, Clone)]
enum Op {
    Parse(usize, usize),
    Bind(usize),
    Describe(usize),
    Close(usize),
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..NAMES.len(), 0..TEXTS.len()).prop_map(|(n, t)| Op::Parse(n, t)),
        (0..NAMES.len()).prop_map(Op::Bind),
        (0..NAMES.len()).prop_map(Op::Bind),
        (0..NAMES.len()).prop_map(Op::Describe),
        (0..NAMES.len()).prop_map(Op::Close),
        Just(Op::Flush),
    ]
}

/// One write of a client: batches of messages each ended by a Sync, or a
/// simple Query.
#[derive(Debug, Clone)]
enum Write {
    Batches(Vec<Vec<Op>>),
    Query(&'static str),
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        6 => prop::collection::vec(prop::collection::vec(op(), 1..5), 1..3).prop_map(Write::Batches),
        1 => prop::sample::select(vec!["DEALLOCATE a", "DEALLOCATE b", "DEALLOCATE ALL", "DISCARD ALL", "SELECT 1"])
            .prop_map(Write::Query),
    ]
}

fn bytes_of(w: &Write) -> Vec<u8> {
    match w {
        Write::Query(text) => front::query(text),
        Write::Batches(batches) => {
            let mut out = Vec::new();
            for b in batches {
                for op in b {
                    out.extend_from_slice(&match op {
                        Op::Parse(n, t) => front::parse(NAMES[*n], TEXTS[*t]),
                        Op::Bind(n) => [front::bind(NAMES[*n]), front::execute()].concat(),
                        Op::Describe(n) => front::describe(NAMES[*n]),
                        Op::Close(n) => front::close(NAMES[*n]),
                        Op::Flush => front::flush(),
                    });
                }
                out.extend_from_slice(&front::sync());
            }
            out
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn clients_get_what_a_direct_connection_gives(
        capacity in 1usize..4,
        split in prop::sample::select(vec![1usize, 3, 64, usize::MAX]),
        writes in prop::collection::vec((0usize..2, 0usize..3, write()), 1..40),
    ) {
        let mut h: Harness<Pooled> = Harness::new(2, 3, capacity);
        h.split = split;
        for (client, conn, w) in &writes {
            h.send(*client, *conn, &bytes_of(w));
        }
        h.check();
    }
}
