//! JWS interop with Python jwcrypto: ours verify there, theirs verify here, for ES256, RS256 and PS256,
//! compact and RFC 7797 detached (b64:false).

mod common;

use std::process::Command;

use common::{example, jwcrypto, read_example, TempDir};
use gw_crypto::jws::{
    sign_compact, sign_detached, verify, JwsAlgorithm, JwsError, JwsOptions, JwsTrust,
};
use gw_crypto::keys::{load_pem, SigningKey};

const PAYLOAD: &[u8] = b"{\"maHoSo\":\"000.00.00.H00-260101-0001\",\"trangThai\":\"DA_TIEP_NHAN\",\"ghiChu\":\"ti\xe1\xba\xbfp nh\xe1\xba\xadn $ ok\"}";

fn script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/jwcrypto_interop.py").to_owned()
}

fn key(name: &str, id: &str) -> SigningKey {
    load_pem(
        id,
        &read_example(&format!("{name}.key")),
        Some(&read_example(&format!("{name}.pem"))),
        None,
    )
    .unwrap()
}

fn cases() -> Vec<(&'static str, JwsAlgorithm)> {
    vec![
        ("sign-ec", JwsAlgorithm::Es256),
        ("sign-rsa", JwsAlgorithm::Rs256),
        ("sign-rsa", JwsAlgorithm::Ps256),
    ]
}

fn python_verifies(dir: &TempDir, k: &SigningKey, token: &str, detached: Option<&[u8]>) -> bool {
    let pub_pem = dir.path("pub.pem");
    std::fs::write(&pub_pem, k.private_key().public_key_to_pem().unwrap()).unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(script()).arg("verify").arg(&pub_pem).arg(token);
    if let Some(p) = detached {
        let f = dir.path("payload.bin");
        std::fs::write(&f, p).unwrap();
        cmd.arg(f);
    }
    let out = cmd.output().unwrap();
    if !out.status.success() {
        eprintln!(
            "jwcrypto: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        );
    }
    out.status.success()
}

#[test]
fn ours_verify_in_jwcrypto() {
    if !jwcrypto() {
        return;
    }
    let dir = TempDir::new("jws-ours");
    for (name, alg) in cases() {
        let k = key(name, "k1");
        let opts = JwsOptions {
            algorithm: Some(alg),
            ..JwsOptions::default()
        };
        let compact = sign_compact(PAYLOAD, &k, &opts).unwrap();
        assert!(python_verifies(&dir, &k, &compact, None), "{alg:?} compact");
        let detached = sign_detached(PAYLOAD, &k, &opts).unwrap();
        assert!(
            python_verifies(&dir, &k, &detached, Some(PAYLOAD)),
            "{alg:?} detached"
        );
        assert!(
            !python_verifies(&dir, &k, &detached, Some(b"tampered")),
            "{alg:?} tampered detached"
        );
    }
}

#[test]
fn jwcrypto_signed_verify_here() {
    if !jwcrypto() {
        return;
    }
    let dir = TempDir::new("jws-theirs");
    let payload_file = dir.path("payload.bin");
    std::fs::write(&payload_file, PAYLOAD).unwrap();
    for (name, alg) in cases() {
        let k = key(name, "their-kid");
        let keys = [k.verifying_key().unwrap()];
        for detached in [false, true] {
            let mut cmd = Command::new("python3");
            cmd.arg(script())
                .arg("sign")
                .arg(alg.name())
                .arg(example(&format!("{name}.key")))
                .arg("their-kid")
                .arg(&payload_file);
            if detached {
                cmd.arg("detached");
            }
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "jwcrypto sign: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let token = String::from_utf8(out.stdout).unwrap();
            let v = verify(&token, detached.then_some(PAYLOAD), JwsTrust::Keys(&keys))
                .unwrap_or_else(|e| panic!("{alg:?} detached={detached}: {e}"));
            assert_eq!(v.payload, PAYLOAD);
            assert_eq!(v.algorithm, alg);
            if detached {
                assert!(matches!(
                    verify(&token, Some(b"tampered"), JwsTrust::Keys(&keys)),
                    Err(JwsError::SignatureMismatch)
                ));
            } else {
                let parts: Vec<&str> = token.trim().split('.').collect();
                let tampered = format!("{}.{}.{}", parts[0], "eyJ4IjoxfQ", parts[2]);
                assert!(matches!(
                    verify(&tampered, None, JwsTrust::Keys(&keys)),
                    Err(JwsError::SignatureMismatch)
                ));
            }
        }
    }
}
