//! The visible appearance of a PDF signature: a form XObject showing lines of text (the
//! signer's name, the signing time, the reason) in a rectangle of a page, with the font it
//! needs embedded.
//!
//! # Invariants
//! - Text is never transliterated or dropped: Vietnamese (and any text the font covers) is
//!   drawn with glyphs of a configured TrueType font ([`AppearanceFont`]), embedded as a subset
//!   of exactly the glyphs used (a Type0 / CIDFontType2 font, `Identity-H`, CID = the subset's
//!   glyph id), with a `ToUnicode` map so the text can be copied and searched. Text is put in
//!   NFC first, so a decomposed `ế` is one glyph, not a letter and loose marks.
//! - A font is accepted only when it is TrueType outlines (`glyf`) and covers every Vietnamese
//!   letter ([`VIETNAMESE`]); a character the font lacks is drawn as `?` (and still mapped to
//!   itself in `ToUnicode`), never as a silent blank.
//! - The text is fitted, not clipped: one size for all lines, the largest up to 10 pt that fits
//!   the rectangle's width and height with a 2 pt margin; a rectangle where that size would be
//!   under 4 pt is refused ([`AppearanceError::TooSmall`]).
//! - Output is plain PDF object bodies, numbered from the first number given: this file knows
//!   nothing of the update that carries them (`pdf.rs` lays them out).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;

use unicode_normalization::UnicodeNormalization as _;

/// Every Vietnamese letter beyond ASCII: a font must have a glyph for each.
pub const VIETNAMESE: &str = "ÀÁÂÃÈÉÊÌÍÒÓÔÕÙÚÝĂĐĨŨƠƯẠẢẤẦẨẪẬẮẰẲẴẶẸẺẼẾỀỂỄỆỈỊỌỎỐỒỔỖỘỚỜỞỠỢỤỦỨỪỬỮỰỲỴỶỸ\
àáâãèéêìíòóôõùúýăđĩũơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ";

/// The largest and smallest text size, in points.
const MAX_SIZE: f64 = 10.0;
const MIN_SIZE: f64 = 4.0;
/// Margin inside the rectangle, in points.
const MARGIN: f64 = 2.0;
/// Line height as a multiple of the size.
const LEADING: f64 = 1.25;

/// Why an appearance could not be made; one variant per step.
#[derive(Debug, thiserror::Error)]
pub enum AppearanceError {
    #[error("font: not a font file: {0}")]
    Font(String),
    #[error("font: {0} outlines are not supported (give a TrueType font, with glyf outlines)")]
    Outlines(&'static str),
    #[error("font: no glyph for {missing:?}: it cannot show Vietnamese")]
    Coverage { missing: String },
    #[error("rect: {0}")]
    Rect(String),
    #[error("page: the document has {pages} page(s), not a page {asked}")]
    Page { asked: u32, pages: u32 },
    #[error("rect: {width:.0}×{height:.0} pt is too small for the signature text (it would be under {MIN_SIZE} pt)")]
    TooSmall { width: f64, height: f64 },
    #[error("font subset: {0}")]
    Subset(String),
}

/// A TrueType font checked for Vietnamese, shared by every appearance.
#[derive(Clone)]
pub struct AppearanceFont {
    data: Arc<Vec<u8>>,
    /// The PostScript name, reduced to `[A-Za-z0-9-]`.
    name: String,
}

impl std::fmt::Debug for AppearanceFont {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AppearanceFont({}, {} bytes)",
            self.name,
            self.data.len()
        )
    }
}

impl AppearanceFont {
    /// Reads and checks a font file's bytes (see the invariants).
    pub fn from_bytes(data: Vec<u8>) -> Result<Self, AppearanceError> {
        let face =
            ttf_parser::Face::parse(&data, 0).map_err(|e| AppearanceError::Font(e.to_string()))?;
        if face.tables().glyf.is_none() {
            return Err(AppearanceError::Outlines(if face.tables().cff.is_some() {
                "CFF"
            } else {
                "these"
            }));
        }
        let missing: String = VIETNAMESE
            .chars()
            .filter(|c| face.glyph_index(*c).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(AppearanceError::Coverage { missing });
        }
        let name = face
            .names()
            .into_iter()
            .find(|n| n.name_id == ttf_parser::name_id::POST_SCRIPT_NAME)
            .and_then(|n| n.to_string())
            .unwrap_or_else(|| "Font".into())
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(60)
            .collect::<String>();
        Ok(AppearanceFont {
            data: Arc::new(data),
            name: if name.is_empty() { "Font".into() } else { name },
        })
    }

    fn face(&self) -> Result<ttf_parser::Face<'_>, AppearanceError> {
        ttf_parser::Face::parse(&self.data, 0).map_err(|e| AppearanceError::Font(e.to_string()))
    }
}

/// Where a visible signature goes.
#[derive(Debug, Clone)]
pub struct Visible {
    /// 1-based page number.
    pub page: u32,
    /// `[x1, y1, x2, y2]` in the page's default user space (points from the bottom left).
    pub rect: [f64; 4],
    pub font: AppearanceFont,
}

impl Visible {
    /// The rectangle, checked: finite, non-negative, `x1 < x2`, `y1 < y2`, at most 14,400 pt.
    pub fn checked_rect(&self) -> Result<[f64; 4], AppearanceError> {
        let [x1, y1, x2, y2] = self.rect;
        if self
            .rect
            .iter()
            .any(|v| !v.is_finite() || *v < 0.0 || *v > 14_400.0)
        {
            return Err(AppearanceError::Rect(
                "coordinates must be numbers from 0 to 14400".into(),
            ));
        }
        if x1 >= x2 || y1 >= y2 {
            return Err(AppearanceError::Rect(
                "x1 < x2 and y1 < y2 are required".into(),
            ));
        }
        if self.page == 0 {
            return Err(AppearanceError::Rect("page numbers start at 1".into()));
        }
        Ok(self.rect)
    }
}

/// `n` in PDF number syntax (at most 3 decimals, no exponent).
fn num(n: f64) -> String {
    let s = format!("{n:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_owned()
    }
}

/// A stream object's body: its dictionary entries (without `/Length`) and its data.
fn stream(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut out = format!("<<{dict} /Length {}>>\nstream\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\nendstream");
    out
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("writing to memory");
    e.finish().expect("writing to memory")
}

/// Numbered PDF object bodies, in number order.
pub type Objects = Vec<(u32, Vec<u8>)>;

/// The objects of an appearance showing `lines`, numbered from `first`: returns the number of
/// the form XObject (the widget's `/AP /N`) and every object's body.
pub fn objects(
    visible: &Visible,
    lines: &[String],
    first: u32,
) -> Result<(u32, Objects), AppearanceError> {
    let [x1, y1, x2, y2] = visible.checked_rect()?;
    let (width, height) = (x2 - x1, y2 - y1);
    let face = visible.font.face()?;
    let em = f64::from(face.units_per_em().max(1));
    let fallback = face.glyph_index('?').map_or(0, |g| g.0);
    // Old glyph ids of every line, the subset's ids, and each new id's text.
    let mut remapper = subsetter::GlyphRemapper::new();
    let mut unicode: BTreeMap<u16, String> = BTreeMap::new();
    let mut widths: BTreeMap<u16, f64> = BTreeMap::new();
    let mut shaped: Vec<(Vec<u16>, f64)> = Vec::new();
    for line in lines {
        let mut gids = Vec::new();
        let mut advance = 0.0;
        for c in line.nfc().filter(|c| !c.is_control()) {
            let old = face.glyph_index(c).map_or(fallback, |g| g.0);
            let new = remapper.remap(old);
            let w = f64::from(
                face.glyph_hor_advance(ttf_parser::GlyphId(old))
                    .unwrap_or(0),
            ) * 1000.0
                / em;
            widths.insert(new, w);
            unicode.entry(new).or_insert_with(|| c.to_string());
            advance += w;
            gids.push(new);
        }
        shaped.push((gids, advance));
    }
    let n_lines = shaped.len().max(1) as f64;
    let widest = shaped.iter().map(|(_, a)| *a).fold(0.0, f64::max);
    let by_width = if widest > 0.0 {
        (width - 2.0 * MARGIN) * 1000.0 / widest
    } else {
        MAX_SIZE
    };
    let by_height = (height - 2.0 * MARGIN) / (n_lines * LEADING);
    let size = MAX_SIZE.min(by_width).min(by_height);
    if size < MIN_SIZE {
        return Err(AppearanceError::TooSmall { width, height });
    }

    // The content: a thin frame, then the lines from the top.
    let mut content = String::new();
    content.push_str(&format!(
        "q 0.1 0.2 0.5 RG 0.6 w 0.3 0.3 {} {} re S Q\n",
        num(width - 0.6),
        num(height - 0.6)
    ));
    content.push_str(&format!("BT /F1 {} Tf 0.05 0.1 0.35 rg\n", num(size)));
    let ascent = f64::from(face.ascender()) / em * size;
    let mut y = height - MARGIN - ascent;
    for (gids, _) in &shaped {
        let hex: String = gids.iter().map(|g| format!("{g:04X}")).collect();
        content.push_str(&format!(
            "1 0 0 1 {} {} Tm <{hex}> Tj\n",
            num(MARGIN),
            num(y)
        ));
        y -= size * LEADING;
    }
    content.push_str("ET\n");

    let subset = subsetter::subset(&visible.font.data, 0, &remapper)
        .map_err(|e| AppearanceError::Subset(e.to_string()))?;
    // The subset's tag: six capitals from its glyphs (stable for the same text).
    let tag: String = {
        use sha2::Digest as _;
        let h = sha2::Sha256::digest(&subset);
        h.iter().take(6).map(|b| (b'A' + b % 26) as char).collect()
    };
    let base_font = format!("/{tag}+{}", visible.font.name);

    let (xobject, type0, cid, descriptor, file, to_unicode) =
        (first, first + 1, first + 2, first + 3, first + 4, first + 5);
    let mut out = Vec::new();
    out.push((
        xobject,
        stream(
            &format!(
                "/Type /XObject /Subtype /Form /BBox [0 0 {} {}] /Resources <</Font <</F1 {type0} 0 R>>>>",
                num(width),
                num(height)
            ),
            content.as_bytes(),
        ),
    ));
    out.push((
        type0,
        format!(
            "<</Type /Font /Subtype /Type0 /BaseFont {base_font} /Encoding /Identity-H /DescendantFonts [{cid} 0 R] /ToUnicode {to_unicode} 0 R>>"
        )
        .into_bytes(),
    ));
    let count = remapper.num_gids();
    let w: Vec<String> = (0..count)
        .map(|g| num(widths.get(&g).copied().unwrap_or(0.0)))
        .collect();
    out.push((
        cid,
        format!(
            "<</Type /Font /Subtype /CIDFontType2 /BaseFont {base_font} /CIDSystemInfo <</Registry (Adobe) /Ordering (Identity) /Supplement 0>> /FontDescriptor {descriptor} 0 R /CIDToGIDMap /Identity /DW 0 /W [0 [{}]]>>",
            w.join(" ")
        )
        .into_bytes(),
    ));
    let scale = |v: i16| num(f64::from(v) * 1000.0 / em);
    let bbox = face.global_bounding_box();
    out.push((
        descriptor,
        format!(
            "<</Type /FontDescriptor /FontName {base_font} /Flags 4 /FontBBox [{} {} {} {}] /ItalicAngle 0 /Ascent {} /Descent {} /CapHeight {} /StemV 80 /FontFile2 {file} 0 R>>",
            scale(bbox.x_min),
            scale(bbox.y_min),
            scale(bbox.x_max),
            scale(bbox.y_max),
            scale(face.ascender()),
            scale(face.descender()),
            scale(face.capital_height().unwrap_or(face.ascender())),
        )
        .into_bytes(),
    ));
    out.push((
        file,
        stream(
            &format!("/Filter /FlateDecode /Length1 {}", subset.len()),
            &deflate(&subset),
        ),
    ));
    out.push((to_unicode, stream("", to_unicode_cmap(&unicode).as_bytes())));
    Ok((xobject, out))
}

/// The `ToUnicode` CMap: each glyph (2-byte code) to its text in UTF-16BE.
fn to_unicode_cmap(map: &BTreeMap<u16, String>) -> String {
    let mut s = String::from(
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n/CIDSystemInfo <</Registry (Adobe) /Ordering (UCS) /Supplement 0>> def\n/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n",
    );
    let entries: Vec<(&u16, &String)> = map.iter().collect();
    for chunk in entries.chunks(100) {
        s.push_str(&format!("{} beginbfchar\n", chunk.len()));
        for (g, text) in chunk {
            let utf16: String = text.encode_utf16().map(|u| format!("{u:04X}")).collect();
            s.push_str(&format!("<{g:04X}> <{utf16}>\n"));
        }
        s.push_str("endbfchar\n");
    }
    s.push_str("endcmap\nCMapName currentdict /CIDFont defineresource pop\nend\nend\n");
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A Vietnamese-capable TrueType font of the system (DejaVu Sans), if installed.
    pub(crate) fn system_font() -> Option<AppearanceFont> {
        let path = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
        match std::fs::read(path) {
            Ok(b) => Some(AppearanceFont::from_bytes(b).expect("DejaVu Sans is accepted")),
            Err(_) => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("{path} is required under CI=true (apt-get install fonts-dejavu-core)");
                }
                eprintln!("SKIPPED: {path} is not installed (apt-get install fonts-dejavu-core)");
                None
            }
        }
    }

    #[test]
    fn vietnamese_text_is_embedded_exactly_and_fitted() {
        let Some(font) = system_font() else { return };
        let v = Visible {
            page: 1,
            rect: [50.0, 50.0, 290.0, 110.0],
            font,
        };
        let lines = vec![
            "Người ký: Nguyễn Văn Ánh".to_owned(),
            // Decomposed (NFD) input is drawn as the composed letters.
            "Lý do: Ký kết quả".nfd().collect::<String>(),
        ];
        let (xobject, objs) = objects(&v, &lines, 40).unwrap();
        assert_eq!(xobject, 40);
        assert_eq!(
            objs.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            (40..46).collect::<Vec<_>>()
        );
        let text = |n: u32| String::from_utf8_lossy(&objs[(n - 40) as usize].1).into_owned();
        // The ToUnicode map read back over the content's glyph strings gives the text.
        let cmap = text(45);
        let mut back: BTreeMap<String, String> = BTreeMap::new();
        for l in cmap
            .lines()
            .filter(|l| l.starts_with('<') && l.contains("> <"))
        {
            let (g, u) = l.split_once("> <").unwrap();
            let units: Vec<u16> = u
                .trim_end_matches('>')
                .as_bytes()
                .chunks(4)
                .map(|c| u16::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
                .collect();
            back.insert(
                g.trim_start_matches('<').to_owned(),
                String::from_utf16(&units).unwrap(),
            );
        }
        let content = text(40);
        let shown: Vec<String> = content
            .lines()
            .filter(|l| l.ends_with(" Tj"))
            .filter_map(|l| l.split_once('<').and_then(|(_, r)| r.split_once('>')))
            .map(|(hex, _)| {
                hex.as_bytes()
                    .chunks(4)
                    .map(|c| back[std::str::from_utf8(c).unwrap()].clone())
                    .collect()
            })
            .collect();
        assert_eq!(shown, vec!["Người ký: Nguyễn Văn Ánh", "Lý do: Ký kết quả"]);
        assert!(
            content.contains("/F1 10 Tf"),
            "fits at the largest size: {content}"
        );
        assert!(text(41).contains("/Identity-H"));
        assert!(text(44).starts_with("<</Filter /FlateDecode /Length1 "));
        // A few KB, not the 700 KB font.
        let total: usize = objs.iter().map(|(_, b)| b.len()).sum();
        assert!(total < 40_000, "{total} bytes");

        // Too small: refused; a bad rectangle: refused.
        let tiny = Visible {
            rect: [0.0, 0.0, 30.0, 8.0],
            ..v.clone()
        };
        assert!(matches!(
            objects(&tiny, &lines, 1),
            Err(AppearanceError::TooSmall { .. })
        ));
        for rect in [[10.0, 10.0, 5.0, 20.0], [f64::NAN, 0.0, 1.0, 1.0]] {
            let bad = Visible { rect, ..v.clone() };
            assert!(matches!(bad.checked_rect(), Err(AppearanceError::Rect(_))));
        }
    }

    #[test]
    fn a_font_that_cannot_show_vietnamese_is_refused() {
        assert!(matches!(
            AppearanceFont::from_bytes(b"not a font".to_vec()),
            Err(AppearanceError::Font(_))
        ));
        // DejaVu Sans Mono lacks none; Liberation Sans Narrow (if present) lacks some: either
        // way the check names what is missing rather than accepting silently.
        if let Ok(b) =
            std::fs::read("/usr/share/fonts/truetype/liberation/LiberationSansNarrow-Regular.ttf")
        {
            match AppearanceFont::from_bytes(b) {
                Ok(_) => {}
                Err(AppearanceError::Coverage { missing }) => assert!(!missing.is_empty()),
                Err(e) => panic!("{e}"),
            }
        }
    }
}
