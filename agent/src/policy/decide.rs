//! Per-session authorization: every (class, object) pair a query string touches becomes one
//! Cedar request (principal: the workload; action: the class; resource: the table, function or
//! database; context: process, time, approval state, dangerous features). One denied request
//! denies the string.
//!
//! A string denied with `context.approved == false` but allowed with `true` needs approval:
//! it is approved automatically when the `approve` action is permitted, else a person decides
//! ([`crate::approval`]). Unqualified names are authorized under every schema the session's
//! `search_path` has held (the server's at session start, every schema a `SET search_path`
//! named since, and `pg_catalog`), so `SET search_path` cannot move a name out of a policy's
//! reach. SQL-level `EXECUTE name` is authorized with what every `PREPARE name` this session
//! sent touched; a name the agent never saw prepared is denied.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cedar_policy::EntityUid;
use serde_json::{Value, json};

use super::access::{Object, QualifiedName, Touch};
use super::catalogue;
use super::engine::{ApprovalMode, PolicyEngine, PolicyError, PolicyRef, Verdict};
use super::entities::{self, EntityBuilder};
use super::{Analysis, StatementKind};
use crate::identity::WorkloadIdentity;
use crate::masking::catalog::ColumnName;

/// Why a query string was denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The deciding policy's `@id`, `default-deny` when no policy permits, or the agent's own
    /// rule name (`unprepared-execute`, `policy-error`).
    pub rule: String,
    /// The statement class that was denied.
    pub kind: Option<StatementKind>,
    /// The message for the client and the audit trail.
    pub reason: String,
    /// `@id`s of the forbid policies that denied it (all of them for the denied request);
    /// empty for `default-deny` and the agent's own rules.
    pub policies: Vec<String>,
}

/// A query string that may run once approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalNeeded {
    /// The policies that require it (`@id`s).
    pub policies: Vec<String>,
    /// Why, for the client, the approver and the audit trail.
    pub reason: String,
    /// How the approval is asked for.
    pub mode: ApprovalMode,
    /// Seconds a request-mode grant stays open.
    pub grant_ttl: u64,
    /// The `approve` policy that approved it automatically, if one did.
    pub auto_approved_by: Option<String>,
    /// The classes needing approval.
    pub actions: Vec<String>,
    /// The resources needing approval (`Table::"public.orders"` …).
    pub resources: Vec<String>,
}

/// The decision for one query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward it; `policies` permitted it.
    Allow {
        /// `@id`s of the permitting policies.
        policies: Vec<String>,
    },
    /// Answer with ErrorResponse 42501 and do not run it.
    Deny(Denial),
    /// Run it only once approved.
    Approval(ApprovalNeeded),
}

/// Default seconds a request-mode grant stays open.
pub const DEFAULT_GRANT_TTL: u64 = 900;

/// How long a cached decision is reused (policies may test the time of day).
const CACHE_TTL: Duration = Duration::from_secs(1);

/// Most cached decisions per session.
const CACHE_ENTRIES: usize = 4096;

/// What a session is, for policy: fixed for its life.
#[derive(Debug, Clone)]
pub struct SessionFacts {
    /// The target's configured name.
    pub target: String,
    /// The database the session is connected to.
    pub database: String,
    /// The upstream role (what `$user` in `search_path` means).
    pub upstream_user: String,
    /// The connecting process (`Process` record of the schema).
    pub process: Value,
}

/// One request and its verdict, as `policy explain` prints it.
#[derive(Debug, Clone)]
pub struct Traced {
    /// The action (statement class).
    pub action: &'static str,
    /// The resource's entity uid.
    pub resource: String,
    /// The verdict with `context.approved == false`.
    pub verdict: Verdict,
}

/// One request of a decision, with what it is about for messages.
struct Pending {
    class: StatementKind,
    resource: EntityUid,
    label: String,
}

/// The policy state of one session.
pub struct SessionPolicy {
    engine: Arc<PolicyEngine>,
    label: String,
    principal: EntityUid,
    principal_json: Value,
    facts: SessionFacts,
    search_path: BTreeSet<String>,
    prepared: HashMap<String, Vec<Arc<Analysis>>>,
    cache: HashMap<usize, (Arc<Analysis>, Decision, Instant)>,
}

impl SessionPolicy {
    /// The policy state of a new session; `search_path` is the server's at session start.
    pub fn new(
        engine: Arc<PolicyEngine>,
        identity: &WorkloadIdentity,
        facts: SessionFacts,
        search_path: &[String],
    ) -> Result<Self, PolicyError> {
        let mut session = Self {
            engine,
            label: identity.label(),
            principal: entities::principal_uid(identity)?,
            principal_json: entities::principal_json(identity),
            facts,
            search_path: BTreeSet::from(["pg_catalog".to_owned()]),
            prepared: HashMap::new(),
            cache: HashMap::new(),
        };
        session.add_search_path(search_path);
        Ok(session)
    }

    /// A `search_path` entry as a schema name: `$user` is the upstream role.
    fn schema_name<'a>(&'a self, entry: &'a str) -> &'a str {
        if entry == "$user" {
            &self.facts.upstream_user
        } else {
            entry
        }
    }

    fn add_search_path(&mut self, schemas: &[String]) {
        for schema in schemas {
            let schema = self.schema_name(schema).to_owned();
            if self.search_path.insert(schema) {
                self.cache.clear();
            }
        }
    }

    /// What the session is, for policy.
    pub fn facts(&self) -> &SessionFacts {
        &self.facts
    }

    /// Decides `analysis`, reusing a decision made for the same analysis within the last second.
    pub fn decide(&mut self, analysis: &Arc<Analysis>) -> Decision {
        let key = Arc::as_ptr(analysis) as usize;
        if let Some((_, decision, at)) = self.cache.get(&key)
            && at.elapsed() < CACHE_TTL
        {
            return decision.clone();
        }
        let decision = self.decide_uncached(analysis);
        if matches!(decision, Decision::Allow { .. }) {
            self.allowed(analysis);
        }
        if !matches!(decision, Decision::Approval(_)) {
            if self.cache.len() >= CACHE_ENTRIES {
                self.cache.clear();
            }
            self.cache
                .insert(key, (analysis.clone(), decision.clone(), Instant::now()));
        }
        decision
    }

    /// Records what an allowed (or approved) string changes for later decisions: schemas added
    /// to `search_path`, SQL-level prepared statements.
    pub fn allowed(&mut self, analysis: &Arc<Analysis>) {
        self.add_search_path(&analysis.search_path);
        for name in &analysis.prepares {
            self.prepared
                .entry(name.clone())
                .or_default()
                .push(analysis.clone());
        }
    }

    /// Whether a policy lets this session outlive its workload token (`outlive_token`).
    pub fn may_outlive_token(&self) -> bool {
        let run = || -> Result<bool, PolicyError> {
            let builder = self.builder();
            let database = entities::uid("Database", &self.facts.database)?;
            let entities = builder.build()?;
            let context = self.context(false, &BTreeSet::new(), &BTreeSet::new(), 0);
            let request = entities::request(&self.principal, "outlive_token", &database, &context)?;
            Ok(self.engine.authorize(&request, &entities).allowed)
        };
        run().unwrap_or(false)
    }

    /// The protected columns (`(schema, table, column)`) a policy lets this session read
    /// unmasked (`unmask` on `Column::"schema.table.column"`). A policy error unmasks nothing.
    pub fn unmasked(&self, columns: &[ColumnName]) -> Vec<ColumnName> {
        let run = || -> Result<Vec<ColumnName>, PolicyError> {
            let mut builder = self.builder();
            let ids: Vec<String> = columns
                .iter()
                .map(|(s, t, c)| builder.column(&self.facts.target, &self.facts.database, s, t, c))
                .collect();
            let entities = builder.build()?;
            let context = self.context(false, &BTreeSet::new(), &BTreeSet::new(), 0);
            let mut permitted = Vec::new();
            for (id, column) in ids.iter().zip(columns) {
                let resource = entities::uid("Column", id)?;
                let request = entities::request(&self.principal, "unmask", &resource, &context)?;
                if self.engine.authorize(&request, &entities).allowed {
                    permitted.push(column.clone());
                }
            }
            Ok(permitted)
        };
        run().unwrap_or_default()
    }

    fn builder(&self) -> EntityBuilder {
        EntityBuilder::new(
            &self.principal_json,
            &self.facts.target,
            &self.facts.database,
        )
    }

    fn context(
        &self,
        approved: bool,
        dangerous: &BTreeSet<&'static str>,
        classes: &BTreeSet<StatementKind>,
        statements: usize,
    ) -> Value {
        let (now, hour, weekday) = entities::clock(SystemTime::now());
        json!({
            "process": self.facts.process,
            "now": now,
            "hour": hour,
            "weekday": weekday,
            "approved": approved,
            "dangerous": dangerous.iter().collect::<Vec<_>>(),
            "classes": classes.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            "statements": statements,
            "target": self.facts.target,
        })
    }

    /// Decides `analysis` without the cache.
    pub fn decide_uncached(&self, analysis: &Analysis) -> Decision {
        let mut touches: BTreeSet<Touch> = analysis.touches.clone();
        let mut dangerous = analysis.dangerous.clone();
        let mut classes = analysis.kinds.clone();
        for name in &analysis.executes {
            let Some(prepared) = self.prepared.get(name) else {
                return Decision::Deny(Denial {
                    rule: "unprepared-execute".into(),
                    kind: Some(StatementKind::Execute),
                    reason: format!(
                        "jitgate: EXECUTE {name} runs a statement that was not prepared through \
                         jitgate in this session, so what it runs cannot be decided"
                    ),
                    policies: Vec::new(),
                });
            };
            for p in prepared {
                touches.extend(p.touches.iter().cloned());
                dangerous.extend(p.dangerous.iter().copied());
                classes.extend(p.kinds.iter().copied());
            }
        }
        match self.evaluate(analysis, &touches, &dangerous, &classes) {
            Ok(decision) => decision,
            Err(e) => Decision::Deny(Denial {
                rule: "policy-error".into(),
                kind: None,
                reason: format!("jitgate: the statement could not be authorized: {e}"),
                policies: Vec::new(),
            }),
        }
    }

    fn evaluate(
        &self,
        analysis: &Analysis,
        touches: &BTreeSet<Touch>,
        dangerous: &BTreeSet<&'static str>,
        classes: &BTreeSet<StatementKind>,
    ) -> Result<Decision, PolicyError> {
        let mut builder = self.builder();
        let mut requests = Vec::new();
        for touch in touches {
            self.expand(touch, &analysis.search_path, &mut builder, &mut requests)?;
        }
        let entities = builder.build()?;
        let plain = self.context(false, dangerous, classes, analysis.statements);
        let mut permits = BTreeSet::new();
        let mut denied: Vec<(&Pending, Verdict)> = Vec::new();
        for pending in &requests {
            let request = entities::request(
                &self.principal,
                pending.class.as_str(),
                &pending.resource,
                &plain,
            )?;
            let verdict = self.engine.authorize(&request, &entities);
            if verdict.allowed {
                permits.extend(verdict.policies.iter().map(|p| p.id.clone()));
            } else {
                denied.push((pending, verdict));
            }
        }
        if denied.is_empty() {
            return Ok(Decision::Allow {
                policies: permits.into_iter().collect(),
            });
        }
        let approved = self.context(true, dangerous, classes, analysis.statements);
        for (pending, _) in &denied {
            let request = entities::request(
                &self.principal,
                pending.class.as_str(),
                &pending.resource,
                &approved,
            )?;
            // Named: the policies that deny even when approved.
            let verdict = self.engine.authorize(&request, &entities);
            if !verdict.allowed {
                let mut denial = self.denial(pending, &verdict);
                if !dangerous.is_empty() {
                    let features: Vec<&str> = dangerous.iter().copied().collect();
                    denial
                        .reason
                        .push_str(&format!(" (the statement uses {})", features.join(", ")));
                }
                return Ok(Decision::Deny(denial));
            }
        }
        // Every denied request is allowed once approved.
        let gating: Vec<&PolicyRef> = denied.iter().flat_map(|(_, v)| &v.policies).collect();
        let mode = if gating
            .iter()
            .any(|p| p.approval == Some(ApprovalMode::Request))
        {
            ApprovalMode::Request
        } else {
            ApprovalMode::Hold
        };
        let grant_ttl = gating
            .iter()
            .filter_map(|p| p.grant_ttl)
            .min()
            .unwrap_or(DEFAULT_GRANT_TTL);
        let database = entities::uid("Database", &self.facts.database)?;
        let request = entities::request(&self.principal, "approve", &database, &plain)?;
        let auto = self.engine.authorize(&request, &entities);
        let auto_approved_by = auto
            .allowed
            .then(|| auto.policies.first().map(|p| p.id.clone()))
            .flatten();
        let (first, verdict) = &denied[0];
        let why = verdict
            .policies
            .first()
            .and_then(|p| p.reason.clone())
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        Ok(Decision::Approval(ApprovalNeeded {
            policies: dedup(gating.iter().map(|p| p.id.clone())),
            reason: format!(
                "{} on {} needs approval for {}{why}",
                first.class.as_str().to_uppercase(),
                first.label,
                self.label
            ),
            mode,
            grant_ttl,
            auto_approved_by,
            actions: dedup(denied.iter().map(|(p, _)| p.class.as_str().to_owned())),
            resources: dedup(denied.iter().map(|(p, _)| p.resource.to_string())),
        }))
    }

    /// Every request `analysis` makes, with its verdict (not approved), for `policy explain`.
    pub fn trace(&self, analysis: &Analysis) -> Result<Vec<Traced>, PolicyError> {
        let mut builder = self.builder();
        let mut requests = Vec::new();
        for touch in &analysis.touches {
            self.expand(touch, &analysis.search_path, &mut builder, &mut requests)?;
        }
        let entities = builder.build()?;
        let context = self.context(
            false,
            &analysis.dangerous,
            &analysis.kinds,
            analysis.statements,
        );
        requests
            .into_iter()
            .map(|p| {
                let request =
                    entities::request(&self.principal, p.class.as_str(), &p.resource, &context)?;
                Ok(Traced {
                    action: p.class.as_str(),
                    resource: p.resource.to_string(),
                    verdict: self.engine.authorize(&request, &entities),
                })
            })
            .collect()
    }

    fn denial(&self, pending: &Pending, verdict: &Verdict) -> Denial {
        let class = pending.class.as_str().to_uppercase();
        if !verdict.errors.is_empty() {
            return Denial {
                rule: "policy-error".into(),
                kind: Some(pending.class),
                reason: format!(
                    "jitgate: {class} on {} is denied because a policy failed to evaluate: {}",
                    pending.label,
                    verdict.errors.join("; ")
                ),
                policies: Vec::new(),
            };
        }
        match verdict.policies.first() {
            Some(policy) => Denial {
                rule: policy.id.clone(),
                kind: Some(pending.class),
                reason: format!(
                    "jitgate: {class} on {} is forbidden for {} by policy \"{}\"{}",
                    pending.label,
                    self.label,
                    policy.id,
                    policy
                        .reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
                policies: dedup(verdict.policies.iter().map(|p| p.id.clone())),
            },
            None => Denial {
                rule: "default-deny".into(),
                kind: Some(pending.class),
                reason: format!(
                    "jitgate: no policy permits {class} on {} for {}",
                    pending.label, self.label
                ),
                policies: Vec::new(),
            },
        }
    }

    /// The schemas an unqualified name may resolve to: the session's, and those the string
    /// itself adds (`SET search_path = vault; SELECT * FROM keys` in one Query).
    fn schemas_for<'a>(&'a self, name: &'a QualifiedName, adds: &'a [String]) -> Vec<&'a str> {
        match &name.schema {
            Some(schema) => vec![schema.as_str()],
            None => {
                let mut all: BTreeSet<&str> = self.search_path.iter().map(String::as_str).collect();
                for schema in adds {
                    all.insert(self.schema_name(schema));
                }
                all.into_iter().collect()
            }
        }
    }

    fn expand(
        &self,
        touch: &Touch,
        adds: &[String],
        builder: &mut EntityBuilder,
        out: &mut Vec<Pending>,
    ) -> Result<(), PolicyError> {
        let (target, database) = (&self.facts.target, &self.facts.database);
        match &touch.object {
            Object::Database => out.push(Pending {
                class: touch.class,
                resource: entities::uid("Database", database)?,
                label: format!("database {database}"),
            }),
            Object::Relation(name) => {
                for schema in self.schemas_for(name, adds) {
                    let id = builder.table(target, database, schema, &name.name);
                    out.push(Pending {
                        class: touch.class,
                        resource: entities::uid("Table", &id)?,
                        // As written: an unqualified name is checked under several schemas.
                        label: format!("table {name}"),
                    });
                }
            }
            Object::Function(name) => {
                let category = catalogue::function_category(name).unwrap_or_default();
                for schema in self.schemas_for(name, adds) {
                    let id = builder.function(target, database, schema, &name.name, category);
                    out.push(Pending {
                        class: touch.class,
                        resource: entities::uid("Function", &id)?,
                        label: format!("function {name}"),
                    });
                }
            }
        }
        Ok(())
    }
}

fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let set: BTreeSet<String> = items.collect();
    set.into_iter().collect()
}
