//! The `gateway` command line.

pub mod evidence;
pub mod ops;
pub mod payments;
pub mod sign;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::config::{self, Loaded};
use crate::model::time::now_ms;

#[derive(Parser, Debug)]
#[command(
    name = "gateway",
    version,
    about = "Integration gateway: one-stop system ↔ national platforms"
)]
pub struct Cli {
    /// Log as JSON lines (for log collectors) instead of human-readable text.
    #[arg(long, global = true, env = "GATEWAY_LOG_JSON")]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway with a configuration file.
    Run {
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// The demo: embedded queue and store, a recording sandbox and a traffic simulator, all
    /// in-process; runs dossier events through and checks nothing is missing.
    #[cfg(feature = "lab")]
    Demo(crate::lab::demo::DemoArgs),
    /// Benchmark: raw RabbitMQ and OpenSSL limits beside the gateway end to end, in one run.
    #[cfg(feature = "lab")]
    Bench(crate::lab::bench::BenchArgs),
    #[cfg(not(feature = "lab"))]
    #[command(hide = true)]
    Demo(LabOff),
    #[cfg(not(feature = "lab"))]
    #[command(hide = true)]
    Bench(LabOff),
    /// Validate a configuration file without starting; prints every problem.
    CheckConfig { file: PathBuf },
    /// Dead letters: list, show, replay, drop.
    Dlq {
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: PathBuf,
        #[command(subcommand)]
        action: DlqAction,
    },
    /// A dossier's trail: every attempt and outcome on every route, as a table.
    Trace {
        /// The dossier code (the ordering key).
        dossier: String,
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// The evidence log: verify every chain and time-stamp, export a dossier's proof, prune.
    Evidence {
        #[command(subcommand)]
        action: crate::cli::evidence::EvidenceAction,
    },
    /// Routes, queue depths and open dead letters.
    Status {
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// Sign a file with a profile or a key: XML → XML-DSig enveloped, JSON → JWS compact
    /// (`--detached`: RFC 7797). Exit 2 on usage/config errors.
    Sign(crate::cli::sign::SignArgs),
    /// Verify a signed file (XML-DSig, compact or detached JWS) with a profile, a pinned
    /// certificate or trust anchors; says by whom, or exactly why not. Exit 1 when it fails.
    Verify(crate::cli::sign::VerifyArgs),
    /// The portal's catalogue: `sync` compares it with the last run once and publishes only
    /// the changes (the `[catalogue]` section); prints added/changed/removed/unchanged.
    Catalogue {
        /// Only `sync`.
        action: String,
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// Online fee payment: `reconcile` asks the providers about overdue orders (and, with
    /// `--date`, that day's orders), settles what they say and prints the mismatches.
    Payments {
        /// Only `reconcile`.
        action: String,
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: PathBuf,
        /// The day to reconcile, `yyyy-mm-dd` (GMT+7).
        #[arg(long)]
        date: Option<String>,
        /// Only this provider.
        #[arg(long)]
        provider: Option<String>,
    },
    /// Run the recording HTTP sink sandbox standalone.
    #[cfg(feature = "lab")]
    Sink {
        #[arg(long, default_value_t = 8181)]
        port: u16,
    },
    /// Run a strict sandbox of an external party standalone: `portal` (DVCQG).
    #[cfg(feature = "lab")]
    Sandbox {
        /// Which party: portal, vnpay, payplatform, paygov, momo.
        party: String,
        #[arg(long, default_value_t = 8282)]
        port: u16,
    },
    #[cfg(not(feature = "lab"))]
    #[command(hide = true)]
    Sink(LabOff),
    #[cfg(not(feature = "lab"))]
    #[command(hide = true)]
    Sandbox(LabOff),
    /// Show what a one-stop adapter makes of a sample: the canonical dossier, the national
    /// portal's payload and the vendor JSON it maps back to, schema-checked, without sending.
    Map {
        /// The adapter folder, e.g. adapters/onestop-example.
        adapter: PathBuf,
        /// A vendor JSON sample.
        sample: PathBuf,
    },
}

/// A lab command (`demo`, `bench`, `sink`, `sandbox`) in a build without the `lab` feature:
/// hidden from `--help`, takes any arguments and refuses with a clear error (exit 2) rather
/// than clap's "unrecognized subcommand".
#[cfg(not(feature = "lab"))]
#[derive(clap::Args, Debug)]
pub struct LabOff {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

#[cfg(not(feature = "lab"))]
fn lab_off(command: &str) -> ExitCode {
    eprintln!(
        "gateway {command}: this binary was built without the `lab` feature (the production \
         build): the demo, bench and sandboxes are not in it. They are in the default build \
         (`cargo build --release`, or `cargo run --release -- demo` from the repository root)."
    );
    ExitCode::from(2)
}

#[derive(Subcommand, Debug)]
pub enum DlqAction {
    /// List dead letters (open ones by default).
    List {
        #[arg(long)]
        route: Option<String>,
        #[arg(long)]
        key: Option<String>,
        /// open, replayed, dropped or all.
        #[arg(long, default_value = "open")]
        state: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one dead letter with its original envelope.
    Show { id: String },
    /// Re-publish dead letters to their route queue (recorded, idempotent).
    Replay {
        ids: Vec<String>,
        /// Replay every open dead letter of `--route`.
        #[arg(long, requires = "route")]
        all: bool,
        #[arg(long)]
        route: Option<String>,
        /// Who is replaying (recorded).
        #[arg(long, env = "USER", default_value = "cli")]
        by: String,
    },
    /// Drop dead letters (recorded; the envelope is kept for the record).
    Drop {
        ids: Vec<String>,
        #[arg(long, env = "USER", default_value = "cli")]
        by: String,
    },
}

pub fn init_logging(json: bool) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let filter = EnvFilter::try_from_env("GATEWAY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        // JSON escapes every string itself.
        fmt.json().flatten_event(true).with_filter(filter).boxed()
    } else {
        fmt.fmt_fields(escaped_fields()).with_filter(filter).boxed()
    };
    // The OTLP layer has its own filter: spans are exported whatever the log level.
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(crate::telemetry::layer())
        .try_init();
}

/// Text-log fields with every control character escaped (`\n` → `\\n`): values from
/// outside (a reference, a kind, an error message a party sent) can never start a forged log
/// line or drive the terminal.
fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let raw = format!("{value:?}");
        let text = escape_controls(&raw);
        if field.name() == "message" {
            write!(w, "{text}")
        } else {
            write!(w, "{}={text}", field.name())
        }
    })
    .delimited(" ")
}

/// `s` with control characters written as escapes.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run(cli.command))
}

/// What makes `check-config` fail on a configuration that parsed: files it names that are
/// missing or unreadable, and secrets that read empty (an empty token would switch a check
/// off). Secrets that cannot be read on this machine are reported as warnings instead.
fn check_problems(l: &Loaded) -> Vec<String> {
    let mut problems = crate::app::check_files(l);
    for (key, r) in l.secret_refs() {
        if let Err(config::SecretProblem::Empty(why)) = r.read(&l.base) {
            problems.push(format!("{key}: {why}"));
        }
    }
    problems
}

fn load_or_exit(path: &std::path::Path) -> Result<Loaded, ExitCode> {
    config::load(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })
}

async fn run(cmd: Command) -> ExitCode {
    match cmd {
        Command::CheckConfig { file } => match config::load(&file) {
            Ok(l) if !check_problems(&l).is_empty() => {
                let problems = check_problems(&l);
                for p in &problems {
                    eprintln!("{p}");
                }
                eprintln!("{} problem(s) found", problems.len());
                ExitCode::from(2)
            }
            Ok(l) => {
                println!(
                    "{}: ok ({} sources, {} adapters, {} routes; broker {}, store {})",
                    l.origin,
                    l.config.sources.len(),
                    l.config.adapters.len(),
                    l.config.routes.len(),
                    if l.config.broker.url.is_some() {
                        "rabbitmq"
                    } else {
                        "embedded"
                    },
                    if l.config.store.url.is_some() {
                        "postgres"
                    } else {
                        "sqlite"
                    }
                );
                for w in l.warnings() {
                    println!("warning: {w}");
                }
                let secrets = l.secret_refs();
                let unread: Vec<String> = secrets
                    .iter()
                    .filter_map(|(key, r)| match r.read(&l.base) {
                        Err(config::SecretProblem::Unavailable(why)) => {
                            Some(format!("{key}: {why}"))
                        }
                        _ => None,
                    })
                    .collect();
                println!(
                    "secrets: {} of {} read and non-empty here",
                    secrets.len() - unread.len(),
                    secrets.len()
                );
                for u in &unread {
                    println!("warning: secret not checked (cannot be read here): {u}");
                }
                if l.config.ops.tokens.is_empty() {
                    println!("note: no [ops] tokens: the ops API and dashboard are off (/healthz, /readyz and /metrics answer)");
                } else {
                    println!(
                        "ops API and dashboard on http://{}/ for {} token(s)",
                        l.config.ops.listen,
                        l.config.ops.tokens.len()
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                eprintln!("{} problem(s) found", e.problems.len());
                ExitCode::from(2)
            }
        },
        Command::Run { config } => {
            let loaded = match load_or_exit(&config) {
                Ok(l) => l,
                Err(c) => return c,
            };
            let cancel = CancellationToken::new();
            let running = match app::start(&loaded, cancel.clone()).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start: {e}");
                    return ExitCode::FAILURE;
                }
            };
            println!(
                "gateway running: inbound http://{} ops http://{}",
                running.inbound_addr, running.ops_addr
            );
            app::wait_for_signal().await;
            tracing::info!("shutting down: finishing in-flight work");
            running.shutdown().await;
            ExitCode::SUCCESS
        }
        #[cfg(feature = "lab")]
        Command::Demo(args) => crate::lab::demo::run(args).await,
        #[cfg(feature = "lab")]
        Command::Bench(args) => crate::lab::bench::run(args).await,
        #[cfg(not(feature = "lab"))]
        Command::Demo(_) => lab_off("demo"),
        #[cfg(not(feature = "lab"))]
        Command::Bench(_) => lab_off("bench"),
        #[cfg(not(feature = "lab"))]
        Command::Sandbox(_) => lab_off("sandbox"),
        #[cfg(not(feature = "lab"))]
        Command::Sink(_) => lab_off("sink"),
        Command::Sign(args) => crate::cli::sign::sign(args),
        Command::Verify(args) => crate::cli::sign::verify(args),
        #[cfg(feature = "lab")]
        Command::Sandbox { party, port } => match party.as_str() {
            "portal" => match gw_contract_tests::portal::run_standalone(port).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cannot run the portal sandbox: {e}");
                    ExitCode::FAILURE
                }
            },
            "vnpay" => match gw_contract_tests::vnpay::run_standalone(port).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cannot run the VNPay sandbox: {e}");
                    ExitCode::FAILURE
                }
            },
            "payplatform" => match gw_contract_tests::payplatform::run_standalone(port).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cannot run the payment platform sandbox: {e}");
                    ExitCode::FAILURE
                }
            },
            "paygov" => match gw_contract_tests::paygov::run_standalone(port).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cannot run the PayGov sandbox: {e}");
                    ExitCode::FAILURE
                }
            },
            "momo" => match gw_contract_tests::momo::run_standalone(port).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cannot run the MoMo sandbox: {e}");
                    ExitCode::FAILURE
                }
            },
            other => {
                eprintln!(
                    "unknown sandbox `{other}`: use portal, vnpay, payplatform, paygov or momo"
                );
                ExitCode::from(2)
            }
        },
        Command::Map { adapter, sample } => match crate::mapping::map_command(&adapter, &sample) {
            Ok(text) => {
                print!("{text}");
                match portal_payload(&adapter, &sample) {
                    Ok(p) => {
                        println!("\n== national portal payload (DongBoHoSoMC data item) ==");
                        println!("{p}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Payments {
            action,
            config,
            date,
            provider,
        } => match action.as_str() {
            "reconcile" => {
                crate::cli::payments::reconcile_command(
                    &config,
                    date.as_deref(),
                    provider.as_deref(),
                )
                .await
            }
            other => {
                eprintln!("unknown payments action `{other}`: use reconcile");
                ExitCode::from(2)
            }
        },
        #[cfg(feature = "lab")]
        Command::Sink { port } => {
            let sink = match gw_contract_tests::sink::Sink::start(port, Default::default()).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cannot start the sink: {e}");
                    return ExitCode::FAILURE;
                }
            };
            println!(
                "sink listening: POST {}  records: http://{}/_sink/records",
                sink.url(),
                sink.addr
            );
            app::wait_for_signal().await;
            ExitCode::SUCCESS
        }
        Command::Trace { dossier, config } => {
            let loaded = match load_or_exit(&config) {
                Ok(l) => l,
                Err(c) => return c,
            };
            crate::cli::ops::trace(&loaded, &dossier)
                .await
                .unwrap_or_else(|e| {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                })
        }
        Command::Catalogue { action, config } => {
            if action != "sync" {
                eprintln!("unknown catalogue action `{action}`: use `gateway catalogue sync --config FILE`");
                return ExitCode::from(2);
            }
            let loaded = match load_or_exit(&config) {
                Ok(l) => l,
                Err(c) => return c,
            };
            match catalogue_sync(&loaded).await {
                Ok(summary) => {
                    println!("catalogue sync: {summary}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("catalogue sync failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Evidence { action } => match load_or_exit(action.config()) {
            Ok(loaded) => crate::cli::evidence::run(&loaded, action).await,
            Err(c) => c,
        },
        Command::Status { config } => {
            let loaded = match load_or_exit(&config) {
                Ok(l) => l,
                Err(c) => return c,
            };
            crate::cli::ops::status(&loaded).await.unwrap_or_else(|e| {
                eprintln!("{e}");
                ExitCode::FAILURE
            })
        }
        Command::Dlq { config, action } => {
            let loaded = match load_or_exit(&config) {
                Ok(l) => l,
                Err(c) => return c,
            };
            match dlq(&loaded, action).await {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The portal item a vendor sample becomes (local procedure code mapped to the national one
/// through the adapter's table).
fn portal_payload(adapter: &std::path::Path, sample: &std::path::Path) -> Result<String, String> {
    let a = crate::mapping::Adapter::load(adapter).map_err(|p| {
        p.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let text = std::fs::read(sample).map_err(|e| format!("{}: {e}", sample.display()))?;
    let origin = sample
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let inb = a.parse_inbound(&text, &origin).map_err(|e| e.to_string())?;
    let mut d = inb.dossier;
    if let Some(n) = a.national_procedure_code(&d.procedure_code) {
        d.procedure_code = n.to_string();
    }
    let table = crate::connectors::dvcqg::translate::ProcedureTable::default();
    let item = crate::connectors::dvcqg::translate::dossier_item(&d, &table)
        .map_err(|e| format!("{origin}: {e}"))?;
    Ok(serde_json::to_string_pretty(&item).unwrap_or_default())
}

async fn dlq(loaded: &Loaded, action: DlqAction) -> Result<ExitCode, app::AppError> {
    let (broker, store) = app::open_backends(loaded).await?;
    let result = match action {
        DlqAction::List {
            route,
            key,
            state,
            limit,
        } => {
            let state = match state.as_str() {
                "all" => None,
                s => match gw_store::DeadLetterState::parse(s) {
                    Some(s) => Some(s),
                    None => {
                        eprintln!("--state {s}: use open, replayed, dropped or all");
                        return Ok(ExitCode::from(2));
                    }
                },
            };
            let list = store
                .dead_letters(&gw_store::DeadLetterFilter {
                    route,
                    key,
                    state,
                    limit,
                })
                .await?;
            println!(
                "{:<36}  {:<16}  {:<28}  {:>8}  {:<9}  reason",
                "id", "route", "key", "attempts", "state"
            );
            for d in &list {
                println!(
                    "{:<36}  {:<16}  {:<28}  {:>8}  {:<9}  {}",
                    d.letter.id,
                    d.letter.route,
                    d.letter.key,
                    d.letter.attempts,
                    d.state.as_str(),
                    d.letter.reason
                );
            }
            println!("{} dead letter(s)", list.len());
            ExitCode::SUCCESS
        }
        DlqAction::Show { id } => match store.dead_letter(&id).await? {
            Some(d) => {
                let envelope = String::from_utf8_lossy(&d.letter.envelope).into_owned();
                let mut v = serde_json::to_value(&d).unwrap_or_default();
                v["envelope"] =
                    serde_json::from_str(&envelope).unwrap_or(serde_json::Value::String(envelope));
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("no dead letter {id}");
                ExitCode::from(1)
            }
        },
        DlqAction::Replay {
            ids,
            all,
            route,
            by,
        } => {
            // The bulk replay opens its own backends (the embedded queue allows one opener).
            broker.close().await;
            drop((broker, store));
            return crate::cli::ops::replay(loaded, ids, all, route, &by).await;
        }
        DlqAction::Drop { ids, by } => {
            let mut failed = 0;
            for id in &ids {
                match store.mark_dropped(id, &by, now_ms()).await? {
                    gw_store::Settled::Changed(_) => println!("{id}: dropped"),
                    gw_store::Settled::AlreadySettled(d) => {
                        println!("{id}: already {}, nothing done", d.state.as_str())
                    }
                    gw_store::Settled::NotFound => {
                        failed += 1;
                        println!("{id}: not found")
                    }
                }
            }
            if failed > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
    };
    broker.close().await;
    Ok(result)
}

/// `gateway catalogue sync`: one run over the configured broker and store (the running
/// gateway, or the next start, delivers what it published).
async fn catalogue_sync(loaded: &Loaded) -> Result<crate::jobs::catalogue::Summary, String> {
    let Some(job) =
        crate::jobs::catalogue::CatalogueSync::from_config(loaded).map_err(|e| e.to_string())?
    else {
        return Err(format!(
            "{}:catalogue: no [catalogue] section: add one with from = \"<dvcqg adapter>\"",
            loaded.origin
        ));
    };
    let (broker, store) = crate::app::open_backends(loaded)
        .await
        .map_err(|e| e.to_string())?;
    let metrics = std::sync::Arc::new(crate::telemetry::metrics::Metrics::new());
    let engine = crate::app::build_engine(loaded, broker.clone(), store, metrics)
        .map_err(|e| e.to_string())?;
    engine.declare().await.map_err(|e| e.to_string())?;
    let result = job.run_once(&engine).await;
    broker.close().await;
    result.map_err(|e| e.to_string())
}

#[cfg(test)]
mod log_tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A newline from outside, in a field or in the message, cannot start a log line (before,
    /// the text log printed it verbatim and a forged line followed).
    #[test]
    fn text_log_lines_cannot_be_forged() {
        let buf = Buf::default();
        let b = buf.clone();
        let sub = tracing_subscriber::fmt()
            .fmt_fields(super::escaped_fields())
            .with_ansi(false)
            .with_writer(move || b.clone())
            .finish();
        let outside = "GW1\n2026-12-05T00:00:00Z ERROR gateway: forged\u{1b}[31m";
        tracing::subscriber::with_default(sub, || {
            tracing::info!(reference = %outside, kind = outside, "refused {outside}");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains(r"GW1\n2026"), "{text}");
        assert!(text.contains("reference=GW1"), "{text}");
    }
}
