//! Arbitrary text never panics the parser, checker or compiler: it gets diagnostics.
//! (The cargo-fuzz target in fuzz/ explores the same property with coverage guidance.)

use arbiter::catalog::Catalog;
use arbiter::demo;
use proptest::prelude::*;

/// Fragments of the language, so random text often gets deep into the grammar.
const PIECES: &[&str] = &[
    "rule ",
    "\"r\" ",
    "{ ",
    "} ",
    "for ",
    "offer ",
    "\"High-yield savings\" ",
    "category ",
    "channel ",
    "stage ",
    "match ",
    "multiplier ",
    "priority ",
    "let ",
    "x ",
    "= ",
    "score ",
    "flow ",
    "\"cross-sell\" ",
    "weights ",
    "propensity ",
    "0.5 ",
    ", ",
    "formula ",
    "customer.tenureMonths ",
    "customer.tier ",
    "attributes.a ",
    "offer.priority ",
    ">= ",
    "== ",
    "!= ",
    "< ",
    "and ",
    "or ",
    "not ",
    "in ",
    "[ ",
    "] ",
    "( ",
    ") ",
    "?? ",
    "+ ",
    "- ",
    "* ",
    "/ ",
    "exists(",
    "contains(",
    "min(",
    "clamp(",
    "1 ",
    "-3 ",
    "\"a\" ",
    "true ",
    "null ",
    "\n",
    "// c\n",
    "# c\n",
    "é",
    "\"",
    "\\",
    "1e999 ",
    "50_000 ",
    "x.y.z ",
    "tau ",
    "uplift ",
];

fn tutorial_catalog() -> Catalog {
    demo::tutorial().unwrap().catalog
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn fragments_never_panic(picks in proptest::collection::vec(0..PIECES.len(), 0..60)) {
        let source: String = picks.iter().map(|&i| PIECES[i]).collect();
        let mut catalog = tutorial_catalog();
        // put_plugin parses, checks and (when clean) keeps the plugin; publish compiles it.
        if catalog.put_plugin("fuzz.rules", &source).is_ok() {
            let flow = catalog.flows[0].meta.id.clone();
            let _ = catalog.publish(&flow, None);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(source in ".{0,300}") {
        let mut catalog = tutorial_catalog();
        let _ = catalog.put_plugin("any.rules", &source);
    }
}

/// Review finding: ~20 bracket levels each holding 505 `not`s overflowed the stack in
/// pest's Pratt parser. Now it is checked on a thread with room for the parser's limits.
#[test]
fn prefix_operator_chains_in_nested_brackets_do_not_overflow() {
    let mut body = String::from("customer.hasSavings");
    for _ in 0..60 {
        body = format!("({}{body})", "not ".repeat(505));
    }
    let source = format!("rule \"deep\" {{ {body} }}");
    let mut catalog = tutorial_catalog();
    let result = catalog.put_plugin("deep.rules", &source);
    // Accepted or refused with a diagnostic — either way, no crash.
    if let Err(diags) = result {
        assert!(!diags.is_empty());
    }
}

/// Review finding: a small file whose `let`s reference each other many times expanded
/// to hundreds of MB before the node limit was checked. Now copying stops at the limit.
#[test]
fn let_expansion_stops_at_the_node_limit() {
    let mut source = String::from("let a0 = customer.tenureMonths > 1\n");
    for i in 1..14 {
        source.push_str(&format!("let a{i} = a{p} and a{p}\n", p = i - 1));
    }
    source.push_str(&format!("rule \"big\" {{ {} }}\n", vec!["a13"; 60].join(" and ")));
    let started = std::time::Instant::now();
    let checked = arbiter::dsl::check_source("big.rules", &source, &tutorial_catalog().dsl_context());
    assert!(checked.diagnostics.iter().any(|d| d.code == "E003"), "{:?}", checked.diagnostics);
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
}

/// A 20 KB file of 1,000 rules over a ten-step doubling `let` chain: each rule stays
/// under the per-rule limit (~2,000 nodes), but together they expanded to ~8 M IR
/// nodes (over a GB, seconds of compiling on the thread every tenant shares). The file
/// has a budget too, and the diagnostic names the rule that crosses it.
#[test]
fn a_file_of_many_rules_over_a_shared_let_is_bounded() {
    let mut source = String::from("let a0 = customer.tenureMonths > 1\n");
    for i in 1..=10 {
        source.push_str(&format!("let a{i} = a{p} and a{p}\n", p = i - 1));
    }
    for r in 0..1000 {
        source.push_str(&format!("rule \"r{r}\" {{ a10 }}\n"));
    }
    assert!(source.len() < 25_000, "a small file: {} bytes", source.len());
    let started = std::time::Instant::now();
    let checked = arbiter::dsl::check_source("many.rules", &source, &tutorial_catalog().dsl_context());
    let over: Vec<_> = checked.diagnostics.iter().filter(|d| d.code == "E003").collect();
    assert!(!over.is_empty(), "the file budget is enforced");
    assert!(over[0].message.contains("the file's rules expand to more than"), "{}", over[0].message);
    assert!(checked.rules.len() < 200, "rules past the budget are not compiled: {}", checked.rules.len());
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
}
