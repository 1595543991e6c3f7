//! The multi-member harness itself: 3- and 5-member clusters, leader kill, pause and resume,
//! restart, peer links cut both ways and one way, learners, promotion and removal. The harness
//! itself is checked against real etcd with
//! `OXCD_BIN=/usr/bin/etcd cargo test -p oxcd-e2e --test cluster_harness`.

use std::time::Duration;

use oxcd_e2e::fault_run::cluster_lock;
use oxcd_e2e::{start_timeout, wait_for_membership, wait_until, Cluster, CutMode};

#[test]
fn three_members_survive_leader_kill_pause_and_restart() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(3);
    cluster.etcdctl(&["put", "k", "1"]).expect_success();
    let list = cluster.etcdctl(&["member", "list"]);
    assert_eq!(list.expect_success().lines().count(), 3, "{list}");

    let leader = wait_until("a leader", start_timeout(), || cluster.leader());
    cluster.member_mut(leader).kill();
    let survivors: Vec<String> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| cluster.member(i).endpoint())
        .collect();
    wait_until("a write after the leader died", start_timeout(), || {
        let put = oxcd_e2e::etcdctl(&survivors.join(","), &["put", "k", "2"]);
        put.success().then_some(())
    });

    let follower = (0..3).find(|&i| i != leader).unwrap();
    cluster.member_mut(follower).pause();
    let last = (0..3).find(|&i| i != leader && i != follower).unwrap();
    let alone = cluster
        .member(last)
        .etcdctl(&["--command-timeout=2s", "put", "k", "3"]);
    assert!(
        !alone.success(),
        "one of three members committed a write alone: {alone}"
    );
    cluster.member_mut(follower).resume();

    cluster.member_mut(leader).restart();
    wait_until(
        "the restarted member to catch up",
        Duration::from_secs(20),
        || {
            let got = cluster.member(leader).etcdctl(&[
                "get",
                "k",
                "--print-value-only",
                "--consistency=s",
            ]);
            (got.success() && got.stdout.trim() != "1").then_some(())
        },
    );
}

#[test]
fn five_members_start() {
    let _lock = cluster_lock();
    let cluster = Cluster::start(5);
    let health = cluster.etcdctl(&["endpoint", "health"]);
    assert!(health.success(), "{health}");
    assert_eq!(health.stderr.matches("is healthy").count(), 5, "{health}");
}

/// A member cut off both ways serves no linearizable read and commits no write, while the
/// majority goes on; healed, it catches up. Also checks that the peer proxies know who sends
/// every connection, without which no cut would work.
#[test]
fn an_isolated_member_serves_no_linearizable_read_and_commits_no_write() {
    let _lock = cluster_lock();
    let cluster = Cluster::builder(3).proxied().start();
    cluster.etcdctl(&["put", "k", "before"]).expect_success();
    let network = cluster.network().unwrap();
    let open = network.open_connections();
    assert!(
        !open.is_empty(),
        "no peer connection goes through the proxies"
    );
    assert!(
        open.iter().all(|(client, _)| client.is_some()),
        "unidentified peer connections: {open:?}"
    );

    for (round, mode) in [CutMode::Blackhole, CutMode::Refuse]
        .into_iter()
        .enumerate()
    {
        let leader = wait_until("a leader", start_timeout(), || cluster.leader());
        // Round 0 cuts off a follower, round 1 the leader.
        let target = if round == 0 { (leader + 1) % 3 } else { leader };
        let names = cluster.names();
        let others: Vec<&str> = names.iter().map(String::as_str).collect();
        network.isolate(&names[target], &others, mode);
        let alone = cluster.member(target);
        let majority: Vec<String> = (0..3)
            .filter(|&i| i != target)
            .map(|i| cluster.member(i).endpoint())
            .collect();
        let value = format!("during-{round}");
        wait_until("a write through the majority", start_timeout(), || {
            oxcd_e2e::etcdctl(
                &majority.join(","),
                &["--command-timeout=2s", "put", "k", &value],
            )
            .success()
            .then_some(())
        });
        let read = alone.etcdctl(&["--command-timeout=3s", "get", "k"]);
        assert!(
            !read.success(),
            "{mode:?}: the cut-off member served a linearizable read: {read}"
        );
        let write = alone.etcdctl(&["--command-timeout=3s", "put", "k", "alone"]);
        assert!(
            !write.success(),
            "{mode:?}: the cut-off member committed a write: {write}"
        );
        let stale = alone.etcdctl(&["get", "k", "--consistency=s", "--print-value-only"]);
        assert!(
            stale.success(),
            "{mode:?}: serializable read failed: {stale}"
        );
        assert_ne!(
            stale.stdout.trim(),
            value,
            "{mode:?}: the cut-off member saw the new write"
        );

        network.heal();
        wait_until("the healed member to catch up", start_timeout(), || {
            let got = alone.etcdctl(&["--command-timeout=2s", "get", "k", "--print-value-only"]);
            (got.success() && got.stdout.trim() == value).then_some(())
        });
    }
    let final_value = cluster.etcdctl(&["get", "k", "--print-value-only"]);
    assert_eq!(final_value.expect_success().trim(), "during-1");
}

/// A leader whose messages reach nobody loses its followers, who elect another leader; a
/// follower whose messages are cut one way towards the leader still gets its writes through
/// another member.
#[test]
fn one_way_cuts_move_leadership() {
    let _lock = cluster_lock();
    let cluster = Cluster::builder(3).proxied().start();
    let network = cluster.network().unwrap();
    let names = cluster.names();
    let leader = wait_until("a leader", start_timeout(), || cluster.leader());
    for (i, name) in names.iter().enumerate() {
        if i != leader {
            network.cut_one_way(&names[leader], name);
        }
    }
    let followers: Vec<String> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| cluster.member(i).endpoint())
        .collect();
    wait_until("a write through the followers", start_timeout(), || {
        oxcd_e2e::etcdctl(
            &followers.join(","),
            &["--command-timeout=2s", "put", "k", "v"],
        )
        .success()
        .then_some(())
    });
    network.heal();
    let new_leader = wait_until("a leader after healing", start_timeout(), || {
        cluster.leader()
    });
    assert_ne!(
        new_leader, leader,
        "the leader kept its place though nobody heard it"
    );
}

/// `member add` (as a learner, then promoted), `member remove`: the removed member stops by
/// itself, the remaining members serve the data.
#[test]
fn members_join_as_learners_get_promoted_and_removed_members_stop() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::builder(3).proxied().start();
    cluster.etcdctl(&["put", "k", "v"]).expect_success();
    let added = cluster.add_member(true);
    assert_eq!(cluster.member(added).name(), "m3");
    let list = cluster.member_list().unwrap();
    assert!(
        list.iter().any(|m| m.name == "m3" && m.is_learner),
        "{list:?}"
    );
    cluster.promote(added);
    wait_for_membership(&cluster, &["m0", "m1", "m2", "m3"], start_timeout());
    let list = cluster.member_list().unwrap();
    assert!(list.iter().all(|m| !m.is_learner), "{list:?}");
    let got = cluster
        .member(added)
        .etcdctl(&["get", "k", "--print-value-only"]);
    assert_eq!(got.expect_success().trim(), "v");

    let (removed, stopped_by_itself) = cluster.remove_member(0);
    assert!(
        stopped_by_itself,
        "{} kept running after its removal; log:\n{}",
        removed.name(),
        removed.log_tail(40)
    );
    wait_for_membership(&cluster, &["m1", "m2", "m3"], start_timeout());
    // The removed member may have been the leader: a write may time out until the others
    // have elected a new one.
    wait_until("a write after the removal", start_timeout(), || {
        let put = cluster.etcdctl(&["--command-timeout=2s", "put", "k", "w"]);
        put.success().then_some(())
    });
}

/// A member of `--initial-cluster` that has not started yet is listed by its name, with no
/// client URLs, as etcd lists it (checked against etcd 3.4.23).
#[test]
fn a_member_not_started_yet_is_listed_by_its_initial_cluster_name() {
    use oxcd_e2e::ports::free_port;
    use oxcd_e2e::Member;

    let _lock = cluster_lock();
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let initial_cluster = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let started: Vec<Member> = ports[..2]
        .iter()
        .enumerate()
        .map(|(i, &(client, peer))| {
            Member::builder()
                .name(&format!("m{i}"))
                .ports(client, peer)
                .initial_cluster(&initial_cluster)
                .spawn()
        })
        .collect();
    let list = wait_until("two members to elect a leader", start_timeout(), || {
        let out = started[0].etcdctl(&["member", "list"]);
        (out.success()
            && out
                .stdout
                .contains(&format!("http://127.0.0.1:{}", ports[1].0)))
        .then_some(out.stdout)
    });
    let third = list
        .lines()
        .find(|line| line.contains(&format!("http://127.0.0.1:{},", ports[2].1)))
        .unwrap_or_else(|| panic!("m2 missing from member list:\n{list}"));
    let fields: Vec<&str> = third.split(", ").collect();
    assert_eq!(
        fields[1..],
        [
            "started",
            "m2",
            &format!("http://127.0.0.1:{}", ports[2].1),
            "",
            "false"
        ],
        "{list}"
    );
}
