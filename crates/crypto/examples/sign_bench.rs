//! Signing throughput: XML-DSig and JWS on a ~2 KiB dossier beside the raw OpenSSL sign rate of the
//! same key in the same run.
//!
//! Run: `cargo run --release -p gw-crypto --example sign_bench`
//! The raw rate is `openssl::sign::Signer` over a 32-byte input with the same key (RSA-2048 PKCS#1 v1.5
//! or ECDSA P-256, SHA-256).
//! Goal: XML-DSig >= 0.8 of the raw RSA sign rate (parsing and C14N must stay cheap next to RSA).

use std::time::{Duration, Instant};

use gw_crypto::jws::{sign_compact, JwsOptions};
use gw_crypto::keys::{load_pem, SigningKey};
use gw_crypto::xml::c14n::Algorithm;
use gw_crypto::xmldsig::{sign_enveloped, Reference, SignOptions};
use openssl::hash::MessageDigest;
use openssl::sign::Signer;

/// Each figure is measured in ROUNDS slices of SLICE, interleaved with the raw baseline, so load from
/// other processes on the machine hits both sides alike.
const ROUNDS: u32 = 10;
const SLICE: Duration = Duration::from_millis(150);

fn example(name: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../certs-example/");
    std::fs::read(format!("{path}{name}")).expect("certs-example present")
}

fn key(name: &str) -> SigningKey {
    load_pem(
        name,
        &example(&format!("{name}.key")),
        Some(&example(&format!("{name}.pem"))),
        None,
    )
    .expect("example key")
}

fn dossier() -> String {
    let mut items = String::new();
    let mut i = 0;
    while items.len() < 1700 {
        items.push_str(&format!(
            "    <GiayTo Id=\"gt{i}\"><Ten>Bản sao giấy tờ số {i}</Ten><SoTrang>3</SoTrang><TepDinhKem>https://dvc.example.gov.vn/f/{i}.pdf</TepDinhKem></GiayTo>\n"
        ));
        i += 1;
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<HoSo xmlns=\"urn:vn:dvc:hoso\">\n  <MaHoSo>000.00.00.H00-260101-0001</MaHoSo>\n  <NoiDung Id=\"nd1\">\n{items}  </NoiDung>\n</HoSo>\n"
    )
}

/// Runs `f` for about `SLICE`; returns (operations, elapsed seconds).
fn slice(f: &mut dyn FnMut()) -> (u64, f64) {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < SLICE {
        f();
        n += 1;
    }
    (n, start.elapsed().as_secs_f64())
}

/// (operations/s of `op`, operations/s of `raw`), measured interleaved.
fn compare(raw: &mut dyn FnMut(), op: &mut dyn FnMut()) -> (f64, f64) {
    for _ in 0..3 {
        raw();
        op();
    }
    let (mut n_raw, mut t_raw, mut n_op, mut t_op) = (0, 0.0, 0, 0.0);
    for _ in 0..ROUNDS {
        let (n, t) = slice(raw);
        n_raw += n;
        t_raw += t;
        let (n, t) = slice(op);
        n_op += n;
        t_op += t;
    }
    (n_op as f64 / t_op, n_raw as f64 / t_raw)
}

/// The raw OpenSSL operation: sign a 32-byte digest-sized input with the same key.
fn raw_sign(k: &SigningKey) -> impl FnMut() + '_ {
    let digest = [0x5au8; 32];
    move || {
        let mut s = Signer::new(MessageDigest::sha256(), k.private_key()).unwrap();
        s.update(&digest).unwrap();
        std::hint::black_box(s.sign_to_vec().unwrap());
    }
}

fn main() {
    let doc = dossier();
    println!(
        "payload: {} bytes; each row: {ROUNDS} x {SLICE:?} interleaved with the raw OpenSSL sign of the same key",
        doc.len()
    );
    println!(
        "{:<40} {:>10} {:>10} {:>7}",
        "operation", "ops/s", "raw ops/s", "ratio"
    );
    for name in ["sign-rsa", "sign-ec"] {
        let k = key(name);
        let mut raw = raw_sign(&k);
        let mut row = |label: String, op: &mut dyn FnMut()| {
            let (r, base) = compare(&mut raw, op);
            println!("{label:<40} {r:>10.0} {base:>10.0} {:>7.2}", r / base);
        };
        for (label, c14n, reference) in [
            (
                "XML-DSig exc-c14n URI=\"\"",
                Algorithm::Exclusive,
                Reference::WholeDocument,
            ),
            (
                "XML-DSig exc-c14n URI=\"#nd1\"",
                Algorithm::Exclusive,
                Reference::Id("nd1".into()),
            ),
            (
                "XML-DSig inc-c14n URI=\"\"",
                Algorithm::Inclusive,
                Reference::WholeDocument,
            ),
        ] {
            let opts = SignOptions {
                c14n,
                reference,
                ..SignOptions::default()
            };
            row(format!("{label} ({name})"), &mut || {
                std::hint::black_box(sign_enveloped(&doc, &k, &opts).unwrap());
            });
        }
        row(format!("JWS compact ({name})"), &mut || {
            std::hint::black_box(sign_compact(doc.as_bytes(), &k, &JwsOptions::default()).unwrap());
        });
    }
}
