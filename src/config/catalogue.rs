//! `[catalogue]`: the periodic sync of the portal's catalogue (`crate::jobs::catalogue`).

use serde::Deserialize;

use super::{check_job, defaults, Config, Dur};

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

/// Check `[catalogue]`: a `dvcqg` adapter, a valid source name of its own.
pub(super) fn validate(c: &Config, p: &mut impl FnMut(String, String, &str)) {
    if let Some(j) = &c.catalogue {
        check_job("catalogue", &j.from, &j.source_name, c, p);
    }
}
