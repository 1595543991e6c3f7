//! One module per group of etcdctl commands; [`run`] dispatches.

mod auth;
mod check;
mod concurrency;
mod endpoint;
mod kv;
mod lease;
mod maintenance;
mod member;
mod migrate;
mod mirror;
mod snapshot;
mod txn;
mod watch;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{CheckCommand, Cli, Command, CompletionCommand};
use crate::context::Ctx;
use crate::exit::CmdResult;

/// The etcd version whose etcdctl oxcdctl answers for.
pub const ETCDCTL_VERSION: &str = "3.4.23";
pub const API_VERSION: &str = "3.4";

pub async fn run(cli: Cli) -> CmdResult {
    let ctx = Ctx { flags: cli.global };
    match cli.command {
        Command::Get(a) => kv::get(&ctx, a).await,
        Command::Put(a) => kv::put(&ctx, a).await,
        Command::Del(a) => kv::del(&ctx, a).await,
        Command::Txn(a) => txn::txn(&ctx, a).await,
        Command::Compaction(a) => maintenance::compaction(&ctx, a).await,
        Command::Alarm(c) => maintenance::alarm(&ctx, c).await,
        Command::Defrag(a) => maintenance::defrag(&ctx, a).await,
        Command::Endpoint(a) => endpoint::endpoint(&ctx, a).await,
        Command::MoveLeader(a) => maintenance::move_leader(&ctx, a).await,
        Command::Watch(a) => watch::watch(&ctx, a).await,
        Command::Version(_) => {
            println!("etcdctl version: {ETCDCTL_VERSION}");
            println!("API version: {API_VERSION}");
            Ok(())
        }
        Command::Lease(c) => lease::lease(&ctx, c).await,
        Command::Member(c) => member::member(&ctx, c).await,
        Command::Snapshot(c) => snapshot::snapshot(&ctx, c).await,
        Command::Lock(a) => concurrency::lock(&ctx, a).await,
        Command::Elect(a) => concurrency::elect(&ctx, a).await,
        Command::Auth(c) => auth::auth(&ctx, c).await,
        Command::User(c) => auth::user(&ctx, c).await,
        Command::Role(c) => auth::role(&ctx, c).await,
        Command::Check(CheckCommand::Perf(a)) => check::perf(&ctx, a).await,
        Command::Check(CheckCommand::Datascale(a)) => check::datascale(&ctx, a).await,
        Command::MakeMirror(a) => mirror::make_mirror(&ctx, a).await,
        Command::Migrate(a) => migrate::migrate(a),
        Command::Completion(shell) => {
            let shell = match shell {
                CompletionCommand::Bash => Shell::Bash,
                CompletionCommand::Fish => Shell::Fish,
                CompletionCommand::Powershell => Shell::PowerShell,
                CompletionCommand::Zsh => Shell::Zsh,
            };
            // The script completes the program under the name it was run as (`etcdctl`
            // when installed as such).
            let mut command = Cli::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, crate::program(), &mut script);
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            Ok(())
        }
    }
}
