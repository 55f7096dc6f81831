//! What the indicators take from the national procedure catalogue: each procedure's statutory
//! processing time and whether it returns a paper result.
//!
//! # Invariants
//! - **The catalogue first, the configuration second.** 2.1 without `NgayHenTra` compares with
//!   the catalogue's time for the procedure when it gives one, else with `[indicators]
//!   statutory_days`, else the dossier is unjudged ([`super::formulas::Rules::statutory_days`]).
//!   4.1 counts a procedure's dossiers only when the catalogue says it returns a paper result;
//!   a procedure the catalogue does not know is taken to return one (the portal's default).
//! - **Read from a record, never guessed.** A statutory time is the `THOIGIANGIAIQUYET` of an
//!   entry of `CACHTHUCTHUCHIEN[].THOIGIAN[]` whose `DONVITINH` is in working days ("Ngày làm
//!   việc"); other units (calendar days, hours) are not converted. The channel "Trực tuyến"
//!   gives the online time, the others (direct, post) the direct time, the smallest of each.
//!   A paper result is a non-empty `KETQUATHUCHIEN` naming at least one result document.
//! - **One file, written whole.** The catalogue sync ([`crate::jobs::catalogue`]) writes the
//!   terms of every procedure it fetched to [`terms_path`] at each run (atomically); the
//!   gateway, the CLI and the demo read it when they build the rules, and the running gateway
//!   reads it again when an operator asks (`POST /api/v1/indicators/catalogue/reload`,
//!   [`super::LiveRules::reload`]). An absent file is an empty catalogue; a file that does not
//!   read back is an error, never an empty catalogue (at a reload, the terms in force stay).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

/// What the catalogue says of one procedure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcedureTerms {
    /// Working days when submitted directly (or by post); `None`: not in working days.
    pub statutory_days: Option<u32>,
    /// Working days when submitted online ("Trực tuyến").
    pub statutory_days_online: Option<u32>,
    /// Whether the procedure returns a paper result (4.1's denominator).
    pub paper_result: bool,
}

/// The terms per procedure code (`MATTHC`).
pub type Terms = BTreeMap<String, ProcedureTerms>;

/// Why the terms file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TermsError {
    #[error("cannot read the catalogue terms {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the catalogue terms {path} do not read back: {error}")]
    Malformed {
        path: PathBuf,
        error: serde_json::Error,
    },
}

/// Where the catalogue sync named `source_name` keeps the terms, beside its digests.
pub fn terms_path(data_dir: &Path, source_name: &str) -> PathBuf {
    data_dir.join(format!("catalogue-{source_name}-terms.json"))
}

/// Read the terms file; absent = no catalogue yet.
pub fn read_terms(path: &Path) -> Result<Terms, TermsError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| TermsError::Malformed {
            path: path.to_path_buf(),
            error,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Terms::new()),
        Err(error) => Err(TermsError::Read {
            path: path.to_path_buf(),
            error,
        }),
    }
}

fn folded(s: &str) -> String {
    s.nfc().collect::<String>().trim().to_lowercase()
}

fn number(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|x| u32::try_from(x).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The terms of one `LayDanhSachTTHC` record (see the invariants).
pub fn terms_of(record: &Value) -> ProcedureTerms {
    let mut direct: Option<u32> = None;
    let mut online: Option<u32> = None;
    let ways = record
        .get("CACHTHUCTHUCHIEN")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for way in ways {
        let is_online = way
            .get("KENH")
            .and_then(Value::as_str)
            .is_some_and(|k| folded(k) == "trực tuyến");
        let times = way
            .get("THOIGIAN")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for t in times {
            let working = t
                .get("DONVITINH")
                .and_then(Value::as_str)
                .is_some_and(|u| folded(u) == "ngày làm việc");
            let Some(days) = t.get("THOIGIANGIAIQUYET").and_then(number) else {
                continue;
            };
            if !working || days == 0 {
                continue;
            }
            let slot = if is_online { &mut online } else { &mut direct };
            *slot = Some(slot.map_or(days, |d| d.min(days)));
        }
    }
    let paper_result = record
        .get("KETQUATHUCHIEN")
        .and_then(Value::as_array)
        .is_some_and(|results| {
            results.iter().any(|r| {
                r.get("TENKETQUA")
                    .and_then(Value::as_str)
                    .is_some_and(|n| !n.trim().is_empty())
            })
        });
    ProcedureTerms {
        statutory_days: direct,
        statutory_days_online: online,
        paper_result,
    }
}

/// The terms of every record with a `MATTHC`.
pub fn terms_of_all<'a>(records: impl IntoIterator<Item = (&'a String, &'a Value)>) -> Terms {
    records
        .into_iter()
        .map(|(code, r)| (code.clone(), terms_of(r)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn working_days_per_channel_and_paper_result() {
        let r = json!({
            "MATTHC": "1.001193",
            "CACHTHUCTHUCHIEN": [
                {"KENH": "Trực tiếp", "THOIGIAN": [{"THOIGIANGIAIQUYET": 5, "DONVITINH": "Ngày làm việc"}]},
                {"KENH": "Trực tuyến", "THOIGIAN": [{"THOIGIANGIAIQUYET": "4", "DONVITINH": "Ngày làm việc"}]},
                {"KENH": "Dịch vụ bưu chính", "THOIGIAN": [{"THOIGIANGIAIQUYET": 6, "DONVITINH": "Ngày làm việc"}]}
            ],
            "KETQUATHUCHIEN": [{"TENKETQUA": "Giấy chứng nhận"}]
        });
        assert_eq!(
            terms_of(&r),
            ProcedureTerms {
                statutory_days: Some(5),
                statutory_days_online: Some(4),
                paper_result: true
            }
        );
    }

    #[test]
    fn other_units_are_not_converted_and_no_result_is_no_paper() {
        let r = json!({
            "CACHTHUCTHUCHIEN": [
                {"KENH": "Trực tiếp", "THOIGIAN": [
                    {"THOIGIANGIAIQUYET": 8, "DONVITINH": "Giờ"},
                    {"THOIGIANGIAIQUYET": 15, "DONVITINH": "Ngày"}
                ]},
                // Decomposed diacritics (NFD) still read as working days.
                {"KENH": "Tru\u{031B}\u{0323}c tuye\u{0302}\u{0301}n", "THOIGIAN": [
                    {"THOIGIANGIAIQUYET": 2, "DONVITINH": "ngày làm việc"}]}
            ],
            "KETQUATHUCHIEN": [{"TENKETQUA": "  "}]
        });
        assert_eq!(
            terms_of(&r),
            ProcedureTerms {
                statutory_days: None,
                statutory_days_online: Some(2),
                paper_result: false
            }
        );
        assert_eq!(terms_of(&json!({})), ProcedureTerms::default());
    }

    #[test]
    fn the_file_reads_back_and_absent_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = terms_path(dir.path(), "catalogue");
        assert!(read_terms(&path).unwrap().is_empty());
        let terms: Terms = [("1.1".to_string(), ProcedureTerms::default())].into();
        std::fs::write(&path, serde_json::to_vec(&terms).unwrap()).unwrap();
        assert_eq!(read_terms(&path).unwrap(), terms);
        std::fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            read_terms(&path),
            Err(TermsError::Malformed { .. })
        ));
    }
}
