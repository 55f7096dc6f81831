//! `[online]`: the periodic poll of dossiers citizens submitted on the portal
//! (`crate::jobs::online`).

use serde::Deserialize;

use super::defaults;
use super::duration::Dur;

/// `[online]`: the periodic poll of online dossiers (`crate::jobs::online`). The portal's listing
/// operation is not public ([open] in CONTRACTS.md): its name and fields are configured.
#[derive(Debug, Clone, Deserialize)]
pub struct OnlineSection {
    /// required: the `dvcqg` adapter to poll on its sharing endpoint (a key of `[adapters]`).
    pub from: String,
    /// required: the `service` of the listing call, e.g. `LayDanhSachHoSoTrucTuyen`.
    pub service: String,
    /// How often to poll; `0s` = never on its own. Default 5m.
    #[serde(default = "d_online_interval")]
    pub interval: Dur,
    /// The source name of the `dossier.online` events (a route's `from`). Default `online`.
    #[serde(default = "d_online_source")]
    pub source_name: String,
    /// The body field carrying the cursor (the last seen `cursor_field` value; absent on the
    /// first poll). Default `tuNgay`.
    #[serde(default = "d_online_cursor_param")]
    pub cursor_param: String,
    /// The dossier field the cursor follows: a `yyyyMMddHHmmss` date, so later sorts higher.
    /// Default `NgayTiepNhan`.
    #[serde(default = "d_online_cursor_field")]
    pub cursor_field: String,
    /// The dossier field holding its code (the event key). Default `MaHoSo`.
    #[serde(default = "d_online_code_field")]
    pub code_field: String,
    /// A dossier field holding a whole-number version (the event's version). Default: none.
    #[serde(default)]
    pub version_field: Option<String>,
}

fn d_online_interval() -> Dur {
    Dur(defaults::ONLINE_INTERVAL)
}
fn d_online_source() -> String {
    defaults::ONLINE_SOURCE.into()
}
fn d_online_cursor_param() -> String {
    defaults::ONLINE_CURSOR_PARAM.into()
}
fn d_online_cursor_field() -> String {
    defaults::ONLINE_CURSOR_FIELD.into()
}
fn d_online_code_field() -> String {
    defaults::ONLINE_CODE_FIELD.into()
}

/// Check `[online]` on its own: no empty field name. (Its `from` adapter and its source name
/// against the other sections: `references.rs`.)
pub(super) fn validate(o: &OnlineSection, p: &mut impl FnMut(String, String, &str)) {
    for (key, v) in [
        ("service", &o.service),
        ("cursor_param", &o.cursor_param),
        ("cursor_field", &o.cursor_field),
        ("code_field", &o.code_field),
    ] {
        if v.trim().is_empty() {
            p(
                format!("online.{key}"),
                "must not be empty".into(),
                "set it, or remove the line to take the default",
            );
        }
    }
}
