//! A statically bootstrapped cluster of [`Member`]s, optionally behind fault-injecting peer
//! proxies ([`PeerNetwork`]) and with peer TLS, that can grow and shrink while it runs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::ctl::CtlOutput;
use crate::member::{Member, MemberBuilder};
use crate::ports::free_port;
use crate::proxy::PeerNetwork;

/// How long a membership change (add, remove, promote) may keep failing before the test does.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a removed member may take to stop by itself before it is killed.
const REMOVED_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Peer TLS, as etcd's e2e clusters configure it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PeerTls {
    /// Plain `http` peer URLs.
    #[default]
    None,
    /// `https` peer URLs with `--peer-auto-tls` (self-signed certificates).
    Auto,
    /// `https` peer URLs with the fixture certificates: `--peer-cert-file`,
    /// `--peer-key-file`, `--peer-trusted-ca-file`, and `--peer-client-cert-auth` if set.
    Certs { client_cert_auth: bool },
}

impl PeerTls {
    /// The scheme of the peer URLs.
    pub fn scheme(self) -> &'static str {
        match self {
            PeerTls::None => "http",
            PeerTls::Auto | PeerTls::Certs { .. } => "https",
        }
    }

    /// The server flags that set it up.
    pub fn args(self) -> Vec<String> {
        let file = |name: &str| fixture(name).display().to_string();
        match self {
            PeerTls::None => Vec::new(),
            PeerTls::Auto => vec!["--peer-auto-tls".to_owned()],
            PeerTls::Certs { client_cert_auth } => {
                let mut args = vec![
                    format!("--peer-cert-file={}", file("server.crt")),
                    format!("--peer-key-file={}", file("server.key.insecure")),
                    format!("--peer-trusted-ca-file={}", file("ca.crt")),
                ];
                if client_cert_auth {
                    args.push("--peer-client-cert-auth".to_owned());
                }
                args
            }
        }
    }
}

/// A test data file in `tests/fixtures/` (TLS certificates and keys from etcd's own
/// fixtures: `ca.crt`; `server.crt`, `server2.crt`, `server3.crt` for 127.0.0.1 and
/// localhost, each with its `.key.insecure`).
pub fn fixture(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    assert!(path.is_file(), "missing fixture {}", path.display());
    path
}

type Configure = Box<dyn Fn(MemberBuilder) -> MemberBuilder + Send + Sync>;

/// How to start a [`Cluster`]; obtain one with [`Cluster::builder`].
pub struct ClusterBuilder {
    size: usize,
    split_brain: bool,
    proxied: bool,
    peer_tls: PeerTls,
    configure: Configure,
}

impl ClusterBuilder {
    /// Puts a [`PeerNetwork`] proxy in front of every member's peer port, so that tests can
    /// cut links ([`Cluster::network`]).
    pub fn proxied(mut self) -> Self {
        self.proxied = true;
        self
    }

    pub fn peer_tls(mut self, tls: PeerTls) -> Self {
        self.peer_tls = tls;
        self
    }

    /// Bootstraps every member alone (`--initial-cluster` naming only itself): servers that
    /// look like a cluster to clients but share nothing. Only for testing that the fault-run
    /// checks catch an inconsistent "cluster".
    pub fn split_brain(mut self) -> Self {
        self.split_brain = true;
        self
    }

    /// Adjusts each member's builder (extra flags, environment) before it is spawned; also
    /// applies to members added later.
    pub fn configure(
        mut self,
        configure: impl Fn(MemberBuilder) -> MemberBuilder + Send + Sync + 'static,
    ) -> Self {
        self.configure = Box::new(configure);
        self
    }

    /// Spawns every member, then waits until each is ready (a new cluster can only elect a
    /// leader once a quorum runs, so none is waited on before all are spawned).
    pub fn start(self) -> Cluster {
        assert!(self.size > 0, "a cluster has at least one member");
        let mut cluster = Cluster {
            members: Vec::new(),
            network: self.proxied.then(PeerNetwork::new),
            peer_tls: self.peer_tls,
            configure: self.configure,
            next_index: 0,
        };
        let planned: Vec<Planned> = (0..self.size).map(|_| cluster.plan_member()).collect();
        let initial_cluster = planned
            .iter()
            .map(Planned::initial_cluster_entry)
            .collect::<Vec<_>>()
            .join(",");
        for plan in planned {
            let alone = plan.initial_cluster_entry();
            let initial_cluster = if self.split_brain {
                &alone
            } else {
                &initial_cluster
            };
            let member = cluster.spawn_planned(plan, initial_cluster, "new", false);
            cluster.members.push(member);
        }
        for member in &mut cluster.members {
            member.wait_ready();
        }
        cluster
    }
}

/// Name and ports of a member about to be spawned.
struct Planned {
    name: String,
    client: u16,
    peer: u16,
    /// The port other members dial: a proxy's, or `peer`.
    advertised: u16,
    scheme: &'static str,
}

impl Planned {
    fn advertised_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.advertised)
    }

    fn initial_cluster_entry(&self) -> String {
        format!("{}={}", self.name, self.advertised_url())
    }
}

/// Members named `m0`, `m1`, … on fresh ports, bootstrapped together with `--initial-cluster`
/// and the same `--initial-cluster-token`; later members are added with
/// [`Cluster::add_member`] as `mN` for the next unused N.
pub struct Cluster {
    members: Vec<Member>,
    network: Option<PeerNetwork>,
    peer_tls: PeerTls,
    configure: Configure,
    next_index: usize,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("members", &self.members)
            .field("network", &self.network)
            .field("peer_tls", &self.peer_tls)
            .finish()
    }
}

/// One entry of `member list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: u64,
    /// Empty for a member that was added but has not started yet.
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl Cluster {
    /// Starts a cluster of `size` members with the default flags and waits until every member
    /// is ready.
    pub fn start(size: usize) -> Cluster {
        Cluster::builder(size).start()
    }

    /// As [`Cluster::start`], letting `configure` adjust each member's builder.
    pub fn start_with(
        size: usize,
        configure: impl Fn(MemberBuilder) -> MemberBuilder + Send + Sync + 'static,
    ) -> Cluster {
        Cluster::builder(size).configure(configure).start()
    }

    /// A builder for a cluster of `size` members: plain peers, no proxies, default flags.
    pub fn builder(size: usize) -> ClusterBuilder {
        ClusterBuilder {
            size,
            split_brain: false,
            proxied: false,
            peer_tls: PeerTls::None,
            configure: Box::new(|builder| builder),
        }
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

    /// The index of the member called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.members.iter().position(|m| m.name() == name)
    }

    /// Every member's name, in index order.
    pub fn names(&self) -> Vec<String> {
        self.members.iter().map(|m| m.name().to_owned()).collect()
    }

    /// The peer proxies, when the cluster was built [`ClusterBuilder::proxied`].
    pub fn network(&self) -> Option<&PeerNetwork> {
        self.network.as_ref()
    }

    pub fn peer_tls(&self) -> PeerTls {
        self.peer_tls
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

    /// `member list`, asked of the members in turn until one answers.
    pub fn member_list(&self) -> Option<Vec<MemberInfo>> {
        self.members.iter().find_map(|member| {
            let out = member.etcdctl(&[
                "--dial-timeout=1s",
                "--command-timeout=3s",
                "member",
                "list",
                "-w",
                "json",
            ]);
            if !out.success() {
                return None;
            }
            parse_member_list(&out.stdout)
        })
    }

    /// The member id of the member called `name`, from `member list`. It is looked up by the
    /// member's peer URL, which the list carries from `member add` on, while the name appears
    /// only once the member has published itself and the member answering has applied that.
    pub fn member_id(&self, name: &str) -> Option<u64> {
        let url = self.members[self.index_of(name)?].advertised_peer_url();
        crate::deadline::wait_until_or_none(MEMBERSHIP_TIMEOUT, || {
            self.member_list()?
                .into_iter()
                .find(|m| m.peer_urls.contains(&url))
                .map(|m| m.id)
        })
    }

    /// Adds a member (`member add`, as a learner if asked), starts it with
    /// `--initial-cluster-state existing`, waits until it is ready and returns its index.
    pub fn add_member(&mut self, learner: bool) -> usize {
        let plan = self.plan_member();
        let url = plan.advertised_url();
        let mut args = vec![
            "--command-timeout=5s".to_owned(),
            "member".to_owned(),
            "add".to_owned(),
            plan.name.clone(),
            format!("--peer-urls={url}"),
        ];
        if learner {
            args.push("--learner".to_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.retry_membership(&format!("add {}", plan.name), |cluster| {
            cluster.etcdctl(&args)
        });
        let initial_cluster = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name(), m.advertised_peer_url()))
            .chain([plan.initial_cluster_entry()])
            .collect::<Vec<_>>()
            .join(",");
        let mut member = self.spawn_planned(plan, &initial_cluster, "existing", learner);
        member.wait_ready();
        self.members.push(member);
        self.members.len() - 1
    }

    /// Promotes the learner at `index` (`member promote`), retrying while the cluster says
    /// it has not caught up yet.
    pub fn promote(&mut self, index: usize) {
        let name = self.members[index].name().to_owned();
        let id = self
            .member_id(&name)
            .unwrap_or_else(|| panic!("{name} is not in the member list"));
        let id = format!("{id:x}");
        self.retry_membership(&format!("promote {name}"), |cluster| {
            cluster.etcdctl(&["--command-timeout=5s", "member", "promote", &id])
        });
        self.members[index].set_learner(false);
    }

    /// Removes the member at `index` from the cluster (`member remove`, asked of the other
    /// members), waits for it to stop by itself (killing it after 10 s), takes its proxy
    /// down and returns it, stopped, with whether it stopped by itself.
    pub fn remove_member(&mut self, index: usize) -> (Member, bool) {
        let name = self.members[index].name().to_owned();
        let id = self
            .member_id(&name)
            .unwrap_or_else(|| panic!("{name} is not in the member list"));
        let id = format!("{id:x}");
        let others: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.name() != name)
            .map(Member::endpoint)
            .collect();
        self.retry_membership(&format!("remove {name}"), |_| {
            crate::ctl::etcdctl(
                &others.join(","),
                &["--command-timeout=5s", "member", "remove", &id],
            )
        });
        let mut member = self.members.remove(index);
        let deadline = Instant::now() + REMOVED_EXIT_TIMEOUT;
        while member.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let stopped_by_itself = !member.is_running();
        member.kill();
        if let Some(network) = &self.network {
            network.remove_proxy(&name);
        }
        (member, stopped_by_itself)
    }

    /// Retries `change` until it succeeds; a "member not found" or "already exists" answer
    /// after an earlier attempt timed out counts as success (the attempt went through).
    fn retry_membership(&self, what: &str, change: impl Fn(&Cluster) -> CtlOutput) {
        let deadline = Instant::now() + MEMBERSHIP_TIMEOUT;
        let mut attempts = 0;
        loop {
            let out = change(self);
            attempts += 1;
            if out.success() {
                return;
            }
            let went_through = attempts > 1
                && (out.stderr.contains("member not found")
                    || out.stderr.contains("ID exists")
                    || out.stderr.contains("Peer URLs already exists")
                    || out.stderr.contains("not a learner"));
            if went_through {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "member {what} kept failing for {MEMBERSHIP_TIMEOUT:?}; last try: {out}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Picks the next member's name and ports and starts its proxy.
    fn plan_member(&mut self) -> Planned {
        let name = format!("m{}", self.next_index);
        self.next_index += 1;
        let (client, peer) = (free_port(), free_port());
        let advertised = match &self.network {
            Some(network) => {
                let proxy = free_port();
                network.add_proxy(&name, proxy, peer);
                proxy
            }
            None => peer,
        };
        Planned {
            name,
            client,
            peer,
            advertised,
            scheme: self.peer_tls.scheme(),
        }
    }

    fn spawn_planned(
        &self,
        plan: Planned,
        initial_cluster: &str,
        state: &str,
        learner: bool,
    ) -> Member {
        let builder = Member::builder()
            .name(&plan.name)
            .ports(plan.client, plan.peer)
            .advertise_peer_port(plan.advertised)
            .peer_scheme(plan.scheme)
            .initial_cluster(initial_cluster)
            .initial_cluster_state(state)
            .learner(learner)
            .args(self.peer_tls.args());
        (self.configure)(builder).spawn()
    }
}

/// Parses `etcdctl member list -w json`.
fn parse_member_list(json: &str) -> Option<Vec<MemberInfo>> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    value["members"]
        .as_array()?
        .iter()
        .map(|m| {
            Some(MemberInfo {
                id: m["ID"].as_u64()?,
                name: m["name"].as_str().unwrap_or_default().to_owned(),
                peer_urls: strings(&m["peerURLs"]),
                client_urls: strings(&m["clientURLs"]),
                is_learner: m["isLearner"].as_bool().unwrap_or(false),
            })
        })
        .collect()
}

/// Waits until `cluster` reports exactly `names` as its members. For tests that change
/// membership.
pub fn wait_for_membership(cluster: &Cluster, names: &[&str], timeout: Duration) {
    crate::deadline::wait_until("the expected member list", timeout, || {
        let list = cluster.member_list()?;
        let mut got: Vec<&str> = list.iter().map(|m| m.name.as_str()).collect();
        got.sort_unstable();
        let mut want = names.to_vec();
        want.sort_unstable();
        (got == want).then_some(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_etcdctl_member_list_json() {
        let json = r#"{"header":{"cluster_id":1,"member_id":2,"raft_term":3},"members":[
            {"ID":12345678901234567890,"name":"m0","peerURLs":["https://127.0.0.1:1"],"clientURLs":["http://127.0.0.1:2"]},
            {"ID":7,"peerURLs":["http://127.0.0.1:3"],"isLearner":true}]}"#;
        let members = parse_member_list(json).unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(members[0].id, 12345678901234567890);
        assert_eq!(members[0].name, "m0");
        assert_eq!(members[0].peer_urls, vec!["https://127.0.0.1:1"]);
        assert!(!members[0].is_learner);
        assert_eq!(members[1].name, "");
        assert!(members[1].is_learner);
        assert!(members[1].client_urls.is_empty());
        assert_eq!(parse_member_list("not json"), None);
    }

    #[test]
    fn tls_flags() {
        assert_eq!(PeerTls::None.scheme(), "http");
        assert!(PeerTls::None.args().is_empty());
        assert_eq!(PeerTls::Auto.args(), vec!["--peer-auto-tls"]);
        let args = PeerTls::Certs {
            client_cert_auth: true,
        }
        .args();
        assert_eq!(args.len(), 4);
        assert!(args[0].starts_with("--peer-cert-file=") && args[0].ends_with("server.crt"));
        assert_eq!(args[3], "--peer-client-cert-auth");
    }
}
