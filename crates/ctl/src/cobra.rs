//! How cobra finds the command in the arguments, before any flag is parsed: it skips the
//! words that look like flags (and the next word after a flag it does not know to be a
//! boolean), and each remaining word that names a subcommand (or the only one it starts)
//! goes one level down. The found command then parses all the other words, so a
//! command's own flags may stand before its name (`--limit=1 get k`).

use clap::{Arg, Command};

use crate::usage;

/// The command cobra runs for some arguments.
pub struct Found {
    /// Subcommand names, from the root down (empty for the root itself).
    pub path: Vec<String>,
    /// The arguments without the words that named the path: what the command parses.
    pub rest: Vec<String>,
}

/// cobra's `Command.Find` over `argv` (after the program).
pub fn find(root: &Command, argv: &[String]) -> Found {
    let mut command = root;
    let mut path = Vec::new();
    let mut rest = argv.to_vec();
    while let Some(word) = words(root, command, &rest).into_iter().next() {
        let Some(next) = find_next(command, &word) else {
            break;
        };
        // cobra takes out the first equal word, wherever it stands.
        if let Some(i) = rest.iter().position(|w| *w == word) {
            rest.remove(i);
        }
        path.push(next.get_name().to_owned());
        command = next;
    }
    Found { path, rest }
}

/// The words of `args` that are not flags or flag values, as cobra's `stripFlags` sees
/// them at `command`: a flag it does not know as a boolean takes the next word, unless
/// that word is the last one.
pub fn words(root: &Command, command: &Command, args: &[String]) -> Vec<String> {
    let mut words = Vec::new();
    let mut args = args.iter();
    while let Some(word) = args.next() {
        let valued = if let Some(long) = word.strip_prefix("--") {
            !long.contains('=') && !is_bool(root, command, |a| a.get_long() == Some(long))
        } else if let Some(short) = word.strip_prefix('-').filter(|s| s.len() == 1) {
            let c = short.chars().next();
            short != "=" && !is_bool(root, command, |a| a.get_short() == c)
        } else {
            false
        };
        if word == "--" {
            break;
        } else if valued {
            if args.len() <= 1 {
                break;
            }
            args.next();
        } else if !word.is_empty() && !word.starts_with('-') {
            words.push(word.clone());
        }
    }
    words
}

/// cobra's error for a word under the root that names no command, with its suggestions.
pub fn unknown_command(root: &Command, word: &str, program: &str) -> String {
    let mut message = format!("unknown command {word:?} for {program:?}");
    let suggestions: Vec<&str> = root
        .get_subcommands()
        .map(Command::get_name)
        .filter(|name| {
            let (typed, name) = (word.to_lowercase(), name.to_lowercase());
            levenshtein(&typed, &name) <= 2 || name.starts_with(&typed)
        })
        .collect();
    if !suggestions.is_empty() {
        message.push_str("\n\nDid you mean this?\n");
        for name in suggestions {
            message.push_str(&format!("\t{name}\n"));
        }
    }
    message
}

/// The subcommand `word` names: its exact name, else the only name it starts.
fn find_next<'a>(command: &'a Command, word: &str) -> Option<&'a Command> {
    if let Some(exact) = command.get_subcommands().find(|s| s.get_name() == word) {
        return Some(exact);
    }
    let mut starting = command
        .get_subcommands()
        .filter(|s| s.get_name().starts_with(word));
    match (starting.next(), starting.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

/// Whether `command` (or the root, for a global flag) has the flag `is` as a boolean.
fn is_bool(root: &Command, command: &Command, is: impl Fn(&Arg) -> bool) -> bool {
    command
        .get_arguments()
        .chain(root.get_arguments())
        .find(|a| is(a))
        .is_some_and(usage::is_bool)
}

/// The edit distance between two strings, in bytes, as cobra counts it for suggestions.
fn levenshtein(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.iter().enumerate() {
        let mut current = vec![i + 1];
        for (j, &cb) in b.iter().enumerate() {
            let cost = if ca == cb {
                previous[j]
            } else {
                1 + previous[j].min(previous[j + 1]).min(current[j])
            };
            current.push(cost);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn finds_the_command_as_cobra_does() {
        let root = crate::cli::command();
        let found = find(&root, &argv(&["--limit=1", "get", "k"]));
        assert_eq!(found.path, ["get"]);
        assert_eq!(found.rest, ["--limit=1", "k"]);
        let found = find(&root, &argv(&["-w", "json", "mem", "li"]));
        assert_eq!(found.path, ["member", "list"]);
        // An unknown flag takes the next word, unless it is the last one.
        assert!(find(&root, &argv(&["--version", "get"])).path.is_empty());
        let found = find(&root, &argv(&["--prefix", "get", "k"]));
        assert!(found.path.is_empty());
        assert_eq!(words(&root, &root, &found.rest), ["k"]);
        // A known boolean takes none.
        assert_eq!(find(&root, &argv(&["--hex", "get", "k"])).path, ["get"]);
    }

    #[test]
    fn suggests_as_cobra_does() {
        let root = crate::cli::command();
        assert_eq!(
            unknown_command(&root, "c", "etcdctl"),
            "unknown command \"c\" for \"etcdctl\"\n\nDid you mean this?\n\tcompaction\n\tcheck\n\tcompletion\n"
        );
        assert_eq!(
            unknown_command(&root, "zzzzz", "etcdctl"),
            "unknown command \"zzzzz\" for \"etcdctl\""
        );
        assert_eq!(levenshtein("hepl", "del"), 2);
    }
}
