//! Automerge 0.6.1 against 0.12.0 on the shapes gridsync stores: a producer with 26 fields
//! and a patrol visit with 20 answers. For each version and shape it times, per document,
//! create (write every field and commit), save (compact bytes) and load (parse the bytes
//! and read every value back), over several runs, and prints medians side by side.
//!
//! Run: `cargo run --release` in this folder (its own workspace and target dir).

use std::hint::black_box;
use std::time::Instant;

/// The same workload, compiled once against each automerge version.
macro_rules! workload {
    ($module:ident, $am:ident) => {
        mod $module {
            use $am::transaction::Transactable;
            use $am::{ActorId, AutoCommit, ObjId, ObjType, ReadDoc, ScalarValue, Value, ROOT};

            fn actor(i: u64) -> ActorId {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&i.to_le_bytes());
                b[8] = 0x5a;
                ActorId::from(b.to_vec())
            }

            /// A directory entry shaped like gridsync's `Producer` (26 fields, nested).
            pub fn producer(i: u64) -> AutoCommit {
                let mut d = AutoCommit::new().with_actor(actor(i));
                let t = 1_750_000_000_000i64 + i as i64;
                d.put(ROOT, "_schema", 1u64).unwrap();
                d.put(ROOT, "_kind", "producer").unwrap();
                d.put(ROOT, "id", format!("0197a1b2-c3d4-7e5f-8a9b-{i:012x}"))
                    .unwrap();
                d.put(ROOT, "name", format!("锡林郭勒草原第{i}家庭牧场"))
                    .unwrap();
                d.put(ROOT, "producer_type", "family_ranch").unwrap();
                d.put(ROOT, "credit_code", ScalarValue::Null).unwrap();
                d.put(ROOT, "id_number", "11010519491231002X").unwrap();
                d.put(ROOT, "owner", "额尔敦巴特尔").unwrap();
                d.put(ROOT, "phone", "13947912345").unwrap();
                d.put(ROOT, "grid", "152522101201").unwrap();
                d.put(ROOT, "address", "阿巴嘎旗别力古台镇巴彦图嘎嘎查三组")
                    .unwrap();
                let loc = d.put_object(ROOT, "location", ObjType::Map).unwrap();
                d.put(&loc, "lat", 44.0221).unwrap();
                d.put(&loc, "lon", 114.9503).unwrap();
                let products = d.put_object(ROOT, "products", ObjType::List).unwrap();
                for (n, p) in ["羊肉", "羊绒", "奶豆腐"].iter().enumerate() {
                    d.insert(&products, n, *p).unwrap();
                }
                let scale = d.put_object(ROOT, "scale", ObjType::Map).unwrap();
                d.put(&scale, "crop_area_mu", 35.5).unwrap();
                let stock = d.put_object(&scale, "livestock", ObjType::Map).unwrap();
                for (species, on_hand, sold) in [("sheep_goat", 320, 180), ("beef_cattle", 24, 8)] {
                    let s = d.put_object(&stock, species, ObjType::Map).unwrap();
                    d.put(&s, "on_hand", on_hand as i64).unwrap();
                    d.put(&s, "sold_per_year", sold as i64).unwrap();
                }
                let certs = d.put_object(ROOT, "certifications", ObjType::List).unwrap();
                d.insert(&certs, 0, "green").unwrap();
                d.put(ROOT, "issues_compliance_certificates", true).unwrap();
                let letter = d
                    .put_object(ROOT, "responsibility_letter", ObjType::Map)
                    .unwrap();
                d.put(&letter, "signed_on", "2025-03-18").unwrap();
                d.put(ROOT, "risk", "medium").unwrap();
                d.put(ROOT, "status", "active").unwrap();
                let review = d.put_object(ROOT, "review", ObjType::Map).unwrap();
                d.put(&review, "state", "submitted").unwrap();
                d.put(&review, "approved_fingerprint", ScalarValue::Null)
                    .unwrap();
                d.put(&review, "return_reason", ScalarValue::Null).unwrap();
                let history = d.put_object(&review, "history", ObjType::List).unwrap();
                let ev = d.insert_object(&history, 0, ObjType::Map).unwrap();
                d.put(&ev, "id", format!("ev-{i}")).unwrap();
                let action = d.put_object(&ev, "action", ObjType::Map).unwrap();
                d.put(&action, "action", "submit").unwrap();
                d.put(&ev, "by", "liaison-1").unwrap();
                d.put(&ev, "at_ms", t).unwrap();
                d.put(&ev, "state_after", "submitted").unwrap();
                d.put(ROOT, "created_by", "liaison-1").unwrap();
                d.put(ROOT, "created_at_ms", t).unwrap();
                d.put(ROOT, "updated_at_ms", t).unwrap();
                d.commit();
                d
            }

            /// A patrol visit with 20 answers, one finding and one rapid test.
            pub fn visit(i: u64) -> AutoCommit {
                let mut d = AutoCommit::new().with_actor(actor(i));
                let t = 1_750_000_000_000i64 + i as i64;
                d.put(ROOT, "_schema", 1u64).unwrap();
                d.put(ROOT, "_kind", "visit").unwrap();
                d.put(ROOT, "id", format!("0197a1b2-c3d4-7e5f-9a9b-{i:012x}"))
                    .unwrap();
                d.put(ROOT, "producer_id", "0197a1b2-c3d4-7e5f-8a9b-000000000001")
                    .unwrap();
                d.put(ROOT, "grid", "152522101201").unwrap();
                d.put(ROOT, "inspector", "liaison-1").unwrap();
                d.put(ROOT, "template_id", "bench-20").unwrap();
                d.put(ROOT, "template_version", 1i64).unwrap();
                d.put(ROOT, "started_at_ms", t).unwrap();
                d.put(ROOT, "ended_at_ms", t + 900_000).unwrap();
                let answers = d.put_object(ROOT, "answers", ObjType::Map).unwrap();
                for n in 0..20 {
                    let a = d
                        .put_object(&answers, format!("item_{n:02}"), ObjType::Map)
                        .unwrap();
                    let v = d.put_object(&a, "value", ObjType::Map).unwrap();
                    match n % 4 {
                        0 | 1 => {
                            d.put(&v, "type", "yes_no").unwrap();
                            d.put(&v, "value", if n % 3 == 0 { "no" } else { "yes" })
                                .unwrap();
                        }
                        2 => {
                            d.put(&v, "type", "number").unwrap();
                            d.put(&v, "value", 12.5 + n as f64).unwrap();
                        }
                        _ => {
                            d.put(&v, "type", "text").unwrap();
                            d.put(&v, "value", "圈舍卫生良好，用药记录齐全").unwrap();
                        }
                    }
                    if n % 5 == 0 {
                        d.put(&a, "note", "已现场告知整改要求").unwrap();
                    } else {
                        d.put(&a, "note", ScalarValue::Null).unwrap();
                    }
                }
                let findings = d.put_object(ROOT, "findings", ObjType::List).unwrap();
                let f = d.insert_object(&findings, 0, ObjType::Map).unwrap();
                d.put(&f, "id", format!("f-{i}")).unwrap();
                d.put(&f, "description", "休药期未严格执行").unwrap();
                d.put(&f, "severity", "major").unwrap();
                d.put(&f, "recorded_by", "liaison-1").unwrap();
                d.put(&f, "recorded_at_ms", t + 60_000).unwrap();
                let tests = d.put_object(ROOT, "rapid_tests", ObjType::List).unwrap();
                let r = d.insert_object(&tests, 0, ObjType::Map).unwrap();
                d.put(&r, "id", format!("t-{i}")).unwrap();
                d.put(&r, "sample", "羊尿").unwrap();
                d.put(&r, "item", "克伦特罗").unwrap();
                d.put(&r, "method", "colloidal_gold").unwrap();
                d.put(&r, "verdict", "pass").unwrap();
                d.put(ROOT, "rectification", ScalarValue::Null).unwrap();
                d.put(ROOT, "status", "completed").unwrap();
                d.put(ROOT, "updated_at_ms", t + 900_000).unwrap();
                d.commit();
                d
            }

            /// Reads every value back (what materializing a record costs); returns a count.
            pub fn read_all(d: &AutoCommit) -> usize {
                walk(d, &ROOT)
            }

            fn walk(d: &AutoCommit, obj: &ObjId) -> usize {
                let mut n = 0;
                match d.object_type(obj) {
                    Ok(ObjType::List) | Ok(ObjType::Text) => {
                        for i in 0..d.length(obj) {
                            n += value(d, d.get(obj, i).unwrap());
                        }
                    }
                    _ => {
                        for k in d.keys(obj) {
                            n += value(d, d.get(obj, k.as_str()).unwrap());
                        }
                    }
                }
                n
            }

            fn value(d: &AutoCommit, v: Option<(Value<'_>, ObjId)>) -> usize {
                match v {
                    Some((Value::Object(_), id)) => 1 + walk(d, &id),
                    Some((Value::Scalar(s), _)) => {
                        std::hint::black_box(&s);
                        1
                    }
                    None => 0,
                }
            }

            /// Loads saved bytes.
            pub fn load(bytes: &[u8]) -> AutoCommit {
                AutoCommit::load(bytes).unwrap()
            }

            /// Saves compactly.
            pub fn save(d: &mut AutoCommit) -> Vec<u8> {
                d.save()
            }
        }
    };
}

workload!(v06, am06);
workload!(v012, am012);

/// 0.12.0's bulk path: the whole record built as a `hydrate` tree and written with
/// `init_root_from_hydrate` (two op-set splices instead of one per value).
mod v012_bulk {
    use std::collections::HashMap;

    use am012::hydrate::{Map, Value as H};
    use am012::transaction::Transactable;
    use am012::{ActorId, AutoCommit, ScalarValue};

    fn actor(i: u64) -> ActorId {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&i.to_le_bytes());
        b[8] = 0x5a;
        ActorId::from(b.to_vec())
    }

    fn s(v: impl Into<ScalarValue>) -> H {
        H::scalar(v)
    }

    fn map(pairs: Vec<(&str, H)>) -> H {
        H::from(pairs.into_iter().collect::<HashMap<&str, H>>())
    }

    fn list(items: Vec<H>) -> H {
        H::from(items)
    }

    fn write(i: u64, root: Vec<(&str, H)>) -> AutoCommit {
        let mut d = AutoCommit::new().with_actor(actor(i));
        let root = Map::from(root.into_iter().collect::<HashMap<&str, H>>());
        d.init_root_from_hydrate(&root).unwrap();
        d.commit();
        d
    }

    /// The producer of `super::v012::producer`, written in bulk.
    pub fn producer(i: u64) -> AutoCommit {
        let t = 1_750_000_000_000i64 + i as i64;
        write(
            i,
            vec![
                ("_schema", s(1u64)),
                ("_kind", s("producer")),
                ("id", s(format!("0197a1b2-c3d4-7e5f-8a9b-{i:012x}"))),
                ("name", s(format!("锡林郭勒草原第{i}家庭牧场"))),
                ("producer_type", s("family_ranch")),
                ("credit_code", s(ScalarValue::Null)),
                ("id_number", s("11010519491231002X")),
                ("owner", s("额尔敦巴特尔")),
                ("phone", s("13947912345")),
                ("grid", s("152522101201")),
                ("address", s("阿巴嘎旗别力古台镇巴彦图嘎嘎查三组")),
                (
                    "location",
                    map(vec![("lat", s(44.0221)), ("lon", s(114.9503))]),
                ),
                ("products", list(vec![s("羊肉"), s("羊绒"), s("奶豆腐")])),
                (
                    "scale",
                    map(vec![
                        ("crop_area_mu", s(35.5)),
                        (
                            "livestock",
                            map(vec![
                                (
                                    "sheep_goat",
                                    map(vec![("on_hand", s(320i64)), ("sold_per_year", s(180i64))]),
                                ),
                                (
                                    "beef_cattle",
                                    map(vec![("on_hand", s(24i64)), ("sold_per_year", s(8i64))]),
                                ),
                            ]),
                        ),
                    ]),
                ),
                ("certifications", list(vec![s("green")])),
                ("issues_compliance_certificates", s(true)),
                (
                    "responsibility_letter",
                    map(vec![("signed_on", s("2025-03-18"))]),
                ),
                ("risk", s("medium")),
                ("status", s("active")),
                (
                    "review",
                    map(vec![
                        ("state", s("submitted")),
                        ("approved_fingerprint", s(ScalarValue::Null)),
                        ("return_reason", s(ScalarValue::Null)),
                        (
                            "history",
                            list(vec![map(vec![
                                ("id", s(format!("ev-{i}"))),
                                ("action", map(vec![("action", s("submit"))])),
                                ("by", s("liaison-1")),
                                ("at_ms", s(t)),
                                ("state_after", s("submitted")),
                            ])]),
                        ),
                    ]),
                ),
                ("created_by", s("liaison-1")),
                ("created_at_ms", s(t)),
                ("updated_at_ms", s(t)),
            ],
        )
    }

    /// The visit of `super::v012::visit`, written in bulk.
    pub fn visit(i: u64) -> AutoCommit {
        let t = 1_750_000_000_000i64 + i as i64;
        let mut answers: Vec<(String, H)> = Vec::new();
        for n in 0..20 {
            let value = match n % 4 {
                0 | 1 => map(vec![
                    ("type", s("yes_no")),
                    ("value", s(if n % 3 == 0 { "no" } else { "yes" })),
                ]),
                2 => map(vec![("type", s("number")), ("value", s(12.5 + n as f64))]),
                _ => map(vec![
                    ("type", s("text")),
                    ("value", s("圈舍卫生良好，用药记录齐全")),
                ]),
            };
            let note = if n % 5 == 0 {
                s("已现场告知整改要求")
            } else {
                s(ScalarValue::Null)
            };
            answers.push((
                format!("item_{n:02}"),
                map(vec![("value", value), ("note", note)]),
            ));
        }
        let answers = H::from(Map::from(
            answers.into_iter().collect::<HashMap<String, H>>(),
        ));
        write(
            i,
            vec![
                ("_schema", s(1u64)),
                ("_kind", s("visit")),
                ("id", s(format!("0197a1b2-c3d4-7e5f-9a9b-{i:012x}"))),
                ("producer_id", s("0197a1b2-c3d4-7e5f-8a9b-000000000001")),
                ("grid", s("152522101201")),
                ("inspector", s("liaison-1")),
                ("template_id", s("bench-20")),
                ("template_version", s(1i64)),
                ("started_at_ms", s(t)),
                ("ended_at_ms", s(t + 900_000)),
                ("answers", answers),
                (
                    "findings",
                    list(vec![map(vec![
                        ("id", s(format!("f-{i}"))),
                        ("description", s("休药期未严格执行")),
                        ("severity", s("major")),
                        ("recorded_by", s("liaison-1")),
                        ("recorded_at_ms", s(t + 60_000)),
                    ])]),
                ),
                (
                    "rapid_tests",
                    list(vec![map(vec![
                        ("id", s(format!("t-{i}"))),
                        ("sample", s("羊尿")),
                        ("item", s("克伦特罗")),
                        ("method", s("colloidal_gold")),
                        ("verdict", s("pass")),
                    ])]),
                ),
                ("rectification", s(ScalarValue::Null)),
                ("status", s("completed")),
                ("updated_at_ms", s(t + 900_000)),
            ],
        )
    }
}

/// Per-document timings of one run, in microseconds.
#[derive(Debug, Clone, Copy)]
struct Run {
    create_us: f64,
    save_us: f64,
    load_us: f64,
    bytes: usize,
    values: usize,
}

fn run_once<D>(
    docs: u64,
    create: impl Fn(u64) -> D,
    save: impl Fn(&mut D) -> Vec<u8>,
    load: impl Fn(&[u8]) -> D,
    read: impl Fn(&D) -> usize,
) -> Run {
    let t = Instant::now();
    let mut made: Vec<D> = (0..docs).map(&create).collect();
    let create_us = t.elapsed().as_secs_f64() * 1e6 / docs as f64;
    let t = Instant::now();
    let saved: Vec<Vec<u8>> = made.iter_mut().map(&save).collect();
    let save_us = t.elapsed().as_secs_f64() * 1e6 / docs as f64;
    drop(black_box(made));
    let t = Instant::now();
    let mut values = 0;
    for b in &saved {
        let d = load(b);
        values = read(&d);
        black_box(&d);
    }
    let load_us = t.elapsed().as_secs_f64() * 1e6 / docs as f64;
    Run {
        create_us,
        save_us,
        load_us,
        bytes: saved.iter().map(Vec::len).sum::<usize>() / docs as usize,
        values,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct Summary {
    create_us: f64,
    save_us: f64,
    load_us: f64,
    bytes: usize,
    values: usize,
}

fn summarize(runs: &[Run]) -> Summary {
    Summary {
        create_us: median(runs.iter().map(|r| r.create_us).collect()),
        save_us: median(runs.iter().map(|r| r.save_us).collect()),
        load_us: median(runs.iter().map(|r| r.load_us).collect()),
        bytes: runs[0].bytes,
        values: runs[0].values,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let docs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(7);
    println!(
        "automerge 0.6.1 vs 0.12.0: {docs} documents per run, median of {runs} runs (interleaved)"
    );
    println!();
    let mut rows = Vec::new();
    for shape in ["producer (26 fields)", "visit (20 answers)"] {
        let producer = shape.starts_with("producer");
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        // Warm-up, then alternate the versions so machine noise hits all alike.
        for r in 0..=runs {
            let (ra, rb, rc) = if producer {
                (
                    run_once(docs, v06::producer, v06::save, v06::load, v06::read_all),
                    run_once(docs, v012::producer, v012::save, v012::load, v012::read_all),
                    run_once(
                        docs,
                        v012_bulk::producer,
                        v012::save,
                        v012::load,
                        v012::read_all,
                    ),
                )
            } else {
                (
                    run_once(docs, v06::visit, v06::save, v06::load, v06::read_all),
                    run_once(docs, v012::visit, v012::save, v012::load, v012::read_all),
                    run_once(
                        docs,
                        v012_bulk::visit,
                        v012::save,
                        v012::load,
                        v012::read_all,
                    ),
                )
            };
            if r > 0 {
                a.push(ra);
                b.push(rb);
                c.push(rc);
            }
        }
        let (sa, sb, sc) = (summarize(&a), summarize(&b), summarize(&c));
        assert_eq!(
            sa.values, sb.values,
            "both versions read the same values back"
        );
        assert_eq!(sa.values, sc.values, "the bulk write holds the same values");
        rows.push((shape, sa, sb, sc));
    }
    println!(
        "{:<22} {:<13} {:>10} {:>10} {:>10} {:>12} {:>8} {:>7}",
        "shape", "version", "create µs", "save µs", "load µs", "c+s+l doc/s", "bytes", "values"
    );
    for (shape, sa, sb, sc) in &rows {
        let total = |s: &Summary| s.create_us + s.save_us + s.load_us;
        for (name, s) in [("0.6.1", sa), ("0.12.0", sb), ("0.12.0 bulk", sc)] {
            println!(
                "{:<22} {:<13} {:>10.1} {:>10.1} {:>10.1} {:>12.0} {:>8} {:>7}",
                shape,
                name,
                s.create_us,
                s.save_us,
                s.load_us,
                1e6 / total(s),
                s.bytes,
                s.values
            );
        }
        for (name, s) in [("0.12/0.6", sb), ("0.12bulk/0.6", sc)] {
            println!(
                "{:<22} {:<13} {:>10.2} {:>10.2} {:>10.2} {:>12.2} {:>8.2}",
                shape,
                name,
                s.create_us / sa.create_us,
                s.save_us / sa.save_us,
                s.load_us / sa.load_us,
                total(sa) / total(s),
                s.bytes as f64 / sa.bytes as f64
            );
        }
    }
    println!();
    println!("ratios: time ratios (<1 means 0.12.0 is faster); c+s+l doc/s ratio >1 means 0.12.0 has more throughput");
}
