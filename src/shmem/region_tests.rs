use super::*;
use crate::shmem::slot::SlotState;

#[test]
fn idle_list_takes_each_worker_once() {
    let region = Region::create(1, 0).expect("region");
    let h = region.header();
    assert!(h.offer_idle(10) && h.offer_idle(11));
    assert_eq!(h.idle_count(), 2);
    h.forget_idle(10);
    assert!(!h.is_idle(10) && h.is_idle(11));
    assert_eq!(h.take_idle(), Some(11));
    assert_eq!(h.take_idle(), None);
    for pid in 1..=IDLE_WORKERS as i32 {
        assert!(h.offer_idle(pid));
    }
    assert!(!h.offer_idle(9999), "the list is bounded");
}

#[test]
fn rule_locks_exclude_and_dead_holders_are_replaced() {
    let region = Region::create(1, 0).expect("region");
    let h = region.header();
    let me = std::process::id() as i32;
    {
        let _held = h.lock_rule(3, me).expect("lock");
        assert_eq!(h.rule_locks[3].load(Ordering::Acquire), me);
    }
    assert_eq!(h.rule_locks[3].load(Ordering::Acquire), 0, "released on drop");
    assert!(h.lock_rule(MAX_RULES, me).is_none());
    // A pid that cannot exist (above pid_max) holds the lock: taken over.
    h.rule_locks[5].store(i32::MAX, Ordering::Release);
    drop(h.lock_rule(5, me).expect("taken over"));
    h.rule_locks[6].store(77, Ordering::Release);
    h.release_rule_locks(77);
    assert_eq!(h.rule_locks[6].load(Ordering::Acquire), 0);
}

#[test]
fn disabled_databases() {
    let region = Region::create(1, 0).expect("region");
    let h = region.header();
    let (a, b) = (PackedName::new("a"), PackedName::new("b"));
    assert!(!h.is_disabled(&a));
    assert!(h.disable(Some(&a)) && h.disable(Some(&a)));
    assert!(h.is_disabled(&a) && !h.is_disabled(&b));
    h.enable(Some(&a));
    assert!(!h.is_disabled(&a));
    assert!(h.disable(None));
    assert!(h.is_disabled(&b));
    assert!(h.disable(Some(&a)));
    assert!(h.is_disabled(&a) && !h.is_disabled(&b), "naming a database ends 'all'");
    assert!(h.disable(None));
    h.enable(None);
    assert!(!h.is_disabled(&b) && !h.is_disabled(&a));
    for i in 0..MAX_DISABLED {
        assert!(h.disable(Some(&PackedName::new(&format!("db{i}")))));
    }
    assert!(!h.disable(Some(&b)), "the list is bounded");
}

#[test]
fn region_is_shared_across_fork() {
    let region = Region::create(4, 3).expect("region");
    assert_eq!(region.header().magic, MAGIC);
    let slots = region.slots();
    assert_eq!(slots.len(), 4);
    // SAFETY: the child only touches atomics in the shared mapping and
    // leaves with _exit, running no destructors or test-harness code.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let ok = slots.claim_empty(std::process::id() as i32).is_some()
            && region.statements(3).is_some_and(|t| t.insert(42));
        // SAFETY: _exit is always safe to call in a forked child.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: pid is our child; status is a valid out-pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(libc::WEXITSTATUS(status), 0);
    assert_eq!(slots.counts().get(SlotState::Init), 1, "the child's claim is visible to the parent");
    let tables: Vec<_> = (0..4).map(|i| region.statements(i).expect("a table per slot")).collect();
    assert!(tables[3].contains(42) && !tables[2].contains(42), "each slot has its own table, shared");
    assert_eq!(tables[0].capacity(), 3);
    assert!(region.statements(4).is_none());
}
