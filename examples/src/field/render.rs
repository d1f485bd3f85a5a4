//! Chinese labels and formatting for what field staff read.

use gridsync_core::model::{
    AnswerValue, ProducerStatus, ReviewState, RiskLevel, Severity, TestMethod, Verdict,
    VisitStatus, YesNoNa,
};

/// China Standard Time offset in milliseconds (UTC+8, no daylight saving).
const CST_OFFSET_MS: i64 = 8 * 3_600_000;

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn month_days(y: i64, m: u32) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Calendar date of a day number counted from 1970-01-01.
fn date_of_day(mut day: i64) -> (i64, u32, i64) {
    let mut y = 1970;
    while day < 0 {
        y -= 1;
        day += if is_leap(y) { 366 } else { 365 };
    }
    loop {
        let len = if is_leap(y) { 366 } else { 365 };
        if day < len {
            break;
        }
        day -= len;
        y += 1;
    }
    let mut m = 1;
    while day >= month_days(y, m) {
        day -= month_days(y, m);
        m += 1;
    }
    (y, m, day + 1)
}

/// `YYYY-MM-DD` of a time in China Standard Time.
pub fn date(ms: i64) -> String {
    let (y, m, d) = date_of_day((ms + CST_OFFSET_MS).div_euclid(86_400_000));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD HH:MM` of a time in China Standard Time.
pub fn datetime(ms: i64) -> String {
    let local = ms + CST_OFFSET_MS;
    let minutes = local.div_euclid(60_000).rem_euclid(24 * 60);
    format!("{} {:02}:{:02}", date(ms), minutes / 60, minutes % 60)
}

/// Review state in Chinese.
pub fn review_state(s: ReviewState) -> &'static str {
    match s {
        ReviewState::Draft => "草稿",
        ReviewState::Submitted => "待乡镇审核",
        ReviewState::TownshipApproved => "乡镇已审核，待旗县审核",
        ReviewState::CountyApproved => "旗县已审核（已入名录）",
        ReviewState::Returned => "已退回",
    }
}

/// Review state in Chinese from its stable id.
pub fn review_state_str(s: &str) -> &'static str {
    ReviewState::parse(s).map_or("未知", review_state)
}

/// Review action in Chinese.
pub fn review_action(a: &str) -> &'static str {
    match a {
        "submit" => "提交审核",
        "approve_township" => "乡镇审核通过",
        "approve_county" => "旗县审核通过",
        "return" => "退回",
        "edited_after_approval" => "审核后修改，重新审核",
        "edited_after_return" => "退回后修改，回到草稿",
        _ => "其他",
    }
}

/// Producer status in Chinese.
pub fn status(s: ProducerStatus) -> &'static str {
    match s {
        ProducerStatus::Active => "在营",
        ProducerStatus::Closed => "已停产/注销",
    }
}

/// Producer status from its stable id.
pub fn status_str(s: &str) -> &'static str {
    match s {
        "active" => "在营",
        "closed" => "已停产/注销",
        _ => "未知",
    }
}

/// Risk grade in Chinese.
pub fn risk(r: RiskLevel) -> &'static str {
    match r {
        RiskLevel::Low => "低",
        RiskLevel::Medium => "中",
        RiskLevel::High => "高",
    }
}

/// Visit status in Chinese.
pub fn visit_status(s: VisitStatus) -> &'static str {
    match s {
        VisitStatus::Draft => "记录中",
        VisitStatus::Completed => "已完成",
    }
}

/// Visit status from its stable id.
pub fn visit_status_str(s: &str) -> &'static str {
    match s {
        "draft" => "记录中",
        "completed" => "已完成",
        _ => "未知",
    }
}

/// Finding severity in Chinese.
pub fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Minor => "一般（现场整改）",
        Severity::Major => "较重（下达整改通知）",
        Severity::Serious => "严重（移交综合执法）",
    }
}

/// Rapid-test method in Chinese.
pub fn method(m: TestMethod) -> &'static str {
    match m {
        TestMethod::EnzymeInhibition => "酶抑制法",
        TestMethod::ColloidalGold => "胶体金试纸条",
        TestMethod::Other => "其他",
    }
}

/// Verdict in Chinese.
pub fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "合格",
        Verdict::Fail => "不合格",
        Verdict::Suspect => "疑似",
    }
}

/// An answer value as field staff read it.
pub fn answer(v: &AnswerValue) -> String {
    match v {
        AnswerValue::YesNo(YesNoNa::Yes) => "是".into(),
        AnswerValue::YesNo(YesNoNa::No) => "否".into(),
        AnswerValue::YesNo(YesNoNa::NotApplicable) => "不适用".into(),
        AnswerValue::Number(n) => n.to_string(),
        AnswerValue::Text(t) => t.clone(),
        AnswerValue::Choice(c) => c.clone(),
        AnswerValue::Choices(cs) | AnswerValue::Photos(cs) => cs.join("、"),
    }
}

/// Chinese label of a record field path (the field id stays beside it).
pub fn field_label(field: &str) -> &'static str {
    let head = field.split(['.', '[']).next().unwrap_or(field);
    match head {
        "name" => "名称",
        "type" | "producer_type" => "主体类型",
        "owner" => "法人/户主",
        "phone" => "联系电话",
        "grid" => "所属网格",
        "credit_code" => "统一社会信用代码",
        "id_number" => "身份证号",
        "address" => "地址",
        "location" | "lat" | "lon" => "坐标",
        "products" | "product" => "主要产品",
        "scale" | "livestock" | "crop_area_mu" => "生产规模",
        "certifications" | "cert" => "认证",
        "issues_compliance_certificates" | "issues-certificates" => "开具合格证",
        "responsibility_letter" | "letter-signed" => "责任书",
        "risk" => "风险等级",
        "status" => "状态",
        "review" | "reason" | "action" => "审核",
        "answers" => "巡查项目",
        "findings" | "severity" => "发现问题",
        "rapid_tests" | "rapid-test" => "快速检测",
        "rectification" | "rectify" => "整改",
        "follow_up_visit" | "follow_up_of" => "复查",
        "role" => "角色",
        "days" => "巡查间隔天数",
        "ended_at_ms" | "started_at_ms" => "时间",
        "acknowledgement" => "签字确认",
        _ => "",
    }
}

/// The livestock scale line of a producer, assessed against `thresholds` (the store's: its
/// league's as last fetched at sync, or the national MARA table); `basis` names them
/// (全国标准 or 盟市标准).
pub fn scale(
    p: &gridsync_core::model::Producer,
    thresholds: &gridsync_core::scale::ScaleThresholds,
    basis: &str,
) -> String {
    let a = gridsync_core::scale::assess(p, thresholds);
    if !a.is_scale_farm {
        return format!("规模养殖：未达规模养殖标准（{basis}）");
    }
    let over: Vec<String> = a
        .species_over
        .iter()
        .map(|o| {
            format!(
                "{} {} {}≥{}",
                o.species.label_zh(),
                o.head,
                o.threshold.measure.label_zh(),
                o.threshold.head
            )
        })
        .collect();
    let mismatch = if a.type_mismatch {
        "；主体类型不符，请核实"
    } else {
        ""
    };
    format!("规模养殖：规模养殖场（{}）{mismatch}", over.join("、"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_china_standard_time() {
        assert_eq!(date(0), "1970-01-01");
        // 2024-02-29 00:30 CST is 2024-02-28 16:30 UTC.
        assert_eq!(datetime(1_709_137_800_000), "2024-02-29 00:30");
        assert_eq!(date(1_735_660_800_000), "2025-01-01");
        assert_eq!(date(-86_400_000 - CST_OFFSET_MS), "1969-12-31");
    }
}
