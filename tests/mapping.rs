//! Scenarios of the declarative one-stop adapter (`src/mapping`), on the example adapter
//! `adapters/onestop-example` and on variants of it written to a temporary folder.

use std::path::{Path, PathBuf};

use gateway::mapping::dates::{canonical, parse_canonical, DateError, DateFormat};
use gateway::mapping::path::JsonPath;
use gateway::mapping::{map_command, Adapter, InboundKind, MappingError};
use gateway::model::{DossierStatus, OwnerKind};
use serde_json::{json, Value};
use unicode_normalization::{is_nfc, UnicodeNormalization};

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("adapters/onestop-example")
}

fn example() -> Adapter {
    Adapter::load(&example_dir()).unwrap_or_else(|ps| {
        panic!(
            "example adapter must load:\n{}",
            ps.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

fn sample(name: &str) -> Value {
    let p = example_dir().join("samples").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

/// A copy of the example adapter in a temporary folder, with `edit` applied to one file.
fn variant(file: &str, edit: impl FnOnce(String) -> String) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("onestop-example");
    copy_dir(&example_dir(), &dir);
    let p = dir.join(file);
    let text = std::fs::read_to_string(&p).unwrap_or_default();
    std::fs::write(&p, edit(text)).unwrap();
    (tmp, dir)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

fn load_problems(dir: &Path) -> Vec<String> {
    match Adapter::load(dir) {
        Ok(_) => panic!("the variant must not load"),
        Err(ps) => ps.iter().map(|p| p.to_string()).collect(),
    }
}

fn has(problems: &[String], fragment: &str) {
    assert!(
        problems.iter().any(|p| p.contains(fragment)),
        "no problem contains {fragment:?}:\n{}",
        problems.join("\n")
    );
}

/// Every string under `chuHoSo` (personal data) in a message.
fn personal_values(v: &Value) -> Vec<String> {
    v.get("chuHoSo")
        .and_then(Value::as_object)
        .map(|o| {
            o.values()
                .filter_map(Value::as_str)
                .filter(|s| s.trim().len() > 3)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_example_adapter_loads_with_its_definition_and_procedure_table() {
    let a = example();
    assert_eq!(a.name, "onestop-example");
    assert_eq!(a.def.name.as_deref(), Some("onestop-example"));
    assert_eq!(a.def.limits.max_body_bytes, 1_048_576);
    assert_eq!(a.national_procedure_code("HT-KS-01"), Some("1.001193"));
    assert_eq!(a.national_procedure_code("XX-99"), None);
    assert_eq!(a.mapping.inbound_schema(), Some("hoso"));
}

#[test]
fn every_valid_sample_maps_and_round_trips_through_the_vendor_form() {
    let a = example();
    let samples = files(&example_dir().join("samples"), "json");
    assert!(samples.len() >= 6, "at least 6 valid samples");
    for p in samples {
        let origin = p.file_name().unwrap().to_string_lossy().into_owned();
        let body = std::fs::read(&p).unwrap();
        let inbound = a
            .parse_inbound(&body, &origin)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inbound.version, inbound.dossier.version);
        let vendor = a
            .from_canonical(&inbound.dossier)
            .unwrap_or_else(|e| panic!("{origin}: reverse: {e}"));
        a.validate_schema("hoso", &vendor, &origin).unwrap();
        let again = a
            .to_canonical(&vendor, &format!("{origin} (round trip)"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            again.dossier, inbound.dossier,
            "{origin}: round trip differs"
        );
        // Canonical dates are RFC 3339 at +07:00.
        for d in [&inbound.dossier.received_at, &inbound.dossier.due_at] {
            assert!(d.ends_with("+07:00"), "{origin}: {d}");
            parse_canonical(d).unwrap();
        }
    }
}

#[test]
fn every_invalid_sample_fails_with_its_expected_fragment_and_no_personal_data() {
    let a = example();
    let dir = example_dir().join("samples/invalid");
    let expects = files(&dir, "expect");
    assert!(expects.len() >= 8, "at least 8 invalid samples");
    for e in expects {
        let stem = e.file_stem().unwrap().to_string_lossy().into_owned();
        let sample = dir.join(format!("{stem}.json"));
        let origin = format!("{stem}.json");
        let fragment = std::fs::read_to_string(&e).unwrap().trim().to_string();
        let body = std::fs::read(&sample).unwrap();
        let err = match a.parse_inbound(&body, &origin) {
            Ok(_) => panic!("{origin} must fail"),
            Err(err) => err.to_string(),
        };
        assert!(
            err.starts_with(&format!("{origin}: ")),
            "the error names its origin: {err}"
        );
        assert!(
            err.contains(&fragment),
            "{origin}: expected {fragment:?} in:\n{err}"
        );
        if let Ok(v) = serde_json::from_slice::<Value>(&body) {
            for pv in personal_values(&v) {
                assert!(!err.contains(&pv), "{origin}: personal value leaked: {err}");
            }
        }
    }
}

#[test]
fn the_lifecycle_samples_carry_kind_status_and_steps() {
    let a = example();
    let cases = [
        (
            "01-tiep-nhan.json",
            InboundKind::DossierUpserted,
            DossierStatus::Received,
            0,
        ),
        (
            "02-tien-do-dang-xu-ly.json",
            InboundKind::Progress,
            DossierStatus::InProcessing,
            1,
        ),
        (
            "03-yeu-cau-bo-sung.json",
            InboundKind::Status,
            DossierStatus::SupplementRequested,
            2,
        ),
        (
            "04-to-chuc-dat-dai.json",
            InboundKind::DossierUpserted,
            DossierStatus::InProcessing,
            1,
        ),
        (
            "05-da-xu-ly.json",
            InboundKind::Status,
            DossierStatus::Processed,
            3,
        ),
        // No loaiThongDiep: the default kind.
        (
            "06-da-tra-ket-qua-khong-loai.json",
            InboundKind::DossierUpserted,
            DossierStatus::ResultReturned,
            3,
        ),
    ];
    for (file, kind, status, steps) in cases {
        let i = a.to_canonical(&sample(file), file).unwrap();
        assert_eq!(i.kind, kind, "{file}");
        assert_eq!(i.dossier.status, status, "{file}");
        assert_eq!(i.dossier.progress.len(), steps, "{file}");
    }
    let i = a
        .to_canonical(&sample("03-yeu-cau-bo-sung.json"), "s")
        .unwrap();
    assert_eq!(i.version, 3);
    assert_eq!(
        i.dossier.progress[1].status,
        DossierStatus::SupplementRequested
    );
    assert_eq!(
        i.dossier.note.as_deref(),
        Some("Chờ công dân bổ sung giấy tờ")
    );
    assert_eq!(i.kind.envelope_kind(), "dossier.status");
}

#[test]
fn dates_of_every_vendor_form_become_rfc3339_at_plus_seven() {
    let a = example();
    let d = a
        .to_canonical(&sample("05-da-xu-ly.json"), "s")
        .unwrap()
        .dossier;
    assert_eq!(d.received_at, "2026-11-24T08:30:00+07:00"); // dd/MM/yyyy HH:mm:ss, no offset
    assert_eq!(d.due_at, "2026-11-26T17:00:00+07:00");
    assert_eq!(d.finished_at.as_deref(), Some("2026-11-26T10:15:00+07:00")); // ...Z (UTC)
    assert_eq!(d.progress[0].at, "2026-11-24T09:00:00+07:00"); // epoch millis
    assert_eq!(
        d.progress[0].started_at.as_deref(),
        Some("2026-11-24T09:00:00+07:00")
    ); // yyyyMMddHHmmss
    assert_eq!(
        d.progress[0].due_at.as_deref(),
        Some("2026-11-25T17:00:00+07:00")
    );
    // And back the vendor's way.
    let v = a.from_canonical(&d).unwrap();
    assert_eq!(v["ngayTiepNhan"], "24/11/2026 08:30:00");
    assert_eq!(v["ngayKetThucXuLy"], "2026-11-26T03:15:00Z");
    assert_eq!(v["quaTrinhXuLy"][0]["ngayBatDau"], "20261124090000");
    assert_eq!(v["quaTrinhXuLy"][0]["thoiDiemXuLy"], 1_795_485_600_000i64);
}

#[test]
fn date_formats_unit() {
    let f = DateFormat::parse("dd/MM/yyyy HH:mm:ss").unwrap();
    assert_eq!(
        canonical(f.read(&json!("01/01/2027 00:00:00")).unwrap()),
        "2027-01-01T00:00:00+07:00"
    );
    let e = f.read(&json!("31/02/2026 08:00:00")).unwrap_err();
    assert!(matches!(e, DateError::Mismatch { .. }), "{e}");
    assert!(e.to_string().contains("not a real date"), "{e}");
    let e = f.read(&json!("31/04/2026 08:00:00")).unwrap_err();
    assert!(e.to_string().contains("not a real date"), "{e}");
    assert!(f.read(&json!("24/11/2026")).is_err());
    let z = DateFormat::parse("yyyy-MM-ddTHH:mm:ssZ").unwrap();
    // An explicit offset is honoured, then expressed at +07:00.
    assert_eq!(
        canonical(z.read(&json!("2026-11-24T10:30:00+09:00")).unwrap()),
        "2026-11-24T08:30:00+07:00"
    );
    let compact = DateFormat::parse("yyyyMMddHHmmss").unwrap();
    assert_eq!(
        canonical(compact.read(&json!("20261231235959")).unwrap()),
        "2026-12-31T23:59:59+07:00"
    );
    let epoch = DateFormat::parse("epoch_millis").unwrap();
    assert_eq!(
        canonical(epoch.read(&json!(0)).unwrap()),
        "1970-01-01T07:00:00+07:00"
    );
    assert!(DateFormat::parse("dd/MM/yy").is_err());
}

#[test]
fn json_paths_unit() {
    let v =
        json!({"hoSo": {"chuHoSo": {"hoTen": "A"}}, "phiLePhi": [{"soTien": 1}, {"soTien": 2}]});
    assert_eq!(
        JsonPath::parse("hoSo.chuHoSo.hoTen").unwrap().get(&v),
        Some(&json!("A"))
    );
    let all = JsonPath::parse("phiLePhi[].soTien").unwrap().get_all(&v);
    assert_eq!(all.iter().map(|(_, v)| v.as_i64().unwrap()).sum::<i64>(), 3);
    assert_eq!(all[0].0, "$.phiLePhi[0].soTien");
    assert_eq!(
        JsonPath::parse("phiLePhi[1].soTien").unwrap().get(&v),
        Some(&json!(2))
    );
    assert_eq!(JsonPath::parse("hoSo.khong").unwrap().get(&v), None);
    let mut out = Value::Null;
    JsonPath::parse("hoSo.chuHoSo.hoTen")
        .unwrap()
        .set(&mut out, json!("B"))
        .unwrap();
    assert_eq!(out, json!({"hoSo": {"chuHoSo": {"hoTen": "B"}}}));
    assert!(JsonPath::parse("a..b").is_err());
}

#[test]
fn vietnamese_text_is_preserved_and_normalised_to_nfc() {
    let a = example();
    let raw = sample("07-van-ban-nfd.json");
    assert!(
        !is_nfc(raw["chuHoSo"]["hoTen"].as_str().unwrap()),
        "the sample is decomposed"
    );
    let d = a.to_canonical(&raw, "s").unwrap().dossier;
    assert_eq!(d.owner.name.0, "Đặng Thị Thuỳ Dương");
    assert!(is_nfc(&d.owner.name.0) && is_nfc(&d.summary));
    assert_eq!(
        d.summary,
        "Đăng ký khai sinh cho con: Võ Hoàng Yến"
            .nfc()
            .collect::<String>()
    );
    let d = a
        .to_canonical(&sample("04-to-chuc-dat-dai.json"), "s")
        .unwrap()
        .dossier;
    assert_eq!(d.owner.kind, OwnerKind::Organisation);
    assert!(d
        .procedure_name
        .unwrap()
        .contains("quyền sở hữu nhà ở và tài sản khác gắn liền với đất"));
}

#[test]
fn defaults_fill_absent_values_and_required_ones_fail() {
    let a = example();
    let mut v = sample("01-tiep-nhan.json");
    let o = v.as_object_mut().unwrap();
    o.remove("loaiDoiTuong");
    o.remove("donViXuLy");
    o["phiLePhi"][0]
        .as_object_mut()
        .unwrap()
        .remove("daThanhToan");
    let d = a.to_canonical(&v, "s").unwrap().dossier;
    assert_eq!(d.owner.kind, OwnerKind::Citizen);
    assert_eq!(d.handling_unit, "UBND tỉnh (ví dụ)");
    assert!(!d.fees[0].paid);
    // A blank string is absent too (null as well, but the schema refuses null here).
    let mut v = sample("01-tiep-nhan.json");
    v["trichYeu"] = json!("   ");
    let e = a
        .to_canonical(&v, "inbound request")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "inbound request: $.trichYeu: required value is missing (rule fields.summary)"
    );
}

#[test]
fn tables_translate_both_ways_and_name_the_known_codes() {
    let a = example();
    let mut v = sample("01-tiep-nhan.json");
    v["trangThai"] = json!("CONG_DAN_RUT");
    let d = a.to_canonical(&v, "s").unwrap().dossier;
    assert_eq!(d.status, DossierStatus::WithdrawnByCitizen);
    assert_eq!(a.from_canonical(&d).unwrap()["trangThai"], "CONG_DAN_RUT");
    v["trangThai"] = json!("XYZ");
    let e = a.to_canonical(&v, "sample.json").unwrap_err().to_string();
    assert!(
        e.starts_with("sample.json: $.trangThai: value \"XYZ\" is not in table status (known: CHO_NGHIA_VU_TAI_CHINH, CONG_DAN_RUT, DANG_XU_LY"),
        "{e}"
    );
}

#[test]
fn procedure_table_is_an_error_only_when_strict() {
    let (_t, dir) = variant("procedures.toml", |s| {
        s.replace("strict = true", "strict = false")
    });
    let a = Adapter::load(&dir).unwrap();
    let mut v = sample("01-tiep-nhan.json");
    v["thuTuc"]["maThuTuc"] = json!("XX-99");
    let d = a.to_canonical(&v, "s").unwrap().dossier;
    assert_eq!(d.procedure_code, "XX-99");
    assert_eq!(a.national_procedure_code("XX-99"), None);
    // Without procedures.toml there is no table at all.
    let (_t, dir) = variant("procedures.toml", |s| s);
    std::fs::remove_file(dir.join("procedures.toml")).unwrap();
    let a = Adapter::load(&dir).unwrap();
    assert!(a.procedures.is_none());
    assert!(a.to_canonical(&v, "s").is_ok());
}

#[test]
fn personal_values_never_appear_in_errors() {
    // A table on a personal field, so its error would otherwise print the value.
    let (_t, dir) = variant("mapping.toml", |s| {
        s.replace(
            "path = \"chuHoSo.soCCCD\"\npersonal = true",
            "path = \"chuHoSo.soCCCD\"\ntable = \"owner_kind\"",
        )
    });
    let a = Adapter::load(&dir).unwrap();
    let v = sample("01-tiep-nhan.json");
    let e = a.to_canonical(&v, "s").unwrap_err().to_string();
    assert!(e.contains("$.chuHoSo.soCCCD"), "{e}");
    assert!(e.contains("personal data, not shown"), "{e}");
    assert!(!e.contains("001203004567"), "{e}");
    // Schema errors are masked as well.
    let mut v = sample("01-tiep-nhan.json");
    v["chuHoSo"]["soCCCD"] = json!("ABC-98765-XYZ");
    let e = example().to_canonical(&v, "s").unwrap_err().to_string();
    assert!(
        e.contains("$.chuHoSo.soCCCD") && !e.contains("98765"),
        "{e}"
    );
    // And the canonical dossier's Debug does not print them.
    let d = example()
        .to_canonical(&sample("01-tiep-nhan.json"), "s")
        .unwrap()
        .dossier;
    let dbg = format!("{d:?}");
    assert!(
        !dbg.contains("001203004567") && !dbg.contains("0912345678"),
        "{dbg}"
    );
}

#[test]
fn constants_are_used_inbound_and_not_written_back() {
    let (_t, dir) = variant("mapping.toml", |s| {
        s.replace(
            "[fields.handling_unit]\npath = \"donViXuLy.ten\"\ndefault = \"UBND tỉnh (ví dụ)\"",
            "[fields.handling_unit]\nconstant = \"UBND phường Đông Hà\"",
        )
    });
    let a = Adapter::load(&dir).unwrap();
    let mut v = sample("01-tiep-nhan.json");
    v["donViXuLy"]["ten"] = json!("something else");
    let d = a.to_canonical(&v, "s").unwrap().dossier;
    assert_eq!(d.handling_unit, "UBND phường Đông Hà");
    let back = a.from_canonical(&d).unwrap();
    assert!(back.get("donViXuLy").is_none(), "{back}");
    assert_eq!(back["nguonHoSo"], "DVCQG");
    assert_eq!(back["loaiThongDiep"], "HO_SO");
}

#[test]
fn a_broken_mapping_reports_every_problem_with_file_and_key() {
    let (_t, dir) = variant("mapping.toml", |s| {
        s.replace("path = \"maHoSo\"", "path = \"maHoSo..x\"")
            .replace("[fields.summary]\npath = \"trichYeu\"\n", "")
            .replace(
                "table = \"status\"\n\n[fields.handling_unit]",
                "table = \"trang_thai\"\n\n[fields.handling_unit]",
            )
            .replace(
                "date = \"dd/MM/yyyy HH:mm:ss\"\n\n[fields.due_at]",
                "date = \"dd/MMM/yyyy\"\n\n[fields.due_at]",
            )
            .replace(
                "[fields.fees.item.code]",
                "[fields.fees.item.code]\nrenamed = true",
            )
            .replace("default = \"1\"", "default = \"9\"")
            .replace(
                "DA_XU_LY = \"processed\"",
                "DA_XU_LY = \"processed\"\nXONG = \"processed\"\nLAM = \"doing\"",
            )
            .replace(
                "schema = \"hoso\"\n\n[message.kinds]",
                "schema = \"ho_so\"\n\n[message.kinds]",
            )
    });
    let ps = load_problems(&dir);
    let file = format!("{}/mapping.toml", dir.display());
    for key in [
        "fields.code.path: `maHoSo..x` has an empty key",
        "fields.summary: no rule, but the canonical dossier needs this value: add a rule",
        "fields.status.table: no table `trang_thai`",
        "fields.received_at.date: `dd/MMM/yyyy`",
        "fields.fees.item.code.renamed: unknown key",
        "fields.owner.kind.default: is not usable: value \"9\" is not in table owner_kind",
        "tables.status.XONG: `DA_XU_LY` and `XONG` both map to `processed`",
        "tables.status.LAM: `doing` is not a dossier status",
        "message.schema: no schema `ho_so`",
    ] {
        has(&ps, &format!("{file}:{key}"));
    }
}

#[test]
fn a_broken_adapter_definition_reports_every_problem() {
    let (_t, dir) = variant("adapter.toml", |s| {
        s.replace(
            "name = \"onestop-example\"",
            "name = \"onestop-old\"\nretries = 3",
        )
        .replace("max_body_bytes = 1048576", "max_body_bytes = 0")
    });
    let ps = load_problems(&dir);
    let file = format!("{}/adapter.toml", dir.display());
    for key in [
        "retries: unknown key: remove it or check its spelling against the format in src/mapping/def.rs",
        "name: `onestop-old` differs from the folder name `onestop-example`",
        "limits.max_body_bytes: is zero",
    ] {
        has(&ps, &format!("{file}:{key}"));
    }
    // A wrong type is reported at its key.
    let (_t, dir) = variant("adapter.toml", |s| {
        s.replace("max_body_bytes = 1048576", "max_body_bytes = \"big\"")
    });
    has(
        &load_problems(&dir),
        "adapter.toml:limits.max_body_bytes: invalid value",
    );
    // A schema that is not JSON.
    let (_t, dir) = variant("schemas/hoso.json", |s| s.replacen('{', "{{", 1));
    has(&load_problems(&dir), "schemas/hoso.json:-: not JSON");
}

#[test]
fn map_command_prints_the_canonical_dossier_and_the_vendor_form() {
    let out = map_command(
        &example_dir(),
        &example_dir().join("samples/01-tiep-nhan.json"),
    )
    .unwrap();
    assert!(
        out.starts_with(
            "# 01-tiep-nhan.json: dossier.upserted (version 1), adapter onestop-example"
        ),
        "{out}"
    );
    assert!(
        out.contains("# procedure HT-KS-01 → national 1.001193 (strict)"),
        "{out}"
    );
    assert!(
        out.contains("\"received_at\": \"2026-11-24T08:30:00+07:00\""),
        "{out}"
    );
    assert!(
        out.contains("## back to the one-stop system (schema hoso: valid)"),
        "{out}"
    );
    assert!(
        out.contains("\"ngayTiepNhan\": \"24/11/2026 08:30:00\""),
        "{out}"
    );
    let err = map_command(
        &example_dir(),
        &example_dir().join("samples/invalid/unknown-status.json"),
    )
    .unwrap_err();
    assert!(matches!(err, MappingError::Map(_)));
    assert!(err.to_string().contains("is not in table status"), "{err}");
    let err = map_command(Path::new("adapters/does-not-exist"), Path::new("x.json")).unwrap_err();
    assert!(matches!(err, MappingError::Load(_)), "{err}");
    assert!(
        err.to_string()
            .contains("adapters/does-not-exist/adapter.toml:-: cannot read"),
        "{err}"
    );
}

#[test]
fn schema_errors_list_every_violation_with_its_path() {
    let a = example();
    let mut v = sample("04-to-chuc-dat-dai.json");
    v["phiLePhi"][1]["soTien"] = json!("100000");
    v["giayToNop"][0]
        .as_object_mut()
        .unwrap()
        .remove("duongDan");
    v["thongTinLa"] = json!(1);
    let e = a
        .validate_schema("hoso", &v, "request")
        .unwrap_err()
        .to_string();
    for part in [
        "$.phiLePhi[1].soTien",
        "$.giayToNop[0]",
        "thongTinLa",
        "violates schema hoso",
    ] {
        assert!(e.contains(part), "{part} missing in {e}");
    }
    assert!(a.validate_schema("khong-co", &v, "request").is_err());
}

#[test]
fn the_reverse_direction_fails_on_values_it_cannot_express() {
    let a = example();
    let mut d = a
        .to_canonical(&sample("01-tiep-nhan.json"), "s")
        .unwrap()
        .dossier;
    d.fees[0].category = Some("donation".into());
    let e = a.from_canonical(&d).unwrap_err().to_string();
    assert!(
        e.contains("$.loaiPhi: canonical \"donation\" has no vendor code in table fee_category"),
        "{e}"
    );
    assert!(
        e.starts_with("reverse mapping of dossier H22.12-261124-0001: "),
        "{e}"
    );
    // The produced message must satisfy the reverse schema.
    let mut d = a
        .to_canonical(&sample("01-tiep-nhan.json"), "s")
        .unwrap()
        .dossier;
    d.owner.id_number = Some(gateway::model::Personal("not-a-number".into()));
    let e = a.from_canonical(&d).unwrap_err().to_string();
    assert!(
        e.contains("$.chuHoSo.soCCCD: violates schema hoso") && !e.contains("not-a-number"),
        "{e}"
    );
}

#[test]
fn a_body_above_the_adapter_limit_is_refused_before_parsing() {
    let (_t, dir) = variant("adapter.toml", |s| {
        s.replace("max_body_bytes = 1048576", "max_body_bytes = 100")
    });
    let a = Adapter::load(&dir).unwrap();
    let body = std::fs::read(example_dir().join("samples/01-tiep-nhan.json")).unwrap();
    let e = a
        .parse_inbound(&body, "inbound request")
        .unwrap_err()
        .to_string();
    assert!(e.contains("above limits.max_body_bytes 100"), "{e}");
}

#[test]
fn keys_removed_from_adapter_toml_are_refused_naming_where_their_job_is_done() {
    let (_t, dir) = variant("adapter.toml", |s| {
        s.replace(
            "[limits]",
            "connector = \"onestop-push\"\nsigning_profile = \"p\"\n\n\
             [outbound]\nurl = \"https://x.invalid\"\nsecret = { env = \"X\" }\n\n\
             [limits]\nmax_per_second = 20",
        )
    });
    let ps = load_problems(&dir);
    let file = format!("{}/adapter.toml", dir.display());
    for key in [
        "connector: unknown key: removed: an adapter folder is always the push side",
        "signing_profile: unknown key: removed: set signing on the destination adapter",
        "outbound: unknown key: removed: route dossiers to an [adapters.NAME]",
        "limits.max_per_second: unknown key: removed: set rate_limit",
    ] {
        has(&ps, &format!("{file}:{key}"));
    }
}

/// The files `check-config` (and `gateway run`, which loads the same folders) checks beside
/// the gateway config: a typo in an adapter folder is refused, naming the file and the key.
#[test]
fn check_config_refuses_a_typo_key_in_an_adapter_folder() {
    let (tmp, dir) = variant("adapter.toml", |s| {
        s.replace("max_body_bytes = 1048576", "max_body_byts = 1048576")
    });
    let mapping = dir.join("mapping.toml");
    let text = std::fs::read_to_string(&mapping).unwrap();
    std::fs::write(
        &mapping,
        text.replacen("required = true", "requird = true", 1),
    )
    .unwrap();
    let cfg = tmp.path().join("gateway.toml");
    std::fs::write(
        &cfg,
        "[inbound]\nlisten = \"127.0.0.1:0\"\n\
         [sources.vendor]\nadapter = \"onestop-example\"\n",
    )
    .unwrap();
    let loaded = gateway::config::load(&cfg).expect("the gateway config itself is valid");
    let problems = gateway::app::check_files(&loaded);
    let at = |f: &str| format!("{}/{f}", dir.display());
    has(
        &problems,
        &format!(
            "{}:sources.vendor.adapter: the adapter folder has problems",
            cfg.display()
        ),
    );
    has(
        &problems,
        &format!("{}:limits.max_body_byts: unknown key", at("adapter.toml")),
    );
    has(
        &problems,
        &format!("{}:fields.code.requird: unknown key", at("mapping.toml")),
    );
    // `gateway run` loads the folder through the same function and stops on the same text.
    let e = gateway::app::load_adapter(tmp.path(), Path::new("onestop-example")).unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("adapter.toml:limits.max_body_byts: unknown key"),
        "{e}"
    );
}
