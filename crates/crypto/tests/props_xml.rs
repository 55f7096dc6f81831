//! Property tests of XML canonicalization and XML-DSig over generated documents: elements,
//! prefixed and default namespaces (declared at the root and re-declared below), attributes
//! and text with the characters XML escapes, comments.
//!
//! - C14N is idempotent under all four algorithms: parse(c14n(d)) canonicalizes to c14n(d).
//! - sign → verify succeeds for every document, algorithm, key type and reference; the
//!   signature survives re-serialisation of the signed document.
//! - any single change of signed content (a text, an attribute value, an element name, an
//!   added attribute, a removed child) fails with `DigestMismatch`; a changed `DigestValue`
//!   fails with `SignatureMismatch`; a changed comment does not matter (comments are not
//!   signed by a same-document reference).
//! - exclusive vs inclusive: a namespace declaration added on an ancestor of an `#id`-signed
//!   element, used by nothing, breaks an inclusive signature and leaves an exclusive one valid.
//!
//! Cases per property: 64, or `PROPTEST_CASES` when set.

use std::sync::OnceLock;

use gw_crypto::keys::{SigningKey, VerifyingKey};
use gw_crypto::xml::c14n::{canonicalize, Algorithm};
use gw_crypto::xml::{parse_safe, Attribute, Document, Element, Node};
use gw_crypto::xmldsig::{
    sign_enveloped, verify_enveloped, DsigError, Reference, SignOptions, SignerTrust,
    VerifyOptions, DSIG_NS,
};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use proptest::prelude::*;
use proptest::sample::Index;

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        // A failure prints its shrunk input; nothing is written into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::Inclusive,
    Algorithm::InclusiveWithComments,
    Algorithm::Exclusive,
    Algorithm::ExclusiveWithComments,
];

/// Keys are generated once per test binary: an EC P-256 and an RSA-2048 key, pinned.
fn keys() -> &'static [(SigningKey, VerifyingKey); 2] {
    static KEYS: OnceLock<[(SigningKey, VerifyingKey); 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let ec = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let rsa = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let pair = |id: &str, k| {
            let sk = SigningKey::new(id, k, None, Vec::new()).unwrap();
            let vk = sk.verifying_key().unwrap();
            (sk, vk)
        };
        [pair("ec", ec), pair("rsa", rsa)]
    })
}

/// A generated element: prefix index (0 = none), local name, whether it re-declares its
/// prefix (to another URI), attributes, children.
#[derive(Debug, Clone)]
struct GenEl {
    prefix: usize,
    local: String,
    redeclare: Option<String>,
    attrs: Vec<(usize, String, String)>,
    children: Vec<GenNode>,
}

#[derive(Debug, Clone)]
enum GenNode {
    El(GenEl),
    Text(String),
    Comment(String),
}

const PREFIXES: [&str; 3] = ["", "p", "q"];
const LOCALS: [&str; 6] = ["HoSo", "MaHoSo", "a", "b", "NoiDung", "TenThuTuc"];
const ATTR_NAMES: [&str; 4] = ["loai", "x", "ma", "ngay"];

/// Text with everything XML escapes or normalises: `& < > " '`, tab, CR, LF, Vietnamese.
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 &<>\"'\t\r\nĐđươáạ]{1,12}"
}

fn gen_el() -> impl Strategy<Value = GenEl> {
    let attrs = prop::collection::btree_map((0..3usize, 0..ATTR_NAMES.len()), text(), 0..4)
        .prop_map(|m| {
            m.into_iter()
                .map(|((p, n), v)| (p, ATTR_NAMES[n].to_owned(), v))
                .collect::<Vec<_>>()
        });
    let leaf = (
        0..3usize,
        0..LOCALS.len(),
        prop::option::weighted(0.2, "urn:[a-z]{1,4}"),
        attrs,
    )
        .prop_map(|(prefix, l, redeclare, attrs)| GenEl {
            prefix,
            local: LOCALS[l].to_owned(),
            redeclare,
            attrs,
            children: Vec::new(),
        });
    leaf.prop_recursive(3, 24, 4, |inner| {
        (
            inner.clone(),
            prop::collection::vec(
                prop_oneof![
                    4 => inner.prop_map(GenNode::El),
                    3 => text().prop_map(GenNode::Text),
                    1 => "[a-z ]{0,8}".prop_map(GenNode::Comment),
                ],
                0..4,
            ),
        )
            .prop_map(|(mut el, children)| {
                el.children = children;
                el
            })
    })
}

fn escape_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\r', "&#xD;")
}

fn escape_attr(s: &str) -> String {
    escape_text(s)
        .replace('"', "&quot;")
        .replace('\t', "&#x9;")
        .replace('\n', "&#xA;")
}

/// Serialises the generated tree; the root declares `p`, `q` and the default namespace. An
/// attribute's prefix index: 0 none, 1 `p`, 2 `q`; `p` and `q` get distinct local names so two
/// attributes never share an expanded name, whatever URIs the prefixes are bound to.
fn write(el: &GenEl, root: bool, out: &mut String) {
    let name = match el.prefix {
        0 => el.local.clone(),
        i => format!("{}:{}", PREFIXES[i], el.local),
    };
    out.push('<');
    out.push_str(&name);
    if root {
        out.push_str(" xmlns=\"urn:default\" xmlns:p=\"urn:p\" xmlns:q=\"urn:q\"");
    }
    if let Some(uri) = el.redeclare.as_ref().filter(|_| !root) {
        match el.prefix {
            0 => out.push_str(&format!(" xmlns=\"{uri}\"")),
            i => out.push_str(&format!(" xmlns:{}=\"{uri}\"", PREFIXES[i])),
        }
    }
    for (p, n, v) in &el.attrs {
        let an = match p {
            0 => n.clone(),
            i => format!("{}:{}{}", PREFIXES[*i], PREFIXES[*i], n),
        };
        out.push_str(&format!(" {an}=\"{}\"", escape_attr(v)));
    }
    out.push('>');
    for c in &el.children {
        match c {
            GenNode::El(e) => write(e, false, out),
            GenNode::Text(t) => out.push_str(&escape_text(t)),
            GenNode::Comment(c) => out.push_str(&format!("<!--{c}-->")),
        }
    }
    out.push_str(&format!("</{name}>"));
}

fn document() -> impl Strategy<Value = String> {
    gen_el().prop_map(|el| {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        write(&el, true, &mut out);
        out
    })
}

/// Paths of every element in the subtree at `path` (itself included), skipping Signature.
fn element_paths(doc: &Document, path: &[usize]) -> Vec<Vec<usize>> {
    let mut out = vec![path.to_vec()];
    let el = doc.element_at(path).unwrap();
    for (i, child) in el.child_elements() {
        if child.local == "Signature"
            && doc.namespace_of(&[path, &[i]].concat()).as_deref() == Some(DSIG_NS)
        {
            continue;
        }
        out.extend(element_paths(doc, &[path, &[i]].concat()));
    }
    out
}

/// One change of signed content at the element `el`; `false` when this kind of change does
/// not apply there.
fn mutate(el: &mut Element, kind: u8, pick: Index) -> bool {
    let not_sig = |n: &Node| !matches!(n, Node::Element(e) if e.local == "Signature");
    match kind {
        0 => {
            let texts: Vec<usize> = (0..el.children.len())
                .filter(|&i| matches!(el.children[i], Node::Text(_)))
                .collect();
            if texts.is_empty() {
                el.children.insert(0, Node::Text("x".into()));
            } else if let Node::Text(t) = &mut el.children[texts[pick.index(texts.len())]] {
                t.push('x');
            }
            true
        }
        1 => {
            // Not the `Id` the reference names: changing it is a lost reference, not new content.
            let values: Vec<usize> = (0..el.attrs.len())
                .filter(|&i| el.attrs[i].local != "Id")
                .collect();
            if values.is_empty() {
                return false;
            }
            el.attrs[values[pick.index(values.len())]].value.push('x');
            true
        }
        2 => {
            el.local.push('x');
            true
        }
        3 => {
            el.attrs.push(Attribute {
                prefix: None,
                local: "zz".into(),
                value: String::new(),
            });
            true
        }
        _ => {
            let removable: Vec<usize> = (0..el.children.len())
                .filter(|&i| {
                    not_sig(&el.children[i]) && !matches!(el.children[i], Node::Comment(_))
                })
                .collect();
            if removable.is_empty() {
                return false;
            }
            el.children.remove(removable[pick.index(removable.len())]);
            true
        }
    }
}

fn sign(xml: &str, key: &SigningKey, c14n: Algorithm, reference: Reference) -> String {
    let opts = SignOptions {
        c14n,
        reference,
        include_certificate: false,
        ..SignOptions::default()
    };
    sign_enveloped(xml, key, &opts).unwrap_or_else(|e| panic!("sign: {e}\n{xml}"))
}

/// Puts `Id="target"` on the element at the `pick`-th element path (not the root) and
/// returns the new text and that path, or `None` when the document has only its root.
fn with_id(xml: &str, pick: Index) -> Option<(String, Vec<usize>)> {
    let mut doc = parse_safe(xml).unwrap();
    let paths: Vec<Vec<usize>> = element_paths(&doc, &[])
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    if paths.is_empty() {
        return None;
    }
    let path = paths[pick.index(paths.len())].clone();
    let el = doc.element_at_mut(&path).unwrap();
    el.attrs
        .retain(|a| !(a.prefix.is_none() && matches!(a.local.as_str(), "Id" | "ID" | "id")));
    el.attrs.push(Attribute {
        prefix: None,
        local: "Id".into(),
        value: "target".into(),
    });
    Some((doc.to_xml(), path))
}

proptest! {
    #![proptest_config(config(64))]

    /// The generated text parses, and every algorithm is idempotent on it.
    #[test]
    fn c14n_is_idempotent(xml in document()) {
        let doc = parse_safe(&xml).map_err(|e| TestCaseError::fail(format!("{e}\n{xml}")))?;
        for alg in ALGORITHMS {
            let once = canonicalize(&doc, alg).unwrap();
            let again = parse_safe(std::str::from_utf8(&once).unwrap())
                .map_err(|e| TestCaseError::fail(format!("{alg:?} output does not parse: {e}")))?;
            prop_assert_eq!(&canonicalize(&again, alg).unwrap(), &once, "{:?}", alg);
        }
    }

    /// sign → verify for every key, algorithm and reference; re-serialising keeps it valid.
    #[test]
    fn sign_then_verify(
        xml in document(),
        key in 0..2usize,
        alg in 0..4usize,
        by_id in any::<bool>(),
        pick in any::<Index>(),
    ) {
        let (sk, vk) = &keys()[key];
        let (xml, reference, expected_path) = match (by_id, with_id(&xml, pick)) {
            (true, Some((x, p))) => (x, Reference::Id("target".into()), p),
            _ => (xml, Reference::WholeDocument, vec![]),
        };
        let signed = sign(&xml, sk, ALGORITHMS[alg], reference);
        let pinned = [vk.clone()];
        let opts = VerifyOptions::new(SignerTrust::Pinned(&pinned));
        let v = verify_enveloped(&signed, &opts)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{signed}")))?;
        prop_assert_eq!(&v.signed_path, &expected_path);
        let reserialised = parse_safe(&signed).unwrap().to_xml();
        prop_assert!(verify_enveloped(&reserialised, &opts).is_ok());
    }

    /// Any one change of signed content fails with DigestMismatch; a changed DigestValue with
    /// SignatureMismatch; a changed comment is not detected (comments are not signed).
    #[test]
    fn any_change_of_signed_content_fails(
        xml in document(),
        alg in 0..4usize,
        by_id in any::<bool>(),
        pick in any::<Index>(),
        site in any::<Index>(),
        kind in 0..5u8,
        what in any::<Index>(),
    ) {
        let (sk, vk) = &keys()[0];
        let (xml, reference, signed_path) = match (by_id, with_id(&xml, pick)) {
            (true, Some((x, p))) => (x, Reference::Id("target".into()), p),
            _ => (xml, Reference::WholeDocument, vec![]),
        };
        let signed = sign(&xml, sk, ALGORITHMS[alg], reference);
        let pinned = [vk.clone()];
        let opts = VerifyOptions::new(SignerTrust::Pinned(&pinned));
        let doc = parse_safe(&signed).unwrap();

        let sites = element_paths(&doc, &signed_path);
        let path = &sites[site.index(sites.len())];
        let mut changed = doc.clone();
        prop_assume!(mutate(changed.element_at_mut(path).unwrap(), kind, what));
        // Renaming an element to "Signature" in the DSig namespace is another kind of attack.
        prop_assume!(changed.find_all(DSIG_NS, "Signature").len() == 1);
        let r = verify_enveloped(&changed.to_xml(), &opts);
        prop_assert!(matches!(r, Err(DsigError::DigestMismatch)), "{:?} after change {} at {:?}", r.map(|_| ()), kind, path);

        // The DigestValue lives in SignedInfo: changing it breaks the signature value.
        let sig = doc.find_all(DSIG_NS, "Signature").remove(0);
        let dv = doc.find_all(DSIG_NS, "DigestValue").remove(0);
        let mut changed = doc.clone();
        let el = changed.element_at_mut(&dv).unwrap();
        let t = el.text();
        let flipped = if t.starts_with('A') { t.replacen('A', "B", 1) } else { format!("A{}", &t[1..]) };
        el.children = vec![Node::Text(flipped)];
        prop_assert!(matches!(verify_enveloped(&changed.to_xml(), &opts), Err(DsigError::SignatureMismatch)));

        // A comment added inside the signed element is not signed content.
        let mut changed = doc.clone();
        let parent = &sig[..sig.len() - 1];
        changed.element_at_mut(parent).unwrap().children.insert(0, Node::Comment("added".into()));
        prop_assert!(verify_enveloped(&changed.to_xml(), &opts).is_ok());
    }

    /// A namespace declaration on an ancestor of the signed element that nothing uses: part
    /// of inclusive C14N's output (the signature breaks), not of exclusive C14N's (it holds).
    #[test]
    fn unused_ancestor_namespace_exclusive_vs_inclusive(
        xml in document(),
        alg in 0..4usize,
        pick in any::<Index>(),
    ) {
        let Some((xml, path)) = with_id(&xml, pick) else { return Ok(()) };
        let algorithm = ALGORITHMS[alg];
        let (sk, vk) = &keys()[0];
        let signed = sign(&xml, sk, algorithm, Reference::Id("target".into()));
        let pinned = [vk.clone()];
        let opts = VerifyOptions::new(SignerTrust::Pinned(&pinned));
        let mut doc = parse_safe(&signed).unwrap();
        let parent = doc.element_at_mut(&path[..path.len() - 1]).unwrap();
        parent.ns_decls.push(("unused".into(), "urn:unused".into()));
        let r = verify_enveloped(&doc.to_xml(), &opts);
        if algorithm.is_exclusive() {
            prop_assert!(r.is_ok(), "exclusive: {:?}", r.map(|_| ()));
        } else {
            prop_assert!(
                matches!(r, Err(DsigError::SignatureMismatch | DsigError::DigestMismatch)),
                "inclusive: {:?}", r.map(|_| ())
            );
        }
    }
}

/// Excludes the first element named `exclude`, diverts the text of every element named
/// `divert`, and records what was diverted.
struct Probe {
    exclude: &'static str,
    divert: &'static str,
    excluded_once: bool,
    diverted: String,
}

impl gw_crypto::xml::stream::StreamHandler for Probe {
    type Error = std::convert::Infallible;
    fn start(
        &mut self,
        _: &[&Element],
        el: &Element,
        _: &str,
    ) -> Result<gw_crypto::xml::stream::Treatment, Self::Error> {
        let exclude = !self.excluded_once && el.local == self.exclude;
        self.excluded_once |= exclude;
        Ok(gw_crypto::xml::stream::Treatment {
            exclude,
            divert_text: el.local == self.divert,
        })
    }
    fn text(&mut self, chunk: &str) -> Result<(), Self::Error> {
        self.diverted.push_str(chunk);
        Ok(())
    }
    fn end(&mut self, _: &Element) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Direct text of every element named `local`, in document order.
fn direct_text_of(el: &Element, local: &str, out: &mut String) {
    if el.local == local {
        out.push_str(&el.text());
    }
    for (_, c) in el.child_elements() {
        direct_text_of(c, local, out);
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// The streaming canonicalizer writes exactly what the tree canonicalizer writes for the
    /// same document with the same element excluded, under all four algorithms; without
    /// diversion it builds the same tree; diverted text reaches the handler whole.
    #[test]
    fn streamed_c14n_equals_tree_c14n(
        xml in document(),
        ex in 0..LOCALS.len(),
        dv in 0..LOCALS.len(),
        divert in any::<bool>(),
    ) {
        use gw_crypto::xml::c14n::{canonicalize_document_with, Options};
        use gw_crypto::xml::stream::parse_stream;
        use gw_crypto::xml::DEFAULT_LIMITS;
        let tree = parse_safe(&xml).unwrap();
        let run = |alg, divert: &'static str| {
            let mut probe = Probe {
                exclude: LOCALS[ex],
                divert,
                excluded_once: false,
                diverted: String::new(),
            };
            let mut out = Vec::new();
            let streamed =
                parse_stream(xml.as_bytes(), alg, &DEFAULT_LIMITS, &mut probe, &mut out).unwrap();
            (streamed, out, probe.diverted)
        };
        for alg in ALGORITHMS {
            let (streamed, out, _) = run(alg, "-");
            prop_assert!(streamed.excluded.len() <= 1);
            let opts = Options {
                inclusive_prefixes: &[],
                exclude: streamed.excluded.first().map(Vec::as_slice),
            };
            let expected = canonicalize_document_with(&tree, alg, &opts).unwrap();
            prop_assert_eq!(
                String::from_utf8(out.clone()).unwrap(),
                String::from_utf8(expected).unwrap()
            );
            prop_assert_eq!(&streamed.document.root, &tree.root);
            if let Some(p) = streamed.excluded.first() {
                prop_assert_eq!(&tree.element_at(p).unwrap().local, LOCALS[ex]);
            }
            if divert {
                // Diverting text changes the tree, never the canonical output.
                let (_, diverted_out, diverted) = run(alg, LOCALS[dv]);
                prop_assert_eq!(&diverted_out, &out);
                let mut want = String::new();
                direct_text_of(&tree.root, LOCALS[dv], &mut want);
                prop_assert_eq!(&diverted, &want);
            }
        }
    }
}
