//! A deterministic dataset generator (seeded) for the demo, the tests and the benchmarks:
//! a banner with townships and villages, people, producers with realistic Chinese fields,
//! and three years of patrol visits against the default template.

use gridsync_core::model::{
    default_template, Answer, AnswerValue, Certification, Finding, GeoPoint, GridKind, GridLevel,
    GridNode, LivestockCount, Person, Producer, ProducerStatus, ProducerType, RapidTest,
    Rectification, ResponsibilityLetter, RiskLevel, Role, Severity, Species, TestMethod, Verdict,
    Visit, VisitStatus, YesNoNa,
};
use gridsync_core::validate::uscc_check_char;

/// Size of a generated dataset.
#[derive(Debug, Clone)]
pub struct DatasetSpec {
    /// Seed: the same seed gives the same dataset.
    pub seed: u64,
    /// Code prefix of the banner (all codes start with it).
    pub banner_code: String,
    /// Banner name.
    pub banner_name: String,
    /// Townships.
    pub townships: usize,
    /// Villages per township.
    pub villages_per_township: usize,
    /// Producers per township.
    pub producers_per_township: usize,
    /// Visits per producer (spread over three years).
    pub visits_per_producer: usize,
}

impl DatasetSpec {
    /// One township: 20 villages, 1,500 producers, 18,000 visits.
    pub fn township(seed: u64) -> Self {
        DatasetSpec {
            seed,
            banner_code: "152522".into(),
            banner_name: "阿巴嘎旗".into(),
            townships: 1,
            villages_per_township: 20,
            producers_per_township: 1500,
            visits_per_producer: 12,
        }
    }

    /// A banner of ten townships at township scale.
    pub fn banner(seed: u64) -> Self {
        DatasetSpec {
            townships: 10,
            ..Self::township(seed)
        }
    }

    /// The small demo banner.
    pub fn demo() -> Self {
        DatasetSpec {
            seed: 2026,
            banner_code: "DEMO".into(),
            banner_name: "【演示】示范旗".into(),
            townships: 2,
            villages_per_township: 3,
            producers_per_township: 24,
            visits_per_producer: 3,
        }
    }
}

/// A generated dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Grid tree from the region down to villages.
    pub grids: Vec<GridNode>,
    /// People: a liaison per village, a supervisor per township, a county reviewer, an admin.
    pub people: Vec<Person>,
    /// Producers.
    pub producers: Vec<Producer>,
    /// Visits.
    pub visits: Vec<Visit>,
}

impl Dataset {
    /// Code of the banner node.
    pub fn banner(&self) -> &GridNode {
        &self.grids[2]
    }
    /// Township nodes.
    pub fn townships(&self) -> impl Iterator<Item = &GridNode> {
        self.grids.iter().filter(|g| g.level == GridLevel::Township)
    }
    /// Village nodes.
    pub fn villages(&self) -> impl Iterator<Item = &GridNode> {
        self.grids.iter().filter(|g| g.level == GridLevel::Village)
    }
    /// First person with a role.
    pub fn person(&self, role: Role) -> Option<&Person> {
        self.people.iter().find(|p| p.role == role)
    }
}

/// SplitMix64: small, fast, and stable across library versions.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    /// One of the items.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    /// A deterministic UUID-shaped id.
    pub fn uuid(&mut self) -> String {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        b[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        uuid::Builder::from_random_bytes(b).into_uuid().to_string()
    }
}

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "包", "白", "乌", "宝", "巴", "敖",
    "额", "那", "苏", "其",
];
const GIVEN: &[&str] = &[
    "巴特尔",
    "其木格",
    "额尔敦",
    "乌日娜",
    "苏和",
    "萨仁",
    "宝音",
    "图雅",
    "建国",
    "秀英",
    "志强",
    "桂兰",
    "满都拉",
    "阿拉坦",
    "斯琴",
    "朝鲁",
    "海军",
    "玉梅",
    "金花",
    "那顺",
];
const TOWNSHIPS: &[&str] = &[
    "别力古台镇",
    "洪格尔高勒镇",
    "查干淖尔镇",
    "伊和高勒苏木",
    "那仁宝拉格苏木",
    "吉尔嘎朗图苏木",
    "巴彦图嘎苏木",
    "宝格达乌拉苏木",
    "额尔敦高毕苏木",
    "青格勒宝拉格",
];
const VILLAGE_WORDS: &[&str] = &[
    "巴彦",
    "乌兰",
    "查干",
    "呼和",
    "宝力格",
    "额尔敦",
    "塔林",
    "哈日",
    "阿拉坦",
    "吉日嘎郎",
    "沙日",
    "希日",
    "芒来",
    "敖包",
    "陶森",
    "温都尔",
    "那仁",
    "布日都",
    "伊和",
    "巴嘎",
];
const VILLAGE_SUFFIX: &[&str] = &["嘎查", "嘎查", "嘎查", "村"];
const PRODUCTS: &[&str] = &[
    "羊肉",
    "牛肉",
    "鲜奶",
    "奶豆腐",
    "马铃薯",
    "燕麦",
    "玉米",
    "葵花籽",
    "羊绒",
    "马奶",
    "驼奶",
    "蔬菜",
    "牧草",
    "鸡蛋",
];
const ADDRESS_WORDS: &[&str] = &["东", "西", "南", "北"];
const FINDINGS: &[&str] = &[
    "生产记录不完整，缺少近两个月的用药记录",
    "兽药存放与饲料混放，未单独上锁",
    "农药包装废弃物随意丢弃，未集中回收",
    "未按规定开具承诺达标合格证",
    "休药期内出栏记录不清",
    "投入品购买票据缺失",
];
const SAMPLES: &[(&str, &str, TestMethod, &str, Option<&str>)] = &[
    (
        "羊尿",
        "克伦特罗",
        TestMethod::ColloidalGold,
        "瘦肉精三联检测卡（某生物科技）",
        None,
    ),
    (
        "牛尿",
        "莱克多巴胺",
        TestMethod::ColloidalGold,
        "莱克多巴胺检测卡（某生物科技）",
        None,
    ),
    (
        "菠菜",
        "有机磷和氨基甲酸酯类农药",
        TestMethod::EnzymeInhibition,
        "农药残留速测卡（某仪器）",
        Some("%"),
    ),
    (
        "白菜",
        "有机磷和氨基甲酸酯类农药",
        TestMethod::EnzymeInhibition,
        "农药残留速测卡（某仪器）",
        Some("%"),
    ),
];

/// 2026-01-01T00:00:00Z: generated times are fixed, not taken from the clock.
pub const DATASET_EPOCH_MS: i64 = 1_767_225_600_000;
const DAY_MS: i64 = 86_400_000;

/// A valid resident ID number (GB 11643 check digit) of `region` (6 digits), random birth
/// date and serial.
pub fn id_number(rng: &mut Rng, region: &str) -> String {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let year = 1950 + rng.below(50);
    let month = 1 + rng.below(12);
    let day = 1 + rng.below(28);
    let first = format!("{region}{year:04}{month:02}{day:02}{:03}", rng.below(1000));
    let sum: u32 = first
        .bytes()
        .zip(W)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    let check = b"10X98765432"[(sum % 11) as usize] as char;
    format!("{first}{check}")
}

fn credit_code(rng: &mut Rng, region: &str) -> String {
    const CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
    let mut s = String::from("93");
    s.push_str(region);
    for _ in 0..9 {
        s.push(CHARS[rng.below(CHARS.len() as u64) as usize] as char);
    }
    let check = uscc_check_char(&s).unwrap_or('0');
    s.push(check);
    s
}

fn phone(rng: &mut Rng) -> String {
    format!(
        "1{}{:09}",
        *rng.pick(&[3, 5, 8, 9]),
        rng.below(1_000_000_000)
    )
}

fn person_name(rng: &mut Rng) -> String {
    format!("{}{}", rng.pick(SURNAMES), rng.pick(GIVEN))
}

/// Generates a dataset.
pub fn generate(spec: &DatasetSpec) -> Dataset {
    let mut rng = Rng::new(spec.seed);
    let demo = spec.banner_code == "DEMO";
    let tag = |s: &str| {
        if demo {
            format!("【演示】{s}")
        } else {
            s.to_string()
        }
    };
    let region_code = format!("{}-R", spec.banner_code);
    let league_code = format!("{}-L", spec.banner_code);
    let banner_code = spec.banner_code.clone();
    let mut grids = vec![
        GridNode {
            code: region_code.clone(),
            name: tag("内蒙古自治区"),
            level: GridLevel::Region,
            kind: GridKind::Mixed,
            parent: None,
        },
        GridNode {
            code: league_code.clone(),
            name: tag("锡林郭勒盟"),
            level: GridLevel::League,
            kind: GridKind::Pastoral,
            parent: Some(region_code),
        },
        GridNode {
            code: banner_code.clone(),
            name: spec.banner_name.clone(),
            level: GridLevel::Banner,
            kind: GridKind::Pastoral,
            parent: Some(league_code),
        },
    ];
    let mut people = vec![
        Person {
            id: format!("{banner_code}-admin"),
            name: tag("系统管理员"),
            phone: phone(&mut rng),
            role: Role::Admin,
            grids: vec![banner_code.clone()],
        },
        Person {
            id: format!("{banner_code}-county"),
            name: tag(&person_name(&mut rng)),
            phone: phone(&mut rng),
            role: Role::CountyReviewer,
            grids: vec![banner_code.clone()],
        },
    ];
    let region_digits = "152522";
    let mut producers = Vec::new();
    let mut visits = Vec::new();
    let template = default_template("builtin");
    for t in 0..spec.townships {
        let t_code = format!("{banner_code}-T{:02}", t + 1);
        let t_kind = if t % 3 == 2 {
            GridKind::Mixed
        } else {
            GridKind::Pastoral
        };
        grids.push(GridNode {
            code: t_code.clone(),
            name: tag(TOWNSHIPS[t % TOWNSHIPS.len()]),
            level: GridLevel::Township,
            kind: t_kind,
            parent: Some(banner_code.clone()),
        });
        people.push(Person {
            id: format!("{t_code}-sup"),
            name: tag(&person_name(&mut rng)),
            phone: phone(&mut rng),
            role: Role::Supervisor,
            grids: vec![t_code.clone()],
        });
        let mut villages = Vec::new();
        for v in 0..spec.villages_per_township {
            let v_code = format!("{t_code}-V{:02}", v + 1);
            let name = format!(
                "{}{}",
                VILLAGE_WORDS[(v + t * 7) % VILLAGE_WORDS.len()],
                rng.pick(VILLAGE_SUFFIX)
            );
            grids.push(GridNode {
                code: v_code.clone(),
                name: tag(&name),
                level: GridLevel::Village,
                kind: t_kind,
                parent: Some(t_code.clone()),
            });
            people.push(Person {
                id: format!("{v_code}-lia"),
                name: tag(&person_name(&mut rng)),
                phone: phone(&mut rng),
                role: Role::Liaison,
                grids: vec![v_code.clone()],
            });
            villages.push((v_code, name));
        }
        for _ in 0..spec.producers_per_township {
            let (v_code, v_name) = rng.pick(&villages).clone();
            let liaison = format!("{v_code}-lia");
            let supervisor = format!("{t_code}-sup");
            let ty = *rng.pick(&[
                ProducerType::FamilyRanch,
                ProducerType::FamilyRanch,
                ProducerType::LargeHousehold,
                ProducerType::SmallHousehold,
                ProducerType::SmallHousehold,
                ProducerType::FamilyFarm,
                ProducerType::Cooperative,
                ProducerType::Enterprise,
                ProducerType::InputDealer,
                ProducerType::Purchaser,
            ]);
            let owner = person_name(&mut rng);
            let created =
                DATASET_EPOCH_MS - (3 * 365 + 30) * DAY_MS + rng.below(30) as i64 * DAY_MS;
            let mut p = Producer::new(
                match ty {
                    ProducerType::Cooperative => {
                        format!("{v_name}{}养殖专业合作社", rng.pick(SURNAMES))
                    }
                    ProducerType::Enterprise => {
                        format!("锡林郭勒{}牧业有限公司", rng.pick(VILLAGE_WORDS))
                    }
                    ProducerType::InputDealer => format!("{v_name}农牧资经销部"),
                    ProducerType::Purchaser => format!("{owner}牲畜收购点"),
                    ProducerType::FamilyRanch => format!("{owner}家庭牧场"),
                    ProducerType::FamilyFarm => format!("{owner}家庭农场"),
                    _ => owner.clone(),
                },
                ty,
                owner,
                phone(&mut rng),
                v_code.clone(),
                liaison.clone(),
                created,
            );
            p.id = rng.uuid();
            if ty.needs_credit_code() {
                p.credit_code = Some(credit_code(&mut rng, region_digits));
            } else {
                p.id_number = Some(id_number(&mut rng, region_digits));
            }
            p.address = format!(
                "{}{}{}{}公里",
                tag(TOWNSHIPS[t % TOWNSHIPS.len()]),
                v_name,
                rng.pick(ADDRESS_WORDS),
                1 + rng.below(30)
            );
            p.location = Some(GeoPoint {
                lat: 43.5 + rng.below(20_000) as f64 / 10_000.0,
                lon: 114.0 + rng.below(30_000) as f64 / 10_000.0,
            });
            let n_products = 1 + rng.below(3) as usize;
            for _ in 0..n_products {
                let prod = rng.pick(PRODUCTS).to_string();
                if !p.products.contains(&prod) {
                    p.products.push(prod);
                }
            }
            if rng.chance(0.3) {
                p.scale.crop_area_mu = Some((10 + rng.below(500)) as f64);
            }
            let species = *rng.pick(&[
                Species::SheepGoat,
                Species::BeefCattle,
                Species::DairyCow,
                Species::Horse,
                Species::Camel,
            ]);
            p.scale.livestock.insert(
                species,
                LivestockCount {
                    on_hand: Some(20 + rng.below(800) as u32),
                    sold_per_year: Some(rng.below(400) as u32),
                },
            );
            if rng.chance(0.15) {
                p.certifications.push(*rng.pick(&[
                    Certification::Green,
                    Certification::Organic,
                    Certification::GeographicalIndication,
                ]));
            }
            p.issues_compliance_certificates = rng.chance(0.6);
            if rng.chance(0.8) {
                p.responsibility_letter = Some(ResponsibilityLetter {
                    signed_on: format!("2023-{:02}-{:02}", 1 + rng.below(12), 1 + rng.below(28)),
                });
            }
            p.risk = *rng.pick(&[
                RiskLevel::Low,
                RiskLevel::Low,
                RiskLevel::Medium,
                RiskLevel::High,
            ]);
            if rng.chance(0.03) {
                p.status = ProducerStatus::Closed;
            }
            p.updated_at_ms = created;
            for k in 0..spec.visits_per_producer {
                let span = 3 * 365 * DAY_MS / spec.visits_per_producer.max(1) as i64;
                let start = created
                    + 30 * DAY_MS
                    + span * k as i64
                    + rng.below(20) as i64 * DAY_MS
                    + 9 * 3_600_000;
                let inspector = if rng.chance(0.7) {
                    liaison.clone()
                } else {
                    supervisor.clone()
                };
                let mut v = Visit::new(
                    p.id.clone(),
                    v_code.clone(),
                    inspector.clone(),
                    &template,
                    start,
                );
                v.id = rng.uuid();
                v.location = p.location;
                for item in &template.items {
                    if !item.applies(ty) {
                        continue;
                    }
                    let value = match item.id.as_str() {
                        "other" => AnswerValue::Text(if rng.chance(0.2) {
                            "圈舍卫生良好，档案齐全。".into()
                        } else {
                            "无".into()
                        }),
                        "site_photos" => {
                            AnswerValue::Photos(vec![format!("photo/{}.jpg", rng.uuid())])
                        }
                        _ => AnswerValue::YesNo(if rng.chance(0.9) {
                            YesNoNa::Yes
                        } else if rng.chance(0.5) {
                            YesNoNa::No
                        } else {
                            YesNoNa::NotApplicable
                        }),
                    };
                    v.answers
                        .insert(item.id.clone(), Answer { value, note: None });
                }
                if rng.chance(0.12) {
                    v.findings.push(Finding {
                        id: rng.uuid(),
                        item_id: Some("drug_use".into()),
                        description: rng.pick(FINDINGS).to_string(),
                        severity: if rng.chance(0.8) {
                            Severity::Minor
                        } else {
                            Severity::Major
                        },
                        photos: vec![],
                        recorded_by: inspector.clone(),
                        recorded_at_ms: start + 600_000,
                    });
                    if rng.chance(0.5) {
                        let deadline_day = (start - DATASET_EPOCH_MS) / DAY_MS + 15;
                        v.rectification = Some(Rectification {
                            required: true,
                            deadline: date_of(DATASET_EPOCH_MS + deadline_day * DAY_MS),
                            notice_number: format!(
                                "阿农整〔{}〕{:03}号",
                                2023 + k / 4,
                                rng.below(999)
                            ),
                            resolved_at_ms: if k + 1 < spec.visits_per_producer {
                                Some(start + 20 * DAY_MS)
                            } else {
                                None
                            },
                        });
                    }
                }
                if rng.chance(0.08) {
                    let (sample, item, method, kit, unit) = *rng.pick(SAMPLES);
                    v.rapid_tests.push(RapidTest {
                        id: rng.uuid(),
                        sample: sample.into(),
                        item: item.into(),
                        method,
                        kit: kit.into(),
                        value: unit.map(|_| rng.below(600) as f64 / 10.0),
                        unit: unit.map(String::from),
                        verdict: if rng.chance(0.95) {
                            Verdict::Pass
                        } else {
                            Verdict::Suspect
                        },
                        operator: inspector.clone(),
                        tested_at_ms: start + 900_000,
                    });
                }
                v.status = VisitStatus::Completed;
                v.ended_at_ms = Some(start + 3_600_000);
                v.updated_at_ms = start + 3_600_000;
                visits.push(v);
            }
            producers.push(p);
        }
    }
    Dataset {
        grids,
        people,
        producers,
        visits,
    }
}

/// `YYYY-MM-DD` of a UTC timestamp.
pub fn date_of(ms: i64) -> String {
    gridsync_core::dates::utc_date(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_valid() {
        let a = generate(&DatasetSpec::demo());
        let b = generate(&DatasetSpec::demo());
        assert_eq!(a.producers, b.producers);
        assert_eq!(a.visits.len(), 2 * 24 * 3);
        for p in &a.producers {
            gridsync_core::validate::validate_producer(p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.name));
        }
        let t = default_template("builtin");
        for v in &a.visits {
            let pt = a
                .producers
                .iter()
                .find(|p| p.id == v.producer_id)
                .map(|p| p.producer_type);
            gridsync_core::validate::validate_visit(v, Some(&t), pt).unwrap();
        }
        assert_eq!(date_of(DATASET_EPOCH_MS), "2026-01-01");
        assert_eq!(date_of(DATASET_EPOCH_MS - DAY_MS), "2025-12-31");
    }
}
