//! `gateway evidence export DOSSIER`: a self-contained directory an auditor checks with OpenSSL
//! alone.
//!
//! ```text
//! README.md                      what it is and the commands that verify it (a `sh` block)
//! records.json                   the dossier's records (metadata)
//! proof.json                     per exchange: its link, leaf and Merkle path ([`super::proof`])
//! verify_evidence.py             the offline checker of proof.json (hashlib only)
//! chains/CHAIN/SEQ.txt           the chain segment: every link's text (a batch link's, or a
//!                                per-event record's), from the dossier's first link in CHAIN to
//!                                the first time-stamped head at or after its last one (the
//!                                current head if none is yet)
//! leaves/CHAIN/SEQ-LEAF.txt      the leaf text of each of the dossier's exchanges in a batch link
//! chains/CHAIN/SEQ.tsr           the RFC 3161 token over that head
//! bodies/ID.request|.response    bodies kept in full mode, decrypted
//! certs/tsa-ca.pem               the authority's trust anchors (+ tsa-intermediates.pem)
//! ```
//!
//! After retention removed a chain's oldest records, a dossier's records may be in the archive
//! (`evidence.archive_dir`): with `archive`, they are taken from there, and so is the chain
//! segment up to the anchor (the last archived record, to which the first live record commits)
//! and the archived time-stamps; the bundle verifies the same way. Without `archive`, the bundle
//! and the command say which chains had records archived, since the dossier may have some there.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use gw_store::evidence::{leaf_text, link_text};
use gw_store::evidence_merkle::{leaf_hash, path, Hash};
use gw_store::{Store, StoredEvidence};

use super::proof::{ChainProof, ExchangeProof, LeafProof, Proof, PROOF_FORMAT};

use super::archive::ArchiveError;
use super::seal::{Key, SealError};

/// Why a bundle could not be written, by step; each names the dossier, chain, record or file.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The live chains, records or time-stamps cannot be read.
    #[error("{0}")]
    Store(#[from] gw_store::StoreError),
    /// The retention archive cannot be read.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The dossier has no record (`hint`: where else its records may be).
    #[error("no evidence records for dossier {dossier}{hint}")]
    NoRecords { dossier: String, hint: String },
    /// The output directory exists and cannot be listed.
    #[error("{0}")]
    ReadOut(std::io::Error),
    /// The output directory exists and holds files.
    #[error("{} exists and is not empty", dir.display())]
    OutNotEmpty { dir: PathBuf },
    /// A directory of the bundle cannot be created.
    #[error("cannot create {}: {error}", path.display())]
    CreateDir {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A file of the bundle cannot be written.
    #[error("cannot write {}: {error}", path.display())]
    WriteFile {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The dossier's records in a chain start in the archived part, and no archive was given.
    #[error("archived records without an archive")]
    NoArchive,
    /// A record of the chain segment is missing from the archive or the live store.
    #[error(
        "chain {chain}: record seq {seq} is missing from {place}; \
         `gateway evidence verify --archive DIR` shows what is wrong"
    )]
    SegmentGap {
        chain: String,
        seq: i64,
        place: &'static str,
    },
    /// A batch link of the segment does not have all its leaves (no Merkle path can be made).
    #[error(
        "chain {chain}: batch link seq {seq} has {found} of its {leaves} leaves; \
         `gateway evidence verify` shows what is wrong"
    )]
    BatchIncomplete {
        chain: String,
        seq: i64,
        found: usize,
        leaves: u32,
    },
    /// The record the segment's time-stamp covers is missing.
    #[error(
        "chain {chain}: the time-stamped record seq {seq} is missing; \
         `gateway evidence verify --archive DIR` shows what is wrong"
    )]
    StampedMissing { chain: String, seq: i64 },
    /// Records keep `full` mode bodies, and no key opens them.
    #[error("full-mode bodies are kept but evidence.body_key is not configured")]
    NoBodyKey,
    /// A kept body does not open with the key.
    #[error("record {id}: {error}")]
    OpenBody { id: String, error: SealError },
}

/// What was written.
#[derive(Debug)]
pub struct Exported {
    pub dir: PathBuf,
    pub records: usize,
    pub chain_files: usize,
    pub tokens: usize,
    /// Chains whose segment ends at a head with no time-stamp yet.
    pub unstamped: Vec<String>,
    /// Of the records, how many were taken from the retention archive.
    pub from_archive: usize,
    /// Without an archive: (chain, seq) of chains whose records up to seq were archived and
    /// are not looked at (the dossier may have records there).
    pub not_searched: Vec<(String, i64)>,
}

/// The offline checker copied into every bundle (its one source is under docs/examples/).
pub const VERIFIER: &str = include_str!("../../docs/examples/verify_evidence.py");

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
    archive: Option<&Path>,
) -> Result<Exported, ExportError> {
    let heads = store.evidence_heads().await?;
    let anchor_of = |chain: &str| {
        heads
            .iter()
            .find(|h| h.chain == chain)
            .map_or(0, |h| h.anchor_seq)
    };
    let mut records = store.evidence_by_dossier(dossier).await?;
    let archived = match archive {
        Some(dir) => super::archive::dossier_records(dir, dossier)?,
        None => Default::default(),
    };
    // Live records win over a leftover archived copy (a prune stopped before removing them).
    let from_archive: Vec<StoredEvidence> = archived
        .records
        .into_iter()
        .filter(|r| r.seq <= anchor_of(&r.record.chain))
        .collect();
    let not_searched: Vec<(String, i64)> = match archive {
        Some(_) => vec![],
        None => heads
            .iter()
            .filter(|h| h.anchor_seq > 0)
            .map(|h| (h.chain.clone(), h.anchor_seq))
            .collect(),
    };
    let n_archived = from_archive.len();
    records.extend(from_archive);
    records.sort_by(|a, b| (&a.record.chain, a.seq).cmp(&(&b.record.chain, b.seq)));
    if records.is_empty() {
        let hint = if not_searched.is_empty() {
            String::new()
        } else {
            format!(
                " in the live store; retention archived older records of {}: export with \
                 --archive DIR to search the archive",
                describe_archived(&not_searched)
            )
        };
        return Err(ExportError::NoRecords {
            dossier: dossier.to_string(),
            hint,
        });
    }
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(ExportError::ReadOut)?
            .next()
            .is_some()
    {
        return Err(ExportError::OutNotEmpty {
            dir: out.to_path_buf(),
        });
    }
    // Owner-only (0700 / 0600): a bundle holds dossier data and, in full mode, bodies.
    let mkdir = |p: &Path| {
        super::create_private_dir_all(p).map_err(|error| ExportError::CreateDir {
            path: p.to_path_buf(),
            error,
        })
    };
    let write = |p: &Path, data: &[u8]| {
        use std::io::Write;
        super::create_private_file(p)
            .and_then(|mut f| f.write_all(data))
            .map_err(|error| ExportError::WriteFile {
                path: p.to_path_buf(),
                error,
            })
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
        from_archive: n_archived,
        not_searched,
    };

    let mut proof = Proof {
        format: PROOF_FORMAT.to_string(),
        dossier: dossier.to_string(),
        exchanges: vec![],
        chains: vec![],
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
        let mut stamps = store.timestamps(chain).await?;
        stamps.extend(
            archived
                .timestamps
                .get(chain)
                .into_iter()
                .flatten()
                .cloned(),
        );
        stamps.sort_by_key(|t| t.seq);
        stamps.dedup_by_key(|t| t.seq);
        let stamp = stamps.into_iter().find(|t| t.seq >= last);
        let end = match &stamp {
            Some(t) => t.seq,
            None => {
                done.unstamped.push(chain.to_string());
                i64::MAX
            }
        };
        let anchor = anchor_of(chain);
        let mut segment: Vec<StoredEvidence> = Vec::new();
        if first <= anchor {
            // The dossier's first record was archived: so is the segment up to the anchor.
            let dir = archive.ok_or(ExportError::NoArchive)?;
            segment = super::archive::chain_range(dir, chain, first, end.min(anchor))?;
        }
        let mut after = (first - 1).max(anchor);
        while after < end {
            let page = store.evidence_chain(chain, after, 1_000).await?;
            let Some(l) = page.last() else { break };
            after = l.seq;
            segment.extend(page.into_iter().filter(|r| r.seq <= end));
        }
        // The leaf hashes of each batch link of the segment (its leaves are all there: chain
        // reads return whole links), then one item per link.
        let mut leaves_of: std::collections::BTreeMap<i64, Vec<Hash>> = Default::default();
        for r in &segment {
            if r.batch.is_some() {
                leaves_of
                    .entry(r.seq)
                    .or_default()
                    .push(leaf_hash(&r.record));
            }
        }
        segment.dedup_by_key(|r| r.seq);
        // The segment is whole: every link from the first record to the head is there.
        for (i, r) in segment.iter().enumerate() {
            let want = first + i as i64;
            if r.seq != want {
                let place = if want <= anchor {
                    "the archive"
                } else {
                    "the live store"
                };
                return Err(ExportError::SegmentGap {
                    chain: chain.to_string(),
                    seq: want,
                    place,
                });
            }
        }
        if end != i64::MAX && segment.last().map(|r| r.seq) != Some(end) {
            return Err(ExportError::StampedMissing {
                chain: chain.to_string(),
                seq: end,
            });
        }
        let _ = writeln!(
            commands,
            "# Chain {chain}: each link's SHA-256 is the next link's prev line"
        );
        let mut links = Vec::new();
        for (i, r) in segment.iter().enumerate() {
            let name = seq_name(r.seq);
            write(&dir.join(format!("{name}.txt")), link_text(r).as_bytes())?;
            links.push(format!("chains/{chain}/{name}.txt"));
            done.chain_files += 1;
            if let Some(next) = segment.get(i + 1) {
                let _ = writeln!(
                    commands,
                    "test \"$(openssl dgst -sha256 -r chains/{chain}/{name}.txt | cut -c1-64)\" = \"$(sed -n 's/^prev: //p' chains/{chain}/{}.txt)\"",
                    seq_name(next.seq)
                );
            }
        }
        // The dossier's exchanges in this chain: a batch leaf gets its text and Merkle path.
        for r in records.iter().filter(|r| r.record.chain == chain) {
            let link = format!("chains/{chain}/{}.txt", seq_name(r.seq));
            let leaf = match &r.batch {
                None => None,
                Some(b) => {
                    let hashes = leaves_of.get(&r.seq).map(Vec::as_slice).unwrap_or_default();
                    if hashes.len() != b.leaves as usize {
                        return Err(ExportError::BatchIncomplete {
                            chain: chain.to_string(),
                            seq: r.seq,
                            found: hashes.len(),
                            leaves: b.leaves,
                        });
                    }
                    let leaves_dir = out.join("leaves").join(chain);
                    mkdir(&leaves_dir)?;
                    let file = format!("{}-{}.txt", seq_name(r.seq), b.leaf);
                    write(&leaves_dir.join(&file), leaf_text(&r.record).as_bytes())?;
                    Some(LeafProof {
                        file: format!("leaves/{chain}/{file}"),
                        index: u64::from(b.leaf),
                        size: u64::from(b.leaves),
                        path: path(hashes, b.leaf as usize)
                            .iter()
                            .map(|h| gw_store::evidence::hex_lower(h))
                            .collect(),
                    })
                }
            };
            proof.exchanges.push(ExchangeProof {
                chain: chain.to_string(),
                seq: r.seq,
                exchange: r.record.exchange.clone(),
                link,
                leaf,
            });
        }
        let mut token = None;
        if let (Some(t), Some(head)) = (&stamp, segment.last()) {
            let name = seq_name(head.seq);
            write(&dir.join(format!("{name}.tsr")), &t.token)?;
            token = Some(format!("chains/{chain}/{name}.tsr"));
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
        proof.chains.push(ChainProof {
            chain: chain.to_string(),
            links,
            token,
        });
    }
    write(
        &out.join("proof.json"),
        serde_json::to_string_pretty(&proof)
            .expect("JSON")
            .as_bytes(),
    )?;
    write(&out.join("verify_evidence.py"), VERIFIER.as_bytes())?;
    let _ = writeln!(
        commands,
        "# Each exchange: its leaf and Merkle path lead to its link's root; the links chain\n\
         python3 verify_evidence.py ."
    );

    // Bodies, decrypted, each checked against the digest its record commits to.
    let bodies = out.join("bodies");
    for r in &records {
        let rec = &r.record;
        // The text that holds the digests: the leaf (batch link) or the record itself.
        let file = match &r.batch {
            Some(b) => format!("leaves/{}/{}-{}.txt", rec.chain, seq_name(r.seq), b.leaf),
            None => format!("chains/{}/{}.txt", rec.chain, seq_name(r.seq)),
        };
        for (sealed, suffix, field) in [
            (&rec.request_body, "request", "request_sha256"),
            (&rec.response_body, "response", "response_sha256"),
        ] {
            let Some(sealed) = sealed else { continue };
            let Some(key) = key else {
                return Err(ExportError::NoBodyKey);
            };
            let plain =
                key.open(sealed, rec.id.as_bytes())
                    .map_err(|error| ExportError::OpenBody {
                        id: rec.id.clone(),
                        error,
                    })?;
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
         Exported by the integration gateway. Every exchange with an external party is recorded;\n\
         the exchanges of one delivery batch are the Merkle leaves of one chain link. Each link is\n\
         a text file under `chains/CHAIN/` whose SHA-256 is the `prev` line of the next link, up\n\
         to a chain head time-stamped by an RFC 3161 authority (`.tsr`). Each of the dossier's\n\
         exchanges is a leaf text under `leaves/CHAIN/` (or, recorded before batch links, a link\n\
         itself); `proof.json` gives its Merkle audit path to its link's `root` line (leaf hash\n\
         SHA-256(0x00 || leaf text), node hash SHA-256(0x01 || left || right), RFC 6962), which\n\
         `verify_evidence.py` checks with Python's hashlib alone.\n\
         The dossier's own records are listed in `records.json` (by chain and seq); bodies kept in\n\
         full mode are under `bodies/` and match the `request_sha256` / `response_sha256` lines.\n\n\
         ## Verify with OpenSSL\n\n\
         Run from this directory; every command must succeed (exit status 0):\n\n\
         ```sh\n{commands}```\n"
    );
    if done.from_archive > 0 {
        let _ = writeln!(
            readme,
            "{} of the records (and the chain segment up to each chain's retention anchor) were \
             taken from the retention archive; they chain into the live records the same way.\n",
            done.from_archive
        );
    }
    if !done.not_searched.is_empty() {
        let _ = writeln!(
            readme,
            "Possibly incomplete: retention archived older records of {}, and the archive was \
             not searched for this dossier's records (export again with `--archive DIR`).\n",
            describe_archived(&done.not_searched)
        );
    }
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

/// `chain X (records 1..N), …`
pub fn describe_archived(chains: &[(String, i64)]) -> String {
    chains
        .iter()
        .map(|(c, n)| format!("chain {c} (records 1..{n})"))
        .collect::<Vec<_>>()
        .join(", ")
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
