//! The signing pool: where signing and verification run, off the reactor threads.
//!
//! # Invariants
//! - CPU-heavy work ([`run_cpu`]) runs on tokio's blocking pool, never on a reactor thread.
//! - At most [`cpu_slots`] such jobs run at once, process-wide (the number of CPUs less one, at
//!   least one), so a burst of RSA signatures cannot crowd the reactor threads off the CPUs.
//! - This file imports only [`super::error`]; the signers and verifiers import it.

use super::error::CpuError;

/// How many signing / verification jobs may run at once: CPUs less one (one is left to the
/// reactor), at least one.
pub fn cpu_slots() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(1)
        .max(1)
}

/// Run CPU-heavy `f` on the blocking pool, at most [`cpu_slots`] at once process-wide.
pub(crate) async fn run_cpu<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CpuError> {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let slots = SLOTS.get_or_init(|| tokio::sync::Semaphore::new(cpu_slots()));
    let _permit = slots.acquire().await.map_err(CpuError::SlotsClosed)?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(CpuError::TaskFailed)
}
