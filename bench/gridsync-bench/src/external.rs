//! Benchmarks owned by others, run as subprocesses and parsed, not re-implemented:
//! `bench-local` (W4, the local write path, in `examples/`) and the server ingest example
//! (W5, `sync-server/examples/ingest.rs`). They are looked up beside this binary.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::R;

/// One row of `bench-local`'s table: label, gridsync figure, plain figure, target text.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalRow {
    /// Label as printed.
    pub label: String,
    /// gridsync figure.
    pub gridsync: f64,
    /// Plain rusqlite figure.
    pub plain: f64,
    /// The target text bench-local printed (may be empty).
    pub target: String,
}

/// Width of bench-local's label column.
const LABEL_WIDTH: usize = 44;

/// Parses bench-local's table (lines after its header line).
pub fn parse_local(out: &str) -> Vec<LocalRow> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in out.lines() {
        if line.starts_with("measure (median of runs)") {
            in_table = true;
            continue;
        }
        if !in_table || line.len() <= LABEL_WIDTH || !line.is_char_boundary(LABEL_WIDTH) {
            continue;
        }
        let (label, rest) = line.split_at(LABEL_WIDTH);
        let mut it = rest.split_whitespace();
        let (Some(g), Some(p), Some(_ratio)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let (Ok(g), Ok(p)) = (g.parse::<f64>(), p.parse::<f64>()) else {
            continue;
        };
        rows.push(LocalRow {
            label: label.trim().to_string(),
            gridsync: g,
            plain: p,
            target: it.collect::<Vec<_>>().join(" "),
        });
    }
    rows
}

fn sibling(name: &str) -> R<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or("the benchmark binary has no directory")?;
    Ok(dir.join(name))
}

/// Runs `bench-local` with `args`; `Ok(None)` if it was not built.
pub fn run_local(args: &[String]) -> R<Option<(Vec<LocalRow>, String)>> {
    let exe = sibling("bench-local")?;
    if !exe.exists() {
        return Ok(None);
    }
    let out = Command::new(&exe)
        .args(args)
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("bench-local failed ({})", out.status).into());
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    Ok(Some((parse_local(&text), text)))
}

/// One backend's medians from the ingest example.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestRow {
    /// Backend (sqlite or postgres).
    pub backend: String,
    /// The example's first line (its sizes), without `ingest: `.
    pub sizes: String,
    /// Accepted records per second over the burst.
    pub rate: f64,
    /// Push request latency p50, ms.
    pub p50_ms: f64,
    /// Push request latency p99, ms.
    pub p99_ms: f64,
    /// CPU of the server process per record, µs.
    pub cpu_us: f64,
}

/// Parses the ingest example's tables of medians (one per run of the example, each under
/// its `ingest: ` line of sizes).
pub fn parse_ingest(out: &str) -> Vec<IngestRow> {
    let mut rows = Vec::new();
    let mut in_table = false;
    let mut sizes = String::new();
    for line in out.lines() {
        if let Some(s) = line.strip_prefix("ingest: ") {
            sizes = s.to_string();
            in_table = false;
            continue;
        }
        if line.starts_with("medians over") {
            in_table = true;
            continue;
        }
        let t: Vec<&str> = line.split_whitespace().collect();
        if !in_table || t.len() != 5 {
            continue;
        }
        let nums: Vec<f64> = t[1..].iter().filter_map(|v| v.parse().ok()).collect();
        if nums.len() == 4 {
            rows.push(IngestRow {
                backend: t[0].to_string(),
                sizes: sizes.clone(),
                rate: nums[0],
                p50_ms: nums[1],
                p99_ms: nums[2],
                cpu_us: nums[3],
            });
        }
    }
    rows
}

/// Runs the ingest example with `args` and the environment variables `env`; `Ok(None)` if
/// it was not built. Returns its output.
pub fn run_ingest(args: &[String], env: &[(&str, &str)]) -> R<Option<String>> {
    let exe = sibling("examples")?.join("ingest");
    if !exe.exists() {
        return Ok(None);
    }
    let out = Command::new(&exe)
        .args(args)
        .envs(env.iter().copied())
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("the ingest example failed ({})", out.status).into());
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ingest_medians() {
        let out = "ingest: 200 devices x 50 records\nrun 1 sqlite ...\n\nmedians over 3 runs:\n\
backend       records/s    push p50 ms    push p99 ms    CPU us/record\n\
sqlite             1234           12.5           80.1              350\n\
postgres            987           20.0          120.0              410\n";
        let rows = parse_ingest(out);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].backend, "sqlite");
        assert_eq!(rows[0].sizes, "200 devices x 50 records");
        assert_eq!(rows[0].rate, 1234.0);
        assert_eq!(rows[1].p99_ms, 120.0);
        assert_eq!(rows[1].cpu_us, 410.0);
    }

    #[test]
    fn parses_bench_local_table() {
        let out = "bench-local: 2000 producers\n\n\
measure (median of runs)                         gridsync   plain JSON    ratio  target\n\
(a) record a visit, p50 ms                          1.234        0.500     2.47  \n\
(a) record a visit, p99 ms                          3.000        1.000     3.00  p99 <= 5 ms: met\n\
(b) create producers, records/s                 12000.000    90000.000     0.13  >= 10,000/s and >= 1/5 of plain: NOT met\n\
\n\
ratio = gridsync / plain\n";
        let rows = parse_local(out);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].label, "(a) record a visit, p50 ms");
        assert_eq!(rows[0].gridsync, 1.234);
        assert_eq!(rows[1].target, "p99 <= 5 ms: met");
        assert_eq!(rows[2].plain, 90000.0);
        assert!(rows[2].target.ends_with("NOT met"));
    }
}
