//! Runtime values held in attribute slots, and the static types the checker assigns.

use std::fmt;
use std::sync::Arc;

/// One attribute value. Strings are `Arc<str>` so copying a customer row into the
/// decision's slot frame bumps a reference count instead of allocating.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Num(f64),
    Str(Arc<str>),
    /// A `json` column: opaque to rules except for `exists`.
    Json(Arc<serde_json::Value>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Numeric view. A request attribute has no declared type, so a numeric string
    /// is read as a number where a number is expected.
    #[inline]
    pub fn as_num(&self) -> Option<f64> {
        match self {
            Value::Num(n) => Some(*n),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    #[inline]
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Str(s) => match &**s {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    #[inline]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A request-time attribute: JSON as sent, without a declared type.
    pub fn from_json_untyped(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => n.as_f64().map_or(Value::Null, Value::Num),
            serde_json::Value::String(s) => Value::Str(s.as_str().into()),
            other => Value::Json(Arc::new(other.clone())),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Num(n) => num_to_json(*n),
            Value::Str(s) => serde_json::Value::String(s.to_string()),
            Value::Json(j) => (**j).clone(),
        }
    }
}

/// Integral floats print as integers (`36`, not `36.0`), as the client sent them.
pub fn num_to_json(n: f64) -> serde_json::Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        serde_json::Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, serde_json::Value::Number)
    }
}

/// The checker's types. `Any` is a request attribute whose type is fixed by how it is
/// used; `Null` is the type of the literal `null`, which fits anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Bool,
    Num,
    Str,
    Json,
    Any,
    Null,
}

impl Type {
    /// The common type of two operands, if they can be compared or defaulted.
    pub fn unify(self, other: Type) -> Option<Type> {
        match (self, other) {
            (a, b) if a == b => Some(a),
            (Type::Any | Type::Null, t) | (t, Type::Any | Type::Null) => Some(t),
            _ => None,
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Type::Bool => "boolean",
            Type::Num => "number",
            Type::Str => "string",
            Type::Json => "json",
            Type::Any => "any",
            Type::Null => "null",
        })
    }
}
