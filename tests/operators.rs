//! Table-driven cases for JSON `attribute_condition` operators: one named row per case.
//! Columns: name | attribute | actual value (JSON, or `missing`) | operator | rule value
//! (JSON) | expected: `pass`, `remove`, or `error: <text in the message>`.
//!
//! A rule removes an offer only when its condition is definitely false; a missing
//! attribute passes unless the operator is exists/not_exists.

use arbiter::catalog::condition_error;
use arbiter::rules::json::{lower, Operator};
use arbiter::rules::{Checker, Compiler, Env, Layout, Literals, Namespace, Path, Type, Value};

const CASES: &str = r#"
eq number equal               | customer.n | 6          | eq          | 6                   | pass
eq number differs             | customer.n | 7          | eq          | 6                   | remove
eq symbol alias               | customer.n | 6          | ==          | 6                   | pass
eq single = alias             | customer.n | 6          | =           | 6                   | pass
neq number                    | customer.n | 7          | neq         | 6                   | pass
neq symbol alias              | customer.n | 6          | !=          | 6                   | remove
gt                            | customer.n | 7          | gt          | 6                   | pass
gt equal fails                | customer.n | 6          | >           | 6                   | remove
gte equal                     | customer.n | 6          | gte         | 6                   | pass
gte below                     | customer.n | 5          | >=          | 6                   | remove
lt                            | customer.n | 5          | lt          | 6                   | pass
lt equal fails                | customer.n | 6          | <           | 6                   | remove
lte equal                     | customer.n | 6          | lte         | 6                   | pass
lte above                     | customer.n | 7          | <=          | 6                   | remove
decimal vs integer literal    | customer.x | 49999.99   | gte         | 50000               | remove
decimal boundary              | customer.x | 50000      | gte         | 50000               | pass
numeric string literal        | customer.n | 6          | gte         | "6"                 | pass
number vs word                | customer.n | 6          | eq          | "six"               | error: cannot compare number with string
in strings hit                | customer.s | "premium"  | in          | ["premium","private"] | pass
in strings miss               | customer.s | "basic"    | in          | ["premium","private"] | remove
in is case sensitive          | customer.s | "Premium"  | in          | ["premium"]         | remove
not_in miss passes            | customer.s | "basic"    | not_in      | ["premium"]         | pass
not_in hit removes            | customer.s | "premium"  | not_in      | ["premium"]         | remove
in numbers                    | customer.n | 3          | in          | [1,2,3]             | pass
in needs array                | customer.s | "a"        | in          | "a"                 | error: need an array value
in mixed list                 | customer.s | "a"        | in          | ["a", 1]            | error: list item is number
contains hit                  | customer.s | "premium"  | contains    | "rem"               | pass
contains miss                 | customer.s | "basic"    | contains    | "rem"               | remove
contains on number            | customer.n | 5          | contains    | "5"                 | error: expected string, found number
starts_with hit               | customer.s | "premium"  | starts_with | "pre"               | pass
starts_with miss              | customer.s | "premium"  | starts_with | "rem"               | remove
exists present                | customer.s | "x"        | exists      | null                | pass
exists missing removes        | customer.s | missing    | exists      | null                | remove
not_exists missing passes     | customer.s | missing    | not_exists  | null                | pass
not_exists present removes    | customer.s | "x"        | not_exists  | null                | remove
is_null alias                 | customer.s | missing    | is_null     | null                | pass
is_not_null alias             | customer.s | missing    | is_not_null | null                | remove
bool eq true                  | customer.b | true       | eq          | true                | pass
bool eq false removes         | customer.b | true       | eq          | false               | remove
bool string literal           | customer.b | false      | eq          | "false"             | pass
bool ordering is an error     | customer.b | true       | gt          | false               | error: `>` is not defined for boolean
bool vs number                | customer.b | true       | eq          | 1                   | error: cannot compare boolean with number
string ordering               | customer.d | "2024-03-01" | gte       | "2024-01-31"        | pass
string ordering below         | customer.d | "2023-12-31" | gte       | "2024-01-31"        | remove
missing number passes         | customer.n | missing    | gte         | 6                   | pass
missing bool passes           | customer.b | missing    | eq          | false               | pass
missing string in passes      | customer.s | missing    | in          | ["a"]               | pass
missing value for eq          | customer.n | 6          | eq          | null                | error: needs a value
unknown attribute             | customer.q | 6          | eq          | 6                   | error: unknown attribute `customer.q`
unknown namespace             | cust.n     | 6          | eq          | 6                   | error: is not an attribute
regex refused                 | customer.s | "a"        | regex       | "a.*"               | error: `regex` is not supported
request attribute number      | attributes.cart | 120   | gt          | 100                 | pass
request attribute num string  | attributes.cart | "120" | gt          | 100                 | pass
request attribute missing     | attributes.cart | missing | gt        | 100                 | pass
offer field                   | offer.priority | 0      | gte         | 50                  | pass
"#;

struct Case<'a> {
    name: &'a str,
    attribute: &'a str,
    actual: Option<serde_json::Value>,
    operator: Operator,
    value: serde_json::Value,
    expected: &'a str,
}

fn parse_row(line: &str) -> Result<Case<'_>, String> {
    let cols: Vec<&str> = line.split('|').map(str::trim).collect();
    let [name, attribute, actual, operator, value, expected] = cols[..] else {
        return Err(format!("malformed row (need 6 columns, got {}): {line}", cols.len()));
    };
    let json = |s: &str| {
        serde_json::from_str::<serde_json::Value>(s).map_err(|e| format!("row `{name}`: bad JSON `{s}`: {e}"))
    };
    let operator = serde_json::from_value(serde_json::Value::String(operator.into()))
        .map_err(|e| format!("row `{name}`: bad operator `{operator}`: {e}"))?;
    let actual = if actual == "missing" { None } else { Some(json(actual)?) };
    if !(expected == "pass" || expected == "remove" || expected.starts_with("error: ")) {
        return Err(format!("row `{name}`: expected must be pass, remove or `error: …`, got `{expected}`"));
    }
    Ok(Case { name, attribute, actual, operator, value: json(value)?, expected })
}

fn layout() -> Layout {
    let mut layout = Layout::new();
    for (name, ty) in [("n", Type::Num), ("x", Type::Num), ("s", Type::Str), ("b", Type::Bool), ("d", Type::Str)] {
        layout.declare(Path { ns: Namespace::Customer, name: name.into() }, ty);
    }
    layout
}

/// Runs one case; returns `pass`, `remove` or `error: <message>`.
fn run(case: &Case) -> String {
    let value = if case.value.is_null() { None } else { Some(&case.value) };
    let expr = match lower(case.attribute, case.operator, value) {
        Ok(e) => e,
        Err(e) => return format!("error: config.{}: {}", e.field, e.message),
    };
    let mut layout = layout();
    let typed = match Checker::new(&mut layout, Literals::Lenient).check_predicate(&expr) {
        Ok(t) => t,
        Err(errs) => {
            let e = condition_error("config", &errs[0]);
            return format!("error: {}: {}", e.path, e.message);
        }
    };
    let mut compiler = Compiler::new();
    let pred = compiler.predicate(&typed);
    let consts = compiler.into_consts();
    let mut slots = vec![Value::Null; layout.len()];
    if let (Some(path), Some(actual)) = (Path::parse(case.attribute), &case.actual) {
        if let Some((slot, _)) = layout.get(&path) {
            slots[slot as usize] = Value::from_json_untyped(actual);
        }
    }
    let offer = arbiter::demo::sample_offer();
    let env = Env { slots: &slots, offer: &offer, consts: &consts };
    if pred(&env) == Some(false) { "remove" } else { "pass" }.to_string()
}

#[test]
fn operator_table() {
    let mut failures = Vec::new();
    let mut count = 0;
    for line in CASES.lines().filter(|l| !l.trim().is_empty()) {
        let case = match parse_row(line) {
            Ok(c) => c,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        count += 1;
        let got = run(&case);
        let ok = match case.expected.strip_prefix("error: ") {
            Some(text) => got.starts_with("error: ") && got.contains(text),
            None => got == case.expected,
        };
        if !ok {
            failures.push(format!("row `{}`: expected `{}`, got `{got}`", case.name, case.expected));
        }
    }
    assert!(failures.is_empty(), "{} of {count} rows failed:\n{}", failures.len(), failures.join("\n"));
    assert!(count >= 50, "table lost rows: {count}");
}
