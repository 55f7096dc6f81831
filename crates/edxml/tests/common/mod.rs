//! Shared helpers of the edXML tests: the example PKI, the sample description, a temp dir,
//! and the "external tool present?" rule (skip with a printed reason; fail under CI=true).

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use gw_crypto::keys::{load_pem, SigningKey, TrustStore};
use gw_edxml::model::Envelope;
use gw_edxml::read::{read, InMemory, Received};
use gw_edxml::write::{AttachmentSource, Outgoing};

pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn example(name: &str) -> PathBuf {
    crate_dir().join("../../certs-example").join(name)
}

fn read_file(p: PathBuf) -> Vec<u8> {
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The example RSA or EC signer, its certificate followed by the intermediate.
pub fn key(name: &str) -> SigningKey {
    let mut cert = read_file(example(&format!("{name}.pem")));
    cert.extend(read_file(example("intermediate-ca.pem")));
    load_pem(
        name,
        &read_file(example(&format!("{name}.key"))),
        Some(&cert),
        None,
    )
    .unwrap()
}

/// Trust anchors: the example root only (the intermediate comes with the signature).
pub fn trust() -> TrustStore {
    TrustStore::from_pem(&read_file(example("root-ca.pem"))).unwrap()
}

pub fn sample(name: &str) -> Envelope {
    serde_json::from_slice(&read_file(crate_dir().join("samples").join(name))).unwrap()
}

pub fn sample_attachments() -> Vec<(String, Vec<u8>)> {
    vec![
        (
            "cong-van-1234.txt".into(),
            read_file(crate_dir().join("samples/attachments/cong-van-1234.txt")),
        ),
        (
            "phu-luc.bin".into(),
            read_file(crate_dir().join("samples/attachments/phu-luc.bin")),
        ),
    ]
}

/// Builds and signs `env` with `atts`; returns the envelope's bytes.
pub fn signed(env: &Envelope, atts: &[(String, Vec<u8>)], key: &SigningKey) -> Vec<u8> {
    let sources: Vec<(String, &dyn AttachmentSource)> = atts
        .iter()
        .map(|(id, b)| (id.clone(), b as &dyn AttachmentSource))
        .collect();
    let out = Outgoing::new(env.clone(), sources).unwrap();
    let mut buf = Vec::new();
    out.sign_to(key, &mut buf).unwrap();
    buf
}

/// Reads and verifies; returns what was received and the decoded attachments.
pub fn receive(bytes: &[u8]) -> Result<(Received, InMemory), gw_edxml::EdxmlError> {
    let mut sink = InMemory::default();
    let r = read(bytes, &mut sink)?.verify(&trust())?;
    Ok((r, sink))
}

/// Returns true when `probe` succeeds; otherwise skips (prints why) or panics under CI=true.
pub fn tool_available(what: &str, probe: &mut Command) -> bool {
    let ok = probe.output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{what} is required under CI=true but is not available");
        }
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {what} is not available (install it to run this interop test)"
        );
    }
    ok
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gw-edxml-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
