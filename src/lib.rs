//! The gateway engine.
