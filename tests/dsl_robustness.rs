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
