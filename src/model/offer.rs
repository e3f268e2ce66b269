//! Offers: what arbiter can recommend.

use serde::{Deserialize, Serialize};

use super::{in_range, non_blank, Meta, ValidationError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OfferStatus {
    Draft,
    Active,
    Paused,
    Archived,
}

impl OfferStatus {
    pub fn name(self) -> &'static str {
        match self {
            OfferStatus::Draft => "draft",
            OfferStatus::Active => "active",
            OfferStatus::Paused => "paused",
            OfferStatus::Archived => "archived",
        }
    }
}

fn draft() -> OfferStatus {
    OfferStatus::Draft
}
fn fifty() -> f64 {
    50.0
}
fn hundred() -> f64 {
    100.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OfferSpec {
    #[schemars(length(min = 1, max = 255), regex(pattern = r"\S"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default = "draft")]
    pub status: OfferStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// 0–100: the Emphasis factor and the priority_weighted input.
    #[serde(default = "fifty")]
    #[schemars(range(min = 0, max = 100))]
    pub priority: f64,
    /// 0–100: the Impact factor.
    #[serde(default = "fifty")]
    #[schemars(range(min = 0, max = 100))]
    pub business_value: f64,
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub revenue_value: Option<f64>,
    #[serde(default)]
    pub margin: Option<f64>,
    /// 0–100, used by priority_weighted.
    #[serde(default = "hundred")]
    #[schemars(range(min = 0, max = 100))]
    pub weight: f64,
    /// Mandatory offers skip qualification rules.
    #[serde(default)]
    pub mandatory: bool,
}

impl OfferSpec {
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = Vec::new();
        non_blank(&mut errors, "name", &self.name);
        in_range(&mut errors, "priority", self.priority, 0.0, 100.0);
        in_range(&mut errors, "businessValue", self.business_value, 0.0, 100.0);
        in_range(&mut errors, "weight", self.weight, 0.0, 100.0);
        if let Some(v) = self.revenue_value {
            in_range(&mut errors, "revenueValue", v, 0.0, f64::MAX);
        }
        ValidationError::check(errors)
    }
}

/// An offer as stored and returned: its spec and the stored fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Offer {
    #[serde(flatten)]
    pub meta: Meta,
    #[serde(flatten)]
    pub spec: OfferSpec,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_json;

    #[test]
    fn tutorial_offer_parses_with_defaults() {
        let spec: OfferSpec = parse_json(
            br#"{"name": "High-yield savings", "status": "active", "category": "cross-sell",
                 "priority": 70, "businessValue": 40, "revenueValue": 40}"#,
        )
        .unwrap();
        assert_eq!(spec.weight, 100.0);
        assert!(spec.validate().is_ok());
    }

    #[test]
    fn out_of_range_priority_names_the_field() {
        let spec: OfferSpec = parse_json(br#"{"name": "x", "priority": 120}"#).unwrap();
        assert_eq!(spec.validate().unwrap_err().to_string(), "priority: must be between 0 and 100, got 120");
    }

    #[test]
    fn unknown_status_is_an_error() {
        let err = parse_json::<OfferSpec>(br#"{"name": "x", "status": "live"}"#).unwrap_err();
        assert!(err.to_string().starts_with("status: unknown variant `live`"), "{err}");
    }
}
