//! The canonical model: the gateway's own typed view of a dossier. Every party's format is
//! translated to and from it (hub and spoke), so N sources and M destinations need N + M
//! translations, not N × M.
//!
//! # Invariants
//! - Names are English; a party's Vietnamese field names live only in its connector/adapter.
//! - Personal data (citizen ID numbers, phone numbers, e-mail, addresses, bank accounts) is held
//!   in [`Personal`], whose `Debug` and `Display` print `***`: a `{:?}` of a dossier in a log
//!   line cannot leak it.
//! - The national dossier status codes are kept in one table, [`DossierStatus::TABLE`].
//! - `version` grows with every change of the dossier at its source; destinations only move
//!   forward (see `envelope`).

use std::fmt;

use serde::{Deserialize, Serialize};

// Until src/model/ has its own mod.rs: the progress payload lives in src/model/progress.rs.

/// A value that is personal data. Serializes as itself; never printed by `Debug`/`Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Personal<T>(pub T);

impl<T> fmt::Debug for Personal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
impl<T> fmt::Display for Personal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The national dossier status (DVCQG `TrangThaiHoSo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DossierStatus {
    NewlyRegistered,
    Received,
    NotAccepted,
    InProcessing,
    SupplementRequested,
    FinancialObligationRequested,
    WithdrawnByCitizen,
    ProcessingStopped,
    Processed,
    ResultReturned,
}

impl DossierStatus {
    /// The one table of national status codes.
    pub const TABLE: [(DossierStatus, &'static str); 10] = [
        (DossierStatus::NewlyRegistered, "1"),
        (DossierStatus::Received, "2"),
        (DossierStatus::NotAccepted, "3"),
        (DossierStatus::InProcessing, "4"),
        (DossierStatus::SupplementRequested, "5"),
        (DossierStatus::FinancialObligationRequested, "6"),
        (DossierStatus::WithdrawnByCitizen, "7"),
        (DossierStatus::ProcessingStopped, "8"),
        (DossierStatus::Processed, "9"),
        (DossierStatus::ResultReturned, "10"),
    ];

    pub fn national_code(self) -> &'static str {
        Self::TABLE
            .iter()
            .find(|(s, _)| *s == self)
            .map(|(_, c)| *c)
            .expect("every status is in the table")
    }

    pub fn from_national_code(code: &str) -> Option<Self> {
        Self::TABLE
            .iter()
            .find(|(_, c)| *c == code.trim())
            .map(|(s, _)| *s)
    }

    /// Whether the dossier's processing is over (no further status is expected).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DossierStatus::NotAccepted
                | DossierStatus::WithdrawnByCitizen
                | DossierStatus::ProcessingStopped
                | DossierStatus::ResultReturned
        )
    }
}

/// How the dossier was submitted (`KenhThucHien`: 1 in person, 2 online, 3 by public post).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    InPerson,
    Online,
    Post,
}

impl Channel {
    /// The one table of national channel codes (`KenhThucHien`).
    pub const TABLE: [(Channel, &'static str); 3] = [
        (Channel::InPerson, "1"),
        (Channel::Online, "2"),
        (Channel::Post, "3"),
    ];

    pub fn national_code(self) -> &'static str {
        Self::TABLE
            .iter()
            .find(|(c, _)| *c == self)
            .map(|(_, n)| *n)
            .expect("every channel is in the table")
    }
}

/// Citizen or organisation (`LoaiDoiTuong` 1 / 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerKind {
    Citizen,
    Organisation,
}

/// The dossier's owner (`ChuHoSo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub name: Personal<String>,
    pub kind: OwnerKind,
    /// Citizen ID number or tax code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_number: Option<Personal<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<Personal<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Personal<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Personal<String>>,
}

/// A fee item (`DanhSachLePhi`). Amounts in VND (whole dong).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fee {
    pub code: String,
    pub name: String,
    pub amount_vnd: i64,
    /// `fee` or `charge` (phí / lệ phí), kept as the source says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default)]
    pub paid: bool,
}

/// A submitted document, by reference (`TaiLieuNop`): the gateway never carries the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub id: String,
    pub name: String,
    /// Code of the dossier component it fulfils (`MaThanhPhanHoSo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_code: Option<String>,
    pub url: String,
    #[serde(default)]
    pub deleted: bool,
}

/// A processing step (`CapNhatTienDoHoSoMC`). Steps are never coalesced away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressStep {
    pub handler: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub department: String,
    pub content: String,
    /// RFC 3339 with offset.
    pub at: String,
    pub status: DossierStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<String>,
}

/// The canonical dossier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dossier {
    /// The dossier code (`MaHoSo`): the ordering key and the portal's natural key.
    pub code: String,
    /// Version at the source; grows with each change.
    pub version: i64,
    /// The procedure code: national (`d.dddddd`) when the source adapter's table maps it,
    /// otherwise the province's local code (the portal adapter's table maps it then).
    pub procedure_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub procedure_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_number: Option<String>,
    pub owner: Owner,
    /// `TrichYeuHoSo`.
    pub summary: String,
    /// RFC 3339 with offset.
    pub received_at: String,
    pub due_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returned_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    pub status: DossierStatus,
    /// The unit handling it (`DonViXuLy`).
    pub handling_unit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default)]
    pub fees: Vec<Fee>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    #[serde(default)]
    pub progress: Vec<ProgressStep>,
    /// How it was submitted (`KenhThucHien`); absent when the source does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// The result's files (`DanhSachGiayToKetQua`), by reference like the attachments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<Attachment>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table_round_trips_and_is_complete() {
        for (s, c) in DossierStatus::TABLE {
            assert_eq!(s.national_code(), c);
            assert_eq!(DossierStatus::from_national_code(c), Some(s));
        }
        assert_eq!(DossierStatus::from_national_code("11"), None);
        assert_eq!(
            DossierStatus::from_national_code(" 4 "),
            Some(DossierStatus::InProcessing)
        );
        let codes: std::collections::BTreeSet<_> =
            DossierStatus::TABLE.iter().map(|(_, c)| *c).collect();
        assert_eq!(codes.len(), 10);
    }

    #[test]
    fn personal_data_never_prints() {
        let o = Owner {
            name: Personal("Nguyễn Văn An".into()),
            kind: OwnerKind::Citizen,
            id_number: Some(Personal("001203004567".into())),
            phone: Some(Personal("0912345678".into())),
            email: None,
            address: None,
        };
        let dbg = format!("{o:?}");
        assert!(
            !dbg.contains("001203004567") && !dbg.contains("0912345678") && !dbg.contains("Nguyễn"),
            "{dbg}"
        );
        let json = serde_json::to_string(&o).unwrap();
        assert!(
            json.contains("001203004567"),
            "serialization keeps the value: {json}"
        );
    }
}
