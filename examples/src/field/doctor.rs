//! `doctor`: checks the device's database and repairs what it can.
//!
//! SQLite's own check (`integrity_check`, or `quick_check` with `--quick`), every record's
//! document loaded (a damaged one is set aside and fetched whole from the server at the
//! next sync), and the query tables (producer and visit lists) compared with the
//! documents; when something is wrong the query tables are rebuilt from the documents.

use gridsync_core::store::{IntegrityLevel, Store};
use gridsync_core::Error;
use serde_json::json;

use super::args::{Cli, DoctorArgs};
use super::{check_folder, CliError, Out};

/// Problem lines shown in text mode (JSON has them all).
const SHOWN: usize = 10;

pub(crate) fn run(cli: &Cli, a: &DoctorArgs, out: &mut Out) -> Result<(), CliError> {
    check_folder(cli)?;
    // Without the background check at open: this command reports what it finds itself.
    let store = Store::open_unchecked(&cli.db)?;
    let level = if a.quick {
        IntegrityLevel::Quick
    } else {
        IntegrityLevel::Full
    };
    let mut report = store.check_integrity(level, !a.no_repair)?;
    let mut rebuilt_on_demand = None;
    if a.rebuild && !report.rebuilt {
        rebuilt_on_demand = Some(store.rebuild_query_tables()?);
        let after = store.check_integrity(level, false)?;
        report.remaining = after.sqlite.into_iter().chain(after.tables).collect();
        report.rebuilt = true;
    }
    let corrupt = store.corrupt_records()?;
    let ok = report.is_ok_now();
    out.value(json!({
        "ok": ok,
        "report": report,
        "rebuilt_on_demand": rebuilt_on_demand,
        "corrupt": corrupt.iter().map(|(id, d)| json!({"id": id, "detail": d})).collect::<Vec<_>>(),
    }));
    let what = if a.quick {
        "快速检查"
    } else {
        "完整检查"
    };
    out.line(format!(
        "数据库{what}：用时 {} 毫秒，核对记录 {} 条",
        report.elapsed_ms, report.documents_checked
    ));
    if report.found_problems() {
        out.line(format!(
            "  发现问题：数据库结构 {} 项，查询表与记录不符 {} 项",
            report.sqlite.len(),
            report.tables.len()
        ));
        for p in report.sqlite.iter().chain(&report.tables).take(SHOWN) {
            out.line(format!("    {}", p.replace('\n', " ")));
        }
    } else {
        out.line("  数据库结构与查询表均正常");
    }
    if report.rebuilt {
        out.line(format!(
            "  已从记录重建查询表{}",
            if report.vacuumed {
                "，并整理了数据库文件"
            } else {
                ""
            }
        ));
    }
    for (id, detail) in &report.corrupt_found {
        out.line(format!(
            "  损坏的记录：[{id}] {detail}（已隔离，下次同步时从服务器取回完整副本）"
        ));
    }
    if !corrupt.is_empty() {
        out.line(format!(
            "  待从服务器取回的损坏记录共 {} 条，请尽快同步",
            corrupt.len()
        ));
    }
    if !ok {
        return Err(CliError::Core(Error::Document(format!(
            "{} database problems remain after the repair: {}",
            report.remaining.len(),
            report
                .remaining
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ))));
    }
    out.line("  检查完成");
    Ok(())
}
