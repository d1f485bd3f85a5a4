//! `visit` commands: record, show, complete, review, list.

use gridsync_core::model::{
    Acknowledgement, Answer, ChecklistTemplate, Finding, GeoPoint, RapidTest, Rectification,
    TestMethod, Visit, VisitStatus, DEFAULT_TEMPLATE_ID,
};
use gridsync_core::{new_id, now_ms, Error};
use serde_json::json;

use super::args::{Cli, RecordArgs, VisitCmd};
use super::{open, parse, render, CliError, Out};

fn bad(field: &str, problem: impl Into<String>) -> CliError {
    CliError::Input {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Runs a `visit` subcommand.
pub(crate) fn run(cli: &Cli, cmd: &VisitCmd, out: &mut Out) -> Result<(), CliError> {
    match cmd {
        VisitCmd::Record(a) => record(cli, a, out),
        VisitCmd::Show { id } => show(cli, id, out),
        VisitCmd::Complete { id } => {
            let store = open(cli)?;
            let v = store.complete_visit(id)?;
            out.value(json!({ "id": v.id, "status": v.status, "visit": v }));
            out.line(format!("巡查记录已完成 [{}]", v.id));
            Ok(())
        }
        VisitCmd::Review { id, comment } => {
            let store = open(cli)?;
            let v = store.review_visit(id, comment)?;
            out.value(json!({ "id": v.id, "review": v.review }));
            out.line(format!("已添加审阅意见 [{}]", v.id));
            Ok(())
        }
        VisitCmd::List { producer } => {
            let store = open(cli)?;
            let p = store.producer(producer)?;
            let rows = store.visit_history(producer)?;
            out.value(json!(rows));
            out.line(format!("{} 的巡查记录：{} 次", p.name, rows.len()));
            for v in &rows {
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
    }
}

fn template_item_ids(t: &ChecklistTemplate) -> String {
    t.items
        .iter()
        .map(|i| i.id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn record(cli: &Cli, a: &RecordArgs, out: &mut Out) -> Result<(), CliError> {
    let severity = parse::severity(&a.severity)?;
    let tests = a
        .rapid_tests
        .iter()
        .map(|t| parse::rapid_test(t))
        .collect::<Result<Vec<_>, _>>()?;
    let store = open(cli)?;
    let me = store.actor()?;
    let now = now_ms();
    let mut v = match (&a.visit, &a.producer) {
        (Some(id), _) => store.visit(id)?,
        (None, Some(pid)) => {
            let p = store.producer(pid)?;
            let tpl = store.template(DEFAULT_TEMPLATE_ID, 1)?;
            Visit::new(&p.id, &p.grid, &me.person_id, &tpl, now)
        }
        (None, None) => return Err(bad("producer", "give --producer or --visit")),
    };
    let tpl = store.template(&v.template_id, v.template_version)?;
    for raw in &a.answers {
        let (id, value) = parse::key_value("answer", raw)?;
        let item = tpl.item(id).ok_or_else(|| {
            bad(
                &format!("answers.{id}"),
                format!(
                    "is not an item of the checklist (items: {})",
                    template_item_ids(&tpl)
                ),
            )
        })?;
        let value = parse::answer(item, value)?;
        let note = v.answers.get(id).and_then(|x| x.note.clone());
        v.answers.insert(id.to_string(), Answer { value, note });
    }
    for raw in &a.notes {
        let (id, text) = parse::key_value("note", raw)?;
        let ans = v.answers.get_mut(id).ok_or_else(|| {
            bad(
                &format!("answers.{id}.note"),
                "answer the item before adding a remark",
            )
        })?;
        ans.note = Some(text.to_string());
    }
    for text in &a.findings {
        v.findings.push(Finding {
            id: new_id(),
            item_id: None,
            description: text.clone(),
            severity,
            photos: Vec::new(),
            recorded_by: me.person_id.clone(),
            recorded_at_ms: now,
        });
    }
    if !a.photos.is_empty() {
        let mut refs = Vec::new();
        for path in &a.photos {
            refs.push(store.add_attachment_file(path, None)?.to_string());
        }
        if let Some(f) = v.findings.last_mut() {
            f.photos.extend(refs);
        }
    }
    for t in tests {
        v.rapid_tests.push(RapidTest {
            id: new_id(),
            sample: t.sample,
            item: t.item,
            method: t.method.unwrap_or(TestMethod::Other),
            kit: t.kit,
            value: t.value,
            unit: t.unit,
            verdict: t.verdict.unwrap_or(gridsync_core::model::Verdict::Suspect),
            operator: me.person_id.clone(),
            tested_at_ms: now,
        });
    }
    if let Some(r) = &a.rectify {
        if let [deadline, notice] = r.as_slice() {
            v.rectification = Some(Rectification {
                required: true,
                deadline: deadline.clone(),
                notice_number: notice.clone(),
                resolved_at_ms: None,
            });
        }
    }
    if let Some(orig) = &a.follow_up_of {
        if store.visit(orig)?.producer_id != v.producer_id {
            return Err(bad("follow_up_of", "is a visit to another producer"));
        }
        v.follow_up_of = Some(orig.clone());
    }
    if let Some(name) = &a.signed_by {
        v.acknowledgement = Some(Acknowledgement {
            signed_by: name.clone(),
            signature_photo: None,
            at_ms: now,
        });
    }
    if let (Some(lat), Some(lon)) = (a.lat, a.lon) {
        v.location = Some(GeoPoint { lat, lon });
    }
    if a.complete {
        // One write: either the whole completed visit is stored or nothing is.
        v.status = VisitStatus::Completed;
        v.ended_at_ms = Some(now.max(v.started_at_ms));
    }
    let v = store.save_visit(v)?;
    if let Some(orig) = &a.follow_up_of {
        store.add_follow_up(orig, &v.id, a.resolved)?;
    }
    let missing = missing_required(&store, &tpl, &v);
    out.value(json!({
        "id": v.id,
        "status": v.status,
        "missing_required": missing,
        "visit": v,
    }));
    out.line(format!(
        "已保存巡查记录 [{}]，状态：{}",
        v.id,
        render::visit_status(v.status)
    ));
    if !missing.is_empty() {
        out.line(format!("尚未回答的必填项：{}", missing.join("、")));
    }
    if let Some(r) = &v.rectification {
        out.line(format!(
            "已下达整改通知 {}，期限 {}",
            r.notice_number, r.deadline
        ));
    }
    Ok(())
}

fn missing_required(
    store: &gridsync_core::store::Store,
    tpl: &ChecklistTemplate,
    v: &Visit,
) -> Vec<String> {
    let pt = store.producer(&v.producer_id).ok().map(|p| p.producer_type);
    tpl.items
        .iter()
        .filter(|i| i.required && pt.is_none_or(|t| i.applies(t)))
        .filter(|i| !v.answers.contains_key(&i.id))
        .map(|i| i.id.clone())
        .collect()
}

fn show(cli: &Cli, id: &str, out: &mut Out) -> Result<(), CliError> {
    let store = open(cli)?;
    let v = store.visit(id)?;
    let conflicts = store.conflicts(id)?;
    let history = store.history(id)?;
    let tpl = store.template(&v.template_id, v.template_version)?;
    let producer = match store.producer(&v.producer_id) {
        Ok(p) => Some(p),
        Err(Error::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    out.value(json!({
        "visit": v,
        "producer_name": producer.as_ref().map(|p| p.name.clone()),
        "conflicts": conflicts,
        "history": history,
    }));
    if out.json() {
        return Ok(());
    }
    out.line(format!("巡查记录 [{}]", v.id));
    out.line(format!(
        "生产主体：{} [{}]",
        producer
            .as_ref()
            .map_or("（本机没有）", |p| p.name.as_str()),
        v.producer_id
    ));
    out.line(format!("巡查人：{}", v.inspector));
    out.line(format!("检查表：{}（第 {} 版）", tpl.name_zh, tpl.version));
    out.line(format!("开始：{}", render::datetime(v.started_at_ms)));
    if let Some(e) = v.ended_at_ms {
        out.line(format!("结束：{}", render::datetime(e)));
    }
    out.line(format!("状态：{}", render::visit_status(v.status)));
    out.line("检查项目：");
    let ptype = producer.as_ref().map(|p| p.producer_type);
    for item in &tpl.items {
        let answer = v.answers.get(&item.id);
        let missing = if ptype.is_some_and(|t| !item.applies(t)) {
            "（不适用此类主体）"
        } else if item.required {
            "（未回答，必填）"
        } else {
            "（未回答）"
        };
        let text = answer.map_or(missing.to_string(), |a| render::answer(&a.value));
        let note = answer
            .and_then(|a| a.note.as_deref())
            .map(|n| format!("（备注：{n}）"))
            .unwrap_or_default();
        out.line(format!("  {}：{text}{note}", item.text_zh));
    }
    for f in &v.findings {
        out.line(format!(
            "发现问题：{}（{}）",
            f.description,
            render::severity(f.severity)
        ));
    }
    for t in &v.rapid_tests {
        let value = match (t.value, &t.unit) {
            (Some(x), Some(u)) => format!("，结果 {x}{u}"),
            (Some(x), None) => format!("，结果 {x}"),
            _ => String::new(),
        };
        out.line(format!(
            "快速检测：{} {}（{}）{value}：{}",
            t.sample,
            t.item,
            render::method(t.method),
            render::verdict(t.verdict)
        ));
    }
    if let Some(r) = &v.rectification {
        let state = match r.resolved_at_ms {
            Some(t) => format!("已于 {} 整改完成", render::date(t)),
            None => "未完成".into(),
        };
        out.line(format!(
            "整改通知：{}，期限 {}，{state}",
            r.notice_number, r.deadline
        ));
    }
    if let Some(f) = &v.follow_up_of {
        out.line(format!("复查：针对巡查 [{f}]"));
    }
    if let Some(f) = &v.follow_up_visit {
        out.line(format!("复查记录：[{f}]"));
    }
    if let Some(a) = &v.acknowledgement {
        out.line(format!("签字确认：{}", a.signed_by));
    }
    if let Some(r) = &v.review {
        out.line(format!("审阅：{}：{}", r.by, r.comment));
    }
    if !conflicts.is_empty() {
        out.line(format!("冲突：{} 处", conflicts.len()));
        for c in &conflicts {
            out.line(format!("  {}：当前 {}", c.path, c.winner));
        }
    }
    out.line(format!("修改历史：{} 次", history.len()));
    Ok(())
}
