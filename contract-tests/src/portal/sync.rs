//! The integration services: dossier sync (`DongBoHoSoMC`), progress
//! (`CapNhatTienDoHoSoMC`) and status (`DongBoTrangThaiHoSo`).
//!
//! # Invariants
//!
//! - A batch is validated item by item and one bad item refuses the whole batch: nothing of it
//!   is stored.
//! - Existence rules (on by default): a new dossier must not exist, an update, a progress step
//!   or a status must concern a stored one.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::answer::Answer;
use super::config::PortalConfig;
use super::records::{DossierVersion, Entry, UnknownField};
use super::services::{SVC_PROGRESS, SVC_SYNC_DOSSIER};
use super::state::Inner;
use super::validate::{check_object, Issues, DOSSIER, PROGRESS, STATUS};

/// `DongBoHoSoMC`, `CapNhatTienDoHoSoMC`, `DongBoTrangThaiHoSo`: validate the whole batch, then
/// store all of it or nothing.
pub(super) fn sync(
    cfg: &PortalConfig,
    g: &mut Inner,
    seq: u64,
    service: &str,
    body: &Map<String, Value>,
    mut issues: Issues,
) -> Answer {
    let codes = &cfg.codes;
    let statuses: BTreeSet<u32> = cfg.statuses.keys().copied().collect();
    let is_updating = if service == SVC_SYNC_DOSSIER {
        match body.get("isUpdating") {
            Some(Value::Bool(b)) => Some(*b),
            other => {
                issues.errors.push(format!(
                    "isUpdating: must be true or false, got {}",
                    other.map_or("nothing".to_string(), Value::to_string)
                ));
                None
            }
        }
    } else {
        None
    };
    let spec = match service {
        SVC_SYNC_DOSSIER => DOSSIER,
        SVC_PROGRESS => PROGRESS,
        _ => STATUS,
    };
    let empty = Vec::new();
    let data = match body.get("data") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => {
            issues.errors.push("data: must not be empty".into());
            &empty
        }
        other => {
            issues.errors.push(format!(
                "data: must be an array, got {}",
                other.map_or("nothing".to_string(), Value::to_string)
            ));
            &empty
        }
    };
    let mut item_unknown: Vec<Vec<String>> = Vec::new();
    for (i, item) in data.iter().enumerate() {
        let mut it = Issues::default();
        check_object(&format!("data[{i}]"), item, spec, &statuses, &mut it);
        issues.errors.extend(it.errors);
        issues.unknown.extend(it.unknown.iter().cloned());
        item_unknown.push(it.unknown);
    }
    for p in &issues.unknown {
        g.records.unknown_fields.push(UnknownField {
            seq,
            service: service.into(),
            path: p.clone(),
        });
    }
    if cfg.strict_unknown_fields {
        for p in &issues.unknown {
            issues
                .errors
                .push(format!("{p}: unknown field (strict_unknown_fields)"));
        }
    }
    let refuse = |code: &str, what: &str, errors: &[String], unknown: &[String]| {
        let shown: Vec<&str> = errors.iter().take(10).map(String::as_str).collect();
        let more = if errors.len() > 10 {
            format!(" (and {} more)", errors.len() - 10)
        } else {
            String::new()
        };
        Answer::err(
            code,
            format!(
                "{what}; the whole batch is refused: {}{more}",
                shown.join("; ")
            ),
        )
        .result(json!({"errors": errors, "unknown_fields": unknown}))
    };
    if !issues.errors.is_empty() {
        return refuse(
            &codes.invalid,
            "Dữ liệu không hợp lệ (invalid data)",
            &issues.errors,
            &issues.unknown,
        );
    }

    let code_of = |v: &Value| {
        v.get("MaHoSo")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    if service == SVC_SYNC_DOSSIER {
        let unknown_proc: Vec<String> = data
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let p = v.get("MaTTHC").and_then(Value::as_str).unwrap_or("");
                (!g.catalogue.contains(p))
                    .then(|| format!("data[{i}].MaTTHC: procedure {p:?} is not in the catalogue"))
            })
            .collect();
        if !unknown_proc.is_empty() {
            return refuse(
                &codes.unknown_procedure,
                "Thủ tục không tồn tại (unknown procedure)",
                &unknown_proc,
                &issues.unknown,
            );
        }
        let updating = is_updating.unwrap_or(false);
        let mut in_batch = BTreeSet::new();
        let (mut dup, mut missing) = (Vec::new(), Vec::new());
        for (i, v) in data.iter().enumerate() {
            let c = code_of(v);
            let exists = g.records.dossiers.contains_key(&c) || in_batch.contains(&c);
            if !updating && exists && cfg.refuse_duplicate_create {
                dup.push(format!(
                    "data[{i}].MaHoSo: dossier {c:?} already exists (isUpdating=false)"
                ));
            }
            if updating && !exists && cfg.refuse_update_unknown {
                missing.push(format!(
                    "data[{i}].MaHoSo: dossier {c:?} does not exist (isUpdating=true)"
                ));
            }
            in_batch.insert(c);
        }
        if !dup.is_empty() {
            return refuse(
                &codes.duplicate,
                "Hồ sơ đã tồn tại (duplicate dossier)",
                &dup,
                &issues.unknown,
            );
        }
        if !missing.is_empty() {
            return refuse(
                &codes.not_found,
                "Hồ sơ không tồn tại (dossier not found)",
                &missing,
                &issues.unknown,
            );
        }
        for (i, v) in data.iter().enumerate() {
            g.records
                .dossiers
                .entry(code_of(v))
                .or_default()
                .push(DossierVersion {
                    seq,
                    index: i,
                    is_updating: updating,
                    item: v.clone(),
                    unknown_fields: item_unknown[i].clone(),
                });
        }
    } else {
        if cfg.refuse_progress_unknown {
            let missing: Vec<String> = data
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    let c = code_of(v);
                    (!g.records.dossiers.contains_key(&c))
                        .then(|| format!("data[{i}].MaHoSo: dossier {c:?} does not exist"))
                })
                .collect();
            if !missing.is_empty() {
                return refuse(
                    &codes.not_found,
                    "Hồ sơ không tồn tại (dossier not found)",
                    &missing,
                    &issues.unknown,
                );
            }
        }
        for (i, v) in data.iter().enumerate() {
            let target = if service == SVC_PROGRESS {
                &mut g.records.progress
            } else {
                &mut g.records.statuses
            };
            target.entry(code_of(v)).or_default().push(Entry {
                seq,
                index: i,
                item: v.clone(),
                unknown_fields: item_unknown[i].clone(),
            });
        }
    }
    Answer::ok(
        "Thành công",
        json!({"accepted": data.len(), "unknown_fields": issues.unknown}),
    )
}
