//! The public grid chart (网格化管理公示牌) of a township or village: the supervising
//! body, the township's supervisors (level-1 grid) and the villages' liaisons (level-2
//! grids) with phone numbers and duties, built from the current assignments on every
//! request (a reassignment shows on the next load).
//!
//! - A township's chart: its supervising body, its supervisors, then each village under it
//!   (by code) with its liaisons.
//! - A village's chart: its township's supervising body and supervisors, and its own
//!   liaisons.
//!
//! Liaisons assigned to a level-3 sub-grid are listed with the village that holds it. The
//! supervising body is set per township ([`set_agency`]); a person's published duties are
//! the role's standard text ([`SUPERVISOR_DUTIES`], [`LIAISON_DUTIES`]) unless an
//! administrator wrote their own ([`set_duties`]). Both setters are shared by the admin CLI
//! and the desk, and write the audit trail.

use std::collections::HashMap;

use gridsync_core::model::{GridLevel, GridNode, Person, Role};
use gridsync_core::validate;

use super::pdf::{Column, Document, Flow};
use crate::storage::{AuditEntry, GridChartInfo, Storage, StorageError};

/// Standard duties of a supervisor (监管员), drawn from the plan's 人员定责 and its daily
/// patrol specification.
pub const SUPERVISOR_DUTIES: &str = "负责本苏木乡镇（街道）一级网格的农畜产品质量安全监管服务：按照日常巡查工作规范对网格内生产主体开展日常巡查和抽查检测（速测）；审核网格内农畜产品生产主体名录并报送旗县农牧部门；开展质量安全控制技术指导和培训宣传；指导协管员（信息员）工作，督促发现的问题整改到位，及时上报重大情况。";

/// Standard duties of a liaison (协管员/信息员), drawn from the plan's 人员定责.
pub const LIAISON_DUTIES: &str = "掌握本嘎查村（社区）二级网格内生产主体的基本情况，登记农畜产品生产主体名录并每年更新；协助监管员开展日常巡查、隐患排查和检测抽样；开展安全用药指导和质量安全宣传；发现问题及时报送监管员。";

/// Longest agency name, in characters.
pub const MAX_AGENCY_CHARS: usize = 60;
/// Longest agency address, in characters.
pub const MAX_ADDRESS_CHARS: usize = 100;
/// Longest duties text, in characters.
pub const MAX_DUTIES_CHARS: usize = 300;

/// One person on the chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The person's id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Phone.
    pub phone: String,
    /// Title: 监管员 or 协管员（信息员）.
    pub title: &'static str,
    /// The duties an administrator wrote; `None`: the role's standard text applies.
    pub own_duties: Option<String>,
    /// The sub-grid the person is assigned to, when not the grid itself.
    pub sub_grid: Option<String>,
}

impl Member {
    /// The duties as published.
    pub fn duties(&self) -> &str {
        self.own_duties.as_deref().unwrap_or(match self.title {
            SUPERVISOR_TITLE => SUPERVISOR_DUTIES,
            _ => LIAISON_DUTIES,
        })
    }
}

const SUPERVISOR_TITLE: &str = "监管员";
const LIAISON_TITLE: &str = "协管员（信息员）";

/// A village (level-2 grid) and its liaisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VillageSection {
    /// Code.
    pub code: String,
    /// Name.
    pub name: String,
    /// Its liaisons (and those of its sub-grids), by name.
    pub liaisons: Vec<Member>,
}

/// The chart of one township or village.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    /// The grid asked for.
    pub code: String,
    /// Its name.
    pub name: String,
    /// Its level.
    pub level: GridLevel,
    /// The township (the grid itself, or the village's parent).
    pub township_code: String,
    /// The township's name.
    pub township_name: String,
    /// The township's supervising body, if set.
    pub agency: Option<GridChartInfo>,
    /// The township's supervisors, by name.
    pub supervisors: Vec<Member>,
    /// The villages shown (all of a township's, or the one village).
    pub villages: Vec<VillageSection>,
    /// When the chart was built.
    pub built_at_ms: i64,
}

impl Chart {
    /// The chart's heading.
    pub fn title(&self) -> String {
        let prefix = if self.level == GridLevel::Village {
            format!("{}{}", self.township_name, self.name)
        } else {
            self.name.clone()
        };
        format!("{prefix}农畜产品质量安全网格化管理公示牌")
    }

    /// Everyone on the chart.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.supervisors
            .iter()
            .chain(self.villages.iter().flat_map(|v| v.liaisons.iter()))
    }
}

/// The township a chart is built for and the grid asked for, or `None` when the grid is
/// unknown or not a township or village.
fn chart_grids<'a>(nodes: &'a [GridNode], code: &str) -> Option<(&'a GridNode, &'a GridNode)> {
    let node = nodes.iter().find(|n| n.code == code)?;
    match node.level {
        GridLevel::Township => Some((node, node)),
        GridLevel::Village => {
            let parent = nodes
                .iter()
                .find(|n| Some(&n.code) == node.parent.as_ref())?;
            (parent.level == GridLevel::Township).then_some((node, parent))
        }
        _ => None,
    }
}

/// Whether `code` has a chart: a known township or a village under one.
pub fn has_chart(nodes: &[GridNode], code: &str) -> bool {
    chart_grids(nodes, code).is_some()
}

fn by_name(a: &Member, b: &Member) -> std::cmp::Ordering {
    a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id))
}

/// Builds the chart of a grid from the current grids, people and chart data (`None`: the
/// grid is unknown or has no chart). Scope is the caller's to check.
pub fn build(storage: &dyn Storage, code: &str) -> Result<Option<Chart>, StorageError> {
    let nodes = storage.grids()?;
    let Some((node, township)) = chart_grids(&nodes, code) else {
        return Ok(None);
    };
    let people = storage.people()?;
    let names: HashMap<&str, &str> = nodes
        .iter()
        .map(|n| (n.code.as_str(), n.name.as_str()))
        .collect();
    let parent: HashMap<&str, &str> = nodes
        .iter()
        .filter_map(|n| Some((n.code.as_str(), n.parent.as_deref()?)))
        .collect();
    // The village (level-2 grid) a grid is, or lies in.
    let village_of = |g: &str| -> Option<String> {
        let mut at = g;
        for _ in 0..nodes.len() {
            let n = nodes.iter().find(|n| n.code == at)?;
            match n.level {
                GridLevel::Village => return Some(n.code.clone()),
                GridLevel::SubGrid => at = parent.get(at)?,
                _ => return None,
            }
        }
        None
    };
    let villages: Vec<&GridNode> = if node.level == GridLevel::Village {
        vec![node]
    } else {
        let mut v: Vec<&GridNode> = nodes
            .iter()
            .filter(|n| {
                n.level == GridLevel::Village && n.parent.as_deref() == Some(&township.code)
            })
            .collect();
        v.sort_by(|a, b| a.code.cmp(&b.code));
        v
    };
    let member = |p: &Person, title: &'static str, sub: Option<&str>| Member {
        id: p.id.clone(),
        name: p.name.clone(),
        phone: p.phone.clone(),
        title,
        own_duties: None,
        sub_grid: sub.map(|s| names.get(s).copied().unwrap_or(s).to_string()),
    };
    let mut supervisors: Vec<Member> = people
        .iter()
        .filter(|p| p.role == Role::Supervisor && p.grids.contains(&township.code))
        .map(|p| member(p, SUPERVISOR_TITLE, None))
        .collect();
    supervisors.sort_by(by_name);
    let mut sections: Vec<VillageSection> = villages
        .iter()
        .map(|v| VillageSection {
            code: v.code.clone(),
            name: v.name.clone(),
            liaisons: Vec::new(),
        })
        .collect();
    for p in people.iter().filter(|p| p.role == Role::Liaison) {
        for g in &p.grids {
            let Some(v) = village_of(g) else { continue };
            if let Some(s) = sections.iter_mut().find(|s| s.code == v) {
                let sub = (g != &v).then_some(g.as_str());
                // A person assigned to several sub-grids of one village is listed once.
                if !s.liaisons.iter().any(|m| m.id == p.id) {
                    s.liaisons.push(member(p, LIAISON_TITLE, sub));
                }
            }
        }
    }
    for s in &mut sections {
        s.liaisons.sort_by(by_name);
    }
    let mut chart = Chart {
        code: node.code.clone(),
        name: node.name.clone(),
        level: node.level,
        township_code: township.code.clone(),
        township_name: township.name.clone(),
        agency: storage.grid_chart(&township.code)?,
        supervisors,
        villages: sections,
        built_at_ms: gridsync_core::now_ms(),
    };
    let ids: Vec<String> = chart.members().map(|m| m.id.clone()).collect();
    let duties: HashMap<String, String> = storage
        .person_duties(&ids)?
        .into_iter()
        .map(|d| (d.person_id, d.duties))
        .collect();
    let fill = |m: &mut Member| m.own_duties = duties.get(&m.id).cloned();
    chart.supervisors.iter_mut().for_each(fill);
    chart
        .villages
        .iter_mut()
        .flat_map(|v| v.liaisons.iter_mut())
        .for_each(fill);
    Ok(Some(chart))
}

// ---- Setting the chart's data (admin CLI and desk). ----

/// Why chart data was refused: in English for the CLI, in Chinese for the desk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// English.
    pub en: String,
    /// Chinese.
    pub zh: String,
}

/// Errors of setting chart data.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// Input refused.
    #[error("{}", .0.en)]
    Invalid(Problem),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn refuse(en: impl Into<String>, zh: impl Into<String>) -> ChartError {
    ChartError::Invalid(Problem {
        en: en.into(),
        zh: zh.into(),
    })
}

/// A text field: trimmed, within `max` characters, no control characters (newlines only
/// where `lines`).
fn text_field(v: &str, max: usize, lines: bool, en: &str, zh: &str) -> Result<String, ChartError> {
    let v = v.trim().replace("\r\n", "\n");
    let n = v.chars().count();
    if n > max {
        return Err(refuse(
            format!("{en} is {n} characters long, at most {max} allowed"),
            format!("{zh}最多 {max} 个字，现为 {n} 个字"),
        ));
    }
    if v.chars().any(|c| c.is_control() && !(lines && c == '\n')) {
        return Err(refuse(
            format!("{en} contains control characters"),
            format!("{zh}含有不可见的控制字符"),
        ));
    }
    Ok(v)
}

/// A phone as published: a mobile or landline number, or (`service`) a short public
/// service line such as 12316.
fn phone_field(v: &str, service: bool, en: &str, zh: &str) -> Result<String, ChartError> {
    let v = v.trim();
    let short = service
        && (3..=6).contains(&v.len())
        && v.starts_with('1')
        && v.bytes().all(|b| b.is_ascii_digit());
    if short || validate::check_phone(en, v).is_ok() {
        Ok(v.to_string())
    } else {
        Err(refuse(
            format!(
                "{en} '{v}' is not an 11-digit mobile number, a landline with area code{}",
                if service {
                    " or a service line like 12316"
                } else {
                    ""
                }
            ),
            format!(
                "{zh}应为 11 位手机号码或带区号的固定电话{}",
                if service {
                    "，或 12316 这样的服务热线"
                } else {
                    ""
                }
            ),
        ))
    }
}

/// What an administrator enters for a township's supervising body.
#[derive(Debug, Clone, Default)]
pub struct AgencyInput {
    /// Name (required).
    pub agency: String,
    /// Address (optional).
    pub address: String,
    /// Phone (required).
    pub phone: String,
    /// Complaint line (optional).
    pub complaint_phone: String,
}

fn audit(storage: &dyn Storage, by: &str, grid: Option<&str>, action: &str, detail: String) {
    let entry = AuditEntry {
        at_ms: gridsync_core::now_ms(),
        person_id: by.to_string(),
        device_id: None,
        record_id: None,
        kind: None,
        grid: grid.map(str::to_string),
        action: action.to_string(),
        detail,
    };
    if let Err(e) = storage.audit(&entry) {
        tracing::error!(action, "chart audit entry not written: {e}");
    }
}

/// Sets the supervising body of a township (level-1 grid; a village's chart shows its
/// township's), after checking every field. Written to the audit trail with `by`.
pub fn set_agency(
    storage: &dyn Storage,
    by: &str,
    code: &str,
    input: &AgencyInput,
) -> Result<GridChartInfo, ChartError> {
    let nodes = storage.grids()?;
    let node = nodes
        .iter()
        .find(|n| n.code == code)
        .ok_or_else(|| refuse(format!("no grid '{code}'"), format!("网格“{code}”不存在")))?;
    if node.level != GridLevel::Township {
        return Err(refuse(
            format!(
                "grid '{code}' is a {}: the supervising body is set for a township (level-1 grid); its villages' charts show it",
                node.level.as_str()
            ),
            format!(
                "网格“{}”是{}：监管单位按苏木乡镇（一级网格）设置，其下嘎查村的公示牌沿用乡镇的监管单位",
                node.name,
                node.level.label_zh()
            ),
        ));
    }
    let agency = text_field(
        &input.agency,
        MAX_AGENCY_CHARS,
        false,
        "agency",
        "监管单位名称",
    )?;
    if agency.is_empty() {
        return Err(refuse("agency is required", "请填写监管单位名称"));
    }
    let info = GridChartInfo {
        code: code.to_string(),
        agency,
        agency_address: text_field(&input.address, MAX_ADDRESS_CHARS, false, "address", "地址")?,
        agency_phone: phone_field(&input.phone, true, "agency phone", "监管单位电话")?,
        complaint_phone: if input.complaint_phone.trim().is_empty() {
            String::new()
        } else {
            phone_field(
                &input.complaint_phone,
                true,
                "complaint phone",
                "投诉举报电话",
            )?
        },
        updated_at_ms: gridsync_core::now_ms(),
    };
    storage.set_grid_chart(&info)?;
    audit(
        storage,
        by,
        Some(code),
        "set_grid_chart",
        format!(
            "grid {code}: agency {}, address {}, phone {}, complaint phone {}",
            info.agency, info.agency_address, info.agency_phone, info.complaint_phone
        ),
    );
    Ok(info)
}

/// Sets the published duties of a supervisor or liaison; empty text goes back to the
/// role's standard duties. Written to the audit trail with `by`.
pub fn set_duties(
    storage: &dyn Storage,
    by: &str,
    person_id: &str,
    duties: &str,
) -> Result<Option<String>, ChartError> {
    let person = storage.person(person_id)?.ok_or_else(|| {
        refuse(
            format!("person '{person_id}' does not exist or is inactive"),
            "该人员不存在或已停用",
        )
    })?;
    if !matches!(person.role, Role::Supervisor | Role::Liaison) {
        return Err(refuse(
            format!(
                "person '{person_id}' is a {}: only supervisors and liaisons are on grid charts",
                person.role.as_str()
            ),
            "只有监管员和协管员列入公示牌",
        ));
    }
    let text = text_field(duties, MAX_DUTIES_CHARS, true, "duties", "工作职责")?;
    let stored = (!text.is_empty()).then_some(text);
    storage.set_person_duties(person_id, stored.as_deref(), gridsync_core::now_ms())?;
    audit(
        storage,
        by,
        None,
        "set_duties",
        match &stored {
            Some(d) => format!("person {person_id} ({}): {d}", person.name),
            None => format!("person {person_id} ({}): standard duties", person.name),
        },
    );
    Ok(stored)
}

// ---- The PDF. ----

/// The chart as an A4 landscape PDF (see [`super::pdf`]).
pub fn to_pdf(chart: &Chart) -> Vec<u8> {
    let title = chart.title();
    let mut f = Flow::new(Document::new(&title, true), 36.0);
    let width = f.width();
    f.title(&title, 20.0);
    f.skip(6.0);
    let agency = match &chart.agency {
        Some(a) => {
            let mut lines = vec![format!("监管单位：{}", a.agency)];
            if !a.agency_address.is_empty() {
                lines.push(format!("地址：{}", a.agency_address));
            }
            let mut phones = format!("联系电话：{}", a.agency_phone);
            if !a.complaint_phone.is_empty() {
                phones.push_str(&format!("　　投诉举报电话：{}", a.complaint_phone));
            }
            lines.push(phones);
            lines
        }
        None => vec![format!("监管单位：{}", AGENCY_MISSING)],
    };
    for l in &agency {
        f.paragraph(l, 12.0, 0.0);
    }
    f.skip(8.0);

    f.paragraph(
        &format!("一级网格：{}　监管员", chart.township_name),
        13.0,
        0.0,
    );
    f.paragraph(&format!("岗位职责：{SUPERVISOR_DUTIES}"), 10.0, 0.0);
    f.skip(4.0);
    let cols = |first: &str| {
        vec![
            Column {
                title: first.into(),
                width: 150.0,
            },
            Column {
                title: "姓名".into(),
                width: 110.0,
            },
            Column {
                title: "联系电话".into(),
                width: 110.0,
            },
            Column {
                title: "工作职责".into(),
                width: width - 370.0,
            },
        ]
    };
    let duties_cell = |m: &Member| {
        m.own_duties
            .clone()
            .unwrap_or_else(|| STANDARD_DUTIES_CELL.to_string())
    };
    let sup_rows: Vec<Vec<String>> = if chart.supervisors.is_empty() {
        vec![vec![
            chart.township_name.clone(),
            NOBODY.into(),
            String::new(),
            String::new(),
        ]]
    } else {
        chart
            .supervisors
            .iter()
            .map(|m| {
                vec![
                    chart.township_name.clone(),
                    m.name.clone(),
                    m.phone.clone(),
                    duties_cell(m),
                ]
            })
            .collect()
    };
    f.table(&cols("一级网格"), &sup_rows, 10.0);
    f.skip(12.0);

    f.paragraph("二级网格　协管员（信息员）", 13.0, 0.0);
    f.paragraph(&format!("岗位职责：{LIAISON_DUTIES}"), 10.0, 0.0);
    f.skip(4.0);
    let mut rows = Vec::new();
    for v in &chart.villages {
        if v.liaisons.is_empty() {
            rows.push(vec![
                v.name.clone(),
                NOBODY.into(),
                String::new(),
                String::new(),
            ]);
        }
        for m in &v.liaisons {
            let grid = match &m.sub_grid {
                Some(s) => format!("{}（{s}）", v.name),
                None => v.name.clone(),
            };
            rows.push(vec![grid, m.name.clone(), m.phone.clone(), duties_cell(m)]);
        }
    }
    if rows.is_empty() {
        rows.push(vec![
            "（无二级网格）".into(),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    f.table(&cols("二级网格（嘎查村）"), &rows, 10.0);
    f.skip(10.0);
    f.paragraph(
        &format!(
            "本公示牌依据 {} 的网格人员分配生成，人员调整后重新生成即为最新。",
            built_at(chart.built_at_ms)
        ),
        9.0,
        0.0,
    );
    f.finish().to_bytes()
}

/// What the chart says when no supervising body was set.
pub const AGENCY_MISSING: &str = "（尚未登记，请系统管理员填写）";
/// A grid without anyone assigned.
pub const NOBODY: &str = "（暂未配备）";
/// The duties cell of a person who has the role's standard duties.
pub const STANDARD_DUTIES_CELL: &str = "按岗位职责";

/// A time in ms as date and minute in China Standard Time.
pub fn built_at(ms: i64) -> String {
    let in_day = (ms + 8 * 3_600_000).rem_euclid(86_400_000);
    format!(
        "{} {:02}:{:02}",
        gridsync_core::dates::china_date(ms),
        in_day / 3_600_000,
        in_day / 60_000 % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_and_service_lines() {
        assert!(phone_field("13912345678", false, "p", "p").is_ok());
        assert!(phone_field("0479-8221234", false, "p", "p").is_ok());
        assert!(phone_field("12316", true, "p", "p").is_ok());
        assert!(phone_field("12316", false, "p", "p").is_err());
        assert!(phone_field("abc", true, "p", "p").is_err());
        assert!(phone_field("1231612", true, "p", "p").is_err());
    }

    #[test]
    fn text_fields_are_trimmed_and_checked() {
        assert_eq!(text_field("  甲  ", 5, false, "a", "a").unwrap(), "甲");
        assert!(text_field("甲\n乙", 5, false, "a", "a").is_err());
        assert_eq!(text_field("甲\r\n乙", 5, true, "a", "a").unwrap(), "甲\n乙");
        assert!(text_field("甲乙丙", 2, false, "a", "a").is_err());
        assert!(text_field("a\u{7}", 5, true, "a", "a").is_err());
    }

    #[test]
    fn standard_duties_come_from_the_plan() {
        for needle in ["日常巡查", "速测", "名录", "技术指导", "上报"] {
            assert!(SUPERVISOR_DUTIES.contains(needle), "{needle}");
        }
        for needle in ["名录", "巡查", "检测抽样", "用药指导", "报送"] {
            assert!(LIAISON_DUTIES.contains(needle), "{needle}");
        }
        assert!(SUPERVISOR_DUTIES.chars().count() <= MAX_DUTIES_CHARS);
        assert!(LIAISON_DUTIES.chars().count() <= MAX_DUTIES_CHARS);
    }
}
