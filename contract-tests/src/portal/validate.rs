//! Field-by-field validation of the portal's sync items (CONTRACTS.md section 1).
//!
//! Presence of required fields, the date format, the status table and `LoaiDoiTuong` are [seen]
//! and enforced strictly. The exact JSON types of sub-item fields are [likely]: `IsDeleted` must be
//! a boolean, `Gia` and `SoLuong` numbers, codes and texts strings (codes may also be integers).

use std::collections::BTreeSet;

use serde_json::Value;

/// What a field must hold.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    /// A non-empty string (when required).
    Str,
    /// A date `yyyyMMddHHmmss` that exists in the calendar.
    Date,
    /// A string or an integer (codes).
    Scalar,
    Bool,
    Num,
    /// A dossier status code from the configured table (string of digits or integer).
    Status,
    /// `LoaiDoiTuong`: "1" citizen or "2" organisation.
    SubjectType,
    /// An array of objects with these fields.
    Array(&'static [Field]),
    /// An array of objects whose fields are not specified ([open]: `DanhSachHoSoBoSung`).
    AnyArray,
}

pub(crate) struct Field {
    pub name: &'static str,
    pub required: bool,
    pub kind: Kind,
}

const fn req(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        required: true,
        kind,
    }
}

const fn opt(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        required: false,
        kind,
    }
}

pub(crate) const TAI_LIEU_NOP: &[Field] = &[
    req("TepDinhKemId", Kind::Scalar),
    req("TenTepDinhKem", Kind::Str),
    req("IsDeleted", Kind::Bool),
    req("MaThanhPhanHoSo", Kind::Scalar),
    req("DuongDanTaiTepTin", Kind::Str),
];

pub(crate) const DANH_SACH_LE_PHI: &[Field] = &[
    req("TenPhiLePhi", Kind::Str),
    req("MaPhiLePhi", Kind::Scalar),
    req("HinhThucThu", Kind::Scalar),
    req("Gia", Kind::Num),
    req("LoaiPhiLePhi", Kind::Scalar),
];

pub(crate) const TEP_DINH_KEM_KHAC: &[Field] = &[
    req("TenGiayTo", Kind::Str),
    req("SoLuong", Kind::Num),
    req("LoaiGiayTo", Kind::Scalar),
];

pub(crate) const GIAY_TO_KET_QUA: &[Field] = &[
    req("TenGiayTo", Kind::Str),
    req("MaThanhPhanHoSo", Kind::Scalar),
    req("GiayToId", Kind::Scalar),
    req("DuongDanTepTinKetQua", Kind::Str),
];

/// The dossier item of `DongBoHoSoMC`, exactly as CONTRACTS.md spells it. The sub-item arrays
/// are optional (absent or null is accepted); when present they are validated item by item.
pub(crate) const DOSSIER: &[Field] = &[
    req("MaHoSo", Kind::Str),
    req("MaTTHC", Kind::Str),
    req("TenTTHC", Kind::Str),
    req("MaLinhVuc", Kind::Scalar),
    req("TenLinhVuc", Kind::Str),
    opt("SoBienNhan", Kind::Str),
    req("ChuHoSo", Kind::Str),
    req("LoaiDoiTuong", Kind::SubjectType),
    opt("MaDoiTuong", Kind::Str),
    opt("ThongTinKhac", Kind::Str),
    opt("Email", Kind::Str),
    opt("Fax", Kind::Str),
    opt("SoDienThoai", Kind::Str),
    req("TrichYeuHoSo", Kind::Str),
    req("NgayTiepNhan", Kind::Date),
    req("NgayHenTra", Kind::Date),
    req("TrangThaiHoSo", Kind::Status),
    opt("NgayTra", Kind::Date),
    opt("ThongTinTra", Kind::Str),
    opt("HinhThuc", Kind::Scalar),
    opt("NgayKetThucXuLy", Kind::Date),
    req("DonViXuLy", Kind::Str),
    opt("GhiChu", Kind::Str),
    opt("TaiLieuNop", Kind::Array(TAI_LIEU_NOP)),
    opt("DanhSachLePhi", Kind::Array(DANH_SACH_LE_PHI)),
    opt("DanhSachTepDinhKemKhac", Kind::Array(TEP_DINH_KEM_KHAC)),
    opt("DanhSachHoSoBoSung", Kind::AnyArray),
    opt("DanhSachGiayToKetQua", Kind::Array(GIAY_TO_KET_QUA)),
];

/// The progress item of `CapNhatTienDoHoSoMC`: every field required.
pub(crate) const PROGRESS: &[Field] = &[
    req("MaHoSo", Kind::Str),
    req("NguoiXuLy", Kind::Str),
    req("ChucDanh", Kind::Str),
    req("ThoiDiemXuLy", Kind::Date),
    req("PhongBanXuLy", Kind::Str),
    req("NoiDungXuLy", Kind::Str),
    req("TrangThai", Kind::Scalar),
    req("NgayBatDau", Kind::Date),
    req("NgayKetThucTheoQuyDinh", Kind::Date),
];

/// The status item of `DongBoTrangThaiHoSo` [likely]: the body is not public, this is the
/// sandbox's choice: `{MaHoSo, TrangThaiHoSo, NgayCapNhat, GhiChu?}`.
pub(crate) const STATUS: &[Field] = &[
    req("MaHoSo", Kind::Str),
    req("TrangThaiHoSo", Kind::Status),
    req("NgayCapNhat", Kind::Date),
    opt("GhiChu", Kind::Str),
];

/// What validation found.
#[derive(Default, Debug)]
pub(crate) struct Issues {
    /// Contract violations, each `path: what`.
    pub errors: Vec<String>,
    /// Paths of fields the contract does not know.
    pub unknown: Vec<String>,
}

/// Check one object against `fields`, appending to `issues` with paths under `path`.
pub(crate) fn check_object(
    path: &str,
    v: &Value,
    fields: &[Field],
    statuses: &BTreeSet<u32>,
    issues: &mut Issues,
) {
    let Some(obj) = v.as_object() else {
        issues.errors.push(format!("{path}: must be a JSON object"));
        return;
    };
    for f in fields {
        let p = format!("{path}.{}", f.name);
        match obj.get(f.name) {
            None | Some(Value::Null) => {
                if f.required {
                    issues
                        .errors
                        .push(format!("{p}: required field is missing"));
                }
            }
            Some(val) => check_value(&p, val, f, statuses, issues),
        }
    }
    for k in obj.keys() {
        if !fields.iter().any(|f| f.name == k) {
            issues.unknown.push(format!("{path}.{k}"));
        }
    }
}

fn check_value(p: &str, val: &Value, f: &Field, statuses: &BTreeSet<u32>, issues: &mut Issues) {
    let err = |issues: &mut Issues, what: String| issues.errors.push(format!("{p}: {what}"));
    match f.kind {
        Kind::Str => match val.as_str() {
            Some(s) if f.required && s.trim().is_empty() => err(issues, "must not be empty".into()),
            Some(_) => {}
            None => err(issues, format!("must be a string, got {val}")),
        },
        Kind::Date => match val.as_str() {
            Some(s) if is_portal_date(s) => {}
            _ => err(
                issues,
                format!("must be a real date as yyyyMMddHHmmss (14 digits), got {val}"),
            ),
        },
        Kind::Scalar => match val {
            Value::String(s) if f.required && s.trim().is_empty() => {
                err(issues, "must not be empty".into())
            }
            Value::String(_) => {}
            Value::Number(n) if n.is_i64() || n.is_u64() => {}
            _ => err(issues, format!("must be a string or an integer, got {val}")),
        },
        Kind::Bool => {
            if !val.is_boolean() {
                err(issues, format!("must be true or false, got {val}"))
            }
        }
        Kind::Num => {
            if !val.is_number() {
                err(issues, format!("must be a number, got {val}"))
            }
        }
        Kind::Status => match status_code(val) {
            Some(c) if statuses.contains(&c) => {}
            _ => err(
                issues,
                format!("unknown dossier status code {val} (known: {statuses:?})"),
            ),
        },
        Kind::SubjectType => match val.as_str() {
            Some("1") | Some("2") => {}
            _ => err(
                issues,
                format!("must be \"1\" (citizen) or \"2\" (organisation), got {val}"),
            ),
        },
        Kind::Array(sub) => match val.as_array() {
            Some(items) => {
                for (i, it) in items.iter().enumerate() {
                    check_object(&format!("{p}[{i}]"), it, sub, statuses, issues);
                }
            }
            None => err(issues, format!("must be an array, got {val}")),
        },
        Kind::AnyArray => match val.as_array() {
            Some(items) => {
                for (i, it) in items.iter().enumerate() {
                    if !it.is_object() {
                        issues
                            .errors
                            .push(format!("{p}[{i}]: must be a JSON object"));
                    }
                }
            }
            None => err(issues, format!("must be an array, got {val}")),
        },
    }
}

/// A status code given as a string of digits or as an integer.
pub(crate) fn status_code(v: &Value) -> Option<u32> {
    match v {
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        _ => None,
    }
}

/// `yyyyMMddHHmmss`, 14 digits, a date that exists (leap years included).
pub fn is_portal_date(s: &str) -> bool {
    if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let n = |a: usize, b: usize| s[a..b].parse::<u32>().unwrap_or(u32::MAX);
    let (y, mo, d, h, mi, se) = (n(0, 4), n(4, 6), n(6, 8), n(8, 10), n(10, 12), n(12, 14));
    if !(1900..=2999).contains(&y) || !(1..=12).contains(&mo) || h > 23 || mi > 59 || se > 59 {
        return false;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match mo {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    (1..=days).contains(&d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert!(is_portal_date("20240229235959"));
        assert!(!is_portal_date("20230229120000"));
        assert!(!is_portal_date("20241301120000"));
        assert!(!is_portal_date("2024-01-01"));
        assert!(!is_portal_date("20240101246000"));
        assert!(!is_portal_date("2024010112000"));
    }

    #[test]
    fn status_codes() {
        assert_eq!(status_code(&Value::from("4")), Some(4));
        assert_eq!(status_code(&Value::from(10)), Some(10));
        assert_eq!(status_code(&Value::from("x")), None);
    }
}
