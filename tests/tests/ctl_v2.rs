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
