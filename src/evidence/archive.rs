//! The retention archive's checker: `gateway evidence verify --archive DIR`.
//!
//! Retention ([`super::retention`]) writes, per chain and per run, `DIR/CHAIN-FROM-TO.jsonl`:
//! one line per archived record (`{"record": …, "canonical": …}`, seq FROM to TO; the records
//! of a batch link are one line per leaf, each with the link's text as `canonical`), then the
//! chain's time-stamps up to TO (`{"timestamp": …}`). The live chain keeps the last archived
//! record's hash as its anchor. This module checks that archive and live store are one chain:
//!
//! - the files of a chain, in seq order, follow each other without a gap or an overlap, the
//!   first one starting at seq 1 (after [`GENESIS`]);
//! - every link commits to the one before it (across files too), its hash recomputes from its
//!   fields, a batch link's leaves are all there and their Merkle root is the link's (the walk
//!   of [`gw_store::evidence_merkle::Walker`], the same as the live chain's), and the stored
//!   canonical text is exactly the text that hashes to it (the text an auditor hashes with
//!   `openssl dgst -sha256`);
//! - each file holds exactly the records its name says;
//! - the last archived record is the live chain's anchor (seq and hash);
//! - every archived time-stamp covers an archived record's hash, and its token verifies as the
//!   live ones do.
//!
//! Like [`gw_store::evidence::verify_chains`], it reports the first broken link of each chain,
//! with the record id where there is one, and the file.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use gw_store::evidence::{link_text, Broken, GENESIS};
use gw_store::evidence_merkle::Walker;
use gw_store::{ChainHead, Store, StoredEvidence, TimeStampRow};
use serde::Deserialize;

/// Why the archive could not be read (as opposed to a broken link found in it, which is an
/// [`ArchiveProblem`] of the report), by step; each names the directory or file.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive directory cannot be listed.
    #[error("{}: {error}", dir.display())]
    ListDir { dir: PathBuf, error: std::io::Error },
    /// An archive file cannot be opened.
    #[error("{}: {error}", path.display())]
    OpenFile {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A line of an archive file cannot be read.
    #[error("{}: {error}", path.display())]
    ReadLine {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A line of an archive file is neither an archived record nor a time-stamp.
    #[error("{} line {line}: {error}", path.display())]
    ParseLine {
        path: PathBuf,
        line: usize,
        error: serde_json::Error,
    },
    /// The live chains cannot be read from the store.
    #[error("{0}")]
    Store(#[from] gw_store::StoreError),
}

/// One archive file, as named by retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveFile {
    pub path: PathBuf,
    pub chain: String,
    pub from: i64,
    pub to: i64,
}

/// Parse `CHAIN-FROM-TO.jsonl` (the chain name may itself contain `-`).
fn parse_name(path: &Path) -> Option<ArchiveFile> {
    let stem = path.file_name()?.to_str()?.strip_suffix(".jsonl")?;
    let mut parts = stem.rsplitn(3, '-');
    let to = parts.next()?.parse().ok()?;
    let from = parts.next()?.parse().ok()?;
    let chain = parts.next()?.to_string();
    (!chain.is_empty() && from >= 1 && to >= from).then(|| ArchiveFile {
        path: path.to_path_buf(),
        chain,
        from,
        to,
    })
}

/// The archive files of a directory.
#[derive(Debug, Default)]
pub struct Listing {
    /// By chain, in seq order.
    pub chains: BTreeMap<String, Vec<ArchiveFile>>,
    /// `.jsonl` files whose name is not an archive file's.
    pub strays: Vec<PathBuf>,
}

/// The archive files under `dir`.
pub fn archive_files(dir: &Path) -> Result<Listing, ArchiveError> {
    let list_dir = |error| ArchiveError::ListDir {
        dir: dir.to_path_buf(),
        error,
    };
    let entries = std::fs::read_dir(dir).map_err(list_dir)?;
    let mut chains: BTreeMap<String, Vec<ArchiveFile>> = BTreeMap::new();
    let mut strays = Vec::new();
    for entry in entries {
        let path = entry.map_err(list_dir)?.path();
        if path.extension().is_none_or(|x| x != "jsonl") {
            continue;
        }
        match parse_name(&path) {
            Some(f) => chains.entry(f.chain.clone()).or_default().push(f),
            None => strays.push(path),
        }
    }
    for files in chains.values_mut() {
        files.sort_by_key(|f| (f.from, f.to));
    }
    strays.sort();
    Ok(Listing { chains, strays })
}

/// One line of an archive file.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ArchiveLine {
    Record {
        record: Box<StoredEvidence>,
        canonical: String,
    },
    Timestamp {
        timestamp: TimeStampRow,
    },
}

/// A problem found in the archive: where, and the broken link.
#[derive(Debug, Clone)]
pub struct ArchiveProblem {
    /// The archive file it shows in (none: the archive as a whole, e.g. no file at all).
    pub file: Option<PathBuf>,
    /// 1-based line in that file, when one line is at fault.
    pub line: Option<usize>,
    pub broken: Broken,
}

impl std::fmt::Display for ArchiveProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.file, self.line) {
            (Some(p), Some(l)) => write!(f, "archive {} line {l}: {}", p.display(), self.broken),
            (Some(p), None) => write!(f, "archive {}: {}", p.display(), self.broken),
            _ => write!(f, "archive: {}", self.broken),
        }
    }
}

/// What [`verify_archive`] found.
#[derive(Debug, Default)]
pub struct ArchiveReport {
    pub chains: usize,
    pub files: usize,
    pub records: u64,
    pub timestamps: u64,
    /// The first broken link of each chain, and every bad time-stamp.
    pub problems: Vec<ArchiveProblem>,
}

impl ArchiveReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Check the archive under `dir` and its join with the live chains of `store`; tokens with
/// `check_token` (the same check as the live ones). The check is the caller's (it holds the
/// trust anchors), with its own error type: why a token does not verify is reported, as text,
/// as a broken link of the report, not as a failure of the run.
pub async fn verify_archive<E: std::fmt::Display>(
    store: &dyn Store,
    dir: &Path,
    check_token: &(dyn Fn(&TimeStampRow) -> Result<(), E> + Sync),
) -> Result<ArchiveReport, ArchiveError> {
    let heads = store.evidence_heads().await?;
    let Listing {
        chains: mut files,
        strays,
    } = if dir.exists() {
        archive_files(dir)?
    } else {
        Listing::default()
    };
    let mut report = ArchiveReport::default();
    for stray in strays {
        report.problems.push(ArchiveProblem {
            file: Some(stray),
            line: None,
            broken: Broken {
                chain: "-".into(),
                record_id: None,
                seq: 0,
                what: "not an archive file name (CHAIN-FROM-TO.jsonl)".into(),
            },
        });
    }
    // Every chain with an archived part, and every chain that has archive files.
    let mut chains: BTreeMap<String, Option<ChainHead>> = BTreeMap::new();
    for h in heads {
        if h.anchor_seq > 0 || files.contains_key(&h.chain) {
            chains.insert(h.chain.clone(), Some(h));
        }
    }
    for chain in files.keys() {
        chains.entry(chain.clone()).or_insert(None);
    }
    for (chain, head) in chains {
        report.chains += 1;
        let chain_files = files.remove(&chain).unwrap_or_default();
        check_chain(
            &chain,
            head.as_ref(),
            &chain_files,
            check_token,
            &mut report,
        )?;
    }
    Ok(report)
}

/// Walk one chain's archive files; the first broken link goes into `report`.
fn check_chain<E: std::fmt::Display>(
    chain: &str,
    head: Option<&ChainHead>,
    files: &[ArchiveFile],
    check_token: &(dyn Fn(&TimeStampRow) -> Result<(), E> + Sync),
    report: &mut ArchiveReport,
) -> Result<(), ArchiveError> {
    let broken =
        |file: Option<&Path>, line: Option<usize>, id: Option<&str>, seq, what| ArchiveProblem {
            file: file.map(Path::to_path_buf),
            line,
            broken: Broken {
                chain: chain.to_string(),
                record_id: id.map(str::to_string),
                seq,
                what,
            },
        };
    // The last verified link: (seq, hash), and where it is.
    let mut walker = Walker::new(0, GENESIS);
    let mut seq = 0i64;
    let mut last_file: Option<&Path> = None;
    let mut last_id: Option<String> = None;
    // The hash of the record at the live anchor's seq, as archived.
    let mut at_anchor: Option<String> = None;
    let anchor_seq = head.map_or(0, |h| h.anchor_seq);
    for file in files {
        report.files += 1;
        let path = file.path.as_path();
        if file.from != seq + 1 {
            let what = if file.from > seq + 1 {
                format!(
                    "starts at seq {} but the archive before it ends at seq {seq}: records {}..{} \
                     are missing (an archive file was removed?)",
                    file.from,
                    seq + 1,
                    file.from - 1
                )
            } else {
                format!(
                    "starts at seq {} but the archive before it already holds records up to \
                     seq {seq} (overlapping archive files)",
                    file.from
                )
            };
            report
                .problems
                .push(broken(Some(path), None, None, seq + 1, what));
            return Ok(());
        }
        let f = std::fs::File::open(path).map_err(|error| ArchiveError::OpenFile {
            path: path.to_path_buf(),
            error,
        })?;
        // Hashes of this file's records (by seq - from) and of the record before it: what its
        // time-stamps may cover.
        let before = (seq, walker.last().1.to_string());
        let mut hashes: BTreeMap<i64, String> = BTreeMap::new();
        let mut stamps: Vec<(usize, TimeStampRow)> = Vec::new();
        for (i, line) in BufReader::new(f).lines().enumerate() {
            let n = i + 1;
            let line = line.map_err(|error| ArchiveError::ReadLine {
                path: path.to_path_buf(),
                error,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let parsed: ArchiveLine = match serde_json::from_str(&line) {
                Ok(l) => l,
                Err(e) => {
                    report.problems.push(broken(
                        Some(path),
                        Some(n),
                        None,
                        seq + 1,
                        format!("not an archived record or time-stamp: {e}"),
                    ));
                    return Ok(());
                }
            };
            let (r, text) = match parsed {
                ArchiveLine::Timestamp { timestamp } => {
                    stamps.push((n, timestamp));
                    continue;
                }
                ArchiveLine::Record { record, canonical } => (*record, canonical),
            };
            report.records += 1;
            let id = r.record.id.as_str();
            let bad = |what: String| broken(Some(path), Some(n), Some(id), r.seq, what);
            let problem = if r.record.chain != chain {
                Some(bad(format!(
                    "belongs to chain {}, not {chain}",
                    r.record.chain
                )))
            } else if let Err(what) = walker.step(&r) {
                Some(bad(what))
            } else if text != link_text(&r) {
                Some(bad(
                    "its canonical text is not that of the record (text modified)".into(),
                ))
            } else {
                None
            };
            if let Some(p) = problem {
                report.problems.push(p);
                return Ok(());
            }
            if r.seq == anchor_seq {
                at_anchor = Some(r.hash.clone());
            }
            seq = r.seq;
            last_id = Some(r.record.id.clone());
            hashes.insert(r.seq, r.hash);
        }
        // A batch link never spans two files: its leaves are all in this one.
        if let Err(what) = walker.end() {
            report
                .problems
                .push(broken(Some(path), None, last_id.as_deref(), seq, what));
            return Ok(());
        }
        if seq != file.to {
            report.problems.push(broken(
                Some(path),
                None,
                last_id.as_deref(),
                seq + 1,
                format!(
                    "the file's name says records {}..{} but it ends at seq {seq} \
                     (records removed at its end)",
                    file.from, file.to
                ),
            ));
            return Ok(());
        }
        for (n, ts) in stamps {
            report.timestamps += 1;
            let covered = if ts.seq == before.0 {
                Some(&before.1)
            } else {
                hashes.get(&ts.seq)
            };
            let covered = if ts.seq == before.0 || (ts.seq >= file.from && ts.seq <= file.to) {
                covered
            } else {
                None
            };
            let what = match covered {
                _ if ts.chain != chain => Some(format!("belongs to chain {}", ts.chain)),
                None => Some("covers a record that is not in the archive".to_string()),
                Some(h) if *h != ts.hash => {
                    Some("covers another hash than the record's".to_string())
                }
                Some(_) => check_token(&ts).err().map(|e| e.to_string()),
            };
            if let Some(what) = what {
                report.problems.push(broken(
                    Some(path),
                    Some(n),
                    None,
                    ts.seq,
                    format!("time-stamp: {what}"),
                ));
            }
        }
        last_file = Some(path);
    }
    // The archive must end exactly at the live chain's anchor.
    let Some(head) = head else {
        report.problems.push(broken(
            last_file,
            None,
            last_id.as_deref(),
            seq,
            "archived chain is not in the live store (its head row is missing)".into(),
        ));
        return Ok(());
    };
    if seq < head.anchor_seq {
        report.problems.push(broken(
            last_file,
            None,
            None,
            seq + 1,
            format!(
                "the archive ends at seq {seq} but the live chain is anchored at seq {}: \
                 records {}..{} are missing from the archive (an archive file was removed?)",
                head.anchor_seq,
                seq + 1,
                head.anchor_seq
            ),
        ));
    } else if at_anchor.as_deref().unwrap_or(GENESIS) != head.anchor_hash {
        report.problems.push(broken(
            last_file,
            None,
            last_id.as_deref(),
            head.anchor_seq,
            format!(
                "the archived record at seq {} does not have the live chain's anchor hash {}",
                head.anchor_seq, head.anchor_hash
            ),
        ));
    } else if seq > head.anchor_seq {
        report.problems.push(broken(
            last_file,
            None,
            last_id.as_deref(),
            head.anchor_seq + 1,
            format!(
                "the archive goes on to seq {seq} past the live anchor at seq {} \
                 (a prune stopped between writing the archive and removing the records: \
                 run `gateway evidence prune` again)",
                head.anchor_seq
            ),
        ));
    }
    Ok(())
}

/// Read the lines of one archive file, calling `each` with every parsed line.
fn read_file(path: &Path, mut each: impl FnMut(ArchiveLine)) -> Result<(), ArchiveError> {
    let f = std::fs::File::open(path).map_err(|error| ArchiveError::OpenFile {
        path: path.to_path_buf(),
        error,
    })?;
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|error| ArchiveError::ReadLine {
            path: path.to_path_buf(),
            error,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str(&line).map_err(|error| ArchiveError::ParseLine {
            path: path.to_path_buf(),
            line: i + 1,
            error,
        })?;
        each(parsed);
    }
    Ok(())
}

/// What the archive holds of one dossier (for `evidence export --archive`).
#[derive(Debug, Default)]
pub struct DossierArchive {
    /// The dossier's archived records, by chain and seq.
    pub records: Vec<StoredEvidence>,
    /// Every archived time-stamp, by chain, in seq order.
    pub timestamps: BTreeMap<String, Vec<TimeStampRow>>,
}

/// The archived records of `dossier` under `dir`, and the archived time-stamps.
pub fn dossier_records(dir: &Path, dossier: &str) -> Result<DossierArchive, ArchiveError> {
    let listing = archive_files(dir)?;
    let mut out = DossierArchive::default();
    for file in listing.chains.values().flatten() {
        read_file(&file.path, |line| match line {
            ArchiveLine::Record { record, .. } if record.record.dossier == dossier => {
                out.records.push(*record)
            }
            ArchiveLine::Record { .. } => {}
            ArchiveLine::Timestamp { timestamp } => out
                .timestamps
                .entry(timestamp.chain.clone())
                .or_default()
                .push(timestamp),
        })?;
    }
    let place = |r: &StoredEvidence| (r.record.chain.clone(), r.seq, leaf_of(r));
    out.records.sort_by_key(place);
    out.records.dedup_by(|a, b| place(a) == place(b));
    for stamps in out.timestamps.values_mut() {
        stamps.sort_by_key(|t| t.seq);
        stamps.dedup_by_key(|t| t.seq);
    }
    Ok(out)
}

/// The archived records of `chain` with `from <= seq <= to`, in seq order (what the archive
/// has: the caller checks nothing is missing).
pub fn chain_range(
    dir: &Path,
    chain: &str,
    from: i64,
    to: i64,
) -> Result<Vec<StoredEvidence>, ArchiveError> {
    let listing = archive_files(dir)?;
    let mut out: Vec<StoredEvidence> = Vec::new();
    for file in listing.chains.get(chain).into_iter().flatten() {
        if file.to < from || file.from > to {
            continue;
        }
        read_file(&file.path, |line| {
            if let ArchiveLine::Record { record, .. } = line {
                if record.seq >= from && record.seq <= to {
                    out.push(*record);
                }
            }
        })?;
    }
    out.sort_by_key(|r| (r.seq, leaf_of(r)));
    out.dedup_by_key(|r| (r.seq, leaf_of(r)));
    Ok(out)
}

/// A record's leaf index in its batch link (0 for a per-event record).
pub fn leaf_of(r: &StoredEvidence) -> u32 {
    r.batch.as_ref().map_or(0, |b| b.leaf)
}
