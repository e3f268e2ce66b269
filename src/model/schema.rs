//! Schemas describe customer data; their rows feed the Enrich node.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{non_blank, FieldError, Meta, ValidationError};
use crate::rules::{Type, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    Varchar,
    Text,
    Integer,
    Bigint,
    Decimal,
    Float,
    Boolean,
    Date,
    Timestamp,
    Json,
}

impl DataType {
    pub fn name(self) -> &'static str {
        match self {
            DataType::Varchar => "varchar",
            DataType::Text => "text",
            DataType::Integer => "integer",
            DataType::Bigint => "bigint",
            DataType::Decimal => "decimal",
            DataType::Float => "float",
            DataType::Boolean => "boolean",
            DataType::Date => "date",
            DataType::Timestamp => "timestamp",
            DataType::Json => "json",
        }
    }

    /// The rule type of a column. Dates and timestamps are ISO-8601 strings, which
    /// order correctly as strings.
    pub fn rule_type(self) -> Type {
        match self {
            DataType::Varchar | DataType::Text | DataType::Date | DataType::Timestamp => Type::Str,
            DataType::Integer | DataType::Bigint | DataType::Decimal | DataType::Float => Type::Num,
            DataType::Boolean => Type::Bool,
            DataType::Json => Type::Json,
        }
    }
}

fn varchar() -> DataType {
    DataType::Varchar
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldSpec {
    /// Letters, digits and `_`, not starting with a digit.
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub name: String,
    #[serde(default = "varchar", alias = "type")]
    pub data_type: DataType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default)]
    pub is_unique: bool,
    #[serde(default)]
    pub is_primary_key: bool,
    #[serde(default = "yes")]
    pub is_nullable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchemaSpec {
    #[schemars(length(min = 1, max = 255), regex(pattern = r"\S"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_type: Option<String>,
    #[serde(default)]
    pub fields: Vec<FieldSpec>,
}

impl SchemaSpec {
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = Vec::new();
        non_blank(&mut errors, "name", &self.name);
        for (i, f) in self.fields.iter().enumerate() {
            let path = format!("fields[{i}].name");
            let ident = f.name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && f.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ident {
                errors.push(FieldError::new(
                    path,
                    format!("`{}` must be letters, digits and _ (not starting with a digit)", f.name),
                ));
            } else if self.fields[..i].iter().any(|g| g.name == f.name) {
                errors.push(FieldError::new(path, format!("duplicate field `{}`", f.name)));
            }
        }
        ValidationError::check(errors)
    }
}

/// A schema as stored and returned: its spec and the stored fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Schema {
    #[serde(flatten)]
    pub meta: Meta,
    #[serde(flatten)]
    pub spec: SchemaSpec,
}

/// One row, in the schema's field order.
pub type Row = Arc<[Value]>;

/// Rows of one schema keyed by its unique field. Shared between the catalog (which loads
/// rows) and the compiled flows (which read them), so a row loaded after publish is seen
/// by the next decision without recompiling.
pub type Table = dashmap::DashMap<Box<str>, Row>;

impl Schema {
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.spec.fields.iter().position(|f| f.name == name)
    }

    /// The lookup key: the first unique field, else the first primary-key field.
    pub fn key_field(&self) -> Option<usize> {
        let fields = &self.spec.fields;
        fields.iter().position(|f| f.is_unique).or_else(|| fields.iter().position(|f| f.is_primary_key))
    }

    /// Validates one JSON row against the fields; returns its key and values.
    /// Errors are prefixed with `prefix` (e.g. `rows[3]`).
    pub fn parse_row(&self, prefix: &str, row: &serde_json::Value) -> Result<(String, Row), ValidationError> {
        let serde_json::Value::Object(map) = row else {
            return Err(ValidationError::one(prefix, "must be an object of column values"));
        };
        let key_field = self.key_field().ok_or_else(|| {
            ValidationError::one(prefix, format!("schema `{}` has no isUnique field to key rows by", self.spec.name))
        })?;
        let mut errors = Vec::new();
        for name in map.keys() {
            if self.field_index(name).is_none() {
                errors.push(FieldError::new(
                    format!("{prefix}.{name}"),
                    format!("unknown column for schema `{}`", self.spec.name),
                ));
            }
        }
        let mut values = Vec::with_capacity(self.spec.fields.len());
        for field in &self.spec.fields {
            let path = format!("{prefix}.{}", field.name);
            let v = map.get(&field.name).unwrap_or(&serde_json::Value::Null);
            match convert(field.data_type, v) {
                Ok(Value::Null) if !field.is_nullable => errors.push(FieldError::new(path, "must not be null")),
                Ok(value) => values.push(value),
                Err(msg) => errors.push(FieldError::new(path, msg)),
            }
        }
        ValidationError::check(errors)?;
        let key = match &values[key_field] {
            Value::Str(s) => s.to_string(),
            Value::Num(n) => crate::rules::value::num_to_json(*n).to_string(),
            _ => {
                let name = &self.spec.fields[key_field].name;
                return Err(ValidationError::one(format!("{prefix}.{name}"), "the key column must have a value"));
            }
        };
        Ok((key, values.into()))
    }
}

/// Converts one JSON cell to the column's type.
fn convert(ty: DataType, v: &serde_json::Value) -> Result<Value, String> {
    use serde_json::Value as J;
    let wrong = || format!("expected {}, got {}", ty.name(), json_kind(v));
    Ok(match (ty, v) {
        (_, J::Null) => Value::Null,
        (DataType::Json, v) => Value::Json(Arc::new(v.clone())),
        (DataType::Varchar | DataType::Text, J::String(s)) => Value::Str(s.as_str().into()),
        (DataType::Date, J::String(s)) if is_date(s) => Value::Str(s.as_str().into()),
        (DataType::Timestamp, J::String(s)) if s.len() > 10 && s.get(..10).is_some_and(is_date) => {
            Value::Str(s.as_str().into())
        }
        (DataType::Boolean, J::Bool(b)) => Value::Bool(*b),
        (DataType::Integer | DataType::Bigint, J::Number(n)) => integer(ty, n.as_f64())?,
        (DataType::Decimal | DataType::Float, J::Number(n)) => Value::Num(n.as_f64().ok_or_else(wrong)?),
        (DataType::Decimal | DataType::Float, J::String(s)) => {
            Value::Num(s.trim().parse::<f64>().ok().filter(|x| x.is_finite()).ok_or_else(wrong)?)
        }
        _ => return Err(wrong()),
    })
}

/// Integers are kept as f64, so they must be whole and within the column's range (a
/// `bigint` beyond ±2^53 would silently lose digits).
fn integer(ty: DataType, x: Option<f64>) -> Result<Value, String> {
    let limit = if ty == DataType::Integer { f64::from(i32::MAX) } else { 9_007_199_254_740_992.0 };
    match x {
        Some(x) if x.fract() != 0.0 => Err(format!("expected {}, got a fraction", ty.name())),
        Some(x) if x.abs() <= limit => Ok(Value::Num(x)),
        _ => Err(format!("expected {} between -{limit} and {limit}", ty.name())),
    }
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

pub(crate) fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        let spec: SchemaSpec = serde_json::from_value(json!({
            "name": "customer",
            "fields": [
                {"name": "customer_id", "dataType": "varchar", "isUnique": true},
                {"name": "tenureMonths", "dataType": "integer"},
                {"name": "hasChecking", "type": "boolean"},
                {"name": "avgMonthlyBalance", "dataType": "decimal"}
            ]
        }))
        .unwrap();
        Schema { meta: Meta::new(), spec }
    }

    #[test]
    fn parses_a_row_in_field_order() {
        let (key, row) = schema()
            .parse_row("rows[0]", &json!({"customer_id": "c1", "tenureMonths": 36, "avgMonthlyBalance": "1200.50"}))
            .unwrap();
        assert_eq!(key, "c1");
        assert_eq!(row[1], Value::Num(36.0));
        assert_eq!(row[2], Value::Null);
        assert_eq!(row[3], Value::Num(1200.5));
    }

    #[test]
    fn names_unknown_columns_and_wrong_types() {
        let err =
            schema().parse_row("rows[3]", &json!({"customer_id": "c1", "tenureMonths": "x", "colour": 1})).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("rows[3].colour: unknown column"), "{text}");
        assert!(text.contains("rows[3].tenureMonths: expected integer, got string"), "{text}");
    }

    #[test]
    fn a_multibyte_character_in_a_timestamp_is_an_error_not_a_panic() {
        let spec: SchemaSpec = serde_json::from_value(json!({"name": "e", "fields": [
            {"name": "id", "isUnique": true}, {"name": "ts", "dataType": "timestamp"}]}))
        .unwrap();
        let schema = Schema { meta: Meta::new(), spec };
        let err = schema.parse_row("rows[0]", &json!({"id": "a", "ts": "2024-01-0é1T00"})).unwrap_err();
        assert!(err.to_string().contains("rows[0].ts: expected timestamp"), "{err}");
    }

    #[test]
    fn unknown_data_type_is_an_error() {
        let err = crate::model::parse_json::<SchemaSpec>(br#"{"name":"c","fields":[{"name":"a","dataType":"money"}]}"#)
            .unwrap_err();
        assert!(err.to_string().starts_with("fields[0].dataType: unknown variant `money`"), "{err}");
    }
}
