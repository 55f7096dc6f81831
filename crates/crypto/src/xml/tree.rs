//! The owned XML tree: [`Document`], [`Element`], [`Node`], [`Attribute`], addressed by
//! [`NodePath`], with the namespace scopes ([`NsScope`]) canonicalization and XML-DSig need.
//!
//! Invariants:
//! - This file imports only [`super::error`]: the parser ([`super::parse`]) builds trees and
//!   canonicalization ([`super::c14n`]) reads them, and neither is imported back.
//! - A [`NodePath`] is the child indexes from the root element down; it stays valid as long as the
//!   tree is not modified.
//! - An element keeps only its own namespace declarations; the scope in force at an element is
//!   [`initial_scope`] (the `xml` prefix) plus every declaration from the root down
//!   ([`Document::scope_at`]).
//! - [`Document::source`] is set only by the parser, for the exact text it parsed; a caller
//!   splicing into text checks the length first ([`Document::source_end`]).

use std::collections::BTreeMap;

use super::error::XmlError;

/// Namespace bound to the `xml` prefix by definition.
pub const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";
/// Namespace of `xmlns` declarations (never declared explicitly).
pub const XMLNS_NS: &str = "http://www.w3.org/2000/xmlns/";

/// A parsed document: the root element plus comments and processing instructions around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Comments and PIs before the root element.
    pub prolog: Vec<Node>,
    pub root: Element,
    /// Comments and PIs after the root element.
    pub epilog: Vec<Node>,
    /// Where the root and every element carrying an Id end in the parsed input, so a signature can be
    /// spliced into the original text instead of re-serialising the document.
    pub(crate) source: Option<SourceMap>,
}

/// Byte positions in the parsed input (see [`Document::source`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceMap {
    /// Length of the input the positions refer to.
    pub(crate) len: usize,
    pub(crate) ends: Vec<(NodePath, SourceEnd)>,
}

/// How an element ends in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceEnd {
    /// Offset of the `</` of its end tag.
    EndTag(usize),
    /// Offset just after the `/>` of its empty-element tag.
    SelfClosing(usize),
}

/// One node of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    /// Decoded character data (adjacent text and CDATA are merged).
    Text(String),
    Comment(String),
    Pi {
        target: String,
        data: String,
    },
}

/// An element with its own namespace declarations and attributes, in document order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub prefix: Option<String>,
    pub local: String,
    /// Declarations made on this element: (prefix, URI); the prefix is `""` for the default namespace.
    pub ns_decls: Vec<(String, String)>,
    /// Attributes other than namespace declarations.
    pub attrs: Vec<Attribute>,
    pub children: Vec<Node>,
}

/// A (non-`xmlns`) attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub prefix: Option<String>,
    pub local: String,
    pub value: String,
}

/// Child indexes from the root element down to an element; the empty path is the root.
pub type NodePath = Vec<usize>;

/// In-scope namespaces: prefix (`""` = default) to URI; an empty URI means "no default namespace".
pub type NsScope = BTreeMap<String, String>;

impl Element {
    /// A new element without namespace declarations, attributes or children.
    pub fn new(prefix: Option<&str>, local: &str) -> Self {
        Element {
            prefix: prefix.map(str::to_owned),
            local: local.to_owned(),
            ..Element::default()
        }
    }

    /// The qualified name as written (`prefix:local` or `local`).
    pub fn qname(&self) -> String {
        match &self.prefix {
            Some(p) => format!("{p}:{}", self.local),
            None => self.local.clone(),
        }
    }

    /// Value of the unprefixed attribute `local`.
    pub fn attr(&self, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.prefix.is_none() && a.local == local)
            .map(|a| a.value.as_str())
    }

    /// Child elements, in order, with their index among `children`.
    pub fn child_elements(&self) -> impl Iterator<Item = (usize, &Element)> {
        self.children
            .iter()
            .enumerate()
            .filter_map(|(i, n)| match n {
                Node::Element(e) => Some((i, e)),
                _ => None,
            })
    }

    /// Concatenated text of the direct text children.
    pub fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|n| match n {
                Node::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The value of an identifier attribute: unprefixed `Id`, `ID` or `id`.
    pub fn id_attr(&self) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.prefix.is_none() && matches!(a.local.as_str(), "Id" | "ID" | "id"))
            .map(|a| a.value.as_str())
    }
}

/// Namespace scope after applying `decls` on top of `parent`.
pub(crate) fn push_scope(parent: &NsScope, decls: &[(String, String)]) -> NsScope {
    let mut scope = parent.clone();
    for (p, uri) in decls {
        scope.insert(p.clone(), uri.clone());
    }
    scope
}

/// The scope in force outside the root element.
pub(crate) fn initial_scope() -> NsScope {
    let mut s = NsScope::new();
    s.insert("xml".to_owned(), XML_NS.to_owned());
    s
}

impl Document {
    /// A document built other than by parsing text (no source positions).
    pub(crate) fn assemble(prolog: Vec<Node>, root: Element, epilog: Vec<Node>) -> Self {
        Document {
            prolog,
            root,
            epilog,
            source: None,
        }
    }

    /// The element at `path`, if any.
    pub fn element_at(&self, path: &[usize]) -> Option<&Element> {
        let mut el = &self.root;
        for &i in path {
            el = match el.children.get(i)? {
                Node::Element(e) => e,
                _ => return None,
            };
        }
        Some(el)
    }

    /// Mutable access to the element at `path`, if any.
    pub fn element_at_mut(&mut self, path: &[usize]) -> Option<&mut Element> {
        let mut el = &mut self.root;
        for &i in path {
            el = match el.children.get_mut(i)? {
                Node::Element(e) => e,
                _ => return None,
            };
        }
        Some(el)
    }

    /// Namespaces in scope *on* the element at `path` (its own declarations included).
    pub fn scope_at(&self, path: &[usize]) -> Option<NsScope> {
        let mut scope = push_scope(&initial_scope(), &self.root.ns_decls);
        let mut el = &self.root;
        for &i in path {
            el = match el.children.get(i)? {
                Node::Element(e) => e,
                _ => return None,
            };
            scope = push_scope(&scope, &el.ns_decls);
        }
        Some(scope)
    }

    /// Namespace URI of the element at `path` (`""` when it has none).
    pub fn namespace_of(&self, path: &[usize]) -> Option<String> {
        let el = self.element_at(path)?;
        let scope = self.scope_at(path)?;
        let key = el.prefix.clone().unwrap_or_default();
        Some(scope.get(&key).cloned().unwrap_or_default())
    }

    /// Paths of all elements with namespace `ns` and local name `local`, in document order.
    pub fn find_all(&self, ns: &str, local: &str) -> Vec<NodePath> {
        fn walk(
            el: &Element,
            scope: &NsScope,
            path: &mut NodePath,
            ns: &str,
            local: &str,
            out: &mut Vec<NodePath>,
        ) {
            let scope = push_scope(scope, &el.ns_decls);
            let el_ns = scope
                .get(el.prefix.as_deref().unwrap_or(""))
                .map(String::as_str)
                .unwrap_or("");
            if el.local == local && el_ns == ns {
                out.push(path.clone());
            }
            for (i, child) in el.child_elements() {
                path.push(i);
                walk(child, &scope, path, ns, local, out);
                path.pop();
            }
        }
        let mut out = Vec::new();
        walk(
            &self.root,
            &initial_scope(),
            &mut Vec::new(),
            ns,
            local,
            &mut out,
        );
        out
    }

    /// The single element whose `Id`, `ID` or `id` attribute equals `id`.
    ///
    /// Refuses an Id carried by more than one element ([`XmlError::DuplicateId`]): with duplicates, which
    /// element a reference means is ambiguous, the classic signature-wrapping opening.
    pub fn find_by_id(&self, id: &str) -> Result<NodePath, XmlError> {
        fn walk(el: &Element, path: &mut NodePath, id: &str, out: &mut Vec<NodePath>) {
            let hits = el
                .attrs
                .iter()
                .filter(|a| {
                    a.prefix.is_none()
                        && matches!(a.local.as_str(), "Id" | "ID" | "id")
                        && a.value == id
                })
                .count();
            for _ in 0..hits {
                out.push(path.clone());
            }
            for (i, child) in el.child_elements() {
                path.push(i);
                walk(child, path, id, out);
                path.pop();
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut Vec::new(), id, &mut out);
        match out.len() {
            0 => Err(XmlError::IdNotFound(id.to_owned())),
            1 => Ok(out.remove(0)),
            _ => Err(XmlError::DuplicateId(id.to_owned())),
        }
    }

    /// Where the element at `path` (the root, or one carrying an Id) ends in the text it was parsed
    /// from, if this document was parsed from text of `len` bytes.
    pub(crate) fn source_end(&self, path: &[usize], len: usize) -> Option<SourceEnd> {
        let map = self.source.as_ref().filter(|m| m.len == len)?;
        map.ends.iter().find(|(p, _)| p == path).map(|(_, e)| *e)
    }
}
