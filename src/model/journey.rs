//! Journeys: multi-step programmes a customer is enrolled in. A journey is a graph of
//! steps — an entry trigger, waits, decisions, condition splits, channel actions and
//! exits — that an enrollment walks, one step after another, as time passes and the
//! customer responds. This module is the journey as sent and stored, and the checks
//! that need no tenant: every config parses, and the graph is one entry, acyclic,
//! every node reachable, every node with the exits its type needs.

use serde::{Deserialize, Serialize};

use super::offer::OfferStatus;
use super::{in_range, non_blank, parse_value, FieldError, Meta, ValidationError};

/// Most steps a journey may have: a definition is walked per customer event.
pub const MAX_NODES: usize = 200;

fn thirty() -> u32 {
    30
}

fn draft() -> OfferStatus {
    OfferStatus::Draft
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JourneySpec {
    #[schemars(length(min = 1, max = 255), regex(pattern = r"\S"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2000))]
    pub description: Option<String>,
    /// Only an `active` journey enrolls customers; a paused one keeps its enrollments
    /// where they are until it is active again.
    #[serde(default = "draft")]
    pub status: OfferStatus,
    pub definition: Definition,
    /// An enrollment still active this many days after it began ends as `expired`.
    #[serde(default = "thirty")]
    #[schemars(range(min = 1, max = 365))]
    pub max_duration_days: u32,
    /// A rule-language condition on the customer (`customer.tier == "premium"`): a
    /// customer for whom it is false is not enrolled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_condition: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Definition {
    pub nodes: Vec<JourneyNode>,
    #[serde(default)]
    pub edges: Vec<JourneyEdge>,
}

/// A step as the client sent it; `config` is parsed by `type` ([`JourneySpec::plan`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JourneyNode {
    pub id: String,
    /// `entry_trigger`, `wait`, `nba_decision`, `condition_split`, `channel_action` or `exit`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub config: serde_json::Value,
    /// Where an editor drew it; kept, not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<serde_json::Value>,
}

/// `from` → `to`; `when` labels the branches of a split (`true`/`false`) and of a wait
/// for an event with a timeout (`event`/`timeout`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JourneyEdge {
    #[serde(alias = "source")]
    pub from: String,
    #[serde(alias = "target")]
    pub to: String,
    #[serde(default, alias = "label", skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

/// A journey as stored and returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Journey {
    #[serde(flatten)]
    pub meta: Meta,
    #[serde(flatten)]
    pub spec: JourneySpec,
}

/// What a manual or triggered enrollment does when the customer is already in the journey.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Deduplication {
    /// Keep the active enrollment; enroll no one.
    #[default]
    SkipIfActive,
    /// End the active enrollment (`exited`) and start a new one.
    Restart,
    /// Start another enrollment beside the active one.
    AllowMultiple,
}

#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntryConfig {
    /// An outcome type (`accept`, `click` …): a response of that type enrolls the customer.
    #[serde(default)]
    pub event_type: Option<String>,
    /// With `eventType`: only a response to this offer (id or name) enrolls.
    #[serde(default)]
    pub offer_id: Option<String>,
    #[serde(default)]
    pub deduplication: Deduplication,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaitEvent {
    /// The outcome type that ends the wait.
    pub outcome: String,
    /// Only a response to this offer (id or name) ends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaitConfig {
    /// Resume after this many hours (the timeout when `waitForEvent` is set too).
    #[serde(default)]
    pub delay_hours: Option<f64>,
    #[serde(default)]
    pub wait_for_event: Option<WaitEvent>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DecisionConfig {
    pub decision_flow_key: String,
    /// The channel the decision is for (id or name).
    pub channel: String,
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SplitConfig {
    /// A rule-language condition on the customer; unknown takes the `false` branch.
    pub condition: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionConfig {
    /// The channel (id or name) whose next `/recommend` for the customer shows the offer first.
    pub channel: String,
    /// The offer (id or name).
    pub offer_id: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExitConfig {}

/// The union of the step configs, for the API description.
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum StepConfig {
    Entry(EntryConfig),
    Wait(WaitConfig),
    Decision(DecisionConfig),
    Split(SplitConfig),
    Action(ActionConfig),
    Exit(ExitConfig),
}

/// A parsed step.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Entry(EntryConfig),
    Wait(WaitConfig),
    Decision(DecisionConfig),
    Split(SplitConfig),
    Action(ActionConfig),
    Exit,
}

impl Step {
    pub const TYPES: [&'static str; 6] =
        ["entry_trigger", "wait", "nba_decision", "condition_split", "channel_action", "exit"];

    pub fn type_name(&self) -> &'static str {
        match self {
            Step::Entry(_) => "entry_trigger",
            Step::Wait(_) => "wait",
            Step::Decision(_) => "nba_decision",
            Step::Split(_) => "condition_split",
            Step::Action(_) => "channel_action",
            Step::Exit => "exit",
        }
    }
}

/// Where an enrollment goes after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The step ends the journey (`exit`).
    End,
    One(usize),
    /// A split's branches.
    Branch {
        yes: usize,
        no: usize,
    },
    /// A wait for an event with a timeout.
    EventOrTimeout {
        event: usize,
        timeout: usize,
    },
}

/// A checked definition: its steps by index, where each leads, and the entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub ids: Vec<String>,
    pub steps: Vec<Step>,
    pub next: Vec<Next>,
    pub entry: usize,
}

impl Plan {
    pub fn index(&self, node_id: &str) -> Option<usize> {
        self.ids.iter().position(|id| id == node_id)
    }
}

impl JourneySpec {
    /// Checks everything that needs no tenant and gives the definition as a plan.
    pub fn plan(&self) -> Result<Plan, ValidationError> {
        let mut errors = Vec::new();
        non_blank(&mut errors, "name", &self.name);
        if let Some(d) = self.description.as_deref().filter(|d| d.len() > 2000) {
            errors.push(FieldError::new("description", format!("must be at most 2000 characters, got {}", d.len())));
        }
        in_range(&mut errors, "maxDurationDays", f64::from(self.max_duration_days), 1.0, 365.0);
        if self.entry_condition.as_deref().is_some_and(|c| c.trim().is_empty()) {
            errors.push(FieldError::new("entryCondition", "must not be empty (leave it out to enroll everyone)"));
        }
        let steps = self.steps(&mut errors);
        ValidationError::check(errors)?;
        let mut errors = Vec::new();
        let plan = self.graph(steps, &mut errors);
        ValidationError::check(errors)?;
        Ok(plan.expect("no errors means a plan"))
    }

    fn steps(&self, errors: &mut Vec<FieldError>) -> Vec<Step> {
        let nodes = &self.definition.nodes;
        if nodes.len() > MAX_NODES {
            errors.push(FieldError::new("definition.nodes", format!("at most {MAX_NODES} steps, got {}", nodes.len())));
            return Vec::new();
        }
        let mut steps = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let path = format!("definition.nodes[{i}]");
            non_blank(errors, &format!("{path}.id"), &node.id);
            if nodes[..i].iter().any(|n| n.id == node.id) {
                errors
                    .push(FieldError::new(format!("{path}.id"), format!("`{}` is the id of an earlier step", node.id)));
            }
            match parse_step(&path, node) {
                Ok(step) => steps.push(step),
                Err(e) => errors.extend(e.0),
            }
        }
        steps
    }

    /// The edges as a `Next` per step, checking the graph's shape.
    fn graph(&self, steps: Vec<Step>, errors: &mut Vec<FieldError>) -> Option<Plan> {
        let ids: Vec<String> = self.definition.nodes.iter().map(|n| n.id.clone()).collect();
        let entries: Vec<usize> = (0..steps.len()).filter(|&i| matches!(steps[i], Step::Entry(_))).collect();
        if entries.len() != 1 {
            errors.push(FieldError::new(
                "definition.nodes",
                format!("must have exactly one `entry_trigger` step, found {}", entries.len()),
            ));
        }
        if !steps.iter().any(|s| matches!(s, Step::Exit)) {
            errors.push(FieldError::new("definition.nodes", "must have at least one `exit` step"));
        }
        let mut out: Vec<Vec<(usize, Option<String>, usize)>> = vec![Vec::new(); steps.len()];
        for (j, e) in self.definition.edges.iter().enumerate() {
            let path = format!("definition.edges[{j}]");
            let from = ids.iter().position(|id| *id == e.from);
            let to = ids.iter().position(|id| *id == e.to);
            if from.is_none() {
                errors.push(FieldError::new(format!("{path}.from"), format!("no step with id `{}`", e.from)));
            }
            if to.is_none() {
                errors.push(FieldError::new(format!("{path}.to"), format!("no step with id `{}`", e.to)));
            }
            if let (Some(from), Some(to)) = (from, to) {
                if matches!(steps[to], Step::Entry(_)) {
                    errors.push(FieldError::new(format!("{path}.to"), "no edge may lead into the entry_trigger"));
                }
                out[from].push((to, e.when.clone(), j));
            }
        }
        let next: Vec<Next> =
            steps.iter().enumerate().map(|(i, s)| exits(s, &ids[i], i, &out[i], errors).unwrap_or(Next::End)).collect();
        let entry = *entries.first()?;
        if !errors.is_empty() {
            return None;
        }
        check_reachable_and_acyclic(&ids, &next, entry, errors);
        Some(Plan { ids, steps, next, entry })
    }
}

/// Parses one node's `config` by its `type`.
fn parse_step(path: &str, node: &JourneyNode) -> Result<Step, ValidationError> {
    let cpath = format!("{path}.config");
    let empty = serde_json::Value::Object(Default::default());
    let config = if node.config.is_null() { &empty } else { &node.config };
    let step = match node.kind.as_str() {
        "entry_trigger" => Step::Entry(parse_value(&cpath, config)?),
        "wait" => Step::Wait(parse_value(&cpath, config)?),
        "nba_decision" => Step::Decision(parse_value(&cpath, config)?),
        "condition_split" => Step::Split(parse_value(&cpath, config)?),
        "channel_action" => Step::Action(parse_value(&cpath, config)?),
        "exit" => {
            parse_value::<ExitConfig>(&cpath, config)?;
            Step::Exit
        }
        other => {
            let hint = crate::rules::check::did_you_mean(other, Step::TYPES.iter().copied())
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_else(|| format!("; expected one of {}", Step::TYPES.join(", ")));
            return Err(ValidationError::one(format!("{path}.type"), format!("unknown step type `{other}`{hint}")));
        }
    };
    let mut errors = Vec::new();
    match &step {
        Step::Wait(w) => {
            if w.delay_hours.is_none() && w.wait_for_event.is_none() {
                errors.push(FieldError::new(&cpath, "needs `delayHours`, `waitForEvent` or both"));
            }
            if let Some(h) = w.delay_hours {
                in_range(&mut errors, &format!("{cpath}.delayHours"), h, 0.0, 8760.0);
            }
            if let Some(e) = &w.wait_for_event {
                non_blank(&mut errors, &format!("{cpath}.waitForEvent.outcome"), &e.outcome);
            }
        }
        Step::Decision(d) => {
            non_blank(&mut errors, &format!("{cpath}.decisionFlowKey"), &d.decision_flow_key);
            non_blank(&mut errors, &format!("{cpath}.channel"), &d.channel);
            if let Some(limit) = d.limit {
                in_range(&mut errors, &format!("{cpath}.limit"), f64::from(limit), 1.0, 50.0);
            }
        }
        Step::Split(s) => non_blank(&mut errors, &format!("{cpath}.condition"), s.condition.trim()),
        Step::Action(a) => {
            non_blank(&mut errors, &format!("{cpath}.channel"), &a.channel);
            non_blank(&mut errors, &format!("{cpath}.offerId"), &a.offer_id);
        }
        Step::Entry(_) | Step::Exit => {}
    }
    ValidationError::check(errors)?;
    Ok(step)
}

/// The edges a step needs: none from an exit, `true`/`false` from a split,
/// `event`/`timeout` from a wait for an event with a timeout, one from any other.
fn exits(
    step: &Step,
    id: &str,
    i: usize,
    out: &[(usize, Option<String>, usize)],
    errors: &mut Vec<FieldError>,
) -> Option<Next> {
    let path = format!("definition.nodes[{i}]");
    let labelled = |label: &str| -> Vec<usize> {
        out.iter().filter(|(_, w, _)| w.as_deref() == Some(label)).map(|(to, _, _)| *to).collect()
    };
    let pair = |a: &str, b: &str, errors: &mut Vec<FieldError>| {
        let (x, y) = (labelled(a), labelled(b));
        if x.len() != 1 || y.len() != 1 || out.len() != 2 {
            errors.push(FieldError::new(
                &path,
                format!("step `{id}` needs exactly two edges, one with `when: \"{a}\"` and one with `when: \"{b}\"`"),
            ));
            return None;
        }
        Some((x[0], y[0]))
    };
    match step {
        Step::Exit => {
            if let Some((_, _, j)) = out.first() {
                errors.push(FieldError::new(format!("definition.edges[{j}].from"), "an exit step leads nowhere"));
            }
            Some(Next::End)
        }
        Step::Split(_) => pair("true", "false", errors).map(|(yes, no)| Next::Branch { yes, no }),
        Step::Wait(WaitConfig { delay_hours: Some(_), wait_for_event: Some(_) }) => {
            pair("event", "timeout", errors).map(|(event, timeout)| Next::EventOrTimeout { event, timeout })
        }
        _ => {
            if out.len() != 1 {
                errors.push(FieldError::new(
                    &path,
                    format!("step `{id}` needs exactly one outgoing edge, found {}", out.len()),
                ));
                return None;
            }
            Some(Next::One(out[0].0))
        }
    }
}

/// Every step is reachable from the entry and no path comes back to a step it left:
/// an enrollment always moves towards an exit.
fn check_reachable_and_acyclic(ids: &[String], next: &[Next], entry: usize, errors: &mut Vec<FieldError>) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let targets = |n: Next| match n {
        Next::End => vec![],
        Next::One(a) => vec![a],
        Next::Branch { yes, no } => vec![yes, no],
        Next::EventOrTimeout { event, timeout } => vec![event, timeout],
    };
    let mut mark = vec![Mark::New; ids.len()];
    // Iterative depth-first search: (node, index of the next child to visit).
    let mut stack = vec![(entry, 0usize)];
    mark[entry] = Mark::Open;
    while let Some((node, child)) = stack.pop() {
        let children = targets(next[node]);
        if child == children.len() {
            mark[node] = Mark::Done;
            continue;
        }
        stack.push((node, child + 1));
        let to = children[child];
        match mark[to] {
            Mark::Open => {
                errors.push(FieldError::new(
                    "definition.edges",
                    format!(
                        "the edge `{}` → `{}` closes a cycle; a journey must always move towards an exit",
                        ids[node], ids[to]
                    ),
                ));
                return;
            }
            Mark::New => {
                mark[to] = Mark::Open;
                stack.push((to, 0));
            }
            Mark::Done => {}
        }
    }
    for (i, m) in mark.iter().enumerate() {
        if *m == Mark::New {
            errors.push(FieldError::new(
                format!("definition.nodes[{i}]"),
                format!("step `{}` cannot be reached from the entry_trigger", ids[i]),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(nodes: serde_json::Value, edges: serde_json::Value) -> JourneySpec {
        parse_value("", &json!({"name": "j", "definition": {"nodes": nodes, "edges": edges}})).unwrap()
    }

    fn linear() -> (serde_json::Value, serde_json::Value) {
        (
            json!([
                {"id": "in", "type": "entry_trigger", "config": {}},
                {"id": "wait", "type": "wait", "config": {"delayHours": 1}},
                {"id": "out", "type": "exit"}
            ]),
            json!([{"from": "in", "to": "wait"}, {"source": "wait", "target": "out"}]),
        )
    }

    #[test]
    fn a_linear_journey_plans_in_order() {
        let (nodes, edges) = linear();
        let plan = spec(nodes, edges).plan().unwrap();
        assert_eq!(plan.entry, 0);
        assert_eq!(plan.next, vec![Next::One(1), Next::One(2), Next::End]);
    }

    /// One named row per malformed definition, with the path and message it must give.
    #[test]
    fn malformed_definitions_name_the_problem() {
        let entry = json!({"id": "in", "type": "entry_trigger"});
        let exit = json!({"id": "out", "type": "exit"});
        let cases: Vec<(&str, serde_json::Value, serde_json::Value, &str)> = vec![
            ("no entry", json!([exit]), json!([]), "exactly one `entry_trigger`"),
            ("no exit", json!([entry]), json!([]), "at least one `exit`"),
            (
                "unknown type",
                json!([entry, exit, {"id": "x", "type": "wiat", "config": {}}]),
                json!([]),
                "definition.nodes[2].type: unknown step type `wiat` (did you mean `wait`?)",
            ),
            (
                "unknown config field",
                json!([entry, exit, {"id": "w", "type": "wait", "config": {"delayHour": 2}}]),
                json!([]),
                "definition.nodes[2].config.delayHour: unknown field (did you mean `delayHours`?)",
            ),
            (
                "wait with nothing",
                json!([entry, exit, {"id": "w", "type": "wait", "config": {}}]),
                json!([]),
                "needs `delayHours`, `waitForEvent` or both",
            ),
            ("edge to nowhere", json!([entry, exit]), json!([{"from": "in", "to": "nope"}]), "definition.edges[0].to"),
            ("entry without edge", json!([entry, exit]), json!([]), "step `in` needs exactly one outgoing edge"),
            (
                "unreachable",
                json!([entry, exit, {"id": "out2", "type": "exit"}]),
                json!([{"from": "in", "to": "out"}]),
                "step `out2` cannot be reached",
            ),
            (
                "cycle",
                json!([entry, exit, {"id": "a", "type": "wait", "config": {"delayHours": 1}},
                       {"id": "b", "type": "condition_split", "config": {"condition": "true"}}]),
                json!([{"from": "in", "to": "a"}, {"from": "a", "to": "b"},
                       {"from": "b", "to": "a", "when": "true"}, {"from": "b", "to": "out", "when": "false"}]),
                "closes a cycle",
            ),
            (
                "split without labels",
                json!([entry, exit, {"id": "s", "type": "condition_split", "config": {"condition": "true"}}]),
                json!([{"from": "in", "to": "s"}, {"from": "s", "to": "out"}]),
                "`when: \"true\"`",
            ),
            (
                "timeout wait without labels",
                json!([entry, exit, {"id": "w", "type": "wait",
                       "config": {"delayHours": 2, "waitForEvent": {"outcome": "accept"}}}]),
                json!([{"from": "in", "to": "w"}, {"from": "w", "to": "out"}]),
                "`when: \"event\"`",
            ),
            (
                "duplicate ids",
                json!([entry, exit, {"id": "out", "type": "exit"}]),
                json!([{"from": "in", "to": "out"}]),
                "definition.nodes[2].id: `out` is the id of an earlier step",
            ),
        ];
        for (name, nodes, edges, expected) in cases {
            let err = spec(nodes, edges).plan().expect_err(name).to_string();
            assert!(err.contains(expected), "case `{name}`: {err}");
        }
    }
}
