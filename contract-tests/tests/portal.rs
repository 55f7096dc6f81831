//! Contract tests of the DVCQG portal sandbox: every rule it enforces, the unhappy paths, the
//! faults and the rate limit, observed through plain HTTP (reqwest) as a client would.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gw_contract_tests::portal::{
    builtin_catalogue, CodeStyle, FaultKind, Faults, Portal, PortalConfig, RateLimit, Scripted,
    DEFAULT_UNIT,
};
use serde_json::{json, Value};

struct T {
    portal: Portal,
    http: reqwest::Client,
}

impl T {
    async fn new(cfg: PortalConfig) -> T {
        let portal = Portal::start(0, cfg).await.unwrap();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        T { portal, http }
    }

    async fn default() -> T {
        T::new(PortalConfig::default()).await
    }

    async fn raw(&self, url: &str, body: &Value) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(url)
            .header("dstcode", DEFAULT_UNIT)
            .json(body)
            .send()
            .await
    }

    async fn post(&self, url: &str, body: &Value) -> (u16, Value) {
        let r = self.raw(url, body).await.unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn login(&self) -> String {
        let (s, v) = self
            .post(
                &self.portal.login_url(),
                &json!({"username": "sandbox", "password": "sandbox-password"}),
            )
            .await;
        assert_eq!(s, 200);
        assert_eq!(v["error_code"], json!(0), "{v}");
        v["session"].as_str().unwrap().to_string()
    }

    fn body(session: &str, service: &str, extra: Value) -> Value {
        let mut b = json!({"session": session, "madonvi": DEFAULT_UNIT, "service": service});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    }

    async fn integ(&self, session: &str, service: &str, extra: Value) -> (u16, Value) {
        let b = T::body(session, service, extra);
        self.post(&self.portal.integration_url(), &b).await
    }

    async fn share(&self, session: &str, service: &str, extra: Value) -> (u16, Value) {
        let b = T::body(session, service, extra);
        self.post(&self.portal.sharing_url(), &b).await
    }

    async fn sync(&self, session: &str, updating: bool, items: Vec<Value>) -> Value {
        let (s, v) = self
            .integ(
                session,
                "DongBoHoSoMC",
                json!({"isUpdating": updating, "data": items}),
            )
            .await;
        assert_eq!(s, 200);
        v
    }
}

fn dossier(code: &str) -> Value {
    json!({
        "MaHoSo": code,
        "MaTTHC": "1.001193",
        "TenTTHC": "Đăng ký khai sinh",
        "MaLinhVuc": "G09-TP01",
        "TenLinhVuc": "Hộ tịch",
        "SoBienNhan": "BN-0001",
        "ChuHoSo": "Nguyễn Văn An",
        "LoaiDoiTuong": "1",
        "SoDienThoai": "0912345678",
        "TrichYeuHoSo": "Đăng ký khai sinh cho con",
        "NgayTiepNhan": "20241105083000",
        "NgayHenTra": "20241106170000",
        "TrangThaiHoSo": "2",
        "DonViXuLy": "UBND phường Phú Hội",
        "TaiLieuNop": [{
            "TepDinhKemId": "f-1", "TenTepDinhKem": "to-khai.pdf", "IsDeleted": false,
            "MaThanhPhanHoSo": "1.001193.TK", "DuongDanTaiTepTin": "https://files.example/f-1"
        }],
        "DanhSachLePhi": [{
            "TenPhiLePhi": "Lệ phí", "MaPhiLePhi": "LP1", "HinhThucThu": "1", "Gia": 0,
            "LoaiPhiLePhi": "1"
        }]
    })
}

fn progress(code: &str) -> Value {
    json!({
        "MaHoSo": code, "NguoiXuLy": "Trần Thị Bình", "ChucDanh": "Công chức tư pháp - hộ tịch",
        "ThoiDiemXuLy": "20241105090000", "PhongBanXuLy": "Bộ phận một cửa",
        "NoiDungXuLy": "Tiếp nhận hồ sơ", "TrangThai": "2",
        "NgayBatDau": "20241105083000", "NgayKetThucTheoQuyDinh": "20241106170000"
    })
}

/// Whether an error's cause chain holds an OS "connection reset" (a real TCP RST).
fn is_reset(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionReset {
                return true;
            }
        }
        cur = c.source();
    }
    false
}

fn msg(v: &Value) -> String {
    v["message"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn login_by_path_and_by_service_and_transport_rules() {
    let t = T::default().await;
    t.login().await;
    let (s, v) = t
        .post(
            &t.portal.integration_url(),
            &json!({"service": "DangNhap", "username": "sandbox", "password": "sandbox-password"}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["error_code"], json!(0));
    assert!(v["session"].as_str().unwrap().len() >= 16);
    assert_eq!(t.portal.logins(), 2);

    // Wrong password: HTTP 200 with the login-failed code.
    let (s, v) = t
        .post(
            &t.portal.login_url(),
            &json!({"username": "sandbox", "password": "nope"}),
        )
        .await;
    assert_eq!((s, v["error_code"].clone()), (200, json!(-3)));
    assert_eq!(t.portal.logins(), 2);

    // Missing dstcode: 400. Unknown dstcode: 200 + unknown unit. Wrong content type: 415.
    let r = t
        .http
        .post(t.portal.login_url())
        .json(&json!({"username": "sandbox", "password": "sandbox-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = t
        .http
        .post(t.portal.login_url())
        .header("dstcode", "999.99.99.H99")
        .json(&json!({"username": "sandbox", "password": "sandbox-password"}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error_code"], json!(-4));
    let r = t
        .http
        .post(t.portal.login_url())
        .header("dstcode", DEFAULT_UNIT)
        .header("content-type", "text/plain")
        .body(r#"{"username":"sandbox","password":"sandbox-password"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    // Not JSON.
    let r = t
        .http
        .post(t.portal.integration_url())
        .header("dstcode", DEFAULT_UNIT)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(t.portal.refused().len() >= 5);
}

#[tokio::test]
async fn service_endpoint_unit_and_session_are_checked() {
    let t = T::default().await;
    let s = t.login().await;
    // A sharing service on the integration endpoint, an unknown service.
    let (_, v) = t.integ(&s, "TraCuuHoSo", json!({"mahoso": "X"})).await;
    assert_eq!(v["error_code"], json!(-5), "{v}");
    let (_, v) = t.share(&s, "DongBoHoSoMC", json!({})).await;
    assert_eq!(v["error_code"], json!(-5));
    let (_, v) = t.integ(&s, "XoaHoSo", json!({})).await;
    assert_eq!(v["error_code"], json!(-5));
    // Unknown madonvi.
    let mut b = T::body(&s, "LayDanhMucLinhVuc", json!({}));
    b["madonvi"] = json!("000.00.99.H99");
    let (_, v) = t.post(&t.portal.sharing_url(), &b).await;
    assert_eq!(v["error_code"], json!(-4));
    // Missing madonvi, missing session.
    let (_, v) = t
        .post(
            &t.portal.sharing_url(),
            &json!({"session": s, "service": "LayDanhMucLinhVuc"}),
        )
        .await;
    assert_eq!(v["error_code"], json!(-1));
    let (_, v) = t
        .post(
            &t.portal.sharing_url(),
            &json!({"madonvi": DEFAULT_UNIT, "service": "LayDanhMucLinhVuc"}),
        )
        .await;
    assert_eq!(v["error_code"], json!(-1));
    // A session the portal never gave.
    let (s2, v) = t.share("made-up", "LayDanhMucLinhVuc", json!({})).await;
    assert_eq!((s2, v["error_code"].clone()), (200, json!(-2)));
    assert_eq!(t.portal.calls("TraCuuHoSo"), 1);
    assert_eq!(t.portal.calls("LayDanhMucLinhVuc"), 4);

    // Relaxed endpoints: a look-up on the integration endpoint is served; unknown services not.
    let t = T::new(PortalConfig {
        strict_endpoints: false,
        ..Default::default()
    })
    .await;
    let s = t.login().await;
    let (_, v) = t.integ(&s, "LayDanhMucLinhVuc", json!({})).await;
    assert_eq!(v["error_code"], json!(0), "{v}");
    let (_, v) = t.integ(&s, "XoaHoSo", json!({})).await;
    assert_eq!(v["error_code"], json!(-5));
}

#[tokio::test]
async fn sync_then_update_then_lookup_with_records() {
    let t = T::default().await;
    let s = t.login().await;
    let v = t.sync(&s, false, vec![dossier("HS-1")]).await;
    assert_eq!(v["error_code"], json!(0), "{v}");
    assert_eq!(v["result"]["accepted"], json!(1));
    let mut d2 = dossier("HS-1");
    d2["TrangThaiHoSo"] = json!(4);
    d2["GhiChu"] = json!("v2");
    let v = t.sync(&s, true, vec![d2.clone()]).await;
    assert_eq!(v["error_code"], json!(0), "{v}");

    let (_, v) = t.share(&s, "TraCuuHoSo", json!({"mahoso": "HS-1"})).await;
    assert_eq!(v["error_code"], json!(0));
    // The dossier as sent, plus the (assumed) progress list: none yet.
    let mut shown = d2.clone();
    shown["TienDoXuLy"] = json!([]);
    assert_eq!(v["result"], shown);
    let (_, v) = t.share(&s, "TraCuuHoSo", json!({"mahoso": "HS-404"})).await;
    assert_eq!(v["error_code"], json!(-8));

    let versions = t.portal.dossier_versions("HS-1");
    assert_eq!(versions.len(), 2);
    assert!(!versions[0].is_updating && versions[1].is_updating);
    assert!(versions[0].seq < versions[1].seq);
    assert_eq!(versions[1].item, d2);

    // The same records over HTTP.
    let rec: Value = t
        .http
        .get(format!("{}/_sandbox/records", t.portal.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rec["dossiers"]["HS-1"].as_array().unwrap().len(), 2);
    assert_eq!(rec["logins"], json!(1));
    assert_eq!(rec["calls"]["DongBoHoSoMC"], json!(2));

    // What the test sent, in order: nothing missing, nothing out of order.
    let mut sent = BTreeMap::new();
    sent.insert("HS-1".to_string(), vec![dossier("HS-1"), d2]);
    let c = t.portal.records().check_sent(&sent);
    assert!(c.missing.is_empty() && c.older_after_newer == 0 && c.duplicates == 0);
    assert_eq!(c.accepted, 2);
}

#[tokio::test]
async fn duplicate_create_and_update_of_unknown_are_refused_unless_configured() {
    let t = T::default().await;
    let s = t.login().await;
    assert_eq!(
        t.sync(&s, false, vec![dossier("HS-1")]).await["error_code"],
        json!(0)
    );
    let v = t.sync(&s, false, vec![dossier("HS-1")]).await;
    assert_eq!(v["error_code"], json!(-7), "{v}");
    assert!(msg(&v).contains("data[0].MaHoSo"));
    let v = t.sync(&s, true, vec![dossier("HS-2")]).await;
    assert_eq!(v["error_code"], json!(-8), "{v}");
    // Twice in one create batch is a duplicate too.
    let v = t
        .sync(&s, false, vec![dossier("HS-3"), dossier("HS-3")])
        .await;
    assert_eq!(v["error_code"], json!(-7));
    assert!(msg(&v).contains("data[1]"));
    assert_eq!(t.portal.dossier_versions("HS-1").len(), 1);
    assert!(t.portal.dossier_versions("HS-3").is_empty());

    let t = T::new(PortalConfig {
        refuse_duplicate_create: false,
        refuse_update_unknown: false,
        ..Default::default()
    })
    .await;
    let s = t.login().await;
    assert_eq!(
        t.sync(&s, true, vec![dossier("HS-9")]).await["error_code"],
        json!(0)
    );
    assert_eq!(
        t.sync(&s, false, vec![dossier("HS-9")]).await["error_code"],
        json!(0)
    );
    assert_eq!(t.portal.dossier_versions("HS-9").len(), 2);
}

#[tokio::test]
async fn missing_field_bad_date_unknown_status_subject_type_and_types_are_refused() {
    let t = T::default().await;
    let s = t.login().await;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("ChuHoSo", Value::Null, "data[0].ChuHoSo: required"),
        (
            "NgayTiepNhan",
            json!("20241301083000"),
            "data[0].NgayTiepNhan",
        ),
        ("NgayHenTra", json!("2024-11-06"), "data[0].NgayHenTra"),
        ("NgayTra", json!("20230229000000"), "data[0].NgayTra"),
        ("TrangThaiHoSo", json!("11"), "data[0].TrangThaiHoSo"),
        (
            "TrangThaiHoSo",
            json!("đang xử lý"),
            "data[0].TrangThaiHoSo",
        ),
        ("LoaiDoiTuong", json!("3"), "data[0].LoaiDoiTuong"),
        ("LoaiDoiTuong", json!(1), "data[0].LoaiDoiTuong"),
        (
            "TrichYeuHoSo",
            json!(""),
            "data[0].TrichYeuHoSo: must not be empty",
        ),
        (
            "DonViXuLy",
            json!(42),
            "data[0].DonViXuLy: must be a string",
        ),
        (
            "TaiLieuNop",
            json!({}),
            "data[0].TaiLieuNop: must be an array",
        ),
    ];
    for (field, val, want) in cases {
        let mut d = dossier("HS-1");
        if val.is_null() {
            d.as_object_mut().unwrap().remove(field);
        } else {
            d[field] = val;
        }
        let v = t.sync(&s, false, vec![d]).await;
        assert_eq!(v["error_code"], json!(-6), "{field}: {v}");
        assert!(msg(&v).contains(want), "{field}: want {want:?} in {v}");
    }
    // Sub-item fields.
    let mut d = dossier("HS-1");
    d["TaiLieuNop"][0]["IsDeleted"] = json!("false");
    d["DanhSachLePhi"][0].as_object_mut().unwrap().remove("Gia");
    let v = t.sync(&s, false, vec![d]).await;
    assert_eq!(v["error_code"], json!(-6));
    let errors = v["result"]["errors"].as_array().unwrap();
    assert!(errors.iter().any(|e| e
        .as_str()
        .unwrap()
        .starts_with("data[0].TaiLieuNop[0].IsDeleted")));
    assert!(errors.iter().any(|e| e
        .as_str()
        .unwrap()
        .starts_with("data[0].DanhSachLePhi[0].Gia")));
    // isUpdating must be a boolean; data must be a non-empty array.
    let (_, v) = t
        .integ(
            &s,
            "DongBoHoSoMC",
            json!({"isUpdating": "false", "data": [dossier("HS-1")]}),
        )
        .await;
    assert_eq!(v["error_code"], json!(-6));
    assert!(msg(&v).contains("isUpdating"));
    let (_, v) = t
        .integ(&s, "DongBoHoSoMC", json!({"isUpdating": false, "data": []}))
        .await;
    assert_eq!(v["error_code"], json!(-6));

    assert!(t.portal.records().dossiers.is_empty());
    let refused = t.portal.refused();
    assert_eq!(refused.len(), 14);
    assert!(refused.iter().all(|r| r.http_status == 200 && !r.injected));
}

#[tokio::test]
async fn unknown_procedure_is_refused() {
    let t = T::default().await;
    let s = t.login().await;
    let mut d = dossier("HS-1");
    d["MaTTHC"] = json!("9.999999");
    let v = t.sync(&s, false, vec![d]).await;
    assert_eq!(v["error_code"], json!(-9), "{v}");
    assert!(msg(&v).contains("9.999999"));
}

#[tokio::test]
async fn one_bad_item_refuses_the_whole_batch() {
    let t = T::default().await;
    let s = t.login().await;
    let mut bad = dossier("HS-2");
    bad["NgayHenTra"] = json!("20241106");
    let v = t
        .sync(&s, false, vec![dossier("HS-1"), bad, dossier("HS-3")])
        .await;
    assert_eq!(v["error_code"], json!(-6));
    assert!(msg(&v).contains("data[1].NgayHenTra"), "{v}");
    assert!(t.portal.records().dossiers.is_empty());
    let v = t
        .sync(&s, false, vec![dossier("HS-1"), dossier("HS-3")])
        .await;
    assert_eq!(v["result"]["accepted"], json!(2));
    let r = t.portal.records();
    assert_eq!(r.dossiers["HS-3"][0].index, 1);
}

#[tokio::test]
async fn unknown_fields_are_reported_and_refused_when_strict() {
    let t = T::default().await;
    let s = t.login().await;
    let mut d = dossier("HS-1");
    d["MaHoSoCu"] = json!("OLD-1");
    d["TaiLieuNop"][0]["KichThuoc"] = json!(1024);
    let v = t.sync(&s, false, vec![d.clone()]).await;
    assert_eq!(v["error_code"], json!(0), "{v}");
    let unknown = v["result"]["unknown_fields"].as_array().unwrap();
    assert!(unknown.contains(&json!("data[0].MaHoSoCu")));
    assert!(unknown.contains(&json!("data[0].TaiLieuNop[0].KichThuoc")));
    let r = t.portal.records();
    assert_eq!(r.unknown_fields.len(), 2);
    assert_eq!(r.dossiers["HS-1"][0].unknown_fields.len(), 2);

    let t = T::new(PortalConfig {
        strict_unknown_fields: true,
        ..Default::default()
    })
    .await;
    let s = t.login().await;
    let v = t.sync(&s, false, vec![d]).await;
    assert_eq!(v["error_code"], json!(-6));
    assert!(msg(&v).contains("data[0].MaHoSoCu: unknown field"));
    let (_, v) = t.share(&s, "LayDanhMucCoQuan", json!({"trang": 1})).await;
    assert_eq!(v["error_code"], json!(-6));
    assert!(t.portal.records().dossiers.is_empty());
}

#[tokio::test]
async fn progress_and_status_need_a_known_dossier_and_valid_fields() {
    let t = T::default().await;
    let s = t.login().await;
    let (_, v) = t
        .integ(
            &s,
            "CapNhatTienDoHoSoMC",
            json!({"data": [progress("HS-1")]}),
        )
        .await;
    assert_eq!(v["error_code"], json!(-8), "{v}");
    t.sync(&s, false, vec![dossier("HS-1")]).await;
    let mut p = progress("HS-1");
    p["ThoiDiemXuLy"] = json!("20241105250000");
    let (_, v) = t
        .integ(&s, "CapNhatTienDoHoSoMC", json!({"data": [p]}))
        .await;
    assert_eq!(v["error_code"], json!(-6));
    assert!(msg(&v).contains("data[0].ThoiDiemXuLy"));
    let mut p = progress("HS-1");
    p.as_object_mut().unwrap().remove("ChucDanh");
    let (_, v) = t
        .integ(&s, "CapNhatTienDoHoSoMC", json!({"data": [p]}))
        .await;
    assert!(msg(&v).contains("data[0].ChucDanh"));
    let (_, v) = t
        .integ(
            &s,
            "CapNhatTienDoHoSoMC",
            json!({"data": [progress("HS-1"), progress("HS-1")]}),
        )
        .await;
    assert_eq!(v["error_code"], json!(0), "{v}");
    assert_eq!(t.portal.records().progress["HS-1"].len(), 2);

    // Status: bad code, then a good one that the look-up shows.
    let st = |code: Value| json!({"data": [{"MaHoSo": "HS-1", "TrangThaiHoSo": code, "NgayCapNhat": "20241106100000"}]});
    let (_, v) = t.integ(&s, "DongBoTrangThaiHoSo", st(json!("0"))).await;
    assert_eq!(v["error_code"], json!(-6));
    let (_, v) = t.integ(&s, "DongBoTrangThaiHoSo", st(json!("10"))).await;
    assert_eq!(v["error_code"], json!(0), "{v}");
    let (_, v) = t.share(&s, "TraCuuHoSo", json!({"mahoso": "HS-1"})).await;
    assert_eq!(v["result"]["TrangThaiHoSo"], json!("10"));
    assert_eq!(t.portal.records().statuses["HS-1"].len(), 1);
}

#[tokio::test]
async fn expired_session_answers_the_expiry_code_then_a_fresh_login_works() {
    let t = T::new(PortalConfig {
        session_ttl_ms: 300,
        ..Default::default()
    })
    .await;
    let s = t.login().await;
    let (_, v) = t.share(&s, "LayDanhMucLinhVuc", json!({})).await;
    assert_eq!(v["error_code"], json!(0));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, v) = t.share(&s, "LayDanhMucLinhVuc", json!({})).await;
    assert_eq!((status, v["error_code"].clone()), (200, json!(-2)));
    assert!(!msg(&v).is_empty());
    let s = t.login().await;
    let (_, v) = t.share(&s, "LayDanhMucLinhVuc", json!({})).await;
    assert_eq!(v["error_code"], json!(0));

    // On demand, in-process and over HTTP.
    t.portal.expire_sessions();
    let (_, v) = t.share(&s, "LayDanhMucLinhVuc", json!({})).await;
    assert_eq!(v["error_code"], json!(-2));
    let s = t.login().await;
    t.http
        .post(format!("{}/_sandbox/expire-sessions", t.portal.base_url()))
        .send()
        .await
        .unwrap();
    let (_, v) = t.share(&s, "LayDanhMucLinhVuc", json!({})).await;
    assert_eq!(v["error_code"], json!(-2));
    assert_eq!(t.portal.logins(), 3);
}

#[tokio::test]
async fn catalogue_is_served_and_can_change() {
    let t = T::default().await;
    let s = t.login().await;
    let (_, v) = t.share(&s, "LayDanhSachTTHC", json!({})).await;
    let list = v["result"].as_array().unwrap();
    assert_eq!(list.len(), 20);
    for p in list {
        for f in [
            "MATTHC",
            "TENTTHC",
            "LINHVUCTHUCHIEN",
            "CACHTHUCTHUCHIEN",
            "THANHPHANHOSO",
            "COQUANTHUCHIEN",
            "KETQUATHUCHIEN",
            "CANCUPHAPLY",
            "YEUCAU",
        ] {
            assert!(p.get(f).is_some(), "{f} missing in {p}");
        }
        let fee = &p["CACHTHUCTHUCHIEN"][0]["THOIGIAN"][0]["PHILEPHI"][0];
        assert!(fee["SOTIEN"].is_number() && fee["DONVI"].is_string());
    }
    let (_, v) = t
        .share(&s, "LayThuTuc", json!({"MaTTHC": "1.001193"}))
        .await;
    assert_eq!(v["result"]["TENTTHC"], json!("Đăng ký khai sinh"));
    let (_, v) = t
        .share(&s, "LayThuTuc", json!({"MaTTHC": "0.000000"}))
        .await;
    assert_eq!(v["error_code"], json!(-9));
    let (_, v) = t.share(&s, "LayDanhMucCoQuan", json!({})).await;
    assert!(!v["result"].as_array().unwrap().is_empty());
    let (_, v) = t.share(&s, "LayDanhMucLinhVuc", json!({})).await;
    assert!(v["result"][0]["TENLINHVUC"].is_string());

    // Change detection: one fee changes, then the whole catalogue is replaced over HTTP.
    assert!(t.portal.update_procedure("1.001193", |p| {
        p["CACHTHUCTHUCHIEN"][0]["THOIGIAN"][0]["PHILEPHI"][0]["SOTIEN"] = json!(5000);
    }));
    let (_, v) = t
        .share(&s, "LayThuTuc", json!({"MaTTHC": "1.001193"}))
        .await;
    assert_eq!(
        v["result"]["CACHTHUCTHUCHIEN"][0]["THOIGIAN"][0]["PHILEPHI"][0]["SOTIEN"],
        json!(5000)
    );
    let mut c = builtin_catalogue();
    c.procedures.truncate(3);
    t.http
        .post(format!("{}/_sandbox/catalogue", t.portal.base_url()))
        .json(&c)
        .send()
        .await
        .unwrap();
    let (_, v) = t.share(&s, "LayDanhSachTTHC", json!({})).await;
    assert_eq!(v["result"].as_array().unwrap().len(), 3);
    // A procedure removed from the catalogue can no longer be synced.
    let mut d = dossier("HS-1");
    d["MaTTHC"] = json!(builtin_catalogue().codes()[10].clone());
    assert_eq!(t.sync(&s, false, vec![d]).await["error_code"], json!(-9));
    t.portal.set_catalogue(builtin_catalogue());
    assert_eq!(t.portal.catalogue().procedures.len(), 20);
}

#[tokio::test]
async fn error_codes_can_be_strings_or_mixed() {
    let t = T::new(PortalConfig {
        code_style: CodeStyle::String,
        ..Default::default()
    })
    .await;
    let (_, v) = t
        .post(
            &t.portal.login_url(),
            &json!({"username": "sandbox", "password": "sandbox-password"}),
        )
        .await;
    assert_eq!(v["error_code"], json!("00"));
    let (_, v) = t.share("nope", "LayDanhMucLinhVuc", json!({})).await;
    assert_eq!(v["error_code"], json!("-2"));

    let t = T::new(PortalConfig {
        code_style: CodeStyle::Mixed,
        ..Default::default()
    })
    .await;
    let s = t.login().await; // asserts a numeric 0
    let (_, v) = t.share(&s, "LayDanhMucLinhVuc", json!({})).await;
    assert_eq!(v["error_code"], json!("00"));
}

#[tokio::test]
async fn each_fault_kind_is_observable() {
    let t = T::default().await;
    let s = t.login().await;
    let url = t.portal.sharing_url();
    let b = T::body(&s, "LayDanhMucLinhVuc", json!({}));

    t.portal.fail_next(FaultKind::ServerError, 1);
    assert_eq!(t.post(&url, &b).await.0, 500);

    t.portal.fail_next(FaultKind::ErrorCode, 1);
    let (st, v) = t.post(&url, &b).await;
    assert_eq!((st, v["error_code"].clone()), (200, json!(-10)));

    t.portal.set_faults(Faults {
        script: vec![Scripted {
            kind: FaultKind::TooManyRequests,
            count: 1,
        }],
        retry_after_secs: 7,
        ..Default::default()
    });
    let r = t.raw(&url, &b).await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "7");

    t.portal.set_faults(Faults {
        hold_ms: 2_000,
        script: vec![Scripted {
            kind: FaultKind::Timeout,
            count: 1,
        }],
        ..Default::default()
    });
    let e = t
        .http
        .post(&url)
        .header("dstcode", DEFAULT_UNIT)
        .timeout(Duration::from_millis(300))
        .json(&b)
        .send()
        .await
        .unwrap_err();
    assert!(e.is_timeout(), "{e:?}");

    t.portal.fail_next(FaultKind::Reset, 1);
    let e = t.raw(&url, &b).await.unwrap_err();
    assert!(!e.is_timeout() && e.status().is_none(), "{e:?}");
    assert!(is_reset(&e), "expected a TCP reset: {e:?}");
    // The next call on a new connection is answered.
    assert_eq!(t.post(&url, &b).await.1["error_code"], json!(0));

    t.portal.fail_next(FaultKind::SessionExpired, 1);
    assert_eq!(t.post(&url, &b).await.1["error_code"], json!(-2));

    // A fixed delay.
    t.portal.set_faults(Faults {
        delay_ms: 250,
        ..Default::default()
    });
    let s = t.login().await;
    let b = T::body(&s, "LayDanhMucLinhVuc", json!({}));
    let start = Instant::now();
    assert_eq!(t.post(&url, &b).await.1["error_code"], json!(0));
    assert!(start.elapsed() >= Duration::from_millis(250));

    // Outage then recovery, over the sandbox endpoint.
    let faults_url = format!("{}/_sandbox/faults", t.portal.base_url());
    t.http
        .post(&faults_url)
        .json(&json!({"down": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(t.post(&url, &b).await.0, 503);
    assert_eq!(t.post(&url, &b).await.0, 503);
    t.portal.set_down(false);
    assert_eq!(t.post(&url, &b).await.1["error_code"], json!(0));

    let r = t.portal.records();
    for k in [
        "server_error",
        "error_code",
        "too_many_requests",
        "timeout",
        "reset",
        "session_expired",
    ] {
        assert_eq!(r.injected.get(k), Some(&1), "{k}: {:?}", r.injected);
    }
    assert_eq!(r.injected.get("down"), Some(&2));
    assert!(r.refused.iter().filter(|x| x.injected).count() >= 7);
}

#[tokio::test]
async fn scripted_sequence_and_rates() {
    let t = T::default().await;
    let s = t.login().await;
    let url = t.portal.sharing_url();
    let b = T::body(&s, "LayDanhMucLinhVuc", json!({}));
    // The next 3 calls fail with 500, then 1 with 503; then calls succeed.
    let faults =
        json!({"script": [{"kind": "server_error", "count": 3}, {"kind": "down", "count": 1}]});
    t.http
        .post(format!("{}/_sandbox/faults", t.portal.base_url()))
        .json(&faults)
        .send()
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(t.post(&url, &b).await.0);
    }
    assert_eq!(got, vec![500, 500, 500, 503, 200, 200]);
    assert!(t.portal.faults().script.is_empty());

    // Rates: every call answered 200 with the error code.
    t.portal.set_faults(Faults {
        error_code_rate: 1.0,
        ..Default::default()
    });
    for _ in 0..3 {
        assert_eq!(t.post(&url, &b).await.1["error_code"], json!(-10));
    }
    t.portal.set_faults(Faults {
        reset_rate: 0.5,
        ..Default::default()
    });
    let mut resets = 0;
    for _ in 0..40 {
        if t.raw(&url, &b).await.is_err() {
            resets += 1;
        }
    }
    assert!((5..=35).contains(&resets), "{resets} resets of 40");
    assert_eq!(t.portal.records().injected["reset"], resets);
}

#[tokio::test]
async fn rate_limit_answers_429_beyond_the_rate_and_counts_it() {
    let t = T::default().await;
    let s = t.login().await;
    t.portal.set_rate_limit(Some(RateLimit {
        per_sec: 10.0,
        burst: 5,
    }));
    let url = t.portal.sharing_url();
    let b = T::body(&s, "LayDanhMucLinhVuc", json!({}));
    let (mut ok, mut limited) = (0u64, 0u64);
    let start = Instant::now();
    for _ in 0..20 {
        let r = t.raw(&url, &b).await.unwrap();
        match r.status().as_u16() {
            200 => ok += 1,
            429 => {
                assert!(r.headers().get("retry-after").is_some());
                limited += 1
            }
            other => panic!("unexpected {other}"),
        }
    }
    // The burst, plus what refilled meanwhile (a slow machine refills more), never more.
    let refill = (start.elapsed().as_secs_f64() * 10.0).ceil() as u64;
    assert!(ok >= 5 && ok <= 5 + refill, "{ok} passed, refill {refill}");
    assert!(limited > 0);
    assert_eq!(t.portal.rate_limited(), limited);

    // A client pacing itself at the rate is never limited.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = t.portal.rate_limited();
    for _ in 0..10 {
        assert_eq!(t.raw(&url, &b).await.unwrap().status().as_u16(), 200);
        tokio::time::sleep(Duration::from_millis(110)).await;
    }
    assert_eq!(t.portal.rate_limited(), before);
}

#[tokio::test]
async fn ordering_helpers_find_an_older_version_after_a_newer_one() {
    let t = T::default().await;
    let s = t.login().await;
    let v = |n: i64| {
        let mut d = dossier("HS-1");
        d["GhiChu"] = json!(format!("v{n}"));
        d
    };
    t.sync(&s, false, vec![v(1)]).await;
    t.sync(&s, true, vec![v(3)]).await;
    t.sync(&s, true, vec![v(2)]).await;
    let r = t.portal.records();
    let bad = r.ordering_violations(|_, item| {
        item["GhiChu"]
            .as_str()?
            .trim_start_matches('v')
            .parse()
            .ok()
    });
    assert_eq!(bad.len(), 1);
    assert_eq!((bad[0].version, bad[0].after_version), (2, 3));

    let mut sent = BTreeMap::new();
    sent.insert("HS-1".to_string(), vec![v(1), v(2), v(3)]);
    sent.insert("HS-2".to_string(), vec![dossier("HS-2")]);
    let c = r.check_sent(&sent);
    assert_eq!(c.older_after_newer, 1);
    assert_eq!(c.missing, vec!["HS-1".to_string(), "HS-2".to_string()]);
}
