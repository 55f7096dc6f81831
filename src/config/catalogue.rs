//! `[catalogue]`: the periodic sync of the portal's catalogue (`crate::jobs::catalogue`).
//!
//! Every check of this section names another one (`from` is a `dvcqg` adapter, `source_name`
//! is no `[sources]` name): they live with the cross-section checks in `references.rs`.

use serde::Deserialize;

use super::defaults;
use super::duration::Dur;

/// `[catalogue]`: the periodic catalogue sync (`crate::jobs::catalogue`).
#[derive(Debug, Clone, Deserialize)]
pub struct CatalogueSection {
    /// required: the `dvcqg` adapter whose sharing endpoint serves `LayDanhSachTTHC`,
    /// `LayDanhMucCoQuan` and `LayDanhMucLinhVuc` (a key of `[adapters]`).
    pub from: String,
    /// How often to sync; `0s` = never on its own, only `gateway catalogue sync`. Default 1h.
    #[serde(default = "d_catalogue_interval")]
    pub interval: Dur,
    /// The source name of the change events (a route's `from`). Default `catalogue`.
    #[serde(default = "d_catalogue_source")]
    pub source_name: String,
}

fn d_catalogue_interval() -> Dur {
    Dur(defaults::CATALOGUE_INTERVAL)
}
fn d_catalogue_source() -> String {
    defaults::CATALOGUE_SOURCE.into()
}
