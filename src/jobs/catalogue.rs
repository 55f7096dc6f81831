//! Catalogue sync: the portal's procedures, agencies and fields, compared with the last run;
//! only the changes are published, so a route delivers them to the one-stop system.
//!
//! # What it does
//! - Fetches `LayDanhSachTTHC`, `LayDanhMucCoQuan` and `LayDanhMucLinhVuc` (CONTRACTS.md §1,
//!   [seen]) through the `dvcqg` connector's authenticated sharing call (`[catalogue] from`).
//! - Digests each record: SHA-256 of its canonical JSON (object keys sorted, no spaces).
//! - Publishes, through [`Engine::publish`] with source `[catalogue] source_name`, one event per
//!   change: `catalogue.procedure.added` / `.changed` / `.removed` (key `MATTHC`),
//!   `catalogue.agency.*` (key `MACOQUAN`), `catalogue.field.*` (key `MALINHVUC`). The payload
//!   is the record; a removed record's payload is `{"<key field>": code}` (only digests are kept).
//!
//! # Invariants
//! - The digests of the last run live in `<data_dir>/catalogue-<source_name>.json`, written
//!   atomically (temporary file, fsync, rename). A JSON file rather than a store table: it is
//!   one small document read and replaced whole, by one job, and it survives a store migration
//!   untouched. They are saved **only after every publish was confirmed**: a crash in between
//!   re-sends the changes on the next run (the receiver sees a duplicate), never loses one.
//! - A list that cannot be fetched, or a record without its code, fails the run before anything
//!   is published: a half-read catalogue would look like removals.
//! - Runs of one job never overlap (the periodic loop awaits each run).
//! - Each complete fetch also writes what the service-quality index reads of every procedure
//!   (statutory time, paper result: [`crate::indicators::catalogue`]) to
//!   `<data_dir>/catalogue-<source_name>-terms.json`, atomically, before publishing: it is a
//!   snapshot of the catalogue as fetched, not a record of what was published.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{CatalogueSection, Loaded};
use crate::connectors::dvcqg::DvcqgConnector;
use crate::jobs::JobError;
use crate::model::envelope::Envelope;
use crate::runtime::Engine;

/// One list of the catalogue: its portal operation, event noun and key field.
#[derive(Debug, Clone, Copy)]
pub struct List {
    pub service: &'static str,
    /// The middle of the event kind: `catalogue.<noun>.added`.
    pub noun: &'static str,
    pub key_field: &'static str,
}

/// The lists synced, in order.
pub const LISTS: &[List] = &[
    List {
        service: "LayDanhSachTTHC",
        noun: "procedure",
        key_field: "MATTHC",
    },
    List {
        service: "LayDanhMucCoQuan",
        noun: "agency",
        key_field: "MACOQUAN",
    },
    List {
        service: "LayDanhMucLinhVuc",
        noun: "field",
        key_field: "MALINHVUC",
    },
];

/// What one run found (and published).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub unchanged: usize,
    /// Change events that no route took (published nowhere): a configuration gap.
    pub unrouted: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "added {}, changed {}, removed {}, unchanged {}",
            self.added, self.changed, self.removed, self.unchanged
        )?;
        if self.unrouted > 0 {
            write!(f, " ({} events taken by no route)", self.unrouted)?;
        }
        Ok(())
    }
}

/// The digests of the last run: list noun → code → SHA-256 hex.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digests(pub BTreeMap<String, BTreeMap<String, String>>);

/// The canonical JSON of a value: object keys sorted (recursively), no insignificant spaces.
pub fn canonical_json(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // serde_json's map keeps insertion order only with `preserve_order`; sorting first makes
    // the text the same either way.
    serde_json::to_string(&sorted(v)).expect("JSON values serialize")
}

/// SHA-256 hex of a record's canonical JSON.
pub fn digest(v: &Value) -> String {
    hex::encode(Sha256::digest(canonical_json(v).as_bytes()))
}

/// Read a JSON state file; absent = the default (a first run).
pub(crate) fn read_state<T: for<'de> Deserialize<'de> + Default>(
    path: &Path,
) -> Result<T, JobError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| JobError::BadState {
            path: path.to_path_buf(),
            error,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(error) => Err(JobError::ReadState {
            path: path.to_path_buf(),
            error,
        }),
    }
}

/// Write a JSON state file atomically: a temporary file in the same folder, fsync, rename.
pub(crate) fn write_state<T: Serialize>(path: &Path, state: &T) -> Result<(), JobError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|error| JobError::CreateDir {
        dir: dir.to_path_buf(),
        error,
    })?;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let bytes = serde_json::to_vec_pretty(state).expect("state serializes");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable once the folder is synced.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    };
    write().map_err(|error| {
        let _ = std::fs::remove_file(&tmp);
        JobError::WriteState {
            path: path.to_path_buf(),
            error,
        }
    })
}

/// Build the `dvcqg` connector an `[catalogue]`/`[online]` job calls through (its own session).
/// `key` is the configuration key naming the adapter (`catalogue.from`, `online.from`).
pub(crate) fn portal_connector(
    loaded: &Loaded,
    key: &'static str,
    adapter: &str,
) -> Result<DvcqgConnector, JobError> {
    let a = loaded
        .config
        .adapters
        .get(adapter)
        .ok_or_else(|| JobError::NoAdapter {
            key,
            adapter: adapter.to_string(),
        })?;
    let signing = crate::signing::Profiles::load(loaded)
        .and_then(|profiles| profiles.for_adapter(a))
        .map_err(|error| JobError::Signing { key, error })?;
    DvcqgConnector::new(adapter, a, &loaded.base, signing)
        .map_err(|error| JobError::Connector { key, error })
}

/// The catalogue sync job.
pub struct CatalogueSync {
    portal: DvcqgConnector,
    source: String,
    state: PathBuf,
    /// The procedures' terms for the indicators.
    terms: PathBuf,
    interval: std::time::Duration,
}

impl CatalogueSync {
    /// From the `[catalogue]` section; `None` when there is none.
    pub fn from_config(loaded: &Loaded) -> Result<Option<CatalogueSync>, JobError> {
        let Some(c) = &loaded.config.catalogue else {
            return Ok(None);
        };
        Self::new(loaded, c).map(Some)
    }

    pub fn new(loaded: &Loaded, c: &CatalogueSection) -> Result<CatalogueSync, JobError> {
        Ok(CatalogueSync {
            portal: portal_connector(loaded, "catalogue.from", &c.from)?,
            source: c.source_name.clone(),
            state: loaded
                .data_dir()
                .join(format!("catalogue-{}.json", c.source_name)),
            terms: crate::indicators::catalogue::terms_path(&loaded.data_dir(), &c.source_name),
            interval: c.interval.0,
        })
    }

    /// Where the digests are kept.
    pub fn state_path(&self) -> &Path {
        &self.state
    }

    /// One full run: fetch, publish the changes, then save the digests.
    pub async fn run_once(&self, engine: &Engine) -> Result<Summary, JobError> {
        let (summary, digests) = self.publish_changes(engine).await?;
        write_state(&self.state, &digests)?;
        Ok(summary)
    }

    /// Fetch and publish the changes against the saved digests, **without saving** the new
    /// ones (returned, for [`CatalogueSync::save`]). A crash after this re-sends the changes.
    pub async fn publish_changes(&self, engine: &Engine) -> Result<(Summary, Digests), JobError> {
        let old: Digests = read_state(&self.state)?;
        // Fetch everything first: a failed fetch must not publish half a catalogue.
        let mut lists = Vec::new();
        for list in LISTS {
            let result = self
                .portal
                .sharing_call(list.service, serde_json::Map::new())
                .await?;
            let Value::Array(records) = result else {
                return Err(JobError::NotAList {
                    service: list.service.to_string(),
                });
            };
            let mut by_code = BTreeMap::new();
            for (i, r) in records.into_iter().enumerate() {
                let code = match r.get(list.key_field) {
                    Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => {
                        return Err(JobError::MissingField {
                            service: list.service.to_string(),
                            index: i,
                            field: list.key_field.to_string(),
                        })
                    }
                };
                by_code.insert(code, r);
            }
            lists.push((list, by_code));
        }
        if let Some((_, procedures)) = lists.iter().find(|(l, _)| l.noun == "procedure") {
            write_state(
                &self.terms,
                &crate::indicators::catalogue::terms_of_all(procedures.iter()),
            )?;
        }
        let mut summary = Summary::default();
        let mut new = Digests::default();
        let empty = BTreeMap::new();
        for (list, records) in lists {
            let before = old.0.get(list.noun).unwrap_or(&empty);
            let mut now = BTreeMap::new();
            for (code, record) in records {
                let d = digest(&record);
                let change = match before.get(&code) {
                    None => Some("added"),
                    Some(prev) if *prev != d => Some("changed"),
                    Some(_) => None,
                };
                match change {
                    Some(what) => {
                        self.publish(engine, list, what, &code, record, &mut summary)
                            .await?;
                        if what == "added" {
                            summary.added += 1;
                        } else {
                            summary.changed += 1;
                        }
                    }
                    None => summary.unchanged += 1,
                }
                now.insert(code, d);
            }
            for code in before.keys().filter(|c| !now.contains_key(*c)) {
                let mut payload = serde_json::Map::new();
                payload.insert(list.key_field.into(), Value::String(code.clone()));
                self.publish(
                    engine,
                    list,
                    "removed",
                    code,
                    Value::Object(payload),
                    &mut summary,
                )
                .await?;
                summary.removed += 1;
            }
            new.0.insert(list.noun.to_string(), now);
        }
        Ok((summary, new))
    }

    /// Save digests [`CatalogueSync::publish_changes`] returned (after its publishes).
    pub fn save(&self, digests: &Digests) -> Result<(), JobError> {
        write_state(&self.state, digests)
    }

    async fn publish(
        &self,
        engine: &Engine,
        list: &List,
        what: &str,
        code: &str,
        payload: Value,
        summary: &mut Summary,
    ) -> Result<(), JobError> {
        let kind = format!("catalogue.{}.{what}", list.noun);
        let env = Envelope::new(kind.clone(), code, self.source.clone(), payload);
        let routed = engine
            .publish(&env)
            .await
            .map_err(|error| JobError::Publish {
                kind,
                code: code.to_string(),
                error,
            })?;
        if routed.is_empty() {
            summary.unrouted += 1;
        }
        Ok(())
    }

    /// Run every `interval` until `cancel` (the first run at once); `0s` = never. Only the
    /// instance leading the job runs it ([`crate::jobs`]).
    pub async fn run_periodic(
        self,
        engine: Arc<Engine>,
        lead: crate::jobs::Singleton,
        cancel: CancellationToken,
    ) {
        if self.interval.is_zero() {
            return;
        }
        loop {
            match lead.tick(|| self.run_once(&engine)).await {
                None => {}
                Some(Ok(s)) => info!(source = %self.source, "catalogue sync: {s}"),
                Some(Err(e)) => {
                    warn!(source = %self.source, "catalogue sync failed (retried next interval): {e}")
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
        lead.step_down().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": [{"y": 2, "x": 1}]});
        let b = json!({"a": [{"x": 1, "y": 2}], "b": 1});
        assert_eq!(canonical_json(&a), r#"{"a":[{"x":1,"y":2}],"b":1}"#);
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&json!({"a": [], "b": 1})));
    }

    #[test]
    fn state_files_are_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("gw-cat-{}", uuid::Uuid::now_v7()));
        let path = dir.join("catalogue-x.json");
        assert_eq!(read_state::<Digests>(&path).unwrap(), Digests::default());
        let mut d = Digests::default();
        d.0.entry("procedure".into())
            .or_default()
            .insert("1.000001".into(), "ab".into());
        write_state(&path, &d).unwrap();
        assert_eq!(read_state::<Digests>(&path).unwrap(), d);
        std::fs::write(&path, b"{not json").unwrap();
        let e = read_state::<Digests>(&path).unwrap_err();
        assert!(matches!(e, JobError::BadState { .. }), "{e}");
        assert!(e.to_string().contains("move it away"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
