use super::*;

fn parse(text: &str, max_connections: usize) -> Result<(Limits, Vec<String>), ConfigError> {
    Limits::parse(Path::new("pgagroal_databases.conf"), text, max_connections)
}

fn ok(text: &str, max_connections: usize) -> (Limits, Vec<String>) {
    parse(text, max_connections).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str, max_connections: usize) -> String {
    match parse(text, max_connections) {
        Ok(parsed) => panic!("accepted: {parsed:?}"),
        Err(e) => e.to_string(),
    }
}

fn sizes(e: &LimitEntry) -> (u32, u32, u32) {
    (e.max_size, e.initial_size, e.min_size)
}

#[test]
fn fields_comments_and_defaults() {
    let (l, warnings) =
        ok("# DATABASE USER MAX INITIAL MIN\n\n   \nmydb alice 10 # inline\nmydb bob 5 2\nother carol 4 2 1\n", 100);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(l.entries.len(), 3);
    let e = &l.entries[0];
    assert_eq!((e.database.name(), e.user.name(), e.line), (Some("mydb"), Some("alice"), 4));
    assert_eq!(sizes(e), (10, 0, 0));
    assert_eq!(sizes(&l.entries[1]), (5, 2, 0));
    assert_eq!(sizes(&l.entries[2]), (4, 2, 1));
    assert_eq!(l.path, PathBuf::from("pgagroal_databases.conf"));
    assert!(ok("# only comments\n", 10).0.entries.is_empty());
}

#[test]
fn all_in_every_field() {
    let (l, _) = ok("ALL bob 2\nmydb All 3\napp alice all all all\n", 10);
    assert!(l.entries[0].database.is_all() && l.entries[0].user.name() == Some("bob"));
    assert!(l.entries[1].user.is_all());
    // MAX_SIZE all is what the other entries leave; INITIAL/MIN all = MAX_SIZE.
    assert_eq!(sizes(&l.entries[2]), (5, 5, 5));
    // Wherever the all entry is written.
    let (l, _) = ok("app alice all 1\nx y 3\n", 10);
    assert_eq!(sizes(&l.entries[0]), (7, 1, 0));
}

#[test]
fn bad_lines_name_their_line() {
    for (text, line, what) in [
        ("a b\n", "line 1", "3 to 5 fields"),
        ("# c\na b 1 2 3 4\n", "line 2", "found 6"),
        ("a b many\n", "line 1", "MAX_SIZE"),
        ("a b -1\n", "line 1", "MAX_SIZE"),
        ("a b 0\n", "line 1", "MAX_SIZE"),
        ("\na b 1 x\n", "line 2", "INITIAL_SIZE"),
        ("a b 2 1 lots\n", "line 1", "MIN_SIZE"),
        ("=x b 1\n", "line 1", "DATABASE"),
        ("a b 1\nx c all\ny d all\n", "line 3", "line 2 already takes"),
        ("all alice 2 2\nall all 1 1\n", "line 2", "USER"),
    ] {
        let e = err(text, 10);
        assert!(e.contains("pgagroal_databases.conf") && e.contains(line) && e.contains(what), "{text:?}: {e}");
    }
}

#[test]
fn at_most_64_entries() {
    let text: String = (0..64).map(|i| format!("db{i} u 1\n")).collect();
    assert_eq!(ok(&text, 100).0.entries.len(), 64);
    let e = err(&format!("{text}# comment\nextra u 1\n"), 100);
    assert!(e.contains("line 66") && e.contains("at most 64"), "{e}");
}

#[test]
fn aliases() {
    let (l, _) = ok("mydb=app,legacy alice 4\nmydb bob 2\nother all 2\n", 10);
    assert_eq!(l.entries[0].aliases, vec!["app", "legacy"]);
    assert_eq!(l.real_database("app"), "mydb");
    assert_eq!(l.real_database("legacy"), "mydb");
    assert_eq!(l.real_database("mydb"), "mydb");
    assert_eq!(l.real_database("unknown"), "unknown");
    // An alias is its database: every entry of that database applies to it.
    assert_eq!(l.best_match("app", "alice"), Some(0));
    assert_eq!(l.best_match("legacy", "bob"), Some(1));

    let nine = (1..=9).map(|i| format!("a{i}")).collect::<Vec<_>>().join(",");
    assert!(ok(&format!("db={} u 1\n", &nine[..nine.rfind(',').unwrap_or(0)]), 10).0.entries[0].aliases.len() == 8);
    for (text, line, what) in [
        (format!("db={nine} u 1\n"), "line 1", "at most 8 aliases"),
        ("all=x u 1\n".to_string(), "line 1", "not on all"),
        ("db=a,,b u 1\n".to_string(), "line 1", "comma-separated"),
        ("db= u 1\n".to_string(), "line 1", "comma-separated"),
        ("db=all u 1\n".to_string(), "line 1", "'all'"),
        ("db=db u 1\n".to_string(), "line 1", "'db'"),
        ("db=a,a u 1\n".to_string(), "line 1", "'a'"),
        ("db=a u 1\nother=b,a u 1\n".to_string(), "line 2", "already given on line 1"),
        ("db=a u 1\na u 1\n".to_string(), "line 1", "'a' is on line 2"),
        ("db=a u 1\nother=db u 1\n".to_string(), "line 2", "'db' is on line 1"),
    ] {
        let e = err(&text, 10);
        assert!(e.contains(line) && e.contains(what) && e.contains("DATABASE"), "{text:?}: {e}");
    }
}

#[test]
fn best_match_order() {
    let l = ok(
        "# 2: db + user, 3: db + all, 4: all + user, 5: second db + user, 6: all + all\n\
         mydb alice 1\nmydb all 1\nall alice 1\nmydb alice 1\nall all 1\nother all 1\n",
        10,
    )
    .0;
    assert_eq!(l.best_match("mydb", "alice"), Some(0), "exact pair, first in the file");
    assert_eq!(l.best_match("else", "alice"), Some(2), "all databases + that user");
    assert_eq!(l.best_match("mydb", "bob"), Some(1), "that database + all users");
    assert_eq!(l.best_match("other", "alice"), Some(2), "all + user comes before database + all");
    assert_eq!(l.best_match("else", "bob"), Some(4), "all + all last");
    let without_catch_all = ok("mydb alice 1\nall bob 1\n", 10).0;
    assert_eq!(without_catch_all.best_match("mydb", "carol"), None);
    assert_eq!(without_catch_all.best_match("x", "alice"), None);
    assert_eq!(Limits::default().best_match("a", "b"), None);
}

#[test]
fn sizes_that_contradict_each_other_are_adjusted() {
    let (l, w) = ok("a u 5 1 3\n", 10);
    assert_eq!(sizes(&l.entries[0]), (5, 3, 3));
    assert!(w.len() == 1 && w[0].contains("line 1") && w[0].contains("INITIAL_SIZE 1 is below MIN_SIZE 3"), "{w:?}");
    let (l, w) = ok("\na u 5 9\n", 10);
    assert_eq!(sizes(&l.entries[0]), (5, 5, 0));
    assert!(w.len() == 1 && w[0].contains("line 2") && w[0].contains("above MAX_SIZE 5"), "{w:?}");
    let (l, w) = ok("a u 5 7 8\n", 10);
    assert_eq!(sizes(&l.entries[0]), (5, 5, 5));
    assert!(w[0].contains("MIN_SIZE 8 is above MAX_SIZE 5"), "{w:?}");
    assert!(w[1].contains("INITIAL_SIZE 7 is above MAX_SIZE 5"), "{w:?}");
    assert!(w.iter().all(|w| w.starts_with("pgagroal_databases.conf: line 1:")), "{w:?}");
}

#[test]
fn max_sizes_fit_in_max_connections() {
    assert!(parse("a u 4\nb u 6\n", 10).is_ok());
    let e = err("a u 4\n# c\nb u 6\nc u 1\nd u 9\n", 10);
    assert!(e.contains("line 4") && e.contains("add up to 11") && e.contains("max_connections = 10"), "{e}");
    let e = err("a u 4\nb u all\nc u 6\n", 10);
    assert!(e.contains("line 2") && e.contains("leaves nothing"), "{e}");
}

#[test]
fn warnings_for_unused_lines_and_unprefillable_databases() {
    let (_, w) = ok("a u 1\na u 2\n", 10);
    assert!(w.len() == 1 && w[0].contains("line 2") && w[0].contains("line 1") && w[0].contains("never used"), "{w:?}");
    let (l, w) = ok("all alice 4 2\n", 10);
    assert!(w.len() == 1 && w[0].contains("nothing is opened for database all"), "{w:?}");
    assert_eq!(l.prefill().count(), 0);
}

#[test]
fn prefill_lists_named_pairs_with_an_initial_size() {
    let (l, _) = ok("mydb alice 5 2\nmydb bob 5\nother carol 5 0 3\nall dave 2 1\n", 20);
    let prefill: Vec<_> = l.prefill().collect();
    assert_eq!(prefill, vec![(0, "mydb", "alice", 2), (2, "other", "carol", 3)]);
}

#[test]
fn prefill_users_must_be_in_the_users_file() {
    let (l, _) = ok("mydb alice 5 2\nmydb bob 5\nother carol 5 0 3\n", 20);
    assert!(l.check_prefill_users(&|u| u == "alice" || u == "carol").is_ok());
    let e = l.check_prefill_users(&|u| u == "alice").unwrap_err().to_string();
    assert!(e.contains("line 3") && e.contains("'carol'") && e.contains("USER"), "{e}");
    // bob opens nothing, so he needs no password.
    assert!(l.check_prefill_users(&|u| u != "bob").is_ok());
}

#[test]
fn same_rules_ignore_where_they_are_written() {
    let (a, _) = ok("mydb=x alice 5 2\n", 20);
    let (b, _) = ok("# moved\n\nmydb=x alice 5 2 # same\n", 20);
    let (c, _) = ok("mydb=x alice 6 2\n", 20);
    assert!(a.same_rules(&b));
    assert!(!a.same_rules(&c));
    assert!(!a.same_rules(&Limits::default()));
}

#[test]
fn load_reads_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pgagroal_databases.conf");
    std::fs::write(&path, "mydb alice 3\n").expect("write");
    let (l, _) = Limits::load(&path, 10).expect("load");
    assert_eq!(l.entries.len(), 1);
    assert_eq!(l.path, path);
    let e = Limits::load(&dir.path().join("missing"), 10).unwrap_err().to_string();
    assert!(e.contains("cannot read"), "{e}");
}
