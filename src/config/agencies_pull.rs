//! `[subscriptions.NAME.pull]`: how an agency that cannot be called fetches its feed
//! (`GET /feeds/{subscription}`). Present iff the subscription's `delivery = "pull"`.
//!
//! This struct is the pull feed's own: its fields (token, signing profile, retention, page and
//! wait bounds) are checked by [`validate`], which sees this table alone; that `signing` names
//! a profile that can sign pages is checked in `references.rs`.

use serde::Deserialize;

use super::defaults;
use super::duration::Dur;
use super::secrets::SecretRef;

/// The pull side of a subscription.
#[derive(Debug, Clone, Deserialize)]
pub struct PullSection {
    /// required: the agency's bearer token, by reference (each agency its own).
    pub token: SecretRef,
    /// required: the `[signing.NAME]` profile whose key signs every page (a P-256 key: pages
    /// are signed ES256, detached JWS, `kid` = the profile's key id).
    pub signing: String,
    /// Entries are kept this long after they enter the feed. Default 30d.
    #[serde(default = "d_retention")]
    pub retention: Dur,
    /// Entries per page at most (an agency's `limit` above it is capped; its default). Default
    /// 100, at most 1000.
    #[serde(default = "d_max_limit")]
    pub max_limit: u32,
    /// The longest long-poll (`wait`) an agency may ask for. Default 30s, at most 5m.
    #[serde(default = "d_max_wait")]
    pub max_wait: Dur,
}

fn d_retention() -> Dur {
    Dur(defaults::FEED_RETENTION)
}
fn d_max_limit() -> u32 {
    defaults::FEED_MAX_LIMIT
}
fn d_max_wait() -> Dur {
    Dur(defaults::FEED_MAX_WAIT)
}

/// The largest `max_limit`: a page is read in one snapshot and sent whole.
pub const FEED_LIMIT_CAP: u32 = 1000;
/// The largest `max_wait`: a waiting agency holds one connection of the listener.
pub const FEED_WAIT_CAP: std::time::Duration = std::time::Duration::from_secs(300);

/// Check a subscription's `pull` table; `at` is its key (`subscriptions.NAME.pull`).
pub(super) fn validate(at: &str, pull: &PullSection, p: &mut impl FnMut(String, String, &str)) {
    if pull.signing.trim().is_empty() {
        p(
            format!("{at}.signing"),
            "is empty".into(),
            "name a [signing.NAME] profile with a P-256 key",
        );
    }
    if pull.retention.0 < std::time::Duration::from_secs(1) {
        p(
            format!("{at}.retention"),
            "must be at least 1s".into(),
            "use e.g. 30d",
        );
    }
    if pull.max_limit == 0 || pull.max_limit > FEED_LIMIT_CAP {
        p(
            format!("{at}.max_limit"),
            format!("{} is not from 1 to {FEED_LIMIT_CAP}", pull.max_limit),
            "use e.g. 100",
        );
    }
    if pull.max_wait.0 > FEED_WAIT_CAP {
        p(
            format!("{at}.max_wait"),
            "is above 5m".into(),
            "use e.g. 30s",
        );
    }
}
