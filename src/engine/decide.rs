//! Runs one decision through a compiled flow: fill the slot frame from the request,
//! run the narrowing steps, score, rank, and shape the response. The hot path holds no
//! lock and hashes no rule names; `explain` switches on bookkeeping for why-not output.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::ids::{fnv1a_pair, new_id};
use crate::rules::layout::{SLOT_CHANNEL, SLOT_CHANNEL_NAME, SLOT_CHANNEL_TYPE, SLOT_CUSTOMER_ID, SLOT_PLACEMENT};
use crate::rules::{Env, Path, Value};

use super::compile::{CompiledFlow, CompiledOffer, CompiledRule, EnrichPlan, Step};
use super::defs::RuleOrigin;
use super::response::{
    Decision, DecisionExplanation, FlowExplanation, Meta, OfferDecision, RankingScores, RecommendRequest, Removal,
    RuleFailure,
};
use super::score::{self, ScorePlan, Signals, DEFAULT_PROPENSITY};

/// A candidate offer on its way through the flow.
#[derive(Clone, Copy)]
struct Candidate {
    offer: u32,
    fit: f64,
    score: f64,
}

/// Per-request state shared by the steps.
struct Frame<'f> {
    flow: &'f CompiledFlow,
    slots: Vec<Value>,
    channel: Option<usize>,
    log: Option<FlowExplanation>,
    warnings: Vec<String>,
}

impl CompiledFlow {
    /// Decides which offers to show. `req` must have passed `RecommendRequest::validate`.
    pub fn decide(&self, req: &RecommendRequest, signals: &dyn Signals, explain: bool) -> Decision {
        let mut frame = Frame::new(self, req, explain);
        let mut cands: Vec<Candidate> =
            (0..self.offers.len() as u32).map(|offer| Candidate { offer, fit: 1.0, score: 0.0 }).collect();
        let mut meta = Meta { total_candidates: cands.len(), ..Meta::default() };
        let (mut after_qual, mut after_cp) = (None, None);
        for step in self.steps.iter() {
            match step {
                Step::Enrich(plans) => frame.enrich(plans, &req.customer_id),
                Step::Filter { node, pred } => frame.filter(node, pred, &mut cands),
                Step::Qualify { node, lists } => {
                    frame.qualify(node, lists, &mut cands);
                    after_qual = Some(cands.len());
                }
                Step::ContactPolicy => after_cp = Some(cands.len()),
            }
        }
        meta.after_qualification = after_qual.unwrap_or(cands.len());
        meta.after_suppression = after_cp.unwrap_or(cands.len());
        meta.after_contact_policy = after_cp.unwrap_or(cands.len());
        let plan = self.plan_for(frame.channel, req.channel.as_deref());
        frame.score(plan, signals, &mut cands);
        let ranked = frame.rank(req.limit(), &mut cands);
        let decisions = frame.shape(plan, signals, ranked, explain);
        meta.warnings = std::mem::take(&mut frame.warnings);
        let control = self.in_holdout(&req.customer_id);
        let (decisions, counterfactual) = if control { (Vec::new(), decisions) } else { (decisions, Vec::new()) };
        let id = new_id();
        Decision {
            interaction_id: id.clone(),
            recommendation_id: id,
            customer_id: req.customer_id.clone(),
            decision_flow_key: self.key.clone(),
            decision_flow_version: self.version,
            channel: req.channel.clone(),
            count: decisions.len(),
            decisions,
            meta,
            control_group: control,
            explanation: frame.log,
            counterfactual,
        }
    }

    /// Deterministic holdout: FNV-1a of `flowKey:customerId` into 10,000 buckets.
    pub fn in_holdout(&self, customer_id: &str) -> bool {
        self.holdout_percent.is_some_and(|pct| {
            let bucket = fnv1a_pair(&self.key, customer_id) % 10_000;
            (bucket as f64) < pct * 100.0
        })
    }

    /// The score plan for this request's channel: an override matching the channel's
    /// name or type, else the node's own.
    fn plan_for(&self, channel: Option<usize>, requested: Option<&str>) -> (usize, &ScorePlan) {
        let info = channel.map(|c| &self.channels[c]);
        let matches = |value: &str| {
            requested == Some(value) || info.is_some_and(|c| &*c.name == value || &*c.kind == value || &*c.id == value)
        };
        let idx = self.overrides.iter().find(|(v, _)| matches(v)).map_or(0, |(_, i)| *i);
        (idx, &self.plans[idx])
    }

    /// How many slots a decision uses (for benchmarks and tests).
    pub fn slot_count(&self) -> usize {
        self.layout.len()
    }

    pub fn offer_count(&self) -> usize {
        self.offers.len()
    }
}

impl<'f> Frame<'f> {
    fn new(flow: &'f CompiledFlow, req: &RecommendRequest, explain: bool) -> Frame<'f> {
        let mut slots = vec![Value::Null; flow.layout.len()];
        let text = |s: &str| Value::Str(s.into());
        slots[SLOT_CUSTOMER_ID as usize] = text(&req.customer_id);
        let mut warnings = Vec::new();
        let mut channel = None;
        if let Some(requested) = &req.channel {
            slots[SLOT_CHANNEL as usize] = text(requested);
            // A channel is named by the client by name, id or type, in that preference.
            let found = flow.channels.iter().position(|c| &*c.name == requested || &*c.id == requested);
            channel = found.or_else(|| flow.channels.iter().position(|c| &*c.kind == requested));
            match channel {
                Some(c) => {
                    slots[SLOT_CHANNEL_NAME as usize] = Value::Str(flow.channels[c].name.clone());
                    slots[SLOT_CHANNEL_TYPE as usize] = Value::Str(flow.channels[c].kind.clone());
                }
                None => {
                    warnings.push(format!("unknown channel `{requested}`: channel rules and overrides do not apply"))
                }
            }
        }
        if let Some(p) = &req.placement {
            slots[SLOT_PLACEMENT as usize] = text(p);
        }
        for (name, slot) in flow.attribute_slots.iter() {
            if let Some(v) = req.attributes.get(&**name) {
                slots[*slot as usize] = Value::from_json_untyped(v);
            }
        }
        Frame { flow, slots, channel, log: explain.then(FlowExplanation::default), warnings }
    }

    fn env<'a>(&'a self, offer: &'a CompiledOffer) -> Env<'a> {
        Env { slots: &self.slots, offer: &offer.facts, consts: &self.flow.consts }
    }

    fn enrich(&mut self, plans: &[EnrichPlan], customer_id: &str) {
        for plan in plans {
            match plan.table.get(customer_id) {
                Some(row) => {
                    // A row stored before fields were added to its schema is shorter.
                    for &(col, slot) in plan.copies.iter() {
                        if let Some(v) = row.get(col) {
                            self.slots[slot as usize] = v.clone();
                        }
                    }
                }
                None => self.warnings.push(format!("no `{}` row for customer `{customer_id}`", plan.schema)),
            }
        }
    }

    /// A filter keeps an offer only when its condition is true (unknown removes it).
    fn filter(&mut self, node: &Arc<str>, pred: &crate::rules::BoolFn, cands: &mut Vec<Candidate>) {
        let flow = self.flow;
        let mut removed = Vec::new();
        cands.retain(|c| {
            let offer = &flow.offers[c.offer as usize];
            let keep = pred(&self.env(offer)) == Some(true);
            if !keep && self.log.is_some() {
                removed.push(removal(offer, node, "filter", None, "filter conditions not met".into()));
            }
            keep
        });
        if let Some(log) = &mut self.log {
            log.removed.extend(removed);
        }
    }

    /// Runs each offer's rules in priority order. A hard rule that is false removes the
    /// offer (and stops its remaining rules); a false match rule scales `fit`.
    fn qualify(&mut self, node: &Arc<str>, lists: &[Box<[u32]>], cands: &mut Vec<Candidate>) {
        let flow = self.flow;
        let mut notes: Vec<(bool, Removal)> = Vec::new();
        let explain = self.log.is_some();
        cands.retain_mut(|c| {
            let offer = &flow.offers[c.offer as usize];
            let env = self.env(offer);
            for &r in lists[c.offer as usize].iter() {
                let rule = &flow.rules[r as usize];
                if rule.channel.is_some() && rule.channel != self.channel {
                    continue;
                }
                if (rule.pred)(&env) != Some(false) {
                    continue;
                }
                let hard = rule.stage.is_hard();
                if explain {
                    let reason = if hard { "rule is false".to_string() } else { format!("fit × {}", rule.multiplier) };
                    let failure = self.rule_failure(rule, offer);
                    notes.push((hard, removal(offer, node, "qualify", Some(failure), reason)));
                }
                if hard {
                    return false;
                }
                c.fit *= rule.multiplier;
            }
            true
        });
        if let Some(log) = &mut self.log {
            for (hard, note) in notes {
                if hard {
                    log.removed.push(note)
                } else {
                    log.penalties.push(note)
                }
            }
        }
    }

    fn rule_failure(&self, rule: &CompiledRule, offer: &CompiledOffer) -> RuleFailure {
        let mut failure = RuleFailure {
            id: rule.id.clone(),
            name: rule.name.clone(),
            stage: rule.stage.name(),
            attribute: None,
            operator: None,
            expected: None,
            actual: None,
            source: None,
            location: None,
        };
        match &rule.origin {
            RuleOrigin::Json { attribute, operator, expected } => {
                failure.actual = Path::parse(attribute).map(|path| match self.flow.layout.get(&path) {
                    Some((slot, _)) => self.slots[slot as usize].to_json(),
                    None => offer_field_json(&offer.facts, &path.name),
                });
                failure.attribute = Some(attribute.clone());
                failure.operator = Some(operator.name());
                failure.expected = expected.clone();
            }
            RuleOrigin::Source { location, text } => {
                failure.source = Some(text.clone());
                failure.location = Some(location.clone());
            }
        }
        failure
    }

    fn score(&mut self, (idx, plan): (usize, &ScorePlan), signals: &dyn Signals, cands: &mut Vec<Candidate>) {
        let flow = self.flow;
        match plan.formula {
            Some(f) => self.score_formula(f, signals, cands),
            None => self.score_plan(idx, plan, signals, cands),
        }
        // A zero score (a zero factor with weight, or fit 0) takes the offer out.
        let explain = self.log.is_some();
        let mut removed = Vec::new();
        cands.retain(|c| {
            let keep = c.score > 0.0;
            if !keep && explain {
                let offer = &flow.offers[c.offer as usize];
                removed.push(removal(offer, &flow.score_node, "score", None, "score is 0".into()));
            }
            keep
        });
        if let Some(log) = &mut self.log {
            log.removed.extend(removed);
        }
    }

    fn score_plan(&self, idx: usize, plan: &ScorePlan, signals: &dyn Signals, cands: &mut [Candidate]) {
        let channel = self.channel_name();
        for c in cands.iter_mut() {
            let offer = &self.flow.offers[c.offer as usize];
            let p = if plan.needs_propensity() {
                signals.propensity(&offer.facts, offer.ordinal, channel)
            } else {
                DEFAULT_PROPENSITY
            };
            let tau = if plan.needs_uplift() { signals.uplift(&offer.facts, offer.ordinal, &self.slots) } else { None };
            c.score = plan.score(offer.static_factors[idx], p, tau, c.fit);
        }
    }

    /// A rule-language formula: the factors go into their slots, then the formula runs
    /// like any expression. Unknown or negative results score 0.
    fn score_formula(&mut self, formula: usize, signals: &dyn Signals, cands: &mut [Candidate]) {
        let flow = self.flow;
        let channel = self.channel_name();
        let slots = flow.factor_slots.expect("a formula declares its factor slots");
        for c in cands.iter_mut() {
            let offer = &flow.offers[c.offer as usize];
            let tau = signals.uplift(&offer.facts, offer.ordinal, &self.slots);
            let values = [
                signals.propensity(&offer.facts, offer.ordinal, channel),
                score::RELEVANCE,
                score::impact(&offer.facts),
                score::emphasis(&offer.facts),
                score::uplift_factor(tau),
                tau.unwrap_or(0.0),
            ];
            for (slot, v) in slots.iter().zip(values) {
                self.slots[*slot as usize] = Value::Num(v);
            }
            let value = (flow.formulas[formula])(&self.env(offer)).unwrap_or(0.0);
            c.score = value.max(0.0) * c.fit;
        }
    }

    fn channel_name(&self) -> Option<&'f str> {
        self.channel.map(|c| &*self.flow.channels[c].name)
    }

    /// Top N by score; ties go to the higher priority, then the smaller offer id.
    fn rank(&mut self, limit: usize, cands: &mut [Candidate]) -> Vec<Candidate> {
        let flow = self.flow;
        let order = |a: &Candidate, b: &Candidate| -> Ordering {
            let (oa, ob) = (&flow.offers[a.offer as usize].facts, &flow.offers[b.offer as usize].facts);
            b.score.total_cmp(&a.score).then(ob.priority.total_cmp(&oa.priority)).then_with(|| oa.id.cmp(&ob.id))
        };
        let n = limit.min(flow.max_candidates).min(cands.len());
        if n < cands.len() {
            cands.select_nth_unstable_by(n, order);
            if let Some(log) = &mut self.log {
                for c in &cands[n..] {
                    let offer = &flow.offers[c.offer as usize];
                    let reason = format!("ranked below the top {n}");
                    log.removed.push(removal(offer, &flow.rank_node, "rank", None, reason));
                }
            }
        }
        let mut top = cands[..n].to_vec();
        top.sort_unstable_by(order);
        top
    }

    fn shape(
        &self,
        (_, plan): (usize, &ScorePlan),
        signals: &dyn Signals,
        ranked: Vec<Candidate>,
        explain: bool,
    ) -> Vec<OfferDecision> {
        let flow = self.flow;
        let ranked = ranked.into_iter().enumerate();
        ranked
            .map(|(i, c)| {
                let offer = &flow.offers[c.offer as usize];
                OfferDecision {
                    offer_id: offer.facts.id.clone(),
                    offer_name: offer.facts.name.clone(),
                    score: c.score,
                    rank: i as u32 + 1,
                    priority: offer.facts.priority,
                    personalization: serde_json::Map::new(),
                    explanation: explain.then(|| self.ranking_scores(plan, signals, offer, c)),
                }
            })
            .collect()
    }

    fn ranking_scores(
        &self,
        plan: &ScorePlan,
        signals: &dyn Signals,
        offer: &CompiledOffer,
        c: Candidate,
    ) -> DecisionExplanation {
        let propensity = signals.propensity(&offer.facts, offer.ordinal, self.channel_name());
        let tau = signals.uplift(&offer.facts, offer.ordinal, &self.slots);
        DecisionExplanation {
            ranking_scores: RankingScores {
                method: match (plan.formula, plan.method) {
                    (Some(_), _) => "rule_formula",
                    (None, crate::model::flow::ScoreMethod::PriorityWeighted) => "priority_weighted",
                    (None, crate::model::flow::ScoreMethod::Propensity) => "propensity",
                    (None, crate::model::flow::ScoreMethod::Formula) => "formula",
                },
                propensity,
                relevance: score::RELEVANCE,
                impact: score::impact(&offer.facts),
                emphasis: score::emphasis(&offer.facts),
                weights: plan.weights,
                fit_multiplier: c.fit,
                tau,
                uplift_factor: score::uplift_factor(tau),
                final_score: c.score,
            },
        }
    }
}

fn removal(
    offer: &CompiledOffer,
    node: &Arc<str>,
    node_type: &'static str,
    rule: Option<RuleFailure>,
    reason: String,
) -> Removal {
    Removal {
        offer_id: offer.facts.id.clone(),
        offer_name: offer.facts.name.clone(),
        node_id: node.clone(),
        node_type,
        rule,
        reason,
    }
}

fn offer_field_json(o: &crate::rules::OfferFacts, name: &str) -> serde_json::Value {
    use crate::rules::value::num_to_json;
    match name {
        "id" => o.id.to_string().into(),
        "name" => o.name.to_string().into(),
        "category" => o.category.to_string().into(),
        "status" => o.status.to_string().into(),
        "priority" => num_to_json(o.priority),
        "businessValue" => num_to_json(o.business_value),
        "weight" => num_to_json(o.weight),
        "mandatory" => o.mandatory.into(),
        "revenueValue" => o.revenue_value.map_or(serde_json::Value::Null, num_to_json),
        "margin" => o.margin.map_or(serde_json::Value::Null, num_to_json),
        _ => serde_json::Value::Null,
    }
}
