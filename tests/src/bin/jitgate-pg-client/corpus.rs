//! The masking corpus with tokio-postgres (`jitgate-pg-client HOST PORT DB --corpus FILE`):
//! every entry of `tests/python/masking_corpus.json` on a fresh connection, printed as one JSON
//! object per line in the shape `tests/python/masking_corpus.py` prints (see there).
//!
//! Results come in binary format; each cell is decoded from its raw bytes by type (integers,
//! floats, numeric, arrays of text and integers, jsonb) or else shown as lossy UTF-8, so text
//! inside records and bytea stays visible. The connection is polled by hand so notices,
//! notifications and the reported `application_name` are kept. Portals are read `PORTAL_ROWS`
//! rows at a time (`query_portal`), COPY with `copy_out`, several statements in one Query with
//! `simple_query` (text results).

use std::error::Error;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use serde_json::{Value, json};
use tokio_postgres::error::DbError;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{AsyncMessage, Client, NoTls, Row, SimpleQueryMessage};

const PORTAL_ROWS: i32 = 2;

/// Runs every entry of the corpus at `path` against `config`, printing one line per entry.
pub async fn run(config: &str, path: &str) -> anyhow::Result<()> {
    let corpus: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let entries = corpus["entries"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("{path}: no entries"))?;
    for entry in entries {
        let result = match tokio::time::timeout(
            Duration::from_secs(60),
            entry_result(config, entry),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => {
                let mut result = new_result(entry);
                result["client_error"] = json!("timed out after 60 s");
                result
            }
        };
        println!("{result}");
    }
    Ok(())
}

fn new_result(entry: &Value) -> Value {
    json!({"id": entry["id"], "steps": [], "notices": [], "notifications": [],
           "parameters": {}, "client_error": null})
}

/// What the hand-polled connection saw besides the responses.
#[derive(Default)]
struct Seen {
    notices: Vec<Value>,
    notifications: Vec<Value>,
    application_name: Option<String>,
    error: Option<String>,
}

async fn entry_result(config: &str, entry: &Value) -> Value {
    let mut result = new_result(entry);
    let (mut client, mut connection) = match tokio_postgres::connect(config, NoTls).await {
        Ok(pair) => pair,
        Err(e) => {
            result["client_error"] = json!(e.to_string());
            return result;
        }
    };
    let seen = Arc::new(Mutex::new(Seen::default()));
    let driver = {
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let message = std::future::poll_fn(|cx| {
                    let message = connection.poll_message(cx);
                    let name = connection.parameter("application_name").map(str::to_owned);
                    seen.lock().expect("not poisoned").application_name = name;
                    message
                })
                .await;
                let mut seen = seen.lock().expect("not poisoned");
                match message {
                    None => break,
                    Some(Ok(AsyncMessage::Notice(notice))) => seen.notices.push(db_error(&notice)),
                    Some(Ok(AsyncMessage::Notification(n))) => seen
                        .notifications
                        .push(json!({"channel": n.channel(), "payload": n.payload()})),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        seen.error = Some(e.to_string());
                        break;
                    }
                }
            }
        })
    };
    let mut steps = Vec::new();
    let statements: Vec<&str> = match &entry["sql"] {
        Value::String(sql) => vec![sql.as_str()],
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if let Some(channel) = entry["listen"].as_str() {
        steps.push(query(&client, &format!("LISTEN {channel}")).await);
    }
    match entry["via"].as_str().unwrap_or("query") {
        "copy" => steps.push(copy_out(&client, &copy_statement(&entry["copy"])).await),
        "portal" => steps.push(portal(&mut client, statements[0]).await),
        "prepared_twice" => steps.extend(prepared_twice(&client, statements[0]).await),
        "simple" => steps.push(simple(&client, &statements.join("; ")).await),
        _ => {
            for sql in statements {
                steps.push(query(&client, sql).await);
            }
        }
    }
    if entry.get("listen").is_some() {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = client.query("SELECT 'drain notifications'", &[]).await;
    }
    drop(client);
    let _ = driver.await;
    let seen = seen.lock().expect("not poisoned");
    result["steps"] = Value::Array(steps);
    result["notices"] = json!(seen.notices);
    result["notifications"] = json!(seen.notifications);
    result["parameters"] = json!({"application_name": seen.application_name});
    if let Some(e) = &seen.error {
        result["client_error"] = json!(e);
    }
    result
}

fn copy_statement(copy: &Value) -> String {
    let source = match copy["query"].as_str() {
        Some(query) => format!("({query})"),
        None => copy["table"].as_str().unwrap_or_default().to_owned(),
    };
    format!(
        "COPY {source} TO STDOUT (FORMAT {})",
        copy["format"].as_str().unwrap_or("text")
    )
}

fn step(sql: &str, outcome: Result<Vec<Row>, tokio_postgres::Error>) -> Value {
    match outcome {
        Ok(rows) => json!({"sql": sql, "rows": rows.iter().map(cells).collect::<Vec<_>>(),
                           "error": null}),
        Err(e) => json!({"sql": sql, "rows": null, "error": error(&e)}),
    }
}

async fn query(client: &Client, sql: &str) -> Value {
    step(sql, client.query(sql, &[]).await)
}

/// The statements in one simple-protocol Query (text results).
async fn simple(client: &Client, sql: &str) -> Value {
    match client.simple_query(sql).await {
        Ok(messages) => {
            let rows: Vec<Vec<Option<&str>>> = messages
                .iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(row) => {
                        Some((0..row.len()).map(|i| row.get(i)).collect())
                    }
                    _ => None,
                })
                .collect();
            json!({"sql": sql, "rows": rows, "error": null})
        }
        Err(e) => json!({"sql": sql, "rows": null, "error": error(&e)}),
    }
}

async fn prepared_twice(client: &Client, sql: &str) -> Vec<Value> {
    match client.prepare(sql).await {
        Ok(statement) => vec![
            step(sql, client.query(&statement, &[]).await),
            step(sql, client.query(&statement, &[]).await),
        ],
        Err(e) => vec![step(sql, Err(e))],
    }
}

/// A portal bound in a transaction and read with row-limited Execute messages.
async fn portal(client: &mut Client, sql: &str) -> Value {
    let outcome = async {
        let transaction = client.transaction().await?;
        let statement = transaction.prepare(sql).await?;
        let portal = transaction.bind(&statement, &[]).await?;
        let mut rows = Vec::new();
        loop {
            let chunk = transaction.query_portal(&portal, PORTAL_ROWS).await?;
            let done = chunk.len() < PORTAL_ROWS as usize;
            rows.extend(chunk);
            if done {
                break;
            }
        }
        transaction.commit().await?;
        Ok(rows)
    }
    .await;
    step(sql, outcome)
}

async fn copy_out(client: &Client, sql: &str) -> Value {
    let outcome: Result<Vec<u8>, tokio_postgres::Error> = async {
        let mut stream = pin!(client.copy_out(sql).await?);
        let mut data = Vec::new();
        while let Some(chunk) = stream.next().await {
            data.extend_from_slice(&chunk?);
        }
        Ok(data)
    }
    .await;
    match outcome {
        Ok(data) => json!({"sql": sql, "rows": null, "error": null,
                           "copy": String::from_utf8_lossy(&data)}),
        Err(e) => json!({"sql": sql, "rows": null, "error": error(&e)}),
    }
}

fn error(e: &tokio_postgres::Error) -> Value {
    match e.as_db_error() {
        Some(db) => db_error(db),
        None => json!({"sqlstate": null, "message": e.to_string(),
                       "source": e.source().map(ToString::to_string)}),
    }
}

/// Every field of an ErrorResponse or NoticeResponse that tokio-postgres exposes.
fn db_error(db: &DbError) -> Value {
    json!({
        "sqlstate": db.code().code(),
        "message": db.message(),
        "severity": db.severity(),
        "detail": db.detail(),
        "hint": db.hint(),
        "where": db.where_(),
        "position": db.position().map(|p| format!("{p:?}")),
        "schema": db.schema(),
        "table": db.table(),
        "column": db.column(),
        "datatype": db.datatype(),
        "constraint": db.constraint(),
        "routine": db.routine(),
    })
}

/// A cell's raw bytes, whatever its type.
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Self(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

fn cells(row: &Row) -> Vec<Value> {
    (0..row.len())
        .map(|i| {
            let ty = row.columns()[i].type_();
            match row.try_get::<_, Option<Raw>>(i) {
                Ok(Some(Raw(bytes))) => Value::String(render(ty, &bytes)),
                Ok(None) => Value::Null,
                Err(e) => Value::String(format!("<undecodable {ty}: {e}>")),
            }
        })
        .collect()
}

/// Text for a binary-format value of type `ty`.
fn render(ty: &Type, bytes: &[u8]) -> String {
    fn int(bytes: &[u8]) -> Option<i64> {
        match bytes.len() {
            2 => Some(i16::from_be_bytes(bytes.try_into().ok()?).into()),
            4 => Some(i32::from_be_bytes(bytes.try_into().ok()?).into()),
            8 => Some(i64::from_be_bytes(bytes.try_into().ok()?)),
            _ => None,
        }
    }
    fn list<'a, T: FromSql<'a> + std::fmt::Debug>(ty: &Type, bytes: &'a [u8]) -> String {
        match Vec::<Option<T>>::from_sql(ty, bytes) {
            Ok(values) => format!("{values:?}"),
            Err(_) => String::from_utf8_lossy(bytes).into_owned(),
        }
    }
    let lossy = || String::from_utf8_lossy(bytes).into_owned();
    match *ty {
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => {
            int(bytes).map_or_else(lossy, |v| v.to_string())
        }
        Type::FLOAT4 => f32::from_sql(ty, bytes).map_or_else(|_| lossy(), |v| v.to_string()),
        Type::FLOAT8 => f64::from_sql(ty, bytes).map_or_else(|_| lossy(), |v| v.to_string()),
        Type::BOOL => bool::from_sql(ty, bytes).map_or_else(|_| lossy(), |v| v.to_string()),
        Type::NUMERIC => numeric(bytes).unwrap_or_else(lossy),
        Type::JSONB => String::from_utf8_lossy(bytes.get(1..).unwrap_or_default()).into_owned(),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY | Type::NAME_ARRAY => {
            list::<String>(ty, bytes)
        }
        Type::INT8_ARRAY => list::<i64>(ty, bytes),
        Type::INT4_ARRAY => list::<i32>(ty, bytes),
        Type::INT2_ARRAY => list::<i16>(ty, bytes),
        _ => lossy(),
    }
}

/// A binary `numeric` as decimal text: ndigits, weight, sign, dscale, then base-10000 digits.
fn numeric(bytes: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<i16> {
        Some(i16::from_be_bytes(
            bytes.get(2 * i..2 * i + 2)?.try_into().ok()?,
        ))
    };
    let ndigits = usize::try_from(word(0)?).ok()?;
    let weight = i32::from(word(1)?);
    let sign = word(2)? as u16;
    let dscale = usize::try_from(word(3)?).ok()?;
    if sign == 0xC000 {
        return Some("NaN".to_owned());
    }
    let digits: Vec<i16> = (0..ndigits).map(|i| word(4 + i)).collect::<Option<_>>()?;
    let digit = |position: i32| -> i16 {
        usize::try_from(position)
            .ok()
            .and_then(|p| digits.get(p).copied())
            .unwrap_or(0)
    };
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    }
    for position in 0..=weight {
        if position == 0 {
            text.push_str(&digit(position).to_string());
        } else {
            text.push_str(&format!("{:04}", digit(position)));
        }
    }
    if dscale > 0 {
        let mut fraction = String::new();
        let mut position = weight + 1;
        while fraction.len() < dscale {
            fraction.push_str(&format!("{:04}", digit(position)));
            position += 1;
        }
        fraction.truncate(dscale);
        text.push('.');
        text.push_str(&fraction);
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::numeric;

    fn encode(weight: i16, sign: u16, dscale: i16, digits: &[i16]) -> Vec<u8> {
        let mut out = Vec::new();
        for word in [digits.len() as i16, weight, sign as i16, dscale]
            .iter()
            .chain(digits)
        {
            out.extend_from_slice(&word.to_be_bytes());
        }
        out
    }

    #[test]
    fn numeric_decodes_card_sized_integers_and_fractions() {
        assert_eq!(
            numeric(&encode(3, 0, 0, &[4111, 1111, 1111, 1111])).as_deref(),
            Some("4111111111111111")
        );
        assert_eq!(
            numeric(&encode(0, 0x4000, 2, &[12, 5000])).as_deref(),
            Some("-12.50")
        );
        assert_eq!(numeric(&encode(-1, 0, 3, &[500])).as_deref(), Some("0.050"));
    }
}
