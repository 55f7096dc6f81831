//! The lab: tools to see the gateway work without a province's systems, built only with the
//! `lab` feature (on by default, off in the production package).
//!
//! # Invariants
//! - Nothing outside `lab` and the CLI's lab commands imports this room; the engine never
//!   depends on it, so the production build (`--no-default-features`) links no sandbox.
//! - [`demo`] runs the whole path against the strict sandboxes of `gw-contract-tests`;
//!   [`bench`] measures it; [`simulator`] makes one-stop traffic for both.

pub mod bench;
pub mod demo;
pub mod simulator;
