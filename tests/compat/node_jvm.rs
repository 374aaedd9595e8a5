//! node-postgres (npm `pg@8`) and pgjdbc (Debian's jar; the suite is
//! compiled with javac into the target directory).

use super::*;
use serde_json::{Value, json};

fn node(pooler: &Pooler, mode: Mode, checks: &[&str]) -> Value {
    let mut cmd = Command::new("node");
    cmd.arg(script("node_pg_suite.js"))
        .args(checks)
        .env("NODE_PATH", tools::npm_package("pg@8", "pg"))
        .env("COMPAT_TAG", mode.tag());
    run_json(pooler, cmd, "node_pg_suite.js")
}

/// The same name, q1, for different texts on two connections.
fn check_named(result: &Value) {
    let doubled: Vec<i64> = (0..10).map(|i| i * 2).collect();
    let plus: Vec<i64> = (0..10).map(|i| i + 1000).collect();
    assert_eq!(result["doubled"], json!(doubled), "{result}");
    assert_eq!(result["plus"], json!(plus), "{result}");
    assert_eq!(result["inside"], 42, "{result}");
}

fn node_suite(mode: Mode) {
    let pooler = mode.pooler();
    let session = mode != Mode::TransactionVault;
    let checks: &[&str] = if session { &["named", "pool", "pool_named"] } else { &["pool"] };
    let result = node(&pooler, mode, checks);
    if session {
        check_named(&result["named"]);
        assert_eq!(result["named"]["server_prepared"], 1, "{result}");
        assert_eq!(result["pool_named"], json!({"right": 50}));
    }
    let pool = &result["pool"];
    assert_eq!(pool["right"], 50, "{result}");
    assert_eq!(pool["kept"], json!([25, 5]), "{result}");
    assert_eq!(pool["error"], "22012", "{result}");
    let backends = pool["backends"].as_u64().expect("backends");
    assert!((1..=mode.max_connections() as u64).contains(&backends), "{result}");
    assert!((1..=10).contains(&pool["size"].as_u64().expect("size")), "{result}");
    pooler.wait_idle();
}

#[test]
fn node_postgres_session_pass_through() {
    node_suite(Mode::SessionPassThrough);
}

#[test]
fn node_postgres_session_vault() {
    node_suite(Mode::SessionVault);
}

#[test]
fn node_postgres_transaction_vault() {
    node_suite(Mode::TransactionVault);
}

#[test]
fn node_postgres_named_transaction_vault() {
    let pooler = Mode::TransactionVault.pooler();
    let result = node(&pooler, Mode::TransactionVault, &["named", "pool_named"]);
    check_named(&result["named"]);
    assert_eq!(result["pool_named"], json!({"right": 50}));
    pooler.wait_idle();
}

// -------------------------------------------------------------- pgjdbc

/// Debian's pgjdbc jar, installed with apt-get when missing.
fn pgjdbc_jar() -> PathBuf {
    tools::debian_file("/usr/share/java/postgresql.jar", "libpostgresql-jdbc-java")
}

/// The directory holding `JdbcSuite.class`, compiled with javac when
/// missing or older than its source.
fn jdbc_classes() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compat-java");
        let source = script("JdbcSuite.java");
        let class = dir.join("JdbcSuite.class");
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        if modified(&class).is_none() || modified(&class) < modified(&source) {
            let out = Command::new(tools::debian_command("javac", "default-jdk-headless"))
                .arg("-nowarn")
                .arg("-d")
                .arg(&dir)
                .arg("-cp")
                .arg(pgjdbc_jar())
                .arg(&source)
                .output()
                .expect("run javac");
            assert!(out.status.success(), "javac JdbcSuite.java: {}", String::from_utf8_lossy(&out.stderr));
        }
        dir
    })
    .clone()
}

/// Run JdbcSuite with driver `properties` ("name=value,..."); `tag` names
/// its table and its ApplicationName.
fn jdbc(pooler: &Pooler, tag: &str, properties: &str, checks: &[&str]) -> Value {
    let classpath = std::env::join_paths([jdbc_classes(), pgjdbc_jar()]).expect("classpath");
    let mut cmd = Command::new(tools::debian_command("java", "default-jdk-headless"));
    cmd.arg("-Xshare:auto")
        .arg("-XX:TieredStopAtLevel=1")
        .arg("-cp")
        .arg(classpath)
        .arg("JdbcSuite")
        .arg(properties)
        .args(checks)
        .env("COMPAT_TAG", tag);
    run_json(pooler, cmd, "JdbcSuite")
}

fn check_jdbc_prepared(result: &Value) {
    let doubled: Vec<i64> = (0..10).map(|i| i * 2).collect();
    let plus: Vec<i64> = (0..10).map(|i| i + 1000).collect();
    assert_eq!(result["doubled"], json!(doubled), "{result}");
    assert_eq!(result["plus"], json!(plus), "{result}");
    assert_eq!(result["inside"], 42, "{result}");
}

fn jdbc_suite(mode: Mode) {
    let pooler = mode.pooler();
    let session = mode != Mode::TransactionVault;
    // Under transaction pooling: prepareThreshold=0 keeps pgjdbc on unnamed
    // statements, and assumeMinServerVersion=9.0 makes it send
    // ApplicationName in the startup packet rather than with a SET after
    // logging in, which would last only until the end of that transaction.
    let properties = if session { "prepareThreshold=1" } else { "prepareThreshold=0,assumeMinServerVersion=9.0" };
    let result = jdbc(&pooler, mode.tag(), properties, &["prepared", "batch", "appname"]);
    check_jdbc_prepared(&result["prepared"]);
    assert_eq!(result["prepared"]["server_prepared"], if session { 1 } else { 0 }, "{result}");
    assert_eq!(result["batch"], json!({"updated": 500, "failed": "23505", "count": 500, "sum": 125250}));
    let name = format!("compat-jdbc-{}", mode.tag());
    assert_eq!(result["appname"], json!({"show": name, "activity": name}));
    pooler.wait_idle();
}

#[test]
fn pgjdbc_session_pass_through() {
    jdbc_suite(Mode::SessionPassThrough);
}

#[test]
fn pgjdbc_session_vault() {
    jdbc_suite(Mode::SessionVault);
}

#[test]
fn pgjdbc_transaction_vault() {
    jdbc_suite(Mode::TransactionVault);
}

#[test]
fn pgjdbc_prepared_transaction_vault() {
    let pooler = Mode::TransactionVault.pooler();
    let result = jdbc(
        &pooler,
        "tx_prepared",
        "prepareThreshold=1,assumeMinServerVersion=9.0",
        &["prepared", "batch", "appname", "concurrent"],
    );
    check_jdbc_prepared(&result["prepared"]);
    // Eight connections over the pool's four server connections.
    assert_eq!(result["concurrent"], 400, "{result}");
    assert_eq!(result["batch"], json!({"updated": 500, "failed": "23505", "count": 500, "sum": 125250}));
    let name = "compat-jdbc-tx_prepared";
    assert_eq!(result["appname"], json!({"show": name, "activity": name}));
    pooler.wait_idle();
}
