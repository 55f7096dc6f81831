//! `gateway bench --phases index`: what the service-quality index (issue 19) adds to the
//! gateway's CPU per event, in one run, against the goal (under 5 %).
//!
//! # Invariants
//! - Three runs per backend over the same kind of events (fresh dossiers' snapshots, ES256):
//!   **route** (the end-to-end run of the e2e phase: the route consumes, translates, signs,
//!   POSTs to the portal sandbox, records, acks), **route + index** (the same with the index's
//!   consumer, `jobs::indicators::consume`, applying its copy of each event at the same time)
//!   and **index** (the index's consumer alone). Events are preloaded before the consumers
//!   start, in each run, so the publishes are in none of them.
//! - The index's message (the event's fact alone, `crate::indicators::live`, grouped with the
//!   facts of the events accepted at the same time: `crate::indicators::publisher`) is sent
//!   with the routes' copies and confirmed in the same round: its cost is measured as the
//!   difference of `Engine::publish`'s CPU per event with and without the index, over the
//!   same number of fresh events, `--index-in-flight` published at once (as the edge does
//!   when that many requests are answered together); the index's queue of the consumer runs
//!   is filled the same way, so it holds the groups the live path makes.
//! - CPU is this process's user + system time without the sandbox's thread, per event. The
//!   added cost is the index alone plus the publish (the difference of the first two runs is
//!   printed too: on a shared machine it is noisier). The gateway's own CPU per event is the
//!   route run's; the inbound side's `Engine::publish` without the index is measured too (the
//!   median of `--rounds` runs alternating with the runs with the index, whose
//!   difference is the publish cost). Two shares are printed: the added cost ÷ the route, and
//!   ÷ (route + inbound publish). Both leave out the edge's HTTP and validation, so both are
//!   upper bounds of the index's share.
//! - Everything it creates (queues, schemas, data directories) goes with the run, as in the
//!   e2e phase.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use gw_broker::QueueSpec;
use tokio_util::sync::CancellationToken;

use super::args::*;
use super::error::BenchError;
use super::phases::Bench;
use super::setup::*;
use super::sys::*;
use crate::indicators::publisher::FactPublisher;
use crate::jobs::indicators::{consume, Counts};
use crate::model::envelope::Envelope;

/// The goal: the index adds under this share of the gateway's CPU per event.
const GOAL: f64 = 0.05;

/// What one run measures.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Run {
    Route,
    RouteAndIndex,
    Index,
}

/// One backend's figures, CPU µs per event.
struct Figures {
    route: f64,
    route_and_index: f64,
    index: f64,
    publish: f64,
    /// `Engine::publish`'s CPU per event without the index: the inbound side's broker work.
    inbound: f64,
}

fn index_settled(c: &Counts) -> u64 {
    c.applied.load(Relaxed)
        + c.duplicate.load(Relaxed)
        + c.ignored.load(Relaxed)
        + c.dead_lettered.load(Relaxed)
}

/// One run of `what` over `args.events` fresh dossiers (numbered from `*first`): CPU µs per
/// event of the gateway (this process without the sandbox's thread).
async fn run(
    args: &BenchArgs,
    s: &Setup,
    portal: &gw_contract_tests::portal::Portal,
    sandbox_tid: Option<&str>,
    first: &mut usize,
    what: Run,
) -> Result<f64, BenchError> {
    let (engine, metrics) = open_engine(s).await?;
    let loaded = crate::config::parse(&s.text, "<bench>", std::path::PathBuf::from("."))?;
    let store_url = loaded.store_url().map_err(BenchError::IndexStoreUrl)?;
    let queue = format!("gw.indicators.{}", s.route);
    let mut queues = engine.routes[0].queues();
    queues.push(queue.clone());
    let result = async {
        let store = gw_store::indicators::open(&store_url)
            .await
            .map_err(BenchError::IndexStore)?;
        engine
            .broker
            .declare(&[QueueSpec {
                name: queue.clone(),
                delivery_limit: 20,
            }])
            .await
            .map_err(BenchError::Declare)?;
        let unit = portal.config().units[0].clone();
        let msgs = messages(&engine, &unit, *first, args.events);
        *first += args.events;
        let index = what != Run::Route;
        let route = what != Run::Index;
        if index {
            // The index's messages of the same events, as the engine makes them with
            // `--index-in-flight` events accepted at once (their facts grouped).
            let envs: Vec<Envelope> = msgs
                .values()
                .flatten()
                .filter_map(|m| Envelope::decode(&m.body).ok())
                .collect();
            let publisher = FactPublisher::start(engine.broker.clone(), &queue);
            futures::stream::iter(envs.iter().map(|e| publisher.publish(e)))
                .buffered(args.index_in_flight)
                .try_collect::<()>()
                .await
                .map_err(BenchError::Publish)?;
        }
        if route {
            preload(&engine, msgs).await?;
        }
        let cancel = CancellationToken::new();
        let counts = Arc::new(Counts::default());
        let mut tasks = tokio::task::JoinSet::new();
        let cpu0 = cpu_secs();
        let sandbox0 = thread_cpu_secs(sandbox_tid);
        if route {
            let (e, c) = (engine.clone(), cancel.clone());
            tasks.spawn(async move {
                let _ = e.run(c).await;
            });
        }
        if index {
            let (b, st, n, c, q) = (
                engine.broker.clone(),
                store.clone(),
                counts.clone(),
                cancel.clone(),
                queue.clone(),
            );
            tasks.spawn(async move {
                if let Err(e) = consume(b, q, st, n, c).await {
                    eprintln!("note: the index's consumer stopped: {e}");
                }
            });
        }
        let target = args.events as u64;
        let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
        let done = || {
            (!route || settled(&metrics) >= target) && (!index || index_settled(&counts) >= target)
        };
        while !done() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let cpu = cpu_secs() - cpu0 - (thread_cpu_secs(sandbox_tid) - sandbox0);
        cancel.cancel();
        while tokio::time::timeout(Duration::from_secs(10), tasks.join_next())
            .await
            .ok()
            .flatten()
            .is_some()
        {}
        if !done() {
            return Err(BenchError::IndexNotSettled {
                route: settled(&metrics),
                index: index_settled(&counts),
                target,
            });
        }
        Ok(cpu * 1e6 / target as f64)
    }
    .await;
    engine.broker.close().await;
    drop(engine);
    cleanup(args, s, &queues).await;
    result
}

/// `Engine::publish`'s CPU µs per event without the index and what the index's message adds
/// to it (the routes' copies and the index's message confirmed in one round): fresh events
/// published through the engine without the index, then with it, alternating `rounds` times;
/// each the median of its runs (one difference of two runs moved from 0 to 14 µs between
/// invocations on this shared machine).
async fn publish_cost(
    args: &BenchArgs,
    s: &Setup,
    first: &mut usize,
    rounds: usize,
) -> Result<(f64, f64), BenchError> {
    let loaded = crate::config::parse(&s.text, "<bench>", std::path::PathBuf::from("."))?;
    let (broker, store) = crate::app::open_backends(&loaded)
        .await
        .map_err(BenchError::Backends)?;
    let metrics = Arc::new(crate::telemetry::metrics::Metrics::new());
    let mut engine = crate::app::build_engine(&loaded, broker, store, metrics)
        .map_err(BenchError::Engine)?
        .with_indicators(&format!("gw.indicators.{}", s.route));
    let mut queues = engine.routes[0].queues();
    queues.extend(engine.indicators.as_ref().map(|p| p.queue().to_string()));
    let result = async {
        engine.declare().await.map_err(BenchError::Declare)?;
        let index = engine.indicators.take();
        // Without the index, then with it (the one field of the engine that the index sets).
        let mut cpu: [Vec<f64>; 2] = Default::default();
        for _ in 0..rounds.max(1) {
            for (i, runs) in cpu.iter_mut().enumerate() {
                engine.indicators = if i == 1 { index.clone() } else { None };
                let envs: Vec<Envelope> = messages(&engine, "000.00.01.H22", *first, args.events)
                    .into_values()
                    .flatten()
                    .filter_map(|m| Envelope::decode(&m.body).ok())
                    .collect();
                *first += args.events;
                let cpu0 = cpu_secs();
                futures::stream::iter(envs.iter().map(|e| engine.publish(e)))
                    .buffered(args.index_in_flight)
                    .try_collect::<Vec<_>>()
                    .await
                    .map_err(BenchError::Publish)?;
                runs.push((cpu_secs() - cpu0) * 1e6 / envs.len().max(1) as f64);
            }
        }
        let without = median(&cpu[0]).unwrap_or(0.0);
        let with = median(&cpu[1]).unwrap_or(0.0);
        Ok((without, (with - without).max(0.0)))
    }
    .await;
    engine.broker.close().await;
    drop(engine);
    cleanup(args, s, &queues).await;
    result
}

impl Bench<'_> {
    /// The index's added CPU per event, per backend (see the module's invariants).
    pub(super) async fn index_phase(&mut self) {
        let (args, portal) = (self.args, &self.portal);
        if !args.phase("index") {
            return;
        }
        println!();
        println!(
            "== service-quality index: its added CPU per event ({} events per run, ES256; CPU µs per event of this process without the sandbox's thread) ==",
            args.events
        );
        println!(
            "  {:<20} {:>7} {:>8} {:>12} {:>11} {:>7} {:>8} {:>7} {:>12} {:>12}",
            "backend",
            "route",
            "inbound",
            "route+index",
            "difference",
            "index",
            "publish",
            "added",
            "÷ route",
            "÷ r.+inbound"
        );
        for &b in &self.backends.clone() {
            let s = setup(args, b, Sig::Ecdsa, portal);
            let mut first = 0usize;
            let sandbox = self.sandbox_tid.clone();
            let figures = async {
                let sandbox = sandbox.as_deref();
                let route = run(args, &s, portal, sandbox, &mut first, Run::Route).await?;
                portal.clear_records();
                let both = run(args, &s, portal, sandbox, &mut first, Run::RouteAndIndex).await?;
                portal.clear_records();
                let index = run(args, &s, portal, sandbox, &mut first, Run::Index).await?;
                let (inbound, publish) = publish_cost(args, &s, &mut first, args.rounds).await?;
                Ok::<_, BenchError>(Figures {
                    route,
                    route_and_index: both,
                    index,
                    publish,
                    inbound,
                })
            };
            match figures.await {
                Ok(f) => {
                    let added = f.index + f.publish;
                    let share = added / f.route;
                    let whole = added / (f.route + f.inbound);
                    println!(
                        "  {:<20} {:>7.1} {:>8.1} {:>12.1} {:>11.1} {:>7.1} {:>8.1} {:>7.1} {:>11.1}% {:>11.1}%  goal < {:.0} %: {}",
                        b.label(),
                        f.route,
                        f.inbound,
                        f.route_and_index,
                        f.route_and_index - f.route,
                        f.index,
                        f.publish,
                        added,
                        share * 100.0,
                        whole * 100.0,
                        GOAL * 100.0,
                        match (share < GOAL, whole < GOAL) {
                            (true, _) => "met",
                            (false, true) => "met against route + inbound only",
                            (false, false) => "not met",
                        }
                    );
                }
                Err(e) => {
                    self.failures += 1;
                    println!("  {:<20} failed: {e}", b.label());
                }
            }
            portal.clear_records();
        }
        println!(
            "  route: the gateway's CPU per event (consume, translate, sign, POST, record, ack); index: the index's consumer alone \
             (batches of 64, one transaction each, of the groups of facts the live path makes); publish: what the index's facts add to Engine::publish \
             ({} events published at once, --index-in-flight: their facts share messages; confirmed in the routes' round); added = index + publish; \
             inbound: Engine::publish's own CPU per event without the index (the routes' copies, confirmed; the median of {} runs, as is publish); \
             shares: added ÷ route, and added ÷ (route + inbound), the gateway's CPU per event on the live path but for the edge's HTTP and validation (both upper bounds)",
            args.index_in_flight,
            args.rounds.max(1)
        );
    }
}
