//! Which score plan decides, and explain's `weightsFrom`: the Score node, its channel or
//! channel-type overrides, and rule-file `score` blocks. One named row per case.
//!
//! The documented precedence (README, "Scoring and decisions"): a plan for one channel
//! beats a plan for all channels; between the Score node and a rule file at the same
//! reach, the rule file wins; a `channel` override matches that channel's name or id,
//! never its type (`channelType` overrides match types).

use arbiter::demo::{self, Eligibility};
use arbiter::engine::{NoSignals, RecommendRequest};
use serde_json::{json, Value};

struct Case {
    name: &'static str,
    /// The Score node's `overrides`.
    overrides: Value,
    /// `score` blocks appended to the tutorial's rule file.
    file_scores: &'static str,
    channel: &'static str,
    /// Expected `weightsFrom` and propensity weight of the plan that scored.
    from: &'static str,
    propensity_weight: f64,
}

const EMAIL_FILE_BLOCK: &str = "score for flow \"cross-sell\" on channel \"email\" {\n    weights propensity 0.7, relevance 0.1, impact 0.1, emphasis 0.1\n}\n";
const ALL_FILE_BLOCK: &str =
    "score for flow \"cross-sell\" {\n    weights propensity 0.6, relevance 0.1, impact 0.2, emphasis 0.1\n}\n";

fn weights(p: f64) -> Value {
    let rest = (1.0 - p) / 3.0;
    json!({"propensityWeight": p, "relevanceWeight": rest, "impactWeight": rest, "emphasisWeight": rest})
}

fn cases() -> Vec<Case> {
    let email_override = json!([{"scope": "channel", "value": "email", "formula": weights(0.25)}]);
    let type_override = json!([{"scope": "channelType", "value": "email", "formula": weights(0.55)}]);
    let both = json!([
        {"scope": "channelType", "value": "email", "formula": weights(0.55)},
        {"scope": "channel", "value": "branch", "formula": weights(0.25)}
    ]);
    vec![
        Case {
            name: "node only",
            overrides: json!([]),
            file_scores: "",
            channel: "in_app",
            from: "node",
            propensity_weight: 0.4,
        },
        Case {
            name: "channel override applies to its channel",
            overrides: email_override.clone(),
            file_scores: "",
            channel: "email",
            from: "override:email",
            propensity_weight: 0.25,
        },
        // Channels created without channelType are all of type email: an override for
        // the channel named `email` must leave in_app and branch alone.
        Case {
            name: "channel override does not leak to channels of its type",
            overrides: email_override.clone(),
            file_scores: "",
            channel: "in_app",
            from: "node",
            propensity_weight: 0.4,
        },
        Case {
            name: "channel override does not leak to branch",
            overrides: email_override,
            file_scores: "",
            channel: "branch",
            from: "node",
            propensity_weight: 0.4,
        },
        Case {
            name: "channelType override matches every channel of the type",
            overrides: type_override,
            file_scores: "",
            channel: "in_app",
            from: "override:channelType=email",
            propensity_weight: 0.55,
        },
        Case {
            name: "a channel override beats a channelType override",
            overrides: both,
            file_scores: "",
            channel: "branch",
            from: "override:branch",
            propensity_weight: 0.25,
        },
        Case {
            name: "a file block for all channels replaces the node",
            overrides: json!([]),
            file_scores: ALL_FILE_BLOCK,
            channel: "in_app",
            from: "cross_sell.rules:",
            propensity_weight: 0.6,
        },
        Case {
            name: "a node channel override beats a file block for all channels",
            overrides: json!([{"scope": "channel", "value": "in_app", "formula": weights(0.25)}]),
            file_scores: ALL_FILE_BLOCK,
            channel: "in_app",
            from: "override:in_app",
            propensity_weight: 0.25,
        },
        Case {
            name: "a file block for one channel beats the node override for it",
            overrides: json!([{"scope": "channel", "value": "email", "formula": weights(0.25)}]),
            file_scores: EMAIL_FILE_BLOCK,
            channel: "email",
            from: "cross_sell.rules:",
            propensity_weight: 0.7,
        },
        Case {
            name: "a file block for one channel leaves the others on the node",
            overrides: json!([]),
            file_scores: EMAIL_FILE_BLOCK,
            channel: "in_app",
            from: "node",
            propensity_weight: 0.4,
        },
    ]
}

#[test]
fn score_plan_precedence_and_weights_from() {
    for case in cases() {
        assert!(!case.name.is_empty() && !case.channel.is_empty() && !case.from.is_empty(), "malformed row");
        let source = format!("{}\n{}", demo::CROSS_SELL_RULES, case.file_scores);
        let mut t = demo::tutorial_with(Eligibility::Rules(&source))
            .unwrap_or_else(|e| panic!("{}: tutorial tenant: {e}", case.name));
        let flow = t.catalog.flows.iter().find(|f| f.meta.id == t.flow_id).unwrap().clone();
        let mut spec = flow.spec.clone();
        let score = spec.draft_config.nodes.iter_mut().find(|n| n.kind == "score").unwrap();
        score.config["overrides"] = case.overrides.clone();
        t.catalog.update_flow(&t.flow_id, spec).unwrap_or_else(|e| panic!("{}: update: {e}", case.name));
        let compiled = t.catalog.publish(&t.flow_id, None).unwrap_or_else(|e| panic!("{}: publish: {e}", case.name));
        let req = RecommendRequest {
            customer_id: "cust_42".into(),
            channel: Some(case.channel.into()),
            decision_flow_key: Some("cross-sell".into()),
            ..Default::default()
        };
        let d = compiled.decide(&req, &NoSignals, true);
        let scores = &d.decisions.first().unwrap_or_else(|| panic!("{}: no decision", case.name));
        let scores = &scores.explanation.as_ref().expect("explain").ranking_scores;
        assert!(
            scores.weights_from.starts_with(case.from),
            "{}: weightsFrom {} (expected {})",
            case.name,
            scores.weights_from,
            case.from
        );
        let w = scores.weights.propensity_weight;
        assert!((w - case.propensity_weight).abs() < 1e-9, "{}: propensity weight {w}", case.name);
    }
}

#[test]
fn the_shipped_rule_file_leaves_the_weights_to_the_flow() {
    let t = demo::tutorial_with(Eligibility::Rules(demo::CROSS_SELL_RULES)).unwrap();
    let d = t.flow.decide(&demo::request(), &NoSignals, true);
    let scores = &d.decisions[0].explanation.as_ref().unwrap().ranking_scores;
    assert_eq!(&*scores.weights_from, "node");
    let w = scores.weights;
    assert_eq!(
        (w.propensity_weight, w.relevance_weight, w.impact_weight, w.emphasis_weight, w.uplift_weight),
        (0.4, 0.15, 0.35, 0.1, 0.5)
    );
}
