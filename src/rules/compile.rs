//! Compiles a checked expression into nested Rust closures. Each node kind has one small
//! function; the common shape of a JSON rule (`slot <op> literal`) gets a specialised
//! closure that reads one slot and compares in place. Evaluation never allocates:
//! strings are borrowed from slots, from the offer, or from the constant pool in `Env`.

use std::cmp::Ordering;
use std::sync::Arc;

use super::check::{Node, Typed};
use super::ir::{BinOp, Func};
use super::layout::OfferField;
use super::value::{Type, Value};

/// What an offer exposes to rules (`offer.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct OfferFacts {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub category: Arc<str>,
    pub status: Arc<str>,
    pub priority: f64,
    pub business_value: f64,
    pub revenue_value: Option<f64>,
    pub margin: Option<f64>,
    pub weight: f64,
    pub mandatory: bool,
}

impl OfferFacts {
    /// An offer with no facts: for expressions that read none (a constant folded at
    /// check time, a condition on the customer alone).
    pub fn empty() -> OfferFacts {
        OfferFacts {
            id: "".into(),
            name: "".into(),
            category: "".into(),
            status: "".into(),
            priority: 0.0,
            business_value: 0.0,
            revenue_value: None,
            margin: None,
            weight: 0.0,
            mandatory: false,
        }
    }
}

/// Everything a compiled expression reads: the decision's slot frame, the candidate
/// offer, and the string constants of the compiled rule set.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    pub slots: &'a [Value],
    pub offer: &'a OfferFacts,
    pub consts: &'a [Box<str>],
}

pub type BoolFn = Box<dyn Fn(&Env<'_>) -> Option<bool> + Send + Sync>;
pub type NumFn = Box<dyn Fn(&Env<'_>) -> Option<f64> + Send + Sync>;
pub type StrFn = Box<dyn for<'a> Fn(&Env<'a>) -> Option<&'a str> + Send + Sync>;

// These helpers pin each closure's signature, which plain `Box::new` cannot infer for
// the higher-ranked string case.
fn bool_fn(f: impl Fn(&Env<'_>) -> Option<bool> + Send + Sync + 'static) -> BoolFn {
    Box::new(f)
}
fn num_fn(f: impl Fn(&Env<'_>) -> Option<f64> + Send + Sync + 'static) -> NumFn {
    Box::new(f)
}
fn str_fn(f: impl for<'a> Fn(&Env<'a>) -> Option<&'a str> + Send + Sync + 'static) -> StrFn {
    Box::new(f)
}

/// Collects string constants while compiling; the engine stores them beside the rules.
#[derive(Default)]
pub struct Compiler {
    consts: Vec<Box<str>>,
}

impl Compiler {
    pub fn new() -> Compiler {
        Compiler::default()
    }

    pub fn into_consts(self) -> Box<[Box<str>]> {
        self.consts.into_boxed_slice()
    }

    /// Compiles a boolean expression (the checker guarantees the type).
    pub fn predicate(&mut self, t: &Typed) -> BoolFn {
        self.boolean(t)
    }

    pub fn number(&mut self, t: &Typed) -> NumFn {
        match &t.node {
            Node::Lit(v) => {
                let n = v.as_num();
                num_fn(move |_| n)
            }
            Node::Slot(s) => {
                let s = *s as usize;
                num_fn(move |e| e.slots[s].as_num())
            }
            Node::Offer(f) => offer_num(*f),
            Node::Neg(inner) => {
                let f = self.number(inner);
                num_fn(move |e| f(e).map(|x| -x))
            }
            Node::Binary(op, l, r) => self.arithmetic(*op, l, r),
            Node::Call(f, args) => self.num_call(*f, args),
            Node::Default(a, b) => {
                let (a, b) = (self.number(a), self.number(b));
                num_fn(move |e| a(e).or_else(|| b(e)))
            }
            other => unreachable!("checker typed {other:?} as a number"),
        }
    }

    fn boolean(&mut self, t: &Typed) -> BoolFn {
        match &t.node {
            Node::Lit(v) => {
                let b = v.as_bool();
                bool_fn(move |_| b)
            }
            Node::Slot(s) => {
                let s = *s as usize;
                bool_fn(move |e| e.slots[s].as_bool())
            }
            Node::Offer(f) => offer_bool(*f),
            Node::Not(inner) => {
                let f = self.boolean(inner);
                bool_fn(move |e| f(e).map(|b| !b))
            }
            Node::Binary(BinOp::And, l, r) => self.and(l, r),
            Node::Binary(BinOp::Or, l, r) => self.or(l, r),
            Node::Binary(op, l, r) => self.compare(*op, l, r),
            Node::In { needle, items, negated } => self.in_list(needle, items, *negated),
            Node::Call(f, args) => self.bool_call(*f, args),
            Node::Default(a, b) => {
                let (a, b) = (self.boolean(a), self.boolean(b));
                bool_fn(move |e| a(e).or_else(|| b(e)))
            }
            other => unreachable!("checker typed {other:?} as a boolean"),
        }
    }

    fn string(&mut self, t: &Typed) -> StrFn {
        match &t.node {
            Node::Lit(Value::Str(s)) => {
                let idx = self.constant(s);
                str_fn(move |e| Some(&*e.consts[idx]))
            }
            Node::Lit(_) => str_fn(|_| None),
            Node::Slot(s) => {
                let s = *s as usize;
                str_fn(move |e| e.slots[s].as_str())
            }
            Node::Offer(f) => offer_str(*f),
            Node::Default(a, b) => {
                let (a, b) = (self.string(a), self.string(b));
                str_fn(move |e| a(e).or_else(|| b(e)))
            }
            other => unreachable!("checker typed {other:?} as a string"),
        }
    }

    fn constant(&mut self, s: &str) -> usize {
        match self.consts.iter().position(|c| &**c == s) {
            Some(i) => i,
            None => {
                self.consts.push(s.into());
                self.consts.len() - 1
            }
        }
    }

    /// Kleene AND: false if either side is false, unknown if either is unknown.
    fn and(&mut self, l: &Typed, r: &Typed) -> BoolFn {
        let (l, r) = (self.boolean(l), self.boolean(r));
        bool_fn(move |e| match l(e) {
            Some(false) => Some(false),
            a => match (a, r(e)) {
                (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
        })
    }

    /// Kleene OR: true if either side is true, unknown if either is unknown.
    fn or(&mut self, l: &Typed, r: &Typed) -> BoolFn {
        let (l, r) = (self.boolean(l), self.boolean(r));
        bool_fn(move |e| match l(e) {
            Some(true) => Some(true),
            a => match (a, r(e)) {
                (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
        })
    }

    fn compare(&mut self, op: BinOp, l: &Typed, r: &Typed) -> BoolFn {
        let mask = ordering_mask(op);
        match (l.ty, &l.node, &r.node) {
            (Type::Num, Node::Slot(s), Node::Lit(v)) => {
                let (s, lit) = (*s as usize, v.as_num());
                bool_fn(move |e| test(mask, e.slots[s].as_num()?.partial_cmp(&lit?)))
            }
            (Type::Str, Node::Slot(s), Node::Lit(Value::Str(lit))) => {
                let (s, lit) = (*s as usize, lit.clone());
                bool_fn(move |e| test(mask, Some(e.slots[s].as_str()?.cmp(&lit))))
            }
            (Type::Bool, Node::Slot(s), Node::Lit(v)) => {
                let (s, lit) = (*s as usize, v.as_bool());
                bool_fn(move |e| test(mask, Some(e.slots[s].as_bool()?.cmp(&lit?))))
            }
            (Type::Num, ..) => {
                let (l, r) = (self.number(l), self.number(r));
                bool_fn(move |e| test(mask, l(e)?.partial_cmp(&r(e)?)))
            }
            (Type::Str, ..) => {
                let (l, r) = (self.string(l), self.string(r));
                bool_fn(move |e| test(mask, Some(l(e)?.cmp(r(e)?))))
            }
            _ => {
                let (l, r) = (self.boolean(l), self.boolean(r));
                bool_fn(move |e| test(mask, Some(l(e)?.cmp(&r(e)?))))
            }
        }
    }

    fn in_list(&mut self, needle: &Typed, items: &[Value], negated: bool) -> BoolFn {
        let flip = move |hit: bool| hit != negated;
        match needle.ty {
            Type::Num => {
                let f = self.number(needle);
                let set: Box<[f64]> = items.iter().filter_map(Value::as_num).collect();
                bool_fn(move |e| f(e).map(|x| flip(set.contains(&x))))
            }
            Type::Bool => {
                let f = self.boolean(needle);
                let set: Box<[bool]> = items.iter().filter_map(Value::as_bool).collect();
                bool_fn(move |e| f(e).map(|x| flip(set.contains(&x))))
            }
            _ => {
                let f = self.string(needle);
                let set: Box<[Box<str>]> = items.iter().filter_map(|v| v.as_str().map(Into::into)).collect();
                bool_fn(move |e| f(e).map(|x| flip(set.iter().any(|i| &**i == x))))
            }
        }
    }

    fn bool_call(&mut self, f: Func, args: &[Typed]) -> BoolFn {
        match f {
            Func::Exists => match args[0].node {
                Node::Slot(s) => {
                    let s = s as usize;
                    bool_fn(move |e| Some(!e.slots[s].is_null()))
                }
                Node::Offer(field) => {
                    let get = offer_value_present(field);
                    bool_fn(move |e| Some(get(e.offer)))
                }
                _ => bool_fn(|_| Some(false)),
            },
            Func::Contains => self.str_pair(&args[0], &args[1], |a, b| a.contains(b)),
            Func::StartsWith => self.str_pair(&args[0], &args[1], |a, b| a.starts_with(b)),
            Func::EndsWith => self.str_pair(&args[0], &args[1], |a, b| a.ends_with(b)),
            other => unreachable!("{} is not boolean", other.name()),
        }
    }

    fn str_pair(&mut self, a: &Typed, b: &Typed, test: fn(&str, &str) -> bool) -> BoolFn {
        if let (Node::Slot(s), Node::Lit(Value::Str(lit))) = (&a.node, &b.node) {
            let (s, lit) = (*s as usize, lit.clone());
            return bool_fn(move |e| Some(test(e.slots[s].as_str()?, &lit)));
        }
        let (a, b) = (self.string(a), self.string(b));
        bool_fn(move |e| Some(test(a(e)?, b(e)?)))
    }

    fn num_call(&mut self, f: Func, args: &[Typed]) -> NumFn {
        if f == Func::Len {
            let s = self.string(&args[0]);
            return num_fn(move |e| s(e).map(|s| s.chars().count() as f64));
        }
        let mut fs: Vec<NumFn> = args.iter().map(|a| self.number(a)).collect();
        match f {
            Func::Abs => unary(fs.remove(0), f64::abs),
            Func::Exp => unary(fs.remove(0), f64::exp),
            Func::Ln => {
                let x = fs.remove(0);
                num_fn(move |e| x(e).filter(|v| *v > 0.0).map(f64::ln))
            }
            Func::Min => fold(fs, f64::min),
            Func::Max => fold(fs, f64::max),
            Func::Clamp => {
                let (x, lo, hi) = (fs.remove(0), fs.remove(0), fs.remove(0));
                num_fn(move |e| {
                    let (lo, hi) = (lo(e)?, hi(e)?);
                    (lo <= hi).then(|| x(e).map(|v| v.clamp(lo, hi))).flatten()
                })
            }
            other => unreachable!("{} is not numeric", other.name()),
        }
    }

    fn arithmetic(&mut self, op: BinOp, l: &Typed, r: &Typed) -> NumFn {
        let (l, r) = (self.number(l), self.number(r));
        let apply: fn(f64, f64) -> f64 = match op {
            BinOp::Add => |a, b| a + b,
            BinOp::Sub => |a, b| a - b,
            BinOp::Mul => |a, b| a * b,
            BinOp::Div => |a, b| a / b,
            BinOp::Rem => |a, b| a % b,
            other => unreachable!("{} is not arithmetic", other.symbol()),
        };
        // Division by zero and overflow give "unknown", never NaN or infinity.
        num_fn(move |e| Some(apply(l(e)?, r(e)?)).filter(|v| v.is_finite()))
    }
}

fn unary(x: NumFn, f: fn(f64) -> f64) -> NumFn {
    num_fn(move |e| x(e).map(f).filter(|v| v.is_finite()))
}

fn fold(fs: Vec<NumFn>, f: fn(f64, f64) -> f64) -> NumFn {
    num_fn(move |e| {
        let mut acc = fs[0](e)?;
        for g in &fs[1..] {
            acc = f(acc, g(e)?);
        }
        Some(acc)
    })
}

/// Bit set of the orderings for which a comparison holds.
fn ordering_mask(op: BinOp) -> u8 {
    const LT: u8 = 1;
    const EQ: u8 = 2;
    const GT: u8 = 4;
    match op {
        BinOp::Eq => EQ,
        BinOp::Ne => LT | GT,
        BinOp::Lt => LT,
        BinOp::Le => LT | EQ,
        BinOp::Gt => GT,
        BinOp::Ge => GT | EQ,
        other => unreachable!("{} is not a comparison", other.symbol()),
    }
}

#[inline]
fn test(mask: u8, ord: Option<Ordering>) -> Option<bool> {
    let bit = match ord? {
        Ordering::Less => 1,
        Ordering::Equal => 2,
        Ordering::Greater => 4,
    };
    Some(mask & bit != 0)
}

fn offer_num(f: OfferField) -> NumFn {
    match f {
        OfferField::Priority => num_fn(|e| Some(e.offer.priority)),
        OfferField::BusinessValue => num_fn(|e| Some(e.offer.business_value)),
        OfferField::RevenueValue => num_fn(|e| e.offer.revenue_value),
        OfferField::Margin => num_fn(|e| e.offer.margin),
        OfferField::Weight => num_fn(|e| Some(e.offer.weight)),
        other => unreachable!("offer field {other:?} is not numeric"),
    }
}

fn offer_str(f: OfferField) -> StrFn {
    match f {
        OfferField::Id => str_fn(|e| Some(&*e.offer.id)),
        OfferField::Name => str_fn(|e| Some(&*e.offer.name)),
        OfferField::Category => str_fn(|e| Some(&*e.offer.category)),
        OfferField::Status => str_fn(|e| Some(&*e.offer.status)),
        other => unreachable!("offer field {other:?} is not a string"),
    }
}

fn offer_bool(f: OfferField) -> BoolFn {
    match f {
        OfferField::Mandatory => bool_fn(|e| Some(e.offer.mandatory)),
        other => unreachable!("offer field {other:?} is not boolean"),
    }
}

fn offer_value_present(f: OfferField) -> fn(&OfferFacts) -> bool {
    match f {
        OfferField::RevenueValue => |o| o.revenue_value.is_some(),
        OfferField::Margin => |o| o.margin.is_some(),
        _ => |_| true,
    }
}
