//! Cedar entities and context for one decision (Cedar's entity and context JSON formats):
//! the principal from the workload's claims, the database, schema, table and function
//! resources a statement touches, and the context record the shipped schema declares.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use cedar_policy::{Context, Entities, EntityUid, Request};
use serde_json::{Map, Value, json};

use super::engine::{NAMESPACE, PolicyError, schema};
use crate::identity::WorkloadIdentity;

/// String claims the schema declares (optional ones included only when present).
const STRING_CLAIMS: [&str; 26] = [
    "iss",
    "sub",
    "tid",
    "oid",
    "appid",
    "azp",
    "idtyp",
    "ver",
    "repository",
    "repository_owner",
    "repository_id",
    "ref",
    "ref_type",
    "environment",
    "workflow",
    "job_workflow_ref",
    "actor",
    "event_name",
    "run_id",
    "sha",
    "project_path",
    "namespace_path",
    "pipeline_source",
    "pipeline_id",
    "ref_protected",
    "user_login",
];

/// List claims the schema declares as `Set<String>`.
const LIST_CLAIMS: [&str; 3] = ["aud", "roles", "groups"];

/// An entity uid `Jitgate::<kind>::"<id>"`.
pub fn uid(kind: &str, id: &str) -> Result<EntityUid, PolicyError> {
    let text = format!("{NAMESPACE}::{kind}::{}", Value::String(id.to_owned()));
    text.parse()
        .map_err(|e: cedar_policy::ParseErrors| PolicyError::Schema(e.to_string()))
}

/// The principal's uid: `Jitgate::Workload::"<iss>#<sub>"`.
pub fn principal_uid(identity: &WorkloadIdentity) -> Result<EntityUid, PolicyError> {
    uid(
        "Workload",
        &format!("{}#{}", identity.issuer, identity.subject),
    )
}

/// The principal entity as Cedar JSON: declared claims only, as their declared types
/// (numbers and booleans as text, so GitLab's numeric ids compare as strings).
pub fn principal_json(identity: &WorkloadIdentity) -> Value {
    let mut attrs = Map::new();
    for name in STRING_CLAIMS {
        let value = identity.claim(name);
        if !value.is_empty() || name == "iss" || name == "sub" {
            attrs.insert(name.to_owned(), Value::String(value));
        }
    }
    for name in LIST_CLAIMS {
        if name == "aud" || identity.claims.contains_key(name) {
            attrs.insert(name.to_owned(), json!(identity.claim_list(name)));
        }
    }
    json!({
        "uid": {"type": format!("{NAMESPACE}::Workload"), "id": format!("{}#{}", identity.issuer, identity.subject)},
        "attrs": attrs,
        "parents": [],
    })
}

/// Entities of one decision, built up resource by resource.
#[derive(Debug, Default)]
pub struct EntityBuilder {
    entities: BTreeMap<(String, String), Value>,
}

impl EntityBuilder {
    /// Starts with the principal and the database.
    pub fn new(principal: &Value, target: &str, database: &str) -> Self {
        let mut b = Self::default();
        b.entities
            .insert(("Workload".into(), String::new()), principal.clone());
        b.insert(
            "Database",
            database,
            json!({"target": target, "name": database}),
            &[],
        );
        b
    }

    fn insert(&mut self, kind: &str, id: &str, attrs: Value, parents: &[(&str, &str)]) {
        let parents: Vec<Value> = parents
            .iter()
            .map(|(k, i)| json!({"type": format!("{NAMESPACE}::{k}"), "id": i}))
            .collect();
        self.entities
            .entry((kind.to_owned(), id.to_owned()))
            .or_insert_with(|| {
                json!({
                    "uid": {"type": format!("{NAMESPACE}::{kind}"), "id": id},
                    "attrs": attrs,
                    "parents": parents,
                })
            });
    }

    fn schema_entity(&mut self, target: &str, database: &str, schema: &str) {
        self.insert(
            "Schema",
            schema,
            json!({"target": target, "database": database, "name": schema}),
            &[("Database", database)],
        );
    }

    /// Adds table `schema.name`; returns its id.
    pub fn table(&mut self, target: &str, database: &str, schema: &str, name: &str) -> String {
        self.schema_entity(target, database, schema);
        let id = format!("{schema}.{name}");
        self.insert(
            "Table",
            &id,
            json!({"target": target, "database": database, "schema": schema, "name": name}),
            &[("Schema", schema)],
        );
        id
    }

    /// Adds protected column `schema.table.column` (and its table); returns its id.
    pub fn column(
        &mut self,
        target: &str,
        database: &str,
        schema: &str,
        table: &str,
        name: &str,
    ) -> String {
        let table_id = self.table(target, database, schema, table);
        let id = format!("{schema}.{table}.{name}");
        self.insert(
            "Column",
            &id,
            json!({"target": target, "database": database, "schema": schema, "table": table, "name": name}),
            &[("Table", &table_id)],
        );
        id
    }

    /// Adds function `schema.name` (or `name` when `schema` is empty); returns its id.
    pub fn function(
        &mut self,
        target: &str,
        database: &str,
        schema: &str,
        name: &str,
        category: &str,
    ) -> String {
        let id = if schema.is_empty() {
            name.to_owned()
        } else {
            self.schema_entity(target, database, schema);
            format!("{schema}.{name}")
        };
        let parent = if schema.is_empty() {
            ("Database", database)
        } else {
            ("Schema", schema)
        };
        self.insert(
            "Function",
            &id,
            json!({"target": target, "database": database, "schema": schema, "name": name, "category": category}),
            &[parent],
        );
        id
    }

    /// The Cedar entity set, validated against the schema.
    pub fn build(self) -> Result<Entities, PolicyError> {
        let list: Vec<Value> = self.entities.into_values().collect();
        Entities::from_json_value(Value::Array(list), Some(schema()?))
            .map_err(|e| PolicyError::Schema(format!("entities: {e}")))
    }
}

/// Seconds since the epoch, UTC hour and weekday (0 = Sunday).
pub fn clock(now: SystemTime) -> (i64, i64, i64) {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let days = secs.div_euclid(86_400);
    // 1970-01-01 was a Thursday (4).
    (
        secs,
        secs.rem_euclid(86_400) / 3600,
        (days + 4).rem_euclid(7),
    )
}

/// One request: `principal` does `action` on `resource` in `context` (JSON per the schema's
/// `Ctx` type).
pub fn request(
    principal: &EntityUid,
    action: &str,
    resource: &EntityUid,
    context: &Value,
) -> Result<Request, PolicyError> {
    let schema = schema()?;
    let action = uid("Action", action)?;
    let context = Context::from_json_value(context.clone(), Some((schema, &action)))
        .map_err(|e| PolicyError::Schema(format!("context: {e}")))?;
    Request::new(
        principal.clone(),
        action,
        resource.clone(),
        context,
        Some(schema),
    )
    .map_err(|e| PolicyError::Schema(format!("request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_fields() {
        // 2026-11-30 (a Monday) 17:05:00 UTC.
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_796_058_300);
        let (secs, hour, weekday) = clock(t);
        assert_eq!(secs, 1_796_058_300);
        assert_eq!(hour, 17);
        assert_eq!(weekday, 1);
    }
}
