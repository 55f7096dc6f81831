//! `gateway evidence verify | export DOSSIER | prune`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use gw_crypto::keys::TrustStore;
use gw_crypto::tsp::{verify_token_at, CertificateTime};
use gw_store::evidence::{verify_chains, VerifyReport};
use gw_store::Store;

use crate::config::{Loaded, UrlPasswordError};
use crate::evidence::archive::{ArchiveError, ArchiveReport};
use crate::evidence::export::ExportError;
use crate::evidence::retention::RetentionError;
use crate::evidence::tsa::TsaError;
use crate::evidence::EvidenceError;

/// Why an evidence command (or one token check) failed, by step. The command prints it and
/// exits with status 2 ([`run`]); a broken chain is not an error but a report (status 1).
#[derive(Debug, thiserror::Error)]
pub enum EvidenceCmdError {
    /// The store's URL cannot be built (its password cannot be read).
    #[error("{0}")]
    StoreUrl(#[from] UrlPasswordError),
    /// The store's TLS files (`[store] ca`, client certificate) cannot be read.
    #[error("{0}")]
    StoreTls(#[from] gw_store::TlsError),
    /// The store cannot be opened, or its chains cannot be read.
    #[error("{0}")]
    Store(#[from] gw_store::StoreError),
    /// `[evidence.tsa]` trust anchors cannot be loaded.
    #[error("{0}")]
    Trust(#[from] TsaError),
    /// A token cannot be checked: no `[evidence.tsa]` trust anchors are configured.
    #[error("no [evidence.tsa] trust anchors to check it with")]
    NoTrust,
    /// The time-stamp row's hash is not hexadecimal.
    #[error("{0}")]
    TokenHash(#[from] hex::FromHexError),
    /// The token does not verify over the row's hash.
    #[error("{0}")]
    Token(#[from] gw_crypto::tsp::TspError),
    /// `--archive` names no directory.
    #[error("{}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// The retention archive cannot be read.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The evidence log cannot be set up (its body key).
    #[error(transparent)]
    Log(#[from] EvidenceError),
    /// A `[evidence.tsa]` certificate file for the bundle cannot be read.
    #[error("{}: {error}", path.display())]
    ReadCertificate {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The bundle cannot be written.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// Retention stopped.
    #[error(transparent)]
    Prune(#[from] RetentionError),
}

#[derive(Subcommand, Debug)]
pub enum EvidenceAction {
    /// Check every chain (each record commits to the previous one, nothing missing, inserted
    /// or reordered) and every time-stamp token; prints the first broken link of each chain
    /// with its record id. Exit status 1 on any problem.
    Verify {
        /// Also check the retention archive in this directory (`evidence.archive_dir`): its
        /// files form one unbroken chain from the first record, each record's hash recomputes,
        /// its time-stamps verify, and its last record is the live chain's anchor.
        #[arg(long, value_name = "DIR")]
        archive: Option<PathBuf>,
        /// Check an exported bundle instead of the store: every exchange's leaf and Merkle path
        /// lead to its link, the links chain, and the time-stamp token (with `[evidence.tsa]`)
        /// covers the last link. The same checks as the bundle's `verify_evidence.py`.
        #[arg(long, value_name = "DIR", conflicts_with = "archive")]
        bundle: Option<PathBuf>,
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// Write a self-contained bundle of a dossier's evidence, verifiable with OpenSSL alone.
    Export {
        /// The dossier code.
        dossier: String,
        /// Output directory. Default `evidence-DOSSIER`.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also take the dossier's records from the retention archive in this directory
        /// (`evidence.archive_dir`), with the chain segment through the live chain's anchor.
        #[arg(long, value_name = "DIR")]
        archive: Option<PathBuf>,
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// Retention: archive records older than `evidence.retention` (a JSON-lines file per chain
    /// under `evidence.archive_dir`) and remove them from the live store.
    Prune {
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: PathBuf,
    },
}

impl EvidenceAction {
    /// The configuration file the action names.
    pub fn config(&self) -> &std::path::Path {
        match self {
            EvidenceAction::Verify { config, .. }
            | EvidenceAction::Export { config, .. }
            | EvidenceAction::Prune { config } => config,
        }
    }
}

async fn open_store(loaded: &Loaded) -> Result<Arc<dyn Store>, EvidenceCmdError> {
    let url = loaded.store_url()?;
    let tls = crate::app::store_tls(loaded)?;
    Ok(gw_store::open_tls(&url, tls).await?)
}

fn tsa_trust(loaded: &Loaded) -> Result<Option<TrustStore>, EvidenceCmdError> {
    match &loaded.config.evidence.tsa {
        Some(t) => Ok(Some(crate::evidence::tsa::trust(t, &loaded.base)?)),
        None => Ok(None),
    }
}

/// Check one time-stamp token: signed by an authority `trust` knows (none configured: it
/// fails), over the row's hash.
fn check_token(
    trust: Option<&TrustStore>,
    ts: &gw_store::TimeStampRow,
) -> Result<(), EvidenceCmdError> {
    let trust = trust.ok_or(EvidenceCmdError::NoTrust)?;
    let digest = hex::decode(&ts.hash)?;
    verify_token_at(&ts.token, &digest, trust, CertificateTime::GenTime)?;
    Ok(())
}

/// Verify every chain of `store`; tokens against `trust` (none configured: any token fails).
pub async fn verify(
    store: &dyn Store,
    trust: Option<&TrustStore>,
) -> Result<VerifyReport, EvidenceCmdError> {
    Ok(verify_chains(store, &|ts| check_token(trust, ts)).await?)
}

/// Verify the retention archive under `dir` and its join with the live chains of `store`;
/// archived tokens are checked as the live ones.
pub async fn verify_archive(
    store: &dyn Store,
    dir: &std::path::Path,
    trust: Option<&TrustStore>,
) -> Result<ArchiveReport, EvidenceCmdError> {
    Ok(crate::evidence::archive::verify_archive(store, dir, &|ts| check_token(trust, ts)).await?)
}

pub async fn run(loaded: &Loaded, action: EvidenceAction) -> ExitCode {
    match run_inner(loaded, action).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

async fn run_inner(loaded: &Loaded, action: EvidenceAction) -> Result<ExitCode, EvidenceCmdError> {
    if let EvidenceAction::Verify {
        bundle: Some(dir), ..
    } = &action
    {
        let trust = tsa_trust(loaded)?;
        let check = |token: &[u8], digest: &[u8]| match &trust {
            None => Err(EvidenceCmdError::NoTrust.to_string()),
            Some(t) => verify_token_at(token, digest, t, CertificateTime::GenTime)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        return Ok(match crate::evidence::proof::verify_bundle(dir, &check) {
            Ok(r) => {
                println!(
                    "OK: {} exchange(s) of the dossier, {} chain link(s), {} time-stamp(s) verify",
                    r.exchanges, r.links, r.tokens
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("REFUSED: {e}");
                ExitCode::FAILURE
            }
        });
    }
    let store = open_store(loaded).await?;
    match action {
        EvidenceAction::Verify { archive, .. } => {
            let trust = tsa_trust(loaded)?;
            let report = verify(store.as_ref(), trust.as_ref()).await?;
            let archived = match &archive {
                Some(dir) => {
                    // A path on the command line is relative to the working directory.
                    if !dir.is_dir() {
                        return Err(EvidenceCmdError::NotADirectory(dir.clone()));
                    }
                    Some(verify_archive(store.as_ref(), dir, trust.as_ref()).await?)
                }
                None => None,
            };
            for h in store.evidence_heads().await? {
                println!(
                    "chain {}: head seq {} ({}), anchored at seq {}",
                    h.chain, h.seq, h.hash, h.anchor_seq
                );
            }
            println!(
                "{} chain(s), {} record(s), {} time-stamp(s) checked",
                report.chains, report.records, report.timestamps
            );
            if let Some(a) = &archived {
                println!(
                    "archive: {} chain(s), {} file(s), {} record(s), {} time-stamp(s) checked",
                    a.chains, a.files, a.records, a.timestamps
                );
            }
            let archive_ok = archived.as_ref().is_none_or(ArchiveReport::ok);
            if report.ok() && archive_ok {
                if archived.is_some() {
                    println!(
                        "OK: the archive and every live chain verify as one chain, and every \
                         time-stamp"
                    );
                } else {
                    println!("OK: every chain and time-stamp verifies");
                }
                Ok(ExitCode::SUCCESS)
            } else {
                for p in &report.problems {
                    println!("BROKEN: {p}");
                }
                for p in archived.iter().flat_map(|a| &a.problems) {
                    println!("BROKEN: {p}");
                }
                Ok(ExitCode::FAILURE)
            }
        }
        EvidenceAction::Export {
            dossier,
            out,
            archive,
            ..
        } => {
            let out = out.unwrap_or_else(|| PathBuf::from(format!("evidence-{dossier}")));
            let log = crate::evidence::EvidenceLog::new(
                &loaded.config.evidence,
                &loaded.config.gateway.instance,
                &loaded.base,
            )?;
            let mut certs = Vec::new();
            if let Some(t) = &loaded.config.evidence.tsa {
                let read = |p: &std::path::Path| {
                    std::fs::read(loaded.base.join(p)).map_err(|error| {
                        EvidenceCmdError::ReadCertificate {
                            path: p.to_path_buf(),
                            error,
                        }
                    })
                };
                certs.push(("tsa-ca.pem".to_string(), read(&t.ca_file)?));
                if let Some(i) = &t.intermediates_file {
                    certs.push(("tsa-intermediates.pem".to_string(), read(i)?));
                }
            }
            let done = crate::evidence::export::export(
                store.as_ref(),
                &dossier,
                &out,
                log.key(),
                &certs,
                archive.as_deref(),
            )
            .await?;
            println!(
                "wrote {}: {} record(s), {} chain file(s), {} time-stamp token(s)",
                done.dir.display(),
                done.records,
                done.chain_files,
                done.tokens
            );
            if done.from_archive > 0 {
                println!(
                    "{} record(s) taken from the retention archive",
                    done.from_archive
                );
            }
            if !done.not_searched.is_empty() {
                println!(
                    "warning: retention archived older records of {}; this dossier may have \
                     records there that are not in the bundle: export with --archive DIR",
                    crate::evidence::export::describe_archived(&done.not_searched)
                );
            }
            if !done.unstamped.is_empty() {
                println!(
                    "note: chain(s) {} end at a head not time-stamped yet",
                    done.unstamped.join(", ")
                );
            }
            println!(
                "verify it with the commands in {}",
                out.join("README.md").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        EvidenceAction::Prune { .. } => {
            let Some(keep) = loaded.config.evidence.retention else {
                println!("evidence.retention is not set: nothing to prune");
                return Ok(ExitCode::SUCCESS);
            };
            let dir = loaded
                .config
                .evidence
                .archive_dir
                .as_ref()
                .map(|d| loaded.base.join(d))
                .unwrap_or_else(|| loaded.data_dir().join("evidence-archive"));
            let cutoff = crate::model::time::now_ms() - keep.0.as_millis() as i64;
            let n = crate::evidence::retention::prune(store.as_ref(), &dir, cutoff).await?;
            println!("archived and removed {n} record(s) older than the retention period");
            Ok(ExitCode::SUCCESS)
        }
    }
}
