//! The contract's service names and the units' default, as the portal spells them.
//!
//! # Invariants
//!
//! - Each service is served on one endpoint: the integration services (sync, progress,
//!   status) on the integration endpoint, the look-ups and the catalogue on the sharing one.

use super::online::SVC_ONLINE_DOSSIERS;

/// The default unit code (`madonvi` / `dstcode`).
pub const DEFAULT_UNIT: &str = "000.00.01.H22";

pub const SVC_SYNC_DOSSIER: &str = "DongBoHoSoMC";
pub const SVC_PROGRESS: &str = "CapNhatTienDoHoSoMC";
pub const SVC_STATUS: &str = "DongBoTrangThaiHoSo";
pub const SVC_LOOKUP: &str = "TraCuuHoSo";
pub const SVC_PROCEDURE: &str = "LayThuTuc";
pub const SVC_PROCEDURES: &str = "LayDanhSachTTHC";
pub const SVC_AGENCIES: &str = "LayDanhMucCoQuan";
pub const SVC_FIELDS: &str = "LayDanhMucLinhVuc";

pub(super) const INTEGRATION_SERVICES: &[&str] = &[SVC_SYNC_DOSSIER, SVC_PROGRESS, SVC_STATUS];
pub(super) const SHARING_SERVICES: &[&str] = &[
    SVC_LOOKUP,
    SVC_PROCEDURE,
    SVC_PROCEDURES,
    SVC_AGENCIES,
    SVC_FIELDS,
    SVC_ONLINE_DOSSIERS,
];

/// The progress list in a `TraCuuHoSo` answer. The name is an **assumption** of this sandbox
/// (and of the gateway's in-doubt resolution): the portal's look-up answer is public only for
/// the dossier's own fields.
pub const LOOKUP_PROGRESS: &str = "TienDoXuLy";
