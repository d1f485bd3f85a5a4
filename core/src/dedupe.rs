//! Likely duplicates among producers: the phone checks a new entry before saving it, the
//! server after pushes, the admin import every row of a file against the stored directory
//! and against the file itself.
//!
//! Two entries are likely the same producer when any of these holds:
//!
//! - the same unified social credit code ([`MatchReason::CreditCode`]) or the same ID
//!   number ([`MatchReason::IdNumber`]), anywhere in the tree; codes are compared
//!   normalised ([`normalize_code`]: full-width folded, spaces removed, upper case, so a
//!   trailing `x` of an ID number equals `X`);
//! - the same phone number ([`MatchReason::Phone`]), anywhere: digits only, full-width
//!   digits folded, a leading `+86`, `86` or `0086` stripped ([`normalize_phone`]);
//! - a similar name in the same or a neighbouring grid ([`MatchReason::SameName`],
//!   [`MatchReason::NameContains`], [`MatchReason::NameOneEdit`]).
//!
//! **Neighbouring grids.** Two grids are neighbours when they have the same parent (two
//! villages of one township, two sub-grids of one village), or when one is the other's
//! parent (an entry registered on the township itself and one in its village). The tree is
//! a parameter ([`GridTree`], e.g. [`crate::store::TreeSnapshot`]); a grid the tree does not
//! know neighbours only itself.
//!
//! **Similar names.** Chinese producer names differ mostly in what surrounds the part that
//! identifies the business: 阿巴嘎旗浩日沁牧业专业合作社 and 浩日沁牧业合作社 are the same
//! cooperative. Each name is reduced to its *core* ([`name_core`]):
//!
//! 1. full-width letters, digits and the ideographic space are folded to their half-width
//!    forms, ASCII letters to lower case, and everything that is not a letter, digit or
//!    Chinese character (spaces, punctuation of either width, brackets, middle dots) is
//!    dropped;
//! 2. organisational suffixes ([`ORG_SUFFIXES`]: 农民专业合作社, 专业合作社, 合作社,
//!    家庭牧场, 家庭农场, 牧场, 农场, 有限责任公司, 有限公司, 养殖场, 种植场, …) are
//!    stripped from the end, longest first and repeatedly (牧场有限公司 goes in two
//!    steps), as long as at least two characters remain;
//! 3. place prefixes are stripped from the start, repeatedly, where it is safe: 内蒙古 or
//!    内蒙古自治区, and a leading place name of 2–7 characters ending in a place word
//!    (盟, 市, 旗, 县, 苏木, 镇, 乡, 街道, 嘎查, 村: 锡林郭勒盟, 阿巴嘎旗, 别力古台镇,
//!    巴彦嘎查), again only when at least two characters remain, and not where the place
//!    word is part of an ordinary word (乡村, 旗舰, 超市, 城市, 市场 …).
//!
//! Two cores are similar when they are equal, when one contains the other and the shorter
//! has at least 2 characters, or when both have at least 4 characters and one edit
//! (insert, delete or replace a character) turns one into the other.
//!
//! Each reason has a score ([`MatchReason::score`], out of 100); a match with several
//! reasons scores `1 - Π(1 - score)`, so a same phone *and* a similar name outranks either.
//! [`DuplicateIndex`] matches one entry against many: hash maps on the codes and phones,
//! name cores bucketed by the grid's parent.

use std::collections::HashMap;

use crate::model::Producer;
use crate::rules::GridTree;

/// What the duplicate check needs of a producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupeEntry {
    /// Record id (a match never names the entry itself).
    pub id: String,
    /// Name as entered.
    pub name: String,
    /// Grid code.
    pub grid: String,
    /// Unified social credit code, if any.
    pub credit_code: Option<String>,
    /// ID number, if any.
    pub id_number: Option<String>,
    /// Phone as entered.
    pub phone: String,
}

impl DedupeEntry {
    /// The fields of a producer.
    pub fn of(p: &Producer) -> Self {
        DedupeEntry {
            id: p.id.clone(),
            name: p.name.clone(),
            grid: p.grid.clone(),
            credit_code: p.credit_code.clone(),
            id_number: p.id_number.clone(),
            phone: p.phone.clone(),
        }
    }
}

/// Why two entries look like the same producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatchReason {
    /// The same unified social credit code.
    CreditCode,
    /// The same ID number.
    IdNumber,
    /// The same phone number.
    Phone,
    /// Equal name cores in the same or a neighbouring grid.
    SameName,
    /// Name cores one edit apart (both at least 4 characters), same or neighbouring grid.
    NameOneEdit,
    /// One name core contains the other (at least 2 characters), same or neighbouring grid.
    NameContains,
}

impl MatchReason {
    /// Every reason.
    pub const ALL: [MatchReason; 6] = [
        MatchReason::CreditCode,
        MatchReason::IdNumber,
        MatchReason::Phone,
        MatchReason::SameName,
        MatchReason::NameOneEdit,
        MatchReason::NameContains,
    ];

    /// The reason with stable identifier `id` ([`MatchReason::as_str`]).
    pub fn from_id(id: &str) -> Option<MatchReason> {
        MatchReason::ALL.into_iter().find(|r| r.as_str() == id)
    }

    /// Stable identifier.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchReason::CreditCode => "credit_code",
            MatchReason::IdNumber => "id_number",
            MatchReason::Phone => "phone",
            MatchReason::SameName => "same_name",
            MatchReason::NameOneEdit => "name_one_edit",
            MatchReason::NameContains => "name_contains",
        }
    }

    /// Chinese description shown to field staff.
    pub fn label_zh(self) -> &'static str {
        match self {
            MatchReason::CreditCode => "统一社会信用代码相同",
            MatchReason::IdNumber => "身份证号相同",
            MatchReason::Phone => "联系电话相同",
            MatchReason::SameName => "名称相同（同一或相邻网格）",
            MatchReason::NameOneEdit => "名称仅差一字（同一或相邻网格）",
            MatchReason::NameContains => "名称相互包含（同一或相邻网格）",
        }
    }

    /// How strongly the reason alone suggests the same producer, out of 100.
    pub fn score(self) -> u8 {
        match self {
            MatchReason::CreditCode => 95,
            MatchReason::IdNumber => 90,
            MatchReason::SameName => 80,
            MatchReason::Phone => 70,
            MatchReason::NameOneEdit => 60,
            MatchReason::NameContains => 50,
        }
    }
}

/// A likely duplicate: the other entry, why, and how likely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateMatch {
    /// Id of the other entry.
    pub id: String,
    /// Every reason that holds, in the order of [`MatchReason`].
    pub reasons: Vec<MatchReason>,
    /// Combined score out of 100: `1 - Π(1 - score)` of the reasons.
    pub score: u8,
}

/// Organisational suffixes stripped from the end of a name, longest first.
pub const ORG_SUFFIXES: &[&str] = &[
    "农民专业合作社联合社",
    "农牧民专业合作社",
    "专业合作社联合社",
    "农民专业合作社",
    "牧民专业合作社",
    "股份有限公司",
    "有限责任公司",
    "合作社联合社",
    "个体工商户",
    "专业合作社",
    "股份合作社",
    "种养殖户",
    "有限公司",
    "家庭农场",
    "家庭牧场",
    "养殖基地",
    "种植基地",
    "养殖园区",
    "养殖小区",
    "普通合伙",
    "有限合伙",
    "种养大户",
    "合作社",
    "联合社",
    "分公司",
    "养殖场",
    "种植场",
    "养殖户",
    "种植户",
    "经营部",
    "门市部",
    "经销部",
    "农资店",
    "公司",
    "牧场",
    "农场",
    "大户",
];

/// Place words a leading place name ends with.
const PLACE_WORDS: &[&str] = &[
    "苏木", "街道", "嘎查", "盟", "市", "旗", "县", "镇", "乡", "村",
];

/// Ordinary words that hold a place word: a place word that starts or ends one of these
/// does not end a place name.
const NOT_PLACES: &[&str] = &[
    "乡村", "旗舰", "超市", "城市", "都市", "集市", "门市", "市场", "村镇", "县域",
];

/// Prefixes stripped before the generic rule (they do not end in a place word).
const REGION_PREFIXES: &[&str] = &["内蒙古自治区", "内蒙古"];

/// Folds a full-width form (U+FF01–U+FF5E, the ideographic space U+3000) to its
/// half-width character; other characters are returned as they are.
pub fn fold_width(c: char) -> char {
    match c {
        '\u{3000}' => ' ',
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    }
}

/// A unified social credit code or ID number as compared: full-width folded, whitespace
/// removed, upper case (so `x` and `X` agree). `None` when nothing is left.
pub fn normalize_code(code: &str) -> Option<String> {
    let s: String = code
        .chars()
        .map(fold_width)
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (!s.is_empty()).then_some(s)
}

/// A phone number as compared: its digits (full-width folded) without a leading country
/// code (`+86`, `86`, `0086`). `None` when fewer than 7 digits are left.
pub fn normalize_phone(phone: &str) -> Option<String> {
    let digits: String = phone
        .chars()
        .map(fold_width)
        .filter(char::is_ascii_digit)
        .collect();
    let d = if digits.len() == 15 && digits.starts_with("0086") {
        &digits[4..]
    } else if digits.len() == 13 && digits.starts_with("86") {
        &digits[2..]
    } else {
        &digits[..]
    };
    (d.len() >= 7).then(|| d.to_string())
}

/// A name folded for comparison: half-width, ASCII lower case, letters, digits and Chinese
/// characters only.
pub fn normalize_name(name: &str) -> String {
    name.chars()
        .map(fold_width)
        .filter(|c| c.is_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The identifying core of a producer name (see the module documentation).
pub fn name_core(name: &str) -> String {
    let mut chars: Vec<char> = normalize_name(name).chars().collect();
    // Suffixes, longest first, repeatedly.
    'suffixes: loop {
        for suffix in ORG_SUFFIXES {
            let n = suffix.chars().count();
            if chars.len() >= n + 2 && ends_with(&chars, suffix) {
                chars.truncate(chars.len() - n);
                continue 'suffixes;
            }
        }
        break;
    }
    // Place prefixes, repeatedly.
    while let Some(n) = place_prefix_len(&chars) {
        chars.drain(..n);
    }
    chars.into_iter().collect()
}

fn ends_with(chars: &[char], suffix: &str) -> bool {
    let s: Vec<char> = suffix.chars().collect();
    chars.len() >= s.len() && chars[chars.len() - s.len()..] == s[..]
}

fn starts_with_at(chars: &[char], at: usize, word: &str) -> bool {
    (at..)
        .zip(word.chars())
        .all(|(i, c)| chars.get(i) == Some(&c))
}

/// Length of a place prefix that may be stripped, leaving at least 2 characters.
fn place_prefix_len(chars: &[char]) -> Option<usize> {
    for p in REGION_PREFIXES {
        let n = p.chars().count();
        if chars.len() >= n + 2 && starts_with_at(chars, 0, p) {
            return Some(n);
        }
    }
    // The first place word ending a prefix of 2-7 characters, at least 2 characters of
    // name before it.
    for end in 3..=7.min(chars.len()) {
        if chars.len() < end + 2 {
            break;
        }
        for w in PLACE_WORDS {
            let wn = w.chars().count();
            if end < wn + 2 || !starts_with_at(chars, end - wn, w) {
                continue;
            }
            // Not a place word where it belongs to an ordinary word.
            let start = end - wn;
            let ordinary = NOT_PLACES.iter().any(|o| {
                let on = o.chars().count();
                (start + on <= chars.len() && starts_with_at(chars, start, o))
                    || (end >= on && starts_with_at(chars, end - on, o))
            });
            if !ordinary {
                return Some(end);
            }
        }
    }
    None
}

/// Whether the Levenshtein distance of two strings of characters is at most 1.
fn within_one_edit(a: &[char], b: &[char]) -> bool {
    let (a, b) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    match b.len() - a.len() {
        0 => a.iter().zip(b).filter(|(x, y)| x != y).count() <= 1,
        1 => {
            let i = a.iter().zip(b).take_while(|(x, y)| x == y).count();
            a[i..] == b[i + 1..]
        }
        _ => false,
    }
}

/// How two name cores are similar, if they are (see the module documentation).
pub fn core_similarity(a: &str, b: &str) -> Option<MatchReason> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    if a == b {
        return Some(MatchReason::SameName);
    }
    // Counted before anything is allocated: the server compares one entry with every core
    // of its neighbourhood, and most pairs differ in length by more than one.
    let (na, nb) = (a.chars().count(), b.chars().count());
    if na.min(nb) >= 4 && na.abs_diff(nb) <= 1 {
        let (ac, bc): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        if within_one_edit(&ac, &bc) {
            return Some(MatchReason::NameOneEdit);
        }
    }
    let (short, long, short_n) = if na <= nb { (a, b, na) } else { (b, a, nb) };
    if short_n >= 2 && long.contains(short) {
        return Some(MatchReason::NameContains);
    }
    None
}

/// Whether two names are similar (their cores are, [`core_similarity`]).
pub fn names_similar(a: &str, b: &str) -> bool {
    core_similarity(&name_core(a), &name_core(b)).is_some()
}

/// Combined score of several reasons: `1 - Π(1 - score)`, out of 100.
pub fn combined_score(reasons: &[MatchReason]) -> u8 {
    let miss: f64 = reasons
        .iter()
        .map(|r| 1.0 - f64::from(r.score()) / 100.0)
        .product();
    ((1.0 - miss) * 100.0).round().clamp(0.0, 100.0) as u8
}

#[derive(Debug)]
struct Indexed {
    id: String,
    grid: String,
    core: String,
}

/// Entries indexed for matching one entry against many: hash maps on the normalised
/// codes and phone, name cores bucketed by the grid's parent.
pub struct DuplicateIndex<'t> {
    tree: &'t dyn GridTree,
    entries: Vec<Indexed>,
    by_credit_code: HashMap<String, Vec<usize>>,
    by_id_number: HashMap<String, Vec<usize>>,
    by_phone: HashMap<String, Vec<usize>>,
    /// Parent grid (or `~grid` for a grid without one) -> entries.
    by_parent: HashMap<String, Vec<usize>>,
    /// Grid -> entries.
    by_grid: HashMap<String, Vec<usize>>,
}

impl std::fmt::Debug for DuplicateIndex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DuplicateIndex")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl<'t> DuplicateIndex<'t> {
    /// An empty index over a grid tree.
    pub fn new(tree: &'t dyn GridTree) -> Self {
        DuplicateIndex {
            tree,
            entries: Vec::new(),
            by_credit_code: HashMap::new(),
            by_id_number: HashMap::new(),
            by_phone: HashMap::new(),
            by_parent: HashMap::new(),
            by_grid: HashMap::new(),
        }
    }

    /// An index of the given entries.
    pub fn with_entries<'e>(
        tree: &'t dyn GridTree,
        entries: impl IntoIterator<Item = &'e DedupeEntry>,
    ) -> Self {
        let mut index = Self::new(tree);
        for e in entries {
            index.insert(e);
        }
        index
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn bucket(&self, grid: &str) -> String {
        self.tree
            .parent_of(grid)
            .unwrap_or_else(|| format!("~{grid}"))
    }

    /// Adds an entry.
    pub fn insert(&mut self, e: &DedupeEntry) {
        let i = self.entries.len();
        if let Some(c) = e.credit_code.as_deref().and_then(normalize_code) {
            self.by_credit_code.entry(c).or_default().push(i);
        }
        if let Some(c) = e.id_number.as_deref().and_then(normalize_code) {
            self.by_id_number.entry(c).or_default().push(i);
        }
        if let Some(p) = normalize_phone(&e.phone) {
            self.by_phone.entry(p).or_default().push(i);
        }
        self.by_parent
            .entry(self.bucket(&e.grid))
            .or_default()
            .push(i);
        self.by_grid.entry(e.grid.clone()).or_default().push(i);
        self.entries.push(Indexed {
            id: e.id.clone(),
            grid: e.grid.clone(),
            core: name_core(&e.name),
        });
    }

    /// The likely duplicates of `e` among the indexed entries (never `e` itself, by id),
    /// highest score first, then by id.
    pub fn find(&self, e: &DedupeEntry) -> Vec<DuplicateMatch> {
        let mut found: HashMap<usize, Vec<MatchReason>> = HashMap::new();
        let mut note = |i: usize, r: MatchReason| {
            let v = found.entry(i).or_default();
            if !v.contains(&r) {
                v.push(r);
            }
        };
        let keyed = [
            (
                e.credit_code.as_deref().and_then(normalize_code),
                &self.by_credit_code,
                MatchReason::CreditCode,
            ),
            (
                e.id_number.as_deref().and_then(normalize_code),
                &self.by_id_number,
                MatchReason::IdNumber,
            ),
            (
                normalize_phone(&e.phone),
                &self.by_phone,
                MatchReason::Phone,
            ),
        ];
        for (key, map, reason) in keyed {
            if let Some(hits) = key.and_then(|k| map.get(&k)) {
                for &i in hits {
                    note(i, reason);
                }
            }
        }
        let core = name_core(&e.name);
        if !core.is_empty() {
            // Same parent (siblings and the grid itself), the grid's children, its parent.
            let parent = self.tree.parent_of(&e.grid);
            let buckets = [
                self.by_parent.get(&self.bucket(&e.grid)),
                self.by_parent.get(&e.grid),
                parent.as_ref().and_then(|p| self.by_grid.get(p)),
            ];
            for hits in buckets.into_iter().flatten() {
                for &i in hits {
                    if let Some(r) = core_similarity(&core, &self.entries[i].core) {
                        note(i, r);
                    }
                }
            }
        }
        let mut out: Vec<DuplicateMatch> = found
            .into_iter()
            .filter(|(i, _)| self.entries[*i].id != e.id)
            .map(|(i, mut reasons)| {
                reasons.sort();
                DuplicateMatch {
                    id: self.entries[i].id.clone(),
                    score: combined_score(&reasons),
                    reasons,
                }
            })
            .collect();
        out.sort_by(|a, b| b.score.cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        out
    }

    /// The grid of an indexed entry, by id (linear; for reports).
    pub fn grid_of(&self, id: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.grid.as_str())
    }
}

/// The likely duplicates of `candidate` among `existing` (builds an index; to check many
/// candidates, build a [`DuplicateIndex`] once).
pub fn find_duplicates(
    tree: &dyn GridTree,
    candidate: &DedupeEntry,
    existing: &[DedupeEntry],
) -> Vec<DuplicateMatch> {
    DuplicateIndex::with_entries(tree, existing).find(candidate)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::model::{GridKind, GridLevel, GridNode};
    use crate::store::TreeSnapshot;

    fn tree() -> TreeSnapshot {
        let node = |code: &str, level, parent: Option<&str>| GridNode {
            code: code.into(),
            name: code.into(),
            level,
            kind: GridKind::Pastoral,
            parent: parent.map(Into::into),
        };
        TreeSnapshot::from_nodes(&[
            node("B", GridLevel::Banner, None),
            node("T1", GridLevel::Township, Some("B")),
            node("T2", GridLevel::Township, Some("B")),
            node("V11", GridLevel::Village, Some("T1")),
            node("V12", GridLevel::Village, Some("T1")),
            node("V21", GridLevel::Village, Some("T2")),
            node("S111", GridLevel::SubGrid, Some("V11")),
        ])
    }

    fn entry(id: &str, name: &str, grid: &str, phone: &str) -> DedupeEntry {
        DedupeEntry {
            id: id.into(),
            name: name.into(),
            grid: grid.into(),
            credit_code: None,
            id_number: None,
            phone: phone.into(),
        }
    }

    #[test]
    fn suffix_list_is_longest_first_and_every_suffix_strips() {
        for w in ORG_SUFFIXES.windows(2) {
            assert!(
                w[0].chars().count() >= w[1].chars().count(),
                "{} before {}",
                w[0],
                w[1]
            );
        }
        for s in ORG_SUFFIXES {
            assert_eq!(name_core(&format!("浩日沁{s}")), "浩日沁", "{s}");
        }
        // Every suffix the brief names.
        for (name, core) in [
            ("巴彦乌拉合作社", "巴彦乌拉"),
            ("巴彦乌拉专业合作社", "巴彦乌拉"),
            ("巴彦乌拉农民专业合作社", "巴彦乌拉"),
            ("其其格家庭牧场", "其其格"),
            ("王建国家庭农场", "王建国"),
            ("额尔敦牧场", "额尔敦"),
            ("丰收农场", "丰收"),
            ("草原红乳业有限公司", "草原红乳业"),
            ("草原红乳业有限责任公司", "草原红乳业"),
            ("金牛养殖场", "金牛"),
            ("绿源种植场", "绿源"),
            // Stripped repeatedly.
            ("额尔敦牧场有限公司", "额尔敦"),
        ] {
            assert_eq!(name_core(name), core, "{name}");
        }
        // Never down to fewer than two characters.
        assert_eq!(name_core("合作社"), "合作社");
        assert_eq!(name_core("金合作社"), "金合作社");
        assert_eq!(name_core("牧场"), "牧场");
    }

    #[test]
    fn width_spaces_punctuation_and_places_are_folded() {
        assert_eq!(name_core("浩日沁　牧业（专业合作社）"), "浩日沁牧业");
        assert_eq!(name_core("ＡＢＣ牧业有限公司"), "abc牧业");
        assert_eq!(name_core("阿巴嘎旗浩日沁牧业专业合作社"), "浩日沁牧业");
        assert_eq!(
            name_core("内蒙古锡林郭勒盟阿巴嘎旗别力古台镇浩日沁牧业有限公司"),
            "浩日沁牧业"
        );
        assert_eq!(name_core("巴彦嘎查·其其格家庭牧场"), "其其格");
        assert_eq!(name_core("内蒙古伊利实业集团股份有限公司"), "伊利实业集团");
        // Place words inside ordinary words stay.
        assert_eq!(name_core("新时代乡村振兴合作社"), "新时代乡村振兴");
        assert_eq!(name_core("草原旗舰店"), "草原旗舰店");
        assert_eq!(name_core("红旗牧场"), "红旗");
        // A place name is not stripped down to fewer than two characters.
        assert_eq!(name_core("阿巴嘎旗牧场"), "阿巴嘎旗");
    }

    #[test]
    fn codes_and_phones_normalise() {
        assert_eq!(
            normalize_code(" 15252219800101123x ").as_deref(),
            Some("15252219800101123X")
        );
        assert_eq!(
            normalize_code("９１１５２５２２ＭＡ０Ｒ７ＰＱ１Ｘ").as_deref(),
            Some("91152522MA0R7PQ1X")
        );
        assert_eq!(normalize_code("  "), None);
        assert_eq!(
            normalize_phone("１３９ １２３４ ５６７８").as_deref(),
            Some("13912345678")
        );
        assert_eq!(
            normalize_phone("+86 139-1234-5678").as_deref(),
            Some("13912345678")
        );
        assert_eq!(
            normalize_phone("8613912345678").as_deref(),
            Some("13912345678")
        );
        assert_eq!(
            normalize_phone("0086 13912345678").as_deref(),
            Some("13912345678")
        );
        assert_eq!(
            normalize_phone("0479-1234567").as_deref(),
            Some("04791234567")
        );
        assert_eq!(normalize_phone("110"), None);
    }

    #[test]
    fn similar_names_positive_and_negative() {
        let similar = [
            ("阿巴嘎旗浩日沁牧业专业合作社", "浩日沁牧业合作社"),
            ("其其格家庭牧场", "其其格牧场"),
            ("锡林浩特市草原红乳业有限公司", "草原红乳业有限责任公司"),
            // One edit, cores of 4+ characters.
            ("巴彦乌拉养殖专业合作社", "巴音乌拉养殖合作社"),
            ("宝力根陶海牧场", "宝力根淘海牧场"),
            // Containment, 2+ characters.
            ("浩日沁合作社", "浩日沁牧业有限公司"),
            ("ＡＢＣ牧业", "abc牧业"),
        ];
        for (a, b) in similar {
            assert!(names_similar(a, b), "{a} ~ {b}");
        }
        let different = [
            ("浩日沁牧业合作社", "额尔敦牧业合作社"),
            // One edit, but cores of 3 characters: too short to say.
            ("其其格家庭牧场", "其木格家庭牧场"),
            ("王建国家庭农场", "王建军家庭农场"),
            ("巴彦乌拉合作社", "巴彦淖尔合作社"),
            ("金牛养殖场", "银牛养殖场"),
        ];
        for (a, b) in different {
            assert!(!names_similar(a, b), "{a} !~ {b}");
        }
        assert_eq!(
            core_similarity("浩日沁", "浩日沁"),
            Some(MatchReason::SameName)
        );
        assert_eq!(
            core_similarity("巴彦乌拉", "巴音乌拉"),
            Some(MatchReason::NameOneEdit)
        );
        assert_eq!(
            core_similarity("浩日沁", "浩日沁牧业"),
            Some(MatchReason::NameContains)
        );
        // A single character contained is not enough.
        assert_eq!(core_similarity("金", "金牛"), None);
    }

    #[test]
    fn index_matches_codes_anywhere_names_only_nearby() {
        let t = tree();
        let mut a = entry("a", "浩日沁牧业专业合作社", "V11", "13912345678");
        a.credit_code = Some("93152522MA0R7PQ1X1".into());
        let mut b = entry("b", "其其格家庭牧场", "V21", "13800000001");
        b.id_number = Some("15252219800101123X".into());
        let c = entry("c", "额尔敦牧场", "V12", "13800000002");
        let d = entry("d", "巴彦乌拉养殖场", "T1", "13800000003");
        let e = entry("e", "宝力根合作社", "S111", "13800000004");
        let existing = vec![a, b, c, d, e];
        let index = DuplicateIndex::with_entries(&t, &existing);
        assert_eq!(index.len(), 5);

        // Same credit code in another township, lower case and full-width: found.
        let mut q = entry("q", "完全不同的名字", "V21", "13700000000");
        q.credit_code = Some("９３１５２５２２ma0r7pq1x1".into());
        let m = index.find(&q);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].id, "a");
        assert_eq!(m[0].reasons, vec![MatchReason::CreditCode]);
        assert_eq!(m[0].score, 95);

        // Same ID number with a lower-case x; same phone with full-width digits and +86.
        let mut q = entry("q", "毫不相干", "V11", "+86 １３８０００００００２");
        q.id_number = Some("15252219800101123x".into());
        let m = index.find(&q);
        let ids: Vec<&str> = m.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, vec!["b", "c"]);
        assert_eq!(m[0].reasons, vec![MatchReason::IdNumber]);
        assert_eq!(m[1].reasons, vec![MatchReason::Phone]);

        // A similar name in a sibling village: found; in another township: not.
        let q = entry("q", "额尔敦牧场有限公司", "V11", "13700000000");
        let m = index.find(&q);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].id, "c");
        assert_eq!(m[0].reasons, vec![MatchReason::SameName]);
        let q = entry("q", "额尔敦牧场有限公司", "V21", "13700000000");
        assert!(index.find(&q).is_empty());

        // The parent grid and a child grid are neighbours too.
        let q = entry("q", "巴彦乌拉合作社", "V12", "13700000000");
        assert_eq!(index.find(&q)[0].id, "d");
        let q = entry("q", "宝力根牧场", "V11", "13700000000");
        assert_eq!(index.find(&q)[0].id, "e");

        // Several reasons add up; the entry itself is never its own duplicate.
        let q = entry("q", "阿巴嘎旗浩日沁牧业合作社", "V12", "139 1234 5678");
        let m = index.find(&q);
        assert_eq!(m[0].id, "a");
        assert_eq!(
            m[0].reasons,
            vec![MatchReason::Phone, MatchReason::SameName]
        );
        assert_eq!(m[0].score, 94);
        assert!(index.find(&existing[0]).is_empty());
        assert_eq!(find_duplicates(&t, &q, &existing)[0].reasons, m[0].reasons);
    }

    #[test]
    fn unknown_grid_neighbours_only_itself() {
        let t = tree();
        let existing = vec![entry("a", "浩日沁牧业", "X1", "13800000001")];
        let index = DuplicateIndex::with_entries(&t, &existing);
        assert_eq!(index.find(&entry("q", "浩日沁牧业", "X1", "1"))[0].id, "a");
        assert!(index.find(&entry("q", "浩日沁牧业", "X2", "1")).is_empty());
    }
}
