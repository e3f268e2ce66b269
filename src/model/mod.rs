//! The domain model: what clients send and what arbiter stores, as serde types with
//! camelCase JSON, plus validation that names the JSON path of every problem.

pub mod channel;
pub mod flow;
pub mod journey;
pub mod offer;
pub mod outcome;
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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

/// The one place serde's errors become field errors. An unknown field is reported at its
/// own path with a did-you-mean from the fields serde expected:
/// `draftConfig.nodes[4].config.formla: unknown field (did you mean `formula`?)`.
fn path_error(prefix: &str, e: serde_path_to_error::Error<serde_json::Error>) -> ValidationError {
    let path = join_path(prefix, &e.path().to_string());
    let message = e.into_inner().to_string();
    match unknown_field(&message) {
        Some((field, expected)) => {
            // serde_path_to_error's path already ends at the unknown key (`config.operatr`,
            // not `config`); append it only if a future version stops doing so.
            let named = path == field || path.ends_with(&format!(".{field}"));
            let path = if named { path } else { join_path(&path, field) };
            unknown_field_error(path, field, &expected)
        }
        None => ValidationError::one(path, message),
    }
}

/// `path: unknown field (did you mean `x`?)`, or the expected names when none is close.
pub fn unknown_field_error(path: String, field: &str, expected: &[&str]) -> ValidationError {
    let hint = match crate::rules::check::did_you_mean(field, expected.iter().copied()) {
        Some(best) => format!(" (did you mean `{best}`?)"),
        None if expected.is_empty() => " (this object takes no fields)".to_string(),
        None => {
            let names: Vec<String> = expected.iter().map(|n| format!("`{n}`")).collect();
            format!("; expected one of {}", names.join(", "))
        }
    };
    ValidationError::one(path, format!("unknown field{hint}"))
}

/// `prefix` and a serde_path_to_error path (`.` is the root) joined as a JSON path.
fn join_path(prefix: &str, inner: &str) -> String {
    match (prefix.is_empty(), inner) {
        (_, "." | "") => prefix.to_string(),
        (true, p) => p.to_string(),
        (false, p) if p.starts_with('[') => format!("{prefix}{p}"),
        (false, p) => format!("{prefix}.{p}"),
    }
}

/// Splits serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a` or
/// `b`", or "there are no fields", followed by " at line L column C" from serde_json)
/// into the field and the expected names.
fn unknown_field(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let rest = rest.rsplit_once(" at line ").map_or(rest, |(head, _)| head);
    let expected = rest.split('`').skip(1).step_by(2).collect();
    Some((field, expected))
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

/// The schema of a field kept as raw JSON and parsed later by another field (`config` by
/// `type`): `T` for a request, any JSON in a response (the entity returns what was sent).
pub struct RequestOnly<T>(std::marker::PhantomData<T>);

impl<T: schemars::JsonSchema> schemars::JsonSchema for RequestOnly<T> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("RequestOnly_{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        if generator.contract().is_deserialize() {
            generator.subschema_for::<T>()
        } else {
            schemars::Schema::default()
        }
    }
}

/// Fields every stored entity carries.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, schemars::JsonSchema)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        formula: Option<u32>,
        max_candidates: Option<u32>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        nodes: Vec<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Empty {}

    #[test]
    fn unknown_fields_name_their_full_path_with_a_suggestion() {
        let cases: [(&str, &str, &str); 5] = [
            ("nested", r#"{"nodes":[{}, {"formla": 1}]}"#, "nodes[1].formla: unknown field (did you mean `formula`?)"),
            ("top level", r#"{"nodez": []}"#, "nodez: unknown field (did you mean `nodes`?)"),
            (
                "no close name",
                r#"{"nodes":[{"zzzzzzzz": 1}]}"#,
                "nodes[0].zzzzzzzz: unknown field; expected one of `formula`, `maxCandidates`",
            ),
            (
                "with a prefix",
                r#"{"nodes":[{"maxCandidate": 1}]}"#,
                "cfg.nodes[0].maxCandidate: unknown field (did you mean `maxCandidates`?)",
            ),
            ("parse_json", r#"{"nodes":[],"node":1}"#, "node: unknown field (did you mean `nodes`?)"),
        ];
        for (name, body, expected) in cases {
            let err = if name == "with a prefix" {
                parse_value::<Outer>("cfg", &serde_json::from_str(body).unwrap()).unwrap_err()
            } else if name == "parse_json" {
                parse_json::<Outer>(body.as_bytes()).unwrap_err()
            } else {
                parse_value::<Outer>("", &serde_json::from_str(body).unwrap()).unwrap_err()
            };
            assert_eq!(err.to_string(), expected, "case `{name}`");
        }
        let err = parse_value::<Empty>("config", &serde_json::json!({"a": 1})).unwrap_err();
        assert_eq!(err.to_string(), "config.a: unknown field (this object takes no fields)");
    }
}
