//! The real etcdctl 3.4.23 against the server under test, compared line by line with what it
//! prints against real etcd (issue 2, item 2). Every check runs the same command on a fresh
//! real etcd and on the subject; see `oxcd_e2e::Oracle` for what is normalised.

use oxcd_e2e::Oracle;

const FORMATS: [&str; 4] = ["simple", "json", "fields", "table"];

/// Puts a small keyspace with several versions and revisions, the same on both servers.
fn seed(oracle: &Oracle) {
    for (key, value) in [
        ("a", "1"),
        ("b", "2"),
        ("c/1", "x"),
        ("c/2", "y"),
        ("c/3", "z"),
        ("d", "4"),
        ("b", "22"),
        ("zz", "last"),
        ("c/2", "yy"),
    ] {
        oracle.check(&["put", key, value]);
    }
}

#[test]
fn put_in_every_format() {
    let oracle = Oracle::start();
    for w in FORMATS {
        oracle.check(&["put", "k", &format!("v-{w}"), "-w", w]);
        oracle.check(&["put", "k", &format!("v2-{w}"), "--prev-kv", "-w", w]);
    }
    // --ignore-value keeps the value; on a missing key it is an error.
    for w in FORMATS {
        oracle.check(&["put", "k", "--ignore-value", "-w", w]);
        oracle.check(&["put", "k", "--ignore-value", "--prev-kv", "-w", w]);
        oracle.check(&["put", "missing", "--ignore-value", "-w", w]);
    }
    oracle.check(&["get", "k", "-w", "json"]);
    // Values that look like flags, empty values, odd bytes.
    oracle.check(&["put", "dash", "--", "-v"]);
    oracle.check(&["put", "empty", ""]);
    oracle.check(&["put", "utf8/ключ", "значение"]);
    oracle.check(&["get", "", "--from-key", "-w", "json"]);
    // Errors: no key, empty key.
    oracle.check(&["put"]);
    oracle.check(&["put", "", "v"]);
}

#[test]
fn get_with_every_option() {
    let oracle = Oracle::start();
    seed(&oracle);
    for w in FORMATS {
        let w = &["-w", w][..];
        let runs: &[&[&str]] = &[
            &["get", "a"],
            &["get", "missing"],
            &["get", "c/", "--prefix"],
            &["get", "b", "--from-key"],
            &["get", "a", "d"],
            &["get", "c/", "--prefix", "--keys-only"],
            &["get", "c/", "--prefix", "--print-value-only"],
            &["get", "c/", "--prefix", "--count-only"],
            &["get", "", "--prefix", "--limit=2"],
            &["get", "", "--from-key", "--limit=3"],
            &[
                "get",
                "c/",
                "--prefix",
                "--sort-by=MODIFY",
                "--order=DESCEND",
            ],
            &["get", "", "--prefix", "--sort-by=VALUE", "--order=ASCEND"],
            &[
                "get",
                "",
                "--prefix",
                "--sort-by=VERSION",
                "--order=DESCEND",
            ],
            &["get", "", "--prefix", "--sort-by=CREATE", "--order=DESCEND"],
            &[
                "get",
                "",
                "--prefix",
                "--sort-by=KEY",
                "--order=DESCEND",
                "--limit=2",
            ],
            &["get", "", "--prefix", "--order=DESCEND"],
            &["get", "b", "--rev=3"],
            &["get", "c/", "--prefix", "--rev=5"],
            &["get", "", "--prefix", "--consistency=s"],
            &["get", "", "--prefix", "--consistency=l", "--limit=1"],
        ];
        for run in runs {
            oracle.check(&[*run, w].concat());
        }
    }
}

#[test]
fn get_errors() {
    let oracle = Oracle::start();
    seed(&oracle);
    oracle.check(&["get", "a", "--rev=1000"]);
    oracle.check(&["get", "a", "--rev=1000", "-w", "json"]);
    oracle.check(&["get", "", "--prefix", "--sort-by=NOPE"]);
    oracle.check(&["get", "", "--prefix", "--order=SIDEWAYS"]);
    oracle.check(&["get", "a", "--consistency=x"]);
    oracle.check(&["get"]);
}

#[test]
fn del_with_every_option() {
    for w in FORMATS {
        let oracle = Oracle::start();
        seed(&oracle);
        let w = &["-w", w][..];
        let runs: &[&[&str]] = &[
            &["del", "missing"],
            &["del", "a"],
            &["del", "c/", "--prefix", "--prev-kv"],
            &["del", "b", "--prev-kv"],
            &["del", "d", "--from-key"],
            &["get", "", "--prefix"],
        ];
        for run in runs {
            oracle.check(&[*run, w].concat());
        }
    }
}

#[test]
fn del_range_and_revisions() {
    let oracle = Oracle::start();
    seed(&oracle);
    oracle.check(&["del", "a", "c/3", "-w", "json"]);
    oracle.check(&["get", "", "--from-key", "-w", "json"]);
    oracle.check(&["put", "a", "again", "-w", "json"]);
    oracle.check(&["get", "a", "-w", "json"]);
    oracle.check(&["get", "a", "--rev=2", "-w", "json"]);
}

#[test]
fn txn_from_stdin() {
    let oracle = Oracle::start();
    seed(&oracle);
    let txns = [
        // Value compare, success branch with put, get and delete.
        "value(\"a\") = \"1\"\n\nput a \"from txn\"\nget b\ndel d\n\nput a \"failure\"\n\n",
        // Same compare now fails: failure branch.
        "value(\"a\") = \"1\"\n\nput a \"never\"\n\nput fail \"yes\"\nget a\n\n",
        // Version, create and mod revision compares.
        "version(\"b\") = \"2\"\ncreate(\"c/1\") > \"0\"\nmod(\"c/2\") < \"100\"\n\nput ok 1\nget c/ --prefix\n\nput bad 1\n\n",
        "version(\"b\") > \"5\"\n\nput bad 1\n\nget b --rev=3\n\n",
        "mod(\"missing\") = \"0\"\n\nput created \"new\"\n\n\n",
        // No compares: success always.
        "\nput plain 1\nput plain 2\n\n\n",
        // Compare on a missing key's value: false.
        "value(\"missing\") = \"\"\n\nput bad 1\n\nput good 1\n\n",
    ];
    for w in FORMATS {
        for txn in txns {
            oracle.check_stdin(&["txn", "-w", w], txn);
        }
    }
    oracle.check(&["get", "", "--prefix", "-w", "json"]);
    // Duplicate keys in one branch: a server error.
    oracle.check_stdin(&["txn"], "\nput x 1\nput x 2\n\n\n");
}

#[test]
fn txn_interactive() {
    let oracle = Oracle::start();
    seed(&oracle);
    for w in FORMATS {
        oracle.check_stdin(
            &["txn", "-i", "-w", w],
            "value(\"a\") = \"1\"\n\nput a x\nget a\n\nput a y\n\n",
        );
        oracle.check_stdin(
            &["txn", "--interactive", "-w", w],
            "mod(\"b\") > \"1000\"\n\nput b never\n\ndel c/ --prefix\nget b\n\n",
        );
    }
    oracle.check(&["get", "", "--prefix", "-w", "json"]);
}

#[test]
fn compaction() {
    let oracle = Oracle::start();
    seed(&oracle);
    oracle.check(&["compaction", "3"]);
    oracle.check(&["get", "b", "--rev=2"]);
    oracle.check(&["get", "b", "--rev=3", "-w", "json"]);
    oracle.check(&["get", "b", "--rev=4"]);
    oracle.check(&["compaction", "3"]);
    oracle.check(&["compaction", "2"]);
    oracle.check(&["compaction", "5", "--physical"]);
    oracle.check(&["compaction", "1000"]);
    oracle.check(&["compaction", "x"]);
    for w in FORMATS {
        oracle.check(&["get", "", "--prefix", "--rev=6", "-w", w]);
    }
    let last = "10";
    oracle.check(&["compaction", last, "--physical", "-w", "json"]);
    oracle.check(&["get", "", "--prefix", "-w", "json"]);
    oracle.check(&["endpoint", "hashkv", "-w", "json"]);
}

#[test]
fn endpoint_and_member_commands() {
    let oracle = Oracle::start();
    seed(&oracle);
    for w in FORMATS {
        oracle.check(&["endpoint", "status", "-w", w]);
        oracle.check(&["endpoint", "health", "-w", w]);
        oracle.check(&["endpoint", "hashkv", "-w", w]);
        oracle.check(&["endpoint", "hashkv", "--rev=5", "-w", w]);
        oracle.check(&["member", "list", "-w", w]);
    }
    oracle.check(&["compaction", "4"]);
    for w in FORMATS {
        oracle.check(&["endpoint", "hashkv", "-w", w]);
        oracle.check(&["endpoint", "status", "-w", w]);
    }
}
