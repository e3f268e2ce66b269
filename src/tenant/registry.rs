//! All tenants of a process. actix actors cannot start inside a plain multi-thread
//! tokio runtime, so the registry runs an actix System on a thread of its own, and each
//! tenant's actor on an arbiter (thread) of that system of its own, so one tenant's
//! compile or row load never holds up another's writes. Request handlers on the tokio
//! runtime hold only `Addr`s (to send commands) and `ArcSwap`s (to read snapshots).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use actix::{Actor, Addr, ArbiterHandle, MailboxError, System};
use arc_swap::ArcSwap;
use dashmap::DashMap;
use serde_json::Value;

use super::actor::TenantActor;
use super::command::RespondReply;
use super::interaction::RespondInput;
use super::journeys::{self, Decider, Journeys};
use super::learning::{FlowUplift, Learning};
use super::measure::{self, FlowLog};
use super::persist::load_catalog;
use super::{RecommendError, RecommendOptions, TenantError, TenantSnapshot};
use crate::catalog::Catalog;
use crate::engine::{CompiledFlow, Decision, RecommendRequest};
use crate::model::ValidationError;
use crate::store::keys::{self, Kind};
use crate::store::{Batch, Durable, Storage, StoreError};

/// The list of tenant ids; the one record outside any tenant's prefix.
const TENANTS_KEY: &[u8] = b"registry/tenants";

/// How often the closed event-log segments are folded into the checkpoint, and how often
/// segments past retention are dropped.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(10);
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// How often the journey scheduler looks for waits that timed out.
const JOURNEY_TICK: Duration = Duration::from_secs(1);

/// How long a request waits for a tenant actor before giving up with an error.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// One tenant as requests see it.
pub struct TenantHandle {
    pub id: Arc<str>,
    /// The live compiled flows; loaded lock-free by every decision.
    pub snapshot: Arc<ArcSwap<TenantSnapshot>>,
    addr: Addr<TenantActor>,
    store: Arc<dyn Storage>,
    /// Counters, contacts and uplift models.
    pub learning: Arc<Learning>,
    /// Enrollments and the walk through journeys.
    pub journeys: Arc<Journeys>,
    /// Past flow versions compiled again for replays.
    replays: super::replay::Flows,
}

impl TenantHandle {
    /// The live version of a flow, if it has been published.
    pub fn flow(&self, key: &str) -> Option<Arc<CompiledFlow>> {
        self.snapshot.load().flows.get(key).cloned()
    }

    /// The decision for one request, the one path the server, the tests and the
    /// benchmarks take: validate, find the live flow (404 for an unknown key, 409 for
    /// one never published — both from the snapshot, without the actor), decide with
    /// the tenant's learned state, record the contacts it made, and log it so
    /// `/respond` can find it.
    pub fn recommend(&self, req: &RecommendRequest, options: RecommendOptions) -> Result<Decision, RecommendError> {
        self.recommend_logged(req, options).map(|(decision, _)| decision)
    }

    /// Decides as [`recommend`](Self::recommend) does, and also gives back what completes
    /// once the decision's record is replicated (in a cluster: stored by JetStream on a
    /// quorum, so `/respond` finds it on any node); `None` on a single node.
    pub fn recommend_logged(
        &self,
        req: &RecommendRequest,
        options: RecommendOptions,
    ) -> Result<(Decision, Option<Durable>), RecommendError> {
        req.validate()?;
        let key = req
            .decision_flow_key
            .as_deref()
            .filter(|k| !k.trim().is_empty())
            .ok_or_else(|| ValidationError::one("decisionFlowKey", "is required"))?;
        let snapshot = self.snapshot.load();
        let Some(flow) = snapshot.flows.get(key).cloned() else {
            return Err(if snapshot.unpublished.contains(key) {
                RecommendError::Unpublished(key.to_string())
            } else {
                RecommendError::UnknownFlow(key.to_string())
            });
        };
        drop(snapshot);
        if options.dry_run {
            return Ok((self.learning.decide_dry(&flow, req, options.explain), None));
        }
        let mut decision = self.learning.decide(&flow, req, options.explain);
        let delivery = self.deliver_journey_action(&mut decision);
        let replicated = self.log_decision(&mut decision, req);
        if let Some(p) = delivery {
            if decision.interaction_id.is_empty() {
                self.journeys.undeliver(&decision.customer_id, p);
            } else {
                self.journeys.delivered(p, decision.interaction_id.clone());
            }
        }
        self.learning.experiments.decision(&flow.key, &decision.customer_id, decision.control_group);
        Ok((decision, replicated))
    }

    /// Puts a journey's channel action waiting for this customer on this channel first in
    /// the decision, and records its contact. A holdout customer gets none: the flow's
    /// experiment measures what the flow alone does.
    fn deliver_journey_action(&self, decision: &mut Decision) -> Option<journeys::Pending> {
        if decision.control_group {
            return None;
        }
        let p = self.journeys.take_delivery(&decision.customer_id, decision.channel_name.as_deref())?;
        if journeys::place_first(decision, &p) {
            let offer = p.offer();
            self.learning.record_offer_contact(
                &decision.customer_id,
                &offer.id,
                &offer.category,
                decision.channel_name.clone(),
            );
        }
        Some(p)
    }

    /// Sends the live flow's recent logged requests through its draft (`tenant::simulate`),
    /// changing nothing; the log is read on a blocking thread.
    pub async fn simulate(
        self: &Arc<Self>,
        input: super::simulate::SimulateInput,
    ) -> Result<super::simulate::Simulation, TenantError> {
        let (limit, since) = input.validate()?;
        let live = self.live_flow(&input.id).ok_or_else(|| {
            TenantError::NotFound(format!("no published decision flow with id or key `{}` to simulate", input.id))
        })?;
        let which = crate::catalog::FlowCandidate::Draft;
        let draft = self.ask(super::command::CompileCandidate { flow: live.key.to_string(), which }).await?;
        let t = self.clone();
        let run = move || {
            let conversions = super::interaction::conversion_mask(&live);
            let (logged, outcomes) =
                super::simulate::load(t.store.as_ref(), &t.id, &live.key, conversions, limit, since)?;
            Ok(super::simulate::run(&t.learning, &live, &draft, &logged, &outcomes))
        };
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| TenantError::Internal(format!("the simulation failed unexpectedly: {e}")))?
    }

    /// A page of the customer's logged decisions, newest first (`tenant::views`).
    pub fn customer_interactions(
        &self,
        customer_id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Option<super::views::CustomerInteractions>, TenantError> {
        use super::views::PageError;
        super::views::customer_interactions(self.store.as_ref(), &self.id, &self.learning, customer_id, limit, cursor)
            .map_err(|e| match e {
                PageError::Cursor(_) => ValidationError::one("cursor", e.to_string()).into(),
                PageError::Store(e) => e.into(),
            })
    }

    /// A logged decision of this tenant, by the id `/recommend` gave it, with what
    /// reproducing it needs.
    pub fn interaction(&self, id: &str) -> Result<Option<super::interaction::Interaction>, TenantError> {
        let live = self.live_flows();
        super::replay::receipt(self.store.as_ref(), &self.id, &live, &self.replays, id).map_err(replay_error)
    }

    /// Decides a logged decision again from its receipt (`tenant::replay`), on a
    /// blocking thread (a past version may have to be compiled again).
    pub async fn replay(self: &Arc<Self>, id: String) -> Result<super::replay::ReplayReport, TenantError> {
        let t = self.clone();
        let run = move || {
            let live = t.live_flows();
            super::replay::replay(t.store.as_ref(), &t.id, &live, &t.replays, &id).map_err(replay_error)
        };
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| TenantError::Internal(format!("the replay failed unexpectedly: {e}")))?
    }

    fn live_flows(&self) -> Vec<Arc<CompiledFlow>> {
        self.snapshot.load().flows.values().cloned().collect()
    }

    /// A dry run with a flow compiled for it (a draft or a past version): decides and
    /// records nothing.
    pub fn dry_run(
        &self,
        flow: &Arc<CompiledFlow>,
        req: &RecommendRequest,
        explain: bool,
    ) -> Result<Decision, RecommendError> {
        req.validate()?;
        Ok(self.learning.decide_dry(flow, req, explain))
    }

    /// Records an outcome for a logged decision; a replayed idempotency key returns the
    /// first result (`duplicate: true`) and counts nothing twice. Resolves once durable.
    pub async fn respond(&self, input: RespondInput) -> Result<RespondReply, TenantError> {
        let reply = super::respond::record(self.store.as_ref(), &self.id, &self.learning, input).await?;
        if !reply.duplicate {
            self.journeys.on_response(self, &reply.response).await;
        }
        Ok(reply)
    }

    /// Records a batch of outcomes (`/respond/bulk`), each as `respond` would, their appends
    /// sharing group commits; one result per input, in order.
    pub async fn respond_all(&self, inputs: Vec<RespondInput>) -> Vec<Result<RespondReply, TenantError>> {
        let replies = super::respond::record_all(self.store.as_ref(), &self.id, &self.learning, inputs).await;
        for reply in replies.iter().flatten().filter(|r| !r.duplicate) {
            self.journeys.on_response(self, &reply.response).await;
        }
        replies
    }

    /// Sends a command or query (`tenant::command`) to the tenant's actor and waits for
    /// its typed reply; 503 (`Unavailable`) when the actor is gone or does not answer.
    pub async fn ask<M, R>(&self, msg: M) -> Result<R, TenantError>
    where
        M: actix::Message<Result = Result<R, TenantError>> + Send + 'static,
        R: Send + 'static,
        TenantActor: actix::Handler<M>,
    {
        self.addr.send(msg).timeout(COMMAND_TIMEOUT).await.map_err(|e| mailbox(&self.id, e))?
    }

    /// Appends a decision to the event log and gives it the id that locates its record,
    /// so `/respond` finds it with one read. A recommendation is not an acknowledged
    /// write: the record is readable at once and written to its segment file within
    /// `UNACKNOWLEDGED_FLUSH`, without a sync of its own: a crash may lose the last
    /// ~200 ms of decisions (a respond to one of those gets 404), as the sled log did.
    /// (A random-key sled insert per decision was 29% of the server's CPU.)
    /// In a cluster the record is also published to the event stream; the `Durable`
    /// returned completes once JetStream has stored it.
    pub fn log_decision(&self, decision: &mut Decision, request: &RecommendRequest) -> Option<Durable> {
        let nonce = crate::ids::random_u32();
        let record = super::interaction::decision_record(&self.id, decision, request, nonce);
        match self.store.events().append(&record, false) {
            Ok((at, replicated)) => {
                let id = super::interaction::DecisionId::here(at, nonce);
                self.learning.note_decision(&decision.customer_id, id);
                decision.recommendation_id = id.to_string();
                decision.interaction_id = decision.recommendation_id.clone();
                replicated
            }
            Err(e) => {
                tracing::error!(tenant = %self.id, error = %e, "could not log a decision");
                None
            }
        }
    }

    /// A live flow by its id or key.
    pub fn live_flow(&self, id_or_key: &str) -> Option<Arc<CompiledFlow>> {
        let snapshot = self.snapshot.load();
        snapshot.flows.get(id_or_key).or_else(|| snapshot.flows.values().find(|f| &*f.flow_id == id_or_key)).cloned()
    }

    /// The flow's decisions and responses as stored (a full scan: reporting and
    /// training only, never the request path).
    pub fn flow_log(&self, flow_key: &str) -> Result<FlowLog, StoreError> {
        FlowLog::load(self.store.as_ref(), &self.id, flow_key)
    }

    /// Trains the flow's uplift models from its log and makes them live.
    /// The models are kept for the receipts of the decisions they will serve before
    /// they go live (`tenant::retained`).
    pub fn train_uplift(&self, flow: &Arc<CompiledFlow>) -> Result<Arc<FlowUplift>, StoreError> {
        let sample = self.training_sample(flow)?;
        let models = measure::train(flow, &sample);
        super::retained::keep(self.store.as_ref(), &self.id, [models.digest], |_| Some(models.retained()))?;
        self.learning.install_uplift(models);
        Ok(self.learning.uplift_models(&flow.key).expect("just installed"))
    }

    /// Each offer's segments and Qini curve for the flow's installed uplift models, over the
    /// training sample (`tenant::qini`).
    pub fn uplift_curves(&self, flow: &Arc<CompiledFlow>) -> Result<super::qini::UpliftCurves, StoreError> {
        let Some(models) = self.learning.uplift_models(&flow.key) else { return Ok(super::qini::untrained(flow)) };
        Ok(super::qini::curves(flow, &self.training_sample(flow)?, &models))
    }

    /// The bounded sample of the flow's log that training reads.
    fn training_sample(&self, flow: &Arc<CompiledFlow>) -> Result<measure::TrainingSample, StoreError> {
        let conversions = super::interaction::conversion_mask(flow);
        measure::TrainingSample::load(self.store.as_ref(), &self.id, &flow.key, conversions, measure::SAMPLE_PER_OFFER)
    }

    /// Sends a command without waiting for its reply (the plugins watcher; the actor logs).
    pub fn notify<M, R>(&self, msg: M)
    where
        M: actix::Message<Result = Result<R, TenantError>> + Send + 'static,
        R: Send + 'static,
        TenantActor: actix::Handler<M>,
    {
        if let Err(e) = self.addr.try_send(msg) {
            tracing::error!(tenant = %self.id, error = %e, "tenant mailbox refused a command");
        }
    }
}

/// A journey's `nba_decision` is a `/recommend` of the tenant (or, tested, a dry run).
impl TenantHandle {
    /// Retires the retained documents nothing live names any more, and drops those
    /// retired for longer than the log's retention (no logged decision names them).
    fn sweep_retained(&self, retention: Duration) {
        let flows = self.live_flows();
        let mut live: std::collections::HashSet<_> = flows.iter().map(|f| f.inputs).collect();
        live.extend(flows.iter().filter_map(|f| self.learning.uplift_models(&f.key)).map(|m| m.digest));
        let now = crate::ids::unix_now();
        match super::retained::sweep(self.store.as_ref(), &self.id, &live, now, retention.as_secs() as i64) {
            Ok(0) => {}
            Ok(n) => tracing::info!(tenant = %self.id, documents = n, "dropped retained replay inputs past retention"),
            Err(e) => tracing::error!(tenant = %self.id, error = %e, "sweeping retained replay inputs failed"),
        }
    }
}

fn replay_error(e: super::replay::ReplayError) -> TenantError {
    use super::replay::ReplayError;
    match e {
        ReplayError::NotFound(id) => TenantError::NotFound(format!("interaction `{id}` not found")),
        ReplayError::NotReplayable(why) => TenantError::Conflict(why),
        ReplayError::Store(e) => TenantError::Store(e),
    }
}

impl Decider for TenantHandle {
    fn decide(&self, req: &RecommendRequest, dry: bool) -> Result<Decision, String> {
        let options = RecommendOptions { explain: false, dry_run: dry };
        self.recommend_logged(req, options).map(|(decision, _)| decision).map_err(|e| e.to_string())
    }
}

fn mailbox(tenant: &str, e: MailboxError) -> TenantError {
    match e {
        MailboxError::Closed => TenantError::Unavailable(format!("tenant `{tenant}` has stopped")),
        MailboxError::Timeout => TenantError::Unavailable(format!("tenant `{tenant}` did not answer in time")),
    }
}

pub struct Registry {
    tenants: DashMap<String, Arc<TenantHandle>>,
    store: Arc<dyn Storage>,
    arbiter: ArbiterHandle,
    system: System,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Each tenant's actor thread; joined at shutdown so the actors (and the store they
    /// hold) are gone when `shutdown` returns.
    arbiters: Mutex<Vec<actix::Arbiter>>,
    /// Tenant creation reads, extends and rewrites the tenant list: one at a time.
    creating: tokio::sync::Mutex<()>,
    stopping: AtomicBool,
    /// Wakes the journey scheduler when a `/recommend` delivered a channel action.
    journey_wake: Arc<tokio::sync::Notify>,
    /// In a cluster: which customers' enrollments this node moves.
    journey_owner: Arc<std::sync::OnceLock<journeys::OwnerFn>>,
}

impl Registry {
    /// Starts the actor thread and every stored tenant.
    pub fn start(store: Arc<dyn Storage>) -> Result<Arc<Registry>, TenantError> {
        let (system, arbiter, thread) = start_actor_thread()?;
        let registry = Arc::new(Registry {
            tenants: DashMap::new(),
            store,
            arbiter,
            system,
            thread: Mutex::new(Some(thread)),
            arbiters: Mutex::new(Vec::new()),
            creating: tokio::sync::Mutex::new(()),
            stopping: AtomicBool::new(false),
            journey_wake: Arc::new(tokio::sync::Notify::new()),
            journey_owner: Arc::new(std::sync::OnceLock::new()),
        });
        let mut stored = Vec::new();
        for id in registry.stored_tenant_ids()? {
            let (catalog, warnings) = load_catalog(registry.store.as_ref(), &id)?;
            for w in warnings {
                tracing::warn!(tenant = %id, "{w}");
            }
            let learning = Arc::new(Learning::new(catalog.counters.clone()));
            stored.push((id, catalog, learning));
        }
        let restoring: Vec<(&str, &Learning)> = stored.iter().map(|(id, _, l)| (id.as_str(), &**l)).collect();
        if let Err(e) = super::checkpoint::restore_all(registry.store.as_ref(), &restoring) {
            tracing::error!(error = %e, "could not rebuild counters, contacts and experiments from the log");
        }
        for (id, catalog, learning) in stored {
            registry.start_tenant(&id, catalog, learning);
        }
        Ok(registry)
    }

    fn stored_tenant_ids(&self) -> Result<Vec<String>, TenantError> {
        let Some(bytes) = self.store.get(TENANTS_KEY)? else { return Ok(Vec::new()) };
        serde_json::from_slice(&bytes).map_err(|e| TenantError::Unavailable(format!("unreadable tenant list: {e}")))
    }

    /// Starts the stored tenants that are not running (created by another cluster node);
    /// returns how many.
    pub fn start_stored_tenants(&self) -> Result<usize, TenantError> {
        let mut started = 0;
        for id in self.stored_tenant_ids()? {
            if self.tenant(&id).is_none() {
                let (catalog, _) = load_catalog(self.store.as_ref(), &id)?;
                self.start_new_tenant(&id, catalog);
                started += 1;
            }
        }
        Ok(started)
    }

    /// Starts a tenant's actor with its learned state (restored, or new for a new tenant).
    fn start_tenant(&self, id: &str, catalog: Catalog, learning: Arc<Learning>) -> Arc<TenantHandle> {
        let id: Arc<str> = id.into();
        let (wake, owner) = (self.journey_wake.clone(), self.journey_owner.clone());
        let journeys = Arc::new(Journeys::load(id.clone(), self.store.clone(), wake, owner));
        let (actor, snapshot) = TenantActor::new(id.clone(), catalog, self.store.clone(), journeys.clone());
        let addr = TenantActor::start_in_arbiter(&self.tenant_arbiter(&id), move |_| actor);
        let store = self.store.clone();
        let handle = Arc::new(TenantHandle {
            id: id.clone(),
            snapshot,
            addr,
            store,
            learning,
            journeys,
            replays: Default::default(),
        });
        self.tenants.insert(id.to_string(), handle.clone());
        handle
    }

    /// A thread of the tenant's own for its actor: a tenant compiling 1,000 rules or
    /// parsing a million rows keeps its own thread busy, never another tenant's writes.
    /// (Falls back to the shared thread if one cannot be started.)
    fn tenant_arbiter(&self, id: &str) -> ArbiterHandle {
        let (tx, rx) = std::sync::mpsc::channel();
        let started = self.arbiter.spawn_fn(move || {
            let _ = tx.send(actix::Arbiter::new());
        });
        match started.then(|| rx.recv().ok()).flatten() {
            Some(arbiter) => {
                let handle = arbiter.handle();
                self.arbiters.lock().expect("not poisoned").push(arbiter);
                handle
            }
            None => {
                tracing::warn!(tenant = %id, "no thread of its own for this tenant; it shares the actor thread");
                self.arbiter.clone()
            }
        }
    }

    /// Starts a tenant from a ready catalog (not persisted until it changes): seeding
    /// benchmarks and tests with generated tenants.
    pub fn adopt(&self, id: &str, catalog: Catalog) -> Arc<TenantHandle> {
        self.start_new_tenant(id, catalog)
    }

    /// A tenant with nothing stored or logged yet: nothing to restore.
    fn start_new_tenant(&self, id: &str, catalog: Catalog) -> Arc<TenantHandle> {
        let learning = Arc::new(Learning::new(catalog.counters.clone()));
        self.start_tenant(id, catalog, learning)
    }

    pub fn tenant(&self, id: &str) -> Option<Arc<TenantHandle>> {
        self.tenants.get(id).map(|h| h.clone())
    }

    pub fn tenant_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.tenants.iter().map(|e| e.key().clone()).collect();
        ids.sort();
        ids
    }

    /// Creates a tenant (durably) or returns the existing one.
    pub async fn ensure_tenant(&self, id: &str) -> Result<Arc<TenantHandle>, TenantError> {
        if let Some(t) = self.tenant(id) {
            return Ok(t);
        }
        let _one_at_a_time = self.creating.lock().await;
        if let Some(t) = self.tenant(id) {
            return Ok(t);
        }
        let mut ids = self.tenant_ids();
        ids.push(id.to_string());
        let mut b = Batch::new();
        b.put(TENANTS_KEY.to_vec(), serde_json::to_vec(&ids).expect("ids serialise"));
        b.put(keys::key(id, Kind::Meta, &[]), serde_json::to_vec(&serde_json::json!({"id": id})).expect("json"));
        self.store.write(b)?.await?;
        Ok(self.start_new_tenant(id, Catalog::new()))
    }

    /// Stores an API key record (opaque JSON) under its hash; resolves when durable.
    pub async fn put_api_key(&self, tenant: &str, hash_hex: &str, record: &Value) -> Result<(), TenantError> {
        let mut b = Batch::new();
        b.put(keys::key(tenant, Kind::ApiKey, &[hash_hex]), serde_json::to_vec(record).expect("json"));
        self.store.write(b)?.await?;
        Ok(())
    }

    /// Every stored API key record: (tenant, hash hex, record).
    pub fn api_keys(&self) -> Result<Vec<(String, String, Value)>, TenantError> {
        let mut out = Vec::new();
        for tenant in self.tenant_ids() {
            for (key, value) in self.store.scan_prefix(&keys::prefix(&tenant, Kind::ApiKey))? {
                let hash = keys::last_component(&key).unwrap_or_default();
                if let Ok(record) = serde_json::from_slice(&value) {
                    out.push((tenant.clone(), hash, record));
                }
            }
        }
        Ok(out)
    }

    pub fn store(&self) -> &Arc<dyn Storage> {
        &self.store
    }

    /// Retrains every live flow's uplift models (flows with a holdout) every `interval`,
    /// on a thread of its own: training never runs on a request or actor thread.
    pub fn start_trainer(self: &Arc<Self>, interval: Duration) {
        let tick = Duration::from_millis(250).min(interval);
        let mut waited = Duration::ZERO;
        let started = self.every(tick, "arbiter-trainer", move |registry| {
            waited += tick;
            if waited >= interval {
                waited = Duration::ZERO;
                registry.train_all();
            }
        });
        if let Err(e) = started {
            tracing::error!(error = %e, "could not start the uplift trainer; models train on demand only");
        }
    }

    /// Runs the journey scheduler on the tokio runtime: every second, or as soon as a
    /// `/recommend` delivered a channel action, each tenant records its deliveries and
    /// moves the enrollments whose wait timed out (`Journeys::tick`). Stops with the
    /// registry.
    pub fn start_journeys(self: &Arc<Self>) {
        let registry = Arc::downgrade(self);
        let wake = self.journey_wake.clone();
        tokio::spawn(async move {
            loop {
                let Some(r) = registry.upgrade() else { return };
                if r.stopping.load(Ordering::Relaxed) {
                    return;
                }
                let tenants: Vec<Arc<TenantHandle>> = r.tenants.iter().map(|t| t.clone()).collect();
                drop(r);
                for t in &tenants {
                    t.journeys.tick(&**t).await;
                }
                drop(tenants);
                let _ = tokio::time::timeout(JOURNEY_TICK, wake.notified()).await;
            }
        });
    }

    /// In a cluster: the scheduler then moves only the enrollments of the customers `owns`
    /// says this node owns (set once, when the node takes part).
    pub fn set_journey_owner(&self, owns: journeys::OwnerFn) {
        let _ = self.journey_owner.set(owns);
    }

    /// Looks after the event log in the background: every `CHECKPOINT_EVERY`, folds the
    /// segments closed since the last checkpoint into it (so a start replays little); at
    /// start and then hourly, drops segments older than `retention`.
    pub fn start_log_maintenance(self: &Arc<Self>, retention: Duration) {
        let tick = Duration::from_millis(250);
        let (mut since_fold, mut since_retention) = (Duration::ZERO, RETENTION_EVERY);
        let started = self.every(tick, "arbiter-log-maintenance", move |registry| {
            if since_fold >= CHECKPOINT_EVERY {
                since_fold = Duration::ZERO;
                registry.checkpoint();
            }
            if since_retention >= RETENTION_EVERY {
                since_retention = Duration::ZERO;
                registry.drop_old_segments(retention);
            }
            since_fold += tick;
            since_retention += tick;
        });
        if let Err(e) = started {
            tracing::error!(error = %e, "could not start the log maintenance thread; old decisions are kept");
        }
    }

    /// Calls `step` every `tick` on a thread named `name`, until the registry stops or is
    /// dropped (the thread holds it only during a step).
    fn every(
        self: &Arc<Self>,
        tick: Duration,
        name: &str,
        mut step: impl FnMut(&Registry) + Send + 'static,
    ) -> std::io::Result<()> {
        let registry = Arc::downgrade(self);
        std::thread::Builder::new().name(name.into()).spawn(move || loop {
            let Some(registry) = registry.upgrade() else { return };
            if registry.stopping.load(Ordering::Relaxed) {
                return;
            }
            step(&registry);
            drop(registry);
            std::thread::sleep(tick);
        })?;
        Ok(())
    }

    /// Folds the closed segments into the checkpoint (`tenant::checkpoint`).
    pub fn checkpoint(&self) {
        let tenants: Vec<String> = self.tenants.iter().map(|t| t.key().clone()).collect();
        if let Err(e) = super::checkpoint::fold_closed(self.store.events(), &tenants) {
            tracing::error!(error = %e, "checkpointing the event log failed; a start replays more of it");
        }
    }

    fn drop_old_segments(&self, retention: Duration) {
        let cutoff = std::time::SystemTime::now() - retention;
        match self.store.events().drop_before(cutoff) {
            Ok(0) => {}
            Ok(n) => tracing::info!(segments = n, "dropped event-log segments past retention"),
            Err(e) => tracing::error!(error = %e, "dropping old event-log segments failed"),
        }
        for tenant in self.tenants.iter().map(|t| t.clone()).collect::<Vec<_>>() {
            tenant.sweep_retained(retention);
        }
    }

    fn train_all(&self) {
        for tenant in self.tenants.iter().map(|t| t.clone()).collect::<Vec<_>>() {
            let flows: Vec<Arc<CompiledFlow>> = tenant.snapshot.load().flows.values().cloned().collect();
            for flow in flows.iter().filter(|f| f.holdout_percent().is_some()) {
                match tenant.train_uplift(flow) {
                    Ok(m) => tracing::info!(tenant = %tenant.id, flow = %flow.key, offers = m.offers.len(),
                        interactions = m.interactions, "uplift models retrained"),
                    Err(e) => {
                        tracing::error!(tenant = %tenant.id, flow = %flow.key, error = %e, "uplift training failed")
                    }
                }
            }
        }
    }

    /// Flushes pending writes and stops the actor thread.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "final flush failed");
        }
        for arbiter in std::mem::take(&mut *self.arbiters.lock().expect("not poisoned")) {
            arbiter.stop();
            let _ = arbiter.join();
        }
        self.system.stop();
        if let Some(thread) = self.thread.lock().expect("not poisoned").take() {
            let _ = thread.join();
        }
    }
}

/// Runs an actix System on its own thread; returns its handles once it is running.
fn start_actor_thread() -> Result<(System, ArbiterHandle, JoinHandle<()>), TenantError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("arbiter-tenants".into())
        .spawn(move || {
            let system = System::new();
            system.block_on(async {
                let _ = tx.send((System::current(), actix::Arbiter::current()));
            });
            if let Err(e) = system.run() {
                tracing::error!(error = %e, "tenant actor system stopped with an error");
            }
        })
        .map_err(|e| TenantError::Unavailable(format!("cannot start the tenant thread: {e}")))?;
    let (system, arbiter) =
        rx.recv().map_err(|_| TenantError::Unavailable("the tenant thread did not start".into()))?;
    Ok((system, arbiter, thread))
}
