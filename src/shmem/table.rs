//! The slot table: the array of [`Slot`]s and the scans that claim them.
//! Every claim is a compare-and-swap from the exact word that was read, so
//! two processes can never both win a slot and a slot recycled in between is
//! never taken by mistake.

use super::slot::{AuthKinds, PackedName, Slot, SlotId, SlotInfo, SlotState, TransitionError, Word};

/// A borrowed view of the slots, in shared memory or (in tests) on the heap.
#[derive(Clone, Copy)]
pub struct SlotTable<'a> {
    slots: &'a [Slot],
}

/// A slot won by a claim, with the word the claim produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub id: SlotId,
    pub word: Word,
}

/// Slots per state, for `status` and for the pool-full decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub by_state: [u32; 10],
}

impl Counts {
    pub fn get(&self, state: SlotState) -> u32 {
        self.by_state[state as usize]
    }

    /// Slots holding (or creating) a server connection.
    pub fn total(&self) -> u32 {
        self.by_state.iter().sum::<u32>() - self.get(SlotState::NotInit)
    }

    /// Slots serving a client, as pgagroal counts them (IN_USE and GRACEFULLY).
    pub fn active(&self) -> u32 {
        self.get(SlotState::InUse) + self.get(SlotState::Gracefully)
    }
}

impl<'a> SlotTable<'a> {
    pub fn new(slots: &'a [Slot]) -> Self {
        SlotTable { slots }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn get(&self, id: SlotId) -> Option<&'a Slot> {
        self.slots.get(id.0 as usize)
    }

    pub fn iter(&self) -> impl Iterator<Item = (SlotId, &'a Slot)> + 'a {
        self.slots.iter().enumerate().map(|(i, s)| (SlotId(i as u32), s))
    }

    /// Move a slot `from -> to` (see [`Slot::transition`]).
    pub fn transition(&self, id: SlotId, from: Word, to: SlotState, pid: i32) -> Result<Word, TransitionError> {
        let slot = self.get(id).ok_or(TransitionError::NotAllowed { from: from.state, to })?;
        slot.transition(from, to, pid)
    }

    /// Take a FREE slot holding a connection for this user and database,
    /// authenticated in one of the ways in `kinds`: FREE -> IN_USE. `prefer`
    /// is tried first (a worker prefers the slot whose connection it used
    /// last), then slots whose settings hash is `params` (no settings to
    /// apply), then any.
    pub fn claim_reusable(
        &self,
        prefer: Option<SlotId>,
        user: &PackedName,
        database: &PackedName,
        kinds: AuthKinds,
        params: u64,
        pid: i32,
    ) -> Option<Claim> {
        let preferred = prefer.and_then(|id| self.get(id).map(|slot| (id, slot)));
        let matching = self.iter().filter(|(_, slot)| slot.params_hash() == params);
        for (id, slot) in preferred.into_iter().chain(matching).chain(self.iter()) {
            let word = slot.load();
            if word.state == SlotState::Free
                && slot.reusable_for(user, database, kinds)
                && slot.usable_by(pid)
                && let Ok(word) = slot.transition(word, SlotState::InUse, pid)
            {
                return Some(Claim { id, word });
            }
        }
        None
    }

    /// Take an empty slot to create a connection in: NOTINIT -> INIT.
    pub fn claim_empty(&self, pid: i32) -> Option<Claim> {
        for (id, slot) in self.iter() {
            let word = slot.load();
            if word.state == SlotState::NotInit
                && let Ok(word) = slot.transition(word, SlotState::Init, pid)
            {
                return Some(Claim { id, word });
            }
        }
        None
    }

    /// Take a FREE slot that this client cannot reuse (another user or
    /// database, or authenticated in a way not in `kinds`) so that its
    /// connection can be closed to make room: FREE -> REMOVE. The least
    /// recently used one goes first.
    pub fn claim_evictable(
        &self,
        user: &PackedName,
        database: &PackedName,
        kinds: AuthKinds,
        pid: i32,
    ) -> Option<Claim> {
        let mut candidates: Vec<(u64, SlotId, Word)> = self
            .iter()
            .filter_map(|(id, slot)| {
                let word = slot.load();
                (word.state == SlotState::Free && !slot.reusable_for(user, database, kinds))
                    .then(|| (slot.info().last_used_ms, id, word))
            })
            .collect();
        candidates.sort_by_key(|c| c.0);
        candidates.into_iter().find_map(|(_, id, word)| {
            self.transition(id, word, SlotState::Remove, pid).ok().map(|word| Claim { id, word })
        })
    }

    /// Connections (made or being made) that count against limit `rule`.
    pub fn rule_count(&self, rule: usize) -> u32 {
        self.iter().filter(|(_, slot)| slot.load().state != SlotState::NotInit && slot.rule() == Some(rule)).count()
            as u32
    }

    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for (_, slot) in self.iter() {
            counts.by_state[slot.load().state as usize] += 1;
        }
        counts
    }

    /// Slots a process holds in a claimed state (what must be reclaimed when
    /// it dies).
    pub fn claimed_by(&self, pid: i32) -> Vec<(SlotId, Word)> {
        self.iter()
            .filter_map(|(id, slot)| {
                let w = slot.load();
                (w.owner == pid && w.state.is_claimed()).then_some((id, w))
            })
            .collect()
    }

    /// FREE slots whose TLS state `pid` held: nobody else can continue them.
    pub fn tls_orphans_of(&self, pid: i32) -> Vec<(SlotId, Word)> {
        self.iter()
            .filter_map(|(id, slot)| {
                let w = slot.load();
                (w.state == SlotState::Free && slot.tls_owner() == pid).then_some((id, w))
            })
            .collect()
    }

    pub fn infos(&self) -> Vec<(SlotId, SlotInfo)> {
        self.iter().map(|(id, s)| (id, s.info())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shmem::slot::AuthKind;

    const TRUST: AuthKinds = AuthKinds::of(&[AuthKind::Trust]);

    fn table(n: usize) -> Vec<Slot> {
        (0..n).map(|_| Slot::default()).collect()
    }

    #[test]
    fn create_use_return_reuse() {
        let slots = table(2);
        let t = SlotTable::new(&slots);
        let (u, d) = (PackedName::new("u"), PackedName::new("d"));
        assert!(t.claim_reusable(None, &u, &d, TRUST, 0, 1).is_none());
        let c = t.claim_empty(1).expect("empty slot");
        let slot = t.get(c.id).expect("slot");
        slot.set_identity(&u, &d, 0, 5);
        slot.set_backend(AuthKind::Trust, 99, 1);
        let w = t.transition(c.id, c.word, SlotState::InUse, 1).expect("in use");
        assert_eq!(t.counts().active(), 1);
        t.transition(c.id, w, SlotState::Free, 1).expect("returned");
        let again = t.claim_reusable(None, &u, &d, TRUST, 0, 2).expect("reused");
        assert_eq!(again.id, c.id);
        // A preferred slot is taken before the scan order.
        t.transition(again.id, again.word, SlotState::Free, 2).expect("returned");
        let second = t.claim_empty(3).expect("second slot");
        let sslot = t.get(second.id).expect("slot");
        sslot.set_identity(&u, &d, 0, 5);
        sslot.set_backend(AuthKind::Trust, 98, 1);
        t.transition(second.id, second.word, SlotState::Free, 3).expect("free");
        let preferred = t.claim_reusable(Some(second.id), &u, &d, TRUST, 0, 4).expect("preferred");
        assert_eq!(preferred.id, second.id);
        t.transition(preferred.id, preferred.word, SlotState::Free, 4).expect("free");
        let again = t.claim_reusable(None, &u, &d, TRUST, 0, 2).expect("reused");
        assert_eq!(again.id, c.id);
        assert_eq!(again.word.owner, 2);
        assert_eq!(t.claimed_by(2), vec![(again.id, again.word)]);
        assert_eq!(t.counts().total(), 2);
    }

    #[test]
    fn tls_connections_stay_with_their_worker() {
        let slots = table(1);
        let t = SlotTable::new(&slots);
        let (u, d) = (PackedName::new("u"), PackedName::new("d"));
        let c = t.claim_empty(7).expect("slot");
        let slot = t.get(c.id).expect("slot");
        slot.set_identity(&u, &d, 0, 0);
        slot.set_backend(AuthKind::Trust, 1, 1);
        slot.set_tls_owner(7);
        t.transition(c.id, c.word, SlotState::Free, 7).expect("free");
        assert!(t.claim_reusable(None, &u, &d, TRUST, 0, 8).is_none(), "another worker has no TLS state");
        assert_eq!(t.tls_orphans_of(7).len(), 1);
        assert!(t.tls_orphans_of(8).is_empty());
        let again = t.claim_reusable(None, &u, &d, TRUST, 0, 7).expect("its own worker");
        assert_eq!(again.id, c.id);
        assert!(t.tls_orphans_of(7).is_empty(), "in use, not free");
    }

    #[test]
    fn rule_counts_follow_the_slots() {
        let slots = table(3);
        let t = SlotTable::new(&slots);
        let a = t.claim_empty(1).expect("a");
        t.get(a.id).expect("slot").set_rule(Some(2));
        let b = t.claim_empty(1).expect("b");
        t.get(b.id).expect("slot").set_rule(Some(2));
        assert_eq!(t.rule_count(2), 2);
        assert_eq!(t.rule_count(1), 0);
        let removed = t.transition(a.id, a.word, SlotState::Remove, 1).expect("remove");
        assert_eq!(t.rule_count(2), 2, "a connection being closed still counts");
        t.transition(a.id, removed, SlotState::NotInit, 1).expect("gone");
        assert_eq!(t.rule_count(2), 1);
        // The slot's next connection starts under no rule.
        let again = t.claim_empty(1).expect("again");
        assert_eq!(again.id, a.id);
        assert_eq!(t.get(a.id).expect("slot").rule(), None);
    }

    #[test]
    fn eviction_takes_other_keys_only() {
        let slots = table(1);
        let t = SlotTable::new(&slots);
        let (u, d, other) = (PackedName::new("u"), PackedName::new("d"), PackedName::new("o"));
        let c = t.claim_empty(1).expect("slot");
        t.get(c.id).expect("slot").set_identity(&u, &d, 0, 0);
        t.get(c.id).expect("slot").set_backend(AuthKind::Trust, 1, 1);
        t.transition(c.id, c.word, SlotState::Free, 1).expect("free");
        assert!(t.claim_evictable(&u, &d, TRUST, 2).is_none());
        let e = t.claim_evictable(&other, &d, TRUST, 2).expect("evicted");
        assert_eq!(e.word.state, SlotState::Remove);
    }
}
