//! Python clients: psycopg 3 (libpq underneath), asyncpg (its own protocol
//! code) and SQLAlchemy 2 on psycopg.

use super::*;
use serde_json::{Value, json};

fn psycopg() -> PathBuf {
    tools::python_package("psycopg[binary]", "psycopg")
}

fn asyncpg() -> PathBuf {
    tools::python_package("asyncpg", "asyncpg")
}

fn sqlalchemy() -> PathBuf {
    tools::python_package("sqlalchemy", "sqlalchemy")
}

/// Run `tests/compat/<name>` with `args`, the packages in `path` importable.
fn python(pooler: &Pooler, mode: Mode, path: &[PathBuf], name: &str, args: &[&str]) -> Value {
    let mut cmd = Command::new("python3");
    cmd.arg(script(name))
        .args(args)
        .env("PYTHONPATH", std::env::join_paths(path).expect("PYTHONPATH"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("COMPAT_TAG", mode.tag());
    run_json(pooler, cmd, name)
}

// ------------------------------------------------------------- psycopg

/// `SELECT n * 2` and `SELECT n + 1000` from two connections, in turn.
fn check_psycopg_prepared(result: &Value) {
    let doubled: Vec<i64> = (0..12).map(|i| i * 2).collect();
    let plus: Vec<i64> = (0..12).map(|i| i + 1000).collect();
    assert_eq!(result["doubled"], json!(doubled));
    assert_eq!(result["plus"], json!(plus));
    assert_eq!(result["inside"], json!([0, 2, 4]));
}

fn psycopg_suite(mode: Mode) {
    let pooler = mode.pooler();
    let session = mode != Mode::TransactionVault;
    // prepare_threshold=0: every statement is prepared on first use; under
    // transaction pooling None: none is (psycopg's default, 5, prepares a
    // statement on its fifth run).
    let threshold = if session { "0" } else { "none" };
    let checks = ["prepared", "copy", "notice", "error", "cancel"];
    let mut args = vec![threshold];
    args.extend(checks);
    let result = python(&pooler, mode, &[psycopg()], "psycopg_suite.py", &args);
    check_psycopg_prepared(&result["prepared"]);
    let prepared_on_server = if session { 1 } else { 0 };
    assert_eq!(result["prepared"]["server_prepared"], prepared_on_server, "{result}");
    assert_eq!(
        result["copy"],
        json!({"count": 1000, "sum": 500500, "out": [["250", "row 250"], ["500", "row 500"], ["750", "row 750"], ["1000", "row 1000"]]})
    );
    assert_eq!(result["notice"], json!([["NOTICE", "compat notice 42"], ["WARNING", "compat warning"]]));
    assert_eq!(
        result["error"],
        json!({"division": ["22012", "division by zero"], "duplicate": "23505", "undefined": "42703",
               "aborted": "25P02", "rows": [1]})
    );
    assert_eq!(
        result["cancel"],
        json!({"seen": true, "outcome": "57014", "quick": true, "after": "alive", "still_running": 0})
    );
    pooler.wait_idle();
}

#[test]
fn psycopg_session_pass_through() {
    psycopg_suite(Mode::SessionPassThrough);
}

#[test]
fn psycopg_session_vault() {
    psycopg_suite(Mode::SessionVault);
}

#[test]
fn psycopg_transaction_vault() {
    psycopg_suite(Mode::TransactionVault);
}

#[test]
fn psycopg_prepared_transaction_vault() {
    let pooler = Mode::TransactionVault.pooler();
    let args = ["0", "prepared", "evicted"];
    let result = python(&pooler, Mode::TransactionVault, &[psycopg()], "psycopg_suite.py", &args);
    check_psycopg_prepared(&result["prepared"]);
    let evicted: Vec<i64> = (0..3).flat_map(|round| (0..5).map(move |k| round * 10 + k)).collect();
    assert_eq!(result["evicted"], json!(evicted), "{result}");
    pooler.wait_idle();
}

// ------------------------------------------------------------- asyncpg

fn check_asyncpg_pool(mode: Mode, result: &Value) {
    assert_eq!(result["right"], 100, "{result}");
    assert_eq!(result["size"], 10, "{result}");
    let backends = result["backends"].as_u64().expect("backends");
    assert!((1..=mode.max_connections() as u64).contains(&backends), "{result}");
}

fn asyncpg_suite(mode: Mode) {
    let pooler = mode.pooler();
    let session = mode != Mode::TransactionVault;
    // asyncpg's statement cache names every statement; under transaction
    // pooling it is turned off (size 0: unnamed statements, sent as Parse,
    // Describe and Flush, then Bind, Execute and Sync, so one connection
    // serves both halves).
    let (cache, checks) = if session {
        ("100", &["prepare", "copy", "pool", "cancel"][..])
    } else {
        ("0", &["copy", "pool", "cancel"][..])
    };
    let mut args = vec![cache];
    args.extend(checks);
    let result = python(&pooler, mode, &[asyncpg()], "asyncpg_suite.py", &args);
    if session {
        check_asyncpg_prepare(&result["prepare"]);
        assert!(result["prepare"]["server_prepared"].as_u64().expect("count") >= 2, "{result}");
    }
    check_asyncpg_pool(mode, &result["pool"]);
    assert_eq!(
        result["copy"],
        json!({"status": "COPY 1000", "count": 1000, "sum": 500500, "amount": "125125.00", "max": "row 999"})
    );
    assert_eq!(
        result["cancel"],
        json!({"seen": true, "outcome": "cancelled", "quick": true, "after": "alive", "still_running": 0})
    );
    pooler.wait_idle();
}

fn check_asyncpg_prepare(result: &Value) {
    let rows: Vec<Value> = (0..10).map(|i| json!([i * 2, format!("t{i}")])).collect();
    let sums: Vec<i64> = (0..10).map(|i| i * (i + 1) / 2).collect();
    assert_eq!(result["rows"], json!(rows));
    assert_eq!(result["sums"], json!(sums));
    assert_eq!(result["inside"], 42);
    assert_eq!(result["again"], json!([5050, 100]));
}

#[test]
fn asyncpg_session_pass_through() {
    asyncpg_suite(Mode::SessionPassThrough);
}

#[test]
fn asyncpg_session_vault() {
    asyncpg_suite(Mode::SessionVault);
}

#[test]
fn asyncpg_transaction_vault() {
    asyncpg_suite(Mode::TransactionVault);
}

#[test]
fn asyncpg_prepared_transaction_vault() {
    let mode = Mode::TransactionVault;
    let pooler = mode.pooler();
    let result = python(&pooler, mode, &[asyncpg()], "asyncpg_suite.py", &["100", "prepare", "pool"]);
    check_asyncpg_prepare(&result["prepare"]);
    check_asyncpg_pool(mode, &result["pool"]);
    pooler.wait_idle();
}

// ---------------------------------------------------------- SQLAlchemy

fn sqlalchemy_suite(mode: Mode) {
    let pooler = mode.pooler();
    let threshold = if mode == Mode::TransactionVault { "none" } else { "5" };
    let result = python(&pooler, mode, &[sqlalchemy(), psycopg()], "sqlalchemy_suite.py", &[threshold]);
    assert_eq!(
        result,
        json!({
            "driver": "psycopg",
            "names": ["ada", "alan", "edsger", "grace"],
            "rolled_back": 0,
            "total": 4 * 100 + 2 * 10,
            "by_team": [["compilers", 2], ["languages", 2]],
            "updated": 2,
            "concurrent": 40,
        }),
        "{}",
        pooler.log()
    );
    pooler.wait_idle();
}

#[test]
fn sqlalchemy_session_pass_through() {
    sqlalchemy_suite(Mode::SessionPassThrough);
}

#[test]
fn sqlalchemy_session_vault() {
    sqlalchemy_suite(Mode::SessionVault);
}

#[test]
fn sqlalchemy_transaction_vault() {
    sqlalchemy_suite(Mode::TransactionVault);
}
