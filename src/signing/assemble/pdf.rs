//! PAdES: the PDF reader and the incremental update that carries a signature.
//!
//! # Invariants
//! - The original bytes are never changed: the signed PDF is the document, then (if it did not
//!   end with a line end) one `\n`, then one incremental update. Earlier signatures stay valid.
//! - The update adds a signature dictionary (`/Filter /Adobe.PPKLite /SubFilter
//!   /ETSI.CAdES.detached`, `/M`, optional `/Reason` and `/Location`), an invisible signature
//!   field that is also its widget (`/Rect [0 0 0 0]` on the first page), and new versions of the
//!   objects that must point at it (the catalog or its `/AcroForm`, the page or its `/Annots`).
//!   Its `/ByteRange` is exact when prepared: it covers the whole file but the `/Contents` hex
//!   string, whose size is fixed then, so the digest over the ranges is known before the
//!   signature exists and `finish` only writes the CMS's hex into the gap.
//! - Only what is understood is written. Read: classic cross-reference tables, cross-reference
//!   streams (PDF 1.5+, FlateDecode with or without a PNG predictor), hybrid files
//!   (`/XRefStm`), objects inside object streams, through every `/Prev`. The update's own
//!   cross-reference is of the kind the newest section is (a table, or an uncompressed stream
//!   with its own entry). An encrypted file, another stream filter (LZW, ...), or a catalog,
//!   page or form that cannot be read is refused with [`PdfError::Unsupported`] or
//!   [`PdfError::Malformed`] naming what, never rewritten approximately. Objects that lived in
//!   an object stream are rewritten as plain objects.
//! - A document certified with "no changes allowed" (DocMDP `/P 1`) is refused: a signature
//!   would break its certification. Other certifications allow a signature.
//! - Decoded streams are capped at 64 MiB; section chains at 256; nesting at 64. Hostile input
//!   gives an error, never a panic (property-tested).
//! - The widget is invisible (`/Rect [0 0 0 0]`, first page) unless a visible signature is
//!   asked for: then it has the given rectangle on the given page and an `/AP /N` appearance
//!   (`appearance.rs`: the signer's name, the time and the reason in an embedded font subset),
//!   written in the same update, before the signature dictionary, so the signature covers it.
//! - Objects are read by a small tokenizer; strings, names and numbers of the objects that are
//!   rewritten are copied as their source text, so nothing in them is re-encoded.

use std::collections::BTreeMap;

use super::appearance::{self, AppearanceError, Visible};
use super::signer::DigestAlgorithm;

/// Why a PDF could not be prepared or finished; one variant per kind of refusal.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("{0}")]
    NotPdf(String),
    #[error("unsupported PDF: {0}")]
    Unsupported(String),
    #[error("malformed PDF: {0}")]
    Malformed(String),
    #[error(
        "the CMS ({need} bytes) does not fit the /Contents reserved at prepare ({have} bytes)"
    )]
    ContentsTooSmall { need: usize, have: usize },
    #[error("stored update does not fit this document: {0}")]
    StoredUpdate(String),
    #[error("digest: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
    #[error("visible signature: {0}")]
    Appearance(#[from] AppearanceError),
}

fn malformed(what: impl Into<String>) -> PdfError {
    PdfError::Malformed(what.into())
}

// ---------------------------------------------------------------- objects

/// A PDF object as read; scalar tokens keep their source text.
#[derive(Debug, Clone, PartialEq)]
enum Obj {
    /// A number, boolean, null, name or string: the exact source text.
    Atom(Vec<u8>),
    Ref(u32, u16),
    Array(Vec<Obj>),
    Dict(Vec<(Vec<u8>, Obj)>),
}

impl Obj {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Obj::Atom(t) => out.extend_from_slice(t),
            Obj::Ref(n, g) => out.extend_from_slice(format!("{n} {g} R").as_bytes()),
            Obj::Array(items) => {
                out.push(b'[');
                for (i, o) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    o.write(out);
                }
                out.push(b']');
            }
            Obj::Dict(entries) => {
                out.extend_from_slice(b"<<");
                for (k, v) in entries {
                    out.extend_from_slice(k);
                    out.push(b' ');
                    v.write(out);
                    out.push(b'\n');
                }
                out.extend_from_slice(b">>");
            }
        }
    }
    fn get(&self, key: &[u8]) -> Option<&Obj> {
        match self {
            Obj::Dict(e) => e.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn set(&mut self, key: &[u8], value: Obj) {
        if let Obj::Dict(e) = self {
            match e.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = value,
                None => e.push((key.to_vec(), value)),
            }
        }
    }
    fn is_name(&self, name: &[u8]) -> bool {
        matches!(self, Obj::Atom(t) if t == name)
    }
    fn as_int(&self) -> Option<i64> {
        match self {
            Obj::Atom(t) => std::str::from_utf8(t).ok()?.parse().ok(),
            _ => None,
        }
    }
}

fn is_white(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'\x0c' | b'\0')
}

fn is_delim(b: u8) -> bool {
    matches!(
        b,
        b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
    )
}

/// A cursor over the file's bytes.
struct Lexer<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn at(buf: &'a [u8], pos: usize) -> Self {
        Lexer {
            buf,
            pos: pos.min(buf.len()),
        }
    }
    fn skip_ws(&mut self) {
        while self.pos < self.buf.len() {
            let b = self.buf[self.pos];
            if is_white(b) {
                self.pos += 1;
            } else if b == b'%' {
                while self.pos < self.buf.len() && !matches!(self.buf[self.pos], b'\r' | b'\n') {
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.buf.get(self.pos).copied()
    }
    /// A regular token (keyword or number) without consuming anything else.
    fn word(&mut self) -> &'a [u8] {
        self.skip_ws();
        let start = self.pos;
        while self.pos < self.buf.len()
            && !is_white(self.buf[self.pos])
            && !is_delim(self.buf[self.pos])
        {
            self.pos += 1;
        }
        &self.buf[start..self.pos]
    }
    fn expect_word(&mut self, w: &[u8]) -> Result<(), PdfError> {
        let at = self.pos;
        let got = self.word();
        if got == w {
            Ok(())
        } else {
            Err(malformed(format!(
                "expected `{}` at byte {at}, found `{}`",
                String::from_utf8_lossy(w),
                String::from_utf8_lossy(&got[..got.len().min(20)])
            )))
        }
    }
    fn uint(&mut self) -> Result<u64, PdfError> {
        let at = self.pos;
        let w = self.word();
        std::str::from_utf8(w)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| malformed(format!("expected a number at byte {at}")))
    }

    fn object(&mut self, depth: usize) -> Result<Obj, PdfError> {
        if depth > 64 {
            return Err(malformed("objects nested deeper than 64"));
        }
        let start = {
            self.skip_ws();
            self.pos
        };
        let Some(b) = self.buf.get(self.pos).copied() else {
            return Err(malformed("unexpected end of file in an object"));
        };
        match b {
            b'<' if self.buf.get(self.pos + 1) == Some(&b'<') => {
                self.pos += 2;
                let mut entries = Vec::new();
                loop {
                    match self.peek() {
                        Some(b'>') if self.buf.get(self.pos + 1) == Some(&b'>') => {
                            self.pos += 2;
                            return Ok(Obj::Dict(entries));
                        }
                        Some(b'/') => {
                            let key = self.name();
                            let value = self.object(depth + 1)?;
                            entries.push((key, value));
                        }
                        _ => return Err(malformed(format!("bad dictionary at byte {start}"))),
                    }
                }
            }
            b'<' => {
                let end = self.buf[self.pos..]
                    .iter()
                    .position(|&c| c == b'>')
                    .ok_or_else(|| malformed("unterminated hex string"))?;
                self.pos += end + 1;
                Ok(Obj::Atom(self.buf[start..self.pos].to_vec()))
            }
            b'(' => {
                let mut level = 0usize;
                while self.pos < self.buf.len() {
                    match self.buf[self.pos] {
                        b'\\' => self.pos += 1,
                        b'(' => level += 1,
                        b')' => {
                            level -= 1;
                            if level == 0 {
                                self.pos += 1;
                                return Ok(Obj::Atom(self.buf[start..self.pos].to_vec()));
                            }
                        }
                        _ => {}
                    }
                    self.pos += 1;
                }
                Err(malformed("unterminated string"))
            }
            b'[' => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    match self.peek() {
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Obj::Array(items));
                        }
                        Some(_) => items.push(self.object(depth + 1)?),
                        None => return Err(malformed("unterminated array")),
                    }
                }
            }
            b'/' => Ok(Obj::Atom(self.name())),
            _ => {
                let w = self.word();
                if w.is_empty() {
                    return Err(malformed(format!(
                        "unexpected `{}` at byte {start}",
                        b as char
                    )));
                }
                // `n g R` is a reference.
                if w.iter().all(u8::is_ascii_digit) {
                    let save = self.pos;
                    let g = self.word();
                    if !g.is_empty() && g.iter().all(u8::is_ascii_digit) && self.word() == b"R" {
                        let n = parse_num(w).ok_or_else(|| malformed("object number"))?;
                        let g = parse_num(g).ok_or_else(|| malformed("generation"))?;
                        return Ok(Obj::Ref(n as u32, g as u16));
                    }
                    self.pos = save;
                }
                Ok(Obj::Atom(w.to_vec()))
            }
        }
    }
    fn name(&mut self) -> Vec<u8> {
        let start = self.pos;
        self.pos += 1;
        while self.pos < self.buf.len()
            && !is_white(self.buf[self.pos])
            && !is_delim(self.buf[self.pos])
        {
            self.pos += 1;
        }
        self.buf[start..self.pos].to_vec()
    }
}

fn parse_num(w: &[u8]) -> Option<u64> {
    std::str::from_utf8(w).ok()?.parse().ok()
}

// ---------------------------------------------------------------- reading

/// Where an object lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loc {
    /// At a byte offset, with its generation.
    Offset(usize, u16),
    /// The `index`-th object of the object stream `stream` (generation 0).
    InStream { stream: u32, index: usize },
    /// Freed by a newer section: older entries of the same number are dead.
    Free,
}

/// The parts of a PDF the update needs.
struct Pdf<'a> {
    buf: &'a [u8],
    /// Object number → where it is; the newest section's entry wins.
    locations: BTreeMap<u32, Loc>,
    trailer: Obj,
    startxref: usize,
    /// The newest section is a cross-reference stream: the update writes one too.
    xref_stream: bool,
}

fn find_last(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// Largest decoded stream accepted (cross-reference and object streams): 64 MiB.
const MAX_DECODED: u64 = 64 << 20;

/// The decoded data of a stream whose dictionary is `dict` and whose `stream` keyword ends at
/// `pos` (no filter, or `/FlateDecode` with an optional PNG predictor).
fn stream_data(buf: &[u8], dict: &Obj, mut pos: usize) -> Result<Vec<u8>, PdfError> {
    // The keyword is followed by CRLF or LF.
    if buf.get(pos) == Some(&b'\r') {
        pos += 1;
    }
    if buf.get(pos) == Some(&b'\n') {
        pos += 1;
    }
    let raw = match dict.get(b"/Length").and_then(Obj::as_int) {
        Some(len)
            if len >= 0
                && pos
                    .checked_add(len as usize)
                    .is_some_and(|end| end <= buf.len()) =>
        {
            &buf[pos..pos + len as usize]
        }
        // An indirect /Length: up to `endstream`.
        _ => {
            let end = buf[pos..]
                .windows(9)
                .position(|w| w == b"endstream")
                .ok_or_else(|| malformed("stream without endstream"))?;
            &buf[pos..pos + end]
        }
    };
    let filters: Vec<Obj> = match dict.get(b"/Filter") {
        None => Vec::new(),
        Some(Obj::Array(a)) => a.clone(),
        Some(f) => vec![f.clone()],
    };
    let data = match filters.as_slice() {
        [] => raw.to_vec(),
        [f] if f.is_name(b"/FlateDecode") => {
            use std::io::Read as _;
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(raw)
                .take(MAX_DECODED)
                .read_to_end(&mut out)
                .map_err(|e| malformed(format!("FlateDecode: {e}")))?;
            out
        }
        other => {
            return Err(PdfError::Unsupported(format!(
                "stream filter {:?} (FlateDecode only)",
                other
                    .iter()
                    .map(|o| {
                        let mut b = Vec::new();
                        o.write(&mut b);
                        String::from_utf8_lossy(&b).into_owned()
                    })
                    .collect::<Vec<_>>()
            )))
        }
    };
    let params = match dict.get(b"/DecodeParms") {
        Some(Obj::Array(a)) => a.first().cloned(),
        other => other.cloned(),
    };
    let predictor = params
        .as_ref()
        .and_then(|p| p.get(b"/Predictor"))
        .and_then(Obj::as_int)
        .unwrap_or(1);
    match predictor {
        1 => Ok(data),
        10..=15 => {
            let columns = params
                .as_ref()
                .and_then(|p| p.get(b"/Columns"))
                .and_then(Obj::as_int)
                .unwrap_or(1)
                .max(1) as usize;
            png_unpredict(&data, columns)
        }
        other => Err(PdfError::Unsupported(format!("stream predictor {other}"))),
    }
}

/// Reverses PNG row predictors (one filter byte per row; bytes per pixel 1).
fn png_unpredict(data: &[u8], columns: usize) -> Result<Vec<u8>, PdfError> {
    if columns > data.len() {
        return Err(malformed("PNG predictor /Columns larger than the stream"));
    }
    let row = columns + 1;
    if !data.len().is_multiple_of(row) {
        return Err(malformed(
            "PNG-predicted stream is not a whole number of rows",
        ));
    }
    let mut out: Vec<u8> = Vec::with_capacity(data.len() / row * columns);
    let mut prev = vec![0u8; columns];
    for chunk in data.chunks(row) {
        let (kind, bytes) = (chunk[0], &chunk[1..]);
        let mut cur = vec![0u8; columns];
        for i in 0..columns {
            let left = if i > 0 { cur[i - 1] } else { 0 };
            let up = prev[i];
            let up_left = if i > 0 { prev[i - 1] } else { 0 };
            cur[i] = match kind {
                0 => bytes[i],
                1 => bytes[i].wrapping_add(left),
                2 => bytes[i].wrapping_add(up),
                3 => bytes[i].wrapping_add(((left as u16 + up as u16) / 2) as u8),
                4 => {
                    let p = left as i16 + up as i16 - up_left as i16;
                    let (pa, pb, pc) = (
                        (p - left as i16).abs(),
                        (p - up as i16).abs(),
                        (p - up_left as i16).abs(),
                    );
                    let pred = if pa <= pb && pa <= pc {
                        left
                    } else if pb <= pc {
                        up
                    } else {
                        up_left
                    };
                    bytes[i].wrapping_add(pred)
                }
                k => return Err(malformed(format!("PNG predictor row type {k}"))),
            };
        }
        out.extend_from_slice(&cur);
        prev = cur;
    }
    Ok(out)
}

/// A big-endian field of `width` bytes.
fn field(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |acc, b| acc << 8 | *b as u64)
}

impl<'a> Pdf<'a> {
    fn read(buf: &'a [u8]) -> Result<Self, PdfError> {
        let head = &buf[..buf.len().min(1024)];
        if !head.windows(5).any(|w| w == b"%PDF-") {
            return Err(PdfError::NotPdf("no `%PDF-` header".into()));
        }
        let tail_start = buf.len().saturating_sub(2048);
        let tail = &buf[tail_start..];
        if find_last(tail, b"%%EOF").is_none() {
            return Err(PdfError::NotPdf("no `%%EOF` at the end".into()));
        }
        let sx = find_last(tail, b"startxref")
            .ok_or_else(|| PdfError::NotPdf("no `startxref` at the end".into()))?;
        let mut lx = Lexer::at(buf, tail_start + sx + "startxref".len());
        let startxref = lx.uint()? as usize;
        let mut pdf = Pdf {
            buf,
            locations: BTreeMap::new(),
            trailer: Obj::Dict(Vec::new()),
            startxref,
            xref_stream: false,
        };
        let mut at = Some(startxref);
        let mut seen = 0;
        while let Some(offset) = at {
            seen += 1;
            if seen > 256 {
                return Err(malformed(
                    "more than 256 cross-reference sections (a /Prev loop?)",
                ));
            }
            let (trailer, is_stream) = pdf.read_section(offset)?;
            // A hybrid file's classic section names a stream with more entries.
            if let Some(x) = trailer.get(b"/XRefStm") {
                let x = x
                    .as_int()
                    .filter(|v| *v >= 0)
                    .ok_or_else(|| malformed("/XRefStm is not an offset"))?;
                pdf.read_xref_stream(x as usize)?;
            }
            at = match trailer.get(b"/Prev") {
                Some(p) => Some(
                    p.as_int()
                        .filter(|v| *v >= 0)
                        .ok_or_else(|| malformed("/Prev is not an offset"))?
                        as usize,
                ),
                None => None,
            };
            if seen == 1 {
                pdf.trailer = trailer;
                pdf.xref_stream = is_stream;
            }
        }
        if pdf.trailer.get(b"/Encrypt").is_some() {
            return Err(PdfError::Unsupported("encrypted PDF (/Encrypt)".into()));
        }
        Ok(pdf)
    }

    /// Reads the section at `offset` (a classic table or a cross-reference stream); entries
    /// already known (from newer sections) win. Returns the trailer and whether it was a stream.
    fn read_section(&mut self, offset: usize) -> Result<(Obj, bool), PdfError> {
        if offset >= self.buf.len() {
            return Err(malformed(format!(
                "cross-reference offset {offset} past the end"
            )));
        }
        let mut lx = Lexer::at(self.buf, offset);
        if lx.word() != b"xref" {
            return Ok((self.read_xref_stream(offset)?, true));
        }
        loop {
            let save = lx.pos;
            let w = lx.word();
            if w == b"trailer" {
                break;
            }
            lx.pos = save;
            let start = lx.uint()? as u32;
            let count = lx.uint()? as u32;
            for i in 0..count {
                let off = lx.uint()? as usize;
                let gen = lx.uint()? as u16;
                let loc = match lx.word() {
                    b"n" => Loc::Offset(off, gen),
                    b"f" => Loc::Free,
                    _ => return Err(malformed("cross-reference entry neither n nor f")),
                };
                let n = start
                    .checked_add(i)
                    .ok_or_else(|| malformed("object number overflow"))?;
                self.locations.entry(n).or_insert(loc);
            }
        }
        let trailer = lx.object(0)?;
        if !matches!(trailer, Obj::Dict(_)) {
            return Err(malformed("trailer is not a dictionary"));
        }
        Ok((trailer, false))
    }

    /// A cross-reference stream (ISO 32000-1 §7.5.8): its dictionary is the trailer.
    fn read_xref_stream(&mut self, offset: usize) -> Result<Obj, PdfError> {
        let mut lx = Lexer::at(self.buf, offset);
        let ok = lx.uint().is_ok() && lx.uint().is_ok() && lx.word() == b"obj";
        if !ok {
            return Err(malformed(format!(
                "no cross-reference table or stream at offset {offset}"
            )));
        }
        let dict = lx.object(0)?;
        if !dict.get(b"/Type").is_some_and(|t| t.is_name(b"/XRef")) {
            return Err(malformed(format!(
                "the object at offset {offset} is not a cross-reference stream"
            )));
        }
        lx.expect_word(b"stream")?;
        let data = stream_data(self.buf, &dict, lx.pos)?;
        let widths: Vec<usize> = match dict.get(b"/W") {
            Some(Obj::Array(w)) if w.len() == 3 => w
                .iter()
                .map(|x| {
                    x.as_int()
                        .filter(|v| (0..=8).contains(v))
                        .map(|v| v as usize)
                })
                .collect::<Option<_>>()
                .ok_or_else(|| malformed("/W of the cross-reference stream"))?,
            _ => return Err(malformed("cross-reference stream without /W [a b c]")),
        };
        let size = dict
            .get(b"/Size")
            .and_then(Obj::as_int)
            .ok_or_else(|| malformed("cross-reference stream without /Size"))?;
        let index: Vec<i64> = match dict.get(b"/Index") {
            Some(Obj::Array(a)) => a
                .iter()
                .map(Obj::as_int)
                .collect::<Option<_>>()
                .ok_or_else(|| malformed("/Index of the cross-reference stream"))?,
            _ => vec![0, size],
        };
        let entry = widths.iter().sum::<usize>();
        if entry == 0 || !index.len().is_multiple_of(2) {
            return Err(malformed("cross-reference stream layout"));
        }
        let mut rows = data.chunks_exact(entry);
        for pair in index.chunks(2) {
            let (start, count) = (pair[0], pair[1]);
            if !(0..=i64::from(u32::MAX)).contains(&start)
                || !(0..=i64::from(u32::MAX)).contains(&count)
            {
                return Err(malformed("/Index of the cross-reference stream"));
            }
            for i in 0..count {
                let row = rows
                    .next()
                    .ok_or_else(|| malformed("cross-reference stream shorter than /Index"))?;
                let (a, rest) = row.split_at(widths[0]);
                let (b, c) = rest.split_at(widths[1]);
                let kind = if widths[0] == 0 { 1 } else { field(a) };
                let loc = match kind {
                    0 => Loc::Free,
                    1 => Loc::Offset(field(b) as usize, field(c) as u16),
                    2 => Loc::InStream {
                        stream: field(b) as u32,
                        index: field(c) as usize,
                    },
                    // Unknown types are to be read as null objects (§7.5.8.3).
                    _ => Loc::Free,
                };
                let n = u32::try_from(start + i)
                    .map_err(|_| malformed("object number overflow in /Index"))?;
                self.locations.entry(n).or_insert(loc);
            }
        }
        Ok(dict)
    }

    /// The object `n`: its generation and value (streams are refused: none is rewritten).
    fn object(&self, n: u32) -> Result<(u16, Obj), PdfError> {
        match self.locations.get(&n) {
            Some(Loc::Offset(offset, gen)) => {
                let mut lx = Lexer::at(self.buf, *offset);
                let num = lx.uint()?;
                let _ = lx.uint()?;
                lx.expect_word(b"obj")?;
                if num != n as u64 {
                    return Err(malformed(format!(
                        "cross-reference entry of object {n} points at object {num}"
                    )));
                }
                let value = lx.object(0)?;
                if lx.word() == b"stream" {
                    return Err(PdfError::Unsupported(format!(
                        "object {n} is a stream where a dictionary or array was expected"
                    )));
                }
                Ok((*gen, value))
            }
            Some(Loc::InStream { stream, index }) => Ok((0, self.in_stream(n, *stream, *index)?)),
            Some(Loc::Free) | None => Err(malformed(format!(
                "object {n} is not in the cross-reference table"
            ))),
        }
    }

    /// Object `n`, the `index`-th of object stream `stream` (§7.5.7).
    fn in_stream(&self, n: u32, stream: u32, index: usize) -> Result<Obj, PdfError> {
        let Some(Loc::Offset(offset, _)) = self.locations.get(&stream) else {
            return Err(malformed(format!(
                "object stream {stream} (holding object {n}) is not at an offset"
            )));
        };
        let mut lx = Lexer::at(self.buf, *offset);
        lx.uint()?;
        lx.uint()?;
        lx.expect_word(b"obj")?;
        let dict = lx.object(0)?;
        lx.expect_word(b"stream")?;
        let data = stream_data(self.buf, &dict, lx.pos)?;
        let count = dict.get(b"/N").and_then(Obj::as_int).unwrap_or(0).max(0) as usize;
        let first = dict
            .get(b"/First")
            .and_then(Obj::as_int)
            .filter(|f| *f >= 0 && (*f as usize) <= data.len())
            .ok_or_else(|| malformed(format!("object stream {stream} without /First")))?
            as usize;
        let mut header = Lexer::at(&data[..first], 0);
        for i in 0..count {
            let num = header.uint()?;
            let off = header.uint()? as usize;
            if i == index {
                if num != n as u64 {
                    return Err(malformed(format!(
                        "object stream {stream} holds object {num} where {n} was expected"
                    )));
                }
                let mut body = Lexer::at(&data, first + off);
                return body.object(0);
            }
        }
        Err(malformed(format!(
            "object stream {stream} has no entry {index}"
        )))
    }

    fn resolve(&self, o: &Obj) -> Result<Obj, PdfError> {
        match o {
            Obj::Ref(n, _) => Ok(self.object(*n)?.1),
            other => Ok(other.clone()),
        }
    }

    fn root(&self) -> Result<u32, PdfError> {
        match self.trailer.get(b"/Root") {
            Some(Obj::Ref(n, _)) => Ok(*n),
            _ => Err(malformed("trailer has no /Root reference")),
        }
    }

    /// Refuses a document certified with "no changes allowed" (DocMDP `/P 1`): any further
    /// revision, a signature included, breaks its certification (ISO 32000-1 §12.8.2.2).
    fn check_docmdp(&self, catalog: &Obj) -> Result<(), PdfError> {
        let Some(perms) = catalog.get(b"/Perms") else {
            return Ok(());
        };
        let perms = self.resolve(perms)?;
        let Some(sig) = perms.get(b"/DocMDP") else {
            return Ok(());
        };
        let sig = self.resolve(sig)?;
        let refs = match sig.get(b"/Reference") {
            Some(r) => self.resolve(r)?,
            None => return Ok(()),
        };
        let Obj::Array(refs) = refs else {
            return Ok(());
        };
        for r in &refs {
            let r = self.resolve(r)?;
            if !r
                .get(b"/TransformMethod")
                .is_some_and(|m| m.is_name(b"/DocMDP"))
            {
                continue;
            }
            let p = match r.get(b"/TransformParams") {
                Some(tp) => self.resolve(tp)?.get(b"/P").and_then(Obj::as_int),
                None => None,
            };
            // /P defaults to 2 (form filling and signing allowed).
            if p == Some(1) {
                return Err(PdfError::Unsupported(
                    "the document is certified with no changes allowed (DocMDP /P 1): another signature would break its certification".into(),
                ));
            }
        }
        Ok(())
    }

    /// The first page's object number.
    fn first_page(&self, catalog: &Obj) -> Result<u32, PdfError> {
        let mut node = match catalog.get(b"/Pages") {
            Some(Obj::Ref(n, _)) => *n,
            _ => return Err(malformed("catalog has no /Pages reference")),
        };
        for _ in 0..64 {
            let (_, dict) = self.object(node)?;
            if dict.get(b"/Type").is_some_and(|t| t.is_name(b"/Page")) {
                return Ok(node);
            }
            let kids = self.resolve(
                dict.get(b"/Kids")
                    .ok_or_else(|| malformed(format!("page tree node {node} has no /Kids")))?,
            )?;
            node = match kids {
                Obj::Array(items) => match items.first() {
                    Some(Obj::Ref(n, _)) => *n,
                    _ => return Err(malformed("the document has no page")),
                },
                _ => return Err(malformed("/Kids is not an array")),
            };
        }
        Err(malformed("page tree deeper than 64"))
    }

    /// Page `number` (1-based) in document order: the page tree walked depth first, bounded.
    fn page_at(&self, catalog: &Obj, number: u32) -> Result<u32, PdfError> {
        let root = match catalog.get(b"/Pages") {
            Some(Obj::Ref(n, _)) => *n,
            _ => return Err(malformed("catalog has no /Pages reference")),
        };
        let mut stack = vec![(root, 0usize)];
        let (mut seen, mut visits) = (0u32, 0usize);
        while let Some((node, depth)) = stack.pop() {
            visits += 1;
            if visits > 200_000 || depth > 64 {
                return Err(malformed("page tree too large or too deep"));
            }
            let (_, dict) = self.object(node)?;
            if dict.get(b"/Type").is_some_and(|t| t.is_name(b"/Page")) {
                seen += 1;
                if seen == number {
                    return Ok(node);
                }
                continue;
            }
            let kids = self.resolve(
                dict.get(b"/Kids")
                    .ok_or_else(|| malformed(format!("page tree node {node} has no /Kids")))?,
            )?;
            let Obj::Array(items) = kids else {
                return Err(malformed("/Kids is not an array"));
            };
            for k in items.iter().rev() {
                match k {
                    Obj::Ref(n, _) => stack.push((*n, depth + 1)),
                    _ => return Err(malformed("a /Kids entry is not a reference")),
                }
            }
        }
        Err(PdfError::Appearance(AppearanceError::Page {
            asked: number,
            pages: seen,
        }))
    }
}

// ---------------------------------------------------------------- writing

/// What the signature dictionary says besides the signature.
pub struct SignatureText<'a> {
    pub signing_time: i64,
    pub reason: Option<&'a str>,
    pub location: Option<&'a str>,
}

/// The incremental update, split around the `/Contents` gap.
pub struct Update {
    /// Up to and including `<`.
    pub head: Vec<u8>,
    /// From `>` to the end.
    pub tail: Vec<u8>,
    /// Hex digits in the gap.
    pub contents_hex: usize,
}

impl Update {
    /// The digest over the byte ranges: the document and the update but the gap.
    pub fn ranges_digest(
        &self,
        document: &[u8],
        alg: DigestAlgorithm,
    ) -> Result<Vec<u8>, PdfError> {
        let mut h = openssl::hash::Hasher::new(alg.message_digest())?;
        // The gap is the hex string with its delimiters: `head` without its `<`, `tail`
        // without its `>`.
        h.update(document)?;
        h.update(&self.head[..self.head.len() - 1])?;
        h.update(&self.tail[1..])?;
        Ok(h.finish()?.to_vec())
    }
}

/// A PDF text string: literal when plain ASCII, else UTF-16BE with a BOM, in hex.
fn text_string(s: &str) -> Obj {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && !matches!(b, b'(' | b')' | b'\\'))
    {
        Obj::Atom(format!("({s})").into_bytes())
    } else {
        let mut hex = String::from("<FEFF");
        for u in s.encode_utf16() {
            hex.push_str(&format!("{u:04X}"));
        }
        hex.push('>');
        Obj::Atom(hex.into_bytes())
    }
}

/// `D:YYYYMMDDHHmmSS+00'00'`.
fn pdf_date(unix: i64) -> Result<String, PdfError> {
    let t = time::OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|e| PdfError::Unsupported(format!("signing time {unix}: {e}")))?;
    Ok(format!(
        "(D:{:04}{:02}{:02}{:02}{:02}{:02}+00'00')",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    ))
}

fn name(s: &str) -> Obj {
    Obj::Atom(s.as_bytes().to_vec())
}

/// Appends `r` to an array that is direct in `holder[key]`, behind a reference (then that
/// array object is rewritten), or absent (created). Returns the rewritten array object, if any.
fn append_ref(
    pdf: &Pdf<'_>,
    holder: &mut Obj,
    key: &[u8],
    r: Obj,
) -> Result<Option<(u32, u16, Obj)>, PdfError> {
    match holder.get(key).cloned() {
        None => {
            holder.set(key, Obj::Array(vec![r]));
            Ok(None)
        }
        Some(Obj::Array(mut items)) => {
            items.push(r);
            holder.set(key, Obj::Array(items));
            Ok(None)
        }
        Some(Obj::Ref(n, _)) => match pdf.object(n)? {
            (g, Obj::Array(mut items)) => {
                items.push(r);
                Ok(Some((n, g, Obj::Array(items))))
            }
            _ => Err(malformed(format!(
                "{} is not an array",
                String::from_utf8_lossy(key)
            ))),
        },
        Some(_) => Err(malformed(format!(
            "{} is not an array",
            String::from_utf8_lossy(key)
        ))),
    }
}

const RANGE_WIDTH: usize = 10;

/// Consecutive runs `(first, count)` of sorted object numbers (cross-reference subsections).
fn runs(numbers: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &n in numbers {
        match out.last_mut() {
            Some((start, count)) if *start + *count == n => *count += 1,
            _ => out.push((n, 1)),
        }
    }
    out
}

/// Prepares the update for `document` with room for a CMS of `cms_capacity` bytes; with
/// `visible`, the widget shows these lines where it says.
pub fn prepare(
    document: &[u8],
    text: &SignatureText<'_>,
    cms_capacity: usize,
    visible: Option<(&Visible, &[String])>,
) -> Result<Update, PdfError> {
    let pdf = Pdf::read(document)?;
    let root = pdf.root()?;
    let (root_gen, mut catalog) = pdf.object(root)?;
    if !matches!(catalog, Obj::Dict(_)) {
        return Err(malformed("the catalog is not a dictionary"));
    }
    pdf.check_docmdp(&catalog)?;
    let page = match visible {
        Some((v, _)) => pdf.page_at(&catalog, v.page)?,
        None => pdf.first_page(&catalog)?,
    };
    let (page_gen, mut page_dict) = pdf.object(page)?;
    let size = pdf
        .trailer
        .get(b"/Size")
        .and_then(Obj::as_int)
        .filter(|s| *s > 0)
        .ok_or_else(|| malformed("trailer has no /Size"))?;
    let size = size.max(
        pdf.locations
            .keys()
            .next_back()
            .map_or(0, |m| i64::from(*m) + 1),
    );
    let size = u32::try_from(size)
        .ok()
        .filter(|s| s.checked_add(3).is_some())
        .ok_or_else(|| malformed("/Size too large"))?;
    let widget = size;
    let sig = size + 1;
    // A visible signature's appearance objects come next, before the signature dictionary.
    let shown = match visible {
        Some((v, lines)) => Some((v.checked_rect()?, appearance::objects(v, lines, size + 2)?)),
        None => None,
    };
    let new_size = size + 2 + shown.as_ref().map_or(0, |(_, (_, objs))| objs.len() as u32);

    // Objects of the update: number → (generation, body).
    let mut objects: BTreeMap<u32, (u16, Obj)> = BTreeMap::new();
    if let Some((n, g, arr)) = append_ref(&pdf, &mut page_dict, b"/Annots", Obj::Ref(widget, 0))? {
        objects.insert(n, (g, arr));
    }
    objects.insert(page, (page_gen, page_dict));

    match catalog.get(b"/AcroForm").cloned() {
        None => {
            let mut form = Obj::Dict(Vec::new());
            form.set(b"/Fields", Obj::Array(vec![Obj::Ref(widget, 0)]));
            form.set(b"/SigFlags", name("3"));
            catalog.set(b"/AcroForm", form);
            objects.insert(root, (root_gen, catalog));
        }
        Some(Obj::Dict(entries)) => {
            let mut form = Obj::Dict(entries);
            if let Some((n, g, arr)) = append_ref(&pdf, &mut form, b"/Fields", Obj::Ref(widget, 0))?
            {
                objects.insert(n, (g, arr));
            }
            form.set(b"/SigFlags", name("3"));
            catalog.set(b"/AcroForm", form);
            objects.insert(root, (root_gen, catalog));
        }
        Some(Obj::Ref(n, _)) => {
            let (g, mut form) = pdf.object(n)?;
            if !matches!(form, Obj::Dict(_)) {
                return Err(malformed("/AcroForm is not a dictionary"));
            }
            if let Some((an, ag, arr)) =
                append_ref(&pdf, &mut form, b"/Fields", Obj::Ref(widget, 0))?
            {
                objects.insert(an, (ag, arr));
            }
            form.set(b"/SigFlags", name("3"));
            objects.insert(n, (g, form));
        }
        Some(_) => return Err(malformed("/AcroForm is not a dictionary")),
    }

    // The field name only has to be unique among the fields; the document's digest makes it so.
    let doc_hash = DigestAlgorithm::Sha256.digest(document)?;
    let field_name = format!("(Signature-{})", gw_crypto::util::hex(&doc_hash[..6]));
    let mut w = Obj::Dict(Vec::new());
    w.set(b"/Type", name("/Annot"));
    w.set(b"/Subtype", name("/Widget"));
    w.set(b"/FT", name("/Sig"));
    w.set(b"/T", Obj::Atom(field_name.into_bytes()));
    w.set(b"/V", Obj::Ref(sig, 0));
    w.set(b"/F", name("132"));
    match &shown {
        Some((rect, (xobject, _))) => {
            w.set(
                b"/Rect",
                Obj::Array(rect.iter().map(|v| name(&format!("{v:.3}"))).collect()),
            );
            let mut ap = Obj::Dict(Vec::new());
            ap.set(b"/N", Obj::Ref(*xobject, 0));
            w.set(b"/AP", ap);
        }
        None => w.set(
            b"/Rect",
            Obj::Array(vec![name("0"), name("0"), name("0"), name("0")]),
        ),
    }
    w.set(b"/P", Obj::Ref(page, page_gen));
    objects.insert(widget, (0, w));

    // Lay the update out.
    let mut update: Vec<u8> = Vec::new();
    if !matches!(document.last(), Some(b'\n' | b'\r')) {
        update.push(b'\n');
    }
    let base = document.len();
    let mut xref: BTreeMap<u32, (usize, u16)> = BTreeMap::new();
    for (n, (g, body)) in &objects {
        xref.insert(*n, (base + update.len(), *g));
        update.extend_from_slice(format!("{n} {g} obj\n").as_bytes());
        body.write(&mut update);
        update.extend_from_slice(b"\nendobj\n");
    }
    for (n, body) in shown.iter().flat_map(|(_, (_, objs))| objs) {
        xref.insert(*n, (base + update.len(), 0));
        update.extend_from_slice(format!("{n} 0 obj\n").as_bytes());
        update.extend_from_slice(body);
        update.extend_from_slice(b"\nendobj\n");
    }
    xref.insert(sig, (base + update.len(), 0));
    update.extend_from_slice(format!("{sig} 0 obj\n").as_bytes());
    update.extend_from_slice(
        b"<</Type /Sig\n/Filter /Adobe.PPKLite\n/SubFilter /ETSI.CAdES.detached\n/M ",
    );
    update.extend_from_slice(pdf_date(text.signing_time)?.as_bytes());
    for (key, value) in [
        (b"/Reason".as_slice(), text.reason),
        (b"/Location".as_slice(), text.location),
    ] {
        if let Some(v) = value {
            update.push(b'\n');
            update.extend_from_slice(key);
            update.push(b' ');
            text_string(v).write(&mut update);
        }
    }
    update.extend_from_slice(b"\n/ByteRange [0 ");
    let ranges_at = update.len();
    update.extend_from_slice(&[b' '; 3 * (RANGE_WIDTH + 1)]);
    update.extend_from_slice(b"]\n/Contents <");
    let gap_start = base + update.len(); // first hex digit
    let contents_hex = 2 * cms_capacity;
    let head_len = update.len();
    let mut tail = Vec::new();
    tail.extend_from_slice(b">\n>>\nendobj\n");
    let xref_at = base + head_len + contents_hex + tail.len();
    let mut trailer = Obj::Dict(Vec::new());
    trailer.set(
        b"/Root",
        pdf.trailer
            .get(b"/Root")
            .cloned()
            .unwrap_or(Obj::Ref(root, 0)),
    );
    for key in [b"/Info".as_slice(), b"/ID"] {
        if let Some(v) = pdf.trailer.get(key) {
            trailer.set(key, v.clone());
        }
    }
    trailer.set(b"/Prev", name(&pdf.startxref.to_string()));
    if pdf.xref_stream {
        // The newest section was a cross-reference stream: the update's is one too (its own
        // entry included), uncompressed, with type 1 entries of 1 + 4 + 2 bytes.
        let xref_obj = new_size;
        xref.insert(xref_obj, (xref_at, 0));
        let mut rows = Vec::new();
        let mut index = Vec::new();
        for (start, count) in runs(&xref.keys().copied().collect::<Vec<_>>()) {
            index.push(name(&start.to_string()));
            index.push(name(&count.to_string()));
            for n in start..start + count {
                let (off, g) = xref[&n];
                let off = u32::try_from(off)
                    .map_err(|_| PdfError::Unsupported("a PDF larger than 4 GB".into()))?;
                rows.push(1u8);
                rows.extend_from_slice(&off.to_be_bytes());
                rows.extend_from_slice(&g.to_be_bytes());
            }
        }
        trailer.set(b"/Type", name("/XRef"));
        trailer.set(b"/Size", name(&(new_size + 1).to_string()));
        trailer.set(b"/W", Obj::Array(vec![name("1"), name("4"), name("2")]));
        trailer.set(b"/Index", Obj::Array(index));
        trailer.set(b"/Length", name(&rows.len().to_string()));
        tail.extend_from_slice(format!("{xref_obj} 0 obj\n").as_bytes());
        trailer.write(&mut tail);
        tail.extend_from_slice(b"\nstream\n");
        tail.extend_from_slice(&rows);
        tail.extend_from_slice(b"\nendstream\nendobj\n");
    } else {
        tail.extend_from_slice(b"xref\n");
        for (start, count) in runs(&xref.keys().copied().collect::<Vec<_>>()) {
            tail.extend_from_slice(format!("{start} {count}\n").as_bytes());
            for n in start..start + count {
                // Every object of the update lies before the gap: offsets need no shift.
                let (off, g) = xref[&n];
                tail.extend_from_slice(format!("{off:010} {g:05} n\r\n").as_bytes());
            }
        }
        trailer.set(b"/Size", name(&new_size.to_string()));
        tail.extend_from_slice(b"trailer\n");
        trailer.write(&mut tail);
        tail.push(b'\n');
    }
    tail.extend_from_slice(format!("startxref\n{xref_at}\n%%EOF\n").as_bytes());

    // The byte ranges: [0, gap start - 1 (the `<`), after the `>`, to the end].
    let lt = gap_start - 1;
    let after_gt = gap_start + contents_hex + 1;
    let total = base + head_len + contents_hex + tail.len();
    let ranges = format!("{} {} {}", lt, after_gt, total - after_gt);
    if ranges.len() > 3 * (RANGE_WIDTH + 1) {
        return Err(PdfError::Unsupported("a PDF larger than 9 GB".into()));
    }
    update[ranges_at..ranges_at + ranges.len()].copy_from_slice(ranges.as_bytes());
    Ok(Update {
        head: update,
        tail,
        contents_hex,
    })
}

/// The signed PDF: the document, the stored update, and the CMS's hex in the gap.
pub fn assemble(
    document: &[u8],
    head: &[u8],
    tail: &[u8],
    contents_hex: usize,
    cms: &[u8],
) -> Result<Vec<u8>, PdfError> {
    if head.last() != Some(&b'<') || tail.first() != Some(&b'>') {
        return Err(PdfError::StoredUpdate(
            "the /Contents gap is not where it was".into(),
        ));
    }
    if 2 * cms.len() > contents_hex {
        return Err(PdfError::ContentsTooSmall {
            need: cms.len(),
            have: contents_hex / 2,
        });
    }
    let mut out = Vec::with_capacity(document.len() + head.len() + contents_hex + tail.len());
    out.extend_from_slice(document);
    out.extend_from_slice(head);
    out.extend_from_slice(gw_crypto::util::hex(cms).as_bytes());
    out.resize(out.len() + contents_hex - 2 * cms.len(), b'0');
    out.extend_from_slice(tail);
    Ok(out)
}

/// A small valid one-page PDF (classic xref), for tests and for trying the formats out.
pub fn sample(text: &str) -> Vec<u8> {
    sample_with(text, "", &[])
}

/// [`sample`] with `extra` entries in the catalog and, after the five objects, `more` objects
/// (numbered from 6).
fn sample_with(text: &str, extra: &str, more: &[&str]) -> Vec<u8> {
    let content = format!("BT /F1 18 Tf 72 720 Td ({text}) Tj ET");
    let mut objects = vec![
        format!("<< /Type /Catalog /Pages 2 0 R {extra}>>"),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>".to_owned(),
        format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    objects.extend(more.iter().map(|m| m.to_string()));
    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f\r\n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n\r\n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text() -> SignatureText<'static> {
        SignatureText {
            signing_time: 1_765_000_000,
            reason: Some("Phê duyệt"),
            location: None,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// A document from outside may be anything: corrupting bytes anywhere in a valid PDF
        /// gives an update or an error, never a panic (no overflow, no out-of-range slice).
        #[test]
        fn corrupted_pdfs_never_panic(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let mut doc = sample("Corrupt me");
            for (at, byte) in edits {
                let i = at.index(doc.len());
                doc[i] = byte;
            }
            if truncate {
                doc.truncate(cut.index(doc.len()));
            }
            let _ = prepare(&doc, &text(), 4096, None);
        }
    }

    #[test]
    fn certified_no_changes_is_refused_other_certifications_are_not() {
        for (p, refused) in [("1", true), ("2", false), ("3", false)] {
            let sig = format!(
                "<< /Type /Sig /Filter /Adobe.PPKLite /Contents <00> /Reference [<< /Type /SigRef /TransformMethod /DocMDP /TransformParams << /Type /TransformParams /P {p} /V /1.2 >> >>] >>"
            );
            let doc = sample_with("x", "/Perms << /DocMDP 6 0 R >> ", &[&sig]);
            let r = prepare(&doc, &text(), 4096, None);
            assert_eq!(r.is_err(), refused, "P={p}");
            if let Err(e) = r {
                assert!(e.to_string().contains("DocMDP /P 1"), "{e}");
            }
        }
    }

    #[test]
    fn hostile_numbers_are_errors() {
        let doc = sample("x");
        let at = doc.windows(7).rposition(|w| w == b"/Size 6").unwrap();
        for size in [
            b"/Size 99999999999999999999".as_slice(),
            b"/Size 4294967295",
        ] {
            let mut d = doc[..at].to_vec();
            d.extend_from_slice(size);
            d.extend_from_slice(&doc[at + 7..]);
            assert!(prepare(&d, &text(), 4096, None).is_err());
        }
    }
}
