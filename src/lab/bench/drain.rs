//! `gateway bench --drain`: the backlog-drain scenario. Dossier events (several versions and
//! progress steps per dossier, from `src/simulator.rs`) are queued while the portal sandbox is
//! down and the gateway keeps trying; then the portal comes back and the gateway drains the
//! backlog under the portal's call quota. The sandbox enforces the quota (a token bucket that
//! answers 429) and counts every call; the gateway is configured with the same quota
//! (`rate_limit` on the adapter). Printed: events, portal calls (during the outage, during the
//! drain), items per call, drain time, the highest call rate the sandbox saw over any 1 s
//! window beside the quota, 429 answers, delivered / superseded (coalesced) / dead-lettered,
//! and the portal's view (newest version of every dossier present, older-after-newer).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gw_broker::Message;
use gw_contract_tests::portal::{Portal, RateLimit};
use tokio_util::sync::CancellationToken;

use super::args::{Backend, BenchArgs, Sig, CHUNK};
use super::error::BenchError;
use super::setup::{cleanup, open_engine, preload, settled, setup};
use crate::model::envelope::Envelope;
use crate::runtime::message_for;

pub(super) struct Drain {
    pub events: usize,
    pub dossiers: usize,
    pub outage_calls: u64,
    pub drain_calls: u64,
    pub drain_secs: f64,
    pub max_window_rate: f64,
    pub too_many: u64,
    pub delivered: u64,
    pub superseded: u64,
    pub dead_lettered: u64,
    pub items_accepted: usize,
    pub missing_newest: usize,
    pub older_after_newer: usize,
}

/// The highest rate over any window of at least `window`, from (time, cumulative count)
/// samples taken at a fixed short interval.
fn max_window_rate(samples: &[(Instant, u64)], window: Duration) -> f64 {
    let mut best = 0.0f64;
    let mut j = 0;
    for i in 0..samples.len() {
        while j + 1 < i && samples[i].0 - samples[j + 1].0 >= window {
            j += 1;
        }
        let dt = samples[i].0 - samples[j].0;
        if dt >= window {
            let n = samples[i].1 - samples[j].1;
            best = best.max(n as f64 / dt.as_secs_f64());
        }
    }
    best
}

/// The config of [`setup`], with the portal's quota on the adapter and a retry policy that
/// keeps trying through the outage without long sleeps after it.
fn tune(text: &str, args: &BenchArgs) -> Result<String, BenchError> {
    let mut t: toml::Table = text.parse().map_err(BenchError::ConfigToml)?;
    let adapter = t
        .get_mut("adapters")
        .and_then(|a| a.get_mut("dvcqg"))
        .and_then(|a| a.as_table_mut())
        .ok_or(BenchError::ConfigSection("adapters.dvcqg"))?;
    let mut rl = toml::Table::new();
    rl.insert("per_sec".into(), toml::Value::Float(args.drain_rate));
    rl.insert("burst".into(), toml::Value::Integer(1));
    adapter.insert("rate_limit".into(), toml::Value::Table(rl));
    let retry = t
        .get_mut("retry")
        .and_then(|r| r.as_table_mut())
        .ok_or(BenchError::ConfigSection("retry"))?;
    retry.insert("initial".into(), "500ms".into());
    retry.insert("max_delay".into(), "5s".into());
    // The bench's 10 m budget is shorter than a 200,000-event drain at a low quota: messages
    // that failed at the start of the outage would be dead-lettered while waiting their turn.
    retry.insert("max_elapsed".into(), "6h".into());
    // The breaker opens during the outage; its cool-down matches the retry's longest wait, so
    // recovery is noticed within 5 s either way.
    let mut circuit = toml::Table::new();
    circuit.insert("open_for".into(), "5s".into());
    t.insert("circuit".into(), toml::Value::Table(circuit));
    Ok(t.to_string())
}

/// Events of whole dossiers until at least `n`, grouped by the route queue they hash to, in
/// each dossier's order.
fn backlog(
    engine: &crate::runtime::Engine,
    unit: &str,
    n: usize,
) -> (BTreeMap<String, Vec<Message>>, BTreeMap<String, i64>, usize) {
    let mut rng = rand::rng();
    let route = &engine.routes[0];
    let mut out: BTreeMap<String, Vec<Message>> = BTreeMap::new();
    let mut newest = BTreeMap::new();
    let mut events = 0;
    let mut seq = 0;
    while events < n {
        seq += 1;
        for e in crate::lab::simulator::dossier_events(&mut rng, unit, seq, 6) {
            if let Some(v) = e.version {
                newest.insert(e.key.clone(), v);
            }
            let mut env = Envelope::new(e.kind, e.key, "onestop", e.payload);
            env.version = e.version;
            out.entry(route.queue_for_key(&env.key))
                .or_default()
                .push(message_for(&env));
            events += 1;
        }
    }
    (out, newest, events)
}

pub(super) async fn run(
    args: &BenchArgs,
    backend: Backend,
    portal: &Portal,
) -> Result<Drain, BenchError> {
    portal.clear_records();
    portal.set_rate_limit(Some(RateLimit {
        per_sec: args.drain_rate,
        burst: args.drain_burst,
    }));
    portal.set_down(true);
    let mut s = setup(args, backend, Sig::Ecdsa, portal);
    s.text = tune(&s.text, args)?;
    let (engine, metrics) = open_engine(&s).await?;
    let queues = engine.routes[0].queues();
    let unit = portal.config().units[0].clone();
    let result = async {
        let (msgs, newest, events) = backlog(&engine, &unit, args.drain_events);
        let cancel = CancellationToken::new();
        let run = {
            let (e, c) = (engine.clone(), cancel.clone());
            tokio::spawn(async move { e.run(c).await })
        };
        // The outage: everything is queued while the portal answers 503.
        let t_pub = Instant::now();
        let per_queue = msgs.values().map(Vec::len).max().unwrap_or(0);
        preload(&engine, msgs).await?;
        // What `Engine::publish` notes for each event that comes through a source: the newest
        // queued version per dossier, which lets older queued snapshots coalesce.
        let route = engine.routes[0].name.clone();
        let accepted: Vec<gw_store::AcceptedVersion> = newest
            .iter()
            .map(|(key, &version)| gw_store::AcceptedVersion {
                route: route.clone(),
                key: key.clone(),
                version,
            })
            .collect();
        for chunk in accepted.chunks(CHUNK) {
            engine
                .store
                .record(gw_store::Batch {
                    accepted: chunk.to_vec(),
                    ..Default::default()
                })
                .await
                .map_err(BenchError::NoteAccepted)?;
        }
        println!(
            "  queued {events} events ({} dossiers, up to {per_queue} per queue, {CHUNK} per publish batch) in {:.1} s during the outage",
            newest.len(),
            t_pub.elapsed().as_secs_f64()
        );
        tokio::time::sleep(Duration::from_secs(args.drain_outage_secs)).await;
        let outage_calls = portal.requests();
        let too_many0 = portal.rate_limited();
        // Recovery.
        portal.set_down(false);
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(args.timeout_secs);
        let mut samples = vec![(t0, portal.requests())];
        while settled(&metrics) < events as u64 {
            if Instant::now() > deadline {
                cancel.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(10), run).await;
                return Err(BenchError::DrainTimedOut {
                    secs: args.timeout_secs,
                    settled: settled(&metrics),
                    events,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            samples.push((Instant::now(), portal.requests()));
        }
        let drain_secs = t0.elapsed().as_secs_f64();
        cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), run).await;
        let records = portal.records();
        let missing_newest = newest
            .iter()
            .filter(|(code, v)| {
                records
                    .latest(code)
                    .and_then(crate::lab::demo::version_marker)
                    .is_none_or(|got| got != **v)
            })
            .count();
        let older_after_newer = records
            .ordering_violations(|_, item| crate::lab::demo::version_marker(item))
            .len();
        Ok(Drain {
            events,
            dossiers: newest.len(),
            outage_calls,
            drain_calls: portal.requests() - samples[0].1,
            drain_secs,
            max_window_rate: max_window_rate(&samples, Duration::from_secs(1)),
            too_many: portal.rate_limited() - too_many0,
            delivered: metrics.outcome_total("delivered"),
            superseded: metrics.outcome_total("superseded"),
            dead_lettered: metrics.outcome_total("dead_lettered"),
            items_accepted: records.dossiers.values().map(Vec::len).sum(),
            missing_newest,
            older_after_newer,
        })
    }
    .await;
    portal.set_down(false);
    portal.set_rate_limit(None);
    engine.broker.close().await;
    drop(engine);
    cleanup(args, &s, &queues).await;
    result
}

pub(super) fn print(d: &Drain, args: &BenchArgs) {
    println!(
        "  events {} ({} dossiers), portal calls during the outage {}, during the drain {}",
        d.events, d.dossiers, d.outage_calls, d.drain_calls
    );
    println!(
        "  drain time {:.1} s ({:.0} events/s); settled: delivered {}, superseded (coalesced) {}, dead-lettered {}",
        d.drain_secs,
        d.events as f64 / d.drain_secs,
        d.delivered,
        d.superseded,
        d.dead_lettered
    );
    println!(
        "  portal quota {:.0} calls/s (burst {}): highest rate seen over any 1 s {:.1} calls/s, mean {:.1}; 429 answers {}",
        args.drain_rate,
        args.drain_burst,
        d.max_window_rate,
        d.drain_calls as f64 / d.drain_secs,
        d.too_many
    );
    println!(
        "  portal: {} dossier versions accepted ({:.2} events per accepted version), newest version missing for {}, older-after-newer {}",
        d.items_accepted,
        d.events as f64 / d.items_accepted.max(1) as f64,
        d.missing_newest,
        d.older_after_newer
    );
    let within = d.max_window_rate <= args.drain_rate + f64::from(args.drain_burst);
    println!(
        "  quota kept (≤ rate + burst in every 1 s window): {}; nothing lost (newest of every dossier at the portal, none dead-lettered): {}",
        if within { "YES" } else { "NO" },
        if d.missing_newest == 0 && d.dead_lettered == 0 && d.older_after_newer == 0 {
            "YES"
        } else {
            "NO"
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_rate_of_steady_samples() {
        let t0 = Instant::now();
        // 10 calls a second, sampled every 100 ms, plus a burst of 30 in one sample.
        let mut samples: Vec<(Instant, u64)> = (0..50u64)
            .map(|i| (t0 + Duration::from_millis(i * 100), i))
            .collect();
        assert!((max_window_rate(&samples, Duration::from_secs(1)) - 10.0).abs() < 1e-9);
        for s in samples.iter_mut().skip(20) {
            s.1 += 30;
        }
        assert!((max_window_rate(&samples, Duration::from_secs(1)) - 40.0).abs() < 1e-9);
    }
}
