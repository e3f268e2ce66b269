//! A tenant's learned state, shared by its request handlers, its actor and the trainer:
//! outcome counters (propensity), each customer's recent contacts (contact policies) and
//! the trained uplift models. Decisions read all three without taking a lock that a
//! writer holds for long: counters are atomics the compiled flows hold directly,
//! contacts are one short per-customer map entry, models are behind an `ArcSwap`.
//!
//! Nothing here is a separate record in storage: it is derived from the event log, kept
//! up to date as decisions and responses happen, and rebuilt at start from the last
//! checkpoint and the log after it (`tenant::checkpoint`), so it always agrees with what
//! was recorded.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;
use dashmap::DashMap;

use super::idempotency::{self, Keys};
use super::interaction::{Classification, DecisionId, Interaction, Record, Response};
use crate::engine::contact::{Contact, OutcomeEvent};
use crate::engine::tape::{Inputs, Recorded};
use crate::engine::UpliftSignal;
use crate::engine::{CompiledFlow, Decision, RecommendRequest, Signals};
use crate::learn::propensity::CounterBank;
use crate::learn::uplift::{Learner, Selected, UpliftModel};
use crate::rules::OfferFacts;
use crate::store::eventlog::Position;

/// Contacts older than this are dropped: the longest cap period is a month, and
/// cooldowns are limited to this long (see `model::policy`).
pub const CONTACT_RETENTION_SECS: i64 = 62 * 86_400;
/// At least this many contacts are kept per customer (the newest), at most
/// `PRUNE_SLACK` more.
pub const MAX_CONTACTS_PER_CUSTOMER: usize = 1_000;
const PRUNE_SLACK: usize = 256;
/// The most logged decisions a customer's interaction list keeps (the newest), at most
/// `PRUNE_SLACK` more; older ones are still in the log, by id.
pub const MAX_RECENT_DECISIONS: usize = 1_000;

pub struct Learning {
    pub counters: Arc<CounterBank>,
    pub(super) contacts: DashMap<Box<str>, Vec<Contact>>,
    /// Each customer's logged decisions, oldest first, by id (16 bytes each): what
    /// `GET /customers/{id}/interactions` pages through without scanning the log.
    pub(super) recent: DashMap<Box<str>, Vec<DecisionId>>,
    /// Trained uplift models by flow key.
    uplift: ArcSwap<HashMap<Box<str>, Arc<FlowUplift>>>,
    /// Each flow's holdout experiment: what `GET /experiments/{flow}/results` reports.
    pub experiments: super::experiment::Experiments,
    /// The idempotency keys of recorded responses. `/respond` checks and inserts under
    /// this lock, so two concurrent uses of one key cannot both record.
    pub keys: parking_lot::Mutex<Keys>,
    /// Each customer's recorded outcomes, oldest first (the newest
    /// `MAX_OUTCOMES_PER_CUSTOMER` of the last year): what `outcome_based` policies read.
    pub(super) outcomes: DashMap<Box<str>, Vec<OutcomeEvent>>,
    /// Each offer's impressions across customers this day, week and month.
    pub impressions: super::impressions::Impressions,
}

/// The most outcomes kept per customer (the newest).
pub const MAX_OUTCOMES_PER_CUSTOMER: usize = 200;

/// Applies logged records to tenants' learned state, in log order: at start (after a
/// checkpoint, or from the beginning) and when a checkpoint folds in closed segments.
pub struct Replay<'a> {
    tenants: HashMap<&'a str, TenantReplay<'a>>,
    now: i64,
}

/// One tenant's learned state being rebuilt.
struct TenantReplay<'a> {
    learning: &'a Learning,
    /// Records may come in no time order (earlier versions' sled ids are random):
    /// contacts are gathered, then each history is sorted and keeps its newest.
    histories: HashMap<String, Vec<Contact>>,
    /// Offer, category and channel names, shared by the contacts that name them.
    names: Names,
    /// Each customer's logged decisions met so far.
    recent: HashMap<String, Vec<DecisionId>>,
}

/// Interned names: a replay (or a training sample) of a million decisions names a few
/// offers and features a million times.
#[derive(Default)]
pub(super) struct Names(std::collections::HashSet<Arc<str>>);

impl Names {
    pub(super) fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.0.get(name) {
            return n.clone();
        }
        let n: Arc<str> = name.into();
        self.0.insert(n.clone());
        n
    }
}

impl<'a> Replay<'a> {
    pub fn new(tenants: &[(&'a str, &'a Learning)]) -> Replay<'a> {
        let tenants = tenants
            .iter()
            .map(|(id, learning)| {
                let t = TenantReplay {
                    learning,
                    histories: HashMap::new(),
                    names: Names::default(),
                    recent: HashMap::new(),
                };
                (*id, t)
            })
            .collect();
        Replay { tenants, now: crate::ids::unix_now() }
    }

    /// One event-log record (of any tenant; others' are skipped).
    pub fn record(&mut self, at: Position, payload: &[u8]) {
        let Some(t) = super::interaction::record_tenant(payload).and_then(|t| self.tenants.get_mut(t)) else { return };
        match super::interaction::read_record(payload) {
            Some((_, Record::Decision(d))) => {
                let offers = d.offers.iter().map(|o| (o.offer_id, o.category));
                let seen = Decided {
                    customer: d.customer_id,
                    flow: d.decision_flow_key,
                    control: d.control_group,
                    channel: d.channel_name,
                    at: d.created_ms / 1000,
                };
                let id = super::interaction::decision_id(payload, at, d.nonce);
                match t.recent.get_mut(d.customer_id) {
                    Some(ids) => push_recent(ids, id),
                    None => t.recent.entry(d.customer_id.to_string()).or_default().push(id),
                }
                t.decision(seen, offers, self.now)
            }
            Some((_, Record::Response(r, recorded_ms))) => t.response(&r, at, recorded_ms),
            None => {}
        }
    }

    /// A decision logged by an earlier version (in sled).
    pub fn legacy_decision(&mut self, tenant: &str, i: Interaction) {
        if let Some(t) = self.tenants.get_mut(tenant) {
            let offers = i.offers.iter().map(|o| (o.offer_id.as_str(), o.category.as_str()));
            let seen = Decided {
                customer: &i.customer_id,
                flow: &i.decision_flow_key,
                control: i.control_group,
                channel: i.channel_name.as_deref(),
                at: crate::ids::parse_rfc3339(&i.created_at).unwrap_or(0),
            };
            t.decision(seen, offers, self.now);
        }
    }

    /// Hands the gathered contacts and decision ids to their tenants.
    pub fn finish(self) {
        for t in self.tenants.into_values() {
            for (customer, history) in t.histories {
                let mut merged = t.learning.contacts.entry(customer.into()).or_default();
                merged.extend(history);
                keep_newest(&mut merged);
            }
            for (customer, ids) in t.recent {
                let mut merged = t.learning.recent.entry(customer.into()).or_default();
                // In log order: the checkpoint's, then the replayed ones after them.
                merged.extend(ids);
                merged.dedup();
                let excess = merged.len().saturating_sub(MAX_RECENT_DECISIONS);
                merged.drain(..excess);
            }
        }
    }
}

/// What a replay needs of a logged decision besides its offers.
struct Decided<'a> {
    customer: &'a str,
    flow: &'a str,
    control: bool,
    channel: Option<&'a str>,
    /// Unix seconds.
    at: i64,
}

impl TenantReplay<'_> {
    /// A decision that showed `offers` (id, category), or would have.
    fn decision<'o>(&mut self, d: Decided<'_>, offers: impl Iterator<Item = (&'o str, &'o str)> + Clone, now: i64) {
        let Decided { customer, flow, control, channel, at } = d;
        self.learning.experiments.decision(flow, customer, control);
        if !control {
            offers.clone().for_each(|(offer, _)| self.learning.impressions.add(offer, at));
        }
        // Held-out customers' would-have-been offers are contacts too (`made_contacts`).
        if now - at >= CONTACT_RETENTION_SECS {
            return;
        }
        let channel: Option<Arc<str>> = channel.map(|c| self.names.get(c));
        let history = match self.histories.get_mut(customer) {
            Some(h) => h,
            None => self.histories.entry(customer.to_string()).or_default(),
        };
        history.extend(offers.map(|(offer, category)| Contact {
            at,
            offer_id: self.names.get(offer),
            category: self.names.get(category),
            channel: channel.clone(),
        }));
        // A customer decided for a million times must not hold a million contacts while
        // the log replays: past twice the cap, keep the newest.
        if history.len() > 2 * MAX_CONTACTS_PER_CUSTOMER {
            keep_newest(history);
        }
    }

    /// A response counts once per idempotency key: a second record under a remembered key
    /// (left by a restart that stopped halfway through moving sled's responses here) is skipped.
    fn response(&mut self, r: &Response, at: Position, recorded_ms: i64) {
        let digest = idempotency::digest(&r.idempotency_key);
        let mut keys = self.learning.keys.lock();
        if keys.get(&digest, recorded_ms).is_some() {
            return;
        }
        keys.insert(digest, at, recorded_ms);
        drop(keys);
        self.learning.count(r, recorded_ms);
    }
}

/// Appends a decision id, dropping the oldest in steps of `PRUNE_SLACK` past the cap.
fn push_recent(ids: &mut Vec<DecisionId>, id: DecisionId) {
    ids.push(id);
    if ids.len() > MAX_RECENT_DECISIONS + PRUNE_SLACK {
        ids.drain(..ids.len() - MAX_RECENT_DECISIONS);
    }
}

/// Sorts a history by time and keeps its newest `MAX_CONTACTS_PER_CUSTOMER` contacts.
fn keep_newest(history: &mut Vec<Contact>) {
    history.sort_by_key(|c| c.at);
    let excess = history.len().saturating_sub(MAX_CONTACTS_PER_CUSTOMER);
    history.drain(..excess);
}

/// The uplift models of one flow: per offer id, every learner that fitted and the one
/// chosen on held-out rows, trained on the model input named in `input_names`: the
/// flow's numeric features (`features`: enriched numeric and boolean fields and the
/// request attributes its rules read) and one-hot `category=value` columns.
#[derive(Debug)]
pub struct FlowUplift {
    pub flow_key: String,
    /// The flow's numeric and categorical feature names the models were trained on
    /// (`uplift_for` serves the models only while the flow still has these).
    pub features: Arc<[Arc<str>]>,
    pub categories: Arc<[Arc<str>]>,
    /// How the models' input is built from a decision's features, and each input
    /// column's name (`tier=premium` for a one-hot column).
    columns: Vec<Column>,
    pub input_names: Vec<Arc<str>>,
    pub trained_at: String,
    /// Interactions the training read.
    pub interactions: usize,
    /// Per offer id, its fitted learners and the chosen one.
    pub offers: HashMap<Arc<str>, OfferUplift>,
    /// Offers without a model, and why (too few rows, no variation …).
    pub skipped: Vec<(Arc<str>, String)>,
    /// The compiled flow the models were trained for, and each of its offers' chosen
    /// model by position: a decision on that flow finds an offer's model by index, not by
    /// hashing its id. (The `Weak` keeps the address from being reused, so comparing
    /// pointers is sound.) A decision on a recompiled flow falls back to the id map.
    aligned: Weak<CompiledFlow>,
    by_index: Vec<Option<UpliftModel>>,
    /// What decisions' receipts name these models by: the digest of [`FlowUplift::retained`].
    pub digest: crate::catalog::retained::Digest,
}

/// A model set as it is retained for replays: the input columns and each offer's chosen
/// model, by offer id in id order (so the same training gives the same digest).
#[derive(serde::Serialize, serde::Deserialize)]
struct RetainedModels {
    input_names: Vec<Arc<str>>,
    offers: Vec<(Arc<str>, UpliftModel)>,
}

impl FlowUplift {
    /// `input_names` are the models' input columns: the flow's numeric feature names
    /// and one-hot columns `category=value` of its categorical ones.
    pub fn new(
        flow: &Arc<CompiledFlow>,
        input_names: Vec<Arc<str>>,
        offers: HashMap<Arc<str>, OfferUplift>,
        skipped: Vec<(Arc<str>, String)>,
        interactions: usize,
    ) -> FlowUplift {
        let by_index = flow.offer_ids().map(|(id, _)| offers.get(id).map(|o| o.chosen().clone())).collect();
        let columns = input_names.iter().map(|n| Column::of(flow, n)).collect();
        let digest = crate::catalog::retained::digest(&retained(&input_names, &offers));
        FlowUplift {
            digest,
            flow_key: flow.key.to_string(),
            features: flow.feature_names.clone(),
            categories: flow.category_names.clone(),
            columns,
            input_names,
            trained_at: crate::ids::now_rfc3339(),
            interactions,
            offers,
            skipped,
            aligned: Arc::downgrade(flow),
            by_index,
        }
    }
}

/// The retained form of a model set ([`RetainedModels`], postcard: models carry NaN).
fn retained(input_names: &[Arc<str>], offers: &HashMap<Arc<str>, OfferUplift>) -> Vec<u8> {
    let mut chosen: Vec<(Arc<str>, UpliftModel)> =
        offers.iter().map(|(id, o)| (id.clone(), o.chosen().clone())).collect();
    chosen.sort_by(|a, b| a.0.cmp(&b.0));
    let set = RetainedModels { input_names: input_names.to_vec(), offers: chosen };
    postcard::to_allocvec(&set).expect("models serialise")
}

impl FlowUplift {
    /// The models as a replay reads them back ([`ReplayModels::read`]).
    pub fn retained(&self) -> Vec<u8> {
        retained(&self.input_names, &self.offers)
    }

    /// The models' input from a decision's numeric and categorical features: a one-hot
    /// column is 1 for its value, 0 for another, missing (NaN) when the feature is.
    pub fn encode(&self, features: &[f64], categories: &[Option<Arc<str>>], out: &mut Vec<f64>) {
        encode(&self.columns, features, categories, out)
    }

    /// The models' input for a customer as the flow's enrich nodes load it now.
    pub fn input(&self, flow: &CompiledFlow, customer_id: &str) -> Vec<f64> {
        let (features, categories) = flow.current_inputs(customer_id);
        let mut out = Vec::new();
        self.encode(&features, &categories, &mut out);
        out
    }
}

/// The models' input by `columns`: a one-hot column is 1 for its value, 0 for another,
/// missing (NaN) when the feature is.
fn encode(columns: &[Column], features: &[f64], categories: &[Option<Arc<str>>], out: &mut Vec<f64>) {
    out.clear();
    out.extend(columns.iter().map(|c| match c {
        Column::Num(i) => features.get(*i).copied().unwrap_or(f64::NAN),
        Column::OneHot { category, value } => match categories.get(*category) {
            Some(Some(v)) => f64::from(u8::from(v == value)),
            _ => f64::NAN,
        },
        Column::Missing => f64::NAN,
    }));
}

/// One column of the models' input.
#[derive(Debug, Clone)]
enum Column {
    /// The i-th of the flow's numeric features.
    Num(usize),
    /// 1 when the category-th categorical feature has `value`.
    OneHot { category: usize, value: Arc<str> },
    /// A name the flow no longer has.
    Missing,
}

impl Column {
    fn of(flow: &CompiledFlow, name: &str) -> Column {
        if let Some(i) = flow.feature_names.iter().position(|n| &**n == name) {
            return Column::Num(i);
        }
        let Some((category, value)) = name.split_once('=') else { return Column::Missing };
        match flow.category_names.iter().position(|n| &**n == category) {
            Some(category) => Column::OneHot { category, value: value.into() },
            None => Column::Missing,
        }
    }
}

/// One offer's fitted learners and the one decisions use.
#[derive(Debug)]
pub struct OfferUplift {
    pub selected: Selected,
}

impl OfferUplift {
    pub fn new(selected: Selected) -> OfferUplift {
        OfferUplift { selected }
    }

    /// The learner decisions use (lowest R-loss on the validation rows).
    pub fn chosen(&self) -> &UpliftModel {
        self.selected.chosen_model()
    }

    /// `learner`'s model, or the chosen one when that learner did not fit.
    pub fn model(&self, learner: Learner) -> &UpliftModel {
        self.selected.model(learner).unwrap_or_else(|| self.chosen())
    }
}

fn signal(model: &UpliftModel, features: &[f64]) -> UpliftSignal {
    let p = model.predict(features);
    UpliftSignal { tau: p.tau, se: p.se, mu_t: p.mu_t, mu_c: p.mu_c, segment: p.segment() }
}

impl Learning {
    pub fn new(counters: Arc<CounterBank>) -> Learning {
        Learning {
            counters,
            contacts: DashMap::new(),
            recent: DashMap::new(),
            uplift: ArcSwap::from_pointee(HashMap::new()),
            experiments: Default::default(),
            keys: Default::default(),
            outcomes: DashMap::new(),
            impressions: Default::default(),
        }
    }

    /// Decides, and records the offers shown as the customer's contacts. When the flow
    /// has contact policies, the customer's history stays locked from the check to the
    /// record, so two concurrent decisions for one customer cannot both pass a cap that
    /// has room for one. (Other customers in the same shard wait that long too; without
    /// policies nothing is held during the decision.)
    /// Every read the decision makes of what changes without a version is recorded for
    /// its receipt (`engine::tape`), with the digest of the models it was served.
    pub fn decide(&self, flow: &Arc<CompiledFlow>, req: &RecommendRequest, explain: bool) -> Decision {
        let now = crate::ids::unix_now();
        let inputs = Inputs::record();
        if !flow.has_contact_policies() {
            let signals = self.signals(flow);
            let mut d = flow.decide_with(req, &signals, explain, &inputs);
            d.recorded = recorded(inputs, &signals);
            self.record_contacts(&d, now);
            return d;
        }
        let mut history = self.history_mut(&req.customer_id);
        let mut signals = self.signals(flow);
        signals.history = Some(&history);
        let mut d = flow.decide_with(req, &signals, explain, &inputs);
        d.recorded = recorded(inputs, &signals);
        drop(signals);
        push_into(&mut history, made_contacts(&d, now), now);
        self.note_impressions(&d, now);
        d
    }

    /// Decides as [`decide`](Self::decide) does against the customer's contacts as they
    /// are, and changes nothing: a dry run.
    pub fn decide_dry(&self, flow: &Arc<CompiledFlow>, req: &RecommendRequest, explain: bool) -> Decision {
        let history = self.contacts.get(&*req.customer_id);
        let history = history.as_deref().map_or(&[][..], |h| h.as_slice());
        self.decide_as_of(flow, req, history, crate::ids::unix_now(), explain)
    }

    /// Decides as of `at` (Unix seconds) against `history` instead of the customer's
    /// recorded contacts, and changes nothing: simulation, which keeps its own contacts.
    pub fn decide_as_of(
        &self,
        flow: &Arc<CompiledFlow>,
        req: &RecommendRequest,
        history: &[Contact],
        at: i64,
        explain: bool,
    ) -> Decision {
        let mut signals = self.signals(flow);
        (signals.history, signals.at) = (Some(history), Some(at));
        let mut d = flow.decide(req, &signals, explain);
        d.dry_run = true;
        d
    }

    /// Records the offers a customer was shown (or, held out, would have been) as contacts.
    pub fn record_contacts(&self, d: &Decision, now: i64) {
        if !d.decisions.is_empty() || !d.counterfactual.is_empty() {
            push_into(&mut self.history_mut(&d.customer_id), made_contacts(d, now), now);
        }
        self.note_impressions(d, now);
    }

    /// Records the contact of one offer added to a decision after it was made (a
    /// journey's channel action delivered in it).
    pub fn record_offer_contact(
        &self,
        customer_id: &str,
        offer_id: &Arc<str>,
        category: &Arc<str>,
        channel: Option<Arc<str>>,
    ) {
        let now = crate::ids::unix_now();
        let contact = Contact { at: now, offer_id: offer_id.clone(), category: category.clone(), channel };
        push_into(&mut self.history_mut(customer_id), std::iter::once(contact), now);
        self.impressions.add(offer_id, now);
    }

    /// Counts the offers a treated customer was shown in their offers' impressions.
    fn note_impressions(&self, d: &Decision, now: i64) {
        for o in &d.decisions {
            self.impressions.add(&o.offer_id, now);
        }
    }

    fn history_mut(&self, customer_id: &str) -> dashmap::mapref::one::RefMut<'_, Box<str>, Vec<Contact>> {
        match self.contacts.get_mut(customer_id) {
            Some(h) => h,
            None => self.contacts.entry(customer_id.into()).or_default(),
        }
    }

    /// The models for a flow, when they were trained on the features it has now.
    pub fn uplift_for(&self, flow: &CompiledFlow) -> Option<Arc<FlowUplift>> {
        let set = self.uplift.load();
        set.get(&*flow.key).filter(|u| u.features == flow.feature_names && u.categories == flow.category_names).cloned()
    }

    pub fn uplift_models(&self, flow_key: &str) -> Option<Arc<FlowUplift>> {
        self.uplift.load().get(flow_key).cloned()
    }

    /// Makes newly trained models live (one swap; decisions in flight keep the old set).
    /// `rcu` retries if another flow's models were installed meanwhile, so concurrent
    /// trainings (the schedule and `POST …/train`) never drop each other's.
    pub fn install_uplift(&self, models: FlowUplift) {
        let models = Arc::new(models);
        self.uplift.rcu(|current| {
            let mut next: HashMap<Box<str>, Arc<FlowUplift>> = (**current).clone();
            next.insert(models.flow_key.as_str().into(), models.clone());
            next
        });
    }

    /// What one decision on `flow` reads.
    pub fn signals(&self, flow: &Arc<CompiledFlow>) -> TenantSignals<'_> {
        let uplift = self.uplift_for(flow);
        let aligned = uplift.as_ref().is_some_and(|u| std::ptr::eq(u.aligned.as_ptr(), Arc::as_ptr(flow)));
        TenantSignals { learning: self, uplift, aligned, history: None, at: None }
    }

    /// Counts a recorded response in the propensity counters. Only treated responses
    /// count: propensity is the response rate of customers who were shown the offer.
    /// `recorded_ms`: when the response was recorded, as its log record says.
    pub fn count(&self, r: &Response, recorded_ms: i64) {
        self.experiments.outcome(r);
        self.note_outcome(r, recorded_ms);
        if r.control_group {
            return;
        }
        let positive = match r.classification {
            Classification::Positive => true,
            Classification::Negative => false,
            Classification::Neutral => return,
        };
        self.counters.record(&r.offer_id, &r.category, r.channel.as_deref(), positive);
    }

    /// Keeps a response's outcome in its customer's list, dropping those older than the
    /// longest `lookbackDays` a policy may have and, past the cap, the oldest.
    ///
    /// The outcome's time is the client's `timestamp`, never later than when it was
    /// recorded (a future time would suppress for as long as the client liked), and the
    /// record's time when the timestamp does not parse: the live path and any replay
    /// agree.
    fn note_outcome(&self, r: &Response, recorded_ms: i64) {
        // Impression-kind outcomes (impression, not_presented, expired) are routine and
        // would push out the ones policies act on.
        if crate::model::outcome::is_impression(&r.outcome) {
            return;
        }
        let recorded = recorded_ms.div_euclid(1000);
        let at = crate::ids::parse_rfc3339(&r.timestamp).map_or(recorded, |t| t.min(recorded));
        let oldest = crate::ids::unix_now() - (crate::model::policy::MAX_OUTCOME_DAYS * 86_400.0) as i64;
        if at <= oldest {
            return;
        }
        let event = OutcomeEvent {
            at,
            offer_id: r.offer_id.as_str().into(),
            category: r.category.as_str().into(),
            outcome: r.outcome.as_str().into(),
        };
        let mut list = match self.outcomes.get_mut(r.customer_id.as_str()) {
            Some(list) => list,
            None => self.outcomes.entry(r.customer_id.as_str().into()).or_default(),
        };
        list.retain(|o| o.at > oldest);
        // Replays may meet responses out of time order (several nodes' logs).
        let i = list.partition_point(|o| o.at <= at);
        list.insert(i, event);
        let excess = list.len().saturating_sub(MAX_OUTCOMES_PER_CUSTOMER);
        list.drain(..excess);
    }

    /// Takes a record another node logged (mirrored into this node's log at `at`) as a
    /// start's replay takes it: contacts, experiment counts, the customer's decision list,
    /// idempotency keys and counters.
    pub fn apply_mirrored(&self, tenant: &str, at: Position, payload: &[u8]) {
        let mut replay = Replay::new(&[(tenant, self)]);
        replay.record(at, payload);
        replay.finish();
    }

    /// Notes a logged decision in its customer's interaction list.
    pub fn note_decision(&self, customer_id: &str, id: DecisionId) {
        match self.recent.get_mut(customer_id) {
            Some(mut ids) => push_recent(&mut ids, id),
            None => self.recent.entry(customer_id.into()).or_default().push(id),
        }
    }

    /// A customer's logged decisions, newest first (at most `MAX_RECENT_DECISIONS`
    /// and `PRUNE_SLACK`).
    pub fn decisions_of(&self, customer_id: &str) -> Vec<DecisionId> {
        self.recent.get(customer_id).map(|ids| ids.iter().rev().copied().collect()).unwrap_or_default()
    }

    /// Contacts recorded for a customer (for tests and reports).
    pub fn contacts_of(&self, customer_id: &str) -> Vec<Contact> {
        self.contacts.get(customer_id).map(|h| h.clone()).unwrap_or_default()
    }

    /// A copy of the customer's recorded outcomes, oldest first.
    pub fn outcomes_of(&self, customer_id: &str) -> Vec<OutcomeEvent> {
        self.outcomes.get(customer_id).map(|h| h.clone()).unwrap_or_default()
    }
}

/// The contacts a decision made: the offers shown, or for a held-out customer the offers
/// it would have been shown ("virtual" contacts). Held-out customers obey the same caps
/// and cooldowns as treated ones, so the control arm stands for what treatment would
/// have done: without them a capped treated customer gets fewer offers than its held-out
/// twin would have, and the measured effect is biased.
pub fn made_contacts(d: &Decision, now: i64) -> impl Iterator<Item = Contact> + '_ {
    let offers = if d.control_group { &d.counterfactual } else { &d.decisions };
    offers.iter().map(move |o| Contact {
        at: now,
        offer_id: o.offer_id.clone(),
        category: o.category.clone(),
        channel: d.channel_name.clone(),
    })
}

/// A decision's recording, with the models its signals served.
fn recorded(inputs: Inputs, signals: &TenantSignals) -> Option<Box<Recorded>> {
    let mut r = inputs.into_recorded()?;
    r.models = signals.uplift.as_ref().map(|u| u.digest);
    Some(Box::new(r))
}

/// Appends contacts, pruning in amortised O(1): expired contacts are dropped only when
/// the oldest has expired, and the cap is enforced in steps of `PRUNE_SLACK`, so a
/// customer decided for again and again (a hot key, a load test) does not pay for
/// moving the whole history on every decision.
pub fn push_into(history: &mut Vec<Contact>, new: impl Iterator<Item = Contact>, now: i64) {
    let expired = |c: &Contact| now - c.at >= CONTACT_RETENTION_SECS;
    if history.first().is_some_and(expired) {
        history.retain(|c| !expired(c));
    }
    history.extend(new);
    if history.len() > MAX_CONTACTS_PER_CUSTOMER + PRUNE_SLACK {
        let excess = history.len() - MAX_CONTACTS_PER_CUSTOMER;
        history.drain(..excess);
    }
}

/// A retained model set, read back for a replay on the flow its decision was made with:
/// it serves τ and the model input exactly as the live models did. Everything else a
/// decision reads comes from its recording, not from here.
pub struct ReplayModels {
    columns: Vec<Column>,
    offers: HashMap<Arc<str>, UpliftModel>,
}

impl ReplayModels {
    pub fn read(flow: &CompiledFlow, bytes: &[u8]) -> Option<ReplayModels> {
        let set: RetainedModels = postcard::from_bytes(bytes).ok()?;
        let columns = set.input_names.iter().map(|n| Column::of(flow, n)).collect();
        Some(ReplayModels { columns, offers: set.offers.into_iter().collect() })
    }
}

impl Signals for ReplayModels {
    fn uplift(&self, _: usize, offer: &OfferFacts, features: &[f64]) -> Option<UpliftSignal> {
        self.offers.get(&offer.id).map(|m| signal(m, features))
    }

    fn encode(&self, features: &[f64], categories: &[Option<Arc<str>>], out: &mut Vec<f64>) {
        encode(&self.columns, features, categories, out)
    }

    fn contacts(&self, _: &str, visit: &mut dyn FnMut(&[Contact])) {
        visit(&[])
    }
}

/// A decision's view of the learned state.
pub struct TenantSignals<'a> {
    learning: &'a Learning,
    uplift: Option<Arc<FlowUplift>>,
    /// The models were trained for this very compiled flow: look offers up by index.
    aligned: bool,
    /// The customer's contacts, when the caller already holds them locked.
    history: Option<&'a [Contact]>,
    /// The decision's time when it is not now (simulation decides as of a logged time).
    at: Option<i64>,
}

impl Signals for TenantSignals<'_> {
    fn uplift(&self, index: usize, offer: &OfferFacts, features: &[f64]) -> Option<UpliftSignal> {
        let models = self.uplift.as_ref()?;
        if self.aligned {
            return models.by_index.get(index)?.as_ref().map(|m| signal(m, features));
        }
        models.offers.get(&offer.id).map(|m| signal(m.chosen(), features))
    }

    fn encode(&self, features: &[f64], categories: &[Option<Arc<str>>], out: &mut Vec<f64>) {
        match &self.uplift {
            Some(models) => models.encode(features, categories, out),
            None => {
                out.clear();
                out.extend_from_slice(features);
            }
        }
    }

    fn contacts(&self, customer_id: &str, visit: &mut dyn FnMut(&[Contact])) {
        if let Some(history) = self.history {
            return visit(history);
        }
        match self.learning.contacts.get(customer_id) {
            Some(history) => visit(&history),
            None => visit(&[]),
        }
    }

    fn impressions(&self, offer_id: &str) -> [u32; 3] {
        self.learning.impressions.of(offer_id, self.now())
    }

    fn outcomes(&self, customer_id: &str, visit: &mut dyn FnMut(&[OutcomeEvent])) {
        match self.learning.outcomes.get(customer_id) {
            Some(list) => visit(&list),
            None => visit(&[]),
        }
    }

    fn now(&self) -> i64 {
        self.at.unwrap_or_else(crate::ids::unix_now)
    }
}
