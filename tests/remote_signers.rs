//! The three signer connectors against their strict sandboxes: certificate, submit, poll,
//! signed and verified; rejection and expiry; every fault ends in the right `SignerError` or
//! verification refusal; bad input refused before anything is sent; one request id reaches
//! the phone once; MySign's login shared and renewed once; CSC in both modes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gateway::config::SignerSection;
use gateway::connectors::mysign::MySignSigner;
use gateway::connectors::signer::{
    HashRequest, RemoteSigner, SignStatus, SignerError, SignerId, Submitted,
};
use gateway::connectors::signers::build;
use gateway::signing::remote::{
    DigestAlgorithm, Expected, RemoteError, RemoteVerifier, RsaPadding, SignatureValue, SignerPin,
};
use gw_contract_tests::csc::{Csc, CscConfig};
use gw_contract_tests::mysign::{MySign, MySignConfig};
use gw_contract_tests::officials::{SignFaults, SignRecords};
use gw_contract_tests::smartca::{SmartCa, SmartCaConfig};

const CONFIRM: Duration = Duration::from_millis(200);
const LIFETIME: Duration = Duration::from_millis(1500);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A folder with the secret files the sections refer to.
fn secrets() -> PathBuf {
    let d = std::env::temp_dir().join(format!("gw-signers-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("sp"), "sandbox-sp-password").unwrap();
    std::fs::write(d.join("client"), "sandbox-client-secret").unwrap();
    d
}

/// The officials every section lists (pins as the example PKI issued them).
const OFFICIALS: &[(&str, &str, &str)] = &[
    ("official-rsa", "cred-rsa", "5000"),
    ("official-ec", "cred-ec", "5001"),
    ("official-ec384", "cred-ec384", "5002"),
    ("official-rejects", "cred-rejects", "5000"),
    ("official-away", "cred-away", "5001"),
    ("official-expired", "cred-expired", "5004"),
];

fn section(service: &str, url: &str, extra: &str) -> SignerSection {
    let s = secrets();
    let creds = match service {
        "smartca" => format!(
            "sp_id = \"sandbox-sp\"\nsp_password = {{ file = \"{}\" }}\n",
            s.join("sp").display()
        ),
        "mysign" => format!(
            "client_id = \"sandbox-client\"\nclient_secret = {{ file = \"{}\" }}\nprofile_id = \"sandbox-profile\"\n",
            s.join("client").display()
        ),
        _ => format!(
            "client_id = \"sandbox-client\"\nclient_secret = {{ file = \"{}\" }}\n",
            s.join("client").display()
        ),
    };
    let timeout = if extra.contains("timeout =") {
        ""
    } else {
        "timeout = \"5s\"\n"
    };
    let mut text = format!(
        "service = \"{service}\"\nurl = \"{url}\"\ntrust_anchors = \"certs-example/chain.pem\"\n{timeout}poll_interval = \"100ms\"\nrequest_lifetime = \"2s\"\n{creds}{extra}\n"
    );
    for (user, cred, serial) in OFFICIALS {
        text.push_str(&format!(
            "[[officials]]\nuser_id = \"{user}\"\nserial = \"{serial}\"\n"
        ));
        if service != "smartca" {
            text.push_str(&format!("credential_id = \"{cred}\"\n"));
        }
    }
    toml::from_str(&text).unwrap()
}

/// One service under test: its connector and its sandbox's controls.
struct Svc {
    name: &'static str,
    signer: Arc<dyn RemoteSigner>,
    records: Box<dyn Fn() -> SignRecords + Send + Sync>,
    faults: Box<dyn Fn(SignFaults) + Send + Sync>,
}

async fn smartca(extra: &str) -> (Svc, SmartCa) {
    let sb = SmartCa::start(
        0,
        SmartCaConfig {
            confirm_after: CONFIRM,
            lifetime: LIFETIME,
            ..SmartCaConfig::default()
        },
    )
    .await
    .unwrap();
    let signer = build(
        "smartca",
        &section("smartca", &sb.base_url(), extra),
        &root(),
    )
    .unwrap();
    let (a, b) = (sb.clone(), sb.clone());
    (
        Svc {
            name: "smartca",
            signer,
            records: Box::new(move || a.records()),
            faults: Box::new(move |f| b.set_faults(f)),
        },
        sb,
    )
}

async fn mysign(extra: &str) -> (Svc, MySign) {
    let sb = MySign::start(
        0,
        MySignConfig {
            confirm_after: CONFIRM,
            lifetime: LIFETIME,
            ..MySignConfig::default()
        },
    )
    .await
    .unwrap();
    let signer = build("mysign", &section("mysign", &sb.base_url(), extra), &root()).unwrap();
    let (a, b) = (sb.clone(), sb.clone());
    (
        Svc {
            name: "mysign",
            signer,
            records: Box::new(move || a.records()),
            faults: Box::new(move |f| b.set_faults(f)),
        },
        sb,
    )
}

async fn csc(extra: &str) -> (Svc, Csc) {
    let sb = Csc::start(
        0,
        CscConfig {
            confirm_after: CONFIRM,
            lifetime: LIFETIME,
            ..CscConfig::default()
        },
    )
    .await
    .unwrap();
    let signer = build("csc", &section("csc", &sb.base_url(), extra), &root()).unwrap();
    let (a, b) = (sb.clone(), sb.clone());
    (
        Svc {
            name: "csc",
            signer,
            records: Box::new(move || a.records()),
            faults: Box::new(move |f| b.set_faults(f)),
        },
        sb,
    )
}

async fn all(extra: &str) -> Vec<(Svc, Box<dyn std::any::Any>)> {
    let (a, sa) = smartca(extra).await;
    let (b, sb) = mysign(extra).await;
    let (c, sc) = csc(extra).await;
    vec![(a, Box::new(sa)), (b, Box::new(sb)), (c, Box::new(sc))]
}

fn req(id: &str, signer: &str, alg: DigestAlgorithm, doc: &[u8]) -> HashRequest {
    HashRequest {
        request_id: id.into(),
        signer: SignerId(signer.into()),
        digest: alg.digest(doc),
        algorithm: alg,
        description: "Result of dossier 000.00.01.H22-261206-0001".into(),
    }
}

/// Submit, then poll until the request leaves "waiting" (bounded by the sandbox's lifetime).
async fn run(s: &Svc, r: &HashRequest) -> Result<SignStatus, SignerError> {
    let tx = match s.signer.submit(r).await? {
        Submitted::Waiting(tx) => tx,
        Submitted::Signed(v) => return Ok(SignStatus::Signed(v)),
        Submitted::Rejected(why) => return Ok(SignStatus::Rejected(why)),
        Submitted::Expired => return Ok(SignStatus::Expired),
    };
    for n in 0..60 {
        match s.signer.status(&tx, r).await? {
            SignStatus::Waiting => {
                tokio::time::sleep(Duration::from_millis(100).min(s.signer.poll_policy().wait(n)))
                    .await
            }
            other => return Ok(other),
        }
    }
    panic!("{}: still waiting after the sandbox's lifetime", s.name)
}

fn verifier() -> RemoteVerifier {
    RemoteVerifier::from_pem(&std::fs::read(root().join("certs-example/chain.pem")).unwrap())
        .unwrap()
}

async fn verify(
    s: &Svc,
    r: &HashRequest,
    serial: &str,
    v: &SignatureValue,
    padding: RsaPadding,
) -> Result<(), RemoteError> {
    let cert = s.signer.certificate(&r.signer).await.unwrap();
    let pin = SignerPin::serial(serial);
    verifier()
        .verify(
            v,
            &cert,
            &Expected {
                official: &r.signer.0,
                pin: &pin,
                digest: &r.digest,
                algorithm: r.algorithm,
                padding,
                signed_at: gateway::connectors::officials::now_s(),
            },
        )
        .map(|_| ())
}

fn signed(st: SignStatus, who: &str) -> SignatureValue {
    match st {
        SignStatus::Signed(v) => v,
        other => panic!("{who}: expected a signature, got {other:?}"),
    }
}

/// Every service: the certificate, a submit, polls, the signature verifies over exactly our
/// digest; only a digest was sent (the document's bytes never appear in any body); the phone
/// got the request once.
#[tokio::test]
async fn each_service_signs_a_digest_that_verifies() {
    let doc = b"QUYET DINH ... the result document, which never leaves the gateway".repeat(40);
    for (s, _sb) in all("").await {
        for (official, serial) in [("official-rsa", "5000"), ("official-ec", "5001")] {
            let r = req(
                &format!("{}-{official}", s.name),
                official,
                DigestAlgorithm::Sha256,
                &doc,
            );
            let cert = s.signer.certificate(&r.signer).await.unwrap();
            assert_eq!(cert.serial(), serial);
            let v = signed(run(&s, &r).await.unwrap(), s.name);
            verify(&s, &r, serial, &v, RsaPadding::Pkcs1)
                .await
                .unwrap_or_else(|e| panic!("{} {official}: {e}", s.name));
        }
        let rec = (s.records)();
        assert_eq!(rec.pushes.len(), 2, "{}: one push per request", s.name);
        let needle = hex::encode(&doc[..32]);
        for b in &rec.received {
            let text = b.body.to_string();
            assert!(
                !text.contains(&needle),
                "{}: document bytes sent to {}",
                s.name,
                b.path
            );
            assert!(
                b.bytes < 2048,
                "{}: {} bytes to {}",
                s.name,
                b.bytes,
                b.path
            );
        }
    }
}

/// CSC in synchronous mode with a P-384 official and SHA-384; RSA-PSS where configured.
#[tokio::test]
async fn csc_synchronous_p384_and_pss() {
    let (s, _sb) = csc("operation_mode = \"sync\"\ndigests = [\"sha256\", \"sha384\"]\n").await;
    let r = req("sync-1", "official-ec384", DigestAlgorithm::Sha384, b"doc");
    let v = match s.signer.submit(&r).await.unwrap() {
        Submitted::Signed(v) => v,
        other => panic!("sync mode answers at once: {other:?}"),
    };
    verify(&s, &r, "5002", &v, RsaPadding::Pkcs1).await.unwrap();
    let (s, _sb) = csc("rsa_padding = \"pss\"\n").await;
    let r = req("pss-1", "official-rsa", DigestAlgorithm::Sha256, b"doc");
    let v = signed(run(&s, &r).await.unwrap(), "csc pss");
    verify(&s, &r, "5000", &v, RsaPadding::Pss).await.unwrap();
    assert_eq!(
        verify(&s, &r, "5000", &v, RsaPadding::Pkcs1)
            .await
            .unwrap_err(),
        RemoteError::BadSignature,
        "a PSS signature is not a PKCS#1 v1.5 one"
    );
}

/// The official who refuses, the one who never answers.
#[tokio::test]
async fn rejection_and_expiry() {
    for (s, _sb) in all("").await {
        let r = req(
            &format!("{}-rej", s.name),
            "official-rejects",
            DigestAlgorithm::Sha256,
            b"d",
        );
        assert!(
            matches!(run(&s, &r).await.unwrap(), SignStatus::Rejected(_)),
            "{}",
            s.name
        );
        let r = req(
            &format!("{}-away", s.name),
            "official-away",
            DigestAlgorithm::Sha256,
            b"d",
        );
        assert!(
            matches!(run(&s, &r).await.unwrap(), SignStatus::Expired),
            "{}",
            s.name
        );
    }
    let (s, _sb) = csc("operation_mode = \"sync\"\n").await;
    let r = req(
        "sync-rej",
        "official-rejects",
        DigestAlgorithm::Sha256,
        b"d",
    );
    assert!(matches!(
        s.signer.submit(&r).await.unwrap(),
        Submitted::Rejected(_)
    ));
}

/// Faults: a damaged signature, a signature over another digest, an expired certificate,
/// someone else's certificate, a 5xx before anything happened.
#[tokio::test]
async fn every_fault_gets_its_reason() {
    for (s, _sb) in all("").await {
        let r = req(
            &format!("{}-wrong", s.name),
            "official-rsa",
            DigestAlgorithm::Sha256,
            b"d",
        );
        (s.faults)(SignFaults {
            wrong_signature: true,
            ..Default::default()
        });
        let v = signed(run(&s, &r).await.unwrap(), s.name);
        assert_eq!(
            verify(&s, &r, "5000", &v, RsaPadding::Pkcs1)
                .await
                .unwrap_err(),
            RemoteError::BadSignature,
            "{}",
            s.name
        );
        (s.faults)(SignFaults {
            other_digest: true,
            ..Default::default()
        });
        let r = req(
            &format!("{}-other", s.name),
            "official-rsa",
            DigestAlgorithm::Sha256,
            b"d",
        );
        let v = signed(run(&s, &r).await.unwrap(), s.name);
        let e = verify(&s, &r, "5000", &v, RsaPadding::Pkcs1)
            .await
            .unwrap_err();
        assert_eq!(e, RemoteError::WrongDigest, "{}", s.name);
        assert!(e.to_string().contains("another digest"));
        (s.faults)(SignFaults {
            expired_certificate: true,
            ..Default::default()
        });
        let e = s
            .signer
            .certificate(&SignerId("official-expired".into()))
            .await
            .unwrap_err();
        assert!(
            matches!(e, SignerError::Certificate(RemoteError::Expired { .. })),
            "{}: {e}",
            s.name
        );
        assert!(!e.is_retryable());
        (s.faults)(SignFaults {
            other_certificate: true,
            ..Default::default()
        });
        let e = s
            .signer
            .certificate(&SignerId("official-rsa".into()))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                SignerError::Certificate(RemoteError::NotThisSigner { .. })
            ),
            "{}: {e}",
            s.name
        );
        assert!(e.to_string().contains("5003"), "{e}");
        (s.faults)(SignFaults {
            fail_before: 1,
            ..Default::default()
        });
        let e = s
            .signer
            .certificate(&SignerId("official-ec".into()))
            .await
            .unwrap_err();
        assert!(e.is_retryable(), "{}: a 503 is retried: {e}", s.name);
        (s.faults)(SignFaults::default());
    }
}

/// Bad input is refused before anything is sent: an unknown official, a digest algorithm the
/// section does not allow, one the official's key cannot use, an empty or short digest.
#[tokio::test]
async fn bad_input_is_refused_before_sending() {
    for (s, _sb) in all("digests = [\"sha256\", \"sha384\"]\n").await {
        let before = (s.records)().received.len();
        let e = s
            .signer
            .submit(&req("u", "nobody", DigestAlgorithm::Sha256, b"d"))
            .await
            .unwrap_err();
        assert!(matches!(e, SignerError::UnknownSigner { .. }), "{e}");
        assert!(e.to_string().contains("nobody"));
        let e = s
            .signer
            .submit(&req("x", "official-rsa", DigestAlgorithm::Sha512, b"d"))
            .await
            .unwrap_err();
        assert!(
            matches!(e, SignerError::Input(ref m) if m.contains("SHA-512")),
            "{e}"
        );
        let mut empty = req("e", "official-rsa", DigestAlgorithm::Sha256, b"d");
        empty.digest.clear();
        assert!(matches!(
            s.signer.submit(&empty).await.unwrap_err(),
            SignerError::Input(_)
        ));
        let mut short = req("s", "official-rsa", DigestAlgorithm::Sha256, b"d");
        short.digest.truncate(20);
        let e = s.signer.submit(&short).await.unwrap_err();
        assert!(e.to_string().contains("20 bytes"), "{e}");
        assert_eq!(
            (s.records)().received.len(),
            before,
            "{}: nothing sent",
            s.name
        );
        // A P-384 key and SHA-256: refused once the certificate is known, before any signing call.
        let e = s
            .signer
            .submit(&req("k", "official-ec384", DigestAlgorithm::Sha256, b"d"))
            .await
            .unwrap_err();
        assert!(
            matches!(e, SignerError::Input(ref m) if m.contains("P-384")),
            "{}: {e}",
            s.name
        );
        assert!(
            (s.records)().pushes.is_empty(),
            "{}: nothing reached a phone",
            s.name
        );
        assert!(!e.is_retryable());
    }
}

/// The same request id submitted twice reaches the phone once.
#[tokio::test]
async fn one_request_id_reaches_the_phone_once() {
    for (s, _sb) in all("").await {
        let r = req(
            &format!("{}-once", s.name),
            "official-rsa",
            DigestAlgorithm::Sha256,
            b"d",
        );
        let a = s.signer.submit(&r).await.unwrap();
        let b = s.signer.submit(&r).await.unwrap();
        match (a, b) {
            (Submitted::Waiting(x), Submitted::Waiting(y)) => assert_eq!(x, y),
            other => panic!("{other:?}"),
        }
        assert_eq!((s.records)().pushes.len(), 1, "{}", s.name);
    }
}

/// SmartCA: the transaction id is ours. A sign call lost before it arrived (503) is found
/// unknown by a status query and sent once more; one whose answer was lost after it arrived
/// (500 after the effect) is found waiting and not sent again.
#[tokio::test]
async fn smartca_resends_only_what_never_arrived() {
    let (s, sb) = smartca("").await;
    s.signer
        .certificate(&SignerId("official-rsa".into()))
        .await
        .unwrap();
    let r = req("lost-before", "official-rsa", DigestAlgorithm::Sha256, b"d");
    sb.set_faults(SignFaults {
        fail_before: 1,
        ..Default::default()
    });
    let tx = match s.signer.submit(&r).await.unwrap() {
        Submitted::Waiting(tx) => tx,
        other => panic!("{other:?}"),
    };
    assert_eq!(Some(tx.clone()), s.signer.transaction_for(&r));
    let rec = sb.records();
    assert_eq!(
        rec.calls("/v1/signatures/sign"),
        2,
        "sent again after the status said not found"
    );
    assert_eq!(rec.pushes_of(&tx.0), 1);
    let r = req("lost-after", "official-rsa", DigestAlgorithm::Sha256, b"d");
    sb.set_faults(SignFaults {
        fail_after: 1,
        ..Default::default()
    });
    let tx = match s.signer.submit(&r).await.unwrap() {
        Submitted::Waiting(tx) => tx,
        other => panic!("{other:?}"),
    };
    let rec = sb.records();
    assert_eq!(
        rec.calls("/v1/signatures/sign"),
        3,
        "not sent again: the phone has it"
    );
    assert_eq!(rec.pushes_of(&tx.0), 1);
    assert!(matches!(run(&s, &r).await.unwrap(), SignStatus::Signed(_)));
    // Both lost: the request stays in doubt, and is not sent blindly.
    let r = req("lost-both", "official-rsa", DigestAlgorithm::Sha256, b"d");
    sb.set_faults(SignFaults {
        fail_after: 2,
        ..Default::default()
    });
    let e = s.signer.submit(&r).await.unwrap_err();
    assert!(matches!(e, SignerError::InDoubt { .. }), "{e}");
    assert!(!e.is_retryable());
}

/// MySign: N concurrent submits of one official make one login; an expired token costs exactly
/// one re-login; a lost signHash answer is in doubt, not re-sent.
#[tokio::test]
async fn mysign_login_is_shared_and_renewed_once() {
    let sb = MySign::start(
        0,
        MySignConfig {
            confirm_after: CONFIRM,
            lifetime: LIFETIME,
            ..MySignConfig::default()
        },
    )
    .await
    .unwrap();
    let signer = Arc::new(
        MySignSigner::new("mysign", &section("mysign", &sb.base_url(), ""), &root()).unwrap(),
    );
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = signer.clone();
        tasks.push(tokio::spawn(async move {
            s.submit(&req(
                &format!("c{i}"),
                "official-rsa",
                DigestAlgorithm::Sha256,
                b"d",
            ))
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(sb.records().logins, 1, "one login for 8 concurrent submits");
    assert_eq!(sb.records().pushes.len(), 8);
    sb.expire_tokens();
    let mut tasks = Vec::new();
    for i in 0..4 {
        let s = signer.clone();
        tasks.push(tokio::spawn(async move {
            s.submit(&req(
                &format!("d{i}"),
                "official-rsa",
                DigestAlgorithm::Sha256,
                b"d",
            ))
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        sb.records().logins,
        2,
        "exactly one re-login after the expiry"
    );
    assert_eq!(signer.logins(), 2);
    sb.set_faults(SignFaults {
        fail_after: 1,
        ..Default::default()
    });
    let e = signer
        .submit(&req("lost", "official-rsa", DigestAlgorithm::Sha256, b"d"))
        .await
        .unwrap_err();
    assert!(matches!(e, SignerError::InDoubt { .. }), "{e}");
    assert!(!e.is_retryable());
}

/// A wrong client secret is a login failure naming what to check, not retried.
#[tokio::test]
async fn wrong_credentials_are_permanent_and_named() {
    let sb = MySign::start(0, MySignConfig::default()).await.unwrap();
    let dir = secrets();
    std::fs::write(dir.join("wrong"), "not-the-secret").unwrap();
    let mut sec = section("mysign", &sb.base_url(), "");
    sec.client_secret = Some(
        toml::from_str::<toml::Value>(&format!(
            "v = {{ file = \"{}\" }}",
            dir.join("wrong").display()
        ))
        .unwrap()["v"]
            .clone()
            .try_into()
            .unwrap(),
    );
    let s = build("mysign", &sec, Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
    let e = s
        .certificate(&SignerId("official-rsa".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            SignerError::Login {
                retryable: false,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("client_secret"), "{e}");
    let (s, sb) = csc("").await;
    s.signer
        .certificate(&SignerId("official-rsa".into()))
        .await
        .unwrap();
    sb.expire_tokens();
    s.signer
        .certificate(&SignerId("official-rsa".into()))
        .await
        .unwrap();
    assert_eq!(
        sb.records().logins,
        2,
        "CSC: one new token after the old one was refused"
    );
}

/// Interop: what a service returned (and the gateway accepted) verifies with the OpenSSL CLI
/// over the digest and the official's certificate; a tampered copy is refused by both.
#[tokio::test]
async fn openssl_cli_agrees() {
    let (s, _sb) = smartca("").await;
    let r = req("cli-1", "official-rsa", DigestAlgorithm::Sha256, b"interop");
    let v = signed(run(&s, &r).await.unwrap(), "smartca");
    verify(&s, &r, "5000", &v, RsaPadding::Pkcs1).await.unwrap();
    let dir = std::env::temp_dir().join(format!("gw-signers-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("digest.bin"), &r.digest).unwrap();
    std::fs::write(dir.join("sig.bin"), &v.bytes).unwrap();
    let mut bad = v.bytes.clone();
    bad[10] ^= 1;
    std::fs::write(dir.join("bad.bin"), &bad).unwrap();
    let cli = |sig: &str| {
        std::process::Command::new("openssl")
            .current_dir(&dir)
            .args(["pkeyutl", "-verify", "-certin", "-inkey"])
            .arg(root().join("certs-example/officials/official-rsa.pem"))
            .args([
                "-in",
                "digest.bin",
                "-sigfile",
                sig,
                "-pkeyopt",
                "digest:sha256",
            ])
            .output()
            .expect("openssl CLI")
    };
    let ok = cli("sig.bin");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(
        !cli("bad.bin").status.success(),
        "OpenSSL refuses the tampered copy"
    );
    let tampered = SignatureValue { bytes: bad, ..v };
    assert!(verify(&s, &r, "5000", &tampered, RsaPadding::Pkcs1)
        .await
        .is_err());
}

/// SmartCA: a sign call whose answer stalls past the timeout is resolved by a status query
/// (the phone has it: not sent again); the timeout itself is retryable and "may have arrived".
#[tokio::test]
async fn smartca_stalled_answer_is_resolved_by_asking() {
    let (s, sb) = smartca("timeout = \"400ms\"\n").await;
    s.signer
        .certificate(&SignerId("official-rsa".into()))
        .await
        .unwrap();
    sb.set_faults(SignFaults {
        stall: 1,
        stall_ms: 1000,
        ..Default::default()
    });
    let r = req("stalled", "official-rsa", DigestAlgorithm::Sha256, b"d");
    let tx = match s.signer.submit(&r).await.unwrap() {
        Submitted::Waiting(tx) => tx,
        other => panic!("{other:?}"),
    };
    let rec = sb.records();
    assert_eq!(rec.calls("/v1/signatures/sign"), 1, "not sent again");
    assert_eq!(rec.pushes_of(&tx.0), 1);
    assert!(matches!(run(&s, &r).await.unwrap(), SignStatus::Signed(_)));
}
