//! Tests of the client table.

use super::*;

fn table(n: usize) -> (Vec<ClientEntry>, AtomicU32) {
    ((0..n).map(|_| ClientEntry::default()).collect(), AtomicU32::new(0))
}

#[test]
fn a_wake_up_reaches_a_sleeper_and_one_not_yet_asleep() {
    let (entries, done) = table(2);
    let t = ClientTable::new(&entries, &done);
    // Nobody sleeps: the count moves on (no futex call), and a waiter
    // holding the old count does not sleep at all.
    let seen = t.wake_seq(0);
    t.wake_waiter(0);
    assert_ne!(t.wake_seq(0), seen);
    assert!(t.wait_woken(0, seen, Duration::from_secs(30)), "returns at once");
    // A slice passes with no wake-up: false, and the flag it left
    // behind neither shows in the count nor keeps the next one asleep.
    let seen = t.wake_seq(0);
    assert!(!t.wait_woken(0, seen, Duration::from_millis(20)));
    assert_eq!(t.wake_seq(0), seen);
    // A sleeper is woken well before its slice is over.
    let began = Instant::now();
    std::thread::scope(|scope| {
        let sleeper = scope.spawn(|| t.wait_woken(0, seen, Duration::from_secs(30)));
        while entries[0].wake.load(Ordering::SeqCst) & SLEEPING == 0 {
            std::thread::yield_now();
        }
        t.wake_waiter(0);
        assert!(sleeper.join().expect("sleeper"), "woken, not timed out");
    });
    assert!(began.elapsed() < Duration::from_secs(10), "the futex was woken");
    assert_eq!(entries[0].wake.load(Ordering::SeqCst) & SLEEPING, 0, "the waker took the flag away");
    // The count wraps below the flag.
    assert_eq!(next_wake(SLEEPING - 1), 0);
    assert_eq!(next_wake(SLEEPING | 5), 6);
}

#[test]
fn binding_round_trip() {
    for b in [
        Binding::UNBOUND,
        Binding { slot: Some((SlotId(0), Generation(1))), cancels: 0 },
        Binding { slot: Some((SlotId(9999), Generation(0xff_ffff))), cancels: 255 },
    ] {
        assert_eq!(Binding::decode(b.encode()), b);
    }
}

#[test]
fn cancel_reaches_only_the_current_binding() {
    let (entries, done) = table(4);
    let t = ClientTable::new(&entries, &done);
    let e = t.claim(100).expect("entry");
    assert_eq!(t.claim(101), Some(e + 1));
    t.begin_client(e, 7);
    assert_eq!(t.cancel_begin(100, 7), None, "nothing running: dropped");
    t.bind(e, SlotId(3), Generation(2));
    assert_eq!(t.cancel_begin(100, 8), None, "wrong secret");
    assert_eq!(t.cancel_begin(101, 7), None, "wrong pid");
    let target = t.cancel_begin(100, 7).expect("counted in");
    assert_eq!((target.slot, target.generation), (SlotId(3), Generation(2)));
    assert_eq!(t.unbind(e, Duration::from_millis(20)), Err(UnbindError::CancelInFlight));
    t.cancel_done(target);
    assert_eq!(t.unbind(e, Duration::from_millis(20)), Ok(()));
    // A former client's key does not reach the next client.
    t.end_client(e);
    t.begin_client(e, 9);
    t.bind(e, SlotId(1), Generation(1));
    assert_eq!(t.cancel_begin(100, 7), None);
    assert!(t.cancel_begin(100, 9).is_some());
    t.release(100);
    assert_eq!(t.binding(e), Some(Binding::UNBOUND));
    assert_eq!(t.claim(102), Some(e), "a released entry is reused");
}

/// Pid 5's entry with a client (secret 1) bound to slot 0 of generation
/// 1, and a cancel counted in for it.
fn bound_with_a_cancel(t: &ClientTable<'_>) -> (usize, CancelTarget) {
    let e = t.claim(5).expect("entry");
    t.begin_client(e, 1);
    t.bind(e, SlotId(0), Generation(1));
    (e, t.cancel_begin(5, 1).expect("counted in"))
}

#[test]
fn unbind_waits_for_a_cancel_in_another_thread() {
    let (entries, done) = table(1);
    let t = ClientTable::new(&entries, &done);
    let (e, target) = bound_with_a_cancel(&t);
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(30));
            t.cancel_done(target);
        });
        let start = Instant::now();
        assert_eq!(t.unbind(e, Duration::from_secs(5)), Ok(()));
        assert!(start.elapsed() >= Duration::from_millis(25), "it waited for the cancel");
    });
}

#[test]
fn a_stale_done_after_force_unbind_changes_nothing() {
    let (entries, done) = table(1);
    let t = ClientTable::new(&entries, &done);
    let (e, target) = bound_with_a_cancel(&t);
    t.force_unbind(e);
    t.bind(e, SlotId(0), Generation(2));
    t.cancel_done(target);
    assert_eq!(t.binding(e), Some(Binding { slot: Some((SlotId(0), Generation(2))), cancels: 0 }));
}

#[test]
fn a_cancel_for_a_client_without_a_connection_is_counted_and_wakes_it() {
    let (entries, done) = table(4);
    let clients = ClientTable::new(&entries, &done);
    let entry = clients.claim(42).expect("entry");
    clients.begin_client(entry, 7);
    let before = clients.cancel_asks(entry);
    let seen = clients.wake_seq(entry);
    assert!(!clients.cancel_unbound(42, 8), "wrong secret");
    assert!(!clients.cancel_unbound(43, 7), "wrong pid");
    assert_eq!(clients.cancel_asks(entry), before);
    assert!(clients.cancel_unbound(42, 7));
    assert_ne!(clients.cancel_asks(entry), before);
    assert_ne!(clients.wake_seq(entry), seen, "the waiter was woken");
    clients.end_client(entry);
    assert!(!clients.cancel_unbound(42, 7), "the client left");
}
