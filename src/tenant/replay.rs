//! A logged decision decided again from its receipt (`POST /interactions/{id}/replay`),
//! and what its receipt says reproducing it needs (`GET /interactions/{id}`).
//!
//! The record names the flow by the digest of what it was compiled from and the uplift
//! models by theirs (`tenant::retained` keeps both), and carries every volatile read the
//! decision made (`engine::tape`). A replay compiles the flow again from its retained
//! inputs (or takes the live flow, when it is the same), serves the models the decision
//! was served, feeds the reads back in order, puts the journey action it delivered first
//! again, and compares what it would log with what was logged, field by field, as
//! JSON text: two numbers are the same only when their bits are.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::interaction::{self, DeliveredAction, Interaction, ReplayFacts};
use super::journeys::{self, Pending};
use super::learning::ReplayModels;
use super::retained;
use crate::catalog::journey::JourneyOffer;
use crate::catalog::retained::{compile_retained, digest, hex, Digest};
use crate::engine::tape::{Inputs, Taped};
use crate::engine::{CompiledFlow, NoSignals, RecommendRequest, Signals};
use crate::store::{Storage, StoreError};

/// What reproducing a logged decision needs, as its receipt shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reproduce {
    /// The clock the decision read (periods, cooldowns, the day's exploration draws).
    pub decided_at: String,
    /// The digest of what the flow version was compiled from (entities and rule files).
    pub inputs: String,
    /// The digest of the uplift models the decision was served, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<String>,
    /// Whether the decision was explained (an explanation reads the counters again).
    pub explained: bool,
    /// Each enrich read as used: the customer's copied fields, or `null` for no row.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<Option<Map<String, Value>>>,
    /// The request attributes the rules read, as they read them.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
    /// The request's segments, when a policy read them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<String>,
    /// How many of the customer's contacts and outcomes the policies counted, and a
    /// digest of them.
    pub contacts: usize,
    pub outcomes: usize,
    pub contacts_digest: String,
    /// How many counter reads (propensities, posteriors, offer impressions) it made.
    pub counter_reads: usize,
    /// The journey channel action delivered in it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journey_action: Option<DeliveredAction>,
}

/// What `POST /interactions/{id}/replay` answers.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReport {
    pub identical: bool,
    pub original: Interaction,
    pub replayed: Interaction,
    pub differences: Vec<Difference>,
}

/// One field the replay logged otherwise (`offers[1].score`, …).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Difference {
    pub field: String,
    pub original: Value,
    pub replayed: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no interaction `{0}`")]
    NotFound(String),
    /// The decision cannot be decided again (logged before receipts, or past retention).
    #[error("{0}")]
    NotReplayable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Flows compiled again from retained inputs, by digest: a replay of many decisions of
/// one past version compiles it once. Bounded: past `CAPACITY` the cache starts over.
#[derive(Default)]
pub struct Flows(Mutex<HashMap<Digest, Arc<CompiledFlow>>>);

const CAPACITY: usize = 16;

impl Flows {
    /// The flow compiled from `inputs`: a live one with the same digest, else the
    /// retained document compiled again. `None` when it is no longer kept.
    fn get(
        &self,
        store: &dyn Storage,
        tenant: &str,
        live: &[Arc<CompiledFlow>],
        inputs: &Digest,
    ) -> Result<Option<Arc<CompiledFlow>>, ReplayError> {
        if let Some(f) = live.iter().find(|f| &f.inputs == inputs) {
            return Ok(Some(f.clone()));
        }
        if let Some(f) = self.0.lock().expect("not poisoned").get(inputs) {
            return Ok(Some(f.clone()));
        }
        let Some(bytes) = retained::load(store, tenant, inputs)? else { return Ok(None) };
        let flow = compile_retained(&bytes).map_err(|e| {
            ReplayError::NotReplayable(format!("the flow version's retained inputs no longer compile: {e}"))
        })?;
        let flow = Arc::new(flow);
        let mut cache = self.0.lock().expect("not poisoned");
        if cache.len() >= CAPACITY {
            cache.clear();
        }
        cache.insert(*inputs, flow.clone());
        Ok(Some(flow))
    }
}

/// The receipt of decision `id`: the logged decision with what reproducing it needs
/// (the names of its reads come from its flow, when that is still kept).
pub fn receipt(
    store: &dyn Storage,
    tenant: &str,
    live: &[Arc<CompiledFlow>],
    flows: &Flows,
    id: &str,
) -> Result<Option<Interaction>, ReplayError> {
    let Some((mut found, facts)) = interaction::find_receipt(store, tenant, id)? else { return Ok(None) };
    if let Some(facts) = facts {
        let flow = flows.get(store, tenant, live, &facts.recorded.inputs).unwrap_or(None);
        found.reproduce = Some(reproduce(&facts, flow.as_deref()));
    }
    Ok(Some(found))
}

fn reproduce(facts: &ReplayFacts, flow: Option<&CompiledFlow>) -> Reproduce {
    let r = &facts.recorded;
    let (row_names, attribute_names) = flow.map(CompiledFlow::recorded_names).unwrap_or_default();
    let named = |names: Option<&Vec<String>>, values: &[Option<Taped>]| -> Map<String, Value> {
        let name = |i: usize| names.and_then(|n| n.get(i)).cloned().unwrap_or_else(|| format!("#{i}"));
        values.iter().enumerate().filter_map(|(i, v)| Some((name(i), json(v.as_ref()?)))).collect()
    };
    let rows = r.rows.iter().enumerate().map(|(i, row)| row.as_ref().map(|row| named(row_names.get(i), row))).collect();
    let attributes: Vec<Option<Taped>> = r.attributes.iter().cloned().map(Some).collect();
    let history = postcard::to_allocvec(&(&r.contacts, &r.outcomes)).expect("contacts serialise");
    Reproduce {
        decided_at: crate::ids::rfc3339(r.now, 0),
        inputs: hex(&r.inputs),
        models: r.models.as_ref().map(hex),
        explained: facts.explain,
        rows,
        attributes: named(Some(&attribute_names), &attributes),
        segments: r.segments.clone(),
        contacts: r.contacts.len(),
        outcomes: r.outcomes.len(),
        contacts_digest: hex(&digest(&history)),
        counter_reads: r.propensities.len() + r.posteriors.len() + r.impressions.len(),
        journey_action: facts.delivered.clone(),
    }
}

fn json(v: &Taped) -> Value {
    match v {
        Taped::Null => Value::Null,
        Taped::Bool(b) => Value::Bool(*b),
        Taped::Num(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
        Taped::Str(s) => Value::String(s.to_string()),
        Taped::Json(text) => serde_json::from_str(text).unwrap_or(Value::Null),
    }
}

/// Decides `id` again from its receipt and compares.
pub fn replay(
    store: &dyn Storage,
    tenant: &str,
    live: &[Arc<CompiledFlow>],
    flows: &Flows,
    id: &str,
) -> Result<ReplayReport, ReplayError> {
    let Some((original, facts)) = interaction::find_receipt(store, tenant, id)? else {
        return Err(ReplayError::NotFound(id.to_string()));
    };
    let facts = facts.ok_or_else(|| {
        ReplayError::NotReplayable(format!(
            "interaction `{id}` was logged before decisions recorded what replaying them needs"
        ))
    })?;
    let r = &facts.recorded;
    let flow = flows.get(store, tenant, live, &r.inputs)?.ok_or_else(|| {
        ReplayError::NotReplayable(format!(
            "what version {} of `{}` was compiled from is no longer kept: the decision is older than the retention window",
            original.decision_flow_version, original.decision_flow_key
        ))
    })?;
    let models = match &r.models {
        None => None,
        Some(d) => {
            let bytes = retained::load(store, tenant, d)?.ok_or_else(|| {
                ReplayError::NotReplayable(format!(
                    "the uplift models `{}` the decision was served are no longer kept",
                    hex(d)
                ))
            })?;
            let models = ReplayModels::read(&flow, &bytes).ok_or_else(|| {
                ReplayError::NotReplayable(format!("the uplift models `{}` do not read back", hex(d)))
            })?;
            Some(models)
        }
    };
    let signals: &dyn Signals = match &models {
        Some(m) => m,
        None => &NoSignals,
    };
    let (replayed, short) = decide_again(&flow, &original, &facts, signals)
        .ok_or_else(|| ReplayError::NotReplayable(format!("interaction `{id}` has no replayable id")))?;
    let mut differences = compare(&original, &replayed);
    if short {
        differences.push(Difference {
            field: "reads".into(),
            original: Value::String("as recorded".into()),
            replayed: Value::String("more than were recorded: the decision took another path".into()),
        });
    }
    Ok(ReplayReport { identical: differences.is_empty(), original, replayed, differences })
}

/// The interaction the decision gives on `flow` from its recording, as the log would
/// keep it; and whether it asked for reads the recording does not hold.
fn decide_again(
    flow: &CompiledFlow,
    original: &Interaction,
    facts: &ReplayFacts,
    signals: &dyn Signals,
) -> Option<(Interaction, bool)> {
    let req = request(original);
    let inputs = Inputs::replay(&facts.recorded);
    let mut d = flow.decide_with(&req, signals, facts.explain, &inputs);
    if let Some(a) = &facts.delivered {
        let offer = JourneyOffer {
            id: a.offer_id.as_str().into(),
            name: a.offer_name.as_str().into(),
            category: a.category.as_str().into(),
            priority: a.priority,
        };
        journeys::place_first(&mut d, &Pending::delivered(&a.journey, &a.enrollment, offer));
    }
    // Only event-log records carry replay facts, and their ids parse.
    let id = interaction::DecisionId::parse(&original.id)?;
    let record = interaction::decision_record("", &d, &req, id.nonce);
    let (_, _, mut replayed) = interaction::read_decision(&record, id.at)?;
    // The replay is of the same interaction, logged when it was: the id, the time and
    // the request as sent are the receipt's.
    replayed.id.clone_from(&original.id);
    replayed.created_at.clone_from(&original.created_at);
    replayed.attributes.clone_from(&original.attributes);
    replayed.attributes_omitted = original.attributes_omitted;
    Some((replayed, inputs.ran_short()))
}

/// The request as the receipt logged it. Attributes the rules read and segments come
/// from the recording, whatever the receipt kept of them.
fn request(i: &Interaction) -> RecommendRequest {
    RecommendRequest {
        customer_id: i.customer_id.clone(),
        channel: i.channel.clone(),
        placement: i.placement.clone(),
        limit: i.limit,
        decision_flow_key: Some(i.decision_flow_key.clone()),
        attributes: i.attributes.clone(),
        ..RecommendRequest::default()
    }
}

/// Every field whose JSON text differs, by path.
fn compare(original: &Interaction, replayed: &Interaction) -> Vec<Difference> {
    let as_json = |i: &Interaction| serde_json::to_value(i).expect("an interaction serialises");
    let mut out = Vec::new();
    diff("", &as_json(original), &as_json(replayed), &mut out);
    out
}

fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<Difference>) {
    let at = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))).collect();
            keys.sort();
            for k in keys {
                let null = Value::Null;
                diff(&at(k), x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null), out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (a, b)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}[{i}]"), a, b, out);
            }
        }
        _ if same_text(a, b) => {}
        _ => out.push(Difference { field: path.to_string(), original: a.clone(), replayed: b.clone() }),
    }
}

/// Equal as JSON text: numbers by their shortest round-trip form, so by their bits
/// (`Value`'s own equality would take 0.0 and -0.0 for the same).
fn same_text(a: &Value, b: &Value) -> bool {
    serde_json::to_string(a).ok() == serde_json::to_string(b).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tape::Recorded;

    #[test]
    fn differences_name_the_field_and_compare_number_bits() {
        let a = serde_json::json!({"offers": [{"score": 0.5, "rank": 1}], "controlGroup": false});
        let b = serde_json::json!({"offers": [{"score": 0.500_000_000_000_000_1, "rank": 1}], "controlGroup": false});
        let mut out = Vec::new();
        diff("", &a, &b, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].field, "offers[0].score");
        let mut none = Vec::new();
        diff("", &a, &a.clone(), &mut none);
        assert!(none.is_empty());
        let c = serde_json::json!({"offers": [], "controlGroup": false});
        let mut shorter = Vec::new();
        diff("", &a, &c, &mut shorter);
        assert_eq!(shorter[0].field, "offers", "a list of another length differs as a whole");
    }

    #[test]
    fn a_receipt_names_its_reads() {
        let facts = ReplayFacts {
            explain: false,
            delivered: None,
            recorded: Recorded {
                now: 0,
                rows: vec![None, Some(vec![Some(Taped::Num(3.0)), None])],
                attributes: vec![Taped::Str("gold".into())],
                propensities: vec![0.1, 0.2],
                ..Recorded::default()
            },
        };
        let r = reproduce(&facts, None);
        assert_eq!(r.decided_at, "1970-01-01T00:00:00.000Z");
        assert_eq!(r.rows[0], None);
        assert_eq!(r.rows[1].as_ref().unwrap()["#0"], serde_json::json!(3.0));
        assert_eq!(r.attributes["#0"], serde_json::json!("gold"));
        assert_eq!(r.counter_reads, 2);
    }
}
