//! Real clients through the daemon, each in three configurations: session
//! pooling with pass-through authentication (no users file: the client's
//! own SCRAM exchange reaches PostgreSQL), session pooling with the users
//! vault, and transaction pooling with the vault. Every case reads its
//! results back and compares values.
//!
//! Clients: psql (with `\copy`) and pgbench here; psycopg 3, asyncpg and
//! SQLAlchemy in `compat/python.rs`; node-postgres and pgjdbc in
//! `compat/node_jvm.rs`; tokio-postgres in `compat/tokio.rs`. The scripts
//! the foreign clients run are in `compat/`; each prints one JSON object of
//! what it read back. Clients are installed on first use into the target
//! directory (pip, npm) or with apt-get (the pgjdbc jar).

mod common;

#[path = "compat/node_jvm.rs"]
mod node_jvm;
#[path = "compat/python.rs"]
mod python;
#[path = "compat/tokio.rs"]
mod tokio_client;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The database every client case works in, owned by the SCRAM user so
/// that clients create their own tables.
pub const DB: &str = "compat";

/// The three configurations each client is tested in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `pipeline = session`, no users file: the client's password is
    /// relayed to PostgreSQL.
    SessionPassThrough,
    /// `pipeline = session` with the SCRAM user in the users vault.
    SessionVault,
    /// `pipeline = transaction`, `allow_unknown_users = off`, the vault,
    /// and fewer server connections than some clients open.
    TransactionVault,
}

impl Mode {
    /// Short name, for table and database names.
    pub fn tag(self) -> &'static str {
        match self {
            Mode::SessionPassThrough => "pt",
            Mode::SessionVault => "vault",
            Mode::TransactionVault => "tx",
        }
    }

    /// Server connections the pooler may open.
    pub fn max_connections(self) -> usize {
        match self {
            Mode::TransactionVault => 4,
            _ => 12,
        }
    }

    /// A pooler in this configuration; every client logs in as the SCRAM
    /// user with SCRAM.
    pub fn pooler(self) -> Pooler {
        database();
        let (extra, users) = match self {
            Mode::SessionPassThrough => ("pipeline = session\n", vec![]),
            Mode::SessionVault => ("pipeline = session\n", vec![(SCRAM_USER, SCRAM_PASSWORD)]),
            Mode::TransactionVault => {
                ("pipeline = transaction\nallow_unknown_users = off\n", vec![(SCRAM_USER, SCRAM_PASSWORD)])
            }
        };
        Pooler::start(PoolerOptions {
            max_connections: self.max_connections(),
            hba: "host all all all scram-sha-256\n".into(),
            extra: extra.into(),
            users,
            ..Default::default()
        })
    }
}

/// A fresh database owned by the SCRAM user.
fn own_database(name: &str) {
    let pg = postgres();
    pg.psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    pg.psql(&format!("CREATE DATABASE {name} OWNER {SCRAM_USER}"));
}

/// [`DB`], made once per test binary.
pub fn database() {
    static MADE: OnceLock<()> = OnceLock::new();
    MADE.get_or_init(|| own_database(DB));
}

/// libpq's variables (and what the other scripts read) for the pooler on
/// `port`, as the SCRAM user, on `database`.
pub fn connection_env(cmd: &mut Command, port: u16, database: &str) {
    cmd.env("PGHOST", "127.0.0.1")
        .env("PGPORT", port.to_string())
        .env("PGUSER", SCRAM_USER)
        .env("PGPASSWORD", SCRAM_PASSWORD)
        .env("PGDATABASE", database)
        .env("PGSSLMODE", "disable")
        .env("PGCONNECT_TIMEOUT", "20")
        .env_remove("PGOPTIONS")
        .env_remove("PGAPPNAME");
}

/// A file of `tests/compat/`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat").join(name)
}

/// Run `cmd` with no input, killing it after `timeout`.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Output {
    let out = tempfile::tempdir().expect("tempdir");
    let (stdout, stderr) = (out.path().join("stdout"), out.path().join("stderr"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut status = None;
    if !eventually(timeout, || {
        status = child.try_wait().expect("wait");
        status.is_some()
    }) {
        let _ = child.kill();
        status = Some(child.wait().expect("wait"));
    }
    Output {
        status: status.expect("exited"),
        stdout: std::fs::read(stdout).unwrap_or_default(),
        stderr: std::fs::read(stderr).unwrap_or_default(),
    }
}

/// Run a client script against `pooler`; the JSON object it printed last.
pub fn run_json(pooler: &Pooler, mut cmd: Command, what: &str) -> serde_json::Value {
    connection_env(&mut cmd, pooler.port, DB);
    let out = run_bounded(&mut cmd, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed ({}):\n{stdout}\n{stderr}\npooler log:\n{}", out.status, pooler.log());
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{what} printed no JSON ({e}):\n{stdout}\n{stderr}"))
}

/// What `sql` returns on `database` run directly (not through the pooler)
/// as the superuser: unaligned, `|` between columns.
pub fn direct(database: &str, sql: &str) -> String {
    postgres().psql_on(database, sql)
}

// ---------------------------------------------------------------- psql

/// psql with a script on standard input; its output (unaligned, tuples
/// only) and its messages.
fn psql_script(pooler: &Pooler, sql: &str) -> (String, String) {
    let mut cmd = Command::new(postgres().bin("psql"));
    cmd.args(["-X", "-A", "-t", "-q", "-w", "-v", "ON_ERROR_STOP=1", "-f", "-"]);
    connection_env(&mut cmd, pooler.port, DB);
    let out = tools::run_with_input(&mut cmd, sql);
    assert!(
        out.status.success(),
        "psql failed:\n{}{}\npooler log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        pooler.log()
    );
    (String::from_utf8_lossy(&out.stdout).trim().to_string(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// psql: `\copy` a file in, read it back with a query and with `\copy` out,
/// an error that rolls back a transaction, and a committed one.
fn psql_suite(mode: Mode) {
    let pooler = mode.pooler();
    let table = format!("psql_{}", mode.tag());
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.csv");
    let output = dir.path().join("out.csv");
    let rows: String = (1..=500).map(|i| format!("{i},name {i}\n")).collect();
    std::fs::write(&input, &rows).expect("write input");
    let (out, messages) = psql_script(
        &pooler,
        &format!(
            "DROP TABLE IF EXISTS {table};\n\
             CREATE TABLE {table} (id int PRIMARY KEY, name text);\n\
             \\copy {table} FROM '{input}' WITH (FORMAT csv)\n\
             SELECT count(*), sum(id), max(name) FROM {table};\n\
             \\copy (SELECT id, name FROM {table} WHERE id % 100 = 0 ORDER BY id) TO '{output}' WITH (FORMAT csv)\n\
             BEGIN;\n\
             INSERT INTO {table} VALUES (1000, 'rolled back');\n\
             \\set ON_ERROR_STOP 0\n\
             INSERT INTO {table} VALUES (1, 'duplicate');\n\
             \\set ON_ERROR_STOP 1\n\
             ROLLBACK;\n\
             BEGIN;\n\
             INSERT INTO {table} VALUES (2000, 'kept');\n\
             COMMIT;\n\
             SELECT count(*), string_agg(name, ';' ORDER BY id) FILTER (WHERE id >= 1000) FROM {table};\n",
            input = input.display(),
            output = output.display()
        ),
    );
    assert_eq!(out, "500|125250|name 99\n501|kept", "{messages}\n{}", pooler.log());
    assert!(messages.contains("duplicate key value violates unique constraint"), "{messages}");
    let copied = std::fs::read_to_string(&output).expect("\\copy out wrote its file");
    let expected: String = (1..=5).map(|i| format!("{0},name {0}\n", i * 100)).collect();
    assert_eq!(copied, expected);
    assert_eq!(direct(DB, &format!("SELECT count(*) FROM {table}")), "501");
    pooler.wait_idle();
}

#[test]
fn psql_session_pass_through() {
    psql_suite(Mode::SessionPassThrough);
}

#[test]
fn psql_session_vault() {
    psql_suite(Mode::SessionVault);
}

#[test]
fn psql_transaction_vault() {
    psql_suite(Mode::TransactionVault);
}

// ------------------------------------------------------------- pgbench

/// pgbench on its own database through `pooler`: `pgbench -i`, then a
/// short run per query mode, 8 clients; checks every transaction ran and
/// the balances agree with the history.
fn pgbench_suite(mode: Mode, query_modes: &[&str], database: &str) {
    own_database(database);
    let pooler = mode.pooler();
    let bench = |args: &[&str]| {
        let mut cmd = Command::new(postgres().bin("pgbench"));
        cmd.args(args).arg(database);
        connection_env(&mut cmd, pooler.port, database);
        let out = run_bounded(&mut cmd, Duration::from_secs(120));
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "pgbench {args:?}: {text}\npooler log:\n{}", pooler.log());
        text
    };
    bench(&["-i", "-s", "1", "-q"]);
    for query_mode in query_modes {
        // A thread per client: pgbench -M prepared prepares synchronously,
        // which under transaction pooling would stall a thread's other
        // clients, mid-transaction, while one of them waits for a connection.
        let text = bench(&["-n", "-M", query_mode, "-c", "8", "-j", "8", "-t", "50"]);
        assert!(text.contains("number of failed transactions: 0"), "-M {query_mode}: {text}");
        assert!(text.contains("number of transactions actually processed: 400/400"), "-M {query_mode}: {text}");
    }
    let runs = 400 * query_modes.len();
    let check = direct(
        database,
        "SELECT (SELECT count(*) FROM pgbench_history), \
                (SELECT sum(delta) FROM pgbench_history) = (SELECT sum(abalance) FROM pgbench_accounts), \
                (SELECT sum(bbalance) FROM pgbench_branches) = (SELECT sum(tbalance) FROM pgbench_tellers), \
                (SELECT sum(delta) FROM pgbench_history) = (SELECT sum(bbalance) FROM pgbench_branches)",
    );
    assert_eq!(check, format!("{runs}|t|t|t"));
    pooler.wait_idle();
}

#[test]
fn pgbench_session_pass_through() {
    pgbench_suite(Mode::SessionPassThrough, &["simple", "extended", "prepared"], "compat_bench_pt");
}

#[test]
fn pgbench_session_vault() {
    pgbench_suite(Mode::SessionVault, &["simple", "extended", "prepared"], "compat_bench_vault");
}

#[test]
fn pgbench_transaction_vault() {
    pgbench_suite(Mode::TransactionVault, &["simple", "extended"], "compat_bench_tx");
}

#[test]
fn pgbench_prepared_transaction_vault() {
    pgbench_suite(Mode::TransactionVault, &["prepared"], "compat_bench_tx_prepared");
}
