//! Contact policies: limits on how often a customer is contacted, evaluated by the
//! `contact_policy` node before scoring.
//!
//! The body's `config` is free-form JSON on the wire (as on the platform) and is parsed
//! here into a typed [`PolicyRule`] per `ruleType`, with unknown keys refused so a typo
//! (`maxPerMoth`) is an error rather than a policy that silently never blocks.

use serde::{Deserialize, Serialize};

use super::{non_blank, parse_value, FieldError, Meta, ValidationError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyType {
    FrequencyCap,
    CustomerTotalCap,
    Cooldown,
    AllowOverride,
}

impl PolicyType {
    pub fn name(self) -> &'static str {
        match self {
            PolicyType::FrequencyCap => "frequency_cap",
            PolicyType::CustomerTotalCap => "customer_total_cap",
            PolicyType::Cooldown => "cooldown",
            PolicyType::AllowOverride => "allow_override",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicyScope {
    Global,
    Offer,
    Category,
    Channel,
}

impl PolicyScope {
    pub fn name(self) -> &'static str {
        match self {
            PolicyScope::Global => "global",
            PolicyScope::Offer => "offer",
            PolicyScope::Category => "category",
            PolicyScope::Channel => "channel",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicyStatus {
    Draft,
    #[default]
    Active,
    Paused,
    Archived,
}

/// A UTC calendar period: a day from 00:00, an ISO week from Monday 00:00, a month from
/// the 1st 00:00.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Daily,
    Weekly,
    Monthly,
}

impl Period {
    pub const ALL: [Period; 3] = [Period::Daily, Period::Weekly, Period::Monthly];

    pub fn name(self) -> &'static str {
        match self {
            Period::Daily => "day",
            Period::Weekly => "week",
            Period::Monthly => "month",
        }
    }
}

/// Active policies per tenant: each decision tracks them as bits of a `u64`, so a
/// candidate is checked against all of them in a few instructions.
pub const MAX_ACTIVE_POLICIES: usize = 64;

/// Contacts are kept 62 days (`tenant::learning`); a longer cooldown could not be honoured.
pub const MAX_COOLDOWN_HOURS: f64 = 62.0 * 24.0;

fn fifty() -> u32 {
    50
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContactPolicySpec {
    #[schemars(length(min = 1, max = 255), regex(pattern = r"\S"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub status: PolicyStatus,
    pub rule_type: PolicyType,
    /// Defaults by rule type: `global` for `customer_total_cap`, `offer` otherwise (the
    /// platform's default).
    #[serde(default)]
    pub scope: Option<PolicyScope>,
    #[serde(default)]
    pub scope_id: Option<String>,
    /// By `ruleType`: caps (`maxPerDay`, …, or `maxTotal` with `periodType`), a cooldown
    /// (`cooldownHours`), or nothing for `allow_override`.
    #[serde(default)]
    #[schemars(with = "super::RequestOnly<PolicyConfig>")]
    pub config: serde_json::Value,
    /// Higher runs first (0–100).
    #[serde(default = "fifty")]
    #[schemars(range(max = 100))]
    pub priority: u32,
}

/// What a policy does, typed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PolicyRule {
    /// At most this many contacts per day, week and month (`None`: no cap on that period).
    Cap([Option<u32>; 3]),
    /// No contact within this many hours of the last one.
    Cooldown { hours: f64 },
    /// Exempts matching offers from every blocking policy.
    AllowOverride,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CapConfig {
    max_per_day: Option<u32>,
    max_per_week: Option<u32>,
    max_per_month: Option<u32>,
    max_total: Option<u32>,
    period_type: Option<Period>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CooldownConfig {
    cooldown_hours: f64,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct EmptyConfig {}

/// The API description's union of the policy configs.
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum PolicyConfig {
    Cap(CapConfig),
    Cooldown(CooldownConfig),
    AllowOverride(EmptyConfig),
}

impl ContactPolicySpec {
    pub fn scope(&self) -> PolicyScope {
        self.scope.unwrap_or(match self.rule_type {
            PolicyType::CustomerTotalCap => PolicyScope::Global,
            _ => PolicyScope::Offer,
        })
    }

    /// Checks the fields and parses `config`; the typed rule on success.
    pub fn validate(&self) -> Result<PolicyRule, ValidationError> {
        let mut errors = Vec::new();
        non_blank(&mut errors, "name", &self.name);
        if self.priority > 100 {
            errors.push(FieldError::new("priority", format!("must be between 0 and 100, got {}", self.priority)));
        }
        let scope = self.scope();
        match (scope, self.scope_id.as_deref().map(str::trim)) {
            (PolicyScope::Global, Some(id)) if !id.is_empty() => {
                errors.push(FieldError::new("scopeId", "must be omitted for a global policy"))
            }
            (PolicyScope::Global, _) => {}
            (s, None | Some("")) => {
                errors.push(FieldError::new("scopeId", format!("is required for scope `{}`", s.name())))
            }
            _ => {}
        }
        if self.rule_type == PolicyType::CustomerTotalCap && scope != PolicyScope::Global {
            errors.push(FieldError::new("scope", "customer_total_cap counts every contact, so its scope is `global`"));
        }
        let rule = self.rule(&mut errors);
        ValidationError::check(errors)?;
        Ok(rule.expect("a config error was reported above"))
    }

    fn rule(&self, errors: &mut Vec<FieldError>) -> Option<PolicyRule> {
        let config = if self.config.is_null() { serde_json::json!({}) } else { self.config.clone() };
        let parsed = match self.rule_type {
            PolicyType::FrequencyCap | PolicyType::CustomerTotalCap => {
                parse_value::<CapConfig>("config", &config).and_then(|c| cap(self.rule_type, c))
            }
            PolicyType::Cooldown => parse_value::<CooldownConfig>("config", &config).and_then(|c| {
                if c.cooldown_hours.is_finite() && c.cooldown_hours > 0.0 && c.cooldown_hours <= MAX_COOLDOWN_HOURS {
                    Ok(PolicyRule::Cooldown { hours: c.cooldown_hours })
                } else {
                    Err(ValidationError::one(
                        "config.cooldownHours",
                        format!("must be a number of hours above 0 and at most {MAX_COOLDOWN_HOURS} (62 days, how long contacts are kept)"),
                    ))
                }
            }),
            PolicyType::AllowOverride => parse_value::<EmptyConfig>("config", &config).map(|_| PolicyRule::AllowOverride),
        };
        parsed.map_err(|e| errors.extend(e.0)).ok()
    }
}

/// `maxPerDay/Week/Month`, or `maxTotal` with `periodType`; at least one limit.
fn cap(kind: PolicyType, c: CapConfig) -> Result<PolicyRule, ValidationError> {
    let mut limits = [c.max_per_day, c.max_per_week, c.max_per_month];
    match (c.max_total, c.period_type) {
        (Some(max), Some(period)) => {
            let i = Period::ALL.iter().position(|p| *p == period).expect("listed");
            limits[i] = Some(limits[i].map_or(max, |m| m.min(max)));
        }
        (Some(_), None) => {
            return Err(ValidationError::one(
                "config.periodType",
                "is required with maxTotal (daily, weekly or monthly)",
            ))
        }
        (None, Some(_)) => return Err(ValidationError::one("config.maxTotal", "is required with periodType")),
        (None, None) => {}
    }
    if limits.iter().all(Option::is_none) {
        let hint = match kind {
            PolicyType::CustomerTotalCap => "give maxTotal and periodType (daily, weekly or monthly)",
            _ => "give at least one of maxPerDay, maxPerWeek, maxPerMonth",
        };
        return Err(ValidationError::one("config", hint));
    }
    Ok(PolicyRule::Cap(limits))
}

/// A contact policy as stored and returned: its spec and the stored fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactPolicy {
    #[serde(flatten)]
    pub meta: Meta,
    #[serde(flatten)]
    pub spec: ContactPolicySpec,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_json;

    fn rule(body: &str) -> Result<PolicyRule, ValidationError> {
        parse_json::<ContactPolicySpec>(body.as_bytes())?.validate()
    }

    #[test]
    fn tutorial_total_cap() {
        let r = rule(
            r#"{"name": "Budget", "ruleType": "customer_total_cap", "config": {"maxTotal": 4, "periodType": "monthly"}}"#,
        );
        assert_eq!(r.unwrap(), PolicyRule::Cap([None, None, Some(4)]));
    }

    #[test]
    fn frequency_cap_per_offer() {
        let r = rule(
            r#"{"name": "f", "ruleType": "frequency_cap", "scopeId": "o1", "config": {"maxPerDay": 1, "maxPerWeek": 3}}"#,
        );
        assert_eq!(r.unwrap(), PolicyRule::Cap([Some(1), Some(3), None]));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                r#"{"name": "f", "ruleType": "frequency_cap", "scopeId": "o", "config": {"maxPerMoth": 1}}"#,
                "config.maxPerMoth: unknown field (did you mean `maxPerMonth`?)",
            ),
            (
                r#"{"name": "f", "ruleType": "frequency_cap", "config": {"maxPerDay": 1}}"#,
                "scopeId: is required for scope `offer`",
            ),
            (
                r#"{"name": "f", "ruleType": "customer_total_cap", "config": {"maxTotal": 4}}"#,
                "config.periodType: is required",
            ),
            (
                r#"{"name": "f", "ruleType": "cooldown", "scope": "global", "config": {"cooldownHours": -1}}"#,
                "config.cooldownHours",
            ),
            (
                r#"{"name": "f", "ruleType": "customer_total_cap", "scope": "offer", "scopeId": "x", "config": {"maxTotal": 4, "periodType": "weekly"}}"#,
                "scope: customer_total_cap",
            ),
            (
                r#"{"name": "f", "ruleType": "frequency_cap", "scope": "global", "config": {}}"#,
                "config: give at least one",
            ),
        ];
        for (body, expected) in cases {
            let err = rule(body).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{body}: {err}");
        }
    }
}
