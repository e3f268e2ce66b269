//! What the engine compiles: rule and score definitions in the shared IR, whichever
//! front-end wrote them. Rule-language files (this module's checker) and JSON
//! qualification rules (lowered by the catalog) both become `RuleDef`s, so there is one
//! compiler and one evaluator. They live here, below the engine, because the language
//! produces them and the engine only reads them.

use std::sync::Arc;

use crate::model::flow::Weights;
use crate::model::rule::Scope;
use crate::model::Stage;
use crate::rules::ir::Expr;
use crate::rules::json::Operator;
use crate::rules::Literals;

#[derive(Debug, Clone, PartialEq)]
pub struct RuleDef {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub scope: Scope,
    /// Offer id or name, category, or channel id or name; empty for global.
    pub scope_id: String,
    pub stage: Stage,
    /// Score multiplier when a match-stage rule is false.
    pub multiplier: f64,
    /// Higher runs first.
    pub priority: i64,
    pub expr: Expr,
    pub literals: Literals,
    pub origin: RuleOrigin,
}

/// Where a rule came from, for explain output.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleOrigin {
    Json { attribute: String, operator: Operator, expected: Option<serde_json::Value> },
    Source { location: String, text: String },
}

/// A rule-language `score` block: new weights or a whole formula for a flow, on one
/// channel or on all.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreDef {
    pub flow_key: String,
    pub channel: Option<String>,
    pub body: ScoreDefBody,
    pub location: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ScoreDefBody {
    Weights(Weights),
    /// A numeric expression over attributes and the factors (`factor.*` paths).
    Formula(Expr),
}

/// Factor names a score formula can read, in slot order.
pub const FACTORS: [&str; 6] = ["propensity", "relevance", "impact", "emphasis", "uplift", "tau"];
