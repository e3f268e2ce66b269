//! Parse + check + compile never panics, whatever the rule file says.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    // The tutorial tenant: rules are checked against its schema, offers and flows.
    let Ok(tutorial) = arbiter::demo::tutorial() else { return };
    let mut catalog = tutorial.catalog;
    if catalog.put_plugin("fuzz.rules", source).is_ok() {
        let flow = catalog.flows[0].meta.id.clone();
        let _ = catalog.publish(&flow, None);
    }
});
