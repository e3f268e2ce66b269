//! Table-driven cases for the rule language: one named row per case, each
//! `name :: source :: expected codes` (`ok` for none). Checked against the tutorial's
//! tenant (tests/data/context.json). A malformed row fails loudly, by name. `\n` in a
//! source is a line break.

use arbiter::dsl::check_source;

const CASES: &str = r#"
simple global rule          :: rule "r" { customer.tenureMonths >= 6 }                                     :: ok
offer by name               :: rule "r" for offer "Rewards credit card" { customer.hasCreditCard == false } :: ok
category and channel        :: rule "r" for category "cross-sell" { true and customer.tier == "x" }      :: ok
channel target              :: rule "r" for channel "email" { customer.tenureMonths > 1 }                :: ok
match with multiplier       :: rule "r" stage match multiplier 0.3 { customer.tenureMonths > 1 }         :: ok
fit and priority            :: rule "r" stage fit priority -5 { customer.tenureMonths > 1 }              :: ok
let and use                 :: let a = customer.tenureMonths > 1 rule "r" { a and not a }                :: ok
null default                :: rule "r" { (customer.tier ?? "basic") != "basic" }                        :: ok
functions                   :: rule "r" { len(customer.tier) > 2 and max(1, customer.tenureMonths) < exp(5) } :: ok
ends_with and contains      :: rule "r" { ends_with(customer.tier, "um") or contains(customer.tier, "re") } :: ok
request attribute           :: rule "r" { attributes.cart > 100 and attributes.segment == "vip" }         :: ok
offer fields                :: rule "r" { offer.priority >= 50 and offer.category == "cross-sell" }       :: ok
request and channel         :: rule "r" { request.channel == "email" or channel.type == "in_app" }        :: ok
negative list items         :: rule "r" { customer.tenureMonths not in [-1, 0] }                         :: ok
score weights               :: score for flow "cross-sell" { weights propensity 1 }                      :: ok
score formula               :: score for flow "cross-sell" { formula propensity * uplift + tau }         :: ok
syntax error                :: rule "r" { customer.tenureMonths >= }                                      :: E001
missing brace               :: rule "r" { customer.tenureMonths >= 1                                      :: E001
two syntax errors           :: rule "a" { >= }\nrule "b" { == }                                          :: E001 E001
unknown attribute           :: rule "r" { customer.tenure >= 1 }                                          :: E201
unknown namespace           :: rule "r" { cutsomer.tier == "a" }                                          :: E201
unknown offer field         :: rule "r" { offer.price > 1 }                                               :: E201
type mismatch               :: rule "r" { customer.tier >= 5 }                                            :: E202
not on a number             :: rule "r" { not customer.tenureMonths }                                     :: E202
ordering booleans           :: rule "r" { customer.hasSavings > false }                                   :: E203
non-literal list item       :: rule "r" { customer.tier in [customer.tier] }                              :: E204
wrong argument count        :: rule "r" { contains(customer.tier) }                                       :: E205
unknown function            :: rule "r" { lenght(customer.tier) > 1 }                                     :: E114
list outside in             :: rule "r" { customer.tier == ["a"] }                                        :: E115
unknown offer               :: rule "r" for offer "Rewards card" { customer.tenureMonths > 1 }            :: E102
unknown offer id            :: rule "r" for offer id "nope" { customer.tenureMonths > 1 }                 :: E102
unknown category            :: rule "r" for category "upsell" { customer.tenureMonths > 1 }               :: E103
unknown channel             :: rule "r" for channel "fax" { customer.tenureMonths > 1 }                   :: E104
unknown flow                :: score for flow "cross-sel" { weights propensity 1 }                        :: E105
unknown score channel       :: score for flow "cross-sell" on channel "fax" { weights propensity 1 }      :: E104
duplicate rule              :: rule "r" { customer.tenureMonths > 1 } rule "r" { customer.tenureMonths > 2 } :: E101
duplicate let               :: let a = true let a = false                                                 :: E106
unknown name                :: rule "r" { premium }                                                       :: E107
factor outside formula      :: rule "r" { propensity > 0.5 }                                              :: E107
multiplier out of range     :: rule "r" stage match multiplier 1.5 { customer.tenureMonths > 1 }          :: E108
multiplier on eligibility   :: rule "r" multiplier 0.5 { customer.tenureMonths > 1 }                      :: E001
multiplier on fit           :: rule "r" stage fit multiplier 0.5 { customer.tenureMonths > 1 }            :: E108
weights sum                 :: score for flow "cross-sell" { weights propensity 0.5, impact 0.4 }          :: E109
weight range                :: score for flow "cross-sell" { weights propensity 1, uplift 3 }             :: E110
weight twice                :: score for flow "cross-sell" { weights propensity 0.5, propensity 0.5 }     :: E111
two score blocks            :: score for flow "cross-sell" { weights propensity 1 } score for flow "cross-sell" { weights impact 1 } :: E117
never passes                :: rule "r" { 1 > 2 }                                                          :: E112
always passes               :: rule "r" { "a" == "a" }                                                     :: W113
formula type                :: score for flow "cross-sell" { formula customer.tier }                      :: E202
all errors at once          :: rule "a" for offer "x" { customer.q > 1 } rule "b" { 1 > 2 }                :: E102 E112 E201
"#;

#[test]
fn rule_language_cases() {
    let ctx = arbiter::catalog::fixture_context(include_bytes!("data/context.json")).unwrap();
    let mut failures = Vec::new();
    let mut count = 0;
    for line in CASES.lines().filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split(" :: ").map(str::trim).collect();
        let [name, source, expected] = cols[..] else {
            failures.push(format!("malformed row (need `name :: source :: codes`): {line}"));
            continue;
        };
        count += 1;
        let source = source.replace("\\n", "\n");
        let checked = check_source("case.rules", &source, &ctx);
        let mut got: Vec<&str> = checked.diagnostics.iter().map(|d| d.code).collect();
        got.sort_unstable();
        let mut want: Vec<&str> = if expected == "ok" { Vec::new() } else { expected.split_whitespace().collect() };
        want.sort_unstable();
        if got != want {
            let detail: Vec<String> = checked.diagnostics.iter().map(|d| format!("{} {}", d.code, d.message)).collect();
            failures.push(format!("row `{name}`: expected {want:?}, got {got:?} {detail:?}"));
        }
    }
    assert!(failures.is_empty(), "{} of {count} rows failed:\n{}", failures.len(), failures.join("\n"));
    assert!(count >= 45, "table lost rows: {count}");
}
