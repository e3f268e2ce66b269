//! Journeys in the catalog: create, change and remove them, check what they name
//! (flows, channels, offers, outcome types, conditions) against the tenant, and compile
//! them into the form the journey runtime (`tenant::journeys`) walks.

use std::sync::Arc;

use super::{not_found, Catalog, CatalogError, Table};
use crate::dsl::check_source;
use crate::model::journey::{Journey, JourneySpec, Plan, Step};
use crate::model::offer::OfferStatus;
use crate::model::{outcome, FieldError, Meta, ValidationError};
use crate::rules::check::Checker;
use crate::rules::{BoolFn, Compiler, Env, Namespace, OfferFacts, Path, Value};

/// A rule-language condition on one customer, compiled: the predicate and where its
/// customer attributes come from.
pub struct Condition {
    pred: BoolFn,
    consts: Box<[Box<str>]>,
    slots: usize,
    /// (table, column, slot): the customer's row values the predicate reads.
    copies: Vec<(Arc<Table>, usize, u32)>,
}

impl Condition {
    /// The condition for `customer_id`'s current rows; `None` when unknown (a missing row
    /// or attribute).
    pub fn eval(&self, customer_id: &str) -> Option<bool> {
        let mut slots = vec![Value::Null; self.slots];
        slots[crate::rules::layout::SLOT_CUSTOMER_ID as usize] = Value::Str(customer_id.into());
        for (table, col, slot) in &self.copies {
            if let Some(v) = table.get(customer_id).and_then(|row| row.get(*col).cloned()) {
                slots[*slot as usize] = v;
            }
        }
        (self.pred)(&Env { slots: &slots, offer: &OfferFacts::empty(), consts: &self.consts })
    }
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condition").field("slots", &self.slots).finish_non_exhaustive()
    }
}

/// An offer a journey shows, as the decision that delivers it needs it.
#[derive(Debug, Clone)]
pub struct JourneyOffer {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub category: Arc<str>,
    pub priority: f64,
}

/// A step with what it names resolved against the catalog.
#[derive(Debug)]
pub enum Resolved {
    None,
    /// A condition split.
    Condition(Condition),
    /// A channel action: the channel's name (contacts are recorded by it) and the offer.
    Action {
        channel: Arc<str>,
        offer: JourneyOffer,
    },
    /// A decision: the channel's name.
    Decision {
        channel: Arc<str>,
    },
    /// A wait for an event (or an entry trigger) on one offer: its id.
    Offer(Arc<str>),
}

/// A journey ready to run: its plan, and each step resolved.
#[derive(Debug)]
pub struct CompiledJourney {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub active: bool,
    pub max_duration_secs: i64,
    pub plan: Plan,
    pub resolved: Vec<Resolved>,
    pub entry_condition: Option<Condition>,
}

impl CompiledJourney {
    /// The entry trigger's config.
    pub fn entry(&self) -> &crate::model::journey::EntryConfig {
        match &self.plan.steps[self.plan.entry] {
            Step::Entry(e) => e,
            _ => unreachable!("a plan's entry is its entry_trigger"),
        }
    }

    /// The offer id an event must be for at step `i`, if it names one.
    pub fn offer_at(&self, i: usize) -> Option<&str> {
        match &self.resolved[i] {
            Resolved::Offer(id) => Some(id),
            _ => None,
        }
    }
}

impl Catalog {
    pub fn add_journey(&mut self, spec: JourneySpec) -> Result<&Journey, CatalogError> {
        self.check_journey(&spec)?;
        if self.journeys.iter().any(|j| j.spec.name == spec.name) {
            return Err(CatalogError::Conflict(format!("a journey named `{}` already exists", spec.name)));
        }
        self.journeys.push(Journey { meta: Meta::new(), spec });
        Ok(self.journeys.last().expect("just pushed"))
    }

    pub fn update_journey(&mut self, id: &str, spec: JourneySpec) -> Result<&Journey, CatalogError> {
        self.check_journey(&spec)?;
        if self.journeys.iter().any(|j| j.spec.name == spec.name && j.meta.id != id) {
            return Err(CatalogError::Conflict(format!("a journey named `{}` already exists", spec.name)));
        }
        let journey = self.journeys.iter_mut().find(|j| j.meta.id == id).ok_or_else(|| not_found("journey", id))?;
        journey.spec = spec;
        journey.meta.touch();
        Ok(journey)
    }

    /// The journey's plan, with every flow, channel, offer, outcome type and condition it
    /// names checked against this tenant.
    fn check_journey(&self, spec: &JourneySpec) -> Result<Plan, ValidationError> {
        let plan = spec.plan()?;
        let mut errors = Vec::new();
        for (i, step) in plan.steps.iter().enumerate() {
            let path = format!("definition.nodes[{i}].config");
            if let Err(e) = self.resolve_step(step) {
                errors.push(FieldError::new(format!("{path}.{}", e.0), e.1));
            }
        }
        if let Some(Err(e)) = spec.entry_condition.as_deref().map(|c| self.condition(c)) {
            errors.push(FieldError::new("entryCondition", e));
        }
        ValidationError::check(errors)?;
        Ok(plan)
    }

    /// Compiles every journey that still resolves; a journey broken by a later change
    /// (its offer deleted, its condition's attribute gone) is reported and left out.
    pub fn compile_journeys(&self) -> (Vec<Arc<CompiledJourney>>, Vec<(String, String)>) {
        let mut out = Vec::new();
        let mut failed = Vec::new();
        for j in &self.journeys {
            match self.compile_journey(j) {
                Ok(c) => out.push(Arc::new(c)),
                Err(e) => failed.push((j.spec.name.clone(), e)),
            }
        }
        (out, failed)
    }

    fn compile_journey(&self, j: &Journey) -> Result<CompiledJourney, String> {
        let plan = j.spec.plan().map_err(|e| e.to_string())?;
        let mut resolved = Vec::with_capacity(plan.steps.len());
        for (i, step) in plan.steps.iter().enumerate() {
            let r = self.resolve_step(step).map_err(|(field, e)| format!("step `{}` {field}: {e}", plan.ids[i]))?;
            resolved.push(r);
        }
        let entry_condition = match j.spec.entry_condition.as_deref() {
            Some(c) => Some(self.condition(c).map_err(|e| format!("entryCondition: {e}"))?),
            None => None,
        };
        Ok(CompiledJourney {
            id: j.meta.id.as_str().into(),
            name: j.spec.name.as_str().into(),
            active: j.spec.status == OfferStatus::Active,
            max_duration_secs: i64::from(j.spec.max_duration_days) * 86_400,
            plan,
            resolved,
            entry_condition,
        })
    }

    /// What a step names, looked up; the error is (config field, message).
    fn resolve_step(&self, step: &Step) -> Result<Resolved, (&'static str, String)> {
        match step {
            Step::Entry(e) => {
                if let Some(t) = &e.event_type {
                    known_outcome("eventType", t)?;
                }
                match &e.offer_id {
                    Some(o) => Ok(Resolved::Offer(self.journey_offer("offerId", o)?.id)),
                    None => Ok(Resolved::None),
                }
            }
            Step::Wait(w) => match &w.wait_for_event {
                Some(ev) => {
                    known_outcome("waitForEvent.outcome", &ev.outcome)?;
                    match &ev.offer_id {
                        Some(o) => Ok(Resolved::Offer(self.journey_offer("waitForEvent.offerId", o)?.id)),
                        None => Ok(Resolved::None),
                    }
                }
                None => Ok(Resolved::None),
            },
            Step::Decision(d) => {
                if !self.flows.iter().any(|f| f.spec.key == d.decision_flow_key) {
                    return Err(("decisionFlowKey", format!("no decision flow with key `{}`", d.decision_flow_key)));
                }
                Ok(Resolved::Decision { channel: self.journey_channel(&d.channel)? })
            }
            Step::Split(s) => self.condition(&s.condition).map(Resolved::Condition).map_err(|e| ("condition", e)),
            Step::Action(a) => Ok(Resolved::Action {
                channel: self.journey_channel(&a.channel)?,
                offer: self.journey_offer("offerId", &a.offer_id)?,
            }),
            Step::Exit => Ok(Resolved::None),
        }
    }

    fn journey_channel(&self, id_or_name: &str) -> Result<Arc<str>, (&'static str, String)> {
        self.channels
            .iter()
            .find(|c| c.meta.id == id_or_name || c.spec.name == id_or_name)
            .map(|c| c.spec.name.as_str().into())
            .ok_or_else(|| ("channel", format!("no channel with id or name `{id_or_name}`")))
    }

    fn journey_offer(&self, field: &'static str, id_or_name: &str) -> Result<JourneyOffer, (&'static str, String)> {
        let o = self
            .offers
            .iter()
            .find(|o| o.meta.id == id_or_name || o.spec.name == id_or_name)
            .ok_or_else(|| (field, format!("no offer with id or name `{id_or_name}`")))?;
        Ok(JourneyOffer {
            id: o.meta.id.as_str().into(),
            name: o.spec.name.as_str().into(),
            category: o.spec.category.as_deref().unwrap_or_default().into(),
            priority: o.spec.priority,
        })
    }

    /// Checks and compiles a rule-language condition on the customer. An error names the
    /// line and column within the condition.
    pub fn condition(&self, source: &str) -> Result<Condition, String> {
        // The condition is checked as the body of a rule, so it reads exactly as one
        // would in a rule file (with `customer.`, `in`, `and` …).
        let wrapped = format!("rule \"condition\" {{\n{source}\n}}");
        let checked = check_source("condition", &wrapped, &self.dsl_context());
        if let Some(d) = checked.diagnostics.iter().find(|d| d.is_error()) {
            let at = crate::dsl::error::locate("condition", &wrapped, d);
            let help = d.help.as_deref().map(|h| format!(" ({h})")).unwrap_or_default();
            return Err(format!(
                "line {}, column {}: {}{help}",
                at.line.saturating_sub(1).max(1),
                at.column,
                d.message
            ));
        }
        let rule = checked.rules.first().ok_or("the condition defines nothing")?;
        let mut layout = self.layout();
        let typed = Checker::new(&mut layout, rule.literals)
            .check_predicate(&rule.expr)
            .map_err(|errs| errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))?;
        let mut compiler = Compiler::new();
        let pred = compiler.predicate(&typed);
        let mut copies = Vec::new();
        for (i, schema) in self.schemas.iter().enumerate() {
            for (col, f) in schema.spec.fields.iter().enumerate() {
                if let Some((slot, _)) = layout.get(&Path { ns: Namespace::Customer, name: f.name.clone() }) {
                    copies.push((self.table(i).clone(), col, slot));
                }
            }
        }
        Ok(Condition { pred, consts: compiler.into_consts(), slots: layout.len(), copies })
    }
}

/// Whether a journey's steps name the offer or channel that `names` matches.
pub(super) fn names(j: &Journey, scope: crate::model::rule::Scope, names: &dyn Fn(&str) -> bool) -> bool {
    use crate::model::rule::Scope;
    let Ok(plan) = j.spec.plan() else { return false };
    plan.steps.iter().any(|step| match (scope, step) {
        (Scope::Offer, Step::Action(a)) => names(&a.offer_id),
        (Scope::Channel, Step::Action(a)) => names(&a.channel),
        (Scope::Channel, Step::Decision(d)) => names(&d.channel),
        (Scope::Offer, Step::Entry(e)) => e.offer_id.as_deref().is_some_and(names),
        (Scope::Offer, Step::Wait(w)) => {
            w.wait_for_event.as_ref().and_then(|e| e.offer_id.as_deref()).is_some_and(names)
        }
        _ => false,
    })
}

fn known_outcome(field: &'static str, key: &str) -> Result<(), (&'static str, String)> {
    if outcome::ordinal(key).is_some() {
        return Ok(());
    }
    let keys: Vec<String> = outcome::outcome_types().into_iter().map(|t| t.key.to_string()).collect();
    Err((field, format!("unknown outcome type `{key}`; expected one of {}", keys.join(", "))))
}
