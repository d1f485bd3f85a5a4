//! Imports of producers and people from CSV or XLSX files with Chinese headers
//! (`docs/import.md` lists every column): all rows or none.
//!
//! A file is read whole, every row is checked (core's own validation for producers,
//! [`admin::check_person`] for people) and every bad row is reported with its line and
//! column. Producers are then checked for likely duplicates against the stored directory and
//! within the file ([`gridsync_core::dedupe`]); duplicates are reported, not merged, and stop
//! the import unless it is told to go ahead. Only then is anything written: producers as
//! documents created by an administrator, judged as a phone's push and stored in one
//! transaction ([`admin::seed_records_all_or_nothing`]), so they sync like any other.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use gridsync_core::dedupe::{
    fold_width, normalize_code, normalize_phone, DedupeEntry, DuplicateIndex, MatchReason,
};
use gridsync_core::model::{
    Certification, GeoPoint, GridNode, Person, Producer, ProducerStatus, ProducerType, Record,
    ResponsibilityLetter, RiskLevel, Role, Species,
};
use gridsync_core::store::TreeSnapshot;
use gridsync_core::validate;

use crate::admin::{self, AdminError, PersonProblem};
use crate::storage::Storage;

/// One cell as read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cell {
    /// The text (numbers as written without a trailing `.0`, dates as `YYYY-MM-DD`).
    pub text: String,
    /// The spreadsheet held a number, not text.
    pub number: bool,
    /// The spreadsheet held an error value (`#N/A`, …).
    pub error: bool,
}

impl Cell {
    fn text(s: impl Into<String>) -> Self {
        Cell {
            text: s.into(),
            ..Cell::default()
        }
    }
}

/// A row with its line (the CSV line, or the sheet's row number).
#[derive(Debug, Clone)]
pub struct Row {
    /// 1-based line.
    pub line: u64,
    /// Cells, in the order of the headers.
    pub cells: Vec<Cell>,
}

/// A file read as a table: the header row and the rows below it (blank rows left out).
#[derive(Debug, Clone)]
pub struct Table {
    /// File name as given.
    pub file: String,
    /// Line of the header row.
    pub header_line: u64,
    /// Headers as written.
    pub headers: Vec<String>,
    /// Rows.
    pub rows: Vec<Row>,
}

/// What is wrong with one cell (or a whole row, or the header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line (the sheet's row number for XLSX).
    pub line: u64,
    /// The column's header as written in the file (or the expected header when missing).
    pub column: String,
    /// What is wrong.
    pub message: String,
}

/// What a likely duplicate is a duplicate of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DuplicateOf {
    /// An entry already in the directory.
    Existing {
        /// Record id.
        id: String,
        /// Its name.
        name: String,
        /// Its grid.
        grid: String,
    },
    /// An earlier row of the same file.
    Line {
        /// Its line.
        line: u64,
        /// Its name.
        name: String,
    },
}

/// A row that looks like a producer already in the directory or earlier in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// The row's line.
    pub line: u64,
    /// The row's name.
    pub name: String,
    /// What it looks like.
    pub of: DuplicateOf,
    /// Why.
    pub reasons: Vec<MatchReason>,
    /// Combined score out of 100.
    pub score: u8,
}

impl std::fmt::Display for Duplicate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let why = self
            .reasons
            .iter()
            .map(|r| format!("{} {}", r.as_str(), r.label_zh()))
            .collect::<Vec<_>>()
            .join(", ");
        match &self.of {
            DuplicateOf::Existing { id, name, grid } => write!(
                f,
                "line {} ({}): likely the existing entry {id} ({name}, grid {grid}): {why}; score {}",
                self.line, self.name, self.score
            ),
            DuplicateOf::Line { line, name } => write!(
                f,
                "line {} ({}): likely the same as line {line} ({name}): {why}; score {}",
                self.line, self.name, self.score
            ),
        }
    }
}

/// Most problems an error message lists (all of them are in [`ImportError`]).
pub const MAX_LISTED: usize = 200;

/// Why an import stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file cannot be read as a table.
    #[error("{0}")]
    Read(String),
    /// Rows are wrong; nothing was imported.
    #[error("{}", list_problems(.file, .problems))]
    Problems {
        /// File name.
        file: String,
        /// Every problem, by line.
        problems: Vec<Problem>,
    },
    /// Likely duplicates; nothing was imported (`allow_duplicates` imports anyway).
    #[error("{}", list_duplicates(.file, .duplicates))]
    Duplicates {
        /// File name.
        file: String,
        /// Every likely duplicate.
        duplicates: Vec<Duplicate>,
    },
    /// Checking or writing failed.
    #[error(transparent)]
    Admin(#[from] AdminError),
}

impl From<crate::storage::StorageError> for ImportError {
    fn from(e: crate::storage::StorageError) -> Self {
        ImportError::Admin(e.into())
    }
}

fn list_problems(file: &str, problems: &[Problem]) -> String {
    let rows: HashSet<u64> = problems.iter().map(|p| p.line).collect();
    let mut s = format!(
        "{file}: {} problems in {} rows; nothing was imported",
        problems.len(),
        rows.len()
    );
    for p in problems.iter().take(MAX_LISTED) {
        s.push_str(&format!(
            "\n{file}: line {}, column {}: {}",
            p.line, p.column, p.message
        ));
    }
    if problems.len() > MAX_LISTED {
        s.push_str(&format!("\n… and {} more", problems.len() - MAX_LISTED));
    }
    s
}

fn list_duplicates(file: &str, duplicates: &[Duplicate]) -> String {
    let mut s = format!(
        "{file}: {} rows look like producers already in the directory or earlier in the file; \
         nothing was imported (check them, then import with --allow-duplicates to import anyway)",
        duplicates.len()
    );
    for d in duplicates.iter().take(MAX_LISTED) {
        s.push_str(&format!("\n{file}: {d}"));
    }
    if duplicates.len() > MAX_LISTED {
        s.push_str(&format!("\n… and {} more", duplicates.len() - MAX_LISTED));
    }
    s
}

/// Stages an import reports progress of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Checking rows.
    Checking,
    /// Looking for likely duplicates.
    Duplicates,
    /// Writing.
    Writing,
}

impl Stage {
    /// Label for the progress line.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Checking => "checking",
            Stage::Duplicates => "duplicates",
            Stage::Writing => "writing",
        }
    }
}

/// Progress callback: stage, done, total.
pub type Progress<'a> = &'a mut dyn FnMut(Stage, usize, usize);

// ---------------------------------------------------------------------------------------
// Reading files.

/// Reads a CSV or XLSX file (by extension: `.xlsx`, `.xlsm`, `.xls`, `.ods` through
/// calamine, anything else as CSV).
pub fn read_table(path: &Path) -> Result<Table, ImportError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("xlsx" | "xlsm" | "xls" | "ods") => read_spreadsheet(path),
        _ => {
            let data = std::fs::read(path)
                .map_err(|e| ImportError::Read(format!("{}: {e}", path.display())))?;
            read_csv(&path.display().to_string(), &data)
        }
    }
}

/// Reads CSV bytes: UTF-8 (with or without a byte-order mark), or GB18030/GBK as a Chinese
/// Excel saves "CSV (逗号分隔)".
pub fn read_csv(file: &str, data: &[u8]) -> Result<Table, ImportError> {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let text: std::borrow::Cow<'_, str> = match std::str::from_utf8(data) {
        Ok(s) => s.into(),
        Err(_) => {
            let (s, _, bad) = encoding_rs::GB18030.decode(data);
            if bad {
                return Err(ImportError::Read(format!(
                    "{file}: the file is neither UTF-8 nor GB18030 text; save it as \"CSV UTF-8\" or as XLSX"
                )));
            }
            s
        }
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut headers: Option<(u64, Vec<String>)> = None;
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            ImportError::Read(format!("{file}: line {line}: {e}"))
        })?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if rec.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        match &headers {
            None => headers = Some((line, rec.iter().map(str::to_string).collect())),
            Some(_) => rows.push(Row {
                line,
                cells: rec.iter().map(Cell::text).collect(),
            }),
        }
    }
    let (header_line, headers) =
        headers.ok_or_else(|| ImportError::Read(format!("{file}: the file is empty")))?;
    Ok(Table {
        file: file.to_string(),
        header_line,
        headers,
        rows,
    })
}

/// 1900-based spreadsheet day number of 1970-01-01.
const SHEET_EPOCH_DAYS: f64 = 25_569.0;

fn sheet_cell(d: &calamine::Data) -> Cell {
    use calamine::Data;
    match d {
        Data::Empty => Cell::default(),
        Data::String(s) => Cell::text(s.clone()),
        Data::Int(i) => Cell {
            text: i.to_string(),
            number: true,
            error: false,
        },
        Data::Float(f) => Cell {
            text: if f.fract() == 0.0 && f.abs() < 1e17 {
                format!("{}", *f as i64)
            } else {
                f.to_string()
            },
            number: true,
            error: false,
        },
        Data::Bool(b) => Cell::text(if *b { "是" } else { "否" }),
        Data::DateTime(dt) => {
            let ms = ((dt.as_f64() - SHEET_EPOCH_DAYS) * 86_400_000.0).round() as i64;
            Cell::text(gridsync_core::dates::utc_date(ms))
        }
        Data::DateTimeIso(s) | Data::DurationIso(s) => {
            Cell::text(s.chars().take(10).collect::<String>())
        }
        Data::Error(e) => Cell {
            text: format!("{e}"),
            number: false,
            error: true,
        },
    }
}

/// Reads the first sheet of a spreadsheet; lines are the sheet's row numbers.
pub fn read_spreadsheet(path: &Path) -> Result<Table, ImportError> {
    use calamine::Reader;
    let file = path.display().to_string();
    let mut book = calamine::open_workbook_auto(path)
        .map_err(|e| ImportError::Read(format!("{file}: {e}")))?;
    let range = book
        .worksheet_range_at(0)
        .ok_or_else(|| ImportError::Read(format!("{file}: the workbook has no sheet")))?
        .map_err(|e| ImportError::Read(format!("{file}: {e}")))?;
    let first_row = u64::from(range.start().map(|s| s.0).unwrap_or(0)) + 1;
    let first_col = range.start().map(|s| s.1).unwrap_or(0) as usize;
    let mut headers: Option<(u64, Vec<String>)> = None;
    let mut rows = Vec::new();
    for (i, r) in range.rows().enumerate() {
        let line = first_row + i as u64;
        // Columns left of the range are empty.
        let mut cells: Vec<Cell> = vec![Cell::default(); first_col];
        cells.extend(r.iter().map(sheet_cell));
        if cells.iter().all(|c| c.text.trim().is_empty()) {
            continue;
        }
        match &headers {
            None => headers = Some((line, cells.into_iter().map(|c| c.text).collect())),
            Some(_) => rows.push(Row { line, cells }),
        }
    }
    let (header_line, headers) =
        headers.ok_or_else(|| ImportError::Read(format!("{file}: the first sheet is empty")))?;
    Ok(Table {
        file,
        header_line,
        headers,
        rows,
    })
}

// ---------------------------------------------------------------------------------------
// Columns.

/// A column an import understands.
#[derive(Debug, Clone)]
pub struct Column {
    /// Internal key.
    pub key: String,
    /// The Chinese header the templates use.
    pub header: String,
    /// Other headers accepted (English identifiers among them).
    pub aliases: Vec<String>,
    /// Whether the column must be present.
    pub required: bool,
}

fn col(key: &str, header: &str, aliases: &[&str], required: bool) -> Column {
    Column {
        key: key.into(),
        header: header.into(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        required,
    }
}

/// Headers that are accepted and ignored (a serial number, remarks).
pub const IGNORED_HEADERS: &[&str] = &["序号", "备注", "no", "remarks"];

/// The columns of a producer import, in template order.
pub fn producer_columns() -> Vec<Column> {
    let mut c = vec![
        col("name", "名称", &["主体名称", "生产主体名称", "name"], true),
        col("type", "主体类型", &["类型", "type", "producer_type"], true),
        col(
            "credit_code",
            "统一社会信用代码",
            &["信用代码", "credit_code"],
            false,
        ),
        col(
            "id_number",
            "身份证号",
            &["身份证号码", "负责人身份证号", "id_number"],
            false,
        ),
        col(
            "owner",
            "负责人",
            &["法定代表人", "法人代表", "负责人姓名", "owner"],
            true,
        ),
        col(
            "phone",
            "联系电话",
            &["手机号", "电话", "联系方式", "phone"],
            true,
        ),
        col("grid", "网格编码", &["网格代码", "grid"], true),
        col("address", "地址", &["详细地址", "address"], false),
        col("products", "主要产品", &["产品", "products"], false),
        col("risk", "风险等级", &["risk"], false),
        col("status", "状态", &["经营状态", "status"], false),
        col("lon", "经度", &["lon"], false),
        col("lat", "纬度", &["lat"], false),
        col(
            "crop_area_mu",
            "种植面积（亩）",
            &["种植面积", "crop_area_mu"],
            false,
        ),
        col(
            "certifications",
            "认证",
            &["质量认证", "certifications"],
            false,
        ),
        col(
            "certificates",
            "是否开具合格证",
            &["开具合格证", "issues_compliance_certificates"],
            false,
        ),
        col(
            "letter",
            "责任书签订日期",
            &["责任书", "responsibility_letter"],
            false,
        ),
    ];
    for s in Species::ALL {
        c.push(Column {
            key: format!("on_hand:{}", s.as_str()),
            header: format!("{}存栏", s.label_zh()),
            aliases: vec![format!("{}_on_hand", s.as_str())],
            required: false,
        });
        c.push(Column {
            key: format!("sold:{}", s.as_str()),
            header: format!("{}年出栏", s.label_zh()),
            aliases: vec![format!("{}_sold_per_year", s.as_str())],
            required: false,
        });
    }
    c
}

/// The columns of a people import, in template order.
pub fn people_columns() -> Vec<Column> {
    vec![
        col("id", "编号", &["人员编号", "工号", "id"], false),
        col("name", "姓名", &["name"], true),
        col(
            "phone",
            "手机号",
            &["联系电话", "电话", "手机", "phone"],
            true,
        ),
        col("role", "角色", &["人员类型", "role"], true),
        col("grids", "网格编码", &["网格代码", "grids", "grid"], true),
    ]
}

fn norm_header(h: &str) -> String {
    h.trim_start_matches('\u{feff}')
        .chars()
        .map(fold_width)
        .filter(|c| !c.is_whitespace() && *c != '*')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Where each column is in a table: key -> (index, header as written).
#[derive(Debug)]
struct Layout {
    at: HashMap<String, (usize, String)>,
    columns: Vec<Column>,
}

impl Layout {
    /// Maps headers to columns; `rename` makes another header hold a column (`--grid-column`).
    fn of(
        table: &Table,
        columns: Vec<Column>,
        rename: &[(&str, &str)],
    ) -> Result<Self, ImportError> {
        let mut by_header: HashMap<String, &Column> = HashMap::new();
        for c in &columns {
            let renamed = rename.iter().find(|(k, _)| *k == c.key).map(|(_, h)| *h);
            match renamed {
                Some(h) => {
                    by_header.insert(norm_header(h), c);
                }
                None => {
                    by_header.insert(norm_header(&c.header), c);
                    for a in &c.aliases {
                        by_header.insert(norm_header(a), c);
                    }
                }
            }
        }
        let ignored: HashSet<String> = IGNORED_HEADERS.iter().map(|h| norm_header(h)).collect();
        let mut at: HashMap<String, (usize, String)> = HashMap::new();
        let mut problems = Vec::new();
        let line = table.header_line;
        for (i, h) in table.headers.iter().enumerate() {
            let n = norm_header(h);
            if n.is_empty() || ignored.contains(&n) {
                continue;
            }
            match by_header.get(&n) {
                Some(c) => {
                    if let Some((_, first)) = at.get(&c.key) {
                        problems.push(Problem {
                            line,
                            column: h.clone(),
                            message: format!("the column appears twice (also as '{first}')"),
                        });
                    } else {
                        at.insert(c.key.clone(), (i, h.trim().to_string()));
                    }
                }
                None => problems.push(Problem {
                    line,
                    column: h.clone(),
                    message: format!(
                        "unknown column; the columns are {} (docs/import.md)",
                        columns
                            .iter()
                            .filter(|c| !c.key.contains(':'))
                            .map(|c| c.header.as_str())
                            .collect::<Vec<_>>()
                            .join("、")
                    ),
                }),
            }
        }
        for c in columns.iter().filter(|c| c.required) {
            if !at.contains_key(&c.key) {
                let header = rename
                    .iter()
                    .find(|(k, _)| *k == c.key)
                    .map(|(_, h)| h.to_string())
                    .unwrap_or_else(|| c.header.clone());
                problems.push(Problem {
                    line,
                    column: header,
                    message: "missing column".into(),
                });
            }
        }
        if !problems.is_empty() {
            return Err(ImportError::Problems {
                file: table.file.clone(),
                problems,
            });
        }
        Ok(Layout { at, columns })
    }

    fn cell<'r>(&self, row: &'r Row, key: &str) -> Option<&'r Cell> {
        self.at.get(key).and_then(|(i, _)| row.cells.get(*i))
    }

    /// The trimmed text of a column ("" when absent or empty).
    fn text<'r>(&self, row: &'r Row, key: &str) -> &'r str {
        self.cell(row, key).map(|c| c.text.trim()).unwrap_or("")
    }

    /// The column's header as written (or the template's when the file lacks it).
    fn header(&self, key: &str) -> String {
        self.at
            .get(key)
            .map(|(_, h)| h.clone())
            .or_else(|| {
                self.columns
                    .iter()
                    .find(|c| c.key == key)
                    .map(|c| c.header.clone())
            })
            .unwrap_or_else(|| key.to_string())
    }
}

// ---------------------------------------------------------------------------------------
// Values.

/// Parses a producer type: the Chinese name, a common short form, or the identifier.
pub fn parse_producer_type(s: &str) -> Option<ProducerType> {
    let s = s.trim();
    ProducerType::parse(&s.to_ascii_lowercase())
        .or_else(|| ProducerType::ALL.into_iter().find(|t| t.label_zh() == s))
        .or(match s {
            "合作社" | "专业合作社" | "农牧民专业合作社" => {
                Some(ProducerType::Cooperative)
            }
            "大户" | "种植大户" | "养殖大户" | "种养殖大户" => {
                Some(ProducerType::LargeHousehold)
            }
            "农户" | "养殖户" | "种植户" => Some(ProducerType::SmallHousehold),
            "农资经营者" | "农资经营户" | "农资店" => Some(ProducerType::InputDealer),
            "收购商" | "收购点" => Some(ProducerType::Purchaser),
            _ => None,
        })
}

/// Parses a risk grade: 低/中/高 (with or without 风险), or the identifier.
pub fn parse_risk(s: &str) -> Option<RiskLevel> {
    let s = s.trim();
    RiskLevel::parse(&s.to_ascii_lowercase()).or(match s.trim_end_matches("风险") {
        "低" => Some(RiskLevel::Low),
        "中" => Some(RiskLevel::Medium),
        "高" => Some(RiskLevel::High),
        _ => None,
    })
}

fn parse_status(s: &str) -> Option<ProducerStatus> {
    ProducerStatus::parse(&s.to_ascii_lowercase()).or(match s {
        "正常" | "在营" | "存续" | "经营" => Some(ProducerStatus::Active),
        "注销" | "停产" | "关闭" | "歇业" => Some(ProducerStatus::Closed),
        _ => None,
    })
}

fn parse_certification(s: &str) -> Option<Certification> {
    Certification::parse(&s.to_ascii_lowercase()).or(match s {
        "绿色" | "绿色食品" => Some(Certification::Green),
        "有机" | "有机产品" | "有机食品" => Some(Certification::Organic),
        "地理标志" | "地理标志产品" | "农产品地理标志" => {
            Some(Certification::GeographicalIndication)
        }
        "名特优新" | "名特优新农产品" => Some(Certification::SpecialtyProduct),
        _ => None,
    })
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "是" | "有" | "y" | "yes" | "true" | "1" => Some(true),
        "否" | "无" | "n" | "no" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// Parses a role: the Chinese title, a common short form, or the identifier.
pub fn parse_role(s: &str) -> Option<Role> {
    let s = s.trim();
    Role::parse(&s.to_ascii_lowercase()).or(match s {
        "协管员" | "信息员" | "协管员/信息员" | "网格员" => Some(Role::Liaison),
        "监管员" | "网格监管员" => Some(Role::Supervisor),
        "旗县审核员" | "审核员" | "旗县农牧部门" => Some(Role::CountyReviewer),
        "系统管理员" | "管理员" => Some(Role::Admin),
        _ => None,
    })
}

/// Splits a list cell (products, certifications, grids) on 、，,;；/ and whitespace.
fn split_list(s: &str) -> Vec<String> {
    s.split(|c: char| matches!(c, '、' | '，' | ',' | ';' | '；' | '/' | '|') || c.is_whitespace())
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// Folds full-width characters and trims.
fn folded(s: &str) -> String {
    s.chars()
        .map(fold_width)
        .collect::<String>()
        .trim()
        .to_string()
}

// ---------------------------------------------------------------------------------------
// Producers.

/// Options of a producer import.
#[derive(Debug, Clone, Default)]
pub struct ProducerOptions {
    /// The header of the column that holds the grid code (instead of 网格编码).
    pub grid_column: Option<String>,
    /// Import rows that look like duplicates anyway (they are still reported).
    pub allow_duplicates: bool,
    /// Check everything, write nothing.
    pub dry_run: bool,
}

/// Which column a validation failure of a producer field belongs to.
fn producer_field_key(field: &str) -> String {
    if let Some(rest) = field.strip_prefix("scale.livestock.") {
        let mut parts = rest.split('.');
        let species = parts.next().unwrap_or("");
        return match parts.next() {
            Some("on_hand") => format!("on_hand:{species}"),
            _ => format!("sold:{species}"),
        };
    }
    let head = field.split(['.', '[']).next().unwrap_or(field);
    match (head, field) {
        (_, "location.lat") => "lat".into(),
        (_, "location.lon") => "lon".into(),
        ("scale", _) => "crop_area_mu".into(),
        ("responsibility_letter", _) => "letter".into(),
        ("producer_type", _) => "type".into(),
        (h, _) => h.into(),
    }
}

/// Checks every row of a producer table and builds the producers (created by `created_by`
/// at `now_ms`, drafts). Every bad row is reported; nothing is returned unless all are good.
pub fn parse_producers(
    table: &Table,
    nodes: &[GridNode],
    created_by: &str,
    now_ms: i64,
    grid_column: Option<&str>,
    progress: Progress<'_>,
) -> Result<Vec<(u64, Producer)>, ImportError> {
    let rename: Vec<(&str, &str)> = grid_column.map(|h| ("grid", h)).into_iter().collect();
    let layout = Layout::of(table, producer_columns(), &rename)?;
    let grids: HashSet<&str> = nodes.iter().map(|n| n.code.as_str()).collect();
    let mut problems = Vec::new();
    let mut out = Vec::with_capacity(table.rows.len());
    let total = table.rows.len();
    for (n, row) in table.rows.iter().enumerate() {
        if n % 256 == 0 {
            progress(Stage::Checking, n, total);
        }
        let before = problems.len();
        let mut bad = |key: &str, message: String| {
            problems.push(Problem {
                line: row.line,
                column: layout.header(key),
                message,
            })
        };
        for (key, (i, _)) in &layout.at {
            if row.cells.get(*i).is_some_and(|c| c.error) {
                bad(key, "the cell holds a spreadsheet error value".into());
            }
        }
        let text = |key: &str| layout.text(row, key);
        let type_s = text("type");
        let producer_type = match parse_producer_type(type_s) {
            Some(t) => t,
            None => {
                bad(
                    "type",
                    format!(
                        "'{type_s}' is not a producer type: {}",
                        ProducerType::ALL
                            .iter()
                            .map(|t| format!("{} ({})", t.label_zh(), t.as_str()))
                            .collect::<Vec<_>>()
                            .join("、")
                    ),
                );
                ProducerType::SmallHousehold
            }
        };
        let grid = folded(text("grid"));
        if !grid.is_empty() && !grids.contains(grid.as_str()) {
            bad(
                "grid",
                format!("'{grid}' is not a grid of the tree (import the grids first)"),
            );
        }
        let mut p = Producer::new(
            text("name"),
            producer_type,
            text("owner"),
            folded(text("phone")),
            grid,
            created_by,
            now_ms,
        );
        for (key, slot) in [
            ("credit_code", &mut p.credit_code),
            ("id_number", &mut p.id_number),
        ] {
            let cell = layout.cell(row, key);
            *slot = cell.and_then(|c| normalize_code(&c.text));
            if cell.is_some_and(|c| c.number && c.text.len() >= 16) {
                problems.push(Problem {
                    line: row.line,
                    column: layout.header(key),
                    message: "is stored as a number in the spreadsheet, which lost its last digits: format the column as text (文本) and enter it again".into(),
                });
            }
        }
        let mut bad = |key: &str, message: String| {
            problems.push(Problem {
                line: row.line,
                column: layout.header(key),
                message,
            })
        };
        p.address = text("address").to_string();
        p.products = split_list(text("products"));
        let risk_s = text("risk");
        if !risk_s.is_empty() {
            match parse_risk(risk_s) {
                Some(r) => p.risk = r,
                None => bad(
                    "risk",
                    format!("'{risk_s}' is not a risk grade: 低 (low), 中 (medium), 高 (high)"),
                ),
            }
        }
        let status_s = text("status");
        if !status_s.is_empty() {
            match parse_status(status_s) {
                Some(s) => p.status = s,
                None => bad(
                    "status",
                    format!("'{status_s}' is not a status: 正常 (active) or 注销 (closed)"),
                ),
            }
        }
        let (lat_s, lon_s) = (text("lat"), text("lon"));
        match (lat_s.is_empty(), lon_s.is_empty()) {
            (true, true) => {}
            (false, false) => match (lat_s.parse::<f64>(), lon_s.parse::<f64>()) {
                (Ok(lat), Ok(lon)) => p.location = Some(GeoPoint { lat, lon }),
                (Err(_), _) => bad("lat", format!("'{lat_s}' is not a number")),
                (_, Err(_)) => bad("lon", format!("'{lon_s}' is not a number")),
            },
            (true, false) => bad("lat", "a longitude needs a latitude too".into()),
            (false, true) => bad("lon", "a latitude needs a longitude too".into()),
        }
        let area = text("crop_area_mu");
        if !area.is_empty() {
            match area.parse::<f64>() {
                Ok(a) => p.scale.crop_area_mu = Some(a),
                Err(_) => bad("crop_area_mu", format!("'{area}' is not a number of mu")),
            }
        }
        for s in Species::ALL {
            for (key, on_hand) in [
                (format!("on_hand:{}", s.as_str()), true),
                (format!("sold:{}", s.as_str()), false),
            ] {
                let v = text(&key);
                if v.is_empty() {
                    continue;
                }
                match v.parse::<u32>() {
                    Ok(n) => {
                        let c = p.scale.livestock.entry(s).or_default();
                        if on_hand {
                            c.on_hand = Some(n);
                        } else {
                            c.sold_per_year = Some(n);
                        }
                    }
                    Err(_) => bad(&key, format!("'{v}' is not a whole number of head")),
                }
            }
        }
        for c in split_list(text("certifications")) {
            match parse_certification(&c) {
                Some(c) if !p.certifications.contains(&c) => p.certifications.push(c),
                Some(_) => {}
                None => bad(
                    "certifications",
                    format!("'{c}' is not a certification: 绿色食品、有机、地理标志、名特优新"),
                ),
            }
        }
        let cert_s = text("certificates");
        if !cert_s.is_empty() {
            match parse_bool(cert_s) {
                Some(b) => p.issues_compliance_certificates = b,
                None => bad("certificates", format!("'{cert_s}' is not 是 or 否")),
            }
        }
        let letter = text("letter");
        if !letter.is_empty() {
            p.responsibility_letter = Some(ResponsibilityLetter {
                signed_on: letter.replace(['/', '.'], "-"),
            });
        }
        // Core's own validation, once the row parsed.
        if problems.len() == before {
            if let Err(e) = validate::validate_producer(&p) {
                let key = producer_field_key(&e.field);
                let value = if layout.at.contains_key(&key) {
                    format!("'{}': ", layout.text(row, &key))
                } else {
                    String::new()
                };
                problems.push(Problem {
                    line: row.line,
                    column: layout.header(&key),
                    message: format!("{value}{}", e.problem),
                });
            }
        }
        if problems.len() == before {
            out.push((row.line, p));
        }
    }
    progress(Stage::Checking, total, total);
    if table.rows.is_empty() {
        problems.push(Problem {
            line: table.header_line,
            column: "row".into(),
            message: "the file has no rows below the header".into(),
        });
    }
    if !problems.is_empty() {
        return Err(ImportError::Problems {
            file: table.file.clone(),
            problems,
        });
    }
    Ok(out)
}

/// Likely duplicates of the rows against `existing` (id, name, grid, …) and earlier rows.
pub fn find_duplicates(
    nodes: &[GridNode],
    existing: &[DedupeEntry],
    rows: &[(u64, Producer)],
    progress: Progress<'_>,
) -> Vec<Duplicate> {
    let tree = TreeSnapshot::from_nodes(nodes);
    let stored = DuplicateIndex::with_entries(&tree, existing);
    let by_id: HashMap<&str, &DedupeEntry> = existing.iter().map(|e| (e.id.as_str(), e)).collect();
    let mut in_file = DuplicateIndex::new(&tree);
    let mut line_of: HashMap<&str, (u64, &str)> = HashMap::new();
    let mut out = Vec::new();
    for (n, (line, p)) in rows.iter().enumerate() {
        if n % 256 == 0 {
            progress(Stage::Duplicates, n, rows.len());
        }
        let e = DedupeEntry::of(p);
        for m in stored.find(&e) {
            if let Some(o) = by_id.get(m.id.as_str()) {
                out.push(Duplicate {
                    line: *line,
                    name: p.name.clone(),
                    of: DuplicateOf::Existing {
                        id: o.id.clone(),
                        name: o.name.clone(),
                        grid: o.grid.clone(),
                    },
                    reasons: m.reasons,
                    score: m.score,
                });
            }
        }
        for m in in_file.find(&e) {
            if let Some((l, name)) = line_of.get(m.id.as_str()) {
                out.push(Duplicate {
                    line: *line,
                    name: p.name.clone(),
                    of: DuplicateOf::Line {
                        line: *l,
                        name: name.to_string(),
                    },
                    reasons: m.reasons,
                    score: m.score,
                });
            }
        }
        in_file.insert(&e);
        line_of.insert(&p.id, (*line, &p.name));
    }
    progress(Stage::Duplicates, rows.len(), rows.len());
    out
}

/// The stored directory as duplicate-check entries.
pub fn existing_producers(storage: &dyn Storage) -> Result<Vec<DedupeEntry>, ImportError> {
    let grids: Vec<String> = storage.grids()?.into_iter().map(|g| g.code).collect();
    let mut out = Vec::new();
    storage.for_each_producer(&grids, &mut |r| {
        out.push(DedupeEntry {
            id: r.id,
            name: r.name,
            grid: r.grid,
            credit_code: r.credit_code,
            id_number: r.id_number,
            phone: r.phone,
        });
        Ok(())
    })?;
    Ok(out)
}

/// What a producer import did.
#[derive(Debug, Clone)]
pub struct ProducerImport {
    /// Rows in the file.
    pub rows: usize,
    /// Producers stored (0 for a dry run).
    pub imported: usize,
    /// Likely duplicates (imported anyway when allowed).
    pub duplicates: Vec<Duplicate>,
}

/// Imports producers from a CSV or XLSX file as documents created by `admin`: all rows or
/// none (see the module documentation).
pub fn import_producers(
    storage: &dyn Storage,
    admin: &Person,
    path: &Path,
    options: &ProducerOptions,
    progress: Progress<'_>,
) -> Result<ProducerImport, ImportError> {
    let table = read_table(path)?;
    import_producer_table(storage, admin, &table, options, progress)
}

/// [`import_producers`] of a table already read.
pub fn import_producer_table(
    storage: &dyn Storage,
    admin: &Person,
    table: &Table,
    options: &ProducerOptions,
    progress: Progress<'_>,
) -> Result<ProducerImport, ImportError> {
    if admin.role != Role::Admin {
        return Err(AdminError::Invalid(format!(
            "{} is not an administrator: records are imported as an administrator's",
            admin.id
        ))
        .into());
    }
    let nodes = storage.grids()?;
    let now = gridsync_core::now_ms();
    let rows = parse_producers(
        table,
        &nodes,
        &admin.id,
        now,
        options.grid_column.as_deref(),
        progress,
    )?;
    let existing = existing_producers(storage)?;
    let duplicates = find_duplicates(&nodes, &existing, &rows, progress);
    if !duplicates.is_empty() && !options.allow_duplicates {
        return Err(ImportError::Duplicates {
            file: table.file.clone(),
            duplicates,
        });
    }
    let mut imported = 0;
    if !options.dry_run {
        let records: Vec<Record> = rows.into_iter().map(|(_, p)| Record::Producer(p)).collect();
        imported = admin::seed_records_all_or_nothing(storage, admin, &records, &mut |d, t| {
            progress(Stage::Writing, d, t)
        })?;
    }
    Ok(ProducerImport {
        rows: table.rows.len(),
        imported,
        duplicates,
    })
}

// ---------------------------------------------------------------------------------------
// People.

fn person_problem_key(p: &PersonProblem) -> &'static str {
    match p {
        PersonProblem::Field("id", _) => "id",
        PersonProblem::Field("name", _) => "name",
        PersonProblem::Field("phone", _) => "phone",
        _ => "grids",
    }
}

/// Checks every row of a people table against the grid tree with [`admin::check_person`]
/// and against the stored people: a row without 编号 takes the id of the stored person
/// with the same phone (re-importing updates) or a new one; an id or a phone twice in the
/// file, or a phone of another stored person, is refused.
pub fn parse_people(
    table: &Table,
    nodes: &[GridNode],
    stored: &[Person],
) -> Result<Vec<(u64, Person)>, ImportError> {
    let layout = Layout::of(table, people_columns(), &[])?;
    let by_phone: HashMap<String, &Person> = stored
        .iter()
        .filter_map(|p| normalize_phone(&p.phone).map(|k| (k, p)))
        .collect();
    let mut problems = Vec::new();
    let mut out = Vec::new();
    let mut ids: HashMap<String, u64> = HashMap::new();
    let mut phones: HashMap<String, u64> = HashMap::new();
    for row in &table.rows {
        let before = problems.len();
        let mut bad = |key: &str, message: String| {
            problems.push(Problem {
                line: row.line,
                column: layout.header(key),
                message,
            })
        };
        let text = |key: &str| layout.text(row, key);
        let role_s = text("role");
        let role = parse_role(role_s);
        if role.is_none() {
            bad(
                "role",
                format!(
                    "'{role_s}' is not a role: 协管员 (liaison), 监管员 (supervisor), 旗县审核员 (county_reviewer), 系统管理员 (admin)"
                ),
            );
        }
        let phone = folded(text("phone"));
        let key = normalize_phone(&phone);
        let mut id = folded(text("id"));
        if let Some(k) = &key {
            if let Some(l) = phones.get(k) {
                bad("phone", format!("'{phone}' is also the phone of line {l}"));
            }
            match by_phone.get(k) {
                Some(p) if id.is_empty() => id = p.id.clone(),
                Some(p) if p.id != id => bad(
                    "phone",
                    format!(
                        "'{phone}' is the phone of the stored person {} ({})",
                        p.id, p.name
                    ),
                ),
                _ => {}
            }
        }
        if id.is_empty() {
            id = gridsync_core::new_id();
        }
        if let Some(l) = ids.get(&id) {
            bad("id", format!("'{id}' is also the id of line {l}"));
        }
        let person = Person {
            id: id.clone(),
            name: text("name").to_string(),
            phone,
            role: role.unwrap_or(Role::Liaison),
            grids: split_list(text("grids")),
        };
        if role.is_some() {
            if let Err(e) = admin::check_person(&person, nodes) {
                let key = person_problem_key(&e);
                bad(key, format!("{e}（{}）", e.zh()));
            }
        }
        ids.insert(id, row.line);
        if let Some(k) = key {
            phones.insert(k, row.line);
        }
        if problems.len() == before {
            out.push((row.line, person));
        }
    }
    if table.rows.is_empty() {
        problems.push(Problem {
            line: table.header_line,
            column: "row".into(),
            message: "the file has no rows below the header".into(),
        });
    }
    if !problems.is_empty() {
        return Err(ImportError::Problems {
            file: table.file.clone(),
            problems,
        });
    }
    Ok(out)
}

/// Imports people from a CSV or XLSX file: every row is checked first (all rows or none);
/// then each person is stored (added, or updated by id). Should storage fail midway, the
/// error says how many were stored; re-running the import updates those rather than adding
/// them twice.
pub fn import_people(
    storage: &dyn Storage,
    path: &Path,
    dry_run: bool,
    progress: Progress<'_>,
) -> Result<usize, ImportError> {
    let table = read_table(path)?;
    import_people_table(storage, &table, dry_run, progress)
}

/// [`import_people`] of a table already read.
pub fn import_people_table(
    storage: &dyn Storage,
    table: &Table,
    dry_run: bool,
    progress: Progress<'_>,
) -> Result<usize, ImportError> {
    let nodes = storage.grids()?;
    progress(Stage::Checking, 0, table.rows.len());
    let people = parse_people(table, &nodes, &storage.people()?)?;
    progress(Stage::Checking, table.rows.len(), table.rows.len());
    if dry_run {
        return Ok(0);
    }
    let total = people.len();
    for (n, (_, p)) in people.iter().enumerate() {
        if let Err(e) = storage.upsert_person(p) {
            return Err(AdminError::Invalid(format!(
                "{}: storing person {} failed after {n} of {total} were stored (re-run the import: stored people are updated, not added twice): {e}",
                table.file, p.id
            ))
            .into());
        }
        if n % 64 == 0 {
            progress(Stage::Writing, n, total);
        }
    }
    progress(Stage::Writing, total, total);
    Ok(total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use gridsync_core::model::{GridKind, GridLevel};

    fn nodes() -> Vec<GridNode> {
        let n = |code: &str, level, parent: Option<&str>| GridNode {
            code: code.into(),
            name: format!("网格{code}"),
            level,
            kind: GridKind::Pastoral,
            parent: parent.map(Into::into),
        };
        vec![
            n("B", GridLevel::Banner, None),
            n("T1", GridLevel::Township, Some("B")),
            n("V1", GridLevel::Village, Some("T1")),
            n("V2", GridLevel::Village, Some("T1")),
        ]
    }

    fn none() -> impl FnMut(Stage, usize, usize) {
        |_, _, _| {}
    }

    #[test]
    fn headers_values_and_problems_name_line_and_column() {
        let csv = "\u{feff}序号,*名称,主体类型,统一社会信用代码,身份证号,负责人,联系电话,网格编码,风险等级,主要产品,认证\n\
            1,其其格家庭牧场,家庭牧场,,15252219800101003x,其其格,１３９１２３４５６７８,V1,高,羊肉、牛肉,有机\n\
            2,浩日沁合作社,cooperative,,,浩日沁,13912345679,V2,中风险,,\n\
            3,巴图,散户,,152522198001011234,巴图,139,V9,极高,,\n";
        let t = read_csv("p.csv", csv.as_bytes()).unwrap();
        assert_eq!(t.header_line, 1);
        let e =
            parse_producers(&t, &nodes(), "adm", 1_700_000_000_000, None, &mut none()).unwrap_err();
        let ImportError::Problems { problems, .. } = &e else {
            panic!("{e}")
        };
        let at = |line: u64, col: &str| {
            problems
                .iter()
                .find(|p| p.line == line && p.column == col)
                .map(|p| p.message.clone())
        };
        // The cooperative needs a credit code (core's validation names the field).
        assert!(
            at(3, "统一社会信用代码").unwrap().contains("required"),
            "{e}"
        );
        // Unknown grid, unknown risk; the phone is left to core once the row parses.
        assert!(at(4, "网格编码").unwrap().contains("'V9'"), "{e}");
        assert!(at(4, "风险等级").unwrap().contains("极高"), "{e}");
        assert!(
            at(2, "名称").is_none() && !problems.iter().any(|p| p.line == 2),
            "{e}"
        );
        let text = e.to_string();
        assert!(text.contains("p.csv: line 4, column 网格编码"), "{text}");
    }

    #[test]
    fn good_rows_build_producers() {
        let csv = "名称,主体类型,身份证号,负责人,联系电话,网格编码,风险等级,主要产品,认证,是否开具合格证,羊年出栏,种植面积（亩）,经度,纬度\n\
            其其格家庭牧场,家庭牧场,15252219800101003x,其其格,１３９１２３４５６７８,V1,高,羊肉、牛肉,有机,是,300,12.5,114.95,44.02\n";
        let t = read_csv("p.csv", csv.as_bytes()).unwrap();
        let rows =
            parse_producers(&t, &nodes(), "adm", 1_700_000_000_000, None, &mut none()).unwrap();
        let p = &rows[0].1;
        assert_eq!(rows[0].0, 2);
        assert_eq!(p.producer_type, ProducerType::FamilyRanch);
        assert_eq!(p.id_number.as_deref(), Some("15252219800101003X"));
        assert_eq!(p.phone, "13912345678");
        assert_eq!(p.risk, RiskLevel::High);
        assert_eq!(p.products, vec!["羊肉", "牛肉"]);
        assert_eq!(p.certifications, vec![Certification::Organic]);
        assert!(p.issues_compliance_certificates);
        assert_eq!(
            p.scale.livestock[&Species::SheepGoat].sold_per_year,
            Some(300)
        );
        assert_eq!(p.scale.crop_area_mu, Some(12.5));
        assert!(p.location.is_some());
    }

    #[test]
    fn grid_column_and_unknown_headers() {
        let csv =
            "名称,主体类型,身份证号,负责人,联系电话,所属村编码,颜色\nA,散户,,a,13912345678,V1,红\n";
        let t = read_csv("p.csv", csv.as_bytes()).unwrap();
        let e = parse_producers(&t, &nodes(), "adm", 1, Some("所属村编码"), &mut none())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1, column 颜色: unknown column"), "{e}");
        let e = parse_producers(&t, &nodes(), "adm", 1, None, &mut none())
            .unwrap_err()
            .to_string();
        assert!(e.contains("column 网格编码: missing column"), "{e}");
    }

    #[test]
    fn gbk_csv_is_read() {
        let (bytes, _, _) = encoding_rs::GB18030.encode("名称,主体类型\n其其格,散户\n");
        let t = read_csv("g.csv", &bytes).unwrap();
        assert_eq!(t.headers, vec!["名称", "主体类型"]);
        assert_eq!(t.rows[0].cells[0].text, "其其格");
    }

    #[test]
    fn people_rows() {
        let csv = "姓名,手机号,角色,网格编码\n乌日娜,13912345678,协管员,V1\n巴特尔,13912345679,村长,V2\n图雅,13912345678,监管员,T1\n";
        let t = read_csv("people.csv", csv.as_bytes()).unwrap();
        let e = parse_people(&t, &nodes(), &[]).unwrap_err().to_string();
        assert!(
            e.contains("line 3, column 角色: '村长' is not a role"),
            "{e}"
        );
        assert!(e.contains("line 4, column 手机号"), "{e}");
        let csv = "姓名,手机号,角色,网格编码\n乌日娜,13912345678,liaison,V1\n图雅,13912345670,监管员,V1\n";
        let t = read_csv("people.csv", csv.as_bytes()).unwrap();
        let e = parse_people(&t, &nodes(), &[]).unwrap_err().to_string();
        assert!(e.contains("line 3, column 网格编码"), "{e}");
        let stored = Person {
            id: "l1".into(),
            name: "乌日娜".into(),
            phone: "13912345678".into(),
            role: Role::Liaison,
            grids: vec!["V2".into()],
        };
        let csv = "姓名,手机号,角色,网格编码\n乌日娜,13912345678,liaison,V1\n";
        let t = read_csv("people.csv", csv.as_bytes()).unwrap();
        let people = parse_people(&t, &nodes(), &[stored]).unwrap();
        assert_eq!(people[0].1.id, "l1", "the stored person is updated");
    }
}
