//! XML canonicalization: Canonical XML 1.0 (inclusive) and Exclusive XML Canonicalization 1.0,
//! with and without comments, of a whole [`Document`] or of one element's subtree.
//!
//! Invariants:
//! - Output is UTF-8 with the exact escaping, attribute ordering, namespace-declaration pruning and
//!   empty-element expansion the two W3C recommendations prescribe; it is what digests are computed on.
//! - Only these document subsets are supported, which is what XML-DSig same-document references
//!   need: a whole document, a whole subtree (`#id` reference) and either of them minus one excluded
//!   element (the enveloped-signature transform). Arbitrary XPath node-sets are not.
//! - Inclusive C14N of a subtree renders, on the apex, every namespace in scope and the `xml:*`
//!   attributes inherited from ancestors; exclusive C14N renders only visibly utilised namespaces
//!   plus those named in the InclusiveNamespaces `PrefixList`.
//! - This file reads the tree (`tree.rs`) and its errors (`error.rs`) and nothing
//!   else of the `xml` module; [`Document::to_xml`] lives here so the tree never imports it.

use std::borrow::Cow;

use super::error::XmlError;
use super::tree::{initial_scope, push_scope, Attribute, Document, Element, Node, NsScope, XML_NS};

/// The canonicalization algorithms, by their XML-DSig identifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `http://www.w3.org/TR/2001/REC-xml-c14n-20010315`
    Inclusive,
    /// `http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments`
    InclusiveWithComments,
    /// `http://www.w3.org/2001/10/xml-exc-c14n#`
    Exclusive,
    /// `http://www.w3.org/2001/10/xml-exc-c14n#WithComments`
    ExclusiveWithComments,
}

impl Algorithm {
    /// The algorithm URI used in `CanonicalizationMethod` / `Transform`.
    pub fn uri(self) -> &'static str {
        match self {
            Algorithm::Inclusive => "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
            Algorithm::InclusiveWithComments => {
                "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments"
            }
            Algorithm::Exclusive => "http://www.w3.org/2001/10/xml-exc-c14n#",
            Algorithm::ExclusiveWithComments => {
                "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"
            }
        }
    }

    /// The algorithm named by `uri`, or `None` if unsupported (e.g. C14N 1.1).
    pub fn from_uri(uri: &str) -> Option<Self> {
        [
            Algorithm::Inclusive,
            Algorithm::InclusiveWithComments,
            Algorithm::Exclusive,
            Algorithm::ExclusiveWithComments,
        ]
        .into_iter()
        .find(|a| a.uri() == uri)
    }

    /// Whether comments are kept.
    pub fn with_comments(self) -> bool {
        matches!(
            self,
            Algorithm::InclusiveWithComments | Algorithm::ExclusiveWithComments
        )
    }

    /// Whether this is exclusive canonicalization.
    pub fn is_exclusive(self) -> bool {
        matches!(
            self,
            Algorithm::Exclusive | Algorithm::ExclusiveWithComments
        )
    }

    /// The same algorithm without comments (what a same-document reference yields: XML-DSig §4.4.3.3).
    pub fn without_comments(self) -> Self {
        match self {
            Algorithm::InclusiveWithComments => Algorithm::Inclusive,
            Algorithm::ExclusiveWithComments => Algorithm::Exclusive,
            other => other,
        }
    }
}

/// What to canonicalize beyond the algorithm itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options<'a> {
    /// Exclusive C14N only: prefixes treated the inclusive way (`#default` is the default namespace).
    pub inclusive_prefixes: &'a [String],
    /// An element (by absolute path) left out with its whole subtree: the enveloped signature.
    pub exclude: Option<&'a [usize]>,
}

/// Canonicalizes a whole document.
pub fn canonicalize(doc: &Document, algorithm: Algorithm) -> Result<Vec<u8>, XmlError> {
    canonicalize_document_with(doc, algorithm, &Options::default())
}

/// Alias of [`canonicalize`], for symmetry with [`canonicalize_subtree`].
pub fn canonicalize_document(doc: &Document, algorithm: Algorithm) -> Result<Vec<u8>, XmlError> {
    canonicalize(doc, algorithm)
}

/// Canonicalizes a whole document with [`Options`].
pub fn canonicalize_document_with(
    doc: &Document,
    algorithm: Algorithm,
    opts: &Options<'_>,
) -> Result<Vec<u8>, XmlError> {
    let mut w = Writer::new(algorithm, opts);
    for n in &doc.prolog {
        if w.write_misc(n) {
            w.out.push(b'\n');
        }
    }
    let scope = push_scope(&initial_scope(), &doc.root.ns_decls);
    w.element(&doc.root, &mut Vec::new(), &scope, &NsScope::new(), &[]);
    for n in &doc.epilog {
        if w.is_rendered_misc(n) {
            w.out.push(b'\n');
            w.write_misc(n);
        }
    }
    Ok(w.out)
}

impl Document {
    /// Serialises the document (canonical form with comments, preceded by an XML declaration).
    ///
    /// Here rather than with the tree (`tree.rs`) because it is canonicalization: the tree
    /// file stays free of imports of this one.
    pub fn to_xml(&self) -> String {
        let body = canonicalize_document(self, Algorithm::InclusiveWithComments)
            .expect("inclusive canonicalization of a whole document cannot fail");
        let mut out = String::with_capacity(body.len() + 40);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        out.push_str(&String::from_utf8(body).expect("canonical form of a str is UTF-8"));
        out
    }
}

/// Canonicalizes the subtree rooted at the element at `path`, in the context of its ancestors.
pub fn canonicalize_subtree(
    doc: &Document,
    path: &[usize],
    algorithm: Algorithm,
    opts: &Options<'_>,
) -> Result<Vec<u8>, XmlError> {
    let el = doc
        .element_at(path)
        .ok_or_else(|| XmlError::Malformed(format!("no element at path {path:?}")))?;
    let scope = doc
        .scope_at(path)
        .ok_or_else(|| XmlError::Malformed(format!("no element at path {path:?}")))?;
    // Canonical XML 1.0 §2.4: the apex of a subset inherits the xml:* attributes of its ancestors.
    let mut inherited: Vec<Attribute> = Vec::new();
    if !algorithm.is_exclusive() {
        let mut cur = &doc.root;
        for &i in path {
            for a in cur
                .attrs
                .iter()
                .filter(|a| a.prefix.as_deref() == Some("xml"))
            {
                inherited.retain(|b| b.local != a.local);
                inherited.push(a.clone());
            }
            cur = match &cur.children[i] {
                Node::Element(e) => e,
                _ => unreachable!("path checked by element_at"),
            };
        }
        inherited.retain(|a| {
            !el.attrs
                .iter()
                .any(|b| b.prefix.as_deref() == Some("xml") && b.local == a.local)
        });
    }
    let mut w = Writer::new(algorithm, opts);
    w.element(el, &mut path.to_vec(), &scope, &NsScope::new(), &inherited);
    Ok(w.out)
}

pub(super) struct Writer<'a> {
    exclusive: bool,
    comments: bool,
    inclusive_prefixes: Vec<String>,
    exclude: Option<&'a [usize]>,
    pub(super) out: Vec<u8>,
}

impl<'a> Writer<'a> {
    pub(super) fn new(algorithm: Algorithm, opts: &Options<'a>) -> Self {
        Writer {
            exclusive: algorithm.is_exclusive(),
            comments: algorithm.with_comments(),
            inclusive_prefixes: opts
                .inclusive_prefixes
                .iter()
                .map(|p| {
                    if p == "#default" {
                        String::new()
                    } else {
                        p.clone()
                    }
                })
                .collect(),
            exclude: opts.exclude,
            out: Vec::with_capacity(4096),
        }
    }

    pub(super) fn is_rendered_misc(&self, n: &Node) -> bool {
        match n {
            Node::Comment(_) => self.comments,
            Node::Pi { .. } => true,
            _ => false,
        }
    }

    /// Writes a comment or PI; returns whether anything was written.
    pub(super) fn write_misc(&mut self, n: &Node) -> bool {
        match n {
            Node::Comment(c) if self.comments => {
                self.out.extend_from_slice(b"<!--");
                self.out.extend_from_slice(c.as_bytes());
                self.out.extend_from_slice(b"-->");
                true
            }
            Node::Pi { target, data } => {
                self.out.extend_from_slice(b"<?");
                self.out.extend_from_slice(target.as_bytes());
                if !data.is_empty() {
                    self.out.push(b' ');
                    self.out.extend_from_slice(data.as_bytes());
                }
                self.out.extend_from_slice(b"?>");
                true
            }
            _ => false,
        }
    }

    /// `scope`: namespaces in scope on `el`; `rendered`: namespaces rendered by output ancestors.
    fn qname(&mut self, el: &Element) {
        if let Some(p) = &el.prefix {
            self.out.extend_from_slice(p.as_bytes());
            self.out.push(b':');
        }
        self.out.extend_from_slice(el.local.as_bytes());
    }

    /// Writes `el`'s start tag; returns the namespaces rendered once it is open (what its
    /// children inherit). Shared by the tree writer and the streaming one (`stream.rs`).
    pub(super) fn start_tag<'r>(
        &mut self,
        el: &Element,
        scope: &NsScope,
        rendered: &'r NsScope,
        extra: &[Attribute],
    ) -> Cow<'r, NsScope> {
        self.out.push(b'<');
        self.qname(el);

        // Namespace declarations to render, sorted by prefix ("" sorts first).
        let candidates: Vec<&str> = if self.exclusive {
            let mut v: Vec<&str> = Vec::with_capacity(4);
            v.push(el.prefix.as_deref().unwrap_or(""));
            for a in el.attrs.iter().chain(extra) {
                if let Some(p) = &a.prefix {
                    v.push(p);
                }
            }
            v.extend(self.inclusive_prefixes.iter().map(String::as_str));
            v.sort_unstable();
            v.dedup();
            v
        } else {
            scope.keys().map(String::as_str).collect()
        };
        // Copied only when this element renders a declaration.
        let mut now_rendered: Cow<'_, NsScope> = Cow::Borrowed(rendered);
        for p in candidates {
            if p == "xml" {
                continue;
            }
            let uri = match scope.get(p) {
                Some(u) => u.as_str(),
                None if p.is_empty() => "",
                None => continue, // PrefixList entry not in scope
            };
            let before = rendered.get(p).map(String::as_str);
            let already = if p.is_empty() {
                before.unwrap_or("") == uri
            } else {
                before == Some(uri)
            };
            if already {
                continue;
            }
            self.out.extend_from_slice(b" xmlns");
            if !p.is_empty() {
                self.out.push(b':');
                self.out.extend_from_slice(p.as_bytes());
            }
            self.out.extend_from_slice(b"=\"");
            escape_attr(uri, &mut self.out);
            self.out.push(b'"');
            now_rendered.to_mut().insert(p.to_owned(), uri.to_owned());
        }

        // Attributes sorted by (namespace URI, local name); unqualified ones have the empty URI.
        let mut attrs: Vec<(&str, &Attribute)> = el
            .attrs
            .iter()
            .chain(extra)
            .map(|a| {
                let ns = match a.prefix.as_deref() {
                    Some("xml") => XML_NS,
                    Some(p) => scope.get(p).map(String::as_str).unwrap_or(""),
                    None => "",
                };
                (ns, a)
            })
            .collect();
        attrs.sort_by(|(ns1, a1), (ns2, a2)| ns1.cmp(ns2).then_with(|| a1.local.cmp(&a2.local)));
        for (_, a) in attrs {
            self.out.push(b' ');
            if let Some(p) = &a.prefix {
                self.out.extend_from_slice(p.as_bytes());
                self.out.push(b':');
            }
            self.out.extend_from_slice(a.local.as_bytes());
            self.out.extend_from_slice(b"=\"");
            escape_attr(&a.value, &mut self.out);
            self.out.push(b'"');
        }
        self.out.push(b'>');
        now_rendered
    }

    fn element(
        &mut self,
        el: &Element,
        path: &mut Vec<usize>,
        scope: &NsScope,
        rendered: &NsScope,
        extra: &[Attribute],
    ) {
        let now_rendered = self.start_tag(el, scope, rendered, extra);
        for (i, child) in el.children.iter().enumerate() {
            match child {
                Node::Element(c) => {
                    path.push(i);
                    if self.exclude != Some(path.as_slice()) {
                        if c.ns_decls.is_empty() {
                            self.element(c, path, scope, &now_rendered, &[]);
                        } else {
                            let child_scope = push_scope(scope, &c.ns_decls);
                            self.element(c, path, &child_scope, &now_rendered, &[]);
                        }
                    }
                    path.pop();
                }
                Node::Text(t) => escape_text(t, &mut self.out),
                other => {
                    self.write_misc(other);
                }
            }
        }
        self.end_tag(el);
    }

    /// Writes `el`'s end tag.
    pub(super) fn end_tag(&mut self, el: &Element) {
        self.out.extend_from_slice(b"</");
        self.qname(el);
        self.out.push(b'>');
    }
}

pub(super) fn escape_text(s: &str, out: &mut Vec<u8>) {
    for b in s.bytes() {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'\r' => out.extend_from_slice(b"&#xD;"),
            _ => out.push(b),
        }
    }
}

fn escape_attr(s: &str, out: &mut Vec<u8>) {
    for b in s.bytes() {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'\t' => out.extend_from_slice(b"&#x9;"),
            b'\n' => out.extend_from_slice(b"&#xA;"),
            b'\r' => out.extend_from_slice(b"&#xD;"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse_safe;

    fn c14n(xml: &str, alg: Algorithm) -> String {
        String::from_utf8(canonicalize(&parse_safe(xml).unwrap(), alg).unwrap()).unwrap()
    }

    #[test]
    fn w3c_c14n_example_3_3_start_and_end_tags() {
        // Canonical XML 1.0 §3.3, without the DTD-defaulted attribute (DTDs are refused).
        let input = "<doc>\n   <e1   />\n   <e2   ></e2>\n   <e3   name = \"elem3\"   id=\"elem3\"   />\n   <e4   name=\"elem4\"   id=\"elem4\"   ></e4>\n   <e5 a:attr=\"out\" b:attr=\"sorted\" attr2=\"all\" attr=\"I'm\"\n      xmlns:b=\"http://www.ietf.org\"\n      xmlns:a=\"http://www.w3.org\"\n      xmlns=\"http://example.org\"/>\n   <e6 xmlns=\"\" xmlns:a=\"http://www.w3.org\">\n      <e7 xmlns=\"http://www.ietf.org\">\n         <e8 xmlns=\"\" xmlns:a=\"http://www.w3.org\">\n            <e9 xmlns=\"\" xmlns:a=\"http://www.ietf.org\"/>\n         </e8>\n      </e7>\n   </e6>\n</doc>";
        let expected = "<doc>\n   <e1></e1>\n   <e2></e2>\n   <e3 id=\"elem3\" name=\"elem3\"></e3>\n   <e4 id=\"elem4\" name=\"elem4\"></e4>\n   <e5 xmlns=\"http://example.org\" xmlns:a=\"http://www.w3.org\" xmlns:b=\"http://www.ietf.org\" attr=\"I'm\" attr2=\"all\" b:attr=\"sorted\" a:attr=\"out\"></e5>\n   <e6 xmlns:a=\"http://www.w3.org\">\n      <e7 xmlns=\"http://www.ietf.org\">\n         <e8 xmlns=\"\">\n            <e9 xmlns:a=\"http://www.ietf.org\"></e9>\n         </e8>\n      </e7>\n   </e6>\n</doc>";
        assert_eq!(c14n(input, Algorithm::Inclusive), expected);
    }

    #[test]
    fn comments_pis_and_escaping() {
        let input = "<?xml version=\"1.0\"?>\n<?xml-stylesheet   href=\"doc.xsl\"\n   type=\"text/xsl\"   ?>\n<!-- c1 -->\n<doc a=\"x&#9;y&#10;\">T&amp;&lt;&gt;&#13;<!-- c2 --></doc>\n<!-- c3 -->";
        assert_eq!(
            c14n(input, Algorithm::InclusiveWithComments),
            "<?xml-stylesheet href=\"doc.xsl\"\n   type=\"text/xsl\"   ?>\n<!-- c1 -->\n<doc a=\"x&#x9;y&#xA;\">T&amp;&lt;&gt;&#xD;<!-- c2 --></doc>\n<!-- c3 -->"
        );
        assert_eq!(
            c14n(input, Algorithm::Inclusive),
            "<?xml-stylesheet href=\"doc.xsl\"\n   type=\"text/xsl\"   ?>\n<doc a=\"x&#x9;y&#xA;\">T&amp;&lt;&gt;&#xD;</doc>"
        );
    }

    #[test]
    fn subtree_inclusive_vs_exclusive() {
        let doc = parse_safe(
            "<r xmlns=\"urn:d\" xmlns:a=\"urn:a\" xmlns:u=\"urn:unused\" xml:lang=\"vi\"><a:x Id=\"s\"><y a:k=\"1\"/></a:x></r>",
        )
        .unwrap();
        let path = doc.find_by_id("s").unwrap();
        let inc =
            canonicalize_subtree(&doc, &path, Algorithm::Inclusive, &Options::default()).unwrap();
        assert_eq!(
            String::from_utf8(inc).unwrap(),
            "<a:x xmlns=\"urn:d\" xmlns:a=\"urn:a\" xmlns:u=\"urn:unused\" Id=\"s\" xml:lang=\"vi\"><y a:k=\"1\"></y></a:x>"
        );
        let exc =
            canonicalize_subtree(&doc, &path, Algorithm::Exclusive, &Options::default()).unwrap();
        assert_eq!(
            String::from_utf8(exc).unwrap(),
            "<a:x xmlns:a=\"urn:a\" Id=\"s\"><y xmlns=\"urn:d\" a:k=\"1\"></y></a:x>"
        );
        let prefixes = vec!["u".to_owned()];
        let opts = Options {
            inclusive_prefixes: &prefixes,
            exclude: None,
        };
        let exc = canonicalize_subtree(&doc, &path, Algorithm::Exclusive, &opts).unwrap();
        assert_eq!(
            String::from_utf8(exc).unwrap(),
            "<a:x xmlns:a=\"urn:a\" xmlns:u=\"urn:unused\" Id=\"s\"><y xmlns=\"urn:d\" a:k=\"1\"></y></a:x>"
        );
    }

    #[test]
    fn exclusion_removes_one_subtree() {
        let doc = parse_safe("<r><a/><s><t/></s><b/></r>").unwrap();
        let opts = Options {
            inclusive_prefixes: &[],
            exclude: Some(&[1]),
        };
        let out = canonicalize_document_with(&doc, Algorithm::Exclusive, &opts).unwrap();
        assert_eq!(out, b"<r><a></a><b></b></r>");
    }

    #[test]
    fn algorithm_uris_round_trip() {
        for a in [
            Algorithm::Inclusive,
            Algorithm::InclusiveWithComments,
            Algorithm::Exclusive,
            Algorithm::ExclusiveWithComments,
        ] {
            assert_eq!(Algorithm::from_uri(a.uri()), Some(a));
        }
        assert_eq!(
            Algorithm::from_uri("http://www.w3.org/2006/12/xml-c14n11"),
            None
        );
    }
}
