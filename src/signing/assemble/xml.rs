//! Enveloped XML-DSig around a signature value made elsewhere, through `gw-crypto`'s split entry
//! point (`signed_info_enveloped` / `insert_signature_enveloped`).
//!
//! # Invariants
//! - The signature is what `gw_crypto::xmldsig::sign_enveloped` makes with a local key:
//!   exclusive C14N, one reference (`URI=""` or `URI="#id"`) with the enveloped-signature
//!   transform, SHA-256 digest, `KeyInfo/X509Data` with the signer certificate then its chain.
//!   So RSA-SHA256 or ECDSA-SHA256 (P-256) only; other keys and digests are refused at
//!   prepare.
//! - The remote signer signs the SHA-256 of the canonical `SignedInfo` octets. Those octets are
//!   rebuilt at finish from the document, the signer and the reference alone (deterministic), and
//!   the returned value is checked over them again by `gw-crypto` before it is inserted.
//! - The document's own text is kept byte for byte (Vietnamese text, comments, line ends); the
//!   `Signature` element is inserted as the last child of the signed element.

use gw_crypto::xml::XmlError;
use gw_crypto::xmldsig::{
    insert_signature_enveloped, signed_info_enveloped, DsigError, ExternalSigner, Reference,
    SignOptions, SignatureAlgorithm,
};

use super::signer::{ecdsa_der_to_raw, DigestAlgorithm, KeyType, Signer, SignerError};

/// Why an XML signature could not be prepared or assembled; one variant per step.
#[derive(Debug, thiserror::Error)]
pub enum XmlSignError {
    #[error("the document is not UTF-8 text: {0}")]
    NotUtf8(#[source] std::str::Utf8Error),
    #[error("the document is not well-formed XML (or uses a DTD): {0}")]
    NotWellFormed(#[source] XmlError),
    #[error("XML-DSig is made here with SHA-256 only, not {0}")]
    Digest(DigestAlgorithm),
    #[error("XML-DSig is made here with RSA or ECDSA P-256 keys only, not {0}")]
    Key(KeyType),
    #[error("the element to sign: {0}")]
    Reference(#[source] DsigError),
    #[error("XML-DSig: {0}")]
    Dsig(#[source] DsigError),
    #[error(transparent)]
    Signer(#[from] SignerError),
}

fn text(document: &[u8]) -> Result<&str, XmlSignError> {
    std::str::from_utf8(document).map_err(XmlSignError::NotUtf8)
}

fn options(reference: Option<&str>) -> SignOptions {
    SignOptions {
        reference: match reference {
            Some(id) => Reference::Id(id.to_owned()),
            None => Reference::WholeDocument,
        },
        include_certificate: true,
        include_chain: true,
        ..SignOptions::default()
    }
}

fn algorithm(signer: &Signer) -> Result<SignatureAlgorithm, XmlSignError> {
    match signer.key_type {
        KeyType::Rsa { .. } => Ok(SignatureAlgorithm::RsaSha256),
        KeyType::Ecdsa { field: 32 } => Ok(SignatureAlgorithm::EcdsaSha256),
        other => Err(XmlSignError::Key(other)),
    }
}

fn dsig(e: DsigError) -> XmlSignError {
    match e {
        DsigError::Xml(x) => XmlSignError::NotWellFormed(x),
        e @ (DsigError::ReferenceNotFound(_) | DsigError::Wrapping(_)) => {
            XmlSignError::Reference(e)
        }
        e => XmlSignError::Dsig(e),
    }
}

/// The canonical `SignedInfo` octets whose SHA-256 the remote signer signs.
pub fn signed_info(
    document: &[u8],
    signer: &Signer,
    digest: DigestAlgorithm,
    reference: Option<&str>,
) -> Result<Vec<u8>, XmlSignError> {
    if digest != DigestAlgorithm::Sha256 {
        return Err(XmlSignError::Digest(digest));
    }
    let ext = ExternalSigner {
        algorithm: algorithm(signer)?,
        certificate: Some(&signer.leaf),
        chain: &signer.chain,
    };
    signed_info_enveloped(text(document)?, &ext, &options(reference)).map_err(dsig)
}

/// The signed document: `value` is the checked signature value (ECDSA in DER, as
/// [`Signer::verify_digest`] returns it; XML-DSig carries it as raw `r || s`).
pub fn assemble(
    document: &[u8],
    signer: &Signer,
    reference: Option<&str>,
    value: &[u8],
) -> Result<Vec<u8>, XmlSignError> {
    let alg = algorithm(signer)?;
    let value = match signer.key_type {
        KeyType::Ecdsa { field } => ecdsa_der_to_raw(value, field)?,
        KeyType::Rsa { .. } => value.to_vec(),
    };
    let ext = ExternalSigner {
        algorithm: alg,
        certificate: Some(&signer.leaf),
        chain: &signer.chain,
    };
    insert_signature_enveloped(text(document)?, &ext, &options(reference), &value)
        .map(String::into_bytes)
        .map_err(dsig)
}
