//! What a rule author wrote: items with byte spans. Expressions are the shared rule IR
//! (`rules::ir::Expr`), in which `let` names and score factors are still bare names
//! (`ExprKind::Name`) until `dsl::check` resolves them.

use crate::rules::ir::{Expr, Span};

#[derive(Debug, Clone, PartialEq)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Let(Let),
    Rule(Rule),
    Score(Score),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Let {
    pub name: String,
    pub name_span: Span,
    pub body: Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub name_span: Span,
    pub target: Target,
    pub target_span: Span,
    pub stage: StageName,
    pub multiplier: Option<(f64, Span)>,
    pub priority: i64,
    pub body: Expr,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Global,
    OfferName(String),
    OfferId(String),
    Category(String),
    Channel(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageName {
    Eligibility,
    Fit,
    Match,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub flow: String,
    pub flow_span: Span,
    pub channel: Option<(String, Span)>,
    pub body: ScoreBody,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ScoreBody {
    /// `weights propensity 0.4, …`: (factor, value, span of the pair).
    Weights(Vec<(Factor, f64, Span)>),
    Formula(Expr),
}

/// The PRIE-U factors a score block can weight or a formula can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    Propensity,
    Relevance,
    Impact,
    Emphasis,
    Uplift,
}

impl Factor {
    pub fn name(self) -> &'static str {
        match self {
            Factor::Propensity => "propensity",
            Factor::Relevance => "relevance",
            Factor::Impact => "impact",
            Factor::Emphasis => "emphasis",
            Factor::Uplift => "uplift",
        }
    }
}
