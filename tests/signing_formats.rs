//! Signed formats assembled around a remote signature (`gateway::signing::assemble`), checked by
//! independent tools: detached CMS by `openssl cms -verify`, enveloped XML-DSig by `xmlsec1
//! --verify`, PAdES B-B and B-T by pyHanko and by `openssl cms -verify` on the CMS taken out of
//! `/Contents` over the byte ranges. Each also with a tampered copy, which the tool must refuse.
//!
//! The "remote" signature is made as a signing service makes it: `openssl pkeyutl -sign` over
//! the prehashed digest `to_sign()` with the example official's key, never by signing the
//! document. Between prepare and finish, `Prepared` goes through JSON, as the flow stores it.
//!
//! External tools (openssl, xmlsec1, python3 + pyhanko): a test that needs a missing one is
//! skipped with a printed reason, except under `CI=true`, where it fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gateway::signing::assemble::{
    finish, finish_timestamped, prepare, sample_pdf, signature_timestamp_request, AssembleError,
    DigestAlgorithm, Format, Options, Prepared,
};
use gw_contract_tests::tsa::{Tsa, TsaMode};
use gw_crypto::keys::TrustStore;
use gw_crypto::tsp;
use openssl::x509::X509;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cert(name: &str) -> PathBuf {
    repo().join("certs-example").join(name)
}

fn x509(name: &str) -> X509 {
    X509::from_pem(&std::fs::read(cert(name)).unwrap()).unwrap()
}

/// Returns true when `probe` succeeds; otherwise skips (prints why) or panics under CI=true.
fn tool(what: &str, probe: &mut Command) -> bool {
    let ok = probe.output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{what} is required under CI=true but is not available");
        }
        let _ = writeln!(std::io::stderr(), "SKIPPED: {what} is not available");
    }
    ok
}

fn openssl() -> bool {
    tool(
        "openssl CLI (apt-get install openssl)",
        Command::new("openssl").arg("version"),
    )
}

fn xmlsec1() -> bool {
    tool(
        "xmlsec1 (apt-get install xmlsec1)",
        Command::new("xmlsec1").arg("--version"),
    )
}

fn pyhanko() -> bool {
    tool(
        "python3 with pyhanko (pip install pyhanko)",
        Command::new("python3").args(["-c", "import pyhanko.sign.validation"]),
    )
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// The signing service: `openssl pkeyutl -sign` over the prehashed digest (RSA PKCS#1 v1.5 over
/// its DigestInfo, or ECDSA), with the official's key. The document never reaches it.
fn remote_sign(dir: &Path, official: &str, prepared: &Prepared) -> Vec<u8> {
    let digest = dir.join("to_sign.bin");
    std::fs::write(&digest, prepared.to_sign()).unwrap();
    let md = match prepared.digest_algorithm() {
        DigestAlgorithm::Sha256 => "sha256",
        DigestAlgorithm::Sha384 => "sha384",
        DigestAlgorithm::Sha512 => "sha512",
    };
    let out = run(Command::new("openssl")
        .args(["pkeyutl", "-sign", "-inkey"])
        .arg(cert(&format!("{official}.key")))
        .arg("-in")
        .arg(&digest)
        .args(["-pkeyopt", &format!("digest:{md}")]));
    assert!(
        out.status.success(),
        "pkeyutl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Prepare, store (JSON) and read back, sign remotely: what the flow does across a restart.
fn prepare_signed(
    dir: &Path,
    format: Format,
    official: &str,
    doc: &[u8],
    options: &Options,
) -> (Prepared, Vec<u8>) {
    let prepared = prepare(
        format,
        doc,
        &x509(&format!("{official}.pem")),
        &[x509("intermediate-ca.pem")],
        options,
    )
    .unwrap_or_else(|e| panic!("prepare {format} {official}: {e}"));
    let stored = serde_json::to_vec(&prepared).unwrap();
    let prepared: Prepared = serde_json::from_slice(&stored).unwrap();
    let value = remote_sign(dir, official, &prepared);
    (prepared, value)
}

/// `openssl cms -verify` of a detached CMS over `content`, the example root trusted.
fn openssl_cms_verifies(dir: &Path, cms_der: &[u8], content: &[u8]) -> bool {
    let (sig, data) = (dir.join("sig.p7s"), dir.join("content.bin"));
    std::fs::write(&sig, cms_der).unwrap();
    std::fs::write(&data, content).unwrap();
    let out = run(Command::new("openssl")
        .args([
            "cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any",
        ])
        .arg("-in")
        .arg(&sig)
        .arg("-content")
        .arg(&data)
        .arg("-CAfile")
        .arg(cert("root-ca.pem"))
        .args(["-out", "/dev/null"]));
    if !out.status.success() {
        eprintln!(
            "openssl cms: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    out.status.success()
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Replaces the first occurrence of `from` by `to` (same length).
fn replace_once(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .unwrap_or_else(|| panic!("{:?} not found", String::from_utf8_lossy(from)));
    let mut out = bytes.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    out
}

// ---------------------------------------------------------------- CMS

#[test]
fn detached_cms_verifies_in_openssl_and_tampering_is_refused() {
    if !openssl() {
        return;
    }
    let dir = tempdir();
    let doc = "Quyết định số 12/QĐ-UBND: cấp giấy phép xây dựng\n".as_bytes();
    for (official, digest) in [
        ("sign-rsa", DigestAlgorithm::Sha256),
        ("sign-rsa", DigestAlgorithm::Sha512),
        ("sign-ec", DigestAlgorithm::Sha256),
    ] {
        let opts = Options {
            digest,
            signing_time: Some(1_765_000_000),
            ..Options::default()
        };
        let (prepared, value) = prepare_signed(dir.path(), Format::Cms, official, doc, &opts);
        let cms = finish(&prepared, doc, &value).unwrap();
        assert!(
            openssl_cms_verifies(dir.path(), &cms, doc),
            "{official} {digest}: OpenSSL must accept the CMS"
        );
        // One document byte changed.
        let mut changed = doc.to_vec();
        changed[3] ^= 0x01;
        assert!(
            !openssl_cms_verifies(dir.path(), &cms, &changed),
            "{official} {digest}: a changed document byte must be refused"
        );
        // A signed attribute changed: the year of the signing-time attribute's UTCTime.
        let tampered = signing_time_changed(&cms);
        assert!(
            !openssl_cms_verifies(dir.path(), &tampered, doc),
            "{official} {digest}: a changed signed attribute must be refused"
        );
    }
}

/// The CMS with the signing-time attribute's year changed (`25` -> `26`): the attribute is
/// `SEQUENCE { OID 1.2.840.113549.1.9.5, SET { UTCTime } }`.
fn signing_time_changed(cms: &[u8]) -> Vec<u8> {
    let oid = [
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x05,
    ];
    let at = cms
        .windows(oid.len())
        .position(|w| w == oid)
        .expect("a signing-time attribute");
    let time = at + oid.len() + 2; // SET header
    assert_eq!(cms[time], 0x17, "UTCTime");
    let year = time + 2;
    assert_eq!(&cms[year..year + 2], b"25");
    let mut out = cms.to_vec();
    out[year + 1] = b'6';
    out
}

#[test]
fn a_foreign_or_wrong_signature_is_never_assembled() {
    if !openssl() {
        return;
    }
    let dir = tempdir();
    let doc = b"ket qua";
    let (prepared, _) = prepare_signed(
        dir.path(),
        Format::Cms,
        "sign-rsa",
        doc,
        &Options::default(),
    );
    // Another official (the EC key) signs our digest: refused.
    let foreign = {
        let p = prepare(
            Format::Cms,
            doc,
            &x509("sign-ec.pem"),
            &[],
            &Options::default(),
        )
        .unwrap();
        // Sign *our* to_sign with the other key.
        let f = dir.path().join("other.bin");
        std::fs::write(&f, prepared.to_sign()).unwrap();
        let _ = p;
        run(Command::new("openssl")
            .args(["pkeyutl", "-sign", "-inkey"])
            .arg(cert("sign-ec.key"))
            .arg("-in")
            .arg(&f)
            .args(["-pkeyopt", "digest:sha256"]))
        .stdout
    };
    let e = finish(&prepared, doc, &foreign).unwrap_err();
    assert!(matches!(e, AssembleError::SignatureRefused(_)), "{e}");
    // The right official, over another digest (the service signed something else).
    let other = prepare(
        Format::Cms,
        b"another document",
        &x509("sign-rsa.pem"),
        &[],
        &Options::default(),
    )
    .unwrap();
    let wrong = remote_sign(dir.path(), "sign-rsa", &other);
    let e = finish(&prepared, doc, &wrong).unwrap_err();
    assert!(matches!(e, AssembleError::SignatureRefused(_)), "{e}");
    assert!(
        e.to_string()
            .contains("does not verify over the digest with the signer certificate's key"),
        "{e}"
    );
}

// ---------------------------------------------------------------- XML

const RESULT_XML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<KetQuaHoSo xmlns=\"urn:vn:onestop:ketqua\">\n  <MaHoSo>000.00.00.H00-260101-0001</MaHoSo>\n  <NoiDung Id=\"nd\">\n    <TrichYeu>Cấp giấy phép xây dựng nhà ở riêng lẻ</TrichYeu>\n    <NguoiKy>Nguyễn Văn Định</NguoiKy>\n  </NoiDung>\n</KetQuaHoSo>\n";

fn xmlsec1_verifies(dir: &Path, xml: &[u8], id_attr: bool) -> bool {
    let f = dir.join("signed.xml");
    std::fs::write(&f, xml).unwrap();
    let mut cmd = Command::new("xmlsec1");
    cmd.arg("--verify")
        .arg("--trusted-pem")
        .arg(cert("root-ca.pem"))
        .arg("--untrusted-pem")
        .arg(cert("intermediate-ca.pem"));
    if id_attr {
        cmd.args(["--id-attr:Id", "urn:vn:onestop:ketqua:NoiDung"]);
    }
    let out = run(cmd.arg(&f));
    if !out.status.success() {
        eprintln!("xmlsec1: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    out.status.success()
}

#[test]
fn enveloped_xml_verifies_in_xmlsec1_and_tampering_is_refused() {
    if !(openssl() && xmlsec1()) {
        return;
    }
    let dir = tempdir();
    let doc = RESULT_XML.as_bytes();
    for official in ["sign-rsa", "sign-ec"] {
        for reference in [None, Some("nd")] {
            let opts = Options {
                xml_reference: reference.map(str::to_owned),
                ..Options::default()
            };
            let (prepared, value) = prepare_signed(dir.path(), Format::Xml, official, doc, &opts);
            let signed = finish(&prepared, doc, &value).unwrap();
            let text = String::from_utf8(signed.clone()).unwrap();
            assert!(text.contains("Cấp giấy phép xây dựng nhà ở riêng lẻ"));
            assert!(text.contains("Nguyễn Văn Định"));
            assert!(
                xmlsec1_verifies(dir.path(), &signed, reference.is_some()),
                "{official} {reference:?}: xmlsec1 must accept"
            );
            let tampered = text.replace("Nguyễn Văn Định", "Nguyễn Văn Đinh");
            assert!(
                !xmlsec1_verifies(dir.path(), tampered.as_bytes(), reference.is_some()),
                "{official} {reference:?}: a tampered element must be refused"
            );
        }
    }
}

// ---------------------------------------------------------------- PAdES

/// pyHanko's verdict on the last signature of a PDF (`scripts/pades-validate.py`), as
/// `key=value` lines and `exit=N`.
fn pyhanko_validate(dir: &Path, pdf: &[u8]) -> String {
    let f = dir.join("signed.pdf");
    std::fs::write(&f, pdf).unwrap();
    let out = run(Command::new("python3")
        .arg(repo().join("scripts/pades-validate.py"))
        .arg(&f)
        .arg(cert("root-ca.pem"))
        .arg(cert("intermediate-ca.pem")));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("pyHanko: {}", stdout.replace('\n', " "));
    // The script exits 0 only for an intact, valid, trusted, whole-file signature.
    format!("{stdout}exit={}\n", out.status.code().unwrap_or(-1))
}

/// The byte ranges and the CMS of the last signature.
fn pdf_parts(signed: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let key = b"/ByteRange [";
    let at = signed.windows(key.len()).rposition(|w| w == key).unwrap() + key.len();
    let end = at + signed[at..].iter().position(|b| *b == b']').unwrap();
    let r: Vec<usize> = std::str::from_utf8(&signed[at..end])
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let mut covered = signed[..r[1]].to_vec();
    covered.extend_from_slice(&signed[r[2]..r[2] + r[3]]);
    let hex = std::str::from_utf8(&signed[r[1] + 1..r[2] - 1]).unwrap();
    let hex = hex.trim_end_matches('0');
    let hex = if hex.len() % 2 == 1 {
        format!("{hex}0")
    } else {
        hex.to_owned()
    };
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    // Trailing zero bytes may belong to the DER: take its declared length.
    let len = match bytes[1] {
        n if n < 0x80 => 2 + n as usize,
        0x81 => 3 + bytes[2] as usize,
        0x82 => 4 + ((bytes[2] as usize) << 8 | bytes[3] as usize),
        _ => panic!("CMS too long"),
    };
    let mut der = bytes;
    der.resize(len, 0);
    (covered, der)
}

#[test]
fn pades_b_b_verifies_in_pyhanko_and_openssl() {
    if !(openssl() && pyhanko()) {
        return;
    }
    let dir = tempdir();
    let doc = sample_pdf("Giay phep xay dung so 12");
    for official in ["sign-rsa", "sign-ec"] {
        let opts = Options {
            reason: Some("Phê duyệt kết quả giải quyết hồ sơ".into()),
            location: Some("UBND xã".into()),
            ..Options::default()
        };
        let (prepared, value) = prepare_signed(dir.path(), Format::Pdf, official, &doc, &opts);
        let signed = finish(&prepared, &doc, &value).unwrap();
        let verdict = pyhanko_validate(dir.path(), &signed);
        for line in [
            "intact=True",
            "valid=True",
            "trusted=True",
            "coverage=ENTIRE_FILE",
            "subfilter=/ETSI.CAdES.detached",
            "timestamp=None",
            "exit=0",
        ] {
            assert!(verdict.contains(line), "{official}: {line} in\n{verdict}");
        }
        let (covered, cms) = pdf_parts(&signed);
        assert!(
            openssl_cms_verifies(dir.path(), &cms, &covered),
            "{official}: OpenSSL must accept the CMS over the byte ranges"
        );

        // Modified after signing: one byte of the page content.
        let tampered = replace_once(&signed, b"xay dung so 12", b"xay dung so 13");
        let verdict = pyhanko_validate(dir.path(), &tampered);
        assert!(
            verdict.contains("intact=False") && verdict.contains("exit=1"),
            "{official}: a modified PDF must not be intact:\n{verdict}"
        );
        let (covered, cms) = pdf_parts(&tampered);
        assert!(!openssl_cms_verifies(dir.path(), &cms, &covered));

        // Modified after signing by a later revision that replaces the page's text: the
        // signature no longer covers the whole file, and the validator says so.
        let appended = revision_replacing_text(&signed, b"Forged");
        let verdict = pyhanko_validate(dir.path(), &appended);
        assert!(
            verdict.contains("coverage=ENTIRE_REVISION") && verdict.contains("exit=1"),
            "{official}: a revision after the signature must be reported:\n{verdict}"
        );
    }
}

/// `pdf` plus an incremental update giving the sample's content stream (object 4) new text.
fn revision_replacing_text(pdf: &[u8], text: &[u8]) -> Vec<u8> {
    let key = b"startxref\n";
    let at = pdf.windows(key.len()).rposition(|w| w == key).unwrap() + key.len();
    let end = at + pdf[at..].iter().position(|b| *b == b'\n').unwrap();
    let prev: usize = std::str::from_utf8(&pdf[at..end]).unwrap().parse().unwrap();
    let size_key = b"/Size ";
    let s_at = pdf
        .windows(size_key.len())
        .rposition(|w| w == size_key)
        .unwrap()
        + size_key.len();
    let s_end = s_at
        + pdf[s_at..]
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap();
    let size = std::str::from_utf8(&pdf[s_at..s_end]).unwrap();
    let mut content = b"BT /F1 18 Tf 72 720 Td (".to_vec();
    content.extend_from_slice(text);
    content.extend_from_slice(b") Tj ET");
    let mut out = pdf.to_vec();
    let obj_at = out.len();
    out.extend_from_slice(format!("4 0 obj\n<< /Length {} >>\nstream\n", content.len()).as_bytes());
    out.extend_from_slice(&content);
    out.extend_from_slice(b"\nendstream\nendobj\n");
    let xref_at = out.len();
    out.extend_from_slice(
        format!(
            "xref\n4 1\n{obj_at:010} 00000 n\r\ntrailer\n<< /Size {size} /Root 1 0 R /Prev {prev} >>\nstartxref\n{xref_at}\n%%EOF\n"
        )
        .as_bytes(),
    );
    out
}

/// A PDF as pyHanko writes one: cross-reference stream, the page and font in an object stream.
fn pyhanko_pdf(dir: &Path, text: &str) -> Vec<u8> {
    let script = r#"
import sys
from pyhanko.pdf_utils.writer import PdfFileWriter
from pyhanko.pdf_utils import generic
N = generic.NameObject
w = PdfFileWriter(stream_xrefs=True)
ostream = w.prepare_object_stream()
font = w.add_object(generic.DictionaryObject({N('/Type'): N('/Font'), N('/Subtype'): N('/Type1'), N('/BaseFont'): N('/Helvetica')}), obj_stream=ostream)
content = w.add_object(generic.StreamObject(stream_data=b'BT /F1 18 Tf 72 720 Td (' + sys.argv[2].encode() + b') Tj ET'))
pages_ref = w.root.raw_get('/Pages')
page = generic.DictionaryObject({
    N('/Type'): N('/Page'), N('/Parent'): pages_ref,
    N('/MediaBox'): generic.ArrayObject([generic.NumberObject(x) for x in (0, 0, 595, 842)]),
    N('/Resources'): generic.DictionaryObject({N('/Font'): generic.DictionaryObject({N('/F1'): font})}),
    N('/Contents'): content})
pages = pages_ref.get_object()
pages['/Kids'].append(w.add_object(page, obj_stream=ostream))
pages[N('/Count')] = generic.NumberObject(1)
with open(sys.argv[1], 'wb') as f:
    w.write(f)
"#;
    let f = dir.join("pyhanko-made.pdf");
    let out = run(Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&f)
        .arg(text));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&f).unwrap()
}

#[test]
fn pades_on_a_pdf_with_object_streams_from_another_writer() {
    if !(openssl() && pyhanko()) {
        return;
    }
    let dir = tempdir();
    let doc = pyhanko_pdf(dir.path(), "Giay phep so 9");
    assert!(
        !doc.windows(5).any(|w| w == b"\nxref"),
        "the input has no classic table"
    );
    let (prepared, value) = prepare_signed(
        dir.path(),
        Format::Pdf,
        "sign-rsa",
        &doc,
        &Options::default(),
    );
    let signed = finish(&prepared, &doc, &value).unwrap();
    let verdict = pyhanko_validate(dir.path(), &signed);
    assert!(
        verdict.contains("exit=0") && verdict.contains("intact=True"),
        "{verdict}"
    );
    let (covered, cms) = pdf_parts(&signed);
    assert!(openssl_cms_verifies(dir.path(), &cms, &covered));
    // A second official signs the signed PDF: both revisions stay readable and valid.
    let (prepared, value) = prepare_signed(
        dir.path(),
        Format::Pdf,
        "sign-ec",
        &signed,
        &Options::default(),
    );
    let twice = finish(&prepared, &signed, &value).unwrap();
    let verdict = pyhanko_validate(dir.path(), &twice);
    assert!(verdict.contains("exit=0"), "{verdict}");
    let tampered = replace_once(&twice, b"Giay phep so 9", b"Giay phep so 0");
    let verdict = pyhanko_validate(dir.path(), &tampered);
    assert!(
        verdict.contains("intact=False") && verdict.contains("exit=1"),
        "{verdict}"
    );
}

#[test]
fn pdf_refusals_at_prepare() {
    let doc = sample_pdf("x");
    let rsa = x509("sign-rsa.pem");
    let e = prepare(
        Format::Pdf,
        b"%!PS-Adobe-3.0\n",
        &rsa,
        &[],
        &Options::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            AssembleError::NotFormat {
                format: Format::Pdf,
                ..
            }
        ),
        "{e}"
    );
    // A cross-reference stream compressed with a filter other than FlateDecode.
    let xref_at = doc.windows(8).rposition(|w| w == b"xref\n0 6").unwrap();
    let mut xs = doc[..xref_at].to_vec();
    let obj_at = xs.len();
    xs.extend_from_slice(b"6 0 obj\n<< /Type /XRef /Size 7 /W [1 4 2] /Root 1 0 R /Filter /LZWDecode /Length 0 >>\nstream\n\nendstream\nendobj\n");
    xs.extend_from_slice(format!("startxref\n{obj_at}\n%%EOF\n").as_bytes());
    let e = prepare(Format::Pdf, &xs, &rsa, &[], &Options::default()).unwrap_err();
    assert!(
        e.to_string().contains("unsupported PDF: stream filter"),
        "{e}"
    );
    // An encrypted PDF.
    let key = b"/Root 1 0 R >>";
    let at = doc.windows(key.len()).rposition(|w| w == key).unwrap() + key.len() - 2;
    let mut enc = doc.clone();
    enc.splice(at..at, b"/Encrypt 9 0 R ".iter().copied());
    let e = prepare(Format::Pdf, &enc, &rsa, &[], &Options::default()).unwrap_err();
    assert!(e.to_string().contains("unsupported PDF: encrypted"), "{e}");
}

// ---------------------------------------------------------------- B-T

/// The TSA sandbox's answer to `req`, verified (chain to the example root, nonce, imprint).
async fn stamp(tsa: &Tsa, req: &tsp::TimeStampRequest, trust: &TrustStore) -> Vec<u8> {
    let resp = reqwest::Client::new()
        .post(tsa.url())
        .header("content-type", "application/timestamp-query")
        .body(req.der.clone())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "TSA: {}", resp.status());
    let body = resp.bytes().await.unwrap();
    tsp::verify_response(&body, req, trust).unwrap().token_der
}

fn tsa_trust() -> TrustStore {
    let mut t = TrustStore::from_pem(&std::fs::read(cert("root-ca.pem")).unwrap()).unwrap();
    t.add_intermediates_pem(&std::fs::read(cert("intermediate-ca.pem")).unwrap())
        .unwrap();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pades_b_t_and_cades_t_carry_a_verified_time_stamp() {
    if !(openssl() && pyhanko()) {
        return;
    }
    let tsa = Tsa::start(0)
        .await
        .expect("TSA sandbox (needs the openssl CLI)");
    let trust = tsa_trust();
    let dir = tempdir();
    let opts = Options {
        timestamp: true,
        reason: Some("Ký số kết quả".into()),
        ..Options::default()
    };

    let doc = sample_pdf("Giay phep so 7");
    for official in ["sign-rsa", "sign-ec"] {
        let (prepared, value) = prepare_signed(dir.path(), Format::Pdf, official, &doc, &opts);
        assert!(matches!(
            finish(&prepared, &doc, &value),
            Err(AssembleError::TimeStampRequired)
        ));
        let req = signature_timestamp_request(&prepared, &doc, &value).unwrap();
        let token = stamp(&tsa, &req, &trust).await;
        let signed = finish_timestamped(&prepared, &doc, &value, &token, &trust).unwrap();
        let verdict = pyhanko_validate(dir.path(), &signed);
        for line in [
            "intact=True",
            "valid=True",
            "trusted=True",
            "coverage=ENTIRE_FILE",
            "timestamp=True",
            "exit=0",
        ] {
            assert!(verdict.contains(line), "{official}: {line} in\n{verdict}");
        }
        let (covered, cms) = pdf_parts(&signed);
        assert!(openssl_cms_verifies(dir.path(), &cms, &covered));
        let tampered = replace_once(&signed, b"Giay phep so 7", b"Giay phep so 8");
        let verdict = pyhanko_validate(dir.path(), &tampered);
        assert!(
            verdict.contains("intact=False") && verdict.contains("exit=1"),
            "{verdict}"
        );
    }

    // CAdES-T: the detached CMS with the same unsigned attribute; OpenSSL still verifies it.
    let opts = Options {
        timestamp: true,
        ..Options::default()
    };
    let doc = b"ket qua giai quyet";
    let (prepared, value) = prepare_signed(dir.path(), Format::Cms, "sign-rsa", doc, &opts);
    let req = signature_timestamp_request(&prepared, doc, &value).unwrap();
    let token = stamp(&tsa, &req, &trust).await;
    let cms = finish_timestamped(&prepared, doc, &value, &token, &trust).unwrap();
    assert!(openssl_cms_verifies(dir.path(), &cms, doc));
    // The token is there, as the unsigned attribute id-aa-signatureTimeStampToken.
    let oid = [
        0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x02, 0x0e,
    ];
    assert!(cms.windows(oid.len()).any(|w| w == oid));
    assert!(cms.windows(token.len()).any(|w| w == token.as_slice()));

    // A token for another signature value (an earlier request) is refused.
    let (prepared2, value2) = prepare_signed(dir.path(), Format::Cms, "sign-rsa", b"other", &opts);
    let e = finish_timestamped(&prepared2, b"other", &value2, &token, &trust).unwrap_err();
    assert!(matches!(e, AssembleError::TimeStamp(_)), "{e}");
    // A token from a TSA no trust store knows (the sandbox's forged mode) is refused.
    tsa.set_mode(TsaMode::Forge);
    let req = signature_timestamp_request(&prepared2, b"other", &value2).unwrap();
    let forged = tsa.forge(&req.der).unwrap();
    let forged_token = {
        // The forged response's token, without checking it (that is finish's job here).
        let mut r = &forged[..];
        // TimeStampResp ::= SEQUENCE { status, token }: skip the outer header and the status.
        let hdr = |b: &[u8]| -> (usize, usize) {
            match b[1] {
                n if n < 0x80 => (2, n as usize),
                0x81 => (3, b[2] as usize),
                0x82 => (4, (b[2] as usize) << 8 | b[3] as usize),
                _ => panic!("long"),
            }
        };
        let (h, _) = hdr(r);
        r = &r[h..];
        let (h, l) = hdr(r);
        r = &r[h + l..];
        r.to_vec()
    };
    let e = finish_timestamped(&prepared2, b"other", &value2, &forged_token, &trust).unwrap_err();
    assert!(matches!(e, AssembleError::TimeStamp(_)), "{e}");
}

// ---------------------------------------------------------------- CLI

/// `gateway sign --format`: the integrators' way to produce each format with a local key.
#[test]
fn cli_sign_format_produces_what_the_tools_accept() {
    if !(openssl() && xmlsec1() && pyhanko()) {
        return;
    }
    let dir = tempdir();
    let d = dir.path();
    let gateway = env!("CARGO_BIN_EXE_gateway");
    let signer = d.join("signer.pem");
    let mut chain = std::fs::read(cert("sign-rsa.pem")).unwrap();
    chain.extend(std::fs::read(cert("intermediate-ca.pem")).unwrap());
    std::fs::write(&signer, chain).unwrap();
    let sign = |format: &str, input: &Path, out: &Path| {
        let reason: &[&str] = if format == "pdf" {
            &["--reason", "Phê duyệt"]
        } else {
            &[]
        };
        run(Command::new(gateway)
            .args(["sign", "--format", format, "--key"])
            .arg(cert("sign-rsa.key"))
            .arg("--cert")
            .arg(&signer)
            .args(reason)
            .arg("-o")
            .arg(out)
            .arg(input))
    };

    let doc = d.join("doc.txt");
    std::fs::write(&doc, "Kết quả giải quyết".as_bytes()).unwrap();
    let out = sign("cms", &doc, &d.join("doc.p7s"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cms = std::fs::read(d.join("doc.p7s")).unwrap();
    assert!(openssl_cms_verifies(
        d,
        &cms,
        "Kết quả giải quyết".as_bytes()
    ));

    let xml = d.join("doc.xml");
    std::fs::write(&xml, RESULT_XML).unwrap();
    let out = sign("xml", &xml, &d.join("signed.xml"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(xmlsec1_verifies(
        d,
        &std::fs::read(d.join("signed.xml")).unwrap(),
        false
    ));

    let pdf = d.join("doc.pdf");
    std::fs::write(&pdf, sample_pdf("Giay phep")).unwrap();
    let out = sign("pdf", &pdf, &d.join("signed.pdf"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict = pyhanko_validate(d, &std::fs::read(d.join("signed.pdf")).unwrap());
    assert!(verdict.contains("exit=0"), "{verdict}");

    // A reason for a CMS: refused (it has nowhere to go), exit 1, nothing written.
    let out = run(Command::new(gateway)
        .args(["sign", "--format", "cms", "--reason", "x", "--key"])
        .arg(cert("sign-rsa.key"))
        .arg("--cert")
        .arg(&signer)
        .arg("-o")
        .arg(d.join("r.p7s"))
        .arg(&doc));
    assert_eq!(out.status.code(), Some(1));
    assert!(!d.join("r.p7s").exists());

    // A file that is not a PDF: exit 1 and the step that refused it; nothing written.
    let out = sign("pdf", &doc, &d.join("not.pdf"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("prepare: the document is not pdf"), "{err}");
    assert!(!d.join("not.pdf").exists());
}
