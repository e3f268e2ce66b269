//! Contact policies: limits on how often a customer is contacted, evaluated by the
//! `contact_policy` node before scoring.
//!
//! The body's `config` is free-form JSON on the wire (as on the platform) and is parsed
//! here into a typed [`PolicyRule`] per `ruleType`, with unknown keys refused so a typo
//! (`maxPerMoth`) is an error rather than a policy that silently never blocks.

use serde::{Deserialize, Serialize};

use super::{non_blank, parse_value, FieldError, Meta, ValidationError};
use crate::rules::json::Operator;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyType {
    FrequencyCap,
    CrossChannelCap,
    CustomerTotalCap,
    Cooldown,
    OutcomeBased,
    SegmentExclusion,
    MutualExclusion,
    CategorySuppression,
    MetricCondition,
    TimeWindow,
    BudgetExhausted,
    AllowOverride,
}

impl PolicyType {
    pub const ALL: [PolicyType; 12] = [
        PolicyType::FrequencyCap,
        PolicyType::CrossChannelCap,
        PolicyType::CustomerTotalCap,
        PolicyType::Cooldown,
        PolicyType::OutcomeBased,
        PolicyType::SegmentExclusion,
        PolicyType::MutualExclusion,
        PolicyType::CategorySuppression,
        PolicyType::MetricCondition,
        PolicyType::TimeWindow,
        PolicyType::BudgetExhausted,
        PolicyType::AllowOverride,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PolicyType::FrequencyCap => "frequency_cap",
            PolicyType::CrossChannelCap => "cross_channel_cap",
            PolicyType::CustomerTotalCap => "customer_total_cap",
            PolicyType::Cooldown => "cooldown",
            PolicyType::OutcomeBased => "outcome_based",
            PolicyType::SegmentExclusion => "segment_exclusion",
            PolicyType::MutualExclusion => "mutual_exclusion",
            PolicyType::CategorySuppression => "category_suppression",
            PolicyType::MetricCondition => "metric_condition",
            PolicyType::TimeWindow => "time_window",
            PolicyType::BudgetExhausted => "budget_exhausted",
            PolicyType::AllowOverride => "allow_override",
        }
    }

    /// Types whose scope is always `global`: what they apply to is in their config (an
    /// offer group, a category) or is the customer (segments, every contact).
    fn global_only(self) -> bool {
        matches!(
            self,
            PolicyType::CustomerTotalCap
                | PolicyType::SegmentExclusion
                | PolicyType::MutualExclusion
                | PolicyType::CategorySuppression
        )
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
/// Customers' outcomes are kept a year (`tenant::learning`): the longest `lookbackDays`
/// of an `outcome_based` policy.
pub const MAX_OUTCOME_DAYS: f64 = 365.0;

/// Why a `metric_condition` that reads an offer field is refused: it is checked once per
/// decision, not per offer.
pub const METRIC_READS_OFFER: &str =
    "a metric condition reads the customer (`customer.<field>`) or the request, not the offer";

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
    /// Several scopes at once, over `scope` and `scopeId`: the policy applies to an offer
    /// any of them selects and counts the contacts any of them selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<ScopeRef>>,
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

/// One scope of a policy's `scopes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScopeRef {
    pub scope: PolicyScope,
    #[serde(default)]
    pub scope_id: Option<String>,
}

/// What a policy does, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyRule {
    /// At most this many contacts per day, week and month (`None`: no cap on that period).
    Cap([Option<u32>; 3]),
    /// At most `max` contacts in the last `hours` (a rolling window).
    Rolling { max: u32, hours: f64 },
    /// Each offer at most this many contacts per day, week and month, counted across
    /// every channel (`cross_channel_cap`).
    PerOffer([Option<u32>; 3]),
    /// No contact within this many hours of the last one.
    Cooldown { hours: f64 },
    /// Blocks once the customer recorded one of these outcomes within `days`.
    Outcome { outcomes: Vec<String>, days: f64 },
    /// Blocks customers in any of these segments (the request's `segments`).
    Segments(Vec<String>),
    /// Once one offer of the group was shown within `days`, the others are blocked.
    Exclusive { group: Vec<String>, days: f64 },
    /// Once an offer of a category (of `category`, when given) was shown within `days`,
    /// every offer of that category is blocked.
    CategoryShown { category: Option<String>, days: f64 },
    /// Blocks while a condition on the customer (or the request) holds, e.g.
    /// `customer.complaintCount gte 2`.
    Metric { attribute: String, operator: Operator, value: Option<serde_json::Value> },
    /// Contacts only on these ISO weekdays (bit 1 Monday … bit 7 Sunday) and from
    /// `start` to `end` o'clock (`start > end`: overnight), local time in `zone`.
    TimeWindow { days: u8, start: u8, end: u8, zone: String },
    /// The offer at most this many impressions across all customers per day, week and
    /// month (`budget_exhausted`: its delivery budget).
    Budget([Option<u32>; 3]),
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
    /// A rolling window instead of calendar periods: `maxContacts` in the last
    /// `lookbackHours` (or `windowDays`).
    max_contacts: Option<u32>,
    lookback_hours: Option<f64>,
    window_days: Option<f64>,
    /// `false`: mandatory offers obey it too (they skip bypassable policies).
    bypassable: Option<bool>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OutcomeConfig {
    /// One outcome type, or several in `outcomeTypes`.
    outcome_type: Option<String>,
    outcome_types: Option<Vec<String>>,
    /// Default 90.
    lookback_days: Option<f64>,
    /// Only `suppress`.
    action: Option<String>,
    bypassable: Option<bool>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SegmentConfig {
    exclude_segments: Vec<String>,
    bypassable: Option<bool>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExclusionConfig {
    /// Offer ids (or names), at least two.
    offer_group: Vec<String>,
    /// Default 30.
    lookback_days: Option<f64>,
    bypassable: Option<bool>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CategoryConfig {
    suppression_days: f64,
    category_id: Option<String>,
    bypassable: Option<bool>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CooldownConfig {
    cooldown_hours: f64,
    bypassable: Option<bool>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MetricConfig {
    /// `customer.<field>` or `attributes.<name>`, as in a qualification rule.
    attribute: String,
    operator: Operator,
    #[serde(default)]
    value: Option<serde_json::Value>,
    bypassable: Option<bool>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TimeWindowConfig {
    /// ISO weekdays, 1 (Monday) to 7 (Sunday); default every day.
    allowed_days: Option<Vec<u8>>,
    /// The first hour contacts are allowed (0–23) and the hour they stop (1–24).
    start_hour: u8,
    end_hour: u8,
    /// An IANA time zone (`Europe/London`); default `UTC`.
    time_zone: Option<String>,
    bypassable: Option<bool>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BudgetConfig {
    /// The offer's impressions across all customers per UTC day, week and month.
    max_per_day: Option<u32>,
    max_per_week: Option<u32>,
    max_per_month: Option<u32>,
    bypassable: Option<bool>,
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
    Outcome(OutcomeConfig),
    Segment(SegmentConfig),
    Exclusion(ExclusionConfig),
    Category(CategoryConfig),
    Metric(MetricConfig),
    TimeWindow(TimeWindowConfig),
    Budget(BudgetConfig),
    AllowOverride(EmptyConfig),
}

/// A validated policy: what it does, and whether mandatory offers may skip it.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidPolicy {
    pub rule: PolicyRule,
    /// `config.bypassable` (default true): mandatory offers skip a bypassable policy,
    /// except frequency and cross-channel caps, which they always obey.
    pub bypassable: bool,
}

impl ContactPolicySpec {
    pub fn scope(&self) -> PolicyScope {
        let global = self.rule_type.global_only()
            || matches!(self.rule_type, PolicyType::MetricCondition | PolicyType::TimeWindow);
        self.scope.unwrap_or(if global { PolicyScope::Global } else { PolicyScope::Offer })
    }

    /// Checks the fields and parses `config`; the typed rule on success.
    pub fn validate(&self) -> Result<PolicyRule, ValidationError> {
        self.validated().map(|p| p.rule)
    }

    /// As [`validate`](Self::validate), with `bypassable`.
    pub fn validated(&self) -> Result<ValidPolicy, ValidationError> {
        let mut errors = Vec::new();
        non_blank(&mut errors, "name", &self.name);
        if self.priority > 100 {
            errors.push(FieldError::new("priority", format!("must be between 0 and 100, got {}", self.priority)));
        }
        let rule = self.rule(&mut errors);
        if self.scopes.as_ref().is_some_and(Vec::is_empty) {
            errors.push(FieldError::new("scopes", "must list at least one scope (or be left out)"));
        }
        if self.rule_type == PolicyType::BudgetExhausted && self.scopes.as_ref().is_some_and(|l| l.len() > 1) {
            errors
                .push(FieldError::new("scopes", "budget_exhausted is one offer's budget: give one scope (or scopeId)"));
        }
        for (i, s) in self.scope_refs().iter().enumerate() {
            let at = |field: &str| match self.scopes {
                Some(_) => format!("scopes[{i}].{field}"),
                None => field.to_string(),
            };
            self.check_scope(&mut errors, s, at);
        }
        ValidationError::check(errors)?;
        Ok(rule.expect("a config error was reported above"))
    }

    /// What the policy applies to: `scopes`, or else `scope` and `scopeId`.
    pub fn scope_refs(&self) -> Vec<ScopeRef> {
        match &self.scopes {
            Some(list) => list.clone(),
            None => vec![ScopeRef { scope: self.scope(), scope_id: self.scope_id.clone() }],
        }
    }

    fn check_scope(&self, errors: &mut Vec<FieldError>, s: &ScopeRef, at: impl Fn(&str) -> String) {
        let scope = s.scope;
        match (scope, s.scope_id.as_deref().map(str::trim)) {
            (PolicyScope::Global, Some(id)) if !id.is_empty() => {
                errors.push(FieldError::new(at("scopeId"), "must be omitted for a global policy"))
            }
            (PolicyScope::Global, _) => {}
            (s, None | Some("")) => {
                errors.push(FieldError::new(at("scopeId"), format!("is required for scope `{}`", s.name())))
            }
            _ => {}
        }
        let kind = self.rule_type;
        if kind.global_only() && scope != PolicyScope::Global {
            let why = match kind {
                PolicyType::CustomerTotalCap => "counts every contact",
                PolicyType::SegmentExclusion => "applies to the customer",
                PolicyType::MutualExclusion => "names its offers in config.offerGroup",
                _ => "names its category in config.categoryId, or covers every category",
            };
            errors.push(FieldError::new(at("scope"), format!("{} {why}, so its scope is `global`", kind.name())));
        }
        if kind == PolicyType::BudgetExhausted && scope != PolicyScope::Offer {
            errors
                .push(FieldError::new(at("scope"), "budget_exhausted is one offer's budget, so its scope is `offer`"));
        }
        if kind == PolicyType::CrossChannelCap && scope == PolicyScope::Channel {
            errors.push(FieldError::new(
                at("scope"),
                "cross_channel_cap counts across channels: use frequency_cap for one channel",
            ));
        }
    }

    fn rule(&self, errors: &mut Vec<FieldError>) -> Option<ValidPolicy> {
        let config = if self.config.is_null() { serde_json::json!({}) } else { self.config.clone() };
        let valid = |rule, bypassable: Option<bool>| ValidPolicy { rule, bypassable: bypassable.unwrap_or(true) };
        let parsed = match self.rule_type {
            PolicyType::FrequencyCap | PolicyType::CustomerTotalCap | PolicyType::CrossChannelCap => {
                parse_value::<CapConfig>("config", &config).and_then(|c| {
                    let bypassable = c.bypassable;
                    cap(self.rule_type, c).map(|r| valid(r, bypassable))
                })
            }
            PolicyType::Cooldown => parse_value::<CooldownConfig>("config", &config).and_then(|c| {
                let hours = hours_within("config.cooldownHours", c.cooldown_hours, MAX_COOLDOWN_HOURS)?;
                Ok(valid(PolicyRule::Cooldown { hours }, c.bypassable))
            }),
            PolicyType::OutcomeBased => parse_value::<OutcomeConfig>("config", &config).and_then(outcome_rule),
            PolicyType::SegmentExclusion => parse_value::<SegmentConfig>("config", &config).and_then(|c| {
                let segments = non_empty("config.excludeSegments", c.exclude_segments, 1)?;
                Ok(valid(PolicyRule::Segments(segments), c.bypassable))
            }),
            PolicyType::MutualExclusion => parse_value::<ExclusionConfig>("config", &config).and_then(|c| {
                let group = non_empty("config.offerGroup", c.offer_group, 2)?;
                let days =
                    days_within("config.lookbackDays", c.lookback_days.unwrap_or(30.0), MAX_COOLDOWN_HOURS / 24.0)?;
                Ok(valid(PolicyRule::Exclusive { group, days }, c.bypassable))
            }),
            PolicyType::CategorySuppression => parse_value::<CategoryConfig>("config", &config).and_then(|c| {
                let days = days_within("config.suppressionDays", c.suppression_days, MAX_COOLDOWN_HOURS / 24.0)?;
                let category = c.category_id.filter(|s| !s.trim().is_empty());
                Ok(valid(PolicyRule::CategoryShown { category, days }, c.bypassable))
            }),
            PolicyType::MetricCondition => parse_value::<MetricConfig>("config", &config).map(|c| {
                let MetricConfig { attribute, operator, value, bypassable } = c;
                valid(PolicyRule::Metric { attribute, operator, value }, bypassable)
            }),
            PolicyType::TimeWindow => parse_value::<TimeWindowConfig>("config", &config).and_then(time_window),
            PolicyType::BudgetExhausted => parse_value::<BudgetConfig>("config", &config).and_then(|c| {
                let limits = [c.max_per_day, c.max_per_week, c.max_per_month];
                if limits.iter().all(Option::is_none) {
                    return Err(ValidationError::one(
                        "config",
                        "give at least one of maxPerDay, maxPerWeek, maxPerMonth",
                    ));
                }
                Ok(valid(PolicyRule::Budget(limits), c.bypassable))
            }),
            PolicyType::AllowOverride => {
                parse_value::<EmptyConfig>("config", &config).map(|_| valid(PolicyRule::AllowOverride, None))
            }
        };
        parsed.map_err(|e| errors.extend(e.0)).ok()
    }
}

fn time_window(c: TimeWindowConfig) -> Result<ValidPolicy, ValidationError> {
    let mut days = 0u8;
    for (i, &d) in c.allowed_days.as_deref().unwrap_or(&[1, 2, 3, 4, 5, 6, 7]).iter().enumerate() {
        if !(1..=7).contains(&d) {
            let message = format!("must be an ISO weekday, 1 (Monday) to 7 (Sunday), got {d}");
            return Err(ValidationError::one(format!("config.allowedDays[{i}]"), message));
        }
        days |= 1 << d;
    }
    if days == 0 {
        return Err(ValidationError::one("config.allowedDays", "must list at least one day"));
    }
    if c.start_hour > 23 {
        return Err(ValidationError::one("config.startHour", format!("must be 0 to 23, got {}", c.start_hour)));
    }
    if !(1..=24).contains(&c.end_hour) || c.end_hour == c.start_hour {
        let message = format!("must be 1 to 24 and differ from startHour, got {}", c.end_hour);
        return Err(ValidationError::one("config.endHour", message));
    }
    let zone = c.time_zone.unwrap_or_else(|| "UTC".to_string());
    if jiff::tz::TimeZone::get(&zone).is_err() {
        let message = format!("`{zone}` is not an IANA time zone (such as `Europe/London` or `UTC`)");
        return Err(ValidationError::one("config.timeZone", message));
    }
    let rule = PolicyRule::TimeWindow { days, start: c.start_hour, end: c.end_hour, zone };
    Ok(ValidPolicy { rule, bypassable: c.bypassable.unwrap_or(true) })
}

fn outcome_rule(c: OutcomeConfig) -> Result<ValidPolicy, ValidationError> {
    if let Some(action) = c.action.as_deref().filter(|a| *a != "suppress") {
        return Err(ValidationError::one("config.action", format!("must be `suppress`, got `{action}`")));
    }
    let outcomes: Vec<String> = c.outcome_type.into_iter().chain(c.outcome_types.into_iter().flatten()).collect();
    let outcomes = non_empty("config.outcomeType", outcomes, 1)
        .map_err(|_| ValidationError::one("config.outcomeType", "give an outcome type (or several in outcomeTypes)"))?;
    if let Some(routine) = outcomes.iter().find(|o| super::outcome::is_impression(o)) {
        return Err(ValidationError::one(
            "config.outcomeType",
            format!("`{routine}` is an impression-kind outcome, which is not kept per customer; name what the customer did (dismiss, not_interested …)"),
        ));
    }
    if let Some(unknown) = outcomes.iter().find(|o| super::outcome::ordinal(o).is_none()) {
        let known: Vec<&str> = super::outcome::outcome_types().iter().map(|t| t.key).collect();
        return Err(ValidationError::one(
            "config.outcomeType",
            format!("`{unknown}` is not an outcome type; one of {}", known.join(", ")),
        ));
    }
    let days = days_within("config.lookbackDays", c.lookback_days.unwrap_or(90.0), MAX_OUTCOME_DAYS)?;
    Ok(ValidPolicy { rule: PolicyRule::Outcome { outcomes, days }, bypassable: c.bypassable.unwrap_or(true) })
}

/// At least `min` non-blank entries, trimmed.
fn non_empty(path: &str, list: Vec<String>, min: usize) -> Result<Vec<String>, ValidationError> {
    let list: Vec<String> = list.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    if list.len() < min {
        let what = if min == 1 { "at least one entry".to_string() } else { format!("at least {min} entries") };
        return Err(ValidationError::one(path, format!("must list {what}")));
    }
    Ok(list)
}

fn hours_within(path: &str, hours: f64, max: f64) -> Result<f64, ValidationError> {
    if hours.is_finite() && hours > 0.0 && hours <= max {
        Ok(hours)
    } else {
        let days = max / 24.0;
        Err(ValidationError::one(
            path,
            format!("must be a number of hours above 0 and at most {max} ({days} days, how long contacts are kept)"),
        ))
    }
}

fn days_within(path: &str, days: f64, max: f64) -> Result<f64, ValidationError> {
    if days.is_finite() && days > 0.0 && days <= max {
        Ok(days)
    } else {
        Err(ValidationError::one(path, format!("must be a number of days above 0 and at most {max}")))
    }
}

/// `maxPerDay/Week/Month`, or `maxTotal` with `periodType`; at least one limit. Or, for
/// `frequency_cap`, a rolling window: `maxContacts` with `lookbackHours` or `windowDays`.
fn cap(kind: PolicyType, c: CapConfig) -> Result<PolicyRule, ValidationError> {
    if c.max_contacts.is_some() || c.lookback_hours.is_some() || c.window_days.is_some() {
        return rolling(kind, &c);
    }
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
    Ok(if kind == PolicyType::CrossChannelCap { PolicyRule::PerOffer(limits) } else { PolicyRule::Cap(limits) })
}

fn rolling(kind: PolicyType, c: &CapConfig) -> Result<PolicyRule, ValidationError> {
    if kind != PolicyType::FrequencyCap {
        return Err(ValidationError::one(
            "config.maxContacts",
            format!("a rolling window is for frequency_cap; {} takes maxPerDay, maxPerWeek, maxPerMonth", kind.name()),
        ));
    }
    if c.max_per_day.is_some() || c.max_per_week.is_some() || c.max_per_month.is_some() || c.max_total.is_some() {
        return Err(ValidationError::one(
            "config.maxContacts",
            "give either a rolling window (maxContacts with lookbackHours) or calendar caps (maxPerDay …), not both",
        ));
    }
    let Some(max) = c.max_contacts else {
        return Err(ValidationError::one("config.maxContacts", "is required with lookbackHours or windowDays"));
    };
    let hours = match (c.lookback_hours, c.window_days) {
        (Some(h), None) => hours_within("config.lookbackHours", h, MAX_COOLDOWN_HOURS)?,
        (None, Some(d)) => hours_within("config.windowDays", d * 24.0, MAX_COOLDOWN_HOURS)?,
        (Some(_), Some(_)) => {
            return Err(ValidationError::one("config.windowDays", "give lookbackHours or windowDays, not both"))
        }
        (None, None) => return Err(ValidationError::one("config.lookbackHours", "is required with maxContacts")),
    };
    Ok(PolicyRule::Rolling { max, hours })
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
            (
                r#"{"name": "f", "ruleType": "frequency_cap", "scope": "global", "config": {"maxContacts": 3}}"#,
                "config.lookbackHours: is required with maxContacts",
            ),
            (
                r#"{"name": "f", "ruleType": "frequency_cap", "scope": "global", "config": {"maxContacts": 3, "lookbackHours": 5, "maxPerDay": 1}}"#,
                "config.maxContacts: give either a rolling window",
            ),
            (
                r#"{"name": "f", "ruleType": "cross_channel_cap", "scope": "channel", "scopeId": "email", "config": {"maxPerDay": 1}}"#,
                "scope: cross_channel_cap counts across channels",
            ),
            (
                r#"{"name": "f", "ruleType": "outcome_based", "scope": "global", "config": {"lookbackDays": 30}}"#,
                "config.outcomeType: give an outcome type",
            ),
            (
                r#"{"name": "f", "ruleType": "outcome_based", "scope": "global", "config": {"outcomeType": "dismiss", "action": "boost"}}"#,
                "config.action: must be `suppress`",
            ),
            (
                r#"{"name": "f", "ruleType": "outcome_based", "scope": "global", "config": {"outcomeType": "dismiss", "lookbackDays": 400}}"#,
                "config.lookbackDays: must be a number of days above 0 and at most 365",
            ),
            (
                r#"{"name": "f", "ruleType": "outcome_based", "scope": "global", "config": {"outcomeType": "complaint"}}"#,
                "config.outcomeType: `complaint` is not an outcome type; one of impression, click",
            ),
            (
                r#"{"name": "f", "ruleType": "segment_exclusion", "config": {"excludeSegments": [" "]}}"#,
                "config.excludeSegments: must list at least one entry",
            ),
            (
                r#"{"name": "f", "ruleType": "mutual_exclusion", "config": {"offerGroup": ["a"]}}"#,
                "config.offerGroup: must list at least 2 entries",
            ),
            (
                r#"{"name": "f", "ruleType": "mutual_exclusion", "scope": "offer", "scopeId": "a", "config": {"offerGroup": ["a", "b"]}}"#,
                "scope: mutual_exclusion names its offers in config.offerGroup",
            ),
            (
                r#"{"name": "f", "ruleType": "category_suppression", "config": {"suppressionDays": 90}}"#,
                "config.suppressionDays: must be a number of days above 0 and at most 62",
            ),
            (
                r#"{"name": "f", "ruleType": "time_window", "config": {"startHour": 9, "endHour": 17, "timeZone": "Mars/Olympus"}}"#,
                "config.timeZone: `Mars/Olympus` is not an IANA time zone",
            ),
            (
                r#"{"name": "f", "ruleType": "time_window", "config": {"allowedDays": [1, 8], "startHour": 9, "endHour": 17}}"#,
                "config.allowedDays[1]: must be an ISO weekday",
            ),
            (
                r#"{"name": "f", "ruleType": "time_window", "config": {"startHour": 9, "endHour": 9}}"#,
                "config.endHour: must be 1 to 24 and differ from startHour",
            ),
            (
                r#"{"name": "f", "ruleType": "frequency_cap", "scopes": [{"scope": "global"}, {"scope": "offer"}], "config": {"maxPerDay": 1}}"#,
                "scopes[1].scopeId: is required for scope `offer`",
            ),
            (
                r#"{"name": "f", "ruleType": "frequency_cap", "scopes": [], "config": {"maxPerDay": 1}}"#,
                "scopes: must list at least one scope",
            ),
            (
                r#"{"name": "f", "ruleType": "cooldown", "scope": "global", "config": {"cooldownHours": 5, "bypassable": "no"}}"#,
                "config.bypassable",
            ),
        ];
        for (body, expected) in cases {
            let err = rule(body).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{body}: {err}");
        }
    }
}
