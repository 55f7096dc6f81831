//! The monthly report as PDF: a table of every unit's indicators and a chart of each indicator
//! of the province over the last months, in Vietnamese, with an embedded TrueType subset.
//!
//! # Invariants
//! - **Text is text.** Every label, unit name and figure is drawn with an embedded font
//!   subset (CID-keyed, `Identity-H`, a `ToUnicode` map), so a reader, a search or
//!   `pdftotext` gets back the same Vietnamese characters (NFC) that were drawn.
//! - **Nothing replaced silently.** A character the font has no glyph for fails the report
//!   ([`PdfError::MissingGlyph`]) instead of printing a box.
//! - **N/A is N/A.** A figure whose denominator is zero prints "N/A", never 0; an empty
//!   period prints a province row of N/A and says that no dossier counted.
//! - **Pure.** [`render`] is a function of the reports, the series and the font's bytes: no
//!   clock, no store, no file system ([`find_font`] is the only reader of files).
//!
//! The font is DejaVu Sans by default (Debian's `fonts-dejavu-core`, a free licence that
//! allows embedding): it covers every precomposed Vietnamese letter, and is installed on
//! most systems, so the binary ships no font of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use pdf_writer::types::{CidFontType, FontFlags, SystemInfo, UnicodeCmap};
use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use unicode_normalization::UnicodeNormalization;

use super::aggregate::{Indicators, Tally};
use super::history::{Report, Series};

/// Where the default font is looked for, in order (Debian/Ubuntu, Fedora, Arch).
pub const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Why a PDF cannot be made, by step.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error(
        "no font for the PDF: install fonts-dejavu-core or name a TrueType font with --font \
         (looked at {looked})"
    )]
    NoFont { looked: String },
    #[error("cannot read the font {path}: {error}")]
    ReadFont {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the font is not a TrueType/OpenType font: {0}")]
    BadFont(String),
    #[error("the font has no glyph for U+{:04X} `{ch}`", *.ch as u32)]
    MissingGlyph { ch: char },
    #[error("the font cannot be subset: {0}")]
    Subset(String),
}

/// The font named, or the first of [`FONT_CANDIDATES`] present.
pub fn find_font(named: Option<&Path>) -> Result<(PathBuf, Vec<u8>), PdfError> {
    let path = match named {
        Some(p) => p.to_path_buf(),
        None => FONT_CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| PdfError::NoFont {
                looked: FONT_CANDIDATES.join(", "),
            })?,
    };
    let bytes = std::fs::read(&path).map_err(|error| PdfError::ReadFont {
        path: path.clone(),
        error,
    })?;
    Ok((path, bytes))
}

/// The labels of the report (Vietnamese, with the English in the column notes).
const TITLE: &str = "Báo cáo chỉ số phục vụ người dân, doanh nghiệp (Quyết định 766/QĐ-TTg)";
const SUBTITLE: &str = "Service-quality index report (Decision 766)";
const PROVINCE: &str = "Toàn tỉnh";
const NO_DOSSIER: &str =
    "Không có hồ sơ nào trong kỳ: mọi chỉ số là N/A (no dossier in the period).";

/// The table's columns: header (two lines), width in points.
const COLUMNS: &[(&str, &str, f32)] = &[
    ("Đơn vị", "Unit", 178.0),
    ("Đúng hạn", "2.1 %", 62.0),
    ("Điểm", "2.1 /20", 50.0),
    ("Trực tuyến", "3.3 %", 62.0),
    ("TT trực tuyến", "3.6 %", 70.0),
    ("KQ điện tử", "4.1 %", 62.0),
    ("Số hóa", "4.2 %", 56.0),
    ("Đồng bộ", "1.4 %", 56.0),
    ("TG xử lý TB", "2.2 ngày", 66.0),
    ("Số hồ sơ", "2.1 mẫu số", 62.0),
];

/// The charts: title, and the figure of an indicator set.
type Pick = fn(&Indicators) -> Option<f64>;
const CHARTS: &[(&str, Pick)] = &[
    ("Đúng hạn (2.1) %", |i| i.on_time.percent),
    ("Trực tuyến (3.3) %", |i| i.online.percent),
    ("Thanh toán trực tuyến (3.6) %", |i| {
        i.online_payment.percent
    }),
    ("Kết quả điện tử (4.1) %", |i| {
        i.electronic_result.percent
    }),
    ("Số hóa (4.2) %", |i| i.digitised.percent),
    ("Đồng bộ (1.4) %", |i| i.synced.percent),
];

const PAGE_W: f32 = 842.0;
const PAGE_H: f32 = 595.0;
const MARGIN: f32 = 36.0;
const ROW_H: f32 = 16.0;

fn fig(v: Option<f64>) -> String {
    v.map_or_else(|| "N/A".to_string(), |x| format!("{x:.2}"))
}

fn cells(name: &str, i: &Indicators) -> Vec<String> {
    vec![
        name.to_string(),
        fig(i.on_time.percent),
        fig(i.on_time_points),
        fig(i.online.percent),
        fig(i.online_payment.percent),
        fig(i.electronic_result.percent),
        fig(i.digitised.percent),
        fig(i.synced.percent),
        fig(i.avg_processing_days),
        i.on_time.den.to_string(),
    ]
}

/// One drawing operation of a page, before the font is subset.
enum Op {
    Text {
        x: f32,
        y: f32,
        size: f32,
        text: String,
    },
    Line {
        from: (f32, f32),
        to: (f32, f32),
        width: f32,
        rgb: (f32, f32, f32),
    },
    Fill {
        rect: (f32, f32, f32, f32),
        rgb: (f32, f32, f32),
    },
}

/// Measures text with the font's advances (before subsetting).
struct Metrics<'a> {
    face: ttf_parser::Face<'a>,
}

impl Metrics<'_> {
    fn width(&self, text: &str, size: f32) -> f32 {
        let upem = f32::from(self.face.units_per_em());
        text.chars()
            .filter_map(|c| self.face.glyph_index(c))
            .map(|g| f32::from(self.face.glyph_hor_advance(g).unwrap_or(0)))
            .sum::<f32>()
            * size
            / upem
    }

    /// `text` cut with an ellipsis to fit `max` points.
    fn fit(&self, text: &str, size: f32, max: f32) -> String {
        if self.width(text, size) <= max {
            return text.to_string();
        }
        let mut out: String = text.to_string();
        while !out.is_empty() && self.width(&format!("{out}…"), size) > max {
            out.pop();
        }
        format!("{out}…")
    }
}

/// Lay out the pages.
fn layout(
    m: &Metrics,
    units: &Report,
    province: &Report,
    series: &Series,
    as_of: &str,
) -> Vec<Vec<Op>> {
    let mut pages: Vec<Vec<Op>> = Vec::new();
    let grey = (0.85, 0.85, 0.85);
    let text = |ops: &mut Vec<Op>, x: f32, y: f32, size: f32, t: &str| {
        ops.push(Op::Text {
            x,
            y,
            size,
            text: t.nfc().collect(),
        })
    };
    let province_row = province
        .rows
        .first()
        .map(|r| r.indicators.clone())
        .unwrap_or_else(|| Tally::default().indicators());
    let mut rows: Vec<Vec<String>> = vec![cells(PROVINCE, &province_row)];
    rows.extend(units.rows.iter().map(|r| cells(&r.key, &r.indicators)));
    let empty = province.rows.is_empty() && units.rows.is_empty();
    // Table pages.
    let mut next = 0;
    while next < rows.len() || pages.is_empty() {
        let mut ops = Vec::new();
        let mut y = PAGE_H - MARGIN - 14.0;
        if pages.is_empty() {
            text(&mut ops, MARGIN, y, 14.0, TITLE);
            y -= 16.0;
            text(
                &mut ops,
                MARGIN,
                y,
                9.0,
                &format!(
                    "{SUBTITLE} · Kỳ báo cáo (period) {} · số liệu đến (as of) {as_of}",
                    units.period
                ),
            );
            y -= 22.0;
        }
        // Header.
        let mut x = MARGIN;
        ops.push(Op::Fill {
            rect: (MARGIN, y - 18.0, PAGE_W - 2.0 * MARGIN, 30.0),
            rgb: grey,
        });
        for (vi, en, w) in COLUMNS {
            text(&mut ops, x + 3.0, y + 2.0, 8.0, vi);
            text(&mut ops, x + 3.0, y - 10.0, 7.0, en);
            x += w;
        }
        y -= 18.0 + ROW_H;
        while next < rows.len() && y > MARGIN {
            let mut x = MARGIN;
            for (i, ((_, _, w), cell)) in COLUMNS.iter().zip(&rows[next]).enumerate() {
                if i == 0 {
                    text(&mut ops, x + 3.0, y + 4.0, 8.0, &m.fit(cell, 8.0, w - 6.0));
                } else {
                    let cw = m.width(cell, 8.0);
                    text(&mut ops, x + w - 4.0 - cw, y + 4.0, 8.0, cell);
                }
                x += w;
            }
            ops.push(Op::Line {
                from: (MARGIN, y),
                to: (PAGE_W - MARGIN, y),
                width: 0.3,
                rgb: (0.6, 0.6, 0.6),
            });
            y -= ROW_H;
            next += 1;
        }
        if empty && pages.is_empty() {
            text(&mut ops, MARGIN, y - 4.0, 9.0, NO_DOSSIER);
        }
        pages.push(ops);
    }
    // The charts page: the province's figures month by month.
    let mut ops = Vec::new();
    let months = &series.months;
    text(
        &mut ops,
        MARGIN,
        PAGE_H - MARGIN - 14.0,
        12.0,
        &format!(
            "Toàn tỉnh theo tháng, {} đến {} (province by month)",
            months.first().map_or("", String::as_str),
            months.last().map_or("", String::as_str)
        ),
    );
    let points: Vec<Indicators> = series
        .rows
        .iter()
        .find(|r| r.key == "province")
        .map(|r| r.points.clone())
        .unwrap_or_else(|| vec![Tally::default().indicators(); months.len()]);
    let (cols, chart_w, chart_h) = (3usize, 240.0f32, 190.0f32);
    for (n, (title, pick)) in CHARTS.iter().enumerate() {
        let cx = MARGIN + (n % cols) as f32 * (chart_w + 27.0);
        let top = PAGE_H - MARGIN - 40.0 - (n / cols) as f32 * (chart_h + 40.0);
        chart(
            &mut ops,
            m,
            (cx, top - chart_h, chart_w, chart_h),
            title,
            months,
            &points.iter().map(pick).collect::<Vec<_>>(),
        );
    }
    pages.push(ops);
    pages
}

/// A line chart of percentages (0–100) in `frame` (x, y, w, h); N/A months are gaps.
fn chart(
    ops: &mut Vec<Op>,
    m: &Metrics,
    (x, y, w, h): (f32, f32, f32, f32),
    title: &str,
    months: &[String],
    values: &[Option<f64>],
) {
    let t = |ops: &mut Vec<Op>, x: f32, y: f32, size: f32, s: &str| {
        ops.push(Op::Text {
            x,
            y,
            size,
            text: s.nfc().collect(),
        })
    };
    t(ops, x, y + h + 6.0, 9.0, title);
    let (px, py, pw, ph) = (x + 24.0, y + 14.0, w - 28.0, h - 18.0);
    for pct in [0.0f32, 50.0, 100.0] {
        let ly = py + ph * pct / 100.0;
        ops.push(Op::Line {
            from: (px, ly),
            to: (px + pw, ly),
            width: 0.3,
            rgb: (0.75, 0.75, 0.75),
        });
        let label = format!("{pct:.0}");
        t(ops, px - 3.0 - m.width(&label, 7.0), ly - 2.5, 7.0, &label);
    }
    let n = months.len().max(1);
    let step = if n > 1 { pw / (n - 1) as f32 } else { 0.0 };
    let at = |i: usize, v: f64| {
        (
            px + step * i as f32,
            py + ph * (v.clamp(0.0, 100.0) as f32) / 100.0,
        )
    };
    for (i, month) in months.iter().enumerate() {
        if n <= 6 || i % 2 == (n - 1) % 2 {
            let label = month.get(2..).unwrap_or(month);
            let lw = m.width(label, 6.0);
            t(ops, px + step * i as f32 - lw / 2.0, y + 4.0, 6.0, label);
        }
    }
    let blue = (0.12, 0.35, 0.7);
    for (i, value) in values.iter().enumerate() {
        let Some(v) = *value else { continue };
        let (cx, cy) = at(i, v);
        ops.push(Op::Fill {
            rect: (cx - 1.8, cy - 1.8, 3.6, 3.6),
            rgb: blue,
        });
        if let Some(Some(prev)) = i.checked_sub(1).map(|j| values[j]) {
            ops.push(Op::Line {
                from: at(i - 1, prev),
                to: (cx, cy),
                width: 1.2,
                rgb: blue,
            });
        }
    }
    if let Some((i, Some(v))) = values.iter().enumerate().next_back() {
        let label = format!("{v:.2}");
        let (cx, cy) = at(i, *v);
        t(ops, cx - m.width(&label, 7.0), cy + 4.0, 7.0, &label);
    } else {
        t(ops, px + pw / 2.0 - 8.0, py + ph / 2.0, 8.0, "N/A");
    }
}

/// The report as PDF bytes: `units` (unit level) and `province` (province level) of one
/// period, `series` (province level) for the charts, `as_of` printed as given, `font` the
/// TrueType bytes.
pub fn render(
    units: &Report,
    province: &Report,
    series: &Series,
    as_of: &str,
    font: &[u8],
) -> Result<Vec<u8>, PdfError> {
    let face = ttf_parser::Face::parse(font, 0).map_err(|e| PdfError::BadFont(e.to_string()))?;
    let metrics = Metrics { face };
    let pages = layout(&metrics, units, province, series, as_of);
    let face = &metrics.face;

    // The glyphs used: each character's glyph, remapped to the subset's ids.
    let mut chars = BTreeSet::new();
    for op in pages.iter().flatten() {
        if let Op::Text { text, .. } = op {
            chars.extend(text.chars());
        }
    }
    let mut remapper = subsetter::GlyphRemapper::new();
    let mut cid_of: BTreeMap<char, u16> = BTreeMap::new();
    for c in &chars {
        let g = face
            .glyph_index(*c)
            .ok_or(PdfError::MissingGlyph { ch: *c })?;
        cid_of.insert(*c, remapper.remap(g.0));
    }
    let subset =
        subsetter::subset(font, 0, &remapper).map_err(|e| PdfError::Subset(e.to_string()))?;

    let mut pdf = Pdf::new();
    let mut ids = (1..).map(Ref::new);
    let mut id = || ids.next().expect("ids do not run out");
    let (catalog, tree, info) = (id(), id(), id());
    let (type0, cid_font, descriptor, cmap, file) = (id(), id(), id(), id(), id());
    let font_name = Name(b"F1");
    let base_font = Name(b"AAAAAA+DejaVuSans");
    let page_ids: Vec<(Ref, Ref)> = pages.iter().map(|_| (id(), id())).collect();

    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().map(|(p, _)| *p))
        .count(page_ids.len() as i32);
    pdf.document_info(info)
        .title(TextStr(TITLE))
        .producer(TextStr("gateway indicators report"));

    for ((page_id, content_id), ops) in page_ids.iter().zip(&pages) {
        let mut page = pdf.page(*page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
        page.parent(tree);
        page.contents(*content_id);
        page.resources().fonts().pair(font_name, type0);
        page.finish();
        let mut c = Content::new();
        for op in ops {
            match op {
                Op::Text { x, y, size, text } => {
                    let mut bytes = Vec::with_capacity(text.len() * 2);
                    for ch in text.chars() {
                        bytes.extend_from_slice(&cid_of[&ch].to_be_bytes());
                    }
                    c.set_fill_rgb(0.0, 0.0, 0.0);
                    c.begin_text();
                    c.set_font(font_name, *size);
                    c.next_line(*x, *y);
                    c.show(Str(&bytes));
                    c.end_text();
                }
                Op::Line {
                    from,
                    to,
                    width,
                    rgb,
                } => {
                    c.set_stroke_rgb(rgb.0, rgb.1, rgb.2);
                    c.set_line_width(*width);
                    c.move_to(from.0, from.1);
                    c.line_to(to.0, to.1);
                    c.stroke();
                }
                Op::Fill { rect, rgb } => {
                    c.set_fill_rgb(rgb.0, rgb.1, rgb.2);
                    c.rect(rect.0, rect.1, rect.2, rect.3);
                    c.fill_nonzero();
                }
            }
        }
        pdf.stream(*content_id, &c.finish());
    }

    let system = SystemInfo {
        registry: Str(b"Adobe"),
        ordering: Str(b"Identity"),
        supplement: 0,
    };
    pdf.type0_font(type0)
        .base_font(base_font)
        .encoding_predefined(Name(b"Identity-H"))
        .descendant_font(cid_font)
        .to_unicode(cmap);
    let upem = f32::from(face.units_per_em());
    let scale = |v: i16| f32::from(v) * 1000.0 / upem;
    let mut widths: Vec<(u16, f32)> = cid_of
        .values()
        .zip(chars.iter())
        .map(|(cid, c)| {
            let g = face.glyph_index(*c).expect("checked above");
            let adv = f32::from(face.glyph_hor_advance(g).unwrap_or(0)) * 1000.0 / upem;
            (*cid, adv)
        })
        .collect();
    widths.sort_by_key(|(cid, _)| *cid);
    {
        let mut cf = pdf.cid_font(cid_font);
        cf.subtype(CidFontType::Type2)
            .base_font(base_font)
            .system_info(system)
            .font_descriptor(descriptor)
            .default_width(0.0)
            .cid_to_gid_map_predefined(Name(b"Identity"));
        let mut w = cf.widths();
        for (cid, adv) in &widths {
            w.consecutive(*cid, [*adv]);
        }
    }
    let bbox = face.global_bounding_box();
    pdf.font_descriptor(descriptor)
        .name(base_font)
        .flags(FontFlags::NON_SYMBOLIC)
        .bbox(Rect::new(
            scale(bbox.x_min),
            scale(bbox.y_min),
            scale(bbox.x_max),
            scale(bbox.y_max),
        ))
        .italic_angle(0.0)
        .ascent(scale(face.ascender()))
        .descent(scale(face.descender()))
        .cap_height(scale(face.capital_height().unwrap_or(face.ascender())))
        .stem_v(80.0)
        .font_file2(file);
    let mut unicode = UnicodeCmap::new(Name(b"Custom"), system);
    for (c, cid) in &cid_of {
        unicode.pair(*cid, *c);
    }
    pdf.cmap(cmap, &unicode.finish());
    let compressed = {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&subset).expect("writing to memory");
        z.finish().expect("writing to memory")
    };
    pdf.stream(file, &compressed)
        .filter(Filter::FlateDecode)
        .pair(Name(b"Length1"), subset.len() as i32);
    Ok(pdf.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::aggregate::Level;
    use crate::indicators::formulas::Ratio;
    use crate::indicators::history::{ReportRow, SeriesRow};

    fn font() -> Option<Vec<u8>> {
        match find_font(None) {
            Ok((_, b)) => Some(b),
            Err(e) => {
                eprintln!("skipped: {e}");
                None
            }
        }
    }

    fn report(level: Level, rows: Vec<ReportRow>) -> Report {
        Report {
            period: "2026-11".into(),
            level,
            as_of_ms: 0,
            rows,
        }
    }

    #[test]
    fn a_pdf_with_its_font_subset_and_every_text_mapped() {
        let Some(font) = font() else { return };
        let t = Tally {
            on_time: Ratio { num: 373, den: 400 },
            ..Default::default()
        };
        let row = |k: &str| ReportRow {
            key: k.into(),
            indicators: t.indicators(),
        };
        let units = report(
            Level::Unit,
            vec![row("Xã Đồng Tâm"), row("Phường Hòa Bình")],
        );
        let province = report(Level::Province, vec![row("province")]);
        let series = Series {
            level: Level::Province,
            months: vec!["2026-10".into(), "2026-11".into()],
            as_of_ms: 0,
            rows: vec![SeriesRow {
                key: "province".into(),
                points: vec![Tally::default().indicators(), t.indicators()],
            }],
        };
        let pdf = render(&units, &province, &series, "2026-11-30", &font).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.contains("/FontFile2"), "the font is embedded");
        assert!(text.contains("/ToUnicode"));
        assert!(
            pdf.len() < 200_000,
            "a subset, not the whole font: {}",
            pdf.len()
        );
        // A character the font cannot draw is refused, not boxed.
        let odd = report(Level::Unit, vec![row("Xã \u{10FFFD}")]);
        assert!(matches!(
            render(&odd, &province, &series, "x", &font),
            Err(PdfError::MissingGlyph { .. })
        ));
    }

    #[test]
    fn not_a_font_is_an_error() {
        let units = report(Level::Unit, vec![]);
        let series = Series {
            level: Level::Province,
            months: vec![],
            as_of_ms: 0,
            rows: vec![],
        };
        assert!(matches!(
            render(&units, &units, &series, "x", b"not a font"),
            Err(PdfError::BadFont(_))
        ));
        assert!(matches!(
            find_font(Some(Path::new("/nonexistent/font.ttf"))),
            Err(PdfError::ReadFont { .. })
        ));
    }
}
