use super::*;

fn all_logs(dir: &Path, prefix: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("read_dir")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .map(|n| {
            let text = std::fs::read_to_string(dir.join(&n)).expect("read log");
            (n, text)
        })
        .collect();
    files.sort();
    files
}

/// Epoch ms at the start of the current second, so tests can step time.
fn second_start() -> u64 {
    crate::sys::now_ms() / 1000 * 1000
}

#[test]
fn due_by_size_or_age() {
    let off = Rotation { size: 0, age_ms: 0 };
    assert!(!off.enabled() && !off.due(u64::MAX, u64::MAX));
    let size = Rotation { size: 100, age_ms: 0 };
    assert!(size.enabled());
    assert!(!size.due(99, u64::MAX));
    assert!(size.due(100, 0));
    let age = Rotation { size: 0, age_ms: 1000 };
    assert!(!age.due(u64::MAX, 999));
    assert!(age.due(0, 1000));
    let both = Rotation { size: 100, age_ms: 1000 };
    assert!(both.due(100, 0) && both.due(0, 1000) && !both.due(99, 999));
}

#[test]
fn decisions() {
    use Action::*;
    use PathState::*;
    // Another process rotated, or the pattern moved on to a file that exists.
    assert_eq!(decide(false, Other, 10, 1), Open);
    assert_eq!(decide(true, Other, 10, 1), Open);
    // Still ours: nothing to do unless due; due means rename aside first.
    assert_eq!(decide(false, Ours, 10, 1), Keep);
    assert_eq!(decide(true, Ours, 10, 1), RenameAsideThenOpen);
    // An empty file due by age is not worth a new one.
    assert_eq!(decide(true, Ours, 0, 1), Restart);
    // Missing: create when due (a new name, or ours was moved), or when
    // our file was deleted; otherwise someone is mid-rotation.
    assert_eq!(decide(true, Missing, 10, 1), Open);
    assert_eq!(decide(false, Missing, 10, 0), Open);
    assert_eq!(decide(false, Missing, 10, 1), Keep);
}

#[test]
fn aside_name_choice() {
    let name = Path::new("/var/log/pgagroal.log");
    let names: Vec<PathBuf> = aside_names(name, "20240102030405").take(3).collect();
    assert_eq!(
        names,
        [
            "/var/log/pgagroal.log.20240102030405",
            "/var/log/pgagroal.log.20240102030405.1",
            "/var/log/pgagroal.log.20240102030405.2"
        ]
        .map(PathBuf::from)
    );
    assert_eq!(aside_names(name, "x").count(), 10_000);
}

#[test]
fn rename_aside_takes_the_first_free_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = dir.path().join("x.log");
    std::fs::write(&name, "current\n").expect("write");
    let own = std::fs::metadata(&name).expect("stat");
    std::fs::write(dir.path().join("x.log.20240102030405"), "older\n").expect("write");
    std::fs::write(dir.path().join("x.log.20240102030405.1"), "older\n").expect("write");
    rename_aside(&name, "20240102030405", &own).expect("rename aside");
    assert!(!name.exists());
    let moved = dir.path().join("x.log.20240102030405.2");
    assert_eq!(std::fs::read_to_string(&moved).expect("moved"), "current\n");
    assert_eq!(std::fs::read_to_string(dir.path().join("x.log.20240102030405")).expect("kept"), "older\n");
    // Already moved by someone else: nothing to do.
    rename_aside(&name, "20240102030405", &own).expect("gone");
}

#[test]
fn rename_aside_puts_back_a_file_that_is_not_ours() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = dir.path().join("x.log");
    std::fs::write(dir.path().join("ours"), "").expect("write");
    let own = std::fs::metadata(dir.path().join("ours")).expect("stat");
    // Another process rotated first: the name holds its fresh file.
    std::fs::write(&name, "theirs\n").expect("write");
    rename_aside(&name, "20240102030405", &own).expect("rename aside");
    assert_eq!(std::fs::read_to_string(&name).expect("put back"), "theirs\n");
    assert!(!dir.path().join("x.log.20240102030405").exists());
}

#[test]
fn names_from_patterns() {
    let plain = Path::new("/var/log/pgagroal.log");
    assert_eq!(name_at(plain, 0).expect("plain"), plain);
    let t = 1_700_000_000;
    let year = crate::sys::format_local_time("%Y", t);
    let day = crate::sys::format_local_time("%Y-%m-%d", t);
    let got = name_at(Path::new("/var/log/%Y/pgagroal-%Y-%m-%d.log"), t).expect("pattern");
    assert_eq!(got, PathBuf::from(format!("/var/log/{year}/pgagroal-{day}.log")));
    assert_eq!(name_at(Path::new("/x/100%%.log"), t).expect("literal %"), Path::new("/x/100%.log"));
    // Longer than the formatter's buffer as a whole: formatted per component.
    let deep = format!("/{}/{}/log-%Y.log", "d".repeat(200), "e".repeat(200));
    let got = name_at(Path::new(&deep), t).expect("long pattern");
    assert_eq!(got, PathBuf::from(deep.replace("%Y", &year)));
}

#[test]
fn size_rotation_keeps_every_line_and_the_descriptor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rotation = Rotation { size: 100, age_ms: 0 };
    let now = second_start();
    let log = LogFile::open(&dir.path().join("x.log"), false, rotation, now).expect("open");
    let fd = log.fd();
    for i in 0..20 {
        assert!(log.prepare(now + i).is_none());
        log.write(format!("line {i:02} ......................\n").as_bytes()).expect("write");
    }
    assert_eq!(log.fd(), fd, "a rotation keeps the descriptor number");
    let files = all_logs(dir.path(), "x.log");
    assert!(files.len() >= 5, "{files:?}");
    assert!(files.iter().any(|(n, _)| n == "x.log"), "{files:?}");
    let stamp = crate::sys::format_local_time("%Y%m%d%H%M%S", (now / 1000) as i64);
    assert!(files.iter().any(|(n, _)| *n == format!("x.log.{stamp}")), "{files:?}");
    assert!(files.iter().any(|(n, _)| *n == format!("x.log.{stamp}.1")), "{files:?}");
    let mut lines: Vec<&str> = files.iter().flat_map(|(_, t)| t.lines()).collect();
    lines.sort();
    assert_eq!(lines.len(), 20);
    lines.dedup();
    assert_eq!(lines.len(), 20);
    for (name, text) in &files {
        assert!(text.len() < 100 + 31, "{name}: {} bytes", text.len());
    }
}

#[test]
fn processes_follow_each_others_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rotation = Rotation { size: 200, age_ms: 0 };
    let now = second_start();
    let path = dir.path().join("x.log");
    // Two processes, each with its own descriptor and bookkeeping.
    let a = LogFile::open(&path, false, rotation, now).expect("open a");
    let b = LogFile::open(&path, false, rotation, now).expect("open b");
    for i in 0..60u64 {
        let (who, log) = if i % 3 == 0 { ("b", &b) } else { ("a", &a) };
        assert!(log.prepare(now + i).is_none());
        log.write(format!("{who} line {i:02} ....................\n").as_bytes()).expect("write");
    }
    let files = all_logs(dir.path(), "x.log");
    assert!(files.len() >= 5, "{files:?}");
    let total: usize = files.iter().map(|(_, t)| t.lines().count()).sum();
    assert_eq!(total, 60);
    for (name, text) in &files {
        // A file reaches the limit, then at most one line goes on it.
        assert!(text.len() < 200 + 31, "{name}: {} bytes", text.len());
        assert!(text.ends_with('\n'));
    }
    // Both wrote into the newest file: b followed a's rotation.
    let newest = &files.iter().find(|(n, _)| n == "x.log").expect("current file").1;
    let same = |f: &LogFile| {
        let (m, n) = (f.file.metadata().expect("fstat"), std::fs::metadata(&path).expect("stat"));
        same_file(&m, &n)
    };
    assert!(same(&a) && same(&b), "{newest}");
}

#[test]
fn age_rotation_with_a_time_pattern() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rotation = Rotation { size: 0, age_ms: 1000 };
    let t0 = second_start();
    let pattern = dir.path().join("log-%Y%m%d%H%M%S.log");
    let name = |ms: u64| name_at(&pattern, (ms / 1000) as i64).expect("name");
    let a = LogFile::open(&pattern, false, rotation, t0).expect("open a");
    let b = LogFile::open(&pattern, false, rotation, t0 + 500).expect("open b");
    a.write(b"a0\n").expect("write");
    b.write(b"b0\n").expect("write");
    // Not due yet for either.
    assert!(a.prepare(t0 + 900).is_none() && b.prepare(t0 + 900).is_none());
    a.write(b"a1\n").expect("write");
    // a is due: a new name, nothing renamed.
    assert!(a.prepare(t0 + 1000).is_none());
    a.write(b"a2\n").expect("write");
    // b is not due, but a new second makes it look: the name exists.
    assert!(b.prepare(t0 + 1100).is_none());
    b.write(b"b1\n").expect("write");
    assert_eq!(std::fs::read_to_string(name(t0)).expect("first"), "a0\nb0\na1\n");
    assert_eq!(std::fs::read_to_string(name(t0 + 1000)).expect("second"), "a2\nb1\n");
    assert_eq!(all_logs(dir.path(), "log-").len(), 2);
}

#[test]
fn empty_file_is_not_rotated_by_age() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t0 = second_start();
    let log = LogFile::open(&dir.path().join("x.log"), false, Rotation { size: 0, age_ms: 1000 }, t0).expect("open");
    assert!(log.prepare(t0 + 5000).is_none());
    assert_eq!(all_logs(dir.path(), "x.log").len(), 1);
    log.write(b"x\n").expect("write");
    // The age started over at +5s.
    assert!(log.prepare(t0 + 5500).is_none());
    assert_eq!(all_logs(dir.path(), "x.log").len(), 1);
    assert!(log.prepare(t0 + 6000).is_none());
    assert_eq!(all_logs(dir.path(), "x.log").len(), 2);
}

#[test]
fn failed_rotation_keeps_writing_and_retries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t0 = second_start();
    let pattern = dir.path().join("d-%S/x.log");
    let sub = |ms: u64| name_at(&pattern, (ms / 1000) as i64).expect("name").parent().expect("dir").to_path_buf();
    std::fs::create_dir(sub(t0)).expect("mkdir");
    let log = LogFile::open(&pattern, false, Rotation { size: 0, age_ms: 1000 }, t0).expect("open");
    log.write(b"one\n").expect("write");
    // The directory for the next second is missing: reported once.
    let failure = log.prepare(t0 + 1000).expect("a failure");
    assert_eq!(failure.path, sub(t0 + 1000).join("x.log"));
    assert_eq!(failure.error.kind(), io::ErrorKind::NotFound);
    log.write(b"two\n").expect("write");
    assert!(log.prepare(t0 + 1500).is_none(), "within the retry delay");
    assert!(log.prepare(t0 + 2100).is_none(), "failing again is not reported again");
    log.write(b"three\n").expect("write");
    assert_eq!(std::fs::read_to_string(sub(t0).join("x.log")).expect("old"), "one\ntwo\nthree\n");
    std::fs::create_dir(sub(t0 + 3200)).expect("mkdir");
    assert!(log.prepare(t0 + 3200).is_none());
    log.write(b"four\n").expect("write");
    assert_eq!(std::fs::read_to_string(sub(t0 + 3200).join("x.log")).expect("new"), "four\n");
    // Failing after a success is reported again.
    assert!(log.prepare(t0 + 4200).is_some());
}

#[test]
fn a_deleted_file_is_recreated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t0 = second_start();
    let path = dir.path().join("x.log");
    let log = LogFile::open(&path, false, Rotation { size: 1 << 20, age_ms: 0 }, t0).expect("open");
    log.write(b"a\n").expect("write");
    std::fs::remove_file(&path).expect("rm");
    // Looked at once a second.
    assert!(log.prepare(t0 + 10).is_none());
    assert!(!path.exists());
    assert!(log.prepare(t0 + 1000).is_none());
    log.write(b"b\n").expect("write");
    assert_eq!(std::fs::read_to_string(&path).expect("recreated"), "b\n");
}

#[test]
fn create_mode_truncates_the_first_open_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("x.log");
    std::fs::write(&path, "old\n").expect("write");
    let off = Rotation { size: 0, age_ms: 0 };
    let log = LogFile::open(&path, true, off, second_start()).expect("open");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "");
    let other = LogFile::open(&path, false, off, second_start()).expect("open");
    log.write(b"1\n").expect("write");
    other.write(b"2\n").expect("write");
    log.write(b"3\n").expect("write");
    // Both append: nothing is overwritten.
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "1\n2\n3\n");
}

#[test]
fn writes_whole_buffers() {
    let (r, w) = std::os::unix::net::UnixStream::pair().expect("pair");
    let data = vec![b'x'; 300_000];
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut &r, &mut got).expect("read");
        got.len()
    });
    crate::sys::set_nonblocking(w.as_raw_fd(), true).expect("nonblocking");
    write_fd(w.as_raw_fd(), &data).expect("write");
    drop(w);
    assert_eq!(reader.join().expect("reader"), data.len());
    assert!(write_fd(-1, b"x").is_err());
}
