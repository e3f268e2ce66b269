//! The tenant actor: the only writer of one tenant's state.
//!
//! A command is applied to the in-memory catalog, its records are written to storage,
//! and the reply waits for them to be durable. A change that live flows depend on is
//! tried on a copy of the catalog first; if any live flow would no longer compile the
//! change is refused and nothing moves. Otherwise the live flows are recompiled here,
//! on the actor's thread, and published to readers with one `ArcSwap::store`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::{Actor, ActorFutureExt, AtomicResponse, Context, Handler, WrapFuture};
use arc_swap::ArcSwap;
use serde_json::Value;

use super::command::{
    CheckPlugin, Create, Delete, DeletePlugin, Get, List, LoadReply, LoadRows, Patch, PluginCheck, PluginInstalled,
    PluginSource, PluginSummary, Plugins, Publish, Rollback, Rows, RowsPage, VersionList, VersionPage, VersionShape,
    VersionSummary, Versions,
};
use super::persist;
use super::{TenantError, TenantSnapshot};
use crate::catalog::entity::put_flow;
use crate::catalog::retained::Digest;
use crate::catalog::{Catalog, CatalogError, Entity, LoadMode};
use crate::dsl::error::{locate, render};
use crate::dsl::Diagnostic;
use crate::engine::CompiledFlow;
use crate::model::flow::FlowView;
use crate::model::ValidationError;
use crate::store::keys::{self, Kind};

type Reply<T> = Result<T, TenantError>;
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
    /// What a command changes in memory (the catalog, the live snapshot, the rule-file
    /// bookkeeping), run only once its write is durable: until then nothing of it is
    /// visible, and if the write fails it is dropped. The actor takes no other message
    /// meanwhile (`AtomicResponse`), so the next command sees the state this one leaves.
    deferred: Vec<Deferred>,
    /// The journey runtime, given the journeys compiled after every change.
    journeys: Arc<super::journeys::Journeys>,
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
type Applied<R> = (R, Option<Durable>);

/// A change prepared on a copy of the catalog, not yet current.
struct Staged {
    next: Catalog,
    /// Live flows recompiled against `next`, when the change touches what they read.
    live: Option<Vec<Arc<CompiledFlow>>>,
}

impl TenantActor {
    /// Runs a command: `apply` changes a copy and writes its records; the reply goes once
    /// they are durable, and only then does the change become visible (`deferred`). The
    /// actor takes no other message meanwhile, so the next command sees this one's state.
    fn run<R: Send + 'static>(
        &mut self,
        apply: impl FnOnce(&mut TenantActor) -> Result<Applied<R>, TenantError>,
    ) -> AtomicResponse<Self, Reply<R>> {
        // A bug must cost one request, not the actor's thread.
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| apply(self))).unwrap_or_else(|_| {
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

impl<E: Entity> Handler<Create<E>> for TenantActor {
    type Result = AtomicResponse<Self, Reply<E::View>>;

    fn handle(&mut self, msg: Create<E>, _: &mut Self::Context) -> Self::Result {
        self.run(move |a| a.entity::<E>(move |c| E::add(c, msg.0).map(|e| e.meta().id.clone())))
    }
}

impl<E: Entity> Handler<Patch<E>> for TenantActor {
    type Result = AtomicResponse<Self, Reply<E::View>>;

    fn handle(&mut self, msg: Patch<E>, _: &mut Self::Context) -> Self::Result {
        self.run(move |a| {
            let spec = a.merged::<E>(&msg.id, msg.changes, msg.if_version)?;
            a.entity::<E>(move |c| E::update(c, &msg.id, spec).map(|e| e.meta().id.clone()))
        })
    }
}

impl<E: Entity> Handler<Delete<E>> for TenantActor {
    type Result = AtomicResponse<Self, Reply<()>>;

    fn handle(&mut self, msg: Delete<E>, _: &mut Self::Context) -> Self::Result {
        self.run(move |a| Ok(((), a.delete::<E>(&msg.0)?)))
    }
}

impl Handler<LoadRows> for TenantActor {
    type Result = AtomicResponse<Self, Reply<LoadReply>>;

    fn handle(&mut self, msg: LoadRows, _: &mut Self::Context) -> Self::Result {
        self.run(move |a| a.load_rows(&msg.schema_id, msg.rows, msg.mode))
    }
}

impl Handler<Publish> for TenantActor {
    type Result = AtomicResponse<Self, Reply<FlowView>>;

    fn handle(&mut self, msg: Publish, _: &mut Self::Context) -> Self::Result {
        let Publish { id, notes } = msg;
        self.run(move |a| a.publish(&id.clone(), |c| c.publish(&id, notes)))
    }
}

impl Handler<Rollback> for TenantActor {
    type Result = AtomicResponse<Self, Reply<FlowView>>;

    fn handle(&mut self, msg: Rollback, _: &mut Self::Context) -> Self::Result {
        let Rollback { id, version, notes } = msg;
        self.run(move |a| a.publish(&id.clone(), |c| c.rollback(&id, version, notes)))
    }
}

impl Handler<super::command::PutPlugin> for TenantActor {
    type Result = AtomicResponse<Self, Reply<PluginInstalled>>;

    fn handle(&mut self, msg: super::command::PutPlugin, _: &mut Self::Context) -> Self::Result {
        self.run(move |a| a.put_plugin(msg.name, msg.source, msg.from_disk))
    }
}

impl Handler<DeletePlugin> for TenantActor {
    type Result = AtomicResponse<Self, Reply<()>>;

    fn handle(&mut self, msg: DeletePlugin, _: &mut Self::Context) -> Self::Result {
        self.run(move |a| a.delete_plugin(&msg.name, msg.from_disk))
    }
}

impl Handler<super::command::Replicated> for TenantActor {
    type Result = Reply<()>;

    fn handle(&mut self, msg: super::command::Replicated, _: &mut Self::Context) -> Self::Result {
        let made = self.replicated(msg.ops);
        if let Err(e) = &made {
            tracing::error!(tenant = %self.id, error = %e, "a change from another node could not be made live");
        }
        (msg.then)();
        made
    }
}

impl<E: Entity> Handler<List<E>> for TenantActor {
    type Result = Reply<Vec<E::View>>;

    fn handle(&mut self, _: List<E>, _: &mut Self::Context) -> Self::Result {
        Ok(E::listed(&self.catalog).into_iter().map(E::view).collect())
    }
}

impl<E: Entity> Handler<Get<E>> for TenantActor {
    type Result = Reply<E::View>;

    fn handle(&mut self, msg: Get<E>, _: &mut Self::Context) -> Self::Result {
        Ok(E::find(&self.catalog, &msg.0)?.view())
    }
}

impl Handler<Rows> for TenantActor {
    type Result = Reply<RowsPage>;

    fn handle(&mut self, q: Rows, _: &mut Self::Context) -> Self::Result {
        rows(&self.catalog, &q.schema_id, q.limit, q.offset)
    }
}

impl Handler<Versions> for TenantActor {
    type Result = Reply<VersionList>;

    fn handle(&mut self, q: Versions, _: &mut Self::Context) -> Self::Result {
        versions(&self.catalog, &q.flow_id, q.limit, q.after)
    }
}

impl Handler<super::command::VersionConfig> for TenantActor {
    type Result = Reply<crate::model::flow::PublishedVersion>;

    fn handle(&mut self, q: super::command::VersionConfig, _: &mut Self::Context) -> Self::Result {
        let flow = self.catalog.flows.iter().find(|f| f.meta.id == q.flow_id || f.spec.key == q.flow_id);
        let flow = flow.ok_or_else(|| TenantError::NotFound(format!("decision flow `{}` not found", q.flow_id)))?;
        let found = flow.published_versions.iter().find(|v| v.version == q.version);
        let found = found.ok_or_else(|| {
            TenantError::NotFound(format!("decision flow `{}` has no published version {}", flow.spec.key, q.version))
        })?;
        Ok((**found).clone())
    }
}

impl Handler<super::command::CompileCandidate> for TenantActor {
    type Result = Reply<Arc<crate::engine::CompiledFlow>>;

    fn handle(&mut self, q: super::command::CompileCandidate, _: &mut Self::Context) -> Self::Result {
        Ok(self.catalog.compile_candidate(&q.flow, q.which)?)
    }
}

impl Handler<super::command::Plugin> for TenantActor {
    type Result = Reply<PluginSource>;

    fn handle(&mut self, q: super::command::Plugin, _: &mut Self::Context) -> Self::Result {
        let p = self.catalog.plugins.iter().find(|p| p.name == q.0);
        let p = p.ok_or_else(|| TenantError::NotFound(format!("rule file `{}` not found", q.0)))?;
        Ok(PluginSource {
            name: p.name.clone(),
            source: p.source.clone(),
            rules: p.rules.len(),
            scores: p.scores.len(),
        })
    }
}

impl Handler<Plugins> for TenantActor {
    type Result = Reply<Vec<PluginSummary>>;

    fn handle(&mut self, _: Plugins, _: &mut Self::Context) -> Self::Result {
        let files = self.catalog.plugins.iter();
        Ok(files.map(|p| PluginSummary { name: p.name.clone(), rules: p.rules.len() }).collect())
    }
}

impl Handler<super::command::AnalyzePolicies> for TenantActor {
    type Result = Reply<crate::catalog::conflicts::ConflictReport>;

    fn handle(&mut self, _: super::command::AnalyzePolicies, _: &mut Self::Context) -> Self::Result {
        let c = &self.catalog;
        Ok(crate::catalog::conflicts::analyze(&c.policies, &c.offers, &c.channels))
    }
}

impl Handler<CheckPlugin> for TenantActor {
    type Result = Reply<PluginCheck>;

    fn handle(&mut self, q: CheckPlugin, _: &mut Self::Context) -> Self::Result {
        Ok(check_plugin(&self.catalog, &q.name, &q.source))
    }
}

impl TenantActor {
    /// A tenant restored (or created) with `catalog`; compiles its live flows.
    pub fn new(
        id: Arc<str>,
        catalog: Catalog,
        store: Arc<dyn Storage>,
        journeys: Arc<super::journeys::Journeys>,
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
            deferred: Vec::new(),
            journeys,
        };
        actor.keep_inputs(&actor.snapshot.load().flows.values().cloned().collect::<Vec<_>>());
        actor.install_journeys();
        (actor, snapshot)
    }

    /// Keeps what each of `flows` was compiled from (this catalog) for the receipts of
    /// the decisions it will make, before it goes live. A failure is logged: the flow
    /// still decides, and a replay of its decisions says their inputs are not kept.
    fn keep_inputs(&self, flows: &[Arc<CompiledFlow>]) {
        let make = |d: &Digest| {
            let flow = flows.iter().find(|f| &f.inputs == d)?;
            let (digest, bytes) = self.catalog.inputs_of(flow)?;
            if digest != *d {
                // The catalog moved on between compile and go-live: this version's
                // decisions cannot be replayed (their receipts say so).
                tracing::warn!(tenant = %self.id, flow = %flow.key, version = flow.version,
                    "the catalog changed before the flow went live; its inputs are not kept for replays");
                return None;
            }
            Some(bytes)
        };
        if let Err(e) = super::retained::keep(self.store.as_ref(), &self.id, flows.iter().map(|f| f.inputs), make) {
            tracing::error!(tenant = %self.id, error = %e, "could not keep the inputs of live flows for replays");
        }
    }

    /// The spec a patch makes: the stored entity with the patch's fields in place of its
    /// own, for exactly the version `if_version` names (or the `version` sent in the body).
    fn merged<E: Entity>(
        &self,
        id: &str,
        changes: serde_json::Map<String, Value>,
        if_version: Option<u64>,
    ) -> Result<E::Spec, TenantError> {
        let current = E::find(&self.catalog, id)?;
        let stored = current.meta().version;
        let wanted = if_version.or_else(|| changes.get("version").and_then(Value::as_u64));
        if let Some(wanted) = wanted.filter(|w| *w != stored) {
            return Err(TenantError::VersionMismatch(format!(
                "{} `{id}` is at version {stored}, not {wanted}: read it again and reapply the change",
                E::NAME
            )));
        }
        let Value::Object(mut fields) = to_json(&current.view()) else {
            return Err(TenantError::Internal(format!("{} `{id}` is not a JSON object", E::NAME)));
        };
        // The stored-only fields go before the spec is parsed, so an unknown field can
        // only be one the client sent; sent back, they are ignored.
        for field in E::STORED_FIELDS {
            fields.remove(*field);
        }
        fields.extend(changes.into_iter().filter(|(field, _)| !E::STORED_FIELDS.contains(&field.as_str())));
        Ok(crate::model::parse_value("", &Value::Object(fields))?)
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

    /// Compiles the catalog's journeys and hands them to the journey runtime; one that
    /// no longer compiles (an offer it shows was deleted) is logged and left out.
    fn install_journeys(&self) {
        let (compiled, failed) = self.catalog.compile_journeys();
        for (name, e) in failed {
            tracing::error!(tenant = %self.id, journey = %name, error = %e, "journey does not compile; it is stopped");
        }
        self.journeys.install(compiled);
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
            actor.install_journeys();
        });
        Ok(durable)
    }

    /// Creates or updates one entity (`change` returns its id) and stores its record(s).
    fn entity<E: Entity>(
        &mut self,
        change: impl FnOnce(&mut Catalog) -> Result<String, CatalogError>,
    ) -> Result<Applied<E::View>, TenantError> {
        let (staged, id) = self.stage(E::LIVE, change)?;
        let entity = E::find(&staged.next, &id)?;
        let view = entity.view();
        let mut b = Batch::new();
        entity.store(&mut b, &self.id);
        let durable = self.commit(staged, b)?;
        Ok((view, durable))
    }

    /// Makes records another node wrote live. Rows go into their tables (a row load is
    /// the common large change); anything else reloads the tenant's entities from the
    /// store, keeping the loaded rows, the learned counters and this node's folder files.
    fn replicated(&mut self, ops: Vec<crate::store::Op>) -> Result<(), TenantError> {
        use crate::store::Op;
        // Enrollments are the journey runtime's records, not catalog entities: they go
        // to it, and the catalog is not reloaded for another node's journey steps.
        let enrollment = |op: &Op| keys::parse(op.key()).is_some_and(|k| k.kind == Kind::Enrollment);
        let (enrollments, ops): (Vec<Op>, Vec<Op>) = ops.into_iter().partition(enrollment);
        if !enrollments.is_empty() {
            self.journeys.replicated(&enrollments);
            if ops.is_empty() {
                return Ok(());
            }
        }
        let row = |op: &Op| keys::parse(op.key()).filter(|k| matches!(k.kind, Kind::Row | Kind::ApiKey | Kind::Meta));
        if ops.iter().all(|op| matches!(op, Op::Put { .. }) && row(op).is_some()) {
            for op in &ops {
                let (Some(k), Op::Put { value, .. }) = (row(op), op) else { continue };
                let parsed = serde_json::from_slice::<Value>(value).ok();
                if let (Kind::Row, Some(schema), Some(row)) = (k.kind, k.parts.first(), parsed) {
                    if let Err(e) = self.catalog.restore_row(schema, &row) {
                        tracing::warn!(tenant = %self.id, error = %e, "a replicated row does not load");
                    }
                }
            }
            return Ok(());
        }
        let (mut next, warnings) = persist::reload_catalog(self.store.as_ref(), &self.id, &self.catalog)?;
        for w in warnings {
            tracing::warn!(tenant = %self.id, "{w}");
        }
        self.api_plugins = next.plugins.iter().map(|p| p.name.clone()).collect();
        for p in self.catalog.plugins.iter().filter(|p| !self.api_plugins.contains(&p.name)) {
            if next.put_plugin(&p.name, &p.source).is_err() {
                tracing::warn!(tenant = %self.id, file = %p.name, "a folder rule file no longer checks after a change");
            }
        }
        let (live, failed) = next.compile_live();
        for (key, e) in failed {
            tracing::error!(tenant = %self.id, flow = %key, error = %e, "live flow does not compile after a change");
        }
        self.catalog = next;
        self.swap(live);
        self.retry_pending();
        self.install_journeys();
        Ok(())
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
    fn load_rows(
        &mut self,
        schema_id: &str,
        rows: Vec<bytes::Bytes>,
        mode: LoadMode,
    ) -> Result<Applied<LoadReply>, TenantError> {
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
        Ok((reply, durable))
    }

    /// Removes one entity and the records it owns. Every live flow is compiled without it
    /// first: a delete that would break one is refused.
    fn delete<E: Entity>(&mut self, id: &str) -> Result<Option<Durable>, TenantError> {
        let (staged, ()) = self.stage(true, |c| E::remove(c, id))?;
        let mut b = Batch::new();
        b.delete(keys::key(&self.id, E::RECORD, &[id]));
        if let Some(prefix) = E::owned_records(&self.id, id) {
            for (key, _) in self.store.scan_prefix(&prefix)? {
                b.delete(key);
            }
        }
        self.commit(staged, b)
    }

    /// Publishes (or rolls back): the new version is written, then made live. The other
    /// flows keep their compiled plans; one swap publishes the new one.
    fn publish(
        &mut self,
        flow_id: &str,
        publish: impl FnOnce(&mut Catalog) -> Result<Arc<CompiledFlow>, CatalogError>,
    ) -> Result<Applied<FlowView>, TenantError> {
        let (staged, compiled) = self.stage(false, publish)?;
        let published = staged.next.flows.iter().find(|f| f.meta.id == flow_id).expect("just published");
        let flow = published.view();
        let mut b = Batch::new();
        put_flow(&mut b, &self.id, published, true);
        let durable = self.commit(staged, b)?;
        self.defer(move |actor| {
            actor.keep_inputs(std::slice::from_ref(&compiled));
            let current = actor.snapshot.load();
            let mut flows = current.flows.clone();
            flows.insert(compiled.key.as_ref().into(), compiled);
            let unpublished = Arc::new(unpublished(&actor.catalog));
            actor.snapshot.store(Arc::new(TenantSnapshot { flows, unpublished, generation: current.generation + 1 }));
        });
        Ok((flow, durable))
    }

    fn swap(&self, live: Vec<Arc<CompiledFlow>>) {
        self.keep_inputs(&live);
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

    fn put_plugin(
        &mut self,
        name: String,
        source: String,
        from_disk: bool,
    ) -> Result<Applied<PluginInstalled>, TenantError> {
        let mut next = self.catalog.clone();
        let warnings = match next.put_plugin(&name, &source) {
            Ok(warnings) => warnings,
            Err(diags) => return Err(self.rejected(name, source, from_disk, diags)),
        };
        let staged = self.prepared(next, true)?;
        let plugin = staged.next.plugins.iter().find(|p| p.name == name).expect("just stored");
        let reply = PluginInstalled {
            name: name.clone(),
            rules: plugin.rules.len(),
            scores: plugin.scores.len(),
            warnings: warnings.iter().map(|d| locate(&name, &source, d)).collect(),
        };
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

    fn delete_plugin(&mut self, name: &str, from_disk: bool) -> Result<Applied<()>, TenantError> {
        if from_disk && self.pending_disk.remove(name).is_some() && !self.catalog.plugins.iter().any(|p| p.name == name)
        {
            return Ok(((), None));
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
        Ok(((), durable))
    }
}

/// What `POST /plugins/{name}/check` answers: the file checked against this catalog.
fn check_plugin(c: &Catalog, name: &str, source: &str) -> PluginCheck {
    let checked = crate::dsl::check_source(name, source, &c.dsl_context());
    let diagnostics: Vec<_> = checked.diagnostics.iter().map(|d| locate(name, source, d)).collect();
    PluginCheck {
        name: name.to_string(),
        ok: !checked.has_errors(),
        rules: checked.rules.len(),
        scores: checked.scores.len(),
        diagnostics,
    }
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

fn rows(c: &Catalog, schema_id: &str, limit: usize, offset: usize) -> Result<RowsPage, TenantError> {
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
    Ok(RowsPage { total: keys.len(), limit, offset, rows })
}

fn versions(c: &Catalog, flow_id: &str, limit: usize, after: Option<u32>) -> Result<VersionList, TenantError> {
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
    Ok(VersionList { flow_id: flow.meta.id.clone(), versions, pagination })
}

impl From<ValidationError> for TenantError {
    fn from(e: ValidationError) -> Self {
        TenantError::Catalog(CatalogError::Invalid(e))
    }
}
