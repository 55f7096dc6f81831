//! Online dossiers (submitted by citizens on the portal), listed for the one-stop system.
//!
//! **[open]**: the contract names no such operation. The sandbox serves
//! `LayDanhSachHoSoTrucTuyen` on the sharing endpoint: body `{session, madonvi, service,
//! tuNgay?}`, `tuNgay` a `yyyyMMddHHmmss` date; `result` = the dossiers seeded with
//! `Portal::add_online_dossier` whose `NgayTiepNhan` is at or after `tuNgay` (all without it),
//! ordered by `NgayTiepNhan`, then `MaHoSo`. A client configures the name and fields.

use serde_json::Value;

/// The sandbox's name of the online-dossier listing ([open]).
pub const SVC_ONLINE_DOSSIERS: &str = "LayDanhSachHoSoTrucTuyen";

fn field<'a>(v: &'a Value, name: &str) -> &'a str {
    v.get(name).and_then(Value::as_str).unwrap_or("")
}

/// The seeded dossiers at or after `from` (`NgayTiepNhan`), in order.
pub(super) fn list(seeded: &[Value], from: Option<&str>) -> Vec<Value> {
    let mut out: Vec<Value> = seeded
        .iter()
        .filter(|d| from.is_none_or(|f| field(d, "NgayTiepNhan") >= f))
        .cloned()
        .collect();
    out.sort_by(|a, b| {
        (field(a, "NgayTiepNhan"), field(a, "MaHoSo"))
            .cmp(&(field(b, "NgayTiepNhan"), field(b, "MaHoSo")))
    });
    out
}
