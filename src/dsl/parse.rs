//! Text → AST. The only module that sees pest. Files are split into top-level items
//! and each item is parsed on its own, so one syntax error does not hide the next.
//! Operator precedence comes from a Pratt parser; limits on size, bracket nesting and
//! expression length keep every stage's recursion bounded. When pest rejects an item,
//! `hint` looks for the common mistakes (`=`, `&&`, `'…'`, an unclosed `{` …) so the
//! diagnostic names the mistake instead of pest's expectations.

use std::sync::LazyLock;

use pest::iterators::{Pair, Pairs};
use pest::pratt_parser::{Assoc, Op, PrattParser};
use pest::Parser;

mod hint;

use super::ast::{Factor, File, Item, Let, Rule as RuleItem, Score, ScoreBody, StageName, Target};
use super::error::Diagnostic;
use crate::rules::check::did_you_mean;
use crate::rules::ir::{BinOp, Expr, ExprKind, Func, Namespace, Path, Span};

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/arbiter.pest"]
struct Grammar;

/// Largest accepted file.
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// Deepest nesting of `(` and `[`.
pub const MAX_BRACKET_DEPTH: usize = 64;
/// Most operands plus operators in one flat expression.
pub const MAX_EXPR_TOKENS: usize = 512;
/// Deepest expression tree (after `let` substitution too).
pub const MAX_TREE_DEPTH: u32 = 256;

static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    PrattParser::new()
        .op(Op::infix(Rule::op_or, Assoc::Left))
        .op(Op::infix(Rule::op_and, Assoc::Left))
        .op(Op::prefix(Rule::op_not))
        .op(Op::infix(Rule::op_eq, Assoc::Left)
            | Op::infix(Rule::op_ne, Assoc::Left)
            | Op::infix(Rule::op_lt, Assoc::Left)
            | Op::infix(Rule::op_le, Assoc::Left)
            | Op::infix(Rule::op_gt, Assoc::Left)
            | Op::infix(Rule::op_ge, Assoc::Left)
            | Op::postfix(Rule::op_in)
            | Op::postfix(Rule::op_not_in))
        .op(Op::infix(Rule::op_default, Assoc::Right))
        .op(Op::infix(Rule::op_add, Assoc::Left) | Op::infix(Rule::op_sub, Assoc::Left))
        .op(Op::infix(Rule::op_mul, Assoc::Left)
            | Op::infix(Rule::op_div, Assoc::Left)
            | Op::infix(Rule::op_rem, Assoc::Left))
        .op(Op::prefix(Rule::op_neg))
});

/// Parses a whole file: the items that parsed, and a diagnostic for each that did not.
pub fn parse(source: &str) -> (File, Vec<Diagnostic>) {
    let mut items = Vec::new();
    let mut errors = Vec::new();
    if source.len() > MAX_FILE_BYTES {
        let msg = format!("file is {} bytes; the limit is {MAX_FILE_BYTES}", source.len());
        return (File { items }, vec![Diagnostic::error("E002", Span::new(0, 0), msg)]);
    }
    if let Some(at) = too_deep(source) {
        let msg = format!("brackets nest more than {MAX_BRACKET_DEPTH} levels deep");
        return (File { items }, vec![Diagnostic::error("E003", Span::new(at, at + 1), msg)]);
    }
    for (start, end) in chunks(source) {
        match Grammar::parse(Rule::file, &source[start..end]) {
            Ok(mut pairs) => {
                let file = pairs.next().expect("file rule");
                let mut b = Builder { offset: start, errors: &mut errors };
                items.extend(file.into_inner().filter(|p| p.as_rule() != Rule::EOI).filter_map(|p| b.item(p)));
            }
            Err(e) => errors.extend(explain_failure(&e, &source[start..end], start)),
        }
    }
    (File { items }, errors)
}

/// Byte offset where `(`/`[` nesting first exceeds the limit (strings and comments skipped).
fn too_deep(source: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut scan = Scanner::new(source);
    while let Some((i, c)) = scan.next_code_char() {
        match c {
            '(' | '[' => {
                depth += 1;
                if depth > MAX_BRACKET_DEPTH {
                    return Some(i);
                }
            }
            ')' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Splits a file at lines that start a top-level item (`rule`, `let`, `score` at
/// bracket depth 0), so each item is parsed separately.
fn chunks(source: &str) -> Vec<(usize, usize)> {
    let mut starts = vec![0];
    let mut depth = 0i64;
    let mut scan = Scanner::new(source);
    let mut line_start = true;
    while let Some((i, c)) = scan.next_code_char() {
        // An item head inside brackets means the previous item was left unclosed: split
        // there too, so the unclosed bracket is reported where it is, not at the next item.
        let head = |rest| if depth <= 0 { starts_item(rest) } else { starts_item_head(rest) };
        if line_start && i > 0 && head(&source[i..]) {
            starts.push(i);
            depth = 0;
        }
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
        line_start = c == '\n' || (line_start && (c == ' ' || c == '\t' || c == '\r'));
        if scan.crossed_newline {
            line_start = true;
            scan.crossed_newline = false;
        }
    }
    starts.push(source.len());
    starts.windows(2).map(|w| (w[0], w[1])).collect()
}

fn starts_item(rest: &str) -> bool {
    ["rule", "let", "score"].iter().any(|kw| {
        rest.starts_with(kw) && rest[kw.len()..].chars().next().is_some_and(|c| c.is_whitespace() || c == '"')
    })
}

/// The start of an item that cannot be read as part of an expression: `rule "`,
/// `score for`, `let <name> =`.
fn starts_item_head(rest: &str) -> bool {
    let after = |kw: &str| rest.strip_prefix(kw).filter(|r| r.starts_with(char::is_whitespace)).map(str::trim_start);
    if let Some(r) = after("rule") {
        return r.starts_with('"');
    }
    if let Some(r) = after("score") {
        return r.strip_prefix("for").is_some_and(|r| !r.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_'));
    }
    after("let").is_some_and(|r| {
        let name_end = r.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(r.len());
        let r = r[name_end..].trim_start();
        name_end > 0 && r.starts_with('=') && !r.starts_with("==")
    })
}

/// Walks source characters outside strings and comments.
struct Scanner<'s> {
    chars: std::iter::Peekable<std::str::CharIndices<'s>>,
    /// Set when a skipped comment ended a line.
    crossed_newline: bool,
}

impl<'s> Scanner<'s> {
    fn new(source: &'s str) -> Scanner<'s> {
        Scanner { chars: source.char_indices().peekable(), crossed_newline: false }
    }

    fn next_code_char(&mut self) -> Option<(usize, char)> {
        loop {
            let (i, c) = self.chars.next()?;
            match c {
                '"' => self.skip_string(),
                '#' => self.skip_line(),
                '/' if self.chars.peek().map(|&(_, c)| c) == Some('/') => self.skip_line(),
                _ => return Some((i, c)),
            }
        }
    }

    fn skip_string(&mut self) {
        while let Some((_, c)) = self.chars.next() {
            match c {
                '\\' => {
                    self.chars.next();
                }
                '"' | '\n' => return,
                _ => {}
            }
        }
    }

    fn skip_line(&mut self) {
        for (_, c) in self.chars.by_ref() {
            if c == '\n' {
                self.crossed_newline = true;
                return;
            }
        }
    }
}

/// Diagnostics for an item pest rejected: the mistakes `hint` recognises and a misspelt
/// keyword where pest gave up, else pest's expectations in words.
fn explain_failure(e: &pest::error::Error<Rule>, item: &str, offset: usize) -> Vec<Diagnostic> {
    let (start, end) = match e.location {
        pest::error::InputLocation::Pos(p) => (p, p),
        pest::error::InputLocation::Span((s, e)) => (s, e),
    };
    let found = &item[start..];
    let found = &found[..found.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(found.len())];
    let pest_says = syntax_error(e, offset, (start, end.max(start + found.len())));
    let misspelt = misspelt_keyword(e, found).map(|keyword| {
        let message = format!("{}, found `{found}`", pest_says.message);
        Diagnostic { message, ..pest_says.clone() }.with_help(Some(format!("did you mean `{keyword}`?")))
    });
    let mut hints = hint::explain(item, offset, start);
    if hints.is_empty() {
        return vec![misspelt.unwrap_or(pest_says)];
    }
    hints.extend(misspelt.filter(|m| hints.iter().all(|h| h.span.start != m.span.start)));
    hints.sort_by_key(|d| d.span.start);
    hints
}

/// The keyword pest expected that `found` is closest to (`stgae` → `stage`).
fn misspelt_keyword(e: &pest::error::Error<Rule>, found: &str) -> Option<&'static str> {
    let pest::error::ErrorVariant::ParsingError { positives, .. } = &e.variant else { return None };
    if found.is_empty() {
        return None;
    }
    let expected = positives.iter().flat_map(|r| keywords_of(*r).iter().copied());
    did_you_mean(found, expected).filter(|k| *k != found)
}

/// The keywords a grammar rule starts with, for did-you-mean on misspelt keywords.
fn keywords_of(rule: Rule) -> &'static [&'static str] {
    match rule {
        Rule::file | Rule::item => &["rule", "let", "score"],
        Rule::let_def | Rule::kw_let => &["let"],
        Rule::rule_def | Rule::kw_rule => &["rule"],
        Rule::score_def | Rule::kw_score => &["score"],
        Rule::kw_for => &["for"],
        Rule::target_offer | Rule::target_offer_id | Rule::kw_offer => &["offer"],
        Rule::kw_id => &["id"],
        Rule::target_category | Rule::kw_category => &["category"],
        Rule::target_channel | Rule::kw_channel => &["channel"],
        Rule::target_global => &["all", "global"],
        Rule::kw_all => &["all"],
        Rule::kw_global => &["global"],
        Rule::stage_option | Rule::kw_stage => &["stage"],
        Rule::stage_name => &["eligibility", "fit", "match"],
        Rule::kw_eligibility => &["eligibility"],
        Rule::kw_fit => &["fit"],
        Rule::kw_match => &["match"],
        Rule::kw_multiplier => &["multiplier"],
        Rule::priority_option | Rule::kw_priority => &["priority"],
        Rule::kw_flow => &["flow"],
        Rule::kw_on => &["on"],
        Rule::weights | Rule::kw_weights => &["weights"],
        Rule::formula | Rule::kw_formula => &["formula"],
        Rule::weight | Rule::factor => &["propensity", "relevance", "impact", "emphasis", "uplift"],
        Rule::kw_propensity => &["propensity"],
        Rule::kw_relevance => &["relevance"],
        Rule::kw_impact => &["impact"],
        Rule::kw_emphasis => &["emphasis"],
        Rule::kw_uplift => &["uplift"],
        // Not `and`/`or`/`in`: a short word where an operator is expected is more often a
        // missing operator than a misspelt one.
        _ => &[],
    }
}

fn syntax_error(e: &pest::error::Error<Rule>, offset: usize, (start, end): (usize, usize)) -> Diagnostic {
    let message = match &e.variant {
        pest::error::ErrorVariant::ParsingError { positives, .. } if !positives.is_empty() => {
            let mut wanted: Vec<&str> = positives.iter().map(|r| describe(*r)).collect();
            // Anything that can start an expression is summed up as "an expression".
            if wanted.contains(&"an expression") {
                wanted.retain(|w| !matches!(*w, "a number" | "a quoted string" | "a list `[...]`"));
            }
            wanted.sort_unstable();
            wanted.dedup();
            format!("syntax error: expected {}", join_or(&wanted))
        }
        pest::error::ErrorVariant::ParsingError { .. } => "syntax error: unexpected input".to_string(),
        pest::error::ErrorVariant::CustomError { message } => message.clone(),
    };
    Diagnostic::error("E001", Span::new(offset + start, offset + end.max(start + 1)), message)
}

fn join_or(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Human names for grammar rules in syntax errors.
fn describe(rule: Rule) -> &'static str {
    match rule {
        Rule::EOI => "end of file",
        Rule::file
        | Rule::item
        | Rule::let_def
        | Rule::rule_def
        | Rule::score_def
        | Rule::kw_let
        | Rule::kw_rule
        | Rule::kw_score => "`rule`, `let` or `score`",
        Rule::expr | Rule::primary | Rule::operand | Rule::prefix | Rule::op_not | Rule::op_neg | Rule::kw_not => {
            "an expression"
        }
        Rule::kw_true | Rule::kw_false | Rule::kw_null | Rule::name | Rule::path | Rule::call => "an expression",
        Rule::string | Rule::str_inner => "a quoted string",
        Rule::number | Rule::signed_number => "a number",
        Rule::ident => "a name",
        Rule::list => "a list `[...]`",
        Rule::infix | Rule::postfix => "an operator",
        Rule::op_or | Rule::op_and | Rule::op_default | Rule::op_eq | Rule::op_ne | Rule::op_le | Rule::op_ge => {
            "an operator"
        }
        Rule::op_lt | Rule::op_gt | Rule::op_add | Rule::op_sub | Rule::op_mul | Rule::op_div | Rule::op_rem => {
            "an operator"
        }
        Rule::op_in | Rule::op_not_in | Rule::kw_in => "`in`",
        Rule::kw_for => "`for`",
        Rule::kw_stage | Rule::stage_option => "`stage`",
        Rule::kw_priority | Rule::priority_option => "`priority`",
        Rule::stage_name | Rule::kw_eligibility | Rule::kw_fit | Rule::kw_match => "`eligibility`, `fit` or `match`",
        Rule::kw_multiplier => "`multiplier`",
        Rule::kw_flow => "`flow`",
        Rule::kw_on => "`on`",
        Rule::kw_channel | Rule::target_channel => "`channel`",
        Rule::weights | Rule::kw_weights | Rule::formula | Rule::kw_formula => "`weights` or `formula`",
        Rule::weight | Rule::factor => "a factor (propensity, relevance, impact, emphasis, uplift)",
        Rule::kw_propensity | Rule::kw_relevance | Rule::kw_impact | Rule::kw_emphasis | Rule::kw_uplift => {
            "a factor (propensity, relevance, impact, emphasis, uplift)"
        }
        Rule::target_offer | Rule::target_offer_id | Rule::kw_offer | Rule::kw_id => "`offer`",
        Rule::target_category | Rule::kw_category => "`category`",
        Rule::target_global | Rule::kw_all | Rule::kw_global => "`all`",
        _ => "valid syntax",
    }
}

struct Builder<'e> {
    offset: usize,
    errors: &'e mut Vec<Diagnostic>,
}

/// An expression with the depth of its tree, so the limit is enforced while building.
type Built = Result<(Expr, u32), Diagnostic>;

impl Builder<'_> {
    fn span(&self, p: &Pair<Rule>) -> Span {
        let s = p.as_span();
        Span::new(self.offset + s.start(), self.offset + s.end())
    }

    fn item(&mut self, p: Pair<Rule>) -> Option<Item> {
        let result = match p.as_rule() {
            Rule::let_def => self.let_def(p).map(Item::Let),
            Rule::rule_def => self.rule_def(p).map(Item::Rule),
            Rule::score_def => self.score_def(p).map(Item::Score),
            other => unreachable!("grammar yields items only, got {other:?}"),
        };
        result.map_err(|d| self.errors.push(d)).ok()
    }

    fn let_def(&mut self, p: Pair<Rule>) -> Result<Let, Diagnostic> {
        let mut inner = content(p);
        let name = inner.next().expect("let name");
        let name_span = self.span(&name);
        let (body, _) = self.expr(inner.next().expect("let body"))?;
        Ok(Let { name: name.as_str().to_string(), name_span, body })
    }

    fn rule_def(&mut self, p: Pair<Rule>) -> Result<RuleItem, Diagnostic> {
        let span = self.span(&p);
        let mut inner = content(p);
        let name = inner.next().expect("rule name");
        let (name_span, name) = (self.span(&name), unescape(&name));
        let mut rule = RuleItem {
            name,
            name_span,
            target: Target::Global,
            target_span: name_span,
            stage: StageName::Eligibility,
            multiplier: None,
            priority: 0,
            body: Expr::new(ExprKind::Bool(true), span),
            span,
        };
        for part in inner {
            match part.as_rule() {
                Rule::target_offer_id
                | Rule::target_offer
                | Rule::target_category
                | Rule::target_channel
                | Rule::target_global => {
                    rule.target_span = self.span(&part);
                    rule.target = target(part);
                }
                Rule::stage_option => self.stage_option(part, &mut rule)?,
                Rule::priority_option => {
                    let n = content(part).next().expect("priority value");
                    rule.priority = n
                        .as_str()
                        .replace('_', "")
                        .parse()
                        .map_err(|_| Diagnostic::error("E116", self.span(&n), "priority must be a whole number"))?;
                }
                Rule::expr => rule.body = self.expr(part)?.0,
                other => unreachable!("unexpected {other:?} in a rule"),
            }
        }
        Ok(rule)
    }

    fn stage_option(&mut self, p: Pair<Rule>, rule: &mut RuleItem) -> Result<(), Diagnostic> {
        let mut inner = content(p);
        rule.stage = match inner.next().expect("stage name").as_str() {
            "fit" => StageName::Fit,
            "match" => StageName::Match,
            _ => StageName::Eligibility,
        };
        if let Some(m) = inner.next() {
            rule.multiplier = Some((self.number(&m)?, self.span(&m)));
        }
        Ok(())
    }

    fn score_def(&mut self, p: Pair<Rule>) -> Result<Score, Diagnostic> {
        let span = self.span(&p);
        let mut flow = None;
        let mut channel = None;
        let mut body = None;
        for part in content(p) {
            match part.as_rule() {
                Rule::string if flow.is_none() => flow = Some((unescape(&part), self.span(&part))),
                Rule::string => channel = Some((unescape(&part), self.span(&part))),
                Rule::weights => body = Some(self.weights(part)?),
                Rule::formula => body = Some(ScoreBody::Formula(self.expr(content(part).next().expect("formula"))?.0)),
                _ => {}
            }
        }
        let (flow, flow_span) = flow.expect("score names a flow");
        Ok(Score { flow, flow_span, channel, body: body.expect("score has a body"), span })
    }

    fn weights(&mut self, p: Pair<Rule>) -> Result<ScoreBody, Diagnostic> {
        let mut out = Vec::new();
        for w in content(p) {
            let span = self.span(&w);
            let mut inner = w.into_inner();
            let factor = match inner.next().expect("factor").as_str() {
                "propensity" => Factor::Propensity,
                "relevance" => Factor::Relevance,
                "impact" => Factor::Impact,
                "emphasis" => Factor::Emphasis,
                _ => Factor::Uplift,
            };
            out.push((factor, self.number(&inner.next().expect("weight value"))?, span));
        }
        Ok(ScoreBody::Weights(out))
    }

    fn number(&self, p: &Pair<Rule>) -> Result<f64, Diagnostic> {
        let text = p.as_str().replace('_', "");
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(n),
            _ => Err(Diagnostic::error("E116", self.span(p), format!("`{}` is not a usable number", p.as_str()))),
        }
    }

    fn expr(&mut self, p: Pair<Rule>) -> Built {
        let span = self.span(&p);
        let pairs = p.into_inner();
        if pairs.len() > MAX_EXPR_TOKENS {
            let msg = format!("expression has more than {MAX_EXPR_TOKENS} operands and operators; split it with `let`");
            return Err(Diagnostic::error("E003", span, msg));
        }
        self.pratt(pairs)
    }

    fn pratt(&mut self, pairs: Pairs<Rule>) -> Built {
        let offset = self.offset;
        let sp = |p: &Pair<Rule>| Span::new(offset + p.as_span().start(), offset + p.as_span().end());
        let built = PRATT
            .map_primary(|p| self.primary(p))
            .map_prefix(|op, rhs| {
                let (rhs, depth) = rhs?;
                let span = sp(&op).to(rhs.span);
                let kind = match op.as_rule() {
                    // Fold `-5` to a literal so it can stand in an `in [...]` list.
                    Rule::op_neg => match rhs.kind {
                        ExprKind::Num(n) => ExprKind::Num(-n),
                        _ => ExprKind::Neg(Box::new(rhs)),
                    },
                    _ => ExprKind::Not(Box::new(rhs)),
                };
                deeper(Expr::new(kind, span), depth)
            })
            .map_postfix(|lhs, op| {
                let (lhs, depth) = lhs?;
                let span = lhs.span.to(sp(&op));
                let negated = op.as_rule() == Rule::op_not_in;
                let list = op.into_inner().find(|p| p.as_rule() == Rule::list).expect("in list");
                let items =
                    list.into_inner().map(|item| self_expr_items(offset, item)).collect::<Result<Vec<_>, _>>()?;
                let kind = ExprKind::In { needle: Box::new(lhs), items, negated };
                deeper(Expr::new(kind, span), depth)
            })
            .map_infix(|lhs, op, rhs| {
                let ((lhs, dl), (rhs, dr)) = (lhs?, rhs?);
                let span = lhs.span.to(rhs.span);
                let kind = match op.as_rule() {
                    Rule::op_default => ExprKind::Default(Box::new(lhs), Box::new(rhs)),
                    rule => ExprKind::Binary(binop(rule), Box::new(lhs), Box::new(rhs)),
                };
                deeper(Expr::new(kind, span), dl.max(dr))
            })
            .parse(pairs);
        built
    }

    fn primary(&mut self, p: Pair<Rule>) -> Built {
        let span = self.span(&p);
        let lit = |kind| Ok((Expr::new(kind, span), 1));
        match p.as_rule() {
            Rule::number => lit(ExprKind::Num(self.number(&p)?)),
            Rule::string => lit(ExprKind::Str(unescape(&p))),
            Rule::kw_true => lit(ExprKind::Bool(true)),
            Rule::kw_false => lit(ExprKind::Bool(false)),
            Rule::kw_null => lit(ExprKind::Null),
            Rule::name => self.name(&p),
            Rule::path => self.path(&p),
            Rule::call => self.call(p),
            Rule::expr => self.expr(p),
            Rule::list => Err(Diagnostic::error("E115", span, "a list can only follow `in` or `not in`")),
            other => unreachable!("unexpected primary {other:?}"),
        }
    }

    /// A `let` name; `True`, `NULL` and the like are refused as keywords in the wrong case.
    fn name(&self, p: &Pair<Rule>) -> Built {
        let text = p.as_str();
        if let Some(keyword) = hint::wrong_case(text) {
            let (message, help) = hint::wrong_case_message(text, keyword);
            return Err(Diagnostic::error("E001", self.span(p), message).with_help(Some(help)));
        }
        Ok((Expr::new(ExprKind::Name(text.to_string()), self.span(p)), 1))
    }

    fn path(&self, p: &Pair<Rule>) -> Built {
        let span = self.span(p);
        let text = p.as_str();
        match Path::parse(text).filter(|path| path.ns != Namespace::Factor) {
            Some(path) => Ok((Expr::new(ExprKind::Attr(path), span), 1)),
            None => {
                let prefix = text.split('.').next().unwrap_or_default();
                let known = ["customer", "attributes", "offer", "request", "channel"];
                let help = did_you_mean(prefix, known.into_iter()).map(|s| format!("did you mean `{s}.…`?"));
                let msg =
                    format!("`{prefix}` is not a namespace; use customer., attributes., offer., request. or channel.");
                Err(Diagnostic::error("E201", span, msg).with_help(help))
            }
        }
    }

    fn call(&mut self, p: Pair<Rule>) -> Built {
        let span = self.span(&p);
        let mut inner = p.into_inner();
        let name = inner.next().expect("function name");
        let Some(func) = Func::from_name(name.as_str()) else {
            let help =
                did_you_mean(name.as_str(), Func::ALL.iter().map(|f| f.name())).map(|s| format!("did you mean `{s}`?"));
            let msg = format!("unknown function `{}`", name.as_str());
            return Err(Diagnostic::error("E114", self.span(&name), msg).with_help(help));
        };
        let mut args = Vec::new();
        let mut depth = 0;
        for a in inner {
            let (e, d) = self.expr(a)?;
            depth = depth.max(d);
            args.push(e);
        }
        deeper(Expr::new(ExprKind::Call(func, args), span), depth)
    }
}

/// The children of a pair without its structural keywords (`rule`, `for`, `stage` …).
fn content(p: Pair<Rule>) -> impl Iterator<Item = Pair<Rule>> {
    p.into_inner().filter(|q| !is_keyword(q.as_rule()))
}

fn is_keyword(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::kw_let
            | Rule::kw_rule
            | Rule::kw_for
            | Rule::kw_offer
            | Rule::kw_id
            | Rule::kw_category
            | Rule::kw_channel
            | Rule::kw_all
            | Rule::kw_global
            | Rule::kw_stage
            | Rule::kw_multiplier
            | Rule::kw_priority
            | Rule::kw_score
            | Rule::kw_flow
            | Rule::kw_on
            | Rule::kw_weights
            | Rule::kw_formula
    )
}

/// List items in `in [...]` are parsed like any expression (then must be literals).
fn self_expr_items(offset: usize, item: Pair<Rule>) -> Result<Expr, Diagnostic> {
    let mut errors = Vec::new();
    let mut b = Builder { offset, errors: &mut errors };
    b.expr(item).map(|(e, _)| e)
}

fn deeper(e: Expr, child_depth: u32) -> Built {
    let depth = child_depth + 1;
    if depth > MAX_TREE_DEPTH {
        let msg = format!("expression nests more than {MAX_TREE_DEPTH} levels; split it with `let`");
        return Err(Diagnostic::error("E003", e.span, msg));
    }
    Ok((e, depth))
}

fn binop(rule: Rule) -> BinOp {
    match rule {
        Rule::op_or => BinOp::Or,
        Rule::op_and => BinOp::And,
        Rule::op_eq => BinOp::Eq,
        Rule::op_ne => BinOp::Ne,
        Rule::op_lt => BinOp::Lt,
        Rule::op_le => BinOp::Le,
        Rule::op_gt => BinOp::Gt,
        Rule::op_ge => BinOp::Ge,
        Rule::op_add => BinOp::Add,
        Rule::op_sub => BinOp::Sub,
        Rule::op_mul => BinOp::Mul,
        Rule::op_div => BinOp::Div,
        _ => BinOp::Rem,
    }
}

fn target(p: Pair<Rule>) -> Target {
    let rule = p.as_rule();
    let text = p.into_inner().find(|q| q.as_rule() == Rule::string).map(|s| unescape(&s)).unwrap_or_default();
    match rule {
        Rule::target_offer_id => Target::OfferId(text),
        Rule::target_offer => Target::OfferName(text),
        Rule::target_category => Target::Category(text),
        Rule::target_channel => Target::Channel(text),
        _ => Target::Global,
    }
}

/// The text of a `string` pair, with escapes resolved.
fn unescape(p: &Pair<Rule>) -> String {
    let raw = p.as_str();
    let inner = raw.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(raw);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(src: &str) -> Expr {
        let (file, errors) = parse(&format!("rule \"r\" {{ {src} }}"));
        assert!(errors.is_empty(), "{errors:?}");
        match &file.items[0] {
            Item::Rule(r) => r.body.clone(),
            other => panic!("{other:?}"),
        }
    }

    fn shape(e: &Expr) -> String {
        match &e.kind {
            ExprKind::Binary(op, l, r) => format!("({} {} {})", shape(l), op.symbol(), shape(r)),
            ExprKind::Not(x) => format!("(not {})", shape(x)),
            ExprKind::Neg(x) => format!("(- {})", shape(x)),
            ExprKind::Default(a, b) => format!("({} ?? {})", shape(a), shape(b)),
            ExprKind::In { needle, items, negated } => {
                format!("({} {}in [{}])", shape(needle), if *negated { "not " } else { "" }, items.len())
            }
            ExprKind::Attr(p) => p.name.clone(),
            ExprKind::Name(n) => n.clone(),
            ExprKind::Num(n) => n.to_string(),
            ExprKind::Str(s) => format!("{s:?}"),
            ExprKind::Bool(b) => b.to_string(),
            ExprKind::Null => "null".into(),
            ExprKind::Call(f, args) => {
                format!("{}({})", f.name(), args.iter().map(shape).collect::<Vec<_>>().join(", "))
            }
        }
    }

    #[test]
    fn precedence() {
        let cases = [
            ("customer.a or customer.b and customer.c", "(a or (b and c))"),
            ("not customer.a and customer.b", "((not a) and b)"),
            ("not customer.x == 1", "(not (x == 1))"),
            ("customer.x + 2 * 3 > 4", "((x + (2 * 3)) > 4)"),
            ("customer.x ?? 0 >= 5", "((x ?? 0) >= 5)"),
            ("customer.a ?? customer.b ?? 1", "(a ?? (b ?? 1))"),
            ("-customer.x < 3 - 1 - 1", "((- x) < ((3 - 1) - 1))"),
            ("customer.t in [\"a\", \"b\"] and customer.u not in [1]", "((t in [2]) and (u not in [1]))"),
            ("not customer.t in [\"a\"]", "(not (t in [1]))"),
            ("min(customer.a, 2) >= abs(-3)", "(min(a, 2) >= abs(-3))"),
            ("ordered and inside", "(ordered and inside)"),
        ];
        for (src, want) in cases {
            assert_eq!(shape(&body(src)), want, "{src}");
        }
    }

    #[test]
    fn underscores_in_numbers() {
        assert_eq!(shape(&body("customer.b >= 50_000")), "(b >= 50000)");
    }

    #[test]
    fn every_syntax_error_is_reported() {
        let src = "rule \"a\" { customer.x >= }\nrule \"b\" { customer.y == 1 }\nrule \"c\" { (customer.z }\n";
        let (file, errors) = parse(src);
        assert_eq!(file.items.len(), 1);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().all(|e| e.code == "E001"));
    }

    #[test]
    fn deep_nesting_is_a_diagnostic_not_a_crash() {
        let src = format!("rule \"r\" {{ {}customer.x{} }}", "(".repeat(100_000), ")".repeat(100_000));
        let (_, errors) = parse(&src);
        assert_eq!(errors[0].code, "E003");
        let src = format!("rule \"r\" {{ {}customer.x }}", "not ".repeat(100_000));
        assert_eq!(parse(&src).1[0].code, "E003");
        let src = format!("rule \"r\" {{ customer.x{} }}", " ?? 1".repeat(100_000));
        assert_eq!(parse(&src).1[0].code, "E003");
    }

    #[test]
    fn comments_and_strings_do_not_confuse_splitting() {
        let src = "# rule \"x\" {\n// let\nrule \"a ( [\" { customer.x == \"rule \\\"y\" }\nlet k = 1 > 0\n";
        let (file, errors) = parse(src);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(file.items.len(), 2);
    }
}
