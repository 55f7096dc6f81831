//! `gateway bench --smoke` runs end to end (tiny counts, embedded only) and prints its tables.
//! No performance is asserted here: the figures are for people to read.

use std::process::Command;

/// `--latency-rate` publishes the latency run at that fixed rate, says so, and keeps the
/// figure out of the goal lines (they name half the peak).
#[test]
fn a_fixed_latency_rate_is_used_and_kept_out_of_the_goals() {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args([
            "bench",
            "--smoke",
            "--phases",
            "e2e",
            "--latency-rate",
            "40",
        ])
        .output()
        .expect("run gateway bench --smoke --latency-rate 40");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("at a fixed 40 events/s (--latency-rate)"),
        "{stdout}"
    );
    let row = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("embedded (SQLite)"))
        .unwrap_or_else(|| panic!("no embedded row in:\n{stdout}"));
    assert!(row.contains(" 40/s "), "the run's rate: {row}");
    let goal = stdout
        .lines()
        .find(|l| l.contains("p99 publish → outcome at half the peak"))
        .unwrap_or_else(|| panic!("no p99 goal line in:\n{stdout}"));
    assert!(goal.contains("n/a"), "{goal}");
}

#[test]
fn bench_smoke_prints_the_tables() {
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
}

#[test]
fn bench_phases_run_only_what_is_asked_and_refuse_unknown_names() {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["bench", "--smoke", "--phases", "sign"])
        .output()
        .expect("run gateway bench --smoke --phases sign");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("ECDSA P-256"),
        "the signing phase ran:\n{stdout}"
    );
    let raw = stdout
        .split("== raw broker")
        .nth(1)
        .and_then(|rest| rest.lines().nth(1))
        .unwrap_or("");
    assert!(raw.contains("skipped (--phases)"), "{stdout}");
    assert!(
        !stdout.contains("ES256 jws-detached"),
        "no end-to-end run:\n{stdout}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["bench", "--smoke", "--phases", "e2e,warp"])
        .output()
        .expect("run gateway bench --phases e2e,warp");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("\"warp\""), "{stderr}");
}

#[test]
fn bench_drain_smoke_drains_the_backlog_within_the_quota() {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["bench", "--smoke", "--drain"])
        .output()
        .expect("run gateway bench --smoke --drain");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("== backlog drain on embedded (SQLite)"),
        "{stdout}"
    );
    // Correctness, not speed: every dossier's newest version reached the portal, in order,
    // nothing dead-lettered; the quota line is printed (its figure is timing, not asserted).
    assert!(
        stdout.contains("newest version missing for 0, older-after-newer 0"),
        "{stdout}"
    );
    assert!(stdout.contains("dead-lettered 0"), "{stdout}");
    assert!(
        stdout.contains("highest rate seen over any 1 s"),
        "{stdout}"
    );
}

/// `--phases scale` runs one and then two `gateway run` children on RabbitMQ + PostgreSQL and
/// prints both lines and their ratio (skipped with a reason when the services are missing,
/// a failure under `CI=true`).
#[test]
fn bench_scale_smoke_prints_one_and_two_instances() {
    let up = |port: u16| {
        std::net::TcpStream::connect_timeout(
            &([127, 0, 0, 1], port).into(),
            std::time::Duration::from_secs(2),
        )
        .is_ok()
    };
    if !(up(5672) && up(5432)) {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("the scale bench needs RabbitMQ and PostgreSQL, and CI=true");
        }
        eprintln!("SKIPPED bench scale smoke: RabbitMQ or PostgreSQL does not answer on loopback");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args([
            "bench",
            "--smoke",
            "--phases",
            "scale",
            "--backends",
            "rabbit-pg",
        ])
        .output()
        .expect("run gateway bench --smoke --phases scale");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let section = stdout
        .split("== scale-out")
        .nth(1)
        .unwrap_or_else(|| panic!("no scale-out section in:\n{stdout}"));
    for needle in [
        "1 instance ",
        "2 instances",
        "msg/s",
        "p99",
        "RSS MiB",
        "ratio 2 instances ÷ 1",
    ] {
        assert!(section.contains(needle), "no `{needle}` in:\n{stdout}");
    }
}
