//! Sandboxes: strict, runnable fakes of the gateway's external parties. Each enforces its
//! party's contract, records every effect for assertions and can inject faults. They back the
//! contract tests, the crash tests, the benchmarks and the demo, and run standalone.
//!
//! This crate holds the fake parties and the contract suites only; test infrastructure
//! (service start-up, the fault proxy, the ledger checker) is in `gw-testkit`. The gateway
//! depends on it only through its `lab` feature (demo, bench, standalone sandboxes), never in
//! the production build.

pub mod agency;
pub mod axis;
pub mod csc;
pub mod examples;
pub mod momo;
pub mod mysign;
pub mod officials;
pub mod paygov;
pub mod payplatform;
pub mod portal;
pub mod sink;
pub mod smartca;
pub mod tsa;
pub mod vnpay;
