//! The demo as a user runs it, scaled down for CI: `gateway demo --faults --dossiers 300`
//! (the shipped fault mix: HTTP 500s, error codes, 429s, resets, session expiry, one poison
//! dossier) must end with every dossier at the portal in its newest version, no progress step
//! missing, nothing older after newer, the poison dossier dead-lettered, and exit 0.
//! The clean run is its control: same size, no faults, same checks.

use std::process::Stdio;
use std::time::Duration;

/// Run the release-or-debug binary's demo with `args`, bounded in time; (exit ok, stdout).
async fn demo(args: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("demo")
        .args(args)
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the gateway binary starts");
    let out = tokio::time::timeout(Duration::from_secs(600), child.wait_with_output())
        .await
        .expect("the demo ends within 10 minutes (it stalled)")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    }
    (out.status.success(), stdout)
}

/// The figure after `label` on the summary, e.g. `dossiers not newest    0`.
fn figure(out: &str, label: &str) -> u64 {
    out.lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `{label}` figure in the summary:\n{out}"))
}

fn assert_complete(out: &str) {
    assert!(
        out.contains("OK: every dossier reached the portal in its newest version"),
        "{out}"
    );
    assert_eq!(figure(out, "dossiers not newest"), 0, "{out}");
    assert_eq!(figure(out, "progress steps missing"), 0, "{out}");
    assert_eq!(figure(out, "older-after-newer"), 0, "{out}");
    assert_eq!(figure(out, "dossiers               "), 300, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_with_faults_at_300_dossiers_ends_with_nothing_missing() {
    let (ok, out) = demo(&["--faults", "--dossiers", "300"]).await;
    println!("{out}");
    assert!(ok, "demo --faults exited with failure:\n{out}");
    assert_complete(&out);
    // The faults were really there: the portal refused calls, the poison dossier was
    // dead-lettered with its progress steps.
    let refused = out
        .lines()
        .find(|l| l.trim_start().starts_with("portal "))
        .expect("portal line");
    assert!(
        !refused.contains(" 0 refused"),
        "faults were injected: {refused}"
    );
    assert!(figure(&out, "dead-lettered") > 0, "{out}");
    assert!(out.contains("the poison dossier:"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_demo_at_300_dossiers_ends_with_nothing_missing_and_nothing_dead() {
    let (ok, out) = demo(&["--dossiers", "300"]).await;
    assert!(ok, "clean demo exited with failure:\n{out}");
    assert_complete(&out);
    assert_eq!(figure(&out, "dead-lettered"), 0, "{out}");
    assert_eq!(figure(&out, "circuit                opened"), 0, "{out}");
}
