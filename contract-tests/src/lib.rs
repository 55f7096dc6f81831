//! Sandboxes: strict, runnable fakes of the gateway's external parties. Each enforces its
//! party's contract, records every effect for assertions and can inject faults. They back the
//! contract tests, the crash tests, the benchmarks and the demo, and run standalone.

pub mod momo;
pub mod paygov;
pub mod payplatform;
pub mod portal;
pub mod sink;
pub mod tsa;
pub mod vnpay;
