//! `oxcdctl completion bash|zsh|fish` (issue 13): the bash script, sourced in a real bash,
//! registers itself for the program's name (also when installed as `etcdctl`) and completes
//! commands, subcommands, flags and the values of `-w`; the zsh and fish scripts name the
//! program; a closed pipe ends the command quietly.

mod ctl_support;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

/// Sources `program completion bash` in a fresh bash and prints, for each line of words,
/// `words -> candidates` as bash's completion function answers them.
fn complete_in_bash(program: &Path, lines: &[&[&str]]) -> String {
    let name = program.file_name().unwrap().to_string_lossy().into_owned();
    let mut script = format!(
        "source <('{}' completion bash) || exit 1\ncomplete -p {name}\n",
        program.display()
    );
    script.push_str(&format!(
        r#"comp() {{
  COMP_WORDS=("$@"); COMP_CWORD=$((${{#COMP_WORDS[@]}}-1))
  COMP_LINE="$*"; COMP_POINT=${{#COMP_LINE}}; COMPREPLY=()
  _{name} {name} "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
  echo "$* -> ${{COMPREPLY[*]}}"
}}
"#
    ));
    for words in lines {
        let quoted: Vec<String> = std::iter::once(name.clone())
            .chain(words.iter().map(|w| w.to_string()))
            .map(|w| format!("'{w}'"))
            .collect();
        script.push_str(&format!("comp {}\n", quoted.join(" ")));
    }
    let out = Command::new("bash")
        .arg("--norc")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "bash failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The candidates bash offered for `words`.
fn candidates<'a>(answers: &'a str, name: &str, words: &[&str]) -> Vec<&'a str> {
    let line = format!("{name} {} -> ", words.join(" "));
    let found = answers
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .unwrap_or_else(|| panic!("no answer for {line:?} in:\n{answers}"));
    found.split_whitespace().collect()
}

#[test]
fn bash_completion_completes_commands_flags_and_values() {
    let dir = tempfile::tempdir().expect("temp dir");
    let linked = dir.path().join("etcdctl");
    std::os::unix::fs::symlink(ctl_support::oxcdctl_bin(), &linked).expect("symlink");
    for program in [ctl_support::oxcdctl_bin(), linked] {
        let name = program.file_name().unwrap().to_string_lossy().into_owned();
        let lines: &[&[&str]] = &[
            &[""],
            &["ge"],
            &["mem"],
            &["member", ""],
            &["member", "li"],
            &["snapshot", ""],
            &["get", "--pr"],
            &["--endp"],
            &["get", "-w", ""],
            &["get", "--sort-by", ""],
        ];
        let answers = complete_in_bash(&program, lines);
        assert!(
            answers
                .lines()
                .next()
                .is_some_and(|l| l.starts_with("complete ") && l.ends_with(&format!(" {name}"))),
            "{answers}"
        );
        let commands = candidates(&answers, &name, &[""]);
        for command in [
            "get", "put", "del", "txn", "watch", "member", "snapshot", "lease",
        ] {
            assert!(commands.contains(&command), "{command} in {commands:?}");
        }
        assert_eq!(candidates(&answers, &name, &["ge"]), ["get"]);
        assert_eq!(candidates(&answers, &name, &["mem"]), ["member"]);
        let member = candidates(&answers, &name, &["member", ""]);
        for sub in ["add", "list", "promote", "remove", "update"] {
            assert!(member.contains(&sub), "{sub} in {member:?}");
        }
        assert_eq!(candidates(&answers, &name, &["member", "li"]), ["list"]);
        let snapshot = candidates(&answers, &name, &["snapshot", ""]);
        for sub in ["save", "restore", "status"] {
            assert!(snapshot.contains(&sub), "{sub} in {snapshot:?}");
        }
        assert_eq!(
            candidates(&answers, &name, &["get", "--pr"]),
            ["--prefix", "--print-value-only"]
        );
        assert_eq!(candidates(&answers, &name, &["--endp"]), ["--endpoints"]);
        assert_eq!(
            candidates(&answers, &name, &["get", "-w", ""]),
            ["simple", "json", "protobuf", "fields", "table"]
        );
        assert_eq!(
            candidates(&answers, &name, &["get", "--sort-by", ""]),
            ["CREATE", "KEY", "MODIFY", "VALUE", "VERSION"]
        );
    }
}

#[test]
fn zsh_and_fish_scripts_name_the_program() {
    for (shell, marker) in [("zsh", "#compdef oxcdctl"), ("fish", "complete -c oxcdctl")] {
        let out = Command::new(ctl_support::oxcdctl_bin())
            .args(["completion", shell])
            .output()
            .expect("run oxcdctl");
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell} script lacks {marker:?}");
        assert!(
            script.contains("snapshot"),
            "{shell} script lacks the commands"
        );
    }
}

#[test]
fn a_closed_pipe_ends_the_script_quietly() {
    let mut child = Command::new(ctl_support::oxcdctl_bin())
        .args(["completion", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run oxcdctl");
    let mut first = [0u8; 16];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut first)
        .expect("read the start of the script");
    // The read end is closed now; the rest of the script meets a broken pipe.
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{out:?}");
}
