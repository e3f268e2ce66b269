//! The JSON front-end: lowers a platform condition `{attribute, operator, value}` into
//! the IR. Used by `attribute_condition` qualification rules and Filter node conditions.
//!
//! Comparison rules (documented for rule authors in README):
//! * the attribute's type decides: numbers compare numerically, strings by byte order
//!   (so ISO dates order correctly), booleans only with `eq`/`neq`;
//! * a JSON string that reads as a number (or `"true"`/`"false"`) is accepted where the
//!   attribute is a number (or boolean); any other mismatch is an error at create time;
//! * `in`/`not_in` take an array; `contains`/`starts_with` take a string;
//! * `exists`/`not_exists` (`is_not_null`/`is_null`) ignore `value`.

use serde::{Deserialize, Serialize};

use super::ir::{BinOp, Expr, ExprKind, Func, Path, Span};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Operator {
    #[serde(rename = "eq", alias = "=", alias = "==")]
    Eq,
    #[serde(rename = "neq", alias = "!=", alias = "ne")]
    Neq,
    #[serde(rename = "gt", alias = ">")]
    Gt,
    #[serde(rename = "gte", alias = ">=")]
    Gte,
    #[serde(rename = "lt", alias = "<")]
    Lt,
    #[serde(rename = "lte", alias = "<=")]
    Lte,
    #[serde(rename = "in")]
    In,
    #[serde(rename = "not_in")]
    NotIn,
    #[serde(rename = "contains")]
    Contains,
    #[serde(rename = "starts_with")]
    StartsWith,
    #[serde(rename = "exists", alias = "is_not_null")]
    Exists,
    #[serde(rename = "not_exists", alias = "is_null")]
    NotExists,
    /// Listed by the platform for Filter nodes; refused with a clear message (no regex
    /// engine on the decision path).
    #[serde(rename = "regex")]
    Regex,
}

impl Operator {
    pub fn name(self) -> &'static str {
        match self {
            Operator::Eq => "eq",
            Operator::Neq => "neq",
            Operator::Gt => "gt",
            Operator::Gte => "gte",
            Operator::Lt => "lt",
            Operator::Lte => "lte",
            Operator::In => "in",
            Operator::NotIn => "not_in",
            Operator::Contains => "contains",
            Operator::StartsWith => "starts_with",
            Operator::Exists => "exists",
            Operator::NotExists => "not_exists",
            Operator::Regex => "regex",
        }
    }

    /// Whether a missing attribute is decided by the operator itself.
    pub fn tests_presence(self) -> bool {
        matches!(self, Operator::Exists | Operator::NotExists)
    }
}

/// Which part of the condition was wrong, so the caller can name the JSON field.
#[derive(Debug, Clone, PartialEq)]
pub struct LowerError {
    pub field: &'static str,
    pub message: String,
}

fn err(field: &'static str, message: impl Into<String>) -> LowerError {
    LowerError { field, message: message.into() }
}

/// Lowers one condition. The result is `null` (unknown) when the attribute is missing,
/// except for `exists`/`not_exists`; callers decide what unknown means (a qualification
/// rule passes, a filter condition does not).
pub fn lower(attribute: &str, op: Operator, value: Option<&serde_json::Value>) -> Result<Expr, LowerError> {
    let path = Path::parse(attribute).ok_or_else(|| {
        err(
            "attribute",
            format!("`{attribute}` is not an attribute; use customer.<field>, attributes.<name>, offer.<field>, request.<field> or channel.<field>"),
        )
    })?;
    let attr = Expr::attr(path);
    let value = value.filter(|v| !v.is_null());
    let kind = match op {
        Operator::Exists => ExprKind::Call(Func::Exists, vec![attr]),
        Operator::NotExists => ExprKind::Not(Box::new(Expr::new(ExprKind::Call(Func::Exists, vec![attr]), Span::NONE))),
        Operator::Regex => return Err(err("operator", "`regex` is not supported; use contains or starts_with")),
        Operator::In | Operator::NotIn => {
            let items = list(value)?;
            ExprKind::In { needle: Box::new(attr), items, negated: op == Operator::NotIn }
        }
        Operator::Contains | Operator::StartsWith => {
            let func = if op == Operator::Contains { Func::Contains } else { Func::StartsWith };
            match value {
                Some(serde_json::Value::String(s)) => ExprKind::Call(func, vec![attr, literal_str(s)]),
                _ => return Err(err("value", format!("`{}` needs a string value", op.name()))),
            }
        }
        _ => {
            let lit = scalar(value.ok_or_else(|| err("value", format!("`{}` needs a value", op.name())))?)?;
            return Ok(Expr::binary(binop(op), attr, lit));
        }
    };
    Ok(Expr::new(kind, Span::NONE))
}

fn binop(op: Operator) -> BinOp {
    match op {
        Operator::Eq => BinOp::Eq,
        Operator::Neq => BinOp::Ne,
        Operator::Gt => BinOp::Gt,
        Operator::Gte => BinOp::Ge,
        Operator::Lt => BinOp::Lt,
        _ => BinOp::Le,
    }
}

fn literal_str(s: &str) -> Expr {
    Expr::new(ExprKind::Str(s.to_string()), Span::NONE)
}

fn scalar(v: &serde_json::Value) -> Result<Expr, LowerError> {
    let kind = match v {
        serde_json::Value::Bool(b) => ExprKind::Bool(*b),
        serde_json::Value::Number(n) => ExprKind::Num(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => ExprKind::Str(s.clone()),
        serde_json::Value::Array(_) => return Err(err("value", "an array needs the `in` or `not_in` operator")),
        _ => return Err(err("value", "must be a string, number or boolean")),
    };
    Ok(Expr::new(kind, Span::NONE))
}

fn list(value: Option<&serde_json::Value>) -> Result<Vec<Expr>, LowerError> {
    match value {
        Some(serde_json::Value::Array(items)) => items.iter().map(scalar).collect(),
        _ => Err(err("value", "`in` and `not_in` need an array value, e.g. [\"premium\", \"private\"]")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn symbolic_aliases_parse() {
        for (text, op) in [("\">=\"", Operator::Gte), ("\"==\"", Operator::Eq), ("\"!=\"", Operator::Neq)] {
            assert_eq!(serde_json::from_str::<Operator>(text).unwrap(), op);
        }
    }

    #[test]
    fn in_requires_an_array() {
        let e = lower("customer.tier", Operator::In, Some(&json!("premium"))).unwrap_err();
        assert_eq!(e.field, "value");
    }

    #[test]
    fn bad_attribute_names_the_field() {
        let e = lower("cust.tier", Operator::Eq, Some(&json!(1))).unwrap_err();
        assert_eq!(e.field, "attribute");
    }
}
