//! A tiny SVG writer for the dashboard's charts, drawn on the server: horizontal bars
//! (single or stacked), and a line over months. No script, no external resource, every text
//! escaped; the colours are CSS classes (`c0`…`c4`, styled in desk.css), so a chart follows
//! the page's stylesheet. Each chart carries a `<title>` and `role="img"` with an
//! `aria-label`; the numbers are in the table beside it.

use std::fmt::Write;

/// Escapes text for SVG (XML) content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// One bar: its label and its segments (value, colour class index), drawn left to right.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// Label left of the bar.
    pub label: String,
    /// Segments: values (negative counts as zero).
    pub values: Vec<f64>,
    /// Text right of the bar (e.g. the total, or a percent).
    pub note: String,
}

const WIDTH: f64 = 560.0;
const LABEL_W: f64 = 150.0;
const NOTE_W: f64 = 70.0;
const ROW_H: f64 = 22.0;
const BAR_H: f64 = 14.0;
const TOP: f64 = 6.0;

/// Shortens a label to `n` characters (with an ellipsis).
fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn open(out: &mut String, title: &str, w: f64, h: f64) {
    let t = escape(title);
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{t}"><title>{t}</title>"#
    );
}

fn num(v: f64) -> String {
    format!("{:.1}", v.max(0.0))
}

/// Horizontal bars, one row per [`Bar`]; `max`: the value of a full bar (`None`: the
/// largest sum). `legend`: the names of the segments' classes (shown under the bars when
/// more than one).
pub fn bars(title: &str, rows: &[Bar], max: Option<f64>, legend: &[&str]) -> String {
    let largest = rows
        .iter()
        .map(|r| r.values.iter().map(|v| v.max(0.0)).sum::<f64>())
        .fold(0.0, f64::max);
    let full = max.unwrap_or(largest).max(f64::MIN_POSITIVE);
    let span = WIDTH - LABEL_W - NOTE_W;
    let legend_h = if legend.len() > 1 { ROW_H } else { 0.0 };
    let h = TOP * 2.0 + ROW_H * rows.len().max(1) as f64 + legend_h;
    let mut out = String::new();
    open(&mut out, title, WIDTH, h);
    if rows.is_empty() {
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" class="empty">暂无数据</text>"#,
            LABEL_W,
            TOP + 15.0
        );
    }
    for (i, r) in rows.iter().enumerate() {
        let y = TOP + ROW_H * i as f64;
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" class="label" text-anchor="end">{}</text>"#,
            num(LABEL_W - 6.0),
            num(y + 15.0),
            escape(&short(&r.label, 10))
        );
        let mut x = LABEL_W;
        for (k, v) in r.values.iter().enumerate() {
            let w = v.max(0.0) / full * span;
            if w > 0.0 {
                let _ = write!(
                    out,
                    r#"<rect x="{}" y="{}" width="{}" height="{BAR_H}" class="c{}"/>"#,
                    num(x),
                    num(y + 4.0),
                    num(w),
                    k % 5
                );
                x += w;
            }
        }
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" class="note">{}</text>"#,
            num(x + 4.0),
            num(y + 15.0),
            escape(&r.note)
        );
    }
    if legend.len() > 1 {
        let y = TOP + ROW_H * rows.len().max(1) as f64 + 4.0;
        let mut x = LABEL_W;
        for (k, name) in legend.iter().enumerate() {
            let _ = write!(
                out,
                r#"<rect x="{}" y="{}" width="10" height="10" class="c{}"/><text x="{}" y="{}" class="legend">{}</text>"#,
                num(x),
                num(y),
                k % 5,
                num(x + 14.0),
                num(y + 9.0),
                escape(name)
            );
            x += 24.0 + 13.0 * name.chars().count() as f64;
        }
    }
    out.push_str("</svg>");
    out
}

/// A line over labelled points (e.g. visits per month), with a dot and the value at each.
pub fn line(title: &str, points: &[(String, f64)]) -> String {
    let h = 200.0;
    let (left, right, top, bottom) = (40.0, 16.0, 16.0, 36.0);
    let mut out = String::new();
    open(&mut out, title, WIDTH, h);
    let max = points
        .iter()
        .map(|p| p.1.max(0.0))
        .fold(0.0, f64::max)
        .max(1.0);
    let span_x = WIDTH - left - right;
    let span_y = h - top - bottom;
    let _ = write!(
        out,
        r#"<line x1="{left}" y1="{0}" x2="{1}" y2="{0}" class="axis"/><line x1="{left}" y1="{top}" x2="{left}" y2="{0}" class="axis"/>"#,
        num(h - bottom),
        num(WIDTH - right),
    );
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" class="note" text-anchor="end">{}</text>"#,
        num(left - 4.0),
        num(top + 4.0),
        max
    );
    if points.is_empty() {
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" class="empty">暂无数据</text>"#,
            left + 10.0,
            top + 20.0
        );
    }
    let step = if points.len() > 1 {
        span_x / (points.len() - 1) as f64
    } else {
        0.0
    };
    let xy = |i: usize, v: f64| {
        let x = if points.len() > 1 {
            left + step * i as f64
        } else {
            left + span_x / 2.0
        };
        (x, top + span_y - v.max(0.0) / max * span_y)
    };
    let path: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (x, y) = xy(i, p.1);
            format!("{},{}", num(x), num(y))
        })
        .collect();
    if points.len() > 1 {
        let _ = write!(
            out,
            r#"<polyline points="{}" class="line c0"/>"#,
            path.join(" ")
        );
    }
    // Label every point when few, else about twelve of them.
    let every = points.len().div_ceil(12).max(1);
    for (i, (label, v)) in points.iter().enumerate() {
        let (x, y) = xy(i, *v);
        let _ = write!(
            out,
            r#"<circle cx="{}" cy="{}" r="3" class="c0"/>"#,
            num(x),
            num(y)
        );
        if i % every == 0 || i + 1 == points.len() {
            let _ = write!(
                out,
                r#"<text x="{}" y="{}" class="note" text-anchor="middle">{}</text><text x="{}" y="{}" class="label" text-anchor="middle">{}</text>"#,
                num(x),
                num(y - 6.0),
                v,
                num(x),
                num(h - bottom + 16.0),
                escape(&short(label, 8))
            );
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        let evil = "<script>alert('x')</script>&\"";
        let svg = bars(
            evil,
            &[Bar {
                label: "<b>".into(),
                values: vec![1.0],
                note: "\"1\"".into(),
            }],
            None,
            &["<i>", "&"],
        );
        assert!(!svg.contains("<script>") && !svg.contains("<b>") && !svg.contains("<i>"));
        assert!(svg.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"));
        let l = line(evil, &[("<m>".into(), 2.0), ("b".into(), 3.0)]);
        assert!(!l.contains("<script>") && !l.contains("<m>"));
        assert_eq!(escape("a\u{1}b"), "a b");
    }

    #[test]
    fn bars_scale_to_the_largest_or_the_given_full() {
        let rows = vec![
            Bar {
                label: "甲".into(),
                values: vec![2.0, 2.0],
                note: "4".into(),
            },
            Bar {
                label: "乙".into(),
                values: vec![1.0],
                note: "1".into(),
            },
        ];
        let svg = bars("t", &rows, None, &[]);
        // The full span is 340 wide: 4 of 4 is two rects of 170.
        assert_eq!(svg.matches(r#"width="170.0""#).count(), 2);
        assert!(svg.contains(r#"width="85.0""#));
        let pct = bars("t", &rows[1..], Some(100.0), &[]);
        assert!(pct.contains(r#"width="3.4""#));
        assert!(bars("t", &[], None, &[]).contains("暂无数据"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }
}
