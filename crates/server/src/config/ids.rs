//! Member and cluster ids, derived exactly as etcd derives them, so that an oxcd
//! cluster bootstrapped with the same flags as an etcd cluster gets the same ids.
//!
//! - A member id is the first 8 bytes (big-endian) of the SHA-1 of: the member's peer
//!   URLs, sorted and concatenated with no separator, then the cluster token, then — only
//!   for a member added at runtime — the decimal Unix time of the addition. Members
//!   founded from `--initial-cluster` carry no time part, so every founding member
//!   computes the same ids for all of them.
//! - A cluster id is the first 8 bytes (big-endian) of the SHA-1 of the founding member
//!   ids, sorted ascending, each written as 8 big-endian bytes.

use sha1::{Digest, Sha1};

fn first_u64(digest: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(b)
}

/// The id of a member with these peer URLs (canonical `scheme://host:port` strings).
/// `added_at_unix` is the Unix time of a runtime `MemberAdd`; `None` at bootstrap.
pub fn member_id<S: AsRef<str>>(
    peer_urls: &[S],
    cluster_token: &str,
    added_at_unix: Option<i64>,
) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(AsRef::as_ref).collect();
    urls.sort_unstable();
    let mut h = Sha1::new();
    for u in urls {
        h.update(u.as_bytes());
    }
    h.update(cluster_token.as_bytes());
    if let Some(t) = added_at_unix {
        h.update(t.to_string().as_bytes());
    }
    first_u64(&h.finalize())
}

/// The id of a cluster founded by these members.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut h = Sha1::new();
    for id in ids {
        h.update(id.to_be_bytes());
    }
    first_u64(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected ids were printed by real etcd 3.4.23, started in a temp dir with
    //   etcd --name a --listen-client-urls http://127.0.0.1:23791 \
    //     --advertise-client-urls http://127.0.0.1:23791 \
    //     --listen-peer-urls http://127.0.0.1:23801 \
    //     --initial-advertise-peer-urls http://127.0.0.1:23801 \
    //     --initial-cluster a=http://127.0.0.1:23801
    // and read with `ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:23791 member list -w json`.
    #[test]
    fn single_member_matches_etcd() {
        let m = member_id(&["http://127.0.0.1:23801"], "etcd-cluster", None);
        assert_eq!(m, 13668033151171901709);
        assert_eq!(cluster_id(&[m]), 15118495548433857066);
    }

    // etcd --name b ... --listen-peer-urls http://127.0.0.1:23812,http://127.0.0.1:23802
    //   --initial-advertise-peer-urls http://127.0.0.1:23812,http://127.0.0.1:23802
    //   --initial-cluster b=http://127.0.0.1:23812,b=http://127.0.0.1:23802
    //   --initial-cluster-token tok-b
    // (URLs given out of order on purpose: the id must sort them.)
    #[test]
    fn two_peer_urls_and_custom_token_match_etcd() {
        let m = member_id(
            &["http://127.0.0.1:23812", "http://127.0.0.1:23802"],
            "tok-b",
            None,
        );
        assert_eq!(m, 7425793718907587632);
        assert_eq!(cluster_id(&[m]), 7562939252046744920);
    }

    // Three members m1..m3 on peer ports 23821..23823, each started with
    //   --initial-cluster m1=http://127.0.0.1:23821,m2=http://127.0.0.1:23822,m3=http://127.0.0.1:23823
    //   --initial-cluster-token tok-c
    #[test]
    fn three_member_cluster_matches_etcd() {
        let ids: Vec<u64> = (1..=3)
            .map(|i| member_id(&[format!("http://127.0.0.1:2382{i}")], "tok-c", None))
            .collect();
        assert_eq!(
            ids,
            vec![
                1564202543148908053,
                16391353622664294746,
                12050914705965835627
            ]
        );
        assert_eq!(cluster_id(&ids), 7811814100520894352);
        let mut reversed = ids.clone();
        reversed.reverse();
        assert_eq!(cluster_id(&reversed), 7811814100520894352);
    }

    #[test]
    fn time_component_changes_the_id() {
        let a = member_id(&["http://127.0.0.1:23801"], "etcd-cluster", None);
        let b = member_id(
            &["http://127.0.0.1:23801"],
            "etcd-cluster",
            Some(1_700_000_000),
        );
        assert_ne!(a, b);
    }
}
