//! Conformance scenarios of the Rust driver (`jitgate-pg-client --scenario NAME CONNSTR`): each
//! prints a stable text transcript (rows, command tags, SQLSTATEs, notifications) that the
//! conformance suite compares between a direct run and a run through the agent.
//!
//! tokio-postgres pipelines requests that are polled together, uses unnamed and named prepared
//! statements with binary results, portals with row limits (PortalSuspended) inside a
//! transaction, the simple protocol for `simple_query`/`batch_execute`, and a CancelRequest on
//! a new connection to the same address for `CancelToken::cancel_query`.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client, NoTls, SimpleQueryMessage};

/// Runs scenario `name` against `config` (a libpq keyword string), printing its transcript.
pub async fn run(name: &str, config: &str) -> anyhow::Result<()> {
    let (mut client, mut connection) = tokio_postgres::connect(config, NoTls)
        .await
        .context("connecting")?;
    // Driving the connection by hand hands out notifications and notices as they arrive.
    let (events, mut received) = mpsc::unbounded_channel::<String>();
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            let line = match message {
                Ok(AsyncMessage::Notification(n)) => {
                    format!("notification {} {:?}", n.channel(), n.payload())
                }
                Ok(AsyncMessage::Notice(notice)) => {
                    format!("notice {} {}", notice.code().code(), notice.message())
                }
                Ok(_) => "other async message".to_owned(),
                Err(e) => format!("connection error {e}"),
            };
            let _ = events.send(line);
        }
    });
    match name {
        "simple" => simple(&client).await?,
        "extended" => extended(&client).await?,
        "pipeline" => pipeline(&client).await?,
        "portal" => portal(&mut client).await?,
        "notify" => {
            notify(&client, config).await?;
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut got = 0;
            while got < 4 && Instant::now() < deadline {
                if let Ok(Some(line)) =
                    tokio::time::timeout(Duration::from_millis(200), received.recv()).await
                {
                    println!("{line}");
                    got += 1;
                }
            }
        }
        "cancel" => cancel(&client).await?,
        other => bail!("no scenario {other:?}"),
    }
    drop(client);
    let _ = driver.await;
    // Notices that arrived with the last results.
    while let Ok(line) = received.try_recv() {
        println!("{line}");
    }
    Ok(())
}

/// `SQLSTATE message` of a failed request, or the driver's own error.
fn failure(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("ERROR {} {}", db.code().code(), db.message()),
        None => format!("ERROR {e}"),
    }
}

fn print_simple(messages: &[SimpleQueryMessage]) {
    for message in messages {
        match message {
            SimpleQueryMessage::Row(row) => {
                let cells: Vec<&str> = (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL"))
                    .collect();
                println!("row {}", cells.join("|"));
            }
            SimpleQueryMessage::CommandComplete(n) => println!("complete {n}"),
            SimpleQueryMessage::RowDescription(columns) => {
                let names: Vec<&str> = columns.iter().map(|c| c.name()).collect();
                println!("columns {}", names.join(","));
            }
            _ => println!("other"),
        }
    }
}

async fn simple(client: &Client) -> anyhow::Result<()> {
    for sql in [
        "SELECT id, name, price, tags, data, blob FROM conf_items WHERE id < 4 ORDER BY id; \
         SELECT NULL::int, 'x'",
        "BEGIN; UPDATE conf_counters SET n = 5 WHERE id = 1; SELECT 1 / 0; SELECT 'never'",
        "SELECT n FROM conf_counters WHERE id = 1",
        "ROLLBACK",
        "SELECT n FROM conf_counters WHERE id = 1",
        "",
        "INSERT INTO conf_log (note) VALUES ('a'), ('b'); DELETE FROM conf_log WHERE note = 'a'",
        "SELECT conf_notice('rust')",
        "SELECT * FROM no_such_table",
    ] {
        match client.simple_query(sql).await {
            Ok(messages) => print_simple(&messages),
            Err(e) => println!("{}", failure(&e)),
        }
    }
    client
        .batch_execute("BEGIN; INSERT INTO conf_log (note) VALUES ('batch'); COMMIT")
        .await
        .context("batch")?;
    let rows = client
        .simple_query("SELECT note FROM conf_log ORDER BY id")
        .await?;
    print_simple(&rows);
    Ok(())
}

async fn extended(client: &Client) -> anyhow::Result<()> {
    let statement = client
        .prepare("SELECT id, name, price::text, flag, blob, ratio, tags FROM conf_items WHERE id = ANY($1) ORDER BY id")
        .await?;
    let types: Vec<String> = statement
        .columns()
        .iter()
        .map(|c| c.type_().to_string())
        .collect();
    println!("columns {}", types.join(","));
    for ids in [vec![1_i32, 2, 50], vec![199, 200], vec![]] {
        for row in client.query(&statement, &[&ids]).await? {
            let id: i32 = row.get(0);
            let name: String = row.get(1);
            let price: Option<String> = row.get(2);
            let flag: bool = row.get(3);
            let blob: Vec<u8> = row.get(4);
            let ratio: f64 = row.get(5);
            let tags: Option<Vec<String>> = row.get(6);
            println!("row {id}|{name}|{price:?}|{flag}|{blob:?}|{ratio}|{tags:?}");
        }
    }
    let params: (i64, &str, Option<&str>, &[u8]) = (i64::MAX, "ünï", None, b"\x00\x01");
    let row = client
        .query_one(
            "SELECT $1::int8 - 1, $2::text || '!', $3::text IS NULL, length($4::bytea)",
            &[&params.0, &params.1, &params.2, &params.3],
        )
        .await?;
    let (a, b, c, d): (i64, String, bool, i32) = (row.get(0), row.get(1), row.get(2), row.get(3));
    println!("params {a}|{b}|{c}|{d}");
    let n = client
        .execute(
            "UPDATE conf_items SET flag = NOT flag WHERE id <= $1",
            &[&5_i32],
        )
        .await?;
    println!("updated {n}");
    for sql in [
        "SELECT 1 / $1::int",
        "INSERT INTO conf_items (id, name) VALUES ($1, 'dup')",
    ] {
        match client.execute(sql, &[&0_i32]).await {
            Ok(n) => println!("ok {n}"),
            Err(e) => println!("{}", failure(&e)),
        }
    }
    match client
        .prepare("SELECT * FROM no_such_table WHERE x = $1")
        .await
    {
        Ok(_) => println!("prepared?"),
        Err(e) => println!("{}", failure(&e)),
    }
    let again = client.query(&statement, &[&vec![3_i32]]).await?;
    println!("reused {}", again.len());
    Ok(())
}

async fn pipeline(client: &Client) -> anyhow::Result<()> {
    // Prepared first, so the five executions below go out in this order, each with its Sync.
    let count = client.prepare("SELECT count(*) FROM conf_items").await?;
    let insert = client
        .prepare("INSERT INTO conf_log (note) VALUES ('piped')")
        .await?;
    let broken = client
        .prepare("SELECT 1 / (id - id) FROM conf_items")
        .await?;
    let after = client.prepare("SELECT note FROM conf_log").await?;
    let wide = client
        .prepare("SELECT i, repeat('p', 100) FROM generate_series(1, 2000) i")
        .await?;
    let count = client.query_one(&count, &[]);
    let insert = client.execute(&insert, &[]);
    let broken = client.query(&broken, &[]);
    let after = client.query(&after, &[]);
    let wide = client.query(&wide, &[]);
    let (count, insert, broken, after, wide) = tokio::join!(count, insert, broken, after, wide);
    println!(
        "count {}",
        count
            .map(|r| r.get::<_, i64>(0).to_string())
            .unwrap_or_else(|e| failure(&e))
    );
    println!(
        "insert {}",
        insert
            .map(|n| n.to_string())
            .unwrap_or_else(|e| failure(&e))
    );
    println!(
        "broken {}",
        broken
            .map(|r| r.len().to_string())
            .unwrap_or_else(|e| failure(&e))
    );
    println!(
        "after {}",
        after
            .map(|r| r.len().to_string())
            .unwrap_or_else(|e| failure(&e))
    );
    println!(
        "wide {}",
        wide.map(|r| r.len().to_string())
            .unwrap_or_else(|e| failure(&e))
    );
    let values: Vec<i32> = (0..30).collect();
    let params: Vec<[&(dyn ToSql + Sync); 1]> = values.iter().map(|v| [v as _]).collect();
    let many = join_all(
        params
            .iter()
            .map(|p| client.query_one("SELECT $1::int * 3", p))
            .collect(),
    )
    .await;
    let many: Vec<String> = many
        .iter()
        .map(|r| match r {
            Ok(row) => row.get::<_, i32>(0).to_string(),
            Err(e) => failure(e),
        })
        .collect();
    println!("many {}", many.join(","));
    Ok(())
}

/// Polls every future together (so the driver pipelines their requests) until all are done.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

async fn portal(client: &mut Client) -> anyhow::Result<()> {
    let transaction = client.transaction().await?;
    let statement = transaction
        .prepare("SELECT id, name FROM conf_items WHERE id > $1 ORDER BY id")
        .await?;
    let first = transaction.bind(&statement, &[&150_i32]).await?;
    let second = transaction
        .bind("SELECT i FROM generate_series(1, 25) i", &[])
        .await?;
    // Two open portals read in turns, seven rows at a time.
    loop {
        let a = transaction.query_portal(&first, 7).await?;
        let b = transaction.query_portal(&second, 7).await?;
        let ids: Vec<String> = a.iter().map(|r| r.get::<_, i32>(0).to_string()).collect();
        let is: Vec<String> = b.iter().map(|r| r.get::<_, i32>(0).to_string()).collect();
        println!("chunk {} / {}", ids.join(","), is.join(","));
        if a.is_empty() && b.is_empty() {
            break;
        }
    }
    let failing = transaction
        .bind("SELECT 10 / (i - 20) FROM generate_series(1, 30) i", &[])
        .await?;
    for _ in 0..3 {
        match transaction.query_portal(&failing, 8).await {
            Ok(rows) => println!("rows {}", rows.len()),
            Err(e) => {
                println!("{}", failure(&e));
                break;
            }
        }
    }
    match transaction.rollback().await {
        Ok(()) => println!("rolled back"),
        Err(e) => println!("{}", failure(&e)),
    }
    let row = client
        .query_one("SELECT count(*) FROM conf_items", &[])
        .await?;
    println!("after {}", row.get::<_, i64>(0));
    Ok(())
}

async fn notify(client: &Client, config: &str) -> anyhow::Result<()> {
    client.batch_execute("LISTEN conf_chan").await?;
    let (notifier, connection) = tokio_postgres::connect(config, NoTls).await?;
    let driver = tokio::spawn(connection);
    notifier
        .batch_execute("NOTIFY conf_chan, 'hello'; SELECT pg_notify('conf_chan', 'ünï')")
        .await?;
    notifier
        .batch_execute("BEGIN; NOTIFY conf_chan, 'tx'; NOTIFY conf_chan, 'tx'; COMMIT")
        .await?;
    drop(notifier);
    let _ = driver.await;
    // The notice arrives on the listening connection as well.
    client
        .simple_query("SELECT conf_notice('listener')")
        .await?;
    Ok(())
}

async fn cancel(client: &Client) -> anyhow::Result<()> {
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(NoTls).await
    });
    let started = Instant::now();
    match client.query("SELECT pg_sleep(30)", &[]).await {
        Ok(_) => println!("not cancelled"),
        Err(e) => println!("{}", failure(&e)),
    }
    let sent = canceller.await.context("canceller")?;
    println!(
        "cancel request {}",
        if sent.is_ok() { "sent" } else { "failed" }
    );
    println!("quick {}", started.elapsed() < Duration::from_secs(10));
    let row = client.query_one("SELECT 'still usable'", &[]).await?;
    println!("after {}", row.get::<_, &str>(0));
    Ok(())
}
