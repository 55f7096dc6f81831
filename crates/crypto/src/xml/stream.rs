//! Streaming parse with canonicalization on the fly: [`parse_stream`] reads a document from a
//! `BufRead` once, writes its canonical form (whole document, one of the four C14N algorithms)
//! to a `Write` as it goes (a digest, typically), and builds the same tree as [`super::parse_safe`]
//! except for the text the caller diverts (large base64 payloads) and hands to a
//! [`StreamHandler`] chunk by chunk instead.
//!
//! Invariants:
//! - The same refusals as [`super::parse_with_limits`] (no DTD, no undefined entity, UTF-8 only,
//!   namespace well-formed, XML 1.0 characters, every [`ParseLimits`] cap; `max_bytes` counts the
//!   bytes read from the stream), through the same helpers (`parse.rs`).
//! - The canonical octets written equal what [`super::c14n::canonicalize_document_with`] yields
//!   for the fully parsed document with the excluded elements left out (its `exclude` option),
//!   because both go through the same start-tag, end-tag and escaping code (`c14n.rs`'s writer).
//!   `tests/props_xml.rs` (`streamed_c14n_equals_tree_c14n`) checks that equality on generated
//!   documents, the unit tests below on a corpus of edge cases.
//! - An element the handler excludes stays in the returned tree (the caller reads it: it is the
//!   enveloped signature) but none of it reaches the canonical output; its path is returned.
//! - Diverted text never enters the tree and is written to the canonical output in bounded
//!   chunks: memory does not grow with the diverted text beyond the one text event the XML
//!   reader holds. Only the direct text of a diverted element is diverted; paths of elements
//!   nested inside a diverted element are therefore not those of a full parse (callers divert
//!   leaf elements only).
//! - This file imports the error, tree, parser helpers and canonicalization writer; none of them
//!   imports it.

use std::borrow::Cow;
use std::io::{BufRead, Read, Write};
use std::rc::Rc;

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;
use quick_xml::Reader;

use super::c14n::{escape_text, Algorithm, Options, Writer};
use super::error::XmlError;
use super::parse::{build_element, check_chars, is_name_char, is_name_start_char, normalize_eol};
use super::tree::{initial_scope, Document, Element, Node, NodePath, NsScope, XML_NS};
use super::ParseLimits;

/// What to do with one element, decided by the handler at its start tag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Treatment {
    /// Its direct text goes to [`StreamHandler::text`] instead of the tree.
    pub divert_text: bool,
    /// It and its subtree are left out of the canonical output (kept in the tree). Ignored
    /// for the root element.
    pub exclude: bool,
}

/// The caller's side of [`parse_stream`].
pub trait StreamHandler {
    type Error;
    /// At each start tag: the open ancestors (outermost first), the element (attributes and
    /// namespace declarations read, no children yet) and its namespace URI.
    fn start(
        &mut self,
        ancestors: &[&Element],
        element: &Element,
        namespace: &str,
    ) -> Result<Treatment, Self::Error>;
    /// A piece of a diverted element's text (decoded, line ends normalised), in order.
    fn text(&mut self, chunk: &str) -> Result<(), Self::Error>;
    /// The diverted element ended.
    fn end(&mut self, element: &Element) -> Result<(), Self::Error>;
}

/// A handler that diverts and excludes nothing: [`parse_stream`] is then a plain streaming
/// parse plus canonicalization.
pub struct KeepAll;

impl StreamHandler for KeepAll {
    type Error = std::convert::Infallible;
    fn start(&mut self, _: &[&Element], _: &Element, _: &str) -> Result<Treatment, Self::Error> {
        Ok(Treatment::default())
    }
    fn text(&mut self, _: &str) -> Result<(), Self::Error> {
        Ok(())
    }
    fn end(&mut self, _: &Element) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Why a streamed parse stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError<E> {
    #[error("XML: {0}")]
    Xml(#[from] XmlError),
    #[error("reading the document: {0}")]
    Read(std::io::Error),
    #[error("writing the canonical form: {0}")]
    Write(std::io::Error),
    /// The handler refused (its own error, unchanged).
    #[error("refused by the handler")]
    Handler(E),
}

/// What [`parse_stream`] returns.
#[derive(Debug)]
pub struct Streamed {
    /// The tree, without diverted text.
    pub document: Document,
    /// Paths (in `document`) of the elements left out of the canonical output, in order.
    pub excluded: Vec<NodePath>,
    /// Bytes read from the stream.
    pub bytes_read: u64,
}

/// Canonical output is flushed to the sink whenever this much has accumulated, and diverted
/// text is escaped in pieces of this size.
const CHUNK: usize = 64 * 1024;

struct Frame {
    element: Element,
    scope: Rc<NsScope>,
    /// Namespaces rendered by output ancestors once this element is open (exclusive C14N's
    /// "already rendered" state).
    rendered: Rc<NsScope>,
    excluded: bool,
    diverted: bool,
}

/// A reader that fails once more than `limit` bytes were asked of it.
struct Capped<R> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R: BufRead> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.fill_buf()?.len().min(buf.len());
        buf[..n].copy_from_slice(&self.fill_buf()?[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Capped<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        let buf = self.inner.fill_buf()?;
        if !buf.is_empty() && self.read >= self.limit {
            return Err(std::io::Error::other(TooLargeMarker));
        }
        Ok(buf)
    }
    fn consume(&mut self, amt: usize) {
        self.read += amt as u64;
        self.inner.consume(amt);
    }
}

#[derive(Debug)]
struct TooLargeMarker;
impl std::fmt::Display for TooLargeMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("size limit reached")
    }
}
impl std::error::Error for TooLargeMarker {}

/// Parses `input` once: builds the tree (minus diverted text), writes the canonical form of the
/// whole document (minus excluded elements) with `algorithm` to `c14n_out`.
pub fn parse_stream<R: BufRead, H: StreamHandler>(
    input: R,
    algorithm: Algorithm,
    limits: &ParseLimits,
    handler: &mut H,
    c14n_out: &mut dyn Write,
) -> Result<Streamed, StreamError<H::Error>> {
    let mut capped = Capped {
        inner: input,
        read: 0,
        limit: limits.max_bytes as u64,
    };
    // A byte-order mark is not part of the document.
    {
        let head = capped.fill_buf().map_err(|e| read_error(e, limits))?;
        if head.starts_with(b"\xEF\xBB\xBF") {
            capped.consume(3);
        }
    }
    let mut reader = Reader::from_reader(capped);
    {
        let cfg = reader.config_mut();
        cfg.expand_empty_elements = true;
        cfg.check_end_names = true;
        cfg.check_comments = true;
        cfg.trim_text(false);
    }
    let opts = Options::default();
    let mut w = Writer::new(algorithm, &opts);
    let mut prolog = Vec::new();
    let mut epilog = Vec::new();
    let mut root: Option<Element> = None;
    let mut stack: Vec<Frame> = Vec::new();
    let mut excluded: Vec<NodePath> = Vec::new();
    let outer_scope = Rc::new(initial_scope());
    let outer_rendered = Rc::new(NsScope::new());
    let mut nodes = 0usize;
    let mut ns_decls = 0usize;
    let mut buf: Vec<u8> = Vec::new();

    loop {
        buf.clear();
        let ev = match reader.read_event_into(&mut buf) {
            Ok(ev) => ev,
            Err(quick_xml::Error::Io(e)) => {
                return Err(read_error(
                    std::sync::Arc::try_unwrap(e).unwrap_or_else(std::io::Error::other),
                    limits,
                ))
            }
            Err(e) => {
                return Err(
                    XmlError::Malformed(format!("{e} at byte {}", reader.error_position())).into(),
                )
            }
        };
        nodes += 1;
        if nodes > limits.max_nodes {
            return Err(XmlError::TooManyNodes {
                limit: limits.max_nodes,
            }
            .into());
        }
        match ev {
            Event::DocType(_) => return Err(XmlError::DtdForbidden.into()),
            Event::Decl(d) => {
                if let Some(enc) = d.encoding() {
                    let enc = enc.map_err(|e| XmlError::Malformed(e.to_string()))?;
                    if !enc.eq_ignore_ascii_case("utf-8") && !enc.eq_ignore_ascii_case("utf8") {
                        return Err(XmlError::UnsupportedEncoding(enc.into_owned()).into());
                    }
                }
            }
            Event::Start(s) => {
                if stack.len() >= limits.max_depth {
                    return Err(XmlError::TooDeep {
                        limit: limits.max_depth,
                    }
                    .into());
                }
                if stack.is_empty() && root.is_some() {
                    return Err(XmlError::Malformed("more than one root element".into()).into());
                }
                let (parent_scope, parent_rendered, parent_excluded) = match stack.last() {
                    Some(f) => (Rc::clone(&f.scope), Rc::clone(&f.rendered), f.excluded),
                    None => (Rc::clone(&outer_scope), Rc::clone(&outer_rendered), false),
                };
                let (el, scope) = build_element(&s, &parent_scope, limits)?;
                ns_decls += el.ns_decls.len();
                if ns_decls > limits.max_namespace_declarations {
                    return Err(XmlError::TooManyNamespaceDeclarations {
                        limit: limits.max_namespace_declarations,
                    }
                    .into());
                }
                let ns = match el.prefix.as_deref() {
                    Some("xml") => XML_NS.to_owned(),
                    p => scope.get(p.unwrap_or("")).cloned().unwrap_or_default(),
                };
                let treatment = {
                    let ancestors: Vec<&Element> = stack.iter().map(|f| &f.element).collect();
                    handler
                        .start(&ancestors, &el, &ns)
                        .map_err(StreamError::Handler)?
                };
                // The root is never excluded: an empty canonical form would sign nothing.
                let exclude = treatment.exclude && !stack.is_empty();
                let excluded_here = parent_excluded || exclude;
                if exclude && !parent_excluded {
                    excluded.push(stack.iter().map(|f| f.element.children.len()).collect());
                }
                let rendered = if excluded_here {
                    parent_rendered
                } else {
                    match w.start_tag(&el, &scope, &parent_rendered, &[]) {
                        Cow::Borrowed(_) => Rc::clone(&parent_rendered),
                        Cow::Owned(r) => Rc::new(r),
                    }
                };
                stack.push(Frame {
                    element: el,
                    scope,
                    rendered,
                    excluded: excluded_here,
                    diverted: treatment.divert_text,
                });
            }
            Event::End(_) => {
                let f = stack
                    .pop()
                    .ok_or_else(|| XmlError::Malformed("unexpected end tag".into()))?;
                if !f.excluded {
                    w.end_tag(&f.element);
                }
                if f.diverted {
                    handler.end(&f.element).map_err(StreamError::Handler)?;
                }
                match stack.last_mut() {
                    Some(parent) => parent.element.children.push(Node::Element(f.element)),
                    None => root = Some(f.element),
                }
            }
            Event::Empty(_) => unreachable!("expand_empty_elements is on"),
            Event::Text(t) => {
                let text = t.xml10_content();
                text_event(&mut stack, &text, &mut w, handler, c14n_out)?;
            }
            Event::CData(t) => {
                let text = t.xml10_content();
                text_event(&mut stack, &text, &mut w, handler, c14n_out)?;
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
                    Err(e) => return Err(XmlError::Malformed(e.to_string()).into()),
                };
                text_event(&mut stack, &resolved, &mut w, handler, c14n_out)?;
            }
            Event::Comment(c) => {
                let text = c.xml10_content().into_owned();
                check_chars(&text, "comment")?;
                misc(
                    &mut stack,
                    &root,
                    &mut prolog,
                    &mut epilog,
                    Node::Comment(text),
                    &mut w,
                );
            }
            Event::PI(p) => {
                let target = p.target().to_owned();
                if target.eq_ignore_ascii_case("xml") {
                    return Err(XmlError::Malformed("misplaced XML declaration".into()).into());
                }
                let name_ok = target
                    .chars()
                    .next()
                    .is_some_and(|c| is_name_start_char(c) || c == ':')
                    && target.chars().all(|c| is_name_char(c) || c == ':');
                if !name_ok {
                    return Err(XmlError::Malformed(format!(
                        "invalid processing instruction target {target:?}"
                    ))
                    .into());
                }
                let data = normalize_eol(p.content().trim_start());
                check_chars(&data, "processing instruction")?;
                misc(
                    &mut stack,
                    &root,
                    &mut prolog,
                    &mut epilog,
                    Node::Pi { target, data },
                    &mut w,
                );
            }
            Event::Eof => break,
        }
        if w.out.len() >= CHUNK || stack.is_empty() {
            flush(&mut w, c14n_out)?;
        }
    }
    flush(&mut w, c14n_out)?;
    if !stack.is_empty() {
        return Err(XmlError::Malformed("unclosed element at end of input".into()).into());
    }
    let root = root.ok_or_else(|| XmlError::Malformed("no root element".into()))?;
    let bytes_read = reader.get_ref().read;
    Ok(Streamed {
        document: Document::assemble(prolog, root, epilog),
        excluded,
        bytes_read,
    })
}

fn read_error<E>(e: std::io::Error, limits: &ParseLimits) -> StreamError<E> {
    if e.get_ref().is_some_and(|i| i.is::<TooLargeMarker>()) {
        StreamError::Xml(XmlError::TooLarge {
            limit: limits.max_bytes,
        })
    } else {
        StreamError::Read(e)
    }
}

fn flush<E>(w: &mut Writer<'_>, out: &mut dyn Write) -> Result<(), StreamError<E>> {
    if !w.out.is_empty() {
        out.write_all(&w.out).map_err(StreamError::Write)?;
        w.out.clear();
    }
    Ok(())
}

fn text_event<H: StreamHandler>(
    stack: &mut [Frame],
    text: &str,
    w: &mut Writer<'_>,
    handler: &mut H,
    out: &mut dyn Write,
) -> Result<(), StreamError<H::Error>> {
    check_chars(text, "character data")?;
    let Some(f) = stack.last_mut() else {
        if text.chars().all(|c| matches!(c, ' ' | '\t' | '\n' | '\r')) {
            return Ok(());
        }
        return Err(XmlError::Malformed("character data outside the root element".into()).into());
    };
    if f.diverted {
        handler.text(text).map_err(StreamError::Handler)?;
    } else if let Some(Node::Text(prev)) = f.element.children.last_mut() {
        prev.push_str(text);
    } else if !text.is_empty() {
        f.element.children.push(Node::Text(text.to_owned()));
    }
    if !f.excluded {
        // Escaped piece by piece (on char boundaries) so a large text is never copied whole.
        let mut rest = text;
        while !rest.is_empty() {
            let mut cut = rest.len().min(CHUNK);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            escape_text(&rest[..cut], &mut w.out);
            rest = &rest[cut..];
            if w.out.len() >= CHUNK {
                flush(w, out)?;
            }
        }
    }
    Ok(())
}

fn misc(
    stack: &mut [Frame],
    root: &Option<Element>,
    prolog: &mut Vec<Node>,
    epilog: &mut Vec<Node>,
    node: Node,
    w: &mut Writer<'_>,
) {
    match stack.last_mut() {
        Some(f) => {
            if !f.excluded {
                w.write_misc(&node);
            }
            f.element.children.push(node);
        }
        None if root.is_none() => {
            if w.write_misc(&node) {
                w.out.push(b'\n');
            }
            prolog.push(node);
        }
        None => {
            if w.is_rendered_misc(&node) {
                w.out.push(b'\n');
                w.write_misc(&node);
            }
            epilog.push(node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::c14n::canonicalize_document_with;
    use crate::xml::{parse_safe, DEFAULT_LIMITS};

    fn both(xml: &str, alg: Algorithm) -> (Vec<u8>, Vec<u8>) {
        let mut out = Vec::new();
        let s = parse_stream(xml.as_bytes(), alg, &DEFAULT_LIMITS, &mut KeepAll, &mut out).unwrap();
        let tree = parse_safe(xml).unwrap();
        assert_eq!(s.document.root, tree.root, "{xml}");
        assert_eq!(s.document.prolog, tree.prolog);
        assert_eq!(s.document.epilog, tree.epilog);
        let want = canonicalize_document_with(&tree, alg, &Options::default()).unwrap();
        (out, want)
    }

    /// Edge cases beside the property test: BOM, CRLF, CDATA, character references,
    /// prolog and epilog comments and PIs, nested default namespaces, `xml:` attributes,
    /// Vietnamese text, a text longer than the flush chunk.
    #[test]
    fn corpus_streams_like_the_tree() {
        let long = "Văn bản ".repeat(20_000);
        let corpus = [
            "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<?pi  a b ?><!-- c --><r>x\r\ny</r><!-- e --><?end?>".to_owned(),
            "<r xmlns=\"urn:a\" xml:lang=\"vi\"><s xmlns=\"\"><t xmlns=\"urn:b\" a=\"1\">&#13;&amp;&#x41;<![CDATA[<&>]]></t></s></r>".to_owned(),
            "<p:r xmlns:p=\"urn:p\" xmlns:q=\"urn:q\"><q:x p:a=\"t\tab\" b=\"&quot;\"/><y/></p:r>".to_owned(),
            format!("<r><big>{long}</big><!--x--><?p?></r>"),
        ];
        for xml in &corpus {
            for alg in [
                Algorithm::Exclusive,
                Algorithm::ExclusiveWithComments,
                Algorithm::Inclusive,
                Algorithm::InclusiveWithComments,
            ] {
                let (got, want) = both(xml, alg);
                assert_eq!(got, want, "{alg:?} {}", &xml[..xml.len().min(80)]);
            }
        }
    }

    #[test]
    fn refuses_what_the_tree_parser_refuses() {
        for bad in [
            "<!DOCTYPE r><r/>",
            "<r>&x;</r>",
            "<p:r/>",
            "<r><s></r>",
            "<?xml version=\"1.0\" encoding=\"latin1\"?><r/>",
            "<r/><s/>",
            "<r>\u{1}</r>",
            "",
        ] {
            let mut out = Vec::new();
            let got = parse_stream(
                bad.as_bytes(),
                Algorithm::Exclusive,
                &DEFAULT_LIMITS,
                &mut KeepAll,
                &mut out,
            );
            let tree = parse_safe(bad);
            assert!(got.is_err() && tree.is_err(), "{bad:?}: {got:?} / {tree:?}");
            if let (Err(StreamError::Xml(a)), Err(b)) = (got, tree) {
                assert_eq!(
                    std::mem::discriminant(&a),
                    std::mem::discriminant(&b),
                    "{bad:?}"
                );
            }
        }
        let limits = ParseLimits {
            max_bytes: 100,
            ..DEFAULT_LIMITS
        };
        let big = format!("<r>{}</r>", "x".repeat(500));
        let got = parse_stream(
            big.as_bytes(),
            Algorithm::Exclusive,
            &limits,
            &mut KeepAll,
            &mut Vec::new(),
        );
        assert!(
            matches!(
                got,
                Err(StreamError::Xml(XmlError::TooLarge { limit: 100 }))
            ),
            "{got:?}"
        );
    }
}
