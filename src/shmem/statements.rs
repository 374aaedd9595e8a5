//! Each server connection's set of prepared statements, for the
//! transaction pipeline (`max_prepared_statements`): which statements the
//! connection has been sent under their pooler-wide names (see
//! [`crate::prepared`]), and when each was last used.
//!
//! A table belongs to one slot and lives in shared memory after the slots.
//! Only the process holding the slot (IN_USE, or INIT while it connects)
//! reads or writes it, so there is no lock; the cells are atomics accessed
//! with relaxed ordering, and the slot's state transitions (acquire on
//! claim, release on return) order one holder's writes before the next
//! holder's reads. A holder that dies mid-update leaves the table to its
//! slot, whose connection the supervisor then terminates; the next
//! connection made in the slot starts with [`Statements::clear`].
//!
//! The table is open addressing with linear probing over a power-of-two
//! number of cells, at least twice the capacity, and backward-shift
//! deletion (no tombstones). Every loop is bounded by the number of cells,
//! so a table left inconsistent by a crash is wrong, never a hang.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Buckets of statement epochs shared by every connection (see
/// [`Statements::epoch`]).
pub const STATEMENT_EPOCHS: usize = 1024;

/// One statement: its id (128 bits, never zero) and the table's clock
/// value at its last use.
#[repr(C)]
#[derive(Default)]
pub struct StatementCell {
    hi: AtomicU64,
    lo: AtomicU64,
    used: AtomicU64,
}

/// The table's count and use clock.
#[repr(C, align(64))]
#[derive(Default)]
pub struct StatementsHead {
    count: AtomicU64,
    clock: AtomicU64,
}

/// Cells each table takes for `capacity` statements (0 when the feature
/// is off).
pub fn cells_for(capacity: usize) -> usize {
    if capacity == 0 { 0 } else { (capacity * 2).next_power_of_two() }
}

/// One server connection's statements, and the epochs every connection
/// shares.
#[derive(Clone)]
pub struct Statements<'a> {
    head: &'a StatementsHead,
    cells: &'a [StatementCell],
    capacity: usize,
    epochs: &'a [AtomicU32],
}

fn split(id: u128) -> (u64, u64) {
    ((id >> 64) as u64, id as u64)
}

impl<'a> Statements<'a> {
    /// `cells` must hold [`cells_for`]`(capacity)` cells (a power of two);
    /// `epochs` are the pooler-wide statement epochs.
    pub fn new(head: &'a StatementsHead, cells: &'a [StatementCell], capacity: usize, epochs: &'a [AtomicU32]) -> Self {
        Statements { head, cells, capacity, epochs }
    }

    /// The epoch of a statement text (`base`: its id before any epoch),
    /// shared by every connection and process: it moves on when the server
    /// says the statement's result type changed ([`Statements::outdate`]),
    /// so that statements prepared before are known to be stale everywhere.
    /// Texts share a bucket now and then; they then move on together.
    pub fn epoch(&self, base: u128) -> u32 {
        self.epoch_cell(base).map_or(0, |e| e.load(Ordering::Acquire))
    }

    /// The server said a statement prepared from text `base` no longer
    /// holds: every statement of it prepared before now is stale.
    pub fn outdate(&self, base: u128) {
        if let Some(e) = self.epoch_cell(base) {
            e.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn epoch_cell(&self, base: u128) -> Option<&AtomicU32> {
        self.epochs.get((base % self.epochs.len().max(1) as u128) as usize)
    }

    /// How many statements the connection should keep at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        usize::try_from(self.head.count.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn mask(&self) -> usize {
        self.cells.len().wrapping_sub(1)
    }

    fn home(&self, lo: u64) -> usize {
        (lo as usize) & self.mask()
    }

    fn id_at(&self, i: usize) -> Option<u128> {
        let c = self.cells.get(i)?;
        let (hi, lo) = (c.hi.load(Ordering::Relaxed), c.lo.load(Ordering::Relaxed));
        (hi != 0 || lo != 0).then_some((u128::from(hi) << 64) | u128::from(lo))
    }

    fn find(&self, id: u128) -> Option<usize> {
        if self.cells.is_empty() || id == 0 {
            return None;
        }
        let mut i = self.home(id as u64);
        for _ in 0..self.cells.len() {
            match self.id_at(i) {
                None => return None,
                Some(found) if found == id => return Some(i),
                Some(_) => i = (i + 1) & self.mask(),
            }
        }
        None
    }

    fn tick(&self) -> u64 {
        let now = self.head.clock.load(Ordering::Relaxed).wrapping_add(1);
        self.head.clock.store(now, Ordering::Relaxed);
        now
    }

    /// Whether the connection has the statement.
    pub fn contains(&self, id: u128) -> bool {
        self.find(id).is_some()
    }

    /// Mark the statement used now; false when the connection lacks it.
    pub fn touch(&self, id: u128) -> bool {
        match self.find(id) {
            Some(i) => {
                self.cells[i].used.store(self.tick(), Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Record the statement (used now). False only when every cell is taken
    /// (the caller evicts first, so that happens only to a table left
    /// inconsistent).
    pub fn insert(&self, id: u128) -> bool {
        if id == 0 || self.touch(id) {
            return id != 0;
        }
        if self.len() + 1 >= self.cells.len() {
            return false;
        }
        let mut i = self.home(id as u64);
        for _ in 0..self.cells.len() {
            if self.id_at(i).is_none() {
                let (hi, lo) = split(id);
                let c = &self.cells[i];
                c.hi.store(hi, Ordering::Relaxed);
                c.lo.store(lo, Ordering::Relaxed);
                c.used.store(self.tick(), Ordering::Relaxed);
                self.head.count.store(self.len() as u64 + 1, Ordering::Relaxed);
                return true;
            }
            i = (i + 1) & self.mask();
        }
        false
    }

    /// Forget the statement; false when it was not there.
    pub fn remove(&self, id: u128) -> bool {
        let Some(mut hole) = self.find(id) else { return false };
        // Backward shift: move later members of the probe run into the hole
        // when their home does not lie (cyclically) between the hole and them.
        let mut j = hole;
        for _ in 0..self.cells.len() {
            j = (j + 1) & self.mask();
            let Some(next) = self.id_at(j) else { break };
            let home = self.home(next as u64);
            let stays = if hole <= j { hole < home && home <= j } else { hole < home || home <= j };
            if !stays {
                let (hi, lo) = split(next);
                let (from, to) = (&self.cells[j], &self.cells[hole]);
                to.hi.store(hi, Ordering::Relaxed);
                to.lo.store(lo, Ordering::Relaxed);
                to.used.store(from.used.load(Ordering::Relaxed), Ordering::Relaxed);
                hole = j;
            }
        }
        let c = &self.cells[hole];
        c.hi.store(0, Ordering::Relaxed);
        c.lo.store(0, Ordering::Relaxed);
        c.used.store(0, Ordering::Relaxed);
        self.head.count.store(self.len().saturating_sub(1) as u64, Ordering::Relaxed);
        true
    }

    /// The statement used least recently.
    pub fn least_recently_used(&self) -> Option<u128> {
        (0..self.cells.len())
            .filter_map(|i| self.id_at(i).map(|id| (self.cells[i].used.load(Ordering::Relaxed), id)))
            .min()
            .map(|(_, id)| id)
    }

    /// Forget every statement (a new connection, or one whose statements
    /// may have been dropped by the client's own SQL).
    pub fn clear(&self) {
        for c in self.cells {
            c.hi.store(0, Ordering::Relaxed);
            c.lo.store(0, Ordering::Relaxed);
            c.used.store(0, Ordering::Relaxed);
        }
        self.head.count.store(0, Ordering::Relaxed);
    }
}

/// A table with its own memory, for tests and for a worker that has no
/// slot table to use.
pub struct OwnedStatements {
    head: StatementsHead,
    cells: Vec<StatementCell>,
    capacity: usize,
    epochs: Vec<AtomicU32>,
}

impl OwnedStatements {
    pub fn new(capacity: usize) -> Self {
        let cells = (0..cells_for(capacity)).map(|_| StatementCell::default()).collect();
        let epochs = (0..STATEMENT_EPOCHS).map(|_| AtomicU32::new(0)).collect();
        OwnedStatements { head: StatementsHead::default(), cells, capacity, epochs }
    }

    pub fn table(&self) -> Statements<'_> {
        Statements::new(&self.head, &self.cells, self.capacity, &self.epochs)
    }

    /// This table with another's epochs (another connection of the same pooler).
    pub fn table_with_epochs<'a>(&'a self, epochs_of: &'a OwnedStatements) -> Statements<'a> {
        Statements::new(&self.head, &self.cells, self.capacity, &epochs_of.epochs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_find_remove_and_lru() {
        let owned = OwnedStatements::new(3);
        let t = owned.table();
        assert_eq!(owned.cells.len(), 8);
        assert!(t.is_empty() && !t.contains(7));
        for id in [1u128, 9, 17, 2 << 64] {
            assert!(t.insert(id));
        }
        assert_eq!(t.len(), 4);
        assert!(t.touch(1));
        assert_eq!(t.least_recently_used(), Some(9));
        assert!(t.remove(9) && !t.remove(9));
        assert!(t.contains(1) && t.contains(17) && t.contains(2 << 64) && !t.contains(9));
        assert_eq!(t.least_recently_used(), Some(17));
        t.clear();
        assert!(t.is_empty() && [1u128, 9, 17, 2 << 64].iter().all(|id| !t.contains(*id)));
        assert!(!t.insert(0) && !t.contains(0));
    }

    #[test]
    fn colliding_ids_survive_removals_in_any_order() {
        // Ids 8 apart share a home in 8 cells: one long probe run that wraps.
        let owned = OwnedStatements::new(3);
        let t = owned.table();
        let ids = [7u128, 15, 23, 31, 6, 14, 39];
        for id in ids {
            assert!(t.insert(id));
        }
        assert!(!t.insert(100), "one cell always stays empty");
        for (k, id) in ids.iter().enumerate() {
            assert!(t.remove(*id));
            for later in &ids[k + 1..] {
                assert!(t.contains(*later), "{later} lost after removing {id}");
            }
        }
        assert!(t.is_empty());
    }
}
