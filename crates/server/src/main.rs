//! `oxcd`: the server, started with etcd's flags.

use std::process::ExitCode;

use oxcd_server::config::{self, Invocation};
use oxcd_server::tcp_gateway::GatewayArgs;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

fn main() -> ExitCode {
    limit_malloc_arenas();
    // `oxcd gateway ...`: etcd's L4 gateway instead of a member.
    if std::env::args_os().nth(1).is_some_and(|a| a == "gateway") {
        return gateway();
    }
    // `oxcd grpc-proxy ...`: etcd's gRPC proxy instead of a member.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "grpc-proxy")
    {
        return grpc_proxy();
    }
    #[cfg(feature = "failpoints")]
    let _failpoints = failpoints();
    let cfg = match config::parse() {
        Ok(Invocation::Serve(cfg)) => cfg,
        Ok(Invocation::PrintHelp(text)) | Ok(Invocation::PrintVersion(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    if let Err(e) = oxcd_server::logging::init(&cfg) {
        eprintln!("cannot start logging: {e}");
        return ExitCode::FAILURE;
    }
    oxcd_server::logging::log_config_warnings(&cfg);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(oxcd_server::run(*cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "oxcd stopped");
            eprintln!("oxcd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// glibc's malloc gives a thread that finds every arena busy a new one, up to eight per core,
/// and each arena keeps its own free memory. Two arenas keep 1-2 MiB less resident after a
/// burst of requests on a small machine, for no measurable CPU.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a limit of the allocator; it is called before the runtime
    // starts its threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Failpoint builds: arms the failpoints named in `FAILPOINTS` (the `fail` crate's syntax,
/// e.g. `raft_before_save=3*off->panic`), and makes any panic end the process at once, as a
/// crash would: nothing after the failpoint runs, in any thread.
#[cfg(feature = "failpoints")]
fn failpoints() -> fail::FailScenario<'static> {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    fail::FailScenario::setup()
}

fn gateway() -> ExitCode {
    use clap::Parser as _;
    let args = match GatewayArgs::try_parse_from(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    run_tool(config::LogLevel::Info, oxcd_server::tcp_gateway::run(args))
}

fn grpc_proxy() -> ExitCode {
    let invocation = match oxcd_server::grpc_proxy::parse(std::env::args_os().skip(1)) {
        Ok(invocation) => invocation,
        Err(e) => e.exit(),
    };
    let level = if invocation.args.debug {
        config::LogLevel::Debug
    } else {
        config::LogLevel::Info
    };
    run_tool(level, oxcd_server::grpc_proxy::run(invocation))
}

/// Runs a subcommand that is not the server (`gateway`, `grpc-proxy`): zap logs on stderr at
/// `level`, a runtime, and the error as one line with a failing exit code.
fn run_tool<E: std::fmt::Display>(
    level: config::LogLevel,
    task: impl std::future::Future<Output = Result<(), E>>,
) -> ExitCode {
    let _ = tracing_subscriber::registry()
        .with(oxcd_server::logging::layer(
            config::LoggerKind::Zap,
            level,
            std::io::stderr,
        ))
        .try_init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
