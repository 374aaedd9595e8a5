//! Test harness: a real PostgreSQL started with initdb in a temporary
//! directory, on a free port, as an unprivileged user (PostgreSQL refuses to
//! run as root), with trust, md5 and scram-sha-256 users; and the real
//! `pgagroal` binary started in front of it with a generated configuration.
//!
//! One cluster is shared by all tests of a test binary and stopped when the
//! binary exits. Each test starts its own pooler on its own port.

#![allow(dead_code)]

pub mod certs;
pub mod wire;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const TRUST_USER: &str = "trust_user";
pub const MD5_USER: &str = "md5_user";
pub const MD5_PASSWORD: &str = "md5 pass";
pub const SCRAM_USER: &str = "scram_user";
pub const SCRAM_PASSWORD: &str = "scram pass";
pub const DATABASE: &str = "testdb";

/// The shared PostgreSQL cluster.
pub struct Postgres {
    pub port: u16,
    pub dir: PathBuf,
    bindir: PathBuf,
    run_as: Option<(u32, u32)>,
}

static POSTGRES: OnceLock<Postgres> = OnceLock::new();
/// What `stop_postgres` needs at exit: server binaries, cluster directory, uid/gid.
type Cleanup = (PathBuf, PathBuf, Option<(u32, u32)>);
static CLEANUP: Mutex<Option<Cleanup>> = Mutex::new(None);

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    static USED: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0").local_addr().expect("addr").port();
        let mut used = USED.lock().expect("lock");
        if !used.contains(&port) {
            used.push(port);
            return port;
        }
    }
}

fn find_bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|p| p.join("initdb").exists()).collect()
        })
        .unwrap_or_default();
    candidates.sort();
    if let Some(dir) = candidates.pop() {
        return dir;
    }
    let out = Command::new("sh").args(["-c", "command -v initdb"]).output().expect("sh");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!path.is_empty(), "PostgreSQL server binaries (initdb) not found; set PG_BINDIR");
    Path::new(&path).parent().expect("bindir").to_path_buf()
}

/// uid/gid to run PostgreSQL as when we are root.
fn unprivileged() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    for name in ["postgres", "nobody"] {
        let out = Command::new("id").args(["-u", name]).output().ok()?;
        let gid = Command::new("id").args(["-g", name]).output().ok()?;
        if out.status.success() && gid.status.success() {
            let uid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
            let gid = String::from_utf8_lossy(&gid.stdout).trim().parse().ok()?;
            return Some((uid, gid));
        }
    }
    panic!("running as root but no unprivileged user (postgres or nobody) exists");
}

fn pg_command(bindir: &Path, program: &str, run_as: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(bindir.join(program));
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid);
        cmd.env("HOME", "/tmp");
    }
    cmd.env_remove("PGPASSWORD").env_remove("PGHOST").env_remove("PGPORT");
    cmd
}

fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run the postmaster as a child of a thread that lives as long as this test
/// binary, with SIGQUIT (immediate shutdown) as its parent-death signal: a
/// test binary that is killed does not leave a cluster behind.
fn start_postmaster(bindir: &Path, run_as: Option<(u32, u32)>, data: &Path, log: &Path) {
    let log = std::fs::File::create(log).expect("postgres log");
    let mut cmd = pg_command(bindir, "postgres", run_as);
    cmd.arg("-D").arg(data).stdin(Stdio::null()).stdout(log.try_clone().expect("log")).stderr(log);
    // SAFETY: prctl only sets this child's own parent-death signal; it runs
    // after the user switch, so the setting survives into postgres.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT as libc::c_ulong);
            Ok(())
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("postgres-keeper".into())
        .spawn(move || {
            let _ = tx.send(cmd.spawn().map(|child| child.id()));
            loop {
                std::thread::park();
            }
        })
        .expect("keeper thread");
    rx.recv().expect("keeper thread answers").expect("spawn postgres");
}

extern "C" fn stop_postgres() {
    let Ok(mut guard) = CLEANUP.lock() else { return };
    if let Some((bindir, dir, run_as)) = guard.take() {
        let _ = pg_command(&bindir, "pg_ctl", run_as)
            .args(["-D"])
            .arg(dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

impl Postgres {
    fn start() -> Postgres {
        let bindir = find_bindir();
        let run_as = unprivileged();
        let dir = tempfile::Builder::new().prefix("pgagroal-test-pg-").tempdir().expect("tempdir").keep();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown");
        }
        *CLEANUP.lock().expect("lock") = Some((bindir.clone(), dir.clone(), run_as));
        // SAFETY: registering a plain extern "C" function with no captured state.
        unsafe { libc::atexit(stop_postgres) };

        let data = dir.join("data");
        run(
            pg_command(&bindir, "initdb", run_as).arg("-D").arg(&data).args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]),
            "initdb",
        );
        let port = free_port();
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             max_connections = 300\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             shared_buffers = 64MB\nlog_min_messages = warning\n",
            dir.display()
        );
        let mut f = std::fs::OpenOptions::new().append(true).open(data.join("postgresql.conf")).expect("conf");
        f.write_all(conf.as_bytes()).expect("write conf");
        std::fs::write(
            data.join("pg_hba.conf"),
            format!(
                "local all all trust\nhost all {MD5_USER} 127.0.0.1/32 md5\nhost all {SCRAM_USER} 127.0.0.1/32 scram-sha-256\n\
                 host all all 127.0.0.1/32 trust\n"
            ),
        )
        .expect("hba");
        start_postmaster(&bindir, run_as, &data, &dir.join("postgres.log"));
        let ready = eventually(Duration::from_secs(60), || {
            pg_command(&bindir, "pg_isready", run_as)
                .arg("-h")
                .arg(&dir)
                .args(["-p", &port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success())
        });
        assert!(
            ready,
            "PostgreSQL did not become ready:\n{}",
            std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default()
        );
        let pg = Postgres { port, dir, bindir, run_as };
        for statement in [
            format!("CREATE ROLE {TRUST_USER} LOGIN SUPERUSER"),
            format!("SET password_encryption = 'md5'; CREATE ROLE {MD5_USER} LOGIN PASSWORD '{MD5_PASSWORD}'"),
            format!(
                "SET password_encryption = 'scram-sha-256'; CREATE ROLE {SCRAM_USER} LOGIN PASSWORD '{SCRAM_PASSWORD}'"
            ),
            format!("CREATE DATABASE {DATABASE} OWNER {TRUST_USER}"),
            format!("GRANT ALL ON DATABASE {DATABASE} TO {MD5_USER}, {SCRAM_USER}"),
        ] {
            pg.psql(&statement);
        }
        pg
    }

    /// Run SQL as the superuser over the Unix socket; returns stdout.
    pub fn psql(&self, sql: &str) -> String {
        let out = run(
            pg_command(&self.bindir, "psql", self.run_as)
                .arg("-h")
                .arg(&self.dir)
                .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres", "-X", "-A", "-t", "-q"])
                .args(["-v", "ON_ERROR_STOP=1", "-c", sql]),
            "psql",
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn bin(&self, program: &str) -> PathBuf {
        self.bindir.join(program)
    }
}

/// The cluster shared by this test binary.
pub fn postgres() -> &'static Postgres {
    POSTGRES.get_or_init(Postgres::start)
}

/// How to configure a pooler.
#[derive(Clone)]
pub struct PoolerOptions {
    pub max_connections: usize,
    pub blocking_timeout: &'static str,
    pub hba: String,
    /// Extra `key = value` lines for `[pgagroal]`.
    pub extra: String,
    /// `pgagroal_users.conf` entries (user, password), written with the real
    /// `pgagroal-admin` under a master key made for the test (`-u`).
    pub users: Vec<(&'static str, &'static str)>,
    /// `pgagroal_frontend_users.conf` entries (`-F`).
    pub frontend_users: Vec<(&'static str, &'static str)>,
    /// `pgagroal_superuser.conf`'s entry (`-S`).
    pub superuser: Option<(&'static str, &'static str)>,
    /// Extra `key = value` lines for the `[primary]` server section.
    pub server_extra: String,
}

impl Default for PoolerOptions {
    fn default() -> Self {
        PoolerOptions {
            max_connections: 8,
            blocking_timeout: "30s",
            hba: "host all all all trust\n".into(),
            extra: String::new(),
            users: Vec::new(),
            frontend_users: Vec::new(),
            superuser: None,
            server_extra: String::new(),
        }
    }
}

/// The passphrase of the master keys tests make.
pub const MASTER_PASSPHRASE: &str = "test master passphrase";

/// A running `pgagroal` with its own directory and port.
pub struct Pooler {
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    /// `-u`, `-F`, `-S` and their files, passed to the daemon.
    pub vault_flags: Vec<(&'static str, PathBuf)>,
}

/// The daemon as cargo built it. It refuses to run as root, so tests start it
/// through [`daemon_command`].
pub fn built_pooler_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pgagroal"))
}

/// The account the daemon runs as in tests: the unprivileged user when the
/// tests run as root (the daemon refuses root), else the current user.
pub fn daemon_user() -> Option<(u32, u32)> {
    static USER: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *USER.get_or_init(unprivileged)
}

/// A copy of the daemon binary in a directory every account can enter: the
/// checkout may sit in root's own 0700 home, which the daemon's account
/// cannot traverse. Made once per test binary, removed at exit.
pub fn pooler_binary() -> PathBuf {
    staged_binaries().0
}

/// `pgagroal-admin`, staged like [`pooler_binary`].
pub fn admin_binary() -> PathBuf {
    staged_binaries().1
}

fn staged_binaries() -> (PathBuf, PathBuf) {
    static STAGED: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    STAGED
        .get_or_init(|| {
            let built = (built_pooler_binary(), PathBuf::from(env!("CARGO_BIN_EXE_pgagroal-admin")));
            if daemon_user().is_none() {
                return built;
            }
            let dir = tempfile::Builder::new().prefix("pgagroal-test-bin-").tempdir().expect("tempdir").keep();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            let stage = |from: &Path, name: &str| {
                let to = dir.join(name);
                std::fs::copy(from, &to).expect("stage a binary");
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).expect("chmod");
                to
            };
            let staged = (stage(&built.0, "pgagroal"), stage(&built.1, "pgagroal-admin"));
            STAGED_DIR.lock().expect("lock").replace(dir);
            // SAFETY: registering a plain extern "C" function with no captured state.
            unsafe { libc::atexit(remove_staged) };
            staged
        })
        .clone()
}

static STAGED_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

extern "C" fn remove_staged() {
    if let Ok(mut dir) = STAGED_DIR.lock()
        && let Some(dir) = dir.take()
    {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Hand a file or directory the daemon must write to its account.
pub fn give_to_daemon(path: &Path) {
    if let Some((uid, gid)) = daemon_user() {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown to the daemon's account");
    }
}

/// A temporary directory the daemon's account owns (configuration, sockets,
/// pid file).
pub fn daemon_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("pgagroal-test-").tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    give_to_daemon(dir.path());
    dir
}

/// `pgagroal-admin` as the daemon's account, with `home` as its home.
pub fn admin_command(home: &Path) -> Command {
    let mut cmd = Command::new(admin_binary());
    if let Some((uid, gid)) = daemon_user() {
        cmd.uid(uid).gid(gid);
    }
    cmd.env("HOME", home).env_remove("PGAGROAL_PASSWORD").stdin(Stdio::null());
    cmd
}

/// `pgagroal` as the daemon's account, with `home` as its home directory
/// (where `.pgagroal/master.key` is looked for).
pub fn daemon_command(home: &Path) -> Command {
    let mut cmd = Command::new(pooler_binary());
    if let Some((uid, gid)) = daemon_user() {
        cmd.uid(uid).gid(gid);
    }
    cmd.env("HOME", home).env_remove("PGAGROAL_CONFIG_DIR");
    cmd
}

pub fn cli_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pgagroal-cli"))
}

impl Pooler {
    pub fn start(options: PoolerOptions) -> Pooler {
        let pg = postgres();
        let dir = daemon_dir();
        let port = free_port();
        let conf = format!(
            "[pgagroal]\nhost = 127.0.0.1\nport = {port}\nunix_socket_dir = {}\nmax_connections = {}\n\
             blocking_timeout = {}\nlog_type = console\nlog_level = debug\n{}\n\n[primary]\nhost = 127.0.0.1\nport = {}\n{}\n",
            dir.path().display(),
            options.max_connections,
            options.blocking_timeout,
            options.extra,
            pg.port,
            options.server_extra
        );
        std::fs::write(dir.path().join("pgagroal.conf"), conf).expect("write conf");
        std::fs::write(dir.path().join("pgagroal_hba.conf"), &options.hba).expect("write hba");
        let mut pooler = Pooler { port, dir, child: None, vault_flags: Vec::new() };
        let files = [
            ("-u", "pgagroal_users.conf", options.users.clone()),
            ("-F", "pgagroal_frontend_users.conf", options.frontend_users.clone()),
            ("-S", "pgagroal_superuser.conf", options.superuser.into_iter().collect()),
        ];
        if files.iter().any(|(_, _, entries)| !entries.is_empty()) {
            pooler.admin(&["master-key", "-P", MASTER_PASSPHRASE]);
        }
        for (flag, name, entries) in files {
            if entries.is_empty() {
                continue;
            }
            let path = pooler.dir.path().join(name);
            for (user, password) in entries {
                let file = path.display().to_string();
                pooler.admin(&["-f", &file, "-U", user, "-P", password, "user", "add"]);
            }
            pooler.vault_flags.push((flag, path));
        }
        pooler.spawn();
        pooler
    }

    /// Run `pgagroal-admin` as the daemon's account with its home; panics
    /// on failure.
    pub fn admin(&self, args: &[&str]) -> Output {
        let out = admin_command(&self.home()).args(args).output().expect("run pgagroal-admin");
        assert!(
            out.status.success(),
            "pgagroal-admin {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The daemon's home directory (for `.pgagroal/master.key`), owned by
    /// its account.
    pub fn home(&self) -> PathBuf {
        let home = self.dir.path().join("home");
        if !home.exists() {
            std::fs::create_dir(&home).expect("home");
            std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).expect("chmod");
            give_to_daemon(&home);
        }
        home
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("pgagroal.conf")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("pgagroal.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Start the daemon and wait until it accepts connections.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("log");
        let mut cmd = daemon_command(&self.home());
        cmd.arg("-c")
            .arg(self.conf())
            .arg("-a")
            .arg(self.dir.path().join("pgagroal_hba.conf"))
            .args(self.vault_flags.iter().flat_map(|(flag, path)| [std::ffi::OsStr::new(flag), path.as_os_str()]))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        // SAFETY: prctl only sets the child's parent-death signal: a killed
        // test binary does not leave a daemon behind. The spawning test
        // thread outlives the daemon (Drop stops it first).
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn pgagroal");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("pgagroal exited with {status} during start-up:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "pgagroal did not start listening:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Connection string for the pooler over TCP.
    pub fn url(&self, user: &str, password: Option<&str>) -> String {
        let mut s = format!("host=127.0.0.1 port={} user={user} dbname={DATABASE} connect_timeout=10", self.port);
        if let Some(p) = password {
            s.push_str(&format!(" password='{p}'"));
        }
        s
    }

    pub fn connect(&self, user: &str) -> postgres::Client {
        postgres::Client::connect(&self.url(user, None), postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect through pgagroal as {user}: {e}\n{}", self.log()))
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(cli_binary()).arg("-c").arg(self.conf()).args(args).output().expect("run pgagroal-cli")
    }

    /// Send a signal to the daemon.
    pub fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// Wait for the daemon to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Direct children of the daemon (its workers).
    pub fn workers(&self) -> Vec<i32> {
        children_of(self.pid())
    }
}

impl Drop for Pooler {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Pids whose parent is `pid`, from /proc.
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        // Fields after the command name, which is in parentheses.
        let Some(rest) = stat.rsplit(')').next() else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(pid) && fields.first() != Some(&"Z") {
            out.push(child);
        }
    }
    out
}

/// Processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()) == Some("Z");
        if !zombie && String::from_utf8_lossy(&cmdline).contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// Poll `check` until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Read whatever the peer sends until it closes or `timeout` passes.
pub fn read_until_close(stream: &mut TcpStream, timeout: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(timeout)).expect("timeout");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// The SQLSTATE of the first ErrorResponse in `bytes`, if any.
pub fn sqlstate_in(bytes: &[u8]) -> Option<String> {
    let mut i = 0;
    while i + 5 <= bytes.len() {
        let tag = bytes[i];
        let len = u32::from_be_bytes([bytes[i + 1], bytes[i + 2], bytes[i + 3], bytes[i + 4]]) as usize;
        let end = (i + 1 + len).min(bytes.len());
        if tag == b'E' {
            let body = &bytes[i + 5..end];
            let mut j = 0;
            while j < body.len() && body[j] != 0 {
                let kind = body[j];
                let rest = &body[j + 1..];
                let nul = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                if kind == b'C' {
                    return Some(String::from_utf8_lossy(&rest[..nul]).into_owned());
                }
                j += 1 + nul + 1;
            }
            return None;
        }
        if len < 4 {
            return None;
        }
        i += 1 + len;
    }
    None
}

/// The SQLSTATE of a postgres crate error.
pub fn code_of(err: &postgres::Error) -> Option<String> {
    err.code().map(|c| c.code().to_string())
}

/// The server's message of a postgres crate error (or the error itself).
pub fn message_of(err: &postgres::Error) -> String {
    err.as_db_error().map(|e| e.message().to_string()).unwrap_or_else(|| err.to_string())
}

/// Connect and expect a refusal; returns the error.
pub fn connect_err(url: &str) -> postgres::Error {
    match postgres::Client::connect(url, postgres::NoTls) {
        Ok(_) => panic!("connection with '{url}' was expected to fail"),
        Err(e) => e,
    }
}

impl Pooler {
    /// `status -F json` as a document.
    pub fn status(&self) -> serde_json::Value {
        let out = self.cli(&["status", "-F", "json"]);
        assert!(out.status.success(), "status failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("status json")
    }

    /// Wait until no slot is in use (sessions that ended were reset and returned).
    pub fn wait_idle(&self) {
        assert!(
            eventually(Duration::from_secs(10), || self.status()["Response"]["ActiveConnections"] == 0),
            "slots still in use:\n{}",
            self.log()
        );
    }
}

/// Socket inodes of `/proc/net/tcp{,6}` entries whose local port is `port`.
fn socket_inodes_with_local_port(port: u16) -> Vec<u64> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(local) = fields.get(1) else { continue };
            let Some(hex_port) = local.rsplit(':').next() else { continue };
            if u16::from_str_radix(hex_port, 16).ok() == Some(port)
                && let Some(inode) = fields.get(9).and_then(|i| i.parse::<u64>().ok())
            {
                inodes.push(inode);
            }
        }
    }
    inodes
}

/// Whether process `pid` has an open socket with one of these inodes.
fn holds_socket(pid: i32, inodes: &[u64]) -> bool {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    entries.flatten().any(|e| {
        std::fs::read_link(e.path())
            .ok()
            .and_then(|t| t.to_str().and_then(|t| t.strip_prefix("socket:[")?.strip_suffix(']')?.parse::<u64>().ok()))
            .is_some_and(|inode| inodes.contains(&inode))
    })
}

impl Pooler {
    /// The worker process relaying for the PostgreSQL backend `backend_pid`:
    /// the daemon's child holding the server connection whose local port
    /// PostgreSQL reports as that backend's client_port.
    pub fn worker_serving(&self, backend_pid: i32) -> i32 {
        let port: u16 = postgres()
            .psql(&format!("SELECT client_port FROM pg_stat_activity WHERE pid = {backend_pid}"))
            .parse()
            .expect("client_port of the backend");
        let inodes = socket_inodes_with_local_port(port);
        let holders: Vec<i32> = self.workers().into_iter().filter(|&w| holds_socket(w, &inodes)).collect();
        assert_eq!(holders.len(), 1, "workers holding backend {backend_pid}'s connection: {holders:?}");
        holders[0]
    }
}
