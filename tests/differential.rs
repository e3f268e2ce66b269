//! Differential test: compiled closures agree with a small reference interpreter on
//! random well-typed expressions and random (often missing) attribute values.

use arbiter::rules::check::{Node, Typed};
use arbiter::rules::ir::{BinOp, Expr, ExprKind, Func, Path, Span};
use arbiter::rules::layout::OfferField;
use arbiter::rules::{Checker, Compiler, Env, Layout, Literals, Namespace, OfferFacts, Type, Value};
use proptest::prelude::*;

/// The reference interpreter's values.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Null,
    B(bool),
    N(f64),
    S(String),
}

fn from_value(v: &Value, ty: Type) -> V {
    match ty {
        Type::Num => v.as_num().map_or(V::Null, V::N),
        Type::Bool => v.as_bool().map_or(V::Null, V::B),
        _ => v.as_str().map_or(V::Null, |s| V::S(s.to_string())),
    }
}

fn offer_field(o: &OfferFacts, f: OfferField) -> V {
    match f {
        OfferField::Id => V::S(o.id.to_string()),
        OfferField::Name => V::S(o.name.to_string()),
        OfferField::Category => V::S(o.category.to_string()),
        OfferField::Status => V::S(o.status.to_string()),
        OfferField::Priority => V::N(o.priority),
        OfferField::BusinessValue => V::N(o.business_value),
        OfferField::RevenueValue => o.revenue_value.map_or(V::Null, V::N),
        OfferField::Margin => o.margin.map_or(V::Null, V::N),
        OfferField::Weight => V::N(o.weight),
        OfferField::Mandatory => V::B(o.mandatory),
    }
}

fn finite(x: f64) -> V {
    if x.is_finite() {
        V::N(x)
    } else {
        V::Null
    }
}

/// Straightforward tree-walking evaluation with three-valued logic.
fn eval(t: &Typed, slots: &[Value], o: &OfferFacts) -> V {
    let ev = |x: &Typed| eval(x, slots, o);
    match &t.node {
        Node::Lit(v) => from_value(v, t.ty),
        Node::Slot(s) => from_value(&slots[*s as usize], t.ty),
        Node::Offer(f) => offer_field(o, *f),
        Node::Not(x) => match ev(x) {
            V::B(b) => V::B(!b),
            _ => V::Null,
        },
        Node::Neg(x) => match ev(x) {
            V::N(n) => V::N(-n),
            _ => V::Null,
        },
        Node::Binary(BinOp::And, a, b) => match (ev(a), ev(b)) {
            (V::B(false), _) | (_, V::B(false)) => V::B(false),
            (V::B(true), V::B(true)) => V::B(true),
            _ => V::Null,
        },
        Node::Binary(BinOp::Or, a, b) => match (ev(a), ev(b)) {
            (V::B(true), _) | (_, V::B(true)) => V::B(true),
            (V::B(false), V::B(false)) => V::B(false),
            _ => V::Null,
        },
        Node::Binary(op, a, b) if op.is_comparison() => compare(*op, ev(a), ev(b)),
        Node::Binary(op, a, b) => match (ev(a), ev(b)) {
            (V::N(x), V::N(y)) => finite(match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div => x / y,
                _ => x % y,
            }),
            _ => V::Null,
        },
        Node::In { needle, items, negated } => {
            let n = ev(needle);
            if n == V::Null {
                return V::Null;
            }
            let hit = items.iter().any(|i| from_value(i, needle.ty) == n);
            V::B(hit != *negated)
        }
        Node::Call(f, args) => call(*f, args, slots, o),
        Node::Default(a, b) => match ev(a) {
            V::Null => ev(b),
            v => v,
        },
    }
}

fn compare(op: BinOp, a: V, b: V) -> V {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (&a, &b) {
        (V::N(x), V::N(y)) => x.partial_cmp(y),
        (V::S(x), V::S(y)) => Some(x.cmp(y)),
        (V::B(x), V::B(y)) => Some(x.cmp(y)),
        _ => None,
    };
    let Some(ord) = ord else { return V::Null };
    V::B(match op {
        BinOp::Eq => ord == Ordering::Equal,
        BinOp::Ne => ord != Ordering::Equal,
        BinOp::Lt => ord == Ordering::Less,
        BinOp::Le => ord != Ordering::Greater,
        BinOp::Gt => ord == Ordering::Greater,
        _ => ord != Ordering::Less,
    })
}

fn call(f: Func, args: &[Typed], slots: &[Value], o: &OfferFacts) -> V {
    let vals: Vec<V> = args.iter().map(|a| eval(a, slots, o)).collect();
    let strs = || match (&vals[0], &vals[1]) {
        (V::S(a), V::S(b)) => Some((a.clone(), b.clone())),
        _ => None,
    };
    let nums: Option<Vec<f64>> = vals.iter().map(|v| if let V::N(n) = v { Some(*n) } else { None }).collect();
    match f {
        Func::Exists => match &args[0].node {
            Node::Slot(s) => V::B(!slots[*s as usize].is_null()),
            Node::Offer(field) => V::B(offer_field(o, *field) != V::Null),
            _ => V::B(false),
        },
        Func::Contains => strs().map_or(V::Null, |(a, b)| V::B(a.contains(&b))),
        Func::StartsWith => strs().map_or(V::Null, |(a, b)| V::B(a.starts_with(&b))),
        Func::EndsWith => strs().map_or(V::Null, |(a, b)| V::B(a.ends_with(&b))),
        Func::Len => match &vals[0] {
            V::S(s) => V::N(s.chars().count() as f64),
            _ => V::Null,
        },
        _ => {
            let Some(n) = nums else { return V::Null };
            match f {
                Func::Abs => finite(n[0].abs()),
                Func::Exp => finite(n[0].exp()),
                Func::Ln if n[0] > 0.0 => finite(n[0].ln()),
                Func::Ln => V::Null,
                Func::Min => V::N(n.iter().copied().fold(f64::INFINITY, f64::min)),
                Func::Max => V::N(n.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                _ if n[1] <= n[2] => V::N(n[0].clamp(n[1], n[2])),
                _ => V::Null,
            }
        }
    }
}

/// A tiny generator of well-typed expressions, driven by a seed.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn pick(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn e(kind: ExprKind) -> Expr {
        Expr::new(kind, Span::NONE)
    }
    fn attr(name: &str) -> Expr {
        Expr::attr(Path::parse(name).unwrap())
    }
    fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
        Expr::binary(op, a, b)
    }

    fn num(&mut self, d: u32) -> Expr {
        if d == 0 || self.pick(3) == 0 {
            return match self.pick(6) {
                0 => Self::e(ExprKind::Num([-2.0, 0.0, 0.5, 1.0, 3.0, 100.0][self.pick(6)])),
                1 => Self::attr("customer.n1"),
                2 => Self::attr("customer.n2"),
                3 => Self::attr("attributes.a"),
                4 => Self::attr("offer.priority"),
                _ => Self::attr("offer.revenueValue"),
            };
        }
        let d = d - 1;
        match self.pick(8) {
            0 => Self::e(ExprKind::Neg(Box::new(self.num(d)))),
            1 => {
                let op = [BinOp::Add, BinOp::Sub, BinOp::Mul, BinOp::Div, BinOp::Rem][self.pick(5)];
                Self::bin(op, self.num(d), self.num(d))
            }
            2 => {
                let f = [Func::Min, Func::Max][self.pick(2)];
                let n = 2 + self.pick(2);
                Self::e(ExprKind::Call(f, (0..n).map(|_| self.num(d)).collect()))
            }
            3 => {
                let f = [Func::Abs, Func::Ln, Func::Exp][self.pick(3)];
                Self::e(ExprKind::Call(f, vec![self.num(d)]))
            }
            4 => Self::e(ExprKind::Call(Func::Clamp, vec![self.num(d), self.num(d), self.num(d)])),
            5 => Self::e(ExprKind::Default(Box::new(self.num(d)), Box::new(self.num(d)))),
            6 => Self::e(ExprKind::Call(Func::Len, vec![self.string(d)])),
            _ => self.num(0),
        }
    }

    fn string(&mut self, d: u32) -> Expr {
        if d == 0 || self.pick(2) == 0 {
            return match self.pick(5) {
                0 => Self::e(ExprKind::Str(["", "a", "abc", "premium", "b"][self.pick(5)].into())),
                1 => Self::attr("customer.s1"),
                2 => Self::attr("customer.s2"),
                3 => Self::attr("offer.name"),
                _ => Self::attr("offer.category"),
            };
        }
        Self::e(ExprKind::Default(Box::new(self.string(d - 1)), Box::new(self.string(d - 1))))
    }

    fn boolean(&mut self, d: u32) -> Expr {
        if d == 0 || self.pick(4) == 0 {
            return match self.pick(4) {
                0 => Self::e(ExprKind::Bool(self.pick(2) == 0)),
                1 => Self::attr("customer.b1"),
                2 => Self::e(ExprKind::Call(
                    Func::Exists,
                    vec![Self::attr(["customer.n1", "customer.s1", "offer.margin"][self.pick(3)])],
                )),
                _ => Self::attr("offer.mandatory"),
            };
        }
        let d = d - 1;
        let cmp = [BinOp::Eq, BinOp::Ne, BinOp::Lt, BinOp::Le, BinOp::Gt, BinOp::Ge];
        match self.pick(9) {
            0 => Self::e(ExprKind::Not(Box::new(self.boolean(d)))),
            1 => Self::bin(BinOp::And, self.boolean(d), self.boolean(d)),
            2 => Self::bin(BinOp::Or, self.boolean(d), self.boolean(d)),
            3 => Self::bin(cmp[self.pick(6)], self.num(d), self.num(d)),
            4 => Self::bin(cmp[self.pick(6)], self.string(d), self.string(d)),
            5 => Self::bin(cmp[self.pick(2)], self.boolean(d), self.boolean(d)),
            6 => {
                let items = (0..self.pick(4)).map(|_| Self::e(ExprKind::Num([0.0, 1.0, 3.0][self.pick(3)]))).collect();
                Self::e(ExprKind::In { needle: Box::new(self.num(d)), items, negated: self.pick(2) == 0 })
            }
            7 => {
                let f = [Func::Contains, Func::StartsWith, Func::EndsWith][self.pick(3)];
                Self::e(ExprKind::Call(f, vec![self.string(d), self.string(d)]))
            }
            _ => Self::e(ExprKind::Default(Box::new(self.boolean(d)), Box::new(self.boolean(d)))),
        }
    }
}

fn layout() -> Layout {
    let mut layout = Layout::new();
    for (name, ty) in [("n1", Type::Num), ("n2", Type::Num), ("s1", Type::Str), ("s2", Type::Str), ("b1", Type::Bool)] {
        layout.declare(Path { ns: Namespace::Customer, name: name.into() }, ty);
    }
    layout
}

fn slot_values(g: &mut Gen, layout: &Layout) -> Vec<Value> {
    let mut slots = vec![Value::Null; layout.len()];
    let get = |name: &str| layout.get(&Path::parse(name).unwrap()).map(|(s, _)| s as usize);
    let nums = [Value::Null, Value::Num(-1.0), Value::Num(0.0), Value::Num(0.5), Value::Num(3.0), Value::Num(100.0)];
    let strs = [
        Value::Null,
        Value::Str("".into()),
        Value::Str("a".into()),
        Value::Str("abc".into()),
        Value::Str("premium".into()),
    ];
    for name in ["customer.n1", "customer.n2"] {
        slots[get(name).unwrap()] = nums[g.pick(nums.len())].clone();
    }
    for name in ["customer.s1", "customer.s2"] {
        slots[get(name).unwrap()] = strs[g.pick(strs.len())].clone();
    }
    slots[get("customer.b1").unwrap()] = [Value::Null, Value::Bool(true), Value::Bool(false)][g.pick(3)].clone();
    if let Some(a) = get("attributes.a") {
        slots[a] = [Value::Null, Value::Num(3.0), Value::Str("3".into()), Value::Str("x".into())][g.pick(4)].clone();
    }
    slots
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn closures_agree_with_the_interpreter(seed in any::<u64>()) {
        let mut g = Gen(seed);
        let expr = g.boolean(5);
        let mut layout = layout();
        let typed = Checker::new(&mut layout, Literals::Strict).check_predicate(&expr);
        let typed = typed.map_err(|e| TestCaseError::fail(format!("generator made an ill-typed expression: {e:?}\n{expr:?}")))?;
        let mut compiler = Compiler::new();
        let pred = compiler.predicate(&typed);
        let consts = compiler.into_consts();
        for round in 0..4 {
            let slots = slot_values(&mut g, &layout);
            let offer = OfferFacts {
                id: "o1".into(), name: ["abc", "premium"][round % 2].into(), category: "a".into(), status: "active".into(),
                priority: [0.0, 50.0][round / 2], business_value: 10.0, revenue_value: [None, Some(3.0)][round % 2],
                margin: [Some(1.0), None][round % 2], weight: 100.0, mandatory: round == 3,
            };
            let compiled = pred(&Env { slots: &slots, offer: &offer, consts: &consts });
            let expected = match eval(&typed, &slots, &offer) {
                V::B(b) => Some(b),
                V::Null => None,
                other => return Err(TestCaseError::fail(format!("interpreter returned {other:?}"))),
            };
            prop_assert_eq!(compiled, expected, "expr {:?}\nslots {:?}", expr, slots);
        }
    }
}
