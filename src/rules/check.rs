//! Type-checks an IR expression against a slot layout and resolves every attribute
//! name to a slot index (or an offer field). The output, `Typed`, is what `compile`
//! turns into closures. All errors of an expression are collected, not just the first.

use super::ir::{BinOp, Expr, ExprKind, Func, Namespace, Path, Span};
use super::layout::{Layout, OfferField};
use super::value::{Type, Value};

/// A resolved, typed node.
#[derive(Debug, Clone, PartialEq)]
pub struct Typed {
    pub node: Node,
    pub ty: Type,
    pub span: Span,
}

impl Typed {
    /// What the expression computes, written without source positions: equal for equal
    /// expressions wherever they were written. `None` when it reads an offer field, so its
    /// value may differ per offer; otherwise it is the same for every offer of a decision
    /// (every function is pure), and a flow evaluates it once per decision.
    pub fn offer_independent_shape(&self) -> Option<String> {
        let mut out = String::new();
        self.write_shape(&mut out).then_some(out)
    }

    fn write_shape(&self, out: &mut String) -> bool {
        use std::fmt::Write;
        let _ = write!(out, "{:?}:", self.ty);
        let all = |out: &mut String, parts: &[&Typed]| {
            out.push('(');
            let ok = parts.iter().all(|p| {
                out.push(',');
                p.write_shape(out)
            });
            out.push(')');
            ok
        };
        match &self.node {
            Node::Offer(_) => false,
            Node::Lit(v) => write!(out, "{v:?}").is_ok(),
            Node::Slot(s) => write!(out, "slot{s}").is_ok(),
            Node::Not(a) => out.write_str("not").is_ok() && all(out, &[a]),
            Node::Neg(a) => out.write_str("neg").is_ok() && all(out, &[a]),
            Node::Binary(op, a, b) => write!(out, "{op:?}").is_ok() && all(out, &[a, b]),
            Node::In { needle, items, negated } => write!(out, "in{negated}{items:?}").is_ok() && all(out, &[needle]),
            Node::Call(f, args) => write!(out, "{f:?}").is_ok() && all(out, &args.iter().collect::<Vec<_>>()),
            Node::Default(a, b) => out.write_str("default").is_ok() && all(out, &[a, b]),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Lit(Value),
    Slot(u32),
    Offer(OfferField),
    Not(Box<Typed>),
    Neg(Box<Typed>),
    Binary(BinOp, Box<Typed>, Box<Typed>),
    In { needle: Box<Typed>, items: Vec<Value>, negated: bool },
    Call(Func, Vec<Typed>),
    Default(Box<Typed>, Box<Typed>),
}

/// A checker diagnostic. `code` is stable (documented in grammar/README.md).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckError {
    pub code: &'static str,
    pub message: String,
    pub span: Span,
    pub help: Option<String>,
}

impl CheckError {
    fn new(code: &'static str, span: Span, message: impl Into<String>) -> CheckError {
        CheckError { code, message: message.into(), span, help: None }
    }

    fn help(mut self, help: Option<String>) -> CheckError {
        self.help = help;
        self
    }
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, " ({help})")?;
        }
        Ok(())
    }
}

/// How literals may be read. JSON rules follow the platform and compare a numeric
/// string with a number as a number; the rule language is strict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Literals {
    Strict,
    Lenient,
}

pub struct Checker<'l> {
    layout: &'l mut Layout,
    literals: Literals,
    errors: Vec<CheckError>,
}

impl<'l> Checker<'l> {
    pub fn new(layout: &'l mut Layout, literals: Literals) -> Checker<'l> {
        Checker { layout, literals, errors: Vec::new() }
    }

    /// Checks a rule condition: it must be boolean.
    pub fn check_predicate(mut self, expr: &Expr) -> Result<Typed, Vec<CheckError>> {
        let typed = self.expr(expr);
        let typed = self.expect(typed, Type::Bool);
        self.finish(typed)
    }

    /// Checks a numeric expression (score formulas).
    pub fn check_number(mut self, expr: &Expr) -> Result<Typed, Vec<CheckError>> {
        let typed = self.expr(expr);
        let typed = self.expect(typed, Type::Num);
        self.finish(typed)
    }

    fn finish(self, typed: Typed) -> Result<Typed, Vec<CheckError>> {
        if self.errors.is_empty() {
            Ok(typed)
        } else {
            Err(self.errors)
        }
    }

    fn error(&mut self, e: CheckError) -> Typed {
        let span = e.span;
        self.errors.push(e);
        // An error node typed Any so one mistake does not cascade into more.
        Typed { node: Node::Lit(Value::Null), ty: Type::Any, span }
    }

    fn expr(&mut self, e: &Expr) -> Typed {
        let lit = |v: Value, ty: Type| Typed { node: Node::Lit(v), ty, span: e.span };
        match &e.kind {
            ExprKind::Null => lit(Value::Null, Type::Null),
            ExprKind::Bool(b) => lit(Value::Bool(*b), Type::Bool),
            ExprKind::Num(n) => lit(Value::Num(*n), Type::Num),
            ExprKind::Str(s) => lit(Value::Str(s.as_str().into()), Type::Str),
            ExprKind::Attr(path) => self.attr(path, e.span),
            ExprKind::Name(name) => self.error(CheckError::new("E207", e.span, format!("unknown name `{name}`"))),
            ExprKind::Not(inner) => self.not(inner, e.span),
            ExprKind::Neg(inner) => {
                let t = self.expr(inner);
                let t = self.expect(t, Type::Num);
                Typed { node: Node::Neg(Box::new(t)), ty: Type::Num, span: e.span }
            }
            ExprKind::Binary(op, l, r) => self.binary(*op, l, r, e.span),
            ExprKind::In { needle, items, negated } => self.in_list(needle, items, *negated, e.span),
            ExprKind::Call(f, args) => self.call(*f, args, e.span),
            ExprKind::Default(a, b) => self.default(a, b, e.span),
        }
    }

    fn attr(&mut self, path: &Path, span: Span) -> Typed {
        match path.ns {
            Namespace::Offer => match OfferField::lookup(&path.name) {
                Some((field, ty)) => Typed { node: Node::Offer(field), ty, span },
                None => {
                    let names = OfferField::ALL.iter().map(|(n, _, _)| *n);
                    let help = did_you_mean(&path.name, names).map(|s| format!("did you mean `offer.{s}`?"));
                    self.error(CheckError::new("E201", span, format!("unknown attribute `{path}`")).help(help))
                }
            },
            // Request attributes are open-ended: any name gets a slot, typed by its use.
            Namespace::Attributes => {
                let slot = self.layout.declare(path.clone(), Type::Any);
                Typed { node: Node::Slot(slot), ty: Type::Any, span }
            }
            _ => match self.layout.get(path) {
                Some((slot, ty)) => Typed { node: Node::Slot(slot), ty, span },
                None => {
                    let help = did_you_mean(&path.name, self.layout.names(path.ns))
                        .map(|s| format!("did you mean `{}.{s}`?", path.ns.prefix()));
                    self.error(CheckError::new("E201", span, format!("unknown attribute `{path}`")).help(help))
                }
            },
        }
    }

    fn not(&mut self, inner: &Expr, span: Span) -> Typed {
        let t = self.expr(inner);
        let t = self.expect(t, Type::Bool);
        Typed { node: Node::Not(Box::new(t)), ty: Type::Bool, span }
    }

    /// Fixes the type of an `Any` node, or reports a mismatch.
    fn expect(&mut self, mut t: Typed, want: Type) -> Typed {
        match t.ty {
            ty if ty == want => t,
            Type::Any | Type::Null => {
                settle(&mut t, want);
                t
            }
            got => {
                let span = t.span;
                self.error(CheckError::new("E202", span, format!("expected {want}, found {got}")))
            }
        }
    }

    fn binary(&mut self, op: BinOp, l: &Expr, r: &Expr, span: Span) -> Typed {
        let (l, r) = (self.expr(l), self.expr(r));
        let (l, r, ty) = match op {
            BinOp::And | BinOp::Or => (self.expect(l, Type::Bool), self.expect(r, Type::Bool), Type::Bool),
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => {
                (self.expect(l, Type::Num), self.expect(r, Type::Num), Type::Num)
            }
            _ => match self.comparison(op, l, r, span) {
                Some((l, r)) => (l, r, Type::Bool),
                None => return Typed { node: Node::Lit(Value::Null), ty: Type::Bool, span },
            },
        };
        Typed { node: Node::Binary(op, Box::new(l), Box::new(r)), ty, span }
    }

    /// Both sides of a comparison must share a type; ordering needs numbers or strings.
    fn comparison(&mut self, op: BinOp, l: Typed, r: Typed, span: Span) -> Option<(Typed, Typed)> {
        let (l, r) = self.coerce_pair(l, r);
        let Some(mut ty) = l.ty.unify(r.ty) else {
            self.error(CheckError::new(
                "E202",
                span,
                format!("cannot compare {} with {} using `{}`", l.ty, r.ty, op.symbol()),
            ));
            return None;
        };
        if matches!(ty, Type::Any | Type::Null) {
            // Two untyped request attributes: compare as strings.
            ty = Type::Str;
        }
        let ordered = !matches!(op, BinOp::Eq | BinOp::Ne);
        if ordered && !matches!(ty, Type::Num | Type::Str) || ty == Type::Json {
            self.error(CheckError::new("E203", span, format!("`{}` is not defined for {ty} values", op.symbol())));
            return None;
        }
        Some((self.expect(l, ty), self.expect(r, ty)))
    }

    /// Lenient literals: a numeric or boolean string compared with a typed attribute
    /// takes the attribute's type, as the platform compares JSON rule values.
    fn coerce_pair(&self, l: Typed, r: Typed) -> (Typed, Typed) {
        if self.literals == Literals::Strict {
            return (l, r);
        }
        let r = coerce_literal(r, l.ty);
        let l = coerce_literal(l, r.ty);
        (l, r)
    }

    fn in_list(&mut self, needle: &Expr, items: &[Expr], negated: bool, span: Span) -> Typed {
        let needle = self.expr(needle);
        let mut ty = needle.ty;
        let mut values = Vec::with_capacity(items.len());
        for item in items {
            let t = self.expr(item);
            let t = if self.literals == Literals::Lenient { coerce_literal(t, needle.ty) } else { t };
            let Node::Lit(v) = t.node else {
                self.error(CheckError::new("E204", t.span, "list items must be literal values"));
                continue;
            };
            match ty.unify(t.ty) {
                Some(u) => ty = u,
                None => {
                    self.error(CheckError::new(
                        "E202",
                        t.span,
                        format!("list item is {}, but the value tested is {ty}", t.ty),
                    ));
                }
            }
            if !v.is_null() {
                values.push(v);
            }
        }
        if matches!(ty, Type::Any | Type::Null) {
            ty = Type::Str;
        }
        if !matches!(ty, Type::Num | Type::Str | Type::Bool) {
            return self.error(CheckError::new("E203", span, format!("`in` is not defined for {ty} values")));
        }
        let needle = self.expect(needle, ty);
        Typed { node: Node::In { needle: Box::new(needle), items: values, negated }, ty: Type::Bool, span }
    }

    fn call(&mut self, f: Func, args: &[Expr], span: Span) -> Typed {
        let (params, ret): (&[Type], Type) = match f {
            Func::Exists => return self.exists(args, span),
            Func::Contains | Func::StartsWith | Func::EndsWith => (&[Type::Str, Type::Str], Type::Bool),
            Func::Len => (&[Type::Str], Type::Num),
            Func::Abs | Func::Ln | Func::Exp => (&[Type::Num], Type::Num),
            Func::Clamp => (&[Type::Num, Type::Num, Type::Num], Type::Num),
            Func::Min | Func::Max => return self.variadic_num(f, args, span),
        };
        if args.len() != params.len() {
            return self.error(CheckError::new(
                "E205",
                span,
                format!("`{}` takes {} argument(s), got {}", f.name(), params.len(), args.len()),
            ));
        }
        let typed = args.iter().zip(params).map(|(a, &p)| {
            let t = self.expr(a);
            self.expect(t, p)
        });
        let typed: Vec<Typed> = typed.collect();
        Typed { node: Node::Call(f, typed), ty: ret, span }
    }

    fn exists(&mut self, args: &[Expr], span: Span) -> Typed {
        match args {
            [arg @ Expr { kind: ExprKind::Attr(_), .. }] => {
                let t = self.expr(arg);
                Typed { node: Node::Call(Func::Exists, vec![t]), ty: Type::Bool, span }
            }
            _ => self.error(CheckError::new("E205", span, "`exists` takes one attribute, e.g. exists(customer.tier)")),
        }
    }

    fn variadic_num(&mut self, f: Func, args: &[Expr], span: Span) -> Typed {
        if args.len() < 2 {
            return self.error(CheckError::new("E205", span, format!("`{}` takes two or more numbers", f.name())));
        }
        let typed = args
            .iter()
            .map(|a| {
                let t = self.expr(a);
                self.expect(t, Type::Num)
            })
            .collect();
        Typed { node: Node::Call(f, typed), ty: Type::Num, span }
    }

    fn default(&mut self, a: &Expr, b: &Expr, span: Span) -> Typed {
        let (a, b) = (self.expr(a), self.expr(b));
        match a.ty.unify(b.ty) {
            Some(ty) => {
                let (a, b) = (self.expect(a, ty), self.expect(b, ty));
                Typed { node: Node::Default(Box::new(a), Box::new(b)), ty, span }
            }
            None => self.error(CheckError::new(
                "E202",
                span,
                format!("`??` needs both sides of one type, found {} and {}", a.ty, b.ty),
            )),
        }
    }
}

/// Gives an untyped node its type from context, down through `??` so every node of the
/// tree carries the type it is evaluated at.
fn settle(t: &mut Typed, ty: Type) {
    t.ty = ty;
    if let Node::Default(a, b) = &mut t.node {
        for child in [a, b] {
            if matches!(child.ty, Type::Any | Type::Null) {
                settle(child, ty);
            }
        }
    }
}

fn coerce_literal(t: Typed, want: Type) -> Typed {
    let Node::Lit(Value::Str(s)) = &t.node else { return t };
    let value = match want {
        Type::Num => s.trim().parse::<f64>().ok().map(Value::Num),
        Type::Bool => match &**s {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        _ => None,
    };
    match value {
        Some(v) => Typed { node: Node::Lit(v), ty: want, span: t.span },
        None => t,
    }
}

/// The closest known name within a small edit distance, for "did you mean".
pub fn did_you_mean<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.len() / 3).max(2);
    candidates
        .map(|c| (edit_distance(&name.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names() {
        let names = ["tenureMonths", "tier", "hasSavings"];
        assert_eq!(did_you_mean("tenureMonth", names.into_iter()), Some("tenureMonths"));
        assert_eq!(did_you_mean("hasSaving", names.into_iter()), Some("hasSavings"));
        assert_eq!(did_you_mean("zzzzzz", names.into_iter()), None);
    }
}
