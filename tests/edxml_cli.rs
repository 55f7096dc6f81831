//! `gateway edxml build|inspect|verify` as an integrator types them: the sample description
//! and attachments of `crates/edxml/samples/` built and signed with the example key, inspected
//! (header, manifest with sizes and SHA-256, claimed signer, no base64), verified (exit 0),
//! and refused with the reason: a tampered copy, an unsigned one, an untrusted signer (exit 1);
//! usage errors (exit 2).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn gateway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn build_inspect_verify_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let samples = root().join("crates/edxml/samples");
    let certs = root().join("certs-example");
    let out = dir.path().join("doc.edxml");
    let o = gateway(&[
        "edxml",
        "build",
        p(&samples.join("document.json")),
        "--attach",
        p(&samples.join("attachments/cong-van-1234.txt")),
        "--attach",
        &format!(
            "phu-luc.bin={}",
            p(&samples.join("attachments/phu-luc.bin"))
        ),
        "--key",
        p(&certs.join("sign-ec.key")),
        "--cert",
        p(&certs.join("sign-ec.pem")),
        "--out",
        p(&out),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("2 attachment(s)"), "{}", text(&o));

    let o = gateway(&["edxml", "inspect", p(&out)]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    for want in [
        "000.00.00.H22,2026/12/06,1234/UBND-TNMT",
        "Ủy ban nhân dân tỉnh Quảng Ninh",
        "Công văn 1234.txt",
        "142 bytes",
        "1024 bytes",
        // SHA-256 of samples/attachments/phu-luc.bin
        "785b0751fc2c53dc14a4ce3d800e69ef9ce1009eb327ccf458afe09c242c26c9",
        "CN=Example ECDSA Signer",
    ] {
        assert!(t.contains(want), "inspect lacks {want:?}:\n{t}");
    }
    assert!(!t.contains("AAECAwQF"), "inspect dumped base64:\n{t}");

    let root_ca = certs.join("root-ca.pem");
    let trust = ["--trust", p(&root_ca), "--intermediates"];
    let inter = certs.join("intermediate-ca.pem");
    let verify = |file: &Path| {
        let mut args = vec!["edxml", "verify", p(file)];
        args.extend(trust);
        args.push(p(&inter));
        gateway(&args)
    };
    let o = verify(&out);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("VALID"));

    let tampered = dir.path().join("tampered.edxml");
    let original = std::fs::read_to_string(&out).unwrap();
    std::fs::write(&tampered, original.replace("V/v cấp giấy", "V/v hủy giấy")).unwrap();
    let o = verify(&tampered);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("digest mismatch"), "{}", text(&o));

    let unsigned = dir.path().join("unsigned.edxml");
    let o = gateway(&[
        "edxml",
        "build",
        p(&samples.join("status-received.json")),
        "--unsigned",
        "--out",
        p(&unsigned),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = verify(&unsigned);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("not signed"), "{}", text(&o));
    let o = gateway(&["edxml", "inspect", p(&unsigned)]);
    assert!(
        text(&o).contains("01 received (axis word: inbox)"),
        "{}",
        text(&o)
    );

    // Another root: untrusted.
    let o = gateway(&[
        "edxml",
        "verify",
        p(&out),
        "--trust",
        p(&certs.join("server.pem")),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("signer certificate"), "{}", text(&o));

    // Usage: a missing attachment, an unreadable file, a bad description.
    let o = gateway(&[
        "edxml",
        "build",
        p(&samples.join("document.json")),
        "--unsigned",
        "--out",
        p(&dir.path().join("x.edxml")),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("has no attachment"), "{}", text(&o));
    let o = gateway(&[
        "edxml",
        "verify",
        "/nonexistent.edxml",
        "--trust",
        p(&certs.join("root-ca.pem")),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"header\": {}}").unwrap();
    let o = gateway(&[
        "edxml",
        "build",
        p(&bad),
        "--unsigned",
        "--out",
        p(&dir.path().join("y")),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
