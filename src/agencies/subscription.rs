//! A subscription: which events an agency takes ([`Filter`]) and what of them it is sent
//! ([`Subscription::project`]).
//!
//! # Invariants
//! - A projection holds only the paths of the fields the subscription names (its `fields`,
//!   and its `personal` ones, which exist only with a legal basis); a property test checks it
//!   on arbitrary payloads.
//! - `project` returns `None` for an event the subscription does not take: no projection of
//!   an event outside the filter is ever built. No subscription takes the gateway's own
//!   operational events (`subscription.disabled` / `.enabled` of some agency's subscription).
//! - The body sent is `{"id", "type", "key", "version", "subscription", "created_ms", "data"}`
//!   serialized once ([`Projected::body`]); its digest is of those bytes.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::{PullSection, PushSection, SubscriptionSection};
use crate::model::envelope::Envelope;
use crate::model::fields::{self, CanonicalField};

/// How an agency receives its share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The gateway calls the agency's webhook.
    Push,
    /// The agency fetches its feed.
    Pull,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Push => "push",
            Delivery::Pull => "pull",
        }
    }
}

/// Why a section cannot become a subscription (the configuration's validator reports the same
/// with its key; this is the second line of defence).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    #[error("subscription {name}: unknown delivery `{delivery}`")]
    Delivery { name: String, delivery: String },
    #[error("subscription {name}: unknown field `{field}`")]
    UnknownField { name: String, field: String },
    #[error("subscription {name}: `{field}` is personal data and must be named in `personal`")]
    PersonalInFields { name: String, field: String },
    #[error("subscription {name}: `{field}` in `personal` is not personal data")]
    NotPersonal { name: String, field: String },
    #[error("subscription {name}: personal fields without a legal basis")]
    NoLegalBasis { name: String },
    #[error("subscription {name}: delivery {delivery} without its [{delivery}] table")]
    MissingTable {
        name: String,
        delivery: &'static str,
    },
}

/// Which events a subscription takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Kind patterns (`dossier.*`); empty = all.
    pub kinds: Vec<String>,
    /// Procedure codes or prefixes; empty = all.
    pub procedures: Vec<String>,
    /// Unit codes or prefixes; empty = all.
    pub units: Vec<String>,
}

impl Filter {
    /// Whether the filter takes `env`. Never the gateway's own operational events (source
    /// [`crate::config::OPS_SOURCE`]: one agency's subscription disabled or enabled): they
    /// go to the routes that take them, not to the agencies.
    pub fn takes(&self, env: &Envelope) -> bool {
        if env.source == crate::config::OPS_SOURCE
            || !crate::config::kinds_admit(&self.kinds, &env.kind)
        {
            return false;
        }
        if self.procedures.is_empty() && self.units.is_empty() {
            return true;
        }
        let payload = env.payload_value();
        codes_admit(&self.procedures, code_at(&payload, "procedure"))
            && codes_admit(&self.units, code_at(&payload, "unit"))
    }
}

/// The string at a canonical field's path, if the payload has one.
fn code_at<'a>(payload: &'a Value, field: &str) -> Option<&'a str> {
    let f = fields::field(field)?;
    get_path(payload, f.path)?.as_str()
}

/// An empty list admits everything; otherwise the code must start with one of the entries.
fn codes_admit(list: &[String], code: Option<&str>) -> bool {
    list.is_empty() || code.is_some_and(|c| list.iter().any(|p| c.starts_with(p.as_str())))
}

fn get_path<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

/// One agency's subscription, checked.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The table's name (`ioc`): names its queue, metrics and evidence.
    pub name: String,
    /// The agency's display name.
    pub agency: String,
    pub delivery: Delivery,
    pub filter: Filter,
    /// The non-personal fields sent.
    pub fields: Vec<&'static CanonicalField>,
    /// The personal fields sent (only with `legal_basis`).
    pub personal: Vec<&'static CanonicalField>,
    /// The legal basis for the personal fields; `None` when none is sent.
    pub legal_basis: Option<String>,
    pub push: Option<PushSection>,
    pub pull: Option<PullSection>,
}

/// What one subscription is sent of one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Projected {
    /// The minimised payload: only the named fields the event has.
    pub data: Value,
    /// The names of the fields `data` holds, in the table's order.
    pub fields: Vec<&'static str>,
    /// The whole body sent (the event's identity around `data`), serialized once.
    pub body: Vec<u8>,
    /// SHA-256 of `body`, lower-case hex.
    pub digest: String,
    /// The subscription's legal basis, when it names personal fields.
    pub legal_basis: Option<String>,
}

impl Subscription {
    /// Build a subscription from its checked section.
    pub fn from_section(name: &str, s: &SubscriptionSection) -> Result<Self, SubscriptionError> {
        let delivery = match s.delivery.as_str() {
            "push" => Delivery::Push,
            "pull" => Delivery::Pull,
            other => {
                return Err(SubscriptionError::Delivery {
                    name: name.into(),
                    delivery: other.into(),
                })
            }
        };
        match delivery {
            Delivery::Push if s.push.is_none() => {
                return Err(SubscriptionError::MissingTable {
                    name: name.into(),
                    delivery: "push",
                })
            }
            Delivery::Pull if s.pull.is_none() => {
                return Err(SubscriptionError::MissingTable {
                    name: name.into(),
                    delivery: "pull",
                })
            }
            _ => {}
        }
        let lookup = |f: &String| {
            fields::field(f).ok_or_else(|| SubscriptionError::UnknownField {
                name: name.into(),
                field: f.clone(),
            })
        };
        let mut named = Vec::new();
        for f in &s.fields {
            let c = lookup(f)?;
            if c.personal {
                return Err(SubscriptionError::PersonalInFields {
                    name: name.into(),
                    field: f.clone(),
                });
            }
            named.push(c);
        }
        let mut personal = Vec::new();
        for f in &s.personal {
            let c = lookup(f)?;
            if !c.personal {
                return Err(SubscriptionError::NotPersonal {
                    name: name.into(),
                    field: f.clone(),
                });
            }
            personal.push(c);
        }
        let legal_basis = s
            .legal_basis
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(str::to_string);
        if !personal.is_empty() && legal_basis.is_none() {
            return Err(SubscriptionError::NoLegalBasis { name: name.into() });
        }
        Ok(Subscription {
            name: name.into(),
            agency: s.agency.clone(),
            delivery,
            filter: Filter {
                kinds: s.kinds.clone(),
                procedures: s.procedures.clone(),
                units: s.units.clone(),
            },
            fields: named,
            personal: personal.clone(),
            legal_basis: if personal.is_empty() {
                None
            } else {
                legal_basis
            },
            push: s.push.clone(),
            pull: s.pull.clone(),
        })
    }

    /// Every subscription of a configuration, in name order.
    pub fn all(c: &crate::config::Config) -> Result<Vec<Subscription>, SubscriptionError> {
        c.subscriptions
            .iter()
            .map(|(n, s)| Subscription::from_section(n, s))
            .collect()
    }

    /// Whether this subscription takes `env`.
    pub fn matches(&self, env: &Envelope) -> bool {
        self.filter.takes(env)
    }

    /// What this subscription is sent of `env`; `None` when it does not take it.
    pub fn project(&self, env: &Envelope) -> Option<Projected> {
        if !self.matches(env) {
            return None;
        }
        let mut data = Value::Object(Map::new());
        let mut sent = Vec::new();
        let payload = env.payload_value();
        for f in fields::FIELDS {
            if !(self.fields.contains(&f) || self.personal.contains(&f)) {
                continue;
            }
            match get_path(&payload, f.path) {
                Some(v) if !v.is_null() => {
                    set_path(&mut data, f.path, v.clone());
                    sent.push(f.name);
                }
                _ => {}
            }
        }
        let body = serde_json::to_vec(&serde_json::json!({
            "id": env.id.to_string(),
            "type": env.kind,
            "key": env.key,
            "version": env.version,
            "subscription": self.name,
            "created_ms": env.created_ms,
            "data": data,
        }))
        .expect("JSON values always serialize");
        let digest = hex::encode(Sha256::digest(&body));
        Some(Projected {
            data,
            fields: sent,
            body,
            digest,
            legal_basis: self.legal_basis.clone(),
        })
    }

    /// The names of every field this subscription may be sent (fields, then personal).
    pub fn field_names(&self) -> Vec<&'static str> {
        self.fields
            .iter()
            .chain(self.personal.iter())
            .map(|f| f.name)
            .collect()
    }
}

/// Set `value` at `path` in `root` (an object), creating the objects on the way.
fn set_path(root: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = root;
    for k in parents {
        let obj = at.as_object_mut().expect("built here: objects only");
        at = obj
            .entry(k.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if let Some(obj) = at.as_object_mut() {
        obj.insert(last.to_string(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn section(toml_text: &str) -> SubscriptionSection {
        toml::from_str(toml_text).expect("a subscription section")
    }

    fn ioc() -> Subscription {
        Subscription::from_section(
            "ioc",
            &section(
                r#"
agency = "Trung tâm IOC tỉnh"
delivery = "push"
kinds = ["dossier.upserted", "dossier.status"]
procedures = ["1.0012"]
units = ["000.00.01.H12"]
fields = ["code", "status", "procedure", "received_at", "due_at"]
personal = ["citizen_id"]
legal_basis = "Nghị định 107/2021/NĐ-CP, Điều 19"
[push]
url = "https://ioc.example/hook"
secret = { env = "IOC_WEBHOOK_SECRET" }
"#,
            ),
        )
        .expect("valid")
    }

    fn dossier(procedure: &str, unit: &str) -> Value {
        serde_json::json!({
            "code": "H12.01-240101-0001", "version": 3, "procedure_code": procedure,
            "summary": "Cấp giấy phép", "received_at": "2024-01-01T08:00:00+07:00",
            "due_at": "2024-01-10T17:00:00+07:00", "status": "received",
            "handling_unit": unit, "fees": [{"code": "F1", "name": "x", "amount_vnd": 1}],
            "owner": {"name": "Nguyễn Văn An", "kind": "citizen", "id_number": "001203004567",
                      "phone": "0912345678", "email": "an@example.vn", "address": "Hà Nội"}
        })
    }

    fn env(kind: &str, payload: Value) -> Envelope {
        let mut e = Envelope::new(kind, "H12.01-240101-0001", "onestop", payload);
        e.version = Some(3);
        e
    }

    #[test]
    fn projects_only_the_named_fields_and_the_personal_ones_with_their_basis() {
        let s = ioc();
        let p = s
            .project(&env(
                "dossier.upserted",
                dossier("1.001234", "000.00.01.H12"),
            ))
            .expect("taken");
        assert_eq!(
            p.data,
            serde_json::json!({
                "code": "H12.01-240101-0001", "status": "received", "procedure_code": "1.001234",
                "received_at": "2024-01-01T08:00:00+07:00", "due_at": "2024-01-10T17:00:00+07:00",
                "owner": {"id_number": "001203004567"}
            })
        );
        assert_eq!(
            p.fields,
            [
                "code",
                "procedure",
                "received_at",
                "due_at",
                "status",
                "citizen_id"
            ]
        );
        let body = String::from_utf8(p.body.clone()).unwrap();
        for absent in [
            "0912345678",
            "an@example.vn",
            "Nguyễn",
            "Hà Nội",
            "Cấp giấy",
            "amount_vnd",
        ] {
            assert!(!body.contains(absent), "{absent} leaked: {body}");
        }
        assert_eq!(p.digest, hex::encode(Sha256::digest(&p.body)));
        assert_eq!(
            p.legal_basis.as_deref(),
            Some("Nghị định 107/2021/NĐ-CP, Điều 19")
        );
        let b: Value = serde_json::from_slice(&p.body).unwrap();
        assert_eq!(b["type"], "dossier.upserted");
        assert_eq!(b["subscription"], "ioc");
        assert_eq!(b["version"], 3);
        assert_eq!(b["data"], p.data);
    }

    #[test]
    fn filters_by_kind_procedure_prefix_and_unit_and_fail_closed() {
        let s = ioc();
        let taken = dossier("1.001234", "000.00.01.H12");
        assert!(s.matches(&env("dossier.status", taken.clone())));
        assert!(!s.matches(&env("dossier.progress", taken.clone())), "kind");
        assert!(s.project(&env("payment.settled", taken)).is_none());
        assert!(!s.matches(&env(
            "dossier.upserted",
            dossier("2.000001", "000.00.01.H12")
        )));
        assert!(!s.matches(&env(
            "dossier.upserted",
            dossier("1.001234", "000.00.02.H12")
        )));
        // No procedure in the payload: a non-empty procedure list does not take it.
        assert!(!s.matches(&env("dossier.upserted", serde_json::json!({"code": "x"}))));
        let all = Subscription::from_section(
            "all",
            &section("agency = \"A\"\ndelivery = \"push\"\nfields = [\"code\"]\n[push]\nurl = \"https://a\"\nsecret = { env = \"S\" }\n"),
        )
        .unwrap();
        assert!(all.matches(&env("anything.else", serde_json::json!("not an object"))));
        let p = all
            .project(&env("anything.else", serde_json::json!("not an object")))
            .unwrap();
        assert_eq!(p.data, serde_json::json!({}));
        assert!(p.fields.is_empty());
        assert_eq!(p.legal_basis, None);
    }

    #[test]
    fn never_takes_the_gateways_operational_events() {
        let all = Subscription::from_section(
            "all",
            &section(
                "agency = \"A\"\ndelivery = \"push\"\nfields = [\"code\"]\n[push]\nurl = \"https://a\"\nsecret = { env = \"S\" }\n",
            ),
        )
        .expect("valid");
        let ops = Envelope::new(
            crate::model::events::EventKind::SubscriptionDisabled.as_str(),
            "ioc",
            crate::config::OPS_SOURCE,
            serde_json::json!({"subscription": "ioc", "reason": "gone"}),
        );
        assert!(!all.matches(&ops), "another agency's state is not sent");
        let from_source = Envelope::new("subscription.disabled", "x", "onestop", Value::Null);
        assert!(all.matches(&from_source), "every kind from a source");
    }

    #[test]
    fn refuses_unknown_and_misplaced_fields_and_personal_without_basis() {
        let base = "agency = \"A\"\ndelivery = \"push\"\n[push]\nurl = \"https://a\"\nsecret = { env = \"S\" }\n";
        let with = |extra: &str| section(&format!("{extra}\n{base}"));
        let e =
            Subscription::from_section("x", &with("fields = [\"code\", \"colour\"]")).unwrap_err();
        assert_eq!(
            e,
            SubscriptionError::UnknownField {
                name: "x".into(),
                field: "colour".into()
            }
        );
        let e = Subscription::from_section("x", &with("fields = [\"phone\"]")).unwrap_err();
        assert!(
            matches!(e, SubscriptionError::PersonalInFields { ref field, .. } if field == "phone")
        );
        let e =
            Subscription::from_section("x", &with("fields = [\"code\"]\npersonal = [\"status\"]"))
                .unwrap_err();
        assert!(matches!(e, SubscriptionError::NotPersonal { .. }));
        let e =
            Subscription::from_section("x", &with("fields = [\"code\"]\npersonal = [\"phone\"]"))
                .unwrap_err();
        assert_eq!(e, SubscriptionError::NoLegalBasis { name: "x".into() });
        let e = Subscription::from_section(
            "x",
            &with("fields = [\"code\"]\npersonal = [\"phone\"]\nlegal_basis = \"  \""),
        )
        .unwrap_err();
        assert_eq!(e, SubscriptionError::NoLegalBasis { name: "x".into() });
        let e = Subscription::from_section(
            "x",
            &section("agency = \"A\"\ndelivery = \"pull\"\nfields = [\"code\"]"),
        )
        .unwrap_err();
        assert!(matches!(
            e,
            SubscriptionError::MissingTable {
                delivery: "pull",
                ..
            }
        ));
        let e = Subscription::from_section(
            "x",
            &section("agency = \"A\"\ndelivery = \"email\"\nfields = [\"code\"]"),
        )
        .unwrap_err();
        assert!(matches!(e, SubscriptionError::Delivery { .. }));
    }

    fn leaf_paths(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    at.push(k.clone());
                    leaf_paths(v, at, out);
                    at.pop();
                }
            }
            _ => out.push(at.clone()),
        }
    }

    fn arb_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::from),
            "[a-z0-9.@ ]{0,12}".prop_map(Value::from),
            proptest::collection::vec("[a-z]{0,4}".prop_map(Value::from), 0..3)
                .prop_map(Value::from),
        ]
    }

    /// Payloads using the table's keys (so projections are not trivially empty), some random
    /// keys, and an `owner` object with its keys and random ones.
    fn arb_payload() -> impl Strategy<Value = Value> {
        let keys: Vec<String> = fields::FIELDS
            .iter()
            .map(|f| f.path[0].to_string())
            .chain(["extra", "secret_note", "payload"].map(String::from))
            .collect();
        let owner_keys = vec![
            "name",
            "kind",
            "id_number",
            "phone",
            "email",
            "address",
            "bank",
        ];
        (
            proptest::collection::btree_map(proptest::sample::select(keys), arb_leaf(), 0..20),
            proptest::collection::btree_map(
                proptest::sample::select(owner_keys).prop_map(String::from),
                arb_leaf(),
                0..7,
            ),
            any::<bool>(),
        )
            .prop_map(|(top, owner, with_owner)| {
                let mut m: Map<String, Value> = top.into_iter().collect();
                if with_owner {
                    m.insert("owner".into(), Value::Object(owner.into_iter().collect()));
                }
                Value::Object(m)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Whatever the payload and whichever fields are named, a projection holds only paths
        /// under named fields, and every field it lists is one it holds.
        #[test]
        fn no_projection_contains_an_unnamed_field(
            payload in arb_payload(),
            picks in proptest::collection::vec(any::<bool>(), fields::FIELDS.len()),
        ) {
            let (named, personal): (Vec<_>, Vec<_>) = fields::FIELDS
                .iter()
                .zip(&picks)
                .filter(|(_, p)| **p)
                .map(|(f, _)| f)
                .partition(|f| !f.personal);
            let s = Subscription {
                name: "p".into(),
                agency: "A".into(),
                delivery: Delivery::Push,
                filter: Filter::default(),
                fields: named.clone(),
                personal: personal.clone(),
                legal_basis: (!personal.is_empty()).then(|| "basis".into()),
                push: None,
                pull: None,
            };
            let p = s.project(&env("dossier.upserted", payload.clone())).unwrap();
            let mut out = Vec::new();
            leaf_paths(&p.data, &mut Vec::new(), &mut out);
            for leaf in out.iter().filter(|l| !l.is_empty()) {
                let under = named.iter().chain(&personal).any(|f| {
                    leaf.len() >= f.path.len() && f.path.iter().zip(leaf).all(|(a, b)| a == b)
                });
                prop_assert!(under, "unnamed path {:?} in {}", leaf, p.data);
            }
            for name in &p.fields {
                let f = fields::field(name).unwrap();
                prop_assert!(named.contains(&f) || personal.contains(&f));
                prop_assert_eq!(get_path(&p.data, f.path), get_path(&payload, f.path));
            }
            for f in fields::FIELDS.iter().filter(|f| f.personal && !personal.contains(f)) {
                prop_assert!(get_path(&p.data, f.path).is_none(), "personal {} sent", f.name);
            }
        }
    }
}
