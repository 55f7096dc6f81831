//! `gateway evidence export DOSSIER`: a self-contained directory an auditor checks with OpenSSL
//! alone.
//!
//! ```text
//! README.md                      what it is and the commands that verify it (a `sh` block)
//! records.json                   the dossier's records (metadata)
//! chains/CHAIN/SEQ.txt           the chain segment: every record's canonical text, from the
//!                                dossier's first record in CHAIN to the first time-stamped head
//!                                at or after its last one (the current head if none is yet)
//! chains/CHAIN/SEQ.tsr           the RFC 3161 token over that head
//! bodies/ID.request|.response    bodies kept in full mode, decrypted
//! certs/tsa-ca.pem               the authority's trust anchors (+ tsa-intermediates.pem)
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use gw_store::evidence::canonical;
use gw_store::{Store, StoredEvidence};

use super::seal::Key;

/// What was written.
#[derive(Debug)]
pub struct Exported {
    pub dir: PathBuf,
    pub records: usize,
    pub chain_files: usize,
    pub tokens: usize,
    /// Chains whose segment ends at a head with no time-stamp yet.
    pub unstamped: Vec<String>,
}

fn seq_name(seq: i64) -> String {
    format!("{seq:012}")
}

/// Write the bundle of `dossier` into `out` (created; must not exist or be empty).
pub async fn export(
    store: &dyn Store,
    dossier: &str,
    out: &Path,
    key: Option<&Key>,
    tsa_certs: &[(String, Vec<u8>)],
) -> Result<Exported, String> {
    let records = store
        .evidence_by_dossier(dossier)
        .await
        .map_err(|e| e.to_string())?;
    if records.is_empty() {
        return Err(format!("no evidence records for dossier {dossier}"));
    }
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(|e| e.to_string())?
            .next()
            .is_some()
    {
        return Err(format!("{} exists and is not empty", out.display()));
    }
    let mkdir = |p: &Path| {
        std::fs::create_dir_all(p).map_err(|e| format!("cannot create {}: {e}", p.display()))
    };
    let write = |p: &Path, data: &[u8]| {
        std::fs::write(p, data).map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    mkdir(out)?;
    let mut readme = String::new();
    let mut commands = String::new();
    let mut done = Exported {
        dir: out.to_path_buf(),
        records: records.len(),
        chain_files: 0,
        tokens: 0,
        unstamped: vec![],
    };

    // Per chain: the segment from the dossier's first record to a time-stamped head.
    let mut chains: std::collections::BTreeMap<&str, (i64, i64)> = Default::default();
    for r in &records {
        let e = chains.entry(&r.record.chain).or_insert((r.seq, r.seq));
        e.0 = e.0.min(r.seq);
        e.1 = e.1.max(r.seq);
    }
    for (chain, (first, last)) in chains {
        let dir = out.join("chains").join(chain);
        mkdir(&dir)?;
        let stamps = store.timestamps(chain).await.map_err(|e| e.to_string())?;
        let stamp = stamps.into_iter().find(|t| t.seq >= last);
        let end = match &stamp {
            Some(t) => t.seq,
            None => {
                done.unstamped.push(chain.to_string());
                i64::MAX
            }
        };
        let mut segment: Vec<StoredEvidence> = Vec::new();
        let mut after = first - 1;
        loop {
            let page = store
                .evidence_chain(chain, after, 1_000)
                .await
                .map_err(|e| e.to_string())?;
            let Some(l) = page.last() else { break };
            after = l.seq;
            segment.extend(page.into_iter().filter(|r| r.seq <= end));
            if after >= end {
                break;
            }
        }
        let _ = writeln!(
            commands,
            "# Chain {chain}: each record's SHA-256 is the next record's prev line"
        );
        for (i, r) in segment.iter().enumerate() {
            let name = seq_name(r.seq);
            write(
                &dir.join(format!("{name}.txt")),
                canonical(&r.record, r.seq, &r.prev_hash).as_bytes(),
            )?;
            done.chain_files += 1;
            if let Some(next) = segment.get(i + 1) {
                let _ = writeln!(
                    commands,
                    "test \"$(openssl dgst -sha256 -r chains/{chain}/{name}.txt | cut -c1-64)\" = \"$(sed -n 's/^prev: //p' chains/{chain}/{}.txt)\"",
                    seq_name(next.seq)
                );
            }
        }
        if let (Some(t), Some(head)) = (&stamp, segment.last()) {
            let name = seq_name(head.seq);
            write(&dir.join(format!("{name}.tsr")), &t.token)?;
            done.tokens += 1;
            let untrusted = if tsa_certs.len() > 1 {
                " -untrusted certs/tsa-intermediates.pem"
            } else {
                ""
            };
            let _ = writeln!(
                commands,
                "# Chain {chain}: the head is time-stamped by the authority\n\
                 openssl ts -verify -token_in -in chains/{chain}/{name}.tsr -data chains/{chain}/{name}.txt -CAfile certs/tsa-ca.pem{untrusted}"
            );
        }
    }

    // Bodies, decrypted, each checked against the digest its record commits to.
    let bodies = out.join("bodies");
    for r in &records {
        let rec = &r.record;
        let file = format!("chains/{}/{}.txt", rec.chain, seq_name(r.seq));
        for (sealed, suffix, field) in [
            (&rec.request_body, "request", "request_sha256"),
            (&rec.response_body, "response", "response_sha256"),
        ] {
            let Some(sealed) = sealed else { continue };
            let Some(key) = key else {
                return Err(
                    "full-mode bodies are kept but evidence.body_key is not configured".into(),
                );
            };
            let plain = key
                .open(sealed, rec.id.as_bytes())
                .map_err(|e| format!("record {}: {e}", rec.id))?;
            mkdir(&bodies)?;
            write(&bodies.join(format!("{}.{suffix}", rec.id)), &plain)?;
            let _ = writeln!(
                commands,
                "test \"$(openssl dgst -sha256 -r bodies/{}.{suffix} | cut -c1-64)\" = \"$(sed -n 's/^{field}: //p' {file})\"",
                rec.id
            );
        }
    }

    let certs = out.join("certs");
    mkdir(&certs)?;
    for (name, pem) in tsa_certs {
        write(&certs.join(name), pem)?;
    }
    let meta: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).expect("records serialize");
            if let Some(o) = v.as_object_mut() {
                o.remove("request_body");
                o.remove("response_body");
            }
            v
        })
        .collect();
    write(
        &out.join("records.json"),
        serde_json::to_string_pretty(&meta)
            .expect("JSON")
            .as_bytes(),
    )?;

    let _ = writeln!(
        readme,
        "# Evidence of dossier {dossier}\n\n\
         Exported by the integration gateway. Every exchange with an external party is a record;\n\
         each record is a text file under `chains/CHAIN/` whose SHA-256 is the `prev` line of the\n\
         next record, up to a chain head time-stamped by an RFC 3161 authority (`.tsr`).\n\
         The dossier's own records are listed in `records.json` (by chain and seq); bodies kept in\n\
         full mode are under `bodies/` and match the `request_sha256` / `response_sha256` lines.\n\n\
         ## Verify with OpenSSL\n\n\
         Run from this directory; every command must succeed (exit status 0):\n\n\
         ```sh\n{commands}```\n"
    );
    if !done.unstamped.is_empty() {
        let _ = writeln!(
            readme,
            "Not yet time-stamped (export again after the next time-stamp): chain(s) {}.\n",
            done.unstamped.join(", ")
        );
    }
    write(&out.join("README.md"), readme.as_bytes())?;
    Ok(done)
}

/// The `sh` commands of a bundle's README (what the test runs).
pub fn readme_commands(readme: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in readme.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside && line.trim() == "```sh";
            continue;
        }
        if inside && !line.trim().is_empty() && !line.trim_start().starts_with('#') {
            out.push(line.to_string());
        }
    }
    out
}
