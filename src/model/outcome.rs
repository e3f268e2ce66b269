//! Outcome types: what a `/respond` can report, and whether it counts as positive
//! (propensity) — the platform's system types. A flow's `conversionOutcomes` names some
//! of them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Classification {
    Positive,
    Negative,
    Neutral,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutcomeCategory {
    Impression,
    Response,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeType {
    pub key: &'static str,
    pub name: &'static str,
    pub classification: Classification,
    pub category: OutcomeCategory,
    pub is_system: bool,
    pub ordinal: u32,
}

use Classification::{Negative, Neutral, Positive};
use OutcomeCategory::{Impression, Response};

/// The platform's system outcome types, in ordinal order.
const ROWS: [(&str, &str, Classification, OutcomeCategory); 10] = [
    ("impression", "Impression", Neutral, Impression),
    ("click", "Click", Positive, Response),
    ("accept", "Accept", Positive, Response),
    ("convert", "Convert", Positive, Response),
    ("dismiss", "Dismiss", Negative, Response),
    ("not_interested", "Not interested", Negative, Response),
    ("not_presented", "Not presented", Neutral, Impression),
    ("requested_info", "Requested info", Positive, Response),
    ("expired", "Expired", Neutral, Impression),
    ("deferred", "Deferred", Neutral, Response),
];

/// The platform's system outcome types.
pub fn outcome_types() -> Vec<OutcomeType> {
    ROWS.iter()
        .enumerate()
        .map(|(i, &(key, name, classification, category))| OutcomeType {
            key,
            name,
            classification,
            category,
            is_system: true,
            ordinal: i as u32,
        })
        .collect()
}

/// An outcome type's ordinal (its bit in a set of outcomes), without building the list.
pub fn ordinal(key: &str) -> Option<usize> {
    ROWS.iter().position(|r| r.0 == key)
}

/// Whether an outcome type is of the impression kind (`impression`, `not_presented`,
/// `expired`): what happened to the offer, not what the customer did.
pub fn is_impression(key: &str) -> bool {
    ROWS.iter().any(|r| r.0 == key && r.3 == OutcomeCategory::Impression)
}

/// The classification of an outcome type (neutral for an unknown one).
pub fn classification(key: &str) -> Classification {
    ordinal(key).map_or(Neutral, |i| ROWS[i].2)
}
