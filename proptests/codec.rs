//! Property tests of the wire codec: encoders and parsers agree, parsers
//! never panic on arbitrary bytes, and the stream tracker reaches the same
//! conclusions however a stream is cut into chunks.

use pgagroal::protocol::backend::{self, BackendMessage};
use pgagroal::protocol::startup::{self, StartupPacket};
use pgagroal::protocol::tracker::{Direction, Tracker};
use pgagroal::protocol::{encode, frame};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,20}"
}

/// One frontend message as bytes, and whether it produces a ReadyForQuery.
fn frontend_message() -> impl Strategy<Value = (Vec<u8>, bool)> {
    prop_oneof![
        "[ -~]{0,300}".prop_map(|sql| {
            let mut v = Vec::new();
            encode::append_query(&mut v, &sql);
            (v, true)
        }),
        Just((vec![b'S', 0, 0, 0, 4], true)),
        Just((vec![b'H', 0, 0, 0, 4], false)),
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(|body| {
            let mut v = vec![b'd'];
            v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
            v.extend_from_slice(&body);
            (v, false)
        }),
        proptest::collection::vec(any::<u8>(), 0..50).prop_map(|body| {
            let mut v = vec![b'P'];
            v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
            v.extend_from_slice(&body);
            (v, false)
        }),
    ]
}

fn cuts(len: usize) -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0..=len, 0..8).prop_map(move |mut c| {
        c.push(0);
        c.push(len);
        c.sort_unstable();
        c.dedup();
        c
    })
}

proptest! {
    #[test]
    fn startup_messages_round_trip(user in name(), db in name(), app in "[ -~]{0,30}") {
        let packet = encode::startup_message(&[("user", &user), ("database", &db), ("application_name", &app)]);
        let (parsed, used) = startup::parse(&packet).expect("valid").expect("complete");
        prop_assert_eq!(used, packet.len());
        let StartupPacket::Startup(s) = parsed else { return Err(TestCaseError::fail("not a startup")) };
        prop_assert_eq!(s.user, user);
        prop_assert_eq!(s.database, db);
        prop_assert_eq!(s.application_name, Some(app));
        // Every strict prefix is "incomplete", never an error.
        for cut in 0..packet.len() {
            prop_assert!(matches!(startup::parse(&packet[..cut]), Ok(None)));
        }
    }

    #[test]
    fn startup_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = startup::parse(&bytes);
    }

    #[test]
    fn backend_parser_never_panics(tag in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        bytes.extend_from_slice(&body);
        let f = frame::split(&bytes, 1024).expect("length is valid").expect("whole");
        let _ = backend::parse(&f);
    }

    #[test]
    fn error_responses_round_trip(code in "[0-9A-Z]{5}", message in "[ -~]{0,200}") {
        let bytes = encode::error_response("ERROR", &code, &message);
        let f = frame::split(&bytes, 1 << 16).expect("valid").expect("whole");
        prop_assert_eq!(f.len(), bytes.len());
        let BackendMessage::ErrorResponse(e) = backend::parse(&f).expect("parses") else {
            return Err(TestCaseError::fail("not an error"));
        };
        prop_assert_eq!(e.code, code);
        prop_assert_eq!(e.message, message);
    }

    #[test]
    fn tracker_is_independent_of_chunking(
        messages in proptest::collection::vec(frontend_message(), 0..20),
        terminate in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut stream = Vec::new();
        // Messages answered by a ReadyForQuery, except Syncs that follow an
        // Execute and precede copy data: those reach the server in copy-in
        // mode, which ignores them.
        let mut syncs = 0u64;
        let mut since_execute = 0u64;
        for (bytes, sync) in &messages {
            stream.extend_from_slice(bytes);
            match bytes[0] {
                b'E' | b'Q' | b'F' => since_execute = 0,
                b'd' | b'c' | b'f' => {
                    syncs -= since_execute;
                    since_execute = 0;
                }
                b'S' => since_execute += 1,
                _ => {}
            }
            syncs += u64::from(*sync);
        }
        let terminate_at = stream.len();
        if terminate {
            stream.extend_from_slice(&encode::terminate());
            stream.extend_from_slice(b"trailing bytes after terminate");
        }
        // Cut at pseudo-random points derived from the seed.
        let mut cuts = vec![0, stream.len()];
        let mut x = seed | 1;
        for _ in 0..6 {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            cuts.push((x % (stream.len() as u64 + 1)) as usize);
        }
        cuts.sort_unstable();
        cuts.dedup();
        let mut t = Tracker::new(Direction::Frontend);
        let mut found = None;
        for w in cuts.windows(2) {
            if let Some(off) = t.scan(&stream[w[0]..w[1]]).expect("well-formed stream") {
                found = Some(w[0] + off);
                break;
            }
        }
        prop_assert_eq!(t.sync_points, syncs);
        if terminate {
            prop_assert_eq!(found, Some(terminate_at));
        } else {
            prop_assert_eq!(found, None);
            prop_assert!(t.at_boundary());
        }
    }

    #[test]
    fn backend_tracker_follows_ready_for_query(statuses in proptest::collection::vec(prop_oneof![Just(b'I'), Just(b'T'), Just(b'E')], 1..10), cut in cuts(200)) {
        let mut stream = Vec::new();
        for s in &statuses {
            stream.extend_from_slice(&encode::error_response("NOTICE", "00000", "x"));
            stream.extend_from_slice(&encode::ready_for_query(*s));
        }
        let mut t = Tracker::new(Direction::Backend);
        let mut last = 0;
        for c in cut.iter().map(|&c| c.min(stream.len())).chain(std::iter::once(stream.len())) {
            if c > last {
                t.scan(&stream[last..c]).expect("valid");
                last = c;
            }
        }
        prop_assert_eq!(t.ready_count, statuses.len() as u64);
        prop_assert_eq!(Some(t.tx_status), statuses.last().copied());
    }

    #[test]
    fn tracker_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..10)) {
        let mut f = Tracker::new(Direction::Frontend);
        let mut b = Tracker::new(Direction::Backend);
        for c in &chunks {
            if f.scan(c).is_err() { break; }
        }
        for c in &chunks {
            if b.scan(c).is_err() { break; }
        }
    }

    #[test]
    fn session_change_detection_never_panics_and_sees_a_leading_set(
        text in proptest::collection::vec(any::<u8>(), 0..200),
        name in "[a-z_]{1,12}",
    ) {
        let _ = pgagroal::protocol::sql::changes_session(&text);
        let set = format!("SET {name} = 1");
        prop_assert!(pgagroal::protocol::sql::changes_session(set.as_bytes()) || ["local", "transaction", "constraints"].contains(&name.as_str()));
        let quoted = format!("SELECT '{}'", set.replace('\'', "''"));
        prop_assert!(!pgagroal::protocol::sql::changes_session(quoted.as_bytes()) || name.contains("set_config"));
    }

    #[test]
    fn startup_settings_parse_without_panics_and_hash_stably(
        pairs in proptest::collection::vec(("[A-Za-z_.]{1,10}", "[ -~]{0,20}"), 0..8),
        options in "[ -~]{0,40}",
    ) {
        // options first: its settings are overridden by later parameters
        // of the same name in either order below.
        let mut params: Vec<(String, String)> = vec![("options".into(), options)];
        params.extend(pairs.iter().cloned());
        if let Ok(a) = pgagroal::protocol::params::SessionParams::from_startup(&params) {
            let mut reversed = params.clone();
            reversed[1..].reverse();
            // The same settings in another order (duplicates aside) hash the same.
            let unique: std::collections::HashSet<String> = pairs.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
            if unique.len() == pairs.len()
                && let Ok(b) = pgagroal::protocol::params::SessionParams::from_startup(&reversed)
            {
                prop_assert_eq!(a.hash(), b.hash());
            }
            prop_assert_ne!(a.hash(), pgagroal::protocol::params::UNKNOWN);
            let (_, count) = a.apply_queries(false);
            prop_assert!(count >= 1);
        }
    }
}
