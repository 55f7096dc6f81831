//! The mapping engine (adapters/onestop-example) on arbitrary bytes: never panics; an error
//! names its origin and a JSON path (or rule key); a message it accepts maps back to the
//! vendor's JSON (schema-checked) and that maps to the same canonical dossier again.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use gateway::mapping::Adapter;
use libfuzzer_sys::fuzz_target;

fn adapter() -> &'static Adapter {
    static A: OnceLock<Adapter> = OnceLock::new();
    A.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../adapters/onestop-example");
        Adapter::load(&dir).unwrap_or_else(|p| panic!("adapter does not load: {p:?}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let a = adapter();
    match a.parse_inbound(data, "fuzz") {
        Ok(inb) => {
            let back = a
                .from_canonical(&inb.dossier)
                .unwrap_or_else(|e| panic!("accepted message does not map back: {e}"));
            let again = a
                .to_canonical(&back, "fuzz-back")
                .unwrap_or_else(|e| panic!("reverse mapping is refused inbound: {e}\n{back}"));
            assert_eq!(
                again.dossier, inb.dossier,
                "canonical → vendor → canonical differs"
            );
        }
        Err(e) => {
            assert_eq!(e.origin, "fuzz");
            assert!(!e.path.is_empty() && !e.what.is_empty(), "vague error: {e}");
        }
    }
});
