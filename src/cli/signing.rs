//! `gateway signing list|show|cancel`: the remote-signing requests in the store.
//!
//! - `list` prints one line per request (id, state, service, format, dossier, created,
//!   deadline), newest id last, filtered by `--state`, `--service`, `--dossier`.
//! - `show ID` prints the request (no official's user id: it may be a citizen id) and every
//!   state it went through with its time, actor and detail; `--document FILE` writes the
//!   signed document of a completed request.
//! - `cancel ID` cancels a request that has not finished (the service is told where it can
//!   be); a finished request is refused with its state (exit 1).
//! - Exit codes: 0 done, 1 not found or refused, 2 usage or configuration errors.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use gw_store::signatures::{BlobKind, ListFilter, RequestState, SignatureStore, Transitioned};

/// What `gateway signing` does.
#[derive(Subcommand, Debug, Clone)]
pub enum SigningAction {
    /// One line per request.
    List {
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: PathBuf,
        /// Only requests in this state (received, hash_computed, sending, sent, waiting,
        /// signed, verified, assembled, completed, rejected, expired, failed, cancelled).
        #[arg(long)]
        state: Option<String>,
        /// Only this signer service (`[signers.NAME]`).
        #[arg(long)]
        service: Option<String>,
        /// Only this dossier's requests.
        #[arg(long)]
        dossier: Option<String>,
        /// At most this many (1000 at most).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// A request and its states with times.
    Show {
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: PathBuf,
        id: String,
        /// Write the signed document (completed requests) to this file.
        #[arg(long)]
        document: Option<PathBuf>,
    },
    /// Cancel a request that has not finished.
    Cancel {
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: PathBuf,
        id: String,
        /// Who cancels (recorded in the trail as `operator:WHO`).
        #[arg(long, default_value = "cli")]
        by: String,
    },
}

/// Why a command failed: usage (exit 2) or the request (exit 1).
enum Failure {
    Usage(String),
    Refused(String),
}

async fn open(config: &Path) -> Result<Arc<dyn SignatureStore>, Failure> {
    let loaded = crate::config::load(config).map_err(|e| Failure::Usage(e.to_string()))?;
    let url = loaded
        .store_url()
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let tls = crate::app::store_tls(&loaded).map_err(|e| Failure::Usage(e.to_string()))?;
    gw_store::signatures::open_tls(&url, tls)
        .await
        .map_err(|e| Failure::Usage(format!("store: {e}")))
}

/// Unix ms as RFC 3339, as the ops API writes times.
fn at(ms: i64) -> String {
    crate::ops::api::rfc3339(ms)
}

pub async fn run(action: SigningAction) -> ExitCode {
    let r = match action {
        SigningAction::List {
            config,
            state,
            service,
            dossier,
            limit,
        } => list(&config, state, service, dossier, limit).await,
        SigningAction::Show {
            config,
            id,
            document,
        } => show(&config, &id, document.as_deref()).await,
        SigningAction::Cancel { config, id, by } => cancel(&config, &id, &by).await,
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("signing: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Refused(m)) => {
            eprintln!("signing: {m}");
            ExitCode::from(1)
        }
    }
}

async fn list(
    config: &Path,
    state: Option<String>,
    service: Option<String>,
    dossier: Option<String>,
    limit: u32,
) -> Result<(), Failure> {
    let state = state
        .map(|s| {
            RequestState::parse(&s).ok_or_else(|| {
                Failure::Usage(format!(
                    "unknown state `{s}` ({})",
                    RequestState::ALL.map(|s| s.as_str()).join(", ")
                ))
            })
        })
        .transpose()?;
    let store = open(config).await?;
    let rows = store
        .list(ListFilter {
            state,
            service,
            dossier_code: dossier,
            after: None,
            limit,
        })
        .await
        .map_err(|e| Failure::Usage(format!("store: {e}")))?;
    println!("request_id\tstate\tservice\tformat\tdossier\tcreated\tdeadline");
    for r in &rows {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.request.request_id,
            r.state.as_str(),
            r.request.service,
            r.request.format,
            r.request.dossier_code.as_deref().unwrap_or("-"),
            at(r.request.created_ms),
            at(r.request.deadline_ms)
        );
    }
    eprintln!("{} request(s)", rows.len());
    Ok(())
}

async fn show(config: &Path, id: &str, document: Option<&Path>) -> Result<(), Failure> {
    let store = open(config).await?;
    let Some((r, trail)) = store
        .show(id)
        .await
        .map_err(|e| Failure::Usage(format!("store: {e}")))?
    else {
        return Err(Failure::Refused(format!("no signing request `{id}`")));
    };
    let q = &r.request;
    println!("request   {}", q.request_id);
    println!("state     {}", r.state.as_str());
    println!(
        "source    {} (key {})",
        q.source,
        q.dossier_key.as_deref().unwrap_or("-")
    );
    println!("dossier   {}", q.dossier_code.as_deref().unwrap_or("-"));
    println!("service   {}", q.service);
    println!("format    {}", q.format);
    println!("created   {}", at(q.created_ms));
    println!("deadline  {}", at(q.deadline_ms));
    if let Some(tx) = &r.transaction_id {
        println!(
            "transaction {tx} (sends {}, resends {}, polls {})",
            r.sends, r.resends, r.polls
        );
    }
    if let (Some(k), Some(why)) = (&r.failure_kind, &r.failure_reason) {
        println!("reason    {k}: {why}");
    }
    if let Some(loc) = &r.assembled_location {
        println!("document  {loc}");
    }
    if let Some(told) = &r.service_cancel {
        println!("service told of the cancel: {told}");
    }
    println!("states:");
    for t in &trail {
        println!(
            "  {}  {:>13} → {:<13} by {}  {}",
            at(t.at_ms),
            t.from.map(|s| s.as_str()).unwrap_or("-"),
            t.to.as_str(),
            t.actor,
            t.detail
        );
    }
    if let Some(path) = document {
        let bytes = store
            .blob(id, BlobKind::Assembled)
            .await
            .map_err(|e| Failure::Usage(format!("store: {e}")))?
            .ok_or_else(|| {
                Failure::Refused(format!(
                    "request `{id}` has no signed document (it is {})",
                    r.state.as_str()
                ))
            })?;
        std::fs::write(path, &bytes)
            .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
        eprintln!("{} bytes written to {}", bytes.len(), path.display());
    }
    Ok(())
}

async fn cancel(config: &Path, id: &str, by: &str) -> Result<(), Failure> {
    let store = open(config).await?;
    let who = format!("operator:{by}");
    match store
        .cancel(id, &who, crate::model::time::now_ms())
        .await
        .map_err(|e| Failure::Usage(format!("store: {e}")))?
    {
        Transitioned::Applied(r) => {
            println!("{id}: cancelled (was {})", prior(&*store, id).await);
            if r.service_cancel.as_deref() == Some("pending") {
                println!("the request may be on the official's phone: the service is told where it can be");
            }
            Ok(())
        }
        Transitioned::Unchanged(_) => {
            println!("{id}: already cancelled");
            Ok(())
        }
        Transitioned::Refused { current, .. } => Err(Failure::Refused(format!(
            "{id} is {}: a finished request cannot be cancelled",
            current.state.as_str()
        ))),
        Transitioned::NotFound => Err(Failure::Refused(format!("no signing request `{id}`"))),
    }
}

/// The state before the last transition, from the trail.
async fn prior(store: &dyn SignatureStore, id: &str) -> String {
    store
        .trail(id)
        .await
        .ok()
        .and_then(|t| t.last().and_then(|l| l.from))
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|| "?".into())
}
