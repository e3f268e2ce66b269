//! Contact policies at decision time: which candidates a customer's recent contacts rule
//! out, and how many more contacts a decision may make.
//!
//! A *contact* is an offer shown to a treated customer by `/recommend` (control-group
//! decisions show nothing and record nothing). Periods are UTC calendar periods: the day
//! from 00:00, the ISO week from Monday 00:00, the month from the 1st.
//!
//! Each policy is evaluated once per decision against the customer's history (not once
//! per candidate), giving a [`PolicyState`]: whether it blocks, and — for policies that
//! count several offers' contacts together (global, category and channel scopes) — how
//! many more contacts it allows, which the rank step enforces so a decision can never
//! overshoot a cap by showing several offers at once.

use std::sync::Arc;

use crate::model::policy::{Period, PolicyRule, PolicyType};
use crate::rules::OfferFacts;

/// One offer shown to a customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    /// Unix seconds.
    pub at: i64,
    pub offer_id: Arc<str>,
    pub category: Arc<str>,
    /// The channel's name, when the request named a known channel.
    pub channel: Option<Arc<str>>,
}

/// What a policy's scope selects.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Global,
    Offer(Arc<str>),
    Category(Arc<str>),
    /// By channel name.
    Channel(Arc<str>),
}

#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub rule_type: PolicyType,
    pub target: Target,
    pub rule: PolicyRule,
}

/// A policy's verdict for one decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicyState {
    /// Why it blocks, when it does: counted contacts and the limit, or hours since the
    /// last contact and the cooldown.
    pub block: Option<Block>,
    /// More contacts this decision may make under the policy (`None`: no shared limit).
    pub budget: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Block {
    Cap { period: Period, count: u32, max: u32 },
    Cooldown { hours_since: f64, hours: f64 },
}

impl Block {
    pub fn reason(&self, p: &CompiledPolicy) -> String {
        let scope = match &p.target {
            Target::Global => "global".to_string(),
            Target::Offer(id) => format!("offer={id}"),
            Target::Category(c) => format!("category={c}"),
            Target::Channel(c) => format!("channel={c}"),
        };
        match self {
            Block::Cap { period, count, max } => {
                format!("{} exceeded: {count}/{max} this {} at scope={scope}", p.rule_type.name(), period.name())
            }
            Block::Cooldown { hours_since, hours } => {
                format!("cooldown: last contact {hours_since:.1}h ago, {hours}h required at scope={scope}")
            }
        }
    }
}

impl CompiledPolicy {
    /// Whether the policy governs this candidate in this request.
    pub fn applies(&self, offer: &OfferFacts, channel: Option<&str>) -> bool {
        match &self.target {
            Target::Global => true,
            Target::Offer(id) => offer.id == *id,
            Target::Category(c) => offer.category == *c,
            Target::Channel(c) => channel == Some(&**c),
        }
    }

    /// Whether a channel-scoped policy applies on this channel (false for other scopes).
    pub fn applies_on(&self, channel: Option<&str>) -> bool {
        matches!(&self.target, Target::Channel(c) if channel == Some(&**c))
    }

    /// Whether a past contact counts against the policy.
    fn counts(&self, c: &Contact) -> bool {
        match &self.target {
            Target::Global => true,
            Target::Offer(id) => c.offer_id == *id,
            Target::Category(cat) => c.category == *cat,
            Target::Channel(ch) => c.channel.as_deref() == Some(&**ch),
        }
    }

    /// Several offers of one decision can count against it (not one offer's own cap).
    fn shared(&self) -> bool {
        !matches!(self.target, Target::Offer(_))
    }

    pub fn is_override(&self) -> bool {
        self.rule == PolicyRule::AllowOverride
    }

    /// Cooldowns suppress after a contact; caps are the contact policy proper. The two
    /// feed `meta.afterSuppression` and `meta.afterContactPolicy`.
    pub fn is_suppression(&self) -> bool {
        matches!(self.rule, PolicyRule::Cooldown { .. })
    }

    /// The policy's verdict given the customer's contacts.
    pub fn evaluate(&self, history: &[Contact], now: i64) -> PolicyState {
        match self.rule {
            PolicyRule::AllowOverride => PolicyState { block: None, budget: None },
            PolicyRule::Cap(limits) => {
                let starts = period_starts(now);
                let mut counts = [0u32; 3];
                for c in history.iter().filter(|c| self.counts(c)) {
                    for (i, start) in starts.iter().enumerate() {
                        counts[i] += u32::from(c.at >= *start);
                    }
                }
                let mut block = None;
                let mut budget = u32::MAX;
                for (i, limit) in limits.iter().enumerate() {
                    let Some(max) = *limit else { continue };
                    if counts[i] >= max && block.is_none() {
                        block = Some(Block::Cap { period: Period::ALL[i], count: counts[i], max });
                    }
                    budget = budget.min(max.saturating_sub(counts[i]));
                }
                PolicyState { block, budget: self.shared().then_some(budget) }
            }
            PolicyRule::Cooldown { hours } => {
                let last = history.iter().filter(|c| self.counts(c)).map(|c| c.at).max();
                let since = last.map(|at| (now - at) as f64 / 3600.0);
                let block = since.filter(|s| *s < hours).map(|hours_since| Block::Cooldown { hours_since, hours });
                // One contact under a shared cooldown starts it for every other offer.
                PolicyState { block, budget: self.shared().then_some(1) }
            }
        }
    }
}

/// Start (Unix seconds) of the current UTC day, ISO week and month.
pub fn period_starts(now: i64) -> [i64; 3] {
    let days = now.div_euclid(86_400);
    // 1970-01-01 was a Thursday: Monday-based weekday = (days + 3) mod 7.
    let week = days - (days + 3).rem_euclid(7);
    let (y, m, _) = crate::ids::civil_from_days(days);
    let month = crate::ids::days_from_civil(y, m, 1);
    [days * 86_400, week * 86_400, month * 86_400]
}

/// How long a contact can matter: the longest period (31 days) or cooldown.
pub fn retention_secs(policies: &[CompiledPolicy]) -> i64 {
    let cooldown = policies
        .iter()
        .filter_map(|p| match p.rule {
            PolicyRule::Cooldown { hours } => Some((hours * 3600.0) as i64),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    cooldown.max(31 * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    // 2026-11-23 (a Monday) 12:00 UTC.
    const NOW: i64 = 1_795_392_000 + 12 * 3600;

    fn contact(at: i64, offer: &str, channel: Option<&str>) -> Contact {
        Contact { at, offer_id: offer.into(), category: "cards".into(), channel: channel.map(Into::into) }
    }

    fn policy(target: Target, rule: PolicyRule) -> CompiledPolicy {
        CompiledPolicy { id: "p".into(), name: "p".into(), rule_type: PolicyType::FrequencyCap, target, rule }
    }

    #[test]
    fn period_starts_are_utc_calendar_periods() {
        assert_eq!(crate::ids::rfc3339(NOW, 0), "2026-11-23T12:00:00.000Z");
        let [d, w, m] = period_starts(NOW);
        assert_eq!(crate::ids::rfc3339(d, 0), "2026-11-23T00:00:00.000Z");
        assert_eq!(crate::ids::rfc3339(w, 0), "2026-11-23T00:00:00.000Z");
        assert_eq!(crate::ids::rfc3339(m, 0), "2026-11-01T00:00:00.000Z");
        let [_, w, _] = period_starts(NOW - DAY);
        assert_eq!(crate::ids::rfc3339(w, 0), "2026-11-16T00:00:00.000Z");
    }

    #[test]
    fn a_monthly_total_cap_counts_this_month_only() {
        let p = policy(Target::Global, PolicyRule::Cap([None, None, Some(4)]));
        let last_month = contact(NOW - 30 * DAY, "a", None);
        let mut history = vec![last_month, contact(NOW - DAY, "a", None), contact(NOW - 2 * DAY, "b", None)];
        let s = p.evaluate(&history, NOW);
        assert_eq!(s, PolicyState { block: None, budget: Some(2) });
        history.push(contact(NOW - 60, "c", None));
        history.push(contact(NOW - 30, "d", None));
        let s = p.evaluate(&history, NOW);
        assert_eq!(s.block, Some(Block::Cap { period: Period::Monthly, count: 4, max: 4 }));
        assert_eq!(s.budget, Some(0));
    }

    #[test]
    fn an_offer_cap_counts_that_offer_and_has_no_shared_budget() {
        let p = policy(Target::Offer("a".into()), PolicyRule::Cap([Some(1), None, None]));
        let s = p.evaluate(&[contact(NOW - 3600, "b", None)], NOW);
        assert_eq!(s, PolicyState { block: None, budget: None });
        let s = p.evaluate(&[contact(NOW - 3600, "a", None)], NOW);
        assert!(s.block.is_some());
        // Yesterday's contact does not count against today's cap.
        assert!(p.evaluate(&[contact(NOW - DAY, "a", None)], NOW).block.is_none());
    }

    #[test]
    fn cooldowns_and_channels() {
        let p = policy(Target::Channel("email".into()), PolicyRule::Cooldown { hours: 48.0 });
        let s = p.evaluate(&[contact(NOW - 3600, "a", Some("email"))], NOW);
        assert!(matches!(s.block, Some(Block::Cooldown { .. })), "{s:?}");
        assert!(p.evaluate(&[contact(NOW - 3600, "a", Some("sms"))], NOW).block.is_none());
        assert!(p.evaluate(&[contact(NOW - 49 * 3600, "a", Some("email"))], NOW).block.is_none());
        assert_eq!(p.evaluate(&[], NOW).budget, Some(1));
    }
}
