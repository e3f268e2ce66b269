//! Checks a parsed file against a tenant: resolves `let` names and score factors,
//! checks rule targets (offers, categories, channels) and score blocks (flows,
//! channels, weights), type-checks every expression with the shared checker, and
//! produces the `RuleDef`s and `ScoreDef`s the engine compiles. Every problem in the
//! file is reported; a file with any error is rejected whole by the caller.

use std::collections::HashMap;

use super::ast::{Factor, File, Item, Let, Rule, Score, ScoreBody, StageName, Target};
use super::defs::{RuleDef, RuleOrigin, ScoreDef, ScoreDefBody, FACTORS};
use super::error::{Diagnostic, LineIndex, Severity};
use super::parse::{parse, MAX_TREE_DEPTH};
use crate::model::flow::Weights;
use crate::model::rule::{Scope, DEFAULT_MATCH_MULTIPLIER};
use crate::model::Stage;
use crate::rules::check::{did_you_mean, CheckError, Checker, Node, Typed};
use crate::rules::ir::{Expr, ExprKind, Namespace, Path, Span};
use crate::rules::{Compiler, Env, Layout, Literals, OfferFacts, Type};

/// Most IR nodes one rule may expand to after `let` substitution.
pub const MAX_NODES: usize = 10_000;
/// Most IR nodes a whole file may expand to: each rule below `MAX_NODES` is not enough
/// when a thousand rules each copy a large `let` (8 M nodes, over a GB and seconds of
/// compiling for one 20 KB file).
pub const MAX_FILE_NODES: usize = 200_000;

/// What a file is checked against: the tenant's attributes, offers, channels, flows.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub layout: Layout,
    /// (id, name, category)
    pub offers: Vec<(String, String, Option<String>)>,
    /// (id, name)
    pub channels: Vec<(String, String)>,
    pub flows: Vec<String>,
}

/// The result of checking one file.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub rules: Vec<RuleDef>,
    pub scores: Vec<ScoreDef>,
    /// Errors and warnings, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Stack for checking a file. Parsing recurses per bracket level and per operator
/// (pest's Pratt parser recurses for prefix and right-associative operators); the
/// parser's limits (1 MiB, brackets 64 deep, 512 tokens per expression) bound that
/// recursion well inside this, so no file can overflow the stack of the thread that
/// checks it — the actor thread every tenant shares, or `arbiter check`'s main thread.
const CHECK_STACK: usize = 256 << 20;

/// Parses and checks one file (on a thread with a large stack; see `CHECK_STACK`).
pub fn check_source(file: &str, source: &str, ctx: &Context) -> Checked {
    on_check_stack(|| check_here(file, source, ctx, false))
}

/// Checks what needs no tenant: syntax, `let` names and the size limits, duplicate rule
/// names and score blocks, stages, multipliers and weights. References (offers,
/// categories, channels, flows, attributes) and types are not checked, so no `RuleDef`
/// or `ScoreDef` is produced.
pub fn check_syntax(file: &str, source: &str) -> Checked {
    on_check_stack(|| check_here(file, source, &Context::default(), true))
}

fn on_check_stack(check: impl FnOnce() -> Checked + Send + Copy) -> Checked {
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new().name("arbiter-check".into()).stack_size(CHECK_STACK);
        match worker.spawn_scoped(scope, check) {
            Ok(handle) => handle.join().unwrap_or_else(|_| internal_failure()),
            Err(_) => check(),
        }
    })
}

fn internal_failure() -> Checked {
    let d = Diagnostic::error("E000", Span::NONE, "the checker failed on this file; please report it");
    Checked { diagnostics: vec![d], ..Checked::default() }
}

fn check_here(file: &str, source: &str, ctx: &Context, syntax_only: bool) -> Checked {
    let (ast, mut diagnostics) = parse(source);
    let mut c = FileChecker {
        file,
        source,
        lines: LineIndex::new(source),
        ctx,
        syntax_only,
        offers_by_name: ctx.offers.iter().map(|(id, name, _)| (name.as_str(), id.as_str())).collect(),
        offer_ids: ctx.offers.iter().map(|(id, _, _)| id.as_str()).collect(),
        categories: ctx.offers.iter().filter_map(|(_, _, c)| c.as_deref()).collect(),
        lets: HashMap::new(),
        budget: MAX_NODES,
        file_nodes: 0,
        diags: Vec::new(),
        out: Checked::default(),
    };
    c.file(&ast);
    diagnostics.append(&mut c.diags);
    diagnostics.sort_by_key(|d| (d.span.start, d.severity == Severity::Warning));
    c.out.diagnostics = diagnostics;
    c.out
}

/// A resolved `let` body with its size and depth.
struct Resolved {
    expr: Expr,
    size: usize,
    depth: u32,
}

struct FileChecker<'a> {
    file: &'a str,
    source: &'a str,
    lines: LineIndex<'a>,
    ctx: &'a Context,
    /// No tenant: skip references and types (see [`check_syntax`]).
    syntax_only: bool,
    /// Targets are looked up once per rule: index them once per file.
    offers_by_name: HashMap<&'a str, &'a str>,
    offer_ids: std::collections::HashSet<&'a str>,
    categories: std::collections::HashSet<&'a str>,
    lets: HashMap<String, Resolved>,
    /// Nodes the expression being resolved may still grow by: `let` bodies are copied
    /// only while it lasts, so expansion cannot blow up memory before it is refused.
    budget: usize,
    /// Nodes the file's rules and formulas have expanded to so far (`MAX_FILE_NODES`).
    file_nodes: usize,
    diags: Vec<Diagnostic>,
    out: Checked,
}

impl FileChecker<'_> {
    fn file(&mut self, ast: &File) {
        let mut rule_names: HashMap<&str, Span> = HashMap::new();
        let mut score_targets: Vec<(&str, Option<&str>)> = Vec::new();
        for item in &ast.items {
            match item {
                Item::Let(l) => self.let_def(l),
                Item::Rule(r) => {
                    if rule_names.insert(&r.name, r.name_span).is_some() {
                        let msg = format!("rule `{}` is defined twice in this file", r.name);
                        self.diags.push(Diagnostic::error("E101", r.name_span, msg));
                    }
                    self.rule(r);
                }
                Item::Score(s) => {
                    let target = (s.flow.as_str(), s.channel.as_ref().map(|(c, _)| c.as_str()));
                    if score_targets.contains(&target) {
                        let msg = "a score block for this flow and channel already appears in this file";
                        self.diags.push(Diagnostic::error("E117", s.flow_span, msg));
                    }
                    score_targets.push(target);
                    self.score(s);
                }
            }
        }
    }

    fn location(&self, span: Span) -> String {
        let (line, col) = self.lines.line_col(span.start as usize);
        format!("{}:{line}:{col}", self.file)
    }

    fn let_def(&mut self, l: &Let) {
        if self.lets.contains_key(&l.name) {
            let msg = format!("`{}` is already defined", l.name);
            self.diags.push(Diagnostic::error("E106", l.name_span, msg));
            return;
        }
        if let Some(resolved) = self.resolve(&l.body, false) {
            self.lets.insert(l.name.clone(), resolved);
        }
    }

    /// A rule body or formula: resolved as below, and counted against the file's total.
    /// Once the file is over its budget, one diagnostic says so (at the rule that
    /// crossed it) and later rules are not expanded at all.
    fn resolve_counted(&mut self, e: &Expr, factors: bool) -> Option<Resolved> {
        let left = MAX_FILE_NODES.saturating_sub(self.file_nodes);
        if left == 0 {
            return None;
        }
        let resolved = self.resolve_within(e, factors, left.min(MAX_NODES));
        // A failed resolution costs the file's budget only when it ran out of it.
        let over = resolved.is_none() && self.budget == 0;
        self.file_nodes += resolved.as_ref().map_or(if over { left } else { 0 }, |r| r.size);
        if self.file_nodes >= MAX_FILE_NODES {
            let msg = format!(
                "the file's rules expand to more than {MAX_FILE_NODES} nodes through `let`s (this rule crosses the limit); \
                 use smaller `let`s or split the file"
            );
            self.diags.push(Diagnostic::error("E003", e.span, msg));
            self.file_nodes = MAX_FILE_NODES;
            return None;
        }
        resolved
    }

    /// Substitutes `let` names (and, in formulas, factor names) into an expression,
    /// enforcing the size and depth limits on the result.
    fn resolve(&mut self, e: &Expr, factors: bool) -> Option<Resolved> {
        self.resolve_within(e, factors, MAX_NODES)
    }

    /// As `resolve`, with at most `limit` nodes (the per-expression limit, or what is
    /// left of the file's); over `limit` is reported only when it is the expression's own.
    fn resolve_within(&mut self, e: &Expr, factors: bool, limit: usize) -> Option<Resolved> {
        let mut ok = true;
        self.budget = limit;
        let resolved = self.subst(e, factors, &mut ok);
        if resolved.size > limit || self.budget == 0 {
            if limit == MAX_NODES {
                let msg =
                    format!("expression expands to {} nodes through `let`s; the limit is {MAX_NODES}", resolved.size);
                self.diags.push(Diagnostic::error("E003", e.span, msg));
            }
            return None;
        }
        if !ok {
            return None;
        }
        if resolved.depth > MAX_TREE_DEPTH {
            let msg = format!("expression nests more than {MAX_TREE_DEPTH} levels through `let`s");
            self.diags.push(Diagnostic::error("E003", e.span, msg));
            return None;
        }
        Some(resolved)
    }

    fn subst(&mut self, e: &Expr, factors: bool, ok: &mut bool) -> Resolved {
        let mut children = |this: &mut Self, parts: Vec<&Expr>| -> (Vec<Expr>, usize, u32) {
            let mut size = 1;
            let mut depth = 0;
            let mut out = Vec::with_capacity(parts.len());
            for p in parts {
                let r = this.subst(p, factors, ok);
                size += r.size;
                depth = depth.max(r.depth);
                out.push(r.expr);
            }
            (out, size.min(MAX_NODES + 1), depth + 1)
        };
        let (kind, size, depth) = match &e.kind {
            ExprKind::Name(name) => return self.name(name, e.span, factors, ok),
            ExprKind::Not(x) => {
                let (mut v, s, d) = children(self, vec![x]);
                (ExprKind::Not(Box::new(v.remove(0))), s, d)
            }
            ExprKind::Neg(x) => {
                let (mut v, s, d) = children(self, vec![x]);
                (ExprKind::Neg(Box::new(v.remove(0))), s, d)
            }
            ExprKind::Binary(op, l, r) => {
                let (mut v, s, d) = children(self, vec![l, r]);
                let r = v.remove(1);
                (ExprKind::Binary(*op, Box::new(v.remove(0)), Box::new(r)), s, d)
            }
            ExprKind::Default(a, b) => {
                let (mut v, s, d) = children(self, vec![a, b]);
                let b = v.remove(1);
                (ExprKind::Default(Box::new(v.remove(0)), Box::new(b)), s, d)
            }
            ExprKind::In { needle, items, negated } => {
                let mut parts = vec![needle.as_ref()];
                parts.extend(items.iter());
                let (mut v, s, d) = children(self, parts);
                let needle = v.remove(0);
                (ExprKind::In { needle: Box::new(needle), items: v, negated: *negated }, s, d)
            }
            ExprKind::Call(f, args) => {
                let (v, s, d) = children(self, args.iter().collect());
                (ExprKind::Call(*f, v), s, d)
            }
            other => (other.clone(), 1, 1),
        };
        Resolved { expr: Expr::new(kind, e.span), size, depth }
    }

    fn name(&mut self, name: &str, span: Span, factors: bool, ok: &mut bool) -> Resolved {
        if let Some(r) = self.lets.get(name) {
            if r.size > self.budget {
                // Over budget: stop copying; `resolve` reports the limit.
                self.budget = 0;
                *ok = false;
                return Resolved { expr: Expr::new(ExprKind::Null, span), size: MAX_NODES + 1, depth: 1 };
            }
            self.budget -= r.size;
            return Resolved { expr: Expr::new(r.expr.kind.clone(), span), size: r.size, depth: r.depth };
        }
        if factors && FACTORS.contains(&name) {
            let path = Path { ns: Namespace::Factor, name: name.to_string() };
            return Resolved { expr: Expr::new(ExprKind::Attr(path), span), size: 1, depth: 1 };
        }
        *ok = false;
        let mut known: Vec<&str> = self.lets.keys().map(String::as_str).collect();
        if factors {
            known.extend(FACTORS);
        }
        let help = did_you_mean(name, known.into_iter()).map(|s| format!("did you mean `{s}`?")).or_else(|| {
            (!factors && FACTORS.contains(&name))
                .then(|| "score factors can only be used in a score formula".to_string())
        });
        let msg = format!("unknown name `{name}`; attributes are written with a namespace, e.g. customer.{name}");
        self.diags.push(Diagnostic::error("E107", span, msg).with_help(help));
        Resolved { expr: Expr::new(ExprKind::Null, span), size: 1, depth: 1 }
    }

    fn rule(&mut self, r: &Rule) {
        if self.syntax_only {
            self.stage(r);
            self.resolve(&r.body, false);
            return;
        }
        let target = self.target(r);
        let stage = self.stage(r);
        let Some(resolved) = self.resolve_counted(&r.body, false) else { return };
        let mut layout = self.ctx.layout.clone();
        let typed = match Checker::new(&mut layout, Literals::Strict).check_predicate(&resolved.expr) {
            Ok(t) => t,
            Err(errs) => return self.type_errors(errs),
        };
        self.constant_rule(r, &typed);
        let (Some((scope, scope_id)), Some((stage, multiplier))) = (target, stage) else { return };
        let text = &self.source[r.body.span.start as usize..r.body.span.end as usize];
        self.out.rules.push(RuleDef {
            id: format!("{}:{}", self.file, r.name).into(),
            name: r.name.as_str().into(),
            scope,
            scope_id,
            stage,
            multiplier,
            priority: r.priority,
            expr: resolved.expr,
            literals: Literals::Strict,
            origin: RuleOrigin::Source { location: self.location(r.span), text: squash(text) },
        });
    }

    fn type_errors(&mut self, errs: Vec<CheckError>) {
        for e in errs {
            self.diags.push(Diagnostic::error(e.code, e.span, e.message).with_help(e.help));
        }
    }

    /// A rule that reads no input is constant: false can never pass (an error),
    /// true has no effect (a warning).
    fn constant_rule(&mut self, r: &Rule, typed: &Typed) {
        if reads_input(typed) {
            return;
        }
        let mut compiler = Compiler::new();
        let pred = compiler.predicate(typed);
        let consts = compiler.into_consts();
        let offer = OfferFacts::empty();
        let value = pred(&Env { slots: &[], offer: &offer, consts: &consts });
        let d = match value {
            Some(false) => Diagnostic::error(
                "E112",
                r.body.span,
                format!("rule `{}` can never pass: its condition is always false", r.name),
            ),
            _ => Diagnostic::warning(
                "W113",
                r.body.span,
                format!("rule `{}` always passes: its condition reads no attribute", r.name),
            ),
        };
        self.diags.push(d);
    }

    fn target(&mut self, r: &Rule) -> Option<(Scope, String)> {
        let ctx = self.ctx;
        let (scope, found, wanted, kind, names): (Scope, Option<String>, &str, &str, Vec<&str>) = match &r.target {
            Target::Global => return Some((Scope::Global, String::new())),
            Target::OfferName(n) => {
                let found = self.offers_by_name.get(n.as_str()).map(|id| id.to_string());
                {
                    let names = names_if(found.is_none(), ctx.offers.iter().map(|o| o.1.as_str()));
                    (Scope::Offer, found, n, "offer", names)
                }
            }
            Target::OfferId(id) => {
                let found = self.offer_ids.contains(id.as_str()).then(|| id.clone());
                {
                    let names = names_if(found.is_none(), ctx.offers.iter().map(|o| o.0.as_str()));
                    (Scope::Offer, found, id, "offer id", names)
                }
            }
            Target::Category(c) => {
                let found = self.categories.contains(c.as_str()).then(|| c.clone());
                {
                    let names = names_if(found.is_none(), self.categories.iter().copied());
                    (Scope::Category, found, c, "category", names)
                }
            }
            Target::Channel(ch) => {
                let found = ctx.channels.iter().find(|(id, name)| id == ch || name == ch).map(|(id, _)| id.clone());
                (Scope::Channel, found, ch, "channel", ctx.channels.iter().map(|(_, n)| n.as_str()).collect())
            }
        };
        if found.is_none() {
            let code = match scope {
                Scope::Category => "E103",
                Scope::Channel => "E104",
                _ => "E102",
            };
            let help = did_you_mean(wanted, names.into_iter()).map(|s| format!("did you mean \"{s}\"?"));
            let msg = format!("unknown {kind} \"{wanted}\"");
            self.diags.push(Diagnostic::error(code, r.target_span, msg).with_help(help));
        }
        found.map(|id| (scope, id))
    }

    fn stage(&mut self, r: &Rule) -> Option<(Stage, f64)> {
        let stage = match r.stage {
            StageName::Eligibility => Stage::Eligibility,
            StageName::Fit => Stage::Fit,
            StageName::Match => Stage::Match,
        };
        match (stage, r.multiplier) {
            (Stage::Match, None) => Some((stage, DEFAULT_MATCH_MULTIPLIER)),
            (Stage::Match, Some((m, _))) if (0.0..=1.0).contains(&m) => Some((stage, m)),
            (Stage::Match, Some((m, span))) => {
                let msg = format!("multiplier must be between 0 and 1, got {m}");
                self.diags.push(Diagnostic::error("E108", span, msg));
                None
            }
            (_, Some((_, span))) => {
                let msg = "a multiplier only applies to `stage match` (eligibility and fit rules remove the offer)";
                self.diags.push(Diagnostic::error("E108", span, msg));
                None
            }
            (_, None) => Some((stage, DEFAULT_MATCH_MULTIPLIER)),
        }
    }

    fn score(&mut self, s: &Score) {
        if self.syntax_only {
            match &s.body {
                ScoreBody::Weights(ws) => {
                    let _ = self.weights(s, ws);
                }
                ScoreBody::Formula(e) => {
                    let _ = self.resolve(e, true);
                }
            }
            return;
        }
        let ctx = self.ctx;
        let mut ok = true;
        if !ctx.flows.contains(&s.flow) {
            let help =
                did_you_mean(&s.flow, ctx.flows.iter().map(String::as_str)).map(|f| format!("did you mean \"{f}\"?"));
            self.diags
                .push(Diagnostic::error("E105", s.flow_span, format!("unknown flow \"{}\"", s.flow)).with_help(help));
            ok = false;
        }
        if let Some((ch, span)) = &s.channel {
            if !ctx.channels.iter().any(|(id, name)| id == ch || name == ch) {
                let names = ctx.channels.iter().map(|(_, n)| n.as_str());
                let help = did_you_mean(ch, names).map(|f| format!("did you mean \"{f}\"?"));
                self.diags.push(Diagnostic::error("E104", *span, format!("unknown channel \"{ch}\"")).with_help(help));
                ok = false;
            }
        }
        let body = match &s.body {
            ScoreBody::Weights(ws) => self.weights(s, ws).map(ScoreDefBody::Weights),
            ScoreBody::Formula(e) => self.formula(e).map(ScoreDefBody::Formula),
        };
        if let (true, Some(body)) = (ok, body) {
            let channel = s.channel.as_ref().map(|(c, _)| c.clone());
            self.out.scores.push(ScoreDef { flow_key: s.flow.clone(), channel, body, location: self.location(s.span) });
        }
    }

    fn weights(&mut self, s: &Score, ws: &[(Factor, f64, Span)]) -> Option<Weights> {
        let mut w = Weights::default();
        let before = self.diags.len();
        let mut seen: Vec<Factor> = Vec::new();
        for &(factor, value, span) in ws {
            if seen.contains(&factor) {
                self.diags.push(Diagnostic::error("E111", span, format!("`{}` is weighted twice", factor.name())));
            }
            seen.push(factor);
            let max = if factor == Factor::Uplift { 2.0 } else { 1.0 };
            if !(0.0..=max).contains(&value) {
                let msg = format!("the {} weight must be between 0 and {max}, got {value}", factor.name());
                self.diags.push(Diagnostic::error("E110", span, msg));
            }
            *match factor {
                Factor::Propensity => &mut w.propensity_weight,
                Factor::Relevance => &mut w.relevance_weight,
                Factor::Impact => &mut w.impact_weight,
                Factor::Emphasis => &mut w.emphasis_weight,
                Factor::Uplift => &mut w.uplift_weight,
            } = value;
        }
        let sum = w.propensity_weight + w.relevance_weight + w.impact_weight + w.emphasis_weight;
        // With a factor given twice the sum means little; E111 already says what to fix.
        if (sum - 1.0).abs() > 1e-6 && self.diags.len() == before {
            let span = ws.first().map_or(s.span, |(_, _, first)| first.to(ws.last().expect("non-empty").2));
            let msg = format!(
                "propensity + relevance + impact + emphasis weights must sum to 1.0, got {}",
                (sum * 1e6).round() / 1e6
            );
            let help = Some("uplift is outside the sum (0 to 2)".to_string());
            self.diags.push(Diagnostic::error("E109", span, msg).with_help(help));
        }
        (self.diags.len() == before).then_some(w)
    }

    fn formula(&mut self, e: &Expr) -> Option<Expr> {
        let resolved = self.resolve_counted(e, true)?;
        let mut layout = self.ctx.layout.clone();
        for name in FACTORS {
            layout.declare(Path { ns: Namespace::Factor, name: name.into() }, Type::Num);
        }
        match Checker::new(&mut layout, Literals::Strict).check_number(&resolved.expr) {
            Ok(_) => Some(resolved.expr),
            Err(errs) => {
                self.type_errors(errs);
                None
            }
        }
    }
}

/// Candidate names for a "did you mean", collected only when something was not found.
fn names_if<'a>(missing: bool, names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    if missing {
        names.collect()
    } else {
        Vec::new()
    }
}

/// Whether an expression reads any slot or offer field.
fn reads_input(t: &Typed) -> bool {
    match &t.node {
        Node::Lit(_) => false,
        Node::Slot(_) | Node::Offer(_) => true,
        Node::Not(x) | Node::Neg(x) => reads_input(x),
        Node::Binary(_, a, b) | Node::Default(a, b) => reads_input(a) || reads_input(b),
        Node::In { needle, .. } => reads_input(needle),
        Node::Call(_, args) => args.iter().any(reads_input),
    }
}

/// Collapses runs of whitespace so a multi-line condition reads as one line in explain.
fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
