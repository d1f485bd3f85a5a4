//! Device-level commands: offline set-up, due patrols, rectifications, status, enrol, sync.

use std::collections::HashSet;

use gridsync_core::model::{GridKind, GridLevel, GridNode, Person, Role};
use gridsync_core::store::AttachmentState;
use gridsync_core::sync::{
    enroll as core_enroll, CancelFlag, HttpTransport, SyncEngine, SyncOptions,
};
use gridsync_core::{now_ms, Error};
use serde_json::json;

use super::args::{Cli, DueArgs, EnrollArgs, InitArgs, IntervalArgs, RectArgs, SyncArgs};
use super::{default_grid, open, parse, render, CliError, Out};

const DAY_MS: i64 = 86_400_000;

fn bad(field: &str, problem: impl Into<String>) -> CliError {
    CliError::Input {
        field: field.into(),
        problem: problem.into(),
    }
}

fn default_level(role: Role) -> GridLevel {
    match role {
        Role::Liaison => GridLevel::Village,
        Role::Supervisor => GridLevel::Township,
        Role::CountyReviewer => GridLevel::Banner,
        Role::Admin => GridLevel::Region,
    }
}

/// Digits of an administrative division code kept at each level (region 2, league 4,
/// banner 6, township 9, village 12).
fn code_len(level: GridLevel) -> Option<usize> {
    match level {
        GridLevel::Region => Some(2),
        GridLevel::League => Some(4),
        GridLevel::Banner => Some(6),
        GridLevel::Township => Some(9),
        GridLevel::Village => Some(12),
        GridLevel::SubGrid => None,
    }
}

fn parent_level(level: GridLevel) -> Option<GridLevel> {
    match level {
        GridLevel::Region => None,
        GridLevel::League => Some(GridLevel::Region),
        GridLevel::Banner => Some(GridLevel::League),
        GridLevel::Township => Some(GridLevel::Banner),
        GridLevel::Village => Some(GridLevel::Township),
        GridLevel::SubGrid => Some(GridLevel::Village),
    }
}

/// The parent of a node: given on the command line, or read from the division code, or a
/// local placeholder when the code is not a division code.
fn parent_code(a: &InitArgs, code: &str, level: GridLevel) -> Option<(String, GridLevel)> {
    let up = parent_level(level)?;
    let given = match up {
        GridLevel::Township => a.township.clone(),
        GridLevel::Banner => a.banner.clone(),
        _ => None,
    };
    if let Some(g) = given {
        return Some((g, up));
    }
    if level == GridLevel::SubGrid {
        if let Some((village, _)) = code.rsplit_once('-') {
            return Some((village.to_string(), up));
        }
    }
    let digits = code.bytes().all(|b| b.is_ascii_digit());
    if let (true, Some(n)) = (digits, code_len(up)) {
        if code.len() > n {
            return Some((code[..n].to_string(), up));
        }
    }
    Some((format!("local-{}", up.as_str()), up))
}

/// `init`: profile and a minimal grid tree for offline use.
pub(crate) fn init(cli: &Cli, a: &InitArgs, out: &mut Out) -> Result<(), CliError> {
    let role = parse::role(&a.role)?;
    let level = match &a.level {
        Some(l) => {
            GridLevel::parse(l).ok_or_else(|| bad("level", format!("'{l}' is not a grid level")))?
        }
        None => default_level(role),
    };
    let kind = GridKind::parse(&a.kind).ok_or_else(|| {
        bad(
            "kind",
            format!("'{}' is not farming, pastoral or mixed", a.kind),
        )
    })?;
    gridsync_core::validate::require_text("name", &a.name, 50).map_err(Error::from)?;
    gridsync_core::validate::require_text("person_id", &a.person_id, 64).map_err(Error::from)?;
    gridsync_core::validate::check_phone("phone", &a.phone).map_err(Error::from)?;
    let store = open(cli)?;
    if store.server_link()?.is_some() {
        return Err(Error::Workflow(
            "this device is enrolled with a server: its person and grids come from there".into(),
        )
        .into());
    }
    let existing: HashSet<String> = store.grids()?.into_iter().map(|g| g.code).collect();
    let mut nodes: Vec<GridNode> = Vec::new();
    let mut seen = HashSet::new();
    for (i, code) in a.grids.iter().enumerate() {
        let name = a.grid_names.get(i).cloned().unwrap_or_else(|| code.clone());
        let mut cur = Some((code.clone(), level, name, true));
        while let Some((code, lvl, name, explicit)) = cur {
            if !seen.insert(code.clone()) {
                break;
            }
            let parent = parent_code(a, &code, lvl);
            if explicit || !existing.contains(&code) {
                nodes.push(GridNode {
                    code: code.clone(),
                    name,
                    level: lvl,
                    kind,
                    parent: parent.as_ref().map(|p| p.0.clone()),
                });
            }
            cur = parent.map(|(pc, pl)| {
                let given_name = match pl {
                    GridLevel::Township => a.township_name.clone(),
                    GridLevel::Banner => a.banner_name.clone(),
                    _ => None,
                };
                let explicit = given_name.is_some();
                (pc.clone(), pl, given_name.unwrap_or(pc), explicit)
            });
        }
    }
    for n in &nodes {
        n.validate().map_err(|e| match e {
            Error::Invalid(i) => bad(&format!("grid.{}", i.field), i.problem),
            other => CliError::Core(other),
        })?;
    }
    let person = Person {
        id: a.person_id.clone(),
        name: a.name.clone(),
        phone: a.phone.clone(),
        role,
        grids: a.grids.clone(),
    };
    store.upsert_grids(&nodes)?;
    store.set_profile(&person)?;
    out.value(json!({ "person": person, "grids": nodes }));
    out.line(format!(
        "已设置本机使用人：{}（{}），电话 {}",
        person.name,
        role.label_zh(),
        person.phone
    ));
    for g in &a.grids {
        if let Some(n) = nodes.iter().find(|n| &n.code == g) {
            out.line(format!(
                "负责网格：{} {}（{}）",
                n.code,
                n.name,
                n.level.label_zh()
            ));
        }
    }
    Ok(())
}

/// `due`: producers due for a patrol.
pub(crate) fn due(cli: &Cli, a: &DueArgs, out: &mut Out) -> Result<(), CliError> {
    let store = open(cli)?;
    let grid = default_grid(&store, a.grid.as_deref())?;
    let at = now_ms() + a.days_ahead * DAY_MS;
    let due = store.due_patrols(&grid, at)?;
    out.value(json!(due));
    out.line(format!("待巡查主体（网格 {grid}）：{} 个", due.len()));
    for d in &due {
        let last = d
            .producer
            .last_visit_ms
            .map_or("从未巡查".to_string(), render::date);
        out.line(format!(
            "  {}  {}  上次巡查 {}  间隔 {} 天  逾期 {} 天  [{}]",
            d.producer.name, d.producer.phone, last, d.interval_days, d.days_overdue, d.producer.id
        ));
    }
    Ok(())
}

/// `rectifications`: open rectifications, overdue ones flagged.
pub(crate) fn rectifications(cli: &Cli, a: &RectArgs, out: &mut Out) -> Result<(), CliError> {
    let today = match &a.today {
        Some(t) => {
            gridsync_core::validate::check_date("today", t).map_err(Error::from)?;
            t.clone()
        }
        None => render::date(now_ms()),
    };
    let store = open(cli)?;
    let items = store.open_rectifications(&today)?;
    out.value(json!(items));
    out.line(format!("未完成整改：{} 项（截至 {today}）", items.len()));
    for r in &items {
        out.line(format!(
            "  {}  整改通知 {}  期限 {}{}  [巡查 {}]",
            r.producer_name,
            r.notice_number,
            r.deadline,
            if r.overdue { "（已逾期）" } else { "" },
            r.visit_id
        ));
    }
    Ok(())
}

/// `interval`: sets a patrol interval.
pub(crate) fn interval(cli: &Cli, a: &IntervalArgs, out: &mut Out) -> Result<(), CliError> {
    let t = parse::producer_type(&a.producer_type)?;
    let r = parse::risk(&a.risk)?;
    let store = open(cli)?;
    store.set_patrol_interval(t, r, a.days)?;
    out.value(json!({ "producer_type": t, "risk": r, "days": a.days }));
    out.line(format!(
        "已设置巡查间隔：{}，风险{}，每 {} 天",
        t.label_zh(),
        render::risk(r),
        a.days
    ));
    Ok(())
}

/// `status`: who, counts, rejected and kept edits.
pub(crate) fn status(cli: &Cli, out: &mut Out) -> Result<(), CliError> {
    let store = open(cli)?;
    let person = store.profile()?;
    let counts = store.counts()?;
    let rejected = store.rejected_edits()?;
    let kept = store.kept_edits()?;
    let corrupt = store.corrupt_records()?;
    let link = store.server_link()?;
    out.value(json!({
        "person": person,
        "counts": counts,
        "rejected": rejected,
        "kept": kept,
        "corrupt": corrupt.iter().map(|(id, d)| json!({"id": id, "detail": d})).collect::<Vec<_>>(),
        "server": link.as_ref().map(|l| json!({"url": l.url, "device_id": l.device_id})),
    }));
    match &person {
        Some(p) => out.line(format!(
            "使用人：{}（{}），网格 {}",
            p.name,
            p.role.label_zh(),
            p.grids.join("、")
        )),
        None => out.line("使用人：未设置（请先 init 或 enroll）"),
    }
    match &link {
        Some(l) => out.line(format!("服务器：{}（设备 {}）", l.url, l.device_id)),
        None => out.line("服务器：未登记（仅离线使用）"),
    }
    out.line(format!(
        "生产主体 {} 个，巡查记录 {} 条，未同步 {} 条，被拒 {} 条，损坏 {} 条，保留的修改 {} 条",
        counts.producers,
        counts.visits,
        counts.unsynced,
        counts.rejected,
        counts.corrupt,
        counts.kept_edits
    ));
    for r in &rejected {
        out.line(format!(
            "  被拒：{} [{}] {}：{}",
            r.kind, r.id, r.code, r.reason
        ));
    }
    for k in &kept {
        out.line(format!(
            "  保留：{} [{}] 网格 {}：{}",
            k.kind, k.id, k.grid, k.reason
        ));
    }
    for (id, detail) in &corrupt {
        out.line(format!("  损坏：[{id}] {detail}"));
    }
    Ok(())
}

/// `enroll`: exchanges a one-time code for a device credential.
pub(crate) fn enroll(cli: &Cli, a: &EnrollArgs, out: &mut Out) -> Result<(), CliError> {
    if !(a.server.starts_with("http://") || a.server.starts_with("https://")) {
        return Err(bad("server", "must start with http:// or https://"));
    }
    let store = open(cli)?;
    let transport = HttpTransport::new(&a.server)?;
    let person = core_enroll(&store, &transport, &a.server, &a.code, &a.device_name)?;
    let link = store.server_link()?;
    out.value(json!({
        "person": person,
        "device_id": link.as_ref().map(|l| l.device_id.clone()),
        "server": a.server,
    }));
    out.line(format!(
        "登记成功：{}（{}），网格 {}",
        person.name,
        person.role.label_zh(),
        person.grids.join("、")
    ));
    if let Some(l) = link {
        out.line(format!("设备编号：{}", l.device_id));
    }
    Ok(())
}

/// `sync`: push and pull until nothing is left.
pub(crate) fn sync(cli: &Cli, a: &SyncArgs, out: &mut Out) -> Result<(), CliError> {
    let store = open(cli)?;
    let link = store.server_link()?.ok_or_else(|| {
        Error::NotEnrolled("enrol this device first: `enroll --server URL --code CODE`".into())
    })?;
    let before: Vec<serde_json::Value> = store
        .pending_pushes(1_000_000, &HashSet::new())?
        .iter()
        .map(|p| json!({"id": p.id, "kind": p.kind}))
        .collect();
    let transport = HttpTransport::new(&link.url)?;
    let engine = SyncEngine::new(&store, &transport);
    let quiet = out.json();
    let options = SyncOptions {
        attachment_budget_bytes: a.budget_bytes,
        attachment_budget_ms: a.budget_ms,
    };
    let report = engine.sync_with(
        &options,
        &mut |p| {
            if !quiet {
                eprintln!(
                    "第 {} 次往返：已上传 {}，已下载 {}{}{}",
                    p.round_trips,
                    p.pushed,
                    p.pulled,
                    if p.more { "，还有更多" } else { "" },
                    if p.attachment_bytes_up > 0 {
                        format!("；照片已上传 {} 字节", p.attachment_bytes_up)
                    } else {
                        String::new()
                    }
                );
            }
        },
        &CancelFlag::new(),
    )?;
    let counts = store.counts()?;
    out.value(json!({
        "server": link.url,
        "pending_before": before,
        "pushed": report.pushed,
        "pulled": report.pulled,
        "rejected": report.rejected.iter().map(|(id, r)| json!({"id": id, "reason": r})).collect::<Vec<_>>(),
        "removed": report.removed,
        "kept": report.kept,
        "round_trips": report.round_trips,
        "bytes_up": report.bytes_up,
        "bytes_down": report.bytes_down,
        "epoch_reset": report.epoch_reset,
        "unsynced_after": counts.unsynced,
        "attachment_bytes_up": report.attachment_bytes_up,
        "attachments_completed": report.attachments_completed,
        "attachments_left": report.attachments_left,
        "attachment_errors": report.attachment_errors.iter().map(|(sha, r)| json!({"sha256": sha, "reason": r})).collect::<Vec<_>>(),
        "scale_thresholds_fetched": report.scale_thresholds_fetched,
        "scale_thresholds_error": report.scale_thresholds_error,
    }));
    out.line(format!("同步完成（{}）", link.url));
    out.line(format!(
        "  上传：{} 条（待上传 {} 条）",
        report.pushed,
        before.len()
    ));
    out.line(format!("  下载：{} 条", report.pulled));
    out.line(format!("  被拒：{} 条", report.rejected.len()));
    for (id, reason) in &report.rejected {
        out.line(format!("    [{id}] {reason}"));
    }
    if report.removed > 0 {
        out.line(format!(
            "  移出本机：{} 条（其中保留未同步修改 {} 条）",
            report.removed, report.kept
        ));
    }
    if report.epoch_reset {
        out.line("  服务器数据已恢复，本机已重新上传全部记录");
    }
    out.line(format!(
        "  往返 {} 次，上行 {} 字节，下行 {} 字节",
        report.round_trips, report.bytes_up, report.bytes_down
    ));
    if report.attachment_bytes_up > 0 || report.attachments_left > 0 {
        out.line(format!(
            "  照片：上传完成 {} 张，上传 {} 字节，待上传 {} 张",
            report.attachments_completed, report.attachment_bytes_up, report.attachments_left
        ));
    }
    for (sha, reason) in &report.attachment_errors {
        out.line(format!(
            "    照片 [{}] 未上传：{reason}",
            &sha[..sha.len().min(12)]
        ));
    }
    if report.scale_thresholds_fetched {
        let changed = store
            .league_scale()?
            .is_some_and(|l| !l.overrides.0.is_empty());
        out.line(if changed {
            "  规模养殖标准已更新：按本盟市标准"
        } else {
            "  规模养殖标准已更新：按全国标准"
        });
    }
    if let Some(e) = &report.scale_thresholds_error {
        out.line(format!("  规模养殖标准未能更新（下次同步再试）：{e}"));
    }
    Ok(())
}

/// `attachments`: the photos and signatures on this device with their state.
pub(crate) fn attachments(cli: &Cli, out: &mut Out) -> Result<(), CliError> {
    let store = open(cli)?;
    let list = store.attachments()?;
    out.value(json!(list
        .iter()
        .map(|a| json!({
            "reference": a.reference.to_string(),
            "sha256": a.reference.sha256,
            "size": a.reference.size,
            "mime": a.reference.mime,
            "state": a.state.as_str(),
            "server_offset": a.server_offset,
            "referenced": a.referenced,
            "created_at_ms": a.created_at_ms,
        }))
        .collect::<Vec<_>>()));
    let count = |s: AttachmentState| list.iter().filter(|a| a.state == s).count();
    out.line(format!(
        "照片 {} 张：待上传 {}，已上传 {}，已下载 {}",
        list.len(),
        count(AttachmentState::Pending),
        count(AttachmentState::Uploaded),
        count(AttachmentState::Cached)
    ));
    for a in &list {
        let state = match a.state {
            AttachmentState::Pending if a.server_offset > 0 => {
                format!("待上传（服务器已收 {} 字节）", a.server_offset)
            }
            AttachmentState::Pending => "待上传".to_string(),
            AttachmentState::Uploaded => "已上传".to_string(),
            AttachmentState::Cached => "已下载".to_string(),
        };
        out.line(format!(
            "  {}  {}  {} 字节  {}",
            &a.reference.sha256[..12],
            a.reference.mime,
            a.reference.size,
            state
        ));
    }
    Ok(())
}
