//! Shared fixtures for the core integration tests: a grid tree, people, valid producers.
#![allow(dead_code, clippy::unwrap_used)]

use gridsync_core::model::{
    Answer, AnswerValue, GridKind, GridLevel, GridNode, Person, Producer, ProducerType, Role,
    Visit, YesNoNa,
};
use gridsync_core::store::Store;
use gridsync_core::validate::uscc_check_char;

/// Region code.
pub const REGION: &str = "15";
/// League code.
pub const LEAGUE: &str = "1525";
/// Banner (county) code.
pub const BANNER: &str = "152522";
/// First township (level-1 grid).
pub const TOWN1: &str = "152522101";
/// Second township.
pub const TOWN2: &str = "152522102";
/// Villages (level-2 grids).
pub const VIL1: &str = "152522101201";
pub const VIL2: &str = "152522101202";
pub const VIL3: &str = "152522102201";
/// Level-3 sub-grid inside VIL1.
pub const SUB1: &str = "152522101201-1";

fn node(code: &str, name: &str, level: GridLevel, parent: Option<&str>) -> GridNode {
    GridNode {
        code: code.into(),
        name: name.into(),
        level,
        kind: GridKind::Pastoral,
        parent: parent.map(Into::into),
    }
}

/// The grid tree region -> league -> banner -> 2 townships -> 3 villages -> 1 sub-grid.
pub fn grid_tree() -> Vec<GridNode> {
    vec![
        node(REGION, "内蒙古自治区", GridLevel::Region, None),
        node(LEAGUE, "锡林郭勒盟", GridLevel::League, Some(REGION)),
        node(BANNER, "阿巴嘎旗", GridLevel::Banner, Some(LEAGUE)),
        node(TOWN1, "别力古台镇", GridLevel::Township, Some(BANNER)),
        node(TOWN2, "洪格尔高勒镇", GridLevel::Township, Some(BANNER)),
        node(VIL1, "巴彦图嘎嘎查", GridLevel::Village, Some(TOWN1)),
        node(VIL2, "宝格都乌拉嘎查", GridLevel::Village, Some(TOWN1)),
        node(VIL3, "萨如拉图雅嘎查", GridLevel::Village, Some(TOWN2)),
        node(SUB1, "巴彦图嘎东片", GridLevel::SubGrid, Some(VIL1)),
    ]
}

fn person(id: &str, name: &str, phone: &str, role: Role, grids: &[&str]) -> Person {
    Person {
        id: id.into(),
        name: name.into(),
        phone: phone.into(),
        role,
        grids: grids.iter().map(|g| g.to_string()).collect(),
    }
}

/// Liaison of VIL1.
pub fn liaison() -> Person {
    person("liaison-1", "巴特尔", "13904791111", Role::Liaison, &[VIL1])
}
/// Liaison of VIL2.
pub fn liaison2() -> Person {
    person("liaison-2", "其其格", "13904792222", Role::Liaison, &[VIL2])
}
/// Supervisor of TOWN1.
pub fn supervisor() -> Person {
    person("super-1", "张伟", "13904793333", Role::Supervisor, &[TOWN1])
}
/// County reviewer of the banner.
pub fn county() -> Person {
    person(
        "county-1",
        "李娜",
        "13904794444",
        Role::CountyReviewer,
        &[BANNER],
    )
}

/// A store in `dir` with the grid tree loaded, acting as `who`.
pub fn store_as(path: &std::path::Path, who: &Person) -> Store {
    let s = Store::open(path).expect("open store");
    s.upsert_grids(&grid_tree()).expect("grids");
    s.set_profile(who).expect("profile");
    s
}

/// A valid 18-digit resident ID number built from a serial (check digit computed).
pub fn id_number(serial: u32) -> String {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const C: &[u8] = b"10X98765432";
    let first = format!("15252219800101{:03}", serial % 1000);
    let sum: u32 = first
        .bytes()
        .zip(W)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    format!("{first}{}", C[(sum % 11) as usize] as char)
}

/// A valid unified social credit code built from a serial.
pub fn credit_code(serial: u32) -> String {
    let first = format!("93152522MA{:07}", serial % 10_000_000);
    format!("{first}{}", uscc_check_char(&first).expect("check char"))
}

/// A valid family-ranch producer in `grid`.
pub fn ranch(name: &str, grid: &str, serial: u32) -> Producer {
    let mut p = Producer::new(
        name,
        ProducerType::FamilyRanch,
        "额尔敦",
        "13947912345",
        grid,
        "",
        gridsync_core::now_ms(),
    );
    p.id_number = Some(id_number(serial));
    p.address = "阿巴嘎旗别力古台镇".into();
    p.products = vec!["羊肉".into()];
    p
}

/// A valid cooperative in `grid`.
pub fn cooperative(name: &str, grid: &str, serial: u32) -> Producer {
    let mut p = Producer::new(
        name,
        ProducerType::Cooperative,
        "苏和",
        "0479-8221234",
        grid,
        "",
        gridsync_core::now_ms(),
    );
    p.credit_code = Some(credit_code(serial));
    p
}

/// Answers every required item of the default template (all "yes", "other" as text).
pub fn answer_required(v: &mut Visit) {
    for id in [
        "production_records",
        "input_purchase",
        "drug_use",
        "additives",
        "input_waste",
        "compliance_certificate",
    ] {
        v.answers.insert(
            id.into(),
            Answer {
                value: AnswerValue::YesNo(YesNoNa::Yes),
                note: None,
            },
        );
    }
    v.answers.insert(
        "other".into(),
        Answer {
            value: AnswerValue::Text("无".into()),
            note: None,
        },
    );
}

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;
