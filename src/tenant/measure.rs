//! Measurement: the holdout experiment report (from the aggregates `tenant::experiment`
//! keeps as decisions and outcomes happen) and uplift training (from a bounded sample of
//! the flow's logged decisions and their responses, read off the request path).
//! `FlowLog` reads a flow's whole log; tests check the aggregates and the sample against it.
//!
//! * The experiment's unit is the customer (holdout assignment is per customer): a
//!   customer who got a decision from the flow is a sample of its arm, and converted if
//!   any of its responses in the flow is one of the flow's `conversionOutcomes`; its
//!   revenue is the sum of the `conversionValue`s of its positive responses.
//! * An uplift training row is one customer's exposure to one offer within one exposure
//!   window ([`EXPOSURE_WINDOW_SECS`]), however many decisions showed it: treated when the
//!   offer was shown, control when the customer was held out and the offer is one it
//!   would have been shown (a customer in both arms in one window is left out); converted
//!   when a response with one of the flow's conversion outcomes names that offer in that
//!   window. Features are the ones logged with the customer's first decision of the window.
//!   Counting decisions instead would weigh a customer by how often it was decided for,
//!   which differs between the arms as soon as a contact cap applies.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::interaction::{Classification, Interaction, Response};
use super::learning::{FlowUplift, Names, OfferUplift};
use crate::engine::CompiledFlow;
use crate::learn::stats::{experiment_stats, ArmStats, ArmTotals, ExperimentStats, Interval};
use crate::learn::uplift::{fit_selected, Learner, UpliftRow, Validation};
use crate::store::{Storage, StoreError};

/// A flow's logged decisions with their responses.
pub struct FlowLog {
    pub decisions: Vec<(Interaction, Vec<Response>)>,
}

impl FlowLog {
    /// Reads the flow's records page by page (parsing as it goes, keeping only this
    /// flow's), so the read never holds up the tenant's writes for long.
    pub fn load(store: &dyn Storage, tenant: &str, flow_key: &str) -> Result<FlowLog, StoreError> {
        let mut responses: HashMap<String, Vec<Response>> = HashMap::new();
        super::interaction::each_response(store, tenant, |r| {
            if r.decision_flow_key == flow_key {
                responses.entry(r.interaction_id.clone()).or_default().push(r);
            }
        })?;
        let mut decisions = Vec::new();
        super::interaction::each_decision(store, tenant, |i| {
            if i.decision_flow_key == flow_key {
                let r = responses.remove(&i.id).unwrap_or_default();
                decisions.push((i, r));
            }
        })?;
        Ok(FlowLog { decisions })
    }

    /// Per-arm customer totals: (treated, control, customers left out). A customer seen
    /// in both arms (the holdout share changed between versions) is left out: which arm
    /// its conversions belong to is unknowable.
    pub fn arm_totals(&self, conversions: u16) -> (ArmTotals, ArmTotals, usize) {
        #[derive(Default)]
        struct Seen {
            control: bool,
            treated: bool,
            converted: bool,
            revenue: f64,
        }
        let mut customers: HashMap<&str, Seen> = HashMap::new();
        for (i, responses) in &self.decisions {
            let c = customers.entry(&i.customer_id).or_default();
            c.control |= i.control_group;
            c.treated |= !i.control_group;
            for r in responses {
                c.converted |= super::interaction::converts(&r.outcome, conversions);
                if r.classification == Classification::Positive {
                    c.revenue += r.conversion_value.unwrap_or(0.0);
                }
            }
        }
        let (mut treated, mut control, mut both) = (ArmTotals::default(), ArmTotals::default(), 0);
        for c in customers.into_values() {
            match (c.treated, c.control) {
                (true, true) => both += 1,
                (false, _) => control.record(c.converted, c.revenue),
                (true, false) => treated.record(c.converted, c.revenue),
            }
        }
        (treated, control, both)
    }

    /// Uplift training rows per offer id (every exposure, no sampling), features in
    /// `names` order (NaN if missing).
    pub fn uplift_rows(&self, names: &[Arc<str>], conversions: u16) -> HashMap<String, Vec<UpliftRow>> {
        let mut units = Units::new(usize::MAX);
        let mut interned = Names::default();
        for (i, responses) in &self.decisions {
            units.decision(i, &mut interned);
            for r in responses {
                units.response(r, conversions);
            }
        }
        units.rows(names)
    }
}

/// Exposure windows are this long (counted from the Unix epoch): the "roughly 30 days of
/// decisions" a holdout needs.
pub const EXPOSURE_WINDOW_SECS: i64 = 30 * 86_400;

/// Rows kept per offer for training: a uniform sample of its exposures beyond this.
pub const SAMPLE_PER_OFFER: usize = 50_000;

/// A decision's logged features, names shared between decisions.
type LoggedFeatures = Arc<[(Arc<str>, f64)]>;

/// One customer's exposure to one offer in one window.
struct Unit {
    customer: Box<str>,
    treated: bool,
    control: bool,
    converted: bool,
    /// The logged features of the customer's first decision in the window.
    features: LoggedFeatures,
}

/// Exposures per offer, at most `cap` per offer: those whose (customer, window) hash is
/// smallest (a bottom-k sample), so every decision and response of a sampled customer
/// lands in its row, and the sample is uniform over exposures whatever the log's order.
struct Units {
    cap: usize,
    offers: HashMap<String, BTreeMap<u64, Unit>>,
}

fn window_of(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(EXPOSURE_WINDOW_SECS)
}

/// A well-mixed 64-bit key of (customer, window): the sample's order.
fn unit_key(customer: &str, window: i64) -> u64 {
    let mut h = crate::ids::fnv1a_pair(customer, "") ^ (window as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // splitmix64's finaliser: FNV's low bits alone are not uniform enough to order by.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl Units {
    fn new(cap: usize) -> Units {
        Units { cap, offers: HashMap::new() }
    }

    fn decision(&mut self, i: &Interaction, names: &mut Names) {
        let window = window_of(crate::ids::parse_rfc3339(&i.created_at).unwrap_or(0));
        let key = unit_key(&i.customer_id, window);
        let mut features: Option<LoggedFeatures> = None;
        for o in &i.offers {
            let units = match self.offers.get_mut(&o.offer_id) {
                Some(u) => u,
                None => self.offers.entry(o.offer_id.clone()).or_default(),
            };
            if let Some(u) = units.get_mut(&key) {
                u.treated |= !i.control_group;
                u.control |= i.control_group;
                continue;
            }
            if units.len() >= self.cap && units.last_key_value().is_some_and(|(k, _)| *k < key) {
                continue;
            }
            let features =
                features.get_or_insert_with(|| i.features.iter().map(|(n, v)| (names.get(n), *v)).collect()).clone();
            let unit = Unit {
                customer: i.customer_id.as_str().into(),
                treated: !i.control_group,
                control: i.control_group,
                converted: false,
                features,
            };
            units.insert(key, unit);
            if units.len() > self.cap {
                units.pop_last();
            }
        }
    }

    /// A response with a conversion outcome converts its exposure: the one of its
    /// window, else (a response after the window closed) the one before.
    fn response(&mut self, r: &Response, conversions: u16) {
        if !super::interaction::converts(&r.outcome, conversions) {
            return;
        }
        let Some(units) = self.offers.get_mut(&r.offer_id) else { return };
        let window = window_of(crate::ids::parse_rfc3339(&r.timestamp).unwrap_or(0));
        for w in [window, window - 1] {
            if let Some(u) = units.get_mut(&unit_key(&r.customer_id, w)).filter(|u| *u.customer == *r.customer_id) {
                u.converted = true;
                return;
            }
        }
    }

    /// Rows with the features `names`. A one-hot name `category=value` is 1 where the
    /// logged value is `value`, 0 where it is another, missing where none was logged.
    fn rows(&self, names: &[Arc<str>]) -> HashMap<String, Vec<UpliftRow>> {
        let feature = |u: &Unit, name: &str| {
            if let Some((_, v)) = u.features.iter().find(|(n, _)| &**n == name) {
                return *v;
            }
            match name.split_once('=') {
                Some((category, _)) if u.features.iter().any(|(n, _)| is_level_of(n, category)) => 0.0,
                _ => f64::NAN,
            }
        };
        let row = |u: &Unit| UpliftRow {
            features: names.iter().map(|n| feature(u, n)).collect(),
            treated: u.treated,
            converted: u.converted,
        };
        self.offers
            .iter()
            .map(|(offer, units)| {
                let rows = units.values().filter(|u| u.treated != u.control).map(row).collect();
                (offer.clone(), rows)
            })
            .collect()
    }
}

/// Whether a logged name is `category=…`.
fn is_level_of(name: &str, category: &str) -> bool {
    name.len() > category.len() && name.starts_with(category) && name.as_bytes()[category.len()] == b'='
}

/// A categorical value becomes a one-hot column when at least this many exposures have
/// it (fewer say nothing reliable about its effect)...
pub const MIN_LEVEL_ROWS: usize = 30;
/// ...and for the most frequent this many values of one feature at most.
pub const MAX_LEVELS: usize = 16;

impl Units {
    /// The one-hot columns of `categories`: their frequent values, most frequent first.
    fn levels(&self, categories: &[Arc<str>]) -> Vec<Arc<str>> {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for u in self.offers.values().flat_map(|units| units.values()) {
            for (n, _) in u.features.iter().filter(|(n, _)| n.contains('=')) {
                *counts.entry(n).or_default() += 1;
            }
        }
        let mut out = Vec::new();
        for c in categories {
            let mut levels: Vec<(&str, usize)> = counts
                .iter()
                .filter(|(n, k)| is_level_of(n, c) && **k >= MIN_LEVEL_ROWS)
                .map(|(n, k)| (*n, *k))
                .collect();
            levels.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            out.extend(levels.into_iter().take(MAX_LEVELS).map(|(n, _)| Arc::from(n)));
        }
        out
    }
}

/// A bounded uniform sample of a flow's training rows (see [`Units`]): memory is bounded
/// by `cap` × offers, whatever the size of the log; reading it is one pass over the
/// decisions and one over the responses.
pub struct TrainingSample {
    units: Units,
    /// Decisions of the flow read in all.
    pub decisions: usize,
}

impl TrainingSample {
    pub fn load(
        store: &dyn Storage,
        tenant: &str,
        flow_key: &str,
        conversions: u16,
        cap: usize,
    ) -> Result<TrainingSample, StoreError> {
        let mut units = Units::new(cap);
        let mut decisions = 0;
        let mut names = Names::default();
        super::interaction::each_decision(store, tenant, |i| {
            if i.decision_flow_key == flow_key {
                decisions += 1;
                units.decision(&i, &mut names);
            }
        })?;
        super::interaction::each_response(store, tenant, |r| {
            if r.decision_flow_key == flow_key {
                units.response(&r, conversions);
            }
        })?;
        Ok(TrainingSample { units, decisions })
    }

    /// Uplift training rows per offer id, features in `names` order (NaN if missing).
    pub fn uplift_rows(&self, names: &[Arc<str>]) -> HashMap<String, Vec<UpliftRow>> {
        self.units.rows(names)
    }

    /// The models' input columns for `flow`: its numeric features, then a one-hot
    /// column per frequent value of each categorical feature in the sample.
    pub fn input_names(&self, flow: &CompiledFlow) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = flow.feature_names.to_vec();
        names.extend(self.units.levels(&flow.category_names));
        names
    }
}

/// Records a page this size are read under one short store read.
const PAGE: usize = 1_024;

/// Calls `each(key, value)` with every record under `prefix`, a page at a time.
pub fn for_each_record(
    store: &dyn Storage,
    prefix: &[u8],
    mut each: impl FnMut(&[u8], &[u8]),
) -> Result<(), StoreError> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.scan_page(prefix, after.as_deref(), PAGE)?;
        for (key, value) in &page {
            each(key, value);
        }
        match page.last() {
            Some((key, _)) if page.len() == PAGE => after = Some(key.clone()),
            _ => return Ok(()),
        }
    }
}

/// The `/experiments/{flowKey}/results` body: the report, or why there is none.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ExperimentResults {
    Report(Box<ExperimentReport>),
    Unavailable {
        #[serde(rename = "flowKey")]
        flow_key: String,
        /// Why the arms' totals could not be compared.
        error: String,
    },
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentReport {
    pub flow_key: String,
    pub flow_id: String,
    pub holdout_percent: Option<f64>,
    /// Always `customer`.
    pub unit: &'static str,
    pub conversion: &'static str,
    pub customers_in_both_arms: usize,
    pub treated: ArmStats,
    pub control: ArmStats,
    pub treatment_conversion_rate: Option<f64>,
    pub holdout_conversion_rate: Option<f64>,
    pub uplift: Option<f64>,
    pub relative_uplift: Option<f64>,
    pub uplift_interval95: Option<Interval>,
    pub z_score: Option<f64>,
    pub p_value: Option<f64>,
    pub significant: Option<bool>,
    pub insufficient_data: bool,
    pub min_samples_per_arm: u64,
    pub revenue: RevenueReport,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevenueReport {
    pub per_customer_treated: Option<f64>,
    pub per_customer_control: Option<f64>,
    pub incremental_per_treated_customer: Option<f64>,
    pub incremental_per_treated_customer_interval95: Option<Interval>,
    pub incremental_total: Option<f64>,
    pub incremental_total_interval95: Option<Interval>,
}

/// The `/experiments/{flowKey}/results` body.
/// The flow's experiment report from its arms' totals: (treated, control, customers seen
/// in both arms), as `Experiments::totals` keeps them (or `FlowLog::arm_totals` computes).
pub fn experiment_results(flow: &CompiledFlow, totals: (ArmTotals, ArmTotals, usize)) -> Value {
    let (treated, control, in_both_arms) = totals;
    let results = match experiment_stats(&treated, &control) {
        Ok(stats) => ExperimentResults::Report(Box::new(report(flow, &stats, in_both_arms))),
        Err(e) => ExperimentResults::Unavailable { flow_key: flow.key.to_string(), error: e.to_string() },
    };
    to_json(&results)
}

fn report(flow: &CompiledFlow, stats: &ExperimentStats, in_both_arms: usize) -> ExperimentReport {
    let significant = stats.p_value.map(|p| !stats.insufficient_data && p < 0.05);
    let n = stats.treated.samples as f64;
    let r = &stats.revenue;
    ExperimentReport {
        flow_key: flow.key.to_string(),
        flow_id: flow.flow_id.to_string(),
        holdout_percent: flow.holdout_percent(),
        unit: "customer",
        conversion: "a customer with at least one positive outcome in this flow",
        customers_in_both_arms: in_both_arms,
        treated: stats.treated,
        control: stats.control,
        treatment_conversion_rate: stats.treated.conversion_rate,
        holdout_conversion_rate: stats.control.conversion_rate,
        uplift: stats.absolute_uplift,
        relative_uplift: stats.relative_uplift,
        uplift_interval95: stats.uplift_interval,
        z_score: stats.z,
        p_value: stats.p_value,
        significant,
        insufficient_data: stats.insufficient_data,
        min_samples_per_arm: stats.min_samples_per_arm,
        revenue: RevenueReport {
            per_customer_treated: r.per_customer_treated,
            per_customer_control: r.per_customer_control,
            incremental_per_treated_customer: r.per_customer_diff,
            incremental_per_treated_customer_interval95: r.per_customer_diff_interval,
            incremental_total: r.incremental_revenue,
            incremental_total_interval95: r
                .per_customer_diff_interval
                .map(|i| Interval { lower: i.lower * n, upper: i.upper * n }),
        },
    }
}

/// A reply type as JSON (they are plain data: serialising cannot fail).
fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("reply types serialise")
}

/// Fits every learner for every offer of the flow that has enough data, and chooses one
/// per offer on held-out rows (`learn::uplift::fit_selected`).
pub fn train(flow: &Arc<CompiledFlow>, sample: &TrainingSample) -> FlowUplift {
    let names = sample.input_names(flow);
    let mut offers = HashMap::new();
    let mut skipped = Vec::new();
    let mut rows = sample.uplift_rows(&names);
    for (id, _) in flow.offer_ids() {
        let Some(rows) = rows.remove(&**id) else {
            skipped.push((id.clone(), "no logged decisions include this offer".to_string()));
            continue;
        };
        match fit_selected(&rows) {
            Ok(selected) => {
                offers.insert(id.clone(), OfferUplift::new(selected));
            }
            Err(e) => skipped.push((id.clone(), e.to_string())),
        }
    }
    FlowUplift::new(flow, names, offers, skipped, sample.decisions)
}

/// An algorithm-model record: a flow's uplift models.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelSummary {
    pub id: String,
    pub key: String,
    pub name: String,
    /// Always `uplift`.
    pub model_type: &'static str,
    pub flow_key: String,
    /// `trained` or `untrained`.
    pub status: &'static str,
    pub trained_at: Option<String>,
    pub interactions: Option<usize>,
    pub features: Vec<String>,
    /// Always `chosen_per_offer`: each offer's `chosenLearner` scores it.
    pub scoring_method: &'static str,
    /// What counts as a conversion for the models and the experiment.
    pub conversion_outcomes: Vec<String>,
    pub offers: Vec<OfferModel>,
}

/// One offer's model within a [`ModelSummary`].
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfferModel {
    pub offer_id: String,
    pub offer_name: String,
    pub trained: bool,
    /// Training rows: customers exposed to the offer (treated) or held out from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_treated: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_control: Option<usize>,
    /// The learner decisions use: the lowest R-loss on the validation rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chosen_learner: Option<Learner>,
    /// Each learner's R-loss on the validation rows (fitted on the other rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<Vec<Validation>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_rows: Option<usize>,
    /// Treated minus control conversion rate: what uncertain τs are shrunk toward.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub average_effect: Option<f64>,
    /// Why an untrained offer has no model (`null` when not known), or why a trained one
    /// could not be validated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Option<String>>,
}

/// The algorithm-model record of a flow's uplift models.
pub fn model_summary(flow: &CompiledFlow, models: Option<&FlowUplift>) -> Value {
    to_json(&summary(flow, models))
}

fn offer_model(id: &Arc<str>, name: &Arc<str>, m: &FlowUplift) -> OfferModel {
    let (offer_id, offer_name) = (id.to_string(), name.to_string());
    match m.offers.get(id) {
        Some(o) => {
            let (chosen, sel) = (o.chosen(), &o.selected);
            OfferModel {
                offer_id,
                offer_name,
                trained: true,
                n_treated: Some(chosen.n_treated()),
                n_control: Some(chosen.n_control()),
                chosen_learner: Some(sel.chosen),
                validation: Some(sel.validation.clone()),
                validation_rows: Some(sel.validation_rows),
                average_effect: Some(chosen.average_effect()),
                reason: sel.note.clone().map(Some),
            }
        }
        None => OfferModel {
            offer_id,
            offer_name,
            trained: false,
            n_treated: None,
            n_control: None,
            chosen_learner: None,
            validation: None,
            validation_rows: None,
            average_effect: None,
            reason: Some(m.skipped.iter().find(|(s, _)| s == id).map(|(_, w)| w.clone())),
        },
    }
}

/// [`model_summary`], typed.
pub fn summary(flow: &CompiledFlow, models: Option<&FlowUplift>) -> ModelSummary {
    let offers = match models {
        None => Vec::new(),
        Some(m) => flow.offer_ids().map(|(id, name)| offer_model(id, name, m)).collect(),
    };
    ModelSummary {
        id: flow.flow_id.to_string(),
        key: format!("uplift:{}", flow.key),
        name: format!("Uplift — {}", flow.key),
        model_type: "uplift",
        flow_key: flow.key.to_string(),
        status: if models.is_some() { "trained" } else { "untrained" },
        trained_at: models.map(|m| m.trained_at.clone()),
        interactions: models.map(|m| m.interactions),
        features: match models {
            Some(m) => m.input_names.iter().map(|f| f.to_string()).collect(),
            None => flow.feature_names.iter().chain(flow.category_names.iter()).map(|f| f.to_string()).collect(),
        },
        scoring_method: "chosen_per_offer",
        conversion_outcomes: flow.conversion_outcomes.to_vec(),
        offers,
    }
}

/// `/algorithm-models/{id}/uplift`: per offer τ, μ_T, μ_C and segment for one customer.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerUplift {
    pub model_id: String,
    pub flow_key: String,
    pub customer_id: String,
    /// The learner asked for, or `chosen` (each offer's chosen learner).
    pub method: &'static str,
    pub trained_at: Option<String>,
    /// The customer's feature values now (`null` where missing).
    pub features: BTreeMap<String, Option<f64>>,
    pub offers: Vec<OfferUpliftReply>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfferUpliftReply {
    pub offer_id: String,
    pub offer_name: String,
    /// τ after shrinkage toward the offer's average effect (what decisions use).
    pub tau: Option<f64>,
    /// τ's standard error.
    pub se: Option<f64>,
    /// The learner's τ before shrinkage.
    pub raw_tau: Option<f64>,
    pub mu_t: Option<f64>,
    pub mu_c: Option<f64>,
    pub segment: crate::learn::uplift::Segment,
    /// The learner that produced `tau`.
    pub method: &'static str,
    pub n_treated: usize,
    pub n_control: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Per offer τ, μ_T, μ_C and segment for one customer, from `learner` (or, for `None`,
/// each offer's chosen learner).
pub fn customer_uplift(
    flow: &CompiledFlow,
    models: Option<&FlowUplift>,
    customer_id: &str,
    learner: Option<Learner>,
) -> Value {
    let x = match models {
        Some(m) => m.input(flow, customer_id),
        None => flow.current_features(customer_id),
    };
    let names: Vec<Arc<str>> = models.map_or_else(|| flow.feature_names.to_vec(), |m| m.input_names.clone());
    let features = names.iter().zip(&x).map(|(n, v)| (n.to_string(), v.is_finite().then_some(*v)));
    let offers = flow
        .offer_ids()
        .map(|(id, name)| {
            let (offer_id, offer_name) = (id.to_string(), name.to_string());
            match models.and_then(|m| m.offers.get(id)) {
                Some(o) => {
                    let model = learner.map_or_else(|| o.chosen(), |l| o.model(l));
                    let p = model.predict(&x);
                    OfferUpliftReply {
                        offer_id,
                        offer_name,
                        tau: Some(p.tau),
                        se: Some(p.se),
                        raw_tau: Some(p.raw_tau),
                        mu_t: Some(p.mu_t),
                        mu_c: Some(p.mu_c),
                        segment: p.segment(),
                        method: model.learner().name(),
                        n_treated: model.n_treated(),
                        n_control: model.n_control(),
                        reason: None,
                    }
                }
                None => OfferUpliftReply {
                    offer_id,
                    offer_name,
                    tau: None,
                    se: None,
                    raw_tau: None,
                    mu_t: None,
                    mu_c: None,
                    segment: crate::learn::uplift::Segment::Uncertain,
                    method: learner.map_or("chosen", Learner::name),
                    n_treated: 0,
                    n_control: 0,
                    reason: Some(
                        models
                            .and_then(|m| m.skipped.iter().find(|(s, _)| s == id))
                            .map(|(_, w)| w.clone())
                            .unwrap_or_else(|| "not trained yet".into()),
                    ),
                },
            }
        })
        .collect();
    to_json(&CustomerUplift {
        model_id: flow.flow_id.to_string(),
        flow_key: flow.key.to_string(),
        customer_id: customer_id.to_string(),
        method: learner.map_or("chosen", Learner::name),
        trained_at: models.map(|m| m.trained_at.clone()),
        features: features.collect(),
        offers,
    })
}
