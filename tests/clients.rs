//! Real client libraries through the daemon: libpq (psql), asyncpg (whose
//! SCRAM client sends a 32-character nonce where libpq sends 24) and
//! node-postgres.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// A directory holding asyncpg, installed there with pip on first use.
fn asyncpg() -> PathBuf {
    common::tools::python_package("asyncpg", "asyncpg")
}

/// Run asyncpg against the pooler; returns "user pid" or the error's class
/// and SQLSTATE.
fn asyncpg_login(pooler: &Pooler, user: &str, password: &str) -> String {
    let script = r#"
import asyncio, sys, asyncpg
async def main():
    try:
        c = await asyncpg.connect(host="127.0.0.1", port=int(sys.argv[1]), user=sys.argv[2],
                                  password=sys.argv[3], database=sys.argv[4], ssl=False, timeout=10)
    except asyncpg.PostgresError as e:
        print(type(e).__name__, e.sqlstate)
        return
    row = await c.fetchrow("SELECT current_user::text AS u, pg_backend_pid() AS p")
    print(row["u"], row["p"])
    await c.close()
asyncio.run(main())
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args([&pooler.port.to_string(), user, password, DATABASE])
        .env("PYTHONPATH", asyncpg())
        .output()
        .expect("python3");
    assert!(out.status.success(), "asyncpg script failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn asyncpg_logs_in_through_the_vault_and_is_pooled() {
    let pooler = Pooler::start(PoolerOptions {
        hba: "host all all all scram-sha-256\n".into(),
        users: vec![(SCRAM_USER, SCRAM_PASSWORD)],
        ..Default::default()
    });
    let first = asyncpg_login(&pooler, SCRAM_USER, SCRAM_PASSWORD);
    let (user, pid) = first.split_once(' ').unwrap_or_else(|| panic!("unexpected output {first:?}\n{}", pooler.log()));
    assert_eq!(user, SCRAM_USER);
    pooler.wait_idle();
    let second = asyncpg_login(&pooler, SCRAM_USER, SCRAM_PASSWORD);
    assert_eq!(second, format!("{SCRAM_USER} {pid}"), "the second asyncpg client reuses the backend");
    assert_eq!(asyncpg_login(&pooler, SCRAM_USER, "wrong"), "InvalidPasswordError 28P01");
}

fn psql(pooler: &Pooler, user: &str, password: &str, sql: &str) -> std::process::Output {
    let pg = postgres();
    Command::new(pg.bin("psql"))
        .args(["-h", "127.0.0.1", "-p", &pooler.port.to_string(), "-U", user, "-d", DATABASE])
        .args(["-X", "-A", "-t", "-w", "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGSSLMODE", "disable")
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql")
}

#[test]
fn psql_through_the_vault_with_scram_and_md5() {
    for method in ["scram-sha-256", "md5"] {
        let pooler = Pooler::start(PoolerOptions {
            hba: format!("host all all all {method}\n"),
            users: vec![(SCRAM_USER, SCRAM_PASSWORD), (MD5_USER, MD5_PASSWORD)],
            ..Default::default()
        });
        for (user, password) in [(SCRAM_USER, SCRAM_PASSWORD), (MD5_USER, MD5_PASSWORD)] {
            let out = psql(&pooler, user, password, "SELECT current_user");
            assert!(out.status.success(), "{method} {user}: {}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), user);
            let out = psql(&pooler, user, "wrong", "SELECT 1");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{method} {user}: a wrong password was accepted");
            assert!(stderr.contains(&format!("password authentication failed for user \"{user}\"")), "{stderr}");
        }
    }
}

/// A directory holding node-postgres (`pg`), installed there with npm on
/// first use.
fn node_postgres() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("node-postgres");
        if !dir.join("node_modules/pg/package.json").exists() {
            std::fs::create_dir_all(&dir).expect("node-postgres dir");
            let out = Command::new("npm")
                .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
                .arg(&dir)
                .arg("pg@8")
                .output()
                .expect("run npm");
            assert!(out.status.success(), "npm install pg failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        dir.join("node_modules")
    })
    .clone()
}

/// node-postgres against the pooler; returns "user pid" or "error CODE".
fn node_login(pooler: &Pooler, user: &str, password: &str) -> String {
    let script = r#"
const { Client } = require("pg");
const [port, user, password, database] = process.argv.slice(1);
const c = new Client({ host: "127.0.0.1", port: Number(port), user, password, database, ssl: false });
c.connect()
  .then(() => c.query("SELECT current_user::text AS u, pg_backend_pid() AS p"))
  .then((r) => { console.log(r.rows[0].u + " " + r.rows[0].p); return c.end(); })
  .catch((e) => { console.log("error " + e.code); process.exit(0); });
"#;
    let out = Command::new("node")
        .arg("-e")
        .arg(script)
        .args([&pooler.port.to_string(), user, password, DATABASE])
        .env("NODE_PATH", node_postgres())
        .output()
        .expect("node");
    assert!(out.status.success(), "node-postgres script failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn node_postgres_logs_in_through_the_vault_and_is_pooled() {
    let pooler = Pooler::start(PoolerOptions {
        hba: "host all all all scram-sha-256\n".into(),
        users: vec![(SCRAM_USER, SCRAM_PASSWORD)],
        ..Default::default()
    });
    let first = node_login(&pooler, SCRAM_USER, SCRAM_PASSWORD);
    let (user, pid) = first.split_once(' ').unwrap_or_else(|| panic!("unexpected output {first:?}\n{}", pooler.log()));
    assert_eq!(user, SCRAM_USER);
    pooler.wait_idle();
    assert_eq!(node_login(&pooler, SCRAM_USER, SCRAM_PASSWORD), format!("{SCRAM_USER} {pid}"));
    assert_eq!(node_login(&pooler, SCRAM_USER, "wrong"), "error 28P01");
}
