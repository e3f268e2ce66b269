//! Syntax errors a rule author can act on: one named row per common mistake, each
//! `name :: source :: code :: message part :: help part :: line:column`, where the
//! diagnostic must be the only one for the source and start at line:column (1-based,
//! in characters). A row with code `ok` must check clean (its other columns are `-`).
//! Checked against the tutorial's tenant (tests/data/context.json). `\n` in a source is a
//! line break. A malformed row fails loudly, by name.

use arbiter::dsl::error::locate;
use arbiter::dsl::{check_source, Context};

const CASES: &str = r#"
equals for comparison     :: rule "r" { customer.tier = "gold" }                          :: E001 :: `=` is not a comparison; did you mean `==`? :: compare with `==` :: 1:26
equals on a later line    :: rule "r" {\n    customer.tier = "gold"\n}                     :: E001 :: did you mean `==`?                 :: compare with `==`        :: 2:19
equals in a let body      :: let gold = customer.tier = "gold"                            :: E001 :: did you mean `==`?                 :: `let <name> = ...`       :: 1:26
let equals is fine        :: let gold = customer.tier == "gold" rule "r" { gold }         :: ok   :: -                                  :: -                        :: -
comparisons are fine      :: rule "r" { customer.tenureMonths <= 1 or customer.tenureMonths >= 9 or customer.tier != "a" } :: ok :: - :: - :: -
arrow for at least        :: rule "r" { customer.tenureMonths => 6 }                      :: E001 :: did you mean `>=`?                 :: comparisons are          :: 1:34
equals after priority     :: rule "r" priority = 5 { customer.tenureMonths > 1 }          :: E001 :: `priority` takes its value without `=` :: write `priority <number>` :: 1:19
equals in weights         :: score for flow "cross-sell" { weights propensity = 1 }       :: E001 :: a weight takes its value without `=` :: write `propensity <number>` :: 1:50
double ampersand          :: rule "r" { customer.hasSavings && customer.hasChecking }    :: E001 :: `&&` is not an operator here; did you mean `and`? :: `and`, `or` and `not` :: 1:32
double bar                :: rule "r" { customer.hasSavings || customer.hasChecking }    :: E001 :: `||` is not an operator here; did you mean `or`? :: `and`, `or` and `not` :: 1:32
bang for not              :: rule "r" { !customer.hasSavings }                            :: E001 :: `!` is not an operator here; did you mean `not`? :: `and`, `or` and `not` :: 1:12
bang equals is fine       :: rule "r" { customer.tier != "basic" }                        :: ok   :: -                                  :: -                        :: -
upper-case AND            :: rule "r" { customer.hasSavings AND customer.hasChecking }   :: E001 :: `AND` is not a keyword; did you mean `and`? :: lower case :: 1:32
upper-case OR             :: rule "r" { customer.hasSavings OR customer.hasChecking }    :: E001 :: `OR` is not a keyword; did you mean `or`? :: lower case   :: 1:32
upper-case NOT            :: rule "r" { NOT customer.hasSavings }                         :: E001 :: `NOT` is not a keyword; did you mean `not`? :: lower case :: 1:12
capitalised True          :: rule "r" { customer.hasSavings == True }                     :: E001 :: `True` is not a keyword; did you mean `true`? :: lower case :: 1:35
upper-case FALSE          :: rule "r" { customer.hasSavings == FALSE }                    :: E001 :: `FALSE` is not a keyword; did you mean `false`? :: lower case :: 1:35
upper-case NULL           :: rule "r" { (customer.tier ?? NULL) != "a" }                  :: E001 :: `NULL` is not a keyword; did you mean `null`? :: lower case :: 1:30
upper-case IN             :: rule "r" { customer.tier IN ["a"] }                          :: E001 :: `IN` is not a keyword; did you mean `in`? :: lower case   :: 1:26
field named like keyword  :: rule "r" { customer.True == 1 }                              :: E201 :: customer.True                      :: -                        :: 1:12
single quotes             :: rule "r" { customer.tier == 'gold' }                         :: E001 :: strings use double quotes          :: write "gold"             :: 1:29
lone single quote         :: rule "r" { customer.tier == 'gold }                          :: E001 :: strings use double quotes          :: between `"` and `"`      :: 1:29
unclosed brace            :: rule "a" {\n    customer.tenureMonths > 1\nrule "b" { customer.tenureMonths > 2 } :: E001 :: this `{` is never closed :: add `}` :: 1:10
unclosed brace at the end :: rule "a" { customer.tenureMonths > 1                         :: E001 :: this `{` is never closed           :: add `}`                  :: 1:10
unclosed score brace      :: score for flow "cross-sell" {\n weights propensity 1\nrule "b" { customer.tenureMonths > 2 } :: E001 :: this `{` is never closed :: add `}` :: 1:29
unclosed parenthesis      :: rule "r" { (customer.tenureMonths > 1 }                      :: E001 :: this `(` is never closed           :: add `)`                  :: 1:12
unclosed list             :: rule "r" { customer.tier in ["a", "b" }                      :: E001 :: this `[` is never closed           :: add `]`                  :: 1:29
unclosed call             :: rule "r" {\n  len(customer.tier > 1\n}\nrule "b" { customer.tenureMonths > 2 } :: E001 :: this `(` is never closed :: add `)` :: 2:6
unclosed string           :: rule "r" { customer.tier == "gold }\nrule "b" { customer.tenureMonths > 2 } :: E001 :: this string is never closed :: on the same line :: 1:29
stray parenthesis         :: rule "r" { customer.tenureMonths > 1) }                      :: E001 :: this `)` has no matching `(`       :: remove it                :: 1:37
missing opening brace     :: rule "x" for offer "Rewards credit card" customer.tenureMonths > 1 } :: E001 :: expected `{` before the body :: rule "name" { <condition> } :: 1:42
unknown function          :: rule "r" { contians(customer.tier, "a") }                    :: E114 :: unknown function `contians`        :: did you mean `contains`? :: 1:12
misspelt stage            :: rule "r" stgae match { customer.tenureMonths > 1 }           :: E001 :: found `stgae`                      :: did you mean `stage`?    :: 1:10
misspelt priority         :: rule "r" priorty 5 { customer.tenureMonths > 1 }             :: E001 :: found `priorty`                    :: did you mean `priority`? :: 1:10
misspelt weights          :: score for flow "cross-sell" { weigths propensity 1 }         :: E001 :: found `weigths`                    :: did you mean `weights`?  :: 1:31
misspelt offer            :: rule "r" for ofer "Rewards credit card" { customer.tenureMonths > 1 } :: E001 :: found `ofer`      :: did you mean `offer`?    :: 1:14
capitalised Rule          :: Rule "r" { customer.tenureMonths > 1 }                       :: E001 :: found `Rule`                       :: did you mean `rule`?     :: 1:1
"#;

struct Case<'a> {
    name: &'a str,
    source: String,
    code: &'a str,
    message: &'a str,
    help: &'a str,
    at: &'a str,
}

fn cases() -> Vec<Result<Case<'static>, String>> {
    let rows = CASES.lines().filter(|l| !l.trim().is_empty());
    rows.map(|line| {
        let cols: Vec<&str> = line.split(" :: ").map(str::trim).collect();
        let [name, source, code, message, help, at] = cols[..] else {
            return Err(format!("malformed row (need 6 columns separated by ` :: `): {line}"));
        };
        Ok(Case { name, source: source.replace("\\n", "\n"), code, message, help, at })
    })
    .collect()
}

/// What is wrong with one row's result, if anything.
fn failure(case: &Case, ctx: &Context) -> Option<String> {
    let checked = check_source("case.rules", &case.source, ctx);
    let located: Vec<_> = checked.diagnostics.iter().map(|d| locate("case.rules", &case.source, d)).collect();
    let got: Vec<String> = located
        .iter()
        .map(|l| format!("{} {}:{} {} (help: {:?})", l.code, l.line, l.column, l.message, l.help))
        .collect();
    let ok = match (case.code, &located[..]) {
        ("ok", []) => true,
        ("ok", _) | (_, []) | (_, [_, _, ..]) => false,
        (code, [l]) => {
            let help_ok = case.help == "-" || l.help.as_deref().is_some_and(|h| h.contains(case.help));
            l.code == code
                && l.message.contains(case.message)
                && help_ok
                && format!("{}:{}", l.line, l.column) == case.at
        }
    };
    let want = format!("{} at {}: {:?} (help {:?})", case.code, case.at, case.message, case.help);
    (!ok).then(|| format!("row `{}`: expected {want}, got {got:?}", case.name))
}

#[test]
fn common_mistakes_get_targeted_messages() {
    let ctx = arbiter::catalog::fixture_context(include_bytes!("data/context.json")).unwrap();
    let cases = cases();
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| match c {
            Ok(case) => failure(case, &ctx),
            Err(malformed) => Some(malformed.clone()),
        })
        .collect();
    assert!(failures.is_empty(), "{} of {} rows failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    assert!(cases.len() >= 35, "table lost rows: {}", cases.len());
}

/// Every mistake in a file is reported in one run, each at its own place, and the rules
/// after an unclosed brace are still parsed and checked.
#[test]
fn all_mistakes_in_a_file_at_once() {
    let source = "rule \"a\" { customer.tier = 'gold' }\n\
                  rule \"b\" {\n    customer.hasSavings && customer.hasChecking\n\
                  rule \"c\" { customer.tenure > 1 }\n\
                  rule \"d\" stgae match { True }\n";
    let ctx = arbiter::catalog::fixture_context(include_bytes!("data/context.json")).unwrap();
    let checked = check_source("all.rules", source, &ctx);
    let got: Vec<(&str, usize, usize)> = checked
        .diagnostics
        .iter()
        .map(|d| locate("all.rules", source, d))
        .map(|l| (l.code, l.line, l.column))
        .collect();
    let want = [
        ("E001", 1, 26), // `=`
        ("E001", 1, 28), // 'gold'
        ("E001", 2, 10), // `{` never closed
        ("E001", 3, 25), // `&&`
        ("E001", 5, 10), // stgae
        ("E001", 5, 24), // True
        ("E201", 4, 12), // the next rule is still checked
    ];
    let mut got_sorted = got.clone();
    got_sorted.sort_unstable();
    let mut want_sorted = want.to_vec();
    want_sorted.sort_unstable();
    assert_eq!(got_sorted, want_sorted, "{:?}", checked.diagnostics);
}
