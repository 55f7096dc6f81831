//! The edXML codec: build → sign → read → verify round trips with Vietnamese text and several
//! attachments, every status code, the builder's digest against gw-crypto's tree C14N, the
//! two-step (remote) signing, and every refused input with the error that names it.

mod common;

use common::*;
use gw_crypto::digest::sha256;
use gw_crypto::xml::c14n::{canonicalize_document_with, Algorithm, Options};
use gw_crypto::xml::parse_safe;
use gw_crypto::xmldsig::{self, DsigError, SignerTrust, VerifyOptions, DSIG_NS};
use gw_edxml::model::{Envelope, Header};
use gw_edxml::read::{read, Discard};
use gw_edxml::status::{Status, TABLE};
use gw_edxml::write::{AttachmentSource, Outgoing};
use gw_edxml::EdxmlError;

fn doc() -> Envelope {
    sample("document.json")
}

#[test]
fn round_trip_keeps_every_field_and_byte() {
    for k in ["sign-rsa", "sign-ec"] {
        let env = doc();
        let atts = sample_attachments();
        let bytes = signed(&env, &atts, &key(k));
        let (r, sink) = receive(&bytes).unwrap_or_else(|e| panic!("{k}: {e}"));
        assert_eq!(r.envelope, env, "{k}");
        assert_eq!(r.attachments.len(), 2);
        for (a, (id, content)) in r.attachments.iter().zip(&atts) {
            assert_eq!(&a.content_id, id);
            assert_eq!(a.size, content.len() as u64);
            assert_eq!(a.sha256, sha256(content));
            assert_eq!(&sink.attachments[id], content);
        }
        assert!(r.signer.subject_name().entries().count() > 0);
        // The Vietnamese text is in the file as UTF-8, unescaped.
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("Ủy ban nhân dân tỉnh Quảng Ninh"));
        assert!(text.contains("hồ sơ số 000.00.00.H22-261206-0001 &amp; báo cáo"));
    }
}

/// NFC and NFD spellings of the same words stay as given (no normalisation either way).
#[test]
fn text_is_not_normalised() {
    let nfd = "Quye\u{302}\u{301}t \u{111}i\u{323}nh"; // "Quyết định" decomposed
    let nfc = "Quyết định";
    for subject in [nfd, nfc, "  padded\ttext\r\nwith CR  "] {
        let mut env = doc();
        if let Header::Document(h) = &mut env.header {
            h.subject = subject.to_owned();
        }
        let bytes = signed(&env, &sample_attachments(), &key("sign-ec"));
        let (r, _) = receive(&bytes).unwrap();
        let Header::Document(h) = r.envelope.header else {
            panic!("a document")
        };
        assert_eq!(h.subject.as_bytes(), subject.as_bytes());
    }
}

/// The builder writes canonical form: its digest is gw-crypto's tree C14N digest of the
/// output without the Signature, and the tree verifier accepts the whole-document signature.
#[test]
fn builder_digest_equals_tree_c14n() {
    let bytes = signed(&doc(), &sample_attachments(), &key("sign-rsa"));
    let xml = std::str::from_utf8(&bytes).unwrap();
    let tree = parse_safe(xml).unwrap();
    let sig = tree.find_all(DSIG_NS, "Signature").remove(0);
    let c14n = canonicalize_document_with(
        &tree,
        Algorithm::Exclusive,
        &Options {
            inclusive_prefixes: &[],
            exclude: Some(&sig),
        },
    )
    .unwrap();
    let dv = tree.find_all(DSIG_NS, "DigestValue").remove(0);
    use base64::Engine;
    let expected = base64::engine::general_purpose::STANDARD
        .decode(tree.element_at(&dv).unwrap().text())
        .unwrap();
    assert_eq!(sha256(&c14n).to_vec(), expected);
    let t = trust();
    xmldsig::verify_enveloped(xml, &VerifyOptions::new(SignerTrust::Chain(&t))).unwrap();
}

#[test]
fn every_status_code_builds_and_parses() {
    let base = sample("status-received.json");
    let mut seen = 0;
    for row in &TABLE {
        let mut env = base.clone();
        let Header::Status(s) = &mut env.header else {
            panic!("a status sample")
        };
        s.status = row.status;
        match row.code {
            Some(code) => {
                let bytes = signed(&env, &[], &key("sign-ec"));
                assert!(String::from_utf8_lossy(&bytes)
                    .contains(&format!("<edXML:StatusCode>{code}</edXML:StatusCode>")));
                let (r, _) = receive(&bytes).unwrap();
                assert_eq!(r.envelope, env);
                seen += 1;
            }
            None => {
                let err = Outgoing::new(env, Vec::new()).err().unwrap();
                assert!(
                    matches!(err, EdxmlError::StatusWithoutCode(Status::Failed)),
                    "{err}"
                );
            }
        }
    }
    assert_eq!(seen, 9);
}

/// Two steps, as with a remote signer: SignedInfo out, a value back, checked, inserted.
#[test]
fn two_step_signing_with_a_value_from_elsewhere() {
    let env = doc();
    let atts = sample_attachments();
    let sources: Vec<(String, &dyn AttachmentSource)> = atts
        .iter()
        .map(|(id, b)| (id.clone(), b as &dyn AttachmentSource))
        .collect();
    let out = Outgoing::new(env, sources).unwrap();
    let k = key("sign-rsa");
    let certs = vec![k.certificate().unwrap().clone(), k.chain()[0].clone()];
    // The "remote" signer: plain OpenSSL over the SignedInfo octets.
    let remote = |octets: &[u8]| {
        let mut s =
            openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), k.private_key())
                .unwrap();
        s.update(octets).unwrap();
        s.sign_to_vec().unwrap()
    };
    let pending = out.prepare(certs.clone()).unwrap();
    let value = remote(&pending.signed_info().unwrap());
    let sig = pending.insert_value(&value).unwrap();
    let mut bytes = Vec::new();
    out.write(Some(&sig), &mut bytes).unwrap();
    receive(&bytes).unwrap();
    // A value over something else is refused before anything is written.
    let pending = out.prepare(certs).unwrap();
    let wrong = remote(b"not the SignedInfo");
    assert!(matches!(
        pending.insert_value(&wrong),
        Err(EdxmlError::Signature(DsigError::SignatureMismatch))
    ));
}

fn signed_text() -> String {
    String::from_utf8(signed(&doc(), &sample_attachments(), &key("sign-rsa"))).unwrap()
}

fn read_err(text: &str) -> EdxmlError {
    match read(text.as_bytes(), &mut Discard) {
        Err(e) => e,
        Ok(u) => u.verify(&trust()).expect_err("refused"),
    }
}

#[test]
fn tampered_copies_are_refused() {
    let text = signed_text();
    let subject = text.replace("V/v cấp giấy", "V/v thu hồi giấy");
    assert!(matches!(
        read_err(&subject),
        EdxmlError::Signature(DsigError::DigestMismatch)
    ));
    // One attachment byte: the first base64 line of phu-luc.bin (bytes 0..57) changed.
    let mut bin = (0u8..=255).cycle().take(1024).collect::<Vec<u8>>();
    use base64::Engine;
    let line = base64::engine::general_purpose::STANDARD.encode(&bin[..57]);
    bin[10] ^= 1;
    let tampered = base64::engine::general_purpose::STANDARD.encode(&bin[..57]);
    assert!(text.contains(&line));
    let t = text.replace(&line, &tampered);
    assert!(matches!(
        read_err(&t),
        EdxmlError::Signature(DsigError::DigestMismatch)
    ));
    let digest = text.find("<ds:DigestValue>").unwrap() + "<ds:DigestValue>".len();
    let mut t = text.clone();
    let c = if &t[digest..digest + 1] == "A" {
        "B"
    } else {
        "A"
    };
    t.replace_range(digest..digest + 1, c);
    assert!(matches!(
        read_err(&t),
        EdxmlError::Signature(DsigError::SignatureMismatch)
    ));
}

#[test]
fn untrusted_unsigned_and_misplaced_signatures_are_refused() {
    let text = signed_text();
    let other =
        gw_crypto::keys::TrustStore::from_pem(&std::fs::read(example("server.pem")).unwrap())
            .unwrap();
    let u = read(text.as_bytes(), &mut Discard).unwrap();
    assert!(matches!(
        u.verify(&other),
        Err(EdxmlError::Signature(DsigError::Certificate(_)))
    ));
    // Unsigned.
    let at = text.find("<ds:Signature").unwrap();
    let end = text.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
    let unsigned = format!("{}{}", &text[..at], &text[end..]);
    assert!(matches!(read_err(&unsigned), EdxmlError::Unsigned));
    // The Signature moved into the body.
    let sig = &text[at..end];
    let moved = unsigned.replace(
        "<edXML:edXMLManifest>",
        &format!("<edXML:edXMLManifest>{sig}"),
    );
    assert!(
        matches!(read_err(&moved), EdxmlError::SignatureMisplaced),
        "{}",
        read_err(&moved)
    );
    // Expired signer.
    let expired = gw_crypto::keys::load_pem(
        "x",
        &std::fs::read(example("sign-expired.key")).unwrap(),
        Some(&std::fs::read(example("sign-expired.pem")).unwrap()),
        None,
    )
    .unwrap();
    let bytes = signed(&doc(), &sample_attachments(), &expired);
    assert!(matches!(
        receive(&bytes).err().unwrap(),
        EdxmlError::Signature(DsigError::Certificate(_))
    ));
}

/// Every structural refusal names what is wrong (checked before the signature).
#[test]
fn bad_inputs_name_the_element() {
    let text = signed_text();
    type Check = Box<dyn Fn(&EdxmlError) -> bool>;
    let cases: Vec<(String, Check)> = vec![
        (
            text.replace(
                "http://www.mic.gov.vn/TBT/QCVN_102_2016",
                "http://www.mic.gov.vn/TBT/QCVN_102_2015",
            ),
            Box::new(|e| matches!(e, EdxmlError::UnknownNamespace { element, namespace }
                if element == "edXML:edXML" && namespace.ends_with("2015"))),
        ),
        (
            text.replace(
                "<edXML:Subject>",
                "<x:Subject xmlns:x=\"urn:other\">t</x:Subject><edXML:Subject>",
            ),
            Box::new(|e| matches!(e, EdxmlError::UnknownNamespace { element, .. } if element == "x:Subject")),
        ),
        (
            {
                let a = text.find("<edXML:Subject>").unwrap();
                let b = text.find("</edXML:Subject>").unwrap() + "</edXML:Subject>".len();
                format!("{}{}", &text[..a], &text[b..])
            },
            Box::new(|e| matches!(e, EdxmlError::MissingField(f) if f == "MessageHeader/Subject")),
        ),
        (
            text.replace("000.00.00.H22,2026/12/06,1234", "000.00.00.H22,06/12/2026,1234"),
            Box::new(|e| matches!(e, EdxmlError::BadDocumentId { value, .. } if value.contains("06/12/2026"))),
        ),
        (
            text.replace("000.00.00.H22,2026/12/06,1234", "000.00.00.H22,2026/12/06"),
            Box::new(|e| matches!(e, EdxmlError::BadDocumentId { .. })),
        ),
        (
            text.replace("000.00.00.H22,2026/12/06,1234", "000.00.09.H22,2026/12/06,1234"),
            Box::new(|e| matches!(e, EdxmlError::BadDocumentId { why, .. } if why.contains("sender"))),
        ),
        (
            text.replace(
                "<edXML:ContentId>phu-luc.bin</edXML:ContentId><edXML:AttachmentName>",
                "<edXML:ContentId>phu-luc-2.bin</edXML:ContentId><edXML:AttachmentName>",
            ),
            Box::new(|e| matches!(e, EdxmlError::NotInManifest(id) if id == "phu-luc-2.bin")),
        ),
        (
            {
                let a = text.rfind("<edXML:Attachment>").unwrap();
                let b = text.rfind("</edXML:Attachment>").unwrap() + "</edXML:Attachment>".len();
                format!("{}{}", &text[..a], &text[b..])
            },
            Box::new(|e| matches!(e, EdxmlError::AttachmentMissing(id) if id == "phu-luc.bin")),
        ),
        (
            {
                let a = text.rfind("<edXML:ContentTransferEncoded>").unwrap()
                    + "<edXML:ContentTransferEncoded>".len();
                format!("{}!!!!{}", &text[..a], &text[a..])
            },
            Box::new(|e| matches!(e, EdxmlError::BadBase64 { content_id, .. } if content_id == "phu-luc.bin")),
        ),
        (
            {
                let a = text.rfind("</edXML:ContentTransferEncoded>").unwrap();
                format!("{}QQ{}", &text[..a], &text[a..])
            },
            Box::new(|e| matches!(e, EdxmlError::BadBase64 { content_id, .. } if content_id == "phu-luc.bin")),
        ),
        (
            text.replace(
                "<edXML:ContentType>application/octet-stream</edXML:ContentType><edXML:ContentTransferEncoded>",
                "<edXML:ContentType>application/pdf</edXML:ContentType><edXML:ContentTransferEncoded>",
            ),
            Box::new(|e| matches!(e, EdxmlError::ManifestMismatch { content_id, element, .. }
                if content_id == "phu-luc.bin" && *element == "ContentType")),
        ),
        (
            text.replace("<edXML:edXMLBody>", "<edXML:Extra></edXML:Extra><edXML:edXMLBody>"),
            Box::new(|e| matches!(e, EdxmlError::UnexpectedElement { found, .. } if found == "edXML:Extra")),
        ),
        (
            text.replace(
                "</edXML:TraceHeaderList>",
                "</edXML:TraceHeaderList><edXML:Signature><x:y xmlns:x=\"urn:x\"/></edXML:Signature>",
            ),
            Box::new(|e| matches!(e, EdxmlError::UnknownNamespace { element, .. } if element == "edXML:Signature")),
        ),
        (
            "<!DOCTYPE x [<!ENTITY e \"x\">]><x/>".to_owned(),
            Box::new(|e| matches!(e, EdxmlError::Xml(gw_crypto::xml::XmlError::DtdForbidden))),
        ),
    ];
    for (i, (input, check)) in cases.iter().enumerate() {
        let e = read_err(input);
        assert!(check(&e), "case {i}: {e}");
        // The message names something specific.
        assert!(!e.to_string().is_empty());
    }
    let sample_status = sample("status-received.json");
    let bytes = String::from_utf8(signed(&sample_status, &[], &key("sign-ec"))).unwrap();
    let e = read_err(&bytes.replace(">01<", ">07<"));
    assert!(
        matches!(&e, EdxmlError::UnknownStatusCode(c) if c == "07"),
        "{e}"
    );
}

#[test]
fn builder_refuses_inconsistent_input() {
    let env = doc();
    let atts = sample_attachments();
    let one: Vec<(String, &dyn AttachmentSource)> =
        vec![(atts[0].0.clone(), &atts[0].1 as &dyn AttachmentSource)];
    assert!(matches!(
        Outgoing::new(env.clone(), one).err().unwrap(),
        EdxmlError::AttachmentMissing(id) if id == "phu-luc.bin"
    ));
    let mut three: Vec<(String, &dyn AttachmentSource)> = atts
        .iter()
        .map(|(id, b)| (id.clone(), b as &dyn AttachmentSource))
        .collect();
    three.push(("extra".into(), &atts[0].1));
    assert!(matches!(
        Outgoing::new(env.clone(), three).err().unwrap(),
        EdxmlError::NotInManifest(id) if id == "extra"
    ));
    let mut empty_subject = env;
    if let Header::Document(h) = &mut empty_subject.header {
        h.subject = " ".into();
    }
    assert!(matches!(
        Outgoing::new(empty_subject, Vec::new()).err().unwrap(),
        EdxmlError::MissingField(f) if f == "MessageHeader/Subject"
    ));
    let bad: Result<Envelope, _> = serde_json::from_str(
        &std::fs::read_to_string(crate_dir().join("samples/document.json"))
            .unwrap()
            .replace("2026/12/06,1234", "2026-12-06,1234"),
    );
    assert!(bad.unwrap_err().to_string().contains("yyyy/MM/dd"));
}

/// Attachments larger than one read chunk and one decode piece, of awkward sizes.
#[test]
fn large_and_odd_sized_attachments_round_trip() {
    let mut env = doc();
    let sizes = [0usize, 1, 2, 3, 57, 58, 57 * 1024 + 1, 300_001];
    env.manifest = sizes
        .iter()
        .map(|n| gw_edxml::model::ManifestEntry {
            content_id: format!("a{n}"),
            content_type: "application/octet-stream".into(),
            description: None,
            attachment_name: format!("tệp {n}.bin"),
        })
        .collect();
    let atts: Vec<(String, Vec<u8>)> = sizes
        .iter()
        .map(|n| {
            (
                format!("a{n}"),
                (0..*n).map(|i| (i * 7 % 251) as u8).collect(),
            )
        })
        .collect();
    let bytes = signed(&env, &atts, &key("sign-ec"));
    let (r, sink) = receive(&bytes).unwrap();
    for (id, content) in &atts {
        assert_eq!(&sink.attachments[id], content, "{id}");
    }
    assert_eq!(r.attachments.len(), sizes.len());
}
