//! oxcdctl's v2 verbs (`ETCDCTL_API=2`) against the real etcdctl 3.4's, over the v2 keys
//! API of two fresh servers started with `--enable-v2` (issue 13): set, get, rm, mk, mkdir,
//! setdir, ls, update, updatedir, rmdir, watch, in each output format, with their errors
//! (exec-watch: its argument errors only, as it never ends by itself). Runs on real etcd, and on oxcd once it serves `/v2/keys`.
//! Also the cluster and access verbs: member, cluster-health, user, role, auth.

mod ctl_support;

use ctl_support::{Pair, Run, Server, SERVERS};

fn v2(pair: &Pair, args: &[&str]) {
    pair.check_run(&Run {
        args,
        env: &[("ETCDCTL_API", "2")],
        url_endpoint: true,
        ..Default::default()
    });
}

/// A server without `--enable-v2` answers `404 page not found`: the Go client's error line
/// (as etcd's e2e TestCtlV3Migrate meets it).
#[test]
fn v2_without_the_v2_api_matches_etcdctl() {
    for server in SERVERS {
        let pair = Pair::start(server);
        v2(&pair, &["set", "/foo", "bar"]);
        v2(&pair, &["get", "/foo"]);
    }
}

#[test]
fn v2_verbs_match_etcdctl() {
    for server in SERVERS {
        let pair = Pair::start_with(server, &["--enable-v2"]);
        let probe = ctl_support::run(
            &oxcd_e2e::etcdctl_bin(),
            &pair.reference.endpoint(),
            &Run {
                args: &["get", "/probe"],
                env: &[("ETCDCTL_API", "2")],
                url_endpoint: true,
                ..Default::default()
            },
        );
        if !probe.stderr.contains("Key not found") {
            eprintln!("SKIPPED on {server:?}: no v2 keys API ({probe})");
            assert_eq!(
                server,
                Server::UnderTest,
                "real etcd serves v2 with --enable-v2"
            );
            continue;
        }
        for output in ["simple", "json", "extended"] {
            let o = &["-o", output][..];
            let dir = format!("/{output}");
            let key = format!("{dir}/k");
            let sub = format!("{dir}/sub");
            let runs: Vec<Vec<&str>> = vec![
                vec!["set", &key, "v1"],
                vec!["get", &key],
                vec!["set", &key, "v2", "--swap-with-value", "v1"],
                vec!["set", &key, "v3", "--swap-with-value", "nope"],
                vec!["update", &key, "v4"],
                vec!["update", "/missing", "x"],
                vec!["mk", &key, "again"],
                vec!["mk", "--in-order", &dir, "queued"],
                vec!["mkdir", &sub],
                vec!["mkdir", &sub],
                vec!["setdir", &sub],
                vec!["updatedir", &sub],
                vec!["updatedir", "/nodir"],
                vec!["get", &sub],
                vec!["ls", &dir, "--sort"],
                vec!["ls", "--sort", "-r", "-p", "/"],
                vec!["rmdir", &sub],
                vec!["rmdir", &sub],
                vec!["rm", &key, "--with-value", "nope"],
                vec!["rm", &key],
                vec!["rm", &key],
                vec!["rm", &dir, "--recursive"],
                vec!["get", "/missing"],
                vec!["get"],
                vec!["set", "/only-key"],
                vec!["exec-watch", "/k"],
            ];
            for args in runs {
                v2(&pair, &[o, args.as_slice()].concat());
            }
        }
        // Watches: the first change after an index, printed, then exit.
        v2(&pair, &["set", "/w/a", "1"]);
        v2(&pair, &["set", "/w/a", "2"]);
        v2(&pair, &["watch", "--after-index", "1", "/w/a"]);
        v2(&pair, &["watch", "--after-index", "1", "-r", "/w"]);
        v2(
            &pair,
            &["-o", "json", "watch", "--after-index", "1", "/w/a"],
        );
    }
}

/// `--debug`: etcdctl's client lines (the sync through `/v2/members`, the endpoints) and
/// one `cURL Command:` line per request, with Go's query order, escaping and form body.
#[test]
fn v2_debug_matches_etcdctl() {
    for server in SERVERS {
        let pair = Pair::start_with(server, &["--enable-v2"]);
        let runs: &[&[&str]] = &[
            &["set", "/a", "1"],
            &["get", "/a"],
            &["get", "--quorum", "--sort", "/a"],
            &["mk", "/b", "2"],
            &["mk", "--in-order", "/q", "3"],
            &["mkdir", "/d"],
            &["setdir", "/d2"],
            &["ls", "-r", "--sort", "-p", "/"],
            &["update", "/a", "5"],
            &["updatedir", "--ttl", "50", "/d2"],
            &["set", "--ttl", "100", "--swap-with-value", "5", "/a", "6"],
            &["set", "--swap-with-index", "1", "/a", "7"],
            &["rm", "--with-value", "1", "--with-index", "3", "/a"],
            &["rm", "/b"],
            &["rm", "-r", "/d"],
            &["rmdir", "/d2"],
            &["get", "/missing"],
            &["set", "/x y", "a b&c"],
            &["get", "a%b?c"],
            &["get", "/p/../x y"],
            &["watch", "--after-index", "1", "/a"],
            &["set"],
            &["--no-sync", "get", "/a"],
            &["member", "list"],
            &["member", "add"],
            &["cluster-health"],
            &["role", "add", "r1"],
            &["role", "grant", "--readwrite", "--path", "/f*", "r1"],
            &["user", "add", "bob:x"],
            &["user", "grant", "--roles", "r1", "bob"],
            &["user", "get", "bob"],
            &["user", "list"],
            &["role", "add", "r<&>"],
            &["user", "add", "u&1:p<w>"],
            &["auth", "disable"],
        ];
        for args in runs {
            v2(&pair, &[&["--debug"], *args].concat());
        }
        let (etcdctl, _) = pair.check_run(&Run {
            args: &["--debug", "get", "/x y"],
            env: &[("ETCDCTL_API", "2")],
            url_endpoint: true,
            ..Default::default()
        });
        assert!(
            etcdctl.stderr.contains("/v2/members\n")
                && etcdctl
                    .stderr
                    .contains("/v2/keys/x%20y?quorum=false&recursive=false&sorted=false\n"),
            "{etcdctl}"
        );
        // Go's JSON encoder escapes `<`, `>` and `&` in the bodies the cURL lines show (quoted).
        let (etcdctl, _) = pair.check_run(&Run {
            args: &["--debug", "role", "add", "h<&>"],
            env: &[("ETCDCTL_API", "2")],
            url_endpoint: true,
            ..Default::default()
        });
        assert!(
            etcdctl.stderr.contains(r"h\\u003c\\u0026\\u003e"),
            "{etcdctl}"
        );
    }
}

/// v2 over TLS: `--ca-file`, `--cert-file`, `--key-file` (and their `ETCDCTL_*_FILE`
/// variables) against a member that requires client certificates; both programs read the
/// same server, so every answer, indexes included, must be the same.
#[test]
fn v2_over_tls_matches_etcdctl() {
    for bin in [oxcd_e2e::server_bin(), oxcd_e2e::real_etcd_bin()] {
        let member = oxcd_e2e::Member::builder()
            .bin(bin.clone())
            .client_tls(true)
            .args(["--enable-v2"])
            .start();
        let file = |name: &str| oxcd_e2e::fixture(name).display().to_string();
        let (ca, cert, key) = (
            file("ca.crt"),
            file("server.crt"),
            file("server.key.insecure"),
        );
        let flags = [
            format!("--ca-file={ca}"),
            format!("--cert-file={cert}"),
            format!("--key-file={key}"),
        ];
        let env = [
            ("ETCDCTL_API", "2"),
            ("ETCDCTL_CA_FILE", ca.as_str()),
            ("ETCDCTL_CERT_FILE", cert.as_str()),
            ("ETCDCTL_KEY_FILE", key.as_str()),
        ];
        let endpoint = format!("--endpoints={}", member.client_url());
        let setup = ctl_support::run(
            &oxcd_e2e::etcdctl_bin(),
            &member.endpoint(),
            &Run {
                args: &[
                    &endpoint, &flags[0], &flags[1], &flags[2], "set", "/tls/k", "v",
                ],
                env: &env[..1],
                no_endpoint_flag: true,
                ..Default::default()
            },
        );
        assert!(setup.success(), "{setup}");
        let reads: [&[&str]; 4] = [
            &["get", "/tls/k"],
            &["-o", "json", "get", "/tls/k"],
            &["ls", "-p", "/tls"],
            &["get", "/tls/missing"],
        ];
        for read in reads {
            // With the flags, then with the variables.
            for (extra, env) in [(&flags[..], &env[..1]), (&[][..], &env[..])] {
                let mut args: Vec<&str> = vec![&endpoint];
                args.extend(extra.iter().map(String::as_str));
                args.extend_from_slice(read);
                let r = Run {
                    args: &args,
                    env,
                    no_endpoint_flag: true,
                    ..Default::default()
                };
                let expected = ctl_support::run(&oxcd_e2e::etcdctl_bin(), &member.endpoint(), &r);
                let got = ctl_support::run(&ctl_support::oxcdctl_bin(), &member.endpoint(), &r);
                assert_eq!(
                    expected.to_string(),
                    got.to_string(),
                    "{} {args:?}: oxcdctl differs from etcdctl",
                    bin.display()
                );
            }
        }
    }
}

/// The v2 cluster and access verbs against the real etcdctl's on two fresh servers of each
/// kind: `member list|remove|update|add` and their argument and URL errors,
/// `cluster-health`, `user`, `role` (grants, revokes, duplicates, missing names,
/// non-canonical paths) and `auth enable|disable` with and without `--username`; then an
/// unreachable endpoint. `user passwd` reads a terminal, so only oxcdctl's is checked, by
/// logging in with the new password.
#[test]
fn v2_cluster_and_auth_verbs_match_etcdctl() {
    for server in SERVERS {
        let pair = Pair::start_with(server, &["--enable-v2"]);
        let runs: &[&[&str]] = &[
            &["member", "list"],
            &["member", "list", "extra"],
            &["cluster-health"],
            &["member", "add"],
            &["member", "add", "n", "ftp://x:1"],
            &["member", "add", "n", "http://x"],
            &["member", "add", "n", "http://x:1/p"],
            &["member", "remove"],
            &["member", "remove", "nope"],
            &["member", "remove", "pair"],
            &["member", "update"],
            &["member", "update", "abc", "http://127.0.0.1:9"],
            &["member", "update", "abc", "ftp://x:1,http://y:2"],
            &["user", "list"],
            &["user", "add"],
            &["user", "add", "root:pw"],
            &["user", "add", "bob:x"],
            &["user", "get", "bob"],
            &["user", "get", "nobody"],
            &["role", "add"],
            &["role", "add", "r1"],
            &["role", "add", "r1"],
            &["role", "get", "r1"],
            &["role", "grant", "r1"],
            &["role", "grant", "r1", "--path", "/foo"],
            &["role", "grant", "r1", "--path", "foo", "--read"],
            &["role", "grant", "r1", "--path", "/a/../foo/", "--read"],
            &["role", "grant", "r1", "--path", "/foo", "--read", "--write"],
            &["role", "grant", "r1", "--path", "/foo/*", "--read"],
            &["role", "grant", "r1", "--path", "/foo/*", "--read"],
            &["role", "grant", "r1", "--path", "/bar", "--rw"],
            &["role", "revoke", "r1", "--path", "/bar", "--write"],
            &["role", "revoke", "r1", "--path", "/zzz", "--write"],
            &["role", "get", "r1"],
            &["role", "get", "nope"],
            &["role", "grant", "nope", "--path", "/a", "--read"],
            &["role", "list"],
            &["user", "grant", "bob"],
            &["user", "grant", "bob", "--roles", "r1"],
            &["user", "grant", "bob", "--roles", "r1", "--roles", "nope"],
            &["user", "get", "bob"],
            &["user", "revoke", "bob", "--roles", "r1"],
            &["user", "revoke", "bob", "--roles", "r1"],
            &["user", "list"],
            &["auth", "enable", "x"],
            &["auth", "enable"],
            &["user", "list"],
            &["-u", "root:bad", "user", "list"],
            &["-u", "bob:x", "role", "list"],
            &["-u", "root:pw", "user", "list"],
            &["-u", "root:pw", "user", "grant", "bob", "--roles", "r1"],
            &["-u", "root:pw", "user", "get", "bob"],
            &["-u", "root:pw", "set", "/k", "v"],
            &["-u", "root:pw", "member", "list"],
            &["auth", "disable"],
            &["-u", "root:pw", "auth", "disable"],
            &["auth", "disable"],
            &["role", "remove", "r1"],
            &["role", "remove", "r1"],
            &["user", "remove", "bob"],
            &["user", "remove", "bob"],
        ];
        for args in runs {
            v2(&pair, args);
        }
        // `member update` of each side's own member, by its id and to its own peer URL.
        for (bin, member) in [
            (oxcd_e2e::etcdctl_bin(), &pair.reference),
            (ctl_support::oxcdctl_bin(), &pair.subject),
        ] {
            let v2_run = |args: &[&str]| {
                ctl_support::run(
                    &bin,
                    &member.endpoint(),
                    &Run {
                        args,
                        env: &[("ETCDCTL_API", "2")],
                        url_endpoint: true,
                        ..Default::default()
                    },
                )
            };
            let list = v2_run(&["member", "list"]);
            let id = list.stdout.split(':').next().unwrap_or_default().to_owned();
            let peer = member.peer_url();
            let updated = v2_run(&["member", "update", &id, &peer]);
            assert_eq!(
                updated.to_string(),
                format!("exit Some(0)\n--- stdout\nUpdated member with ID {id} in cluster\n--- stderr\n"),
                "{} member update",
                bin.display()
            );
        }
        // No member answers: Go's cluster error and its detail, exit 2 (4 for
        // cluster-health, after its line on stdout).
        for args in [
            &["member", "list"][..],
            &["cluster-health"],
            &["user", "list"],
        ] {
            let mut with = vec!["--endpoints=http://127.0.0.1:1"];
            with.extend_from_slice(args);
            pair.check_run(&Run {
                args: &with,
                env: &[("ETCDCTL_API", "2")],
                no_endpoint_flag: true,
                ..Default::default()
            });
        }
        // `user passwd` asks on the terminal (here: a line of stdin).
        let oxcdctl = |args: &[&str], stdin: &str| {
            ctl_support::run(
                &ctl_support::oxcdctl_bin(),
                &pair.subject.endpoint(),
                &Run {
                    args,
                    stdin,
                    env: &[("ETCDCTL_API", "2")],
                    url_endpoint: true,
                    ..Default::default()
                },
            )
        };
        let added = oxcdctl(&["user", "add", "carol"], "first\n");
        assert_eq!(
            added.stdout, "New password: \nUser carol created\n",
            "{added}"
        );
        let changed = oxcdctl(&["user", "passwd", "carol"], "second\n");
        assert_eq!(
            changed.stdout, "New password: \nPassword updated\n",
            "{changed}"
        );
        assert!(oxcdctl(&["user", "grant", "carol", "--roles", "root"], "").success());
        assert!(oxcdctl(&["auth", "enable"], "").success());
        let old = oxcdctl(&["-u", "carol:first", "user", "list"], "");
        assert!(!old.success(), "the old password still works: {old}");
        let new = oxcdctl(&["-u", "carol:second", "user", "list"], "");
        assert!(
            new.success() && new.stdout.contains("carol"),
            "the new password is refused: {new}"
        );
    }
}
