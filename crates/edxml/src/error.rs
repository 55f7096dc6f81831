//! What can go wrong building, parsing or verifying an envelope: [`EdxmlError`], one variant
//! per failing step, each naming the element (and the ContentId where one is involved).

use gw_crypto::xml::XmlError;
use gw_crypto::xmldsig::DsigError;

use crate::status::Status;

#[derive(Debug, thiserror::Error)]
pub enum EdxmlError {
    /// Not well-formed, a DTD, an entity, a size or depth limit.
    #[error("XML: {0}")]
    Xml(#[from] XmlError),
    #[error("reading the envelope: {0}")]
    Read(std::io::Error),
    #[error("writing the envelope: {0}")]
    Write(std::io::Error),
    #[error("attachment {content_id:?}: reading its content: {source}")]
    AttachmentRead {
        content_id: String,
        source: std::io::Error,
    },
    #[error("attachment {content_id:?}: the sink refused it: {source}")]
    Sink {
        content_id: String,
        source: std::io::Error,
    },
    #[error("element {element} is in namespace {namespace:?}, expected the edXML namespace")]
    UnknownNamespace { element: String, namespace: String },
    #[error("expected element {expected}, found {found}")]
    UnexpectedElement { expected: String, found: String },
    #[error("missing mandatory element or value: {0}")]
    MissingField(String),
    #[error("{element} appears more than once")]
    Repeated { element: String },
    #[error("bad DocumentId {value:?}: {why} (expected OrganId,yyyy/MM/dd,Code)")]
    BadDocumentId { value: String, why: String },
    #[error("AttachmentEncoded/Attachment {0:?} has no entry in edXMLManifest")]
    NotInManifest(String),
    #[error("edXMLManifest/Reference {0:?} has no attachment")]
    AttachmentMissing(String),
    #[error("ContentId {0:?} appears more than once")]
    DuplicateContentId(String),
    #[error("Attachment {content_id:?}: ContentTransferEncoded is not base64: {why}")]
    BadBase64 { content_id: String, why: String },
    #[error("Attachment {content_id:?}: {element} differs from the manifest ({attachment:?} vs {manifest:?})")]
    ManifestMismatch {
        content_id: String,
        element: &'static str,
        attachment: String,
        manifest: String,
    },
    #[error("StatusCode {0:?} is not in the status table")]
    UnknownStatusCode(String),
    #[error("status {0:?} has no numeric StatusCode; it cannot be sent in a status message")]
    StatusWithoutCode(Status),
    #[error("the envelope is not signed (no Signature in edXMLHeader)")]
    Unsigned,
    #[error("the Signature is not edXMLHeader's last child")]
    SignatureMisplaced,
    /// Signature refused: tampered content, tampered SignedInfo, untrusted or expired signer...
    #[error("signature: {0}")]
    Signature(#[from] DsigError),
}
