//! The gateway's own types: what every other room speaks.
//!
//! # Invariants
//! - This room imports no other room of the gateway: it is the bottom of the house (config,
//!   transport, connectors, the runtime and the edge all build on it, never the reverse).
//! - One place for each fact: the canonical dossier and its status table ([`dossier`]), the
//!   envelope ([`envelope`]), the event kinds ([`events`]), the progress payload
//!   ([`progress`]), the fields agencies subscribe to ([`fields`]), what an answer means ([`outcome`]), the limits of outside input
//!   ([`limits`]), the clock and the time zone ([`time`]).

pub mod dossier;
pub mod envelope;
pub mod events;
pub mod fields;
pub mod limits;
pub mod outcome;
pub mod progress;
pub mod time;

pub use dossier::*;
