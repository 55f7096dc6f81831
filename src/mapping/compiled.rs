//! The compiled form of an adapter's `mapping.toml`: what the engine runs, built once at load
//! by [`super::rules`].
//!
//! # Invariants
//! - Everything here was checked at load: paths parse, tables are inverted, date formats
//!   compiled, defaults and constants converted once; a message never meets a rule that
//!   could not have worked.
//! - These are plain data: the compiler ([`super::rules`]) writes them, the engine
//!   ([`super::engine`]) reads them; neither imports the other's workings through them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::dates::DateFormat;
use super::kind::InboundKind;
use super::path::JsonPath;

/// What a canonical field holds; decides how a vendor value is read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueKind {
    Str,
    Int,
    Bool,
    Status,
    OwnerKind,
    Date,
}

/// A value table, both ways.
#[derive(Debug)]
pub(crate) struct Table {
    pub name: String,
    pub forward: BTreeMap<String, String>,
    pub reverse: BTreeMap<String, String>,
}

/// One compiled field rule. A field without a rule has no path, constant or default: it
/// reads as absent and is not written back.
#[derive(Debug)]
pub(crate) struct Field {
    /// `fields.owner.name`, for messages about the rule.
    pub key: String,
    pub kind: ValueKind,
    pub path: Option<JsonPath>,
    pub required: bool,
    pub default: Option<Value>,
    pub constant: Option<Value>,
    pub table: Option<Arc<Table>>,
    pub date: Option<DateFormat>,
    pub personal: bool,
    pub min: Option<i64>,
    pub max: Option<i64>,
}

#[derive(Debug)]
pub(crate) struct List<T> {
    pub key: String,
    pub path: Option<JsonPath>,
    pub required: bool,
    pub item: T,
}

#[derive(Debug)]
pub(crate) struct OwnerFields {
    pub name: Field,
    pub kind: Field,
    pub id_number: Field,
    pub phone: Field,
    pub email: Field,
    pub address: Field,
}

#[derive(Debug)]
pub(crate) struct FeeFields {
    pub code: Field,
    pub name: Field,
    pub amount_vnd: Field,
    pub category: Field,
    pub paid: Field,
}

#[derive(Debug)]
pub(crate) struct AttachmentFields {
    pub id: Field,
    pub name: Field,
    pub component_code: Field,
    pub url: Field,
    pub deleted: Field,
}

#[derive(Debug)]
pub(crate) struct StepFields {
    pub handler: Field,
    pub title: Field,
    pub department: Field,
    pub content: Field,
    pub at: Field,
    pub status: Field,
    pub started_at: Field,
    pub due_at: Field,
}

#[derive(Debug)]
pub(crate) struct DossierFields {
    pub code: Field,
    pub version: Field,
    pub procedure_code: Field,
    pub procedure_name: Field,
    pub field_code: Field,
    pub field_name: Field,
    pub receipt_number: Field,
    pub owner: OwnerFields,
    pub summary: Field,
    pub received_at: Field,
    pub due_at: Field,
    pub returned_at: Field,
    pub finished_at: Field,
    pub status: Field,
    pub handling_unit: Field,
    pub note: Field,
    pub fees: List<FeeFields>,
    pub attachments: List<AttachmentFields>,
    pub progress: List<StepFields>,
}

/// The compiled `mapping.toml`.
#[derive(Debug)]
pub struct Mapping {
    pub(crate) kind_path: Option<JsonPath>,
    pub(crate) kinds: BTreeMap<String, InboundKind>,
    pub(crate) default_kind: Option<InboundKind>,
    pub(crate) inbound_schema: Option<String>,
    pub(crate) reverse_schema: Option<String>,
    pub(crate) reverse_kind: Option<String>,
    pub(crate) reverse_constants: Vec<(JsonPath, Value)>,
    pub(crate) dossier: DossierFields,
}

impl Mapping {
    /// The schema inbound messages are checked against, if any.
    pub fn inbound_schema(&self) -> Option<&str> {
        self.inbound_schema.as_deref()
    }
    /// The schema reverse-mapped messages are checked against, if any.
    pub fn reverse_schema(&self) -> Option<&str> {
        self.reverse_schema.as_deref()
    }
}
