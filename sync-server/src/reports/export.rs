//! Exports of the directory, visits, rapid tests, rectifications and per-person activity as
//! XLSX and CSV, streamed with bounded memory.
//!
//! - Rows come from the query tables in keyset batches ([`Storage::for_each_producer`],
//!   [`Storage::for_each_visit`]), each batch its own read; rapid tests are read from the
//!   documents of the visits that have any, a batch of documents at a time (the query
//!   table `q_tests` holds item, verdict and time, not the sample, method, kit, value and
//!   operator an export lists).
//! - XLSX: `rust_xlsxwriter` in constant-memory mode (each row goes to a temporary file as
//!   it is written, strings inline); at the end the zip is streamed to the writer. Headers
//!   in Chinese; credit codes, ID numbers and phone numbers are string cells with the text
//!   format `@` (a leading zero or an 18-digit ID survives, and stays text when edited);
//!   dates are date cells (`yyyy-mm-dd`), in China Standard Time.
//! - CSV: UTF-8 with a byte-order mark (Excel then reads it as UTF-8), CRLF lines, dates
//!   as `YYYY-MM-DD`. Credit codes, ID numbers and phone numbers are written as the formula
//!   `="…"`, which Excel shows as that text instead of reading a number (it would drop a
//!   leading zero and round an 18-digit ID to 15 digits); a program reading the file takes
//!   the text between `="` and `"`. Any other text that Excel would take for a formula
//!   (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) gets a leading `'`.
//!
//! The caller decides the grids (a person's scope, or the subtree of a grid within it).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::Write;

use gridsync_core::model::{
    ProducerStatus, Record, ReviewState, RiskLevel, Role, TestMethod, Verdict, VisitStatus,
};
use rust_xlsxwriter::{ExcelDateTime, Format, Workbook, XlsxError};

use crate::storage::{
    Period, ProducerRow, Storage, StorageError, VisitExportRow, VisitRow, VisitSet,
};

/// What is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportKind {
    /// The producer directory (its current state; no period).
    Directory,
    /// Visits (daily patrols).
    Visits,
    /// Rapid tests, one row per test.
    RapidTests,
    /// Rectifications ordered by visits.
    Rectifications,
    /// What each person did.
    Activity,
}

impl ExportKind {
    /// Every kind, in the order the console lists them.
    pub const ALL: [ExportKind; 5] = [
        ExportKind::Directory,
        ExportKind::Visits,
        ExportKind::RapidTests,
        ExportKind::Rectifications,
        ExportKind::Activity,
    ];

    /// The name in links and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportKind::Directory => "directory",
            ExportKind::Visits => "visits",
            ExportKind::RapidTests => "tests",
            ExportKind::Rectifications => "rectifications",
            ExportKind::Activity => "activity",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Its Chinese title (sheet and file name).
    pub fn title_zh(self) -> &'static str {
        match self {
            ExportKind::Directory => "生产主体名录",
            ExportKind::Visits => "日常巡查记录",
            ExportKind::RapidTests => "速测记录",
            ExportKind::Rectifications => "整改记录",
            ExportKind::Activity => "人员工作量",
        }
    }

    /// What it holds, for the console.
    pub fn about_zh(self) -> &'static str {
        match self {
            ExportKind::Directory => "全部生产主体的当前信息（不按时间筛选）",
            ExportKind::Visits => "时间段内开始的巡查，每次一行",
            ExportKind::RapidTests => "时间段内巡查中的速测，每项一行",
            ExportKind::Rectifications => "时间段内巡查下达的整改，含期限与完成情况",
            ExportKind::Activity => "每人在时间段内的巡查、速测、整改、审核与登记数量",
        }
    }

    /// Whether the period filters it.
    pub fn uses_period(self) -> bool {
        self != ExportKind::Directory
    }
}

/// File format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportFormat {
    /// Office Open XML workbook.
    Xlsx,
    /// Comma-separated values, UTF-8 with a BOM.
    Csv,
}

impl ExportFormat {
    /// Both formats.
    pub const ALL: [ExportFormat; 2] = [ExportFormat::Xlsx, ExportFormat::Csv];

    /// The file extension (and the name in links and on the command line).
    pub fn ext(self) -> &'static str {
        match self {
            ExportFormat::Xlsx => "xlsx",
            ExportFormat::Csv => "csv",
        }
    }

    /// The format named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.ext() == s)
    }

    /// The media type of the file.
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Xlsx => {
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            }
            ExportFormat::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// One export to write.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// What.
    pub kind: ExportKind,
    /// As what.
    pub format: ExportFormat,
    /// The grids it covers (an expanded subtree within the asker's scope), in the order
    /// rows are grouped.
    pub grids: Vec<String>,
    /// The period (ignored by the directory).
    pub period: Period,
    /// Today (`YYYY-MM-DD`, China Standard Time): which rectifications are overdue.
    pub today: String,
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportDone {
    /// Data rows (the header row not counted).
    pub rows: u64,
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the rows failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// Writing the file failed (the receiver went away, a full disk).
    #[error("writing the export: {0}")]
    Write(String),
    /// More rows than a worksheet holds.
    #[error("more than {XLSX_MAX_ROWS} rows: an XLSX worksheet holds no more; choose a smaller grid or period, or CSV")]
    TooManyRows,
}

impl From<std::io::Error> for ExportError {
    fn from(e: std::io::Error) -> Self {
        ExportError::Write(e.to_string())
    }
}

impl From<XlsxError> for ExportError {
    fn from(e: XlsxError) -> Self {
        ExportError::Write(e.to_string())
    }
}

impl From<csv::Error> for ExportError {
    fn from(e: csv::Error) -> Self {
        ExportError::Write(e.to_string())
    }
}

/// Data rows an XLSX worksheet takes below its header.
pub const XLSX_MAX_ROWS: u32 = 1_048_575;

/// Visits whose documents are read at once for the rapid-test export.
const DOC_BATCH: usize = 128;

// ---- Dates. ----

const DAY_MS: i64 = 86_400_000;
const CHINA_MS: i64 = 8 * 3_600_000;

/// The first millisecond of a `YYYY-MM-DD` day in China Standard Time (`None` when `s` is
/// not a real date).
pub fn china_day_start(s: &str) -> Option<i64> {
    let (y, m, d) = civil(s)?;
    // Days since 1970-01-01 of a proleptic Gregorian date, counted from March so the leap
    // day falls at the end of a year.
    let (y, m) = if m <= 2 { (y - 1, m + 12) } else { (y, m) };
    let days = 365 * y + y / 4 - y / 100 + y / 400 + (153 * (m - 3) + 2) / 5 + d - 719_469;
    let ms = days * DAY_MS - CHINA_MS;
    (gridsync_core::dates::china_date(ms) == s).then_some(ms)
}

/// Year, month and day of a `YYYY-MM-DD` text (not checked against the calendar).
fn civil(s: &str) -> Option<(i64, i64, i64)> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let part = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = &s[r];
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let (y, m, d) = (part(0..4)?, part(5..7)?, part(8..10)?);
    ((1..=12).contains(&m) && (1..=31).contains(&d) && y >= 1).then_some((y, m, d))
}

/// The period of the days `from` to `to` (both `YYYY-MM-DD`, China Standard Time, both
/// included; either may be absent). `Err` names the parameter that is not a date, or
/// `to` when it is before `from`.
pub fn period_of_days(from: Option<&str>, to: Option<&str>) -> Result<Period, &'static str> {
    let from_ms = match from {
        None => None,
        Some(f) => Some(china_day_start(f).ok_or("from")?),
    };
    let to_ms = match to {
        None => None,
        Some(t) => Some(china_day_start(t).ok_or("to")? + DAY_MS),
    };
    if let (Some(f), Some(t)) = (from_ms, to_ms) {
        if t <= f {
            return Err("to");
        }
    }
    Ok(Period { from_ms, to_ms })
}

/// A file name for an export: title, grid (or 全部), days, extension.
pub fn file_name(
    kind: ExportKind,
    format: ExportFormat,
    grid: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
) -> String {
    let mut name = format!("{}_{}", kind.title_zh(), grid.unwrap_or("全部"));
    if kind.uses_period() && (from.is_some() || to.is_some()) {
        name.push_str(&format!("_{}至{}", from.unwrap_or(""), to.unwrap_or("")));
    }
    name.retain(|c| !c.is_control() && !"/\\\"".contains(c));
    format!("{name}.{}", format.ext())
}

// ---- Cells and tables. ----

/// One cell of a row.
#[derive(Debug, Clone)]
enum Cell<'a> {
    /// Text.
    Text(Cow<'a, str>),
    /// An identifier made of digits (credit code, ID number, phone): always text.
    Id(&'a str),
    /// A civil date `YYYY-MM-DD` (or empty).
    Date(Option<String>),
    /// A whole number.
    Int(i64),
    /// A measured value (or empty).
    Num(Option<f64>),
}

fn text(s: &str) -> Cell<'_> {
    Cell::Text(Cow::Borrowed(s))
}

fn owned<'a>(s: String) -> Cell<'a> {
    Cell::Text(Cow::Owned(s))
}

fn day(ms: Option<i64>) -> Cell<'static> {
    Cell::Date(ms.map(gridsync_core::dates::china_date))
}

/// How a column is shown.
#[derive(Debug, Clone, Copy)]
struct Column {
    title: &'static str,
    width: f64,
}

const fn col(title: &'static str, width: f64) -> Column {
    Column { title, width }
}

/// Rows written to a file.
trait Table {
    fn row(&mut self, cells: &[Cell<'_>]) -> Result<(), ExportError>;
    fn finish(self: Box<Self>) -> Result<(), ExportError>;
}

struct CsvTable<'w> {
    out: csv::Writer<&'w mut (dyn Write + Send)>,
    line: Vec<String>,
}

impl<'w> CsvTable<'w> {
    fn new(out: &'w mut (dyn Write + Send), columns: &[Column]) -> Result<Self, ExportError> {
        out.write_all("\u{feff}".as_bytes())?;
        let mut out = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .buffer_capacity(64 * 1024)
            .from_writer(out);
        out.write_record(columns.iter().map(|c| c.title))?;
        Ok(CsvTable {
            out,
            line: Vec::with_capacity(columns.len()),
        })
    }
}

/// Text as a CSV field that Excel does not take for a formula.
fn csv_text(s: &str) -> Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    }
}

impl Table for CsvTable<'_> {
    fn row(&mut self, cells: &[Cell<'_>]) -> Result<(), ExportError> {
        self.line.clear();
        for c in cells {
            self.line.push(match c {
                Cell::Text(s) => csv_text(s).into_owned(),
                Cell::Id("") => String::new(),
                Cell::Id(s) => format!("=\"{}\"", s.replace('"', "\"\"")),
                Cell::Date(d) => d.clone().unwrap_or_default(),
                Cell::Int(i) => i.to_string(),
                Cell::Num(n) => n.map(|n| n.to_string()).unwrap_or_default(),
            });
        }
        self.out.write_record(&self.line)?;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), ExportError> {
        self.out.flush()?;
        Ok(())
    }
}

struct XlsxTable<'w> {
    out: &'w mut (dyn Write + Send),
    book: Workbook,
    row: u32,
    date: Format,
    id: Format,
}

impl<'w> XlsxTable<'w> {
    fn new(
        out: &'w mut (dyn Write + Send),
        title: &str,
        columns: &[Column],
    ) -> Result<Self, ExportError> {
        let mut book = Workbook::new();
        let header = Format::new()
            .set_bold()
            .set_background_color(rust_xlsxwriter::Color::RGB(0x00DD_EBF7))
            .set_border_bottom(rust_xlsxwriter::FormatBorder::Thin);
        let sheet = book.add_worksheet_with_constant_memory();
        sheet.set_name(title)?;
        for (i, c) in columns.iter().enumerate() {
            let i = u16::try_from(i).map_err(|_| ExportError::Write("too many columns".into()))?;
            sheet.set_column_width(i, c.width)?;
            sheet.write_string_with_format(0, i, c.title, &header)?;
        }
        sheet.set_freeze_panes(1, 0)?;
        Ok(XlsxTable {
            out,
            book,
            row: 0,
            date: Format::new().set_num_format("yyyy-mm-dd"),
            id: Format::new().set_num_format("@"),
        })
    }
}

impl Table for XlsxTable<'_> {
    fn row(&mut self, cells: &[Cell<'_>]) -> Result<(), ExportError> {
        if self.row >= XLSX_MAX_ROWS {
            return Err(ExportError::TooManyRows);
        }
        self.row += 1;
        let r = self.row;
        let sheet = self.book.worksheet_from_index(0)?;
        for (i, c) in cells.iter().enumerate() {
            let i = u16::try_from(i).map_err(|_| ExportError::Write("too many columns".into()))?;
            match c {
                Cell::Text(s) if s.is_empty() => {}
                Cell::Text(s) => {
                    sheet.write_string(r, i, s.as_ref())?;
                }
                Cell::Id("") => {}
                Cell::Id(s) => {
                    sheet.write_string_with_format(r, i, *s, &self.id)?;
                }
                Cell::Date(None) => {}
                Cell::Date(Some(d)) => match civil(d).and_then(|(y, m, dd)| {
                    ExcelDateTime::from_ymd(
                        u16::try_from(y).ok()?,
                        u8::try_from(m).ok()?,
                        u8::try_from(dd).ok()?,
                    )
                    .ok()
                }) {
                    Some(dt) => {
                        sheet.write_datetime_with_format(r, i, &dt, &self.date)?;
                    }
                    // Not a date Excel knows (before 1900, or malformed): kept as text.
                    None => {
                        sheet.write_string(r, i, d)?;
                    }
                },
                Cell::Int(n) => {
                    // Counts: exact in a double.
                    sheet.write_number(r, i, *n as f64)?;
                }
                Cell::Num(None) => {}
                Cell::Num(Some(n)) => {
                    sheet.write_number(r, i, *n)?;
                }
            }
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(), ExportError> {
        let XlsxTable { out, mut book, .. } = *self;
        book.save_to_writer(&mut *out)?;
        out.flush()?;
        Ok(())
    }
}

fn open_table<'w>(
    format: ExportFormat,
    out: &'w mut (dyn Write + Send),
    title: &str,
    columns: &[Column],
) -> Result<Box<dyn Table + 'w>, ExportError> {
    Ok(match format {
        ExportFormat::Csv => Box::new(CsvTable::new(out, columns)?),
        ExportFormat::Xlsx => Box::new(XlsxTable::new(out, title, columns)?),
    })
}

// ---- Labels. ----

fn review_zh(s: ReviewState) -> &'static str {
    match s {
        ReviewState::Draft => "草稿",
        ReviewState::Submitted => "待乡镇审核",
        ReviewState::TownshipApproved => "待旗县审核",
        ReviewState::CountyApproved => "旗县已审核",
        ReviewState::Returned => "已退回",
    }
}

fn risk_zh(r: RiskLevel) -> &'static str {
    match r {
        RiskLevel::Low => "低",
        RiskLevel::Medium => "中",
        RiskLevel::High => "高",
    }
}

fn status_zh(s: ProducerStatus) -> &'static str {
    match s {
        ProducerStatus::Active => "在营",
        ProducerStatus::Closed => "已停业",
    }
}

fn visit_zh(s: VisitStatus) -> &'static str {
    match s {
        VisitStatus::Draft => "记录中",
        VisitStatus::Completed => "已完成",
    }
}

fn method_zh(m: TestMethod) -> &'static str {
    match m {
        TestMethod::EnzymeInhibition => "酶抑制法",
        TestMethod::ColloidalGold => "胶体金试纸条",
        TestMethod::Other => "其他",
    }
}

fn verdict_zh(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "合格",
        Verdict::Fail => "不合格",
        Verdict::Suspect => "疑似",
    }
}

fn rectification_zh(v: &VisitRow, today: &str) -> &'static str {
    if !v.rect_required {
        ""
    } else if !v.rect_open {
        "已整改"
    } else if v.rect_deadline.as_deref().is_some_and(|d| d < today) {
        "已逾期"
    } else {
        "整改中"
    }
}

// ---- The exports. ----

/// Names of grids and people, read once per export (small: reference data).
struct Names {
    grids: HashMap<String, String>,
    people: HashMap<String, (String, String, Role, Vec<String>)>,
}

impl Names {
    fn read(storage: &dyn Storage) -> Result<Self, StorageError> {
        Ok(Names {
            grids: storage
                .grids()?
                .into_iter()
                .map(|g| (g.code, g.name))
                .collect(),
            people: storage
                .all_people()?
                .into_iter()
                .map(|p| (p.id, (p.name, p.phone, p.role, p.grids)))
                .collect(),
        })
    }

    fn grid<'a>(&'a self, code: &str) -> &'a str {
        self.grids.get(code).map_or("", String::as_str)
    }

    fn person<'a>(&'a self, id: &'a str) -> &'a str {
        self.people.get(id).map_or(id, |p| p.0.as_str())
    }
}

/// A storage walk stopped by the export's own error (which the caller keeps).
fn stop() -> StorageError {
    StorageError::Invalid("export stopped".into())
}

/// Writes one export to `out`; returns how many rows it wrote. Rows are written as they
/// are read: memory holds one batch of rows (or of documents).
pub fn write_export(
    storage: &dyn Storage,
    req: &ExportRequest,
    out: &mut (dyn Write + Send),
) -> Result<ExportDone, ExportError> {
    let names = Names::read(storage)?;
    let title = req.kind.title_zh();
    let rows = match req.kind {
        ExportKind::Directory => directory(storage, req, &names, out, title)?,
        ExportKind::Visits => visits(storage, req, &names, out, title)?,
        ExportKind::Rectifications => rectifications(storage, req, &names, out, title)?,
        ExportKind::RapidTests => rapid_tests(storage, req, &names, out, title)?,
        ExportKind::Activity => activity(storage, req, &names, out, title)?,
    };
    Ok(ExportDone { rows })
}

const DIRECTORY_COLUMNS: [Column; 16] = [
    col("网格编码", 14.0),
    col("网格名称", 16.0),
    col("主体名称", 28.0),
    col("主体类型", 14.0),
    col("统一社会信用代码", 22.0),
    col("身份证号", 22.0),
    col("负责人", 10.0),
    col("联系电话", 14.0),
    col("风险等级", 8.0),
    col("经营状态", 8.0),
    col("审核状态", 12.0),
    col("登记人", 10.0),
    col("登记日期", 12.0),
    col("最近修改日期", 12.0),
    col("最近巡查日期", 12.0),
    col("主体编号", 38.0),
];

fn directory(
    storage: &dyn Storage,
    req: &ExportRequest,
    names: &Names,
    out: &mut (dyn Write + Send),
    title: &str,
) -> Result<u64, ExportError> {
    let mut table = open_table(req.format, out, title, &DIRECTORY_COLUMNS)?;
    let mut n = 0u64;
    let mut failed = None;
    let r = storage.for_each_producer(&req.grids, &mut |p: ProducerRow| {
        let cells = [
            text(&p.grid),
            text(names.grid(&p.grid)),
            text(&p.name),
            text(p.producer_type.label_zh()),
            Cell::Id(p.credit_code.as_deref().unwrap_or("")),
            Cell::Id(p.id_number.as_deref().unwrap_or("")),
            text(&p.owner),
            Cell::Id(&p.phone),
            text(risk_zh(p.risk)),
            text(status_zh(p.status)),
            text(review_zh(p.review_state)),
            text(names.person(&p.created_by)),
            day(Some(p.created_at_ms)),
            day(Some(p.updated_at_ms)),
            day(p.last_visit_ms),
            text(&p.id),
        ];
        table.row(&cells).map_err(|e| {
            failed = Some(e);
            stop()
        })?;
        n += 1;
        Ok(())
    });
    finish(table, r, failed)?;
    Ok(n)
}

/// Ends a table after a walk: the walk's first error, else the file's end.
fn finish(
    table: Box<dyn Table + '_>,
    walked: Result<(), StorageError>,
    failed: Option<ExportError>,
) -> Result<(), ExportError> {
    if let Some(e) = failed {
        return Err(e);
    }
    walked?;
    table.finish()
}

const VISIT_COLUMNS: [Column; 19] = [
    col("网格编码", 14.0),
    col("网格名称", 16.0),
    col("巡查日期", 12.0),
    col("结束日期", 12.0),
    col("主体名称", 28.0),
    col("巡查人", 10.0),
    col("状态", 8.0),
    col("发现问题数", 10.0),
    col("其中严重", 9.0),
    col("速测项数", 9.0),
    col("不合格项数", 10.0),
    col("需整改", 8.0),
    col("整改期限", 12.0),
    col("整改通知书编号", 18.0),
    col("整改状态", 9.0),
    col("审核日期", 12.0),
    col("复查的巡查编号", 38.0),
    col("巡查记录编号", 38.0),
    col("主体编号", 38.0),
];

fn visits(
    storage: &dyn Storage,
    req: &ExportRequest,
    names: &Names,
    out: &mut (dyn Write + Send),
    title: &str,
) -> Result<u64, ExportError> {
    let mut table = open_table(req.format, out, title, &VISIT_COLUMNS)?;
    let mut n = 0u64;
    let mut failed = None;
    let r = storage.for_each_visit(
        &req.grids,
        req.period,
        VisitSet::All,
        &mut |row: VisitExportRow| {
            let v = &row.visit;
            let cells = [
                text(&v.grid),
                text(names.grid(&v.grid)),
                day(Some(v.started_at_ms)),
                day(v.ended_at_ms),
                text(&row.producer_name),
                text(names.person(&v.inspector)),
                text(visit_zh(v.status)),
                Cell::Int(v.findings),
                Cell::Int(v.serious_findings),
                Cell::Int(v.rapid_tests),
                Cell::Int(v.failed_tests),
                text(if v.rect_required { "是" } else { "否" }),
                Cell::Date(v.rect_deadline.clone().filter(|_| v.rect_required)),
                Cell::Id(v.rect_notice.as_deref().unwrap_or("")),
                text(rectification_zh(v, &req.today)),
                day(v.reviewed_at_ms),
                text(v.follow_up_of.as_deref().unwrap_or("")),
                text(&v.id),
                text(&v.producer_id),
            ];
            table.row(&cells).map_err(|e| {
                failed = Some(e);
                stop()
            })?;
            n += 1;
            Ok(())
        },
    );
    finish(table, r, failed)?;
    Ok(n)
}

const RECTIFICATION_COLUMNS: [Column; 12] = [
    col("网格编码", 14.0),
    col("网格名称", 16.0),
    col("主体名称", 28.0),
    col("巡查日期", 12.0),
    col("巡查人", 10.0),
    col("整改通知书编号", 18.0),
    col("整改期限", 12.0),
    col("整改状态", 9.0),
    col("完成日期", 12.0),
    col("发现问题数", 10.0),
    col("巡查记录编号", 38.0),
    col("主体编号", 38.0),
];

fn rectifications(
    storage: &dyn Storage,
    req: &ExportRequest,
    names: &Names,
    out: &mut (dyn Write + Send),
    title: &str,
) -> Result<u64, ExportError> {
    let mut table = open_table(req.format, out, title, &RECTIFICATION_COLUMNS)?;
    let mut n = 0u64;
    let mut failed = None;
    let r = storage.for_each_visit(
        &req.grids,
        req.period,
        VisitSet::Rectifications,
        &mut |row: VisitExportRow| {
            let v = &row.visit;
            let cells = [
                text(&v.grid),
                text(names.grid(&v.grid)),
                text(&row.producer_name),
                day(Some(v.started_at_ms)),
                text(names.person(&v.inspector)),
                Cell::Id(v.rect_notice.as_deref().unwrap_or("")),
                Cell::Date(v.rect_deadline.clone()),
                text(rectification_zh(v, &req.today)),
                day(v.rect_resolved_at_ms),
                Cell::Int(v.findings),
                text(&v.id),
                text(&v.producer_id),
            ];
            table.row(&cells).map_err(|e| {
                failed = Some(e);
                stop()
            })?;
            n += 1;
            Ok(())
        },
    );
    finish(table, r, failed)?;
    Ok(n)
}

const TEST_COLUMNS: [Column; 14] = [
    col("网格编码", 14.0),
    col("网格名称", 16.0),
    col("主体名称", 28.0),
    col("检测日期", 12.0),
    col("样品", 12.0),
    col("检测项目", 14.0),
    col("检测方法", 12.0),
    col("试剂（试纸）及厂家", 24.0),
    col("检测值", 9.0),
    col("单位", 8.0),
    col("检测结果", 9.0),
    col("检测人", 10.0),
    col("巡查记录编号", 38.0),
    col("主体编号", 38.0),
];

fn rapid_tests(
    storage: &dyn Storage,
    req: &ExportRequest,
    names: &Names,
    out: &mut (dyn Write + Send),
    title: &str,
) -> Result<u64, ExportError> {
    let mut table = open_table(req.format, out, title, &TEST_COLUMNS)?;
    let mut n = 0u64;
    // Visits (id, grid, producer name, producer id) waiting for their documents.
    let mut pending: Vec<VisitExportRow> = Vec::with_capacity(DOC_BATCH);
    let mut write_batch = |pending: &mut Vec<VisitExportRow>,
                           table: &mut Box<dyn Table + '_>|
     -> Result<(), ExportError> {
        if pending.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = pending.iter().map(|v| v.visit.id.clone()).collect();
        let docs: HashMap<String, Vec<u8>> = storage
            .full_records(&ids)?
            .into_iter()
            .map(|r| (r.id, r.bytes))
            .collect();
        for row in pending.drain(..) {
            let v = &row.visit;
            let Some(doc) = docs.get(&v.id) else { continue };
            let visit = match crate::storage::query::read_record(doc) {
                Ok(Record::Visit(visit)) => visit,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(record = %v.id, "export: visit document does not read: {e}");
                    continue;
                }
            };
            for t in &visit.rapid_tests {
                let cells = [
                    text(&v.grid),
                    text(names.grid(&v.grid)),
                    text(&row.producer_name),
                    day(Some(t.tested_at_ms)),
                    text(&t.sample),
                    text(&t.item),
                    text(method_zh(t.method)),
                    text(&t.kit),
                    Cell::Num(t.value),
                    text(t.unit.as_deref().unwrap_or("")),
                    text(verdict_zh(t.verdict)),
                    text(names.person(&t.operator)),
                    text(&v.id),
                    text(&v.producer_id),
                ];
                table.row(&cells)?;
                n += 1;
            }
        }
        Ok(())
    };
    let mut failed = None;
    let r = storage.for_each_visit(
        &req.grids,
        req.period,
        VisitSet::WithTests,
        &mut |row: VisitExportRow| {
            pending.push(row);
            if pending.len() >= DOC_BATCH {
                write_batch(&mut pending, &mut table).map_err(|e| {
                    failed = Some(e);
                    stop()
                })?;
            }
            Ok(())
        },
    );
    if failed.is_none() && r.is_ok() {
        write_batch(&mut pending, &mut table)?;
    }
    finish(table, r, failed)?;
    Ok(n)
}

const ACTIVITY_COLUMNS: [Column; 14] = [
    col("人员编号", 16.0),
    col("姓名", 10.0),
    col("角色", 12.0),
    col("联系电话", 14.0),
    col("负责网格", 24.0),
    col("巡查次数", 9.0),
    col("已完成巡查", 10.0),
    col("发现问题数", 10.0),
    col("其中严重", 9.0),
    col("速测项数", 9.0),
    col("不合格项数", 10.0),
    col("下达整改数", 10.0),
    col("审核操作数", 10.0),
    col("登记主体数", 10.0),
];

fn activity(
    storage: &dyn Storage,
    req: &ExportRequest,
    names: &Names,
    out: &mut (dyn Write + Send),
    title: &str,
) -> Result<u64, ExportError> {
    let counted = storage.activity(&req.grids, req.period)?;
    let inside: HashSet<&str> = req.grids.iter().map(String::as_str).collect();
    // Everyone assigned inside the grids (with nothing done too), and anyone who did
    // something there; by role (liaisons first), then id.
    let mut ids: Vec<&str> = names
        .people
        .iter()
        .filter(|(_, p)| p.3.iter().any(|g| inside.contains(g.as_str())))
        .map(|(id, _)| id.as_str())
        .chain(counted.iter().map(|a| a.person_id.as_str()))
        .filter(|id| !id.is_empty())
        .collect();
    let rank = |id: &str| match names.people.get(id).map(|p| p.2) {
        Some(Role::Liaison) => 0,
        Some(Role::Supervisor) => 1,
        Some(Role::CountyReviewer) => 2,
        Some(Role::Admin) => 3,
        None => 4,
    };
    ids.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
    ids.dedup();
    let by_id: HashMap<&str, &crate::storage::ActivityRow> =
        counted.iter().map(|a| (a.person_id.as_str(), a)).collect();
    let none = crate::storage::ActivityRow::default();
    let mut table = open_table(req.format, out, title, &ACTIVITY_COLUMNS)?;
    let mut n = 0u64;
    for id in ids {
        let a = by_id.get(id).copied().unwrap_or(&none);
        let p = names.people.get(id);
        let grids = p
            .map(|p| {
                p.3.iter()
                    .map(|g| match names.grids.get(g) {
                        Some(name) => format!("{name}（{g}）"),
                        None => g.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join("、")
            })
            .unwrap_or_default();
        let cells = [
            text(id),
            text(names.person(id)),
            text(p.map_or("", |p| p.2.label_zh())),
            Cell::Id(p.map_or("", |p| p.1.as_str())),
            owned(grids),
            Cell::Int(a.visits),
            Cell::Int(a.completed_visits),
            Cell::Int(a.findings),
            Cell::Int(a.serious_findings),
            Cell::Int(a.rapid_tests),
            Cell::Int(a.failed_tests),
            Cell::Int(a.rectifications),
            Cell::Int(a.review_steps),
            Cell::Int(a.producers_registered),
        ];
        table.row(&cells)?;
        n += 1;
    }
    table.finish()?;
    Ok(n)
}

/// The `admin export` command: writes one export of `grid` and the grids below it (every
/// grid when `None`) to the file `out`, notes it in the audit trail (by the admin command
/// line), and returns the rows written. A failed export removes the partial file.
pub fn export_to_file(
    storage: &dyn Storage,
    kind: &str,
    format: &str,
    grid: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    out: &std::path::Path,
) -> Result<ExportDone, String> {
    let kind = ExportKind::parse(kind).ok_or_else(|| {
        format!("unknown export '{kind}': directory, visits, tests, rectifications or activity")
    })?;
    let format = ExportFormat::parse(format)
        .ok_or_else(|| format!("unknown format '{format}': xlsx or csv"))?;
    let period = period_of_days(from, to).map_err(|which| {
        format!("--{which}: a day YYYY-MM-DD (China Standard Time), not before --from")
    })?;
    let grids = match grid {
        None => {
            let mut all: Vec<String> = storage
                .grids()
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|g| g.code)
                .collect();
            all.sort();
            all
        }
        Some(g) => {
            let sub = storage
                .grid_subtree(&[g.to_string()])
                .map_err(|e| e.to_string())?;
            if sub.is_empty() {
                return Err(format!("no grid {g}"));
            }
            sub
        }
    };
    storage
        .audit(&crate::storage::AuditEntry {
            at_ms: gridsync_core::now_ms(),
            person_id: String::new(),
            device_id: None,
            record_id: None,
            kind: None,
            grid: grid.map(str::to_string),
            action: "admin_export".into(),
            detail: format!(
                "{} as {}, {} ({} grids), days {} to {}, to {}, by admin-cli",
                kind.as_str(),
                format.ext(),
                grid.map_or("every grid".to_string(), |g| format!("grid {g} and below")),
                grids.len(),
                from.unwrap_or("(any)"),
                to.unwrap_or("(any)"),
                out.display()
            ),
        })
        .map_err(|e| e.to_string())?;
    let req = ExportRequest {
        kind,
        format,
        grids,
        period: if kind.uses_period() {
            period
        } else {
            Period::default()
        },
        today: gridsync_core::dates::china_date(gridsync_core::now_ms()),
    };
    let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut w = std::io::BufWriter::with_capacity(256 * 1024, file);
    let r = write_export(storage, &req, &mut w).and_then(|done| {
        w.flush()?;
        w.get_ref().sync_all()?;
        Ok(done)
    });
    r.map_err(|e| {
        drop(w);
        let _ = std::fs::remove_file(out);
        e.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_periods() {
        assert_eq!(china_day_start("1970-01-01"), Some(-CHINA_MS));
        assert_eq!(china_day_start("2024-03-01"), Some(1_709_222_400_000));
        assert_eq!(
            china_day_start("2024-02-29"),
            Some(1_709_222_400_000 - DAY_MS)
        );
        for bad in ["2023-02-29", "2024-13-01", "2024-1-01", "abcd-ef-gh", ""] {
            assert_eq!(china_day_start(bad), None, "{bad}");
        }
        let p = period_of_days(Some("2024-03-01"), Some("2024-03-01")).unwrap();
        assert_eq!(p.to_ms.unwrap() - p.from_ms.unwrap(), DAY_MS);
        assert_eq!(
            period_of_days(Some("2024-03-02"), Some("2024-03-01")),
            Err("to")
        );
        assert_eq!(period_of_days(Some("x"), None), Err("from"));
        assert_eq!(period_of_days(None, None), Ok(Period::default()));
    }

    #[test]
    fn names_and_fields() {
        assert_eq!(
            file_name(
                ExportKind::Visits,
                ExportFormat::Csv,
                Some("150223"),
                Some("2024-01-01"),
                None
            ),
            "日常巡查记录_150223_2024-01-01至.csv"
        );
        assert_eq!(
            file_name(
                ExportKind::Directory,
                ExportFormat::Xlsx,
                None,
                Some("2024-01-01"),
                None
            ),
            "生产主体名录_全部.xlsx"
        );
        assert_eq!(csv_text("=1+1"), "'=1+1");
        assert_eq!(csv_text("-x"), "'-x");
        assert_eq!(csv_text("乌兰"), "乌兰");
        for k in ExportKind::ALL {
            assert_eq!(ExportKind::parse(k.as_str()), Some(k));
        }
    }

    #[test]
    fn csv_keeps_identifiers_as_text() {
        let mut out: Vec<u8> = Vec::new();
        {
            let w: &mut (dyn Write + Send) = &mut out;
            let mut t = CsvTable::new(w, &[col("a", 1.0), col("b", 1.0), col("c", 1.0)]).unwrap();
            t.row(&[
                Cell::Id("0012"),
                Cell::Date(Some("2024-03-01".into())),
                text("x,y"),
            ])
            .unwrap();
            Box::new(t).finish().unwrap();
        }
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "\u{feff}a,b,c\r\n\"=\"\"0012\"\"\",2024-03-01,\"x,y\"\r\n"
        );
    }
}
