//! What the gateway pushes to an agency verifies with independent implementations: PyPI
//! `standardwebhooks` (Standard Webhooks, during a secret rotation) and PyPI
//! `http-message-signatures` (RFC 9421, ECDSA P-256), through the receivers' example
//! `docs/examples/verify_agency_push.py`; a tampered body is refused by both.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use base64::Engine as _;
use gateway::agencies::Subscription;
use gateway::connectors::agency::{AgencyConnector, PushSettings, SubscriptionState};
use gateway::model::envelope::Envelope;

const SECRET_NEW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SECRET_OLD: &str = "whsec_c2Vjb25kLXNlY3JldC1mb3ItdGhlLXJvdGF0aW9u";

/// Whether python3 has both libraries. In CI their absence fails loudly (`.ci/run` installs
/// them); elsewhere the test is skipped with the reason.
fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args([
            "-c",
            "import standardwebhooks, http_message_signatures, requests",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let msg = "agency_interop: needs python3 with standardwebhooks, http-message-signatures and requests (pip install standardwebhooks http-message-signatures requests)";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{msg}: .ci/run installs them");
        }
        eprintln!("SKIPPED {msg}");
    }
    ok
}

fn run_verifier(dir: &Path, name: &str, req: &serde_json::Value) -> (bool, String) {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec(req).unwrap()).unwrap();
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/verify_agency_push.py"))
        .arg(&path)
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn pushes_verify_with_standardwebhooks_and_http_message_signatures() {
    if !python_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
    let pkey =
        openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap()).unwrap();
    let key_path = dir.path().join("province.pem");
    std::fs::write(&key_path, pkey.private_key_to_pem_pkcs8().unwrap()).unwrap();
    let public_pem = String::from_utf8(pkey.public_key_to_pem().unwrap()).unwrap();
    std::env::set_var("GW_TI_NEW", SECRET_NEW);
    std::env::set_var("GW_TI_OLD", SECRET_OLD);
    let section: gateway::config::SubscriptionSection = toml::from_str(&format!(
        r#"
agency = "Trung tâm IOC tỉnh"
delivery = "push"
fields = ["code", "status", "procedure"]
personal = ["citizen_id"]
legal_basis = "Nghị định 107/2021/NĐ-CP, Điều 19"
[push]
url = "https://ioc.example.vn/hooks/gateway?src=province"
secret = [{{ env = "GW_TI_NEW" }}, {{ env = "GW_TI_OLD" }}]
rfc9421 = {{ key = {{ file = "{}" }}, keyid = "province-2026" }}
"#,
        key_path.display()
    ))
    .unwrap();
    let sub = Subscription::from_section("ioc", &section).unwrap();
    let settings = PushSettings::resolve(&sub, Path::new(".")).unwrap();
    let c = AgencyConnector::new(
        Arc::new(sub),
        settings,
        Arc::new(SubscriptionState::new(
            "ioc",
            Arc::new(gw_store::sqlite::SqliteStore::open(dir.path().join("store.db")).unwrap()),
            dir.path(),
        )),
    );
    let mut env = Envelope::new(
        "dossier.upserted",
        "H12.01-260105-0001",
        "onestop",
        serde_json::json!({"code": "H12.01-260105-0001", "version": 4, "status": "received",
            "procedure_code": "1.001234", "summary": "không được gửi",
            "owner": {"name": "Nguyễn Văn An", "id_number": "001203004567", "phone": "0912345678"}}),
    );
    env.version = Some(4);
    let now = gateway::model::time::now_ms() / 1000;
    let req = c.request(&env, now).unwrap().unwrap();
    let as_json = |body: &[u8], secret: &str, public: Option<&str>| {
        serde_json::json!({
            "url": req.url,
            "headers": req.headers,
            "body_b64": base64::engine::general_purpose::STANDARD.encode(body),
            "secret": secret,
            "public_key_pem": public,
        })
    };
    // Each secret of the rotation verifies alone; RFC 9421 with the public key.
    for (name, secret) in [("new.json", SECRET_NEW), ("old.json", SECRET_OLD)] {
        let (ok, text) = run_verifier(
            dir.path(),
            name,
            &as_json(&req.body, secret, Some(&public_pem)),
        );
        assert!(ok, "{name}: {text}");
        assert!(
            text.contains("VERIFIED dossier.upserted H12.01-260105-0001 fields=['code', 'owner', 'procedure_code', 'status']"),
            "{text}"
        );
    }
    // A tampered body, a wrong secret, another public key: refused.
    let mut tampered = req.body.clone();
    let at = tampered.iter().position(|b| *b == b'4').unwrap();
    tampered[at] = b'5';
    let (ok, text) = run_verifier(dir.path(), "t1.json", &as_json(&tampered, SECRET_NEW, None));
    assert!(!ok && text.contains("REFUSED"), "{text}");
    let other = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([3u8; 32])
    );
    let (ok, text) = run_verifier(dir.path(), "t2.json", &as_json(&req.body, &other, None));
    assert!(!ok && text.contains("REFUSED"), "{text}");
    let stranger =
        openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap()).unwrap();
    let stranger_pem = String::from_utf8(stranger.public_key_to_pem().unwrap()).unwrap();
    let (ok, text) = run_verifier(
        dir.path(),
        "t3.json",
        &as_json(&req.body, SECRET_NEW, Some(&stranger_pem)),
    );
    assert!(!ok && text.contains("REFUSED"), "{text}");
}
