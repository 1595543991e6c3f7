//! The faults a fault run injects into a [`Cluster`], one at a time: each is injected, held
//! for a while, then repaired, and every step goes into a timeline for the report.

use std::fmt;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;

use crate::cluster::Cluster;
use crate::proxy::CutMode;

/// One kind of fault. "Leader" is the member the cluster agrees is leader when the fault
/// starts (a random member when there is none); "follower" is a random other member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// `SIGKILL` the leader; start it again on the same data dir when the fault ends.
    KillLeader,
    /// `SIGKILL` a follower; start it again when the fault ends.
    KillFollower,
    /// `SIGTERM` the leader (a clean stop); start it again when the fault ends.
    StopLeader,
    /// `SIGSTOP` the leader; `SIGCONT` when the fault ends.
    PauseLeader,
    /// `SIGSTOP` a follower; `SIGCONT` when the fault ends.
    PauseFollower,
    /// Cut the leader's peer links both ways.
    IsolateLeader(CutMode),
    /// Cut a follower's peer links both ways.
    IsolateFollower(CutMode),
    /// The leader's messages reach nobody; it still hears everyone.
    LeaderCannotSend,
    /// Nobody's messages reach the leader; it still reaches everyone.
    LeaderCannotHear,
    /// The leader's messages to one follower are lost; everything else flows.
    CutLeaderToFollower,
    /// A follower's messages to the leader are lost; everything else flows.
    CutFollowerToLeader,
    /// Remove a follower from the cluster (`member remove`) and add a new, empty member in its
    /// place (`member add`, started with `--initial-cluster-state existing`).
    ReplaceFollower,
    /// Add a new member as a learner, promote it once it has caught up, then remove a
    /// follower, so that the size is back where it was.
    AddLearnerThenRemove,
}

impl Fault {
    /// Every fault kind, each link-cut kind in both modes.
    pub const ALL: [Fault; 15] = [
        Fault::KillLeader,
        Fault::KillFollower,
        Fault::StopLeader,
        Fault::PauseLeader,
        Fault::PauseFollower,
        Fault::IsolateLeader(CutMode::Blackhole),
        Fault::IsolateLeader(CutMode::Refuse),
        Fault::IsolateFollower(CutMode::Blackhole),
        Fault::IsolateFollower(CutMode::Refuse),
        Fault::LeaderCannotSend,
        Fault::LeaderCannotHear,
        Fault::CutLeaderToFollower,
        Fault::CutFollowerToLeader,
        Fault::ReplaceFollower,
        Fault::AddLearnerThenRemove,
    ];

    /// True for faults that need the cluster's peer proxies.
    pub fn needs_network(self) -> bool {
        matches!(
            self,
            Fault::IsolateLeader(_)
                | Fault::IsolateFollower(_)
                | Fault::LeaderCannotSend
                | Fault::LeaderCannotHear
                | Fault::CutLeaderToFollower
                | Fault::CutFollowerToLeader
        )
    }

    /// True for faults that change membership.
    pub fn changes_membership(self) -> bool {
        matches!(self, Fault::ReplaceFollower | Fault::AddLearnerThenRemove)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What has to be undone when a fault ends.
#[derive(Debug)]
enum Repair {
    Restart(String),
    Resume(String),
    Heal,
    Nothing,
}

/// Injects faults and keeps the timeline.
pub struct Nemesis {
    started: Instant,
    timeline: Vec<(Duration, String)>,
    injected: usize,
}

impl Nemesis {
    /// Times in the timeline count from `started` (the history's start).
    pub fn new(started: Instant) -> Nemesis {
        Nemesis {
            started,
            timeline: Vec::new(),
            injected: 0,
        }
    }

    /// Notes an event in the timeline (and on stderr, so that a running test shows progress).
    pub fn note(&mut self, what: impl Into<String>) {
        let at = self.started.elapsed();
        let what = what.into();
        eprintln!("[{:>8.3}s] {what}", at.as_secs_f64());
        self.timeline.push((at, what));
    }

    pub fn timeline(&self) -> &[(Duration, String)] {
        &self.timeline
    }

    /// How many faults were injected.
    pub fn injected(&self) -> usize {
        self.injected
    }

    /// Formats the timeline one event a line.
    pub fn format_timeline(&self) -> String {
        self.timeline
            .iter()
            .map(|(at, what)| format!("  [{:>8.3}s] {what}\n", at.as_secs_f64()))
            .collect()
    }

    /// Injects `fault`, holds it for `hold`, repairs it. `membership_changed` is called with
    /// the cluster whenever members came or went, so clients can follow.
    pub fn run_fault(
        &mut self,
        cluster: &mut Cluster,
        fault: Fault,
        hold: Duration,
        rng: &mut StdRng,
        membership_changed: &mut dyn FnMut(&Cluster),
    ) {
        self.injected += 1;
        if fault.changes_membership() {
            self.change_membership(cluster, fault, rng, membership_changed);
            return;
        }
        let repair = self.inject(cluster, fault, rng);
        std::thread::sleep(hold);
        self.repair(cluster, repair);
    }

    fn inject(&mut self, cluster: &mut Cluster, fault: Fault, rng: &mut StdRng) -> Repair {
        let names = cluster.names();
        let leader = match cluster.leader() {
            Some(index) => names[index].clone(),
            None => {
                let pick = names.choose(rng).expect("a cluster has members").clone();
                self.note(format!("no agreed leader; {pick} stands in for it"));
                pick
            }
        };
        let followers: Vec<String> = names.iter().filter(|n| **n != leader).cloned().collect();
        let follower = followers
            .choose(rng)
            .cloned()
            .unwrap_or_else(|| leader.clone());
        let others = |who: &str| -> Vec<String> {
            names
                .iter()
                .filter(|n| n.as_str() != who)
                .cloned()
                .collect()
        };
        let index = |name: &str| cluster.index_of(name).expect("a member of the cluster");
        match fault {
            Fault::KillLeader | Fault::KillFollower => {
                let target = if fault == Fault::KillLeader {
                    &leader
                } else {
                    &follower
                };
                self.note(format!("{fault}: kill -9 {target}"));
                let i = index(target);
                cluster.member_mut(i).kill();
                Repair::Restart(target.clone())
            }
            Fault::StopLeader => {
                self.note(format!("{fault}: SIGTERM {leader}"));
                let i = index(&leader);
                let status = cluster.member_mut(i).stop();
                self.note(format!("{leader} stopped: {status:?}"));
                Repair::Restart(leader)
            }
            Fault::PauseLeader | Fault::PauseFollower => {
                let target = if fault == Fault::PauseLeader {
                    leader
                } else {
                    follower
                };
                self.note(format!("{fault}: SIGSTOP {target}"));
                let i = index(&target);
                cluster.member_mut(i).pause();
                Repair::Resume(target)
            }
            Fault::IsolateLeader(mode) | Fault::IsolateFollower(mode) => {
                let target = if matches!(fault, Fault::IsolateLeader(_)) {
                    leader
                } else {
                    follower
                };
                self.note(format!("{fault}: cut {target} off from all peers"));
                let others = others(&target);
                let others: Vec<&str> = others.iter().map(String::as_str).collect();
                network(cluster).isolate(&target, &others, mode);
                Repair::Heal
            }
            Fault::LeaderCannotSend | Fault::LeaderCannotHear => {
                for other in others(&leader) {
                    if fault == Fault::LeaderCannotSend {
                        network(cluster).cut_one_way(&leader, &other);
                    } else {
                        network(cluster).cut_one_way(&other, &leader);
                    }
                }
                self.note(format!("{fault}: {leader} one way"));
                Repair::Heal
            }
            Fault::CutLeaderToFollower => {
                self.note(format!("{fault}: {leader} -> {follower} cut"));
                network(cluster).cut_one_way(&leader, &follower);
                Repair::Heal
            }
            Fault::CutFollowerToLeader => {
                self.note(format!("{fault}: {follower} -> {leader} cut"));
                network(cluster).cut_one_way(&follower, &leader);
                Repair::Heal
            }
            Fault::ReplaceFollower | Fault::AddLearnerThenRemove => Repair::Nothing,
        }
    }

    fn repair(&mut self, cluster: &mut Cluster, repair: Repair) {
        match repair {
            Repair::Restart(name) => {
                self.note(format!("restart {name}"));
                let i = cluster.index_of(&name).expect("a member of the cluster");
                cluster.member_mut(i).restart();
                self.note(format!("{name} is ready again"));
            }
            Repair::Resume(name) => {
                self.note(format!("SIGCONT {name}"));
                let i = cluster.index_of(&name).expect("a member of the cluster");
                cluster.member_mut(i).resume();
            }
            Repair::Heal => {
                self.note("heal all peer links");
                network(cluster).heal();
            }
            Repair::Nothing => {}
        }
    }

    fn change_membership(
        &mut self,
        cluster: &mut Cluster,
        fault: Fault,
        rng: &mut StdRng,
        membership_changed: &mut dyn FnMut(&Cluster),
    ) {
        let leader = cluster.leader();
        let pick_follower = |cluster: &Cluster, rng: &mut StdRng| -> usize {
            let followers: Vec<usize> = (0..cluster.len()).filter(|i| Some(*i) != leader).collect();
            *followers.choose(rng).expect("a cluster of two or more")
        };
        match fault {
            Fault::ReplaceFollower => {
                let victim = pick_follower(cluster, rng);
                let name = cluster.member(victim).name().to_owned();
                self.note(format!("{fault}: member remove {name}"));
                let (_, stopped) = cluster.remove_member(victim);
                membership_changed(cluster);
                self.note(format!("{name} removed ({})", exit_note(stopped)));
                let added = cluster.add_member(false);
                let added_name = cluster.member(added).name().to_owned();
                membership_changed(cluster);
                self.note(format!("member add {added_name}: ready"));
            }
            Fault::AddLearnerThenRemove => {
                self.note(format!("{fault}: member add --learner"));
                let added = cluster.add_member(true);
                let added_name = cluster.member(added).name().to_owned();
                self.note(format!("learner {added_name} ready; promote it"));
                cluster.promote(added);
                membership_changed(cluster);
                self.note(format!("{added_name} promoted"));
                let victim = loop {
                    let i = pick_follower(cluster, rng);
                    if i != added || rng.random_bool(0.2) {
                        break i;
                    }
                };
                let name = cluster.member(victim).name().to_owned();
                self.note(format!("member remove {name}"));
                let (_, stopped) = cluster.remove_member(victim);
                membership_changed(cluster);
                self.note(format!("{name} removed ({})", exit_note(stopped)));
            }
            other => unreachable!("{other} does not change membership"),
        }
    }
}

fn exit_note(stopped_by_itself: bool) -> &'static str {
    if stopped_by_itself {
        "it stopped by itself"
    } else {
        "still running 10 s later: killed"
    }
}

fn network(cluster: &Cluster) -> &crate::proxy::PeerNetwork {
    cluster
        .network()
        .expect("link faults need a cluster built with .proxied()")
}
