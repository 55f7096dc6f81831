//! JSON Schemas for the receiving side: what one event kind can carry, and what one
//! subscription can be sent, generated from the code (`gateway schema KIND`, `gateway agencies
//! schema NAME`; committed copies under `docs/schemas/`).
//!
//! # Invariants
//! - **Generated, never written by hand.** Field names, paths, personal marks and descriptions
//!   come from the one table (`crate::model::fields::FIELDS`); the statuses and channels from
//!   their tables in `crate::model::dossier`; the body's keys are those [`Subscription::project`]
//!   writes (a test projects an event and validates it, and compares the key sets). The value
//!   shapes of the canonical model are described here once ([`dossier_payload`],
//!   [`progress_payload`]) and a test validates a complete and a minimal serialized
//!   `Dossier`/`Progress` against them with every object closed, and fails if a property of
//!   the schema is missing from the complete instance: a field added to or removed from the
//!   model breaks the build's tests, not the agencies.
//! - **Closed.** Every object an agency receives is `additionalProperties: false`: a
//!   subscription's schema refuses any field it did not name (the minimisation, checkable by
//!   the receiver).
//! - A kind whose payload is not the canonical model (payments, signatures, documents, kinds a
//!   source invents) carries its fields untyped: the schema says which may appear, not their
//!   shape.
//! - Output is deterministic (`serde_json` maps are ordered; lists follow the tables' order),
//!   so the committed copies can be compared byte for byte.

use serde_json::{json, Map, Value};

use super::subscription::Subscription;
use crate::config::kind_matches;
use crate::model::dossier::{Channel, DossierStatus, OwnerKind};
use crate::model::events::EventKind;
use crate::model::fields::{self, CanonicalField};

/// The JSON Schema dialect of every schema produced here.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// The keys of the body every delivery carries around `data` (see [`Subscription::project`]).
pub const BODY_KEYS: [&str; 7] = [
    "id",
    "type",
    "key",
    "version",
    "subscription",
    "created_ms",
    "data",
];

/// What an event kind's payload is, for its fields' shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// A whole canonical dossier (`crate::model::Dossier`).
    Dossier,
    /// One processing step (`crate::model::progress::Progress`).
    Progress,
    /// A body of its own (payment, signature, document events, unknown kinds): fields untyped.
    Other,
}

impl Payload {
    /// The payload of `kind`.
    pub fn of(kind: EventKind) -> Payload {
        match kind {
            EventKind::DossierUpserted | EventKind::DossierStatus | EventKind::DossierOnline => {
                Payload::Dossier
            }
            EventKind::DossierProgress => Payload::Progress,
            EventKind::PaymentSettled
            | EventKind::SignatureRequested
            | EventKind::SignatureCompleted
            | EventKind::SignatureFailed
            | EventKind::DocumentSend
            | EventKind::DocumentReceived
            | EventKind::DocumentStatus
            | EventKind::SubscriptionDisabled
            | EventKind::SubscriptionEnabled => Payload::Other,
        }
    }

    /// The schema of the payload's object, when its shape is the canonical model's.
    fn schema(self) -> Option<Value> {
        match self {
            Payload::Dossier => Some(dossier_payload()),
            Payload::Progress => Some(progress_payload()),
            Payload::Other => None,
        }
    }
}

/// Why no schema can be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("`{kind}` is not an event kind the gateway knows ({known})")]
    UnknownKind { kind: String, known: String },
}

fn serialized<T: serde::Serialize>(v: T) -> Value {
    serde_json::to_value(v).expect("an enum variant serializes")
}

fn closed(properties: Map<String, Value>, required: &[&str]) -> Value {
    let mut o = json!({"type": "object", "additionalProperties": false});
    if !required.is_empty() {
        o["required"] = json!(required);
    }
    o["properties"] = Value::Object(properties);
    o
}

fn props(list: &[(&str, Value)]) -> Map<String, Value> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn string() -> Value {
    json!({"type": "string"})
}

fn time() -> Value {
    json!({"type": "string", "format": "date-time"})
}

fn status() -> Value {
    json!({"enum": DossierStatus::TABLE.iter().map(|(s, _)| serialized(s)).collect::<Vec<_>>()})
}

/// Every owner kind; a new variant fails to compile here until the schema names it.
fn owner_kinds() -> Value {
    let all = [OwnerKind::Citizen, OwnerKind::Organisation];
    for k in all {
        match k {
            OwnerKind::Citizen | OwnerKind::Organisation => {}
        }
    }
    json!({"enum": all.iter().map(serialized).collect::<Vec<_>>()})
}

fn attachment() -> Value {
    closed(
        props(&[
            ("id", string()),
            ("name", string()),
            ("component_code", string()),
            ("url", string()),
            ("deleted", json!({"type": "boolean"})),
        ]),
        &["id", "name", "url", "deleted"],
    )
}

fn progress_step() -> Value {
    closed(
        props(&[
            ("handler", string()),
            ("title", string()),
            ("department", string()),
            ("content", string()),
            ("at", time()),
            ("status", status()),
            ("started_at", time()),
            ("due_at", time()),
        ]),
        &["handler", "department", "content", "at", "status"],
    )
}

/// The canonical dossier's JSON (`crate::model::Dossier`), every object closed.
pub fn dossier_payload() -> Value {
    let fee = closed(
        props(&[
            ("code", string()),
            ("name", string()),
            ("amount_vnd", json!({"type": "integer"})),
            ("category", string()),
            ("paid", json!({"type": "boolean"})),
        ]),
        &["code", "name", "amount_vnd", "paid"],
    );
    let owner = closed(
        props(&[
            ("name", string()),
            ("kind", owner_kinds()),
            ("id_number", string()),
            ("phone", string()),
            ("email", string()),
            ("address", string()),
        ]),
        &["name", "kind"],
    );
    let channel =
        json!({"enum": Channel::TABLE.iter().map(|(c, _)| serialized(c)).collect::<Vec<_>>()});
    closed(
        props(&[
            ("code", string()),
            ("version", json!({"type": "integer"})),
            ("procedure_code", string()),
            ("procedure_name", string()),
            ("field_code", string()),
            ("field_name", string()),
            ("receipt_number", string()),
            ("owner", owner),
            ("summary", string()),
            ("received_at", time()),
            ("due_at", time()),
            ("returned_at", time()),
            ("finished_at", time()),
            ("status", status()),
            ("handling_unit", string()),
            ("note", string()),
            ("fees", json!({"type": "array", "items": fee})),
            (
                "attachments",
                json!({"type": "array", "items": attachment()}),
            ),
            (
                "progress",
                json!({"type": "array", "items": progress_step()}),
            ),
            ("channel", channel),
            ("results", json!({"type": "array", "items": attachment()})),
        ]),
        &[
            "code",
            "version",
            "procedure_code",
            "owner",
            "summary",
            "received_at",
            "due_at",
            "status",
            "handling_unit",
            "fees",
            "attachments",
            "progress",
        ],
    )
}

/// The `dossier.progress` payload (`crate::model::progress::Progress`).
pub fn progress_payload() -> Value {
    closed(
        props(&[("code", string()), ("step", progress_step())]),
        &["code", "step"],
    )
}

/// The schema at `path` inside an object schema, if it has one.
fn at_path<'a>(schema: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(schema, |s, k| s.get("properties")?.get(*k))
}

/// The `data` schema for `fields` in a payload: an object (closed, every level) holding each
/// field the payload can carry at its path, none required (a field the event lacks is absent).
/// `None` when the payload can carry none of them.
fn data_schema(payload: Payload, named: &[&'static CanonicalField]) -> Option<Value> {
    let shape = payload.schema();
    let mut root = closed(Map::new(), &[]);
    let mut any = false;
    for f in fields::FIELDS.iter().filter(|f| named.contains(f)) {
        let value = match &shape {
            Some(s) => match at_path(s, f.path) {
                Some(v) => v.clone(),
                None => continue,
            },
            None => json!({"not": {"type": "null"}}),
        };
        let mut value = value;
        let about = if f.personal {
            format!("`{}`: {} (personal data)", f.name, f.about)
        } else {
            format!("`{}`: {}", f.name, f.about)
        };
        value
            .as_object_mut()
            .expect("field schemas are objects")
            .insert("description".into(), Value::String(about));
        let (last, parents) = f.path.split_last().expect("paths are not empty");
        let mut at = &mut root;
        for k in parents {
            let p = at["properties"]
                .as_object_mut()
                .expect("built here: objects only");
            at = p
                .entry(k.to_string())
                .or_insert_with(|| closed(Map::new(), &[]));
        }
        at["properties"]
            .as_object_mut()
            .expect("built here: objects only")
            .insert(last.to_string(), value);
        any = true;
    }
    any.then_some(root)
}

/// One body: the delivery's envelope around `data`, its `type` one of `kinds` (or, with
/// `kinds` empty, any kind but `known`).
fn body(kinds: &[&str], known: &[&str], subscription: Option<&str>, data: Value) -> Value {
    let kind = if kinds.is_empty() {
        json!({"type": "string", "not": {"enum": known}})
    } else if let [one] = kinds {
        json!({"const": one})
    } else {
        json!({"enum": kinds})
    };
    let sub = match subscription {
        Some(s) => json!({"const": s}),
        None => json!({"type": "string", "description": "the subscription's name"}),
    };
    let p = props(&[
        (
            "id",
            json!({"type": "string", "format": "uuid", "description": "the event's id (UUIDv7), the same on every retry"}),
        ),
        ("type", kind),
        (
            "key",
            json!({"type": "string", "description": "the ordering key (the dossier code): events of one key arrive in order"}),
        ),
        (
            "version",
            json!({"type": ["integer", "null"], "description": "the dossier's version (versioned kinds); never lower after higher"}),
        ),
        ("subscription", sub),
        (
            "created_ms",
            json!({"type": "integer", "description": "when the gateway accepted the event (unix milliseconds)"}),
        ),
        ("data", data),
    ]);
    debug_assert!(BODY_KEYS.iter().all(|k| p.contains_key(*k)));
    closed(p, &BODY_KEYS)
}

fn known_kinds() -> Vec<&'static str> {
    EventKind::ALL.iter().map(|k| k.as_str()).collect()
}

/// The schema of what an agency naming every field (personal ones too) can receive for
/// `kind`: `gateway schema KIND`.
pub fn kind_schema(kind: &str) -> Result<Value, SchemaError> {
    let k = EventKind::parse(kind).ok_or_else(|| SchemaError::UnknownKind {
        kind: kind.into(),
        known: known_kinds().join(", "),
    })?;
    let all: Vec<&'static CanonicalField> = fields::FIELDS.iter().collect();
    let data = data_schema(Payload::of(k), &all).unwrap_or_else(|| closed(Map::new(), &[]));
    let mut s = json!({"$schema": DIALECT, "$id": format!("urn:gateway:agencies:kind:{kind}"),
        "title": format!("A `{kind}` delivery to an agency (every field; a subscription receives only those it names)")});
    merge(&mut s, body(&[kind], &[], None, data));
    Ok(s)
}

/// The schema of everything `sub` can be sent: one branch per payload shape among the kinds
/// its patterns take (`anyOf`), each closed to the fields it names: `gateway agencies schema
/// NAME`.
pub fn subscription_schema(sub: &Subscription) -> Value {
    let known = known_kinds();
    let takes = |k: &str| {
        sub.filter.kinds.is_empty() || sub.filter.kinds.iter().any(|p| kind_matches(p, k))
    };
    let named: Vec<&'static CanonicalField> =
        sub.fields.iter().chain(&sub.personal).copied().collect();
    let mut branches = Vec::new();
    for payload in [Payload::Dossier, Payload::Progress, Payload::Other] {
        let kinds: Vec<&str> = EventKind::ALL
            .iter()
            .filter(|k| Payload::of(**k) == payload && takes(k.as_str()))
            .map(|k| k.as_str())
            .collect();
        if kinds.is_empty() {
            continue;
        }
        let data = data_schema(payload, &named).unwrap_or_else(|| closed(Map::new(), &[]));
        branches.push(body(&kinds, &known, Some(&sub.name), data));
    }
    // Kinds the gateway does not know that a pattern still takes (`dossier.*`, `*`, or an
    // exact name of a source's own): their fields untyped.
    let open = sub.filter.kinds.is_empty()
        || sub
            .filter
            .kinds
            .iter()
            .any(|p| p.ends_with('*') || !known.iter().any(|k| k == p));
    if open {
        let data = data_schema(Payload::Other, &named).unwrap_or_else(|| closed(Map::new(), &[]));
        branches.push(body(&[], &known, Some(&sub.name), data));
    }
    let mut title = format!(
        "What subscription `{}` ({}) is sent: only the fields {}",
        sub.name,
        sub.agency,
        sub.field_names()
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(b) = &sub.legal_basis {
        title.push_str(&format!("; personal data on the legal basis: {b}"));
    }
    json!({"$schema": DIALECT, "$id": format!("urn:gateway:agencies:subscription:{}", sub.name),
        "title": title, "anyOf": branches})
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

/// A schema as committed and printed: pretty JSON with a final newline.
pub fn render(schema: &Value) -> String {
    let mut s = serde_json::to_string_pretty(schema).expect("JSON values always serialize");
    s.push('\n');
    s
}

/// The committed copies: `(path under docs/schemas/, text)` for every known kind and every
/// subscription of `subs`.
pub fn committed(subs: &[Subscription]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = EventKind::ALL
        .iter()
        .map(|k| {
            (
                format!("kinds/{}.json", k.as_str()),
                render(&kind_schema(k.as_str()).expect("a known kind")),
            )
        })
        .collect();
    out.extend(subs.iter().map(|s| {
        (
            format!("subscriptions/{}.json", s.name),
            render(&subscription_schema(s)),
        )
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::dossier::{Attachment, Fee, Owner, ProgressStep};
    use crate::model::envelope::Envelope;
    use crate::model::{Dossier, Personal};

    fn step(full: bool) -> ProgressStep {
        ProgressStep {
            handler: "h".into(),
            title: full.then(|| "t".into()),
            department: "d".into(),
            content: "c".into(),
            at: "2026-01-05T08:00:00+07:00".into(),
            status: DossierStatus::InProcessing,
            started_at: full.then(|| "2026-01-05T08:00:00+07:00".into()),
            due_at: full.then(|| "2026-01-06T08:00:00+07:00".into()),
        }
    }

    fn attachment(full: bool) -> Attachment {
        Attachment {
            id: "a".into(),
            name: "n".into(),
            component_code: full.then(|| "c".into()),
            url: "https://x/a".into(),
            deleted: false,
        }
    }

    /// A dossier with every optional value present (`full`) or none.
    fn dossier(full: bool) -> Dossier {
        let p = |s: &str| full.then(|| Personal(s.to_string()));
        let o = |s: &str| full.then(|| s.to_string());
        Dossier {
            code: "H12.01-260105-0001".into(),
            version: 3,
            procedure_code: "1.001234".into(),
            procedure_name: o("p"),
            field_code: o("f"),
            field_name: o("f"),
            receipt_number: o("r"),
            owner: Owner {
                name: Personal("N".into()),
                kind: OwnerKind::Organisation,
                id_number: p("001"),
                phone: p("09"),
                email: p("a@b"),
                address: p("x"),
            },
            summary: "s".into(),
            received_at: "2026-01-05T08:00:00+07:00".into(),
            due_at: "2026-01-20T08:00:00+07:00".into(),
            returned_at: o("2026-01-21T08:00:00+07:00"),
            finished_at: o("2026-01-21T08:00:00+07:00"),
            status: DossierStatus::ResultReturned,
            handling_unit: "000.00.01.H12".into(),
            note: o("n"),
            fees: vec![Fee {
                code: "F".into(),
                name: "n".into(),
                amount_vnd: 1000,
                category: o("fee"),
                paid: true,
            }],
            attachments: vec![attachment(full)],
            progress: vec![step(full)],
            channel: full.then_some(Channel::Post),
            results: if full { vec![attachment(true)] } else { vec![] },
        }
    }

    fn valid(schema: &Value, instance: &Value) -> Result<(), String> {
        let v = jsonschema::validator_for(schema).map_err(|e| format!("schema: {e}"))?;
        let errors: Vec<String> = v.iter_errors(instance).map(|e| e.to_string()).collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Every property any object of `schema` declares exists in `instance` (walking arrays'
    /// first items): the schema names nothing the model lost.
    fn declared_all_present(schema: &Value, instance: &Value, at: &str) {
        if let Some(p) = schema.get("properties").and_then(Value::as_object) {
            for (k, s) in p {
                let v = instance
                    .get(k)
                    .unwrap_or_else(|| panic!("{at}.{k} is in the schema, not in the model"));
                declared_all_present(s, v, &format!("{at}.{k}"));
            }
        }
        if let (Some(items), Some(first)) = (schema.get("items"), instance.get(0)) {
            declared_all_present(items, first, &format!("{at}[0]"));
        }
    }

    #[test]
    fn the_payload_schemas_are_the_models_serialized_shape() {
        for full in [true, false] {
            let d = serde_json::to_value(dossier(full)).unwrap();
            valid(&dossier_payload(), &d).unwrap_or_else(|e| panic!("full={full}: {e}"));
            let p = serde_json::to_value(crate::model::progress::Progress {
                code: "H".into(),
                step: step(full),
            })
            .unwrap();
            valid(&progress_payload(), &p).unwrap_or_else(|e| panic!("full={full}: {e}"));
        }
        declared_all_present(
            &dossier_payload(),
            &serde_json::to_value(dossier(true)).unwrap(),
            "dossier",
        );
        declared_all_present(
            &progress_payload(),
            &serde_json::to_value(crate::model::progress::Progress {
                code: "H".into(),
                step: step(true),
            })
            .unwrap(),
            "progress",
        );
        // Closed: a key the model does not have is refused, a wrong status too.
        let mut d = serde_json::to_value(dossier(true)).unwrap();
        d["owner"]["nickname"] = json!("x");
        assert!(valid(&dossier_payload(), &d).is_err());
        let mut d = serde_json::to_value(dossier(true)).unwrap();
        d["status"] = json!("archived");
        assert!(valid(&dossier_payload(), &d).is_err());
    }

    /// Every field of the table has a typed place in some canonical payload, except the ones
    /// only non-canonical kinds carry.
    #[test]
    fn every_field_has_a_shape_in_a_canonical_payload_or_is_named_as_untyped() {
        let mut untyped = Vec::new();
        for f in fields::FIELDS {
            let typed = [dossier_payload(), progress_payload()]
                .iter()
                .any(|s| at_path(s, f.path).is_some());
            if !typed {
                untyped.push(f.name);
            }
        }
        assert_eq!(untyped, ["bank_account"]);
    }

    fn sub(toml_text: &str) -> Subscription {
        Subscription::from_section("ioc", &toml::from_str(toml_text).unwrap()).unwrap()
    }

    const IOC: &str = r#"
agency = "IOC"
delivery = "push"
kinds = ["dossier.upserted", "dossier.progress"]
fields = ["code", "status", "procedure", "step"]
personal = ["citizen_id"]
legal_basis = "basis"
[push]
url = "https://ioc.example/hook"
secret = { env = "S" }
"#;

    #[test]
    fn a_projection_validates_and_an_unnamed_field_is_refused() {
        let s = sub(IOC);
        let schema = subscription_schema(&s);
        let mut env = Envelope::new(
            "dossier.upserted",
            "H12.01-260105-0001",
            "onestop",
            serde_json::to_value(dossier(true)).unwrap(),
        );
        env.version = Some(3);
        let p = s.project(&env).unwrap();
        let body: Value = serde_json::from_slice(&p.body).unwrap();
        let keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let mut expected = BODY_KEYS.to_vec();
        expected.sort();
        assert_eq!(keys, expected, "the body's keys are BODY_KEYS");
        valid(&schema, &body).unwrap();
        assert_eq!(
            body["data"],
            json!({"code": "H12.01-260105-0001", "status": "result_returned",
                   "procedure_code": "1.001234", "owner": {"id_number": "001"}})
        );
        // A field the subscription did not name, at the top or inside owner: refused.
        for (at, v) in [
            (&["summary"][..], json!("s")),
            (&["owner", "phone"][..], json!("09")),
        ] {
            let mut b = body.clone();
            let mut o = &mut b["data"];
            for k in &at[..at.len() - 1] {
                o = &mut o[*k];
            }
            o[at[at.len() - 1]] = v;
            assert!(valid(&schema, &b).is_err(), "{at:?} accepted");
        }
        // A kind it does not take, another subscription's name, a wrong value type: refused.
        for (k, v) in [
            ("type", json!("dossier.status")),
            ("subscription", json!("other")),
            ("version", json!("3")),
        ] {
            let mut b = body.clone();
            b[k] = v;
            assert!(valid(&schema, &b).is_err(), "{k} accepted");
        }
        // A progress event: validates, through its own branch.
        let progress = Envelope::new(
            "dossier.progress",
            "H",
            "onestop",
            serde_json::to_value(crate::model::progress::Progress {
                code: "H".into(),
                step: step(true),
            })
            .unwrap(),
        );
        let b: Value = serde_json::from_slice(&s.project(&progress).unwrap().body).unwrap();
        valid(&schema, &b).unwrap();
        // The kind's own schema takes the projection too.
        valid(&kind_schema("dossier.upserted").unwrap(), &body).unwrap();
        assert!(valid(&kind_schema("dossier.progress").unwrap(), &body).is_err());
    }

    #[test]
    fn open_patterns_take_unknown_kinds_untyped_and_unknown_kinds_have_no_schema() {
        let s = sub(&IOC.replace(
            r#"kinds = ["dossier.upserted", "dossier.progress"]"#,
            r#"kinds = ["dossier.*"]"#,
        ));
        let schema = subscription_schema(&s);
        let env = Envelope::new(
            "dossier.archived",
            "H",
            "onestop",
            json!({"code": "H", "status": 7, "summary": "not named"}),
        );
        let b: Value = serde_json::from_slice(&s.project(&env).unwrap().body).unwrap();
        valid(&schema, &b).unwrap();
        assert_eq!(b["data"], json!({"code": "H", "status": 7}));
        assert_eq!(
            kind_schema("dossier.archived").unwrap_err(),
            SchemaError::UnknownKind {
                kind: "dossier.archived".into(),
                known: known_kinds().join(", ")
            }
        );
        // Rendering is deterministic.
        assert_eq!(render(&schema), render(&subscription_schema(&s)));
    }
}
