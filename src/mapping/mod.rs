//! Declarative adapters for one-stop systems: a folder of configuration, not Rust code, says
//! how a vendor's JSON becomes the canonical [`Dossier`] and back.
//!
//! # Invariants
//! - An adapter folder is loaded and compiled once ([`Adapter::load`]): every JSON path is
//!   parsed, every date format compiled, every table inverted, every default and constant
//!   converted, every schema compiled then. No message ever meets a rule that was not checked.
//! - Loading reports **every** problem of the folder, each as
//!   `adapters/x/mapping.toml:fields.owner.name.path: what is wrong: how to fix it`;
//!   unknown keys are problems (like the gateway config). As there, a value of the wrong
//!   TOML type stops that one file at that value; it is reported at its key.
//! - A mapping error names the origin (sample file name or `inbound request`), the JSON path
//!   and the rule: `sample.json: $.trangThai: value "XYZ" is not in table status (known: …)
//!   (rule fields.status)`. Values of personal fields (owner fields always, any rule marked
//!   `personal = true`) and values in schema errors are never printed.
//! - Canonical dates are RFC 3339 at +07:00; a vendor date without offset is Vietnam time
//!   (see [`dates`]). Text is NFC.
//! - For every valid sample, canonical → vendor → canonical gives the same dossier (tested).
//!
//! # Folder
//! ```text
//! adapters/<name>/
//!   adapter.toml       name, description, the body limit (see [`def`]; endpoints, secrets and
//!                      rates are the gateway config's, not the folder's)
//!   mapping.toml       the field mapping (below)
//!   procedures.toml    optional: local procedure code → national code
//!   schemas/*.json     JSON Schemas of the vendor's messages, named by file stem
//!   samples/*.json     valid vendor messages
//!   samples/invalid/*  invalid ones, each with `<file stem>.expect`: a fragment of its error
//! ```
//!
//! # `mapping.toml`
//! ```toml
//! [message]
//! kind_path = "loaiThongDiep"        # optional: where the message says what it is
//! default_kind = "dossier_upserted"  # kind when kind_path is absent from a message (or unset)
//! schema = "dossier"                 # optional: schemas/dossier.json checks every inbound message
//! [message.kinds]                    # vendor code at kind_path → dossier_upserted | progress | status
//! HO_SO = "dossier_upserted"
//!
//! [tables.status]                    # value tables: vendor code → canonical value
//! DA_TIEP_NHAN = "received"          # status values: the snake_case names of DossierStatus
//!                                    # (without a table a status field also takes those names
//!                                    # or the national codes "1"…"10")
//!
//! [fields.code]                      # one rule per canonical field (names of model::Dossier)
//! path = "maHoSo"                    # JSON path in the vendor message (see [`path`]): the rename
//! required = true                    # absent (missing, null or blank) is an error; fields the
//!                                    # model cannot do without are always required
//! default = "…"                      # vendor-side value used when absent
//! constant = "…"                     # vendor-side value always used; not read, not written back
//! table = "status"                   # translate through [tables.status]
//! date = "dd/MM/yyyy HH:mm:ss"       # date fields: vendor format (see [`dates`]); absent = rfc3339
//! personal = true                    # never print the value (owner fields are always personal)
//! min = 0                            # numbers: bounds (inclusive)
//! max = 1000000000
//!
//! [fields.owner.name]                # owner: name, kind, id_number, phone, email, address
//! [fields.fees]                      # lists: fees, attachments, progress
//! path = "phiLePhi[]"                # the vendor array (a trailing [] is optional)
//! required = false                   # a missing array is an empty list unless required
//! [fields.fees.item.amount_vnd]      # item rules: paths relative to one array element
//! path = "soTien"                    # fees: code, name, amount_vnd, category, paid
//!                                    # attachments: id, name, component_code, url, deleted
//!                                    # progress: handler, title, department, content, at,
//!                                    #           status, started_at, due_at
//! [reverse]                          # canonical → vendor (online dossiers to the one-stop system)
//! schema = "dossier"                 # the produced message must satisfy it
//! kind = "HO_SO"                     # written at message.kind_path
//! [reverse.constants]                # vendor path → fixed value written
//! nguonHoSo = "DVCQG"
//! ```
//! The reverse direction uses the same rules backwards: each rule with a `path` (and no
//! `constant`) writes its canonical value there, through the inverted table and the date
//! format; absent optional values are not written; lists are always written (maybe empty).
//! A table that maps two vendor codes to one canonical value is refused (ambiguous reverse).
//!
//! # Message kinds
//! Every vendor message is a full dossier snapshot; its kind says why it was sent (a new or
//! changed dossier, a processing step, a status change). Partial messages (only a code and a
//! step) are not supported: the same required rules apply to every kind.
//!
//! # `procedures.toml`
//! ```toml
//! strict = true                      # default false: an unknown local code is an error
//! [codes]                            # local procedure code → national (DVCQG MaTTHC)
//! "HT-KS-01" = "1.001193"
//! ```
//!
//! # Files
//! Each file imports only files listed before it; this one declares them, re-exports their
//! public items and holds [`Adapter`] (loading a folder, mapping both ways), and none imports
//! it back.
//! - `error.rs`: [`LoadProblem`], [`MapError`], [`MappingError`].
//! - `kind.rs`: [`InboundKind`].
//! - [`path`], [`dates`], [`def`]: JSON paths, date formats, `adapter.toml`.
//! - [`schema`]: the folder's JSON Schemas ([`Schemas`]).
//! - [`compiled`]: the compiled rules ([`Mapping`]), plain data.
//! - `engine.rs`: applies compiled rules to a message, both ways.
//! - [`rules`]: `mapping.toml` and its compiler (which test-converts defaults with the engine).

pub mod compiled;
pub mod dates;
pub mod def;
mod engine;
mod error;
mod kind;
pub mod path;
pub mod rules;
pub mod schema;

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use compiled::Mapping;
pub use def::AdapterDef;
pub use error::{LoadProblem, MapError, MappingError};
pub use kind::InboundKind;
pub use schema::Schemas;

use crate::model::Dossier;

/// A mapped vendor message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub kind: InboundKind,
    pub dossier: Dossier,
    /// The dossier's version at the source (= `dossier.version`).
    pub version: i64,
}

/// The optional procedure-code table (`procedures.toml`).
#[derive(Debug, Clone, Default)]
pub struct Procedures {
    pub strict: bool,
    pub codes: BTreeMap<String, String>,
}

/// A loaded, compiled adapter folder.
#[derive(Debug)]
pub struct Adapter {
    /// The folder name.
    pub name: String,
    pub def: AdapterDef,
    pub mapping: Mapping,
    /// Absent when the folder has no `procedures.toml`.
    pub procedures: Option<Procedures>,
    schemas: Schemas,
}

fn problem(file: &str, key: &str, what: impl Into<String>, fix: impl Into<String>) -> LoadProblem {
    LoadProblem {
        file: file.to_string(),
        key: key.to_string(),
        what: what.into(),
        fix: fix.into(),
    }
}

/// The `[table]` and `key` a byte offset of a TOML text falls in, for messages.
fn locate_key(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let mut table = String::new();
    for line in before.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            table = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
    }
    let line = before.rsplit('\n').next().unwrap_or("");
    let key = line.split('=').next().unwrap_or("").trim();
    let key = if line.contains('=') { key } else { "" };
    match (table.is_empty(), key.is_empty()) {
        (true, true) => format!("line {}", before.lines().count().max(1)),
        (true, false) => key.to_string(),
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

/// Parse a TOML file into `T`, collecting unknown keys and the type error, if any. `fix_for`
/// may give a file's own fix for an unknown key (for `adapter.toml`: where a removed key's job
/// is done now, see [`def::RETIRED`]).
fn parse_toml<T: DeserializeOwned>(
    path: &Path,
    file: &str,
    fix_for: fn(&str) -> Option<&'static str>,
    problems: &mut Vec<LoadProblem>,
) -> Option<T> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(problem(
                file,
                "-",
                format!("cannot read: {e}"),
                "create the file (see src/mapping docs)",
            ));
            return None;
        }
    };
    let de = match toml::de::Deserializer::parse(&text) {
        Ok(d) => d,
        Err(e) => {
            let key = e
                .span()
                .map(|s| locate_key(&text, s.start))
                .unwrap_or_else(|| "-".into());
            problems.push(problem(
                file,
                &key,
                format!("not valid TOML: {}", e.message()),
                "fix the syntax",
            ));
            return None;
        }
    };
    let mut unknown = Vec::new();
    let parsed: Result<T, _> = serde_ignored::deserialize(de, |p| unknown.push(p.to_string()));
    for k in unknown {
        // serde_ignored marks each Option it passes through with a `?` segment.
        let k = k
            .split('.')
            .filter(|s| *s != "?")
            .collect::<Vec<_>>()
            .join(".");
        let fix = if let Some(why) = fix_for(&k) {
            why
        } else if k.starts_with("fields.")
            && ["fees.", "attachments.", "progress."]
                .iter()
                .any(|l| k.contains(l))
        {
            "remove it or check its spelling; item rules go under [fields.LIST.item.NAME]"
        } else {
            "remove it or check its spelling against the format in src/mapping docs"
        };
        problems.push(problem(file, &k, "unknown key", fix));
    }
    match parsed {
        Ok(v) => Some(v),
        Err(e) => {
            let key = e
                .span()
                .map(|s| locate_key(&text, s.start))
                .unwrap_or_else(|| "-".into());
            problems.push(problem(
                file,
                &key,
                format!("invalid value: {}", e.message()),
                "see the format in src/mapping docs",
            ));
            None
        }
    }
}

impl Adapter {
    /// Load and compile an adapter folder, reporting every problem found.
    pub fn load(dir: &Path) -> Result<Adapter, Vec<LoadProblem>> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let shown = dir.display().to_string();
        let f = |n: &str| format!("{}/{n}", shown.trim_end_matches('/'));
        let mut problems = Vec::new();

        let def_file = f("adapter.toml");
        let def: Option<AdapterDef> = parse_toml(
            &dir.join("adapter.toml"),
            &def_file,
            |k| Some(def::unknown_key_fix(k)),
            &mut problems,
        );
        if let Some(d) = &def {
            for (k, w, fix) in def::validate(d, &name) {
                problems.push(problem(&def_file, &k, w, fix));
            }
        }

        let (schemas, sp) = Schemas::load(&dir.join("schemas"));
        for (file, w, fix) in sp {
            problems.push(problem(&file, "-", w, fix));
        }

        let map_file = f("mapping.toml");
        let mdef: Option<rules::MappingDef> = parse_toml(
            &dir.join("mapping.toml"),
            &map_file,
            |_| None,
            &mut problems,
        );
        let mapping = mdef.and_then(|m| match rules::compile(&m, &schemas.names()) {
            Ok(c) => Some(c),
            Err(ps) => {
                for (k, w, fix) in ps {
                    problems.push(problem(&map_file, &k, w, fix));
                }
                None
            }
        });

        let proc_path = dir.join("procedures.toml");
        let procedures = if proc_path.exists() {
            let pf = f("procedures.toml");
            parse_toml::<rules::ProceduresDef>(&proc_path, &pf, |_| None, &mut problems).map(|p| {
                for (local, national) in &p.codes {
                    if national.trim().is_empty() {
                        problems.push(problem(
                            &pf,
                            &format!("codes.{local}"),
                            "empty national code",
                            "give the DVCQG procedure code",
                        ));
                    }
                }
                Procedures {
                    strict: p.strict,
                    codes: p.codes,
                }
            })
        } else {
            None
        };

        match (def, mapping) {
            (Some(def), Some(mapping)) if problems.is_empty() => Ok(Adapter {
                name,
                def,
                mapping,
                procedures,
                schemas,
            }),
            _ => Err(problems),
        }
    }

    /// The national procedure code of a local one, when a procedure table is configured.
    pub fn national_procedure_code(&self, local: &str) -> Option<&str> {
        self.procedures
            .as_ref()?
            .codes
            .get(local.trim())
            .map(String::as_str)
    }

    /// Check a message against the adapter's schema `schema` (a `schemas/` file stem).
    pub fn validate_schema(&self, schema: &str, v: &Value, origin: &str) -> Result<(), MapError> {
        self.schemas.check(schema, v, origin)
    }

    /// Parse a request body, then map it ([`Adapter::to_canonical`]).
    pub fn parse_inbound(&self, body: &[u8], origin: &str) -> Result<Inbound, MapError> {
        let err = |what: String| MapError {
            origin: origin.to_string(),
            path: "$".into(),
            what,
        };
        if body.len() > self.def.limits.max_body_bytes {
            return Err(err(format!(
                "the message is {} bytes, above limits.max_body_bytes {}",
                body.len(),
                self.def.limits.max_body_bytes
            )));
        }
        // serde_json's message names the line and column, never the text.
        let v: Value = serde_json::from_slice(body).map_err(|e| err(format!("not JSON: {e}")))?;
        self.to_canonical(&v, origin)
    }

    /// Map a vendor message to the canonical dossier: kind, schema, rules, procedure table.
    pub fn to_canonical(&self, v: &Value, origin: &str) -> Result<Inbound, MapError> {
        let m = &self.mapping;
        let err = |path: String, what: String| MapError {
            origin: origin.to_string(),
            path,
            what,
        };
        if !v.is_object() {
            return Err(err("$".into(), "expected a JSON object at the top".into()));
        }
        let kind = match &m.kind_path {
            Some(p) => match p.get(v) {
                None | Some(Value::Null) => m.default_kind.ok_or_else(|| {
                    err(
                        p.to_string(),
                        "the message kind is missing (rule message.kind_path)".into(),
                    )
                })?,
                Some(Value::String(code)) => *m.kinds.get(code.trim()).ok_or_else(|| {
                    let known: Vec<&str> = m.kinds.keys().map(String::as_str).collect();
                    err(
                        p.to_string(),
                        format!(
                            "value {code:?} is not in table message.kinds (known: {})",
                            known.join(", ")
                        ),
                    )
                })?,
                Some(_) => {
                    return Err(err(
                        p.to_string(),
                        "expected the message kind as text".into(),
                    ))
                }
            },
            None => m.default_kind.unwrap_or(InboundKind::DossierUpserted),
        };
        if let Some(s) = &m.inbound_schema {
            self.schemas.check(s, v, origin)?;
        }
        let dossier = engine::inbound(&m.dossier, v, origin)?;
        if let Some(p) = &self.procedures {
            if p.strict && !p.codes.contains_key(&dossier.procedure_code) {
                let at = m
                    .dossier
                    .procedure_code
                    .path
                    .as_ref()
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "fields.procedure_code".into());
                return Err(err(
                    at,
                    format!(
                        "procedure code {:?} is not in procedures.toml (strict): add it to [codes]",
                        dossier.procedure_code
                    ),
                ));
            }
        }
        Ok(Inbound {
            kind,
            version: dossier.version,
            dossier,
        })
    }

    /// Map a canonical dossier to the vendor's message (online dossiers sent to the one-stop
    /// system), checked against `reverse.schema`.
    pub fn from_canonical(&self, d: &Dossier) -> Result<Value, MapError> {
        let m = &self.mapping;
        let origin = format!("reverse mapping of dossier {}", d.code);
        let mut out = Value::Object(serde_json::Map::new());
        let set_err = |e: path::PathError| MapError {
            origin: origin.clone(),
            path: "$".into(),
            what: e.to_string(),
        };
        if let (Some(p), Some(k)) = (&m.kind_path, &m.reverse_kind) {
            p.set(&mut out, Value::String(k.clone())).map_err(set_err)?;
        }
        for (p, v) in &m.reverse_constants {
            p.set(&mut out, v.clone()).map_err(set_err)?;
        }
        engine::outbound(&m.dossier, d, &mut out, &origin)?;
        if let Some(s) = &m.reverse_schema {
            self.schemas.check(s, &out, &origin)?;
        }
        Ok(out)
    }
}

/// What `gateway map ADAPTER SAMPLE.json` prints: the canonical dossier, then the reverse
/// mapping back to the vendor's JSON (schema-checked).
pub fn map_command(adapter_dir: &Path, sample: &Path) -> Result<String, MappingError> {
    let adapter = Adapter::load(adapter_dir).map_err(MappingError::Load)?;
    let origin = sample
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| sample.display().to_string());
    let body = std::fs::read(sample).map_err(|e| {
        MappingError::Map(MapError {
            origin: origin.clone(),
            path: "$".into(),
            what: format!("cannot read the sample: {e}"),
        })
    })?;
    let inbound = adapter
        .parse_inbound(&body, &origin)
        .map_err(MappingError::Map)?;
    let back = adapter
        .from_canonical(&inbound.dossier)
        .map_err(MappingError::Map)?;
    let mut out = String::new();
    out.push_str(&format!(
        "# {origin}: {} (version {}), adapter {}\n",
        inbound.kind.envelope_kind(),
        inbound.version,
        adapter.name
    ));
    if let Some(p) = &adapter.procedures {
        let national = adapter
            .national_procedure_code(&inbound.dossier.procedure_code)
            .unwrap_or("(not in procedures.toml)");
        out.push_str(&format!(
            "# procedure {} → national {national}{}\n",
            inbound.dossier.procedure_code,
            if p.strict { " (strict)" } else { "" }
        ));
    }
    out.push_str("## canonical dossier\n");
    out.push_str(&serde_json::to_string_pretty(&inbound.dossier).unwrap_or_default());
    out.push('\n');
    match adapter.mapping.reverse_schema() {
        Some(s) => out.push_str(&format!(
            "## back to the one-stop system (schema {s}: valid)\n"
        )),
        None => out.push_str("## back to the one-stop system (no reverse schema configured)\n"),
    }
    out.push_str(&serde_json::to_string_pretty(&back).unwrap_or_default());
    out.push('\n');
    Ok(out)
}
