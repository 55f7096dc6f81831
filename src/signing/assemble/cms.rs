//! Detached CMS (RFC 5652 SignedData, CAdES-B signed attributes) around a signature value made
//! elsewhere; also the CMS that a PAdES signature carries.
//!
//! # Invariants
//! - The signed attributes are fixed at prepare time and kept as their DER (`SET OF`, sorted as
//!   DER requires): the remote signer signs the digest of exactly those octets, and `finish`
//!   puts exactly those octets back into the `SignerInfo` (`[0] IMPLICIT`). Nothing in them is
//!   recomputed later, so a restart between the two halves cannot change what was signed.
//! - Signed attributes: content-type (id-data), message-digest (of the content, or for PAdES
//!   of the byte ranges), signing-certificate-v2 (ESS, RFC 5035: the hash of the signer
//!   certificate with its issuer and serial, which binds the signer and defeats substitution)
//!   and, outside PAdES, signing-time. PAdES puts the time in the signature dictionary's `/M`
//!   instead (ETSI EN 319 142-1 §5.2.2).
//! - The content is never encapsulated (detached): `eContent` is absent.
//! - A signature time-stamp (CAdES-T / PAdES B-T) is an unsigned attribute
//!   id-aa-signatureTimeStampToken whose token's imprint is the digest of the `signature`
//!   field's octets; it is added only after the token was verified for exactly those octets.
//! - Built with RustCrypto's typed ASN.1 (`cms`, `x509-cert`, `der`): no hand-written TLV.

use std::time::Duration;

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedAttributes, SignedData, SignerIdentifier,
    SignerInfo, SignerInfos,
};
use der::asn1::{GeneralizedTime, ObjectIdentifier, OctetString, SetOfVec, UtcTime};
use der::{Any, Decode, Encode, Sequence};
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::time::Time;
use x509_cert::Certificate;

use super::signer::{DigestAlgorithm, KeyType, Signer, SignerError};

/// Why a CMS structure could not be built or read; one variant per step.
#[derive(Debug, thiserror::Error)]
pub enum CmsError {
    #[error("signer certificate: {0}")]
    Certificate(#[source] der::Error),
    #[error("encoding the signed attributes: {0}")]
    SignedAttributes(#[source] der::Error),
    #[error("stored signed attributes are not valid DER: {0}")]
    StoredAttributes(#[source] der::Error),
    #[error("encoding SignedData: {0}")]
    SignedData(#[source] der::Error),
    #[error("time-stamp token is not DER: {0}")]
    TimeStampToken(#[source] der::Error),
    #[error("signing time {0} cannot be encoded (before 1970?)")]
    SigningTime(i64),
    #[error(transparent)]
    Signer(#[from] SignerError),
}

const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ID_SIGNING_TIME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.5");
const ID_SIGNING_CERTIFICATE_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");
/// id-aa-signatureTimeStampToken (RFC 3161 appendix A).
pub const ID_SIGNATURE_TIME_STAMP_TOKEN: &str = "1.2.840.113549.1.9.16.2.14";
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_WITH_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");

/// ESS `IssuerSerial` (RFC 5035).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct IssuerSerial {
    issuer: Vec<GeneralName>,
    serial_number: SerialNumber,
}

/// ESS `ESSCertIDv2`; `hashAlgorithm` is absent when it is the default, SHA-256.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct EssCertIdV2 {
    #[asn1(optional = "true")]
    hash_algorithm: Option<AlgorithmIdentifierOwned>,
    cert_hash: OctetString,
    #[asn1(optional = "true")]
    issuer_serial: Option<IssuerSerial>,
}

/// ESS `SigningCertificateV2` (no policies).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct SigningCertificateV2 {
    certs: Vec<EssCertIdV2>,
}

fn oid(dotted: &str) -> ObjectIdentifier {
    ObjectIdentifier::new_unwrap(dotted)
}

fn digest_algorithm_id(alg: DigestAlgorithm) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: oid(alg.oid()),
        parameters: None,
    }
}

fn attribute(id: ObjectIdentifier, value: Any) -> Result<Attribute, der::Error> {
    Ok(Attribute {
        oid: id,
        values: SetOfVec::try_from(vec![value])?,
    })
}

fn leaf(signer: &Signer) -> Result<Certificate, CmsError> {
    let der = signer.leaf.to_der().map_err(SignerError::from)?;
    Certificate::from_der(&der).map_err(CmsError::Certificate)
}

/// The DER of the signed attributes (a `SET OF Attribute`) for content whose digest is
/// `content_digest`. `signing_time` (Unix seconds) is `None` for PAdES.
pub fn signed_attributes(
    alg: DigestAlgorithm,
    content_digest: &[u8],
    signer: &Signer,
    signing_time: Option<i64>,
) -> Result<Vec<u8>, CmsError> {
    let cert = leaf(signer)?;
    let cert_der = signer.leaf.to_der().map_err(SignerError::from)?;
    let cert_hash = alg.digest(&cert_der).map_err(SignerError::from)?;
    let ess = SigningCertificateV2 {
        certs: vec![EssCertIdV2 {
            hash_algorithm: (alg != DigestAlgorithm::Sha256).then(|| digest_algorithm_id(alg)),
            cert_hash: OctetString::new(cert_hash).map_err(CmsError::SignedAttributes)?,
            issuer_serial: Some(IssuerSerial {
                issuer: vec![GeneralName::DirectoryName(
                    cert.tbs_certificate.issuer.clone(),
                )],
                serial_number: cert.tbs_certificate.serial_number.clone(),
            }),
        }],
    };
    let build = || -> Result<Vec<u8>, der::Error> {
        let mut attrs = vec![
            attribute(ID_CONTENT_TYPE, Any::encode_from(&ID_DATA)?)?,
            attribute(
                ID_MESSAGE_DIGEST,
                Any::encode_from(&OctetString::new(content_digest.to_vec())?)?,
            )?,
            attribute(ID_SIGNING_CERTIFICATE_V2, Any::encode_from(&ess)?)?,
        ];
        if let Some(t) = signing_time {
            attrs.push(attribute(ID_SIGNING_TIME, Any::encode_from(&time(t)?)?)?);
        }
        SignedAttributes::try_from(attrs)?.to_der()
    };
    if signing_time.is_some_and(|t| t < 0) {
        return Err(CmsError::SigningTime(signing_time.unwrap_or_default()));
    }
    build().map_err(CmsError::SignedAttributes)
}

/// RFC 5652 §11.3: UTCTime through 2049, GeneralizedTime from 2050.
fn time(unix: i64) -> Result<Time, der::Error> {
    let d = Duration::from_secs(unix as u64);
    Ok(if unix < 2_524_608_000 {
        Time::UtcTime(UtcTime::from_unix_duration(d)?)
    } else {
        Time::GeneralTime(GeneralizedTime::from_unix_duration(d)?)
    })
}

/// The `SignedData` ContentInfo (DER) from the stored signed attributes, the checked signature
/// value (ECDSA as DER) and, for B-T, a verified time-stamp token over that value.
pub fn signed_data(
    alg: DigestAlgorithm,
    signed_attrs_der: &[u8],
    signer: &Signer,
    signature: &[u8],
    timestamp_token: Option<&[u8]>,
) -> Result<Vec<u8>, CmsError> {
    let cert = leaf(signer)?;
    let signed_attrs =
        SignedAttributes::from_der(signed_attrs_der).map_err(CmsError::StoredAttributes)?;
    let signature_algorithm = match signer.key_type {
        KeyType::Rsa { .. } => AlgorithmIdentifierOwned {
            oid: RSA_ENCRYPTION,
            parameters: Some(Any::null()),
        },
        KeyType::Ecdsa { .. } => AlgorithmIdentifierOwned {
            oid: match alg {
                DigestAlgorithm::Sha256 => ECDSA_WITH_SHA256,
                DigestAlgorithm::Sha384 => ECDSA_WITH_SHA384,
                DigestAlgorithm::Sha512 => ECDSA_WITH_SHA512,
            },
            parameters: None,
        },
    };
    let unsigned_attrs = match timestamp_token {
        None => None,
        Some(token) => {
            let token = Any::from_der(token).map_err(CmsError::TimeStampToken)?;
            let attr = attribute(oid(ID_SIGNATURE_TIME_STAMP_TOKEN), token)
                .map_err(CmsError::SignedData)?;
            Some(SetOfVec::try_from(vec![attr]).map_err(CmsError::SignedData)?)
        }
    };
    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: cert.tbs_certificate.issuer.clone(),
            serial_number: cert.tbs_certificate.serial_number.clone(),
        }),
        digest_alg: digest_algorithm_id(alg),
        signed_attrs: Some(signed_attrs),
        signature_algorithm,
        signature: OctetString::new(signature.to_vec()).map_err(CmsError::SignedData)?,
        unsigned_attrs,
    };
    let mut certs = vec![CertificateChoices::Certificate(cert)];
    for c in &signer.chain {
        let der = c.to_der().map_err(SignerError::from)?;
        certs.push(CertificateChoices::Certificate(
            Certificate::from_der(&der).map_err(CmsError::Certificate)?,
        ));
    }
    let build = || -> Result<Vec<u8>, der::Error> {
        let sd = SignedData {
            version: CmsVersion::V1,
            digest_algorithms: SetOfVec::try_from(vec![digest_algorithm_id(alg)])?,
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: ID_DATA,
                econtent: None,
            },
            certificates: Some(CertificateSet(SetOfVec::try_from(certs)?)),
            crls: None,
            signer_infos: SignerInfos(SetOfVec::try_from(vec![signer_info])?),
        };
        ContentInfo {
            content_type: ID_SIGNED_DATA,
            content: Any::encode_from(&sd)?,
        }
        .to_der()
    };
    build().map_err(CmsError::SignedData)
}

/// The single `SignerInfo` of a SignedData ContentInfo (for checks of what was built).
#[cfg(test)]
pub fn signer_info(content_info_der: &[u8]) -> Result<SignerInfo, der::Error> {
    let ci = ContentInfo::from_der(content_info_der)?;
    let sd: SignedData = ci.content.decode_as()?;
    sd.signer_infos
        .0
        .into_vec()
        .into_iter()
        .next()
        .ok_or_else(|| der::Tag::Sequence.value_error())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::assemble::signer::tests::{example, remote_sign, signer};
    use openssl::cms::{CMSOptions, CmsContentInfo};
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::X509;

    fn openssl_verifies(cms_der: &[u8], content: &[u8]) -> bool {
        let mut cms = CmsContentInfo::from_der(cms_der).unwrap();
        let mut store = X509StoreBuilder::new().unwrap();
        store
            .add_cert(X509::from_pem(&example("root-ca.pem")).unwrap())
            .unwrap();
        let store = store.build();
        let certs = Stack::new().unwrap();
        cms.verify(
            Some(&certs),
            Some(&store),
            Some(content),
            None,
            CMSOptions::BINARY,
        )
        .is_ok()
    }

    #[test]
    fn detached_signed_data_verifies_in_openssl() {
        let content = "Quyết định cấp giấy phép".as_bytes();
        for (name, alg) in [
            ("sign-rsa", DigestAlgorithm::Sha256),
            ("sign-rsa", DigestAlgorithm::Sha512),
            ("sign-ec", DigestAlgorithm::Sha256),
        ] {
            let (s, key) = signer(name);
            let md = alg.digest(content).unwrap();
            let attrs = signed_attributes(alg, &md, &s, Some(1_765_000_000)).unwrap();
            let to_sign = alg.digest(&attrs).unwrap();
            let value = remote_sign(&key, alg, &to_sign);
            let value = s.verify_digest(alg, &to_sign, &value).unwrap();
            let der = signed_data(alg, &attrs, &s, &value, None).unwrap();
            assert!(openssl_verifies(&der, content), "{name} {alg}");
            assert!(!openssl_verifies(&der, b"another content"), "{name} {alg}");
            let si = signer_info(&der).unwrap();
            assert_eq!(si.signed_attrs.unwrap().to_der().unwrap(), attrs);
            assert!(si.unsigned_attrs.is_none());
        }
    }

    #[test]
    fn pades_attributes_have_no_signing_time() {
        let (s, _) = signer("sign-rsa");
        let alg = DigestAlgorithm::Sha256;
        let with = signed_attributes(alg, &[0; 32], &s, Some(0)).unwrap();
        let without = signed_attributes(alg, &[0; 32], &s, None).unwrap();
        let count = |d: &[u8]| SignedAttributes::from_der(d).unwrap().len();
        assert_eq!(count(&with), 4);
        assert_eq!(count(&without), 3);
        let has_time = SignedAttributes::from_der(&without)
            .unwrap()
            .iter()
            .any(|a| a.oid == ID_SIGNING_TIME);
        assert!(!has_time);
    }
}
