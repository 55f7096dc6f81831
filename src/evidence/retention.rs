//! Retention: archive, then remove, the oldest records of each chain.
//!
//! For each chain, the records from its anchor up to the last one older than the cut-off (a
//! prefix of whole links: it stops at the first newer link, a batch link being as old as its
//! newest leaf) are written to
//! `ARCHIVE_DIR/CHAIN-FROM-TO.jsonl` (one stored record per line, with its canonical text, then
//! the chain's time-stamps in that range), synced to disk and renamed into place, and only then removed from the live
//! store, which keeps the last archived record's hash as the chain's anchor: the first record
//! that remains commits to it, so the live chain stays verifiable and joins the archive.

use std::io::Write;
use std::path::{Path, PathBuf};

use gw_store::evidence::link_text;
use gw_store::Store;

use super::archive::ArchiveError;

/// Why a retention run stopped, by step; nothing is removed from the live store before its
/// archive file is complete.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The chains, their records or time-stamps cannot be read, or the prune itself failed.
    #[error("{0}")]
    Store(#[from] gw_store::StoreError),
    /// The archive directory cannot be created.
    #[error("{}: {error}", dir.display())]
    CreateDir { dir: PathBuf, error: std::io::Error },
    /// The archive file (under its `.partial` name) cannot be created.
    #[error("{}: {error}", path.display())]
    CreateFile {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A line of the archive file cannot be written.
    #[error("{0}")]
    WriteLine(std::io::Error),
    /// The archive file cannot be synced to disk.
    #[error("{0}")]
    Sync(std::io::Error),
    /// The complete archive file cannot be renamed into place.
    #[error("{}: {error}", path.display())]
    Rename {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The archive directory cannot be listed (to find a stopped run's file).
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// A stopped run's archive file, superseded by this one, cannot be removed.
    #[error("{}: {error}", path.display())]
    RemoveSuperseded {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Archive and remove records older than `cutoff_ms`; returns how many were removed.
pub async fn prune(store: &dyn Store, dir: &Path, cutoff_ms: i64) -> Result<u64, RetentionError> {
    let mut removed = 0;
    for head in store.evidence_heads().await? {
        let mut old = Vec::new();
        let mut after = head.anchor_seq;
        'walk: loop {
            let page = store.evidence_chain(&head.chain, after, 1_000).await?;
            if page.is_empty() {
                break;
            }
            for r in page {
                // A batch link's leaves share its time: a link is archived whole or not.
                if r.link_at_ms() >= cutoff_ms {
                    break 'walk;
                }
                after = r.seq;
                old.push(r);
            }
        }
        let (Some(first), Some(last)) = (old.first(), old.last()) else {
            continue;
        };
        super::create_private_dir_all(dir).map_err(|error| RetentionError::CreateDir {
            dir: dir.to_path_buf(),
            error,
        })?;
        let name = format!("{}-{}-{}.jsonl", head.chain, first.seq, last.seq);
        let path = dir.join(&name);
        // Written under a temporary name and renamed once synced: a file named like an archive
        // file is always complete.
        let partial = dir.join(format!("{name}.partial"));
        let mut file =
            super::create_private_file(&partial).map_err(|error| RetentionError::CreateFile {
                path: partial.clone(),
                error,
            })?;
        for r in &old {
            let line = serde_json::json!({
                "record": r,
                "canonical": link_text(r),
            });
            writeln!(file, "{line}").map_err(RetentionError::WriteLine)?;
        }
        for t in store.timestamps(&head.chain).await? {
            if t.seq <= last.seq {
                writeln!(file, "{}", serde_json::json!({ "timestamp": t }))
                    .map_err(RetentionError::WriteLine)?;
            }
        }
        file.sync_all().map_err(RetentionError::Sync)?;
        drop(file);
        std::fs::rename(&partial, &path).map_err(|error| RetentionError::Rename {
            path: path.clone(),
            error,
        })?;
        // A run stopped between writing its archive and removing the records left a file from
        // the same anchor: this one holds all of it and more.
        let listing = super::archive::archive_files(dir)?;
        for f in listing.chains.get(&head.chain).into_iter().flatten() {
            if f.from == first.seq && f.path != path {
                std::fs::remove_file(&f.path).map_err(|error| {
                    RetentionError::RemoveSuperseded {
                        path: f.path.clone(),
                        error,
                    }
                })?;
            }
        }
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        removed += store.evidence_prune(&head.chain, last.seq).await?;
    }
    Ok(removed)
}
