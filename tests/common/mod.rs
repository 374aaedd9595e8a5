//! Test harness: a real PostgreSQL started with initdb in a temporary
//! directory, on a free port, as an unprivileged user (PostgreSQL refuses to
//! run as root), with trust, md5 and scram-sha-256 users; and the real
//! `pgagroal` binary started in front of it with a generated configuration.
//!
//! One cluster is shared by all tests of a test binary and stopped when the
//! binary exits. Each test starts its own pooler on its own port.
//!
//! This file holds the cluster. The pooler is in [`pooler`], small helpers
//! (polling, error inspection, /proc lookups) in [`util`]; both are
//! re-exported here, so tests need only `use common::*;`.

#![allow(dead_code)]

pub mod certs;
pub mod http;
pub mod load;
pub mod pooler;
pub mod tools;
pub mod util;
pub mod wire;

pub use pooler::*;
pub use util::*;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

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
        self.psql_on("postgres", sql)
    }

    /// Run SQL as the superuser on `database`; returns stdout.
    pub fn psql_on(&self, database: &str, sql: &str) -> String {
        let out = run(
            pg_command(&self.bindir, "psql", self.run_as)
                .arg("-h")
                .arg(&self.dir)
                .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", database, "-X", "-A", "-t", "-q"])
                .args(["-v", "ON_ERROR_STOP=1", "-c", sql]),
            "psql",
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Run SQL as the test user on the test database over TCP; returns
    /// stdout (unaligned, tuples only).
    pub fn as_test_user(&self, sql: &str) -> String {
        let out = std::process::Command::new(self.bin("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", TRUST_USER, "-d", DATABASE, "-X", "-A", "-t"])
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("psql");
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A fresh table of the test database, owned by the test user.
    pub fn table(&self, name: &str, columns: &str) {
        self.as_test_user(&format!("DROP TABLE IF EXISTS {name}; CREATE TABLE {name} ({columns})"));
    }

    /// A fresh database owned by the test user, so that a test can count
    /// its pooler's server connections in pg_stat_activity by name.
    pub fn database(&self, name: &str) {
        self.psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        self.psql(&format!("CREATE DATABASE {name} OWNER {TRUST_USER}"));
        self.psql(&format!("GRANT ALL ON DATABASE {name} TO {MD5_USER}, {SCRAM_USER}"));
    }

    /// Server connections (client backends) to `database`.
    pub fn backends_on(&self, database: &str) -> Vec<i32> {
        self.psql(&format!(
            "SELECT coalesce(string_agg(pid::text, ',' ORDER BY pid), '') FROM pg_stat_activity \
             WHERE datname = '{database}' AND backend_type = 'client backend'"
        ))
        .split(',')
        .filter_map(|p| p.parse().ok())
        .collect()
    }

    pub fn bin(&self, program: &str) -> PathBuf {
        self.bindir.join(program)
    }
}

/// The cluster shared by this test binary.
pub fn postgres() -> &'static Postgres {
    POSTGRES.get_or_init(Postgres::start)
}
