//! Safe parsing of untrusted XML into the tree of [`super::tree`]: [`parse_safe`] with
//! [`DEFAULT_LIMITS`], or [`parse_with_limits`].
//!
//! Invariants (every [`Document`] returned satisfies them; the `xml` module doc lists them in
//! full):
//! - No DTD, no entity other than the five predefined ones and character references.
//! - Size, depth, node count, attributes, namespaces in scope and namespace declarations are
//!   capped by [`ParseLimits`], checked while reading, before the tree grows past them.
//! - UTF-8 only; namespace well-formed; text stored decoded with line ends normalised.
//! - This file imports the tree and the error type only, never canonicalization.

use std::rc::Rc;

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;
use quick_xml::{Reader, XmlVersion};

use super::error::XmlError;
use super::tree::{
    initial_scope, push_scope, Attribute, Document, Element, Node, NodePath, NsScope, SourceEnd,
    SourceMap, XML_NS,
};

/// Resource caps applied while parsing untrusted XML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Maximum input length in bytes.
    pub max_bytes: usize,
    /// Maximum element nesting depth (the root is depth 1).
    pub max_depth: usize,
    /// Maximum number of nodes (elements, text runs, comments, PIs).
    pub max_nodes: usize,
    /// Maximum number of attributes (including namespace declarations) on one element.
    pub max_attributes: usize,
    /// Maximum number of namespace prefixes in scope at any element. Each element that
    /// declares a namespace copies its parent's scope: without this cap, deep elements each
    /// declaring many prefixes cost time quadratic in the document.
    pub max_namespaces_in_scope: usize,
    /// Maximum number of namespace declarations in the whole document.
    pub max_namespace_declarations: usize,
}

/// Default caps: 16 MiB, depth 128, one million nodes, 256 attributes per element, 64
/// namespaces in scope, 4,096 namespace declarations (a signed SOAP message uses about ten).
pub const DEFAULT_LIMITS: ParseLimits = ParseLimits {
    max_bytes: 16 * 1024 * 1024,
    max_depth: 128,
    max_nodes: 1_000_000,
    max_attributes: 256,
    max_namespaces_in_scope: 64,
    max_namespace_declarations: 4_096,
};

impl Default for ParseLimits {
    fn default() -> Self {
        DEFAULT_LIMITS
    }
}

/// Parses untrusted XML with [`DEFAULT_LIMITS`].
pub fn parse_safe(input: &str) -> Result<Document, XmlError> {
    parse_with_limits(input, &DEFAULT_LIMITS)
}

/// Parses untrusted XML with explicit limits.
pub fn parse_with_limits(input: &str, limits: &ParseLimits) -> Result<Document, XmlError> {
    if input.len() > limits.max_bytes {
        return Err(XmlError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    let full_len = input.len();
    let input = input.strip_prefix('\u{feff}').unwrap_or(input);
    let base = full_len - input.len();
    let mut ends: Vec<(NodePath, SourceEnd)> = Vec::new();
    let mut reader = Reader::from_str(input);
    {
        let cfg = reader.config_mut();
        cfg.expand_empty_elements = true;
        cfg.check_end_names = true;
        cfg.check_comments = true;
        cfg.trim_text(false);
    }

    let mut prolog = Vec::new();
    let mut epilog = Vec::new();
    let mut root: Option<Element> = None;
    // Open elements with the scope in force inside each (shared until an element declares something).
    let mut stack: Vec<(Element, Rc<NsScope>)> = Vec::new();
    // Parallel to `stack`: whether each open element was written as an empty-element tag `<x/>`.
    let mut empty_tag: Vec<bool> = Vec::new();
    let outer_scope = Rc::new(initial_scope());
    let mut nodes = 0usize;
    let mut ns_decls = 0usize;

    loop {
        let ev_start = reader.buffer_position() as usize;
        let ev = reader
            .read_event()
            .map_err(|e| XmlError::Malformed(format!("{e} at byte {}", reader.error_position())))?;
        nodes += 1;
        if nodes > limits.max_nodes {
            return Err(XmlError::TooManyNodes {
                limit: limits.max_nodes,
            });
        }
        match ev {
            Event::DocType(_) => return Err(XmlError::DtdForbidden),
            Event::Decl(d) => {
                if let Some(enc) = d.encoding() {
                    let enc = enc.map_err(|e| XmlError::Malformed(e.to_string()))?;
                    if !enc.eq_ignore_ascii_case("utf-8") && !enc.eq_ignore_ascii_case("utf8") {
                        return Err(XmlError::UnsupportedEncoding(enc.into_owned()));
                    }
                }
            }
            Event::Start(s) => {
                if stack.len() >= limits.max_depth {
                    return Err(XmlError::TooDeep {
                        limit: limits.max_depth,
                    });
                }
                if stack.is_empty() && root.is_some() {
                    return Err(XmlError::Malformed("more than one root element".into()));
                }
                let parent_scope = stack
                    .last()
                    .map(|(_, s)| Rc::clone(s))
                    .unwrap_or_else(|| Rc::clone(&outer_scope));
                let (el, scope) = build_element(&s, &parent_scope, limits)?;
                ns_decls += el.ns_decls.len();
                if ns_decls > limits.max_namespace_declarations {
                    return Err(XmlError::TooManyNamespaceDeclarations {
                        limit: limits.max_namespace_declarations,
                    });
                }
                stack.push((el, scope));
                empty_tag.push(input[..reader.buffer_position() as usize].ends_with("/>"));
            }
            Event::End(_) => {
                let (el, _) = stack
                    .pop()
                    .ok_or_else(|| XmlError::Malformed("unexpected end tag".into()))?;
                if stack.is_empty() || el.id_attr().is_some() {
                    // The path this element gets: each open ancestor's next child index.
                    let path: NodePath = stack.iter().map(|(p, _)| p.children.len()).collect();
                    let end = if empty_tag.last() == Some(&true) {
                        SourceEnd::SelfClosing(base + ev_start)
                    } else {
                        SourceEnd::EndTag(base + ev_start)
                    };
                    ends.push((path, end));
                }
                empty_tag.pop();
                match stack.last_mut() {
                    Some((parent, _)) => parent.children.push(Node::Element(el)),
                    None => root = Some(el),
                }
            }
            Event::Empty(_) => unreachable!("expand_empty_elements is on"),
            Event::Text(t) => {
                let text = t.xml10_content();
                append_text(&mut stack, &text)?;
            }
            Event::CData(t) => {
                let text = t.xml10_content();
                append_text(&mut stack, &text)?;
            }
            Event::GeneralRef(r) => {
                let resolved: String = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => {
                        let name = r.xml10_content();
                        resolve_predefined_entity(&name)
                            .ok_or_else(|| XmlError::UndefinedEntity(name.to_string()))?
                            .to_owned()
                    }
                    Err(e) => return Err(XmlError::Malformed(e.to_string())),
                };
                append_text(&mut stack, &resolved)?;
            }
            Event::Comment(c) => {
                let text = c.xml10_content().into_owned();
                check_chars(&text, "comment")?;
                let node = Node::Comment(text);
                push_misc(&mut stack, &root, &mut prolog, &mut epilog, node);
            }
            Event::PI(p) => {
                let target = p.target().to_owned();
                if target.eq_ignore_ascii_case("xml") {
                    return Err(XmlError::Malformed("misplaced XML declaration".into()));
                }
                let name_ok = target
                    .chars()
                    .next()
                    .is_some_and(|c| is_name_start_char(c) || c == ':')
                    && target.chars().all(|c| is_name_char(c) || c == ':');
                if !name_ok {
                    return Err(XmlError::Malformed(format!(
                        "invalid processing instruction target {target:?}"
                    )));
                }
                let data = normalize_eol(p.content().trim_start());
                check_chars(&data, "processing instruction")?;
                push_misc(
                    &mut stack,
                    &root,
                    &mut prolog,
                    &mut epilog,
                    Node::Pi { target, data },
                );
            }
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed(
            "unclosed element at end of input".into(),
        ));
    }
    let root = root.ok_or_else(|| XmlError::Malformed("no root element".into()))?;
    Ok(Document {
        prolog,
        root,
        epilog,
        source: Some(SourceMap {
            len: full_len,
            ends,
        }),
    })
}

pub(super) fn normalize_eol(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\r', "\n")
}

fn push_misc(
    stack: &mut [(Element, Rc<NsScope>)],
    root: &Option<Element>,
    prolog: &mut Vec<Node>,
    epilog: &mut Vec<Node>,
    node: Node,
) {
    match stack.last_mut() {
        Some((el, _)) => el.children.push(node),
        None if root.is_none() => prolog.push(node),
        None => epilog.push(node),
    }
}

fn append_text(stack: &mut [(Element, Rc<NsScope>)], text: &str) -> Result<(), XmlError> {
    check_chars(text, "character data")?;
    match stack.last_mut() {
        Some((el, _)) => {
            if let Some(Node::Text(prev)) = el.children.last_mut() {
                prev.push_str(text);
            } else if !text.is_empty() {
                el.children.push(Node::Text(text.to_owned()));
            }
            Ok(())
        }
        None if text.chars().all(|c| matches!(c, ' ' | '\t' | '\n' | '\r')) => Ok(()),
        None => Err(XmlError::Malformed(
            "character data outside the root element".into(),
        )),
    }
}

/// XML 1.0 (5th ed.) §2.3 `NameStartChar`, without `:` (Namespaces in XML §3 `NCName`).
pub(super) fn is_name_start_char(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}'
        | '\u{F8}'..='\u{2FF}' | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}'
        | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}'
        | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}'
        | '\u{10000}'..='\u{EFFFF}')
}

/// XML 1.0 §2.3 `NameChar`, without `:`.
pub(super) fn is_name_char(c: char) -> bool {
    is_name_start_char(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// Whether `s` is an `NCName` (a prefix or a local name).
fn is_ncname(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_name_start_char) && chars.all(is_name_char)
}

/// Refuses characters outside XML 1.0's `Char` production (§2.2): C0 controls other than tab,
/// LF and CR, and U+FFFE/U+FFFF. The reader passes them through; written back out (by
/// canonicalization) they would make a document no other XML processor accepts.
pub(super) fn check_chars(s: &str, what: &str) -> Result<(), XmlError> {
    match s.chars().find(|&c| {
        (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}')
    }) {
        Some(c) => Err(XmlError::Malformed(format!(
            "character U+{:04X} is not allowed in XML ({what})",
            c as u32
        ))),
        None => Ok(()),
    }
}

/// Splits and checks a qualified name: `prefix:local` or `local`, each part an `NCName`.
fn split_qname(name: &str) -> Result<(Option<String>, String), XmlError> {
    let invalid = || XmlError::Malformed(format!("invalid qualified name {name:?}"));
    match name.split_once(':') {
        Some((p, l)) if is_ncname(p) && is_ncname(l) => Ok((Some(p.to_owned()), l.to_owned())),
        Some(_) => Err(invalid()),
        None if is_ncname(name) => Ok((None, name.to_owned())),
        None => Err(invalid()),
    }
}

pub(super) fn build_element(
    s: &quick_xml::events::BytesStart<'_>,
    parent_scope: &Rc<NsScope>,
    limits: &ParseLimits,
) -> Result<(Element, Rc<NsScope>), XmlError> {
    let (prefix, local) = split_qname(s.name().as_ref())?;
    let mut el = Element {
        prefix,
        local,
        ..Element::default()
    };
    let mut raw_attrs = Vec::new();
    for (n, attr) in s.attributes().with_checks(true).enumerate() {
        if n >= limits.max_attributes {
            return Err(XmlError::TooManyAttributes {
                limit: limits.max_attributes,
            });
        }
        let attr = attr.map_err(|e| XmlError::Malformed(e.to_string()))?;
        let mut unknown: Option<String> = None;
        let value = attr
            .normalized_value_with(XmlVersion::Implicit1_0, 1, |name| {
                let r = resolve_predefined_entity(name);
                if r.is_none() {
                    unknown = Some(name.to_owned());
                }
                r
            })
            .map_err(|e| match unknown.take() {
                Some(name) => XmlError::UndefinedEntity(name),
                None => XmlError::Malformed(e.to_string()),
            })?
            .into_owned();
        check_chars(&value, "attribute value")?;
        let key: &str = attr.key.as_ref();
        if key == "xmlns" {
            el.ns_decls.push((String::new(), value));
        } else if let Some(p) = key.strip_prefix("xmlns:") {
            if !is_ncname(p) {
                return Err(XmlError::Malformed(format!(
                    "invalid namespace prefix {p:?}"
                )));
            }
            if value.is_empty() {
                return Err(XmlError::Malformed(format!(
                    "prefix {p:?} undeclared with an empty URI"
                )));
            }
            if p == "xmlns" || (p == "xml" && value != XML_NS) || (p != "xml" && value == XML_NS) {
                return Err(XmlError::Malformed(format!(
                    "reserved prefix misuse: xmlns:{p}"
                )));
            }
            el.ns_decls.push((p.to_owned(), value));
        } else {
            let (prefix, local) = split_qname(key)?;
            raw_attrs.push(Attribute {
                prefix,
                local,
                value,
            });
        }
    }
    let scope = if el.ns_decls.is_empty() {
        Rc::clone(parent_scope)
    } else {
        // The parent's scope passed this check, so the copy is at most the cap.
        let grown = push_scope(parent_scope, &el.ns_decls);
        // `xml` is always in scope and does not count.
        if grown.len() > limits.max_namespaces_in_scope + 1 {
            return Err(XmlError::TooManyNamespacesInScope {
                limit: limits.max_namespaces_in_scope,
            });
        }
        Rc::new(grown)
    };
    if let Some(p) = &el.prefix {
        if !scope.contains_key(p) {
            return Err(XmlError::UndeclaredPrefix(p.clone()));
        }
    }
    // Attributes must also be unique by (namespace URI, local name), not just by qualified name.
    let mut resolved: Vec<(&str, &str)> = Vec::with_capacity(raw_attrs.len());
    for a in &raw_attrs {
        let ns = match &a.prefix {
            Some(p) => scope
                .get(p)
                .map(String::as_str)
                .ok_or_else(|| XmlError::UndeclaredPrefix(p.clone()))?,
            None => "",
        };
        if resolved.contains(&(ns, a.local.as_str())) {
            return Err(XmlError::Malformed(format!(
                "duplicate attribute {}",
                a.local
            )));
        }
        resolved.push((ns, a.local.as_str()));
    }
    drop(resolved);
    el.attrs = raw_attrs;
    Ok((el, scope))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::c14n;

    #[test]
    fn parses_namespaces_text_and_entities() {
        let doc = parse_safe("<?xml version=\"1.0\"?><a xmlns=\"urn:a\" xmlns:b=\"urn:b\"><b:c x=\"1&amp;2\">t&lt;&#x41;<![CDATA[<z>]]></b:c></a>").unwrap();
        assert_eq!(doc.root.local, "a");
        let c = doc.element_at(&[0]).unwrap();
        assert_eq!(c.qname(), "b:c");
        assert_eq!(c.attr("x"), Some("1&2"));
        assert_eq!(c.text(), "t<A<z>");
        assert_eq!(doc.namespace_of(&[0]).unwrap(), "urn:b");
        assert_eq!(doc.find_all("urn:b", "c"), vec![vec![0]]);
    }

    /// Found by the `xml_c14n` fuzz target: `<<//>` was read as an empty element named `</`
    /// and NUL bytes as text; canonicalized, they made output that no XML reader accepts (so
    /// canonical bytes no other verifier could reproduce). Names must be NCNames and characters
    /// XML 1.0 `Char`s.
    #[test]
    fn refuses_invalid_names_and_characters() {
        let malformed = |x: &str| matches!(parse_safe(x), Err(XmlError::Malformed(_)));
        let crash = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<HoSo xmlns:x=\"urn:x\">\n -5202<<//>?1\0\0\0\0\0\0\0\0\n</HoSo>\n";
        assert!(malformed(crash), "{:?}", parse_safe(crash));
        for bad in [
            "<a><<//></a>",
            "<a>x\u{0}y</a>",
            "<a>&#1;</a>",
            "<a b=\"\u{1}\"/>",
            "<a><!--\u{7}--></a>",
            "<a>\u{FFFF}</a>",
            "<1a/>",
            "<a 1b=\"x\"/>",
            "<-a/>",
            "<p:/>",
            "<a xmlns:1p=\"urn:p\"/>",
            "<a><?1pi data?></a>",
        ] {
            assert!(
                malformed(bad),
                "{bad:?} was accepted: {:?}",
                parse_safe(bad)
            );
        }
        for good in [
            "<a>\t\r\n ok</a>",
            "<đơn_vị xmlns:p=\"urn:p\" p:mã-số.1=\"\u{10000}\"/>",
            "<_a><?pi-x data?></_a>",
        ] {
            let doc = parse_safe(good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
            let c14n = c14n::canonicalize(&doc, c14n::Algorithm::Inclusive).unwrap();
            parse_safe(std::str::from_utf8(&c14n).unwrap()).unwrap();
        }
    }

    #[test]
    fn refuses_doctype_and_entities() {
        let bomb = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;\">]><lolz>&lol2;</lolz>";
        assert_eq!(parse_safe(bomb), Err(XmlError::DtdForbidden));
        let xxe = "<!DOCTYPE foo [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><foo>&xxe;</foo>";
        assert_eq!(parse_safe(xxe), Err(XmlError::DtdForbidden));
        assert_eq!(
            parse_safe("<foo>&xxe;</foo>"),
            Err(XmlError::UndefinedEntity("xxe".into()))
        );
        assert_eq!(
            parse_safe("<foo a=\"&xxe;\"/>"),
            Err(XmlError::UndefinedEntity("xxe".into()))
        );
    }

    #[test]
    fn enforces_limits() {
        let limits = ParseLimits {
            max_depth: 3,
            ..ParseLimits::default()
        };
        assert_eq!(
            parse_with_limits("<a><b><c><d/></c></b></a>", &limits),
            Err(XmlError::TooDeep { limit: 3 })
        );
        let limits = ParseLimits {
            max_bytes: 10,
            ..ParseLimits::default()
        };
        assert_eq!(
            parse_with_limits("<a>0123456789</a>", &limits),
            Err(XmlError::TooLarge { limit: 10 })
        );
        let limits = ParseLimits {
            max_nodes: 5,
            ..ParseLimits::default()
        };
        assert_eq!(
            parse_with_limits("<a><b/><b/><b/><b/></a>", &limits),
            Err(XmlError::TooManyNodes { limit: 5 })
        );
        let limits = ParseLimits {
            max_attributes: 2,
            ..ParseLimits::default()
        };
        assert_eq!(
            parse_with_limits("<a x=\"1\" y=\"2\" z=\"3\"/>", &limits),
            Err(XmlError::TooManyAttributes { limit: 2 })
        );
    }

    /// Many nested declarations: refused by the in-scope cap (shipped default), and a flood
    /// of sibling declarations by the document cap; a real signed message is far below both.
    #[test]
    fn namespace_declarations_are_capped() {
        let nested: String = (0..100)
            .map(|i| format!("<e{i} xmlns:p{i}=\"urn:x:{i}\">"))
            .chain((0..100).rev().map(|i| format!("</e{i}>")))
            .collect();
        assert_eq!(
            parse_safe(&nested),
            Err(XmlError::TooManyNamespacesInScope { limit: 64 })
        );
        let at_limit: String = (0..64)
            .map(|i| format!("<e{i} xmlns:p{i}=\"urn:x:{i}\">"))
            .chain((0..64).rev().map(|i| format!("</e{i}>")))
            .collect();
        assert!(
            parse_safe(&at_limit).is_ok(),
            "64 prefixes in scope are fine"
        );
        let decl: String = (0..8)
            .map(|i| format!(" xmlns:q{i}=\"urn:q:{i}\""))
            .collect();
        let siblings = format!(
            "<r>{}</r>",
            (0..600).map(|_| format!("<s{decl}/>")).collect::<String>()
        );
        assert_eq!(
            parse_safe(&siblings),
            Err(XmlError::TooManyNamespaceDeclarations { limit: 4_096 })
        );
    }

    #[test]
    fn refuses_malformed_and_undeclared() {
        assert!(matches!(
            parse_safe("<a><b></a>"),
            Err(XmlError::Malformed(_))
        ));
        assert_eq!(
            parse_safe("<p:a/>"),
            Err(XmlError::UndeclaredPrefix("p".into()))
        );
        assert!(matches!(
            parse_safe("<a x=\"1\" x=\"2\"/>"),
            Err(XmlError::Malformed(_))
        ));
        assert!(matches!(
            parse_safe("<a xmlns:p=\"u\" xmlns:q=\"u\" p:x=\"1\" q:x=\"2\"/>"),
            Err(XmlError::Malformed(_))
        ));
        assert!(matches!(
            parse_safe("<a/><b/>"),
            Err(XmlError::Malformed(_))
        ));
        assert_eq!(
            parse_safe("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>"),
            Err(XmlError::UnsupportedEncoding("ISO-8859-1".into()))
        );
    }

    #[test]
    fn ids_must_be_unique() {
        let doc = parse_safe("<r><a Id=\"x\"/><b ID=\"y\"/><c id=\"y\"/></r>").unwrap();
        assert_eq!(doc.find_by_id("x"), Ok(vec![0]));
        assert_eq!(doc.find_by_id("y"), Err(XmlError::DuplicateId("y".into())));
        assert_eq!(doc.find_by_id("z"), Err(XmlError::IdNotFound("z".into())));
    }
}
