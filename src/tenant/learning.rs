//! A tenant's learned state, shared by its request handlers, its actor and the trainer:
//! outcome counters (propensity), each customer's recent contacts (contact policies) and
//! the trained uplift models. Decisions read all three without taking a lock that a
//! writer holds for long: counters are atomics the compiled flows hold directly,
//! contacts are one short per-customer map entry, models are behind an `ArcSwap`.
//!
//! Nothing here is a separate record in storage. Counters are rebuilt from the stored
//! responses and contacts from the stored decision log when the tenant starts, so they
//! always agree with what was recorded.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use dashmap::DashMap;

use super::interaction::{Classification, Interaction, Response};
use crate::engine::contact::Contact;
use crate::engine::{CompiledFlow, Decision, Signals};
use crate::learn::propensity::CounterBank;
use crate::learn::uplift::{Learner, TauScorer, UpliftModel};
use crate::rules::OfferFacts;
use crate::store::keys::{self, Kind};
use crate::store::{Storage, StoreError};

/// Contacts older than this are dropped: the longest cap period is a month, and
/// cooldowns are limited to this long (see `model::policy`).
pub const CONTACT_RETENTION_SECS: i64 = 62 * 86_400;
/// At least this many contacts are kept per customer (the newest), at most
/// `PRUNE_SLACK` more.
pub const MAX_CONTACTS_PER_CUSTOMER: usize = 1_000;
const PRUNE_SLACK: usize = 256;

pub struct Learning {
    pub counters: Arc<CounterBank>,
    contacts: DashMap<Box<str>, Vec<Contact>>,
    /// Trained uplift models by flow key.
    uplift: ArcSwap<HashMap<Box<str>, Arc<FlowUplift>>>,
}

/// The uplift models of one flow: per offer id, both learners, trained on the features
/// named in `features` (the flow's enriched numeric and boolean fields).
#[derive(Debug)]
pub struct FlowUplift {
    pub flow_key: String,
    pub features: Arc<[Arc<str>]>,
    pub trained_at: String,
    /// Interactions the training read.
    pub interactions: usize,
    pub offers: HashMap<Arc<str>, OfferUplift>,
    /// Offers without a model, and why (too few rows, no variation …).
    pub skipped: Vec<(Arc<str>, String)>,
    /// The learner whose τ the score's U factor uses.
    pub scoring: Learner,
}

#[derive(Debug)]
pub struct OfferUplift {
    pub t_learner: UpliftModel,
    pub x_learner: Option<UpliftModel>,
    /// The scoring learner's τ in its per-decision form.
    scorer: TauScorer,
}

impl OfferUplift {
    /// Both fitted learners; `scoring` picks the one decisions use (the X-learner when
    /// it fitted, else the T-learner).
    pub fn new(t_learner: UpliftModel, x_learner: Option<UpliftModel>, scoring: Learner) -> OfferUplift {
        let mut o = OfferUplift { scorer: t_learner.scorer(), t_learner, x_learner };
        o.scorer = o.model(scoring).scorer();
        o
    }

    pub fn model(&self, learner: Learner) -> &UpliftModel {
        match learner {
            Learner::XLearner => self.x_learner.as_ref().unwrap_or(&self.t_learner),
            Learner::TLearner => &self.t_learner,
        }
    }
}

impl Learning {
    pub fn new(counters: Arc<CounterBank>) -> Learning {
        Learning { counters, contacts: DashMap::new(), uplift: ArcSwap::from_pointee(HashMap::new()) }
    }

    /// Records the offers a treated customer was shown as contacts.
    pub fn record_contacts(&self, d: &Decision, now: i64) {
        if d.control_group || d.decisions.is_empty() {
            return;
        }
        let new = d.decisions.iter().map(|o| Contact {
            at: now,
            offer_id: o.offer_id.clone(),
            category: o.category.clone(),
            channel: d.channel_name.clone(),
        });
        self.push_contacts(&d.customer_id, new, now);
    }

    /// Appends contacts, pruning in amortised O(1): expired contacts are dropped only
    /// when the oldest has expired, and the cap is enforced in steps of `PRUNE_SLACK`,
    /// so a customer decided for again and again (a hot key, a load test) does not pay
    /// for moving the whole history on every decision.
    fn push_contacts(&self, customer_id: &str, new: impl Iterator<Item = Contact>, now: i64) {
        let expired = |c: &Contact| now - c.at >= CONTACT_RETENTION_SECS;
        let mut history = match self.contacts.get_mut(customer_id) {
            Some(h) => h,
            None => self.contacts.entry(customer_id.into()).or_default(),
        };
        if history.first().is_some_and(expired) {
            history.retain(|c| !expired(c));
        }
        history.extend(new);
        if history.len() > MAX_CONTACTS_PER_CUSTOMER + PRUNE_SLACK {
            let excess = history.len() - MAX_CONTACTS_PER_CUSTOMER;
            history.drain(..excess);
        }
    }

    /// The models for a flow, when they were trained on the features it has now.
    pub fn uplift_for(&self, flow: &CompiledFlow) -> Option<Arc<FlowUplift>> {
        let set = self.uplift.load();
        set.get(&*flow.key).filter(|u| u.features == flow.feature_names).cloned()
    }

    pub fn uplift_models(&self, flow_key: &str) -> Option<Arc<FlowUplift>> {
        self.uplift.load().get(flow_key).cloned()
    }

    /// Makes newly trained models live (one swap; decisions in flight keep the old set).
    pub fn install_uplift(&self, models: FlowUplift) {
        let mut next: HashMap<Box<str>, Arc<FlowUplift>> = (**self.uplift.load()).clone();
        next.insert(models.flow_key.as_str().into(), Arc::new(models));
        self.uplift.store(Arc::new(next));
    }

    /// What one decision reads.
    pub fn signals(&self, flow: &CompiledFlow) -> TenantSignals<'_> {
        TenantSignals { learning: self, uplift: self.uplift_for(flow) }
    }

    /// Rebuilds counters from stored responses and contacts from the stored decision log.
    pub fn restore(&self, store: &dyn Storage, tenant: &str) -> Result<(), StoreError> {
        let now = crate::ids::unix_now();
        for (_, bytes) in store.scan_prefix(&keys::prefix(tenant, Kind::Response))? {
            if let Ok(r) = serde_json::from_slice::<Response>(&bytes) {
                self.count(&r);
            }
        }
        for (_, bytes) in store.scan_prefix(&keys::prefix(tenant, Kind::Interaction))? {
            let Ok(i) = serde_json::from_slice::<Interaction>(&bytes) else { continue };
            let at = crate::ids::parse_rfc3339(&i.created_at).unwrap_or(0);
            if i.control_group || now - at >= CONTACT_RETENTION_SECS {
                continue;
            }
            let channel: Option<Arc<str>> = i.channel_name.as_deref().map(Into::into);
            let contacts = i.offers.iter().map(|o| Contact {
                at,
                offer_id: o.offer_id.as_str().into(),
                category: o.category.as_str().into(),
                channel: channel.clone(),
            });
            self.push_contacts(&i.customer_id, contacts, now);
        }
        for mut history in self.contacts.iter_mut() {
            history.sort_by_key(|c| c.at);
        }
        Ok(())
    }

    /// Counts a recorded response in the propensity counters. Only treated responses
    /// count: propensity is the response rate of customers who were shown the offer.
    pub fn count(&self, r: &Response) {
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

    /// Contacts recorded for a customer (for tests and reports).
    pub fn contacts_of(&self, customer_id: &str) -> Vec<Contact> {
        self.contacts.get(customer_id).map(|h| h.clone()).unwrap_or_default()
    }
}

/// A decision's view of the learned state.
pub struct TenantSignals<'a> {
    learning: &'a Learning,
    uplift: Option<Arc<FlowUplift>>,
}

impl Signals for TenantSignals<'_> {
    fn uplift(&self, offer: &OfferFacts, features: &[f64]) -> Option<f64> {
        let models = self.uplift.as_ref()?;
        let m = models.offers.get(&offer.id)?;
        m.scorer.tau(features).or_else(|| Some(m.model(models.scoring).predict(features).tau))
    }

    fn contacts(&self, customer_id: &str, visit: &mut dyn FnMut(&[Contact])) {
        match self.learning.contacts.get(customer_id) {
            Some(history) => visit(&history),
            None => visit(&[]),
        }
    }
}
