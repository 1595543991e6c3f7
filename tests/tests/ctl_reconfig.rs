//! etcd's strict reconfiguration checks (`--strict-reconfig-check`, on by default), on a
//! 3-member cluster of real etcd 3.4 and of oxcd, driven by the real etcdctl: with one
//! follower stopped (SIGSTOP), the leader refuses to add a member and to remove a running
//! one ("unhealthy cluster": the change would break the active quorum), refuses to promote
//! a learner that has not caught up (also when a follower is asked: it forwards to the
//! leader), and lets the stopped member be removed.

mod ctl_support;

use std::time::Duration;

use oxcd_e2e::{real_etcd_bin, server_bin, wait_until, Cluster, CtlOutput};

/// Exit code and output with member ids, cluster ids and ports taken out.
fn normalized(out: &CtlOutput) -> String {
    // etcdctl prints ids with `%16x`: a short id is padded with spaces.
    let ids = regex::Regex::new(r" +[0-9a-f]{12,16}\b").expect("regex");
    let ports = regex::Regex::new(r"127\.0\.0\.1:\d+").expect("regex");
    let names = regex::Regex::new(r"\bm\d+\b").expect("regex");
    let stderr = ctl_support::normalize_log_lines(&out.stderr);
    let text = format!("exit {:?}\n{}---\n{stderr}", out.code, out.stdout);
    let text = ids.replace_all(&text, " <id>");
    let text = ports.replace_all(&text, "<host>");
    let text = names.replace_all(&text, "<name>");
    // Members come in id order, and ids are random.
    let cluster = regex::Regex::new(r#"ETCD_INITIAL_CLUSTER="([^"]*)""#).expect("regex");
    cluster
        .replace_all(&text, |c: &regex::Captures| {
            let mut members: Vec<&str> = c[1].split(',').collect();
            members.sort();
            format!("ETCD_INITIAL_CLUSTER=\"{}\"", members.join(","))
        })
        .into_owned()
}

/// The answers of each step on a cluster of `bin`.
fn steps(bin: std::path::PathBuf) -> Vec<(String, String)> {
    let mut cluster = Cluster::builder(3)
        .configure(move |b| b.bin(bin.clone()))
        .start();
    let leader = wait_until("a leader", Duration::from_secs(30), || cluster.leader());
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let (stopped, running) = (others[0], others[1]);
    let id_of = |cluster: &Cluster, index: usize| {
        let name = cluster.member(index).name().to_owned();
        format!("{:x}", cluster.member_id(&name).expect("member id"))
    };
    let (stopped_id, running_id) = (id_of(&cluster, stopped), id_of(&cluster, running));
    // The checks count members connected for the last 5 s.
    std::thread::sleep(Duration::from_secs(6));
    let ask_at = |cluster: &Cluster, member: usize, args: &[&str]| {
        let mut all = vec!["--command-timeout=10s"];
        all.extend_from_slice(args);
        cluster.member(member).etcdctl(&all)
    };
    let ask = |cluster: &Cluster, args: &[&str]| ask_at(cluster, leader, args);
    let mut answers = Vec::new();
    let mut record = |step: &str, out: CtlOutput| answers.push((step.to_owned(), normalized(&out)));

    let learner = ask(
        &cluster,
        &[
            "member",
            "add",
            "learner",
            "--learner",
            "--peer-urls=http://127.0.0.1:9",
        ],
    );
    let learner_id = learner
        .stdout
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    record("add a learner", learner);

    cluster.member_mut(stopped).pause();
    // etcd notices a stopped peer within 5 s (its stream's read timeout), oxcd within 8 s;
    // then the checks want 5 s of connection again.
    std::thread::sleep(Duration::from_secs(12));
    record(
        "add a voting member",
        ask(
            &cluster,
            &["member", "add", "new", "--peer-urls=http://127.0.0.1:10"],
        ),
    );
    record(
        "remove a running follower",
        ask(&cluster, &["member", "remove", &running_id]),
    );
    record(
        "promote a learner that never started",
        ask(&cluster, &["member", "promote", &learner_id]),
    );
    // A follower hands the promotion to the leader, which refuses it.
    record(
        "promote through a follower",
        ask_at(&cluster, running, &["member", "promote", &learner_id]),
    );
    record(
        "remove the stopped follower",
        ask(&cluster, &["member", "remove", &stopped_id]),
    );
    cluster.member_mut(stopped).resume();
    answers
}

#[test]
fn strict_reconfiguration_checks_match_etcd() {
    let etcd = steps(real_etcd_bin());
    let expected = [
        ("add a learner", "added to cluster"),
        ("add a voting member", "etcdserver: unhealthy cluster"),
        ("remove a running follower", "etcdserver: unhealthy cluster"),
        (
            "promote a learner that never started",
            "can only promote a learner member which is in sync with leader",
        ),
        (
            "promote through a follower",
            "can only promote a learner member which is in sync with leader",
        ),
        ("remove the stopped follower", "removed from cluster"),
    ];
    for ((step, answer), (expected_step, words)) in etcd.iter().zip(expected) {
        assert_eq!(step, expected_step);
        assert!(answer.contains(words), "etcd, {step}: {answer}");
    }
    let oxcd = steps(server_bin());
    for ((step, etcd), (_, oxcd)) in etcd.iter().zip(&oxcd) {
        assert_eq!(etcd, oxcd, "{step}");
    }
}
