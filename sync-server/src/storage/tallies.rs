//! Tallies: grouped counts of the query tables, the raw material of the dashboard's
//! figures (`reports::figures`). Every count is grouped by the grid of its row (a producer's
//! or a visit's grid), so the caller rolls them up to whichever level it shows; the counts
//! are read in one read transaction, so the figures of one page agree with each other.
//!
//! Possible duplicates merged away (tombstones, `merged_into` set) are not producers of the
//! directory: they are left out of every producer count, and their visits count for the
//! entry they were merged into (coverage, never visited). Visits themselves are counted as
//! they happened, a tombstone's too.
//!
//! Written once over [`Tx`] in the dialect both databases accept; integer results are
//! `COUNT(*)` or `SUM` of integer literals (BIGINT on PostgreSQL, never NUMERIC).

use super::query::{producer_row, ProducerRow, MAX_PAGE, PRODUCER_COLS};
use super::sql::{Tx, Value};
use super::{StorageError, StorageResult};

const DAY_MS: i64 = 86_400_000;

/// What to count, and as of when.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TallyQuery {
    /// Grids counted (an expanded subtree within the asking person's scope).
    pub grids: Vec<String>,
    /// Start of the period (inclusive), ms.
    pub from_ms: i64,
    /// End of the period (exclusive), ms.
    pub to_ms: i64,
    /// Starts of the months of the period after the first (ascending, each within
    /// `from_ms..to_ms`): visits are counted per month between these boundaries.
    pub month_starts: Vec<i64>,
    /// A directory entry last edited before this is counted as not confirmed.
    pub stale_before_ms: i64,
    /// The instant patrol coverage is judged at.
    pub coverage_at_ms: i64,
    /// Visits started after this do not count for coverage (the phone's tolerance of clocks
    /// that ran ahead, when the coverage is judged now).
    pub visits_until_ms: i64,
    /// Patrol interval in days per risk grade: low, medium, high.
    pub interval_days: [i64; 3],
    /// Today (`YYYY-MM-DD`): a rectification whose deadline is before it is overdue.
    pub today: String,
    /// Producers never visited listed at most (up to [`MAX_PAGE`]).
    pub never_visited_limit: u32,
}

/// Producers of one grid with one type, review state and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryTally {
    /// Grid.
    pub grid: String,
    /// Type (stored name).
    pub producer_type: String,
    /// Effective review state (stored name).
    pub review_state: String,
    /// Status (stored name).
    pub status: String,
    /// Producers.
    pub producers: i64,
    /// Of them, last edited before [`TallyQuery::stale_before_ms`].
    pub stale: i64,
}

/// Patrol coverage of the active producers of one grid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoverageTally {
    /// Grid.
    pub grid: String,
    /// Active producers.
    pub active: i64,
    /// Of them, visited within their interval before the instant of coverage.
    pub covered: i64,
    /// Of them, never visited up to that instant.
    pub never: i64,
}

/// Visits started in one month of the period by one inspector in one grid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitTally {
    /// Grid.
    pub grid: String,
    /// Inspector (person id).
    pub inspector: String,
    /// Month of the period (0 = the month of its start).
    pub month: i64,
    /// Visits.
    pub visits: i64,
}

/// Rapid tests made in the period in one grid, of one item with one verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestTally {
    /// Grid.
    pub grid: String,
    /// Test item.
    pub item: String,
    /// Verdict (stored name).
    pub verdict: String,
    /// Tests.
    pub tests: i64,
}

/// Findings recorded in the period in one grid, of one checklist item and severity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingTally {
    /// Grid.
    pub grid: String,
    /// Checklist item (none: not tied to an item).
    pub item_id: Option<String>,
    /// Severity (stored name).
    pub severity: String,
    /// Findings.
    pub findings: i64,
    /// Visits they were recorded in.
    pub visits: i64,
}

/// Rectifications ordered by visits started in the period in one grid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RectificationTally {
    /// Grid.
    pub grid: String,
    /// Ordered.
    pub ordered: i64,
    /// Of them, found done.
    pub resolved: i64,
    /// Of them, still open.
    pub open: i64,
    /// Of the open ones, past their deadline.
    pub overdue: i64,
}

/// Every tally of a [`TallyQuery`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tallies {
    /// The directory, by grid, type, review state and status.
    pub directory: Vec<DirectoryTally>,
    /// Patrol coverage by grid.
    pub coverage: Vec<CoverageTally>,
    /// Active producers never visited (grid, name order; at most the limit asked).
    pub never_visited: Vec<ProducerRow>,
    /// Visits by grid, inspector and month.
    pub visits: Vec<VisitTally>,
    /// Rapid tests by grid, item and verdict.
    pub tests: Vec<TestTally>,
    /// Findings by grid, checklist item and severity.
    pub findings: Vec<FindingTally>,
    /// Rectifications by grid.
    pub rectifications: Vec<RectificationTally>,
}

/// Reads every tally in the transaction `tx`.
pub(crate) fn read(tx: &mut dyn Tx, q: &TallyQuery) -> StorageResult<Tallies> {
    if q.to_ms <= q.from_ms {
        return Err(StorageError::Invalid(format!(
            "empty period {}..{}",
            q.from_ms, q.to_ms
        )));
    }
    if q.never_visited_limit > MAX_PAGE {
        return Err(StorageError::Invalid(format!(
            "{} producers never visited: at most {MAX_PAGE}",
            q.never_visited_limit
        )));
    }
    let grids: Vec<&str> = q.grids.iter().map(String::as_str).collect();
    if grids.is_empty() {
        return Ok(Tallies::default());
    }
    let g = Value::TextList(&grids);
    let (from, to) = (Value::Int(q.from_ms), Value::Int(q.to_ms));

    let directory = tx.rows(
        "q_producers",
        "SELECT grid, producer_type, review_state, status, COUNT(*),
                SUM(CASE WHEN updated_at_ms < $2 THEN 1 ELSE 0 END)
         FROM q_producers WHERE grid IN LIST($1) AND merged_into IS NULL
         GROUP BY grid, producer_type, review_state, status",
        &[g, Value::Int(q.stale_before_ms)],
        |r| {
            Ok(DirectoryTally {
                grid: r.get(0)?,
                producer_type: r.get(1)?,
                review_state: r.get(2)?,
                status: r.get(3)?,
                producers: r.get(4)?,
                stale: r.get(5)?,
            })
        },
    )?;

    // The phone's rule (`due_patrols`): a producer is due when it has no visit, or when
    // whole days since its last visit reach its interval; covered is the opposite, i.e.
    // its last visit started after `at - days`.
    let threshold = |days: i64| Value::Int(q.coverage_at_ms.saturating_sub(days * DAY_MS));
    let [low, medium, high] = q.interval_days;
    let coverage = tx.rows(
        "q_producers",
        "SELECT grid, COUNT(*),
                SUM(CASE WHEN last_ms IS NULL AND merged_ms IS NULL THEN 1 ELSE 0 END),
                SUM(CASE WHEN last_ms > threshold OR merged_ms > threshold THEN 1 ELSE 0 END)
         FROM (SELECT p.grid AS grid,
                      CASE p.risk WHEN 'high' THEN CAST($3 AS BIGINT)
                                  WHEN 'medium' THEN CAST($4 AS BIGINT)
                                  ELSE CAST($5 AS BIGINT) END AS threshold,
                      (SELECT MAX(v.started_at_ms) FROM q_visits v
                        WHERE v.producer_id = p.id AND v.started_at_ms <= $2) AS last_ms,
                      (SELECT MAX(v.started_at_ms)
                         FROM q_producers m JOIN q_visits v ON v.producer_id = m.id
                        WHERE m.merged_into = p.id AND v.started_at_ms <= $2) AS merged_ms
               FROM q_producers p
               WHERE p.status = 'active' AND p.grid IN LIST($1) AND p.merged_into IS NULL) x
         GROUP BY grid",
        &[
            g,
            Value::Int(q.visits_until_ms),
            threshold(high),
            threshold(medium),
            threshold(low),
        ],
        |r| {
            Ok(CoverageTally {
                grid: r.get(0)?,
                active: r.get(1)?,
                never: r.get(2)?,
                covered: r.get(3)?,
            })
        },
    )?;

    let never_visited = if q.never_visited_limit == 0 {
        Vec::new()
    } else {
        tx.rows(
            "q_producers",
            &format!(
                "SELECT {PRODUCER_COLS} FROM q_producers p
                 WHERE p.status = 'active' AND p.grid IN LIST($1) AND p.merged_into IS NULL
                   AND NOT EXISTS
                     (SELECT 1 FROM q_visits v WHERE v.producer_id = p.id AND v.started_at_ms <= $2)
                   AND NOT EXISTS
                     (SELECT 1 FROM q_producers m JOIN q_visits v ON v.producer_id = m.id
                       WHERE m.merged_into = p.id AND v.started_at_ms <= $2)
                 ORDER BY p.grid, p.name, p.id LIMIT $3"
            ),
            &[
                g,
                Value::Int(q.visits_until_ms),
                Value::Int(i64::from(q.never_visited_limit)),
            ],
            producer_row,
        )?
    };

    // The month of a visit: the first boundary it starts before (boundaries as parameters).
    let mut params: Vec<Value<'_>> = vec![g, from, to];
    let mut case = String::from("CASE");
    for (i, b) in q
        .month_starts
        .iter()
        .chain(std::iter::once(&q.to_ms))
        .enumerate()
    {
        params.push(Value::Int(*b));
        case.push_str(&format!(" WHEN started_at_ms < ${} THEN {i}", params.len()));
    }
    case.push_str(&format!(" ELSE {} END", q.month_starts.len()));
    let visits = tx.rows(
        "q_visits",
        &format!(
            "SELECT grid, inspector, {case}, COUNT(*) FROM q_visits
             WHERE grid IN LIST($1) AND started_at_ms >= $2 AND started_at_ms < $3
             GROUP BY 1, 2, 3"
        ),
        &params,
        |r| {
            Ok(VisitTally {
                grid: r.get(0)?,
                inspector: r.get(1)?,
                month: r.get(2)?,
                visits: r.get(3)?,
            })
        },
    )?;

    let tests = tx.rows(
        "q_tests",
        "SELECT grid, item, verdict, COUNT(*) FROM q_tests
         WHERE grid IN LIST($1) AND tested_at_ms >= $2 AND tested_at_ms < $3
         GROUP BY grid, item, verdict",
        &[g, from, to],
        |r| {
            Ok(TestTally {
                grid: r.get(0)?,
                item: r.get(1)?,
                verdict: r.get(2)?,
                tests: r.get(3)?,
            })
        },
    )?;

    let findings = tx.rows(
        "q_findings",
        "SELECT grid, item_id, severity, COUNT(*), COUNT(DISTINCT visit_id) FROM q_findings
         WHERE grid IN LIST($1) AND recorded_at_ms >= $2 AND recorded_at_ms < $3
         GROUP BY grid, item_id, severity",
        &[g, from, to],
        |r| {
            Ok(FindingTally {
                grid: r.get(0)?,
                item_id: r.get(1)?,
                severity: r.get(2)?,
                findings: r.get(3)?,
                visits: r.get(4)?,
            })
        },
    )?;

    let rectifications = tx.rows(
        "q_visits",
        "SELECT grid, COUNT(*),
                SUM(CASE WHEN rect_resolved_at_ms IS NOT NULL THEN 1 ELSE 0 END),
                SUM(CASE WHEN rect_open = TRUE THEN 1 ELSE 0 END),
                SUM(CASE WHEN rect_open = TRUE AND rect_deadline < $4 THEN 1 ELSE 0 END)
         FROM q_visits
         WHERE grid IN LIST($1) AND started_at_ms >= $2 AND started_at_ms < $3
           AND rect_required = TRUE
         GROUP BY grid",
        &[g, from, to, Value::Text(&q.today)],
        |r| {
            Ok(RectificationTally {
                grid: r.get(0)?,
                ordered: r.get(1)?,
                resolved: r.get(2)?,
                open: r.get(3)?,
                overdue: r.get(4)?,
            })
        },
    )?;

    Ok(Tallies {
        directory,
        coverage,
        never_visited,
        visits,
        tests,
        findings,
        rectifications,
    })
}
