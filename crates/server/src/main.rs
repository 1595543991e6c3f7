//! `oxcd`: the server, started with etcd's flags.

use std::process::ExitCode;

use oxcd_server::config::{self, Invocation};

fn main() -> ExitCode {
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
