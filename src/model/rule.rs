//! Qualification rules ("decisioning gates") in the platform's JSON form.

use serde::{Deserialize, Serialize};

use super::{in_range, non_blank, parse_value, FieldError, Meta, ValidationError};
use crate::rules::json::Operator;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleType {
    AttributeCondition,
    SegmentRequired,
    PropensityThreshold,
    RecencyCheck,
    MetricCondition,
    OfferAttribute,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Global,
    Offer,
    Category,
    Channel,
    Segment,
    Subcategory,
    Creative,
    Placement,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Offer => "offer",
            Scope::Category => "category",
            Scope::Channel => "channel",
            Scope::Segment => "segment",
            Scope::Subcategory => "subcategory",
            Scope::Creative => "creative",
            Scope::Placement => "placement",
        }
    }
}

/// Eligibility and fit remove an offer; match multiplies its score (`fitMultiplier`);
/// ranking-stage rules are stored but not applied, as on the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    #[serde(alias = "qualification")]
    Eligibility,
    #[serde(alias = "applicability")]
    Fit,
    #[serde(alias = "suitability")]
    Match,
    Ranking,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Eligibility => "eligibility",
            Stage::Fit => "fit",
            Stage::Match => "match",
            Stage::Ranking => "ranking",
        }
    }

    pub fn is_hard(self) -> bool {
        matches!(self, Stage::Eligibility | Stage::Fit)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleStatus {
    Draft,
    Active,
    Paused,
    Archived,
}

fn active() -> RuleStatus {
    RuleStatus::Active
}
fn global() -> Scope {
    Scope::Global
}
fn eligibility() -> Stage {
    Stage::Eligibility
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleSpec {
    #[schemars(length(min = 1, max = 255), regex(pattern = r"\S"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default = "active")]
    pub status: RuleStatus,
    pub rule_type: RuleType,
    #[serde(default = "global")]
    pub scope: Scope,
    #[serde(default)]
    pub scope_id: Option<String>,
    #[serde(default = "eligibility")]
    pub stage: Stage,
    /// Higher runs first.
    #[serde(default)]
    pub priority: i64,
    /// For `attribute_condition`: an [`AttributeCondition`].
    #[schemars(with = "super::RequestOnly<AttributeCondition>")]
    pub config: serde_json::Value,
}

/// `config` of an `attribute_condition` rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttributeCondition {
    pub attribute: String,
    pub operator: Operator,
    #[serde(default)]
    pub value: Option<serde_json::Value>,
    /// Match stage only: the score multiplier when the condition fails (default 0.5).
    #[serde(default)]
    pub multiplier: Option<f64>,
}

pub const DEFAULT_MATCH_MULTIPLIER: f64 = 0.5;

impl RuleSpec {
    /// Structural validation; attribute names and types are checked against the
    /// tenant's schemas by the catalog, which knows them.
    pub fn validate(&self) -> Result<AttributeCondition, ValidationError> {
        let mut errors = Vec::new();
        non_blank(&mut errors, "name", &self.name);
        if self.rule_type != RuleType::AttributeCondition {
            let t = serde_json::to_value(self.rule_type).unwrap_or_default();
            errors.push(FieldError::new("ruleType", format!("{t} is not supported yet; use \"attribute_condition\"")));
        }
        match self.scope {
            Scope::Global | Scope::Offer | Scope::Category | Scope::Channel => {}
            other => errors.push(FieldError::new(
                "scope",
                format!("\"{}\" is not supported yet; use global, offer, category or channel", other.name()),
            )),
        }
        let blank_id = self.scope_id.as_deref().is_none_or(|s| s.trim().is_empty());
        if self.scope != Scope::Global && blank_id {
            errors.push(FieldError::new("scopeId", format!("is required when scope is \"{}\"", self.scope.name())));
        }
        ValidationError::check(errors)?;
        let cond: AttributeCondition = parse_value("config", &self.config)?;
        if let Some(m) = cond.multiplier {
            let mut errors = Vec::new();
            in_range(&mut errors, "config.multiplier", m, 0.0, 1.0);
            ValidationError::check(errors)?;
        }
        Ok(cond)
    }
}

/// A qualification rule as stored and returned: its spec and the stored fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QualificationRule {
    #[serde(flatten)]
    pub meta: Meta,
    #[serde(flatten)]
    pub spec: RuleSpec,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_json;

    #[test]
    fn legacy_stage_names_map() {
        let spec: RuleSpec = parse_json(
            br#"{"name":"r","ruleType":"attribute_condition","stage":"qualification",
                 "config":{"attribute":"customer.a","operator":">=","value":1}}"#,
        )
        .unwrap();
        assert_eq!(spec.stage, Stage::Eligibility);
        assert_eq!(spec.validate().unwrap().operator, Operator::Gte);
    }

    #[test]
    fn unknown_operator_names_the_path() {
        let spec: RuleSpec = parse_json(
            br#"{"name":"r","ruleType":"attribute_condition","config":{"attribute":"customer.a","operator":"like","value":1}}"#,
        )
        .unwrap();
        let err = spec.validate().unwrap_err().to_string();
        assert!(err.starts_with("config.operator: unknown variant `like`"), "{err}");
    }

    #[test]
    fn scoped_rule_needs_scope_id() {
        let spec: RuleSpec = parse_json(
            br#"{"name":"r","ruleType":"attribute_condition","scope":"offer","config":{"attribute":"a","operator":"exists"}}"#,
        )
        .unwrap();
        assert_eq!(spec.validate().unwrap_err().to_string(), "scopeId: is required when scope is \"offer\"");
    }

    #[test]
    fn unsupported_rule_type_says_so() {
        let spec: RuleSpec =
            parse_json(br#"{"name":"r","ruleType":"segment_required","config":{"requiredSegments":[]}}"#).unwrap();
        let err = spec.validate().unwrap_err().to_string();
        assert!(err.contains("ruleType: \"segment_required\" is not supported yet"), "{err}");
    }
}
