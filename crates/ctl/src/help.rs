//! etcdctl's help: `help [command]`, `-h`/`--help` anywhere before `--`, and a group
//! command run without its subcommand all print the command's usage text (cobra's
//! template, [`usage`]) on stdout and exit 0.

use clap::Command;

use crate::usage;

/// The help text `argv` (after the program) asks for, if it asks for one; `None` leaves
/// the words to the parser.
pub fn requested(root: &Command, argv: &[String], program: &str) -> Option<String> {
    let words = usage::words(root, argv);
    if words.first().map(String::as_str) == Some("help") {
        let topic = &words[1..];
        let path = usage::command_path(root, topic);
        let unknown = !topic.is_empty() && path.is_empty();
        if unknown {
            // cobra's `%#q` of the arguments: [`a` `b`].
            let quoted: Vec<String> = topic.iter().map(|w| format!("`{w}`")).collect();
            eprintln!("Unknown help topic [{}]", quoted.join(" "));
        }
        // cobra then prints the root's usage before it has parsed the root's flags.
        return Some(usage::usage(root, &path, program, !unknown));
    }
    let asks = argv
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| matches!(a.as_str(), "-h" | "--help" | "--help=true"));
    let path = usage::command_path(root, argv);
    // An unknown command stays an error, as in cobra.
    let unknown = path.is_empty() && !words.is_empty();
    (asks && !unknown).then(|| usage::usage(root, &path, program, true))
}
