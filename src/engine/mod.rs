//! The decision engine: a flow's nodes plus the tenant's offers, rules and schemas are
//! compiled once into an immutable [`CompiledFlow`]; [`CompiledFlow::decide`] then runs
//! one decision against it without locks, name lookups or per-rule allocation.
//!
//! * `compile` — builds the plan: inventory resolved to an offer list, rules to
//!   per-offer closure lists, enrich sources to column→slot copies, static score parts.
//! * `decide` — runs one request through the plan.
//! * `score` — the score methods (priority_weighted, propensity, PRIE-U formula).
//! * `response` — request and response types (the platform's JSON shape) and explain.
//! * `contact` — contact policies against a customer's contact history.
//! * `placement` — how the ranked offers fill a channel's placements, and coupling.
//! * `tape` — a decision's volatile reads, recorded for its receipt and replayed from it.
//!
//! Rule and score definitions (`RuleDef`, `ScoreDef`) come from `dsl::defs`; the
//! engine takes them, with the tenant's entities, as plain inputs ([`TenantInputs`]).

mod compile;
pub mod contact;
mod decide;
mod placement;
pub mod response;
pub mod score;
pub mod tape;

pub use crate::dsl::defs::{RuleDef, RuleOrigin, ScoreDef, ScoreDefBody};
pub use compile::TenantInputs;
pub use compile::{compile, CompileError, CompiledFlow};
pub use response::{Decision, Meta, OfferDecision, RecommendRequest};
pub use score::{NoSignals, Signals, UpliftSignal};

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine compiles from plain inputs: two offers, no schema, no catalog.
    #[test]
    fn compiles_and_decides_without_a_catalog() {
        use crate::learn::propensity::CounterBank;
        use crate::model::{parse_json, Meta, Offer, OfferSpec};
        let offer = |name: &str, priority: f64| {
            let mut spec: OfferSpec = parse_json(br#"{"name": "x", "status": "active"}"#).unwrap();
            (spec.name, spec.priority) = (name.to_string(), priority);
            Offer { meta: Meta::new(), spec }
        };
        let offers = [offer("low", 20.0), offer("high", 90.0)];
        let counters = CounterBank::default();
        let inputs = TenantInputs {
            layout: crate::rules::Layout::new(),
            schemas: Vec::new(),
            offers: &offers,
            channels: &[],
            policies: &[],
            rules: Vec::new(),
            rule_errors: Vec::new(),
            scores: Vec::new(),
            counters: &counters,
        };
        let draft: crate::model::DraftConfig = parse_json(
            br#"{"version": 2, "nodes": [{"id": "inv", "type": "inventory"}, {"id": "s", "type": "score"}]}"#,
        )
        .unwrap();
        let flow = compile(&inputs, "f1", "plain", &draft, 1).unwrap();
        let req = RecommendRequest { customer_id: "c".into(), ..RecommendRequest::default() };
        let d = flow.decide(&req, &NoSignals, false);
        let names: Vec<&str> = d.decisions.iter().map(|o| &*o.offer_name).collect();
        assert_eq!(names, ["high", "low"]);
    }

    #[test]
    fn compiled_flow_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CompiledFlow>();
    }
}
