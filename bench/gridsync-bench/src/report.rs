//! Collecting figures over runs and printing the table (Markdown).

use std::collections::BTreeMap;

/// Figures by name, one value per run.
#[derive(Debug, Default)]
pub struct Samples(BTreeMap<String, Vec<f64>>);

impl Samples {
    /// Adds one run's value.
    pub fn add(&mut self, key: &str, v: f64) {
        self.0.entry(key.to_string()).or_default().push(v);
    }

    /// Median over the runs (`NaN` if never measured).
    pub fn med(&self, key: &str) -> f64 {
        self.0
            .get(key)
            .map(|v| median(v.clone()))
            .unwrap_or(f64::NAN)
    }

    /// Whether a figure was measured.
    pub fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }
}

/// Median of values.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Whether a row meets its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Met.
    Met,
    /// Missed.
    Missed,
    /// No target (information).
    Info,
}

impl Verdict {
    /// From a condition.
    pub fn of(ok: bool) -> Verdict {
        if ok {
            Verdict::Met
        } else {
            Verdict::Missed
        }
    }

    fn text(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "**missed**",
            Verdict::Info => "",
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Workload (W1 …).
    pub work: String,
    /// What is measured.
    pub measure: String,
    /// gridsync's figure.
    pub value: String,
    /// Baseline and its figure.
    pub baseline: String,
    /// Ratio gridsync / baseline.
    pub ratio: String,
    /// Target.
    pub target: String,
    /// Verdict.
    pub verdict: Verdict,
}

/// Builds rows.
#[derive(Debug, Default)]
pub struct Table {
    /// Rows so far.
    pub rows: Vec<Row>,
}

impl Table {
    /// Adds a row.
    pub fn row(
        &mut self,
        work: &str,
        measure: &str,
        value: String,
        baseline: String,
        ratio: String,
        target: &str,
        verdict: Verdict,
    ) {
        self.rows.push(Row {
            work: work.into(),
            measure: measure.into(),
            value,
            baseline,
            ratio,
            target: target.into(),
            verdict,
        });
    }

    /// The table as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "| | measure | gridsync | baseline (same run) | ratio | target | |\n|---|---|---:|---|---:|---|---|\n",
        );
        for r in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                r.work,
                r.measure,
                r.value,
                r.baseline,
                r.ratio,
                r.target,
                r.verdict.text()
            ));
        }
        out
    }

    /// Rows that missed their target.
    pub fn missed(&self) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| r.verdict == Verdict::Missed)
            .collect()
    }
}

/// Seconds with sensible precision.
pub fn secs(s: f64) -> String {
    if s.is_nan() {
        "n/a".into()
    } else if s < 0.001 {
        format!("{:.1} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// Milliseconds.
pub fn ms(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else {
        format!("{v:.2} ms")
    }
}

/// Bytes in B / KB / MB (1 KB = 1,000 B).
pub fn bytes(b: f64) -> String {
    if b.is_nan() {
        "n/a".into()
    } else if b < 10_000.0 {
        format!("{b:.0} B")
    } else if b < 10_000_000.0 {
        format!("{:.1} KB", b / 1e3)
    } else {
        format!("{:.1} MB", b / 1e6)
    }
}

/// Memory from KiB in MB.
pub fn mem_kb(kb: f64) -> String {
    if kb.is_nan() {
        "n/a".into()
    } else {
        format!("{:.0} MB", kb * 1024.0 / 1e6)
    }
}

/// A count.
pub fn count(n: f64) -> String {
    if n.is_nan() {
        "n/a".into()
    } else if n.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        format!("{n:.1}")
    }
}

/// A ratio `a / b` as `1.23×`.
pub fn ratio(a: f64, b: f64) -> String {
    let r = a / b;
    if r.is_nan() || r.is_infinite() {
        "n/a".into()
    } else if r >= 100.0 {
        format!("{r:.0}×")
    } else {
        format!("{r:.2}×")
    }
}

/// How many times fewer `a` is than `b`: `b / a` as `1/123`.
pub fn fewer(a: f64, b: f64) -> String {
    let r = b / a;
    if r.is_nan() || r.is_infinite() {
        "n/a".into()
    } else {
        format!("1/{r:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_formats() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
        let mut s = Samples::default();
        s.add("x", 5.0);
        s.add("x", 1.0);
        s.add("x", 3.0);
        assert_eq!(s.med("x"), 3.0);
        assert!(s.med("y").is_nan());
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(123_456.0), "123.5 KB");
        assert_eq!(secs(0.0123), "12.3 ms");
        assert_eq!(ratio(3.0, 2.0), "1.50×");
        assert_eq!(fewer(10.0, 1000.0), "1/100");
        let mut t = Table::default();
        t.row(
            "W3",
            "idle",
            "1".into(),
            "".into(),
            "".into(),
            "1",
            Verdict::of(false),
        );
        assert_eq!(t.missed().len(), 1);
        assert!(t.markdown().contains("| W3 | idle | 1 |"));
    }
}
