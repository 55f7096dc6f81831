//! The inbound body parser (`transport::inbound::parse_event`) on arbitrary bytes, for a source
//! without an adapter (the generic event shape) and one with the example one-stop adapter:
//! never panics; a refusal is a 400 or 422 with a code; an accepted event has a non-empty kind
//! and a key of 1 to 200 printable characters.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use gateway::mapping::Adapter;
use gateway::edge::parse_event;
use libfuzzer_sys::fuzz_target;

fn adapter() -> &'static Adapter {
    static A: OnceLock<Adapter> = OnceLock::new();
    A.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../adapters/onestop-example");
        Adapter::load(&dir).unwrap_or_else(|p| panic!("adapter does not load: {p:?}"))
    })
}

fuzz_target!(|data: &[u8]| {
    for a in [None, Some(adapter())] {
        match parse_event(a, data) {
            Ok(ev) => {
                assert!(!ev.kind.trim().is_empty());
                assert!(!ev.key.trim().is_empty() && ev.key.len() <= 200);
                assert!(!ev.key.chars().any(char::is_control));
            }
            Err(r) => {
                assert!(matches!(r.status.as_u16(), 400 | 422), "{r:?}");
                assert!(!r.code.is_empty() && !r.message.is_empty());
            }
        }
    }
});
