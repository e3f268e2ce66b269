//! The decision engine: a flow's nodes plus the tenant's offers, rules and schemas are
//! compiled once into an immutable [`CompiledFlow`]; [`CompiledFlow::decide`] then runs
//! one decision against it without locks, name lookups or per-rule allocation.
//!
//! * `compile` — builds the plan: inventory resolved to an offer list, rules to
//!   per-offer closure lists, enrich sources to column→slot copies, static score parts.
//! * `decide` — runs one request through the plan.
//! * `score` — the score methods (priority_weighted, propensity, PRIE-U formula).
//! * `response` — request and response types (the platform's JSON shape) and explain.
//! * `defs` — rule and score definitions in the shared IR, from either front-end.

mod compile;
pub mod contact;
mod decide;
pub mod defs;
pub mod response;
pub mod score;

pub use compile::{compile, CompileError, CompiledFlow};
pub use defs::{RuleDef, RuleOrigin, ScoreDef, ScoreDefBody};
pub use response::{Decision, Meta, OfferDecision, RecommendRequest};
pub use score::{NoSignals, Signals};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_flow_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CompiledFlow>();
    }
}
