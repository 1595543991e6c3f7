//! `oxcdutl`: offline tools, as etcd's `etcdutl`.
//!
//! - `snapshot status FILE` and `snapshot restore FILE`: etcd-format snapshots, saved from
//!   oxcd or from etcd (`snapshot.rs`);
//! - `defrag`, `backup`, `hashkv`: against the data dir of a stopped member (`offline.rs`).
//!
//! Everything on disk is read and written through `oxcd_storage`; a restored data dir is laid
//! out by the server's own bootstrap, so `oxcd` starts from it as from its own.

mod offline;
mod snapshot;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "oxcdutl",
    version,
    about = "Offline tools for oxcd data dirs and etcd-format snapshots"
)]
struct Cli {
    /// Output format: simple, json, table or fields.
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        default_value = "simple"
    )]
    write_out: Format,
    #[command(subcommand)]
    command: Command,
}

/// etcdutl's output formats.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Simple,
    Json,
    Table,
    Fields,
}

#[derive(Subcommand)]
enum Command {
    /// Snapshot files in etcd's format.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Rewrites a stopped member's backend to release free space.
    Defrag {
        /// The member's data dir.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Writes a stopped member's backend as an etcd-format snapshot file.
    Backup {
        /// The member's data dir.
        #[arg(long)]
        data_dir: PathBuf,
        /// The snapshot file to write.
        file: PathBuf,
    },
    /// Prints the KV hash of a stopped member's backend, as `etcdctl endpoint hashkv`.
    Hashkv {
        /// The member's data dir.
        #[arg(long)]
        data_dir: PathBuf,
        /// Hash up to this revision; 0 for the newest.
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Prints the hash, revision, key count and size of a snapshot file.
    Status {
        /// The snapshot file.
        file: PathBuf,
    },
    /// Builds a new member's data dir from a snapshot file.
    Restore(snapshot::RestoreArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_max_level(tracing::Level::INFO)
        .init();
    let result = match cli.command {
        Command::Snapshot {
            command: SnapshotCommand::Status { file },
        } => snapshot::status(&file, cli.write_out),
        Command::Snapshot {
            command: SnapshotCommand::Restore(args),
        } => snapshot::restore(args),
        Command::Defrag { data_dir } => offline::defrag(&data_dir),
        Command::Backup { data_dir, file } => offline::backup(&data_dir, &file),
        Command::Hashkv { data_dir, rev } => offline::hashkv(&data_dir, rev, cli.write_out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints rows as etcdctl's table printer does: a boxed header, centred, and cells aligned
/// right.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = header
        .iter()
        .enumerate()
        .map(|(i, h)| rows.iter().map(|r| r[i].len()).fold(h.len(), usize::max))
        .collect();
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+";
    println!("{rule}");
    let mut line = String::new();
    for (h, w) in header.iter().zip(&widths) {
        let pad = w - h.len();
        line += &format!(
            "| {}{}{} ",
            " ".repeat(pad / 2),
            h.to_uppercase(),
            " ".repeat(pad - pad / 2)
        );
    }
    println!("{line}|");
    println!("{rule}");
    for row in rows {
        let line: String = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("| {c:>w$} "))
            .collect();
        println!("{line}|");
    }
    println!("{rule}");
}
