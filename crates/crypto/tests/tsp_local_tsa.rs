//! RFC 3161 against a local TSA: `openssl ts -reply` with certs-example/tsa.cnf answers our request.

mod common;

use std::process::Command;

use common::{example, openssl_cli, read_example, TempDir};
use gw_crypto::keys::{KeyError, TrustStore};
use gw_crypto::tsp::{
    request_for_data, verify_response, verify_token, verify_token_at, CertificateTime,
    TimeStampRequest, TspError,
};

fn trust() -> TrustStore {
    let mut t = TrustStore::from_pem(&read_example("root-ca.pem")).unwrap();
    t.add_intermediates_pem(&read_example("intermediate-ca.pem"))
        .unwrap();
    t
}

/// Runs the example TSA on `req` in a scratch copy of its files; returns the DER response.
fn local_tsa(dir: &TempDir, req: &TimeStampRequest) -> Vec<u8> {
    for f in ["tsa.cnf", "tsa.pem", "tsa.key", "chain.pem"] {
        std::fs::copy(example(f), dir.path(f)).unwrap();
    }
    std::fs::write(dir.path("req.tsq"), &req.der).unwrap();
    let out = Command::new("openssl")
        .current_dir(&dir.0)
        .args([
            "ts",
            "-reply",
            "-config",
            "tsa.cnf",
            "-queryfile",
            "req.tsq",
            "-out",
            "resp.tsr",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl ts -reply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(dir.path("resp.tsr")).unwrap()
}

#[test]
fn local_tsa_round_trip_and_failures() {
    if !openssl_cli() {
        return;
    }
    let dir = TempDir::new("tsa");
    let evidence = b"<HoSo>...signed dossier...</HoSo>";
    let req = request_for_data(evidence).unwrap();
    let resp = local_tsa(&dir, &req);

    // OpenSSL itself agrees the response answers our request.
    let check = Command::new("openssl")
        .current_dir(&dir.0)
        .args([
            "ts",
            "-verify",
            "-in",
            "resp.tsr",
            "-queryfile",
            "req.tsq",
            "-CAfile",
        ])
        .arg(example("root-ca.pem"))
        .arg("-untrusted")
        .arg(example("intermediate-ca.pem"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "openssl ts -verify: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    let ts = verify_response(&resp, &req, &trust()).unwrap();
    assert_eq!(ts.policy, "1.3.6.1.4.1.99999.1.1");
    assert!(
        ts.gen_time.ends_with('Z') && ts.gen_time.len() >= 15,
        "{}",
        ts.gen_time
    );
    assert!(ts
        .tsa
        .subject_name()
        .entries()
        .any(|e| e.data().as_slice() == b"Example TSA"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (ts.gen_unix - now).abs() < 3600,
        "genTime {} vs now {now}",
        ts.gen_time
    );
    // The bare token verifies on its own for the same digest, not for another.
    verify_token(&ts.token_der, &req.digest, &trust()).unwrap();
    verify_token_at(
        &ts.token_der,
        &req.digest,
        &trust(),
        CertificateTime::GenTime,
    )
    .unwrap();
    assert!(matches!(
        verify_token(&ts.token_der, &[0u8; 32], &trust()),
        Err(TspError::ImprintMismatch)
    ));

    // A response to another request (other nonce).
    let other = request_for_data(evidence).unwrap();
    assert!(matches!(
        verify_response(&resp, &other, &trust()),
        Err(TspError::NonceMismatch)
    ));

    // TSA not trusted.
    let strangers = TrustStore::from_pem(&read_example("server.pem")).unwrap();
    assert!(matches!(
        verify_response(&resp, &req, &strangers),
        Err(TspError::Certificate(KeyError::Untrusted(_)))
    ));

    // A flipped byte inside the signed TSTInfo (the genTime digits) breaks the signature.
    let pos = resp
        .windows(ts.gen_time.len())
        .position(|w| w == ts.gen_time.as_bytes())
        .unwrap();
    let mut tampered = resp.clone();
    tampered[pos] ^= 0x01;
    assert!(matches!(
        verify_response(&tampered, &req, &trust()),
        Err(TspError::SignatureInvalid(_))
    ));

    // A rejection status (2 = rejection) is reported as such.
    let rejected = [0x30u8, 0x05, 0x30, 0x03, 0x02, 0x01, 0x02];
    assert!(matches!(
        verify_response(&rejected, &req, &trust()),
        Err(TspError::Rejected { status: 2, .. })
    ));
}
