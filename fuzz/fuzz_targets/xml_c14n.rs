//! The XML reader and the canonicalizer on arbitrary input: never panics; every document it
//! accepts canonicalizes under all four algorithms; canonical output parses again and
//! canonicalizes to the same bytes (idempotence); `Document::to_xml` re-parses to the same tree.
#![no_main]

use gw_crypto::xml::c14n::{canonicalize, Algorithm};
use gw_crypto::xml::parse_safe;
use libfuzzer_sys::fuzz_target;

const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::Inclusive,
    Algorithm::InclusiveWithComments,
    Algorithm::Exclusive,
    Algorithm::ExclusiveWithComments,
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(doc) = parse_safe(text) else {
        return;
    };
    for alg in ALGORITHMS {
        let once = canonicalize(&doc, alg).expect("a parsed document canonicalizes");
        let once_text = std::str::from_utf8(&once).expect("canonical form is UTF-8");
        let again = parse_safe(once_text)
            .unwrap_or_else(|e| panic!("{alg:?} output does not parse again: {e}\n{once_text}"));
        let twice = canonicalize(&again, alg).expect("canonicalizes");
        assert_eq!(once, twice, "{alg:?} is not idempotent");
    }
    let reparsed = parse_safe(&doc.to_xml()).expect("to_xml output parses");
    assert_eq!(
        canonicalize(&reparsed, Algorithm::InclusiveWithComments).unwrap(),
        canonicalize(&doc, Algorithm::InclusiveWithComments).unwrap()
    );
});
