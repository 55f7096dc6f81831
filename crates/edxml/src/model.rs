//! The typed envelope: header (a document's `MessageHeader` or a status message's `Status`),
//! trace list and manifest. The same types are the JSON description `gateway edxml build`
//! reads (serde, snake_case keys) and what the parser returns.
//!
//! Invariants:
//! - Text is kept exactly as given: no trimming, no Unicode normalisation, no re-encoding
//!   (a Vietnamese subject in NFC stays NFC, one in NFD stays NFD).
//! - [`DocumentId`] is always well-formed once built: `OrganId,yyyy/MM/dd,Code`, each part
//!   non-empty, the date a real date ([`DocumentId::parse`] is the only way in from text).
//! - Which fields are mandatory is decided in [`Envelope::check`], once, for the builder and
//!   the parser alike.

use serde::{Deserialize, Serialize};

use crate::error::EdxmlError;
use crate::status::Status;

/// An organ (agency) on the axis: `From`, `To`, `ResponseFor`'s organ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Organ {
    pub organ_id: String,
    pub organ_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organ_in_charge: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organ_add: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telephone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fax: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
}

/// `DocumentId`: `OrganId,yyyy/MM/dd,Code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentId {
    pub organ_id: String,
    pub date: time::Date,
    pub code: String,
}

impl DocumentId {
    /// Parses `OrganId,yyyy/MM/dd,Code`; the code may itself contain commas.
    pub fn parse(s: &str) -> Result<Self, EdxmlError> {
        let bad = |why: &str| EdxmlError::BadDocumentId {
            value: s.to_owned(),
            why: why.to_owned(),
        };
        let mut parts = s.splitn(3, ',');
        let organ_id = parts.next().unwrap_or_default();
        let date = parts.next().ok_or_else(|| bad("no date part"))?;
        let code = parts.next().ok_or_else(|| bad("no code part"))?;
        if organ_id.trim().is_empty() || organ_id != organ_id.trim() {
            return Err(bad("empty or padded organ id"));
        }
        if code.trim().is_empty() {
            return Err(bad("empty code"));
        }
        let fmt = time::macros::format_description!("[year]/[month]/[day]");
        if date.len() != 10 {
            return Err(bad("date is not yyyy/MM/dd"));
        }
        let date = time::Date::parse(date, &fmt).map_err(|_| bad("date is not yyyy/MM/dd"))?;
        Ok(DocumentId {
            organ_id: organ_id.to_owned(),
            date,
            code: code.to_owned(),
        })
    }
}

impl std::fmt::Display for DocumentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{},{:04}/{:02}/{:02},{}",
            self.organ_id,
            self.date.year(),
            u8::from(self.date.month()),
            self.date.day(),
            self.code
        )
    }
}

impl Serialize for DocumentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DocumentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DocumentId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `Code`: the document's number and notation (`123` and `QĐ-UBND`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Code {
    pub code_number: String,
    pub code_notation: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromulgationInfo {
    pub place: String,
    /// As sent (`yyyy/MM/dd` in public samples [likely]); kept as text.
    pub promulgation_date: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentType {
    /// The type's code (`Type`), as sent.
    #[serde(rename = "type")]
    pub kind: String,
    pub type_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub competence: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    pub full_name: String,
}

/// `ResponseFor`: the document this one answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseFor {
    pub organ_id: String,
    pub code: String,
    pub promulgation_date: String,
    pub document_id: DocumentId,
}

/// A document's header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageHeader {
    pub from: Organ,
    /// At least one.
    pub to: Vec<Organ>,
    pub document_id: DocumentId,
    pub code: Code,
    pub promulgation_info: PromulgationInfo,
    pub document_type: DocumentType,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    pub signer_info: SignerInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_date: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to_places: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_for: Vec<ResponseFor>,
}

/// Who handled a status (`StaffInfo`) [likely].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staff: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// A status message's header: who says what about which document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusHeader {
    pub from: Organ,
    pub response_for: ResponseFor,
    /// Must have a numeric code (`fail` has none).
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staff_info: Option<StaffInfo>,
}

/// A document or a status message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Header {
    Document(MessageHeader),
    Status(StatusHeader),
}

/// `TraceHeader`: an organ the envelope passed through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceHeader {
    pub organ_id: String,
    pub timestamp: String,
}

/// A manifest `Reference`: one attachment's description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    pub content_id: String,
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub attachment_name: String,
}

/// An envelope without its attachments' content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub header: Header,
    #[serde(default)]
    pub trace: Vec<TraceHeader>,
    #[serde(default)]
    pub manifest: Vec<ManifestEntry>,
}

impl Envelope {
    /// The rules both the builder and the parser enforce beyond the types: mandatory texts
    /// non-empty, at least one `To`, the DocumentId's organ the sender, a status with a code,
    /// ContentIds unique and non-empty.
    pub fn check(&self) -> Result<(), EdxmlError> {
        let need = |v: &str, what: &'static str| {
            if v.trim().is_empty() {
                Err(EdxmlError::MissingField(what.to_owned()))
            } else {
                Ok(())
            }
        };
        match &self.header {
            Header::Document(h) => {
                need(&h.from.organ_id, "MessageHeader/From/OrganId")?;
                need(&h.from.organ_name, "MessageHeader/From/OrganName")?;
                if h.to.is_empty() {
                    return Err(EdxmlError::MissingField("MessageHeader/To".to_owned()));
                }
                for t in &h.to {
                    need(&t.organ_id, "MessageHeader/To/OrganId")?;
                    need(&t.organ_name, "MessageHeader/To/OrganName")?;
                }
                if h.document_id.organ_id != h.from.organ_id {
                    return Err(EdxmlError::BadDocumentId {
                        value: h.document_id.to_string(),
                        why: format!("organ id is not the sender's ({})", h.from.organ_id),
                    });
                }
                need(&h.code.code_number, "MessageHeader/Code/CodeNumber")?;
                need(&h.code.code_notation, "MessageHeader/Code/CodeNotation")?;
                need(
                    &h.promulgation_info.place,
                    "MessageHeader/PromulgationInfo/Place",
                )?;
                need(
                    &h.promulgation_info.promulgation_date,
                    "MessageHeader/PromulgationInfo/PromulgationDate",
                )?;
                need(&h.document_type.kind, "MessageHeader/DocumentType/Type")?;
                need(
                    &h.document_type.type_name,
                    "MessageHeader/DocumentType/TypeName",
                )?;
                need(&h.subject, "MessageHeader/Subject")?;
                need(
                    &h.signer_info.full_name,
                    "MessageHeader/SignerInfo/FullName",
                )?;
            }
            Header::Status(s) => {
                need(&s.from.organ_id, "Status/From/OrganId")?;
                need(&s.from.organ_name, "Status/From/OrganName")?;
                need(&s.response_for.organ_id, "Status/ResponseFor/OrganId")?;
                need(&s.timestamp, "Status/Timestamp")?;
                if s.status.code().is_none() {
                    return Err(EdxmlError::StatusWithoutCode(s.status));
                }
            }
        }
        for t in &self.trace {
            need(&t.organ_id, "TraceHeaderList/TraceHeader/OrganId")?;
            need(&t.timestamp, "TraceHeaderList/TraceHeader/Timestamp")?;
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &self.manifest {
            need(&m.content_id, "edXMLManifest/Reference/ContentId")?;
            need(&m.content_type, "edXMLManifest/Reference/ContentType")?;
            need(&m.attachment_name, "edXMLManifest/Reference/AttachmentName")?;
            if !seen.insert(m.content_id.as_str()) {
                return Err(EdxmlError::DuplicateContentId(m.content_id.clone()));
            }
        }
        Ok(())
    }
}
