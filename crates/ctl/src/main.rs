//! `oxcdctl`: etcdctl 3.4's v3 commands, flags, `ETCDCTL_*` variables, output formats,
//! error lines and exit codes, over [`oxcd_client`]; plus shell completions and, on a
//! terminal, progress for the long maintenance commands.
//!
//! The binary is thin: [`cli`] declares the commands, [`command`] runs them with a
//! client from [`context`], and [`output`] renders answers as etcdctl does.

mod cli;
mod cobra;
mod command;
mod context;
mod exit;
mod go;
mod help;
mod http;
mod output;
mod retry_log;
mod usage;
mod v2;

use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};

use crate::cli::Cli;
use crate::exit::code;

fn main() -> ExitCode {
    // etcdctl 3.4 speaks the v2 API when asked to.
    if std::env::var("ETCDCTL_API").as_deref() == Ok("2") {
        return v2::main();
    }
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let Some(text) = help::requested(&cli::command(), &argv, &program()) {
        print!("{text}");
        return ExitCode::SUCCESS;
    }
    // cobra finds the command first, then lets it parse every other word.
    let root = cli::command();
    let mut found = cobra::find(&root, &argv);
    if let Some(exit) = command_error(&root, &found) {
        return exit;
    }
    // The root takes the words after `--` as arguments, and it runs nothing: cobra prints
    // its help (`oxcdctl -- get k`), once the flags before `--` have parsed.
    if found.path.is_empty() {
        if let Some(end) = found.rest.iter().position(|w| w == "--") {
            found.rest.truncate(end);
        }
    }
    let words = std::iter::once(program())
        .chain(found.path.iter().cloned())
        .chain(found.rest.iter().cloned());
    let matches = match cli::command().try_get_matches_from(words) {
        Ok(matches) => matches,
        Err(err) => return usage_error(err, &found.path),
    };
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => return usage_error(err, &found.path),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("start the tokio runtime");
    let result = runtime.block_on(command::run(cli));
    // Background tasks (watches, keep-alives) must not hold the exit.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(exit) => {
            if let Some(message) = exit.message {
                eprintln!("Error: {message}");
                // Scripts read etcdctl's exact lines; a person at a terminal gets a hint too.
                if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                    if let Some(hint) = hint(&message) {
                        eprintln!("hint: {hint}");
                    }
                }
            }
            ExitCode::from(exit.code as u8)
        }
    }
}

/// What to do about a common failure, for a person reading it.
fn hint(message: &str) -> Option<&'static str> {
    let m = message.to_lowercase();
    if m.contains("context deadline exceeded") || m.contains("connection refused") {
        Some("no member answered: check --endpoints (host:port of each member's client URL) and that the members run")
    } else if m.contains("certificate") || m.contains("tls") || m.contains("handshake") {
        Some("TLS mismatch: https members need --cacert (and --cert/--key for client certificates); plain http members take none")
    } else if m.contains("user name is empty")
        || m.contains("invalid auth token")
        || m.contains("permission denied")
        || m.contains("authentication failed")
    {
        Some("authentication is on: pass --user NAME[:PASSWORD] of a user whose roles allow this request")
    } else if m.contains("no leader") || m.contains("leader changed") {
        Some("the cluster has no leader: check that a majority of members run and reach each other, then retry")
    } else {
        None
    }
}

/// The errors cobra finds before any flag is parsed: a word under the root that names no
/// command, and an argument to a command that takes none (`completion bash x`).
fn command_error(root: &clap::Command, found: &cobra::Found) -> Option<ExitCode> {
    let mut command = root;
    for name in &found.path {
        command = command.find_subcommand(name)?;
    }
    let word = cobra::words(root, command, &found.rest)
        .into_iter()
        .next()?;
    let program = program();
    if found.path.is_empty() {
        return Some(unknown_command(root, &word, &program));
    }
    if found.path.first().map(String::as_str) == Some("completion") && found.path.len() == 2 {
        let path = format!("{program} {}", found.path.join(" "));
        let message = format!("unknown command {word:?} for {path:?}");
        return Some(flag_error(root, &found.path, &program, &message));
    }
    None
}

/// cobra's error for an unknown command under the root: no usage, a pointer to `--help`.
fn unknown_command(root: &clap::Command, word: &str, program: &str) -> ExitCode {
    let message = cobra::unknown_command(root, word, program);
    eprintln!("Error: {message}\nRun '{program} --help' for usage.");
    eprintln!("Error: {message}");
    ExitCode::from(code::ERROR as u8)
}

/// Reports a command-line error as cobra does (`Error: unknown flag: --foo`, twice: once
/// from cobra and once from etcdctl), exit 1; help goes to stdout, exit 0. There is no
/// `--version` flag, as etcdctl has none (`version` is a command). `path` is the command
/// cobra found.
fn usage_error(err: clap::Error, path: &[String]) -> ExitCode {
    let root = cli::command();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let program = program();
    match err.kind() {
        // cobra prints the help of a group command run without (a known) subcommand.
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            print!("{}", usage::usage(&root, path, &program, true));
            return ExitCode::SUCCESS;
        }
        ErrorKind::InvalidSubcommand if !path.is_empty() => {
            print!("{}", usage::usage(&root, path, &program, true));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let invalid = |kind| match err.get(kind) {
        Some(ContextValue::String(s)) => s.clone(),
        Some(ContextValue::Strings(s)) => s.join(" "),
        _ => String::new(),
    };
    let message = match err.kind() {
        ErrorKind::UnknownArgument => {
            let arg = invalid(ContextKind::InvalidArg);
            let arg = arg.split('=').next().unwrap_or_default().to_owned();
            if let Some(short) = arg.strip_prefix('-').filter(|s| !s.starts_with('-')) {
                format!(
                    "unknown shorthand flag: '{}' in {arg}",
                    short.chars().next().unwrap_or(' ')
                )
            } else {
                format!("unknown flag: {arg}")
            }
        }
        ErrorKind::InvalidSubcommand => {
            let sub = invalid(ContextKind::InvalidSubcommand);
            return unknown_command(&root, &sub, &program);
        }
        ErrorKind::ValueValidation | ErrorKind::InvalidValue => {
            let arg = invalid(ContextKind::InvalidArg);
            let flag = arg
                .split([' ', '=', '['])
                .next()
                .unwrap_or_default()
                .to_owned();
            let value = invalid(ContextKind::InvalidValue);
            // pflag: a flag given last, without its value.
            if err.kind() == ErrorKind::InvalidValue && value.is_empty() {
                flag_needs_an_argument(&flag, &argv)
            } else {
                let reason = std::error::Error::source(&err)
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "invalid value".to_owned());
                format!(
                    "invalid argument {} for \"{flag}\" flag: {reason}",
                    go::quote(value.as_bytes())
                )
            }
        }
        ErrorKind::MissingRequiredArgument => {
            let _ = err.print();
            return ExitCode::from(code::ERROR as u8);
        }
        _ => err
            .to_string()
            .trim_start_matches("error: ")
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
    };
    flag_error(&root, path, &program, &message)
}

/// cobra's report of an error in a command's arguments: the error, then the command's
/// usage (etcdctl's template writes it to stdout, and cobra prints the empty string it
/// returns as a line on stderr), then etcdctl's own error line; exit 1.
fn flag_error(root: &clap::Command, path: &[String], program: &str, message: &str) -> ExitCode {
    eprintln!("Error: {message}");
    print!("{}", usage::usage(root, path, program, true));
    eprintln!();
    eprintln!("Error: {message}");
    ExitCode::from(code::ERROR as u8)
}

/// pflag's words for a flag with no value: it can only be the last argument, and pflag
/// names it as typed, shorthand (`-w`) or long.
fn flag_needs_an_argument(flag: &str, argv: &[String]) -> String {
    match argv.last().and_then(|a| a.strip_prefix('-')) {
        Some(s) if s.len() == 1 => format!("flag needs an argument: '{s}' in -{s}"),
        _ => format!("flag needs an argument: {flag}"),
    }
}

/// The name oxcdctl was run as (`etcdctl` when installed as it), for the usage texts.
pub(crate) fn program() -> String {
    std::env::args()
        .next()
        .and_then(|p| p.rsplit('/').next().map(str::to_owned))
        .unwrap_or_else(|| "oxcdctl".to_owned())
}
