//! Making two servers' etcdctl outputs comparable.
//!
//! Blanked, because they legitimately differ between two servers fed the same commands:
//! the cluster and member ids, raft terms, raft indexes (the bootstrap writes a
//! server-specific number of internal entries), the server version string, db sizes,
//! timings, and the ports in URLs and endpoints. Revisions, keys, values, versions of keys,
//! counts, hashes and error texts are kept: they must match.

use regex::Regex;
use serde_json::Value;

use crate::ctl::CtlOutput;
use crate::member::Member;

/// JSON keys (etcdctl `-w json`) whose values are blanked.
const JSON_BLANK_KEYS: [&str; 7] = [
    "raft_term",
    "raftTerm",
    "raftIndex",
    "raftAppliedIndex",
    "dbSize",
    "dbSizeInUse",
    "took",
];

/// `-w fields` keys whose values are blanked.
const FIELDS_BLANK_KEYS: [&str; 6] = [
    "RaftTerm",
    "RaftIndex",
    "RaftAppliedIndex",
    "DBSize",
    "DBSizeInUse",
    "Took",
];

/// Columns of `endpoint status` in `-w simple` and `-w table` that are blanked: version, db
/// size, raft term, raft index, raft applied index.
const STATUS_BLANK_COLUMNS: [usize; 5] = [2, 3, 6, 7, 8];

const BLANK: &str = "<blank>";

/// Rewrites etcdctl outputs of one server into a form comparable with another server's.
#[derive(Clone, Debug, Default)]
pub struct Normalizer {
    /// Literal replacements, applied in order to every line and JSON string.
    replacements: Vec<(String, String)>,
    /// Numbers (ids) replaced by a placeholder string where they appear in JSON.
    ids: Vec<(u64, String)>,
}

impl Normalizer {
    /// A normaliser with no literal replacements.
    pub fn new() -> Normalizer {
        Normalizer::default()
    }

    /// Adds a literal replacement.
    pub fn replace(mut self, from: impl Into<String>, to: impl Into<String>) -> Normalizer {
        let from = from.into();
        if !from.is_empty() {
            self.replacements.push((from, to.into()));
        }
        self
    }

    /// Replaces an id wherever it appears: as a JSON number, and in decimal or hex in text.
    pub fn replace_id(mut self, id: u64, to: &str) -> Normalizer {
        self.ids.push((id, to.to_owned()));
        self.replace(id.to_string(), to)
            .replace(format!("{id:x}"), to)
    }

    /// Learns a running member's URLs, member id and cluster id (by `endpoint status -w
    /// json`) and replaces them with placeholders.
    pub fn for_member(member: &Member) -> Normalizer {
        let out = member.etcdctl(&["endpoint", "status", "-w", "json"]);
        let status: Value = serde_json::from_str(out.expect_success())
            .unwrap_or_else(|e| panic!("endpoint status -w json is not JSON ({e}): {out}"));
        let header = &status[0]["Status"]["header"];
        let id = |name: &str| {
            header[name]
                .as_u64()
                .unwrap_or_else(|| panic!("no {name} in endpoint status: {out}"))
        };
        let (member_id, cluster_id) = (id("member_id"), id("cluster_id"));
        Normalizer::new()
            .replace(member.client_url(), "<client-url>")
            .replace(member.peer_url(), "<peer-url>")
            .replace(member.endpoint(), "<endpoint>")
            .replace_id(member_id, "<member-id>")
            .replace_id(cluster_id, "<cluster-id>")
    }

    /// The normalised form of one etcdctl run of `args`: exit code, stdout and stderr.
    pub fn normalize(&self, args: &[&str], out: &CtlOutput) -> String {
        format!(
            "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
            out.code,
            self.normalize_text(args, &out.stdout),
            self.normalize_text(args, &out.stderr)
        )
    }

    /// The normalised form of one stream printed by etcdctl for `args`.
    pub fn normalize_text(&self, args: &[&str], text: &str) -> String {
        let command = Command::of(args);
        let mut out = String::new();
        for line in text.lines() {
            if let Some(line) = self.normalize_line(&command, line) {
                out.push_str(&line);
                out.push('\n');
            }
        }
        if command.health {
            out = duration_regex()
                .replace_all(&out, "<duration>")
                .into_owned();
        }
        out
    }
}

/// What matters about an etcdctl command line for normalising its output.
struct Command {
    /// `endpoint status`: its simple and table rows have positional columns to blank.
    status: bool,
    /// `endpoint health`: its output carries timings.
    health: bool,
}

impl Command {
    fn of(args: &[&str]) -> Command {
        let words: Vec<&str> = args
            .iter()
            .copied()
            .filter(|a| !a.starts_with('-'))
            .collect();
        let has = |pair: [&str; 2]| words.windows(2).any(|w| w == pair);
        Command {
            status: has(["endpoint", "status"]),
            health: has(["endpoint", "health"]),
        }
    }
}

impl Normalizer {
    fn replace_text(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (from, to) in &self.replacements {
            text = text.replace(from.as_str(), to);
        }
        text
    }

    fn normalize_line(&self, command: &Command, line: &str) -> Option<String> {
        let trimmed = line.trim_start();
        if trimmed.starts_with('{') || trimmed.starts_with('[') {
            if let Ok(mut value) = serde_json::from_str::<Value>(trimmed) {
                self.blank_json(&mut value);
                return Some(value.to_string());
            }
        }
        normalize_text_line(command, &self.replace_text(line))
    }

    fn blank_json(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                // etcdctl's own log lines (client-side retries): time and target vary.
                if map.contains_key("level") && map.contains_key("caller") {
                    for key in ["ts", "target"] {
                        if map.contains_key(key) {
                            map.insert(key.to_owned(), Value::String(BLANK.to_owned()));
                        }
                    }
                }
                for (key, v) in map.iter_mut() {
                    let blank = JSON_BLANK_KEYS.contains(&key.as_str())
                        || (key == "version" && v.is_string());
                    if blank {
                        *v = Value::String(BLANK.to_owned());
                    } else {
                        self.blank_json(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.blank_json(v)),
            Value::Number(n) => {
                if let Some((_, to)) = self.ids.iter().find(|(id, _)| n.as_u64() == Some(*id)) {
                    *value = Value::String(to.clone());
                }
            }
            Value::String(s) => *s = self.replace_text(s),
            Value::Bool(_) | Value::Null => {}
        }
    }
}

fn normalize_text_line(command: &Command, line: &str) -> Option<String> {
    let trimmed = line.trim_start();
    // Table borders carry only column widths, which follow from the cells.
    if trimmed.starts_with('+') && trimmed.ends_with('+') {
        return None;
    }
    if trimmed.starts_with('|') {
        let mut cells: Vec<String> = trimmed
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_owned())
            .collect();
        if command.status && cells.first().is_some_and(|c| c != "ENDPOINT") {
            blank_columns(&mut cells);
        }
        return Some(format!("| {} |", cells.join(" | ")));
    }
    if let Some(caps) = fields_regex().captures(line) {
        let (key, value) = (&caps[1], &caps[2]);
        let blank =
            FIELDS_BLANK_KEYS.contains(&key) || (key == "Version" && value.starts_with('"'));
        return Some(if blank {
            format!("\"{key}\" : {BLANK}")
        } else {
            line.to_owned()
        });
    }
    if command.status && line.contains(", ") {
        let mut cells: Vec<String> = line.split(", ").map(str::to_owned).collect();
        blank_columns(&mut cells);
        return Some(cells.join(", "));
    }
    Some(line.to_owned())
}

fn blank_columns(cells: &mut [String]) {
    for &i in &STATUS_BLANK_COLUMNS {
        if let Some(cell) = cells.get_mut(i) {
            *cell = BLANK.to_owned();
        }
    }
}

fn fields_regex() -> &'static Regex {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| Regex::new(r#"^"(\w+)" : (.*)$"#).expect("valid regex"))
}

fn duration_regex() -> &'static Regex {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\b(\d+(\.\d+)?(h|ms|µs|us|ns|m|s))+\b").expect("valid regex"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str], stdout: &str) -> String {
        Normalizer::new()
            .replace("127.0.0.1:23791", "<endpoint>")
            .replace_id(13668033151171901709, "<member-id>")
            .normalize_text(args, stdout)
    }

    #[test]
    fn status_simple_blanks_version_size_term_and_indexes() {
        let got = norm(
            &["endpoint", "status"],
            "127.0.0.1:23791, bdae9bbc11dd390d, 3.4.23, 33 kB, true, false, 2, 6, 6, \n",
        );
        assert_eq!(
            got,
            "<endpoint>, <member-id>, <blank>, <blank>, true, false, <blank>, <blank>, <blank>, \n"
        );
    }

    #[test]
    fn status_table_keeps_header_and_blanks_cells() {
        let table = "+-----+\n| ENDPOINT | ID | VERSION |\n+--+\n| 127.0.0.1:23791 | bdae9bbc11dd390d |  3.4.23 | 33 kB | true | false | 2 | 12 | 12 |  |\n+--+\n";
        let got = norm(&["endpoint", "status", "-w", "table"], table);
        assert_eq!(
            got,
            "| ENDPOINT | ID | VERSION |\n| <endpoint> | <member-id> | <blank> | <blank> | true | false | <blank> | <blank> | <blank> |  |\n"
        );
    }

    #[test]
    fn json_blanks_terms_and_version_strings_but_not_key_versions() {
        let got = norm(
            &["get", "foo", "-w", "json"],
            r#"{"header":{"member_id":13668033151171901709,"revision":3,"raft_term":2},"kvs":[{"key":"Zm9v","version":1}],"version":"3.4.23"}"#,
        );
        let v: Value = serde_json::from_str(got.trim()).unwrap();
        assert_eq!(v["header"]["raft_term"], "<blank>");
        assert_eq!(v["header"]["revision"], 3);
        assert_eq!(v["header"]["member_id"], "<member-id>");
        assert_eq!(v["kvs"][0]["version"], 1);
        assert_eq!(v["version"], "<blank>");
    }

    #[test]
    fn fields_blank_term_and_server_version_only() {
        let got = norm(
            &["endpoint", "status", "-w", "fields"],
            "\"RaftTerm\" : 2\n\"Version\" : \"3.4.23\"\n\"Version\" : 1\n\"Revision\" : 4\n",
        );
        assert_eq!(
            got,
            "\"RaftTerm\" : <blank>\n\"Version\" : <blank>\n\"Version\" : 1\n\"Revision\" : 4\n"
        );
    }

    #[test]
    fn health_timings_are_blanked() {
        let got = norm(
            &["endpoint", "health"],
            "127.0.0.1:23791 is healthy: successfully committed proposal: took = 1.953533ms\n",
        );
        assert_eq!(
            got,
            "<endpoint> is healthy: successfully committed proposal: took = <duration>\n"
        );
    }

    #[test]
    fn client_log_lines_lose_time_and_target() {
        let got = norm(
            &["get", "a"],
            r#"{"level":"warn","ts":"2026-11-21T16:56:53.766Z","caller":"x.go:62","msg":"m","target":"endpoint://client-1/127.0.0.1:23791","attempt":0,"error":"e"}"#,
        );
        assert!(got.contains(r#""ts":"<blank>""#), "{got}");
        assert!(got.contains(r#""target":"<blank>""#), "{got}");
        assert!(got.contains(r#""error":"e""#), "{got}");
    }
}
