//! The mapping engine: vendor JSON → canonical [`Dossier`] and back, by compiled rules.
//!
//! # Invariants
//! - A value of a personal field (owner fields always, and any rule with `personal = true`)
//!   is never written into an error message: errors name the path and the rule only.
//! - Text is put in Unicode NFC on the way in, so `Nguyễn` typed precomposed or decomposed
//!   is the same canonical string.
//! - An absent value, `null` and an empty (or blank) string are the same: absent.
//! - Defaults and constants are vendor-side values: they pass the same table, date and range
//!   checks as a message value (checked once, at load).

use serde_json::{Map, Value};
use thiserror::Error;
use unicode_normalization::UnicodeNormalization;

use super::compiled::{DossierFields, Field, List, ValueKind};
use super::dates::{self, DateError, DateFormat};
use super::error::MapError;
use crate::model::{
    Attachment, Dossier, DossierStatus, Fee, Owner, OwnerKind, Personal, ProgressStep,
};

/// Why one value could not be converted by its rule: a whole sentence about the value, which
/// the caller places at its JSON path and rule ([`MapError`]). `shown` is the value as it may be
/// printed: quoted, or "the value (personal data, not shown)".
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum ValueError {
    /// Inbound, a table rule: the value is neither text nor a number.
    #[error("expected a code of table {table} (text or a number), found {found}")]
    NotACode { table: String, found: &'static str },
    /// Inbound, a table rule: the code is not in the table.
    #[error("{shown} is not in table {table} (known: {known})")]
    NotInTable {
        shown: String,
        table: String,
        known: String,
    },
    #[error("expected text, found {found}")]
    NotText { found: &'static str },
    #[error("{shown} is not a whole number")]
    NotWhole { shown: String },
    #[error("expected a whole number, found {found}")]
    NotANumber { found: &'static str },
    #[error("{shown} is below the minimum {min}")]
    BelowMin { shown: String, min: i64 },
    #[error("{shown} is above the maximum {max}")]
    AboveMax { shown: String, max: i64 },
    #[error("expected true or false, found {found}")]
    NotBool { found: &'static str },
    #[error("expected a status code, found {found}")]
    StatusNotText { found: &'static str },
    #[error("{shown} is not a dossier status (add a status table)")]
    NotStatus { shown: String },
    #[error("expected an owner kind, found {found}")]
    OwnerKindNotText { found: &'static str },
    #[error("{shown} is not citizen or organisation (add a table)")]
    NotOwnerKind { shown: String },
    #[error("expected an RFC 3339 date, found {found}")]
    DateNotText { found: &'static str },
    /// Inbound, a date rule: the value does not read in the rule's format.
    #[error("{shown} {source}")]
    Date { shown: String, source: DateError },
    /// Outbound, a table rule: no vendor code for this canonical value.
    #[error("canonical {shown} has no vendor code in table {table}")]
    NoVendorCode { shown: String, table: String },
    /// Outbound: a canonical date that does not parse (a bug upstream, never vendor input).
    #[error("canonical date {date:?} {source}")]
    CanonicalDate { date: String, source: DateError },
}

/// A converted canonical value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Str(String),
    Int(i64),
    Bool(bool),
    Status(DossierStatus),
    Owner(OwnerKind),
    /// Canonical RFC 3339 text.
    Date(String),
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// How a value is named in a message: itself, or not at all when personal.
fn shown(f: &Field, v: &Value) -> String {
    if f.personal {
        "the value (personal data, not shown)".to_string()
    } else {
        let s = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let s: String = s.chars().take(80).collect();
        format!("value {s:?}")
    }
}

fn is_absent(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        _ => false,
    }
}

fn parse_enum<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    serde_json::from_value(Value::String(name.to_string())).ok()
}

fn enum_name<T: serde::Serialize>(v: T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Convert one vendor value by a rule. The error is a whole sentence about the value.
pub(crate) fn convert_in(f: &Field, raw: &Value) -> Result<Scalar, ValueError> {
    let shown = shown(f, raw);
    let mapped;
    let v = match &f.table {
        Some(t) => {
            let key = match raw {
                Value::String(s) => s.trim().to_string(),
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(ValueError::NotACode {
                        table: t.name.clone(),
                        found: type_name(other),
                    })
                }
            };
            match t.forward.get(&key) {
                Some(c) => {
                    mapped = Value::String(c.clone());
                    &mapped
                }
                None => {
                    let known: Vec<&str> = t.forward.keys().map(String::as_str).collect();
                    return Err(ValueError::NotInTable {
                        shown,
                        table: t.name.clone(),
                        known: known.join(", "),
                    });
                }
            }
        }
        None => raw,
    };
    match f.kind {
        ValueKind::Str => match v {
            Value::String(s) => Ok(Scalar::Str(s.nfc().collect())),
            other => Err(ValueError::NotText {
                found: type_name(other),
            }),
        },
        ValueKind::Int => {
            let n = match v {
                Value::Number(n) => n
                    .as_i64()
                    .or_else(|| {
                        n.as_f64()
                            .filter(|x| x.fract() == 0.0 && x.abs() < 9e15)
                            .map(|x| x as i64)
                    })
                    .ok_or_else(|| ValueError::NotWhole {
                        shown: shown.clone(),
                    })?,
                other => {
                    return Err(ValueError::NotANumber {
                        found: type_name(other),
                    })
                }
            };
            if let Some(min) = f.min {
                if n < min {
                    return Err(ValueError::BelowMin { shown, min });
                }
            }
            if let Some(max) = f.max {
                if n > max {
                    return Err(ValueError::AboveMax { shown, max });
                }
            }
            Ok(Scalar::Int(n))
        }
        ValueKind::Bool => match v {
            Value::Bool(b) => Ok(Scalar::Bool(*b)),
            other => Err(ValueError::NotBool {
                found: type_name(other),
            }),
        },
        ValueKind::Status => {
            let s = v.as_str().ok_or_else(|| ValueError::StatusNotText {
                found: type_name(v),
            })?;
            parse_enum::<DossierStatus>(s.trim())
                .or_else(|| DossierStatus::from_national_code(s))
                .map(Scalar::Status)
                .ok_or(ValueError::NotStatus { shown })
        }
        ValueKind::OwnerKind => {
            let s = v.as_str().ok_or_else(|| ValueError::OwnerKindNotText {
                found: type_name(v),
            })?;
            parse_enum::<OwnerKind>(s.trim())
                .map(Scalar::Owner)
                .ok_or(ValueError::NotOwnerKind { shown })
        }
        ValueKind::Date => {
            let t = match &f.date {
                Some(fmt) => fmt
                    .read(v)
                    .map_err(|source| ValueError::Date { shown, source })?,
                None => {
                    let s = v.as_str().ok_or_else(|| ValueError::DateNotText {
                        found: type_name(v),
                    })?;
                    dates::parse_canonical(s)
                        .map_err(|source| ValueError::Date { shown, source })?
                }
            };
            Ok(Scalar::Date(dates::canonical(t)))
        }
    }
}

/// Convert one canonical value to the vendor's form.
fn convert_out(f: &Field, s: &Scalar) -> Result<Value, ValueError> {
    let text = |c: String| -> Result<Value, ValueError> {
        match &f.table {
            Some(t) => t
                .reverse
                .get(&c)
                .map(|v| Value::String(v.clone()))
                .ok_or_else(|| {
                    let shown = if f.personal {
                        "the value".to_string()
                    } else {
                        format!("{c:?}")
                    };
                    ValueError::NoVendorCode {
                        shown,
                        table: t.name.clone(),
                    }
                }),
            None => Ok(Value::String(c)),
        }
    };
    match s {
        Scalar::Str(v) => text(v.clone()),
        Scalar::Int(n) => Ok(Value::from(*n)),
        Scalar::Bool(b) => Ok(Value::Bool(*b)),
        Scalar::Status(st) => text(enum_name(st)),
        Scalar::Owner(k) => text(enum_name(k)),
        Scalar::Date(d) => {
            let t = dates::parse_canonical(d).map_err(|source| ValueError::CanonicalDate {
                date: d.clone(),
                source,
            })?;
            Ok(match &f.date {
                Some(fmt) => fmt.write(t),
                None => DateFormat::Rfc3339.write(t),
            })
        }
    }
}

struct In<'a> {
    origin: &'a str,
}

impl In<'_> {
    fn err(&self, path: String, what: String) -> MapError {
        MapError {
            origin: self.origin.to_string(),
            path,
            what,
        }
    }

    fn read(&self, f: &Field, obj: &Value, base: &str) -> Result<Option<Scalar>, MapError> {
        let (raw, at) = if let Some(c) = &f.constant {
            (Some(c), format!("{} (constant)", f.key))
        } else if let Some(p) = &f.path {
            let v = p.get(obj);
            let at = p.under(base);
            if is_absent(v) {
                match &f.default {
                    Some(d) => (Some(d), format!("{at} (default)")),
                    None => (None, at),
                }
            } else {
                (v, at)
            }
        } else {
            (f.default.as_ref(), format!("{} (default)", f.key))
        };
        let Some(raw) = raw else {
            if f.required {
                return Err(self.err(at, format!("required value is missing (rule {})", f.key)));
            }
            return Ok(None);
        };
        convert_in(f, raw)
            .map(Some)
            .map_err(|e| self.err(at, format!("{e} (rule {})", f.key)))
    }

    fn str(&self, f: &Field, o: &Value, b: &str) -> Result<Option<String>, MapError> {
        Ok(match self.read(f, o, b)? {
            Some(Scalar::Str(s)) => Some(s),
            _ => None,
        })
    }
    fn req_str(&self, f: &Field, o: &Value, b: &str) -> Result<String, MapError> {
        Ok(self.str(f, o, b)?.unwrap_or_default())
    }
    fn date(&self, f: &Field, o: &Value, b: &str) -> Result<Option<String>, MapError> {
        Ok(match self.read(f, o, b)? {
            Some(Scalar::Date(s)) => Some(s),
            _ => None,
        })
    }
    fn int(&self, f: &Field, o: &Value, b: &str) -> Result<i64, MapError> {
        Ok(match self.read(f, o, b)? {
            Some(Scalar::Int(n)) => n,
            _ => 0,
        })
    }
    fn bool(&self, f: &Field, o: &Value, b: &str) -> Result<bool, MapError> {
        Ok(matches!(self.read(f, o, b)?, Some(Scalar::Bool(true))))
    }
    fn status(&self, f: &Field, o: &Value, b: &str) -> Result<DossierStatus, MapError> {
        match self.read(f, o, b)? {
            Some(Scalar::Status(s)) => Ok(s),
            _ => Err(self.err(
                b.to_string(),
                format!("required value is missing (rule {})", f.key),
            )),
        }
    }

    /// Each element of a list, with its display path.
    fn items<'v, T>(
        &self,
        l: &List<T>,
        root: &'v Value,
    ) -> Result<Vec<(String, &'v Value)>, MapError> {
        let Some(p) = &l.path else {
            return Ok(Vec::new());
        };
        let at = p.to_string();
        match p.get(root) {
            None | Some(Value::Null) => {
                if l.required {
                    Err(self.err(at, format!("required list is missing (rule {})", l.key)))
                } else {
                    Ok(Vec::new())
                }
            }
            Some(Value::Array(a)) => Ok(a
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{at}[{i}]"), v))
                .collect()),
            Some(other) => Err(self.err(
                at,
                format!(
                    "expected an array, found {} (rule {})",
                    type_name(other),
                    l.key
                ),
            )),
        }
    }
}

/// Map a vendor message to a canonical dossier.
pub(crate) fn inbound(f: &DossierFields, v: &Value, origin: &str) -> Result<Dossier, MapError> {
    let c = In { origin };
    let r = "$";
    let o = &f.owner;
    let owner = Owner {
        name: Personal(c.req_str(&o.name, v, r)?),
        kind: match c.read(&o.kind, v, r)? {
            Some(Scalar::Owner(k)) => k,
            _ => OwnerKind::Citizen,
        },
        id_number: c.str(&o.id_number, v, r)?.map(Personal),
        phone: c.str(&o.phone, v, r)?.map(Personal),
        email: c.str(&o.email, v, r)?.map(Personal),
        address: c.str(&o.address, v, r)?.map(Personal),
    };
    let mut fees = Vec::new();
    for (b, it) in c.items(&f.fees, v)? {
        let i = &f.fees.item;
        fees.push(Fee {
            code: c.req_str(&i.code, it, &b)?,
            name: c.req_str(&i.name, it, &b)?,
            amount_vnd: c.int(&i.amount_vnd, it, &b)?,
            category: c.str(&i.category, it, &b)?,
            paid: c.bool(&i.paid, it, &b)?,
        });
    }
    let mut attachments = Vec::new();
    for (b, it) in c.items(&f.attachments, v)? {
        let i = &f.attachments.item;
        attachments.push(Attachment {
            id: c.req_str(&i.id, it, &b)?,
            name: c.req_str(&i.name, it, &b)?,
            component_code: c.str(&i.component_code, it, &b)?,
            url: c.req_str(&i.url, it, &b)?,
            deleted: c.bool(&i.deleted, it, &b)?,
        });
    }
    let mut progress = Vec::new();
    for (b, it) in c.items(&f.progress, v)? {
        let i = &f.progress.item;
        progress.push(ProgressStep {
            handler: c.req_str(&i.handler, it, &b)?,
            title: c.str(&i.title, it, &b)?,
            department: c.req_str(&i.department, it, &b)?,
            content: c.req_str(&i.content, it, &b)?,
            at: c.date(&i.at, it, &b)?.unwrap_or_default(),
            status: c.status(&i.status, it, &b)?,
            started_at: c.date(&i.started_at, it, &b)?,
            due_at: c.date(&i.due_at, it, &b)?,
        });
    }
    Ok(Dossier {
        code: c.req_str(&f.code, v, r)?,
        version: c.int(&f.version, v, r)?,
        procedure_code: c.req_str(&f.procedure_code, v, r)?,
        procedure_name: c.str(&f.procedure_name, v, r)?,
        field_code: c.str(&f.field_code, v, r)?,
        field_name: c.str(&f.field_name, v, r)?,
        receipt_number: c.str(&f.receipt_number, v, r)?,
        owner,
        summary: c.req_str(&f.summary, v, r)?,
        received_at: c.date(&f.received_at, v, r)?.unwrap_or_default(),
        due_at: c.date(&f.due_at, v, r)?.unwrap_or_default(),
        returned_at: c.date(&f.returned_at, v, r)?,
        finished_at: c.date(&f.finished_at, v, r)?,
        status: c.status(&f.status, v, r)?,
        handling_unit: c.req_str(&f.handling_unit, v, r)?,
        note: c.str(&f.note, v, r)?,
        fees,
        attachments,
        progress,
        channel: None,
        results: vec![],
    })
}

struct Out<'a> {
    origin: &'a str,
}

impl Out<'_> {
    fn put(&self, f: &Field, s: Option<Scalar>, out: &mut Value) -> Result<(), MapError> {
        let (Some(p), None, Some(s)) = (&f.path, &f.constant, s) else {
            return Ok(());
        };
        let err = |what: String| MapError {
            origin: self.origin.to_string(),
            path: p.to_string(),
            what: format!("{what} (rule {})", f.key),
        };
        let v = convert_out(f, &s).map_err(|e| err(e.to_string()))?;
        p.set(out, v).map_err(|e| err(e.to_string()))
    }

    fn list<T, I>(
        &self,
        l: &List<T>,
        items: &[I],
        out: &mut Value,
        each: impl Fn(&T, &I, &mut Value) -> Result<(), MapError>,
    ) -> Result<(), MapError> {
        let Some(p) = &l.path else { return Ok(()) };
        let mut arr = Vec::with_capacity(items.len());
        for it in items {
            let mut o = Value::Object(Map::new());
            each(&l.item, it, &mut o)?;
            arr.push(o);
        }
        p.set(out, Value::Array(arr)).map_err(|e| MapError {
            origin: self.origin.to_string(),
            path: p.to_string(),
            what: e.to_string(),
        })
    }
}

fn s(v: &str) -> Option<Scalar> {
    Some(Scalar::Str(v.to_string()))
}
fn os(v: &Option<String>) -> Option<Scalar> {
    v.as_deref().and_then(s)
}
fn op(v: &Option<Personal<String>>) -> Option<Scalar> {
    v.as_ref().and_then(|p| s(&p.0))
}
fn d(v: &str) -> Option<Scalar> {
    Some(Scalar::Date(v.to_string()))
}
fn od(v: &Option<String>) -> Option<Scalar> {
    v.as_deref().and_then(d)
}

/// Map a canonical dossier onto `out` (the vendor message being built).
pub(crate) fn outbound(
    f: &DossierFields,
    x: &Dossier,
    out: &mut Value,
    origin: &str,
) -> Result<(), MapError> {
    let w = Out { origin };
    w.put(&f.code, s(&x.code), out)?;
    w.put(&f.version, Some(Scalar::Int(x.version)), out)?;
    w.put(&f.procedure_code, s(&x.procedure_code), out)?;
    w.put(&f.procedure_name, os(&x.procedure_name), out)?;
    w.put(&f.field_code, os(&x.field_code), out)?;
    w.put(&f.field_name, os(&x.field_name), out)?;
    w.put(&f.receipt_number, os(&x.receipt_number), out)?;
    let o = &f.owner;
    w.put(&o.name, s(&x.owner.name.0), out)?;
    w.put(&o.kind, Some(Scalar::Owner(x.owner.kind)), out)?;
    w.put(&o.id_number, op(&x.owner.id_number), out)?;
    w.put(&o.phone, op(&x.owner.phone), out)?;
    w.put(&o.email, op(&x.owner.email), out)?;
    w.put(&o.address, op(&x.owner.address), out)?;
    w.put(&f.summary, s(&x.summary), out)?;
    w.put(&f.received_at, d(&x.received_at), out)?;
    w.put(&f.due_at, d(&x.due_at), out)?;
    w.put(&f.returned_at, od(&x.returned_at), out)?;
    w.put(&f.finished_at, od(&x.finished_at), out)?;
    w.put(&f.status, Some(Scalar::Status(x.status)), out)?;
    w.put(&f.handling_unit, s(&x.handling_unit), out)?;
    w.put(&f.note, os(&x.note), out)?;
    w.list(&f.fees, &x.fees, out, |i, fee, o| {
        w.put(&i.code, s(&fee.code), o)?;
        w.put(&i.name, s(&fee.name), o)?;
        w.put(&i.amount_vnd, Some(Scalar::Int(fee.amount_vnd)), o)?;
        w.put(&i.category, os(&fee.category), o)?;
        w.put(&i.paid, Some(Scalar::Bool(fee.paid)), o)
    })?;
    w.list(&f.attachments, &x.attachments, out, |i, a, o| {
        w.put(&i.id, s(&a.id), o)?;
        w.put(&i.name, s(&a.name), o)?;
        w.put(&i.component_code, os(&a.component_code), o)?;
        w.put(&i.url, s(&a.url), o)?;
        w.put(&i.deleted, Some(Scalar::Bool(a.deleted)), o)
    })?;
    w.list(&f.progress, &x.progress, out, |i, st, o| {
        w.put(&i.handler, s(&st.handler), o)?;
        w.put(&i.title, os(&st.title), o)?;
        w.put(&i.department, s(&st.department), o)?;
        w.put(&i.content, s(&st.content), o)?;
        w.put(&i.at, d(&st.at), o)?;
        w.put(&i.status, Some(Scalar::Status(st.status)), o)?;
        w.put(&i.started_at, od(&st.started_at), o)?;
        w.put(&i.due_at, od(&st.due_at), o)
    })?;
    Ok(())
}
