//! Reading this machine: CPU seconds of processes and threads, peak RSS, percentiles.

use std::collections::BTreeMap;

/// This process's user + system CPU seconds (`/proc/self/stat`, the figures getrusage sums).
pub(super) fn cpu_secs() -> f64 {
    stat_cpu_secs("/proc/self/stat")
}

/// User + system CPU seconds of one thread of this process (`/proc/self/task/TID/stat`).
pub(super) fn thread_cpu_secs(tid: Option<&str>) -> f64 {
    tid.map_or(0.0, |t| stat_cpu_secs(&format!("/proc/self/task/{t}/stat")))
}

/// User + system CPU seconds of every process of this machine whose command name is `comm`
/// (`postgres`, `beam.smp`: the servers the gateway uses, when they run locally), by pid.
pub(super) fn processes_cpu(comm: &str) -> BTreeMap<u32, f64> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return BTreeMap::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(e.path().join("comm")).ok()?;
            (name.trim_end() == comm)
                .then(|| (pid, stat_cpu_secs(&e.path().join("stat").to_string_lossy())))
        })
        .collect()
}

/// CPU seconds the processes of `now` spent since `before` (a process that ended in between,
/// such as a `rabbitmqctl` run, is left out rather than counted negative).
pub(super) fn cpu_since(before: &BTreeMap<u32, f64>, now: &BTreeMap<u32, f64>) -> f64 {
    now.iter()
        .map(|(pid, secs)| (secs - before.get(pid).copied().unwrap_or(0.0)).max(0.0))
        .sum()
}

pub(super) fn stat_cpu_secs(path: &str) -> f64 {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which ends with ')'): state is field 3; utime 14, stime 15.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime is field 14 → index 11 after the state (field 3 → index 0).
    (tick(11) + tick(12)) / 100.0
}

pub(super) fn vm_hwm_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

// ---- raw broker ----

pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

/// The median of some runs' figures (the mean of the middle two of an even count); `None`
/// when there are none.
pub(super) fn median(figures: &[f64]) -> Option<f64> {
    let mut v = figures.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

pub(super) fn goal(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "MET",
        Some(false) => "NOT MET",
        None => "n/a",
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_even_and_no_runs() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[9.0, 1.0, 5.0]), Some(5.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }
}
