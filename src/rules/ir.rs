//! The rule IR: one typed expression tree that both front-ends produce — JSON
//! `attribute_condition` rules and filter conditions (`rules::json`) and the rule
//! language (`dsl`). Names are still text here; `rules::check` resolves them to slots.

use std::fmt;

/// Byte range in the source the node came from; `Span::NONE` for JSON-born nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub const NONE: Span = Span { start: 0, end: 0 };

    pub fn new(start: usize, end: usize) -> Span {
        Span { start: start as u32, end: end as u32 }
    }

    pub fn to(self, other: Span) -> Span {
        Span { start: self.start.min(other.start), end: self.end.max(other.end) }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Attr(Path),
    /// A bare name from the rule language (a `let` or a score factor); resolved by
    /// `dsl::check` before type checking.
    Name(String),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `needle in [items]`; items must be literals so the set is fixed at compile time.
    In {
        needle: Box<Expr>,
        items: Vec<Expr>,
        negated: bool,
    },
    Call(Func, Vec<Expr>),
    /// `a ?? b`: `b` when `a` is missing.
    Default(Box<Expr>, Box<Expr>),
}

/// Where an attribute comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// Enriched customer row fields (`customer.tier`).
    Customer,
    /// Request-time attributes sent with `/recommend` (`attributes.cartValue`).
    Attributes,
    /// The candidate offer (`offer.priority`).
    Offer,
    /// Request fields (`request.channel`).
    Request,
    /// The resolved channel (`channel.name`, `channel.type`).
    Channel,
    /// Score factors of the candidate being scored; only score formulas read them.
    Factor,
}

impl Namespace {
    pub const ALL: [Namespace; 5] =
        [Namespace::Customer, Namespace::Attributes, Namespace::Offer, Namespace::Request, Namespace::Channel];

    pub fn prefix(self) -> &'static str {
        match self {
            Namespace::Customer => "customer",
            Namespace::Attributes => "attributes",
            Namespace::Offer => "offer",
            Namespace::Request => "request",
            Namespace::Channel => "channel",
            Namespace::Factor => "factor",
        }
    }

    pub fn from_prefix(s: &str) -> Option<Namespace> {
        Namespace::ALL.into_iter().find(|n| n.prefix() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path {
    pub ns: Namespace,
    pub name: String,
}

impl Path {
    /// Parses `customer.tier`; a bare name means a customer field, as in the platform.
    pub fn parse(text: &str) -> Option<Path> {
        let text = text.trim();
        let (ns, name) = match text.split_once('.') {
            Some((prefix, rest)) => match Namespace::from_prefix(prefix) {
                Some(ns) => (ns, rest),
                None => return None,
            },
            None => (Namespace::Customer, text),
        };
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        valid.then(|| Path { ns, name: name.to_string() })
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.ns.prefix(), self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    And,
    Or,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Exists,
    Contains,
    StartsWith,
    EndsWith,
    Len,
    Min,
    Max,
    Abs,
    Ln,
    Exp,
    Clamp,
}

impl Func {
    pub const ALL: [Func; 11] = [
        Func::Exists,
        Func::Contains,
        Func::StartsWith,
        Func::EndsWith,
        Func::Len,
        Func::Min,
        Func::Max,
        Func::Abs,
        Func::Ln,
        Func::Exp,
        Func::Clamp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Func::Exists => "exists",
            Func::Contains => "contains",
            Func::StartsWith => "starts_with",
            Func::EndsWith => "ends_with",
            Func::Len => "len",
            Func::Min => "min",
            Func::Max => "max",
            Func::Abs => "abs",
            Func::Ln => "ln",
            Func::Exp => "exp",
            Func::Clamp => "clamp",
        }
    }

    pub fn from_name(s: &str) -> Option<Func> {
        Func::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// Constructors used by both front-ends and by tests.
impl Expr {
    pub fn new(kind: ExprKind, span: Span) -> Expr {
        Expr { kind, span }
    }

    pub fn attr(path: Path) -> Expr {
        Expr::new(ExprKind::Attr(path), Span::NONE)
    }

    pub fn binary(op: BinOp, l: Expr, r: Expr) -> Expr {
        let span = l.span.to(r.span);
        Expr::new(ExprKind::Binary(op, Box::new(l), Box::new(r)), span)
    }
}
