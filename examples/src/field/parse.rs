//! Turning command-line text into typed values; every failure names the argument.

use gridsync_core::model::{
    AnswerType, AnswerValue, Certification, ChecklistItem, ProducerType, RiskLevel, Role, Severity,
    Species, TestMethod, Verdict, YesNoNa,
};

use super::CliError;

fn bad(field: &str, problem: impl Into<String>) -> CliError {
    CliError::Input {
        field: field.to_string(),
        problem: problem.into(),
    }
}

/// A producer type from its stable id or Chinese name.
pub fn producer_type(s: &str) -> Result<ProducerType, CliError> {
    ProducerType::ALL
        .into_iter()
        .find(|t| t.as_str() == s || t.label_zh() == s)
        .ok_or_else(|| {
            let all: Vec<&str> = ProducerType::ALL.iter().map(|t| t.as_str()).collect();
            bad("type", format!("'{s}' is not one of {}", all.join(", ")))
        })
}

/// A role from its stable id.
pub fn role(s: &str) -> Result<Role, CliError> {
    Role::parse(s).ok_or_else(|| {
        bad(
            "role",
            format!("'{s}' is not one of liaison, supervisor, county_reviewer, admin"),
        )
    })
}

/// A risk grade.
pub fn risk(s: &str) -> Result<RiskLevel, CliError> {
    match s {
        "low" | "低" => Ok(RiskLevel::Low),
        "medium" | "中" => Ok(RiskLevel::Medium),
        "high" | "高" => Ok(RiskLevel::High),
        _ => Err(bad(
            "risk",
            format!("'{s}' is not one of low, medium, high"),
        )),
    }
}

/// A certification.
pub fn certification(s: &str) -> Result<Certification, CliError> {
    let zh = match s {
        "绿色" | "绿色食品" => Some(Certification::Green),
        "有机" => Some(Certification::Organic),
        "地理标志" => Some(Certification::GeographicalIndication),
        "名特优新" => Some(Certification::SpecialtyProduct),
        _ => None,
    };
    zh.or_else(|| Certification::parse(s)).ok_or_else(|| {
        bad(
            "cert",
            format!(
                "'{s}' is not one of green, organic, geographical_indication, specialty_product"
            ),
        )
    })
}

/// `yes` / `no`.
pub fn yes_no(field: &str, s: &str) -> Result<bool, CliError> {
    match s {
        "yes" | "y" | "true" | "是" => Ok(true),
        "no" | "n" | "false" | "否" => Ok(false),
        _ => Err(bad(field, format!("'{s}' is not yes or no"))),
    }
}

/// `SPECIES=ON_HAND[/SOLD_PER_YEAR]`.
pub fn livestock(s: &str) -> Result<(Species, Option<u32>, Option<u32>), CliError> {
    let (name, counts) = s
        .split_once('=')
        .ok_or_else(|| bad("livestock", format!("'{s}' is not SPECIES=ON_HAND[/SOLD]")))?;
    let species = Species::ALL
        .into_iter()
        .find(|x| x.as_str() == name || x.label_zh() == name)
        .ok_or_else(|| bad("livestock", format!("'{name}' is not a known species")))?;
    let num = |t: &str| -> Result<Option<u32>, CliError> {
        if t.is_empty() {
            return Ok(None);
        }
        t.parse::<u32>()
            .map(Some)
            .map_err(|_| bad("livestock", format!("'{t}' is not a whole number of head")))
    };
    let (on_hand, sold) = match counts.split_once('/') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(counts)?, None),
    };
    Ok((species, on_hand, sold))
}

/// `KEY=VALUE`.
pub fn key_value<'a>(field: &str, s: &'a str) -> Result<(&'a str, &'a str), CliError> {
    s.split_once('=')
        .map(|(k, v)| (k.trim(), v.trim()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| bad(field, format!("'{s}' is not of the form ITEM_ID=VALUE")))
}

/// An answer value for a checklist item, read according to the item's type.
pub fn answer(item: &ChecklistItem, raw: &str) -> Result<AnswerValue, CliError> {
    let field = format!("answers.{}", item.id);
    Ok(match &item.answer {
        AnswerType::YesNoNa => AnswerValue::YesNo(match raw {
            "yes" | "y" | "是" => YesNoNa::Yes,
            "no" | "n" | "否" => YesNoNa::No,
            "na" | "n/a" | "不适用" => YesNoNa::NotApplicable,
            _ => return Err(bad(&field, format!("'{raw}' is not yes, no or na"))),
        }),
        AnswerType::Number { .. } => AnswerValue::Number(
            raw.parse::<f64>()
                .map_err(|_| bad(&field, format!("'{raw}' is not a number")))?,
        ),
        AnswerType::Text { .. } => AnswerValue::Text(raw.to_string()),
        AnswerType::SingleChoice { .. } => AnswerValue::Choice(raw.to_string()),
        AnswerType::MultiChoice { .. } => AnswerValue::Choices(split_list(raw)),
        AnswerType::Photo => AnswerValue::Photos(split_list(raw)),
    })
}

fn split_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Finding severity.
pub fn severity(s: &str) -> Result<Severity, CliError> {
    match s {
        "minor" | "一般" => Ok(Severity::Minor),
        "major" | "较重" => Ok(Severity::Major),
        "serious" | "严重" => Ok(Severity::Serious),
        _ => Err(bad(
            "severity",
            format!("'{s}' is not one of minor, major, serious"),
        )),
    }
}

/// The fields of a rapid test given as `key=value,key=value`.
#[derive(Debug, Default)]
pub struct RapidTestSpec {
    /// Sample.
    pub sample: String,
    /// Test item.
    pub item: String,
    /// Method.
    pub method: Option<TestMethod>,
    /// Kit.
    pub kit: String,
    /// Value.
    pub value: Option<f64>,
    /// Unit.
    pub unit: Option<String>,
    /// Verdict.
    pub verdict: Option<Verdict>,
}

/// Parses a `--rapid-test` argument.
pub fn rapid_test(s: &str) -> Result<RapidTestSpec, CliError> {
    let mut out = RapidTestSpec::default();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| bad("rapid-test", format!("'{part}' is not key=value")))?;
        let v = v.trim();
        match k.trim() {
            "sample" => out.sample = v.into(),
            "item" => out.item = v.into(),
            "kit" => out.kit = v.into(),
            "unit" => out.unit = Some(v.into()),
            "value" => {
                out.value = Some(
                    v.parse()
                        .map_err(|_| bad("rapid-test.value", format!("'{v}' is not a number")))?,
                )
            }
            "method" => {
                out.method = Some(match v {
                    "enzyme_inhibition" | "酶抑制法" => TestMethod::EnzymeInhibition,
                    "colloidal_gold" | "胶体金" => TestMethod::ColloidalGold,
                    "other" | "其他" => TestMethod::Other,
                    _ => {
                        return Err(bad(
                            "rapid-test.method",
                            format!("'{v}' is not enzyme_inhibition, colloidal_gold or other"),
                        ))
                    }
                })
            }
            "verdict" => {
                out.verdict = Some(match v {
                    "pass" | "合格" => Verdict::Pass,
                    "fail" | "不合格" => Verdict::Fail,
                    "suspect" | "疑似" => Verdict::Suspect,
                    _ => {
                        return Err(bad(
                            "rapid-test.verdict",
                            format!("'{v}' is not pass, fail or suspect"),
                        ))
                    }
                })
            }
            other => {
                return Err(bad(
                    "rapid-test",
                    format!(
                        "unknown key '{other}' (sample, item, method, kit, value, unit, verdict)"
                    ),
                ))
            }
        }
    }
    if out.verdict.is_none() {
        return Err(bad(
            "rapid-test.verdict",
            "is required (pass, fail, suspect)",
        ));
    }
    Ok(out)
}

/// A review action name.
pub fn review_action(
    s: &str,
    reason: Option<&str>,
) -> Result<gridsync_core::model::ReviewAction, CliError> {
    use gridsync_core::model::ReviewAction;
    Ok(match s {
        "submit" | "提交" => ReviewAction::Submit,
        "approve-township" | "approve_township" => ReviewAction::ApproveTownship,
        "approve-county" | "approve_county" => ReviewAction::ApproveCounty,
        "return" | "退回" => ReviewAction::Return(
            reason
                .ok_or_else(|| bad("reason", "is required to return an entry"))?
                .to_string(),
        ),
        _ => {
            return Err(bad(
                "action",
                format!("'{s}' is not submit, approve-township, approve-county or return"),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn livestock_and_rapid_tests_parse() {
        let (s, a, b) = livestock("sheep_goat=300/150").unwrap();
        assert_eq!((s, a, b), (Species::SheepGoat, Some(300), Some(150)));
        let (s, a, b) = livestock("肉牛=40").unwrap();
        assert_eq!((s, a, b), (Species::BeefCattle, Some(40), None));
        assert!(livestock("unicorn=3").is_err());
        let t =
            rapid_test("sample=菠菜,item=有机磷,method=酶抑制法,value=32.5,unit=%,verdict=合格")
                .unwrap();
        assert_eq!(t.sample, "菠菜");
        assert_eq!(t.value, Some(32.5));
        assert_eq!(t.verdict, Some(Verdict::Pass));
        match rapid_test("sample=x,verdict=maybe") {
            Err(CliError::Input { field, .. }) => assert_eq!(field, "rapid-test.verdict"),
            other => panic!("{other:?}"),
        }
    }
}
