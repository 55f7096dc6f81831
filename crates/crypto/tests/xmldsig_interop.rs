//! XML-DSig interop with xmlsec1, both directions: RSA and ECDSA, exclusive and inclusive C14N,
//! whole-document and Id references; tampered documents fail on both sides.

mod common;

use std::process::Command;

use common::{example, read_example, xmlsec1, TempDir};
use gw_crypto::keys::{load_pem, SigningKey, TrustStore};
use gw_crypto::xml::c14n::Algorithm;
use gw_crypto::xmldsig::{
    sign_enveloped, verify_enveloped, DsigError, Reference, SignOptions, SignerTrust, VerifyOptions,
};

const NS: &str = "urn:vn:dvc:hoso";

/// A dossier exercising the C14N corners: prolog/epilog comments and PIs, unsorted and namespaced
/// attributes, unused and undeclared (`xmlns=""`) namespaces, `xml:lang` on an ancestor, characters
/// that must be escaped in attributes and text, CDATA, a character reference to CR, empty elements.
fn dossier() -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- prolog comment -->\n<?pi-before data?>\n<HoSo xmlns=\"{NS}\" xmlns:x=\"urn:x\" xmlns:unused=\"urn:unused\" xml:lang=\"vi\">\n  <MaHoSo   b=\"2\"  a=\"1\" x:c=\"3\">000.00.00.H00-260101-0001</MaHoSo>\n  <NoiDung Id=\"nd1\" x:loai=\"1\" note=\"tab&#9;nl&#10;cr&#13;q&quot;lt&lt;gt>amp&amp;\">\n    <TenThuTuc>Cấp giấy phép xây dựng &amp; sửa chữa</TenThuTuc>\n    <!-- note -->\n    <Empty/>\n    <Data><![CDATA[<raw> & \"stuff\"]]>&#13;</Data>\n    <y:Inner xmlns:y=\"urn:y\" xmlns=\"\"><Plain attr=\"v\"/></y:Inner>\n    <?pi-inside some data?>\n  </NoiDung>\n</HoSo>\n<!-- trailing -->\n"
    )
}

fn key(name: &str) -> SigningKey {
    load_pem(
        name,
        &read_example(&format!("{name}.key")),
        Some(&read_example(&format!("{name}.pem"))),
        None,
    )
    .unwrap()
}

fn trust() -> TrustStore {
    let mut t = TrustStore::from_pem(&read_example("root-ca.pem")).unwrap();
    t.add_intermediates_pem(&read_example("intermediate-ca.pem"))
        .unwrap();
    t
}

/// Runs `xmlsec1 --verify` on `xml`; returns whether it accepted the signature.
fn xmlsec_verify(xml: &str, id_ref: bool) -> bool {
    let dir = TempDir::new("xmlsec-verify");
    let file = dir.path("signed.xml");
    std::fs::write(&file, xml).unwrap();
    let mut cmd = Command::new("xmlsec1");
    cmd.arg("--verify")
        .arg("--trusted-pem")
        .arg(example("root-ca.pem"))
        .arg("--untrusted-pem")
        .arg(example("intermediate-ca.pem"));
    if id_ref {
        cmd.arg("--id-attr:Id").arg(format!("{NS}:NoiDung"));
    }
    let out = cmd.arg(&file).output().unwrap();
    if !out.status.success() {
        eprintln!(
            "xmlsec1 --verify said: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

#[test]
fn ours_signed_verifies_in_xmlsec1_and_tampering_fails_there() {
    if !xmlsec1() {
        return;
    }
    for name in ["sign-rsa", "sign-ec"] {
        let k = key(name);
        for c14n in [Algorithm::Exclusive, Algorithm::Inclusive] {
            for reference in [Reference::WholeDocument, Reference::Id("nd1".into())] {
                let id_ref = reference != Reference::WholeDocument;
                let opts = SignOptions {
                    c14n,
                    reference: reference.clone(),
                    ..SignOptions::default()
                };
                let signed = sign_enveloped(&dossier(), &k, &opts).unwrap();
                assert!(
                    xmlsec_verify(&signed, id_ref),
                    "{name} {c14n:?} {reference:?}:\n{signed}"
                );
                let tampered = signed.replace("sửa chữa", "phá dỡ");
                assert!(
                    !xmlsec_verify(&tampered, id_ref),
                    "xmlsec1 accepted tampered {name} {c14n:?} {reference:?}"
                );
                if c14n != Algorithm::Exclusive {
                    continue;
                }
                let t = trust();
                // Signature elements in the default namespace instead of `ds:`.
                let unprefixed = SignOptions {
                    prefix: None,
                    ..opts.clone()
                };
                let signed = sign_enveloped(&dossier(), &k, &unprefixed).unwrap();
                assert!(signed.contains("<Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\">"));
                assert!(
                    xmlsec_verify(&signed, id_ref),
                    "unprefixed {name} {reference:?}:\n{signed}"
                );
                verify_enveloped(&signed, &VerifyOptions::new(SignerTrust::Chain(&t))).unwrap();
                // An InclusiveNamespaces PrefixList naming an otherwise unused prefix and the default
                // namespace: the canonical form changes, both sides must agree on it.
                let with_list = SignOptions {
                    inclusive_prefixes: vec!["unused".into(), "#default".into()],
                    ..opts.clone()
                };
                let signed = sign_enveloped(&dossier(), &k, &with_list).unwrap();
                assert_eq!(signed.matches("PrefixList=\"unused #default\"").count(), 2);
                assert!(
                    xmlsec_verify(&signed, id_ref),
                    "PrefixList {name} {reference:?}:\n{signed}"
                );
                verify_enveloped(&signed, &VerifyOptions::new(SignerTrust::Chain(&t))).unwrap();
            }
        }
    }
}

/// An xmlsec1 signing template; `prefix_list` adds an exclusive-C14N `InclusiveNamespaces` to the
/// reference's C14N transform.
fn template(c14n: Algorithm, sig_alg: &str, id_ref: bool, prefix_list: Option<&str>) -> String {
    let transform = match prefix_list {
        Some(list) => format!(
            "<Transform Algorithm=\"{}\"><InclusiveNamespaces xmlns=\"http://www.w3.org/2001/10/xml-exc-c14n#\" PrefixList=\"{list}\"/></Transform>",
            c14n.uri()
        ),
        None => format!("<Transform Algorithm=\"{}\"/>", c14n.uri()),
    };
    let uri = if id_ref { "#nd1" } else { "" };
    let sig = format!(
        "<Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\">\n<SignedInfo>\n<CanonicalizationMethod Algorithm=\"{c}\"/>\n<SignatureMethod Algorithm=\"{sig_alg}\"/>\n<Reference URI=\"{uri}\">\n<Transforms>\n<Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>\n{transform}\n</Transforms>\n<DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/>\n<DigestValue></DigestValue>\n</Reference>\n</SignedInfo>\n<SignatureValue/>\n<KeyInfo><X509Data><X509Certificate/></X509Data></KeyInfo>\n</Signature>",
        c = c14n.uri()
    );
    let mut doc = dossier();
    let at = if id_ref {
        doc.rfind("</NoiDung>")
    } else {
        doc.rfind("</HoSo>")
    };
    doc.insert_str(at.expect("closing tag present"), &sig);
    doc
}

/// Runs `xmlsec1 --sign` on a template; returns the signed document.
fn xmlsec_sign(tmpl: &str, name: &str, id_ref: bool) -> String {
    let dir = TempDir::new("xmlsec-sign");
    let input = dir.path("tmpl.xml");
    let output = dir.path("out.xml");
    std::fs::write(&input, tmpl).unwrap();
    let mut cmd = Command::new("xmlsec1");
    cmd.arg("--sign").arg("--privkey-pem").arg(format!(
        "{},{}",
        example(&format!("{name}.key")).display(),
        example(&format!("{name}.pem")).display()
    ));
    if id_ref {
        cmd.arg("--id-attr:Id").arg(format!("{NS}:NoiDung"));
    }
    let out = cmd
        .arg("--output")
        .arg(&output)
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "xmlsec1 --sign failed: {}\n{tmpl}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&output).unwrap()
}

#[test]
fn xmlsec1_signed_verifies_here_and_tampering_fails_here() {
    if !xmlsec1() {
        return;
    }
    let t = trust();
    let opts = VerifyOptions::new(SignerTrust::Chain(&t));
    for (name, sig_alg) in [
        (
            "sign-rsa",
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        ),
        (
            "sign-ec",
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        ),
    ] {
        for c14n in [
            Algorithm::Exclusive,
            Algorithm::Inclusive,
            Algorithm::InclusiveWithComments,
        ] {
            for (id_ref, prefix_list) in [(false, None), (true, None), (true, Some("unused x"))] {
                if prefix_list.is_some() && !c14n.is_exclusive() {
                    continue;
                }
                let signed =
                    xmlsec_sign(&template(c14n, sig_alg, id_ref, prefix_list), name, id_ref);
                let v = verify_enveloped(&signed, &opts)
                    .unwrap_or_else(|e| panic!("{name} {c14n:?} id={id_ref}: {e}\n{signed}"));
                assert_eq!(v.signed_id.is_some(), id_ref);
                assert_eq!(
                    v.signer.unwrap().to_der().unwrap(),
                    key(name).certificate().unwrap().to_der().unwrap()
                );
                let tampered = signed.replace("sửa chữa", "phá dỡ");
                assert!(
                    matches!(
                        verify_enveloped(&tampered, &opts),
                        Err(DsigError::DigestMismatch)
                    ),
                    "{name} {c14n:?} id={id_ref}"
                );
                let tampered = signed.replace("<Reference URI=", "<Reference Type=\"urn:t\" URI=");
                assert!(
                    matches!(
                        verify_enveloped(&tampered, &opts),
                        Err(DsigError::SignatureMismatch)
                    ),
                    "{name} {c14n:?} id={id_ref}"
                );
            }
        }
    }
}
