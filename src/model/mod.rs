//! The domain model: what clients send and what arbiter stores, as serde types with
//! camelCase JSON, plus validation that names the JSON path of every problem.

pub mod channel;
pub mod flow;
pub mod offer;
pub mod policy;
pub mod rule;
pub mod schema;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use channel::{Channel, ChannelSpec};
pub use flow::{DecisionFlow, DraftConfig, FlowNode, FlowSpec, NodeKind};
pub use offer::{Offer, OfferSpec, OfferStatus};
pub use rule::{QualificationRule, RuleSpec, Stage};
pub use schema::{DataType, Schema, SchemaSpec};

/// One problem with one field of a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError { path: path.into(), message: message.into() }
    }
}

/// Every problem found in a request body, each with its JSON path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", render(.0))]
pub struct ValidationError(pub Vec<FieldError>);

fn render(errors: &[FieldError]) -> String {
    let parts: Vec<String> = errors
        .iter()
        .map(|e| if e.path.is_empty() { e.message.clone() } else { format!("{}: {}", e.path, e.message) })
        .collect();
    parts.join("; ")
}

impl ValidationError {
    pub fn one(path: impl Into<String>, message: impl Into<String>) -> ValidationError {
        ValidationError(vec![FieldError::new(path, message)])
    }

    /// `Ok(())` when nothing was found.
    pub fn check(errors: Vec<FieldError>) -> Result<(), ValidationError> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationError(errors))
        }
    }
}

/// Parses a JSON body, reporting the path of a field with the wrong shape.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ValidationError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| path_error("", e))?;
    de.end().map_err(|e| ValidationError::one("", e.to_string()))?;
    Ok(value)
}

/// Parses an already-decoded JSON value found at `prefix` in the request.
pub fn parse_value<T: DeserializeOwned>(prefix: &str, value: &serde_json::Value) -> Result<T, ValidationError> {
    serde_path_to_error::deserialize(value).map_err(|e| path_error(prefix, e))
}

fn path_error(prefix: &str, e: serde_path_to_error::Error<serde_json::Error>) -> ValidationError {
    let inner = e.path().to_string();
    let path = match (prefix.is_empty(), inner.as_str()) {
        (_, ".") => prefix.to_string(),
        (true, p) => p.to_string(),
        (false, p) if p.starts_with('[') => format!("{prefix}{p}"),
        (false, p) => format!("{prefix}.{p}"),
    };
    ValidationError::one(path, e.into_inner().to_string())
}

/// Maps a checker error on a lowered JSON condition to the config key it is about.
pub fn condition_error(prefix: &str, e: &crate::rules::CheckError) -> FieldError {
    let field = if e.code == "E201" { "attribute" } else { "value" };
    FieldError::new(format!("{prefix}.{field}"), e.to_string())
}

/// Pushes an error unless `lo <= value <= hi`.
pub(crate) fn in_range(errors: &mut Vec<FieldError>, path: &str, value: f64, lo: f64, hi: f64) {
    if !(lo..=hi).contains(&value) {
        errors.push(FieldError::new(path, format!("must be between {lo} and {hi}, got {value}")));
    }
}

/// Pushes an error when a required text field is blank or too long.
pub(crate) fn non_blank(errors: &mut Vec<FieldError>, path: &str, value: &str) {
    if value.trim().is_empty() {
        errors.push(FieldError::new(path, "must not be empty"));
    } else if value.len() > 255 {
        errors.push(FieldError::new(path, format!("must be at most 255 characters, got {}", value.len())));
    }
}

/// Fields every stored entity carries.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    pub id: String,
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
}

impl Meta {
    pub fn new() -> Meta {
        let now = crate::ids::now_rfc3339();
        Meta { id: crate::ids::new_id(), version: 1, created_at: now.clone(), updated_at: now }
    }

    /// Marks an update: bumps the version and the update time.
    pub fn touch(&mut self) {
        self.version += 1;
        self.updated_at = crate::ids::now_rfc3339();
    }
}

impl Default for Meta {
    fn default() -> Self {
        Self::new()
    }
}
