//! tokio-postgres on a current-thread runtime, with requests pipelined on
//! one connection: every query of a batch is written before any answer is
//! read.

use super::*;
use std::future::Future;
use std::sync::Arc;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};

fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(future)
}

async fn connect(port: u16) -> Result<Arc<Client>, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config.host("127.0.0.1").port(port).user(SCRAM_USER).password(SCRAM_PASSWORD).dbname(DB);
    config.connect_timeout(Duration::from_secs(20));
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("tokio-postgres connection: {e}");
        }
    });
    Ok(Arc::new(client))
}

/// `request(i)` for every `i` in `0..n`, all started before any is
/// awaited: on a current-thread runtime each task writes its request when
/// first polled, so the connection sends them all before reading answers.
async fn pipelined<T, F>(n: i32, request: impl Fn(i32) -> F) -> Vec<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(request(i))).collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task"));
    }
    answers
}

/// A named statement prepared outside a transaction and executed 20 times
/// in one pipeline; checks each answer, and that one backend served them
/// in session mode.
async fn prepared_pipeline(client: &Arc<Client>, mode: Mode) {
    let statement = client.prepare("SELECT $1::int * 2, $2::text, pg_backend_pid()").await.expect("prepare");
    let answers =
        pipelined(20, |i| {
            let (client, statement) = (client.clone(), statement.clone());
            async move {
                client.query_one(&statement, &[&i, &format!("n{i}")]).await.map(|r| (r.get(0), r.get(1), r.get(2)))
            }
        })
        .await;
    let mut backends = Vec::new();
    for (i, answer) in (0..).zip(answers) {
        let (doubled, tag, pid): (i32, String, i32) = answer.expect("pipelined prepared query");
        assert_eq!((doubled, tag), (i * 2, format!("n{i}")));
        backends.push(pid);
    }
    backends.dedup();
    if mode != Mode::TransactionVault {
        assert_eq!(backends.len(), 1, "one session, one backend: {backends:?}");
    }
}

fn tokio_suite(mode: Mode) {
    let pooler = mode.pooler();
    let table = format!("tokio_{}", mode.tag());
    block_on(async {
        let client = connect(pooler.port).await.unwrap_or_else(|e| panic!("connect: {e}\n{}", pooler.log()));
        if mode != Mode::TransactionVault {
            prepared_pipeline(&client, mode).await;
        }

        // Unnamed statements (Parse, Bind, Execute and Sync together), one
        // of which fails: the error is that query's alone.
        let answers = pipelined(20, |i| {
            let client = client.clone();
            async move {
                let sql = "SELECT 1000 / ($1::int - 7), $1::int + 1000";
                let row = client.query_typed_one(sql, &[(&i, Type::INT4)]).await;
                row.map(|r| (r.get::<_, i32>(0), r.get::<_, i32>(1)))
            }
        })
        .await;
        for (i, answer) in (0..).zip(answers) {
            match answer {
                Ok(values) => assert_eq!(values, (1000 / (i - 7), i + 1000)),
                Err(e) => {
                    assert_eq!(i, 7, "query {i} failed: {e}");
                    assert_eq!(e.code().map(|c| c.code()), Some("22012"));
                }
            }
        }

        // A prepared INSERT pipelined 50 times inside one transaction.
        client
            .batch_execute(&format!("DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (n int)"))
            .await
            .expect("table");
        client.batch_execute("BEGIN").await.expect("begin");
        let insert = client.prepare(&format!("INSERT INTO {table} VALUES ($1)")).await.expect("prepare insert");
        let inserted = pipelined(50, |i| {
            let (client, insert) = (client.clone(), insert.clone());
            async move { client.execute(&insert, &[&i]).await }
        })
        .await;
        assert!(inserted.iter().all(|n| matches!(n, Ok(1))), "{inserted:?}");
        client.batch_execute("COMMIT").await.expect("commit");
        let row =
            client.query_typed_one(&format!("SELECT count(*), sum(n) FROM {table}"), &[]).await.expect("read back");
        assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (50, 1225));
    });
    assert_eq!(direct(DB, &format!("SELECT count(*) FROM {table}")), "50");
    pooler.wait_idle();
}

#[test]
fn tokio_postgres_session_pass_through() {
    tokio_suite(Mode::SessionPassThrough);
}

#[test]
fn tokio_postgres_session_vault() {
    tokio_suite(Mode::SessionVault);
}

#[test]
fn tokio_postgres_transaction_vault() {
    tokio_suite(Mode::TransactionVault);
}

/// A tokio-postgres error with the server's SQLSTATE and message.
fn text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// Eight clients at once, each with its own named statement, each running
/// it twenty times one request at a time (under transaction pooling over
/// four server connections, so a statement is used on connections it was
/// not prepared on); then each in turn runs it in a pipeline of ten.
fn many_clients_prepared(mode: Mode) {
    let pooler = mode.pooler();
    let port = pooler.port;
    let outcome: Result<(), String> = block_on(async move {
        let clients = pipelined(8, move |k| async move {
            let client = connect(port).await.map_err(|e| format!("client {k} connect: {}", text(&e)))?;
            let sql = format!("SELECT $1::int * 2 + {k}");
            let statement = client.prepare(&sql).await.map_err(|e| format!("client {k} prepare: {}", text(&e)))?;
            for i in 0..20 {
                let row = client.query_one(&statement, &[&i]).await;
                let value: i32 = row.map_err(|e| format!("client {k} query {i}: {}", text(&e)))?.get(0);
                if value != i * 2 + k {
                    return Err(format!("client {k} query {i}: got {value}"));
                }
            }
            Ok((client, statement))
        })
        .await;
        for (k, client) in (0..).zip(clients) {
            let (client, statement) = client?;
            let answers = pipelined(10, |i| {
                let (client, statement) = (client.clone(), statement.clone());
                async move { client.query_one(&statement, &[&i]).await.map(|r| r.get::<_, i32>(0)) }
            })
            .await;
            for (i, answer) in (0..).zip(answers) {
                let value = answer.map_err(|e| format!("client {k} pipelined {i}: {}", text(&e)))?;
                if value != i * 2 + k {
                    return Err(format!("client {k} pipelined {i}: got {value}"));
                }
            }
        }
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}\n{}", pooler.log());
    }
    pooler.wait_idle();
}

#[test]
fn tokio_postgres_many_clients_session_pass_through() {
    many_clients_prepared(Mode::SessionPassThrough);
}

#[test]
fn tokio_postgres_many_clients_session_vault() {
    many_clients_prepared(Mode::SessionVault);
}

#[test]
fn tokio_postgres_prepared_transaction_vault() {
    many_clients_prepared(Mode::TransactionVault);
}

/// Twelve clients over four server connections, each sending ten
/// pipelines of ten unnamed queries: a client whose next requests are
/// already in its socket while it waits in line for a connection is served
/// like any other. Today such a client is taken for one that hung up
/// (actors/worker/acquire.rs, `Waiting::sleep`: readable data on the
/// client socket counts as gone) and its connection is closed.
#[test]
fn tokio_postgres_queued_pipelines_transaction_vault() {
    let pooler = Mode::TransactionVault.pooler();
    let port = pooler.port;
    let outcomes = block_on(pipelined(12, move |k| async move {
        let client = connect(port).await.map_err(|e| format!("client {k} connect: {}", text(&e)))?;
        for round in 0..10 {
            let answers = pipelined(10, |i| {
                let client = client.clone();
                async move {
                    let row = client.query_typed_one("SELECT $1::int * 2", &[(&i, Type::INT4)]).await;
                    row.map(|r| r.get::<_, i32>(0))
                }
            })
            .await;
            for (i, answer) in (0..).zip(answers) {
                let value = answer.map_err(|e| format!("client {k} round {round} query {i}: {}", text(&e)))?;
                if value != i * 2 {
                    return Err(format!("client {k} round {round} query {i}: got {value}"));
                }
            }
        }
        Ok(())
    }));
    let errors: Vec<String> = outcomes.into_iter().filter_map(Result::err).collect();
    assert!(errors.is_empty(), "{errors:?}\n{}", pooler.log());
    pooler.wait_idle();
}
