//! `pgagroal-admin` as a user runs it: the real binary, a temporary home
//! directory, standard input from `/dev/null` (so any question it asked would
//! fail rather than wait), and the files it writes read back through
//! `pgagroal::vault`.

use pgagroal::vault::{self, MasterKey, Password};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pgagroal-admin");

struct Home {
    dir: tempfile::TempDir,
    /// Derived once: the derivation is the slow part of every check.
    key: std::cell::OnceCell<MasterKey>,
}

impl Home {
    fn new() -> Home {
        Home { dir: tempfile::tempdir().expect("tempdir"), key: std::cell::OnceCell::new() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn users(&self) -> PathBuf {
        self.path().join("pgagroal_users.conf")
    }

    /// Run the binary with this home and no password in the environment;
    /// `env` adds variables. Killed, and the test failed, after a minute.
    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("HOME", self.path())
            .env("PGAGROAL_ALLOW_ROOT", "1")
            .env_remove("PGAGROAL_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        within_a_minute(command.spawn().expect("spawn pgagroal-admin"), args)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    /// Run with `-f <home>/pgagroal_users.conf`, expecting success.
    fn ok(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let file = self.users();
        let mut all = vec!["-f", file.to_str().expect("utf-8 path")];
        all.extend_from_slice(args);
        let out = self.run_env(&all, env);
        assert!(out.status.success(), "{args:?} failed: {}{}", stdout(&out), stderr(&out));
        stdout(&out)
    }

    /// Run with `-f <home>/pgagroal_users.conf`, expecting failure; returns standard error.
    fn fails(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let file = self.users();
        let mut all = vec!["-f", file.to_str().expect("utf-8 path")];
        all.extend_from_slice(args);
        let out = self.run_env(&all, env);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}{}", stdout(&out), stderr(&out));
        stderr(&out)
    }

    fn master_key(&self) {
        let out = self.run(&["master-key", "-P", "master passphrase"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    fn load(&self) -> vault::Users {
        let key = self.key.get_or_init(|| MasterKey::load_from_home(self.path()).expect("master key"));
        vault::load_users(&self.users(), key, vault::MAX_USERS).expect("load users")
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

fn password<'a>(users: &'a vault::Users, name: &str) -> Option<&'a str> {
    users.get(name).map(Password::as_str)
}

#[test]
fn master_key_is_created_private_and_never_overwritten() {
    let home = Home::new();
    let out = home.run(&["master-key", "-P", "master passphrase"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("Header:\n"), "{text}");
    assert!(text.contains("  Command: master-key\n") && text.contains("Outcome:\n  Status: true\n"), "{text}");
    let path = home.path().join(".pgagroal/master.key");
    assert!(text.ends_with(&format!("Master Key stored into {}\n", path.display())), "{text}");
    assert_eq!(mode(&home.path().join(".pgagroal")), 0o700);
    assert_eq!(mode(&path), 0o600);
    let contents = std::fs::read_to_string(&path).expect("read");
    let lines: Vec<&str> = contents.lines().collect();
    assert_eq!(lines.len(), 2, "{contents}");
    assert_eq!(lines[0], "bWFzdGVyIHBhc3NwaHJhc2U=", "base64 of the passphrase");
    assert_eq!(lines[1].len(), 24, "base64 of 16 bytes");

    let again = home.run(&["master-key", "-P", "another passphrase"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("already exists"), "{}", stderr(&again));
    assert!(stdout(&again).contains("  Status: false\n"), "{}", stdout(&again));
    assert_eq!(std::fs::read_to_string(&path).expect("read"), contents);

    // From the environment, and refused when too short.
    let other = Home::new();
    let short = other.run_env(&["master-key"], &[("PGAGROAL_PASSWORD", "short")]);
    assert_eq!(short.status.code(), Some(1));
    assert!(stderr(&short).contains("at least 8"), "{}", stderr(&short));
    let out = other.run_env(&["master-key", "-F", "json"], &[("PGAGROAL_PASSWORD", "from the environment")]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("master-key json");
    assert_eq!(doc["Header"]["Command"], "master-key");
    assert_eq!(doc["Outcome"]["Status"], true);
    let stored = std::fs::read_to_string(other.path().join(".pgagroal/master.key")).expect("read");
    assert!(stored.starts_with("ZnJvbSB0aGUgZW52aXJvbm1lbnQ=\n"), "{stored}");
}

#[test]
fn a_key_directory_open_to_others_is_refused() {
    let home = Home::new();
    let dir = home.path().join(".pgagroal");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = home.run(&["master-key", "-P", "master passphrase"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("must have mode 0700 (no access for group or others), has 0755"), "{}", stderr(&out));
}

#[test]
fn users_are_added_edited_listed_and_removed() {
    let home = Home::new();
    home.master_key();
    home.ok(&["user", "add", "-U", "alice", "-P", "alice's secret"], &[]);
    assert_eq!(mode(&home.users()), 0o600);
    home.ok(&["-U", "bob", "user", "add"], &[("PGAGROAL_PASSWORD", "bøb from env")]);
    // -P wins over the environment.
    home.ok(&["user", "add", "-U", "carol", "-P", "carol-flag"], &[("PGAGROAL_PASSWORD", "carol-env")]);
    let users = home.load();
    assert_eq!(users.names().collect::<Vec<_>>(), ["alice", "bob", "carol"]);
    assert_eq!(password(&users, "alice"), Some("alice's secret"));
    assert_eq!(password(&users, "bob"), Some("bøb from env"));
    assert_eq!(password(&users, "carol"), Some("carol-flag"));

    let err = home.fails(&["user", "add", "-U", "alice", "-P", "x"], &[]);
    assert!(err.contains("user 'alice' already exists (line 1)"), "{err}");
    let err = home.fails(&["user", "edit", "-U", "nobody", "-P", "x"], &[]);
    assert!(err.contains("user 'nobody' not found"), "{err}");
    let err = home.fails(&["user", "del", "-U", "nobody"], &[]);
    assert!(err.contains("user 'nobody' not found"), "{err}");

    home.ok(&["user", "edit", "-U", "alice", "-P", "alice's new secret"], &[]);
    let listed = home.ok(&["user", "ls"], &[]);
    assert!(listed.starts_with("alice\nbob\ncarol\nHeader:\n"), "{listed}");
    assert!(
        listed.contains("  Command: user ls\n") && listed.contains("  Users:\n    - alice\n    - bob\n"),
        "{listed}"
    );

    let removed = home.ok(&["user", "del", "-U", "bob", "-F", "json"], &[]);
    let doc: Value = serde_json::from_str(&removed).expect("del json");
    assert_eq!(doc["Header"]["Command"], "user del");
    assert_eq!(doc["Response"]["Users"], serde_json::json!(["alice", "carol"]));

    let doc: Value = serde_json::from_str(&home.ok(&["user", "ls", "-F", "json"], &[])).expect("ls json");
    assert_eq!(doc["Header"]["Output"], "json");
    assert_eq!(doc["Outcome"]["Status"], true);
    assert_eq!(doc["Response"]["Users"], serde_json::json!(["alice", "carol"]));

    let users = home.load();
    assert_eq!(password(&users, "alice"), Some("alice's new secret"));
    assert_eq!(password(&users, "carol"), Some("carol-flag"));
    assert!(!users.contains("bob"));
    assert_eq!(mode(&home.users()), 0o600);
    assert_eq!(std::fs::read_dir(home.path()).expect("ls").count(), 2, "no temporary file left");
}

#[test]
fn generated_passwords() {
    let home = Home::new();
    home.master_key();
    let out = home.ok(&["user", "add", "-U", "gen", "-g", "-l", "20"], &[]);
    let first = out.lines().next().unwrap_or_default();
    let generated = first.strip_prefix("Password : ").unwrap_or_else(|| panic!("no generated password in {out}"));
    assert_eq!(generated.chars().count(), 20, "{generated}");
    assert!(out[first.len() + 1..].starts_with("Header:\n"), "{out}");

    // In JSON the password is part of the document, which stays parseable.
    let out = home.ok(&["user", "add", "-U", "gen2", "-g", "-F", "json"], &[]);
    let doc: Value = serde_json::from_str(&out).expect("json");
    let generated2 = doc["Response"]["Password"].as_str().expect("password").to_string();
    assert_eq!(generated2.chars().count(), vault::DEFAULT_GENERATED_LENGTH);
    assert_eq!(doc["Response"]["Users"], serde_json::json!(["gen", "gen2"]));

    let users = home.load();
    assert_eq!(password(&users, "gen"), Some(generated));
    assert_eq!(password(&users, "gen2"), Some(generated2.as_str()));

    let err = home.fails(&["user", "add", "-U", "x", "-g", "-l", "0"], &[]);
    assert!(err.contains("invalid password length '0'"), "{err}");
    let err = home.fails(&["user", "add", "-U", "x", "-g", "-l", "1025"], &[]);
    assert!(err.contains("invalid password length '1025'"), "{err}");
    let err = home.fails(&["user", "add", "-U", "a:b", "-P", "x"], &[]);
    assert!(err.contains("invalid user name: the user name contains ':'"), "{err}");
    let err = home.fails(&["user", "add", "-U", "empty", "-P", ""], &[]);
    assert!(err.contains("invalid password: it is empty"), "{err}");
}

#[test]
fn without_a_terminal_nothing_is_asked() {
    let home = Home::new();
    let started = Instant::now();
    let out = home.run(&["master-key"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no master key: give -P"), "{}", stderr(&out));
    assert!(stderr(&out).contains("not a terminal"), "{}", stderr(&out));
    home.master_key();
    let err = home.fails(&["user", "add", "-U", "alice"], &[]);
    assert!(err.contains("no password: give -P PASSWORD, set PGAGROAL_PASSWORD or use -g"), "{err}");
    let err = home.fails(&["user", "add", "-P", "secret"], &[]);
    assert!(err.contains("no user name: give -U USER"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(50));
    assert!(!home.users().exists() || home.load().is_empty());
}

#[test]
fn no_master_key_and_bad_usage() {
    let home = Home::new();
    let err = home.fails(&["user", "add", "-U", "alice", "-P", "secret"], &[]);
    assert!(err.contains("does not exist; create the master key with 'pgagroal-admin master-key'"), "{err}");
    let err = home.fails(&["user", "ls"], &[]);
    assert!(err.contains("cannot open"), "{err}");

    let out = home.run(&["-V"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), format!("pgagroal-admin {}\n", pgagroal::VERSION));
    let out = home.run(&["-?"]);
    assert!(out.status.success() && stdout(&out).contains("PGAGROAL_ALLOW_ROOT"), "{}", stdout(&out));
    let out = home.run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("master-key"), "help is shown");
    let err = home.fails(&["user", "rename"], &[]);
    assert!(err.contains("unknown command 'user rename'"), "{err}");
    let err = home.fails(&["add-user"], &[]);
    assert!(err.contains("'add-user' was replaced by 'user add'"), "{err}");
    let err = home.fails(&["-F", "yaml", "user", "ls"], &[]);
    assert!(err.contains("format 'yaml' is not one of text, json"), "{err}");
}

#[test]
fn root_needs_the_test_override() {
    if !nix::unistd::getuid().is_root() {
        return;
    }
    let home = Home::new();
    let out = home.run_env(&["user", "ls"], &[("PGAGROAL_ALLOW_ROOT", "0")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "pgagroal-admin: Using the root account is not allowed\n");
    assert!(stdout(&out).is_empty());
}

/// `master.key` and a users-file line made independently with Python (see
/// `known_answer_from_an_independent_implementation` in `src/vault/mod.rs`
/// for the snippet): the binary opens the existing entry with that key while
/// adding a user, and keeps the comment and the line as they were.
#[test]
fn files_made_elsewhere_are_used_as_they_are() {
    const MASTER_KEY_FILE: &str = "Y29ycmVjdCBob3JzZSBiYXR0ZXJ5IHN0YXBsZQ==\nAAECAwQFBgcICQoLDA0ODw==";
    const LINE: &str = "alice:oKGio6SlpqeoqaqrrK2ur/wx8Uw3rDQKXfh8ChXOzxBf5ECdNEFBych/93P88RajcqPOrliW+GCyA9iB";
    let home = Home::new();
    let dir = home.path().join(".pgagroal");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::write(dir.join("master.key"), MASTER_KEY_FILE).expect("write key");
    std::fs::set_permissions(dir.join("master.key"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::write(home.users(), format!("# made elsewhere\n{LINE}\n")).expect("write users");

    home.ok(&["user", "add", "-U", "bob", "-P", "bob's"], &[]);
    let text = std::fs::read_to_string(home.users()).expect("read");
    assert!(text.starts_with(&format!("# made elsewhere\n{LINE}\nbob:")), "{text}");
    let users = home.load();
    assert_eq!(password(&users, "alice"), Some("s3cret pässword"));
    assert_eq!(password(&users, "bob"), Some("bob's"));

    // An entry under another master key is reported, not silently mixed in.
    std::fs::write(
        home.users(),
        "carol:oKGio6SlpqeoqaqrrK2ur/wx8Uw3rDQKXfh8ChXOzxBf5ECdNEFBych/93P88RajcqPOrliW+GCyA9iA\n",
    )
    .expect("write");
    let err = home.fails(&["user", "add", "-U", "dave", "-P", "x"], &[]);
    assert!(err.contains("line 1: cannot decrypt the password of user 'carol'"), "{err}");
}

/// Run with standard input on a pseudo-terminal whose other end has already
/// been sent `typed`; standard output and error are captured.
fn run_on_terminal(home: &Home, args: &[&str], typed: &str) -> Output {
    use std::io::{Read, Write};
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let mut master = std::fs::File::from(pty.master);
    master.write_all(typed.as_bytes()).expect("type the answers");
    let file = home.users();
    let child = Command::new(BIN)
        .arg("-f")
        .arg(&file)
        .args(args)
        .env("HOME", home.path())
        .env("PGAGROAL_ALLOW_ROOT", "1")
        .env_remove("PGAGROAL_PASSWORD")
        .stdin(Stdio::from(pty.slave))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Drain what the terminal echoes so it can never fill up.
    std::thread::spawn(move || {
        let mut sink = [0u8; 1024];
        while matches!(master.read(&mut sink), Ok(n) if n > 0) {}
    });
    within_a_minute(child, args)
}

/// Wait for the binary; killed, and the test failed, after a minute.
fn within_a_minute(mut child: std::process::Child, args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pgagroal-admin {args:?} did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn answers_typed_on_a_terminal() {
    let home = Home::new();
    let out = run_on_terminal(&home, &["master-key"], "typed master key\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("Master key (will not echo): "), "{}", stderr(&out));

    let out = run_on_terminal(&home, &["user", "add"], "carol\ncarol's pw\ncarol's pw\n");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let prompts = stderr(&out);
    assert!(prompts.contains("User name: ") && prompts.contains("Password : ") && prompts.contains("Verify   : "));
    assert!(!stdout(&out).contains("carol's pw") && !prompts.contains("carol's pw"), "the password is not shown");

    // A mismatch asks again.
    let out = run_on_terminal(&home, &["user", "add", "-U", "dave"], "one\ntwo\nthree\nthree\n");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("Passwords do not match"), "{}", stderr(&out));

    let users = home.load();
    assert_eq!(password(&users, "carol"), Some("carol's pw"));
    assert_eq!(password(&users, "dave"), Some("three"));
    let key = std::fs::read_to_string(home.path().join(".pgagroal/master.key")).expect("read");
    assert!(key.starts_with("dHlwZWQgbWFzdGVyIGtleQ==\n"), "{key}");
}
