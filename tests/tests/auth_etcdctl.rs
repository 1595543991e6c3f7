//! Issue 10: the real etcdctl's `user`, `role` and `auth` commands, `--user` and every refusal,
//! compared with what they print against real etcd.

use oxcd_e2e::Oracle;

const ROOT: &str = "root:rootpw";
const ALICE: &str = "alice:apw";

/// Users, roles and permissions of every kind (key, range, prefix, from-key), the same on both.
fn setup(oracle: &Oracle) {
    oracle.check_all(&[
        &["user", "add", ROOT],
        &["role", "add", "root"],
        &["user", "grant-role", "root", "root"],
        &["user", "add", ALICE],
        &["role", "add", "r1"],
        &["role", "grant-permission", "r1", "readwrite", "foo"],
        &["role", "grant-permission", "r1", "read", "a", "c"],
        &["role", "grant-permission", "--prefix", "r1", "read", "p/"],
        &["role", "grant-permission", "--from-key", "r1", "write", "z"],
        &["user", "grant-role", "alice", "r1"],
    ]);
}

#[test]
fn user_and_role_commands_and_their_errors_match_etcd() {
    let oracle = Oracle::start_with(&["--bcrypt-cost", "4"]);
    setup(&oracle);
    oracle.check_all(&[
        &["role", "get", "r1"],
        &["user", "get", "alice"],
        &["user", "get", "alice", "--detail"],
        &["user", "list"],
        &["role", "list"],
        &["auth", "status"],
        // Refusals.
        &["user", "add", ROOT],
        &["role", "add", "r1"],
        &["user", "grant-role", "bob", "r1"],
        &["user", "grant-role", "alice", "nope"],
        &["user", "revoke-role", "alice", "nope"],
        &["role", "revoke-permission", "r1", "nothere"],
        &["role", "get", "nope"],
        &["user", "get", "nope"],
        &["user", "delete", "nope"],
        &["role", "delete", "nope"],
        // Changes.
        &["role", "revoke-permission", "r1", "a", "c"],
        &["role", "get", "r1"],
        &["role", "add", "r2"],
        &["user", "grant-role", "alice", "r2"],
        &["user", "revoke-role", "alice", "r2"],
        &["role", "delete", "r2"],
        &["user", "get", "alice"],
        &["user", "add", "carol", "--new-user-password", "c"],
        &["user", "delete", "carol"],
    ]);
}

#[test]
fn enabled_auth_allows_and_refuses_as_etcd() {
    let oracle = Oracle::start_with(&["--bcrypt-cost", "4"]);
    oracle.check(&["auth", "enable"]); // no root user yet
    oracle.check(&["user", "add", ROOT]);
    oracle.check(&["auth", "enable"]); // root without the root role
    setup(&oracle);
    oracle.check(&["role", "add", "root"]);
    oracle.check(&["user", "grant-role", "root", "root"]);
    oracle.check_all(&[
        &["auth", "enable"],
        &["put", "foo", "bar"],
        &["--user", ALICE, "put", "foo", "bar"],
        &["--user", ALICE, "get", "foo"],
        &["--user", ALICE, "put", "foo", "baz", "--prev-kv"],
        &["--user", ALICE, "put", "p/x", "y"],
        &["--user", ROOT, "put", "p/x", "y"],
        &["--user", ALICE, "get", "p/", "--prefix"],
        &["--user", ALICE, "get", "q/", "--prefix"],
        &["--user", ALICE, "get", "b"],
        &["--user", ALICE, "get", "a", "c"],
        &["--user", ALICE, "get", "a", "d"],
        &["--user", ALICE, "put", "zz", "1"],
        &["--user", ALICE, "get", "zz"],
        &["--user", ALICE, "del", "zz"],
        &["--user", ALICE, "del", "foo", "--prev-kv"],
        &["--user", "alice:wrong", "get", "foo"],
        &["--user", "nobody:x", "get", "foo"],
        &["--user", ALICE, "user", "list"],
        &["--user", ALICE, "user", "get", "alice"],
        &["--user", ALICE, "role", "get", "r1"],
        &["--user", ALICE, "role", "get", "root"],
        // Compaction needs no role, nor even a user, on etcd 3.4 and 3.5 alike.
        &["--user", ALICE, "compaction", "1"],
        &["compaction", "2"],
        &["--user", ALICE, "defrag"],
        &["defrag"],
        &["--user", ROOT, "user", "delete", "root"],
        &["--user", ROOT, "role", "delete", "root"],
        &["--user", ROOT, "user", "revoke-role", "root", "root"],
        &["--user", ROOT, "auth", "enable"],
        &["--user", ROOT, "auth", "status"],
        &["--user", ROOT, "user", "revoke-role", "alice", "r1"],
        &["--user", ALICE, "get", "foo"],
        &["--user", ROOT, "auth", "disable"],
        &["get", "foo"],
        &["auth", "status"],
    ]);
}
