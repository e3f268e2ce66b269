//! The tenant actor: the only writer of one tenant's state.
//!
//! A command is applied to the in-memory catalog, its records are written to storage,
//! and the reply waits for them to be durable. A change that live flows depend on is
//! tried on a copy of the catalog first; if any live flow would no longer compile the
//! change is refused and nothing moves. Otherwise the live flows are recompiled here,
//! on the actor's thread, and published to readers with one `ArcSwap::store`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::{Actor, Context, Handler, ResponseFuture};
use arc_swap::ArcSwap;
use serde_json::{json, Value};

use super::command::{Command, Query};
use super::interaction::{classification_of, resolve_offer, Interaction, RespondInput, Response};
use super::persist::{self, put_entity};
use super::{TenantError, TenantSnapshot};
use crate::catalog::{Catalog, CatalogError, EntityKind, LoadMode};
use crate::dsl::error::{locate, render};
use crate::engine::CompiledFlow;
use crate::model::ValidationError;
use crate::store::keys::{self, Kind};
use crate::store::{Batch, Durable, Storage};

/// Commands queue here; beyond it senders wait (and time out), never grow memory.
pub const MAILBOX: usize = 1024;

pub struct TenantActor {
    id: Arc<str>,
    catalog: Catalog,
    store: Arc<dyn Storage>,
    /// Shared with every request of this tenant: the only thing readers touch.
    snapshot: Arc<ArcSwap<TenantSnapshot>>,
    /// Rule files that came through the API (persisted), as opposed to the plugins
    /// folder (whose files are the source of truth and are not persisted).
    api_plugins: HashSet<String>,
    /// Folder files that did not check yet (say, they name an offer not created yet):
    /// retried after every change to the tenant's entities, and live once they check.
    pending_disk: HashMap<String, String>,
}

impl Actor for TenantActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX);
    }
}

/// What a command produced: the reply, and the write to wait for before sending it.
type Applied = (Value, Option<Durable>);

impl Handler<Command> for TenantActor {
    type Result = ResponseFuture<Result<Value, TenantError>>;

    fn handle(&mut self, cmd: Command, _: &mut Self::Context) -> Self::Result {
        // A bug must cost one request, not the thread every tenant's actor runs on.
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.apply(cmd))).unwrap_or_else(|_| {
            Err(TenantError::Unavailable("the command failed unexpectedly; nothing was changed".into()))
        });
        Box::pin(async move {
            let (reply, durable) = applied?;
            if let Some(durable) = durable {
                durable.await?;
            }
            Ok(reply)
        })
    }
}

impl Handler<Query> for TenantActor {
    type Result = Result<Value, TenantError>;

    fn handle(&mut self, q: Query, _: &mut Self::Context) -> Self::Result {
        self.query(q)
    }
}

impl TenantActor {
    /// A tenant restored (or created) with `catalog`; compiles its live flows.
    pub fn new(id: Arc<str>, catalog: Catalog, store: Arc<dyn Storage>) -> (TenantActor, Arc<ArcSwap<TenantSnapshot>>) {
        let (live, failed) = catalog.compile_live();
        for (key, e) in failed {
            tracing::error!(tenant = %id, flow = %key, error = %e, "live flow does not compile; it will refuse decisions");
        }
        let snapshot = Arc::new(ArcSwap::from_pointee(snapshot_of(live, 1)));
        let api_plugins = catalog.plugins.iter().map(|p| p.name.clone()).collect();
        let pending_disk = HashMap::new();
        let actor = TenantActor { id, catalog, store, snapshot: snapshot.clone(), api_plugins, pending_disk };
        (actor, snapshot)
    }

    fn apply(&mut self, cmd: Command) -> Result<Applied, TenantError> {
        let t = self.id.clone();
        match cmd {
            Command::CreateSchema(spec) => {
                let schema = self.catalog.add_schema(spec)?;
                let mut b = Batch::new();
                put_entity(&mut b, &t, EntityKind::Schema, &schema.meta.id, schema);
                let reply = serde_json::to_value(schema).expect("serialises");
                self.retry_pending();
                self.write(b, reply)
            }
            Command::UpdateSchema { id, spec } => {
                self.entity_change(EntityKind::Schema, |c| Ok(to_json(c.update_schema(&id, spec)?)))
            }
            Command::LoadRows { schema_id, rows, mode } => self.load_rows(&schema_id, &rows, mode),
            Command::CreateOffer(spec) => self.entity_change(EntityKind::Offer, |c| Ok(to_json(c.add_offer(spec)?))),
            Command::UpdateOffer { id, spec } => {
                self.entity_change(EntityKind::Offer, |c| Ok(to_json(c.update_offer(&id, spec)?)))
            }
            Command::CreateRule(spec) => self.entity_change(EntityKind::Rule, |c| Ok(to_json(c.add_rule(spec)?))),
            Command::UpdateRule { id, spec } => {
                self.entity_change(EntityKind::Rule, |c| Ok(to_json(c.update_rule(&id, spec)?)))
            }
            Command::CreateChannel(spec) => {
                self.entity_change(EntityKind::Channel, |c| Ok(to_json(c.add_channel(spec)?)))
            }
            Command::UpdateChannel { id, spec } => {
                self.entity_change(EntityKind::Channel, |c| Ok(to_json(c.update_channel(&id, spec)?)))
            }
            Command::CreateFlow(spec) => {
                let flow = to_json(self.catalog.add_flow(spec)?);
                self.retry_pending();
                self.put_json(EntityKind::Flow, flow)
            }
            Command::UpdateFlow { id, spec } => {
                let flow = to_json(self.catalog.update_flow(&id, spec)?);
                self.put_json(EntityKind::Flow, flow)
            }
            Command::Delete { kind, id } => self.delete(kind, &id),
            Command::Publish { id, notes } => {
                let compiled = self.catalog.publish(&id, notes)?;
                self.go_live(compiled, &id)
            }
            Command::Rollback { id, version, notes } => {
                let compiled = self.catalog.rollback(&id, version, notes)?;
                self.go_live(compiled, &id)
            }
            Command::PutPlugin { name, source, from_disk } => self.put_plugin(name, source, from_disk),
            Command::DeletePlugin { name, from_disk } => self.delete_plugin(&name, from_disk),
            Command::Respond(input) => self.respond(input),
        }
    }

    /// Applies a change that live flows depend on: on a copy first, kept only if every
    /// live flow still compiles; then persists the entity the change returned.
    fn entity_change(
        &mut self,
        kind: EntityKind,
        change: impl FnOnce(&mut Catalog) -> Result<Value, CatalogError>,
    ) -> Result<Applied, TenantError> {
        let reply = self.try_change(change)?;
        self.put_json(kind, reply)
    }

    fn try_change<R>(
        &mut self,
        change: impl FnOnce(&mut Catalog) -> Result<R, CatalogError>,
    ) -> Result<R, TenantError> {
        let mut next = self.catalog.clone();
        let result = change(&mut next)?;
        let (live, failed) = next.compile_live();
        if !failed.is_empty() {
            let why: Vec<String> = failed.iter().map(|(key, e)| format!("flow `{key}`: {e}")).collect();
            return Err(TenantError::Conflict(format!(
                "this change would break live decision flows: {}",
                why.join("; ")
            )));
        }
        self.catalog = next;
        self.swap(live);
        self.retry_pending();
        Ok(result)
    }

    /// Installs pending folder files that now check against the changed catalog.
    fn retry_pending(&mut self) {
        let ready: Vec<String> = self
            .pending_disk
            .iter()
            .filter(|(name, source)| {
                !crate::dsl::check_source(name, source, &crate::dsl::Context::from_catalog(&self.catalog)).has_errors()
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in ready {
            let source = self.pending_disk.remove(&name).expect("listed above");
            if self.put_plugin(name.clone(), source, true).is_ok() {
                tracing::info!(tenant = %self.id, file = %name, "rule file now checks and is live");
            }
        }
    }

    fn put_json(&mut self, kind: EntityKind, entity: Value) -> Result<Applied, TenantError> {
        let id = entity["id"].as_str().unwrap_or_default().to_string();
        let mut b = Batch::new();
        match kind {
            EntityKind::Flow => persist::put_flow(&mut b, &self.id, &entity, false),
            _ => put_entity(&mut b, &self.id, kind, &id, &entity),
        }
        self.write(b, entity)
    }

    fn write(&self, batch: Batch, reply: Value) -> Result<Applied, TenantError> {
        let durable = self.store.write(batch)?;
        Ok((reply, Some(durable)))
    }

    fn load_rows(&mut self, schema_id: &str, rows: &[Value], mode: LoadMode) -> Result<Applied, TenantError> {
        let written = self.catalog.load_rows_keyed(schema_id, rows, mode)?;
        let mut b = Batch::new();
        for (key, index) in &written {
            let value = serde_json::to_vec(&rows[*index]).expect("rows serialise");
            b.put(persist::row_key(&self.id, schema_id, key), value);
        }
        let (schema, _) = self.catalog.schema(schema_id)?;
        let count = written.len();
        let reply = match mode {
            LoadMode::InsertOrIgnore => json!({"inserted": count, "tableName": format!("ds_{}", schema.spec.name)}),
            LoadMode::Upsert => json!({"upserted": count, "tableName": format!("ds_{}", schema.spec.name)}),
        };
        self.write(b, reply)
    }

    fn delete(&mut self, kind: EntityKind, id: &str) -> Result<Applied, TenantError> {
        self.try_change(|c| c.delete(kind, id))?;
        let mut b = Batch::new();
        b.delete(keys::key(&self.id, persist::kind_of(kind), &[id]));
        if kind == EntityKind::Schema {
            for (key, _) in self.store.scan_prefix(&keys::sub_prefix(&self.id, Kind::Row, &[id]))? {
                b.delete(key);
            }
        }
        self.write(b, Value::Null)
    }

    /// Makes a newly published (or rolled back) version live: the other flows keep their
    /// compiled plans; this one is replaced; one swap publishes both.
    fn go_live(&mut self, compiled: Arc<CompiledFlow>, flow_id: &str) -> Result<Applied, TenantError> {
        let current = self.snapshot.load();
        let mut flows = current.flows.clone();
        flows.insert(compiled.key.as_ref().into(), compiled);
        self.snapshot.store(Arc::new(TenantSnapshot { flows, generation: current.generation + 1 }));
        let flow = to_json(self.catalog.flows.iter().find(|f| f.meta.id == flow_id).expect("just published"));
        let mut b = Batch::new();
        persist::put_flow(&mut b, &self.id, &flow, true);
        self.write(b, flow)
    }

    fn swap(&self, live: Vec<Arc<CompiledFlow>>) {
        let generation = self.snapshot.load().generation + 1;
        self.snapshot.store(Arc::new(snapshot_of(live, generation)));
    }

    fn put_plugin(&mut self, name: String, source: String, from_disk: bool) -> Result<Applied, TenantError> {
        // A rejected file must not reach `try_change`'s swap: turn it into an error there.
        let mut rejected = None;
        let outcome = self.try_change(|c| {
            c.put_plugin(&name, &source).map_err(|diags| {
                rejected = Some(diags);
                CatalogError::Conflict(format!("{name} has errors"))
            })
        });
        if let Some(diags) = rejected {
            let rendered = render(&name, &source, &diags);
            if from_disk {
                tracing::warn!(
                    tenant = %self.id, file = %name,
                    "rule file rejected; the previous version (if any) stays live, and the file is retried when entities change\n{rendered}"
                );
                self.pending_disk.insert(name.clone(), source.clone());
            }
            let diagnostics = diags.iter().map(|d| locate(&name, &source, d)).collect();
            return Err(TenantError::Plugin { name, rendered, diagnostics });
        }
        let warnings = outcome?;
        self.pending_disk.remove(&name);
        let plugin = self.catalog.plugins.iter().find(|p| p.name == name).expect("just stored");
        let reply = json!({
            "name": name,
            "rules": plugin.rules.len(),
            "scores": plugin.scores.len(),
            "warnings": warnings.iter().map(|d| locate(&name, &source, d)).collect::<Vec<_>>(),
        });
        if from_disk {
            tracing::info!(tenant = %self.id, file = %name, rules = plugin.rules.len(), "rule file loaded");
            return Ok((reply, None));
        }
        self.api_plugins.insert(name.clone());
        let mut b = Batch::new();
        b.put(keys::key(&self.id, Kind::Plugin, &[&name]), source.into_bytes());
        self.write(b, reply)
    }

    fn delete_plugin(&mut self, name: &str, from_disk: bool) -> Result<Applied, TenantError> {
        if from_disk && self.pending_disk.remove(name).is_some() && !self.catalog.plugins.iter().any(|p| p.name == name)
        {
            return Ok((Value::Null, None));
        }
        let removed = self.try_change(|c| Ok(c.remove_plugin(name)))?;
        if removed.is_none() {
            return Err(TenantError::NotFound(format!("rule file `{name}` not found")));
        }
        if from_disk || !self.api_plugins.remove(name) {
            tracing::info!(tenant = %self.id, file = %name, "rule file removed");
            return Ok((Value::Null, None));
        }
        let mut b = Batch::new();
        b.delete(keys::key(&self.id, Kind::Plugin, &[name]));
        self.write(b, Value::Null)
    }

    /// Records a response. Runs on the actor, so the idempotency check and the write are
    /// one step: two concurrent replays of a key cannot both record.
    fn respond(&mut self, input: RespondInput) -> Result<Applied, TenantError> {
        let interaction_id = input.validate()?;
        let key = input.idempotency_key.clone().unwrap_or_default();
        let idem_key = keys::key(&self.id, Kind::Idem, &[&key]);
        if let Some(first) = self.store.get(&idem_key)? {
            let mut first: Value = serde_json::from_slice(&first).map_err(|e| TenantError::Conflict(e.to_string()))?;
            first["duplicate"] = Value::Bool(true);
            return Ok((first, None));
        }
        let record = self
            .store
            .get(&keys::key(&self.id, Kind::Interaction, &[&interaction_id]))?
            .and_then(|bytes| serde_json::from_slice::<Interaction>(&bytes).ok())
            .ok_or_else(|| TenantError::NotFound(format!("recommendation `{interaction_id}` not found")))?;
        let offer = resolve_offer(&input, &record)?;
        let response = Response {
            response_id: crate::ids::new_id(),
            interaction_id: record.id.clone(),
            customer_id: record.customer_id.clone(),
            offer_id: offer.offer_id.clone(),
            rank: offer.rank,
            outcome: input.outcome.clone(),
            classification: classification_of(&input.outcome),
            control_group: record.control_group,
            decision_flow_key: record.decision_flow_key.clone(),
            conversion_value: input.conversion_value,
            timestamp: input.timestamp.clone().unwrap_or_else(crate::ids::now_rfc3339),
            idempotency_key: key,
        };
        let mut reply = to_json(&response);
        reply["recorded"] = Value::Bool(true);
        reply["duplicate"] = Value::Bool(false);
        let mut b = Batch::new();
        b.put(
            keys::key(&self.id, Kind::Response, &[&response.response_id]),
            serde_json::to_vec(&response).expect("json"),
        );
        b.put(idem_key, serde_json::to_vec(&reply).expect("json"));
        self.write(b, reply)
    }

    fn query(&self, q: Query) -> Result<Value, TenantError> {
        let c = &self.catalog;
        match q {
            Query::List(kind) => Ok(Value::Array(list(c, kind))),
            Query::Get(kind, id) => list(c, kind)
                .into_iter()
                .find(|e| e["id"] == id.as_str())
                .ok_or_else(|| TenantError::NotFound(format!("{} `{id}` not found", kind_name(kind)))),
            Query::Rows { schema_id, limit, offset } => rows(c, &schema_id, limit, offset),
            Query::Versions { flow_id } => versions(c, &flow_id),
            Query::Plugin(name) => c
                .plugins
                .iter()
                .find(|p| p.name == name)
                .map(|p| json!({"name": p.name, "source": p.source, "rules": p.rules.len(), "scores": p.scores.len()}))
                .ok_or_else(|| TenantError::NotFound(format!("rule file `{name}` not found"))),
            Query::Plugins => Ok(c.plugins.iter().map(|p| json!({"name": p.name, "rules": p.rules.len()})).collect()),
        }
    }
}

fn snapshot_of(live: Vec<Arc<CompiledFlow>>, generation: u64) -> TenantSnapshot {
    let flows: HashMap<Box<str>, Arc<CompiledFlow>> = live.into_iter().map(|f| (f.key.as_ref().into(), f)).collect();
    TenantSnapshot { flows, generation }
}

fn to_json(entity: &impl serde::Serialize) -> Value {
    serde_json::to_value(entity).expect("entities serialise")
}

pub fn kind_name(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Schema => "schema",
        EntityKind::Offer => "offer",
        EntityKind::Rule => "qualification rule",
        EntityKind::Channel => "channel",
        EntityKind::Flow => "decision flow",
    }
}

/// Entities of a kind as JSON, newest first.
fn list(c: &Catalog, kind: EntityKind) -> Vec<Value> {
    let mut out: Vec<Value> = match kind {
        EntityKind::Schema => c.schemas.iter().map(to_json).collect(),
        EntityKind::Offer => c.offers.iter().map(to_json).collect(),
        EntityKind::Rule => c.rules.iter().map(to_json).collect(),
        EntityKind::Channel => c.channels.iter().map(to_json).collect(),
        EntityKind::Flow => c.flows.iter().map(to_json).collect(),
    };
    out.reverse();
    out
}

fn rows(c: &Catalog, schema_id: &str, limit: usize, offset: usize) -> Result<Value, TenantError> {
    let (schema, table) = c.schema(schema_id)?;
    let mut keys: Vec<Box<str>> = table.iter().map(|e| e.key().clone()).collect();
    keys.sort_unstable();
    let rows: Vec<Value> = keys
        .iter()
        .skip(offset)
        .take(limit)
        .filter_map(|k| table.get(k.as_ref()))
        .map(|row| {
            let fields = schema.spec.fields.iter().zip(row.iter()).map(|(f, v)| (f.name.clone(), v.to_json()));
            Value::Object(fields.collect())
        })
        .collect();
    Ok(json!({"total": keys.len(), "limit": limit, "offset": offset, "rows": rows}))
}

fn versions(c: &Catalog, flow_id: &str) -> Result<Value, TenantError> {
    let flow = c
        .flows
        .iter()
        .find(|f| f.meta.id == flow_id)
        .ok_or_else(|| TenantError::NotFound(format!("decision flow `{flow_id}` not found")))?;
    let versions: Vec<Value> = flow
        .published_versions
        .iter()
        .map(|v| {
            let method = v.config_snapshot.nodes.iter().find(|n| n.kind == "score").map(|n| n.config["method"].clone());
            json!({
                "version": v.version, "publishedAt": v.published_at, "notes": v.notes,
                "summary": {"nodeCount": v.config_snapshot.nodes.len(), "scoringMethod": method.unwrap_or(Value::Null)},
            })
        })
        .collect();
    Ok(json!({"flowId": flow.meta.id, "versions": versions}))
}

impl From<ValidationError> for TenantError {
    fn from(e: ValidationError) -> Self {
        TenantError::Catalog(CatalogError::Invalid(e))
    }
}
