//! `/recommend` request and response, in the platform's JSON shape.

use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

use crate::model::{FieldError, ValidationError};
use crate::rules::value::num_to_json;

pub const DEFAULT_LIMIT: u32 = 5;
pub const MAX_LIMIT: u32 = 50;

/// A `/recommend` body. Unknown fields are refused (a typo such as `customerID` is an
/// error, not a silently ignored field).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("required" = ["customerId", "decisionFlowKey"]))]
pub struct RecommendRequest {
    #[schemars(length(min = 1, max = 256), regex(pattern = r"\S"))]
    pub customer_id: String,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub placement: Option<String>,
    #[serde(default, alias = "maxOffers")]
    #[schemars(range(min = 1, max = 50))]
    pub limit: Option<u32>,
    /// Required (an `Option` so that its absence is a named 400, not a serde error).
    #[serde(default, alias = "blueprintKey")]
    #[schemars(length(min = 1), regex(pattern = r"\S"))]
    pub decision_flow_key: Option<String>,
    /// Request-time attributes, readable by rules as `attributes.<name>`.
    #[serde(default)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub context: Option<serde_json::Value>,
    // The platform's documented optional fields, accepted so its clients keep working,
    // and not used by arbiter's decisions yet: `channelId`/`placements` (arbiter reads
    // `channel`/`placement`), `sessionId`, `locale`, `currency`,
    // `excludeOffers`, `excludeCreatives` (no creatives here), `debug` (use `?explain=true`)
    // and `decisionFlowId` (flows are chosen by `decisionFlowKey`).
    #[serde(default)]
    pub channel_id: Option<String>,
    #[serde(default)]
    pub placements: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub session_id: Option<String>,
    /// The customer's segments, which `segment_exclusion` policies read.
    #[serde(default)]
    pub segments: Option<Vec<String>>,
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub exclude_offers: Option<Vec<String>>,
    #[serde(default)]
    pub exclude_creatives: Option<Vec<String>>,
    #[serde(default)]
    pub debug: Option<bool>,
    #[serde(default)]
    pub decision_flow_id: Option<String>,
    /// With `?dryRun=true`: decide with this published version instead of the live one.
    #[serde(default)]
    pub flow_version: Option<u32>,
    /// With `?dryRun=true`: decide with the flow's unpublished draft.
    #[serde(default)]
    pub draft: Option<bool>,
}

impl RecommendRequest {
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = Vec::new();
        if self.customer_id.trim().is_empty() {
            errors.push(FieldError::new("customerId", "is required"));
        } else if self.customer_id.len() > 256 {
            errors.push(FieldError::new("customerId", "must be at most 256 characters"));
        }
        if let Some(limit) = self.limit {
            if !(1..=MAX_LIMIT).contains(&limit) {
                errors.push(FieldError::new("limit", format!("must be between 1 and {MAX_LIMIT}, got {limit}")));
            }
        }
        ValidationError::check(errors)
    }

    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT) as usize
    }
}

/// Serialises integral numbers as integers (`"priority": 80`).
pub fn as_number<S: Serializer>(n: &f64, s: S) -> Result<S::Ok, S::Error> {
    num_to_json(*n).serialize(s)
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// The logged decision's id; absent from a dry run, which logs nothing.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub interaction_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub recommendation_id: String,
    pub customer_id: String,
    pub decision_flow_key: Arc<str>,
    pub decision_flow_version: u32,
    pub channel: Option<String>,
    pub count: usize,
    /// Every offer shown, in rank order (across placements when there are several).
    pub decisions: Vec<OfferDecision>,
    /// For a channel with placements and a request that names none: each placement's
    /// offers (no offer in two), in the channel's order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placements: Option<Vec<PlacementDecisions>>,
    pub meta: Meta,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub control_group: bool,
    /// A dry run: decided as a real request would be, and recorded nowhere (no id, no
    /// contacts, no log, no counters).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<FlowExplanation>,
    /// For a control-group customer: the offers it would have received. Logged with the
    /// interaction so control conversions can be attributed; never sent to the client.
    #[serde(skip)]
    pub counterfactual: Vec<OfferDecision>,
    /// The request's channel as the catalog names it (contacts are recorded by it).
    #[serde(skip)]
    pub channel_name: Option<Arc<str>>,
    /// The customer's uplift features at decision time, in `CompiledFlow::feature_names`
    /// order (NaN where missing).
    #[serde(skip)]
    pub features: Vec<f64>,
    /// Which of them to log with the decision, so uplift models train on what was known
    /// then: all of them when the flow runs a holdout (uplift is learned only from
    /// holdout flows), none otherwise — every byte of the log record costs on the
    /// decision path.
    #[serde(skip)]
    pub logged_features: Arc<[Arc<str>]>,
    /// The categorical uplift features at decision time (`CompiledFlow::category_names`
    /// order), and which to log, as `features`.
    #[serde(skip)]
    pub categories: Vec<Option<Arc<str>>>,
    #[serde(skip)]
    pub logged_categories: Arc<[Arc<str>]>,
    /// What the decision read that no version names, when it was recorded for its
    /// receipt (a logged decision's; `engine::tape`).
    #[serde(skip)]
    pub recorded: Option<Box<super::tape::Recorded>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfferDecision {
    pub offer_id: Arc<str>,
    pub offer_name: Arc<str>,
    pub score: f64,
    pub rank: u32,
    #[serde(serialize_with = "as_number")]
    pub priority: f64,
    pub personalization: serde_json::Map<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<DecisionExplanation>,
    /// Under Thompson exploration: the probability that the policy shows this offer to
    /// this customer (logged with the decision for off-policy estimates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub show_probability: Option<f64>,
    #[serde(skip)]
    pub category: Arc<str>,
}

/// One placement's share of a decision.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementDecisions {
    pub key: Arc<str>,
    pub name: Arc<str>,
    pub decisions: Vec<OfferDecision>,
}

/// A channel whose placements were not all filled, and what coupling did about it.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelCoupling {
    pub channel: Arc<str>,
    /// Atomic coupling emptied the other placements too.
    pub cascaded: bool,
    /// The first placement left without an offer.
    pub empty_placement: Arc<str>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "DecisionMeta")]
pub struct Meta {
    pub total_candidates: usize,
    pub after_qualification: usize,
    pub after_suppression: usize,
    pub after_contact_policy: usize,
    pub degraded_scoring: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub channel_coupling: Vec<ChannelCoupling>,
    /// Inputs a node needed and did not find (no customer row, unknown channel …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionExplanation {
    pub ranking_scores: RankingScores,
}

/// Every factor behind one score (`?explain=true`).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RankingScores {
    pub method: &'static str,
    pub propensity: f64,
    pub relevance: f64,
    pub impact: f64,
    pub emphasis: f64,
    pub weights: crate::model::flow::Weights,
    /// Which plan supplied `weights`: `node` (the flow's Score node), `override:<channel>`
    /// (a node override), or the rule file and line of a `score` block.
    pub weights_from: Arc<str>,
    pub fit_multiplier: f64,
    pub tau: Option<f64>,
    /// τ's standard error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tau_se: Option<f64>,
    /// The customer's uplift segment for this offer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<crate::learn::uplift::Segment>,
    pub uplift_factor: f64,
    pub final_score: f64,
}

/// Why the other offers are not in the response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlowExplanation {
    pub removed: Vec<Removal>,
    /// Soft (match-stage) rules that lowered an offer's fit multiplier.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub penalties: Vec<Removal>,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Removal {
    pub offer_id: Arc<str>,
    pub offer_name: Arc<str>,
    /// The node that removed it (`qual`, `filter-1`, `rank` …).
    pub node_id: Arc<str>,
    pub node_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<RuleFailure>,
    /// The contact policy that removed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRef>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRef {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub rule_type: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleFailure {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub stage: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<serde_json::Value>,
    /// A rule-language rule: its condition as written, and `file:line:column`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}
