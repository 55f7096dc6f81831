//! Retention: archive, then remove, the oldest records of each chain.
//!
//! For each chain, the records from its anchor up to the last one older than the cut-off (a
//! prefix: it stops at the first newer record) are written to
//! `ARCHIVE_DIR/CHAIN-FROM-TO.jsonl` (one stored record per line, with its canonical text, then
//! the chain's time-stamps in that range), synced to disk and renamed into place, and only then removed from the live
//! store, which keeps the last archived record's hash as the chain's anchor: the first record
//! that remains commits to it, so the live chain stays verifiable and joins the archive.

use std::io::Write;
use std::path::Path;

use gw_store::evidence::canonical;
use gw_store::Store;

/// Archive and remove records older than `cutoff_ms`; returns how many were removed.
pub async fn prune(store: &dyn Store, dir: &Path, cutoff_ms: i64) -> Result<u64, String> {
    let err = |e: gw_store::StoreError| e.to_string();
    let mut removed = 0;
    for head in store.evidence_heads().await.map_err(err)? {
        let mut old = Vec::new();
        let mut after = head.anchor_seq;
        'walk: loop {
            let page = store
                .evidence_chain(&head.chain, after, 1_000)
                .await
                .map_err(err)?;
            if page.is_empty() {
                break;
            }
            for r in page {
                if r.record.at_ms >= cutoff_ms {
                    break 'walk;
                }
                after = r.seq;
                old.push(r);
            }
        }
        let (Some(first), Some(last)) = (old.first(), old.last()) else {
            continue;
        };
        super::create_private_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = format!("{}-{}-{}.jsonl", head.chain, first.seq, last.seq);
        let path = dir.join(&name);
        // Written under a temporary name and renamed once synced: a file named like an archive
        // file is always complete.
        let partial = dir.join(format!("{name}.partial"));
        let mut file = super::create_private_file(&partial)
            .map_err(|e| format!("{}: {e}", partial.display()))?;
        for r in &old {
            let line = serde_json::json!({
                "record": r,
                "canonical": canonical(&r.record, r.seq, &r.prev_hash),
            });
            writeln!(file, "{line}").map_err(|e| e.to_string())?;
        }
        for t in store.timestamps(&head.chain).await.map_err(err)? {
            if t.seq <= last.seq {
                writeln!(file, "{}", serde_json::json!({ "timestamp": t }))
                    .map_err(|e| e.to_string())?;
            }
        }
        file.sync_all().map_err(|e| e.to_string())?;
        drop(file);
        std::fs::rename(&partial, &path).map_err(|e| format!("{}: {e}", path.display()))?;
        // A run stopped between writing its archive and removing the records left a file from
        // the same anchor: this one holds all of it and more.
        let listing = super::archive::archive_files(dir)?;
        for f in listing.chains.get(&head.chain).into_iter().flatten() {
            if f.from == first.seq && f.path != path {
                std::fs::remove_file(&f.path).map_err(|e| format!("{}: {e}", f.path.display()))?;
            }
        }
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        removed += store
            .evidence_prune(&head.chain, last.seq)
            .await
            .map_err(err)?;
    }
    Ok(removed)
}
