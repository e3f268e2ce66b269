//! `POST /decision-flows/simulate`: a flow's most recent logged requests (of any of its
//! versions) sent again through its draft, with no side effects, and what the draft
//! would have changed against what was shown then.
//!
//! Requests are re-decided in log order, each as of its logged time, against contacts
//! the simulation keeps itself: what the draft would have shown within the simulated
//! requests, starting from none (contacts made before the first simulated request, or by
//! other flows, are not counted). Customer rows and learned counters are today's.
//! Held-out requests are left out: nothing was shown to them. Where the logged decisions
//! carry show probabilities (Thompson exploration), the draft's conversions and revenue
//! per request are estimated off-policy from the logged outcomes (IPS, SNIPS, doubly
//! robust).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::interaction::{converts, read_record, Record};
use super::learning::{made_contacts, push_into, Learning};
use crate::engine::contact::Contact;
use crate::engine::{CompiledFlow, Decision, RecommendRequest};
use crate::model::ValidationError;
use crate::store::{Storage, StoreError};

pub const DEFAULT_REQUESTS: usize = 10_000;
pub const MAX_REQUESTS: usize = 100_000;
/// A 95 % normal interval.
const Z95: f64 = 1.959_963_984_540_054;

/// The body of `POST /decision-flows/simulate`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SimulateInput {
    /// The flow's id or key; its live version's logged requests go through its draft.
    pub id: String,
    /// How many of the most recent logged requests (default 10,000, at most 100,000).
    #[serde(default)]
    #[schemars(range(min = 1, max = 100_000))]
    pub limit: Option<usize>,
    /// Only requests logged at or after this time (RFC 3339).
    #[serde(default)]
    pub since: Option<String>,
}

impl SimulateInput {
    /// (request count, earliest time in Unix ms).
    pub fn validate(&self) -> Result<(usize, i64), ValidationError> {
        let limit = self.limit.unwrap_or(DEFAULT_REQUESTS);
        if !(1..=MAX_REQUESTS).contains(&limit) {
            return Err(ValidationError::one("limit", format!("must be between 1 and {MAX_REQUESTS}, got {limit}")));
        }
        let since = match &self.since {
            None => i64::MIN,
            Some(t) => crate::ids::parse_rfc3339(t).map(|s| s * 1000).ok_or_else(|| {
                ValidationError::one("since", format!("`{t}` is not an RFC 3339 time (2026-12-01T00:00:00Z)"))
            })?,
        };
        Ok((limit, since))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Simulation {
    /// Logged requests simulated (held-out ones are not counted).
    pub requests: usize,
    /// Requests whose offers (or their order) the draft changes.
    pub changed: usize,
    /// Every offer either version shows: the share of requests that show it.
    pub offers: Vec<OfferShare>,
    /// Why the draft drops offers the live version showed: rule, policy or node, with
    /// how many (request, offer) pairs it dropped.
    pub removed_by: BTreeMap<String, usize>,
    pub estimate: Option<Estimate>,
    pub estimate_note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfferShare {
    pub offer_id: String,
    pub offer_name: String,
    pub live_share: f64,
    pub draft_share: f64,
}

/// The draft's expected outcomes per request, estimated from the live flow's logged
/// outcomes and show probabilities, beside what the live flow got.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    /// Requests with show probabilities, the ones the estimates use.
    pub requests: usize,
    pub conversions: Estimators,
    pub revenue: Estimators,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Estimators {
    /// What the live flow got per request (observed).
    pub live: f64,
    pub ips: Interval,
    /// Null when no logged offer is one the draft shows (its weights sum to zero).
    pub snips: Option<Interval>,
    pub doubly_robust: Interval,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Interval {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

/// One logged request of the live flow, with what it showed and what came of it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub interaction_id: String,
    pub request: RecommendRequest,
    pub at_ms: i64,
    /// (offer id, show probability when logged) in rank order.
    pub shown: Vec<(Arc<str>, Option<f64>)>,
}

/// The outcomes of logged decisions: interaction → offer → (converted, value). Nested, so
/// a lookup borrows the interaction id instead of building a key.
type Outcomes = HashMap<String, HashMap<Arc<str>, (bool, Option<f64>)>>;

/// Reads the `limit` most recent treated requests of `flow_key` logged since `since_ms`
/// (oldest first), and the conversions recorded for them, from the newest segment back:
/// the cost is that of the segments read, not of the whole log.
pub fn load(
    store: &dyn Storage,
    tenant: &str,
    flow_key: &str,
    conversions: u16,
    limit: usize,
    since_ms: i64,
) -> Result<(Vec<Logged>, Outcomes), StoreError> {
    let events = store.events();
    let mut read: Vec<Vec<Logged>> = Vec::new();
    let mut outcomes = Outcomes::new();
    let mut found = 0;
    for segment in events.segments()?.into_iter().rev() {
        let mut here = Vec::new();
        let mut oldest = i64::MAX;
        events.replay(segment..segment + 1, &mut |at, payload| match read_record(payload) {
            Some((t, Record::Decision(d))) if t == tenant && d.decision_flow_key == flow_key => {
                oldest = oldest.min(d.created_ms);
                if d.control_group || d.created_ms < since_ms {
                    return;
                }
                let id = super::interaction::decision_id(payload, at, d.nonce).to_string();
                let attributes = serde_json::from_str(d.attributes).unwrap_or_default();
                let request = RecommendRequest {
                    customer_id: d.customer_id.to_string(),
                    channel: d.channel.map(str::to_string),
                    placement: d.placement.map(str::to_string),
                    limit: d.limit,
                    decision_flow_key: Some(flow_key.to_string()),
                    attributes,
                    ..RecommendRequest::default()
                };
                let shown =
                    d.offers.iter().enumerate().map(|(i, o)| (Arc::from(o.offer_id), d.propensities.get(i).copied()));
                let shown = shown.map(|(id, p)| (id, p.filter(|p| p.is_finite() && *p > 0.0))).collect();
                here.push(Logged { interaction_id: id, request, at_ms: d.created_ms, shown });
            }
            Some((t, Record::Response(r, _))) if t == tenant && r.decision_flow_key == flow_key => {
                let converted = converts(&r.outcome, conversions);
                let offers = outcomes.entry(r.interaction_id).or_default();
                let entry = offers.entry(Arc::from(r.offer_id.as_str())).or_insert((false, None));
                if converted {
                    *entry = (true, r.conversion_value.or(entry.1));
                }
            }
            _ => {}
        })?;
        found += here.len();
        read.push(here);
        if found >= limit || oldest < since_ms {
            break;
        }
    }
    let mut logged: Vec<Logged> = read.into_iter().rev().flatten().collect();
    logged.drain(..logged.len().saturating_sub(limit));
    Ok((logged, outcomes))
}

/// Sends `logged` through `draft` (and reads what `live` showed from the log), changing
/// nothing.
pub fn run(
    learning: &Learning,
    live: &Arc<CompiledFlow>,
    draft: &Arc<CompiledFlow>,
    logged: &[Logged],
    outcomes: &Outcomes,
) -> Simulation {
    let mut contacts: HashMap<&str, Vec<Contact>> = HashMap::new();
    let mut shares: BTreeMap<Arc<str>, (usize, usize)> = BTreeMap::new();
    let mut removed_by = BTreeMap::new();
    let mut changed = 0;
    // What the draft picked per request: all the estimates need of its decisions (the
    // decisions themselves, explain included, are dropped as they are counted).
    let mut picks = Vec::with_capacity(logged.len());
    for l in logged {
        let at = l.at_ms.div_euclid(1000);
        let history = contacts.entry(l.request.customer_id.as_str()).or_default();
        let d = learning.decide_as_of(draft, &l.request, history, at, true);
        push_into(history, made_contacts(&d, at), at);
        let picked: Vec<Arc<str>> = d.decisions.iter().map(|o| o.offer_id.clone()).collect();
        if picked.len() != l.shown.len() || picked.iter().zip(&l.shown).any(|(a, (b, _))| a != b) {
            changed += 1;
        }
        for (id, _) in &l.shown {
            shares.entry(id.clone()).or_default().0 += 1;
            if !picked.contains(id) {
                *removed_by.entry(why_dropped(&d, id)).or_insert(0) += 1;
            }
        }
        for id in &picked {
            shares.entry(id.clone()).or_default().1 += 1;
        }
        picks.push(picked);
    }
    let n = logged.len().max(1) as f64;
    let names: HashMap<&str, &str> = live.offer_ids().chain(draft.offer_ids()).map(|(i, n)| (&**i, &**n)).collect();
    let offers = shares
        .iter()
        .map(|(id, &(l, d))| OfferShare {
            offer_id: id.to_string(),
            offer_name: names.get(&**id).map_or_else(String::new, |n| n.to_string()),
            live_share: l as f64 / n,
            draft_share: d as f64 / n,
        })
        .collect();
    let values: HashMap<&str, f64> =
        live.offer_facts().chain(draft.offer_facts()).map(|o| (&*o.id, o.revenue_value.unwrap_or(0.0))).collect();
    let (estimate, estimate_note) = estimate(logged, &picks, outcomes, &values);
    Simulation { requests: logged.len(), changed, offers, removed_by, estimate, estimate_note }
}

/// What removed `offer` from the draft's decision, as explain names it.
fn why_dropped(d: &Decision, offer: &str) -> String {
    let removal = d.explanation.as_ref().and_then(|e| e.removed.iter().find(|r| &*r.offer_id == offer));
    match removal {
        Some(r) => match (&r.rule, &r.policy) {
            (Some(rule), _) => format!("rule: {}", rule.name),
            (None, Some(policy)) => format!("policy: {}", policy.name),
            (None, None) => format!("node: {}", r.node_id),
        },
        // Not in the draft's inventory, or the customer is in the draft's holdout.
        None => "not a candidate".to_string(),
    }
}

/// The off-policy estimates, or why there are none.
fn estimate(
    logged: &[Logged],
    picks: &[Vec<Arc<str>>],
    outcomes: &Outcomes,
    values: &HashMap<&str, f64>,
) -> (Option<Estimate>, String) {
    if logged.is_empty() {
        return (None, "no logged requests of this flow in the window asked for".to_string());
    }
    // A request explored when each offer it showed has its probability; one that showed
    // nothing counts too (it adds 0 to IPS, its direct-method term to DR) once the log
    // shows that the flow explores at all.
    if !logged.iter().any(|l| l.shown.iter().any(|(_, p)| p.is_some())) {
        let note = "the live flow's logged decisions carry no show probabilities: with `exploration: \"thompson\"` \
                    on its Score node each shown offer's probability is logged, and the draft can be estimated";
        return (None, note.to_string());
    }
    let explored: Vec<(&Logged, &Vec<Arc<str>>)> =
        logged.iter().zip(picks).filter(|(l, _)| l.shown.iter().all(|(_, p)| p.is_some())).collect();
    let outcome = |l: &Logged, offer: &Arc<str>| {
        let got = outcomes.get(&l.interaction_id).and_then(|offers| offers.get(offer));
        let converted = got.is_some_and(|o| o.0);
        let value = if converted {
            got.and_then(|o| o.1).unwrap_or_else(|| values.get(&**offer).copied().unwrap_or(0.0))
        } else {
            0.0
        };
        (f64::from(u8::from(converted)), value)
    };
    // The direct-method model: each offer's observed conversion rate and value per show.
    let mut shows: HashMap<Arc<str>, (f64, f64, f64)> = HashMap::new();
    for (l, _) in &explored {
        for (offer, _) in &l.shown {
            let (c, v) = outcome(l, offer);
            let s = shows.entry(offer.clone()).or_default();
            (s.0, s.1, s.2) = (s.0 + 1.0, s.1 + c, s.2 + v);
        }
    }
    let model = |offer: &Arc<str>| shows.get(offer).map_or((0.0, 0.0), |s| (s.1 / s.0, s.2 / s.0));
    let mut terms = Terms::default();
    for (l, picked) in &explored {
        // The draft's slate as decided is one draw of its policy (a Thompson draft's too),
        // so 1 for each offer in it is an unbiased stand-in for the draft's probability.
        let pi = |offer: &Arc<str>| f64::from(u8::from(picked.contains(offer)));
        let mut row = Row::default();
        for offer in picked.iter() {
            let (c, v) = model(offer);
            (row.dm_c, row.dm_v, row.size) = (row.dm_c + c, row.dm_v + v, row.size + 1.0);
        }
        for (offer, p) in &l.shown {
            let (pi, p) = (pi(offer), p.expect("filtered to explored decisions"));
            let (c, v) = outcome(l, offer);
            let (mc, mv) = model(offer);
            row.ips_c += pi * c / p;
            row.ips_v += pi * v / p;
            row.weight += pi / p;
            row.live_c += c;
            row.live_v += v;
            row.dr_c += pi * (c - mc) / p;
            row.dr_v += pi * (v - mv) / p;
        }
        terms.rows.push(row);
    }
    let estimate = Estimate {
        requests: explored.len(),
        conversions: terms.estimators(|r| (r.live_c, r.ips_c, r.dm_c + r.dr_c)),
        revenue: terms.estimators(|r| (r.live_v, r.ips_v, r.dm_v + r.dr_v)),
    };
    let note = format!(
        "{} of {} requests carry show probabilities; estimates are per request, with 95 % normal intervals{}",
        explored.len(),
        logged.len(),
        if explored.len() < 30 { " (too few requests for the intervals to be trusted)" } else { "" }
    );
    (Some(estimate), note)
}

/// One request's terms: observed (live), IPS, the importance weight, direct-method and
/// doubly robust corrections, and the draft's expected number of offers.
#[derive(Default, Clone, Copy)]
struct Row {
    live_c: f64,
    live_v: f64,
    ips_c: f64,
    ips_v: f64,
    weight: f64,
    dm_c: f64,
    dm_v: f64,
    dr_c: f64,
    dr_v: f64,
    size: f64,
}

#[derive(Default)]
struct Terms {
    rows: Vec<Row>,
}

impl Terms {
    /// `pick` gives a row's (observed, IPS, DR) terms of one outcome.
    fn estimators(&self, pick: impl Fn(&Row) -> (f64, f64, f64)) -> Estimators {
        let n = self.rows.len() as f64;
        let picked: Vec<(f64, f64, f64)> = self.rows.iter().map(&pick).collect();
        let live = picked.iter().map(|t| t.0).sum::<f64>() / n;
        let ips = mean_interval(picked.iter().map(|t| t.1));
        let doubly_robust = mean_interval(picked.iter().map(|t| t.2));
        // SNIPS: IPS over the mean importance weight, scaled by the draft's mean slate
        // size — the weight's expectation where the live flow could show every offer the
        // draft shows; a ratio's interval by the delta method (the size's own variance is
        // left out).
        let weights: f64 = self.rows.iter().map(|r| r.weight).sum();
        let size = self.rows.iter().map(|r| r.size).sum::<f64>() / n;
        let snips = (weights > 0.0).then(|| {
            let ratio = picked.iter().map(|t| t.1).sum::<f64>() / weights;
            let residual: f64 = self.rows.iter().zip(&picked).map(|(r, t)| (t.1 - ratio * r.weight).powi(2)).sum();
            let se = residual.sqrt() / weights * size;
            let value = ratio * size;
            Interval { value, low: value - Z95 * se, high: value + Z95 * se }
        });
        Estimators { live, ips, snips, doubly_robust }
    }
}

/// A mean and its 95 % normal interval.
fn mean_interval(values: impl Iterator<Item = f64> + Clone) -> Interval {
    let (n, sum) = values.clone().fold((0.0, 0.0), |(n, s), v| (n + 1.0, s + v));
    let mean = sum / n;
    let variance = if n > 1.0 { values.map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    let se = (variance / n).sqrt();
    Interval { value: mean, low: mean - Z95 * se, high: mean + Z95 * se }
}
