//! The queries a field app runs, answered from the materialized tables.

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

use super::columns::column;
use super::Store;
use crate::model::{ProducerStatus, ProducerType, ReviewState, RiskLevel, VisitStatus};
use crate::Result;

/// A producer row for lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerSummary {
    /// Record id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Owner.
    pub owner: String,
    /// Phone.
    pub phone: String,
    /// Grid code.
    pub grid: String,
    /// Type (stable identifier).
    pub producer_type: String,
    /// `active` or `closed`.
    pub status: String,
    /// Effective review state.
    pub review_state: String,
    /// Risk grade.
    pub risk: String,
    /// Start of the last visit, if any.
    pub last_visit_ms: Option<i64>,
}

/// Sort order of producer lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
pub enum ProducerSort {
    /// By name (Unicode order).
    Name,
    /// Most recently edited first.
    RecentlyUpdated,
    /// Longest since the last visit first (never visited first).
    LastVisit,
}

/// A producer due for patrol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueProducer {
    /// The producer.
    pub producer: ProducerSummary,
    /// Patrol interval that applies, in days.
    pub interval_days: i64,
    /// Days overdue (0 = due today; never-visited producers count from the interval).
    pub days_overdue: i64,
}

/// A visit row for a producer's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitSummary {
    /// Record id.
    pub id: String,
    /// Producer id.
    pub producer_id: String,
    /// Inspector.
    pub inspector: String,
    /// Start time.
    pub started_at_ms: i64,
    /// `draft` or `completed`.
    pub status: String,
    /// Whether a rectification is open.
    pub rectification_open: bool,
}

/// An open rectification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct RectificationItem {
    /// Visit that ordered it.
    pub visit_id: String,
    /// Producer id.
    pub producer_id: String,
    /// Producer name.
    pub producer_name: String,
    /// Deadline `YYYY-MM-DD`.
    pub deadline: String,
    /// Notice number.
    pub notice_number: String,
    /// Whether the deadline has passed.
    pub overdue: bool,
}

/// Counts for the app's status bar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Counts {
    /// Producers on the device.
    pub producers: i64,
    /// Visits on the device.
    pub visits: i64,
    /// Records with local changes the server has not acknowledged.
    pub unsynced: i64,
    /// Records whose last push was rejected and not yet fixed or discarded.
    pub rejected: i64,
    /// Records set aside because their bytes failed to load.
    pub corrupt: i64,
    /// Edits kept after their grid left this device.
    pub kept_edits: i64,
}

const PRODUCER_COLS: &str =
    "p.id, p.name, p.owner, p.phone, p.grid, p.producer_type, p.status, p.review_state, p.risk, p.last_visit_ms";

fn producer_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProducerSummary> {
    Ok(ProducerSummary {
        id: r.get(0)?,
        name: r.get(1)?,
        owner: r.get(2)?,
        phone: r.get(3)?,
        grid: r.get(4)?,
        producer_type: column::<ProducerType>(r, 5, "producers", 0)?
            .as_str()
            .into(),
        status: column::<ProducerStatus>(r, 6, "producers", 0)?
            .as_str()
            .into(),
        review_state: column::<ReviewState>(r, 7, "producers", 0)?.as_str().into(),
        risk: column::<RiskLevel>(r, 8, "producers", 0)?.as_str().into(),
        last_visit_ms: r.get(9)?,
    })
}

/// Default patrol interval in days by risk grade (configurable per type and risk).
pub fn default_interval_days(risk: RiskLevel) -> i64 {
    match risk {
        RiskLevel::High => 30,
        RiskLevel::Medium => 90,
        RiskLevel::Low => 365,
    }
}

/// Grid codes of `grid` and every node below it (recursive CTE).
const SUBTREE: &str = "WITH RECURSIVE sub(code) AS (SELECT ?1 UNION SELECT g.code FROM grids g JOIN sub ON g.parent = sub.code)";

impl Store {
    /// Producers of a grid and the grids below it, paged and sorted.
    pub fn producers_in_grid(
        &self,
        grid: &str,
        sort: ProducerSort,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<ProducerSummary>> {
        let order = match sort {
            ProducerSort::Name => "p.name, p.id",
            ProducerSort::RecentlyUpdated => "p.updated_at_ms DESC, p.id",
            ProducerSort::LastVisit => "COALESCE(p.last_visit_ms, 0), p.id",
        };
        self.read(|c| {
            let sql = format!(
                "{SUBTREE} SELECT {PRODUCER_COLS} FROM producers p WHERE p.grid IN (SELECT code FROM sub)
                     AND p.merged_into IS NULL
                 ORDER BY {order} LIMIT ?2 OFFSET ?3"
            );
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(params![grid, limit.min(1000), offset], producer_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Active producers of a grid and the grids below it not yet confirmed for `year`
    /// (年度确认; a confirmation of a later year counts for the years before it), by name.
    /// Read by the index `producers_confirmed` (grid, status, confirmed year).
    pub fn unconfirmed_producers(&self, grid: &str, year: i32) -> Result<Vec<ProducerSummary>> {
        self.read(|c| {
            let sql = format!(
                "{SUBTREE} SELECT {PRODUCER_COLS} FROM producers p
                 WHERE p.grid IN (SELECT code FROM sub) AND p.status = 'active'
                     AND p.confirmed_year < ?2 AND p.merged_into IS NULL
                 ORDER BY p.name, p.id"
            );
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(params![grid, year], producer_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Producers whose name, owner or phone contains `query` (Chinese substrings work).
    pub fn search_producers(&self, query: &str, limit: u32) -> Result<Vec<ProducerSummary>> {
        let q = query.trim();
        if q.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|c| {
            let sql = format!(
                "SELECT {PRODUCER_COLS} FROM producers p
                 WHERE (instr(p.name, ?1) > 0 OR instr(p.owner, ?1) > 0 OR instr(p.phone, ?1) > 0)
                     AND p.merged_into IS NULL
                 ORDER BY instr(p.name, ?1) = 0, length(p.name), p.name LIMIT ?2"
            );
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(params![q, limit.min(1000)], producer_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Sets the patrol interval for a producer type and risk grade.
    pub fn set_patrol_interval(&self, t: ProducerType, risk: RiskLevel, days: u32) -> Result<()> {
        if days == 0 {
            return Err(crate::validate::Invalid::new("days", "must be at least 1").into());
        }
        self.write(|tx| {
            tx.execute(
                "INSERT INTO patrol_intervals (producer_type, risk, days) VALUES (?1, ?2, ?3)
                 ON CONFLICT(producer_type, risk) DO UPDATE SET days = ?3",
                params![t, risk, days],
            )?;
            Ok(())
        })
    }

    /// Active producers in `grid` (and below) due for a patrol at `now_ms`, most overdue first.
    /// A visit dated more than [`crate::FUTURE_TOLERANCE_MS`] after `now_ms` (a phone whose
    /// clock ran ahead) does not count: the producer's last visit is the latest one before.
    pub fn due_patrols(&self, grid: &str, now_ms: i64) -> Result<Vec<DueProducer>> {
        self.read(|c| {
            let sql = format!(
                "{SUBTREE} SELECT {PRODUCER_COLS},
                    COALESCE(pi.days, CASE p.risk WHEN 'high' THEN ?3 WHEN 'medium' THEN ?4 ELSE ?5 END) AS days,
                    CASE WHEN p.last_visit_ms > ?6
                         THEN (SELECT MAX(v.started_at_ms) FROM visits v
                               WHERE v.producer_id = p.id AND v.started_at_ms <= ?6)
                         ELSE p.last_visit_ms END AS last_sane
                 FROM producers p
                 LEFT JOIN patrol_intervals pi ON pi.producer_type = p.producer_type AND pi.risk = p.risk
                 WHERE p.status = 'active' AND p.merged_into IS NULL
                     AND p.grid IN (SELECT code FROM sub)"
            );
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(
                params![
                    grid,
                    now_ms,
                    default_interval_days(RiskLevel::High),
                    default_interval_days(RiskLevel::Medium),
                    default_interval_days(RiskLevel::Low),
                    now_ms.saturating_add(crate::FUTURE_TOLERANCE_MS)
                ],
                |r| {
                    let mut p = producer_row(r)?;
                    p.last_visit_ms = r.get(11)?;
                    Ok((p, r.get::<_, i64>(10)?))
                },
            )?;
            let day = 86_400_000i64;
            let mut out = Vec::new();
            for row in rows {
                let (p, days) = row?;
                let overdue = match p.last_visit_ms {
                    Some(last) => (now_ms - last) / day - days,
                    None => 0,
                };
                if p.last_visit_ms.is_none() || overdue >= 0 {
                    out.push(DueProducer { producer: p, interval_days: days, days_overdue: overdue.max(0) });
                }
            }
            out.sort_by(|a, b| {
                b.days_overdue
                    .cmp(&a.days_overdue)
                    .then(a.producer.last_visit_ms.is_some().cmp(&b.producer.last_visit_ms.is_some()))
                    .then(a.producer.name.cmp(&b.producer.name))
            });
            Ok(out)
        })
    }

    /// A producer's visits, newest first, with those of the entries merged into it as its
    /// duplicates (their visits keep naming the merged entry, `producer_id` tells which).
    pub fn visit_history(&self, producer_id: &str) -> Result<Vec<VisitSummary>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, producer_id, inspector, started_at_ms, status, rect_open FROM visits
                 WHERE producer_id = ?1
                     OR producer_id IN (SELECT id FROM producers WHERE merged_into = ?1)
                 ORDER BY started_at_ms DESC",
            )?;
            let rows = st.query_map([producer_id], |r| {
                Ok(VisitSummary {
                    id: r.get(0)?,
                    producer_id: r.get(1)?,
                    inspector: r.get(2)?,
                    started_at_ms: r.get(3)?,
                    status: column::<VisitStatus>(r, 4, "visits", 0)?.as_str().into(),
                    rectification_open: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Open rectifications, earliest deadline first; `today` is `YYYY-MM-DD`.
    pub fn open_rectifications(&self, today: &str) -> Result<Vec<RectificationItem>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT v.id, v.producer_id, COALESCE(p.name, ''), v.rect_deadline, COALESCE(v.rect_notice, '')
                 FROM visits v LEFT JOIN producers p ON p.id = v.producer_id
                 WHERE v.rect_open = 1 ORDER BY v.rect_deadline, v.id",
            )?;
            let rows = st.query_map([], |r| {
                let deadline: String = r.get(3)?;
                Ok(RectificationItem {
                    visit_id: r.get(0)?,
                    producer_id: r.get(1)?,
                    producer_name: r.get(2)?,
                    overdue: deadline.as_str() < today,
                    deadline,
                    notice_number: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Counts for the status bar.
    pub fn counts(&self) -> Result<Counts> {
        self.read(counts)
    }
}

fn counts(c: &Connection) -> Result<Counts> {
    let one = |sql: &str| -> Result<i64> { Ok(c.query_row(sql, [], |r| r.get(0))?) };
    Ok(Counts {
        producers: one("SELECT COUNT(*) FROM producers")?,
        visits: one("SELECT COUNT(*) FROM visits")?,
        unsynced: one(
            "SELECT COUNT(*) FROM records WHERE local_rev > acked_rev AND corrupt IS NULL",
        )?,
        rejected: one("SELECT COUNT(*) FROM records WHERE rejected_rev IS NOT NULL")?,
        corrupt: one("SELECT COUNT(*) FROM records WHERE corrupt IS NOT NULL")?,
        kept_edits: one("SELECT COUNT(*) FROM kept_edits")?,
    })
}
