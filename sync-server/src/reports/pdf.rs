//! A minimal PDF writer for printable reports: A4 pages of text, lines and boxes, with no
//! dependency and no embedded font.
//!
//! Text is drawn with `STSong-Light`, one of the Adobe-GB1 fonts every PDF reader
//! provides, as a Type0 font over the `UniGB-UCS2-H` CMap: strings are written as UTF-16BE
//! hex strings (so nothing in them needs escaping). Characters outside the Basic
//! Multilingual Plane (which UCS-2 cannot carry) are drawn as `□`, control characters as a
//! space. Widths for layout: CJK and other characters one em, printable ASCII half an em
//! (the font's widths are declared the same way, so the reader places glyphs as measured).
//!
//! Streams are not compressed; the cross-reference table gives each object's byte offset.

use std::fmt::Write as _;

/// A4 portrait width in points.
pub const A4_SHORT: f32 = 595.0;
/// A4 portrait height in points.
pub const A4_LONG: f32 = 842.0;

/// What stands for a character the font's CMap cannot carry.
const REPLACEMENT: char = '□';

/// The character as drawn: BMP characters as they are, others replaced.
fn drawable(c: char) -> char {
    if c.is_control() {
        ' '
    } else if (c as u32) > 0xFFFF {
        REPLACEMENT
    } else {
        c
    }
}

/// Width of a character in ems.
fn char_em(c: char) -> f32 {
    if (' '..='~').contains(&c) {
        0.5
    } else {
        1.0
    }
}

/// Width of `s` at font size `size`, in points.
pub fn text_width(s: &str, size: f32) -> f32 {
    s.chars().map(|c| char_em(drawable(c))).sum::<f32>() * size
}

/// Breaks `s` into lines of at most `width` points at `size` (at explicit newlines too).
/// CJK text breaks anywhere; a run of ASCII letters or digits is kept whole when it fits
/// on a line.
pub fn wrap(s: &str, size: f32, width: f32) -> Vec<String> {
    let mut lines = Vec::new();
    for para in s.split('\n') {
        let mut line = String::new();
        let mut w = 0.0;
        let chars: Vec<char> = para.chars().map(drawable).collect();
        let mut i = 0;
        while i < chars.len() {
            // A word: a run of ASCII alphanumerics (or one other character).
            let mut j = i + 1;
            if chars[i].is_ascii_alphanumeric() {
                while j < chars.len() && chars[j].is_ascii_alphanumeric() {
                    j += 1;
                }
            }
            let word: String = chars[i..j].iter().collect();
            let ww = text_width(&word, size);
            if w + ww <= width || line.is_empty() && ww <= width {
                line.push_str(&word);
                w += ww;
                i = j;
            } else if line.is_empty() {
                // A word longer than the line: break it by characters.
                let c = chars[i];
                line.push(c);
                w += char_em(c) * size;
                i += 1;
                if w + char_em(chars.get(i).copied().unwrap_or(' ')) * size > width {
                    lines.push(std::mem::take(&mut line));
                    w = 0.0;
                }
            } else {
                lines.push(std::mem::take(&mut line).trim_end().to_string());
                w = 0.0;
                // A line does not start with the space it broke at.
                if chars[i] == ' ' {
                    i += 1;
                }
            }
        }
        lines.push(line);
    }
    lines
}

/// A number as PDF writes it (finite, two decimals at most).
fn num(v: f32) -> String {
    let v = if v.is_finite() { v } else { 0.0 };
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" || s.is_empty() {
        "0".into()
    } else {
        s.to_string()
    }
}

/// UTF-16BE hex of the drawable characters of `s`.
fn utf16_hex(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 4);
    for c in s.chars().map(drawable) {
        let mut buf = [0u16; 2];
        for u in c.encode_utf16(&mut buf) {
            let _ = write!(out, "{u:04X}");
        }
    }
    out
}

/// One page: its content stream. Coordinates in points from the bottom left.
#[derive(Debug, Clone, Default)]
pub struct Page {
    ops: String,
}

impl Page {
    /// Draws `s` with its baseline starting at (`x`, `y`).
    pub fn text(&mut self, x: f32, y: f32, size: f32, s: &str) {
        if s.is_empty() || !(size.is_finite() && size > 0.0) {
            return;
        }
        let _ = writeln!(
            self.ops,
            "BT /F1 {} Tf {} {} Td <{}> Tj ET",
            num(size),
            num(x),
            num(y),
            utf16_hex(s)
        );
    }

    /// Draws `s` centred on `cx`.
    pub fn text_centered(&mut self, cx: f32, y: f32, size: f32, s: &str) {
        self.text(cx - text_width(s, size) / 2.0, y, size, s);
    }

    /// A straight line.
    pub fn line(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, width: f32) {
        let _ = writeln!(
            self.ops,
            "{} w {} {} m {} {} l S",
            num(width),
            num(x1),
            num(y1),
            num(x2),
            num(y2)
        );
    }

    /// The outline of a box (`x`, `y` its bottom left corner).
    pub fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, width: f32) {
        let _ = writeln!(
            self.ops,
            "{} w {} {} {} {} re S",
            num(width),
            num(x),
            num(y),
            num(w),
            num(h)
        );
    }

    /// A box filled with a grey (0 black, 1 white); the colour is reset after.
    pub fn fill(&mut self, x: f32, y: f32, w: f32, h: f32, gray: f32) {
        let _ = writeln!(
            self.ops,
            "q {} g {} {} {} {} re f Q",
            num(gray.clamp(0.0, 1.0)),
            num(x),
            num(y),
            num(w),
            num(h)
        );
    }
}

/// A document of A4 pages.
#[derive(Debug, Clone)]
pub struct Document {
    /// Landscape (842 × 595 points) or portrait.
    pub landscape: bool,
    /// The title in the document's properties.
    pub title: String,
    /// The pages.
    pub pages: Vec<Page>,
}

impl Document {
    /// An empty document.
    pub fn new(title: &str, landscape: bool) -> Document {
        Document {
            landscape,
            title: title.to_string(),
            pages: Vec::new(),
        }
    }

    /// Page width and height in points.
    pub fn size(&self) -> (f32, f32) {
        if self.landscape {
            (A4_LONG, A4_SHORT)
        } else {
            (A4_SHORT, A4_LONG)
        }
    }

    /// The PDF file (a document without pages gets one empty page).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut pages: Vec<&Page> = self.pages.iter().collect();
        let empty = Page::default();
        if pages.is_empty() {
            pages.push(&empty);
        }
        // Objects: 1 catalog, 2 page tree, 3 Type0 font, 4 CID font, 5 descriptor, 6 info,
        // then a page and its content stream for each page.
        let first_page = 7;
        let (w, h) = self.size();
        let mut objects: Vec<Vec<u8>> = Vec::new();
        objects.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
        let kids: Vec<String> = (0..pages.len())
            .map(|i| format!("{} 0 R", first_page + 2 * i))
            .collect();
        objects.push(
            format!(
                "<< /Type /Pages /Kids [{}] /Count {} >>",
                kids.join(" "),
                pages.len()
            )
            .into_bytes(),
        );
        objects.push(
            b"<< /Type /Font /Subtype /Type0 /BaseFont /STSong-Light /Encoding /UniGB-UCS2-H /DescendantFonts [4 0 R] >>"
                .to_vec(),
        );
        objects.push(
            b"<< /Type /Font /Subtype /CIDFontType0 /BaseFont /STSong-Light /CIDSystemInfo << /Registry (Adobe) /Ordering (GB1) /Supplement 2 >> /FontDescriptor 5 0 R /DW 1000 /W [1 95 500] >>"
                .to_vec(),
        );
        objects.push(
            b"<< /Type /FontDescriptor /FontName /STSong-Light /Flags 6 /FontBBox [-25 -254 1000 880] /ItalicAngle 0 /Ascent 880 /Descent -120 /CapHeight 880 /StemV 93 >>"
                .to_vec(),
        );
        objects.push(
            format!(
                "<< /Title <FEFF{}> /Producer (gridsync) >>",
                utf16_hex(&self.title)
            )
            .into_bytes(),
        );
        for (i, p) in pages.iter().enumerate() {
            let content = first_page + 2 * i + 1;
            objects.push(
                format!(
                    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {} {}] /Resources << /Font << /F1 3 0 R >> >> /Contents {content} 0 R >>",
                    num(w),
                    num(h)
                )
                .into_bytes(),
            );
            let mut stream = format!("<< /Length {} >>\nstream\n", p.ops.len()).into_bytes();
            stream.extend_from_slice(p.ops.as_bytes());
            stream.extend_from_slice(b"\nendstream");
            objects.push(stream);
        }

        let mut out: Vec<u8> = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
        let mut offsets = Vec::with_capacity(objects.len());
        for (i, body) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\nendobj\n");
        }
        let xref_at = out.len();
        let mut xref = format!("xref\n0 {}\n0000000000 65535 f\r\n", objects.len() + 1);
        for o in &offsets {
            let _ = write!(xref, "{o:010} 00000 n\r\n");
        }
        let _ = write!(
            xref,
            "trailer\n<< /Size {} /Root 1 0 R /Info 6 0 R >>\nstartxref\n{xref_at}\n%%EOF\n",
            objects.len() + 1
        );
        out.extend_from_slice(xref.as_bytes());
        out
    }
}

/// Flowing layout over pages: a cursor that moves down and starts a new page when the
/// next block does not fit.
#[derive(Debug)]
pub struct Flow {
    /// The document being written.
    pub doc: Document,
    /// Margin on every side, in points.
    pub margin: f32,
    /// The top of the next block.
    pub y: f32,
}

/// A table column: its title and width in points.
#[derive(Debug, Clone)]
pub struct Column {
    /// Title in the header row.
    pub title: String,
    /// Width in points.
    pub width: f32,
}

const CELL_PAD: f32 = 4.0;
const LINE_GAP: f32 = 1.35;

impl Flow {
    /// A flow over a new document, starting on its first page.
    pub fn new(doc: Document, margin: f32) -> Flow {
        let mut f = Flow {
            doc,
            margin,
            y: 0.0,
        };
        f.new_page();
        f
    }

    /// Width available between the margins.
    pub fn width(&self) -> f32 {
        self.doc.size().0 - 2.0 * self.margin
    }

    fn page(&mut self) -> &mut Page {
        if self.doc.pages.is_empty() {
            self.doc.pages.push(Page::default());
        }
        let last = self.doc.pages.len() - 1;
        &mut self.doc.pages[last]
    }

    /// Starts a new page.
    pub fn new_page(&mut self) {
        self.doc.pages.push(Page::default());
        self.y = self.doc.size().1 - self.margin;
    }

    /// Makes room for `h` points (a new page when they do not fit on this one).
    pub fn need(&mut self, h: f32) {
        if self.y - h < self.margin && self.y < self.doc.size().1 - self.margin {
            self.new_page();
        }
    }

    /// Moves down `h` points.
    pub fn skip(&mut self, h: f32) {
        self.y -= h;
    }

    /// A centred line of text.
    pub fn title(&mut self, s: &str, size: f32) {
        self.need(size * LINE_GAP);
        let cx = self.doc.size().0 / 2.0;
        let y = self.y - size;
        self.page().text_centered(cx, y, size, s);
        self.y -= size * LINE_GAP;
    }

    /// A paragraph, wrapped to the width, indented by `indent` points.
    pub fn paragraph(&mut self, s: &str, size: f32, indent: f32) {
        let x = self.margin + indent;
        for line in wrap(s, size, self.width() - indent) {
            self.need(size * LINE_GAP);
            let y = self.y - size;
            self.page().text(x, y, size, &line);
            self.y -= size * LINE_GAP;
        }
    }

    fn row(&mut self, cells: &[Vec<String>], cols: &[Column], size: f32, shade: bool) {
        let lines = cells.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let h = lines as f32 * size * LINE_GAP + 2.0 * CELL_PAD;
        let top = self.y;
        let total: f32 = cols.iter().map(|c| c.width).sum();
        let margin = self.margin;
        let page = self.page();
        if shade {
            page.fill(margin, top - h, total, h, 0.9);
        }
        let mut x = margin;
        for (col, cell) in cols.iter().zip(cells) {
            page.rect(x, top - h, col.width, h, 0.6);
            for (i, line) in cell.iter().enumerate() {
                let y = top - CELL_PAD - size - i as f32 * size * LINE_GAP;
                page.text(x + CELL_PAD, y, size, line);
            }
            x += col.width;
        }
        self.y -= h;
    }

    /// A table with a shaded header row, repeated on every page it continues on. Cells
    /// wrap within their column; a row is never split across pages (a row taller than a
    /// page is cut at the page's end).
    pub fn table(&mut self, cols: &[Column], rows: &[Vec<String>], size: f32) {
        let wrap_row = |row: &[String]| -> Vec<Vec<String>> {
            cols.iter()
                .enumerate()
                .map(|(i, c)| {
                    wrap(
                        row.get(i).map(String::as_str).unwrap_or(""),
                        size,
                        c.width - 2.0 * CELL_PAD,
                    )
                })
                .collect()
        };
        let header: Vec<String> = cols.iter().map(|c| c.title.clone()).collect();
        let header = wrap_row(&header);
        let height = |cells: &[Vec<String>]| {
            cells.iter().map(Vec::len).max().unwrap_or(1).max(1) as f32 * size * LINE_GAP
                + 2.0 * CELL_PAD
        };
        let hh = height(&header);
        let first = rows.first().map(|r| height(&wrap_row(r))).unwrap_or(0.0);
        self.need(hh + first);
        self.row(&header, cols, size, true);
        for r in rows {
            let mut cells = wrap_row(r);
            let h = height(&cells);
            if self.y - h < self.margin {
                self.new_page();
                self.row(&header, cols, size, true);
                // Cut a row taller than what is left of a fresh page.
                let room = ((self.y - self.margin - 2.0 * CELL_PAD) / (size * LINE_GAP))
                    .floor()
                    .max(1.0) as usize;
                for c in &mut cells {
                    c.truncate(room);
                }
            }
            self.row(&cells, cols, size, false);
        }
    }

    /// The finished document.
    pub fn finish(self) -> Document {
        self.doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    /// Checks each byte offset of the xref table starts `N 0 obj`; the table's size.
    fn check_xref(pdf: &[u8]) -> usize {
        let tail_at = pdf.len() - 40;
        let tail = std::str::from_utf8(&pdf[tail_at..]).unwrap();
        let start: usize = tail
            .rsplit("startxref\n")
            .next()
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let table = std::str::from_utf8(&pdf[start..]).unwrap();
        assert!(table.starts_with("xref\n"));
        let mut lines = table.lines().skip(1);
        let n: usize = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let entries: Vec<&str> = lines.take(n).collect();
        assert!(entries[0].starts_with("0000000000 65535 f"));
        for (i, e) in entries.iter().enumerate().skip(1) {
            let off: usize = e[..10].parse().unwrap();
            assert!(
                pdf[off..].starts_with(format!("{i} 0 obj\n").as_bytes()),
                "object {i} at {off}"
            );
        }
        n
    }

    #[test]
    fn text_is_utf16_hex_and_astral_characters_are_replaced() {
        assert_eq!(utf16_hex("网A"), "7F510041");
        assert_eq!(utf16_hex("a😀"), "006125A1");
        assert_eq!(utf16_hex("a\u{7}b"), "006100200062");
        let mut p = Page::default();
        p.text(10.0, 20.5, 12.0, "(x) \\ <y>");
        assert!(
            p.ops.contains("<0028007800290020005C0020003C0079003E> Tj"),
            "{}",
            p.ops
        );
        assert!(p.ops.contains("12 Tf 10 20.5 Td"));
    }

    #[test]
    fn numbers_are_finite() {
        assert_eq!(num(f32::NAN), "0");
        assert_eq!(num(f32::INFINITY), "0");
        assert_eq!(num(-0.001), "0");
        assert_eq!(num(12.5), "12.5");
        assert_eq!(num(595.0), "595");
    }

    #[test]
    fn wrapping_keeps_to_the_width() {
        let lines = wrap("协助监管员开展隐患排查、检测抽样 12316 abc", 10.0, 60.0);
        for l in &lines {
            assert!(text_width(l, 10.0) <= 60.0, "{l}");
        }
        assert_eq!(
            lines.concat().replace(' ', ""),
            "协助监管员开展隐患排查、检测抽样12316abc"
        );
        assert_eq!(wrap("甲\n乙", 10.0, 100.0), vec!["甲", "乙"]);
        assert_eq!(wrap("", 10.0, 100.0), vec![""]);
        // A word longer than the line is broken.
        let long = wrap(&"x".repeat(40), 10.0, 50.0);
        assert!(long.iter().all(|l| text_width(l, 10.0) <= 50.0), "{long:?}");
    }

    #[test]
    fn documents_have_a_correct_xref_table() {
        let mut f = Flow::new(Document::new("公示牌", true), 36.0);
        f.title("农畜产品质量安全网格化管理公示牌", 20.0);
        let cols = [
            Column {
                title: "姓名".into(),
                width: 100.0,
            },
            Column {
                title: "职责".into(),
                width: 300.0,
            },
        ];
        let rows: Vec<Vec<String>> = (0..80)
            .map(|i| vec![format!("人员{i}"), "登记生产主体，开展日常巡查".repeat(3)])
            .collect();
        f.table(&cols, &rows, 10.0);
        let doc = f.finish();
        assert!(doc.pages.len() > 1, "the table continues on more pages");
        let pdf = doc.to_bytes();
        assert!(pdf.starts_with(b"%PDF-1.4\n"));
        assert!(pdf.ends_with(b"%%EOF\n"));
        assert_eq!(check_xref(&pdf), 7 + 2 * doc.pages.len());
        // Every stream's length is its content's.
        let mut rest = &pdf[..];
        while let Some(at) = find(rest, b"<< /Length ") {
            rest = &rest[at + 11..];
            let sp = find(rest, b" ").unwrap();
            let len: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
            let body = &rest[find(rest, b"stream\n").unwrap() + 7..];
            assert!(body[len..].starts_with(b"\nendstream"));
        }
        assert_eq!(check_xref(&Document::new("", false).to_bytes()), 9);
    }
}
