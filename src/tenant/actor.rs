//! The tenant actor: the only writer of one tenant's state.
//!
//! A command is applied to the in-memory catalog, its records are written to storage,
//! and the reply waits for them to be durable. A change that live flows depend on is
//! tried on a copy of the catalog first; if any live flow would no longer compile the
//! change is refused and nothing moves. Otherwise the live flows are recompiled here,
//! on the actor's thread, and published to readers with one `ArcSwap::store`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::{Actor, ActorFutureExt, AtomicResponse, Context, Handler, ResponseFuture, WrapFuture};
use arc_swap::ArcSwap;
use serde_json::Value;

use super::command::{
    Command, LoadReply, PluginCheck, PluginInstalled, PluginSource, PluginSummary, Query, RespondReply, RowsPage,
    VersionList, VersionPage, VersionShape, VersionSummary, STORED_FIELDS, STORED_FLOW_FIELDS,
};
use super::interaction::{classification_of, resolve_offer, Interaction, RespondInput, Response};
use super::learning::Learning;
use super::persist::{self, put_entity};
use super::{TenantError, TenantSnapshot};
use crate::catalog::{Catalog, CatalogError, EntityKind, LoadMode};
use crate::dsl::error::{locate, render};
use crate::dsl::Diagnostic;
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
    learning: Arc<Learning>,
    /// What a command changes in memory (the catalog, the live snapshot, the rule-file
    /// bookkeeping), run only once its write is durable: until then nothing of it is
    /// visible, and if the write fails it is dropped. The actor takes no other message
    /// meanwhile (`AtomicResponse`), so the next command sees the state this one leaves.
    deferred: Vec<Deferred>,
}

/// A change to memory waiting for its write to be durable.
type Deferred = Box<dyn FnOnce(&mut TenantActor) + Send>;

impl Actor for TenantActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX);
    }
}

/// What a command produced: the reply, and the write to wait for before sending it.
type Applied = (Value, Option<Durable>);

/// A change prepared on a copy of the catalog, not yet current.
struct Staged {
    next: Catalog,
    /// Live flows recompiled against `next`, when the change touches what they read.
    live: Option<Vec<Arc<CompiledFlow>>>,
}

impl Handler<Command> for TenantActor {
    type Result = AtomicResponse<Self, Result<Value, TenantError>>;

    fn handle(&mut self, cmd: Command, _: &mut Self::Context) -> Self::Result {
        // A bug must cost one request, not the actor's thread.
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.apply(cmd))).unwrap_or_else(|_| {
            Err(TenantError::Internal("the command failed unexpectedly; nothing was changed".into()))
        });
        if applied.is_err() {
            self.deferred.clear();
        }
        let written = async move {
            let (reply, durable) = applied?;
            if let Some(durable) = durable {
                durable.await?;
            }
            Ok(reply)
        };
        AtomicResponse::new(Box::pin(written.into_actor(self).map(|result, actor, _| match result {
            Ok(reply) => actor.run_deferred().map(|()| reply),
            Err(e) => {
                actor.deferred.clear();
                Err(e)
            }
        })))
    }
}

/// An outcome to record: a message of its own, because responds are pipelined (the next
/// one is taken while this one's flush runs, so they share group commits) where entity
/// commands wait for their write.
pub struct Respond(pub RespondInput);

impl actix::Message for Respond {
    type Result = Result<Value, TenantError>;
}

impl Handler<Respond> for TenantActor {
    type Result = ResponseFuture<Result<Value, TenantError>>;

    fn handle(&mut self, msg: Respond, _: &mut Self::Context) -> Self::Result {
        let recorded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.respond(msg.0)))
            .unwrap_or_else(|_| Err(TenantError::Internal("the response failed unexpectedly".into())));
        Box::pin(async move {
            let recorded = recorded?;
            match recorded.durable.await {
                Ok(()) => {
                    if let Some(count) = recorded.on_durable {
                        count();
                    }
                    Ok(recorded.reply)
                }
                Err(e) => {
                    // Not acknowledged, so not kept: a retry with the same key records it.
                    if let Some(undo) = recorded.undo {
                        undo();
                    }
                    Err(e.into())
                }
            }
        })
    }
}

/// A respond, written (not yet durable): the reply, what to wait for, what to do after.
struct Recorded {
    reply: Value,
    durable: Durable,
    /// Counting the response in the propensity counters, once durable.
    on_durable: Option<Box<dyn FnOnce() + Send>>,
    /// Removing its records again if the write did not become durable.
    undo: Option<Box<dyn FnOnce() + Send>>,
}

impl Handler<Query> for TenantActor {
    type Result = Result<Value, TenantError>;

    fn handle(&mut self, q: Query, _: &mut Self::Context) -> Self::Result {
        self.query(q)
    }
}

impl TenantActor {
    /// A tenant restored (or created) with `catalog`; compiles its live flows.
    pub fn new(
        id: Arc<str>,
        catalog: Catalog,
        store: Arc<dyn Storage>,
        learning: Arc<Learning>,
    ) -> (TenantActor, Arc<ArcSwap<TenantSnapshot>>) {
        let (live, failed) = catalog.compile_live();
        for (key, e) in failed {
            tracing::error!(tenant = %id, flow = %key, error = %e, "live flow does not compile; it will refuse decisions");
        }
        let snapshot = Arc::new(ArcSwap::from_pointee(snapshot_of(live, unpublished(&catalog), 1)));
        let api_plugins = catalog.plugins.iter().map(|p| p.name.clone()).collect();
        let pending_disk = HashMap::new();
        let actor = TenantActor {
            id,
            catalog,
            store,
            snapshot: snapshot.clone(),
            api_plugins,
            pending_disk,
            learning,
            deferred: Vec::new(),
        };
        (actor, snapshot)
    }

    fn apply(&mut self, cmd: Command) -> Result<Applied, TenantError> {
        use EntityKind::*;
        match cmd {
            Command::CreateSchema(spec) => self.entity(Schema, false, |c| Ok(to_json(c.add_schema(spec)?))),
            Command::UpdateSchema { id, spec } => {
                self.entity(Schema, true, |c| Ok(to_json(c.update_schema(&id, spec)?)))
            }
            Command::LoadRows { schema_id, rows, mode } => self.load_rows(&schema_id, rows, mode),
            Command::CreateOffer(spec) => self.entity(Offer, true, |c| Ok(to_json(c.add_offer(spec)?))),
            Command::UpdateOffer { id, spec } => self.entity(Offer, true, |c| Ok(to_json(c.update_offer(&id, spec)?))),
            Command::CreateRule(spec) => self.entity(Rule, true, |c| Ok(to_json(c.add_rule(spec)?))),
            Command::UpdateRule { id, spec } => self.entity(Rule, true, |c| Ok(to_json(c.update_rule(&id, spec)?))),
            Command::CreateChannel(spec) => self.entity(Channel, true, |c| Ok(to_json(c.add_channel(spec)?))),
            Command::UpdateChannel { id, spec } => {
                self.entity(Channel, true, |c| Ok(to_json(c.update_channel(&id, spec)?)))
            }
            Command::CreatePolicy(spec) => self.entity(Policy, true, |c| Ok(to_json(c.add_policy(spec)?))),
            Command::UpdatePolicy { id, spec } => {
                self.entity(Policy, true, |c| Ok(to_json(c.update_policy(&id, spec)?)))
            }
            // Drafts do not change what live flows decide.
            Command::CreateFlow(spec) => self.entity(Flow, false, |c| Ok(to_json(&c.add_flow(spec)?.view()))),
            Command::UpdateFlow { id, spec } => {
                self.entity(Flow, false, |c| Ok(to_json(&c.update_flow(&id, spec)?.view())))
            }
            Command::Delete { kind, id } => self.delete(kind, &id),
            Command::Publish { id, notes } => self.publish(&id.clone(), |c| c.publish(&id, notes)),
            Command::Rollback { id, version, notes } => self.publish(&id.clone(), |c| c.rollback(&id, version, notes)),
            Command::PutPlugin { name, source, from_disk } => self.put_plugin(name, source, from_disk),
            Command::DeletePlugin { name, from_disk } => self.delete_plugin(&name, from_disk),
            Command::Patch { kind, id, changes, if_version } => {
                let update = self.merged(kind, id, changes, if_version)?;
                self.apply(update)
            }
        }
    }

    /// The update a patch makes: the stored entity with the patch's fields in place of its
    /// own, as the spec the kind takes, for exactly the version `if_version` names (or
    /// the `version` sent in the body).
    fn merged(
        &self,
        kind: EntityKind,
        id: String,
        changes: serde_json::Map<String, Value>,
        if_version: Option<u64>,
    ) -> Result<Command, TenantError> {
        let Some(Value::Object(mut current)) = list(&self.catalog, kind).into_iter().find(|e| e["id"] == id.as_str())
        else {
            return Err(TenantError::NotFound(format!("{} `{id}` not found", kind_name(kind))));
        };
        let stored = current.get("version").and_then(Value::as_u64);
        let wanted = if_version.or_else(|| changes.get("version").and_then(Value::as_u64));
        if let Some(wanted) = wanted.filter(|w| Some(*w) != stored) {
            return Err(TenantError::VersionMismatch(format!(
                "{} `{id}` is at version {}, not {wanted}: read it again and reapply the change",
                kind_name(kind),
                stored.unwrap_or_default()
            )));
        }
        // The stored-only fields go before the spec is parsed, so an unknown field can
        // only be one the client sent; sent back, they are ignored.
        let stored_only = if kind == EntityKind::Flow { STORED_FLOW_FIELDS } else { STORED_FIELDS };
        for field in stored_only {
            current.remove(*field);
        }
        current.extend(changes.into_iter().filter(|(field, _)| !stored_only.contains(&field.as_str())));
        let merged = Value::Object(current);
        Ok(match kind {
            EntityKind::Schema => Command::UpdateSchema { id, spec: crate::model::parse_value("", &merged)? },
            EntityKind::Offer => Command::UpdateOffer { id, spec: crate::model::parse_value("", &merged)? },
            EntityKind::Rule => Command::UpdateRule { id, spec: crate::model::parse_value("", &merged)? },
            EntityKind::Channel => Command::UpdateChannel { id, spec: crate::model::parse_value("", &merged)? },
            EntityKind::Policy => Command::UpdatePolicy { id, spec: crate::model::parse_value("", &merged)? },
            EntityKind::Flow => Command::UpdateFlow { id, spec: crate::model::parse_value("", &merged)? },
        })
    }

    /// Runs what the last command deferred until its write was durable (and what that
    /// defers in turn: a waiting rule file going live writes nothing).
    fn run_deferred(&mut self) -> Result<(), TenantError> {
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            while !self.deferred.is_empty() {
                for then in std::mem::take(&mut self.deferred) {
                    then(self);
                }
            }
        }));
        ran.map_err(|_| TenantError::Internal("applying a durable change failed unexpectedly".into()))
    }

    fn defer(&mut self, then: impl FnOnce(&mut TenantActor) + Send + 'static) {
        self.deferred.push(Box::new(then));
    }

    /// Prepares a change on a copy of the catalog. With `recompile`, every live flow is
    /// compiled against the copy and the change is refused if one no longer compiles.
    fn stage<R>(
        &self,
        recompile: bool,
        change: impl FnOnce(&mut Catalog) -> Result<R, CatalogError>,
    ) -> Result<(Staged, R), TenantError> {
        let mut next = self.catalog.clone();
        let result = change(&mut next)?;
        Ok((self.prepared(next, recompile)?, result))
    }

    /// A changed copy, checked: with `recompile`, every live flow must still compile.
    fn prepared(&self, next: Catalog, recompile: bool) -> Result<Staged, TenantError> {
        let live = if recompile {
            let (live, failed) = next.compile_live();
            if !failed.is_empty() {
                let why: Vec<String> = failed.iter().map(|(key, e)| format!("flow `{key}`: {e}")).collect();
                return Err(TenantError::Conflict(format!(
                    "this change would break live decision flows: {}",
                    why.join("; ")
                )));
            }
            Some(live)
        } else {
            None
        };
        Ok(Staged { next, live })
    }

    /// Writes the change's records and defers making the staged catalog current (and its
    /// flows live) until they are durable: a write that fails, or whose flush fails,
    /// leaves memory as it was, so what is served never runs ahead of what is stored.
    fn commit(&mut self, staged: Staged, batch: Batch) -> Result<Option<Durable>, TenantError> {
        let durable = if batch.is_empty() { None } else { Some(self.store.write(batch)?) };
        self.defer(move |actor| {
            actor.catalog = staged.next;
            match staged.live {
                Some(live) => actor.swap(live),
                None => actor.refresh_unpublished(),
            }
            actor.retry_pending();
        });
        Ok(durable)
    }

    /// Creates or updates one entity and stores the JSON the change returned.
    fn entity(
        &mut self,
        kind: EntityKind,
        recompile: bool,
        change: impl FnOnce(&mut Catalog) -> Result<Value, CatalogError>,
    ) -> Result<Applied, TenantError> {
        let (staged, reply) = self.stage(recompile, change)?;
        let mut b = Batch::new();
        match kind {
            EntityKind::Flow => {
                let id = reply["id"].as_str().unwrap_or_default();
                let flow = staged.next.flows.iter().find(|f| f.meta.id == id).expect("just changed");
                persist::put_flow(&mut b, &self.id, flow, false)
            }
            _ => put_entity(&mut b, &self.id, kind, reply["id"].as_str().unwrap_or_default(), &reply),
        }
        let durable = self.commit(staged, b)?;
        Ok((reply, durable))
    }

    /// Installs pending folder files that now check against the changed catalog.
    fn retry_pending(&mut self) {
        let ready: Vec<String> = self
            .pending_disk
            .iter()
            .filter(|(name, source)| !crate::dsl::check_source(name, source, &self.catalog.dsl_context()).has_errors())
            .map(|(name, _)| name.clone())
            .collect();
        for name in ready {
            let source = self.pending_disk.remove(&name).expect("listed above");
            if self.put_plugin(name.clone(), source, true).is_ok() {
                tracing::info!(tenant = %self.id, file = %name, "rule file now checks and is live");
            }
        }
    }

    /// Rows go to the shared customer tables only after their records are written.
    fn load_rows(&mut self, schema_id: &str, rows: Vec<bytes::Bytes>, mode: LoadMode) -> Result<Applied, TenantError> {
        let parsed = self.catalog.parse_raw_rows(schema_id, &rows, mode)?;
        let mut b = Batch::new();
        // The row is stored as the client sent it (the bytes, not a re-serialisation).
        for (key, index, _) in &parsed {
            b.put(persist::row_key(&self.id, schema_id, key), rows[*index].to_vec());
        }
        drop(rows);
        let (schema, _) = self.catalog.schema(schema_id)?;
        let table = format!("ds_{}", schema.spec.name);
        let count = parsed.len();
        let durable = if b.is_empty() { None } else { Some(self.store.write(b)?) };
        let schema_id = schema_id.to_string();
        self.defer(move |actor| {
            if let Err(e) = actor.catalog.insert_rows(&schema_id, parsed) {
                tracing::error!(tenant = %actor.id, error = %e, "stored rows could not be made live");
            }
        });
        let reply = match mode {
            LoadMode::InsertOrIgnore => LoadReply { inserted: Some(count), upserted: None, table_name: table },
            LoadMode::Upsert => LoadReply { inserted: None, upserted: Some(count), table_name: table },
        };
        let reply = to_json(&reply);
        Ok((reply, durable))
    }

    fn delete(&mut self, kind: EntityKind, id: &str) -> Result<Applied, TenantError> {
        let (staged, ()) = self.stage(true, |c| c.delete(kind, id))?;
        let mut b = Batch::new();
        b.delete(keys::key(&self.id, persist::kind_of(kind), &[id]));
        if kind == EntityKind::Schema {
            for (key, _) in self.store.scan_prefix(&keys::sub_prefix(&self.id, Kind::Row, &[id]))? {
                b.delete(key);
            }
        }
        let durable = self.commit(staged, b)?;
        Ok((Value::Null, durable))
    }

    /// Publishes (or rolls back): the new version is written, then made live. The other
    /// flows keep their compiled plans; one swap publishes the new one.
    fn publish(
        &mut self,
        flow_id: &str,
        publish: impl FnOnce(&mut Catalog) -> Result<Arc<CompiledFlow>, CatalogError>,
    ) -> Result<Applied, TenantError> {
        let (staged, compiled) = self.stage(false, publish)?;
        let published = staged.next.flows.iter().find(|f| f.meta.id == flow_id).expect("just published");
        let flow = to_json(&published.view());
        let mut b = Batch::new();
        persist::put_flow(&mut b, &self.id, published, true);
        let durable = self.commit(staged, b)?;
        self.defer(move |actor| {
            let current = actor.snapshot.load();
            let mut flows = current.flows.clone();
            flows.insert(compiled.key.as_ref().into(), compiled);
            let unpublished = Arc::new(unpublished(&actor.catalog));
            actor.snapshot.store(Arc::new(TenantSnapshot { flows, unpublished, generation: current.generation + 1 }));
        });
        Ok((flow, durable))
    }

    fn swap(&self, live: Vec<Arc<CompiledFlow>>) {
        let generation = self.snapshot.load().generation + 1;
        self.snapshot.store(Arc::new(snapshot_of(live, unpublished(&self.catalog), generation)));
    }

    /// Keeps the snapshot's set of unpublished flow keys current after a change that
    /// recompiled nothing (a flow created, renamed or deleted).
    fn refresh_unpublished(&self) {
        let current = self.snapshot.load();
        let keys = unpublished(&self.catalog);
        if *current.unpublished != keys {
            let (flows, generation) = (current.flows.clone(), current.generation + 1);
            self.snapshot.store(Arc::new(TenantSnapshot { flows, unpublished: Arc::new(keys), generation }));
        }
    }

    fn put_plugin(&mut self, name: String, source: String, from_disk: bool) -> Result<Applied, TenantError> {
        let mut next = self.catalog.clone();
        let warnings = match next.put_plugin(&name, &source) {
            Ok(warnings) => warnings,
            Err(diags) => return Err(self.rejected(name, source, from_disk, diags)),
        };
        let staged = self.prepared(next, true)?;
        let plugin = staged.next.plugins.iter().find(|p| p.name == name).expect("just stored");
        let reply = to_json(&PluginInstalled {
            name: name.clone(),
            rules: plugin.rules.len(),
            scores: plugin.scores.len(),
            warnings: warnings.iter().map(|d| locate(&name, &source, d)).collect(),
        });
        let rules = plugin.rules.len();
        let mut b = Batch::new();
        if !from_disk {
            b.put(keys::key(&self.id, Kind::Plugin, &[&name]), source.into_bytes());
        }
        let durable = self.commit(staged, b)?;
        self.defer(move |actor| {
            actor.pending_disk.remove(&name);
            if from_disk {
                tracing::info!(tenant = %actor.id, file = %name, rules, "rule file loaded");
            } else {
                actor.api_plugins.insert(name);
            }
        });
        Ok((reply, durable))
    }

    /// A rejected file changes nothing; a folder file is kept to retry later. A folder
    /// file whose only problems are entities that do not exist yet (a fresh tenant
    /// before the tutorial) is waiting, not broken: one info line says what for.
    fn rejected(&mut self, name: String, source: String, from_disk: bool, diags: Vec<Diagnostic>) -> TenantError {
        let rendered = render(&name, &source, &diags);
        if from_disk {
            match waits_for(&diags) {
                Some(missing) => tracing::info!(
                    tenant = %self.id, file = %name,
                    "rule file waits for entities not created yet ({}); it goes live once they exist",
                    missing.join(", ")
                ),
                None => tracing::warn!(
                    tenant = %self.id, file = %name,
                    "rule file rejected; the previous version (if any) stays live, and the file is retried when entities change\n{rendered}"
                ),
            }
            self.pending_disk.insert(name.clone(), source.clone());
        }
        let diagnostics = diags.iter().map(|d| locate(&name, &source, d)).collect();
        TenantError::Plugin { name, rendered, diagnostics }
    }

    fn delete_plugin(&mut self, name: &str, from_disk: bool) -> Result<Applied, TenantError> {
        if from_disk && self.pending_disk.remove(name).is_some() && !self.catalog.plugins.iter().any(|p| p.name == name)
        {
            return Ok((Value::Null, None));
        }
        let (staged, removed) = self.stage(true, |c| Ok(c.remove_plugin(name)))?;
        if removed.is_none() {
            return Err(TenantError::NotFound(format!("rule file `{name}` not found")));
        }
        let persisted = !from_disk && self.api_plugins.contains(name);
        let mut b = Batch::new();
        if persisted {
            b.delete(keys::key(&self.id, Kind::Plugin, &[name]));
        }
        let durable = self.commit(staged, b)?;
        let name = name.to_string();
        self.defer(move |actor| {
            actor.api_plugins.remove(&name);
            tracing::info!(tenant = %actor.id, file = %name, "rule file removed");
        });
        Ok((Value::Null, durable))
    }

    /// Records a response. Runs on the actor, so the idempotency check and the write are
    /// one step: two concurrent replays of a key cannot both record. A replay answers
    /// only once the first is durable (it waits for the next flush, which covers it).
    fn respond(&mut self, input: RespondInput) -> Result<Recorded, TenantError> {
        let interaction_id = input.validate()?;
        let key = input.idempotency_key.clone().unwrap_or_default();
        let idem_key = keys::key(&self.id, Kind::Idem, &[&key]);
        if let Some(first) = self.store.get(&idem_key)? {
            let mut first: Value = serde_json::from_slice(&first).map_err(|e| TenantError::Conflict(e.to_string()))?;
            first["duplicate"] = Value::Bool(true);
            let durable = self.store.write(Batch::new())?;
            return Ok(Recorded { reply: first, durable, on_durable: None, undo: None });
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
            category: offer.category.clone(),
            channel: record.channel_name.clone(),
            rank: offer.rank,
            outcome: input.outcome.clone(),
            classification: classification_of(&input.outcome),
            control_group: record.control_group,
            decision_flow_key: record.decision_flow_key.clone(),
            conversion_value: input.conversion_value,
            timestamp: input.timestamp.clone().unwrap_or_else(crate::ids::now_rfc3339),
            idempotency_key: key,
        };
        let reply = RespondReply { response, recorded: true, duplicate: false };
        let (reply, response) = (to_json(&reply), reply.response);
        let response_key = keys::key(&self.id, Kind::Response, &[&response.response_id]);
        let mut b = Batch::new();
        b.put(response_key.clone(), serde_json::to_vec(&response).expect("json"));
        b.put(idem_key.clone(), serde_json::to_vec(&reply).expect("json"));
        let durable = self.store.write(b)?;
        let learning = self.learning.clone();
        let store = self.store.clone();
        let undo = move || {
            let mut b = Batch::new();
            b.delete(idem_key).delete(response_key);
            if let Err(e) = store.write_unacknowledged(b) {
                tracing::error!(error = %e, "could not withdraw a response whose write failed");
            }
        };
        Ok(Recorded {
            reply,
            durable,
            on_durable: Some(Box::new(move || learning.count(&response))),
            undo: Some(Box::new(undo)),
        })
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
            Query::Versions { flow_id, limit, after } => versions(c, &flow_id, limit, after),
            Query::Plugin(name) => c
                .plugins
                .iter()
                .find(|p| p.name == name)
                .map(|p| {
                    to_json(&PluginSource {
                        name: p.name.clone(),
                        source: p.source.clone(),
                        rules: p.rules.len(),
                        scores: p.scores.len(),
                    })
                })
                .ok_or_else(|| TenantError::NotFound(format!("rule file `{name}` not found"))),
            Query::Plugins => Ok(c
                .plugins
                .iter()
                .map(|p| to_json(&PluginSummary { name: p.name.clone(), rules: p.rules.len() }))
                .collect()),
            Query::CheckPlugin { name, source } => Ok(check_plugin(c, &name, &source)),
        }
    }
}

/// What `POST /plugins/{name}/check` answers: the file checked against this catalog.
fn check_plugin(c: &Catalog, name: &str, source: &str) -> Value {
    let checked = crate::dsl::check_source(name, source, &c.dsl_context());
    let diagnostics: Vec<_> = checked.diagnostics.iter().map(|d| locate(name, source, d)).collect();
    to_json(&PluginCheck {
        name: name.to_string(),
        ok: !checked.has_errors(),
        rules: checked.rules.len(),
        scores: checked.scores.len(),
        diagnostics,
    })
}

/// Diagnostics a file outgrows once the entities it names exist: unknown offer,
/// category, channel, flow, or customer attribute (a schema not created yet; an
/// unknown `offer.` field is a mistake, not a wait).
const WAITING_CODES: [&str; 5] = ["E102", "E103", "E104", "E105", "E201"];

/// What a rejected file waits for, when every error is a missing entity.
fn waits_for(diags: &[Diagnostic]) -> Option<Vec<String>> {
    let errors: Vec<&Diagnostic> = diags.iter().filter(|d| d.is_error()).collect();
    let waiting =
        |d: &&Diagnostic| WAITING_CODES.contains(&d.code) && (d.code != "E201" || d.message.contains("`customer."));
    if errors.is_empty() || !errors.iter().all(waiting) {
        return None;
    }
    let mut missing: Vec<String> = errors.iter().map(|d| d.message.clone()).collect();
    missing.sort();
    missing.dedup();
    Some(missing)
}

fn snapshot_of(live: Vec<Arc<CompiledFlow>>, unpublished: HashSet<Box<str>>, generation: u64) -> TenantSnapshot {
    let flows: HashMap<Box<str>, Arc<CompiledFlow>> = live.into_iter().map(|f| (f.key.as_ref().into(), f)).collect();
    TenantSnapshot { flows, unpublished: Arc::new(unpublished), generation }
}

/// Keys of the catalog's flows that have no published version.
fn unpublished(catalog: &Catalog) -> HashSet<Box<str>> {
    catalog.flows.iter().filter(|f| f.published_versions.is_empty()).map(|f| f.spec.key.as_str().into()).collect()
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
        EntityKind::Policy => "contact policy",
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
        EntityKind::Policy => {
            // The platform lists policies by priority (highest first), then newest first.
            let mut p: Vec<&crate::model::policy::ContactPolicy> = c.policies.iter().collect();
            p.sort_by(|a, b| {
                a.spec.priority.cmp(&b.spec.priority).then_with(|| a.meta.created_at.cmp(&b.meta.created_at))
            });
            p.into_iter().map(to_json).collect()
        }
        EntityKind::Flow => c.flows.iter().map(|f| to_json(&f.view())).collect(),
    };
    out.reverse();
    out
}

fn rows(c: &Catalog, schema_id: &str, limit: usize, offset: usize) -> Result<Value, TenantError> {
    let (schema, table) = c.schema(schema_id)?;
    let mut keys: Vec<Box<str>> = table.iter().map(|e| e.key().clone()).collect();
    keys.sort_unstable();
    let rows = keys
        .iter()
        .skip(offset)
        .take(limit)
        .filter_map(|k| table.get(k.as_ref()))
        .map(|row| schema.spec.fields.iter().zip(row.iter()).map(|(f, v)| (f.name.clone(), v.to_json())).collect())
        .collect();
    Ok(to_json(&RowsPage { total: keys.len(), limit, offset, rows }))
}

fn versions(c: &Catalog, flow_id: &str, limit: usize, after: Option<u32>) -> Result<Value, TenantError> {
    let flow = c
        .flows
        .iter()
        .find(|f| f.meta.id == flow_id)
        .ok_or_else(|| TenantError::NotFound(format!("decision flow `{flow_id}` not found")))?;
    let all = &flow.published_versions;
    // Versions are numbered 1, 2, … in order, so the one after `after` is at index `after`.
    let start = after.map_or(0, |v| v as usize).min(all.len());
    let page = &all[start..(start + limit).min(all.len())];
    let has_more = start + page.len() < all.len();
    let versions = page
        .iter()
        .map(|v| {
            let method = v.config_snapshot.nodes.iter().find(|n| n.kind == "score").map(|n| n.config["method"].clone());
            VersionSummary {
                version: v.version,
                published_at: v.published_at.clone(),
                notes: v.notes.clone(),
                summary: VersionShape {
                    node_count: v.config_snapshot.nodes.len(),
                    scoring_method: method.unwrap_or(Value::Null),
                },
            }
        })
        .collect();
    let cursor = has_more.then(|| page.last().map(|v| v.version.to_string())).flatten();
    let pagination = VersionPage { limit, cursor, has_more, total: all.len() };
    Ok(to_json(&VersionList { flow_id: flow.meta.id.clone(), versions, pagination }))
}

impl From<ValidationError> for TenantError {
    fn from(e: ValidationError) -> Self {
        TenantError::Catalog(CatalogError::Invalid(e))
    }
}
