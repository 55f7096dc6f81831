//! `gateway feed <subscription>`: what an agency's pull feed holds, for operators.
//!
//! Prints the page an agency would get for `--after N` (the same bytes, unsigned: an operator
//! reading the store is not an agency), or with `--since TIME` the cursor to page from. Reads
//! the store only: nothing is noted as fetched and no evidence is recorded (nothing leaves the
//! gateway). Exit 0 done, 1 the store failed or the cursor is gone or ahead (said why), 2 the
//! subscription is not a pull subscription of the configuration.

use std::process::ExitCode;

use gw_store::feeds::{PageAnswer, Since, MAX_PAGE};

use crate::agencies::feed::{parse_query, render_page, Bounds, Query};
use crate::config::Loaded;

/// Why the command failed, by step.
#[derive(Debug, thiserror::Error)]
pub enum FeedCommandError {
    #[error("`{0}` is not a pull subscription of this configuration")]
    NotPull(String),
    #[error("{0}")]
    Query(#[from] crate::agencies::feed::QueryError),
    #[error("store: {0}")]
    Store(#[from] gw_store::StoreError),
    #[error("{0}")]
    Open(String),
    #[error("{0}")]
    Render(#[from] crate::agencies::feed::FeedError),
    #[error("entries after cursor {after} were removed by retention: the oldest cursor served is {oldest}")]
    Gone { after: String, oldest: i64 },
    #[error("cursor {after} is above the feed's last cursor {head}")]
    Ahead { after: i64, head: i64 },
}

/// `gateway feed <subscription> [--after N] [--limit N] [--since TIME]`.
pub async fn feed(
    loaded: &Loaded,
    subscription: &str,
    after: Option<u64>,
    limit: Option<u32>,
    since: Option<&str>,
) -> ExitCode {
    let pull = loaded
        .config
        .subscriptions
        .get(subscription)
        .is_some_and(|s| s.pull.is_some());
    if !pull {
        eprintln!("{}", FeedCommandError::NotPull(subscription.into()));
        return ExitCode::from(2);
    }
    match print(loaded, subscription, after, limit, since).await {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e @ FeedCommandError::Query(_)) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn print(
    loaded: &Loaded,
    subscription: &str,
    after: Option<u64>,
    limit: Option<u32>,
    since: Option<&str>,
) -> Result<String, FeedCommandError> {
    let mut pairs = Vec::new();
    if let Some(a) = after {
        pairs.push(("after".to_string(), a.to_string()));
    }
    if let Some(l) = limit {
        pairs.push(("limit".to_string(), l.to_string()));
    }
    if let Some(s) = since {
        pairs.push(("since".to_string(), s.to_string()));
    }
    let bounds = Bounds {
        max_limit: MAX_PAGE,
        max_wait: std::time::Duration::ZERO,
    };
    let query = parse_query(&pairs, bounds)?;
    let url = loaded
        .store_url()
        .map_err(|e| FeedCommandError::Open(e.to_string()))?;
    let tls = crate::app::store_tls(loaded).map_err(|e| FeedCommandError::Open(e.to_string()))?;
    let store = gw_store::open_tls(&url, tls).await?.feeds();
    match query {
        Query::Since { at_ms, text } => match store.cursor_since(subscription, at_ms).await? {
            Since::Cursor(c) => Ok(format!(
                "cursor {c}: entries appended since {text} follow it"
            )),
            Since::Gone { oldest } => Err(FeedCommandError::Gone {
                after: format!("the one for {text}"),
                oldest,
            }),
        },
        Query::Page { after, limit, .. } => match store.page(subscription, after, limit).await? {
            PageAnswer::Page(p) => Ok(String::from_utf8(render_page(subscription, &p)?)
                .expect("a rendered page is UTF-8")),
            PageAnswer::Gone { oldest } => Err(FeedCommandError::Gone {
                after: after.to_string(),
                oldest,
            }),
            PageAnswer::Ahead { head } => Err(FeedCommandError::Ahead { after, head }),
        },
    }
}
