//! The pooler side of the harness: [`Pooler`], one `pgagroal` daemon with its
//! own directory, configuration, hba file, credential files and port, started
//! as the daemon's account and stopped on drop; the options it is started with;
//! the daemon, admin and cli binaries (staged where that account can reach
//! them when the tests run as root); and commands that run them as that
//! account.

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::util::{children_of, eventually, holds_socket, socket_inodes_with_local_port};
use super::{DATABASE, MD5_PASSWORD, MD5_USER, free_port, postgres, unprivileged};

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
    /// Remote-management admins (`-A pgagroal_admins.conf`).
    pub admins: Vec<(&'static str, &'static str)>,
    /// Extra `key = value` lines for the `[primary]` server section.
    pub server_extra: String,
    /// `pgagroal_databases.conf` (`-l`), written when not empty.
    pub limits: String,
    /// Environment of the daemon (failpoints, say).
    pub env: Vec<(&'static str, String)>,
    /// The `[primary]` section's port, when not the test cluster's.
    pub primary_port: Option<u16>,
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
            admins: Vec::new(),
            server_extra: String::new(),
            limits: String::new(),
            env: Vec::new(),
            primary_port: None,
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
    pub env: Vec<(&'static str, String)>,
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
            options.primary_port.unwrap_or(pg.port),
            options.server_extra
        );
        std::fs::write(dir.path().join("pgagroal.conf"), conf).expect("write conf");
        std::fs::write(dir.path().join("pgagroal_hba.conf"), &options.hba).expect("write hba");
        let mut pooler = Pooler { port, dir, child: None, vault_flags: Vec::new(), env: options.env.clone() };
        if !options.limits.is_empty() {
            let path = pooler.dir.path().join("pgagroal_databases.conf");
            std::fs::write(&path, &options.limits).expect("write limits");
            pooler.vault_flags.push(("-l", path));
        }
        let files = [
            ("-u", "pgagroal_users.conf", options.users.clone()),
            ("-F", "pgagroal_frontend_users.conf", options.frontend_users.clone()),
            ("-S", "pgagroal_superuser.conf", options.superuser.into_iter().collect()),
            ("-A", "pgagroal_admins.conf", options.admins.clone()),
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
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
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

    /// A pooler for tests that count their own server connections: a fresh
    /// `database`, the md5 user in the users file, `extra` keys and `limits`.
    pub fn start_on(database: &str, extra: &str, limits: String) -> Pooler {
        postgres().database(database);
        Pooler::start(PoolerOptions {
            extra: extra.into(),
            users: vec![(MD5_USER, MD5_PASSWORD)],
            limits,
            ..Default::default()
        })
    }

    /// A session as the md5 user on `database`.
    pub fn connect_to(&self, database: &str) -> postgres::Client {
        let mut config = postgres::Config::new();
        config.host("127.0.0.1").port(self.port).user(MD5_USER).password(MD5_PASSWORD).dbname(database);
        config.connect_timeout(Duration::from_secs(20));
        config.connect(postgres::NoTls).unwrap_or_else(|e| panic!("connect: {e}\n{}", self.log()))
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

    /// `status -F json` as a document.
    pub fn status(&self) -> serde_json::Value {
        let out = self.cli(&["status", "-F", "json"]);
        assert!(out.status.success(), "status failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("status json")
    }

    /// The pid of a running service (`idle`, `max-age`, `validation`,
    /// `maintenance`) from `status`, None while it is not running.
    pub fn service_pid(&self, name: &str) -> Option<i32> {
        let status = self.status();
        let actors = status["Response"]["Actors"].as_array()?.clone();
        actors
            .iter()
            .find(|a| a["Actor"] == name && a["State"] == "running")
            .and_then(|a| a["Pid"].as_i64())
            .map(|p| p as i32)
            .filter(|&p| p > 0)
    }

    /// Poll `check` for up to 20 s; panics with `what` and the log if it
    /// never holds.
    pub fn wait_for(&self, check: impl FnMut() -> bool, what: &str) {
        assert!(eventually(Duration::from_secs(20), check), "not true in time: {what}\n{}", self.log());
    }

    /// The pid of a service once it is running (panics after 5 s).
    pub fn wait_for_service(&self, name: &str) -> i32 {
        self.wait_for_service_within(name, Duration::from_secs(5))
    }

    /// The pid of a service once it is running (panics after `timeout`).
    pub fn wait_for_service_within(&self, name: &str, timeout: Duration) -> i32 {
        let mut pid = None;
        let running = eventually(timeout, || {
            pid = self.service_pid(name);
            pid.is_some()
        });
        assert!(running, "service {name} is not running: {}\n{}", self.status(), self.log());
        pid.unwrap_or_default()
    }

    /// The pid of `name` once a process other than `old` runs it: after a
    /// kill the status may still list the dead pid until the supervisor
    /// reaps it (panics after `timeout`).
    pub fn wait_for_new_service(&self, name: &str, old: i32, timeout: Duration) -> i32 {
        let mut pid = None;
        let restarted = eventually(timeout, || {
            pid = self.service_pid(name).filter(|&p| p != old);
            pid.is_some()
        });
        assert!(restarted, "service {name} did not come back: {}\n{}", self.status(), self.log());
        pid.unwrap_or_default()
    }

    /// Wait until no slot is in use (sessions that ended were reset and returned).
    pub fn wait_idle(&self) {
        assert!(
            eventually(Duration::from_secs(10), || self.status()["Response"]["ActiveConnections"] == 0),
            "slots still in use:\n{}",
            self.log()
        );
    }

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
