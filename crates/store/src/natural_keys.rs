//! The natural key of a dossier version (`KEY@version`) and what the store makes of it.
//!
//! # Invariants
//! - **One spelling.** [`of_version`] is the one place the key of a version is made (the
//!   gateway's envelopes use it) and [`version_of`] the one place it is read back; a natural
//!   key that [`of_version`] would not spell exactly (another form, a version written `03`) is
//!   not a version's key, and is kept as any other effect's key.
//! - **A version's key is not stored twice.** A delivered outcome whose natural key is its own
//!   version's ([`implied_by_version`]) writes no `delivered_natural_keys` row: the
//!   `delivered_versions` row raised in the same transaction already says it, and keeps saying
//!   it (versions only move forward). Every other delivered natural key (a progress step's
//!   `KEY#step-…`) gets its row, as before.
//! - So for a version's key, "delivered" means "this version or a newer one was delivered to
//!   the destination" ([`crate::Store::natural_key_done`]), and a claim for a version already
//!   there is refused as [`crate::Claim::Older`] by the version check under the claim, rather
//!   than as [`crate::Claim::Done`]: refused either way, never sent.

use crate::records::OutcomeRecord;

/// The natural key of version `version` of dossier `key`.
pub fn of_version(key: &str, version: i64) -> String {
    format!("{key}@{version}")
}

/// The (key, version) a version's natural key names, when it is one exactly as
/// [`of_version`] spells it.
pub fn version_of(natural_key: &str) -> Option<(&str, i64)> {
    let (key, v) = natural_key.rsplit_once('@')?;
    let version: i64 = v.parse().ok()?;
    (!key.is_empty() && version.to_string() == v).then_some((key, version))
}

/// Does `o`'s natural key say no more than its version (`KEY@v` of its own key and version)?
pub(crate) fn implied_by_version(o: &OutcomeRecord) -> bool {
    match (o.natural_key.as_deref().and_then(version_of), o.version) {
        (Some((key, v)), Some(version)) => key == o.key && v == version,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_key_reads_back_exactly() {
        assert_eq!(
            version_of(&of_version("G22.1-001", 7)),
            Some(("G22.1-001", 7))
        );
        assert_eq!(version_of("a@b@3"), Some(("a@b", 3)));
        for not_one in ["D#step-1-abc", "D@", "@3", "D@03", "D@+3", "D@3x", "D"] {
            assert_eq!(version_of(not_one), None, "{not_one}");
        }
    }

    #[test]
    fn only_the_own_version_is_implied() {
        let o = |key: &str, nk: Option<&str>, version: Option<i64>| OutcomeRecord {
            route: "r".into(),
            destination: "d".into(),
            envelope_id: "e".into(),
            key: key.into(),
            kind: "dossier.upserted".into(),
            natural_key: nk.map(Into::into),
            version,
            outcome: crate::Outcome::Delivered,
            attempts: 1,
            status: None,
            detail: String::new(),
            at_ms: 0,
        };
        assert!(implied_by_version(&o("D", Some("D@3"), Some(3))));
        assert!(!implied_by_version(&o("D", Some("D@3"), Some(4))));
        assert!(!implied_by_version(&o("D", Some("D@3"), None)));
        assert!(!implied_by_version(&o("E", Some("D@3"), Some(3))));
        assert!(!implied_by_version(&o("D", Some("D#step-1"), Some(3))));
        assert!(!implied_by_version(&o("D", None, Some(3))));
    }
}
