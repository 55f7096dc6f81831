//! Figures for the edXML codec (printed, never asserted):
//! - envelopes/s built + signed, and parsed + verified, with one 10 KiB and one 5 MiB
//!   attachment (RSA-2048 example key; in memory);
//! - peak RSS (VmHWM) of building + signing, and of parsing + verifying, an envelope with one
//!   50 MiB attachment, each in a child process of its own, file to file (the goal: under 3×
//!   the attachment's size).
//!
//! `cargo run --release -p gw-edxml --example bench`

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gw_crypto::keys::{load_pem, SigningKey, TrustStore};
use gw_edxml::model::{Envelope, ManifestEntry};
use gw_edxml::read::{read, Discard};
use gw_edxml::write::{AttachmentSource, Outgoing};

fn certs(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../certs-example")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn key() -> SigningKey {
    let mut chain = certs("sign-rsa.pem");
    chain.extend(certs("intermediate-ca.pem"));
    load_pem("bench", &certs("sign-rsa.key"), Some(&chain), None).unwrap()
}

fn trust() -> TrustStore {
    TrustStore::from_pem(&certs("root-ca.pem")).unwrap()
}

fn envelope() -> Envelope {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples/document.json");
    let mut env: Envelope = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    env.manifest = vec![ManifestEntry {
        content_id: "payload.bin".into(),
        content_type: "application/octet-stream".into(),
        description: Some("Tệp đính kèm".into()),
        attachment_name: "payload.bin".into(),
    }];
    env
}

fn payload(n: usize) -> Vec<u8> {
    // Not compressible, not random: a simple LCG.
    let mut x: u32 = 12345;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 16) as u8
        })
        .collect()
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn throughput(label: &str, size: usize, budget: Duration) {
    let key = key();
    let trust = trust();
    let data = payload(size);
    let src: &dyn AttachmentSource = &data;
    let out = Outgoing::new(envelope(), vec![("payload.bin".into(), src)]).unwrap();
    let mut bytes = Vec::new();
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < budget || n < 3 {
        bytes.clear();
        out.sign_to(&key, &mut bytes).unwrap();
        n += 1;
    }
    let build = n as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut m = 0u32;
    while start.elapsed() < budget || m < 3 {
        let r = read(bytes.as_slice(), &mut Discard)
            .unwrap()
            .verify(&trust)
            .unwrap();
        assert_eq!(r.attachments[0].size, size as u64);
        m += 1;
    }
    let parse = m as f64 / start.elapsed().as_secs_f64();
    println!(
        "{label:>8} attachment ({} envelope bytes): build+sign {build:8.1} envelopes/s ({:7.1} MiB/s), parse+verify {parse:8.1} envelopes/s ({:7.1} MiB/s)",
        bytes.len(),
        build * size as f64 / 1048576.0,
        parse * size as f64 / 1048576.0
    );
}

/// Child: builds + signs (or parses + verifies) file to file, prints VmHWM in KiB.
fn child(mode: &str, dir: &Path) {
    let base = vm_hwm_kib();
    match mode {
        "build" => {
            let src: PathBuf = dir.join("payload.bin");
            let out = Outgoing::new(
                envelope(),
                vec![("payload.bin".into(), &src as &dyn AttachmentSource)],
            )
            .unwrap();
            let mut w = BufWriter::new(std::fs::File::create(dir.join("big.edxml")).unwrap());
            out.sign_to(&key(), &mut w).unwrap();
            w.flush().unwrap();
        }
        "parse" => {
            let r = BufReader::with_capacity(
                256 * 1024,
                std::fs::File::open(dir.join("big.edxml")).unwrap(),
            );
            let got = read(r, &mut Discard).unwrap().verify(&trust()).unwrap();
            assert_eq!(got.attachments[0].size, 50 * 1024 * 1024);
        }
        _ => unreachable!(),
    }
    println!("{base} {}", vm_hwm_kib());
}

fn peak(mode: &str, dir: &Path) -> (u64, u64) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("child")
        .arg(mode)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8(out.stdout).unwrap();
    let mut it = s.split_whitespace().map(|v| v.parse::<u64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        child(&args[2], Path::new(&args[3]));
        return;
    }
    println!("edXML codec bench (one attachment per envelope, RSA-2048, exclusive C14N)");
    throughput("10 KiB", 10 * 1024, Duration::from_secs(3));
    throughput("5 MiB", 5 * 1024 * 1024, Duration::from_secs(5));
    let dir = std::env::temp_dir().join(format!("gw-edxml-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("payload.bin"), payload(50 * 1024 * 1024)).unwrap();
    let mib = |kib: u64| kib as f64 / 1024.0;
    for (mode, what) in [("build", "build+sign"), ("parse", "parse+verify")] {
        let (base, hwm) = peak(mode, &dir);
        println!(
            "50 MiB attachment, {what:>12}: peak RSS {:6.1} MiB = {:.2}x the attachment (process baseline {:.1} MiB)",
            mib(hwm),
            mib(hwm) / 50.0,
            mib(base)
        );
    }
    let size = std::fs::metadata(dir.join("big.edxml"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!("  (envelope file {:.1} MiB)", size as f64 / 1048576.0);
    let _ = std::fs::remove_dir_all(&dir);
}
