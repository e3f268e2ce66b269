//! Evaluating a compiled rule allocates nothing. A counting global allocator records
//! allocations made by this thread while the flag is on.

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use arbiter::rules::ir::{BinOp, Expr, ExprKind, Func, Span};
use arbiter::rules::json::{lower, Operator};
use arbiter::rules::{Checker, Compiler, Env, Layout, Literals, Namespace, Path, Type, Value};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn attr(name: &str) -> Expr {
    Expr::attr(Path::parse(name).unwrap())
}

fn lit_str(s: &str) -> Expr {
    Expr::new(ExprKind::Str(s.into()), Span::NONE)
}

fn num(n: f64) -> Expr {
    Expr::new(ExprKind::Num(n), Span::NONE)
}

#[test]
fn evaluating_rules_does_not_allocate() {
    let mut layout = Layout::new();
    for (name, ty) in [("tenure", Type::Num), ("tier", Type::Str), ("hasCard", Type::Bool), ("balance", Type::Num)] {
        layout.declare(Path { ns: Namespace::Customer, name: name.into() }, ty);
    }
    let tier_in = lower("customer.tier", Operator::In, Some(&serde_json::json!(["premium", "private"]))).unwrap();
    let exprs = [
        lower("customer.tenure", Operator::Gte, Some(&serde_json::json!(6))).unwrap(),
        lower("customer.hasCard", Operator::Eq, Some(&serde_json::json!(false))).unwrap(),
        tier_in.clone(),
        lower("customer.tier", Operator::StartsWith, Some(&serde_json::json!("pre"))).unwrap(),
        lower("attributes.segment", Operator::Eq, Some(&serde_json::json!("vip"))).unwrap(),
        // (balance ?? 0) / 1000 + abs(tenure - 40) > 10 and not (tier == "basic") or offer.priority >= 50
        Expr::binary(
            BinOp::Or,
            Expr::binary(
                BinOp::And,
                Expr::binary(
                    BinOp::Gt,
                    Expr::binary(
                        BinOp::Add,
                        Expr::binary(
                            BinOp::Div,
                            Expr::new(
                                ExprKind::Default(Box::new(attr("customer.balance")), Box::new(num(0.0))),
                                Span::NONE,
                            ),
                            num(1000.0),
                        ),
                        Expr::new(
                            ExprKind::Call(
                                Func::Abs,
                                vec![Expr::binary(BinOp::Sub, attr("customer.tenure"), num(40.0))],
                            ),
                            Span::NONE,
                        ),
                    ),
                    num(10.0),
                ),
                Expr::new(
                    ExprKind::Not(Box::new(Expr::binary(BinOp::Eq, attr("customer.tier"), lit_str("basic")))),
                    Span::NONE,
                ),
            ),
            Expr::binary(BinOp::Ge, attr("offer.priority"), num(50.0)),
        ),
        // (customer.tier ?? "none") == "premium" and tier in [...]
        Expr::binary(
            BinOp::And,
            Expr::binary(
                BinOp::Eq,
                Expr::new(ExprKind::Default(Box::new(attr("customer.tier")), Box::new(lit_str("none"))), Span::NONE),
                lit_str("premium"),
            ),
            tier_in,
        ),
    ];
    let mut compiler = Compiler::new();
    let preds: Vec<_> = exprs
        .iter()
        .map(|e| compiler.predicate(&Checker::new(&mut layout, Literals::Lenient).check_predicate(e).unwrap()))
        .collect();
    let consts = compiler.into_consts();
    let mut slots = vec![Value::Null; layout.len()];
    let get = |name: &str| layout.get(&Path::parse(name).unwrap()).unwrap().0 as usize;
    slots[get("customer.tenure")] = Value::Num(36.0);
    slots[get("customer.tier")] = Value::Str("premium".into());
    slots[get("customer.hasCard")] = Value::Bool(false);
    slots[get("attributes.segment")] = Value::Str("vip".into());
    let offer = arbiter::demo::sample_offer();
    let env = Env { slots: &slots, offer: &offer, consts: &consts };

    COUNTING.with(|c| c.set(true));
    let mut passes = 0;
    for _ in 0..1000 {
        for p in &preds {
            passes += usize::from(p(&env) == Some(true));
        }
    }
    COUNTING.with(|c| c.set(false));

    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed), 0, "rule evaluation allocated");
    assert_eq!(passes, 7000, "every predicate should be true for this customer");
}
