//! Field validation shared by the phone and the server: every check names the field.

use crate::model::{
    Acceptance, AnswerType, AnswerValue, ChecklistTemplate, GeoPoint, Producer, Record,
    ReviewState, Visit, VisitStatus,
};
use crate::Error;

/// A field that failed validation and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct Invalid {
    /// Dotted path of the field (e.g. `answers.drug_use`).
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl Invalid {
    /// A validation failure for a field.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

type VResult = Result<(), Invalid>;

/// Earliest plausible timestamp (2000-01-01) in milliseconds.
pub const MIN_TIME_MS: i64 = 946_684_800_000;
/// Latest plausible timestamp (2100-01-01) in milliseconds.
pub const MAX_TIME_MS: i64 = 4_102_444_800_000;

/// Largest record, measured as its JSON (what the document holds, without Automerge's
/// bookkeeping): 1 MiB, the size of the largest change a push may carry. A real visit with
/// a dozen findings is a few KB.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Most findings of a visit.
pub const MAX_FINDINGS: usize = 200;
/// Most rapid tests of a visit.
pub const MAX_RAPID_TESTS: usize = 100;
/// Most answers of a visit (a template has at most [`MAX_TEMPLATE_ITEMS`] items).
pub const MAX_ANSWERS: usize = 200;
/// Most items of a checklist template.
pub const MAX_TEMPLATE_ITEMS: usize = 200;
/// Most options of a choice item, and most options chosen in a multiple-choice answer.
pub const MAX_OPTIONS: usize = 50;
/// Longest free-text answer a template may allow, and any text answer, in characters.
pub const MAX_TEXT_ANSWER_CHARS: usize = 10_000;
/// Most photo references of one finding or one photo answer.
pub const MAX_PHOTOS: usize = 20;
/// Most steps of a producer's review history (a real entry has a handful; each edit of an
/// approved entry adds one).
pub const MAX_REVIEW_HISTORY: usize = 1_000;
/// Most main products of a producer.
pub const MAX_PRODUCTS: usize = 50;
/// Most certifications of a producer (there are four kinds).
pub const MAX_CERTIFICATIONS: usize = 8;
/// Most producer types an item applies to (there are eight).
pub const MAX_APPLIES_TO: usize = 8;

/// A writer that only counts, and stops once past [`MAX_RECORD_BYTES`].
struct CountBytes(usize);

impl std::io::Write for CountBytes {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        if self.0 > MAX_RECORD_BYTES {
            return Err(std::io::Error::other("record too large"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Checks the size of a whole record as JSON against [`MAX_RECORD_BYTES`] (without
/// building the JSON: the bytes are counted as they are written).
pub fn check_record_size<T: serde::Serialize>(record: &T) -> VResult {
    let mut count = CountBytes(0);
    if serde_json::to_writer(&mut count, record).is_err() {
        return Err(Invalid::new(
            "record",
            format!("is larger than the limit of {MAX_RECORD_BYTES} bytes as JSON"),
        ));
    }
    Ok(())
}

/// A photo field: an attachment reference (`att:…`, see [`crate::attachment`]), or a
/// free-text name as photo fields held before attachments existed.
pub fn check_photo(field: &str, p: &str) -> VResult {
    require_text(field, p, 200)?;
    if crate::attachment::AttachmentRef::is_reference(p) {
        p.parse::<crate::attachment::AttachmentRef>()
            .map_err(|e| Invalid::new(field, e.to_string()))?;
    }
    Ok(())
}

/// A required text field: non-blank and at most `max_chars` characters.
pub fn require_text(field: &str, v: &str, max_chars: usize) -> VResult {
    if v.trim().is_empty() {
        return Err(Invalid::new(field, "is required"));
    }
    optional_text(field, v, max_chars)
}

/// An optional text field: at most `max_chars` characters, no control characters.
pub fn optional_text(field: &str, v: &str, max_chars: usize) -> VResult {
    let n = v.chars().count();
    if n > max_chars {
        return Err(Invalid::new(
            field,
            format!("is {n} characters long, at most {max_chars} allowed"),
        ));
    }
    if v.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Invalid::new(field, "contains control characters"));
    }
    Ok(())
}

const USCC_CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// The check character of the first 17 characters of a unified social credit code.
pub fn uscc_check_char(first17: &str) -> Option<char> {
    let b = first17.as_bytes();
    if b.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (i, c) in b.iter().enumerate() {
        let v = USCC_CHARS.iter().position(|x| x == c)? as u32;
        sum += v * USCC_WEIGHTS[i];
    }
    let check = (31 - sum % 31) % 31;
    Some(USCC_CHARS[check as usize] as char)
}

/// Checks an 18-character unified social credit code (GB 32100-2015) with its check character.
pub fn check_credit_code(field: &str, code: &str) -> VResult {
    if code.len() != 18 || !code.is_ascii() {
        return Err(Invalid::new(
            field,
            format!("must be 18 characters, got {}", code.chars().count()),
        ));
    }
    if let Some(bad) = code.bytes().find(|c| !USCC_CHARS.contains(c)) {
        return Err(Invalid::new(
            field,
            format!(
                "character '{}' is not allowed (I, O, S, V, Z and lower case never appear)",
                bad as char
            ),
        ));
    }
    if !code.as_bytes()[2..8].iter().all(u8::is_ascii_digit) {
        return Err(Invalid::new(
            field,
            "characters 3-8 must be the division code digits",
        ));
    }
    let expected = uscc_check_char(&code[..17]).unwrap_or('?');
    if code.as_bytes()[17] as char != expected {
        return Err(Invalid::new(
            field,
            format!(
                "check character is '{}', expected '{expected}'",
                &code[17..]
            ),
        ));
    }
    Ok(())
}

/// Checks an 18-character resident identity number (GB 11643) with its check digit and birth date.
pub fn check_id_number(field: &str, id: &str) -> VResult {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const C: &[u8] = b"10X98765432";
    let b = id.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return Err(Invalid::new(
            field,
            "must be 17 digits followed by a digit or X",
        ));
    }
    let sum: u32 = b[..17]
        .iter()
        .zip(W)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    let expected = C[(sum % 11) as usize];
    if b[17].to_ascii_uppercase() != expected {
        return Err(Invalid::new(
            field,
            format!(
                "check digit is '{}', expected '{}'",
                b[17] as char, expected as char
            ),
        ));
    }
    let birth = format!("{}-{}-{}", &id[6..10], &id[10..12], &id[12..14]);
    check_date(field, &birth).map_err(|_| Invalid::new(field, "contains an impossible birth date"))
}

/// Checks a mainland phone number: an 11-digit mobile or a landline with area code.
pub fn check_phone(field: &str, phone: &str) -> VResult {
    let digits: String = phone.chars().filter(|c| *c != '-' && *c != ' ').collect();
    let ok_mobile = digits.len() == 11
        && digits.starts_with('1')
        && matches!(digits.as_bytes()[1], b'3'..=b'9')
        && digits.bytes().all(|c| c.is_ascii_digit());
    let ok_landline = digits.starts_with('0')
        && (10..=12).contains(&digits.len())
        && digits.bytes().all(|c| c.is_ascii_digit());
    if ok_mobile || ok_landline {
        Ok(())
    } else {
        Err(Invalid::new(
            field,
            "must be an 11-digit mobile number (1[3-9]…) or a landline with area code (0…)",
        ))
    }
}

/// Checks coordinates are in range and finite.
pub fn check_point(field: &str, p: &GeoPoint) -> VResult {
    if !p.lat.is_finite() || !(-90.0..=90.0).contains(&p.lat) {
        return Err(Invalid::new(
            format!("{field}.lat"),
            "must be between -90 and 90",
        ));
    }
    if !p.lon.is_finite() || !(-180.0..=180.0).contains(&p.lon) {
        return Err(Invalid::new(
            format!("{field}.lon"),
            "must be between -180 and 180",
        ));
    }
    Ok(())
}

/// Checks a calendar date `YYYY-MM-DD` between 1900 and 2100.
pub fn check_date(field: &str, d: &str) -> VResult {
    let bad = || Invalid::new(field, format!("'{d}' is not a date of the form YYYY-MM-DD"));
    let b = d.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let num = |s: &str| s.parse::<u32>().map_err(|_| bad());
    let (y, m, day) = (num(&d[0..4])?, num(&d[5..7])?, num(&d[8..10])?);
    if !(1900..=2100).contains(&y) || !(1..=12).contains(&m) {
        return Err(bad());
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day == 0 || day > days {
        return Err(bad());
    }
    Ok(())
}

/// Checks a timestamp lies between 2000 and 2100.
pub fn check_time(field: &str, ms: i64) -> VResult {
    if !(MIN_TIME_MS..MAX_TIME_MS).contains(&ms) {
        return Err(Invalid::new(
            field,
            format!("{ms} ms is not a plausible time (2000-2100)"),
        ));
    }
    Ok(())
}

fn check_id(field: &str, id: &str) -> VResult {
    require_text(field, id, 64)?;
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
    {
        return Err(Invalid::new(
            field,
            "may only hold letters, digits and - _ : .",
        ));
    }
    Ok(())
}

fn check_list<T>(field: &str, v: &[T], max: usize) -> VResult {
    if v.len() > max {
        return Err(Invalid::new(
            field,
            format!("has {} entries, at most {max} allowed", v.len()),
        ));
    }
    Ok(())
}

/// Validates a producer on its own.
pub fn validate_producer(p: &Producer) -> VResult {
    check_id("id", &p.id)?;
    require_text("name", &p.name, 100)?;
    require_text("owner", &p.owner, 50)?;
    check_phone("phone", &p.phone)?;
    require_text("grid", &p.grid, 32)?;
    optional_text("address", &p.address, 200)?;
    match (&p.credit_code, &p.id_number) {
        (None, _) if p.producer_type.needs_credit_code() => {
            return Err(Invalid::new(
                "credit_code",
                format!("is required for a {}", p.producer_type.label_zh()),
            ))
        }
        (None, None) => {
            return Err(Invalid::new(
                "id_number",
                "a credit code or the owner's ID number is required",
            ))
        }
        _ => {}
    }
    if let Some(c) = &p.credit_code {
        check_credit_code("credit_code", c)?;
    }
    if let Some(i) = &p.id_number {
        check_id_number("id_number", i)?;
    }
    if let Some(l) = &p.location {
        check_point("location", l)?;
    }
    check_list("products", &p.products, MAX_PRODUCTS)?;
    for (i, prod) in p.products.iter().enumerate() {
        require_text(&format!("products[{i}]"), prod, 50)?;
    }
    check_list("certifications", &p.certifications, MAX_CERTIFICATIONS)?;
    if let Some(a) = p.scale.crop_area_mu {
        if !a.is_finite() || !(0.0..=10_000_000.0).contains(&a) {
            return Err(Invalid::new(
                "scale.crop_area_mu",
                "must be between 0 and 10,000,000 mu",
            ));
        }
    }
    for (s, c) in &p.scale.livestock {
        for (what, n) in [("on_hand", c.on_hand), ("sold_per_year", c.sold_per_year)] {
            if n.is_some_and(|n| n > 10_000_000) {
                return Err(Invalid::new(
                    format!("scale.livestock.{}.{what}", s.as_str()),
                    "must be at most 10,000,000",
                ));
            }
        }
    }
    if let Some(l) = &p.responsibility_letter {
        check_date("responsibility_letter.signed_on", &l.signed_on)?;
    }
    if p.review.state == ReviewState::Returned
        && p.review
            .return_reason
            .as_deref()
            .is_none_or(|r| r.trim().is_empty())
    {
        return Err(Invalid::new(
            "review.return_reason",
            "a returned entry needs a reason",
        ));
    }
    check_list("review.history", &p.review.history, MAX_REVIEW_HISTORY)?;
    for (i, e) in p.review.history.iter().enumerate() {
        let f = format!("review.history[{i}]");
        check_id(&format!("{f}.id"), &e.id)?;
        require_text(&format!("{f}.by"), &e.by, 64)?;
        if let crate::model::ReviewAction::Return(reason) = &e.action {
            optional_text(&format!("{f}.action.reason"), reason, 1000)?;
        }
    }
    check_list("confirmations", &p.confirmations, MAX_REVIEW_HISTORY)?;
    for (i, c) in p.confirmations.iter().enumerate() {
        let f = format!("confirmations[{i}]");
        check_id(&format!("{f}.id"), &c.id)?;
        require_text(&format!("{f}.by"), &c.by, 64)?;
        check_time(&format!("{f}.at_ms"), c.at_ms)?;
        // A year is confirmed during it or in the year after (China time).
        let at_year = crate::dates::china_year(c.at_ms);
        if c.year != at_year && c.year != at_year - 1 {
            return Err(Invalid::new(
                format!("{f}.year"),
                format!("{} cannot be confirmed in {at_year}", c.year),
            ));
        }
    }
    validate_duplicate_bookkeeping(p)?;
    check_time("created_at_ms", p.created_at_ms)?;
    check_time("updated_at_ms", p.updated_at_ms)?;
    check_record_size(p)
}

/// Most possible-duplicate marks, and most carried edits, on one producer.
pub const MAX_DUPLICATE_MARKS: usize = 200;

/// Bounds and shapes of a producer's duplicate bookkeeping (marks, tombstone, carried edits).
fn validate_duplicate_bookkeeping(p: &Producer) -> VResult {
    check_list("duplicates", &p.duplicates, MAX_DUPLICATE_MARKS)?;
    for (i, m) in p.duplicates.iter().enumerate() {
        let f = format!("duplicates[{i}]");
        check_id(&format!("{f}.id"), &m.id)?;
        optional_text(&format!("{f}.other_name"), &m.other_name, 200)?;
        optional_text(&format!("{f}.other_grid"), &m.other_grid, 64)?;
        check_list(&format!("{f}.reasons"), &m.reasons, 8)?;
        for (j, r) in m.reasons.iter().enumerate() {
            require_text(&format!("{f}.reasons[{j}]"), r, 32)?;
        }
        if m.score > 100 {
            return Err(Invalid::new(format!("{f}.score"), "is over 100"));
        }
        check_time(&format!("{f}.found_at_ms"), m.found_at_ms)?;
        if let Some(r) = &m.resolution {
            require_text(&format!("{f}.resolution.by"), &r.by, 64)?;
            check_time(&format!("{f}.resolution.at_ms"), r.at_ms)?;
        }
    }
    if let Some(t) = &p.merged_into {
        check_id("merged_into.into", &t.into)?;
        if t.into == p.id {
            return Err(Invalid::new("merged_into.into", "is this entry itself"));
        }
        require_text("merged_into.by", &t.by, 64)?;
        check_time("merged_into.at_ms", t.at_ms)?;
        check_list(
            "merged_into.seen",
            &t.seen,
            crate::model::DIRECTORY_FIELDS.len(),
        )?;
        for (i, f) in t.seen.iter().enumerate() {
            if !crate::model::DIRECTORY_FIELDS.contains(&f.id.as_str()) {
                return Err(Invalid::new(
                    format!("merged_into.seen[{i}].id"),
                    format!("{} is not a directory field", f.id),
                ));
            }
        }
    }
    check_list("carried_edits", &p.carried_edits, MAX_DUPLICATE_MARKS)?;
    for (i, e) in p.carried_edits.iter().enumerate() {
        let f = format!("carried_edits[{i}]");
        require_text(&format!("{f}.id"), &e.id, 200)?;
        check_id(&format!("{f}.from"), &e.from)?;
        if !crate::model::DIRECTORY_FIELDS.contains(&e.field.as_str()) {
            return Err(Invalid::new(
                format!("{f}.field"),
                format!("{} is not a directory field", e.field),
            ));
        }
        check_time(&format!("{f}.at_ms"), e.at_ms)?;
        if let Some(b) = &e.settled_by {
            require_text(&format!("{f}.settled_by"), b, 64)?;
        }
    }
    Ok(())
}

/// Validates a checklist template on its own.
pub fn validate_template(t: &ChecklistTemplate) -> VResult {
    require_text("template_id", &t.template_id, 64)?;
    if t.version == 0 {
        return Err(Invalid::new("version", "starts at 1"));
    }
    if t.id != ChecklistTemplate::record_id(&t.template_id, t.version) {
        return Err(Invalid::new("id", "must be tpl:{template_id}:{version}"));
    }
    require_text("name_zh", &t.name_zh, 100)?;
    require_text("grid", &t.grid, 32)?;
    if t.items.is_empty() {
        return Err(Invalid::new("items", "a template needs at least one item"));
    }
    check_list("items", &t.items, MAX_TEMPLATE_ITEMS)?;
    let mut seen = std::collections::BTreeSet::new();
    for (i, item) in t.items.iter().enumerate() {
        let f = format!("items[{i}]");
        check_id(&format!("{f}.id"), &item.id)?;
        if !seen.insert(item.id.as_str()) {
            return Err(Invalid::new(
                format!("{f}.id"),
                format!("'{}' appears twice", item.id),
            ));
        }
        require_text(&format!("{f}.text_zh"), &item.text_zh, 300)?;
        check_list(&format!("{f}.applies_to"), &item.applies_to, MAX_APPLIES_TO)?;
        if let AnswerType::Text { max_chars } = item.answer {
            if max_chars as usize > MAX_TEXT_ANSWER_CHARS {
                return Err(Invalid::new(
                    format!("{f}.answer.max_chars"),
                    format!("is {max_chars}, at most {MAX_TEXT_ANSWER_CHARS} allowed"),
                ));
            }
        }
        if let AnswerType::SingleChoice { options } | AnswerType::MultiChoice { options } =
            &item.answer
        {
            if options.is_empty() {
                return Err(Invalid::new(
                    format!("{f}.answer.options"),
                    "needs at least one option",
                ));
            }
            check_list(&format!("{f}.answer.options"), options, MAX_OPTIONS)?;
            let mut ids = std::collections::BTreeSet::new();
            for o in options {
                if !ids.insert(o.id.as_str()) {
                    return Err(Invalid::new(
                        format!("{f}.answer.options"),
                        format!("option '{}' appears twice", o.id),
                    ));
                }
            }
        }
        if let AnswerType::Number {
            min: Some(a),
            max: Some(b),
            ..
        } = item.answer
        {
            if a > b {
                return Err(Invalid::new(
                    format!("{f}.answer"),
                    "min is greater than max",
                ));
            }
        }
    }
    check_record_size(t)
}

/// Validates an answer against its item's type.
pub fn check_answer(field: &str, ty: &AnswerType, v: &AnswerValue) -> VResult {
    let mismatch = |want: &str| Invalid::new(field, format!("expects {want}"));
    match (ty, v) {
        (AnswerType::YesNoNa, AnswerValue::YesNo(_)) => Ok(()),
        (AnswerType::YesNoNa, _) => Err(mismatch("yes / no / not applicable")),
        (AnswerType::Number { min, max, unit }, AnswerValue::Number(n)) => {
            if !n.is_finite() {
                return Err(Invalid::new(field, "must be a finite number"));
            }
            if min.is_some_and(|m| *n < m) || max.is_some_and(|m| *n > m) {
                return Err(Invalid::new(
                    field,
                    format!("{n} {unit} is outside {}..{}", fmt_opt(*min), fmt_opt(*max)),
                ));
            }
            Ok(())
        }
        (AnswerType::Number { .. }, _) => Err(mismatch("a number")),
        (AnswerType::Text { max_chars }, AnswerValue::Text(t)) => {
            optional_text(field, t, *max_chars as usize)
        }
        (AnswerType::Text { .. }, _) => Err(mismatch("text")),
        (AnswerType::SingleChoice { options }, AnswerValue::Choice(c)) => {
            if options.iter().any(|o| &o.id == c) {
                Ok(())
            } else {
                Err(Invalid::new(
                    field,
                    format!("'{c}' is not one of the options"),
                ))
            }
        }
        (AnswerType::SingleChoice { .. }, _) => Err(mismatch("one option")),
        (AnswerType::MultiChoice { options }, AnswerValue::Choices(cs)) => {
            for c in cs {
                if !options.iter().any(|o| &o.id == c) {
                    return Err(Invalid::new(
                        field,
                        format!("'{c}' is not one of the options"),
                    ));
                }
            }
            Ok(())
        }
        (AnswerType::MultiChoice { .. }, _) => Err(mismatch("a list of options")),
        (AnswerType::Photo, AnswerValue::Photos(ps)) => {
            check_list(field, ps, MAX_PHOTOS)?;
            for p in ps {
                check_photo(field, p)?;
            }
            Ok(())
        }
        (AnswerType::Photo, _) => Err(mismatch("photo references")),
    }
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

/// Validates a visit. With its template, answers are checked against item types and a
/// completed visit must answer every required item that applies to the producer type.
pub fn validate_visit(
    v: &Visit,
    template: Option<&ChecklistTemplate>,
    producer_type: Option<crate::model::ProducerType>,
) -> VResult {
    check_id("id", &v.id)?;
    check_id("producer_id", &v.producer_id)?;
    require_text("grid", &v.grid, 32)?;
    require_text("inspector", &v.inspector, 64)?;
    require_text("template_id", &v.template_id, 64)?;
    check_time("started_at_ms", v.started_at_ms)?;
    check_time("updated_at_ms", v.updated_at_ms)?;
    if let Some(end) = v.ended_at_ms {
        check_time("ended_at_ms", end)?;
        if end < v.started_at_ms {
            return Err(Invalid::new("ended_at_ms", "is before started_at_ms"));
        }
    }
    if let Some(l) = &v.location {
        check_point("location", l)?;
    }
    if v.answers.len() > MAX_ANSWERS {
        return Err(Invalid::new(
            "answers",
            format!(
                "has {} entries, at most {MAX_ANSWERS} allowed",
                v.answers.len()
            ),
        ));
    }
    // What holds whatever the template: item ids as keys, bounded values and notes.
    for (id, a) in &v.answers {
        let field = format!("answers.{id}");
        check_id(&format!("{field} (item id)"), id)?;
        match &a.value {
            AnswerValue::Text(t) => optional_text(&field, t, MAX_TEXT_ANSWER_CHARS)?,
            AnswerValue::Choice(c) => require_text(&field, c, 64)?,
            AnswerValue::Choices(cs) => {
                check_list(&field, cs, MAX_OPTIONS)?;
                for c in cs {
                    require_text(&field, c, 64)?;
                }
            }
            AnswerValue::Photos(ps) => {
                check_list(&field, ps, MAX_PHOTOS)?;
                for p in ps {
                    require_text(&field, p, 200)?;
                }
            }
            AnswerValue::YesNo(_) | AnswerValue::Number(_) => {}
        }
        if let Some(n) = &a.note {
            optional_text(&format!("{field}.note"), n, 500)?;
        }
    }
    if let Some(t) = template {
        if t.template_id != v.template_id || t.version != v.template_version {
            return Err(Invalid::new(
                "template_version",
                "does not match the template given",
            ));
        }
        for (id, a) in &v.answers {
            let field = format!("answers.{id}");
            let item = t
                .item(id)
                .ok_or_else(|| Invalid::new(&field, "is not an item of the template"))?;
            check_answer(&field, &item.answer, &a.value)?;
            if let Some(n) = &a.note {
                optional_text(&format!("{field}.note"), n, 500)?;
            }
        }
        if v.status == VisitStatus::Completed {
            for item in &t.items {
                let applies = producer_type.is_none_or(|pt| item.applies(pt));
                if item.required && applies && !v.answers.contains_key(&item.id) {
                    return Err(Invalid::new(
                        format!("answers.{}", item.id),
                        "is required to complete the visit",
                    ));
                }
            }
        }
    }
    check_list("findings", &v.findings, MAX_FINDINGS)?;
    for (i, f) in v.findings.iter().enumerate() {
        check_id(&format!("findings[{i}].id"), &f.id)?;
        require_text(&format!("findings[{i}].description"), &f.description, 1000)?;
        check_list(&format!("findings[{i}].photos"), &f.photos, MAX_PHOTOS)?;
        for (j, p) in f.photos.iter().enumerate() {
            check_photo(&format!("findings[{i}].photos[{j}]"), p)?;
        }
        check_time(&format!("findings[{i}].recorded_at_ms"), f.recorded_at_ms)?;
    }
    check_list("rapid_tests", &v.rapid_tests, MAX_RAPID_TESTS)?;
    for (i, t) in v.rapid_tests.iter().enumerate() {
        let f = format!("rapid_tests[{i}]");
        check_id(&format!("{f}.id"), &t.id)?;
        require_text(&format!("{f}.sample"), &t.sample, 100)?;
        require_text(&format!("{f}.item"), &t.item, 100)?;
        optional_text(&format!("{f}.kit"), &t.kit, 100)?;
        if t.value.is_some_and(|x| !x.is_finite()) {
            return Err(Invalid::new(
                format!("{f}.value"),
                "must be a finite number",
            ));
        }
        check_time(&format!("{f}.tested_at_ms"), t.tested_at_ms)?;
    }
    if let Some(r) = &v.rectification {
        check_date("rectification.deadline", &r.deadline)?;
        if r.required {
            require_text("rectification.notice_number", &r.notice_number, 50)?;
        }
    }
    if v.status == VisitStatus::Completed && v.ended_at_ms.is_none() {
        return Err(Invalid::new(
            "ended_at_ms",
            "a completed visit needs an end time",
        ));
    }
    if let Some(a) = &v.acknowledgement {
        require_text("acknowledgement.signed_by", &a.signed_by, 50)?;
        if let Some(p) = &a.signature_photo {
            check_photo("acknowledgement.signature_photo", p)?;
        }
        check_time("acknowledgement.at_ms", a.at_ms)?;
    }
    if let Some(r) = &v.review {
        optional_text("review.comment", &r.comment, 1000)?;
    }
    check_record_size(v)
}

/// Longest basis (note) of an acceptance decision, in characters.
pub const MAX_ACCEPTANCE_NOTE_CHARS: usize = 2000;

/// Validates a township acceptance decision on its own (that its grid is a township is
/// checked against the tree by [`crate::rules::check_change`]).
pub fn validate_acceptance(a: &Acceptance) -> VResult {
    require_text("grid", &a.grid, 32)?;
    if !(2000..=2100).contains(&a.year) {
        return Err(Invalid::new(
            "year",
            format!("{} is not a year between 2000 and 2100", a.year),
        ));
    }
    let id = Acceptance::record_id(&a.grid, a.year);
    if a.id != id {
        return Err(Invalid::new(
            "id",
            format!(
                "the decision on {} for {} is the record {id}",
                a.grid, a.year
            ),
        ));
    }
    check_id("id", &a.id)?;
    check_date("decided_on", &a.decided_on)?;
    require_text("decided_by", &a.decided_by, 64)?;
    optional_text("note", &a.note, MAX_ACCEPTANCE_NOTE_CHARS)?;
    check_time("updated_at_ms", a.updated_at_ms)?;
    check_record_size(a)
}

/// Validates any record on its own (visits without their template).
pub fn validate_record(r: &Record) -> Result<(), Error> {
    match r {
        Record::Producer(p) => validate_producer(p)?,
        Record::Visit(v) => validate_visit(v, None, None)?,
        Record::Template(t) => validate_template(t)?,
        Record::Acceptance(a) => validate_acceptance(a)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uscc(first17: &str) -> String {
        format!("{first17}{}", uscc_check_char(first17).unwrap())
    }

    #[test]
    fn credit_code_check_character() {
        // Published code of a well-known company.
        check_credit_code("c", "914403001922038216").unwrap();
        let good = uscc("93152522MA0N1234X");
        check_credit_code("c", &good).unwrap();
        let mut bad = good.clone();
        bad.replace_range(17..18, if good.ends_with('0') { "1" } else { "0" });
        let e = check_credit_code("credit_code", &bad).unwrap_err();
        assert_eq!(e.field, "credit_code");
        assert!(e.problem.contains("check character"), "{e}");
        assert!(check_credit_code("c", "91440300192203821").is_err());
        assert!(check_credit_code("c", "9144030019220382I6").is_err());
    }

    #[test]
    fn id_number_check_digit_and_birth_date() {
        check_id_number("i", "11010519491231002X").unwrap();
        assert!(check_id_number("i", "110105194912310021").is_err());
        // valid check digit arithmetic but month 13
        let e = check_id_number("i", "110105194913310028").unwrap_err();
        assert!(e.problem.contains("check digit") || e.problem.contains("birth"));
    }

    #[test]
    fn phones_dates_points() {
        check_phone("p", "13912345678").unwrap();
        check_phone("p", "0479-8221234").unwrap();
        assert!(check_phone("p", "12345").is_err());
        assert!(check_phone("p", "12912345678").is_err());
        check_date("d", "2024-02-29").unwrap();
        assert!(check_date("d", "2023-02-29").is_err());
        assert!(check_date("d", "2023-1-01").is_err());
        check_point(
            "l",
            &GeoPoint {
                lat: 44.0,
                lon: 114.9,
            },
        )
        .unwrap();
        let e = check_point(
            "location",
            &GeoPoint {
                lat: 91.0,
                lon: 0.0,
            },
        )
        .unwrap_err();
        assert_eq!(e.field, "location.lat");
        assert!(check_point(
            "l",
            &GeoPoint {
                lat: f64::NAN,
                lon: 0.0
            }
        )
        .is_err());
    }

    fn producer() -> Producer {
        let mut p = Producer::new(
            "测试牧场",
            crate::model::ProducerType::FamilyRanch,
            "户主",
            "13912345678",
            "V1",
            "p1",
            1_767_225_600_000,
        );
        p.id_number = Some("11010519491231002X".into());
        p
    }

    fn visit() -> Visit {
        Visit::new(
            "prod-1",
            "V1",
            "p1",
            &crate::model::default_template("R"),
            1_767_225_600_000,
        )
    }

    fn finding(i: usize) -> crate::model::Finding {
        crate::model::Finding {
            id: format!("f{i}"),
            item_id: None,
            description: "问题".into(),
            severity: crate::model::Severity::Minor,
            photos: vec![],
            recorded_by: "p1".into(),
            recorded_at_ms: 1_767_225_600_000,
        }
    }

    fn refused(r: VResult) -> Invalid {
        r.expect_err("should be refused")
    }

    #[test]
    fn lists_are_bounded_with_the_field_and_the_limit() {
        let mut v = visit();
        v.findings = (0..MAX_FINDINGS).map(finding).collect();
        validate_visit(&v, None, None).unwrap();
        v.findings.push(finding(MAX_FINDINGS));
        let e = refused(validate_visit(&v, None, None));
        assert_eq!(e.field, "findings");
        assert_eq!(e.problem, "has 201 entries, at most 200 allowed");

        let mut v = visit();
        v.findings = vec![finding(0)];
        v.findings[0].photos = (0..=MAX_PHOTOS).map(|i| format!("p{i}")).collect();
        let e = refused(validate_visit(&v, None, None));
        assert_eq!(e.field, "findings[0].photos");
        assert!(e.problem.contains("at most 20"), "{e}");

        let mut v = visit();
        for i in 0..=MAX_ANSWERS {
            v.answers.insert(
                format!("item{i}"),
                crate::model::Answer {
                    value: AnswerValue::YesNo(crate::model::YesNoNa::Yes),
                    note: None,
                },
            );
        }
        let e = refused(validate_visit(&v, None, None));
        assert_eq!(e.field, "answers");
        assert!(e.problem.contains("at most 200"), "{e}");

        // Without the template, answers are still bounded.
        let mut v = visit();
        v.answers.insert(
            "photos".into(),
            crate::model::Answer {
                value: AnswerValue::Choices((0..=MAX_OPTIONS).map(|i| format!("o{i}")).collect()),
                note: None,
            },
        );
        let e = refused(validate_visit(&v, None, None));
        assert_eq!(e.field, "answers.photos");
        assert!(e.problem.contains("at most 50"), "{e}");

        let mut p = producer();
        p.review.history = (0..=MAX_REVIEW_HISTORY)
            .map(|i| crate::model::ReviewEvent {
                id: format!("e{i}"),
                action: crate::model::ReviewAction::Submit,
                by: "p1".into(),
                at_ms: 1_767_225_600_000,
                state_after: ReviewState::Submitted,
            })
            .collect();
        let e = refused(validate_producer(&p));
        assert_eq!(e.field, "review.history");
        assert!(e.problem.contains("at most 1000"), "{e}");

        let mut p = producer();
        p.products = (0..=MAX_PRODUCTS).map(|i| format!("产品{i}")).collect();
        assert_eq!(refused(validate_producer(&p)).field, "products");
        let mut p = producer();
        p.certifications = vec![crate::model::Certification::Green; MAX_CERTIFICATIONS + 1];
        assert_eq!(refused(validate_producer(&p)).field, "certifications");

        let mut t = crate::model::default_template("R");
        t.id = ChecklistTemplate::record_id(&t.template_id, t.version);
        validate_template(&t).unwrap();
        t.items[0].answer = AnswerType::MultiChoice {
            options: (0..=MAX_OPTIONS)
                .map(|i| crate::model::ChoiceOption {
                    id: format!("o{i}"),
                    label_zh: "选项".into(),
                })
                .collect(),
        };
        assert_eq!(
            refused(validate_template(&t)).field,
            "items[0].answer.options"
        );
    }

    #[test]
    fn a_record_is_bounded_as_a_whole() {
        let mut v = visit();
        v.rapid_tests = Vec::new();
        v.findings = (0..MAX_FINDINGS).map(finding).collect();
        for f in &mut v.findings {
            f.description = "长".repeat(1000);
            f.photos = (0..MAX_PHOTOS)
                .map(|i| format!("{i:02}{}", "p".repeat(150)))
                .collect();
        }
        let e = refused(validate_visit(&v, None, None));
        assert_eq!(e.field, "record");
        assert!(e.problem.contains("limit of 1048576 bytes"), "{e}");
        v.findings.truncate(20);
        validate_visit(&v, None, None).unwrap();
    }
}
