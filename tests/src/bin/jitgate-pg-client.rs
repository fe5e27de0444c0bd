//! A real PostgreSQL driver client for the end-to-end tests: `tokio-postgres` (extended query
//! protocol, binary result format) runs each SQL argument against `host:port/db` with no password
//! and prints the rows as `|`-separated text, one line per row. On a server error it prints
//! `ERROR <SQLSTATE> <message>` and goes on with the next statement in the same session.
//!
//! Usage: `jitgate-pg-client HOST PORT DB SQL...`, or `jitgate-pg-client HOST PORT DB --redefine
//! NAME_SQL REAL_SQL`: prepare NAME_SQL (the driver caches its row shape), redefine the same
//! server-side statement with SQL `DEALLOCATE`/`PREPARE` as REAL_SQL, then execute the cached
//! statement, which now runs REAL_SQL — a client that never describes what it executes.
//!
//! `jitgate-pg-client HOST PORT DB --params SQL VALUE...` runs one statement with its `$n`
//! parameters bound to the text VALUEs (`env:NAME`: the value of the variable NAME).
//!
//! `jitgate-pg-client HOST PORT DB --corpus FILE` runs every entry of the masking corpus FILE
//! (`tests/python/masking_corpus.json`), each on a fresh connection, and prints one JSON object
//! per entry with everything the driver received (see [`corpus`]).
//!
//! `jitgate-pg-client --scenario NAME CONNSTR` runs one conformance scenario (see
//! [`scenarios`]) against a libpq keyword connection string and prints its transcript.

#[path = "jitgate-pg-client/corpus.rs"]
mod corpus;
#[path = "jitgate-pg-client/scenarios.rs"]
mod scenarios;

use anyhow::Context as _;
use tokio_postgres::types::Type;
use tokio_postgres::{NoTls, Row};

fn cell(row: &Row, i: usize) -> String {
    let ty = row.columns()[i].type_().clone();
    let text = match ty {
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)
            .map(|v| v.map(|v| v.to_string())),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)
            .map(|v| v.map(|v| v.to_string())),
        Type::INT8 => row
            .try_get::<_, Option<i64>>(i)
            .map(|v| v.map(|v| v.to_string())),
        _ => row.try_get::<_, Option<String>>(i),
    };
    match text {
        Ok(Some(v)) => v,
        Ok(None) => "NULL".to_owned(),
        Err(e) => format!("<undecodable {ty}: {e}>"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, name, config] = &args[..]
        && flag == "--scenario"
    {
        return scenarios::run(name, config).await;
    }
    let [host, port, db, statements @ ..] = &args[..] else {
        anyhow::bail!("usage: jitgate-pg-client HOST PORT DB SQL...");
    };
    let config = format!("host={host} port={port} dbname={db} user=ci connect_timeout=10");
    if let [flag, path] = statements
        && flag == "--corpus"
    {
        return corpus::run(&config, path).await;
    }
    let (client, connection) = tokio_postgres::connect(&config, NoTls)
        .await
        .context("connecting")?;
    let driver = tokio::spawn(connection);
    if let [flag, first, real] = statements
        && flag == "--redefine"
    {
        let statement = client.prepare(first).await.context("prepare")?;
        // The driver's own name for it, as the server lists protocol-level statements.
        let listed = client
            .query_one(
                "SELECT name FROM pg_prepared_statements WHERE NOT from_sql AND statement = $1",
                &[&first.as_str()],
            )
            .await
            .context("finding the statement's name")?;
        let name: String = listed.get(0);
        client
            .batch_execute(&format!("DEALLOCATE {name}; PREPARE {name} AS {real}"))
            .await
            .context("redefining")?;
        for row in client.query(&statement, &[]).await.context("execute")? {
            let cells: Vec<String> = (0..row.len()).map(|i| cell(&row, i)).collect();
            println!("{}", cells.join("|"));
        }
        drop(client);
        let _ = driver.await;
        return Ok(());
    }
    if let [flag, sql, values @ ..] = statements
        && flag == "--params"
    {
        // One statement with text parameters (the driver binds them in binary format).
        // `env:NAME` takes the value from the environment, so it is not on the command line.
        let values: Vec<String> = values
            .iter()
            .map(|v| match v.strip_prefix("env:") {
                Some(name) => std::env::var(name).with_context(|| format!("${name}")),
                None => Ok(v.clone()),
            })
            .collect::<anyhow::Result<_>>()?;
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
            .iter()
            .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        for row in client.query(sql.as_str(), &params).await.context("query")? {
            let cells: Vec<String> = (0..row.len()).map(|i| cell(&row, i)).collect();
            println!("{}", cells.join("|"));
        }
        drop(client);
        let _ = driver.await;
        return Ok(());
    }
    for sql in statements {
        match client.query(sql.as_str(), &[]).await {
            Ok(rows) => {
                for row in rows {
                    let cells: Vec<String> = (0..row.len()).map(|i| cell(&row, i)).collect();
                    println!("{}", cells.join("|"));
                }
            }
            Err(e) => match e.as_db_error() {
                Some(db) => println!("ERROR {} {}", db.code().code(), db.message()),
                None => println!("ERROR {e}"),
            },
        }
    }
    drop(client);
    let _ = driver.await;
    Ok(())
}
