//! Property tests of the pool policy (src/pool): over random slot tables
//! and times, each decision picks exactly the slots its rule describes,
//! never a slot in use, and the idle timeout never takes a limit entry
//! below its floor.

use pgagroal::pool::{self, SlotView};
use pgagroal::shmem::{Generation, SlotId, SlotState, Word};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const NOW: u64 = 1_000_000;

fn slots() -> impl Strategy<Value = Vec<SlotView>> {
    let one = (0..SlotState::ALL.len(), 0..NOW, 0..NOW, prop::option::of(0..3usize));
    prop::collection::vec(one, 0..24).prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (state, created_ms, used, rule))| {
                let state = SlotState::ALL[state];
                SlotView {
                    id: SlotId(i as u32),
                    word: Word { state, generation: Generation(1), owner: 7 },
                    created_ms,
                    last_used_ms: used.max(created_ms),
                    // A NOTINIT slot counts against no rule.
                    rule: rule.filter(|_| state != SlotState::NotInit),
                }
            })
            .collect()
    })
}

fn ids(v: &[SlotView]) -> Vec<u32> {
    v.iter().map(|s| s.id.0).collect()
}

proptest! {
    #[test]
    fn idle_timeout_closes_only_idle_free_slots_and_keeps_floors(
        slots in slots(),
        timeout_ms in 0..NOW,
        floors in prop::collection::vec(0..4u32, 3),
    ) {
        let timeout = Duration::from_millis(timeout_ms);
        let floor = |rule: usize| floors[rule];
        let chosen = pool::idle_expired(&slots, NOW, timeout, floor);
        let unique: HashSet<u32> = ids(&chosen).into_iter().collect();
        prop_assert_eq!(unique.len(), chosen.len(), "no slot twice");
        if timeout.is_zero() {
            prop_assert!(chosen.is_empty());
        }
        for s in &chosen {
            prop_assert_eq!(s.word.state, SlotState::Free);
            prop_assert!(NOW - s.last_used_ms >= timeout_ms);
        }
        // Longest idle first.
        prop_assert!(chosen.windows(2).all(|w| w[0].last_used_ms <= w[1].last_used_ms));
        let mut count: HashMap<usize, u32> = HashMap::new();
        for s in &slots {
            if let Some(rule) = s.rule {
                *count.entry(rule).or_default() += 1;
            }
        }
        for (rule, before) in &count {
            let closed = chosen.iter().filter(|s| s.rule == Some(*rule)).count() as u32;
            let eligible = slots
                .iter()
                .filter(|s| s.rule == Some(*rule) && s.word.state == SlotState::Free)
                .filter(|s| !timeout.is_zero() && NOW - s.last_used_ms >= timeout_ms)
                .count() as u32;
            // As many as may go: all eligible ones, or down to the floor.
            prop_assert_eq!(closed, eligible.min(before.saturating_sub(floor(*rule))));
        }
        // Slots under no rule: every eligible one.
        let free_agents = slots
            .iter()
            .filter(|s| s.rule.is_none() && s.word.state == SlotState::Free)
            .filter(|s| !timeout.is_zero() && NOW - s.last_used_ms >= timeout_ms)
            .count();
        prop_assert_eq!(chosen.iter().filter(|s| s.rule.is_none()).count(), free_agents);
    }

    #[test]
    fn max_age_and_validation_pick_exactly_their_slots(slots in slots(), age_ms in 0..NOW, interval_ms in 0..NOW) {
        let age = Duration::from_millis(age_ms);
        let old: HashSet<u32> = ids(&pool::aged_out(&slots, NOW, age)).into_iter().collect();
        let due: HashSet<u32> =
            ids(&pool::due_for_validation(&slots, NOW, Duration::from_millis(interval_ms))).into_iter().collect();
        for s in &slots {
            let free = s.word.state == SlotState::Free;
            prop_assert_eq!(old.contains(&s.id.0), free && age_ms > 0 && NOW - s.created_ms >= age_ms);
            prop_assert_eq!(pool::too_old(s.created_ms, NOW, age), age_ms > 0 && NOW - s.created_ms >= age_ms);
            prop_assert_eq!(due.contains(&s.id.0), free && NOW - s.last_used_ms >= interval_ms);
        }
    }

    #[test]
    fn deficits_are_what_each_rule_lacks(slots in slots(), targets in prop::collection::vec(0..6u32, 3)) {
        let targets: Vec<(usize, u32)> = targets.into_iter().enumerate().collect();
        let missing: HashMap<usize, u32> = pool::deficits(&slots, &targets).into_iter().collect();
        for (rule, target) in targets {
            let have = slots.iter().filter(|s| s.rule == Some(rule)).count() as u32;
            match missing.get(&rule) {
                Some(&m) => prop_assert!(have < target && m == target - have),
                None => prop_assert!(have >= target),
            }
        }
    }
}
