//! Shared prepared statements when what a text means differs or changes:
//! clients whose `search_path` (or another startup setting) differs get
//! statements of their own for the same text, and a statement the server
//! says no longer holds (a table it reads was altered) is prepared afresh
//! instead of failing for every later client, and a statement that changes
//! a setting, run by its name alone, still has its connection reset before
//! another client gets it.

mod common;

use common::*;
use std::time::Duration;

const PASSWORD: &str = "trust user password";

/// A transaction pool with one server connection, so that every client
/// meets what the others prepared on it.
fn one_connection_pool(database: &str) -> Pooler {
    postgres().database(database);
    Pooler::start(PoolerOptions {
        max_connections: 1,
        extra: "pipeline = transaction\nallow_unknown_users = off\n".into(),
        users: vec![(TRUST_USER, PASSWORD)],
        ..Default::default()
    })
}

fn connect(pooler: &Pooler, database: &str, options: Option<&str>) -> postgres::Client {
    let mut config = postgres::Config::new();
    config.host("127.0.0.1").port(pooler.port).user(TRUST_USER).dbname(database);
    if let Some(options) = options {
        config.options(options);
    }
    config.connect_timeout(Duration::from_secs(30));
    config.connect(postgres::NoTls).unwrap_or_else(|e| panic!("connect: {e}\n{}", pooler.log()))
}

/// Run `sql` directly in `database` as the test user.
fn as_owner(database: &str, sql: &str) {
    postgres().psql_on(database, &format!("SET ROLE {TRUST_USER}; {sql}"));
}

/// How many columns the first row of `sql` has, run as a prepared statement.
fn columns(client: &mut postgres::Client, sql: &str) -> Result<usize, postgres::Error> {
    Ok(client.query(sql, &[])?.first().map_or(0, |row| row.len()))
}

#[test]
fn clients_with_other_search_paths_get_statements_of_their_own() {
    const DB: &str = "prepared_search_path";
    let pooler = one_connection_pool(DB);
    as_owner(
        DB,
        "CREATE SCHEMA s1; CREATE SCHEMA s2; CREATE TABLE s1.tt (a int); CREATE TABLE s2.tt (a int, b int); \
         INSERT INTO s1.tt VALUES (1); INSERT INTO s2.tt VALUES (1, 2)",
    );
    let mut one = connect(&pooler, DB, Some("-c search_path=s1"));
    let mut two = connect(&pooler, DB, Some("-c search_path=s2"));
    for round in 0..2 {
        assert_eq!(columns(&mut one, "SELECT * FROM tt").expect("s1"), 1, "round {round}");
        assert_eq!(columns(&mut two, "SELECT * FROM tt").expect("s2"), 2, "round {round}");
    }
    // Without a search_path of their own, clients still share.
    let mut three = connect(&pooler, DB, None);
    assert_eq!(columns(&mut three, "SELECT * FROM s2.tt").expect("qualified"), 2);
}

#[test]
fn a_statement_whose_table_changed_is_prepared_afresh() {
    const DB: &str = "prepared_schema_change";
    let pooler = one_connection_pool(DB);
    as_owner(DB, "CREATE TABLE t (a int); INSERT INTO t VALUES (1)");
    // Two clients hold a statement of the text across the change.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut c = connect(&pooler, DB, None);
        let held = c.prepare("SELECT * FROM t").expect("prepare");
        assert_eq!(c.query(&held, &[]).expect("before the change")[0].len(), 1);
        holders.push((c, held));
    }
    as_owner(DB, "ALTER TABLE t ADD COLUMN b int");
    // A new client prepares the same text. It may meet the connection's old
    // copy once (PostgreSQL refuses it: its result type changed), not twice.
    let mut after = connect(&pooler, DB, None);
    let found = match columns(&mut after, "SELECT * FROM t") {
        Ok(n) => n,
        Err(e) => {
            assert_eq!(code_of(&e).as_deref(), Some("0A000"), "{e}");
            columns(&mut after, "SELECT * FROM t").unwrap_or_else(|e| panic!("prepared again: {e}"))
        }
    };
    assert_eq!(found, 2);
    let mut third = connect(&pooler, DB, None);
    assert_eq!(columns(&mut third, "SELECT * FROM t").expect("a later client"), 2);
    // The holders' statements were prepared before the change: each gets
    // 0A000 for it, as from its own statement on a direct connection, never
    // rows of a shape it was not told; prepared again, the text works.
    for (i, (c, held)) in holders.iter_mut().enumerate() {
        let e = c.query(&*held, &[]).expect_err("a statement prepared before the change");
        assert_eq!(code_of(&e).as_deref(), Some("0A000"), "holder {i}: {e}");
        let e = c.query(&*held, &[]).expect_err("and again");
        assert_eq!(code_of(&e).as_deref(), Some("0A000"), "holder {i}, twice: {e}");
        assert_eq!(columns(c, "SELECT * FROM t").expect("prepared again"), 2, "holder {i}");
    }
}

#[test]
fn a_setting_changed_by_a_prepared_statement_does_not_reach_the_next_client() {
    const DB: &str = "prepared_set_config";
    let pooler = one_connection_pool(DB);
    let mut a = connect(&pooler, DB, None);
    let mut b = connect(&pooler, DB, None);
    // Prepared once; each later run sends a Bind of the name alone, and
    // the text that changes the setting never crosses the wire again.
    let set = a.prepare("SELECT set_config('app.tenant', $1, false)").expect("prepare");
    for i in 0..4 {
        let tenant = format!("tenant{i}");
        a.query(&set, &[&tenant]).expect("set");
        let seen: String =
            b.query_one("SELECT coalesce(current_setting('app.tenant', true), '')", &[]).expect("read").get(0);
        assert!(!seen.starts_with("tenant"), "run {i}: the other client saw {seen:?}");
    }
    // A client that prepared the same text itself gets it from the shared
    // statement (its Parse is answered by the pooler): the same holds.
    let mut c = connect(&pooler, DB, None);
    let same = c.prepare("SELECT set_config('app.tenant', $1, false)").expect("prepare");
    c.query(&same, &[&"tenant-c".to_string()]).expect("set");
    let seen: String =
        b.query_one("SELECT coalesce(current_setting('app.tenant', true), '')", &[]).expect("read").get(0);
    assert_eq!(seen, "", "the other client saw c's setting");
}
