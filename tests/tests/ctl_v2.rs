//! oxcdctl's v2 verbs (`ETCDCTL_API=2`) against the real etcdctl 3.4's, over the v2 keys
//! API of two fresh servers started with `--enable-v2` (issue 13): set, get, rm, mk, mkdir,
//! setdir, ls, update, updatedir, rmdir, watch, in each output format, with their errors
//! (exec-watch: its argument errors only, as it never ends by itself). Runs on real etcd, and on oxcd once it serves `/v2/keys`.

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
