//! Decision flows: `draftConfig` version 2 (`flowConfig` + phased `nodes`), parsed into
//! typed node configs. Every error names its path from `draftConfig`.

use serde::{Deserialize, Serialize};

use super::offer::OfferStatus;
use super::{in_range, non_blank, parse_value, FieldError, Meta, ValidationError};
use crate::rules::json::Operator;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlowSpec {
    #[schemars(length(min = 1, max = 255), regex(pattern = r"\S"))]
    pub key: String,
    #[schemars(length(min = 1, max = 255), regex(pattern = r"\S"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub draft_config: DraftConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DraftConfig {
    /// Always 2.
    #[schemars(range(min = 2, max = 2))]
    pub version: u32,
    #[serde(default)]
    pub flow_config: FlowConfig,
    #[serde(default)]
    pub nodes: Vec<NodeSpec>,
}

impl Default for DraftConfig {
    fn default() -> Self {
        DraftConfig { version: 2, flow_config: FlowConfig::default(), nodes: Vec::new() }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlowConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentConfig>,
    /// The outcomes that count as a conversion for uplift models and the experiment
    /// report (default `["convert"]`). Other positive outcomes (a click) still feed
    /// propensity: a held-out customer cannot click an offer it never saw, so counting
    /// clicks would inflate the measured effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion_outcomes: Option<Vec<String>>,
    /// How this flow couples the placements of a channel, over each channel's own
    /// `couplingMode`: `atomic` ships none of them when any one is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupling_override: Option<super::channel::CouplingMode>,
}

/// The conversion outcomes when a flow names none.
pub const DEFAULT_CONVERSION_OUTCOMES: [&str; 1] = ["convert"];

impl FlowConfig {
    pub fn conversion_outcomes(&self) -> Vec<String> {
        match &self.conversion_outcomes {
            Some(list) => list.clone(),
            None => DEFAULT_CONVERSION_OUTCOMES.iter().map(|s| s.to_string()).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExperimentConfig {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub holdout_percent: f64,
    #[serde(default)]
    pub control_group_action: ControlGroupAction,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ControlGroupAction {
    #[default]
    NoOffers,
}

/// A node as the client sent it; `config` is parsed by `type` in [`DraftConfig::nodes`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    /// By `type`: see [`NodeConfig`].
    #[serde(default)]
    #[schemars(with = "super::RequestOnly<NodeConfig>")]
    pub config: serde_json::Value,
}

/// What `config` holds for each node `type` (parsed by `type` in [`DraftConfig::nodes`]);
/// the API description's union of the node configs.
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
pub enum NodeConfig {
    Inventory(InventoryConfig),
    Enrich(EnrichConfig),
    Filter(FilterConfig),
    Qualify(QualifyConfig),
    ContactPolicy(ContactPolicyConfig),
    Score(ScoreConfig),
    Rank(RankConfig),
    Response(ResponseConfig),
}

/// A validated node, in execution order.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowNode {
    pub id: String,
    /// Index in `draftConfig.nodes`, for error paths.
    pub index: usize,
    pub phase: u8,
    pub kind: NodeKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Inventory(InventoryConfig),
    Enrich(EnrichConfig),
    Filter(FilterConfig),
    Qualify(QualifyConfig),
    ContactPolicy(ContactPolicyConfig),
    Score(ScoreConfig),
    Rank(RankConfig),
    Response(ResponseConfig),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InventoryScope {
    #[default]
    All,
    Category,
}

fn active_only() -> Vec<OfferStatus> {
    vec![OfferStatus::Active]
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InventoryConfig {
    #[serde(default)]
    pub scope: InventoryScope,
    #[serde(default = "active_only")]
    pub include_statuses: Vec<OfferStatus>,
    /// A whitelist; when set it bypasses the category scope.
    #[serde(default)]
    pub offer_ids: Vec<String>,
    #[serde(default)]
    pub category_ids: Vec<String>,
}

fn customer_id() -> String {
    "customer_id".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrichSource {
    pub schema_id: String,
    #[serde(default = "customer_id")]
    pub lookup_key: String,
    /// Fields to load; empty loads every field.
    #[serde(default)]
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrichConfig {
    pub sources: Vec<EnrichSource>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Combinator {
    #[default]
    #[serde(rename = "AND", alias = "and")]
    And,
    #[serde(rename = "OR", alias = "or")]
    Or,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterCondition {
    pub field: String,
    pub operator: Operator,
    #[serde(default)]
    pub value: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterConfig {
    pub conditions: Vec<FilterCondition>,
    #[serde(default)]
    pub combinator: Combinator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum QualifyMode {
    #[default]
    All,
    Skip,
    #[serde(alias = "select", alias = "specific")]
    Selected,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QualifyConfig {
    #[serde(default)]
    pub mode: QualifyMode,
    #[serde(default)]
    pub rule_ids: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    #[default]
    All,
    Skip,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContactPolicyConfig {
    #[serde(default)]
    pub mode: PolicyMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScoreMethod {
    #[default]
    PriorityWeighted,
    Propensity,
    Formula,
    /// `value × τ`: the conversions (valued) the offer causes, not the ones it predicts.
    IncrementalValue,
}

/// What an uplift segment does to an offer where the uplift term is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SegmentAction {
    /// Taken out of the decision (explain says which segment and τ).
    Remove,
    /// Kept, with U at its floor: below every offer that is not sunk.
    Sink,
    /// Scored by its τ like any other.
    Keep,
}

/// Per segment, what it does (Score node `upliftSegments`). Defaults: sleeping dogs and
/// lost causes are removed, sure things sink, persuadable and uncertain are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpliftSegments {
    #[serde(default = "remove")]
    pub sleeping_dog: SegmentAction,
    #[serde(default = "remove")]
    pub lost_cause: SegmentAction,
    #[serde(default = "sink")]
    pub sure_thing: SegmentAction,
    #[serde(default = "keep")]
    pub persuadable: SegmentAction,
    #[serde(default = "keep")]
    pub uncertain: SegmentAction,
}

fn remove() -> SegmentAction {
    SegmentAction::Remove
}
fn sink() -> SegmentAction {
    SegmentAction::Sink
}
fn keep() -> SegmentAction {
    SegmentAction::Keep
}

impl Default for UpliftSegments {
    fn default() -> Self {
        UpliftSegments {
            sleeping_dog: remove(),
            lost_cause: remove(),
            sure_thing: sink(),
            persuadable: keep(),
            uncertain: keep(),
        }
    }
}

impl UpliftSegments {
    pub fn actions(&self) -> impl Iterator<Item = (crate::learn::uplift::Segment, SegmentAction)> {
        use crate::learn::uplift::Segment;
        [
            (Segment::SleepingDog, self.sleeping_dog),
            (Segment::LostCause, self.lost_cause),
            (Segment::SureThing, self.sure_thing),
            (Segment::Persuadable, self.persuadable),
            (Segment::Uncertain, self.uncertain),
        ]
        .into_iter()
    }
}

/// PRIE-U weights. Absent keys are 0 when a formula is given.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Weights {
    #[serde(default)]
    #[schemars(range(min = 0, max = 1))]
    pub propensity_weight: f64,
    #[serde(default)]
    #[schemars(range(min = 0, max = 1))]
    pub relevance_weight: f64,
    #[serde(default)]
    #[schemars(range(min = 0, max = 1))]
    pub impact_weight: f64,
    #[serde(default)]
    #[schemars(range(min = 0, max = 1))]
    pub emphasis_weight: f64,
    #[serde(default)]
    #[schemars(range(min = 0, max = 2))]
    pub uplift_weight: f64,
}

impl Weights {
    /// The platform's defaults when a formula score node gives no weights.
    pub const DEFAULT: Weights = Weights {
        propensity_weight: 0.4,
        relevance_weight: 0.2,
        impact_weight: 0.3,
        emphasis_weight: 0.1,
        uplift_weight: 0.0,
    };

    pub fn validate(&self, path: &str, errors: &mut Vec<FieldError>) {
        let core = [
            ("propensityWeight", self.propensity_weight),
            ("relevanceWeight", self.relevance_weight),
            ("impactWeight", self.impact_weight),
            ("emphasisWeight", self.emphasis_weight),
        ];
        for (name, w) in core {
            in_range(errors, &format!("{path}.{name}"), w, 0.0, 1.0);
        }
        in_range(errors, &format!("{path}.upliftWeight"), self.uplift_weight, 0.0, 2.0);
        let sum: f64 = core.iter().map(|(_, w)| w).sum();
        if (sum - 1.0).abs() > 1e-6 {
            errors.push(FieldError::new(
                path,
                format!(
                    "propensityWeight+relevanceWeight+impactWeight+emphasisWeight must be 1.0, got {}",
                    round6(sum)
                ),
            ));
        }
    }
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// What a Score-node override matches. `channel` names one channel (by name or id);
/// `channelType` matches every channel of a type (`email`, `in_app` …). They are kept
/// apart because channels created without a `channelType` are all `email`: an override
/// for the channel named `email` must not also change `in_app` and `branch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OverrideScope {
    Channel,
    ChannelType,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScoreOverride {
    pub scope: OverrideScope,
    pub value: String,
    #[serde(default)]
    pub method: Option<ScoreMethod>,
    #[serde(default)]
    pub formula: Option<Weights>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScoreConfig {
    #[serde(default)]
    pub method: ScoreMethod,
    #[serde(default)]
    pub formula: Option<Weights>,
    #[serde(default)]
    pub overrides: Vec<ScoreOverride>,
    #[serde(default)]
    pub model_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplift_segments: Option<UpliftSegments>,
    /// How a customer's segment is decided where the uplift term is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplift_exploration: Option<UpliftExploration>,
    /// `thompson`: the propensity factor is a draw from each offer's Beta posterior
    /// instead of its mean, and each shown offer's probability of being shown under
    /// that policy is logged with the decision (for off-policy estimates). Default `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exploration: Option<Exploration>,
}

/// How the score explores offers whose response rate is not well known yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Exploration {
    #[default]
    None,
    Thompson,
}

/// `thompson`: each decision classifies the customer by an effect drawn from the
/// estimate's tempered, cautious posterior (normal, mean τ less half its standard error,
/// sd half its standard error), so an offer is shown where its effect is probably above
/// zero, and one that is probably harmful is still shown now and then: a model fitted on
/// little data keeps getting the exposures that correct it, and a confident sleeping dog
/// is almost never shown. `none`: the estimate itself decides; an offer whose estimate
/// turns negative is never shown again and its model stops learning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpliftExploration {
    #[default]
    Thompson,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub enum RankMethod {
    #[default]
    #[serde(rename = "topN", alias = "top_n")]
    TopN,
}

fn five() -> u32 {
    5
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RankConfig {
    #[serde(default)]
    pub method: RankMethod,
    #[serde(default = "five")]
    pub max_candidates: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResponseFormat {
    #[default]
    Standard,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResponseConfig {
    #[serde(default)]
    pub response_format: ResponseFormat,
}

/// Conditions of one Filter node; they compile into one chain, so its length is bounded.
pub const MAX_FILTER_CONDITIONS: usize = 256;

/// Node types of the platform that arbiter does not run yet: refused by name.
const NOT_YET: [&str; 8] = [
    "match_creatives",
    "conditional",
    "call_flow",
    "optimize",
    "group",
    "compute",
    "set_properties",
    "extension_point",
];
const SUPPORTED: [&str; 8] =
    ["inventory", "enrich", "filter", "qualify", "contact_policy", "score", "rank", "response"];

impl FlowSpec {
    pub fn validate(&self) -> Result<Vec<FlowNode>, ValidationError> {
        let mut errors = Vec::new();
        non_blank(&mut errors, "key", &self.key);
        non_blank(&mut errors, "name", &self.name);
        match self.draft_config.nodes() {
            Ok(nodes) => ValidationError::check(errors).map(|()| nodes),
            Err(ValidationError(more)) => {
                errors.extend(more);
                Err(ValidationError(errors))
            }
        }
    }
}

impl DraftConfig {
    /// Parses and validates every node; returns them in execution order
    /// (phase, then position, then array order).
    pub fn nodes(&self) -> Result<Vec<FlowNode>, ValidationError> {
        let mut errors = Vec::new();
        if self.version != 2 {
            errors.push(FieldError::new("draftConfig.version", format!("must be 2, got {}", self.version)));
        }
        self.validate_experiment(&mut errors);
        self.validate_conversions(&mut errors);
        let mut nodes = Vec::new();
        for (i, spec) in self.nodes.iter().enumerate() {
            match parse_node(i, spec) {
                Ok(node) => nodes.push((spec.position.unwrap_or(i as i64), node)),
                Err(ValidationError(e)) => errors.extend(e),
            }
            if self.nodes[..i].iter().any(|n| n.id == spec.id) {
                errors.push(FieldError::new(
                    format!("draftConfig.nodes[{i}].id"),
                    format!("duplicate node id `{}`", spec.id),
                ));
            }
        }
        nodes.sort_by_key(|(pos, n)| (n.phase, *pos, n.index));
        let nodes: Vec<FlowNode> = nodes.into_iter().map(|(_, n)| n).collect();
        check_shape(&nodes, &mut errors);
        ValidationError::check(errors).map(|()| nodes)
    }

    fn validate_conversions(&self, errors: &mut Vec<FieldError>) {
        let Some(list) = &self.flow_config.conversion_outcomes else { return };
        let path = "draftConfig.flowConfig.conversionOutcomes";
        if list.is_empty() {
            errors.push(FieldError::new(path, "must name at least one outcome (default [\"convert\"])"));
        }
        for (i, o) in list.iter().enumerate() {
            let positive = super::outcome::ordinal(o).is_some()
                && super::outcome::classification(o) == super::outcome::Classification::Positive;
            if !positive {
                let known: Vec<&str> = super::outcome::outcome_types()
                    .iter()
                    .filter(|t| t.classification == super::outcome::Classification::Positive)
                    .map(|t| t.key)
                    .collect();
                errors.push(FieldError::new(
                    format!("{path}[{i}]"),
                    format!("`{o}` is not a positive outcome type (one of {})", known.join(", ")),
                ));
            }
        }
    }

    fn validate_experiment(&self, errors: &mut Vec<FieldError>) {
        if let Some(exp) = &self.flow_config.experiment {
            in_range(errors, "draftConfig.flowConfig.experiment.holdoutPercent", exp.holdout_percent, 0.0, 100.0);
        }
    }
}

fn phase_of(kind: &str) -> u8 {
    match kind {
        "score" | "rank" => 2,
        "response" => 3,
        _ => 1,
    }
}

fn parse_node(i: usize, spec: &NodeSpec) -> Result<FlowNode, ValidationError> {
    let base = format!("draftConfig.nodes[{i}]");
    let kind = spec.kind.as_str();
    if NOT_YET.contains(&kind) {
        return Err(ValidationError::one(format!("{base}.type"), format!("node type `{kind}` is not supported yet")));
    }
    if !SUPPORTED.contains(&kind) {
        return Err(ValidationError::one(
            format!("{base}.type"),
            format!("unknown node type `{kind}`, expected one of {}", SUPPORTED.join(", ")),
        ));
    }
    let phase = phase_of(kind);
    if let Some(p) = spec.phase.filter(|&p| p != phase) {
        return Err(ValidationError::one(format!("{base}.phase"), format!("`{kind}` runs in phase {phase}, got {p}")));
    }
    let path = format!("{base}.config");
    let empty = serde_json::Value::Object(Default::default());
    let config = if spec.config.is_null() { &empty } else { &spec.config };
    let kind = match kind {
        "inventory" => NodeKind::Inventory(parse_value(&path, config)?),
        "enrich" => NodeKind::Enrich(parse_value(&path, config)?),
        "filter" => NodeKind::Filter(parse_value(&path, config)?),
        "qualify" => NodeKind::Qualify(parse_value(&path, config)?),
        "contact_policy" => NodeKind::ContactPolicy(parse_value(&path, config)?),
        "score" => NodeKind::Score(parse_value(&path, config)?),
        "rank" => NodeKind::Rank(parse_value(&path, config)?),
        _ => NodeKind::Response(parse_value(&path, config)?),
    };
    let mut errors = Vec::new();
    validate_config(&path, &kind, &mut errors);
    ValidationError::check(errors)?;
    Ok(FlowNode { id: spec.id.clone(), index: i, phase, kind })
}

fn validate_config(path: &str, kind: &NodeKind, errors: &mut Vec<FieldError>) {
    match kind {
        NodeKind::Inventory(c)
            if c.scope == InventoryScope::Category && c.category_ids.is_empty() && c.offer_ids.is_empty() =>
        {
            errors.push(FieldError::new(format!("{path}.categoryIds"), "is required when scope is \"category\""));
        }
        NodeKind::Enrich(c) if c.sources.is_empty() => {
            errors.push(FieldError::new(format!("{path}.sources"), "needs at least one source"));
        }
        NodeKind::Filter(c) if c.conditions.is_empty() || c.conditions.len() > MAX_FILTER_CONDITIONS => {
            let msg = format!("needs 1 to {MAX_FILTER_CONDITIONS} conditions, got {}", c.conditions.len());
            errors.push(FieldError::new(format!("{path}.conditions"), msg));
        }
        NodeKind::Qualify(c) if c.mode == QualifyMode::Selected && c.rule_ids.is_empty() => {
            errors.push(FieldError::new(format!("{path}.ruleIds"), "is required when mode is \"selected\""));
        }
        NodeKind::Score(c) => validate_score(path, c, errors),
        NodeKind::Rank(c) if !(1..=1000).contains(&c.max_candidates) => {
            errors.push(FieldError::new(
                format!("{path}.maxCandidates"),
                format!("must be between 1 and 1000, got {}", c.max_candidates),
            ));
        }
        _ => {}
    }
}

fn validate_score(path: &str, c: &ScoreConfig, errors: &mut Vec<FieldError>) {
    if let Some(w) = &c.formula {
        w.validate(&format!("{path}.formula"), errors);
    }
    for (i, o) in c.overrides.iter().enumerate() {
        let opath = format!("{path}.overrides[{i}]");
        if o.method.is_none() && o.formula.is_none() {
            errors.push(FieldError::new(&opath, "needs `formula` or `method`"));
        }
        if let Some(w) = &o.formula {
            w.validate(&format!("{opath}.formula"), errors);
        }
    }
}

/// Whole-flow rules: one inventory node, first; at most one of score, rank, response.
fn check_shape(nodes: &[FlowNode], errors: &mut Vec<FieldError>) {
    let count = |f: fn(&NodeKind) -> bool| nodes.iter().filter(|n| f(&n.kind)).count();
    let inventories = count(|k| matches!(k, NodeKind::Inventory(_)));
    if inventories != 1 {
        errors.push(FieldError::new(
            "draftConfig.nodes",
            format!("needs exactly one inventory node, found {inventories}"),
        ));
    } else if !matches!(nodes.first().map(|n| &n.kind), Some(NodeKind::Inventory(_))) {
        errors
            .push(FieldError::new("draftConfig.nodes", "the inventory node must run first (phase 1, lowest position)"));
    }
    for (name, f) in [
        ("score", (|k| matches!(k, NodeKind::Score(_))) as fn(&NodeKind) -> bool),
        ("rank", |k| matches!(k, NodeKind::Rank(_))),
        ("response", |k| matches!(k, NodeKind::Response(_))),
    ] {
        if count(f) > 1 {
            errors.push(FieldError::new("draftConfig.nodes", format!("at most one {name} node is allowed")));
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublishedVersion {
    pub version: u32,
    pub published_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    pub config_snapshot: DraftConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FlowStatus {
    Draft,
    Active,
    Paused,
    Archived,
}

/// A decision flow as stored and returned: its spec, status, published versions and the stored fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionFlow {
    #[serde(flatten)]
    pub meta: Meta,
    #[serde(flatten)]
    pub spec: FlowSpec,
    pub status: FlowStatus,
    /// Every published version, oldest first. Shared (`Arc`), so copying the catalog to
    /// stage a change copies pointers, not every version's config.
    #[serde(default)]
    pub published_versions: Vec<std::sync::Arc<PublishedVersion>>,
}

/// A flow as the API returns it: the draft, the live version whole, and how many
/// versions there are (`GET /decision-flows/versions` pages through them). Its size does
/// not grow with the flow's history, so a flow read back with GET can be PUT.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlowView {
    #[serde(flatten)]
    pub meta: Meta,
    #[serde(flatten)]
    pub spec: FlowSpec,
    pub status: FlowStatus,
    /// The latest published version (what decisions run), if any.
    pub live_version: Option<std::sync::Arc<PublishedVersion>>,
    pub version_count: usize,
}

impl DecisionFlow {
    pub fn view(&self) -> FlowView {
        FlowView {
            meta: self.meta.clone(),
            spec: self.spec.clone(),
            status: self.status,
            live_version: self.published_versions.last().cloned(),
            version_count: self.published_versions.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_json;
    use serde_json::json;

    fn flow(nodes: serde_json::Value) -> FlowSpec {
        parse_json(
            json!({"key": "k", "name": "n", "draftConfig": {"version": 2, "nodes": nodes}}).to_string().as_bytes(),
        )
        .unwrap()
    }

    fn inv() -> serde_json::Value {
        json!({"id": "inv", "type": "inventory", "phase": 1, "position": 0, "config": {"scope": "all"}})
    }

    #[test]
    fn weights_must_sum_to_one() {
        let f = flow(json!([inv(), {"id":"a","type":"enrich","config":{"sources":[{"schemaId":"s"}]}},
            {"id":"b","type":"qualify"}, {"id":"c","type":"contact_policy"},
            {"id":"s","type":"score","phase":2,"position":4,"config":{"method":"formula","formula":{
                "propensityWeight":0.4,"relevanceWeight":0.1,"impactWeight":0.35,"emphasisWeight":0.1}}}]));
        let err = f.validate().unwrap_err().to_string();
        assert_eq!(
            err,
            "draftConfig.nodes[4].config.formula: propensityWeight+relevanceWeight+impactWeight+emphasisWeight must be 1.0, got 0.95"
        );
    }

    #[test]
    fn unknown_node_type_is_named() {
        let err = flow(json!([inv(), {"id":"x","type":"magic"}])).validate().unwrap_err().to_string();
        assert!(err.starts_with("draftConfig.nodes[1].type: unknown node type `magic`"), "{err}");
    }

    #[test]
    fn unsupported_platform_node_is_named() {
        let err = flow(json!([inv(), {"id":"x","type":"group"}])).validate().unwrap_err().to_string();
        assert_eq!(err, "draftConfig.nodes[1].type: node type `group` is not supported yet");
    }

    #[test]
    fn bad_enum_inside_config_has_full_path() {
        let err = flow(json!([inv(), {"id":"s","type":"score","config":{"method":"magic"}}]))
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("draftConfig.nodes[1].config.method: unknown variant `magic`"), "{err}");
    }

    #[test]
    fn inventory_must_exist_and_come_first() {
        let err = flow(json!([{"id":"s","type":"score"}])).validate().unwrap_err().to_string();
        assert_eq!(err, "draftConfig.nodes: needs exactly one inventory node, found 0");
        let err = flow(json!([{"id":"q","type":"qualify","position":0}, {"id":"i","type":"inventory","position":1}]))
            .validate()
            .unwrap_err()
            .to_string();
        assert_eq!(err, "draftConfig.nodes: the inventory node must run first (phase 1, lowest position)");
    }

    #[test]
    fn filter_conditions_are_bounded() {
        let conditions: Vec<_> =
            (0..300).map(|i| json!({"field": "offer.priority", "operator": "gte", "value": i})).collect();
        let err = flow(json!([inv(), {"id":"f","type":"filter","config":{"conditions": conditions}}]))
            .validate()
            .unwrap_err();
        assert_eq!(err.to_string(), "draftConfig.nodes[1].config.conditions: needs 1 to 256 conditions, got 300");
    }

    #[test]
    fn wrong_phase_is_named() {
        let err = flow(json!([inv(), {"id":"r","type":"rank","phase":1}])).validate().unwrap_err().to_string();
        assert_eq!(err, "draftConfig.nodes[1].phase: `rank` runs in phase 2, got 1");
    }

    #[test]
    fn holdout_percent_range() {
        let f: FlowSpec = parse_json(
            json!({"key":"k","name":"n","draftConfig":{"version":2,"flowConfig":{"experiment":{"enabled":true,"holdoutPercent":120}},"nodes":[inv()]}})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        let err = f.validate().unwrap_err().to_string();
        assert_eq!(err, "draftConfig.flowConfig.experiment.holdoutPercent: must be between 0 and 100, got 120");
    }

    #[test]
    fn conversion_outcomes_must_be_positive_outcome_types() {
        let with = |outcomes: serde_json::Value| -> FlowSpec {
            let body = json!({"key":"k","name":"n","draftConfig":{"version":2,
                "flowConfig":{"conversionOutcomes": outcomes},"nodes":[inv()]}});
            parse_json(body.to_string().as_bytes()).unwrap()
        };
        assert!(with(json!(["convert", "accept"])).validate().is_ok());
        assert_eq!(with(json!(["convert"])).draft_config.flow_config.conversion_outcomes(), ["convert"]);
        let err = with(json!(["convert", "dismiss", "teleport"])).validate().unwrap_err().to_string();
        assert!(err.contains("conversionOutcomes[1]: `dismiss` is not a positive outcome type (one of click, accept, convert, requested_info)"), "{err}");
        assert!(err.contains("conversionOutcomes[2]: `teleport`"), "{err}");
        let err = with(json!([])).validate().unwrap_err().to_string();
        assert!(err.contains("conversionOutcomes: must name at least one outcome"), "{err}");
        let default: FlowSpec = parse_json(
            json!({"key":"k","name":"n","draftConfig":{"version":2,"nodes":[inv()]}}).to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(default.draft_config.flow_config.conversion_outcomes(), ["convert"]);
    }
}
