//! Safe XML parsing into a small owned tree, the input of canonicalization and XML-DSig.
//!
//! Invariants (every [`Document`] returned by [`parse_safe`] satisfies them):
//! - No DTD: any `<!DOCTYPE` is refused with [`XmlError::DtdForbidden`], so there are no entity
//!   declarations, no external entities (XXE) and no entity expansion bombs ("billion laughs").
//!   Entity references other than the five predefined ones and character references are refused
//!   with [`XmlError::UndefinedEntity`].
//! - Size, nesting depth, node count, attribute count, namespaces in scope and namespace
//!   declarations are capped by [`ParseLimits`].
//! - Input is UTF-8 (a declaration naming another encoding is refused).
//! - Namespace well-formed: every prefix used by an element or attribute is declared, attributes are
//!   unique; the tree keeps each element's own namespace declarations so canonicalization can decide
//!   which ones to render.
//! - Text is stored decoded: entities resolved, line ends normalised to `\n` (XML 1.0 §2.11), CDATA
//!   merged into text; attribute values normalised as CDATA attributes (XML 1.0 §3.3.3).
//!
//! Elements are addressed by a [`NodePath`]: the child indexes from the root element down. Paths are
//! stable as long as the tree is not modified, and are how XML-DSig reports *which* element was signed.
//!
//! Files, each importing only those listed before it (this file declares them and re-exports
//! their public items; nothing imports it back from inside):
//! - `error.rs`: [`XmlError`].
//! - `tree.rs`: the tree ([`Document`], [`Element`], [`Node`], [`Attribute`], [`NodePath`],
//!   [`NsScope`]) and its namespace scopes.
//! - `parse.rs`: [`parse_safe`], [`parse_with_limits`], [`ParseLimits`].
//! - `c14n.rs`: canonicalization, and [`Document::to_xml`].
//! - `stream.rs`: [`stream::parse_stream`], one pass over a `BufRead` that builds the tree
//!   (minus text the caller diverts, such as large base64 payloads) and writes the canonical
//!   form on the fly, for documents too large to hold several times in memory.

pub mod c14n;
mod error;
mod parse;
pub mod stream;
mod tree;

pub use error::XmlError;
pub use parse::{parse_safe, parse_with_limits, ParseLimits, DEFAULT_LIMITS};
pub(crate) use tree::{push_scope, SourceEnd};
pub use tree::{Attribute, Document, Element, Node, NodePath, NsScope, XMLNS_NS, XML_NS};
