//! The gateway engine: configuration, envelope and canonical model, the route runtime over the
//! broker and store crates, retries, transport, connectors and operations.
//!
//! Crates of the workspace: `gw-broker` (embedded SQLite queue and RabbitMQ behind one trait),
//! `gw-store` (SQLite and PostgreSQL behind one trait), `gw-crypto` (signatures and trust),
//! `gw-contract-tests` (the sandboxes). They are crates rather than modules so they build in
//! parallel and can be tested (and reused) on their own.
//!
//! The `lab` feature (on by default) adds the lab tools: `demo`, `bench`, the traffic
//! `simulator` and the CLI's standalone sandboxes; only they use `gw-contract-tests`. The
//! production build (`--no-default-features`) has neither.

pub mod agencies;
pub mod app;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod edge;
pub mod evidence;
pub mod indicators;
pub mod jobs;
#[cfg(feature = "lab")]
pub mod lab;
pub mod mapping;
pub mod model;
pub mod ops;
pub mod payments;
pub mod runtime;
pub mod signatures;
pub mod signing;
pub mod telemetry;
pub mod transport;
