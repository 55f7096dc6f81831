//! `gateway bench --smoke` runs end to end (tiny counts, embedded only) and prints its tables.
//! No performance is asserted here: the figures are for people to read.

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn bench_smoke_prints_the_tables() {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["bench", "--smoke"])
        .output()
        .expect("run gateway bench --smoke");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    for heading in [
        "== raw broker",
        "== raw signing",
        "== gateway end to end",
        "== peak RSS",
        "== ratios ==",
        "== goals",
    ] {
        assert!(stdout.contains(heading), "no `{heading}` in:\n{stdout}");
    }
    assert!(stdout.contains("embedded (SQLite)"), "{stdout}");
    assert!(start.elapsed() < Duration::from_secs(120), "{stdout}");
}
