//! A dossier's offline proof: `proof.json` of an export bundle ([`super::export`]) and its
//! checker, `gateway evidence verify --bundle DIR`. `docs/examples/verify_evidence.py` (copied
//! into every bundle) performs the same checks with Python's `hashlib` alone.
//!
//! # Invariants
//! - For every exchange of the dossier, the bundle holds the chain link that commits to it
//!   (`chains/CHAIN/SEQ.txt`) and, for an exchange recorded in a batch link, its leaf text
//!   (`leaves/CHAIN/SEQ-LEAF.txt`) and Merkle audit path; for a per-event record (the older
//!   format) the link text is the record itself.
//! - For every chain, `links` lists the link files from the dossier's first link to the head the
//!   time-stamp token (`token`, when there is one) covers: each file's SHA-256 is the next
//!   one's `prev` line, and their `seq` lines follow each other.
//! - [`verify_bundle`] accepts a bundle only if every one of those holds: the leaf (prefixed
//!   0x00) leads through its path to the link's `root`, the leaf's `dossier` and `exchange` are
//!   the proof's, every link is in its chain's list, and the token (with the caller's check)
//!   covers the last link. It names the first thing that does not hold.
//! - File names in `proof.json` are relative and stay inside the bundle.

use std::path::{Component, Path, PathBuf};

use gw_store::evidence::{hex_lower, BATCH_TAG, CANONICAL_TAG, LEAF_TAG};
use gw_store::evidence_merkle::{parse_hash, root_from_path, Hash};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `format` of a `proof.json`.
pub const PROOF_FORMAT: &str = "gateway-evidence-proof-v1";

/// `proof.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proof {
    pub format: String,
    pub dossier: String,
    pub exchanges: Vec<ExchangeProof>,
    pub chains: Vec<ChainProof>,
}

/// One exchange of the dossier and what commits to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExchangeProof {
    pub chain: String,
    pub seq: i64,
    pub exchange: String,
    /// The link file that commits to it.
    pub link: String,
    /// Its leaf in a batch link; none for a per-event record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf: Option<LeafProof>,
}

/// A leaf and its Merkle audit path.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeafProof {
    /// The leaf text file.
    pub file: String,
    /// 0-based index among the link's leaves.
    pub index: u64,
    /// How many leaves the link has.
    pub size: u64,
    /// Sibling hashes (hex), the leaf's first (RFC 6962 audit path).
    pub path: Vec<String>,
}

/// A chain's links, in order, up to the time-stamped (or current) head.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChainProof {
    pub chain: String,
    pub links: Vec<String>,
    /// The RFC 3161 token over the last link, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Why a bundle is refused, by check; each names the file or the exchange.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// `proof.json` or a file it names cannot be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// `proof.json` is not a proof.
    #[error("proof.json: {0}")]
    Parse(serde_json::Error),
    /// `proof.json` has another format.
    #[error("proof.json: format {0:?} is not {PROOF_FORMAT}")]
    Format(String),
    /// A file name leaves the bundle.
    #[error("{0}: not a relative path inside the bundle")]
    Outside(String),
    /// A link or leaf file is not the text it claims to be.
    #[error("{file}: {what}")]
    Text { file: String, what: String },
    /// Two links of a chain do not chain.
    #[error("chain {chain}: {file} is not committed to by the next link ({what})")]
    Link {
        chain: String,
        file: String,
        what: String,
    },
    /// An exchange's link is not among its chain's links.
    #[error("exchange {exchange}: its link {link} is not in chain {chain}'s links")]
    NotInChain {
        exchange: String,
        link: String,
        chain: String,
    },
    /// An exchange's leaf or record names another dossier or exchange.
    #[error("exchange {exchange}: {what}")]
    Names { exchange: String, what: String },
    /// An exchange's leaf does not lead to its link's Merkle root.
    #[error("exchange {exchange}: the leaf and its path do not lead to the root of {link} (leaf, path or link modified)")]
    Root { exchange: String, link: String },
    /// A time-stamp token does not verify over the chain's last link.
    #[error("chain {chain}: time-stamp {token}: {what}")]
    Token {
        chain: String,
        token: String,
        what: String,
    },
}

/// What an accepted bundle holds.
#[derive(Debug, Default)]
pub struct BundleReport {
    pub exchanges: usize,
    pub links: usize,
    pub tokens: usize,
}

/// A `name: value` line's value (escapes kept: compare with an escaped value).
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

/// `value` as a line of a canonical text shows it.
fn escaped(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// Checks a time-stamp token (signature, trust, imprint) over a digest: `(token, digest)`,
/// why not as text.
pub type TokenCheck<'a> = &'a dyn Fn(&[u8], &[u8]) -> Result<(), String>;

/// Check the bundle in `dir`; `check_token(token, sha256 of the last link)` checks a token.
pub fn verify_bundle(dir: &Path, check_token: TokenCheck<'_>) -> Result<BundleReport, BundleError> {
    let read = |name: &str| -> Result<Vec<u8>, BundleError> {
        let rel = Path::new(name);
        if name.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(BundleError::Outside(name.to_string()));
        }
        let path = dir.join(rel);
        std::fs::read(&path).map_err(|error| BundleError::Read { path, error })
    };
    let text = |name: &str| -> Result<String, BundleError> {
        String::from_utf8(read(name)?).map_err(|_| BundleError::Text {
            file: name.to_string(),
            what: "not UTF-8".into(),
        })
    };
    let proof: Proof = serde_json::from_slice(&read("proof.json")?).map_err(BundleError::Parse)?;
    if proof.format != PROOF_FORMAT {
        return Err(BundleError::Format(proof.format));
    }
    let mut report = BundleReport::default();
    for c in &proof.chains {
        let mut before: Option<(String, i64, String)> = None;
        for file in &c.links {
            let t = text(file)?;
            let bad = |what: &str| BundleError::Text {
                file: file.clone(),
                what: what.to_string(),
            };
            let tag = t.lines().next().unwrap_or_default();
            if tag != CANONICAL_TAG && tag != BATCH_TAG {
                return Err(bad("not a chain link"));
            }
            if field(&t, "chain") != Some(escaped(&c.chain).as_str()) {
                return Err(bad("belongs to another chain"));
            }
            let seq: i64 = field(&t, "seq")
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("no seq line"))?;
            if let Some((prev_file, prev_seq, prev_hash)) = &before {
                let link = |what: String| BundleError::Link {
                    chain: c.chain.clone(),
                    file: prev_file.clone(),
                    what,
                };
                if seq != prev_seq + 1 {
                    return Err(link(format!("next seq is {seq}, not {}", prev_seq + 1)));
                }
                if field(&t, "prev") != Some(prev_hash.as_str()) {
                    return Err(link(format!("{file}'s prev is not its SHA-256")));
                }
            }
            before = Some((file.clone(), seq, hex_lower(&Sha256::digest(t.as_bytes()))));
            report.links += 1;
        }
        if let (Some(token), Some((_, _, head))) = (&c.token, &before) {
            let digest = Sha256::digest(text(c.links.last().expect("a last link"))?.as_bytes());
            debug_assert_eq!(hex_lower(&digest), *head);
            check_token(&read(token)?, &digest).map_err(|what| BundleError::Token {
                chain: c.chain.clone(),
                token: token.clone(),
                what,
            })?;
            report.tokens += 1;
        }
    }
    for x in &proof.exchanges {
        let in_chain = proof
            .chains
            .iter()
            .any(|c| c.chain == x.chain && c.links.contains(&x.link));
        if !in_chain {
            return Err(BundleError::NotInChain {
                exchange: x.exchange.clone(),
                link: x.link.clone(),
                chain: x.chain.clone(),
            });
        }
        let link = text(&x.link)?;
        let names = |t: &str, file: &str| -> Result<(), BundleError> {
            let wrong = |what: String| BundleError::Names {
                exchange: x.exchange.clone(),
                what,
            };
            if field(t, "dossier") != Some(escaped(&proof.dossier).as_str()) {
                return Err(wrong(format!("{file} is not of dossier {}", proof.dossier)));
            }
            if field(t, "exchange") != Some(escaped(&x.exchange).as_str()) {
                return Err(wrong(format!("{file} is another exchange")));
            }
            Ok(())
        };
        match &x.leaf {
            None => {
                if !link.starts_with(&format!("{CANONICAL_TAG}\n")) {
                    return Err(BundleError::Text {
                        file: x.link.clone(),
                        what: "not a per-event record".into(),
                    });
                }
                names(&link, &x.link)?;
            }
            Some(l) => {
                let leaf = text(&l.file)?;
                if !leaf.starts_with(&format!("{LEAF_TAG}\n")) {
                    return Err(BundleError::Text {
                        file: l.file.clone(),
                        what: "not a leaf".into(),
                    });
                }
                names(&leaf, &l.file)?;
                let wrong_root = || BundleError::Root {
                    exchange: x.exchange.clone(),
                    link: x.link.clone(),
                };
                if !link.starts_with(&format!("{BATCH_TAG}\n"))
                    || field(&link, "leaves") != Some(l.size.to_string().as_str())
                {
                    return Err(wrong_root());
                }
                let mut h = Sha256::new();
                h.update([0u8]);
                h.update(leaf.as_bytes());
                let leaf_hash: Hash = h.finalize().into();
                let path: Vec<Hash> = l
                    .path
                    .iter()
                    .map(|p| parse_hash(p))
                    .collect::<Option<_>>()
                    .ok_or_else(wrong_root)?;
                let root =
                    root_from_path(&leaf_hash, l.index, l.size, &path).ok_or_else(wrong_root)?;
                if field(&link, "root") != Some(hex_lower(&root).as_str()) {
                    return Err(wrong_root());
                }
            }
        }
        report.exchanges += 1;
    }
    Ok(report)
}
