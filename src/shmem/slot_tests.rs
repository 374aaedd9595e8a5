use super::*;

#[test]
fn word_round_trip() {
    for state in SlotState::ALL {
        let w = Word { state, generation: Generation(0xabcdef), owner: 4_194_304 };
        assert_eq!(Word::decode(w.encode()), w);
    }
    assert_eq!(Word::decode(0xff).state, SlotState::Remove);
}

#[test]
fn slot_is_cache_line_aligned() {
    assert_eq!(std::mem::align_of::<Slot>(), 64);
    assert_eq!(std::mem::size_of::<Slot>() % 64, 0);
}

#[test]
fn transitions_record_owner_and_generation() {
    let s = Slot::default();
    let w0 = s.load();
    assert_eq!(w0.state, SlotState::NotInit);
    let w1 = s.transition(w0, SlotState::Init, 10).expect("claim");
    assert_eq!((w1.generation, w1.owner), (Generation(1), 10));
    assert!(matches!(s.transition(w0, SlotState::Init, 11), Err(TransitionError::Lost { .. })));
    assert!(matches!(s.transition(w1, SlotState::NotInit, 10), Err(TransitionError::NotAllowed { .. })));
    let w2 = s.transition(w1, SlotState::InUse, 10).expect("use");
    let w3 = s.transition(w2, SlotState::Free, 10).expect("free");
    let w4 = s.transition(w3, SlotState::InUse, 12).expect("reuse");
    assert_eq!((w4.generation, w4.owner), (Generation(1), 12));
}

#[test]
fn names_pack_and_match() {
    let s = Slot::default();
    let (u, d) = (PackedName::new("alice"), PackedName::new("app"));
    s.set_identity(&u, &d, 0, 1);
    s.set_backend(AuthKind::Trust, 42, 7);
    let any = AuthKinds::of(&[AuthKind::Trust, AuthKind::Pooler]);
    assert!(s.reusable_for(&u, &d, any));
    assert!(!s.reusable_for(&u, &d, AuthKinds::of(&[AuthKind::Pooler])));
    assert!(!s.reusable_for(&PackedName::new("alicia"), &d, any));
    s.set_backend(AuthKind::PassThrough, 42, 7);
    assert!(!s.reusable_for(&u, &d, AuthKinds::of(&[AuthKind::PassThrough])), "SCRAM pass-through is never reused");
    let replay = Replay { md5_salt: [1, 2, 3, 4], digest: std::array::from_fn(|i| i as u8) };
    s.set_replay(&replay);
    assert_eq!(s.replay(), replay);
    let info = s.info();
    assert_eq!((info.user.as_str(), info.database.as_str(), info.backend_pid), ("alice", "app", 42));
    assert_eq!(PackedName::new(&"x".repeat(100)).to_string_lossy().len(), 63);
}

#[test]
fn the_query_counter_is_off_the_lines_scanners_read() {
    let line = |offset: usize| offset / 64;
    let queries = line(std::mem::offset_of!(Slot, queries));
    let read_by_scanners = [
        std::mem::offset_of!(Slot, word),
        std::mem::offset_of!(Slot, auth),
        std::mem::offset_of!(Slot, user) + NAME_BYTES - 1,
        std::mem::offset_of!(Slot, database) + NAME_BYTES - 1,
    ];
    assert!(read_by_scanners.iter().all(|&o| line(o) < queries), "{queries}");
}
