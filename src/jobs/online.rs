//! Online dossiers: the dossiers citizens submitted on the national portal, polled and
//! published as `dossier.online` events, so a route delivers them to the one-stop system.
//!
//! # [open]
//! The contract (CONTRACTS.md §1) names no portal operation listing online dossiers. So the
//! call is configured (`[online] service`, `cursor_param`, `cursor_field`, `code_field`,
//! `version_field`): one authenticated call on the sharing endpoint of the `dvcqg` adapter
//! `[online] from`, with `{<cursor_param>: <cursor>}` (absent on the first poll), answering a
//! list of dossier items in `result`. The portal sandbox serves such an operation
//! (`LayDanhSachHoSoTrucTuyen` with `tuNgay`), equally [open].
//!
//! # What it does
//! - Each item becomes one `dossier.online` envelope: key = `<code_field>`, version =
//!   `<version_field>` when configured and present (a whole number, or a string of one),
//!   payload = the portal's item as is. Published through [`Engine::publish`] with source
//!   `[online] source_name`.
//!
//! # Invariants
//! - The cursor is the highest `<cursor_field>` seen (a `yyyyMMddHHmmss` date, so later sorts
//!   higher), with the codes seen at exactly that value: the portal is asked from the cursor
//!   inclusive (several dossiers can share a second), and those codes are skipped, so nothing
//!   at the boundary is lost or sent twice.
//! - The cursor lives in `<data_dir>/online-<source_name>.json`, written atomically, and is
//!   saved **only after every publish was confirmed**: a crash re-sends, never loses.
//! - An item without its code or cursor field fails the poll before anything is published
//!   (the cursor could not move past it safely).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Loaded, OnlineSection};
use crate::connectors::dvcqg::DvcqgConnector;
use crate::jobs::catalogue::{portal_connector, read_state, write_state};
use crate::jobs::JobError;
use crate::model::envelope::Envelope;
use crate::runtime::Engine;

/// The event kind of an online dossier.
pub const KIND: &str = crate::model::events::EventKind::DossierOnline.as_str();

/// Where the poll is: the highest cursor value seen and the codes seen at exactly it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub at: Option<String>,
    pub codes_at: Vec<String>,
}

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PollSummary {
    /// Dossiers published.
    pub published: usize,
    /// Items already published by an earlier poll (at the cursor, or older).
    pub skipped: usize,
    /// Published events no route took: a configuration gap.
    pub unrouted: usize,
}

/// The online-dossier poll job.
pub struct OnlinePoll {
    portal: DvcqgConnector,
    cfg: OnlineSection,
    state: PathBuf,
}

/// A whole-number version from a JSON value (a number, or a string of one).
fn version_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl OnlinePoll {
    /// From the `[online]` section; `None` when there is none.
    pub fn from_config(loaded: &Loaded) -> Result<Option<OnlinePoll>, JobError> {
        let Some(c) = &loaded.config.online else {
            return Ok(None);
        };
        Ok(Some(OnlinePoll {
            portal: portal_connector(loaded, "online.from", &c.from)?,
            cfg: c.clone(),
            state: loaded
                .data_dir()
                .join(format!("online-{}.json", c.source_name)),
        }))
    }

    /// Where the cursor is kept.
    pub fn state_path(&self) -> &Path {
        &self.state
    }

    /// The saved cursor.
    pub fn cursor(&self) -> Result<Cursor, JobError> {
        read_state(&self.state)
    }

    /// One poll: fetch from the cursor, publish the new dossiers, then save the cursor.
    pub async fn poll_once(&self, engine: &Engine) -> Result<PollSummary, JobError> {
        let (summary, cursor) = self.publish_new(engine).await?;
        write_state(&self.state, &cursor)?;
        Ok(summary)
    }

    /// Fetch and publish, **without saving** the new cursor (returned).
    pub async fn publish_new(&self, engine: &Engine) -> Result<(PollSummary, Cursor), JobError> {
        let c = &self.cfg;
        let old = self.cursor()?;
        let mut fields = serde_json::Map::new();
        if let Some(at) = &old.at {
            fields.insert(c.cursor_param.clone(), Value::String(at.clone()));
        }
        let result = self.portal.sharing_call(&c.service, fields).await?;
        let items = match result {
            Value::Array(a) => a,
            Value::Null => Vec::new(),
            _ => {
                return Err(JobError::NotAList {
                    service: c.service.clone(),
                })
            }
        };
        let mut found = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let missing = |field: &str| JobError::MissingField {
                service: c.service.clone(),
                index: i,
                field: field.to_string(),
            };
            let code = text_of(item.get(&c.code_field)).ok_or_else(|| missing(&c.code_field))?;
            let at = text_of(item.get(&c.cursor_field)).ok_or_else(|| missing(&c.cursor_field))?;
            found.push((at, code, item));
        }
        found.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let mut summary = PollSummary::default();
        let mut next = old.clone();
        for (at, code, item) in found {
            let seen = match &old.at {
                Some(cur) if at < *cur => true,
                Some(cur) if at == *cur => old.codes_at.contains(&code),
                _ => false,
            };
            if seen {
                summary.skipped += 1;
                continue;
            }
            let version = c
                .version_field
                .as_ref()
                .and_then(|f| item.get(f))
                .and_then(version_of);
            let mut env = Envelope::new(KIND, code.clone(), c.source_name.clone(), item);
            env.version = version;
            let routed = engine
                .publish(&env)
                .await
                .map_err(|error| JobError::Publish {
                    kind: KIND.to_string(),
                    code: code.clone(),
                    error,
                })?;
            if routed.is_empty() {
                summary.unrouted += 1;
            }
            summary.published += 1;
            if next.at.as_ref() != Some(&at) {
                // Sorted ascending: a new value is higher than every one before.
                next.at = Some(at);
                next.codes_at.clear();
            }
            if !next.codes_at.contains(&code) {
                next.codes_at.push(code);
            }
        }
        Ok((summary, next))
    }

    /// Save a cursor [`OnlinePoll::publish_new`] returned (after its publishes).
    pub fn save(&self, cursor: &Cursor) -> Result<(), JobError> {
        write_state(&self.state, cursor)
    }

    /// Poll every `interval` until `cancel` (the first poll at once); `0s` = never. Only the
    /// instance leading the job polls ([`crate::jobs`]).
    pub async fn run_periodic(
        self,
        engine: Arc<Engine>,
        lead: crate::jobs::Singleton,
        cancel: CancellationToken,
    ) {
        if self.cfg.interval.0.is_zero() {
            return;
        }
        loop {
            match lead.tick(|| self.poll_once(&engine)).await {
                Some(Ok(s)) if s.published > 0 || s.unrouted > 0 => info!(
                    source = %self.cfg.source_name,
                    published = s.published,
                    unrouted = s.unrouted,
                    "online dossiers polled"
                ),
                None | Some(Ok(_)) => {}
                Some(Err(e)) => {
                    warn!(source = %self.cfg.source_name, "online dossier poll failed (retried next interval): {e}")
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(self.cfg.interval.0) => {}
            }
        }
        lead.step_down().await;
    }
}
