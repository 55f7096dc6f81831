//! What can go wrong while parsing or addressing XML: [`XmlError`], shared by the parser, the
//! tree's lookups and canonicalization.
//!
//! Invariants:
//! - This file imports nothing else of the `xml` module, so every other file of it may import it
//!   without making a circle.
//! - One variant per refusal; each message names the cap or the name involved, never the
//!   document's content beyond that.

/// Everything that can go wrong while parsing or addressing XML.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XmlError {
    #[error("XML is not well-formed: {0}")]
    Malformed(String),
    #[error("DOCTYPE/DTD is forbidden (no entity declarations, no external entities)")]
    DtdForbidden,
    #[error("entity reference &{0}; is not predefined (DTDs and entity declarations are refused)")]
    UndefinedEntity(String),
    #[error("document is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("elements nested deeper than the limit of {limit}")]
    TooDeep { limit: usize },
    #[error("more than {limit} nodes")]
    TooManyNodes { limit: usize },
    #[error("more than {limit} attributes on one element")]
    TooManyAttributes { limit: usize },
    #[error("more than {limit} namespace prefixes in scope")]
    TooManyNamespacesInScope { limit: usize },
    #[error("more than {limit} namespace declarations")]
    TooManyNamespaceDeclarations { limit: usize },
    #[error("undeclared namespace prefix {0:?}")]
    UndeclaredPrefix(String),
    #[error("encoding {0:?} is not supported, only UTF-8")]
    UnsupportedEncoding(String),
    #[error("no element has Id {0:?}")]
    IdNotFound(String),
    #[error("Id {0:?} appears on more than one element")]
    DuplicateId(String),
}
