//! Property tests of the mapping engine with the example adapter (adapters/onestop-example):
//!
//! - generated vendor messages within the adapter's shape map to the canonical dossier, back
//!   to the vendor's JSON (schema-checked) and again to the same dossier;
//! - one field of such a message given a wrong type or an out-of-rule value is refused with an
//!   error that names exactly that JSON path;
//! - arbitrary JSON (and arbitrary bytes) never panic, and every refusal names its origin and a
//!   path (`$…`).
//!
//! Cases per property: 128, or `PROPTEST_CASES` when set.

use std::path::Path;
use std::sync::OnceLock;

use gateway::mapping::Adapter;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Map, Value};

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        // A failure prints its shrunk input; nothing is written into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn adapter() -> &'static Adapter {
    static A: OnceLock<Adapter> = OnceLock::new();
    A.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("adapters/onestop-example");
        Adapter::load(&dir).unwrap_or_else(|p| panic!("example adapter does not load: {p:?}"))
    })
}

const STATUSES: [&str; 10] = [
    "MOI_DANG_KY",
    "DA_TIEP_NHAN",
    "KHONG_TIEP_NHAN",
    "DANG_XU_LY",
    "YEU_CAU_BO_SUNG",
    "CHO_NGHIA_VU_TAI_CHINH",
    "CONG_DAN_RUT",
    "DUNG_XU_LY",
    "DA_XU_LY",
    "DA_TRA_KET_QUA",
];
const PROCEDURES: [&str; 4] = ["HT-KS-01", "HT-KH-01", "CT-XN-01", "DD-CN-02"];

/// Free text as one-stop systems send it: Vietnamese (composed or not), punctuation, quotes.
fn text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9 ,.:;/()\"'\\-ăâđêôơưĂÂĐÊÔƠƯàảãáạềếệộớờợừứựỹ]{1,30}"
        .prop_filter("not blank", |s| !s.trim().is_empty())
}

/// `dd/MM/yyyy HH:mm:ss`, a real date.
fn vn_date() -> impl Strategy<Value = String> {
    (
        1..=28u32,
        1..=12u32,
        2000..=2099u32,
        0..24u32,
        0..60u32,
        0..60u32,
    )
        .prop_map(|(d, mo, y, h, mi, s)| format!("{d:02}/{mo:02}/{y} {h:02}:{mi:02}:{s:02}"))
}

/// `yyyyMMddHHmmss`.
fn compact_date() -> impl Strategy<Value = String> {
    (
        1..=28u32,
        1..=12u32,
        2000..=2099u32,
        0..24u32,
        0..60u32,
        0..60u32,
    )
        .prop_map(|(d, mo, y, h, mi, s)| format!("{y}{mo:02}{d:02}{h:02}{mi:02}{s:02}"))
}

fn insert_opt(m: &mut Map<String, Value>, k: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(k.to_owned(), v);
    }
}

fn fee() -> impl Strategy<Value = Value> {
    (
        "[A-Z]{2}-[A-Z0-9]{1,6}",
        text(),
        0..1_000_000_000i64,
        prop::option::of(prop::sample::select(vec!["PHI", "LE_PHI"])),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(code, name, amount, cat, paid)| {
            let mut m = Map::new();
            m.insert("maPhi".into(), json!(code));
            m.insert("tenPhi".into(), json!(name));
            m.insert("soTien".into(), json!(amount));
            insert_opt(&mut m, "loaiPhi", cat.map(Value::from));
            insert_opt(&mut m, "daThanhToan", paid.map(Value::from));
            Value::Object(m)
        })
}

fn attachment() -> impl Strategy<Value = Value> {
    (
        "TL-[0-9]{1,6}",
        text(),
        prop::option::of("TP-[A-Z0-9]{1,6}"),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(id, name, comp, deleted)| {
            let mut m = Map::new();
            m.insert("id".into(), json!(id));
            m.insert("ten".into(), json!(name));
            insert_opt(&mut m, "maThanhPhan", comp.map(Value::from));
            m.insert(
                "duongDan".into(),
                json!(format!("https://motcua.example.invalid/files/{id}")),
            );
            insert_opt(&mut m, "daXoa", deleted.map(Value::from));
            Value::Object(m)
        })
}

fn step() -> impl Strategy<Value = Value> {
    (
        text(),
        prop::option::of(text()),
        text(),
        text(),
        946_684_800_000i64..4_000_000_000_000i64,
        prop::sample::select(STATUSES.to_vec()),
        prop::option::of(compact_date()),
        prop::option::of(compact_date()),
    )
        .prop_map(|(who, title, dept, content, at, status, start, due)| {
            let mut m = Map::new();
            m.insert("nguoiXuLy".into(), json!(who));
            insert_opt(&mut m, "chucDanh", title.map(Value::from));
            m.insert("phongBan".into(), json!(dept));
            m.insert("noiDung".into(), json!(content));
            // Whole seconds: the vendor's epoch milliseconds of a real event.
            m.insert("thoiDiemXuLy".into(), json!(at / 1000 * 1000));
            m.insert("trangThai".into(), json!(status));
            insert_opt(&mut m, "ngayBatDau", start.map(Value::from));
            insert_opt(&mut m, "hanXuLy", due.map(Value::from));
            Value::Object(m)
        })
}

/// A vendor message within the example adapter's shape and rules.
fn message() -> impl Strategy<Value = Value> {
    let head = (
        prop::option::of(prop::sample::select(vec!["HO_SO", "TRANG_THAI"])),
        "[A-Z][0-9]{2}\\.[0-9]{2}-[0-9]{6}-[0-9]{4}",
        1..1_000_000i64,
        prop::option::of("BN-[0-9]{4}-[0-9]{6}"),
        prop::sample::select(PROCEDURES.to_vec()),
        prop::option::of(text()),
        prop::option::of(prop::sample::select(vec!["1", "2"])),
    );
    let owner = (
        text(),
        prop::option::of("[0-9]{12}"),
        prop::option::of("0[0-9]{9}"),
        prop::option::of("[a-z]{1,8}@example\\.vn"),
        prop::option::of(text()),
    );
    let body = (
        text(),
        vn_date(),
        vn_date(),
        prop::sample::select(STATUSES.to_vec()),
        prop::option::of(text()),
        prop::collection::vec(fee(), 0..3),
        prop::collection::vec(attachment(), 0..3),
        prop::collection::vec(step(), 0..3),
    );
    (head, owner, body).prop_map(
        |(
            (kind, code, version, receipt, proc, proc_name, owner_kind),
            (name, cccd, phone, email, addr),
            (summary, received, due, status, note, fees, atts, steps),
        )| {
            let mut m = Map::new();
            insert_opt(&mut m, "loaiThongDiep", kind.map(Value::from));
            m.insert("maHoSo".into(), json!(code));
            m.insert("phienBan".into(), json!(version));
            insert_opt(&mut m, "soBienNhan", receipt.map(Value::from));
            let mut tt = Map::new();
            tt.insert("maThuTuc".into(), json!(proc));
            insert_opt(&mut tt, "tenThuTuc", proc_name.map(Value::from));
            m.insert("thuTuc".into(), Value::Object(tt));
            insert_opt(&mut m, "loaiDoiTuong", owner_kind.map(Value::from));
            let mut o = Map::new();
            o.insert("hoTen".into(), json!(name));
            insert_opt(&mut o, "soCCCD", cccd.map(Value::from));
            insert_opt(&mut o, "soDienThoai", phone.map(Value::from));
            insert_opt(&mut o, "email", email.map(Value::from));
            insert_opt(&mut o, "diaChi", addr.map(Value::from));
            m.insert("chuHoSo".into(), Value::Object(o));
            m.insert("trichYeu".into(), json!(summary));
            m.insert("ngayTiepNhan".into(), json!(received));
            m.insert("ngayHenTra".into(), json!(due));
            m.insert("trangThai".into(), json!(status));
            insert_opt(&mut m, "ghiChu", note.map(Value::from));
            m.insert("phiLePhi".into(), Value::Array(fees));
            m.insert("giayToNop".into(), Value::Array(atts));
            m.insert("quaTrinhXuLy".into(), Value::Array(steps));
            Value::Object(m)
        },
    )
}

/// Any JSON value, small.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[ -~đĐ]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    "[a-zA-Z]{1,12}",
                    prop::sample::select(vec![
                        "maHoSo",
                        "phienBan",
                        "thuTuc",
                        "chuHoSo",
                        "trangThai",
                        "ngayTiepNhan",
                        "phiLePhi",
                        "loaiThongDiep",
                        "hoTen",
                        "soTien",
                    ])
                    .prop_map(str::to_owned),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A wrong value for one field of a valid message, and the path the error must name.
fn break_field(msg: &mut Value, which: usize, at: Index) -> Option<String> {
    let fee_count = msg["phiLePhi"].as_array().map_or(0, Vec::len);
    let (pointer, wrong, path): (String, Value, String) = match which {
        0 => ("/maHoSo".into(), json!(17), "$.maHoSo".into()),
        1 => ("/phienBan".into(), json!("một"), "$.phienBan".into()),
        2 => ("/phienBan".into(), json!(0), "$.phienBan".into()),
        3 => ("/trangThai".into(), json!("KHONG_CO"), "$.trangThai".into()),
        4 => (
            "/ngayTiepNhan".into(),
            json!("31/02/2026 08:00:00"),
            "$.ngayTiepNhan".into(),
        ),
        5 => (
            "/ngayHenTra".into(),
            json!("2026-01-01"),
            "$.ngayHenTra".into(),
        ),
        6 => (
            "/chuHoSo/hoTen".into(),
            json!("   "),
            "$.chuHoSo.hoTen".into(),
        ),
        7 => (
            "/chuHoSo/soCCCD".into(),
            json!("12ab"),
            "$.chuHoSo.soCCCD".into(),
        ),
        8 => (
            "/thuTuc/maThuTuc".into(),
            json!("KHONG-CO"),
            "$.thuTuc.maThuTuc".into(),
        ),
        9 if fee_count > 0 => {
            let i = at.index(fee_count);
            (
                format!("/phiLePhi/{i}/soTien"),
                json!(-1),
                format!("$.phiLePhi[{i}].soTien"),
            )
        }
        10 if fee_count > 0 => {
            let i = at.index(fee_count);
            (
                format!("/phiLePhi/{i}/soTien"),
                json!("100"),
                format!("$.phiLePhi[{i}].soTien"),
            )
        }
        _ => return None,
    };
    match msg.pointer_mut(&pointer) {
        Some(v) => *v = wrong,
        None => {
            // Optional field absent: set it on its parent object.
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            let parent = if parent.is_empty() {
                Some(&mut *msg)
            } else {
                msg.pointer_mut(parent)
            };
            parent?.as_object_mut()?.insert(key.to_owned(), wrong);
        }
    }
    Some(path)
}

proptest! {
    #![proptest_config(config(128))]

    /// vendor → canonical → vendor → canonical gives the same dossier.
    #[test]
    fn generated_messages_round_trip(msg in message()) {
        let a = adapter();
        let inb = a.to_canonical(&msg, "generated")
            .map_err(|e| TestCaseError::fail(format!("{e}\n{msg:#}")))?;
        prop_assert_eq!(inb.version, inb.dossier.version);
        let back = a.from_canonical(&inb.dossier)
            .map_err(|e| TestCaseError::fail(format!("reverse: {e}")))?;
        let again = a.to_canonical(&back, "reverse")
            .map_err(|e| TestCaseError::fail(format!("reverse refused inbound: {e}\n{back:#}")))?;
        prop_assert_eq!(again.dossier, inb.dossier);
        // The same through the byte-level entry point.
        let bytes = serde_json::to_vec(&msg).unwrap();
        prop_assert!(a.parse_inbound(&bytes, "generated").is_ok());
    }

    /// One broken field: refused, and the error names exactly that path.
    #[test]
    fn a_broken_field_is_named_by_its_path(msg in message(), which in 0..11usize, at in any::<Index>()) {
        let mut msg = msg;
        let Some(path) = break_field(&mut msg, which, at) else { return Ok(()) };
        let e = adapter().to_canonical(&msg, "generated").expect_err("a broken field is refused");
        prop_assert_eq!(&e.origin, "generated");
        prop_assert_eq!(&e.path, &path, "{}", e);
        prop_assert!(!e.what.is_empty());
    }

    /// Arbitrary JSON never panics; a refusal names the origin and a `$` path.
    #[test]
    fn arbitrary_json_never_panics(v in any_json()) {
        match adapter().to_canonical(&v, "arbitrary") {
            Ok(inb) => { adapter().from_canonical(&inb.dossier).unwrap(); }
            Err(e) => {
                prop_assert_eq!(&e.origin, "arbitrary");
                prop_assert!(e.path.starts_with('$'), "{}", e);
                prop_assert!(!e.what.is_empty());
            }
        }
    }

    /// Arbitrary bytes (often not JSON) through the byte-level entry point never panic.
    #[test]
    fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Err(e) = adapter().parse_inbound(&b, "bytes") {
            prop_assert!(e.path.starts_with('$'), "{}", e);
        }
    }
}
