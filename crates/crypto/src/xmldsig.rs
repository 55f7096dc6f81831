//! XML-DSig enveloped signatures (sign and verify), interoperable with xmlsec1.
//!
//! Supported, and nothing else (anything else is refused with [`DsigError::Unsupported`] rather than
//! verified wrongly):
//! - `SignatureMethod`: RSA-SHA256 and ECDSA-SHA256 (P-256; `SignatureValue` is raw `r || s`,
//!   64 bytes, as XML-DSig 1.1 §6.4.3 requires, not DER);
//! - `CanonicalizationMethod` and reference transform: inclusive C14N 1.0 or exclusive C14N, each with
//!   or without comments; exclusive `InclusiveNamespaces PrefixList` is honoured;
//! - exactly one `Reference`, `URI=""` (whole document) or `URI="#id"` (an element whose `Id`, `ID`
//!   or `id` attribute is `id`), with the transforms `enveloped-signature` then optionally one C14N;
//! - `DigestMethod` SHA-256; `KeyInfo/X509Data/X509Certificate` (leaf first).
//!
//! A signature made elsewhere (a remote signing service that signs only a digest) is made in two
//! halves: [`signed_info_enveloped`] gives the canonical `SignedInfo` octets to sign, and
//! [`insert_signature_enveloped`] rebuilds the same `Signature` from the document, checks the
//! returned value over those octets with the signer certificate's key, and inserts it. Nothing
//! but the document, the signer and the options is needed between the halves.
//!
//! Verification invariants:
//! - The document holds exactly one `Signature`, and it lies inside the element it signs (enveloped:
//!   anywhere below the root for `URI=""`, below the `#id` element otherwise). A referenced Id carried
//!   by two elements is refused ([`DsigError::Wrapping`]).
//! - The signature over `SignedInfo` is checked before the reference digest, so a changed
//!   `SignedInfo` reports [`DsigError::SignatureMismatch`] and changed content reports
//!   [`DsigError::DigestMismatch`].
//! - [`Verified`] names the signed element (its path in the returned document and its canonical
//!   bytes) and the signer: callers must act on that element only, never on a fresh lookup in the raw
//!   input. [`VerifyOptions::expected_path`] rejects a signed element that was moved.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use openssl::hash::{hash, MessageDigest};
use openssl::pkey::{PKey, Public};
use openssl::x509::X509;

use crate::keys::{KeyError, KeyKind, SigningKey, TrustStore, Usage, VerifyingKey};
use crate::util::{ct_eq, sign_with, verify_with, SigningScheme};
use crate::xml::c14n::{canonicalize_document_with, canonicalize_subtree, Algorithm, Options};
use crate::xml::{parse_safe, push_scope, Document, Element, Node, NodePath, SourceEnd, XmlError};

/// The XML-DSig namespace.
pub const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
/// `SignatureMethod` RSA-SHA256 (RFC 6931 §2.3.2).
pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
/// `SignatureMethod` ECDSA-SHA256 (RFC 6931 §2.3.6).
pub const ECDSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256";
/// `DigestMethod` SHA-256.
pub const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
/// The enveloped-signature transform.
pub const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

/// Errors of XML-DSig signing and verification, one variant per failing step.
#[derive(Debug, thiserror::Error)]
pub enum DsigError {
    /// Not well-formed, DTD or entity declaration present, limits exceeded...
    #[error("XML: {0}")]
    Xml(#[from] XmlError),
    #[error("no Signature element")]
    NoSignature,
    #[error("Signature is malformed: {0}")]
    Malformed(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("referenced element not found: {0}")]
    ReferenceNotFound(String),
    /// Duplicate Ids, several signatures, a signature outside the element it signs, a moved element.
    #[error("signature wrapping suspected: {0}")]
    Wrapping(String),
    /// The signed content changed after signing.
    #[error("digest mismatch: the signed content was modified")]
    DigestMismatch,
    /// The `SignedInfo` changed, or the signature was made with another key.
    #[error("signature value does not verify over SignedInfo")]
    SignatureMismatch,
    /// The signer is not the expected key, or the key does not fit the `SignatureMethod`.
    #[error("wrong key: {0}")]
    WrongKey(String),
    #[error("no signer certificate in KeyInfo/X509Data")]
    MissingCertificate,
    /// Expired, revoked, untrusted signer certificate.
    #[error("signer certificate: {0}")]
    Certificate(#[from] KeyError),
    #[error("OpenSSL: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

/// What the signature covers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Reference {
    /// `URI=""`: the whole document; the signature goes under the root element.
    #[default]
    WholeDocument,
    /// `URI="#id"`: the element with this `Id`/`ID`/`id`; the signature goes inside it, last.
    Id(String),
}

/// How to sign.
#[derive(Debug, Clone)]
pub struct SignOptions {
    /// Used for `CanonicalizationMethod` and as the reference transform after enveloped-signature.
    pub c14n: Algorithm,
    pub reference: Reference,
    /// Put the signer certificate into `KeyInfo/X509Data`.
    pub include_certificate: bool,
    /// Also put the key's chain certificates there (after the leaf).
    pub include_chain: bool,
    /// Namespace prefix of the signature elements (`None`: default namespace).
    pub prefix: Option<String>,
    /// Exclusive C14N only: `InclusiveNamespaces PrefixList` for both SignedInfo and the reference
    /// (`#default` names the default namespace). Ignored for inclusive C14N.
    pub inclusive_prefixes: Vec<String>,
}

impl Default for SignOptions {
    fn default() -> Self {
        SignOptions {
            c14n: Algorithm::Exclusive,
            reference: Reference::WholeDocument,
            include_certificate: true,
            include_chain: false,
            prefix: Some("ds".to_owned()),
            inclusive_prefixes: Vec::new(),
        }
    }
}

/// Who may have signed.
#[derive(Debug, Clone, Copy)]
pub enum SignerTrust<'a> {
    /// The certificate in `KeyInfo` must chain to this store (validity, key usage, CRLs).
    Chain(&'a TrustStore),
    /// The signer must be one of these keys (a `KeyInfo` certificate, if present, must carry one of them).
    Pinned(&'a [VerifyingKey]),
}

/// How to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions<'a> {
    pub trust: SignerTrust<'a>,
    /// When set, the signed element must be exactly at this path (`Some(vec![])`: the root).
    pub expected_path: Option<NodePath>,
}

impl<'a> VerifyOptions<'a> {
    pub fn new(trust: SignerTrust<'a>) -> Self {
        VerifyOptions {
            trust,
            expected_path: None,
        }
    }
}

/// The signature algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    RsaSha256,
    EcdsaSha256,
}

impl SignatureAlgorithm {
    pub fn uri(self) -> &'static str {
        match self {
            SignatureAlgorithm::RsaSha256 => RSA_SHA256,
            SignatureAlgorithm::EcdsaSha256 => ECDSA_SHA256,
        }
    }
    fn for_kind(kind: KeyKind) -> Self {
        match kind {
            KeyKind::Rsa => SignatureAlgorithm::RsaSha256,
            KeyKind::EcP256 => SignatureAlgorithm::EcdsaSha256,
        }
    }
}

/// The outcome of a successful verification. Use only what it names.
#[derive(Debug)]
pub struct Verified {
    /// The parsed document the signature was verified on.
    pub document: Document,
    /// Path of the signed element in `document` (empty: the root).
    pub signed_path: NodePath,
    /// The Id the reference used (`None` for `URI=""`).
    pub signed_id: Option<String>,
    /// The exact canonical octets that were digested (signature removed).
    pub signed_bytes: Vec<u8>,
    /// The signer certificate, when `KeyInfo` carried one.
    pub signer: Option<X509>,
    /// The pinned key id that verified, with [`SignerTrust::Pinned`].
    pub key_id: Option<String>,
    pub algorithm: SignatureAlgorithm,
}

impl Verified {
    /// The signed element (the signature element itself is still among its children).
    pub fn signed_element(&self) -> &Element {
        self.document
            .element_at(&self.signed_path)
            .expect("signed_path comes from this document")
    }
}

fn ds(opts: &SignOptions, local: &str) -> Element {
    Element::new(opts.prefix.as_deref(), local)
}

fn with_alg(mut el: Element, uri: &str) -> Element {
    el.attrs.push(crate::xml::Attribute {
        prefix: None,
        local: "Algorithm".to_owned(),
        value: uri.to_owned(),
    });
    el
}

fn with_text(mut el: Element, text: &str) -> Element {
    el.children.push(Node::Text(text.to_owned()));
    el
}

fn with_children(mut el: Element, children: Vec<Element>) -> Element {
    el.children.extend(children.into_iter().map(Node::Element));
    el
}

/// Namespace of the `InclusiveNamespaces` element (exclusive C14N §4).
pub const EXC_C14N_NS: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";

/// `CanonicalizationMethod` or `Transform` naming the C14N algorithm, with a `PrefixList` if any.
fn c14n_method(opts: &SignOptions, local: &str, prefixes: &[String]) -> Element {
    let mut el = with_alg(ds(opts, local), opts.c14n.uri());
    if !prefixes.is_empty() {
        let mut inc = Element::new(Some("ec"), "InclusiveNamespaces");
        inc.ns_decls.push(("ec".to_owned(), EXC_C14N_NS.to_owned()));
        inc.attrs.push(crate::xml::Attribute {
            prefix: None,
            local: "PrefixList".to_owned(),
            value: prefixes.join(" "),
        });
        el.children.push(Node::Element(inc));
    }
    el
}

/// Signs `xml` with an enveloped signature and returns the signed document.
///
/// The output is the input text, byte for byte, with the `Signature` element inserted as the last
/// child of the signed element (the root for [`Reference::WholeDocument`]); an empty-element tag
/// `<x/>` of the signed element becomes `<x>...</x>`.
pub fn sign_enveloped(
    xml: &str,
    key: &SigningKey,
    opts: &SignOptions,
) -> Result<String, DsigError> {
    let mut doc = parse_safe(xml)?;
    let sig_path = sign_in_place(&mut doc, key, opts)?;
    splice(xml, &doc, &sig_path)
}

/// The signer of a signature made elsewhere (a remote signing service that signs only a
/// digest): its algorithm and the certificates `KeyInfo` carries.
#[derive(Debug, Clone, Copy)]
pub struct ExternalSigner<'a> {
    pub algorithm: SignatureAlgorithm,
    /// The signer certificate; required by [`insert_signature_enveloped`] (the value is checked
    /// against its key) and put into `KeyInfo` when [`SignOptions::include_certificate`] is set.
    pub certificate: Option<&'a X509>,
    /// Intermediates put after the leaf when [`SignOptions::include_chain`] is set.
    pub chain: &'a [X509],
}

/// First half of an enveloped signature made elsewhere: the canonical `SignedInfo` octets the
/// signer must sign (with SHA-256 and `signer.algorithm`). Deterministic: the same document,
/// signer and options give the same octets, which is what lets
/// [`insert_signature_enveloped`] rebuild the signature later (after a restart) from the
/// document alone.
pub fn signed_info_enveloped(
    xml: &str,
    signer: &ExternalSigner<'_>,
    opts: &SignOptions,
) -> Result<Vec<u8>, DsigError> {
    let mut doc = parse_safe(xml)?;
    let (_, si_octets) = build_signature(&mut doc, signer, opts)?;
    Ok(si_octets)
}

/// Second half: rebuilds the `Signature` of [`signed_info_enveloped`] for the same document,
/// checks that `signature_value` (RSA PKCS#1 v1.5, or ECDSA as raw `r || s`) verifies over its
/// `SignedInfo` with the signer certificate's key, and returns the document with the signature
/// inserted exactly as [`sign_enveloped`] would. A value that does not verify (another key,
/// another digest, a changed document) is [`DsigError::SignatureMismatch`] and nothing is
/// assembled.
pub fn insert_signature_enveloped(
    xml: &str,
    signer: &ExternalSigner<'_>,
    opts: &SignOptions,
    signature_value: &[u8],
) -> Result<String, DsigError> {
    let cert = signer.certificate.ok_or(DsigError::MissingCertificate)?;
    let vk = VerifyingKey::from_certificate("external", cert.clone())?;
    if vk.kind != kind_for(signer.algorithm) {
        return Err(DsigError::WrongKey(format!(
            "{:?} key for {}",
            vk.kind,
            signer.algorithm.uri()
        )));
    }
    let mut doc = parse_safe(xml)?;
    let (sig_path, si_octets) = build_signature(&mut doc, signer, opts)?;
    if !verify_octets(&vk.pkey, vk.kind, &si_octets, signature_value)? {
        return Err(DsigError::SignatureMismatch);
    }
    let mut sv_path = sig_path.clone();
    sv_path.push(1);
    set_text(&mut doc, &sv_path, &B64.encode(signature_value));
    splice(xml, &doc, &sig_path)
}

fn kind_for(alg: SignatureAlgorithm) -> KeyKind {
    match alg {
        SignatureAlgorithm::RsaSha256 => KeyKind::Rsa,
        SignatureAlgorithm::EcdsaSha256 => KeyKind::EcP256,
    }
}

/// The input text with the signature element of `doc` at `sig_path` inserted at its place.
fn splice(xml: &str, doc: &Document, sig_path: &[usize]) -> Result<String, DsigError> {
    let target = &sig_path[..sig_path.len() - 1];
    let Some(end) = doc.source_end(target, xml.len()) else {
        return Ok(doc.to_xml());
    };
    // The signature's own text: exclusive C14N of its subtree declares exactly the namespaces it uses.
    let sig_xml = canonicalize_subtree(doc, sig_path, Algorithm::Exclusive, &Options::default())?;
    let sig_xml = String::from_utf8(sig_xml).expect("canonical form of a str is UTF-8");
    let mut out = String::with_capacity(xml.len() + sig_xml.len() + 32);
    match end {
        SourceEnd::EndTag(at) => {
            out.push_str(&xml[..at]);
            out.push_str(&sig_xml);
            out.push_str(&xml[at..]);
        }
        SourceEnd::SelfClosing(after) => {
            let slash = xml[..after]
                .rfind("/>")
                .expect("an empty-element tag ends with />");
            let qname = doc.element_at(target).expect("signed element").qname();
            out.push_str(&xml[..slash]);
            out.push('>');
            out.push_str(&sig_xml);
            out.push_str("</");
            out.push_str(&qname);
            out.push('>');
            out.push_str(&xml[after..]);
        }
    }
    Ok(out)
}

/// Signs a parsed document in place; serialise it with [`Document::to_xml`].
pub fn sign_document(
    doc: &mut Document,
    key: &SigningKey,
    opts: &SignOptions,
) -> Result<(), DsigError> {
    sign_in_place(doc, key, opts).map(|_| ())
}

/// Inserts and computes the signature; returns the Signature element's path.
fn sign_in_place(
    doc: &mut Document,
    key: &SigningKey,
    opts: &SignOptions,
) -> Result<NodePath, DsigError> {
    let signer = ExternalSigner {
        algorithm: SignatureAlgorithm::for_kind(key.kind()),
        certificate: key.certificate(),
        chain: key.chain(),
    };
    let (sig_path, si_octets) = build_signature(doc, &signer, opts)?;
    let value = sign_octets(key, &si_octets)?;
    let mut sv_path = sig_path.clone();
    sv_path.push(1);
    set_text(doc, &sv_path, &B64.encode(value));
    Ok(sig_path)
}

/// Inserts the signature skeleton with its reference digest (an empty `SignatureValue`);
/// returns the Signature element's path and the canonical `SignedInfo` octets to sign.
fn build_signature(
    doc: &mut Document,
    signer: &ExternalSigner<'_>,
    opts: &SignOptions,
) -> Result<(NodePath, Vec<u8>), DsigError> {
    let (target, uri) = match &opts.reference {
        Reference::WholeDocument => (Vec::new(), String::new()),
        Reference::Id(id) => (
            doc.find_by_id(id).map_err(reference_error)?,
            format!("#{id}"),
        ),
    };
    let alg = signer.algorithm;
    let prefixes: Vec<String> = if opts.c14n.is_exclusive() {
        opts.inclusive_prefixes.clone()
    } else {
        Vec::new()
    };
    let certs = certificates_to_include(signer, opts)?;
    let signature = skeleton(opts, alg, uri, &prefixes, &certs)?;

    let target_el = doc
        .element_at_mut(&target)
        .expect("target path was just resolved");
    target_el.children.push(Node::Element(signature));
    let mut sig_path = target.clone();
    sig_path.push(target_el.children.len() - 1);

    // Digest of the referenced content without the signature (enveloped-signature transform).
    let c14n_opts = Options {
        inclusive_prefixes: &prefixes,
        exclude: Some(&sig_path),
    };
    let digest_input = reference_octets(doc, &target, &opts.reference, opts.c14n, &c14n_opts)?;
    let digest = B64.encode(hash(MessageDigest::sha256(), &digest_input)?);
    let mut digest_path = sig_path.clone();
    digest_path.extend([0, 2, 2]); // SignedInfo / Reference / DigestValue
    set_text(doc, &digest_path, &digest);

    let mut si_path = sig_path.clone();
    si_path.push(0);
    let si_opts = Options {
        inclusive_prefixes: &prefixes,
        exclude: None,
    };
    let si_octets = canonicalize_subtree(doc, &si_path, opts.c14n, &si_opts)?;
    Ok((sig_path, si_octets))
}

/// The certificates `KeyInfo` carries for `signer` under `opts` (leaf first), or none.
fn certificates_to_include(
    signer: &ExternalSigner<'_>,
    opts: &SignOptions,
) -> Result<Vec<X509>, DsigError> {
    if !opts.include_certificate {
        return Ok(Vec::new());
    }
    let mut certs = vec![signer
        .certificate
        .ok_or(DsigError::MissingCertificate)?
        .clone()];
    if opts.include_chain {
        certs.extend(signer.chain.iter().cloned());
    }
    Ok(certs)
}

/// The `Signature` element with an empty `DigestValue` and `SignatureValue`: SignedInfo
/// (C14N method, signature method, one Reference with enveloped-signature then C14N), then
/// `KeyInfo/X509Data` when `certs` is not empty. Declares the DSig namespace on itself.
fn skeleton(
    opts: &SignOptions,
    alg: SignatureAlgorithm,
    uri: String,
    prefixes: &[String],
    certs: &[X509],
) -> Result<Element, DsigError> {
    let mut reference = ds(opts, "Reference");
    reference.attrs.push(crate::xml::Attribute {
        prefix: None,
        local: "URI".to_owned(),
        value: uri,
    });
    let transforms = with_children(
        ds(opts, "Transforms"),
        vec![
            with_alg(ds(opts, "Transform"), ENVELOPED),
            c14n_method(opts, "Transform", prefixes),
        ],
    );
    let reference = with_children(
        reference,
        vec![
            transforms,
            with_alg(ds(opts, "DigestMethod"), SHA256),
            ds(opts, "DigestValue"),
        ],
    );
    let signed_info = with_children(
        ds(opts, "SignedInfo"),
        vec![
            c14n_method(opts, "CanonicalizationMethod", prefixes),
            with_alg(ds(opts, "SignatureMethod"), alg.uri()),
            reference,
        ],
    );
    let mut children = vec![signed_info, ds(opts, "SignatureValue")];
    if !certs.is_empty() {
        let certs = certs
            .iter()
            .map(|c| {
                Ok(with_text(
                    ds(opts, "X509Certificate"),
                    &B64.encode(c.to_der()?),
                ))
            })
            .collect::<Result<Vec<_>, DsigError>>()?;
        children.push(with_children(
            ds(opts, "KeyInfo"),
            vec![with_children(ds(opts, "X509Data"), certs)],
        ));
    }
    let mut signature = with_children(ds(opts, "Signature"), children);
    signature
        .ns_decls
        .push((opts.prefix.clone().unwrap_or_default(), DSIG_NS.to_owned()));
    Ok(signature)
}

/// An enveloped signature made in two steps, for documents whose reference digest the caller
/// computes itself (a streamed document: see [`crate::xml::stream`]) and for signature values
/// made elsewhere (a remote signing service where an official confirms: the SignedInfo octets,
/// or their SHA-256, go out; the value comes back).
///
/// 1. [`DetachedSignature::new`] with the reference digest (SHA-256 of the canonical octets of
///    the referenced content without the signature) and the signer's certificates;
/// 2. [`DetachedSignature::signed_info`] are the octets to sign (canonical SignedInfo);
/// 3. [`DetachedSignature::sign`] with a local key, or [`DetachedSignature::insert_value`] with a
///    value from elsewhere (verified against the leaf certificate first): either gives the
///    `Signature` element's text, to be placed where the reference expects it.
///
/// Only exclusive C14N: its output for SignedInfo does not depend on where the signature is
/// placed, which is what lets SignedInfo be computed before the document is assembled.
#[derive(Debug, Clone)]
pub struct DetachedSignature {
    /// A document whose root is the Signature element.
    doc: Document,
    algorithm: SignatureAlgorithm,
    certs: Vec<X509>,
    c14n: Algorithm,
    prefixes: Vec<String>,
}

impl DetachedSignature {
    /// `certs`: leaf first; the leaf's key decides the signature algorithm and must make the
    /// signature value. Empty only with `algorithm` given and no `KeyInfo` wanted.
    pub fn new(
        reference_digest: &[u8],
        certs: Vec<X509>,
        opts: &SignOptions,
    ) -> Result<Self, DsigError> {
        if !opts.c14n.is_exclusive() {
            return Err(DsigError::Unsupported(
                "a detached signature needs exclusive C14N".into(),
            ));
        }
        let leaf = certs.first().ok_or(DsigError::MissingCertificate)?;
        let algorithm =
            match crate::keys::VerifyingKey::from_certificate("leaf", leaf.clone())?.kind {
                KeyKind::Rsa => SignatureAlgorithm::RsaSha256,
                KeyKind::EcP256 => SignatureAlgorithm::EcdsaSha256,
            };
        let uri = match &opts.reference {
            Reference::WholeDocument => String::new(),
            Reference::Id(id) => format!("#{id}"),
        };
        let prefixes = opts.inclusive_prefixes.clone();
        let included: &[X509] = if opts.include_certificate {
            if opts.include_chain {
                &certs
            } else {
                &certs[..1]
            }
        } else {
            &[]
        };
        let mut sig = skeleton(opts, algorithm, uri, &prefixes, included)?;
        // SignedInfo / Reference / DigestValue
        if let Some(Node::Element(si)) = sig.children.get_mut(0) {
            if let Some(Node::Element(r)) = si.children.get_mut(2) {
                if let Some(Node::Element(dv)) = r.children.get_mut(2) {
                    dv.children = vec![Node::Text(B64.encode(reference_digest))];
                }
            }
        }
        Ok(DetachedSignature {
            doc: Document::assemble(Vec::new(), sig, Vec::new()),
            algorithm,
            certs,
            c14n: opts.c14n,
            prefixes,
        })
    }

    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    /// The canonical SignedInfo: the octets the signature value is computed over.
    pub fn signed_info(&self) -> Result<Vec<u8>, DsigError> {
        let o = Options {
            inclusive_prefixes: &self.prefixes,
            exclude: None,
        };
        Ok(canonicalize_subtree(&self.doc, &[0], self.c14n, &o)?)
    }

    /// Signs SignedInfo with `key` (whose certificate must be the leaf given to [`Self::new`]).
    pub fn sign(self, key: &SigningKey) -> Result<String, DsigError> {
        let value = sign_octets(key, &self.signed_info()?)?;
        self.insert_value(&value)
    }

    /// Inserts a signature value made elsewhere (RSA PKCS#1 v1.5, or ECDSA raw `r || s`), after
    /// checking it against the leaf certificate: a wrong value is refused here, not by the
    /// receiver. Returns the `Signature` element's text.
    pub fn insert_value(mut self, value: &[u8]) -> Result<String, DsigError> {
        let leaf = self.certs.first().ok_or(DsigError::MissingCertificate)?;
        let vk = crate::keys::VerifyingKey::from_certificate("leaf", leaf.clone())?;
        if !verify_octets(&vk.pkey, vk.kind, &self.signed_info()?, value)? {
            return Err(DsigError::SignatureMismatch);
        }
        set_text(&mut self.doc, &[1], &B64.encode(value));
        let xml = canonicalize_subtree(&self.doc, &[], Algorithm::Exclusive, &Options::default())?;
        Ok(String::from_utf8(xml).expect("canonical form of a str is UTF-8"))
    }
}

fn set_text(doc: &mut Document, path: &[usize], text: &str) {
    let el = doc.element_at_mut(path).expect("signature skeleton path");
    el.children = vec![Node::Text(text.to_owned())];
}

fn reference_error(e: XmlError) -> DsigError {
    match e {
        XmlError::DuplicateId(id) => {
            DsigError::Wrapping(format!("Id {id:?} is carried by more than one element"))
        }
        XmlError::IdNotFound(id) => DsigError::ReferenceNotFound(format!("#{id}")),
        other => DsigError::Xml(other),
    }
}

/// Octets the reference digest is computed on: comments are never part of a same-document reference
/// (XML-DSig §4.4.3.3), whatever the C14N variant.
fn reference_octets(
    doc: &Document,
    target: &[usize],
    reference: &Reference,
    alg: Algorithm,
    opts: &Options<'_>,
) -> Result<Vec<u8>, DsigError> {
    let alg = alg.without_comments();
    Ok(match reference {
        Reference::WholeDocument => canonicalize_document_with(doc, alg, opts)?,
        Reference::Id(_) => canonicalize_subtree(doc, target, alg, opts)?,
    })
}

fn scheme(kind: KeyKind) -> SigningScheme {
    SigningScheme {
        digest: MessageDigest::sha256(),
        pss: None,
        ecdsa_raw: kind == KeyKind::EcP256,
    }
}

/// Signs with SHA-256; ECDSA output converted to raw `r || s`.
pub(crate) fn sign_octets(
    key: &SigningKey,
    data: &[u8],
) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    sign_with(key.private_key(), &scheme(key.kind()), data)
}

/// Verifies a SHA-256 signature (ECDSA given as raw `r || s`). `Ok(false)` on mismatch.
pub(crate) fn verify_octets(
    pkey: &PKey<Public>,
    kind: KeyKind,
    data: &[u8],
    sig: &[u8],
) -> Result<bool, openssl::error::ErrorStack> {
    verify_with(pkey, &scheme(kind), data, sig)
}

/// Children elements of the element at `path` with their namespace URI.
fn ds_children<'d>(doc: &'d Document, path: &[usize]) -> Vec<(usize, &'d Element, String)> {
    let el = doc.element_at(path).expect("path from this document");
    let scope = doc.scope_at(path).expect("path from this document");
    el.child_elements()
        .map(|(i, c)| {
            let s = push_scope(&scope, &c.ns_decls);
            let ns = s
                .get(c.prefix.as_deref().unwrap_or(""))
                .cloned()
                .unwrap_or_default();
            (i, c, ns)
        })
        .collect()
}

/// The single child `local` in the DSig namespace.
fn ds_child(doc: &Document, path: &[usize], local: &'static str) -> Result<NodePath, DsigError> {
    let hits: Vec<usize> = ds_children(doc, path)
        .into_iter()
        .filter(|(_, c, ns)| c.local == local && ns == DSIG_NS)
        .map(|(i, _, _)| i)
        .collect();
    match hits.as_slice() {
        [i] => {
            let mut p = path.to_vec();
            p.push(*i);
            Ok(p)
        }
        [] => Err(DsigError::Malformed(format!("missing {local}"))),
        _ => Err(DsigError::Malformed(format!("more than one {local}"))),
    }
}

fn algorithm_of(doc: &Document, path: &[usize]) -> Result<String, DsigError> {
    let el = doc.element_at(path).expect("path from this document");
    el.attr("Algorithm")
        .map(str::to_owned)
        .ok_or_else(|| DsigError::Malformed(format!("{} without Algorithm", el.local)))
}

fn b64_decode(text: &str) -> Result<Vec<u8>, DsigError> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    B64.decode(compact)
        .map_err(|e| DsigError::Malformed(format!("base64: {e}")))
}

/// Reads an `InclusiveNamespaces PrefixList` child of a C14N method element, if any.
fn prefix_list(doc: &Document, path: &[usize]) -> Vec<String> {
    ds_children(doc, path)
        .into_iter()
        .find(|(_, c, ns)| {
            c.local == "InclusiveNamespaces" && ns == "http://www.w3.org/2001/10/xml-exc-c14n#"
        })
        .and_then(|(_, c, _)| {
            c.attr("PrefixList")
                .map(|l| l.split_ascii_whitespace().map(str::to_owned).collect())
        })
        .unwrap_or_default()
}

/// Reorders KeyInfo certificates so the end-entity one (issuer of none of the others) comes first:
/// XML-DSig does not fix the order of `X509Certificate` elements.
fn leaf_first(mut certs: Vec<X509>) -> Vec<X509> {
    use openssl::x509::X509VerifyResult;
    let is_issuer_of_another = |i: usize, certs: &[X509]| {
        certs
            .iter()
            .enumerate()
            .any(|(j, other)| i != j && certs[i].issued(other) == X509VerifyResult::OK)
    };
    if let Some(i) = (0..certs.len()).find(|&i| !is_issuer_of_another(i, &certs)) {
        certs.swap(0, i);
    }
    certs
}

/// Verifies the single enveloped signature in `xml`.
pub fn verify_enveloped(xml: &str, opts: &VerifyOptions<'_>) -> Result<Verified, DsigError> {
    let doc = parse_safe(xml)?;
    verify_document(doc, opts)
}

/// What [`check_signature`] established: SignedInfo verified by a trusted signer, and what the
/// reference digest must be.
struct Checked {
    sig_path: NodePath,
    target: NodePath,
    reference: Reference,
    signed_id: Option<String>,
    ref_c14n: Algorithm,
    ref_prefixes: Vec<String>,
    digest_value: Vec<u8>,
    signer: Option<X509>,
    key_id: Option<String>,
    algorithm: SignatureAlgorithm,
}

/// Everything but the reference digest: one Signature, its algorithms supported, the signed
/// element found and enveloping it, the signer trusted, SignedInfo's value verified.
fn check_signature(doc: &Document, opts: &VerifyOptions<'_>) -> Result<Checked, DsigError> {
    let sigs = doc.find_all(DSIG_NS, "Signature");
    let sig_path = match sigs.as_slice() {
        [] => return Err(DsigError::NoSignature),
        [p] => p.clone(),
        _ => {
            return Err(DsigError::Wrapping(format!(
                "{} Signature elements; exactly one is accepted",
                sigs.len()
            )))
        }
    };
    if sig_path.is_empty() {
        return Err(DsigError::Unsupported(
            "Signature as the root element (enveloping)".into(),
        ));
    }

    // --- SignedInfo ---
    let si_path = ds_child(doc, &sig_path, "SignedInfo")?;
    let cm_path = ds_child(doc, &si_path, "CanonicalizationMethod")?;
    let cm_uri = algorithm_of(doc, &cm_path)?;
    let si_c14n = Algorithm::from_uri(&cm_uri)
        .ok_or_else(|| DsigError::Unsupported(format!("CanonicalizationMethod {cm_uri}")))?;
    let si_prefixes = prefix_list(doc, &cm_path);
    let sm_uri = algorithm_of(doc, &ds_child(doc, &si_path, "SignatureMethod")?)?;
    let algorithm = match sm_uri.as_str() {
        RSA_SHA256 => SignatureAlgorithm::RsaSha256,
        ECDSA_SHA256 => SignatureAlgorithm::EcdsaSha256,
        other => return Err(DsigError::Unsupported(format!("SignatureMethod {other}"))),
    };
    let ref_path = ds_child(doc, &si_path, "Reference").map_err(|e| match e {
        DsigError::Malformed(m) if m.starts_with("more than one") => {
            DsigError::Unsupported("more than one Reference".into())
        }
        other => other,
    })?;
    let reference_el = doc.element_at(&ref_path).expect("resolved");
    let uri = reference_el
        .attr("URI")
        .ok_or_else(|| DsigError::Unsupported("Reference without URI".into()))?;
    let reference = if uri.is_empty() {
        Reference::WholeDocument
    } else if let Some(id) = uri
        .strip_prefix('#')
        .filter(|id| !id.starts_with("xpointer("))
    {
        Reference::Id(id.to_owned())
    } else {
        return Err(DsigError::Unsupported(format!(
            "Reference URI {uri:?} (only \"\" and \"#id\")"
        )));
    };

    // Transforms: enveloped-signature, then at most one C14N.
    let tr_path = ds_child(doc, &ref_path, "Transforms").map_err(|_| {
        DsigError::Unsupported("Reference without the enveloped-signature transform".into())
    })?;
    let transforms: Vec<(NodePath, String)> = ds_children(doc, &tr_path)
        .into_iter()
        .filter(|(_, c, ns)| c.local == "Transform" && ns == DSIG_NS)
        .map(|(i, c, _)| {
            let mut p = tr_path.clone();
            p.push(i);
            (p, c.attr("Algorithm").unwrap_or_default().to_owned())
        })
        .collect();
    let (ref_c14n, ref_prefixes) = match transforms.as_slice() {
        [(_, t)] if t == ENVELOPED => (Algorithm::Inclusive, Vec::new()),
        [(_, t), (p, c)] if t == ENVELOPED => (
            Algorithm::from_uri(c)
                .ok_or_else(|| DsigError::Unsupported(format!("Transform {c}")))?,
            prefix_list(doc, p),
        ),
        _ => {
            let list: Vec<&str> = transforms.iter().map(|(_, t)| t.as_str()).collect();
            return Err(DsigError::Unsupported(format!(
                "Transforms {list:?} (only enveloped-signature then one C14N)"
            )));
        }
    };
    let dm = algorithm_of(doc, &ds_child(doc, &ref_path, "DigestMethod")?)?;
    if dm != SHA256 {
        return Err(DsigError::Unsupported(format!("DigestMethod {dm}")));
    }
    let digest_value = b64_decode(
        &doc.element_at(&ds_child(doc, &ref_path, "DigestValue")?)
            .expect("resolved")
            .text(),
    )?;
    let signature_value = b64_decode(
        &doc.element_at(&ds_child(doc, &sig_path, "SignatureValue")?)
            .expect("resolved")
            .text(),
    )?;

    // --- Which element is signed, and is the signature enveloped by it? ---
    let (target, signed_id) = match &reference {
        Reference::WholeDocument => (Vec::new(), None),
        Reference::Id(id) => (
            doc.find_by_id(id).map_err(reference_error)?,
            Some(id.clone()),
        ),
    };
    if !sig_path.starts_with(&target) {
        return Err(DsigError::Wrapping(
            "the Signature is not inside the element it references (not enveloped)".into(),
        ));
    }
    if let Some(expected) = &opts.expected_path {
        if *expected != target {
            return Err(DsigError::Wrapping(format!(
                "the signed element is at {target:?}, expected {expected:?}"
            )));
        }
    }

    // --- Signer ---
    let certs: Vec<X509> = match ds_child(doc, &sig_path, "KeyInfo") {
        Ok(ki) => match ds_child(doc, &ki, "X509Data") {
            Ok(xd) => ds_children(doc, &xd)
                .into_iter()
                .filter(|(_, c, ns)| c.local == "X509Certificate" && ns == DSIG_NS)
                .map(|(_, c, _)| {
                    let der = b64_decode(&c.text())?;
                    X509::from_der(&der)
                        .map_err(|e| DsigError::Malformed(format!("X509Certificate: {e}")))
                })
                .collect::<Result<_, _>>()?,
            Err(_) => Vec::new(),
        },
        Err(_) => Vec::new(),
    };
    let certs = leaf_first(certs);
    let kind_needed = kind_for(algorithm);
    let si_opts = Options {
        inclusive_prefixes: &si_prefixes,
        exclude: None,
    };
    let si_octets = canonicalize_subtree(doc, &si_path, si_c14n, &si_opts)?;

    let (signer, key_id) = match opts.trust {
        SignerTrust::Chain(store) => {
            let leaf = certs.first().ok_or(DsigError::MissingCertificate)?;
            store.verify(leaf, &certs, Usage::Signing)?;
            let vk = VerifyingKey::from_certificate("x509", leaf.clone())?;
            if vk.kind != kind_needed {
                return Err(DsigError::WrongKey(format!(
                    "{:?} key for {}",
                    vk.kind,
                    algorithm.uri()
                )));
            }
            if !verify_octets(&vk.pkey, vk.kind, &si_octets, &signature_value)? {
                return Err(DsigError::SignatureMismatch);
            }
            (Some(leaf.clone()), None)
        }
        SignerTrust::Pinned(keys) => {
            let candidates: Vec<&VerifyingKey> = match certs.first() {
                Some(leaf) => {
                    let pk = leaf.public_key()?;
                    let found: Vec<&VerifyingKey> =
                        keys.iter().filter(|k| k.pkey.public_eq(&pk)).collect();
                    if found.is_empty() {
                        return Err(DsigError::WrongKey(
                            "the KeyInfo certificate is not one of the pinned keys".into(),
                        ));
                    }
                    found
                }
                None => keys.iter().collect(),
            };
            let candidates: Vec<&VerifyingKey> = candidates
                .into_iter()
                .filter(|k| k.kind == kind_needed)
                .collect();
            if candidates.is_empty() {
                return Err(DsigError::WrongKey(format!(
                    "no pinned key fits {}",
                    algorithm.uri()
                )));
            }
            let mut hit = None;
            for k in candidates {
                if verify_octets(&k.pkey, k.kind, &si_octets, &signature_value)? {
                    hit = Some(k);
                    break;
                }
            }
            let k = hit.ok_or(DsigError::SignatureMismatch)?;
            (certs.first().cloned(), Some(k.id.clone()))
        }
    };

    Ok(Checked {
        sig_path,
        target,
        reference,
        signed_id,
        ref_c14n,
        ref_prefixes,
        digest_value,
        signer,
        key_id,
        algorithm,
    })
}

/// Verifies the single enveloped signature in a parsed document.
pub fn verify_document(doc: Document, opts: &VerifyOptions<'_>) -> Result<Verified, DsigError> {
    let Checked {
        sig_path,
        target,
        reference,
        signed_id,
        ref_c14n,
        ref_prefixes,
        digest_value,
        signer,
        key_id,
        algorithm,
    } = check_signature(&doc, opts)?;
    // --- Reference digest ---
    let ref_opts = Options {
        inclusive_prefixes: &ref_prefixes,
        exclude: Some(&sig_path),
    };
    let signed_bytes = reference_octets(&doc, &target, &reference, ref_c14n, &ref_opts)?;
    let digest = hash(MessageDigest::sha256(), &signed_bytes)?;
    if !ct_eq(&digest, &digest_value) {
        return Err(DsigError::DigestMismatch);
    }
    Ok(Verified {
        document: doc,
        signed_path: target,
        signed_id,
        signed_bytes,
        signer,
        key_id,
        algorithm,
    })
}

/// The outcome of [`verify_streamed`].
#[derive(Debug)]
pub struct StreamVerified {
    /// The streamed tree (without diverted text) the signature was checked on.
    pub document: Document,
    /// Path of the Signature element in `document`.
    pub signature_path: NodePath,
    pub signer: Option<X509>,
    pub key_id: Option<String>,
    pub algorithm: SignatureAlgorithm,
}

/// Verifies a whole-document (`URI=""`) enveloped signature of a document parsed with
/// [`crate::xml::stream::parse_stream`], whose canonical form (with `c14n`, without comments,
/// no PrefixList, the Signature excluded) the caller digested with SHA-256 into `digest`.
///
/// The same checks as [`verify_document`] in the same order (SignedInfo and signer first),
/// plus: the streamed exclusion was exactly the Signature element, and the reference's
/// transform is the algorithm the stream used. Anything else (an `#id` reference, a PrefixList,
/// another C14N) is refused with [`DsigError::Unsupported`]: the stream computed no digest for it.
pub fn verify_streamed(
    doc: Document,
    excluded: &[NodePath],
    c14n: Algorithm,
    digest: &[u8],
    opts: &VerifyOptions<'_>,
) -> Result<StreamVerified, DsigError> {
    let checked = check_signature(&doc, opts)?;
    if checked.reference != Reference::WholeDocument {
        return Err(DsigError::Unsupported(
            "a streamed document is verified with a whole-document reference (URI=\"\") only"
                .into(),
        ));
    }
    if checked.ref_c14n.without_comments() != c14n.without_comments()
        || !checked.ref_prefixes.is_empty()
    {
        return Err(DsigError::Unsupported(format!(
            "reference transform {} with PrefixList {:?}; the stream canonicalized with {}",
            checked.ref_c14n.uri(),
            checked.ref_prefixes,
            c14n.without_comments().uri()
        )));
    }
    if excluded != [checked.sig_path.clone()] {
        return Err(DsigError::Wrapping(format!(
            "the streamed digest left out {excluded:?}, the Signature is at {:?}",
            checked.sig_path
        )));
    }
    if !ct_eq(digest, &checked.digest_value) {
        return Err(DsigError::DigestMismatch);
    }
    Ok(StreamVerified {
        document: doc,
        signature_path: checked.sig_path,
        signer: checked.signer,
        key_id: checked.key_id,
        algorithm: checked.algorithm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::load_pem;
    use crate::keys::tests::{ec_key, example, rsa_key, trust};

    const DOSSIER: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<HoSo xmlns=\"urn:vn:dvc:hoso\" xmlns:x=\"urn:x\">\n  <MaHoSo>000.00.00.H00-260101-0001</MaHoSo>\n  <NoiDung Id=\"nd1\" x:loai=\"1\">\n    <TenThuTuc>Cấp giấy phép xây dựng</TenThuTuc>\n    <!-- note -->\n  </NoiDung>\n</HoSo>";

    fn sign(key: &SigningKey, c14n: Algorithm, reference: Reference) -> String {
        let opts = SignOptions {
            c14n,
            reference,
            ..SignOptions::default()
        };
        sign_enveloped(DOSSIER, key, &opts).unwrap()
    }

    #[test]
    fn round_trip_all_variants() {
        let t = trust();
        for key in [rsa_key(), ec_key()] {
            for c14n in [
                Algorithm::Exclusive,
                Algorithm::Inclusive,
                Algorithm::ExclusiveWithComments,
            ] {
                for reference in [Reference::WholeDocument, Reference::Id("nd1".into())] {
                    let signed = sign(&key, c14n, reference.clone());
                    let v = verify_enveloped(&signed, &VerifyOptions::new(SignerTrust::Chain(&t)))
                        .unwrap_or_else(|e| panic!("{:?} {c14n:?} {reference:?}: {e}", key.kind()));
                    let expected: NodePath = if reference == Reference::WholeDocument {
                        vec![]
                    } else {
                        vec![3]
                    };
                    assert_eq!(v.signed_path, expected);
                    assert_eq!(v.signer.as_ref().unwrap(), key.certificate().unwrap());
                    let pinned = [key.verifying_key().unwrap()];
                    let v = verify_enveloped(
                        &signed,
                        &VerifyOptions::new(SignerTrust::Pinned(&pinned)),
                    )
                    .unwrap();
                    assert_eq!(v.key_id.as_deref(), Some(key.id()));
                }
            }
        }
    }

    #[test]
    fn output_keeps_the_input_text() {
        let t = trust();
        let opts = VerifyOptions::new(SignerTrust::Chain(&t));
        let crlf = DOSSIER.replace('\n', "\r\n");
        for input in [DOSSIER.to_owned(), crlf, format!("\u{feff}{DOSSIER}")] {
            for reference in [Reference::WholeDocument, Reference::Id("nd1".into())] {
                let o = SignOptions {
                    reference: reference.clone(),
                    ..SignOptions::default()
                };
                let signed = sign_enveloped(&input, &rsa_key(), &o).unwrap();
                let at = signed.find("<ds:Signature").unwrap();
                let end = signed.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
                assert_eq!(
                    format!("{}{}", &signed[..at], &signed[end..]),
                    input,
                    "{reference:?}"
                );
                verify_enveloped(&signed, &opts).unwrap();
            }
        }
        // A self-closing signed element is opened up.
        let signed = sign_enveloped(
            "<r><a Id=\"x\" k=\"v\" /></r>",
            &ec_key(),
            &SignOptions {
                reference: Reference::Id("x".into()),
                ..SignOptions::default()
            },
        )
        .unwrap();
        assert!(
            signed.starts_with("<r><a Id=\"x\" k=\"v\" ><ds:Signature xmlns:ds="),
            "{signed}"
        );
        assert!(signed.ends_with("</ds:Signature></a></r>"), "{signed}");
        verify_enveloped(&signed, &opts).unwrap();
        let signed = sign_enveloped("<r/>", &ec_key(), &SignOptions::default()).unwrap();
        assert!(signed.starts_with("<r><ds:Signature") && signed.ends_with("</r>"));
        verify_enveloped(&signed, &opts).unwrap();
    }

    #[test]
    fn negative_cases_have_distinct_errors() {
        let t = trust();
        let opts = VerifyOptions::new(SignerTrust::Chain(&t));
        let signed = sign(
            &rsa_key(),
            Algorithm::Exclusive,
            Reference::Id("nd1".into()),
        );

        let tampered = signed.replace("xây dựng", "xây dựng nhà");
        assert!(matches!(
            verify_enveloped(&tampered, &opts),
            Err(DsigError::DigestMismatch)
        ));

        let tampered = signed.replace(
            "rsa-sha256\"></ds:SignatureMethod>",
            "rsa-sha256\"></ds:SignatureMethod><!---->",
        );
        // a comment in SignedInfo is dropped by C14N without comments: still valid
        verify_enveloped(&tampered, &opts).unwrap();
        let tampered = signed.replace(
            "<ds:Reference URI=\"#nd1\">",
            "<ds:Reference URI=\"#nd1\" Id=\"r\">",
        );
        assert!(matches!(
            verify_enveloped(&tampered, &opts),
            Err(DsigError::SignatureMismatch)
        ));

        let dup = signed.replace("<MaHoSo>", "<MaHoSo><NoiDung Id=\"nd1\"></NoiDung>");
        assert!(matches!(
            verify_enveloped(&dup, &opts),
            Err(DsigError::Wrapping(_))
        ));

        // Move the signed element (with its signature) under a wrapper; plant a fake in its place.
        let doc = parse_safe(&signed).unwrap();
        let v = verify_document(doc.clone(), &opts).unwrap();
        let mut moved = doc.clone();
        let original = moved.root.children.remove(v.signed_path[0]);
        let mut wrapper = Element::new(None, "Wrapper");
        wrapper.children.push(original);
        moved.root.children.push(Node::Element(wrapper));
        let mut fake = Element::new(None, "NoiDung");
        fake.children.push(Node::Text("fake".into()));
        moved
            .root
            .children
            .insert(v.signed_path[0], Node::Element(fake));
        let moved_xml = moved.to_xml();
        let v2 = verify_enveloped(&moved_xml, &opts).unwrap();
        assert_ne!(
            v2.signed_path, v.signed_path,
            "the caller sees where the signed element really is"
        );
        let strict = VerifyOptions {
            expected_path: Some(v.signed_path.clone()),
            ..opts.clone()
        };
        assert!(matches!(
            verify_enveloped(&moved_xml, &strict),
            Err(DsigError::Wrapping(_))
        ));

        // The Signature moved out of the element it references: refused even though digests still match.
        let mut out_of_place = doc.clone();
        let sig_pos = out_of_place.find_all(DSIG_NS, "Signature").remove(0);
        let parent = out_of_place
            .element_at_mut(&sig_pos[..sig_pos.len() - 1])
            .unwrap();
        let sig_node = parent.children.remove(sig_pos[sig_pos.len() - 1]);
        out_of_place.root.children.push(sig_node);
        assert!(matches!(
            verify_enveloped(&out_of_place.to_xml(), &opts),
            Err(DsigError::Wrapping(_))
        ));
        // For URI="" the Signature may sit anywhere below the root.
        let whole = sign(&rsa_key(), Algorithm::Exclusive, Reference::WholeDocument);
        let mut nested = parse_safe(&whole).unwrap();
        let sig_pos = nested.find_all(DSIG_NS, "Signature").remove(0);
        let sig_node = nested.root.children.remove(sig_pos[0]);
        nested.element_at_mut(&[1]).unwrap().children.push(sig_node);
        let v = verify_enveloped(&nested.to_xml(), &opts).unwrap();
        assert!(v.signed_path.is_empty());

        let with_dtd = format!(
            "<!DOCTYPE HoSo [<!ENTITY e \"x\">]>{}",
            &signed[signed.find("<HoSo").unwrap()..]
        );
        assert!(matches!(
            verify_enveloped(&with_dtd, &opts),
            Err(DsigError::Xml(XmlError::DtdForbidden))
        ));

        let xpath = signed.replace(ENVELOPED, "http://www.w3.org/TR/1999/REC-xpath-19991116");
        assert!(matches!(
            verify_enveloped(&xpath, &opts),
            Err(DsigError::Unsupported(_))
        ));

        assert!(matches!(
            verify_enveloped(DOSSIER, &opts),
            Err(DsigError::NoSignature)
        ));

        let other = [ec_key().verifying_key().unwrap()];
        assert!(matches!(
            verify_enveloped(&signed, &VerifyOptions::new(SignerTrust::Pinned(&other))),
            Err(DsigError::WrongKey(_))
        ));
    }

    /// The two halves of an externally made signature give what `sign_enveloped` gives, and a
    /// value made over other octets, or by another key, is refused before anything is inserted.
    #[test]
    fn external_signature_in_two_halves() {
        let t = trust();
        let opts = VerifyOptions::new(SignerTrust::Chain(&t));
        for key in [rsa_key(), ec_key()] {
            let signer = ExternalSigner {
                algorithm: SignatureAlgorithm::for_kind(key.kind()),
                certificate: key.certificate(),
                chain: key.chain(),
            };
            let so = SignOptions::default();
            let si = signed_info_enveloped(DOSSIER, &signer, &so).unwrap();
            // What a remote service does: sign the octets with the official's key.
            let value = sign_octets(&key, &si).unwrap();
            let signed = insert_signature_enveloped(DOSSIER, &signer, &so, &value).unwrap();
            let v = verify_enveloped(&signed, &opts).unwrap();
            assert_eq!(v.signer.as_ref(), key.certificate());
            if key.kind() == KeyKind::Rsa {
                // RSA PKCS#1 v1.5 is deterministic: byte for byte what sign_enveloped makes.
                assert_eq!(signed, sign_enveloped(DOSSIER, &key, &so).unwrap());
            }
            let other = sign_octets(&key, b"other octets").unwrap();
            assert!(matches!(
                insert_signature_enveloped(DOSSIER, &signer, &so, &other),
                Err(DsigError::SignatureMismatch)
            ));
            let changed = DOSSIER.replace("0001", "0002");
            assert!(matches!(
                insert_signature_enveloped(&changed, &signer, &so, &value),
                Err(DsigError::SignatureMismatch)
            ));
        }
        let rsa = rsa_key();
        let ec = ec_key();
        let wrong = ExternalSigner {
            algorithm: SignatureAlgorithm::EcdsaSha256,
            certificate: rsa.certificate(),
            chain: &[],
        };
        let value = sign_octets(&ec, b"x").unwrap();
        assert!(matches!(
            insert_signature_enveloped(DOSSIER, &wrong, &SignOptions::default(), &value),
            Err(DsigError::WrongKey(_))
        ));
    }

    #[test]
    fn keyinfo_chain_in_any_order() {
        let t = TrustStore::from_pem(&example("root-ca.pem")).unwrap(); // no intermediates configured
        let key = crate::keys::load_pkcs12(
            "p12",
            &example("sign-rsa.p12"),
            &crate::keys::Secret::new("example"),
        )
        .unwrap();
        let opts = SignOptions {
            include_chain: true,
            ..SignOptions::default()
        };
        let signed = sign_enveloped(DOSSIER, &key, &opts).unwrap();
        assert_eq!(signed.matches("<ds:X509Certificate>").count(), 3);
        let v = verify_enveloped(&signed, &VerifyOptions::new(SignerTrust::Chain(&t))).unwrap();
        assert_eq!(
            v.signer.unwrap().to_der().unwrap(),
            key.certificate().unwrap().to_der().unwrap()
        );
        // Leaf last instead of first: still found.
        let mut doc = parse_safe(&signed).unwrap();
        let xd = doc.find_all(DSIG_NS, "X509Data").remove(0);
        doc.element_at_mut(&xd).unwrap().children.reverse();
        let v =
            verify_enveloped(&doc.to_xml(), &VerifyOptions::new(SignerTrust::Chain(&t))).unwrap();
        assert_eq!(
            v.signer.unwrap().to_der().unwrap(),
            key.certificate().unwrap().to_der().unwrap()
        );
    }

    #[test]
    fn certificate_failures() {
        let mut t = trust();
        t.add_crl_pem(&example("intermediate-ca.crl.pem")).unwrap();
        let opts = VerifyOptions::new(SignerTrust::Chain(&t));
        let expired = load_pem(
            "exp",
            &example("sign-expired.key"),
            Some(&example("sign-expired.pem")),
            None,
        )
        .unwrap();
        let signed = sign(&expired, Algorithm::Exclusive, Reference::WholeDocument);
        assert!(matches!(
            verify_enveloped(&signed, &opts),
            Err(DsigError::Certificate(KeyError::Expired { .. }))
        ));
        let revoked = load_pem(
            "rev",
            &example("sign-revoked.key"),
            Some(&example("sign-revoked.pem")),
            None,
        )
        .unwrap();
        let signed = sign(&revoked, Algorithm::Exclusive, Reference::WholeDocument);
        assert!(matches!(
            verify_enveloped(&signed, &opts),
            Err(DsigError::Certificate(KeyError::Revoked { .. }))
        ));
        let other_root = TrustStore::from_pem(&example("server.pem")).unwrap();
        let signed = sign(&rsa_key(), Algorithm::Exclusive, Reference::WholeDocument);
        assert!(matches!(
            verify_enveloped(
                &signed,
                &VerifyOptions::new(SignerTrust::Chain(&other_root))
            ),
            Err(DsigError::Certificate(KeyError::Untrusted(_)))
        ));
    }

    /// verify_streamed: accepts what the stream digested with the Signature excluded; refuses
    /// a digest that did not leave the Signature out, an `#id` reference, changed content; a
    /// detached signature needs exclusive C14N.
    #[test]
    fn streamed_verification_and_detached_signing() {
        use crate::xml::stream::{parse_stream, StreamHandler, Treatment};
        struct Ex(bool);
        impl StreamHandler for Ex {
            type Error = std::convert::Infallible;
            fn start(
                &mut self,
                _: &[&Element],
                el: &Element,
                ns: &str,
            ) -> Result<Treatment, Self::Error> {
                Ok(Treatment {
                    exclude: self.0 && ns == DSIG_NS && el.local == "Signature",
                    divert_text: false,
                })
            }
            fn text(&mut self, _: &str) -> Result<(), Self::Error> {
                Ok(())
            }
            fn end(&mut self, _: &Element) -> Result<(), Self::Error> {
                Ok(())
            }
        }
        let t = trust();
        let opts = VerifyOptions::new(SignerTrust::Chain(&t));
        let streamed = |xml: &str, exclude: bool| {
            let mut out = Vec::new();
            let s = parse_stream(
                xml.as_bytes(),
                Algorithm::Exclusive,
                &crate::xml::DEFAULT_LIMITS,
                &mut Ex(exclude),
                &mut out,
            )
            .unwrap();
            let digest = hash(MessageDigest::sha256(), &out).unwrap();
            verify_streamed(
                s.document,
                &s.excluded,
                Algorithm::Exclusive,
                &digest,
                &opts,
            )
        };
        let whole = sign(&ec_key(), Algorithm::Exclusive, Reference::WholeDocument);
        let v = streamed(&whole, true).unwrap();
        assert_eq!(v.signer.as_ref(), ec_key().certificate());
        assert!(matches!(
            streamed(&whole, false),
            Err(DsigError::Wrapping(_))
        ));
        let changed = whole.replace("xây dựng", "xây nhà");
        assert!(matches!(
            streamed(&changed, true),
            Err(DsigError::DigestMismatch)
        ));
        let by_id = sign(&ec_key(), Algorithm::Exclusive, Reference::Id("nd1".into()));
        assert!(matches!(
            streamed(&by_id, true),
            Err(DsigError::Unsupported(_))
        ));
        let inclusive = SignOptions {
            c14n: Algorithm::Inclusive,
            ..SignOptions::default()
        };
        let cert = rsa_key().certificate().unwrap().clone();
        assert!(matches!(
            DetachedSignature::new(&[0; 32], vec![cert], &inclusive),
            Err(DsigError::Unsupported(_))
        ));
    }
}
