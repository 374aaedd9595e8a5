//! Pool policy: which server connections the periodic services act on,
//! decided from a snapshot of the slot table and the time, with no
//! processes, sockets or clocks involved. The services (actors/service)
//! claim each chosen slot by compare-and-swap from the word seen here, so
//! a slot that changed hands since the snapshot is simply not claimed.

use crate::config::MainConfig;
use crate::msg::service::ServiceKind;
use crate::shmem::{SlotId, SlotState, SlotTable, Word};
use std::time::Duration;

/// How long a service sleeps between passes. Idle timeout and max
/// connection age look twice per period (so a connection outlives its
/// limit by at most half of it), at least every second and at most ten
/// times a second; validation runs every `background_interval`; maintenance
/// looks every second, and waits five after a connection could not be
/// opened (`failed`), so an unreachable server costs a warning every few
/// seconds, not a busy loop.
pub fn next_pass(kind: ServiceKind, main: &MainConfig, failed: bool) -> Duration {
    let half = |d: Duration| (d / 2).clamp(Duration::from_millis(100), Duration::from_secs(1));
    match kind {
        ServiceKind::Idle => half(main.idle_timeout),
        ServiceKind::MaxAge => half(main.max_connection_age),
        ServiceKind::Validation => main.background_interval.max(Duration::from_secs(1)),
        ServiceKind::Maintenance if failed => Duration::from_secs(5),
        ServiceKind::Maintenance => Duration::from_secs(1),
    }
}

/// What the policy looks at in one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotView {
    pub id: SlotId,
    pub word: Word,
    /// Milliseconds since the epoch when the connection was made.
    pub created_ms: u64,
    /// Milliseconds since the epoch when the slot last changed hands.
    pub last_used_ms: u64,
    /// The limit rule the connection counts against.
    pub rule: Option<usize>,
}

impl SlotView {
    /// A snapshot of every slot.
    pub fn snapshot(table: &SlotTable<'_>) -> Vec<SlotView> {
        table
            .iter()
            .map(|(id, slot)| {
                let word = slot.load();
                SlotView {
                    id,
                    word,
                    created_ms: slot.created_ms(),
                    last_used_ms: slot.last_used_ms(),
                    rule: slot.rule(),
                }
            })
            .collect()
    }

    fn idle_for(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.last_used_ms)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether a connection made at `created_ms` has outlived
/// `max_connection_age` (zero: connections never get too old). Also asked
/// when a connection is given back.
pub fn too_old(created_ms: u64, now_ms: u64, max_age: Duration) -> bool {
    !max_age.is_zero() && now_ms.saturating_sub(created_ms) >= millis(max_age)
}

/// FREE connections idle for at least `idle_timeout`, longest idle first,
/// leaving each limit rule at least `floor(rule)` connections (its
/// `min_size`), so closing idle connections never makes maintenance open
/// new ones straight away. Zero disables the timeout.
pub fn idle_expired(
    slots: &[SlotView],
    now_ms: u64,
    idle_timeout: Duration,
    floor: impl Fn(usize) -> u32,
) -> Vec<SlotView> {
    if idle_timeout.is_zero() {
        return Vec::new();
    }
    let limit = millis(idle_timeout);
    let mut expired: Vec<SlotView> =
        slots.iter().filter(|s| s.word.state == SlotState::Free && s.idle_for(now_ms) >= limit).copied().collect();
    expired.sort_by_key(|s| (std::cmp::Reverse(s.idle_for(now_ms)), s.id));
    let mut counts = std::collections::HashMap::<usize, u32>::new();
    for s in slots.iter().filter(|s| s.word.state != SlotState::NotInit) {
        if let Some(rule) = s.rule {
            *counts.entry(rule).or_default() += 1;
        }
    }
    expired.retain(|s| match s.rule {
        None => true,
        Some(rule) => {
            let count = counts.entry(rule).or_default();
            if *count > floor(rule) {
                *count -= 1;
                true
            } else {
                false
            }
        }
    });
    expired
}

/// FREE connections older than `max_connection_age`, oldest first.
pub fn aged_out(slots: &[SlotView], now_ms: u64, max_age: Duration) -> Vec<SlotView> {
    let mut old: Vec<SlotView> = slots
        .iter()
        .filter(|s| s.word.state == SlotState::Free && too_old(s.created_ms, now_ms, max_age))
        .copied()
        .collect();
    old.sort_by_key(|s| (s.created_ms, s.id));
    old
}

/// FREE connections background validation checks: those not used for at
/// least `interval` (one used since was seen working by its client).
pub fn due_for_validation(slots: &[SlotView], now_ms: u64, interval: Duration) -> Vec<SlotView> {
    let limit = millis(interval);
    slots.iter().filter(|s| s.word.state == SlotState::Free && s.idle_for(now_ms) >= limit).copied().collect()
}

/// How many connections each rule lacks to reach its target (`initial_size`
/// at start, `min_size` later): `(rule, missing)` for each rule below it.
pub fn deficits(slots: &[SlotView], targets: &[(usize, u32)]) -> Vec<(usize, u32)> {
    targets
        .iter()
        .filter_map(|&(rule, target)| {
            let have =
                slots.iter().filter(|s| s.rule == Some(rule) && s.word.state != SlotState::NotInit).count() as u32;
            (have < target).then(|| (rule, target - have))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shmem::Generation;

    fn view(id: u32, state: SlotState, created_ms: u64, last_used_ms: u64, rule: Option<usize>) -> SlotView {
        SlotView {
            id: SlotId(id),
            word: Word { state, generation: Generation(1), owner: 10 },
            created_ms,
            last_used_ms,
            rule,
        }
    }

    #[test]
    fn idle_timeout_picks_free_connections_idle_long_enough() {
        let slots = [
            view(0, SlotState::Free, 0, 1_000, None),
            view(1, SlotState::Free, 0, 9_500, None),
            view(2, SlotState::InUse, 0, 0, None),
            view(3, SlotState::Free, 0, 500, None),
        ];
        let ids: Vec<u32> =
            idle_expired(&slots, 10_000, Duration::from_secs(5), |_| 0).iter().map(|s| s.id.0).collect();
        assert_eq!(ids, vec![3, 0]);
        assert!(idle_expired(&slots, 10_000, Duration::ZERO, |_| 0).is_empty());
    }

    #[test]
    fn idle_timeout_keeps_min_size() {
        let slots = [
            view(0, SlotState::Free, 0, 0, Some(1)),
            view(1, SlotState::Free, 0, 0, Some(1)),
            view(2, SlotState::InUse, 0, 0, Some(1)),
            view(3, SlotState::Free, 0, 0, Some(2)),
        ];
        let ids: Vec<u32> = idle_expired(&slots, 10_000, Duration::from_secs(1), |rule| if rule == 1 { 2 } else { 0 })
            .iter()
            .map(|s| s.id.0)
            .collect();
        assert_eq!(ids, vec![0, 3]);
    }

    #[test]
    fn max_age_picks_old_free_connections() {
        let slots = [
            view(0, SlotState::Free, 1_000, 9_000, None),
            view(1, SlotState::InUse, 0, 0, None),
            view(2, SlotState::Free, 8_000, 9_000, None),
        ];
        let ids: Vec<u32> = aged_out(&slots, 10_000, Duration::from_secs(5)).iter().map(|s| s.id.0).collect();
        assert_eq!(ids, vec![0]);
        assert!(too_old(0, 5_000, Duration::from_secs(5)));
        assert!(!too_old(1, 5_000, Duration::from_secs(5)));
        assert!(!too_old(0, u64::MAX, Duration::ZERO));
    }

    #[test]
    fn validation_and_deficits() {
        let slots = [
            view(0, SlotState::Free, 0, 9_900, Some(0)),
            view(1, SlotState::Free, 0, 1_000, Some(0)),
            view(2, SlotState::NotInit, 0, 0, Some(1)),
        ];
        let due: Vec<u32> = due_for_validation(&slots, 10_000, Duration::from_secs(1)).iter().map(|s| s.id.0).collect();
        assert_eq!(due, vec![1]);
        assert_eq!(deficits(&slots, &[(0, 2), (1, 3), (2, 0)]), vec![(1, 3)]);
        assert_eq!(deficits(&slots, &[(0, 5)]), vec![(0, 3)]);
    }
}
