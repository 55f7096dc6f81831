//! The lab: tools to see the gateway work without a province's systems, built only with the
//! `lab` feature (on by default, off in the production package).
//!
//! # Invariants
//! - Nothing outside `lab` and the CLI's lab commands imports this room; the engine never
//!   depends on it, so the production build (`--no-default-features`) links no sandbox.
//! - [`demo`] runs the whole path against the strict sandboxes of `gw-contract-tests`;
//!   [`bench`] measures it; [`simulator`] makes one-stop traffic for both; [`standalone`]
//!   runs one sandbox (or the recording sink) on its own.

pub mod bench;
pub mod demo;
pub mod demo_agencies;
pub mod demo_axis;
pub mod demo_signing;
pub mod simulator;
pub mod standalone;

/// `a, b or c`: a list of choices as a refusal names them.
pub fn or_list(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}
