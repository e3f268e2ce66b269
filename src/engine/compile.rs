//! Compiles a flow's draft plus the tenant's entities ([`TenantInputs`], plain inputs
//! the catalog assembles) into an immutable `CompiledFlow`.
//! Everything that does not depend on the request is decided here: which offers the
//! inventory yields, which rules apply to which offer and in what order, which customer
//! column lands in which slot, and the static part of every offer's score.

use std::collections::HashMap;
use std::sync::Arc;

use crate::dsl::defs::{RuleDef, RuleOrigin, ScoreDef, ScoreDefBody, FACTORS};
use crate::learn::propensity::CounterBank;
use crate::model::channel::{CouplingMode, PlacementStatus};
use crate::model::flow::{
    Combinator, EnrichConfig, FilterConfig, InventoryConfig, InventoryScope, OverrideScope, PolicyMode, QualifyConfig,
    QualifyMode, ScoreConfig, ScoreMethod, Weights,
};
use crate::model::rule::Scope;
use crate::model::schema::{Schema, Table};
use crate::model::{condition_error, Channel};
use crate::model::{DraftConfig, FieldError, FlowNode, NodeKind, Offer, Stage, ValidationError};
use crate::rules::check::{did_you_mean, Checker, Literals};
use crate::rules::ir::{BinOp, Expr};
use crate::rules::json;
use crate::rules::Namespace;
use crate::rules::{BoolFn, Compiler, Layout, NumFn, OfferFacts, Path, Type};

use super::contact::{CompiledPolicy, Target};
use super::response::MAX_LIMIT;
use super::score::ScorePlan;
use crate::learn::propensity::Counts;
use crate::model::policy::{ContactPolicy, PolicyRule, PolicyScope, PolicyStatus};

pub type CompileError = ValidationError;

/// What a flow compiles against: the tenant's entities and rule definitions, as plain
/// inputs. The catalog assembles them once for all the flows it compiles; the engine
/// knows nothing of how a tenant keeps its state, and tests can build them directly.
pub struct TenantInputs<'a> {
    /// The request slots and every customer field of every schema (`customer.<field>`).
    pub layout: Layout,
    /// The schemas an enrich node can name, with their rows.
    pub schemas: Vec<(&'a Schema, Arc<Table>)>,
    pub offers: &'a [Offer],
    pub channels: &'a [Channel],
    pub policies: &'a [ContactPolicy],
    /// Every active rule, JSON ones then rule-file ones.
    pub rules: Vec<RuleDef>,
    /// Stored rules that no longer lower into the IR (an error of every compile).
    pub rule_errors: Vec<FieldError>,
    /// Rule-file `score` blocks (each names its flow).
    pub scores: Vec<&'a ScoreDef>,
    /// Outcome counters the compiled offers read their propensity from.
    pub counters: &'a CounterBank,
}

impl TenantInputs<'_> {
    fn schema(&self, id: &str) -> Option<(&Schema, &Arc<Table>)> {
        self.schemas.iter().find(|(s, _)| s.meta.id == id).map(|(s, t)| (*s, t))
    }
}

/// A published flow, ready to decide. Immutable and `Send + Sync`: requests share it
/// through an `Arc` and never lock.
pub struct CompiledFlow {
    pub flow_id: Arc<str>,
    pub key: Arc<str>,
    pub version: u32,
    pub(super) layout: Layout,
    pub(super) consts: Box<[Box<str>]>,
    pub(super) offers: Box<[CompiledOffer]>,
    pub(super) steps: Box<[Step]>,
    pub(super) rules: Box<[CompiledRule]>,
    /// How many distinct offer-independent rule predicates there are (`CompiledRule::shared`).
    pub(super) shared_rules: usize,
    /// `plans[0]` is the score node's own; the rest come from channel overrides.
    pub(super) plans: Box<[ScorePlan]>,
    /// Where each plan's weights come from, for explain: `node`, `override:<value>`, or
    /// the rule file and line of a `score` block (`cross_sell.rules:27`).
    pub(super) plan_sources: Box<[Arc<str>]>,
    pub(super) overrides: Box<[PlanOverride]>,
    pub(super) max_candidates: usize,
    pub(super) holdout_percent: Option<f64>,
    pub(super) channels: Box<[ChannelInfo]>,
    /// Request attributes that rules read: name and slot.
    pub(super) attribute_slots: Box<[(Box<str>, u32)]>,
    pub(super) score_node: Arc<str>,
    pub(super) rank_node: Arc<str>,
    /// Score formulas from rule-language `score` blocks (`ScorePlan::formula` indexes it).
    pub(super) formulas: Box<[NumFn]>,
    /// Slots of the score factors, in `FACTORS` order, when a formula reads them.
    pub(super) factor_slots: Option<[u32; 6]>,
    /// The tenant-wide outcome counts (the last propensity prior).
    pub(super) global_counts: Arc<Counts>,
    /// Active contact policies, highest priority first.
    pub(super) policies: Box<[CompiledPolicy]>,
    /// Some policy reads the customer's outcomes (`outcome_based`) or the request's
    /// `segments` (`segment_exclusion`): a decision fetches them only then.
    pub(super) reads_outcomes: bool,
    pub(super) reads_segments: bool,
    /// Some policy allows one offer per group or category in a decision: ranking takes
    /// the offers in order and checks (`Frame::within_budgets`).
    pub(super) one_per_decision: bool,
    /// The conditions of `metric_condition` policies, by policy index.
    pub(super) policy_conditions: Box<[(u32, BoolFn)]>,
    /// Uplift features: enriched numeric and boolean fields and the request attributes
    /// the rules read (`attributes.*`), by name, with their slots.
    pub(super) features: Box<[u32]>,
    pub feature_names: Arc<[Arc<str>]>,
    /// Categorical uplift features: enriched text fields (not the lookup key) and request
    /// attributes, by name, with their slots. Models one-hot encode their frequent values.
    pub(super) categories: Box<[u32]>,
    pub category_names: Arc<[Arc<str>]>,
    /// What each uplift segment does where the uplift term is on (Score node `upliftSegments`).
    pub(super) uplift_actions: super::score::SegmentActions,
    pub(super) uplift_exploration: crate::model::flow::UpliftExploration,
    /// Thompson sampling of the propensity factor (Score node `exploration`).
    pub(super) thompson: bool,
    /// The outcomes that count as a conversion (`flowConfig.conversionOutcomes`).
    pub conversion_outcomes: Arc<[String]>,
    /// The digest of what the flow was compiled from, as the catalog retains it
    /// (`catalog::retained`); zero when compiled from plain inputs.
    pub inputs: [u8; 16],
}

pub(super) struct CompiledOffer {
    pub facts: OfferFacts,
    /// `ScorePlan::static_factor` for each plan.
    pub static_factors: Box<[f64]>,
    /// This offer's and its category's outcome counts (the propensity inputs).
    pub counts: Arc<Counts>,
    /// `None` for an offer without a category: it falls back to the global prior.
    pub category_counts: Option<Arc<Counts>>,
    /// Bit i: `CompiledFlow::policies[i]` applies to this offer whatever the channel
    /// (global, this offer, its category). Channel policies are added per request.
    pub policy_mask: u64,
    /// FNV-1a of the offer id: seeds the offer's exploration draws.
    pub id_hash: u64,
}

/// A channel-specific score plan: which channels it applies to and its index in `plans`.
pub(super) struct PlanOverride {
    pub scope: OverrideScope,
    pub value: Box<str>,
    pub plan: usize,
}

pub(super) struct ChannelInfo {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub kind: Arc<str>,
    /// Its active placements, in the channel's order: a request on the channel that
    /// names none fills them all, in this order.
    pub placements: Box<[PlacementInfo]>,
    /// Whether one empty placement empties the others: the flow's `couplingOverride`,
    /// else the channel's `couplingMode`.
    pub atomic: bool,
}

pub(super) struct PlacementInfo {
    pub key: Arc<str>,
    pub name: Arc<str>,
    pub max_slots: u32,
}

pub(super) enum Step {
    Enrich(Box<[EnrichPlan]>),
    Filter {
        node: Arc<str>,
        pred: BoolFn,
    },
    /// Per offer (by index in `offers`), the rules to run in order.
    Qualify {
        node: Arc<str>,
        lists: Box<[Box<[u32]>]>,
    },
    /// The tenant's contact policies (`CompiledFlow::policies`) against the customer's
    /// recorded contacts.
    ContactPolicy {
        node: Arc<str>,
    },
}

pub(super) struct EnrichPlan {
    pub schema: Arc<str>,
    pub table: Arc<Table>,
    /// (column index in the row, slot index)
    pub copies: Box<[(usize, u32)]>,
}

pub(super) struct CompiledRule {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub stage: Stage,
    /// Score multiplier when a match-stage rule fails.
    pub multiplier: f64,
    /// A channel-scoped rule applies only on this channel (index into `channels`).
    pub channel: Option<usize>,
    pub pred: BoolFn,
    /// For a predicate that reads no offer field: its memo slot in a decision, shared by
    /// every rule with the same predicate.
    pub shared: Option<u32>,
    /// Where the rule was written, for explain output.
    pub origin: RuleOrigin,
}

/// Compiles version `version` of the flow `flow_key` (id `flow_id`) from `draft`.
pub fn compile(
    inputs: &TenantInputs,
    flow_id: &str,
    flow_key: &str,
    draft: &DraftConfig,
    version: u32,
) -> Result<CompiledFlow, CompileError> {
    let nodes = draft.nodes()?;
    let mut b = Builder {
        inputs,
        layout: inputs.layout.clone(),
        compiler: Compiler::new(),
        errors: Vec::new(),
        formulas: Vec::new(),
        factor_slots: None,
        features: Vec::new(),
        categories: Vec::new(),
        shared: HashMap::new(),
    };
    let channels = channel_infos(inputs.channels, draft.flow_config.coupling_override);
    let offers_in = inventory(&mut b, &nodes);
    b.errors.extend(inputs.rule_errors.iter().cloned());
    let rules = b.rules(&inputs.rules, &channels);
    let mut steps = Vec::new();
    for node in &nodes {
        let path = format!("draftConfig.nodes[{}].config", node.index);
        let id: Arc<str> = node.id.as_str().into();
        match &node.kind {
            NodeKind::Enrich(c) => steps.push(Step::Enrich(b.enrich(&path, c))),
            NodeKind::Filter(c) => steps.push(Step::Filter { node: id, pred: b.filter(&path, c) }),
            NodeKind::Qualify(c) if c.mode != QualifyMode::Skip => {
                let lists = b.qualify(&path, c, &offers_in, &rules);
                steps.push(Step::Qualify { node: id, lists });
            }
            NodeKind::ContactPolicy(c) if c.mode != PolicyMode::Skip => steps.push(Step::ContactPolicy { node: id }),
            _ => {}
        }
    }
    let score = nodes.iter().find_map(|n| match &n.kind {
        NodeKind::Score(c) => Some((n, c)),
        _ => None,
    });
    let mut plans = score_plans(score.map(|(_, c)| c));
    for def in inputs.scores.iter().filter(|d| d.flow_key == flow_key) {
        b.apply_score_def(def, &mut plans);
    }
    let max_candidates = nodes
        .iter()
        .find_map(|n| match &n.kind {
            NodeKind::Rank(c) => Some(c.max_candidates as usize),
            _ => None,
        })
        .unwrap_or(MAX_LIMIT as usize);
    let policies = policies(inputs.policies, &channels, &mut b.errors);
    let policy_conditions = policies
        .iter()
        .enumerate()
        .filter_map(|(i, p)| b.policy_condition(p).map(|f| (i as u32, f)))
        .collect::<Vec<_>>()
        .into_boxed_slice();
    ValidationError::check(std::mem::take(&mut b.errors))?;
    let offers = offers_in
        .iter()
        .map(|&(_, offer)| {
            let facts = facts(offer);
            let static_factors = plans.plans.iter().map(|p| p.static_factor(&facts)).collect();
            let counts = inputs.counters.offer(&facts.id);
            let category_counts = (!facts.category.is_empty()).then(|| inputs.counters.category(&facts.category));
            let id_hash = crate::ids::fnv1a_pair(&facts.id, "");
            CompiledOffer { facts, static_factors, counts, category_counts, policy_mask: 0, id_hash }
        })
        .collect();
    let attribute_slots = attribute_slots(&b.layout);
    let offers: Box<[CompiledOffer]> = offers;
    let offers = with_policy_masks(offers, &policies);
    // Request attributes the rules read are features too: as numbers (and booleans) here,
    // as categories (text values) below; each value is read as whichever it is.
    b.features.extend(attribute_slots.iter().map(|(name, slot)| (Arc::from(format!("attributes.{name}")), *slot)));
    b.features.sort();
    b.features.dedup();
    let (feature_names, features): (Vec<Arc<str>>, Vec<u32>) = b.features.into_iter().unzip();
    b.categories.extend(attribute_slots.iter().map(|(name, slot)| (Arc::from(format!("attributes.{name}")), *slot)));
    b.categories.sort();
    b.categories.dedup();
    let (category_names, categories): (Vec<Arc<str>>, Vec<u32>) = b.categories.into_iter().unzip();
    let experiment = draft.flow_config.experiment.as_ref();
    Ok(CompiledFlow {
        flow_id: flow_id.into(),
        key: flow_key.into(),
        version,
        consts: b.compiler.into_consts(),
        layout: b.layout,
        offers,
        steps: steps.into(),
        rules: rules.into_iter().map(|e| e.rule).collect(),
        shared_rules: b.shared.len(),
        plans: plans.plans.into(),
        plan_sources: plans.sources.into(),
        overrides: plans.overrides.into(),
        max_candidates,
        holdout_percent: experiment.filter(|e| e.enabled && e.holdout_percent > 0.0).map(|e| e.holdout_percent),
        channels: channels.into(),
        attribute_slots,
        score_node: score.map_or("score", |(n, _)| n.id.as_str()).into(),
        formulas: b.formulas.into(),
        factor_slots: b.factor_slots,
        global_counts: inputs.counters.global(),
        policy_conditions,
        one_per_decision: policies
            .iter()
            .any(|p| matches!(p.rule, PolicyRule::Exclusive { .. } | PolicyRule::CategoryShown { .. })),
        reads_outcomes: policies.iter().any(|p| matches!(p.rule, PolicyRule::Outcome { .. })),
        reads_segments: policies.iter().any(|p| matches!(p.rule, PolicyRule::Segments(_))),
        policies,
        features: features.into(),
        feature_names: feature_names.into(),
        categories: categories.into(),
        category_names: category_names.into(),
        uplift_actions: score
            .and_then(|(_, c)| c.uplift_segments.as_ref())
            .map(super::score::SegmentActions::from_config)
            .unwrap_or_default(),
        uplift_exploration: score.and_then(|(_, c)| c.uplift_exploration).unwrap_or_default(),
        thompson: score.and_then(|(_, c)| c.exploration) == Some(crate::model::flow::Exploration::Thompson),
        conversion_outcomes: draft.flow_config.conversion_outcomes().into(),
        inputs: [0; 16],
        rank_node: nodes.iter().find(|n| matches!(n.kind, NodeKind::Rank(_))).map_or("rank", |n| n.id.as_str()).into(),
    })
}

/// A compiled rule with the catalog scope it applies to.
struct RuleEntry {
    scope: Scope,
    scope_id: String,
    rule: CompiledRule,
}

struct Builder<'c> {
    inputs: &'c TenantInputs<'c>,
    layout: Layout,
    compiler: Compiler,
    errors: Vec<FieldError>,
    formulas: Vec<NumFn>,
    factor_slots: Option<[u32; 6]>,
    /// Enriched numeric and boolean fields (uplift features): name and slot.
    features: Vec<(Arc<str>, u32)>,
    /// Enriched text fields other than the lookup key (categorical features).
    categories: Vec<(Arc<str>, u32)>,
    /// Rule predicates that read no offer field, by shape: each gets one memo slot per
    /// decision, so a condition many offers share is evaluated once.
    shared: HashMap<String, u32>,
}

fn facts(offer: &Offer) -> OfferFacts {
    let s = &offer.spec;
    OfferFacts {
        id: offer.meta.id.as_str().into(),
        name: s.name.as_str().into(),
        category: s.category.as_deref().unwrap_or_default().into(),
        status: s.status.name().into(),
        priority: s.priority,
        business_value: s.business_value,
        revenue_value: s.revenue_value,
        margin: s.margin,
        weight: s.weight,
        mandatory: s.mandatory,
    }
}

/// The tenant's active contact policies, highest priority first (then oldest first). A
/// stored policy that no longer validates, or names a channel that is gone, is an error
/// of the compile: a live flow never silently stops applying a policy.
fn policies(all: &[ContactPolicy], channels: &[ChannelInfo], errors: &mut Vec<FieldError>) -> Box<[CompiledPolicy]> {
    let mut active: Vec<&ContactPolicy> = all.iter().filter(|p| p.spec.status == PolicyStatus::Active).collect();
    active
        .sort_by(|a, b| b.spec.priority.cmp(&a.spec.priority).then_with(|| a.meta.created_at.cmp(&b.meta.created_at)));
    // Decisions track policies as bits of a u64; creation refuses more (catalog).
    active.truncate(crate::model::policy::MAX_ACTIVE_POLICIES);
    active
        .into_iter()
        .filter_map(|p| {
            let path = format!("contact policy `{}` ({})", p.spec.name, p.meta.id);
            let valid = match p.spec.validated() {
                Ok(valid) => valid,
                Err(ValidationError(e)) => {
                    errors.extend(e.into_iter().map(|e| FieldError::new(format!("{path}.{}", e.path), e.message)));
                    return None;
                }
            };
            let mut targets = Vec::new();
            for s in p.spec.scope_refs() {
                let scope_id = s.scope_id.as_deref().unwrap_or_default();
                targets.push(match s.scope {
                    PolicyScope::Global => Target::Global,
                    PolicyScope::Offer => Target::Offer(scope_id.into()),
                    PolicyScope::Category => Target::Category(scope_id.into()),
                    PolicyScope::Channel => {
                        let Some(c) = channels.iter().find(|c| &*c.id == scope_id || &*c.name == scope_id) else {
                            errors.push(FieldError::new(format!("{path}.scopeId"), format!("no channel `{scope_id}`")));
                            return None;
                        };
                        Target::Channel(c.name.clone())
                    }
                });
            }
            let target = if targets.len() == 1 { targets.remove(0) } else { Target::Any(targets.into()) };
            Some(CompiledPolicy {
                id: p.meta.id.as_str().into(),
                name: p.spec.name.as_str().into(),
                rule_type: p.spec.rule_type,
                target,
                zone: super::contact::zone_of(&valid.rule),
                rule: valid.rule,
                bypassable: valid.bypassable,
            })
        })
        .collect()
}

/// Sets each offer's static policy bits (at most `MAX_ACTIVE_POLICIES`, checked when a
/// policy is created).
fn with_policy_masks(mut offers: Box<[CompiledOffer]>, policies: &[CompiledPolicy]) -> Box<[CompiledOffer]> {
    for o in offers.iter_mut() {
        o.policy_mask = policies
            .iter()
            .enumerate()
            .take(64)
            .filter(|(_, p)| p.applies(&o.facts, None))
            .fold(0, |mask, (i, _)| mask | 1 << i);
    }
    offers
}

fn channel_infos(channels: &[Channel], coupling_override: Option<CouplingMode>) -> Vec<ChannelInfo> {
    let placement = |p: &crate::model::channel::PlacementSpec| PlacementInfo {
        key: p.key().into(),
        name: p.name.as_str().into(),
        max_slots: p.max_slots,
    };
    let info = |c: &crate::model::Channel| ChannelInfo {
        id: c.meta.id.as_str().into(),
        name: c.spec.name.as_str().into(),
        kind: c.spec.channel_type.name().into(),
        placements: c.spec.placements.iter().filter(|p| p.status == PlacementStatus::Active).map(placement).collect(),
        atomic: coupling_override.unwrap_or(c.spec.coupling_mode) == CouplingMode::Atomic,
    };
    channels.iter().map(info).collect()
}

/// The inventory node: which offers are candidates, with their catalog ordinals.
fn inventory<'c>(b: &mut Builder<'c>, nodes: &[FlowNode]) -> Vec<(u32, &'c Offer)> {
    let Some((index, config)) = nodes.iter().find_map(|n| match &n.kind {
        NodeKind::Inventory(c) => Some((n.index, c)),
        _ => None,
    }) else {
        return Vec::new();
    };
    let path = format!("draftConfig.nodes[{index}].config.offerIds");
    for (j, id) in config.offer_ids.iter().enumerate() {
        if !b.inputs.offers.iter().any(|o| &o.meta.id == id) {
            b.errors.push(FieldError::new(format!("{path}[{j}]"), format!("no offer with id `{id}`")));
        }
    }
    let offers = b.inputs.offers.iter().enumerate();
    offers.filter(|(_, o)| in_inventory(config, o)).map(|(i, o)| (i as u32, o)).collect()
}

fn in_inventory(c: &InventoryConfig, o: &Offer) -> bool {
    if !c.include_statuses.contains(&o.spec.status) {
        return false;
    }
    if !c.offer_ids.is_empty() {
        return c.offer_ids.contains(&o.meta.id);
    }
    match c.scope {
        InventoryScope::All => true,
        InventoryScope::Category => o.spec.category.as_ref().is_some_and(|cat| c.category_ids.contains(cat)),
    }
}

/// Lowers `attributes.*` slots into a list the decision fills from the request.
fn attribute_slots(layout: &Layout) -> Box<[(Box<str>, u32)]> {
    (0..layout.len() as u32)
        .filter(|&s| layout.slot(s).path.ns == Namespace::Attributes)
        .map(|s| (layout.slot(s).path.name.as_str().into(), s))
        .collect()
}

/// The score plans of a flow while it compiles: `plans[0]` is the base, the others are
/// channel-specific, each with where its weights come from.
struct Plans {
    plans: Vec<ScorePlan>,
    sources: Vec<Arc<str>>,
    overrides: Vec<PlanOverride>,
}

impl Plans {
    fn push(&mut self, plan: ScorePlan, source: Arc<str>, scope: OverrideScope, value: &str) {
        self.plans.push(plan);
        self.sources.push(source);
        self.overrides.push(PlanOverride { scope, value: value.into(), plan: self.plans.len() - 1 });
    }
}

fn score_plans(config: Option<&ScoreConfig>) -> Plans {
    let node: Arc<str> = "node".into();
    let Some(c) = config else {
        let plan = ScorePlan { method: ScoreMethod::PriorityWeighted, weights: Weights::DEFAULT, formula: None };
        return Plans { plans: vec![plan], sources: vec![node], overrides: Vec::new() };
    };
    let base = ScorePlan { method: c.method, weights: c.formula.unwrap_or(Weights::DEFAULT), formula: None };
    let mut plans = Plans { plans: vec![base], sources: vec![node], overrides: Vec::new() };
    for o in &c.overrides {
        let method = o.method.unwrap_or(if o.formula.is_some() { ScoreMethod::Formula } else { base.method });
        let plan = ScorePlan { method, weights: o.formula.unwrap_or(base.weights), formula: None };
        let source = match o.scope {
            OverrideScope::Channel => format!("override:{}", o.value),
            OverrideScope::ChannelType => format!("override:channelType={}", o.value),
        };
        plans.push(plan, source.into(), o.scope, &o.value);
    }
    plans
}

/// `file.rules:27` from a rule-file location `file.rules:27:1`.
fn file_line(location: &str) -> Arc<str> {
    location.rsplit_once(':').map_or(location, |(file_line, _column)| file_line).into()
}

impl Builder<'_> {
    /// Compiles every rule definition once; returns them in evaluation order (priority
    /// descending, then definition order) with the scope they apply to.
    fn rules(&mut self, defs: &[RuleDef], channels: &[ChannelInfo]) -> Vec<RuleEntry> {
        let mut defs: Vec<&RuleDef> = defs.iter().filter(|d| d.stage != Stage::Ranking).collect();
        defs.sort_by_key(|d| std::cmp::Reverse(d.priority));
        let mut out = Vec::with_capacity(defs.len());
        for def in defs {
            let Some((pred, shared)) = self.rule_predicate(def) else { continue };
            let channel = (def.scope == Scope::Channel).then(|| {
                let id = def.scope_id.as_str();
                channels.iter().position(|c| &*c.id == id || &*c.name == id).unwrap_or(usize::MAX)
            });
            let rule = CompiledRule {
                id: def.id.clone(),
                name: def.name.clone(),
                stage: def.stage,
                multiplier: def.multiplier,
                channel,
                pred,
                shared,
                origin: def.origin.clone(),
            };
            out.push(RuleEntry { scope: def.scope, scope_id: def.scope_id.clone(), rule });
        }
        out
    }

    /// Checks and compiles one rule; errors name the JSON rule's config or the
    /// rule-language file location.
    fn rule_predicate(&mut self, def: &RuleDef) -> Option<(BoolFn, Option<u32>)> {
        match Checker::new(&mut self.layout, def.literals).check_predicate(&def.expr) {
            Ok(typed) => {
                let next = self.shared.len() as u32;
                let shared = typed.offer_independent_shape().map(|shape| *self.shared.entry(shape).or_insert(next));
                Some((self.compiler.predicate(&typed), shared))
            }
            Err(errs) => {
                let errors = errs.iter().map(|e| match &def.origin {
                    RuleOrigin::Json { .. } => {
                        condition_error(&format!("qualification rule `{}` ({}).config", def.name, def.id), e)
                    }
                    RuleOrigin::Source { location, .. } => FieldError::new(location.clone(), e.to_string()),
                });
                self.errors.extend(errors);
                None
            }
        }
    }

    /// Applies a rule-language `score` block to the flow's plans. The documented
    /// precedence: the more specific plan wins (one channel over all channels), and at
    /// the same specificity a rule file's block replaces the Score node's weights. Explain
    /// names the plan that scored (`weightsFrom`).
    fn apply_score_def(&mut self, def: &ScoreDef, plans: &mut Plans) {
        let plan = match &def.body {
            ScoreDefBody::Weights(w) => ScorePlan { method: ScoreMethod::Formula, weights: *w, formula: None },
            ScoreDefBody::Formula(expr) => {
                let Some(index) = self.formula(&def.location, expr) else { return };
                ScorePlan { method: ScoreMethod::Formula, weights: plans.plans[0].weights, formula: Some(index) }
            }
        };
        let source = file_line(&def.location);
        let Some(channel) = &def.channel else {
            plans.plans[0] = plan;
            plans.sources[0] = source;
            return;
        };
        let existing = plans.overrides.iter().find(|o| o.scope == OverrideScope::Channel && *o.value == **channel);
        match existing.map(|o| o.plan) {
            Some(i) => {
                plans.plans[i] = plan;
                plans.sources[i] = source;
            }
            None => plans.push(plan, source, OverrideScope::Channel, channel),
        }
    }

    fn formula(&mut self, location: &str, expr: &Expr) -> Option<usize> {
        let slots =
            FACTORS.map(|name| self.layout.declare(Path { ns: Namespace::Factor, name: name.into() }, Type::Num));
        self.factor_slots = Some(slots);
        match Checker::new(&mut self.layout, Literals::Strict).check_number(expr) {
            Ok(typed) => {
                self.formulas.push(self.compiler.number(&typed));
                Some(self.formulas.len() - 1)
            }
            Err(errs) => {
                self.errors.extend(errs.iter().map(|e| FieldError::new(location, e.to_string())));
                None
            }
        }
    }

    /// A `metric_condition` policy's condition, compiled like a qualification rule's; it
    /// may read the customer and the request, not the offer (it is checked once per
    /// decision).
    fn policy_condition(&mut self, p: &CompiledPolicy) -> Option<BoolFn> {
        let PolicyRule::Metric { attribute, operator, value } = &p.rule else { return None };
        let path = format!("contact policy `{}` ({}).config", p.name, p.id);
        let expr = match json::lower(attribute, *operator, value.as_ref()) {
            Ok(expr) => expr,
            Err(e) => {
                self.errors.push(FieldError::new(format!("{path}.{}", e.field), e.message));
                return None;
            }
        };
        match Checker::new(&mut self.layout, Literals::Lenient).check_predicate(&expr) {
            Ok(typed) if typed.offer_independent_shape().is_none() => {
                let message = crate::model::policy::METRIC_READS_OFFER;
                self.errors.push(FieldError::new(format!("{path}.attribute"), message));
                None
            }
            Ok(typed) => Some(self.compiler.predicate(&typed)),
            Err(errs) => {
                self.errors.extend(errs.iter().map(|e| condition_error(&path, e)));
                None
            }
        }
    }

    fn predicate(&mut self, path: &str, expr: &Expr) -> Option<BoolFn> {
        match Checker::new(&mut self.layout, Literals::Lenient).check_predicate(expr) {
            Ok(typed) => Some(self.compiler.predicate(&typed)),
            Err(errs) => {
                self.errors.extend(errs.iter().map(|e| condition_error(path, e)));
                None
            }
        }
    }

    fn qualify(
        &mut self,
        path: &str,
        c: &QualifyConfig,
        offers: &[(u32, &Offer)],
        rules: &[RuleEntry],
    ) -> Box<[Box<[u32]>]> {
        if c.mode == QualifyMode::Selected {
            for (j, id) in c.rule_ids.iter().enumerate() {
                if !rules.iter().any(|e| &*e.rule.id == id) {
                    self.errors.push(FieldError::new(
                        format!("{path}.ruleIds[{j}]"),
                        format!("no active qualification rule with id `{id}`"),
                    ));
                }
            }
        }
        // Index rules by what they are scoped to, so each offer collects its own in
        // time proportional to the rules that concern it.
        let mut everywhere = Vec::new();
        let mut by_offer: HashMap<&str, Vec<u32>> = HashMap::new();
        let mut by_category: HashMap<&str, Vec<u32>> = HashMap::new();
        for (i, e) in rules.iter().enumerate() {
            if c.mode == QualifyMode::Selected && !c.rule_ids.iter().any(|id| **id == *e.rule.id) {
                continue;
            }
            match e.scope {
                Scope::Offer => by_offer.entry(&e.scope_id).or_default().push(i as u32),
                Scope::Category => by_category.entry(&e.scope_id).or_default().push(i as u32),
                _ => everywhere.push(i as u32),
            }
        }
        let get = |map: &HashMap<&str, Vec<u32>>, key: &str| map.get(key).cloned().unwrap_or_default();
        offers
            .iter()
            .map(|&(_, offer)| {
                if offer.spec.mandatory {
                    return Box::default();
                }
                let mut list = everywhere.clone();
                list.extend(get(&by_offer, &offer.meta.id));
                list.extend(get(&by_offer, &offer.spec.name));
                if let Some(category) = &offer.spec.category {
                    list.extend(get(&by_category, category));
                }
                // Rule indices are already in priority order.
                list.sort_unstable();
                list.dedup();
                list.into_boxed_slice()
            })
            .collect()
    }

    fn enrich(&mut self, path: &str, c: &EnrichConfig) -> Box<[EnrichPlan]> {
        let mut plans = Vec::new();
        for (j, source) in c.sources.iter().enumerate() {
            let spath = format!("{path}.sources[{j}]");
            let Some((schema, table)) = self.inputs.schema(&source.schema_id) else {
                self.errors.push(FieldError::new(
                    format!("{spath}.schemaId"),
                    format!("no schema with id `{}`", source.schema_id),
                ));
                continue;
            };
            let key = schema.key_field().map(|k| schema.spec.fields[k].name.as_str());
            if key != Some(source.lookup_key.as_str()) {
                let msg = match key {
                    Some(k) => format!("must be the schema's unique field `{k}`, got `{}`", source.lookup_key),
                    None => format!("schema `{}` has no isUnique field to look customers up by", schema.spec.name),
                };
                self.errors.push(FieldError::new(format!("{spath}.lookupKey"), msg));
            }
            let all: Vec<&str> = schema.spec.fields.iter().map(|f| f.name.as_str()).collect();
            let wanted: Vec<&str> =
                if source.fields.is_empty() { all.clone() } else { source.fields.iter().map(String::as_str).collect() };
            let mut copies = Vec::new();
            for (k, name) in wanted.iter().enumerate() {
                match schema.field_index(name) {
                    Some(col) => {
                        let path = Path { ns: Namespace::Customer, name: name.to_string() };
                        let (slot, ty) = self.layout.get(&path).expect("catalog layout declares every schema field");
                        copies.push((col, slot));
                        if matches!(ty, Type::Num | Type::Bool) {
                            self.features.push((Arc::from(*name), slot));
                        } else if ty == Type::Str && *name != source.lookup_key {
                            self.categories.push((Arc::from(*name), slot));
                        }
                    }
                    None => {
                        let help = did_you_mean(name, all.iter().copied())
                            .map(|s| format!(" (did you mean `{s}`?)"))
                            .unwrap_or_default();
                        self.errors.push(FieldError::new(
                            format!("{spath}.fields[{k}]"),
                            format!("schema `{}` has no field `{name}`{help}", schema.spec.name),
                        ));
                    }
                }
            }
            plans.push(EnrichPlan {
                schema: schema.spec.name.as_str().into(),
                table: table.clone(),
                copies: copies.into(),
            });
        }
        plans.into()
    }

    fn filter(&mut self, path: &str, c: &FilterConfig) -> BoolFn {
        let op = if c.combinator == Combinator::Or { BinOp::Or } else { BinOp::And };
        let mut combined: Option<Expr> = None;
        for (j, cond) in c.conditions.iter().enumerate() {
            match json::lower(&cond.field, cond.operator, cond.value.as_ref()) {
                Ok(e) => combined = Some(combined.map_or(e.clone(), |acc| Expr::binary(op, acc, e))),
                Err(e) => {
                    let field = if e.field == "attribute" { "field" } else { e.field };
                    self.errors.push(FieldError::new(format!("{path}.conditions[{j}].{field}"), e.message));
                }
            }
        }
        let expr =
            combined.unwrap_or_else(|| Expr::new(crate::rules::ir::ExprKind::Bool(true), crate::rules::Span::NONE));
        self.predicate(&format!("{path}.conditions"), &expr).unwrap_or_else(|| Box::new(|_| Some(true)))
    }
}

impl CompiledFlow {
    /// The tenant's active contact policies (every flow compiles them all), highest
    /// priority first.
    pub fn policies(&self) -> &[CompiledPolicy] {
        &self.policies
    }
}

impl std::fmt::Debug for CompiledFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledFlow")
            .field("key", &self.key)
            .field("version", &self.version)
            .field("offers", &self.offers.len())
            .field("rules", &self.rules.len())
            .field("slots", &self.layout.len())
            .finish_non_exhaustive()
    }
}
