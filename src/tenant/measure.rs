//! Measurement: the holdout experiment report (from the aggregates `tenant::experiment`
//! keeps as decisions and outcomes happen) and uplift training (from a bounded sample of
//! the flow's logged decisions and their responses, read off the request path).
//! `FlowLog` reads a flow's whole log; tests check the aggregates and the sample against it.
//!
//! * The experiment's unit is the customer (holdout assignment is per customer): a
//!   customer who got a decision from the flow is a sample of its arm, and converted if
//!   any of its responses in the flow is positive; its revenue is the sum of the
//!   `conversionValue`s of those responses.
//! * An uplift training row is one (decision, offer) pair: treated when the offer was
//!   shown, control when the customer was held out and the offer is one it would have
//!   been shown; converted when a positive response names that offer. Features are the
//!   ones logged with the decision.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::interaction::{Classification, Interaction, Response};
use super::learning::{FlowUplift, Names, OfferUplift};
use crate::engine::CompiledFlow;
use crate::learn::stats::{experiment_stats, ArmStats, ArmTotals, ExperimentStats, Interval};
use crate::learn::uplift::{Learner, UpliftModel, UpliftRow};
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
    pub fn arm_totals(&self) -> (ArmTotals, ArmTotals, usize) {
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
            for r in responses.iter().filter(|r| r.classification == Classification::Positive) {
                c.converted = true;
                c.revenue += r.conversion_value.unwrap_or(0.0);
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

    /// Uplift training rows per offer id, features in `names` order (NaN if missing).
    pub fn uplift_rows(&self, names: &[Arc<str>]) -> HashMap<String, Vec<UpliftRow>> {
        let mut rows: HashMap<String, Vec<UpliftRow>> = HashMap::new();
        for (i, responses) in &self.decisions {
            let x = feature_vector(i, names);
            let converted: HashSet<&str> = responses
                .iter()
                .filter(|r| r.classification == Classification::Positive)
                .map(|r| r.offer_id.as_str())
                .collect();
            for o in &i.offers {
                rows.entry(o.offer_id.clone()).or_default().push(UpliftRow {
                    features: x.clone(),
                    treated: !i.control_group,
                    converted: converted.contains(o.offer_id.as_str()),
                });
            }
        }
        rows
    }
}

/// A decision's logged features in `names` order, NaN where one is missing.
fn feature_vector(i: &Interaction, names: &[Arc<str>]) -> Vec<f64> {
    names.iter().map(|n| i.features.get(&**n).copied().unwrap_or(f64::NAN)).collect()
}

/// Rows kept per offer for training: a uniform sample of all its logged rows beyond this.
pub const SAMPLE_PER_OFFER: usize = 50_000;

/// A bounded uniform sample of a flow's training rows: per offer, a reservoir (Algorithm R)
/// of the decisions that showed it (or would have, for the control group), with the
/// responses to the sampled decisions only. Memory is bounded by `cap` × offers, whatever
/// the size of the log; reading it is one pass over the log.
pub struct TrainingSample {
    /// Per offer id, the sampled decisions (shared between the offers of one decision).
    offers: HashMap<String, Vec<Arc<Sampled>>>,
    /// Positive offer ids per sampled decision.
    converted: HashMap<String, HashSet<String>>,
    /// Decisions of the flow read in all.
    pub decisions: usize,
}

/// What training keeps of a sampled decision: a few hundred bytes, not the whole record.
struct Sampled {
    id: Box<str>,
    treated: bool,
    /// The logged features, names shared between decisions.
    features: Box<[(Arc<str>, f64)]>,
}

impl Sampled {
    fn of(i: &Interaction, names: &mut Names) -> Sampled {
        let features = i.features.iter().map(|(n, v)| (names.get(n), *v)).collect();
        Sampled { id: i.id.as_str().into(), treated: !i.control_group, features }
    }

    fn feature(&self, name: &str) -> f64 {
        self.features.iter().find(|(n, _)| &**n == name).map_or(f64::NAN, |(_, v)| *v)
    }
}

impl TrainingSample {
    pub fn load(store: &dyn Storage, tenant: &str, flow_key: &str, cap: usize) -> Result<TrainingSample, StoreError> {
        let mut rng = crate::learn::rng::SplitMix64::new(0x5eed ^ flow_key.len() as u64);
        let mut offers: HashMap<String, (u64, Vec<Arc<Sampled>>)> = HashMap::new();
        let mut decisions = 0;
        let mut names = Names::default();
        super::interaction::each_decision(store, tenant, |full| {
            if full.decision_flow_key != flow_key {
                return;
            }
            decisions += 1;
            let i = Arc::new(Sampled::of(&full, &mut names));
            for o in &full.offers {
                let (seen, kept) = match offers.get_mut(&o.offer_id) {
                    Some(entry) => entry,
                    None => offers.entry(o.offer_id.clone()).or_default(),
                };
                *seen += 1;
                if kept.len() < cap {
                    kept.push(i.clone());
                } else {
                    let j = (rng.next_u64() % *seen) as usize;
                    if j < cap {
                        kept[j] = i.clone();
                    }
                }
            }
        })?;
        let offers: HashMap<String, Vec<Arc<Sampled>>> = offers.into_iter().map(|(k, (_, v))| (k, v)).collect();
        let sampled: HashSet<&str> = offers.values().flatten().map(|i| &*i.id).collect();
        let mut converted: HashMap<String, HashSet<String>> = HashMap::new();
        super::interaction::each_response(store, tenant, |r| {
            if r.classification == Classification::Positive && sampled.contains(r.interaction_id.as_str()) {
                converted.entry(r.interaction_id).or_default().insert(r.offer_id);
            }
        })?;
        Ok(TrainingSample { offers, converted, decisions })
    }

    /// Uplift training rows per offer id, features in `names` order (NaN if missing).
    pub fn uplift_rows(&self, names: &[Arc<str>]) -> HashMap<String, Vec<UpliftRow>> {
        let row = |i: &Sampled, offer: &str| UpliftRow {
            features: names.iter().map(|n| i.feature(n)).collect(),
            treated: i.treated,
            converted: self.converted.get(&*i.id).is_some_and(|c| c.contains(offer)),
        };
        self.offers.iter().map(|(offer, kept)| (offer.clone(), kept.iter().map(|i| row(i, offer)).collect())).collect()
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

/// The learner whose τ the score's U factor uses: the X-learner, built for designs
/// where one arm (the holdout) is much smaller than the other.
pub const SCORING: Learner = Learner::XLearner;

/// Fits both learners for every offer of the flow that has enough data.
pub fn train(flow: &Arc<CompiledFlow>, sample: &TrainingSample) -> FlowUplift {
    let names = flow.feature_names.clone();
    let mut offers = HashMap::new();
    let mut skipped = Vec::new();
    let mut rows = sample.uplift_rows(&names);
    for (id, _) in flow.offer_ids() {
        let Some(rows) = rows.remove(&**id) else {
            skipped.push((id.clone(), "no logged decisions include this offer".to_string()));
            continue;
        };
        match UpliftModel::fit(&rows, Learner::TLearner) {
            Ok(t_learner) => {
                let x_learner = UpliftModel::fit(&rows, Learner::XLearner).ok();
                offers.insert(id.clone(), OfferUplift::new(t_learner, x_learner, SCORING));
            }
            Err(e) => skipped.push((id.clone(), e.to_string())),
        }
    }
    FlowUplift::new(flow, offers, skipped, sample.decisions, SCORING)
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
    pub scoring_method: &'static str,
    pub offers: Vec<OfferModel>,
}

/// One offer's model within a [`ModelSummary`].
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfferModel {
    pub offer_id: String,
    pub offer_name: String,
    pub trained: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_treated: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_control: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x_learner: Option<bool>,
    /// Why an untrained offer has no model (`null` when not known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Option<String>>,
}

/// The algorithm-model record of a flow's uplift models.
pub fn model_summary(flow: &CompiledFlow, models: Option<&FlowUplift>) -> Value {
    to_json(&summary(flow, models))
}

/// [`model_summary`], typed.
pub fn summary(flow: &CompiledFlow, models: Option<&FlowUplift>) -> ModelSummary {
    let offers: Vec<OfferModel> = match models {
        None => Vec::new(),
        Some(m) => flow
            .offer_ids()
            .map(|(id, name)| {
                let (offer_id, offer_name) = (id.to_string(), name.to_string());
                match m.offers.get(id) {
                    Some(o) => OfferModel {
                        offer_id,
                        offer_name,
                        trained: true,
                        n_treated: Some(o.t_learner.n_treated()),
                        n_control: Some(o.t_learner.n_control()),
                        x_learner: Some(o.x_learner.is_some()),
                        reason: None,
                    },
                    None => {
                        let why = m.skipped.iter().find(|(s, _)| s == id).map(|(_, w)| w.clone());
                        OfferModel {
                            offer_id,
                            offer_name,
                            trained: false,
                            n_treated: None,
                            n_control: None,
                            x_learner: None,
                            reason: Some(why),
                        }
                    }
                }
            })
            .collect(),
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
        features: flow.feature_names.iter().map(|f| f.to_string()).collect(),
        scoring_method: "x_learner",
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
    pub tau: Option<f64>,
    pub mu_t: Option<f64>,
    pub mu_c: Option<f64>,
    pub segment: crate::learn::uplift::Segment,
    pub method: &'static str,
    pub n_treated: usize,
    pub n_control: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Per offer τ, μ_T, μ_C and segment for one customer.
pub fn customer_uplift(flow: &CompiledFlow, models: Option<&FlowUplift>, customer_id: &str, learner: Learner) -> Value {
    let x = flow.current_features(customer_id);
    let features = flow.feature_names.iter().zip(&x).map(|(n, v)| (n.to_string(), v.is_finite().then_some(*v)));
    let method = match learner {
        Learner::TLearner => "t_learner",
        Learner::XLearner => "x_learner",
    };
    let offers = flow
        .offer_ids()
        .map(|(id, name)| {
            let (offer_id, offer_name) = (id.to_string(), name.to_string());
            match models.and_then(|m| m.offers.get(id)) {
                Some(o) => {
                    let model = o.model(learner);
                    let p = model.predict(&x);
                    OfferUpliftReply {
                        offer_id,
                        offer_name,
                        tau: Some(p.tau),
                        mu_t: Some(p.mu_t),
                        mu_c: Some(p.mu_c),
                        segment: p.segment(),
                        method,
                        n_treated: model.n_treated(),
                        n_control: model.n_control(),
                        reason: None,
                    }
                }
                None => OfferUpliftReply {
                    offer_id,
                    offer_name,
                    tau: None,
                    mu_t: None,
                    mu_c: None,
                    segment: crate::learn::uplift::Segment::Uncertain,
                    method,
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
        method,
        trained_at: models.map(|m| m.trained_at.clone()),
        features: features.collect(),
        offers,
    })
}
