//! The canonical fields an agency may subscribe to: the one vocabulary of field names, where
//! each sits in a payload, and which are personal data.
//!
//! # Invariants
//! - [`FIELDS`] is the one list: a subscription's `fields` and `personal` name entries of it
//!   (the configuration refuses any other name), and a projection copies exactly the paths of
//!   the entries it names, nothing else.
//! - The personal fields (the owner's name, citizen ID, phone, e-mail, address, bank account)
//!   are marked here and only here ([`CanonicalField::personal`], [`is_personal`]): they are
//!   the values the canonical model wraps in [`super::Personal`]. A test walks a complete
//!   dossier and fails if a leaf is left out of this table or a `Personal` value is not marked.
//! - Names are English and stable: they are what an agency's configuration and the documents
//!   for receivers spell.

/// One canonical field: its name in a subscription, its path in a payload, personal or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CanonicalField {
    /// The name a subscription writes (`fields = ["code", …]`).
    pub name: &'static str,
    /// The JSON path in the payload (object keys from the root).
    pub path: &'static [&'static str],
    /// Personal data: sent only when a subscription names it in `personal` with a legal basis.
    pub personal: bool,
    /// What it is, for people (the receivers' documentation).
    pub about: &'static str,
}

const fn f(
    name: &'static str,
    path: &'static [&'static str],
    personal: bool,
    about: &'static str,
) -> CanonicalField {
    CanonicalField {
        name,
        path,
        personal,
        about,
    }
}

/// Every field a subscription may name.
pub const FIELDS: &[CanonicalField] = &[
    f("code", &["code"], false, "the dossier code (MaHoSo)"),
    f(
        "version",
        &["version"],
        false,
        "the dossier's version at its source",
    ),
    f(
        "procedure",
        &["procedure_code"],
        false,
        "the procedure code (national when mapped)",
    ),
    f(
        "procedure_name",
        &["procedure_name"],
        false,
        "the procedure's name",
    ),
    f(
        "field_code",
        &["field_code"],
        false,
        "the field (lĩnh vực) code",
    ),
    f("field_name", &["field_name"], false, "the field's name"),
    f(
        "receipt_number",
        &["receipt_number"],
        false,
        "the receipt number",
    ),
    f(
        "summary",
        &["summary"],
        false,
        "the dossier's summary (TrichYeuHoSo)",
    ),
    f(
        "received_at",
        &["received_at"],
        false,
        "received at (RFC 3339)",
    ),
    f("due_at", &["due_at"], false, "due at (RFC 3339)"),
    f(
        "returned_at",
        &["returned_at"],
        false,
        "result returned at (RFC 3339)",
    ),
    f(
        "finished_at",
        &["finished_at"],
        false,
        "processing finished at (RFC 3339)",
    ),
    f(
        "status",
        &["status"],
        false,
        "the canonical status (see the status table)",
    ),
    f(
        "unit",
        &["handling_unit"],
        false,
        "the unit handling the dossier (DonViXuLy)",
    ),
    f("note", &["note"], false, "the source's note"),
    f(
        "fees",
        &["fees"],
        false,
        "fee items (code, name, amount in VND, paid)",
    ),
    f(
        "attachments",
        &["attachments"],
        false,
        "submitted documents, by reference",
    ),
    f("progress", &["progress"], false, "processing steps so far"),
    f(
        "channel",
        &["channel"],
        false,
        "how it was submitted (KenhThucHien: in_person, online, post)",
    ),
    f(
        "results",
        &["results"],
        false,
        "the result's files, by reference (DanhSachGiayToKetQua)",
    ),
    f(
        "step",
        &["step"],
        false,
        "one processing step (dossier.progress events)",
    ),
    f(
        "owner_kind",
        &["owner", "kind"],
        false,
        "citizen or organisation",
    ),
    f("owner_name", &["owner", "name"], true, "the owner's name"),
    f(
        "citizen_id",
        &["owner", "id_number"],
        true,
        "citizen ID number or tax code",
    ),
    f(
        "phone",
        &["owner", "phone"],
        true,
        "the owner's phone number",
    ),
    f(
        "email",
        &["owner", "email"],
        true,
        "the owner's e-mail address",
    ),
    f(
        "address",
        &["owner", "address"],
        true,
        "the owner's address",
    ),
    f(
        "bank_account",
        &["bank_account"],
        true,
        "a bank account number (payment events)",
    ),
];

/// The field named `name`, if it is one.
pub fn field(name: &str) -> Option<&'static CanonicalField> {
    FIELDS.iter().find(|f| f.name == name)
}

/// Whether `name` is a personal field.
pub fn is_personal(name: &str) -> bool {
    field(name).is_some_and(|f| f.personal)
}

/// The names of every field, for messages (`code, version, …`).
pub fn names() -> String {
    FIELDS.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Dossier, DossierStatus, Owner, OwnerKind, Personal};

    fn leaves(v: &serde_json::Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    at.push(k.clone());
                    leaves(v, at, out);
                    at.pop();
                }
            }
            _ => out.push(at.clone()),
        }
    }

    /// Every leaf of a complete dossier is under exactly one field, and the personal fields
    /// are exactly the values the model wraps in `Personal`.
    #[test]
    fn the_table_covers_the_dossier_and_marks_every_personal_value() {
        let d = Dossier {
            code: "H01".into(),
            version: 1,
            procedure_code: "1.001234".into(),
            procedure_name: Some("p".into()),
            field_code: Some("f".into()),
            field_name: Some("f".into()),
            receipt_number: Some("r".into()),
            owner: Owner {
                name: Personal("N".into()),
                kind: OwnerKind::Citizen,
                id_number: Some(Personal("001".into())),
                phone: Some(Personal("09".into())),
                email: Some(Personal("a@b".into())),
                address: Some(Personal("x".into())),
            },
            summary: "s".into(),
            received_at: "t".into(),
            due_at: "t".into(),
            returned_at: Some("t".into()),
            finished_at: Some("t".into()),
            status: DossierStatus::Received,
            handling_unit: "u".into(),
            note: Some("n".into()),
            fees: vec![],
            attachments: vec![],
            progress: vec![],
            channel: Some(crate::model::dossier::Channel::Online),
            results: vec![],
        };
        let v = serde_json::to_value(&d).unwrap();
        let mut out = Vec::new();
        leaves(&v, &mut Vec::new(), &mut out);
        for leaf in &out {
            let covering: Vec<_> = FIELDS
                .iter()
                .filter(|f| {
                    leaf.starts_with(&f.path.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                })
                .collect();
            assert_eq!(covering.len(), 1, "leaf {leaf:?} covered by {covering:?}");
        }
        let personal: Vec<_> = FIELDS
            .iter()
            .filter(|f| f.personal)
            .map(|f| f.name)
            .collect();
        assert_eq!(
            personal,
            [
                "owner_name",
                "citizen_id",
                "phone",
                "email",
                "address",
                "bank_account"
            ]
        );
        let names: std::collections::BTreeSet<_> = FIELDS.iter().map(|f| f.name).collect();
        assert_eq!(names.len(), FIELDS.len(), "names are unique");
        assert!(is_personal("citizen_id") && !is_personal("code") && !is_personal("nope"));
    }

    /// The receivers' documentation names every field (so it cannot drift from the list).
    #[test]
    fn docs_for_agencies_name_every_field() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/agencies.md"),
        )
        .unwrap();
        for f in FIELDS {
            assert!(
                doc.contains(&format!("`{}`", f.name)),
                "docs/agencies.md lacks `{}`",
                f.name
            );
        }
    }
}
