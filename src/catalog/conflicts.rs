//! `POST /policy-conflicts/analyze`: what in a tenant's active contact policies works
//! against itself, read from the catalog alone (no decision is made).
//!
//! | type           | severity | found when                                                           |
//! |----------------|----------|----------------------------------------------------------------------|
//! | `dead_rule`    | error    | a policy's scope names an offer, channel or category that no active offer or channel has |
//! | `contradiction`| warning  | an `allow_override` exempts offers that a `bypassable: false` policy was meant to bind |
//! | `overlap`      | warning  | two policies of one type select the same offers: the stricter decides |
//! | `priority_tie` | warning  | two blocking policies with overlapping scopes share a priority: their order is their age |
//! | `gap`          | warning  | some channels have a channel-scoped cap and others none              |

use serde::Serialize;

use crate::model::channel::Channel;
use crate::model::offer::OfferStatus;
use crate::model::policy::{ContactPolicy, PolicyScope, PolicyStatus, PolicyType, ScopeRef};
use crate::model::Offer;

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConflictReport {
    pub conflicts: Vec<Conflict>,
    pub summary: Summary,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Conflict {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `error` or `warning`.
    pub severity: &'static str,
    pub description: String,
    /// The ids of the policies involved.
    pub policies: Vec<String>,
    pub recommendation: String,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub total: usize,
    pub errors: usize,
    pub warnings: usize,
}

/// The conflicts among the active `policies`, given the catalog's offers and channels.
pub fn analyze(policies: &[ContactPolicy], offers: &[Offer], channels: &[Channel]) -> ConflictReport {
    let active: Vec<&ContactPolicy> = policies.iter().filter(|p| p.spec.status == PolicyStatus::Active).collect();
    let mut conflicts = Vec::new();
    for p in &active {
        dead(p, offers, channels, &mut conflicts);
    }
    for (i, a) in active.iter().enumerate() {
        for b in &active[i + 1..] {
            pair(a, b, &mut conflicts);
        }
    }
    gaps(&active, channels, &mut conflicts);
    let errors = conflicts.iter().filter(|c| c.severity == "error").count();
    let summary = Summary { total: conflicts.len(), errors, warnings: conflicts.len() - errors };
    ConflictReport { conflicts, summary }
}

fn label(p: &ContactPolicy) -> String {
    format!("`{}` ({})", p.spec.name, p.spec.rule_type.name())
}

fn conflict(
    kind: &'static str,
    severity: &'static str,
    description: String,
    ps: &[&ContactPolicy],
    fix: &str,
) -> Conflict {
    Conflict {
        kind,
        severity,
        description,
        policies: ps.iter().map(|p| p.meta.id.clone()).collect(),
        recommendation: fix.to_string(),
    }
}

/// A scope that selects nothing: its offer or channel is gone or inactive, or no active
/// offer has its category.
fn dead(p: &ContactPolicy, offers: &[Offer], channels: &[Channel], out: &mut Vec<Conflict>) {
    let live = |o: &&Offer| o.spec.status == OfferStatus::Active;
    for s in p.spec.scope_refs() {
        let id = s.scope_id.as_deref().unwrap_or_default();
        let missing = match s.scope {
            PolicyScope::Global => false,
            PolicyScope::Offer => !offers.iter().filter(live).any(|o| o.meta.id == id || o.spec.name == id),
            PolicyScope::Category => !offers.iter().filter(live).any(|o| o.spec.category.as_deref() == Some(id)),
            PolicyScope::Channel => !channels.iter().any(|c| c.meta.id == id || c.spec.name == id),
        };
        if missing {
            let description = format!("{} applies to {} `{id}`, which no active entity is", label(p), s.scope.name());
            out.push(conflict(
                "dead_rule",
                "error",
                description,
                &[p],
                "point its scope at a live entity, or archive it",
            ));
        }
    }
}

/// Whether two scopes can select the same offer in one decision.
fn overlaps(a: &ScopeRef, b: &ScopeRef) -> bool {
    use PolicyScope::{Category, Channel, Global, Offer};
    match (a.scope, b.scope) {
        (Global, _) | (_, Global) => true,
        // A channel scope selects any offer on its channel.
        (Channel, Channel) => a.scope_id == b.scope_id,
        (Channel, _) | (_, Channel) => true,
        (Offer, Offer) | (Category, Category) => a.scope_id == b.scope_id,
        // An offer may be of the category: not known without the offer; counted as possible.
        (Offer, Category) | (Category, Offer) => true,
    }
}

fn any_overlap(a: &ContactPolicy, b: &ContactPolicy) -> bool {
    let (sa, sb) = (a.spec.scope_refs(), b.spec.scope_refs());
    sa.iter().any(|x| sb.iter().any(|y| overlaps(x, y)))
}

fn same_scopes(a: &ContactPolicy, b: &ContactPolicy) -> bool {
    a.spec.scope_refs() == b.spec.scope_refs()
}

fn pair(a: &ContactPolicy, b: &ContactPolicy, out: &mut Vec<Conflict>) {
    if !any_overlap(a, b) {
        return;
    }
    let (ka, kb) = (a.spec.rule_type, b.spec.rule_type);
    let unbypassable = |p: &ContactPolicy| p.spec.config.get("bypassable") == Some(&serde_json::Value::Bool(false));
    for (over, strict) in [(a, b), (b, a)] {
        if over.spec.rule_type == PolicyType::AllowOverride
            && strict.spec.rule_type != PolicyType::AllowOverride
            && unbypassable(strict)
        {
            let description = format!(
                "{} exempts offers that {} is marked `bypassable: false` to bind: the override wins",
                label(over),
                label(strict)
            );
            let fix = "narrow the override's scope, or drop `bypassable: false` if the exemption is meant";
            out.push(conflict("contradiction", "warning", description, &[over, strict], fix));
        }
    }
    if ka == kb && ka != PolicyType::AllowOverride && same_scopes(a, b) {
        let description = format!("{} and {} select the same offers: the stricter decides", label(a), label(b));
        out.push(conflict("overlap", "warning", description, &[a, b], "merge them into one policy"));
    } else if a.spec.priority == b.spec.priority && ka != PolicyType::AllowOverride && kb != PolicyType::AllowOverride {
        let description = format!(
            "{} and {} have priority {} and can block the same offers: the older one is checked first",
            label(a),
            label(b),
            a.spec.priority
        );
        let fix = "give the one whose reason should show a higher priority";
        out.push(conflict("priority_tie", "warning", description, &[a, b], fix));
    }
}

/// Channels without a channel-scoped cap while others have one.
fn gaps(active: &[&ContactPolicy], channels: &[Channel], out: &mut Vec<Conflict>) {
    let caps = |p: &&&ContactPolicy| matches!(p.spec.rule_type, PolicyType::FrequencyCap);
    let capped: Vec<&&ContactPolicy> = active
        .iter()
        .filter(caps)
        .filter(|p| p.spec.scope_refs().iter().any(|s| s.scope == PolicyScope::Channel))
        .collect();
    if capped.is_empty() {
        return;
    }
    let covers = |c: &Channel, p: &ContactPolicy| {
        let on = |s: &ScopeRef| s.scope == PolicyScope::Channel && s.scope_id.as_deref() == Some(c.meta.id.as_str());
        p.spec.scope_refs().iter().any(on)
    };
    for c in channels {
        if !capped.iter().any(|p| covers(c, p)) {
            let description =
                format!("channel `{}` has no frequency cap of its own, while other channels do", c.spec.name);
            let policies: Vec<&ContactPolicy> = capped.iter().map(|p| **p).collect();
            out.push(conflict(
                "gap",
                "warning",
                description,
                &policies,
                "add a frequency cap for this channel, or a global one",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{parse_json, Meta};

    fn policy(id: &str, body: &str) -> ContactPolicy {
        let spec = parse_json(body.as_bytes()).unwrap();
        ContactPolicy { meta: Meta { id: id.to_string(), ..Meta::new() }, spec }
    }

    fn offer(id: &str, category: &str) -> Offer {
        let spec =
            parse_json(format!(r#"{{"name": "{id}", "status": "active", "category": "{category}"}}"#).as_bytes())
                .unwrap();
        Offer { meta: Meta { id: id.to_string(), ..Meta::new() }, spec }
    }

    fn channel(id: &str) -> Channel {
        let spec = parse_json(format!(r#"{{"name": "{id}"}}"#).as_bytes()).unwrap();
        Channel { meta: Meta { id: id.to_string(), ..Meta::new() }, spec }
    }

    /// One named case: policies (id, body), then the conflict types found, in order.
    #[test]
    fn conflicts_are_found_by_type() {
        let cap = |id: &str, scope: &str, priority: u32| {
            policy(
                id,
                &format!(
                    r#"{{"name": "{id}", "ruleType": "frequency_cap", {scope}, "priority": {priority}, "config": {{"maxPerDay": 1}}}}"#
                ),
            )
        };
        let strict_cooldown = policy(
            "strict",
            r#"{"name": "strict", "ruleType": "cooldown", "scope": "global", "priority": 40, "config": {"cooldownHours": 24, "bypassable": false}}"#,
        );
        let override_a = policy("allow", r#"{"name": "allow", "ruleType": "allow_override", "scopeId": "a"}"#);
        let rows: Vec<(&str, Vec<ContactPolicy>, Vec<&str>)> = vec![
            ("no policies", vec![], vec![]),
            ("one policy", vec![cap("p1", r#""scopeId": "a""#, 50)], vec![]),
            ("an offer that is gone", vec![cap("p1", r#""scopeId": "zzz""#, 50)], vec!["dead_rule"]),
            (
                "a category no offer has",
                vec![cap("p1", r#""scope": "category", "scopeId": "loans""#, 50)],
                vec!["dead_rule"],
            ),
            (
                "two caps on one offer",
                vec![cap("p1", r#""scopeId": "a""#, 50), cap("p2", r#""scopeId": "a""#, 60)],
                vec!["overlap"],
            ),
            (
                "a tie on overlapping scopes",
                vec![cap("p1", r#""scopeId": "a""#, 50), cap("p2", r#""scope": "global""#, 50)],
                vec!["priority_tie"],
            ),
            (
                "no tie on disjoint offers",
                vec![cap("p1", r#""scopeId": "a""#, 50), cap("p2", r#""scopeId": "b""#, 50)],
                vec![],
            ),
            ("an override against a strict policy", vec![override_a, strict_cooldown], vec!["contradiction"]),
            ("a channel left uncapped", vec![cap("p1", r#""scope": "channel", "scopeId": "email""#, 50)], vec!["gap"]),
        ];
        let offers = [offer("a", "cards"), offer("b", "cards")];
        let channels = [channel("email"), channel("sms")];
        for (name, policies, expected) in rows {
            let report = analyze(&policies, &offers, &channels);
            let found: Vec<&str> = report.conflicts.iter().map(|c| c.kind).collect();
            assert_eq!(found, expected, "{name}: {report:?}");
            assert_eq!(report.summary.total, expected.len(), "{name}");
            assert_eq!(report.summary.errors, expected.iter().filter(|k| **k == "dead_rule").count(), "{name}");
        }
    }
}
