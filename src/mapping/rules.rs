//! `mapping.toml` and `procedures.toml`: the serde shapes, and their compilation into the
//! rules the engine runs (paths parsed, tables inverted, date formats compiled, defaults and
//! constants converted once) at load time. The file format is documented in `mapping/mod.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::dates::DateFormat;
use super::kind::InboundKind;
use super::path::JsonPath;

/// One field rule, as written.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuleDef {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub default: Option<Value>,
    #[serde(default)]
    pub constant: Option<Value>,
    #[serde(default)]
    pub table: Option<String>,
    #[serde(default)]
    pub date: Option<String>,
    #[serde(default)]
    pub personal: bool,
    #[serde(default)]
    pub min: Option<i64>,
    #[serde(default)]
    pub max: Option<i64>,
}

/// A list rule (`fees`, `attachments`, `progress`), as written.
#[derive(Debug, Clone, Deserialize)]
pub struct ListDef<T> {
    pub path: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub item: T,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct OwnerDef {
    pub name: Option<RuleDef>,
    pub kind: Option<RuleDef>,
    pub id_number: Option<RuleDef>,
    pub phone: Option<RuleDef>,
    pub email: Option<RuleDef>,
    pub address: Option<RuleDef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct FeeDef {
    pub code: Option<RuleDef>,
    pub name: Option<RuleDef>,
    pub amount_vnd: Option<RuleDef>,
    pub category: Option<RuleDef>,
    pub paid: Option<RuleDef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AttachmentDef {
    pub id: Option<RuleDef>,
    pub name: Option<RuleDef>,
    pub component_code: Option<RuleDef>,
    pub url: Option<RuleDef>,
    pub deleted: Option<RuleDef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StepDef {
    pub handler: Option<RuleDef>,
    pub title: Option<RuleDef>,
    pub department: Option<RuleDef>,
    pub content: Option<RuleDef>,
    pub at: Option<RuleDef>,
    pub status: Option<RuleDef>,
    pub started_at: Option<RuleDef>,
    pub due_at: Option<RuleDef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct FieldsDef {
    pub code: Option<RuleDef>,
    pub version: Option<RuleDef>,
    pub procedure_code: Option<RuleDef>,
    pub procedure_name: Option<RuleDef>,
    pub field_code: Option<RuleDef>,
    pub field_name: Option<RuleDef>,
    pub receipt_number: Option<RuleDef>,
    #[serde(default)]
    pub owner: OwnerDef,
    pub summary: Option<RuleDef>,
    pub received_at: Option<RuleDef>,
    pub due_at: Option<RuleDef>,
    pub returned_at: Option<RuleDef>,
    pub finished_at: Option<RuleDef>,
    pub status: Option<RuleDef>,
    pub handling_unit: Option<RuleDef>,
    pub note: Option<RuleDef>,
    pub fees: Option<ListDef<FeeDef>>,
    pub attachments: Option<ListDef<AttachmentDef>>,
    pub progress: Option<ListDef<StepDef>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MessageDef {
    #[serde(default)]
    pub kind_path: Option<String>,
    #[serde(default)]
    pub kinds: BTreeMap<String, String>,
    #[serde(default)]
    pub default_kind: Option<String>,
    #[serde(default)]
    pub schema: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReverseDef {
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub constants: BTreeMap<String, Value>,
}

/// The whole `mapping.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MappingDef {
    #[serde(default)]
    pub message: MessageDef,
    #[serde(default)]
    pub tables: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    pub fields: FieldsDef,
    #[serde(default)]
    pub reverse: ReverseDef,
}

/// The whole `procedures.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProceduresDef {
    #[serde(default)]
    pub strict: bool,
    #[serde(default)]
    pub codes: BTreeMap<String, String>,
}

use super::compiled::*;

/// Compilation problems: `(key, what, fix)`.
pub(crate) type Problems = Vec<(String, String, String)>;

struct Ctx<'a> {
    tables: &'a BTreeMap<String, Arc<Table>>,
    problems: Problems,
}

impl Ctx<'_> {
    fn add(&mut self, key: &str, what: impl std::fmt::Display, fix: &str) {
        self.problems
            .push((key.to_string(), what.to_string(), fix.to_string()));
    }

    /// `model_required`: the canonical model cannot do without this value.
    fn field(
        &mut self,
        key: &str,
        def: Option<&RuleDef>,
        kind: ValueKind,
        model_required: bool,
        always_personal: bool,
    ) -> Field {
        let key = format!("fields.{key}");
        let mut f = Field {
            key: key.clone(),
            kind,
            path: None,
            required: model_required,
            default: None,
            constant: None,
            table: None,
            date: None,
            personal: always_personal,
            min: None,
            max: None,
        };
        let Some(d) = def else {
            if model_required {
                self.add(
                    &key,
                    "no rule, but the canonical dossier needs this value",
                    "add a rule with `path`, `default` or `constant`",
                );
            }
            return f;
        };
        f.required |= d.required;
        f.personal |= d.personal;
        f.min = d.min;
        f.max = d.max;
        self.rule_path(&key, d, &mut f);
        self.rule_sources(&key, d);
        if let Some(t) = &d.table {
            f.table = self.rule_table(&key, t, kind);
        }
        if let Some(df) = &d.date {
            f.date = self.rule_date(&key, df, kind);
        }
        if (d.min.is_some() || d.max.is_some()) && kind != ValueKind::Int {
            self.add(&key, "`min`/`max` apply only to numbers", "remove them");
        }
        self.rule_values(&key, d, &f);
        f.default = d.default.clone();
        f.constant = d.constant.clone();
        f
    }

    /// A rule's `path`: one value, never a `[]` list.
    fn rule_path(&mut self, key: &str, d: &RuleDef, f: &mut Field) {
        let Some(p) = &d.path else { return };
        match JsonPath::parse(p) {
            Ok(jp) if jp.has_each() => self.add(
                &format!("{key}.path"),
                format!("`{p}` holds `[]`, but this field is one value"),
                "point at one value; lists are the fees, attachments and progress rules",
            ),
            Ok(jp) => f.path = Some(jp),
            Err(e) => self.add(
                &format!("{key}.path"),
                e,
                "write a path like hoSo.chuHoSo.hoTen or a[0].b",
            ),
        }
    }

    /// Where a rule's value comes from: `path`, `default` and `constant` in a combination
    /// that means one thing.
    fn rule_sources(&mut self, key: &str, d: &RuleDef) {
        match (&d.path, &d.constant) {
            (Some(_), Some(_)) => self.add(
                key,
                "has both `path` and `constant`",
                "a constant is not read from the message: keep one of them",
            ),
            (None, None) if d.default.is_none() => self.add(
                key,
                "has neither `path`, `default` nor `constant`",
                "add `path` (where the vendor puts it), or remove the rule",
            ),
            _ => {}
        }
        if d.constant.is_some() && d.default.is_some() {
            self.add(key, "has both `constant` and `default`", "keep one of them");
        }
    }

    /// A rule's `table`: it exists, suits the field, and (for statuses and owner kinds) maps
    /// only to canonical values the model has.
    fn rule_table(&mut self, key: &str, t: &str, kind: ValueKind) -> Option<Arc<Table>> {
        let Some(tb) = self.tables.get(t).cloned() else {
            self.add(
                &format!("{key}.table"),
                format!("no table `{t}`"),
                "define it under [tables.NAME], or fix the name",
            );
            return None;
        };
        if matches!(kind, ValueKind::Int | ValueKind::Bool | ValueKind::Date) {
            self.add(
                &format!("{key}.table"),
                "this field is not text or a code",
                "remove `table`",
            );
        }
        let allowed: &[&str] = match kind {
            ValueKind::Status => &STATUS_NAMES,
            ValueKind::OwnerKind => &["citizen", "organisation"],
            _ => &[],
        };
        if !allowed.is_empty() {
            for (vendor, canon) in &tb.forward {
                if !allowed.contains(&canon.as_str()) {
                    let what = match kind {
                        ValueKind::Status => "a dossier status",
                        _ => "an owner kind",
                    };
                    let k = format!("tables.{t}.{vendor}");
                    let w = format!("`{canon}` is not {what} (the table is used by {key})");
                    // A table used by several fields is reported once.
                    if !self.problems.iter().any(|(pk, _, _)| *pk == k) {
                        self.add(&k, w, &format!("use one of {}", allowed.join(", ")));
                    }
                }
            }
        }
        Some(tb)
    }

    /// A rule's `date` format: on a date field, and compilable.
    fn rule_date(&mut self, key: &str, df: &str, kind: ValueKind) -> Option<DateFormat> {
        if kind != ValueKind::Date {
            self.add(
                &format!("{key}.date"),
                "this field is not a date",
                "remove `date`",
            );
        }
        match DateFormat::parse(df) {
            Ok(fm) => Some(fm),
            Err(e) => {
                self.add(
                    &format!("{key}.date"),
                    e,
                    "see the date formats in the mapping docs",
                );
                None
            }
        }
    }

    /// Defaults and constants are vendor-side values and pass the same conversion as a
    /// message value; check them now so a bad one fails at load, not on a message.
    fn rule_values(&mut self, key: &str, d: &RuleDef, f: &Field) {
        for (what, v) in [("default", &d.default), ("constant", &d.constant)] {
            if let Some(v) = v {
                if let Err(e) = super::engine::convert_in(f, v) {
                    self.add(
                        &format!("{key}.{what}"),
                        format!("is not usable: {e}"),
                        "fix the value",
                    );
                }
            }
        }
    }

    fn list<D, T>(
        &mut self,
        key: &str,
        def: Option<&ListDef<D>>,
        item: impl FnOnce(&mut Self, Option<&D>) -> T,
    ) -> List<T> {
        let k = format!("fields.{key}");
        let mut path = None;
        if let Some(d) = def {
            match JsonPath::parse(&d.path) {
                Ok(p) => {
                    let p = p.without_trailing_each();
                    if p.has_each() {
                        self.add(
                            &format!("{k}.path"),
                            "only a trailing `[]` is allowed",
                            "write a path like phiLePhi[] or hoSo.phiLePhi",
                        );
                    }
                    path = Some(p);
                }
                Err(e) => self.add(&format!("{k}.path"), e, "write a path like phiLePhi[]"),
            }
        }
        let item = item(self, def.map(|d| &d.item));
        List {
            key: k,
            path,
            required: def.is_some_and(|d| d.required),
            item,
        }
    }
}

pub(crate) const STATUS_NAMES: [&str; 10] = [
    "newly_registered",
    "received",
    "not_accepted",
    "in_processing",
    "supplement_requested",
    "financial_obligation_requested",
    "withdrawn_by_citizen",
    "processing_stopped",
    "processed",
    "result_returned",
];

fn parse_kind(s: &str) -> Option<InboundKind> {
    match s {
        "dossier_upserted" => Some(InboundKind::DossierUpserted),
        "progress" => Some(InboundKind::Progress),
        "status" => Some(InboundKind::Status),
        _ => None,
    }
}

/// Compile a parsed `mapping.toml`. `schemas`: the names under `schemas/`.
/// Compile a mapping, every problem reported. In steps: the value tables, the message kinds,
/// the schemas named, the reverse direction's own settings, then every field rule (owner,
/// lists, dossier), in the order problems have always been reported.
pub(crate) fn compile(def: &MappingDef, schemas: &[String]) -> Result<Mapping, Problems> {
    let (tables, problems) = compile_tables(def);
    let mut cx = Ctx {
        tables: &tables,
        problems,
    };
    let m = &def.message;
    let (kind_path, kinds, default_kind) = message_kinds(&mut cx, m);
    check_schemas(&mut cx, def, schemas);
    let reverse_constants = reverse_rules(&mut cx, def, kind_path.is_some());
    let dossier = dossier_fields(&mut cx, &def.fields);
    if !cx.problems.is_empty() {
        return Err(cx.problems);
    }
    Ok(Mapping {
        kind_path,
        kinds,
        default_kind,
        inbound_schema: m.schema.clone(),
        reverse_schema: def.reverse.schema.clone(),
        reverse_kind: def.reverse.kind.clone(),
        reverse_constants,
        dossier,
    })
}

/// `[tables.NAME]`, each inverted for the reverse direction; a table mapping two vendor codes
/// to one canonical value is refused (the reverse would be ambiguous).
fn compile_tables(def: &MappingDef) -> (BTreeMap<String, Arc<Table>>, Problems) {
    let mut problems = Problems::new();
    let mut tables = BTreeMap::new();
    for (name, t) in &def.tables {
        let mut reverse = BTreeMap::new();
        for (vendor, canon) in t {
            if let Some(prev) = reverse.insert(canon.clone(), vendor.clone()) {
                problems.push((
                    format!("tables.{name}.{vendor}"),
                    format!("`{prev}` and `{vendor}` both map to `{canon}`: the reverse direction is ambiguous"),
                    "keep one vendor code per canonical value".into(),
                ));
            }
        }
        tables.insert(
            name.clone(),
            Arc::new(Table {
                name: name.clone(),
                forward: t.clone(),
                reverse,
            }),
        );
    }
    (tables, problems)
}

/// The message kind (rule `message`): where it is, its codes, the default.
type Kinds = (
    Option<JsonPath>,
    BTreeMap<String, InboundKind>,
    Option<InboundKind>,
);

fn message_kinds(cx: &mut Ctx<'_>, m: &MessageDef) -> Kinds {
    let kind_path = m.kind_path.as_ref().and_then(|p| match JsonPath::parse(p) {
        Ok(p) => Some(p),
        Err(e) => {
            cx.add("message.kind_path", e, "write a path like loaiThongDiep");
            None
        }
    });
    let mut kinds = BTreeMap::new();
    for (code, k) in &m.kinds {
        match parse_kind(k) {
            Some(kind) => {
                kinds.insert(code.clone(), kind);
            }
            None => cx.add(
                &format!("message.kinds.{code}"),
                format!("unknown kind `{k}`"),
                "use dossier_upserted, progress or status",
            ),
        }
    }
    let default_kind = m.default_kind.as_ref().and_then(|k| {
        let r = parse_kind(k);
        if r.is_none() {
            cx.add(
                "message.default_kind",
                format!("unknown kind `{k}`"),
                "use dossier_upserted, progress or status",
            );
        }
        r
    });
    if kind_path.is_none() && m.default_kind.is_none() {
        cx.add(
            "message",
            "neither `kind_path` nor `default_kind`: the kind of a message cannot be told",
            "add kind_path (with [message.kinds]) or default_kind = \"dossier_upserted\"",
        );
    }
    if kind_path.is_some() && kinds.is_empty() && m.kinds.is_empty() {
        cx.add(
            "message.kinds",
            "`kind_path` is set but no codes are listed",
            "add [message.kinds] CODE = \"dossier_upserted\"",
        );
    }
    (kind_path, kinds, default_kind)
}

/// `message.schema` and `reverse.schema` name files of `schemas/`.
fn check_schemas(cx: &mut Ctx<'_>, def: &MappingDef, schemas: &[String]) {
    let m = &def.message;
    for (k, s) in [
        ("message.schema", &m.schema),
        ("reverse.schema", &def.reverse.schema),
    ] {
        if let Some(s) = s {
            if !schemas.contains(s) {
                cx.add(
                    k,
                    format!("no schema `{s}` (schemas/{s}.json)"),
                    "add the file, or fix the name",
                );
            }
        }
    }
}

/// `[reverse]`: its kind is a code of `[message.kinds]`; its constants are written at paths of
/// one value.
fn reverse_rules(
    cx: &mut Ctx<'_>,
    def: &MappingDef,
    has_kind_path: bool,
) -> Vec<(JsonPath, Value)> {
    let m = &def.message;
    if let Some(k) = &def.reverse.kind {
        if !has_kind_path {
            cx.add(
                "reverse.kind",
                "is set but message.kind_path is not",
                "add message.kind_path, or remove reverse.kind",
            );
        } else if !m.kinds.contains_key(k) {
            cx.add(
                "reverse.kind",
                format!("`{k}` is not a code of [message.kinds]"),
                "use one of its codes",
            );
        }
    }
    let mut reverse_constants = Vec::new();
    for (p, v) in &def.reverse.constants {
        match JsonPath::parse(p) {
            Ok(jp) if !jp.has_each() => reverse_constants.push((jp, v.clone())),
            Ok(_) => cx.add(
                &format!("reverse.constants.{p}"),
                "holds `[]`",
                "point at one value",
            ),
            Err(e) => cx.add(
                &format!("reverse.constants.{p}"),
                e,
                "write a path like nguonHoSo",
            ),
        }
    }

    reverse_constants
}

/// Every field rule of the canonical dossier.
fn dossier_fields(cx: &mut Ctx<'_>, f: &FieldsDef) -> DossierFields {
    use ValueKind::*;
    let owner = owner_fields(cx, &f.owner);
    let fees = fee_fields(cx, f);
    let attachments = attachment_fields(cx, f);
    let progress = step_fields(cx, f);
    DossierFields {
        code: cx.field("code", f.code.as_ref(), Str, true, false),
        version: cx.field("version", f.version.as_ref(), Int, true, false),
        procedure_code: cx.field(
            "procedure_code",
            f.procedure_code.as_ref(),
            Str,
            true,
            false,
        ),
        procedure_name: cx.field(
            "procedure_name",
            f.procedure_name.as_ref(),
            Str,
            false,
            false,
        ),
        field_code: cx.field("field_code", f.field_code.as_ref(), Str, false, false),
        field_name: cx.field("field_name", f.field_name.as_ref(), Str, false, false),
        receipt_number: cx.field(
            "receipt_number",
            f.receipt_number.as_ref(),
            Str,
            false,
            false,
        ),
        owner,
        summary: cx.field("summary", f.summary.as_ref(), Str, true, false),
        received_at: cx.field("received_at", f.received_at.as_ref(), Date, true, false),
        due_at: cx.field("due_at", f.due_at.as_ref(), Date, true, false),
        returned_at: cx.field("returned_at", f.returned_at.as_ref(), Date, false, false),
        finished_at: cx.field("finished_at", f.finished_at.as_ref(), Date, false, false),
        status: cx.field("status", f.status.as_ref(), Status, true, false),
        handling_unit: cx.field("handling_unit", f.handling_unit.as_ref(), Str, true, false),
        note: cx.field("note", f.note.as_ref(), Str, false, false),
        fees,
        attachments,
        progress,
    }
}

fn owner_fields(cx: &mut Ctx<'_>, o: &OwnerDef) -> OwnerFields {
    use ValueKind::*;
    OwnerFields {
        name: cx.field("owner.name", o.name.as_ref(), Str, true, true),
        kind: cx.field("owner.kind", o.kind.as_ref(), OwnerKind, true, false),
        id_number: cx.field("owner.id_number", o.id_number.as_ref(), Str, false, true),
        phone: cx.field("owner.phone", o.phone.as_ref(), Str, false, true),
        email: cx.field("owner.email", o.email.as_ref(), Str, false, true),
        address: cx.field("owner.address", o.address.as_ref(), Str, false, true),
    }
}

fn fee_fields(cx: &mut Ctx<'_>, f: &FieldsDef) -> List<FeeFields> {
    use ValueKind::*;
    cx.list("fees", f.fees.as_ref(), |cx, d: Option<&FeeDef>| {
        let d = d.cloned().unwrap_or_default();
        let on = f.fees.is_some();
        FeeFields {
            code: cx.field("fees.item.code", d.code.as_ref(), Str, on, false),
            name: cx.field("fees.item.name", d.name.as_ref(), Str, on, false),
            amount_vnd: cx.field(
                "fees.item.amount_vnd",
                d.amount_vnd.as_ref(),
                Int,
                on,
                false,
            ),
            category: cx.field("fees.item.category", d.category.as_ref(), Str, false, false),
            paid: cx.field("fees.item.paid", d.paid.as_ref(), Bool, false, false),
        }
    })
}

fn attachment_fields(cx: &mut Ctx<'_>, f: &FieldsDef) -> List<AttachmentFields> {
    use ValueKind::*;
    cx.list(
        "attachments",
        f.attachments.as_ref(),
        |cx, d: Option<&AttachmentDef>| {
            let d = d.cloned().unwrap_or_default();
            let on = f.attachments.is_some();
            AttachmentFields {
                id: cx.field("attachments.item.id", d.id.as_ref(), Str, on, false),
                name: cx.field("attachments.item.name", d.name.as_ref(), Str, on, false),
                component_code: cx.field(
                    "attachments.item.component_code",
                    d.component_code.as_ref(),
                    Str,
                    false,
                    false,
                ),
                url: cx.field("attachments.item.url", d.url.as_ref(), Str, on, false),
                deleted: cx.field(
                    "attachments.item.deleted",
                    d.deleted.as_ref(),
                    Bool,
                    false,
                    false,
                ),
            }
        },
    )
}

fn step_fields(cx: &mut Ctx<'_>, f: &FieldsDef) -> List<StepFields> {
    use ValueKind::*;
    cx.list(
        "progress",
        f.progress.as_ref(),
        |cx, d: Option<&StepDef>| {
            let d = d.cloned().unwrap_or_default();
            let on = f.progress.is_some();
            StepFields {
                handler: cx.field("progress.item.handler", d.handler.as_ref(), Str, on, false),
                title: cx.field("progress.item.title", d.title.as_ref(), Str, false, false),
                department: cx.field(
                    "progress.item.department",
                    d.department.as_ref(),
                    Str,
                    on,
                    false,
                ),
                content: cx.field("progress.item.content", d.content.as_ref(), Str, on, false),
                at: cx.field("progress.item.at", d.at.as_ref(), Date, on, false),
                status: cx.field("progress.item.status", d.status.as_ref(), Status, on, false),
                started_at: cx.field(
                    "progress.item.started_at",
                    d.started_at.as_ref(),
                    Date,
                    false,
                    false,
                ),
                due_at: cx.field(
                    "progress.item.due_at",
                    d.due_at.as_ref(),
                    Date,
                    false,
                    false,
                ),
            }
        },
    )
}
