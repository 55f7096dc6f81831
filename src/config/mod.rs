//! Configuration: one TOML file, every field documented, named defaults, unknown keys
//! rejected, secrets only by reference.
//!
//! # Invariants
//! - **Unknown keys are rejected.** Loading never stops at the first problem: [`load`] collects
//!   every unknown key (through `serde_ignored`) and every semantic problem.
//! - **Every problem names its place**, reported as `file:key: what is wrong: how to fix it`,
//!   and the [`Step`] that found it (read, syntax, unknown key, wrong type, invalid value).
//!   (A value of the wrong *type* stops serde at that value; that one is reported with its key
//!   path the same way.)
//! - **Secrets by reference only.** A secret is only ever a reference (`{ env = "NAME" }` or
//!   `{ file = "path" }`); its value is read when resolved and never printed: [`Secret`]'s
//!   `Debug` and `Display` redact it.
//! - **One file per section, checking only itself.** Each section's types, defaults and
//!   validator live together in their own file of this folder; a section's validator is given
//!   that section alone. Every check that names another section (a route's `from` and `to`, a
//!   job's adapter, the profiles adapters sign with, `ops.listen` against `inbound.listen`, the
//!   payment events' source name) lives in `references.rs`, with the validation driver, which
//!   runs every check in the order problems have always been reported. Every default is a
//!   named constant in [`defaults`], stated once.
//! - **Dependencies point one way.** This module uses no other part of the gateway (but the
//!   canonical field table `crate::model::fields`, which `[subscriptions]` names): the
//!   payments and evidence sections live here ([`payments`], [`evidence`]) and are re-exported
//!   by `crate::payments` and `crate::evidence`; they, `crate::transport` and the rest build
//!   their runtime objects from the sections. Inside it, no file imports this one.
//!
//! # Layout
//! This file only declares the files and re-exports their public items. Imports go down:
//! - `loaded.rs`: [`load`], [`parse`] and [`Loaded`] (the validated configuration, where it
//!   came from, the backends' URLs, every secret reference); uses the two below.
//! - `references.rs`: the validation driver and the checks between sections.
//! - `document.rs`: the root [`Config`], and reading a file into it (syntax, unknown keys,
//!   wrong types).
//! - the sections, one file each: `gateway.rs`, `broker.rs`, `store.rs`, `inbound.rs`,
//!   `ops.rs`, `retry.rs`, `circuit.rs`, `sources.rs`, `adapters.rs`, `routes.rs`,
//!   `signing.rs`, `catalogue.rs`, `online.rs`, `payments.rs`, `evidence.rs`, `indicators.rs` (a section may use
//!   another: `ops` the listen-address check of `inbound`, `routes` the policy of `retry`).
//! - leaves, used by any of the above: `problem.rs` ([`Problem`], [`Step`], [`ConfigError`]),
//!   `names.rs` (valid names), `secrets.rs` (references, redaction, passwords in URLs),
//!   `duration.rs` ([`Dur`]), [`defaults`].
//! - The example file `gateway.example.toml` at the repository root is loaded by a test, so it
//!   cannot drift from this module.

mod adapters;
mod agencies;
mod agencies_pull;
mod broker;
mod catalogue;
mod circuit;
pub mod defaults;
mod document;
mod duration;
pub mod evidence;
mod gateway;
mod inbound;
mod indicators;
mod loaded;
mod names;
mod online;
mod ops;
pub mod payments;
mod problem;
mod references;
mod retry;
mod routes;
mod secrets;
mod signatures;
mod signers;
mod signing;
mod sources;
mod store;

pub use adapters::{
    AdapterSection, AxisSection, DvcqgSection, RateLimitSection, TlsSection, CONNECTORS,
};
pub use agencies::{
    PushSection, Rfc9421Section, SecretRefs, SubscriptionSection, DELIVERIES, OPS_SOURCE,
    PUSH_SIGNATURE_ALGORITHMS,
};
pub use agencies_pull::PullSection;
pub use broker::BrokerSection;
pub use catalogue::CatalogueSection;
pub use circuit::CircuitSection;
pub use document::Config;
pub use duration::{parse_duration, Dur, DurationError};
pub use gateway::GatewaySection;
pub use inbound::{listen_is_loopback, InboundSection};
pub use indicators::IndicatorsSection;
pub use loaded::{load, parse, Loaded};
pub use online::OnlineSection;
pub use ops::{OpsRole, OpsSection, OpsTokenSection, OtlpProtocol};
pub use problem::{ConfigError, Problem, Step};
pub use retry::{RetryOverride, RetrySection};
pub use routes::{kind_matches, kinds_admit, RouteSection};
pub use secrets::{Secret, SecretProblem, SecretRef, UrlPasswordError};
pub use signatures::{
    retry_delay, AppearanceSection, DocumentsSection, SignatureTsaSection, SignaturesSection,
};
pub use signers::{
    OfficialSection, OfficialsFile, OfficialsFileError, SignerCodes, SignerSection,
    SIGNATURE_SOURCE, SIGNER_DIGESTS, SIGNER_SERVICES,
};
pub use signing::{KeyCertificate, SigningSection, SIGNING_SCHEMES};
pub use sources::SourceSection;
pub use store::StoreSection;

#[cfg(test)]
mod tests;
