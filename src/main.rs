//! `ringproxy`: the command line. Parses arguments, loads the config and hands over to the
//! library; maps failures to exit codes (2 for a bad config, 1 for anything else).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use ringproxy::config::Config;
use ringproxy::server::{ServeError, Server};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "ringproxy",
    version,
    about = "A consistent-hashing reverse proxy for cache servers"
)]
struct Cli {
    /// Config file to serve with.
    #[arg(long, short, env = "RINGPROXY_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config and print a summary.
    Check,
    /// Print which backend each key routes to.
    Route {
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Preview a membership change offline: what would move, exactly (the same code as the
    /// admin API's POST /ring/plan). The current membership is the state file's when one is
    /// configured and present, else the config's [[backends]], as at start.
    /// Translate an nginx upstream with `hash ... consistent` into a ringproxy config (on
    /// stdout) that routes every key to the same server. Exit 0: complete; 1: printed, but
    /// something could not be translated (listed on stderr with file:line); 2: no translation.
    ImportNginx {
        /// The main nginx config file (includes resolve against its directory).
        file: PathBuf,
        /// The upstream to translate, when several use `hash ... consistent`.
        #[arg(long)]
        upstream: Option<String>,
    },
    Plan {
        /// A backend that joins: ID=HOST:PORT or ID=HOST:PORT:WEIGHT (repeatable).
        #[arg(long, value_name = "ID=ADDR[:W]")]
        join: Vec<String>,
        /// A backend that leaves (repeatable).
        #[arg(long, value_name = "ID")]
        leave: Vec<String>,
        /// A new weight for a backend that stays (repeatable).
        #[arg(long, value_name = "ID=W")]
        weight: Vec<String>,
        /// Print JSON, as POST /ring/plan answers, instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a self-contained demo: three backends behind the proxy on 127.0.0.1:8080.
    Demo,
    /// Speak the JSON-lines node protocol on stdin/stdout (same as `ringproxy-node`).
    Node,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    ringproxy::logging::init("info", matches!(cli.log_format, LogFormat::Json));
    match cli.command {
        None => {
            let path = cli.config.clone();
            with_config(cli.config, |c| serve(c, path))
        }
        Some(Command::Check) => with_config(cli.config, |c| {
            print_summary(&c);
            ExitCode::SUCCESS
        }),
        Some(Command::Route { keys }) => with_config(cli.config, |c| {
            let ring = c.ring();
            for key in keys {
                match ring.lookup(key.as_bytes()) {
                    Some(i) => {
                        let b = &c
                            .backends
                            .iter()
                            .find(|b| *b.id == *ring.member(i).id)
                            .expect("ring member is a backend");
                        println!("{key} -> {} ({})", b.id, b.address);
                    }
                    None => println!("{key} -> (no backends)"),
                }
            }
            ExitCode::SUCCESS
        }),
        Some(Command::ImportNginx { file, upstream }) => import_nginx(&file, upstream.as_deref()),
        Some(Command::Plan {
            join,
            leave,
            weight,
            json,
        }) => with_config(cli.config, |c| plan(&c, &join, &leave, &weight, json)),
        Some(Command::Demo) => runtime_and(|shutdown| async move {
            ringproxy::demo::run(shutdown)
                .await
                .map_err(|e| Failure::Other(e.into()))
        }),
        Some(Command::Node) => match ringproxy::node::run_stdio() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ringproxy node: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn import_nginx(file: &std::path::Path, upstream: Option<&str>) -> ExitCode {
    match ringproxy::nginx_import::translate(file, upstream) {
        Ok(t) => {
            print!("{}", t.to_toml());
            for w in &t.warnings {
                eprintln!("warning: {w}");
            }
            if t.is_partial() {
                eprintln!("the translation is partial: review the warnings above");
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Loads the config named on the command line, or exits 2 saying what is wrong with it.
fn with_config(path: Option<PathBuf>, then: impl FnOnce(Config) -> ExitCode) -> ExitCode {
    let Some(path) = path else {
        eprintln!("error: no config file; pass --config FILE or set RINGPROXY_CONFIG (or try `ringproxy demo`)");
        return ExitCode::from(2);
    };
    match Config::load(&path) {
        Ok(c) => then(c),
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            ExitCode::from(2)
        }
    }
}

/// `ringproxy plan`: reads the change from the arguments and prints the plan; a bad argument
/// or an impossible change exits 2 naming it.
fn plan(c: &Config, join: &[String], leave: &[String], weight: &[String], json: bool) -> ExitCode {
    use ringproxy::plan::{plan, Change};
    let change = (|| {
        Ok::<_, ringproxy::plan::PlanError>(Change {
            join: join
                .iter()
                .map(|a| Change::parse_join(a))
                .collect::<Result<_, _>>()?,
            leave: leave
                .iter()
                .map(|a| Change::parse_leave(a))
                .collect::<Result<_, _>>()?,
            weight: weight
                .iter()
                .map(|a| Change::parse_weight(a))
                .collect::<Result<_, _>>()?,
        })
    })();
    // The membership the proxy would start with: the state file's when there is one.
    let cluster = match ringproxy::snapshot::Cluster::new(c) {
        Ok(cluster) => cluster,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let planned = change.and_then(|change| plan(&cluster.load().ring, &change));
    match planned {
        Ok(p) if json => {
            println!("{:#}", p.to_json());
            ExitCode::SUCCESS
        }
        Ok(p) => {
            print!("{}", p.to_text());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", cli_error(&e, join, leave, weight));
            ExitCode::from(2)
        }
    }
}

/// A plan error in the command line's words: `leave[1]` is the second `--leave`, `join[0].id`
/// the first `--join`, `weight.ID` the `--weight ID=...`.
fn cli_error(
    e: &ringproxy::plan::PlanError,
    join: &[String],
    leave: &[String],
    weight: &[String],
) -> String {
    let field = &e.field;
    let index = |prefix: &str| {
        field
            .strip_prefix(prefix)?
            .split(']')
            .next()?
            .parse::<usize>()
            .ok()
    };
    let named = if let Some(arg) = index("leave[").and_then(|i| leave.get(i)) {
        format!("--leave {arg}")
    } else if let Some(arg) = index("join[").and_then(|i| join.get(i)) {
        format!("--join {arg}")
    } else if let Some(id) = field.strip_prefix("weight.") {
        weight
            .iter()
            .find(|w| w.split('=').next() == Some(id))
            .map_or_else(|| field.clone(), |w| format!("--weight {w}"))
    } else {
        field.clone()
    };
    format!("{named}: {}", e.message)
}

fn print_summary(c: &Config) {
    println!("config ok");
    println!("proxy  listen {}", c.proxy.listen);
    println!(
        "admin  listen {}{}",
        c.admin.listen,
        if c.admin.token.is_some() {
            " (token required)"
        } else {
            ""
        }
    );
    println!("ring   vnodes {}, {} points", c.vnodes, c.ring().points());
    println!(
        "key    {} (on missing: {:?})",
        c.affinity.describe(),
        c.affinity.on_missing
    );
    let shares = c.ring().shares();
    let ring = c.ring();
    for b in &c.backends {
        let share = ring.index_of(&b.id).map_or(0.0, |i| shares[i].1);
        println!(
            "backend {} {} weight {} share {:.1}%",
            b.id,
            b.address,
            b.weight,
            share * 100.0
        );
    }
    if c.backends.is_empty() {
        println!("no backends: every request gets 503 until one joins through the admin API");
    }
}

fn serve(config: Config, path: Option<PathBuf>) -> ExitCode {
    runtime_and(|shutdown| async move {
        let server = match Server::bind_with_reload(&config, path).await {
            Ok(s) => s,
            // A state file that cannot be used is a configuration problem: exit 2 like one.
            Err(ServeError::Start(e)) => return Err(Failure::Config(e.to_string())),
            Err(e) => return Err(Failure::Other(e.into())),
        };
        // The handler is installed here, before `run` logs "listening": a SIGHUP sent as soon
        // as that line appears must reload, not meet the default action (terminate).
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        tokio::spawn(reload_on_hangup(server.reloader(), hangup));
        server
            .run(shutdown)
            .await
            .map_err(|e| Failure::Other(e.into()))
    })
}

/// Why a command failed, and so its exit code.
enum Failure {
    /// Exit 2: the configuration (or the state it points to) is unusable.
    Config(String),
    /// Exit 1.
    Other(anyhow::Error),
}

/// `SIGHUP` (from `hangup`, installed by the caller) re-reads the config file; a failed reload
/// is logged and changes nothing.
async fn reload_on_hangup(
    reloader: std::sync::Arc<ringproxy::reload::Reloader>,
    hangup: std::io::Result<tokio::signal::unix::Signal>,
) {
    let Ok(mut hup) = hangup else {
        tracing::error!("cannot install the SIGHUP handler; reload with POST /reload");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the config");
        // The outcome is logged by the reloader.
        let _ = reloader.reload();
    }
}

/// Starts the runtime, wires SIGTERM/SIGINT to a cancellation token and runs `body`.
fn runtime_and<F, Fut>(body: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    // Proxy traffic gets worker threads of its own (see `Server::run`); this runtime only
    // carries the admin API, health checks and signals.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        // Installed before anything listens: a SIGTERM right after "listening" must already
        // find the handler, not the default action.
        match stop_signals() {
            Some(signals) => {
                tokio::spawn(wait_and_stop(signals, shutdown.clone()));
            }
            None => tracing::error!("cannot install signal handlers"),
        }
        match body(shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(Failure::Config(e)) => {
                tracing::error!("{e}");
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
            Err(Failure::Other(e)) => {
                tracing::error!("{e:#}");
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

type StopSignals = (tokio::signal::unix::Signal, tokio::signal::unix::Signal);

/// SIGTERM and SIGINT listeners, installed now.
fn stop_signals() -> Option<StopSignals> {
    use tokio::signal::unix::{signal, SignalKind};
    Some((
        signal(SignalKind::terminate()).ok()?,
        signal(SignalKind::interrupt()).ok()?,
    ))
}

async fn wait_and_stop((mut term, mut int): StopSignals, shutdown: CancellationToken) {
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}
