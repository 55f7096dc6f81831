//! Canonical model → the portal's JSON. The portal's Vietnamese field names live here and only
//! here, exactly as the portal spells them.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::model::{Dossier, OwnerKind, ProgressStep};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TranslateError {
    #[error("the canonical payload does not match the model: {0}")]
    Canonical(String),
    #[error("procedure code `{0}` has no national code in the adapter's procedure table")]
    UnknownProcedure(String),
    #[error("{field}: `{value}` is not an RFC 3339 date-time with offset")]
    BadDate { field: &'static str, value: String },
    #[error("this connector does not send events of kind `{0}`")]
    UnknownKind(String),
}

/// Why a procedure table cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProcedureTableError {
    #[error("cannot read procedure table {path}: {detail}")]
    Read { path: String, detail: String },
    #[error("{path}: {detail}")]
    Parse { path: String, detail: String },
    #[error("{path}:codes.{local}: `{national}` is not a national procedure code (d.dddddd)")]
    NotNational {
        path: String,
        local: String,
        national: String,
    },
}

/// Local procedure codes → national codes (`MaTTHC`).
#[derive(Debug, Clone, Default)]
pub struct ProcedureTable {
    codes: HashMap<String, String>,
}

impl ProcedureTable {
    /// Load `[codes] "LOCAL" = "1.001234"` from a TOML file.
    pub fn load(path: &Path) -> Result<Self, ProcedureTableError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            codes: HashMap<String, String>,
        }
        let shown = || path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ProcedureTableError::Read {
            path: shown(),
            detail: e.to_string(),
        })?;
        let f: File = toml::from_str(&text).map_err(|e| ProcedureTableError::Parse {
            path: shown(),
            detail: e.message().to_string(),
        })?;
        for (local, national) in &f.codes {
            if !is_national(national) {
                return Err(ProcedureTableError::NotNational {
                    path: shown(),
                    local: local.clone(),
                    national: national.clone(),
                });
            }
        }
        Ok(ProcedureTable { codes: f.codes })
    }

    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        ProcedureTable {
            codes: pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        }
    }

    /// The national code for a local one; a code that is already national passes as is.
    pub fn national(&self, code: &str) -> Result<String, TranslateError> {
        if let Some(n) = self.codes.get(code) {
            return Ok(n.clone());
        }
        if is_national(code) {
            return Ok(code.to_string());
        }
        Err(TranslateError::UnknownProcedure(code.to_string()))
    }
}

/// National procedure codes look like `1.001234` (one digit, a dot, six digits).
pub fn is_national(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() == 8 && b[0].is_ascii_digit() && b[1] == b'.' && b[2..].iter().all(u8::is_ascii_digit)
}

/// RFC 3339 → `yyyyMMddHHmmss` in Vietnam time (UTC+7).
pub fn portal_date(field: &'static str, rfc3339: &str) -> Result<String, TranslateError> {
    let t = OffsetDateTime::parse(rfc3339, &Rfc3339).map_err(|_| TranslateError::BadDate {
        field,
        value: rfc3339.to_string(),
    })?;
    let vn = crate::model::time::VIETNAM;
    let t = t.to_offset(vn);
    Ok(format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    ))
}

fn opt_date(
    m: &mut Map<String, Value>,
    key: &str,
    field: &'static str,
    v: &Option<String>,
) -> Result<(), TranslateError> {
    if let Some(v) = v {
        m.insert(key.into(), Value::String(portal_date(field, v)?));
    }
    Ok(())
}

fn opt_str(m: &mut Map<String, Value>, key: &str, v: Option<&String>) {
    if let Some(v) = v {
        m.insert(key.into(), Value::String(v.clone()));
    }
}

/// One `DongBoHoSoMC` data item.
pub fn dossier_item(d: &Dossier, procedures: &ProcedureTable) -> Result<Value, TranslateError> {
    let mut m = Map::new();
    m.insert("MaHoSo".into(), json!(d.code));
    m.insert(
        "MaTTHC".into(),
        json!(procedures.national(&d.procedure_code)?),
    );
    m.insert(
        "TenTTHC".into(),
        json!(d.procedure_name.clone().unwrap_or_default()),
    );
    m.insert(
        "MaLinhVuc".into(),
        json!(d.field_code.clone().unwrap_or_default()),
    );
    m.insert(
        "TenLinhVuc".into(),
        json!(d.field_name.clone().unwrap_or_default()),
    );
    opt_str(&mut m, "SoBienNhan", d.receipt_number.as_ref());
    m.insert("ChuHoSo".into(), json!(d.owner.name.0));
    m.insert(
        "LoaiDoiTuong".into(),
        json!(match d.owner.kind {
            OwnerKind::Citizen => "1",
            OwnerKind::Organisation => "2",
        }),
    );
    opt_str(
        &mut m,
        "MaDoiTuong",
        d.owner.id_number.as_ref().map(|p| &p.0),
    );
    opt_str(&mut m, "Email", d.owner.email.as_ref().map(|p| &p.0));
    opt_str(&mut m, "SoDienThoai", d.owner.phone.as_ref().map(|p| &p.0));
    m.insert("TrichYeuHoSo".into(), json!(d.summary));
    m.insert(
        "NgayTiepNhan".into(),
        json!(portal_date("received_at", &d.received_at)?),
    );
    m.insert(
        "NgayHenTra".into(),
        json!(portal_date("due_at", &d.due_at)?),
    );
    m.insert("TrangThaiHoSo".into(), json!(d.status.national_code()));
    opt_date(&mut m, "NgayTra", "returned_at", &d.returned_at)?;
    opt_date(&mut m, "NgayKetThucXuLy", "finished_at", &d.finished_at)?;
    m.insert("DonViXuLy".into(), json!(d.handling_unit));
    opt_str(&mut m, "GhiChu", d.note.as_ref());
    // Files that fulfil a dossier component go to TaiLieuNop; others (no component code) are
    // "other attached papers" (DanhSachTepDinhKemKhac): the portal requires the component code.
    let (components, others): (Vec<_>, Vec<_>) = d.attachments.iter().partition(|a| {
        a.component_code
            .as_deref()
            .is_some_and(|c| !c.trim().is_empty())
    });
    m.insert(
        "TaiLieuNop".into(),
        Value::Array(
            components
                .iter()
                .map(|a| {
                    json!({
                        "TepDinhKemId": a.id,
                        "TenTepDinhKem": a.name,
                        "IsDeleted": a.deleted,
                        "MaThanhPhanHoSo": a.component_code.clone().unwrap_or_default(),
                        "DuongDanTaiTepTin": a.url,
                    })
                })
                .collect(),
        ),
    );
    m.insert(
        "DanhSachTepDinhKemKhac".into(),
        Value::Array(
            others
                .iter()
                .filter(|a| !a.deleted)
                .map(|a| json!({"TenGiayTo": a.name, "SoLuong": 1, "LoaiGiayTo": "1"}))
                .collect(),
        ),
    );
    m.insert(
        "DanhSachLePhi".into(),
        Value::Array(
            d.fees
                .iter()
                .map(|f| {
                    json!({
                        "TenPhiLePhi": f.name,
                        "MaPhiLePhi": f.code,
                        "HinhThucThu": "1",
                        "Gia": f.amount_vnd,
                        "LoaiPhiLePhi": f.category.clone().unwrap_or_else(|| "1".into()),
                    })
                })
                .collect(),
        ),
    );
    m.insert("DanhSachHoSoBoSung".into(), json!([]));
    m.insert("DanhSachGiayToKetQua".into(), json!([]));
    Ok(Value::Object(m))
}

/// One `CapNhatTienDoHoSoMC` data item.
pub fn progress_item(code: &str, s: &ProgressStep) -> Result<Value, TranslateError> {
    let mut m = Map::new();
    m.insert("MaHoSo".into(), json!(code));
    m.insert("NguoiXuLy".into(), json!(s.handler));
    // The portal requires a non-empty title; "Cán bộ" (officer) when the source has none.
    let title = s.title.clone().filter(|t| !t.trim().is_empty());
    m.insert(
        "ChucDanh".into(),
        json!(title.unwrap_or_else(|| "Cán bộ".into())),
    );
    m.insert("ThoiDiemXuLy".into(), json!(portal_date("step.at", &s.at)?));
    m.insert("PhongBanXuLy".into(), json!(s.department));
    m.insert("NoiDungXuLy".into(), json!(s.content));
    m.insert("TrangThai".into(), json!(s.status.national_code()));
    // Both dates are required by the portal; a source without them gets the step's own time.
    let started = s.started_at.as_ref().unwrap_or(&s.at);
    let due = s.due_at.as_ref().unwrap_or(&s.at);
    m.insert(
        "NgayBatDau".into(),
        json!(portal_date("step.started_at", started)?),
    );
    m.insert(
        "NgayKetThucTheoQuyDinh".into(),
        json!(portal_date("step.due_at", due)?),
    );
    Ok(Value::Object(m))
}

/// The fields of a `DongBoTrangThaiHoSo` body ([likely]: the dossier code, the status code and
/// when it changed).
pub fn status_body(d: &Dossier) -> Result<Map<String, Value>, TranslateError> {
    let mut m = Map::new();
    m.insert("MaHoSo".into(), json!(d.code));
    m.insert("TrangThaiHoSo".into(), json!(d.status.national_code()));
    let when = d
        .finished_at
        .as_ref()
        .or(d.returned_at.as_ref())
        .unwrap_or(&d.received_at);
    m.insert(
        "NgayCapNhat".into(),
        json!(portal_date("status date", when)?),
    );
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    pub(crate) fn sample() -> Dossier {
        Dossier {
            code: "000.00.01.H22-241124-0001".into(),
            version: 2,
            procedure_code: "KS-01".into(),
            procedure_name: Some("Đăng ký khai sinh".into()),
            field_code: Some("HT".into()),
            field_name: Some("Hộ tịch".into()),
            receipt_number: None,
            owner: Owner {
                name: Personal("Nguyễn Văn An".into()),
                kind: OwnerKind::Citizen,
                id_number: Some(Personal("001203004567".into())),
                phone: None,
                email: None,
                address: None,
            },
            summary: "Đăng ký khai sinh cho con".into(),
            received_at: "2026-11-24T01:30:00Z".into(),
            due_at: "2026-11-26T17:00:00+07:00".into(),
            returned_at: None,
            finished_at: None,
            status: DossierStatus::InProcessing,
            handling_unit: "UBND xã Tân Lập".into(),
            note: None,
            fees: vec![Fee {
                code: "LP01".into(),
                name: "Lệ phí".into(),
                amount_vnd: 8000,
                category: None,
                paid: false,
            }],
            attachments: vec![],
            progress: vec![],
            channel: None,
            results: vec![],
        }
    }

    #[test]
    fn dates_are_vietnam_time() {
        assert_eq!(
            portal_date("x", "2026-11-24T01:30:00Z").unwrap(),
            "20261124083000"
        );
        assert_eq!(
            portal_date("x", "2026-11-24T23:59:59+07:00").unwrap(),
            "20261124235959"
        );
        assert_eq!(
            portal_date("x", "2026-11-24T20:00:00Z").unwrap(),
            "20261125030000"
        );
        assert!(matches!(
            portal_date("due_at", "24/11/2026"),
            Err(TranslateError::BadDate {
                field: "due_at",
                ..
            })
        ));
    }

    #[test]
    fn dossier_item_uses_the_portal_names_and_codes() {
        let t = ProcedureTable::from_pairs(&[("KS-01", "1.001193")]);
        let v = dossier_item(&sample(), &t).unwrap();
        assert_eq!(v["MaHoSo"], "000.00.01.H22-241124-0001");
        assert_eq!(v["MaTTHC"], "1.001193");
        assert_eq!(v["TrangThaiHoSo"], "4");
        assert_eq!(v["LoaiDoiTuong"], "1");
        assert_eq!(v["NgayTiepNhan"], "20261124083000");
        assert_eq!(v["NgayHenTra"], "20261126170000");
        assert_eq!(v["DanhSachLePhi"][0]["Gia"], 8000);
        assert_eq!(v["ChuHoSo"], "Nguyễn Văn An");
    }

    #[test]
    fn unknown_local_procedure_is_refused_but_national_passes() {
        let t = ProcedureTable::default();
        let mut d = sample();
        assert_eq!(
            dossier_item(&d, &t).unwrap_err(),
            TranslateError::UnknownProcedure("KS-01".into())
        );
        d.procedure_code = "1.001193".into();
        assert_eq!(dossier_item(&d, &t).unwrap()["MaTTHC"], "1.001193");
        assert!(!is_national("1.00119"));
        assert!(!is_national("a.001193"));
    }
}
