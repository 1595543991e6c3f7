//! The usage text etcdctl prints on stdout after a flag error (its own cobra usage
//! template: NAME, USAGE, COMMANDS, DESCRIPTION, OPTIONS, GLOBAL OPTIONS), built from the
//! clap declarations and aligned as Go's `text/tabwriter` does with tabs.

use clap::{Arg, ArgAction, Command};

/// etcdctl's `Use` line of each command (the clap path, without the program).
const USE_LINES: &[(&str, &str)] = &[
    ("get", "get [options] <key> [range_end]"),
    (
        "put",
        "put [options] <key> <value> (<value> can also be given from stdin)",
    ),
    ("del", "del [options] <key> [range_end]"),
    ("txn", "txn [options]"),
    ("compaction", "compaction [options] <revision>"),
    ("alarm", "alarm <subcommand>"),
    ("alarm disarm", "disarm"),
    ("alarm list", "list"),
    ("defrag", "defrag"),
    ("endpoint", "endpoint <subcommand>"),
    ("endpoint health", "health"),
    ("endpoint status", "status"),
    ("endpoint hashkv", "hashkv"),
    ("move-leader", "move-leader <transferee-member-id>"),
    (
        "watch",
        "watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]",
    ),
    ("version", "version"),
    ("lease", "lease <subcommand>"),
    ("lease grant", "grant <ttl>"),
    ("lease revoke", "revoke <leaseID>"),
    ("lease timetolive", "timetolive <leaseID> [options]"),
    ("lease list", "list"),
    ("lease keep-alive", "keep-alive [options] <leaseID>"),
    ("member", "member <subcommand>"),
    ("member add", "add <memberName> [options]"),
    ("member remove", "remove <memberID>"),
    ("member update", "update <memberID> [options]"),
    ("member list", "list"),
    ("member promote", "promote <memberID>"),
    ("snapshot", "snapshot <subcommand>"),
    ("snapshot save", "save <filename>"),
    ("snapshot status", "status <filename>"),
    ("snapshot restore", "restore <filename> [options]"),
    ("lock", "lock <lockname> [exec-command arg1 arg2 ...]"),
    ("elect", "elect <election-name> [proposal]"),
    ("auth", "auth <enable or disable>"),
    ("auth enable", "enable"),
    ("auth disable", "disable"),
    ("user", "user <subcommand>"),
    ("user add", "add <user name or user:password> [options]"),
    ("user delete", "delete <user name>"),
    ("user get", "get <user name> [options]"),
    ("user list", "list"),
    ("user passwd", "passwd <user name> [options]"),
    ("user grant-role", "grant-role <user name> <role name>"),
    ("user revoke-role", "revoke-role <user name> <role name>"),
    ("role", "role <subcommand>"),
    ("role add", "add <role name>"),
    ("role delete", "delete <role name>"),
    ("role get", "get <role name>"),
    ("role list", "list"),
    (
        "role grant-permission",
        "grant-permission [options] <role name> <permission type> <key> [endkey]",
    ),
    (
        "role revoke-permission",
        "revoke-permission <role name> <key> [endkey]",
    ),
    ("check", "check <subcommand>"),
    ("check perf", "perf [options]"),
    ("check datascale", "datascale [options]"),
    ("make-mirror", "make-mirror [options] <destination>"),
    ("completion", "completion"),
];

/// etcdctl's long descriptions.
const LONG: &[(&str, &str)] = &[
    (
        "snapshot status",
        "When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.
The items in the lists are hash, revision, total keys, total size.",
    ),
    (
        "check datascale",
        "If no endpoint is provided, localhost will be used. If multiple endpoints are provided, first endpoint will be used.",
    ),
    (
        "put",
        "Puts the given key into the store.

When <value> begins with '-', <value> is interpreted as a flag.
Insert '--' for workaround:

$ put <key> -- <value>
$ put -- <key> <value>

If <value> isn't given as a command line argument and '--ignore-value' is not specified,
this command tries to read the value from standard input.

If <lease> isn't given as a command line argument and '--ignore-lease' is not specified,
this command tries to read the value from standard input.

For example,
$ cat file | put <key>
will store the content of the file to <key>.",
    ),
    (
        "endpoint status",
        "When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.
The items in the lists are endpoint, ID, version, db size, is leader, is learner, raft term, raft index, raft applied index, errors.",
    ),
    (
        "member list",
        "When --write-out is set to simple, this command prints out comma-separated member lists for each endpoint.
The items in the lists are ID, Status, Name, Peer Addrs, Client Addrs, Is Learner.",
    ),
    (
        "member promote",
        "Promotes a non-voting learner member to a voting one in the cluster.",
    ),
];

/// etcdctl's texts where the clap declarations differ: clap drops a one-line doc's final
/// period, and one declaration serves two commands. (path, flag or "" for the command).
const TEXTS: &[(&str, &str, &str)] = &[
    ("", "", "A simple command line client for etcd3."),
    (
        "check datascale",
        "",
        "Check the memory usage of holding data for different workloads on a given server endpoint.",
    ),
    ("check perf", "auto-compact", "Compact storage with last revision after test is finished."),
    ("check perf", "auto-defrag", "Defragment storage after test is finished."),
    ("check perf", "prefix", "The prefix for writing the performance check's keys."),
    ("check datascale", "auto-compact", "Compact storage with last revision after test is finished."),
    ("check datascale", "auto-defrag", "Defragment storage after test is finished."),
    ("check datascale", "prefix", "The prefix for writing the datascale check's keys."),
    ("move-leader", "", "Transfers leadership to another etcd cluster member."),
    (
        "defrag",
        "data-dir",
        "Optional. If present, defragments a data directory not in use by etcd.",
    ),
    ("member add", "peer-urls", "comma separated peer URLs for the new member."),
    ("member update", "peer-urls", "comma separated peer URLs for the updated member."),
    ("role grant-permission", "prefix", "grant a prefix permission"),
    (
        "role grant-permission",
        "from-key",
        "grant a permission of keys that are greater than or equal to the given key using byte compare",
    ),
    ("role revoke-permission", "prefix", "revoke a prefix permission"),
    (
        "role revoke-permission",
        "from-key",
        "revoke a permission of keys that are greater than or equal to the given key using byte compare",
    ),
];

/// etcdctl's text of `flag` ("" for the command's own) at `path`, when it differs from ours.
fn etcdctl_text(path: &str, flag: &str) -> Option<&'static str> {
    TEXTS
        .iter()
        .find(|(p, f, _)| *p == path && *f == flag)
        .map(|(_, _, t)| *t)
}

/// Flags whose Go type is a number or a duration: printed without quotes.
const UNQUOTED: &[&str] = &[
    "limit",
    "rev",
    "ttl",
    "dial-timeout",
    "command-timeout",
    "keepalive-time",
    "keepalive-timeout",
];

/// The subcommand path of `argv` (after the program), as clap resolves it: words that
/// name a subcommand (or a unique prefix of one), skipping flags and their values.
pub fn command_path(root: &Command, argv: &[String]) -> Vec<String> {
    walk(root, argv).0
}

/// The words of `argv` (after the program) up to `--` that are neither flags nor flag
/// values: the command path, then the arguments.
pub fn words(root: &Command, argv: &[String]) -> Vec<String> {
    walk(root, argv).1
}

fn walk(root: &Command, argv: &[String]) -> (Vec<String>, Vec<String>) {
    let mut path = Vec::new();
    let mut positional = Vec::new();
    let mut command = root;
    // Still reading the command path (the first word that names no subcommand ends it).
    let mut resolving = true;
    let mut words = argv.iter();
    while let Some(word) = words.next() {
        if word == "--" {
            break;
        }
        if let Some(flag) = word.strip_prefix("--") {
            if !flag.contains('=') && takes_value(root, command, |a| a.get_long() == Some(flag)) {
                words.next();
            }
            continue;
        }
        if let Some(short) = word.strip_prefix('-').filter(|s| s.len() == 1) {
            let c = short.chars().next();
            if takes_value(root, command, |a| a.get_short() == c) {
                words.next();
            }
            continue;
        }
        if word.starts_with('-') {
            continue;
        }
        positional.push(word.clone());
        if !resolving {
            continue;
        }
        let matches: Vec<&Command> = command
            .get_subcommands()
            .filter(|s| s.get_name() == word || s.get_name().starts_with(word.as_str()))
            .collect();
        let exact = matches.iter().find(|s| s.get_name() == word);
        match (exact, matches.as_slice()) {
            (Some(s), _) | (None, [s]) => {
                path.push(s.get_name().to_owned());
                command = s;
            }
            _ => resolving = false,
        }
    }
    (path, positional)
}

/// Whether the flag `is` of `command` (or a global one) takes a separate value.
fn takes_value(root: &Command, command: &Command, is: impl Fn(&Arg) -> bool) -> bool {
    command
        .get_arguments()
        .chain(root.get_arguments())
        .find(|a| is(a))
        .is_some_and(|a| {
            !is_bool(a) && matches!(a.get_action(), ArgAction::Set | ArgAction::Append)
        })
}

/// A pflag boolean: `--flag` alone means true.
pub fn is_bool(arg: &Arg) -> bool {
    arg.get_num_args()
        .is_some_and(|n| n.min_values() == 0 && n.max_values() == 1)
}

/// The usage text of the command at `path`, as etcdctl prints it, for program `program`.
/// `help_flag`: list `-h, --help` (cobra adds it to a command once it parses its flags).
pub fn usage(root: &Command, path: &[String], program: &str, help_flag: bool) -> String {
    let mut command = root;
    for name in path {
        match command.find_subcommand(name) {
            Some(sub) => command = sub,
            None => break,
        }
    }
    let key = path.join(" ");
    let use_line = USE_LINES
        .iter()
        .find(|(p, _)| *p == key)
        .map_or(command.get_name(), |(_, u)| u);
    let short = etcdctl_text(&key, "").map_or_else(
        || {
            command
                .get_about()
                .map(|a| a.to_string())
                .unwrap_or_default()
        },
        str::to_owned,
    );
    let name = if path.is_empty() {
        program.to_owned()
    } else {
        key.clone()
    };
    let parents = path[..path.len().saturating_sub(1)].join(" ");
    let command_path = [program, parents.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let mut text = format!("NAME:\n\t{name} - {short}\n\nUSAGE:\n");
    if path.is_empty() {
        text.push_str(&format!(
            "\t{program} [flags]\n\nVERSION:\n\t{}\n",
            crate::command::ETCDCTL_VERSION
        ));
    } else {
        text.push_str(&format!("\t{command_path} {use_line} [flags]\n"));
    }
    if command.has_subcommands() {
        text.push_str(&format!(
            "\nAPI VERSION:\n\t{}\n\n\nCOMMANDS:\n",
            crate::command::API_VERSION
        ));
        let mut lines = Vec::new();
        list_commands(command, &key, "", &mut lines);
        if path.is_empty() {
            // cobra's own `help` command, listed at the root only.
            lines.push(("help".to_owned(), "Help about any command".to_owned()));
        }
        lines.sort();
        for (name, short) in lines {
            text.push_str(&format!("\t{name}\t{short}\n"));
        }
    }
    if let Some((_, long)) = LONG.iter().find(|(p, _)| *p == key) {
        text.push_str("\nDESCRIPTION:\n");
        for line in long.trim_matches(['\n', '\t', ' ']).split('\n') {
            text.push_str(&format!("\t{line}\n"));
        }
    }
    // Unbuilt clap commands hold only their own arguments; the inherited ones are the
    // root's globals and the persistent (global) flags of the parents.
    let mut local: Vec<&Arg> = command
        .get_arguments()
        .filter(|a| a.get_long().is_some())
        .collect();
    let mut global: Vec<&Arg> = root
        .get_arguments()
        .filter(|a| a.get_long().is_some() && a.is_global_set())
        .collect();
    let mut parent = root;
    for name in path.iter().take(path.len().saturating_sub(1)) {
        if let Some(sub) = parent.find_subcommand(name) {
            global.extend(sub.get_arguments().filter(|a| a.is_global_set()));
            parent = sub;
        }
    }
    if path.is_empty() {
        // The root's own flags are the global ones.
        local = std::mem::take(&mut global);
    }
    let help_name = path.last().map_or(program, String::as_str);
    text.push_str("\nOPTIONS:\n");
    text.push_str(&flag_lines(&key, &local, help_flag.then_some(help_name)));
    if !global.is_empty() {
        text.push_str("\nGLOBAL OPTIONS:\n");
        text.push_str(&flag_lines(&key, &global, None));
    }
    text.push('\n');
    tabwrite(&text)
}

/// The path and short text of every runnable command below `command` (at `base`).
fn list_commands(command: &Command, base: &str, prefix: &str, lines: &mut Vec<(String, String)>) {
    let mut subs: Vec<&Command> = command.get_subcommands().collect();
    subs.sort_by_key(|s| s.get_name());
    for sub in subs {
        let name = format!("{prefix}{}", sub.get_name());
        if sub.has_subcommands() {
            list_commands(sub, base, &format!("{name} "), lines);
        } else {
            let short = etcdctl_text(format!("{base} {name}").trim(), "").map_or_else(
                || sub.get_about().map(|a| a.to_string()).unwrap_or_default(),
                str::to_owned,
            );
            lines.push((name, short));
        }
    }
}

/// pflag's flag lines, sorted by name, with `-h, --help` among them when `help_for` is set.
fn flag_lines(path: &str, args: &[&Arg], help_for: Option<&str>) -> String {
    let mut lines: Vec<(String, String)> = args
        .iter()
        .map(|a| {
            let long = a.get_long().unwrap_or_default();
            let head = match a.get_short() {
                Some(c) => format!("  -{c}, --{long}"),
                None => format!("      --{long}"),
            };
            let default = a
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(",");
            let value = if is_bool(a) {
                format!("[={default}]")
            } else if long == "endpoints" {
                format!("=[{default}]")
            } else if UNQUOTED.contains(&long) {
                format!("={default}")
            } else {
                format!("={}", crate::go::quote(default.as_bytes()))
            };
            let help = etcdctl_text(path, long).map_or_else(
                || a.get_help().map(|h| h.to_string()).unwrap_or_default(),
                str::to_owned,
            );
            (long.to_owned(), format!("{head}{value}\t{help}\n"))
        })
        .collect();
    if let Some(name) = help_for {
        lines.push((
            "help".to_owned(),
            format!("  -h, --help[=false]\thelp for {name}\n"),
        ));
    }
    lines.sort();
    lines.into_iter().map(|(_, line)| line).collect()
}

/// Go's `text/tabwriter` with minwidth 0, tabwidth 8, padding 1 and tabs as padding:
/// each tab-terminated cell is padded with tabs to its column block's width.
fn tabwrite(text: &str) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut out = String::new();
    let mut widths = Vec::new();
    format_block(&lines, 0, lines.len(), &mut widths, &mut out);
    out
}

fn format_block(
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column >= lines[this].len() - 1 {
            this += 1;
            continue;
        }
        write_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut width = 0;
        while this < line1 && column < lines[this].len() - 1 {
            width = width.max(lines[this][column].chars().count() + 1);
            this += 1;
        }
        widths.push(width);
        format_block(lines, line0, this, widths, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, line0, line1, widths, out);
}

fn write_lines(
    lines: &[Vec<&str>],
    line0: usize,
    line1: usize,
    widths: &[usize],
    out: &mut String,
) {
    const TAB: usize = 8;
    for (i, line) in lines.iter().enumerate().take(line1).skip(line0) {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j < widths.len() && j < line.len() - 1 {
                let cell_width = widths[j].div_ceil(TAB) * TAB;
                let tabs = (cell_width - cell.chars().count()).div_ceil(TAB);
                out.push_str(&"\t".repeat(tabs));
            }
        }
        if i + 1 < lines.len() {
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tabwrite;

    #[test]
    fn aligns_cells_in_blocks_with_tabs() {
        let text = "A:\n\tgrant\tCreates\n\tkeep-alive\tKeeps\n\nB:\n\tx - y\n";
        assert_eq!(
            tabwrite(text),
            "A:\n\tgrant\t\tCreates\n\tkeep-alive\tKeeps\n\nB:\n\tx - y\n"
        );
    }
}
