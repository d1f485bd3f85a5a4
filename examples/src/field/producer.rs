//! `producer` commands: add, edit, list, search, show, review, confirm, unconfirmed,
//! resolve.

use std::collections::HashSet;

use gridsync_core::model::{
    GeoPoint, LivestockCount, Producer, ProducerStatus, ResponsibilityLetter,
};
use gridsync_core::now_ms;
use gridsync_core::store::{LikelyDuplicate, ProducerSort, ProducerSummary, Store};
use serde_json::json;

use super::args::{Cli, ProducerCmd, ProducerFields};
use super::{default_grid, open, parse, render, CliError, Out};

fn bad(field: &str, problem: impl Into<String>) -> CliError {
    CliError::Input {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Runs a `producer` subcommand.
pub(crate) fn run(cli: &Cli, cmd: &ProducerCmd, out: &mut Out) -> Result<(), CliError> {
    match cmd {
        ProducerCmd::Add { fields, anyway } => add(cli, fields, *anyway, out),
        ProducerCmd::Edit {
            id,
            fields,
            anyway,
            close,
            reopen,
        } => edit(cli, id, fields, *anyway, *close, *reopen, out),
        ProducerCmd::List {
            grid,
            sort,
            limit,
            offset,
        } => list(cli, grid.as_deref(), sort, *limit, *offset, out),
        ProducerCmd::Search { query, limit } => {
            let store = open(cli)?;
            let rows = store.search_producers(query, *limit)?;
            print_rows(out, &format!("搜索“{query}”"), &rows);
            Ok(())
        }
        ProducerCmd::Show { id } => show(cli, id, out),
        ProducerCmd::Review { id, action, reason } => {
            let action = parse::review_action(action, reason.as_deref())?;
            let store = open(cli)?;
            let p = store.review_producer(id, action)?;
            out.value(json!({
                "id": p.id,
                "review_state": p.review.state,
                "effective_review_state": p.effective_review_state(),
                "review": p.review,
            }));
            out.line(format!(
                "{}：审核状态 {}",
                p.name,
                render::review_state(p.effective_review_state())
            ));
            Ok(())
        }
        ProducerCmd::Confirm { id, closed, year } => {
            let store = open(cli)?;
            let year = year.unwrap_or_else(this_year);
            let p = store.confirm_producer(id, year, !*closed)?;
            out.value(json!({
                "id": p.id,
                "year": year,
                "status": p.status,
                "effective_review_state": p.effective_review_state(),
                "confirmations": p.confirmations,
            }));
            out.line(format!(
                "{}：已完成 {year} 年度确认（{}），审核状态 {}",
                p.name,
                if *closed {
                    "已停产注销"
                } else {
                    "仍在经营"
                },
                render::review_state(p.effective_review_state())
            ));
            Ok(())
        }
        ProducerCmd::Unconfirmed { grid, year } => {
            let store = open(cli)?;
            let grid = default_grid(&store, grid.as_deref())?;
            let year = year.unwrap_or_else(this_year);
            let rows = store.unconfirmed_producers(&grid, year)?;
            print_rows(
                out,
                &format!("网格 {grid} 尚未完成 {year} 年度确认的生产主体"),
                &rows,
            );
            Ok(())
        }
        ProducerCmd::Resolve { id, path } => {
            let store = open(cli)?;
            store.resolve_conflict(id, path)?;
            let left = store.conflicts(id)?;
            out.value(json!({ "id": id, "resolved": path, "conflicts": left }));
            out.line(format!(
                "已保留字段 {path} 的当前值，剩余冲突 {} 处",
                left.len()
            ));
            Ok(())
        }
    }
}

/// This year in China time (by the clock the store dates records with).
fn this_year() -> i32 {
    gridsync_core::dates::china_year(now_ms())
}

/// Applies the fields given on the command line to a producer.
fn apply_fields(p: &mut Producer, f: &ProducerFields) -> Result<(), CliError> {
    if let Some(v) = &f.name {
        p.name = v.clone();
    }
    if let Some(v) = &f.producer_type {
        p.producer_type = parse::producer_type(v)?;
    }
    if let Some(v) = &f.owner {
        p.owner = v.clone();
    }
    if let Some(v) = &f.phone {
        p.phone = v.clone();
    }
    if let Some(v) = &f.grid {
        p.grid = v.clone();
    }
    if let Some(v) = &f.credit_code {
        p.credit_code = (!v.is_empty()).then(|| v.clone());
    }
    if let Some(v) = &f.id_number {
        p.id_number = (!v.is_empty()).then(|| v.to_ascii_uppercase());
    }
    if let Some(v) = &f.address {
        p.address = v.clone();
    }
    if let (Some(lat), Some(lon)) = (f.lat, f.lon) {
        p.location = Some(GeoPoint { lat, lon });
    }
    for prod in &f.products {
        if !p.products.contains(prod) {
            p.products.push(prod.clone());
        }
    }
    p.products.retain(|x| !f.remove_products.contains(x));
    if let Some(a) = f.crop_area_mu {
        p.scale.crop_area_mu = Some(a);
    }
    for l in &f.livestock {
        let (species, on_hand, sold) = parse::livestock(l)?;
        p.scale.livestock.insert(
            species,
            LivestockCount {
                on_hand,
                sold_per_year: sold,
            },
        );
    }
    for c in &f.certifications {
        let c = parse::certification(c)?;
        if !p.certifications.contains(&c) {
            p.certifications.push(c);
        }
    }
    if let Some(v) = &f.issues_certificates {
        p.issues_compliance_certificates = parse::yes_no("issues-certificates", v)?;
    }
    if let Some(d) = &f.letter_signed {
        p.responsibility_letter = Some(ResponsibilityLetter {
            signed_on: d.clone(),
        });
    }
    if let Some(r) = &f.risk {
        p.risk = parse::risk(r)?;
    }
    Ok(())
}

/// The likely duplicates as JSON: stable reason ids beside the Chinese labels.
fn duplicates_json(found: &[LikelyDuplicate]) -> serde_json::Value {
    json!(found
        .iter()
        .map(|d| json!({
            "id": d.id,
            "name": d.name,
            "grid": d.grid,
            "grid_name": d.grid_name,
            "reasons": d.reasons.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "reasons_zh": d.reasons.iter().map(|r| r.label_zh()).collect::<Vec<_>>(),
            "score": d.score,
        }))
        .collect::<Vec<_>>())
}

/// One line per likely duplicate: name, grid, reasons, likelihood, id.
fn duplicate_lines(out: &mut Out, found: &[LikelyDuplicate]) {
    for (i, d) in found.iter().enumerate() {
        let reasons: Vec<&str> = d.reasons.iter().map(|r| r.label_zh()).collect();
        let grid = if d.grid_name.is_empty() {
            d.grid.clone()
        } else {
            format!("{}（{}）", d.grid_name, d.grid)
        };
        out.line(format!(
            "  {}. {}  {grid}  {}  可能性 {}%  [{}]",
            i + 1,
            d.name,
            reasons.join("；"),
            d.score,
            d.id
        ));
    }
}

/// Refuses to save when `found` is not empty and the person did not say `--anyway`:
/// lists the matches (stdout) and fails with exit code 3.
fn stop_for_duplicates(
    out: &mut Out,
    found: &[LikelyDuplicate],
    anyway: bool,
) -> Result<(), CliError> {
    if found.is_empty() || anyway {
        return Ok(());
    }
    out.value(json!({ "saved": false, "likely_duplicates": duplicates_json(found) }));
    out.line(format!(
        "可能重复：本机已有 {} 个相近的生产主体，未保存。",
        found.len()
    ));
    duplicate_lines(out, found);
    out.line("核实不是同一主体后，加 --anyway 再次保存。");
    Err(CliError::LikelyDuplicates { count: found.len() })
}

/// After a save with `--anyway`: the likely duplicates kept in mind.
fn noted_duplicates(out: &mut Out, found: &[LikelyDuplicate]) {
    if !found.is_empty() {
        out.line(format!(
            "注意：本机另有 {} 个可能重复的生产主体（已确认仍要保存）：",
            found.len()
        ));
        duplicate_lines(out, found);
    }
}

fn add(cli: &Cli, f: &ProducerFields, anyway: bool, out: &mut Out) -> Result<(), CliError> {
    let need = |v: &Option<String>, field: &str| -> Result<String, CliError> {
        v.clone()
            .ok_or_else(|| bad(field, "is required to register a producer"))
    };
    let name = need(&f.name, "name")?;
    let ty = parse::producer_type(&need(&f.producer_type, "type")?)?;
    let owner = need(&f.owner, "owner")?;
    let phone = need(&f.phone, "phone")?;
    let store = open(cli)?;
    let grid = default_grid(&store, f.grid.as_deref())?;
    let mut p = Producer::new(name, ty, owner, phone, grid, "", now_ms());
    apply_fields(&mut p, f)?;
    let found = store.likely_duplicates(&p)?;
    stop_for_duplicates(out, &found, anyway)?;
    let p = store.create_producer(p)?;
    out.value(json!({
        "id": p.id,
        "producer": p,
        "likely_duplicates": duplicates_json(&found),
    }));
    out.line(format!(
        "已登记：{}（{}）",
        p.name,
        p.producer_type.label_zh()
    ));
    out.line(format!("编号：{}", p.id));
    noted_duplicates(out, &found);
    Ok(())
}

fn edit(
    cli: &Cli,
    id: &str,
    f: &ProducerFields,
    anyway: bool,
    close: bool,
    reopen: bool,
    out: &mut Out,
) -> Result<(), CliError> {
    let store = open(cli)?;
    let mut p = store.producer(id)?;
    // Matches the stored entry already had were seen before (or are the server's to
    // mark); only those the edit brings up stop it.
    let before: HashSet<String> = store
        .likely_duplicates(&p)?
        .into_iter()
        .map(|d| d.id)
        .collect();
    apply_fields(&mut p, f)?;
    if close {
        p.status = ProducerStatus::Closed;
    }
    if reopen {
        p.status = ProducerStatus::Active;
    }
    let mut found = store.likely_duplicates(&p)?;
    found.retain(|d| !before.contains(&d.id));
    stop_for_duplicates(out, &found, anyway)?;
    let p = store.update_producer(p)?;
    out.value(json!({
        "id": p.id,
        "producer": p,
        "effective_review_state": p.effective_review_state(),
        "likely_duplicates": duplicates_json(&found),
    }));
    out.line(format!(
        "已保存：{}，审核状态 {}",
        p.name,
        render::review_state(p.effective_review_state())
    ));
    noted_duplicates(out, &found);
    Ok(())
}

fn list(
    cli: &Cli,
    grid: Option<&str>,
    sort: &str,
    limit: u32,
    offset: u32,
    out: &mut Out,
) -> Result<(), CliError> {
    let sort = match sort {
        "name" => ProducerSort::Name,
        "updated" => ProducerSort::RecentlyUpdated,
        "last-visit" | "last_visit" => ProducerSort::LastVisit,
        other => {
            return Err(bad(
                "sort",
                format!("'{other}' is not name, updated or last-visit"),
            ))
        }
    };
    let store = open(cli)?;
    let grid = default_grid(&store, grid)?;
    let rows = store.producers_in_grid(&grid, sort, limit, offset)?;
    print_rows(out, &format!("网格 {grid} 的生产主体"), &rows);
    Ok(())
}

fn print_rows(out: &mut Out, title: &str, rows: &[ProducerSummary]) {
    out.value(json!(rows));
    out.line(format!("{title}：{} 个", rows.len()));
    for r in rows {
        let ty = parse::producer_type(&r.producer_type)
            .map(|t| t.label_zh())
            .unwrap_or("未知");
        out.line(format!(
            "  {}  {}  {}  {}  {}  {}  [{}]",
            r.name,
            ty,
            r.owner,
            r.phone,
            render::status_str(&r.status),
            render::review_state_str(&r.review_state),
            r.id
        ));
    }
}

fn show(cli: &Cli, id: &str, out: &mut Out) -> Result<(), CliError> {
    let store = open(cli)?;
    let p = store.producer(id)?;
    let conflicts = store.conflicts(id)?;
    let history = store.history(id)?;
    let visits = store.visit_history(id)?;
    // The thresholds of the device's league as last fetched at sync (national otherwise).
    let thresholds = store.scale_thresholds()?;
    let scale = gridsync_core::scale::assess(&p, &thresholds);
    out.value(json!({
        "producer": p,
        "effective_review_state": p.effective_review_state(),
        "scale_assessment": {
            "is_scale_farm": scale.is_scale_farm,
            "type_mismatch": scale.type_mismatch,
            "species_over": scale.species_over.iter().map(|o| o.species).collect::<Vec<_>>(),
        },
        "conflicts": conflicts,
        "history": history,
        "visits": visits,
    }));
    if out.json() {
        return Ok(());
    }
    describe(&store, &p, out);
    if conflicts.is_empty() {
        out.line("冲突：无");
    } else {
        out.line(format!(
            "冲突：{} 处（同时修改，已取其一，另一值保留可查）",
            conflicts.len()
        ));
        for c in &conflicts {
            let others: Vec<String> = c.others.iter().map(|o| o.to_string()).collect();
            out.line(format!(
                "  {}（{}）：当前 {}；另有 {}",
                c.path,
                render::field_label(&c.path),
                c.winner,
                others.join("、")
            ));
        }
    }
    out.line("审核记录：");
    // Review steps and yearly confirmations (年度确认), by time.
    let mut steps: Vec<(i64, String)> = p
        .review
        .history
        .iter()
        .map(|e| {
            let reason = match &e.action {
                gridsync_core::model::ReviewAction::Return(r) => format!("，理由：{r}"),
                _ => String::new(),
            };
            let what = format!("{}{reason}", render::review_action(e.action.as_str()));
            (e.at_ms, format!("{}  {what}", e.by))
        })
        .collect();
    steps.extend(p.confirmations.iter().map(|c| {
        let found = if c.operating {
            "仍在经营"
        } else {
            "已停产注销"
        };
        (c.at_ms, format!("{}  {} 年度确认：{found}", c.by, c.year))
    }));
    steps.sort_by_key(|(at, _)| *at);
    for (at, line) in &steps {
        out.line(format!("  {}  {line}", render::datetime(*at)));
    }
    out.line(format!("修改历史：{} 次", history.len()));
    for h in &history {
        out.line(format!(
            "  {}  {}  {} 项改动",
            render::datetime(h.at_ms),
            h.by,
            h.ops
        ));
    }
    out.line(format!("巡查记录：{} 次", visits.len()));
    for v in &visits {
        out.line(format!(
            "  {}  {}  {}{}  [{}]",
            render::datetime(v.started_at_ms),
            v.inspector,
            render::visit_status_str(&v.status),
            if v.rectification_open {
                "，整改未完成"
            } else {
                ""
            },
            v.id
        ));
    }
    Ok(())
}

fn describe(store: &Store, p: &Producer, out: &mut Out) {
    let grid_name = store
        .grids()
        .ok()
        .and_then(|gs| gs.into_iter().find(|g| g.code == p.grid))
        .map(|g| g.name)
        .unwrap_or_default();
    out.line(format!("名称：{}", p.name));
    out.line(format!("编号：{}", p.id));
    out.line(format!("主体类型：{}", p.producer_type.label_zh()));
    if let Some(c) = &p.credit_code {
        out.line(format!("统一社会信用代码：{c}"));
    }
    if let Some(i) = &p.id_number {
        out.line(format!("身份证号：{i}"));
    }
    out.line(format!("法人/户主：{}", p.owner));
    out.line(format!("联系电话：{}", p.phone));
    out.line(format!("所属网格：{} {grid_name}", p.grid));
    if !p.address.is_empty() {
        out.line(format!("地址：{}", p.address));
    }
    if let Some(l) = &p.location {
        out.line(format!("坐标：{:.6}, {:.6}", l.lat, l.lon));
    }
    if !p.products.is_empty() {
        out.line(format!("主要产品：{}", p.products.join("、")));
    }
    if let Some(a) = p.scale.crop_area_mu {
        out.line(format!("种植面积：{a} 亩"));
    }
    for (s, c) in &p.scale.livestock {
        let on = c.on_hand.map_or("-".to_string(), |n| n.to_string());
        let sold = c.sold_per_year.map_or("-".to_string(), |n| n.to_string());
        out.line(format!("{}：存栏 {on} 头，年出栏 {sold} 头", s.label_zh()));
    }
    let league = store.league_scale().ok().flatten();
    let thresholds = store.scale_thresholds().unwrap_or_default();
    let basis = match &league {
        Some(l) if !l.overrides.0.is_empty() => "盟市标准",
        _ => "全国标准",
    };
    out.line(render::scale(p, &thresholds, basis));
    if !p.certifications.is_empty() {
        let c: Vec<&str> = p.certifications.iter().map(|c| c.as_str()).collect();
        out.line(format!("认证：{}", c.join("、")));
    }
    out.line(format!(
        "开具承诺达标合格证：{}",
        if p.issues_compliance_certificates {
            "是"
        } else {
            "否"
        }
    ));
    if let Some(l) = &p.responsibility_letter {
        out.line(format!("责任书签订：{}", l.signed_on));
    }
    out.line(format!("风险等级：{}", render::risk(p.risk)));
    out.line(format!("状态：{}", render::status(p.status)));
    let effective = p.effective_review_state();
    let stale = if effective != p.review.state {
        "（审核后有改动，需重新审核）"
    } else {
        ""
    };
    out.line(format!(
        "审核状态：{}{stale}",
        render::review_state(effective)
    ));
    if let Some(r) = &p.review.return_reason {
        out.line(format!("退回理由：{r}"));
    }
}
