//! A statically bootstrapped cluster of [`Member`]s.

use crate::ctl::CtlOutput;
use crate::member::{Member, MemberBuilder};
use crate::ports::free_port;

/// `size` members named `m0`, `m1`, … on fresh ports, bootstrapped together with
/// `--initial-cluster` and the same `--initial-cluster-token`.
#[derive(Debug)]
pub struct Cluster {
    members: Vec<Member>,
}

impl Cluster {
    /// Starts a cluster of `size` members with the default flags and waits until every member
    /// is ready.
    pub fn start(size: usize) -> Cluster {
        Cluster::start_with(size, |builder| builder)
    }

    /// As [`Cluster::start`], letting `configure` adjust each member's builder (extra flags,
    /// environment) before it is spawned. All members are spawned before any is waited on, as
    /// a new cluster can only elect a leader once a quorum runs.
    pub fn start_with(size: usize, configure: impl Fn(MemberBuilder) -> MemberBuilder) -> Cluster {
        assert!(size > 0, "a cluster has at least one member");
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members: Vec<Member> = ports
            .iter()
            .enumerate()
            .map(|(i, &(client, peer))| {
                let builder = Member::builder()
                    .name(&format!("m{i}"))
                    .ports(client, peer)
                    .initial_cluster(&initial_cluster);
                configure(builder).spawn()
            })
            .collect();
        for member in &mut members {
            member.wait_ready();
        }
        Cluster { members }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn member(&self, index: usize) -> &Member {
        &self.members[index]
    }

    pub fn member_mut(&mut self, index: usize) -> &mut Member {
        &mut self.members[index]
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn members_mut(&mut self) -> &mut [Member] {
        &mut self.members
    }

    /// Every member's `127.0.0.1:PORT`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// The endpoints joined with commas, for etcdctl's `--endpoints`.
    pub fn endpoints_arg(&self) -> String {
        self.endpoints().join(",")
    }

    /// Runs etcdctl against all members' endpoints.
    pub fn etcdctl(&self, args: &[&str]) -> CtlOutput {
        crate::ctl::etcdctl(&self.endpoints_arg(), args)
    }

    /// The index of the member that the reachable members agree is leader, if they agree.
    pub fn leader(&self) -> Option<usize> {
        let mut ids = Vec::new();
        let mut leaders = Vec::new();
        for member in &self.members {
            let out = member.etcdctl(&[
                "--dial-timeout=1s",
                "--command-timeout=2s",
                "endpoint",
                "status",
                "-w",
                "json",
            ]);
            let status = out
                .success()
                .then(|| serde_json::from_str::<serde_json::Value>(&out.stdout).ok())
                .flatten()
                .and_then(|v| v.get(0).and_then(|e| e.get("Status")).cloned());
            match status {
                Some(status) => {
                    ids.push(status["header"]["member_id"].as_u64());
                    leaders.push(status["leader"].as_u64());
                }
                None => ids.push(None),
            }
        }
        let leader = *leaders.first()?;
        if leader.is_none() || leader == Some(0) || leaders.iter().any(|l| *l != leader) {
            return None;
        }
        ids.iter().position(|id| *id == leader)
    }
}
