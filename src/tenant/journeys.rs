//! The journey runtime of one tenant: enrollments, and the walk that moves each one
//! through its journey's steps.
//!
//! An enrollment moves when something happens to it — it is enrolled (by the API or by
//! a response that matches an entry trigger), a response it waits for arrives, its wait
//! times out, or the channel action it waits at is delivered by the customer's next
//! `/recommend` on that channel — and then walks on until it reaches a step that waits
//! (a `wait` or a `channel_action`) or an `exit`. Every move is written and durable
//! before memory changes, under one lock per tenant, so a restart resumes each
//! enrollment where its record says; the scheduler state (resume times, expiry) is in
//! those records.
//!
//! The request path only reads: `/recommend` takes a pending channel action from a
//! concurrent map and hands the delivery to the scheduler, which records it (at least
//! once: a crash before the record is durable delivers it again).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use super::TenantError;
use crate::catalog::journey::{CompiledJourney, JourneyOffer, Resolved};
use crate::engine::{Decision, OfferDecision, RecommendRequest};
use crate::model::journey::{Deduplication, Next, Step, WaitEvent};
use crate::store::keys::{self, Kind};
use crate::store::{Batch, Storage};

/// Enrollments kept per tenant; past it the oldest finished ones are dropped, and with
/// none finished a new enrollment is refused.
pub const MAX_ENROLLMENTS: usize = 100_000;

/// Steps one walk may take: a DAG of `MAX_NODES` cannot need more; a guard, not a limit.
const MAX_WALK: usize = 2 * crate::model::journey::MAX_NODES;

/// Whether this node owns a customer of a tenant (in a cluster, where its requests go):
/// only the owner moves the customer's enrollments.
pub type OwnerFn = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// What runs a journey's `nba_decision`: the tenant's own decision path.
pub trait Decider: Send + Sync {
    /// A decision for the request, recorded as any `/recommend` (or, `dry`, recorded nowhere).
    fn decide(&self, req: &RecommendRequest, dry: bool) -> Result<Decision, String>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EnrollmentStatus {
    Active,
    Completed,
    Exited,
    Expired,
}

/// What an active enrollment waits for besides time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Waiting {
    /// A response with this outcome (to this offer).
    #[serde(rename_all = "camelCase")]
    Event { outcome: String, offer_id: Option<String> },
    /// The customer's next `/recommend` on this channel.
    #[serde(rename_all = "camelCase")]
    Delivery { channel: String, offer_id: String },
}

/// One step an enrollment took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub node: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(with = "rfc3339")]
    #[schemars(with = "String")]
    pub at: i64,
    /// The decision a `nba_decision` made, or the one a `channel_action` was delivered in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interaction_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offers: Option<Vec<String>>,
    /// `true`/`false` after a split, `event`/`timeout` after a wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A customer's place in a journey, as stored and returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Enrollment {
    pub id: String,
    pub journey_id: String,
    pub customer_id: String,
    pub status: EnrollmentStatus,
    pub current_node: String,
    #[serde(with = "rfc3339")]
    #[schemars(with = "String")]
    pub enrolled_at: i64,
    #[serde(with = "rfc3339")]
    #[schemars(with = "String")]
    pub updated_at: i64,
    /// When a wait times out (the scheduler resumes it then).
    #[serde(default, with = "rfc3339::option", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub resume_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<Waiting>,
    pub history: Vec<HistoryEntry>,
}

impl Enrollment {
    /// A new enrollment at the journey's entry, before its walk.
    fn start(j: &CompiledJourney, id: String, customer: &str, now: i64) -> Enrollment {
        Enrollment {
            id,
            journey_id: j.id.to_string(),
            customer_id: customer.to_string(),
            status: EnrollmentStatus::Active,
            current_node: j.plan.ids[j.plan.entry].clone(),
            enrolled_at: now,
            updated_at: now,
            resume_at: None,
            waiting_for: None,
            history: Vec::new(),
        }
    }

    fn active(&self) -> bool {
        self.status == EnrollmentStatus::Active
    }

    fn key(&self, tenant: &str) -> Vec<u8> {
        keys::key(tenant, Kind::Enrollment, &[&self.journey_id, &self.id])
    }

    fn note(&mut self, node: &str, kind: &str, at: i64) -> &mut HistoryEntry {
        self.history.push(HistoryEntry {
            node: node.to_string(),
            kind: kind.to_string(),
            at,
            interaction_id: None,
            offers: None,
            branch: None,
            note: None,
        });
        self.history.last_mut().expect("just pushed")
    }
}

/// What `POST /journeys/{id}/enroll` answers.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrollReply {
    pub enrolled: bool,
    /// Why no one was enrolled (already active, the entry condition).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrollment: Option<Enrollment>,
}

/// What `GET /journeys/{id}/enrollments` answers.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentList {
    pub journey_id: String,
    pub data: Vec<Enrollment>,
    pub total: usize,
}

/// What `POST /journeys/{id}/test` answers: the path the customer would take now.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JourneyTest {
    pub journey_id: String,
    pub customer_id: String,
    pub steps: Vec<HistoryEntry>,
    /// Where the walk stopped: an exit, or a wait for an event not listed in `events`.
    pub ended_at: String,
    pub completed: bool,
}

/// A channel action waiting for the customer's next `/recommend` on its channel.
#[derive(Debug, Clone)]
pub struct Pending {
    enrollment: Arc<str>,
    journey: Arc<str>,
    channel: Arc<str>,
    offer: JourneyOffer,
}

/// How a waiting enrollment moves on.
enum Resume {
    Event { interaction_id: String },
    Timeout,
    Delivered { interaction_id: String },
}

#[derive(Default)]
struct State {
    enrollments: HashMap<Arc<str>, Enrollment>,
    by_customer: HashMap<Arc<str>, Vec<Arc<str>>>,
}

impl State {
    fn insert(&mut self, e: Enrollment) {
        let id: Arc<str> = e.id.as_str().into();
        if !self.enrollments.contains_key(&id) {
            self.by_customer.entry(e.customer_id.as_str().into()).or_default().push(id.clone());
        }
        self.enrollments.insert(id, e);
    }

    fn remove(&mut self, id: &str) {
        let Some(e) = self.enrollments.remove(id) else { return };
        if let Some(ids) = self.by_customer.get_mut(e.customer_id.as_str()) {
            ids.retain(|x| &**x != id);
            if ids.is_empty() {
                self.by_customer.remove(e.customer_id.as_str());
            }
        }
    }

    fn of_customer(&self, customer: &str) -> impl Iterator<Item = &Enrollment> {
        self.by_customer.get(customer).into_iter().flatten().filter_map(|id| self.enrollments.get(id))
    }
}

pub struct Journeys {
    tenant: Arc<str>,
    store: Arc<dyn Storage>,
    compiled: ArcSwap<Vec<Arc<CompiledJourney>>>,
    /// One move at a time: a move reads, writes, waits for durability, then applies.
    serial: tokio::sync::Mutex<()>,
    state: parking_lot::Mutex<State>,
    /// Channel actions waiting for delivery, by customer; `pending_count` lets
    /// `/recommend` skip the map when it is empty.
    pending: DashMap<Box<str>, Vec<Pending>>,
    pending_count: AtomicUsize,
    /// Deliveries made by `/recommend`, for the scheduler to record.
    delivered: parking_lot::Mutex<Vec<(Pending, String)>>,
    /// Whether any active journey exists (responses then look for triggers and waits).
    listening: AtomicBool,
    /// The scheduler's wake-up, shared by every tenant.
    wake: Arc<tokio::sync::Notify>,
    /// Set in a cluster: the scheduler moves only the enrollments of customers this node owns.
    owner: Arc<std::sync::OnceLock<OwnerFn>>,
}

impl Journeys {
    /// The tenant's journey runtime with its stored enrollments.
    pub fn load(
        tenant: Arc<str>,
        store: Arc<dyn Storage>,
        wake: Arc<tokio::sync::Notify>,
        owner: Arc<std::sync::OnceLock<OwnerFn>>,
    ) -> Journeys {
        let mut state = State::default();
        match store.scan_prefix(&keys::prefix(&tenant, Kind::Enrollment)) {
            Ok(records) => {
                for (key, value) in records {
                    match serde_json::from_slice::<Enrollment>(&value) {
                        Ok(e) => state.insert(e),
                        Err(e) => tracing::warn!(tenant = %tenant, key = %String::from_utf8_lossy(&key),
                            error = %e, "unreadable enrollment record"),
                    }
                }
            }
            Err(e) => tracing::error!(tenant = %tenant, error = %e, "could not read journey enrollments"),
        }
        Journeys {
            tenant,
            store,
            compiled: ArcSwap::from_pointee(Vec::new()),
            serial: tokio::sync::Mutex::new(()),
            state: parking_lot::Mutex::new(state),
            pending: DashMap::new(),
            pending_count: AtomicUsize::new(0),
            delivered: parking_lot::Mutex::new(Vec::new()),
            listening: AtomicBool::new(false),
            wake,
            owner,
        }
    }

    /// Makes a compiled set of journeys current (the tenant actor calls this after every
    /// catalog change): enrollments of deleted journeys are forgotten (their records
    /// went with the journey), and the pending channel actions are rebuilt.
    pub fn install(&self, journeys: Vec<Arc<CompiledJourney>>) {
        self.listening.store(journeys.iter().any(|j| j.active), Ordering::Relaxed);
        self.compiled.store(Arc::new(journeys));
        let mut state = self.state.lock();
        let compiled = self.compiled.load();
        let ids: std::collections::HashSet<&str> = compiled.iter().map(|j| &*j.id).collect();
        let gone: Vec<Arc<str>> = state
            .enrollments
            .values()
            .filter(|e| !ids.contains(e.journey_id.as_str()))
            .map(|e| e.id.as_str().into())
            .collect();
        for id in gone {
            state.remove(&id);
        }
        self.pending.clear();
        self.pending_count.store(0, Ordering::Relaxed);
        for e in state.enrollments.values() {
            self.track_pending(e);
        }
    }

    fn journey(&self, id: &str) -> Option<Arc<CompiledJourney>> {
        self.compiled.load().iter().find(|j| &*j.id == id).cloned()
    }

    /// A journey by id or name.
    fn find(&self, id_or_name: &str) -> Result<Arc<CompiledJourney>, TenantError> {
        self.compiled
            .load()
            .iter()
            .find(|j| &*j.id == id_or_name || &*j.name == id_or_name)
            .cloned()
            .ok_or_else(|| TenantError::NotFound(format!("journey `{id_or_name}` not found")))
    }

    /// Registers the enrollment's channel action for delivery, when it waits at one.
    fn track_pending(&self, e: &Enrollment) {
        let Some(Waiting::Delivery { .. }) = &e.waiting_for else { return };
        let Some(j) = self.journey(&e.journey_id).filter(|j| j.active && e.active()) else { return };
        let Some(at) = j.plan.index(&e.current_node) else { return };
        let Resolved::Action { channel, offer } = &j.resolved[at] else { return };
        let p = Pending {
            enrollment: e.id.as_str().into(),
            journey: j.id.clone(),
            channel: channel.clone(),
            offer: offer.clone(),
        };
        self.pending.entry(e.customer_id.as_str().into()).or_default().push(p);
        self.pending_count.fetch_add(1, Ordering::Relaxed);
    }

    fn untrack_pending(&self, customer: &str, enrollment: &str) {
        let mut emptied = false;
        if let Some(mut list) = self.pending.get_mut(customer) {
            let before = list.len();
            list.retain(|p| &*p.enrollment != enrollment);
            self.pending_count.fetch_sub(before - list.len(), Ordering::Relaxed);
            emptied = list.is_empty();
        }
        if emptied {
            self.pending.remove_if(customer, |_, l| l.is_empty());
        }
    }

    /// On `/recommend`: the channel action waiting for this customer on this channel,
    /// taken so no other request delivers it too. Costs one atomic load when none waits.
    pub fn take_delivery(&self, customer: &str, channel: Option<&str>) -> Option<Pending> {
        if self.pending_count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let channel = channel?;
        let mut list = self.pending.get_mut(customer)?;
        let i = list.iter().position(|p| &*p.channel == channel)?;
        let p = list.remove(i);
        self.pending_count.fetch_sub(1, Ordering::Relaxed);
        Some(p)
    }

    /// Hands a delivery made in decision `interaction_id` to the scheduler to record.
    pub fn delivered(&self, p: Pending, interaction_id: String) {
        self.delivered.lock().push((p, interaction_id));
        self.wake.notify_one();
    }

    /// Puts a delivery back (the decision could not be logged).
    pub fn undeliver(&self, customer: &str, p: Pending) {
        self.pending.entry(customer.into()).or_default().push(p);
        self.pending_count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn enrollments(&self, journey: &str, customer: Option<&str>) -> Result<EnrollmentList, TenantError> {
        let j = self.find(journey)?;
        let state = self.state.lock();
        let mut found: Vec<&Enrollment> = match customer {
            Some(c) => state.of_customer(c).filter(|e| e.journey_id == *j.id).collect(),
            None => state.enrollments.values().filter(|e| e.journey_id == *j.id).collect(),
        };
        found.sort_by(|a, b| (a.enrolled_at, &a.id).cmp(&(b.enrolled_at, &b.id)));
        let total = found.len();
        // A journey can hold many enrollments: the newest 1,000 without a customer filter.
        let data = found[total.saturating_sub(1000)..].iter().map(|e| (*e).clone()).collect();
        Ok(EnrollmentList { journey_id: j.id.to_string(), data, total })
    }

    /// `POST /journeys/{id}/enroll`.
    pub async fn enroll(&self, d: &dyn Decider, journey: &str, customer: &str) -> Result<EnrollReply, TenantError> {
        let j = self.find(journey)?;
        if !j.active {
            return Err(TenantError::Conflict(format!(
                "journey `{}` is not active; set its status to `active` to enroll customers",
                j.name
            )));
        }
        let _one = self.serial.lock().await;
        let dedup = j.entry().deduplication;
        let (reply, changed) = self.enrollment_for(d, &j, customer, dedup, crate::ids::unix_now())?;
        self.commit(changed).await?;
        Ok(reply)
    }

    /// Enrolls `customer` in `j` as its deduplication says; the changed records.
    fn enrollment_for(
        &self,
        d: &dyn Decider,
        j: &CompiledJourney,
        customer: &str,
        dedup: Deduplication,
        now: i64,
    ) -> Result<(EnrollReply, Vec<Enrollment>), TenantError> {
        let active: Vec<Enrollment> =
            self.state.lock().of_customer(customer).filter(|e| e.journey_id == *j.id && e.active()).cloned().collect();
        let mut changed = Vec::new();
        match (dedup, active.last()) {
            (Deduplication::SkipIfActive, Some(e)) => {
                let reason = "the customer is already active in this journey (deduplication: skip_if_active)";
                return Ok((
                    EnrollReply { enrolled: false, reason: Some(reason.into()), enrollment: Some(e.clone()) },
                    changed,
                ));
            }
            (Deduplication::Restart, _) => {
                for mut e in active {
                    e.status = EnrollmentStatus::Exited;
                    e.updated_at = now;
                    (e.resume_at, e.waiting_for) = (None, None);
                    let node = e.current_node.clone();
                    e.note(&node, "exit", now).note = Some("restarted by a new enrollment".into());
                    changed.push(e);
                }
            }
            _ => {}
        }
        if !meets_entry(j, customer) {
            let reason = "the customer does not meet the journey's entryCondition";
            return Ok((EnrollReply { enrolled: false, reason: Some(reason.into()), enrollment: None }, Vec::new()));
        }
        let mut e = Enrollment::start(j, crate::ids::new_id(), customer, now);
        walk(j, &mut e, j.plan.entry, now, d, &mut Walk::Live);
        changed.push(e.clone());
        Ok((EnrollReply { enrolled: true, reason: None, enrollment: Some(e) }, changed))
    }

    /// After a recorded response: resumes the customer's enrollments waiting for it, then
    /// enrolls them in active journeys whose entry trigger it matches.
    pub async fn on_response(&self, d: &dyn Decider, r: &super::interaction::Response) {
        // Most responses concern no journey: they take no lock beyond a glance at the
        // customer's enrollments, and never wait for another tenant response's journey
        // steps to be written.
        if !self.listening.load(Ordering::Relaxed) || !self.concerns(r) {
            return;
        }
        let _one = self.serial.lock().await;
        let now = crate::ids::unix_now();
        let waiting: Vec<Enrollment> =
            self.state.lock().of_customer(&r.customer_id).filter(|e| e.active() && waits_for(e, r)).cloned().collect();
        let mut changed = Vec::new();
        for mut e in waiting {
            let Some(j) = self.journey(&e.journey_id).filter(|j| j.active) else { continue };
            resume(&j, &mut e, Resume::Event { interaction_id: r.interaction_id.clone() }, now, d);
            changed.push(e);
        }
        for j in self.compiled.load().iter().filter(|j| triggers(j, r)) {
            let entry = j.entry();
            match self.enrollment_for(d, j, &r.customer_id, entry.deduplication, now) {
                Ok((_, records)) => changed.extend(records),
                Err(e) => {
                    tracing::warn!(tenant = %self.tenant, journey = %j.name, error = %e, "a trigger could not enroll")
                }
            }
        }
        if let Err(e) = self.commit(changed).await {
            tracing::error!(tenant = %self.tenant, error = %e, "a response's journey steps were not recorded");
        }
    }

    /// Whether a response moves one of the customer's enrollments or fires a trigger.
    fn concerns(&self, r: &super::interaction::Response) -> bool {
        let waited = self.state.lock().of_customer(&r.customer_id).any(|e| e.active() && waits_for(e, r));
        waited || self.compiled.load().iter().any(|j| triggers(j, r))
    }

    /// The scheduler's turn: records deliveries, resumes waits that timed out, expires
    /// enrollments past their journey's `maxDurationDays`.
    pub async fn tick(&self, d: &dyn Decider) {
        let _one = self.serial.lock().await;
        let delivered = std::mem::take(&mut *self.delivered.lock());
        let now = crate::ids::unix_now();
        let mut changed = Vec::new();
        for (p, interaction_id) in &delivered {
            let Some(mut e) = self.state.lock().enrollments.get(&p.enrollment).cloned() else { continue };
            let Some(j) = self.journey(&p.journey) else { continue };
            if e.active() && matches!(e.waiting_for, Some(Waiting::Delivery { .. })) {
                resume(&j, &mut e, Resume::Delivered { interaction_id: interaction_id.clone() }, now, d);
                changed.push(e);
            }
        }
        let compiled = self.compiled.load();
        let active: HashMap<&str, &Arc<CompiledJourney>> =
            compiled.iter().filter(|j| j.active).map(|j| (&*j.id, j)).collect();
        let due: Vec<(Enrollment, Arc<CompiledJourney>)> = {
            let state = self.state.lock();
            let already: Vec<&str> = changed.iter().map(|e| e.id.as_str()).collect();
            let due = |e: &&Enrollment| {
                let j = active.get(e.journey_id.as_str()).filter(|_| e.active())?;
                let time = e.resume_at.is_some_and(|t| t <= now) || now >= e.enrolled_at + j.max_duration_secs;
                (time && !already.contains(&e.id.as_str()) && self.owns(&e.customer_id)).then(|| (*j).clone())
            };
            state.enrollments.values().filter_map(|e| due(&e).map(|j| (e.clone(), j))).collect()
        };
        if delivered.is_empty() && due.is_empty() {
            return;
        }
        for (mut e, j) in due {
            if now >= e.enrolled_at + j.max_duration_secs {
                e.status = EnrollmentStatus::Expired;
                (e.resume_at, e.waiting_for, e.updated_at) = (None, None, now);
                let node = e.current_node.clone();
                e.note(&node, "expired", now).note = Some("reached the journey's maxDurationDays".into());
            } else {
                resume(&j, &mut e, Resume::Timeout, now, d);
            }
            changed.push(e);
        }
        if let Err(e) = self.commit(changed).await {
            tracing::error!(tenant = %self.tenant, error = %e, "journey steps were not recorded; they are retried");
            // Deliveries not recorded go back, so they are recorded on a later tick.
            self.delivered.lock().extend(delivered);
        }
    }

    /// Whether this node moves the customer's enrollments (always, outside a cluster).
    fn owns(&self, customer: &str) -> bool {
        self.owner.get().is_none_or(|owns| owns(&self.tenant, customer))
    }

    /// `POST /journeys/{id}/test`: the walk the customer would take now, with dry-run
    /// decisions and the listed events arriving at their waits; records nothing.
    pub fn test(
        &self,
        d: &dyn Decider,
        journey: &str,
        customer: &str,
        events: &[String],
    ) -> Result<JourneyTest, TenantError> {
        let j = self.find(journey)?;
        let now = crate::ids::unix_now();
        // Never stored: it has no id.
        let mut e = Enrollment::start(&j, String::new(), customer, now);
        if meets_entry(&j, customer) {
            walk(&j, &mut e, j.plan.entry, now, d, &mut Walk::Test { events });
        } else {
            e.note(&j.plan.ids[j.plan.entry], "entry_trigger", now).note =
                Some("not enrolled: the customer does not meet the journey's entryCondition".into());
        }
        Ok(JourneyTest {
            journey_id: j.id.to_string(),
            customer_id: customer.into(),
            ended_at: e.current_node,
            completed: e.status == EnrollmentStatus::Completed,
            steps: e.history,
        })
    }

    /// Takes the enrollment records another cluster node wrote: every node holds every
    /// enrollment, so the customer's next owner carries on where the last one stopped.
    pub fn replicated(&self, ops: &[crate::store::Op]) {
        use crate::store::Op;
        let mut state = self.state.lock();
        for op in ops {
            match op {
                Op::Put { value, .. } => match serde_json::from_slice::<Enrollment>(value) {
                    Ok(e) => {
                        self.untrack_pending(&e.customer_id, &e.id);
                        self.track_pending(&e);
                        state.insert(e);
                    }
                    Err(e) => tracing::warn!(tenant = %self.tenant, error = %e, "unreadable replicated enrollment"),
                },
                Op::Delete { key } => {
                    if let Some(id) = keys::parse(key).and_then(|k| k.parts.get(1).cloned()) {
                        if let Some(e) = state.enrollments.get(id.as_str()) {
                            self.untrack_pending(&e.customer_id.clone(), &id);
                        }
                        state.remove(&id);
                    }
                }
            }
        }
    }

    /// Writes the changed enrollments and, once durable, makes them current.
    async fn commit(&self, changed: Vec<Enrollment>) -> Result<(), TenantError> {
        if changed.is_empty() {
            return Ok(());
        }
        let mut b = Batch::new();
        let evicted = self.room_for(&changed)?;
        for (journey, id) in &evicted {
            b.delete(keys::key(&self.tenant, Kind::Enrollment, &[journey, id]));
        }
        for e in &changed {
            b.put(e.key(&self.tenant), serde_json::to_vec(e).expect("enrollments serialise"));
        }
        self.store.write(b)?.await?;
        let mut state = self.state.lock();
        for (_, id) in &evicted {
            state.remove(id);
        }
        for e in changed {
            self.untrack_pending(&e.customer_id, &e.id);
            self.track_pending(&e);
            state.insert(e);
        }
        Ok(())
    }

    /// The finished enrollments to drop so the new ones fit under `MAX_ENROLLMENTS`.
    fn room_for(&self, changed: &[Enrollment]) -> Result<Vec<(String, String)>, TenantError> {
        let state = self.state.lock();
        let new = changed.iter().filter(|e| !state.enrollments.contains_key(e.id.as_str())).count();
        let over = (state.enrollments.len() + new).saturating_sub(MAX_ENROLLMENTS);
        if over == 0 {
            return Ok(Vec::new());
        }
        let mut finished: Vec<&Enrollment> = state.enrollments.values().filter(|e| !e.active()).collect();
        if finished.len() < over {
            return Err(TenantError::Conflict(format!(
                "this tenant has {MAX_ENROLLMENTS} journey enrollments in progress, the most it keeps; let some finish first"
            )));
        }
        finished.sort_by_key(|e| e.updated_at);
        Ok(finished.into_iter().take(over).map(|e| (e.journey_id.clone(), e.id.clone())).collect())
    }
}

/// Whether the customer meets the journey's entry condition (unknown does not).
fn meets_entry(j: &CompiledJourney, customer: &str) -> bool {
    j.entry_condition.as_ref().is_none_or(|c| c.eval(customer) == Some(true))
}

/// Whether a response fires the active journey's entry trigger.
fn triggers(j: &CompiledJourney, r: &super::interaction::Response) -> bool {
    j.active
        && j.entry().event_type.as_deref() == Some(r.outcome.as_str())
        && j.offer_at(j.plan.entry).is_none_or(|o| o == r.offer_id)
}

/// Whether a response is what the enrollment waits for.
fn waits_for(e: &Enrollment, r: &super::interaction::Response) -> bool {
    match &e.waiting_for {
        Some(Waiting::Event { outcome, offer_id }) => {
            *outcome == r.outcome && offer_id.as_deref().is_none_or(|o| o == r.offer_id)
        }
        _ => false,
    }
}

/// How a walk treats the steps that touch the world.
enum Walk<'a> {
    /// Decisions are recorded; waits and channel actions stop the walk.
    Live,
    /// Decisions are dry runs; a wait takes its event branch when the event is listed
    /// (else its timeout; a wait for an event alone stops), a channel action is noted.
    Test { events: &'a [String] },
}

/// Moves a waiting enrollment on, then walks from where it lands.
fn resume(j: &CompiledJourney, e: &mut Enrollment, how: Resume, now: i64, d: &dyn Decider) {
    let Some(at) = j.plan.index(&e.current_node) else {
        e.status = EnrollmentStatus::Exited;
        e.note(&e.current_node.clone(), "exit", now).note = Some("the step it was at no longer exists".into());
        return;
    };
    (e.resume_at, e.waiting_for, e.updated_at) = (None, None, now);
    let node = j.plan.ids[at].clone();
    let to = match how {
        Resume::Event { interaction_id } => {
            let entry = e.note(&node, "wait", now);
            (entry.branch, entry.interaction_id) = (Some("event".into()), Some(interaction_id));
            match j.plan.next[at] {
                Next::EventOrTimeout { event, .. } => Some(event),
                other => one(other),
            }
        }
        Resume::Timeout => {
            e.note(&node, "wait", now).branch = Some("timeout".into());
            match j.plan.next[at] {
                Next::EventOrTimeout { timeout, .. } => Some(timeout),
                other => one(other),
            }
        }
        Resume::Delivered { interaction_id } => {
            let offer = match &j.resolved[at] {
                Resolved::Action { offer, .. } => offer.id.to_string(),
                _ => String::new(),
            };
            let entry = e.note(&node, "channel_action", now);
            (entry.interaction_id, entry.offers) = (Some(interaction_id), Some(vec![offer]));
            entry.note = Some("delivered first in the customer's next recommendation on the channel".into());
            one(j.plan.next[at])
        }
    };
    match to {
        Some(to) => walk(j, e, to, now, d, &mut Walk::Live),
        None => e.status = EnrollmentStatus::Completed,
    }
}

fn one(next: Next) -> Option<usize> {
    match next {
        Next::One(to) => Some(to),
        _ => None,
    }
}

/// Walks from step `at` until a step that waits, or an exit.
fn walk(j: &CompiledJourney, e: &mut Enrollment, mut at: usize, now: i64, d: &dyn Decider, how: &mut Walk<'_>) {
    for _ in 0..MAX_WALK {
        let node = j.plan.ids[at].clone();
        e.current_node = node.clone();
        e.updated_at = now;
        let step = &j.plan.steps[at];
        let next = j.plan.next[at];
        let to = match step {
            Step::Entry(_) => {
                e.note(&node, "entry_trigger", now);
                one(next)
            }
            Step::Decision(cfg) => {
                let channel = match &j.resolved[at] {
                    Resolved::Decision { channel } => Some(channel.to_string()),
                    _ => None,
                };
                let req = RecommendRequest {
                    customer_id: e.customer_id.clone(),
                    channel,
                    limit: cfg.limit,
                    decision_flow_key: Some(cfg.decision_flow_key.clone()),
                    ..RecommendRequest::default()
                };
                let made = d.decide(&req, matches!(how, Walk::Test { .. }));
                let entry = e.note(&node, "nba_decision", now);
                match made {
                    Ok(decision) => {
                        entry.offers = Some(decision.decisions.iter().map(|o| o.offer_id.to_string()).collect());
                        entry.interaction_id = Some(decision.interaction_id).filter(|id| !id.is_empty());
                    }
                    Err(why) => entry.note = Some(format!("no decision: {why}")),
                }
                one(next)
            }
            Step::Split(_) => {
                let yes = match &j.resolved[at] {
                    Resolved::Condition(c) => c.eval(&e.customer_id) == Some(true),
                    _ => false,
                };
                e.note(&node, "condition_split", now).branch = Some(yes.to_string());
                match next {
                    Next::Branch { yes: t, no: f } => Some(if yes { t } else { f }),
                    _ => None,
                }
            }
            Step::Action(a) => {
                if let Walk::Test { .. } = how {
                    let entry = e.note(&node, "channel_action", now);
                    entry.offers = Some(vec![a.offer_id.clone()]);
                    entry.note =
                        Some(format!("would show the offer first in the next recommendation on `{}`", a.channel));
                    one(next)
                } else {
                    let offer_id = match &j.resolved[at] {
                        Resolved::Action { offer, .. } => offer.id.to_string(),
                        _ => a.offer_id.clone(),
                    };
                    e.waiting_for = Some(Waiting::Delivery { channel: a.channel.clone(), offer_id });
                    return;
                }
            }
            Step::Wait(w) => match how {
                Walk::Live => {
                    e.note(&node, "wait", now);
                    e.resume_at = w.delay_hours.map(|h| now + (h * 3600.0).round() as i64);
                    e.waiting_for = w.wait_for_event.as_ref().map(|WaitEvent { outcome, .. }| Waiting::Event {
                        outcome: outcome.clone(),
                        offer_id: j.offer_at(at).map(str::to_string),
                    });
                    return;
                }
                Walk::Test { events } => {
                    let arrives = w.wait_for_event.as_ref().is_some_and(|ev| events.contains(&ev.outcome));
                    let branch = match (arrives, w.delay_hours, next) {
                        (true, _, Next::EventOrTimeout { event, .. }) => Some(("event", event)),
                        (false, Some(_), Next::EventOrTimeout { timeout, .. }) => Some(("timeout", timeout)),
                        (true, _, Next::One(to)) => Some(("event", to)),
                        (false, Some(_), Next::One(to)) => Some(("timeout", to)),
                        _ => None,
                    };
                    let entry = e.note(&node, "wait", now);
                    match branch {
                        Some((label, to)) => {
                            entry.branch = Some(label.into());
                            Some(to)
                        }
                        None => {
                            entry.note = Some("waits for an event not listed in `events`".into());
                            return;
                        }
                    }
                }
            },
            Step::Exit => {
                e.note(&node, "exit", now);
                e.status = EnrollmentStatus::Completed;
                (e.resume_at, e.waiting_for) = (None, None);
                return;
            }
        };
        match to {
            Some(to) => at = to,
            None => return,
        }
    }
    e.status = EnrollmentStatus::Exited;
    e.note(&e.current_node.clone(), "exit", now).note = Some("the walk took more steps than the journey has".into());
}

/// Puts a delivered channel action first in the decision: moved up if the flow chose it
/// too, otherwise added in front (the decision keeps its length, so the last offer
/// gives way). Returns whether the offer is new to the decision (its contact is then
/// recorded by the caller).
pub fn place_first(decision: &mut Decision, p: &Pending) -> bool {
    let offers = &mut decision.decisions;
    let found = offers.iter().position(|o| o.offer_id == p.offer.id);
    let mut shown = match found {
        Some(i) => offers.remove(i),
        None => OfferDecision {
            offer_id: p.offer.id.clone(),
            offer_name: p.offer.name.clone(),
            score: offers.first().map_or(0.0, |o| o.score),
            rank: 1,
            priority: p.offer.priority,
            personalization: serde_json::Map::new(),
            explanation: None,
            show_probability: None,
            category: p.offer.category.clone(),
        },
    };
    shown.personalization.insert("journeyId".into(), p.journey.to_string().into());
    shown.personalization.insert("enrollmentId".into(), p.enrollment.to_string().into());
    let keep = offers.len().max(1) + usize::from(found.is_some());
    offers.insert(0, shown.clone());
    offers.truncate(keep.max(1));
    for (i, o) in offers.iter_mut().enumerate() {
        o.rank = i as u32 + 1;
    }
    decision.count = offers.len();
    if let Some(first) = decision.placements.as_mut().and_then(|ps| ps.first_mut()) {
        let len = first.decisions.len().max(1);
        first.decisions.retain(|o| o.offer_id != p.offer.id);
        first.decisions.insert(0, shown);
        first.decisions.truncate(len);
        for (i, o) in first.decisions.iter_mut().enumerate() {
            o.rank = i as u32 + 1;
        }
    }
    found.is_none()
}

impl Pending {
    pub fn offer(&self) -> &JourneyOffer {
        &self.offer
    }

    /// The action a logged decision delivered, as a replay puts it first again (the
    /// channel is not what `place_first` reads).
    pub fn delivered(journey: &str, enrollment: &str, offer: JourneyOffer) -> Pending {
        Pending { enrollment: enrollment.into(), journey: journey.into(), channel: Arc::from(""), offer }
    }
}

/// Unix seconds as RFC 3339 in the API and the records.
mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(secs: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::ids::rfc3339(*secs, 0))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    fn parse(text: &str) -> Result<i64, String> {
        text.parse::<jiff::Timestamp>().map(|t| t.as_second()).map_err(|e| format!("`{text}` is not a time: {e}"))
    }

    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(secs: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
            match secs {
                Some(secs) => super::serialize(secs, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
            Option::<String>::deserialize(d)?.map(|t| super::parse(&t).map_err(serde::de::Error::custom)).transpose()
        }
    }
}
