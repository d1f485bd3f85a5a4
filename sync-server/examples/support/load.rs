//! What the ingest examples share: the grids and liaisons of a generated banner, the
//! producers they push (identities from the dataset generator, names from a pool or
//! unique), each producer as the phone pushes it, and medians. Included by `ingest.rs`
//! (through HTTP) and `push_storage.rs` (the storage push alone) with `#[path]`.

#![allow(dead_code)]

use gridsync_core::doc::RecordDoc;
use gridsync_core::model::{GridLevel, Person, Producer, Record, Role};
use gridsync_core::sync::protocol::PushRecord;
use gridsync_server::dataset::{generate, DatasetSpec};
use gridsync_server::storage::Storage;

pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let i = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    s[i.min(s.len() - 1)]
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

/// Grids and `devices` liaisons spread over the villages of a generated banner.
pub fn seed(
    storage: &dyn Storage,
    devices: usize,
    townships: usize,
) -> Result<Vec<Person>, String> {
    let data = generate(&DatasetSpec {
        townships: townships.max(1),
        villages_per_township: 10,
        producers_per_township: 0,
        visits_per_producer: 0,
        ..DatasetSpec::township(7)
    });
    storage
        .import_grids(&data.grids)
        .map_err(|e| e.to_string())?;
    let villages: Vec<String> = data
        .grids
        .iter()
        .filter(|g| g.level == GridLevel::Village)
        .map(|g| g.code.clone())
        .collect();
    let mut people = Vec::with_capacity(devices);
    for i in 0..devices {
        let p = Person {
            id: format!("bench-liaison-{i:04}"),
            name: format!("协管员{i}"),
            phone: format!("139{:08}", i),
            role: Role::Liaison,
            grids: vec![villages[i % villages.len()].clone()],
        };
        gridsync_server::admin::add_person(storage, &p).map_err(|e| e.to_string())?;
        people.push(p);
    }
    Ok(people)
}

/// Producers as the generator makes them (names, owners, phones, ID numbers, products of
/// their own): each pushed producer takes one's identity, so that no two of them are the
/// same person by phone or ID number, as in the field (the server's duplicate check after
/// each push compares them).
pub fn identities(count: usize, names: &str) -> Result<Vec<Producer>, String> {
    let mut out = generate(&DatasetSpec {
        townships: 2,
        villages_per_township: 10,
        producers_per_township: count.div_ceil(2),
        visits_per_producer: 0,
        ..DatasetSpec::township(11)
    })
    .producers;
    match names {
        "dataset" => {}
        "pool" => {
            for (i, p) in out.iter_mut().enumerate() {
                rename(p, i);
            }
        }
        "unique" => {
            for (i, p) in out.iter_mut().enumerate() {
                name_after(p, spelled(i));
            }
        }
        other => {
            return Err(format!(
                "--names must be pool, dataset or unique, not {other}"
            ))
        }
    }
    Ok(out)
}

/// `i` as a name like no other's: its six decimal digits, each spelled with two letters,
/// so that two such names differ in two letters or more at the same length (never "one
/// edit apart", never one inside the other).
fn spelled(i: usize) -> String {
    const A: [char; 10] = ['甲', '乙', '丙', '丁', '戊', '己', '庚', '辛', '壬', '癸'];
    const B: [char; 10] = ['子', '丑', '寅', '卯', '辰', '巳', '午', '未', '申', '酉'];
    format!("{:06}", i % 1_000_000)
        .bytes()
        .flat_map(|b| {
            let d = usize::from(b - b'0');
            [A[d], B[d]]
        })
        .collect()
}

/// Gives `p` an owner's name from a pool of about 6,000 (20 surnames, or none as many
/// herders go by a given name alone, times 300 given names of two syllables) and its
/// type's name for it. How many namesakes a township has in the field is not known to us;
/// with this pool, at a banner's density, nearly half the new producers (46 % in the
/// default run) are similar to another in their township (a short given name is contained
/// in the names of many), where the generator's 400 names make nearly every one.
fn rename(p: &mut Producer, i: usize) {
    const SURNAMES: [&str; 21] = [
        "", "王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "包", "白", "乌", "宝",
        "巴", "敖", "额", "那", "苏", "其",
    ];
    const FIRST: [&str; 20] = [
        "巴", "额", "乌", "苏", "萨", "宝", "图", "满", "阿", "斯", "朝", "那", "其", "敖", "达",
        "哈", "吉", "查", "孟", "特",
    ];
    const SECOND: [&str; 15] = [
        "特尔", "日娜", "和", "仁", "音", "雅", "拉", "坦", "琴", "鲁", "顺", "格", "图", "布",
        "夫",
    ];
    // A fixed spread of i (a multiplicative hash), so runs and backends get the same names.
    let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16;
    let owner = format!(
        "{}{}{}",
        SURNAMES[(h % 21) as usize],
        FIRST[((h / 21) % 20) as usize],
        SECOND[((h / 420) % 15) as usize]
    );
    name_after(p, owner);
}

/// Names `p` after its owner `owner`, as its type names producers.
fn name_after(p: &mut Producer, owner: String) {
    use gridsync_core::model::ProducerType as T;
    p.name = match p.producer_type {
        T::FamilyRanch => format!("{owner}家庭牧场"),
        T::FamilyFarm => format!("{owner}家庭农场"),
        T::Cooperative => format!("{owner}养殖专业合作社"),
        T::Enterprise => format!("{owner}牧业有限公司"),
        T::InputDealer => format!("{owner}农牧资经销部"),
        T::Purchaser => format!("{owner}牲畜收购点"),
        _ => owner.clone(),
    };
    p.owner = owner;
}

/// New producer `i` of a device: `like`'s identity in the device's `grid`, created by
/// `person` as the phone creates it (one change, saved whole).
pub fn producer_push(
    like: &Producer,
    i: usize,
    grid: &str,
    person: &str,
    actor: &automerge::ActorId,
) -> Result<PushRecord, String> {
    let now = gridsync_core::now_ms();
    let mut p = Producer::new(
        like.name.clone(),
        like.producer_type,
        like.owner.clone(),
        like.phone.clone(),
        grid,
        person,
        now,
    );
    p.id_number = like.id_number.clone();
    p.credit_code = like.credit_code.clone();
    p.address = format!("{grid} 第{i}户");
    p.products = like.products.clone();
    let rec = Record::Producer(p);
    let mut doc = RecordDoc::create(&rec, actor, person, now).map_err(|e| e.to_string())?;
    Ok(PushRecord {
        id: rec.id().to_string(),
        kind: rec.kind().tag(),
        changes: doc.save(),
        heads: doc.heads().iter().map(|h| h.0).collect(),
    })
}
