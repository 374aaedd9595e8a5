//! Property tests of the slot table: random sequences of claims, returns,
//! kills, evictions, service checks and process deaths, applied both to the
//! real table and to a plain model, must agree after every step; and
//! concurrent claimers never hold one slot twice.

use pgagroal::shmem::slot::AuthKinds;
use pgagroal::shmem::{AuthKind, PackedName, Slot, SlotId, SlotState, SlotTable, Word};

const TRUST: AuthKinds = AuthKinds::of(&[AuthKind::Trust]);
use proptest::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

const SLOTS: usize = 4;
const SUPERVISOR: i32 = 999;
const SERVICE: i32 = 500;

#[derive(Debug, Clone)]
enum Op {
    ClaimEmpty { pid: i32 },
    ClaimReusable { pid: i32, key: u8 },
    FinishSetup { slot: usize, key: u8 },
    Return { slot: usize },
    Kill { slot: usize },
    Evict { pid: i32, key: u8 },
    ServiceCheck { slot: usize, keep: bool },
    Die { pid: i32 },
    Stale { slot: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let pid = 1..=4i32;
    let slot = 0..SLOTS;
    let key = 0..2u8;
    prop_oneof![
        pid.clone().prop_map(|pid| Op::ClaimEmpty { pid }),
        (pid.clone(), key.clone()).prop_map(|(pid, key)| Op::ClaimReusable { pid, key }),
        (slot.clone(), key.clone()).prop_map(|(slot, key)| Op::FinishSetup { slot, key }),
        slot.clone().prop_map(|slot| Op::Return { slot }),
        slot.clone().prop_map(|slot| Op::Kill { slot }),
        (pid.clone(), key).prop_map(|(pid, key)| Op::Evict { pid, key }),
        (slot.clone(), any::<bool>()).prop_map(|(slot, keep)| Op::ServiceCheck { slot, keep }),
        pid.prop_map(|pid| Op::Die { pid }),
        slot.prop_map(|slot| Op::Stale { slot }),
    ]
}

/// What the model believes about one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Model {
    state: SlotState,
    owner: i32,
    generation: u32,
    key: Option<u8>,
}

fn names(key: u8) -> (PackedName, PackedName) {
    (PackedName::new(&format!("user{key}")), PackedName::new("db"))
}

fn check(table: &SlotTable<'_>, model: &[Model]) -> Result<(), TestCaseError> {
    let counts = table.counts();
    prop_assert_eq!(counts.by_state.iter().sum::<u32>() as usize, SLOTS);
    prop_assert_eq!(counts.total() as usize, model.iter().filter(|m| m.state != SlotState::NotInit).count());
    for (i, m) in model.iter().enumerate() {
        let w = table.get(SlotId(i as u32)).expect("slot").load();
        prop_assert_eq!(w.state, m.state, "slot {}", i);
        prop_assert_eq!(w.owner, m.owner, "slot {} owner", i);
        prop_assert_eq!(w.generation.0, m.generation, "slot {} generation", i);
        if w.state.is_claimed() {
            prop_assert!(w.owner != 0, "claimed slot {} without owner", i);
        }
    }
    Ok(())
}

/// First slot (in scan order) the model says a claim of `state` would take.
fn first(model: &[Model], want: impl Fn(&Model) -> bool) -> Option<usize> {
    model.iter().position(want)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_transitions_keep_the_table_and_model_in_step(ops in proptest::collection::vec(op(), 1..80)) {
        let slots: Vec<Slot> = (0..SLOTS).map(|_| Slot::default()).collect();
        let table = SlotTable::new(&slots);
        let mut model = [Model { state: SlotState::NotInit, owner: 0, generation: 0, key: None }; SLOTS];
        let mut old_words: Vec<(usize, Word)> = Vec::new();

        for op in ops {
            match op {
                Op::ClaimEmpty { pid } => {
                    let expected = first(&model, |m| m.state == SlotState::NotInit);
                    let got = table.claim_empty(pid).map(|c| c.id.0 as usize);
                    prop_assert_eq!(got, expected);
                    if let Some(i) = got {
                        model[i] = Model { state: SlotState::Init, owner: pid, generation: (model[i].generation + 1) & 0xff_ffff, key: None };
                    }
                }
                Op::ClaimReusable { pid, key } => {
                    let (u, d) = names(key);
                    let expected = first(&model, |m| m.state == SlotState::Free && m.key == Some(key));
                    let got = table.claim_reusable(None, &u, &d, TRUST, 0, pid).map(|c| c.id.0 as usize);
                    prop_assert_eq!(got, expected);
                    if let Some(i) = got {
                        model[i].state = SlotState::InUse;
                        model[i].owner = pid;
                    }
                }
                Op::FinishSetup { slot, key } => {
                    if model[slot].state == SlotState::Init {
                        let s = table.get(SlotId(slot as u32)).expect("slot");
                        let (u, d) = names(key);
                        s.set_identity(&u, &d, 0, 1);
                        s.set_backend(AuthKind::Trust, 1, 1);
                        let owner = model[slot].owner;
                        table.transition(SlotId(slot as u32), s.load(), SlotState::InUse, owner).expect("owner finishes set-up");
                        model[slot].state = SlotState::InUse;
                        model[slot].key = Some(key);
                    }
                }
                Op::Return { slot } => {
                    let w = table.get(SlotId(slot as u32)).expect("slot").load();
                    if w.state == SlotState::InUse {
                        table.transition(SlotId(slot as u32), w, SlotState::Free, w.owner).expect("owner returns");
                        model[slot].state = SlotState::Free;
                    } else if w.state == SlotState::NotInit || w.state == SlotState::Remove {
                        prop_assert!(table.transition(SlotId(slot as u32), w, SlotState::Free, w.owner).is_err());
                    }
                }
                Op::Kill { slot } => {
                    let id = SlotId(slot as u32);
                    let w = table.get(id).expect("slot").load();
                    if w.state.is_claimed() && w.state != SlotState::Remove {
                        let removed = table.transition(id, w, SlotState::Remove, w.owner).expect("owner removes");
                        table.transition(id, removed, SlotState::NotInit, w.owner).expect("owner frees");
                        model[slot] = Model { state: SlotState::NotInit, owner: w.owner, generation: model[slot].generation, key: None };
                    }
                }
                Op::Evict { pid, key } => {
                    let (u, d) = names(key);
                    let got = table.claim_evictable(&u, &d, TRUST, pid);
                    let candidates: Vec<usize> = (0..SLOTS)
                        .filter(|&i| model[i].state == SlotState::Free && model[i].key != Some(key))
                        .collect();
                    prop_assert_eq!(got.is_some(), !candidates.is_empty());
                    if let Some(c) = got {
                        let i = c.id.0 as usize;
                        prop_assert!(candidates.contains(&i));
                        model[i].state = SlotState::Remove;
                        model[i].owner = pid;
                    }
                }
                Op::ServiceCheck { slot, keep } => {
                    let id = SlotId(slot as u32);
                    let w = table.get(id).expect("slot").load();
                    let claimed = table.transition(id, w, SlotState::IdleCheck, SERVICE);
                    prop_assert_eq!(claimed.is_ok(), model[slot].state == SlotState::Free);
                    if let Ok(c) = claimed {
                        if keep {
                            table.transition(id, c, SlotState::Free, SERVICE).expect("service puts back");
                            model[slot].state = SlotState::Free;
                        } else {
                            let r = table.transition(id, c, SlotState::Remove, SERVICE).expect("service removes");
                            table.transition(id, r, SlotState::NotInit, SERVICE).expect("service frees");
                            model[slot].state = SlotState::NotInit;
                            model[slot].key = None;
                        }
                        model[slot].owner = SERVICE;
                    }
                }
                Op::Die { pid } => {
                    let claimed = table.claimed_by(pid);
                    let expected: Vec<usize> = (0..SLOTS).filter(|&i| model[i].owner == pid && model[i].state.is_claimed()).collect();
                    prop_assert_eq!(claimed.iter().map(|(id, _)| id.0 as usize).collect::<Vec<_>>(), expected);
                    for (id, w) in claimed {
                        let r = if w.state == SlotState::Remove { w } else {
                            table.transition(id, w, SlotState::Remove, SUPERVISOR).expect("supervisor reclaims")
                        };
                        table.transition(id, r, SlotState::NotInit, SUPERVISOR).expect("supervisor frees");
                        let i = id.0 as usize;
                        model[i] = Model { state: SlotState::NotInit, owner: SUPERVISOR, generation: model[i].generation, key: None };
                    }
                }
                Op::Stale { slot } => {
                    // A word read long ago only wins if nothing changed since.
                    if let Some((_, old)) = old_words.iter().rev().find(|(i, _)| *i == slot).copied() {
                        let id = SlotId(slot as u32);
                        let now = table.get(id).expect("slot").load();
                        if old != now && old.state.can_become(SlotState::Remove) {
                            prop_assert!(table.transition(id, old, SlotState::Remove, 77).is_err());
                        }
                    }
                }
            }
            for i in 0..SLOTS {
                old_words.push((i, table.get(SlotId(i as u32)).expect("slot").load()));
            }
            check(&table, &model)?;
        }
    }
}

#[test]
fn concurrent_claims_never_share_a_slot() {
    let slots: Vec<Slot> = (0..3).map(|_| Slot::default()).collect();
    let held: Vec<AtomicBool> = (0..3).map(|_| AtomicBool::new(false)).collect();
    let (u, d) = names(0);
    std::thread::scope(|scope| {
        for t in 0..6 {
            let (slots, held) = (&slots, &held);
            scope.spawn(move || {
                let table = SlotTable::new(slots);
                let pid = 100 + t;
                for _ in 0..20_000 {
                    let claim = table.claim_reusable(None, &u, &d, TRUST, 0, pid).or_else(|| table.claim_empty(pid));
                    let Some(c) = claim else { continue };
                    let i = c.id.0 as usize;
                    assert!(!held[i].swap(true, Ordering::AcqRel), "slot {i} held twice");
                    let mut w = c.word;
                    if w.state == SlotState::Init {
                        let s = table.get(c.id).expect("slot");
                        s.set_identity(&u, &d, 0, 0);
                        s.set_backend(AuthKind::Trust, 1, 1);
                        w = table.transition(c.id, w, SlotState::InUse, pid).expect("set-up");
                    }
                    held[i].store(false, Ordering::Release);
                    if t % 3 == 0 {
                        let r = table.transition(c.id, w, SlotState::Remove, pid).expect("remove");
                        table.transition(c.id, r, SlotState::NotInit, pid).expect("free");
                    } else {
                        table.transition(c.id, w, SlotState::Free, pid).expect("return");
                    }
                }
            });
        }
    });
    let table = SlotTable::new(&slots);
    assert_eq!(table.counts().get(SlotState::InUse), 0);
}
