//! Contact policies at decision time: which candidates a customer's recent contacts rule
//! out, and how many more contacts a decision may make.
//!
//! A *contact* is an offer shown to a treated customer by `/recommend`, or one a
//! held-out customer would have been shown (both arms obey the same caps). Policies also
//! read the customer's recorded outcomes, the request's segments and an offer's
//! impressions across customers. Periods are UTC calendar periods: the day from 00:00,
//! the ISO week from Monday 00:00, the month from the 1st.
//!
//! Each policy is evaluated once per decision against the customer's history (not once
//! per candidate), giving a [`PolicyState`]: whether it blocks, and — for policies that
//! count several offers' contacts together (global, category and channel scopes) — how
//! many more contacts it allows, which the rank step enforces so a decision can never
//! overshoot a cap by showing several offers at once.

use std::sync::Arc;

use crate::model::policy::{Period, PolicyRule, PolicyType};
use crate::rules::OfferFacts;

/// An outcome a customer recorded (a response), as `outcome_based` policies count them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OutcomeEvent {
    /// Unix seconds.
    pub at: i64,
    pub offer_id: Arc<str>,
    pub category: Arc<str>,
    pub outcome: Arc<str>,
}

/// What a decision knows about its customer when it evaluates the policies.
#[derive(Clone, Copy)]
pub struct PolicyInput<'a> {
    pub contacts: &'a [Contact],
    pub outcomes: &'a [OutcomeEvent],
    /// The request's `segments`.
    pub segments: &'a [String],
    /// Unix seconds.
    pub now: i64,
    /// An offer's impressions across customers this day, week and month.
    pub impressions: &'a dyn Fn(&str) -> [u32; 3],
}

/// One offer shown to a customer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// Any of these (`scopes`; never itself an `Any`).
    Any(Arc<[Target]>),
}

impl Target {
    /// Whether it selects by channel (so whether it applies depends on the request).
    pub fn by_channel(&self) -> bool {
        match self {
            Target::Channel(_) => true,
            Target::Any(all) => all.iter().any(Target::by_channel),
            _ => false,
        }
    }

    /// Whether it selects by channel alone (off its channels it limits nothing).
    pub fn only_channels(&self) -> bool {
        match self {
            Target::Channel(_) => true,
            Target::Any(all) => all.iter().all(Target::only_channels),
            _ => false,
        }
    }

    /// How explain names it: `global`, `offer=…`, `category=…|channel=…`.
    pub fn describe(&self) -> String {
        match self {
            Target::Global => "global".to_string(),
            Target::Offer(id) => format!("offer={id}"),
            Target::Category(c) => format!("category={c}"),
            Target::Channel(c) => format!("channel={c}"),
            Target::Any(all) => all.iter().map(Target::describe).collect::<Vec<_>>().join("|"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub rule_type: PolicyType,
    pub target: Target,
    pub rule: PolicyRule,
    /// Mandatory offers skip it (unless it is a frequency or cross-channel cap).
    pub bypassable: bool,
    /// A `time_window`'s time zone, resolved once.
    pub zone: Option<jiff::tz::TimeZone>,
}

/// A policy's verdict for one decision.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyState {
    /// Why it blocks every offer it applies to, when it does: counted contacts and the
    /// limit, hours since the last contact and the cooldown, …
    pub block: Option<Block>,
    /// More contacts this decision may make under the policy (`None`: no shared limit).
    pub budget: Option<u32>,
    /// For policies that block some of the offers they apply to (cross-channel caps,
    /// mutual exclusion, category suppression): which, and why.
    pub blocks: Vec<(Key, Block)>,
}

impl PolicyState {
    const OPEN: PolicyState = PolicyState { block: None, budget: None, blocks: Vec::new() };

    /// Why this policy blocks `offer`, if it does (given that it applies to it).
    pub fn blocks(&self, offer: &OfferFacts) -> Option<&Block> {
        self.block.as_ref().or_else(|| self.blocks.iter().find(|(k, _)| k.matches(offer)).map(|(_, b)| b))
    }
}

/// An offer, every offer of a category, or every offer the policy applies to but one.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    Offer(Arc<str>),
    Category(Arc<str>),
    AllBut(Arc<str>),
}

impl Key {
    fn matches(&self, offer: &OfferFacts) -> bool {
        match self {
            Key::Offer(id) => offer.id == *id,
            Key::Category(c) => offer.category == *c,
            Key::AllBut(id) => offer.id != *id,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Cap {
        period: Period,
        count: u32,
        max: u32,
    },
    Rolling {
        count: u32,
        max: u32,
        hours: f64,
    },
    Cooldown {
        hours_since: f64,
        hours: f64,
    },
    Outcome {
        outcome: Arc<str>,
        days_since: f64,
        days: f64,
    },
    Segment {
        segment: String,
    },
    Exclusive {
        shown: Arc<str>,
        days_since: f64,
    },
    CategoryShown {
        category: Arc<str>,
        shown: Arc<str>,
        days_since: f64,
        days: f64,
    },
    /// A `metric_condition` holds.
    Metric,
    /// A `budget_exhausted` offer's impressions reached its budget for the period.
    Budget {
        period: Period,
        count: u32,
        max: u32,
    },
    /// Outside a `time_window`: the local weekday (1 Monday … 7 Sunday) and hour.
    TimeWindow {
        day: i8,
        hour: i8,
    },
}

impl Block {
    pub fn reason(&self, p: &CompiledPolicy) -> String {
        let scope = p.target.describe();
        let kind = p.rule_type.name();
        match self {
            Block::Cap { period, count, max } => {
                format!("{kind} exceeded: {count}/{max} this {} at scope={scope}", period.name())
            }
            Block::Budget { period, count, max } => {
                format!("{kind}: {count}/{max} impressions this {} at scope={scope}", period.name())
            }
            Block::Rolling { count, max, hours } => {
                format!("{kind} exceeded: {count}/{max} in the last {hours}h at scope={scope}")
            }
            Block::Cooldown { hours_since, hours } => {
                format!("cooldown: last contact {hours_since:.1}h ago, {hours}h required at scope={scope}")
            }
            Block::Outcome { outcome, days_since, days } => {
                format!("{kind}: `{outcome}` recorded {days_since:.1} days ago, suppressed for {days} days at scope={scope}")
            }
            Block::Segment { segment } => format!("{kind}: the customer is in segment `{segment}`"),
            Block::Exclusive { shown, days_since } => {
                format!("{kind}: offer {shown} of the same group was shown {days_since:.1} days ago")
            }
            Block::Metric => match &p.rule {
                PolicyRule::Metric { attribute, operator, value } => {
                    let value = value.as_ref().map_or(String::new(), |v| format!(" {v}"));
                    format!("{kind}: {attribute} {}{value} holds", operator.name())
                }
                _ => format!("{kind}: its condition holds"),
            },
            Block::TimeWindow { day, hour } => match &p.rule {
                PolicyRule::TimeWindow { days, start, end, zone } => {
                    let allowed: Vec<&str> = (1..=7).filter(|d| days & (1 << d) != 0).map(weekday).collect();
                    format!(
                        "{kind}: {} {hour}h in {zone} is outside {} {start}–{end}h",
                        weekday(*day as u8),
                        allowed.join(",")
                    )
                }
                _ => format!("{kind}: outside its hours"),
            },
            Block::CategoryShown { category, shown, days_since, days } => format!(
                "{kind}: offer {shown} of category `{category}` was shown {days_since:.1} days ago, suppressed for {days} days"
            ),
        }
    }
}

impl CompiledPolicy {
    /// Whether the policy governs this candidate in this request.
    /// (Checked once per offer when a flow compiles: decisions read the offer's bits.)
    pub fn applies(&self, offer: &OfferFacts, channel: Option<&str>) -> bool {
        let in_group = match &self.rule {
            PolicyRule::Exclusive { group, .. } => group.iter().any(|g| **g == *offer.id),
            _ => true,
        };
        in_group && applies(&self.target, offer, channel)
    }

    /// Whether a channel-scoped policy applies on this channel (false for other scopes).
    pub fn applies_on(&self, channel: Option<&str>) -> bool {
        on_channel(&self.target, channel)
    }

    /// Whether a past contact counts against the policy.
    fn counts(&self, c: &Contact) -> bool {
        counts(&self.target, c)
    }

    /// Several offers of one decision can count against it (not one offer's own cap).
    fn shared(&self) -> bool {
        !matches!(self.target, Target::Offer(_))
    }

    pub fn is_override(&self) -> bool {
        self.rule == PolicyRule::AllowOverride
    }

    /// Policies that act after a contact or an outcome (cooldowns, outcome-based and
    /// category suppression, mutual exclusion) suppress; caps, budgets, segment
    /// exclusions, time windows and metric conditions are the contact policy proper. The two feed `meta.afterSuppression` and
    /// `meta.afterContactPolicy`.
    pub fn is_suppression(&self) -> bool {
        matches!(
            self.rule,
            PolicyRule::Cooldown { .. }
                | PolicyRule::Outcome { .. }
                | PolicyRule::Exclusive { .. }
                | PolicyRule::CategoryShown { .. }
        )
    }

    /// For policies that allow one offer per group or category in a decision (mutual
    /// exclusion, category suppression): the key `offer`, which the policy applies to,
    /// takes. Without this, a customer with no history could be shown two offers of one
    /// group at once.
    pub fn slot_key<'o>(&self, offer: &'o OfferFacts) -> Option<&'o str> {
        match &self.rule {
            // It applies to its group's offers only: they share one key.
            PolicyRule::Exclusive { .. } => Some(""),
            PolicyRule::CategoryShown { category, .. } => {
                let covered = !offer.category.is_empty() && category.as_deref().is_none_or(|c| c == &*offer.category);
                covered.then_some(&*offer.category)
            }
            _ => None,
        }
    }

    /// Whether a mandatory offer obeys it: frequency and cross-channel caps always, the
    /// others when `bypassable` is false.
    pub fn binds_mandatory(&self) -> bool {
        matches!(self.rule_type, PolicyType::FrequencyCap | PolicyType::CrossChannelCap) || !self.bypassable
    }

    /// The policy's verdict given what the decision knows of its customer.
    pub fn evaluate(&self, input: &PolicyInput<'_>) -> PolicyState {
        let (history, now) = (input.contacts, input.now);
        let counted = || history.iter().filter(|c| self.counts(c));
        let shared = self.shared();
        match &self.rule {
            // A metric condition is evaluated by the decision, on its slots.
            PolicyRule::AllowOverride | PolicyRule::Metric { .. } => PolicyState::OPEN,
            PolicyRule::Cap(limits) => {
                let starts = period_starts(now);
                let mut counts = [0u32; 3];
                for c in counted() {
                    for (i, start) in starts.iter().enumerate() {
                        counts[i] += u32::from(c.at >= *start);
                    }
                }
                let (block, budget) = cap_verdict(limits, &counts);
                PolicyState { block, budget: shared.then_some(budget), blocks: Vec::new() }
            }
            PolicyRule::Rolling { max, hours } => {
                let since = now - (hours * 3600.0) as i64;
                let count = counted().filter(|c| c.at > since).count() as u32;
                let block = (count >= *max).then_some(Block::Rolling { count, max: *max, hours: *hours });
                PolicyState { block, budget: shared.then_some(max.saturating_sub(count)), blocks: Vec::new() }
            }
            PolicyRule::PerOffer(limits) => {
                PolicyState { blocks: self.per_offer(limits, history, now), ..PolicyState::OPEN }
            }
            PolicyRule::Cooldown { hours } => {
                let last = counted().map(|c| c.at).max();
                let since = last.map(|at| (now - at) as f64 / 3600.0);
                let block =
                    since.filter(|s| s < hours).map(|hours_since| Block::Cooldown { hours_since, hours: *hours });
                // One contact under a shared cooldown starts it for every other offer.
                PolicyState { block, budget: shared.then_some(1), blocks: Vec::new() }
            }
            PolicyRule::Outcome { outcomes, days } => {
                let since = now - (days * 86_400.0) as i64;
                let last = input
                    .outcomes
                    .iter()
                    .filter(|o| o.at > since && o.at <= now)
                    .filter(|o| outcomes.iter().any(|t| *t == *o.outcome) && self.counts_outcome(o))
                    .max_by_key(|o| o.at);
                let block = last.map(|o| Block::Outcome {
                    outcome: o.outcome.clone(),
                    days_since: (now - o.at) as f64 / 86_400.0,
                    days: *days,
                });
                PolicyState { block, ..PolicyState::OPEN }
            }
            PolicyRule::Segments(excluded) => {
                let hit = input.segments.iter().find(|s| excluded.iter().any(|e| e == *s));
                PolicyState { block: hit.map(|s| Block::Segment { segment: s.clone() }), ..PolicyState::OPEN }
            }
            PolicyRule::Exclusive { group, days } => {
                PolicyState { blocks: exclusive(group, *days, history, now), ..PolicyState::OPEN }
            }
            PolicyRule::Budget(limits) => {
                let Target::Offer(id) = &self.target else { return PolicyState::OPEN };
                let block = match cap_verdict(limits, &(input.impressions)(id)).0 {
                    Some(Block::Cap { period, count, max }) => Some(Block::Budget { period, count, max }),
                    _ => None,
                };
                PolicyState { block, ..PolicyState::OPEN }
            }
            PolicyRule::TimeWindow { days, start, end, .. } => {
                let (day, hour) = local_day_hour(self.zone.as_ref(), now);
                let (start, end) = (*start as i8, *end as i8);
                // An overnight window belongs to the day it starts on: Friday 22–06 is
                // open at 02:00 on Saturday.
                let window_day = if start > end && hour < end { (day + 5) % 7 + 1 } else { day };
                let open = if start < end { (start..end).contains(&hour) } else { hour >= start || hour < end };
                let block = (days & (1 << window_day) == 0 || !open).then_some(Block::TimeWindow { day, hour });
                PolicyState { block, ..PolicyState::OPEN }
            }
            PolicyRule::CategoryShown { category, days } => {
                PolicyState { blocks: category_shown(category.as_deref(), *days, history, now), ..PolicyState::OPEN }
            }
        }
    }

    /// Whether a recorded outcome counts against an `outcome_based` policy: any outcome
    /// for a global one, the offer's (or the category's) own for a scoped one.
    fn counts_outcome(&self, o: &OutcomeEvent) -> bool {
        counts_outcome(&self.target, o)
    }

    /// `cross_channel_cap`: every offer over its own cap (the policy's scope says which
    /// offers it applies to), counting its contacts on every channel.
    fn per_offer(&self, limits: &[Option<u32>; 3], history: &[Contact], now: i64) -> Vec<(Key, Block)> {
        let starts = period_starts(now);
        let earliest = starts.iter().copied().min().unwrap_or(now);
        let mut counts: Vec<(&Arc<str>, [u32; 3])> = Vec::new();
        for c in history.iter().filter(|c| c.at >= earliest) {
            let i = match counts.iter().position(|(id, _)| **id == c.offer_id) {
                Some(i) => i,
                None => {
                    counts.push((&c.offer_id, [0; 3]));
                    counts.len() - 1
                }
            };
            for (k, start) in starts.iter().enumerate() {
                counts[i].1[k] += u32::from(c.at >= *start);
            }
        }
        counts
            .into_iter()
            .filter_map(|(id, n)| cap_verdict(limits, &n).0.map(|b| (Key::Offer(id.clone()), b)))
            .collect()
    }
}

/// A `time_window` rule's time zone (checked when the policy was validated).
pub fn zone_of(rule: &PolicyRule) -> Option<jiff::tz::TimeZone> {
    match rule {
        PolicyRule::TimeWindow { zone, .. } => jiff::tz::TimeZone::get(zone).ok(),
        _ => None,
    }
}

/// The ISO weekday (1 Monday … 7 Sunday) and hour of `now` in `zone` (UTC when none).
fn local_day_hour(zone: Option<&jiff::tz::TimeZone>, now: i64) -> (i8, i8) {
    let utc = jiff::tz::TimeZone::UTC;
    let at = jiff::Timestamp::from_second(now).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let local = at.to_zoned(zone.unwrap_or(&utc).clone());
    (local.weekday().to_monday_one_offset(), local.hour())
}

fn weekday(d: u8) -> &'static str {
    ["", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][d as usize % 8]
}

/// A suppression in force: what a suppressing policy (cooldown, outcome-based, mutual
/// exclusion, category suppression) blocks for a customer now, and from when to when.
#[derive(Debug, Clone)]
pub struct Suppression<'p> {
    pub policy: &'p CompiledPolicy,
    /// What it blocks: one offer or category, or (None) everything the policy applies to.
    pub key: Option<Key>,
    pub block: Block,
    /// Unix seconds: the contact or outcome that started it, and when it ends.
    pub since: i64,
    pub until: i64,
}

/// The suppressions `policies` hold over a customer at `input.now`.
pub fn suppressions<'p>(policies: &'p [CompiledPolicy], input: &PolicyInput<'_>) -> Vec<Suppression<'p>> {
    let mut out = Vec::new();
    for p in policies.iter().filter(|p| p.is_suppression()) {
        let state = p.evaluate(input);
        let blocks =
            state.block.map(|b| (None, b)).into_iter().chain(state.blocks.into_iter().map(|(k, b)| (Some(k), b)));
        for (key, block) in blocks {
            let Some((since, until)) = span(&p.rule, &block, input.now) else { continue };
            // "All of the group but one" is listed offer by offer.
            let keys = match (&key, &p.rule) {
                (Some(Key::AllBut(shown)), PolicyRule::Exclusive { group, .. }) => {
                    group.iter().filter(|g| ***g != **shown).map(|g| Some(Key::Offer(g.as_str().into()))).collect()
                }
                _ => vec![key],
            };
            for key in keys {
                out.push(Suppression { policy: p, key, block: block.clone(), since, until });
            }
        }
    }
    out
}

/// When a suppression started and ends (Unix seconds), from its block.
fn span(rule: &PolicyRule, block: &Block, now: i64) -> Option<(i64, i64)> {
    let (ago, length) = match (rule, block) {
        (_, Block::Cooldown { hours_since, hours }) => (hours_since * 3600.0, hours * 3600.0),
        (_, Block::Outcome { days_since, days, .. }) | (_, Block::CategoryShown { days_since, days, .. }) => {
            (days_since * 86_400.0, days * 86_400.0)
        }
        (PolicyRule::Exclusive { days, .. }, Block::Exclusive { days_since, .. }) => {
            (days_since * 86_400.0, days * 86_400.0)
        }
        _ => return None,
    };
    let since = now - ago.round() as i64;
    Some((since, since + length.round() as i64))
}

fn applies(target: &Target, offer: &OfferFacts, channel: Option<&str>) -> bool {
    match target {
        Target::Global => true,
        Target::Offer(id) => offer.id == *id,
        Target::Category(c) => offer.category == *c,
        Target::Channel(c) => channel == Some(&**c),
        Target::Any(all) => all.iter().any(|t| applies(t, offer, channel)),
    }
}

fn on_channel(target: &Target, channel: Option<&str>) -> bool {
    match target {
        Target::Channel(c) => channel == Some(&**c),
        Target::Any(all) => all.iter().any(|t| on_channel(t, channel)),
        _ => false,
    }
}

fn counts(target: &Target, c: &Contact) -> bool {
    match target {
        Target::Global => true,
        Target::Offer(id) => c.offer_id == *id,
        Target::Category(cat) => c.category == *cat,
        Target::Channel(ch) => c.channel.as_deref() == Some(&**ch),
        Target::Any(all) => all.iter().any(|t| counts(t, c)),
    }
}

fn counts_outcome(target: &Target, o: &OutcomeEvent) -> bool {
    match target {
        Target::Global | Target::Channel(_) => true,
        Target::Offer(id) => o.offer_id == *id,
        Target::Category(c) => o.category == *c,
        Target::Any(all) => all.iter().any(|t| counts_outcome(t, o)),
    }
}

/// The first period a cap is reached on, and how many more contacts every period allows.
fn cap_verdict(limits: &[Option<u32>; 3], counts: &[u32; 3]) -> (Option<Block>, u32) {
    let mut block = None;
    let mut budget = u32::MAX;
    for (i, limit) in limits.iter().enumerate() {
        let Some(max) = *limit else { continue };
        if counts[i] >= max && block.is_none() {
            block = Some(Block::Cap { period: Period::ALL[i], count: counts[i], max });
        }
        budget = budget.min(max.saturating_sub(counts[i]));
    }
    (block, budget)
}

/// `mutual_exclusion`: once an offer of `group` was shown within `days`, every other one
/// is blocked (all of them, once two different ones were).
fn exclusive(group: &[String], days: f64, history: &[Contact], now: i64) -> Vec<(Key, Block)> {
    let since = now - (days * 86_400.0) as i64;
    // Newest first: the latest group offer shown, and the latest other one.
    let mut shown = history.iter().rev().filter(|c| c.at > since && group.iter().any(|g| **g == *c.offer_id));
    let Some(latest) = shown.next() else { return Vec::new() };
    let block =
        |c: &Contact| Block::Exclusive { shown: c.offer_id.clone(), days_since: (now - c.at) as f64 / 86_400.0 };
    // The policy applies to its group's offers only: "all but the latest" is the rest of it.
    let mut blocks = vec![(Key::AllBut(latest.offer_id.clone()), block(latest))];
    if let Some(other) = shown.find(|c| c.offer_id != latest.offer_id) {
        blocks.push((Key::Offer(latest.offer_id.clone()), block(other)));
    }
    blocks
}

/// `category_suppression`: every category (or `only` that one) an offer of which was shown
/// within `days`.
fn category_shown(only: Option<&str>, days: f64, history: &[Contact], now: i64) -> Vec<(Key, Block)> {
    let since = now - (days * 86_400.0) as i64;
    let mut blocks: Vec<(Key, Block)> = Vec::new();
    // Newest first: a category's first contact met is its latest.
    for c in history.iter().rev().filter(|c| c.at > since && !c.category.is_empty()) {
        let seen = |k: &Key| matches!(k, Key::Category(seen) if *seen == c.category);
        if only.is_some_and(|o| o != &*c.category) || blocks.iter().any(|(k, _)| seen(k)) {
            continue;
        }
        let days_since = (now - c.at) as f64 / 86_400.0;
        let block = Block::CategoryShown { category: c.category.clone(), shown: c.offer_id.clone(), days_since, days };
        blocks.push((Key::Category(c.category.clone()), block));
    }
    blocks
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

/// How long a contact can matter: the longest period (31 days), cooldown or lookback.
pub fn retention_secs(policies: &[CompiledPolicy]) -> i64 {
    let window = policies
        .iter()
        .filter_map(|p| match &p.rule {
            PolicyRule::Cooldown { hours } | PolicyRule::Rolling { hours, .. } => Some((hours * 3600.0) as i64),
            PolicyRule::Exclusive { days, .. } | PolicyRule::CategoryShown { days, .. } => {
                Some((days * 86_400.0) as i64)
            }
            _ => None,
        })
        .max()
        .unwrap_or(0);
    window.max(31 * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::policy::{ContactPolicySpec, PolicyScope};

    const HOUR: i64 = 3600;
    const DAY: i64 = 86_400;
    // 2026-11-23 (a Monday) 12:00 UTC.
    const NOW: i64 = 1_795_392_000 + 12 * HOUR;

    /// A contact `ago` seconds before NOW: offer, its category, channel.
    fn contact(ago: i64, offer: &str, category: &str, channel: Option<&str>) -> Contact {
        Contact { at: NOW - ago, offer_id: offer.into(), category: category.into(), channel: channel.map(Into::into) }
    }

    fn outcome(ago: i64, offer: &str, outcome: &str) -> OutcomeEvent {
        OutcomeEvent { at: NOW - ago, offer_id: offer.into(), category: "cards".into(), outcome: outcome.into() }
    }

    /// A policy from its API body, compiled as a flow compiles it.
    fn compiled(body: &str) -> CompiledPolicy {
        let spec: ContactPolicySpec =
            crate::model::parse_json(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"));
        let valid = spec.validated().unwrap_or_else(|e| panic!("{body}: {e}"));
        let mut targets: Vec<Target> = spec
            .scope_refs()
            .into_iter()
            .map(|s| {
                let id: Arc<str> = s.scope_id.unwrap_or_default().into();
                match s.scope {
                    PolicyScope::Global => Target::Global,
                    PolicyScope::Offer => Target::Offer(id),
                    PolicyScope::Category => Target::Category(id),
                    PolicyScope::Channel => Target::Channel(id),
                }
            })
            .collect();
        let target = if targets.len() == 1 { targets.remove(0) } else { Target::Any(targets.into()) };
        CompiledPolicy {
            id: "p".into(),
            name: spec.name.as_str().into(),
            rule_type: spec.rule_type,
            target,
            zone: zone_of(&valid.rule),
            rule: valid.rule,
            bypassable: valid.bypassable,
        }
    }

    fn facts(id: &str, category: &str) -> OfferFacts {
        OfferFacts {
            id: id.into(),
            name: id.into(),
            category: category.into(),
            status: "active".into(),
            priority: 50.0,
            business_value: 0.0,
            revenue_value: None,
            margin: None,
            weight: 1.0,
            mandatory: false,
        }
    }

    /// One named case: a policy, what the decision knows, the candidate (offer, category,
    /// request channel); `Some(reason prefix)` when it must be blocked, `None` when allowed.
    struct Case {
        name: &'static str,
        policy: &'static str,
        contacts: Vec<Contact>,
        outcomes: Vec<OutcomeEvent>,
        segments: &'static [&'static str],
        /// Offer `a`'s impressions across customers (day, week, month).
        impressions: [u32; 3],
        /// Seconds after NOW the decision is made (contacts and outcomes stay relative to NOW).
        later: i64,
        offer: (&'static str, &'static str),
        channel: Option<&'static str>,
        blocked: Option<&'static str>,
    }

    fn case(name: &'static str, policy: &'static str, offer: (&'static str, &'static str)) -> Case {
        Case {
            name,
            policy,
            contacts: Vec::new(),
            outcomes: Vec::new(),
            segments: &[],
            impressions: [0; 3],
            later: 0,
            offer,
            channel: None,
            blocked: None,
        }
    }

    impl Case {
        fn contacts(mut self, c: Vec<Contact>) -> Case {
            self.contacts = c;
            self
        }
        fn outcomes(mut self, o: Vec<OutcomeEvent>) -> Case {
            self.outcomes = o;
            self
        }
        fn segments(mut self, s: &'static [&'static str]) -> Case {
            self.segments = s;
            self
        }
        fn later(mut self, secs: i64) -> Case {
            self.later = secs;
            self
        }
        fn impressions(mut self, counts: [u32; 3]) -> Case {
            self.impressions = counts;
            self
        }
        fn on(mut self, channel: &'static str) -> Case {
            self.channel = Some(channel);
            self
        }
        fn blocked(mut self, reason: &'static str) -> Case {
            self.blocked = Some(reason);
            self
        }
    }

    const DAILY_OFFER_CAP: &str =
        r#"{"name": "cap", "ruleType": "frequency_cap", "scopeId": "a", "config": {"maxPerDay": 1}}"#;
    const ROLLING: &str = r#"{"name": "rolling", "ruleType": "frequency_cap", "scope": "global",
        "config": {"maxContacts": 2, "lookbackHours": 24}}"#;
    const EMAIL_CAP: &str = r#"{"name": "email", "ruleType": "frequency_cap", "scope": "channel", "scopeId": "email",
        "config": {"maxPerWeek": 1}}"#;
    const CROSS: &str =
        r#"{"name": "cross", "ruleType": "cross_channel_cap", "scope": "global", "config": {"maxPerWeek": 2}}"#;
    const TOTAL: &str = r#"{"name": "total", "ruleType": "customer_total_cap",
        "config": {"maxTotal": 2, "periodType": "monthly"}}"#;
    const COOLDOWN: &str = r#"{"name": "cool", "ruleType": "cooldown", "scope": "category", "scopeId": "cards", "config": {"cooldownHours": 48}}"#;
    const DISMISSED: &str = r#"{"name": "after dismissals", "ruleType": "outcome_based", "scope": "global",
        "config": {"outcomeTypes": ["dismiss", "not_interested"], "lookbackDays": 90}}"#;
    const NOT_INTERESTED: &str = r#"{"name": "not interested", "ruleType": "outcome_based", "scopeId": "a",
        "config": {"outcomeType": "not_interested", "lookbackDays": 30}}"#;
    const SEGMENTS: &str = r#"{"name": "vulnerable", "ruleType": "segment_exclusion",
        "config": {"excludeSegments": ["vulnerable", "deceased"]}}"#;
    const GROUP: &str = r#"{"name": "one card", "ruleType": "mutual_exclusion",
        "config": {"offerGroup": ["a", "b", "c"], "lookbackDays": 7}}"#;
    const CATEGORY: &str = r#"{"name": "category", "ruleType": "category_suppression",
        "config": {"suppressionDays": 3}}"#;
    const ONE_CATEGORY: &str = r#"{"name": "loans only", "ruleType": "category_suppression",
        "config": {"suppressionDays": 3, "categoryId": "loans"}}"#;
    const OVERRIDE: &str = r#"{"name": "allow", "ruleType": "allow_override", "scopeId": "a"}"#;
    const TWO_SCOPES: &str = r#"{"name": "two scopes", "ruleType": "frequency_cap",
        "scopes": [{"scope": "offer", "scopeId": "a"}, {"scope": "category", "scopeId": "loans"}],
        "config": {"maxPerDay": 1}}"#;
    const BUDGET: &str = r#"{"name": "budget", "ruleType": "budget_exhausted", "scopeId": "a",
        "config": {"maxPerDay": 100, "maxPerMonth": 1000}}"#;
    const OFFICE: &str = r#"{"name": "office", "ruleType": "time_window",
        "config": {"allowedDays": [1, 2, 3, 4, 5], "startHour": 9, "endHour": 18}}"#;
    const AFTERNOON: &str = r#"{"name": "afternoon", "ruleType": "time_window",
        "config": {"startHour": 13, "endHour": 18}}"#;
    const TOKYO_OFFICE: &str = r#"{"name": "tokyo", "ruleType": "time_window",
        "config": {"startHour": 9, "endHour": 18, "timeZone": "Asia/Tokyo"}}"#;
    const TOKYO_EVENINGS: &str = r#"{"name": "tokyo evenings", "ruleType": "time_window",
        "config": {"startHour": 20, "endHour": 6, "timeZone": "Asia/Tokyo"}}"#;
    // NOW + 7h is 19:00 UTC on Monday, 04:00 on Tuesday in Tokyo.
    const MONDAY_NIGHTS: &str = r#"{"name": "monday nights", "ruleType": "time_window",
        "config": {"allowedDays": [1], "startHour": 22, "endHour": 6, "timeZone": "Asia/Tokyo"}}"#;
    const SUNDAY_NIGHTS: &str = r#"{"name": "sunday nights", "ruleType": "time_window",
        "config": {"allowedDays": [7], "startHour": 22, "endHour": 6, "timeZone": "Asia/Tokyo"}}"#;
    const WEEKENDS: &str = r#"{"name": "weekends", "ruleType": "time_window", "scope": "channel", "scopeId": "sms",
        "config": {"allowedDays": [6, 7], "startHour": 0, "endHour": 24}}"#;

    fn cases() -> Vec<Case> {
        let a = ("a", "cards");
        let b = ("b", "cards");
        let loan = ("l", "loans");
        vec![
            case("frequency_cap: under the daily cap", DAILY_OFFER_CAP, a)
                .contacts(vec![contact(DAY, "a", "cards", None)]),
            case("frequency_cap: at the daily cap", DAILY_OFFER_CAP, a)
                .contacts(vec![contact(HOUR, "a", "cards", None)])
                .blocked("frequency_cap exceeded: 1/1 this day at scope=offer=a"),
            case("frequency_cap: another offer's contact", DAILY_OFFER_CAP, a)
                .contacts(vec![contact(HOUR, "b", "cards", None)]),
            case("frequency_cap: rolling window full", ROLLING, b)
                .contacts(vec![contact(23 * HOUR, "a", "cards", None), contact(HOUR, "c", "cards", None)])
                .blocked("frequency_cap exceeded: 2/2 in the last 24h at scope=global"),
            case("frequency_cap: rolling window, one slid out", ROLLING, b)
                .contacts(vec![contact(25 * HOUR, "a", "cards", None), contact(HOUR, "c", "cards", None)]),
            case("frequency_cap: channel cap on its channel", EMAIL_CAP, a)
                .contacts(vec![contact(HOUR, "b", "cards", Some("email"))])
                .on("email")
                .blocked("frequency_cap exceeded: 1/1 this week at scope=channel=email"),
            case("frequency_cap: channel cap on another channel", EMAIL_CAP, a)
                .contacts(vec![contact(HOUR, "b", "cards", Some("email"))])
                .on("sms"),
            case("cross_channel_cap: the offer's contacts on every channel", CROSS, a)
                .contacts(vec![
                    contact(HOUR, "a", "cards", Some("email")),
                    contact(2 * HOUR, "a", "cards", Some("sms")),
                ])
                .on("in_app")
                .blocked("cross_channel_cap exceeded: 2/2 this week at scope=global"),
            case("cross_channel_cap: other offers do not count", CROSS, b).contacts(vec![
                contact(HOUR, "a", "cards", Some("email")),
                contact(2 * HOUR, "a", "cards", Some("sms")),
            ]),
            case("customer_total_cap: budget left", TOTAL, loan).contacts(vec![contact(HOUR, "a", "cards", None)]),
            case("customer_total_cap: budget spent", TOTAL, loan)
                .contacts(vec![contact(HOUR, "a", "cards", None), contact(DAY, "b", "cards", None)])
                .blocked("customer_total_cap exceeded: 2/2 this month at scope=global"),
            case("cooldown: within it", COOLDOWN, b)
                .contacts(vec![contact(10 * HOUR, "a", "cards", None)])
                .blocked("cooldown: last contact 10.0h ago, 48h required at scope=category=cards"),
            case("cooldown: past it", COOLDOWN, b).contacts(vec![contact(49 * HOUR, "a", "cards", None)]),
            case("cooldown: another category", COOLDOWN, loan).contacts(vec![contact(HOUR, "a", "cards", None)]),
            case("outcome_based: a dismissal suppresses everything", DISMISSED, loan)
                .outcomes(vec![outcome(5 * DAY, "a", "dismiss")])
                .blocked("outcome_based: `dismiss` recorded 5.0 days ago, suppressed for 90 days at scope=global"),
            case("outcome_based: an old dismissal", DISMISSED, loan).outcomes(vec![outcome(91 * DAY, "a", "dismiss")]),
            case("outcome_based: another outcome", DISMISSED, loan).outcomes(vec![outcome(DAY, "a", "click")]),
            case("outcome_based: not interested in this offer", NOT_INTERESTED, a)
                .outcomes(vec![outcome(2 * DAY, "a", "not_interested")])
                .blocked("outcome_based: `not_interested` recorded 2.0 days ago"),
            case("outcome_based: not interested in another offer", NOT_INTERESTED, a).outcomes(vec![outcome(
                2 * DAY,
                "b",
                "not_interested",
            )]),
            case("segment_exclusion: in an excluded segment", SEGMENTS, a)
                .segments(&["young", "vulnerable"])
                .blocked("segment_exclusion: the customer is in segment `vulnerable`"),
            case("segment_exclusion: in no excluded segment", SEGMENTS, a).segments(&["young"]),
            case("mutual_exclusion: another of the group was shown", GROUP, b)
                .contacts(vec![contact(DAY, "a", "cards", None)])
                .blocked("mutual_exclusion: offer a of the same group was shown 1.0 days ago"),
            case("mutual_exclusion: the one shown stays", GROUP, a).contacts(vec![contact(DAY, "a", "cards", None)]),
            case("mutual_exclusion: outside the group", GROUP, loan).contacts(vec![contact(DAY, "a", "cards", None)]),
            case("mutual_exclusion: shown before the lookback", GROUP, b).contacts(vec![contact(
                8 * DAY,
                "a",
                "cards",
                None,
            )]),
            case("mutual_exclusion: two of the group were shown", GROUP, a)
                .contacts(vec![contact(2 * DAY, "a", "cards", None), contact(DAY, "c", "cards", None)])
                .blocked("mutual_exclusion: offer c of the same group"),
            case("category_suppression: the category was shown", CATEGORY, b)
                .contacts(vec![contact(DAY, "a", "cards", None)])
                .blocked(
                    "category_suppression: offer a of category `cards` was shown 1.0 days ago, suppressed for 3 days",
                ),
            case("category_suppression: another category", CATEGORY, loan)
                .contacts(vec![contact(DAY, "a", "cards", None)]),
            case("category_suppression: long ago", CATEGORY, b).contacts(vec![contact(4 * DAY, "a", "cards", None)]),
            case("category_suppression: only its category", ONE_CATEGORY, b)
                .contacts(vec![contact(DAY, "a", "cards", None)]),
            case("category_suppression: its category shown", ONE_CATEGORY, loan)
                .contacts(vec![contact(DAY, "m", "loans", None)])
                .blocked("category_suppression: offer m of category `loans`"),
            case("allow_override: never blocks", OVERRIDE, a).contacts(vec![contact(HOUR, "a", "cards", None)]),
            case("scopes: a contact in one scope counts for the other", TWO_SCOPES, a)
                .contacts(vec![contact(HOUR, "m", "loans", None)])
                .blocked("frequency_cap exceeded: 1/1 this day at scope=offer=a|category=loans"),
            case("scopes: an offer in neither scope", TWO_SCOPES, b).contacts(vec![contact(HOUR, "m", "loans", None)]),
            case("budget_exhausted: budget left", BUDGET, a).impressions([99, 400, 999]),
            case("budget_exhausted: the day's budget spent", BUDGET, a)
                .impressions([100, 400, 999])
                .blocked("budget_exhausted: 100/100 impressions this day at scope=offer=a"),
            case("budget_exhausted: the month's budget spent", BUDGET, a)
                .impressions([3, 400, 1000])
                .blocked("budget_exhausted: 1000/1000 impressions this month"),
            case("budget_exhausted: another offer", BUDGET, b).impressions([100, 400, 1000]),
            // NOW is Monday 12:00 UTC, 21:00 in Tokyo.
            case("time_window: within office hours", OFFICE, a),
            case("time_window: before its hours", AFTERNOON, a)
                .blocked("time_window: Mon 12h in UTC is outside Mon,Tue,Wed,Thu,Fri,Sat,Sun 13–18h"),
            case("time_window: after its hours in its time zone", TOKYO_OFFICE, a)
                .blocked("time_window: Mon 21h in Asia/Tokyo is outside"),
            case("time_window: overnight hours", TOKYO_EVENINGS, a),
            // 04:00 on Tuesday in Tokyo belongs to Monday night's window.
            case("time_window: overnight, past midnight", MONDAY_NIGHTS, a).later(7 * HOUR),
            case("time_window: overnight, the wrong night", SUNDAY_NIGHTS, a)
                .later(7 * HOUR)
                .blocked("time_window: Tue 4h in Asia/Tokyo is outside Sun 22–6h"),
            case("time_window: not on this day", WEEKENDS, a)
                .on("sms")
                .blocked("time_window: Mon 12h in UTC is outside Sat,Sun 0–24h"),
            case("time_window: another channel", WEEKENDS, a).on("email"),
        ]
    }

    #[test]
    fn every_policy_type_blocks_and_allows() {
        let cases = cases();
        let mut names = std::collections::HashSet::new();
        for c in &cases {
            assert!(names.insert(c.name), "two cases are named `{}`", c.name);
            let p = compiled(c.policy);
            let segments: Vec<String> = c.segments.iter().map(|s| s.to_string()).collect();
            let impressions = |id: &str| if id == "a" { c.impressions } else { [0; 3] };
            let input = PolicyInput {
                contacts: &c.contacts,
                outcomes: &c.outcomes,
                segments: &segments,
                now: NOW + c.later,
                impressions: &impressions,
            };
            let state = p.evaluate(&input);
            let offer = facts(c.offer.0, c.offer.1);
            let block =
                (p.applies(&offer, c.channel) || p.applies_on(c.channel)).then(|| state.blocks(&offer)).flatten();
            match (c.blocked, block) {
                (None, None) => {}
                (Some(expected), Some(b)) => {
                    let reason = b.reason(&p);
                    assert!(reason.starts_with(expected), "{}: reason `{reason}`, expected `{expected}…`", c.name);
                }
                (expected, got) => panic!("{}: expected {expected:?}, got {got:?}", c.name),
            }
        }
        // Every type of the API has a blocked and an allowed row.
        for kind in crate::model::policy::PolicyType::ALL {
            let rows = cases.iter().filter(|c| compiled(c.policy).rule_type == kind);
            let (blocked, allowed): (Vec<&Case>, Vec<&Case>) = rows.partition(|c| c.blocked.is_some());
            use crate::model::policy::PolicyType::{AllowOverride, MetricCondition};
            // A metric condition is evaluated on the decision's slots: `tests/contact_policies.rs`.
            if kind == MetricCondition {
                continue;
            }
            assert!(kind == AllowOverride || !blocked.is_empty(), "{}: no blocked case", kind.name());
            assert!(!allowed.is_empty(), "{}: no allowed case", kind.name());
        }
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
    fn shared_caps_give_the_decision_a_budget_and_offer_caps_do_not() {
        let input = |contacts: &[Contact]| {
            compiled(TOTAL).evaluate(&PolicyInput {
                contacts,
                outcomes: &[],
                segments: &[],
                now: NOW,
                impressions: &|_| [0; 3],
            })
        };
        assert_eq!(input(&[contact(HOUR, "a", "cards", None)]).budget, Some(1));
        // Last month's contact does not count.
        assert_eq!(input(&[contact(30 * DAY, "a", "cards", None)]).budget, Some(2));
        let offer = compiled(DAILY_OFFER_CAP);
        let state = offer.evaluate(&PolicyInput {
            contacts: &[],
            outcomes: &[],
            segments: &[],
            now: NOW,
            impressions: &|_| [0; 3],
        });
        assert_eq!(state.budget, None);
        let cooldown = compiled(COOLDOWN);
        assert_eq!(
            cooldown
                .evaluate(&PolicyInput {
                    contacts: &[],
                    outcomes: &[],
                    segments: &[],
                    now: NOW,
                    impressions: &|_| [0; 3]
                })
                .budget,
            Some(1)
        );
    }

    #[test]
    fn mandatory_offers_obey_caps_and_unbypassable_policies_only() {
        assert!(compiled(DAILY_OFFER_CAP).binds_mandatory());
        assert!(compiled(CROSS).binds_mandatory());
        assert!(!compiled(COOLDOWN).binds_mandatory());
        let strict = r#"{"name": "strict", "ruleType": "cooldown", "scope": "global",
            "config": {"cooldownHours": 24, "bypassable": false}}"#;
        assert!(compiled(strict).binds_mandatory());
    }
}
