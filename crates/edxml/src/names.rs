//! Every element name and namespace of edXML this crate writes or reads, in one place.
//!
//! Marks follow `CONTRACTS.md`: **[seen]** in public samples of QCVN 102:2016 envelopes,
//! **[likely]** consistent with them but not confirmed letter for letter, **[open]** our choice
//! where nothing public says. A spelling found to differ is changed here and nowhere else.

/// The edXML namespace [seen].
pub const EDXML_NS: &str = "http://www.mic.gov.vn/TBT/QCVN_102_2016";
/// The prefix this crate writes (any prefix, or a default namespace, is read) [likely].
pub const PREFIX: &str = "edXML";

/// Root element around the envelope and the encoded attachments [likely: the contract names
/// `edXML` as the root; some senders make `edXMLEnvelope` the root and put `AttachmentEncoded`
/// inside it, which this crate does not read].
pub const ROOT: &str = "edXML";
pub const ENVELOPE: &str = "edXMLEnvelope"; // [seen]
pub const HEADER: &str = "edXMLHeader"; // [seen]
pub const BODY: &str = "edXMLBody"; // [seen]
pub const MANIFEST: &str = "edXMLManifest"; // [seen]
pub const REFERENCE: &str = "Reference"; // [seen]
pub const ATTACHMENT_ENCODED: &str = "AttachmentEncoded"; // [seen]
pub const ATTACHMENT: &str = "Attachment"; // [seen]
pub const CONTENT_ID: &str = "ContentId"; // [seen]
pub const CONTENT_TYPE: &str = "ContentType"; // [seen]
pub const DESCRIPTION: &str = "Description"; // [seen]
pub const ATTACHMENT_NAME: &str = "AttachmentName"; // [seen]
pub const CONTENT_TRANSFER_ENCODED: &str = "ContentTransferEncoded"; // [seen]

pub const MESSAGE_HEADER: &str = "MessageHeader"; // [seen]
pub const FROM: &str = "From"; // [seen]
pub const TO: &str = "To"; // [seen]
pub const ORGAN_ID: &str = "OrganId"; // [seen]
pub const ORGAN_NAME: &str = "OrganName"; // [seen]
pub const ORGAN_IN_CHARGE: &str = "OrganInCharge"; // [likely]
pub const ORGAN_ADD: &str = "OrganAdd"; // [likely]
pub const EMAIL: &str = "Email"; // [likely]
pub const TELEPHONE: &str = "Telephone"; // [likely]
pub const FAX: &str = "Fax"; // [likely]
pub const WEBSITE: &str = "Website"; // [likely]
pub const DOCUMENT_ID: &str = "DocumentId"; // [seen]
pub const CODE: &str = "Code"; // [seen]
pub const CODE_NUMBER: &str = "CodeNumber"; // [seen]
pub const CODE_NOTATION: &str = "CodeNotation"; // [seen]
pub const PROMULGATION_INFO: &str = "PromulgationInfo"; // [seen]
pub const PLACE: &str = "Place"; // [likely]
pub const PROMULGATION_DATE: &str = "PromulgationDate"; // [likely]
pub const DOCUMENT_TYPE: &str = "DocumentType"; // [seen]
pub const TYPE: &str = "Type"; // [likely]
pub const TYPE_NAME: &str = "TypeName"; // [likely]
pub const SUBJECT: &str = "Subject"; // [seen]
pub const CONTENT: &str = "Content"; // [seen]
pub const SIGNER_INFO: &str = "SignerInfo"; // [seen]
pub const COMPETENCE: &str = "Competence"; // [likely]
pub const POSITION: &str = "Position"; // [likely]
pub const FULL_NAME: &str = "FullName"; // [likely]
pub const DUE_DATE: &str = "DueDate"; // [seen]
pub const TO_PLACES: &str = "ToPlaces"; // [seen]
pub const RESPONSE_FOR: &str = "ResponseFor"; // [seen]

pub const TRACE_HEADER_LIST: &str = "TraceHeaderList"; // [seen]
pub const TRACE_HEADER: &str = "TraceHeader"; // [seen]
pub const TIMESTAMP: &str = "Timestamp"; // [seen]

/// The header of a status message, in place of `MessageHeader` [likely].
pub const STATUS: &str = "Status";
pub const STATUS_CODE: &str = "StatusCode"; // [seen]
pub const STAFF_INFO: &str = "StaffInfo"; // [likely]
pub const DEPARTMENT: &str = "Department"; // [likely]
pub const STAFF: &str = "Staff"; // [likely]

/// The signature: a `ds:Signature` (XML-DSig namespace) as the header's last child [likely:
/// the contract lists `Signature` in `edXMLHeader`; the XML-DSig namespace is what every
/// verifier looks for].
pub const SIGNATURE: &str = "Signature";
