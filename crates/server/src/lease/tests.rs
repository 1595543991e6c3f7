use std::time::{Duration, Instant};

use oxcd_api::mvccpb::event::EventType;
use oxcd_api::EtcdError;
use oxcd_storage::{Backend, BackendConfig, KvStore, RangeOptions};

use super::*;

fn config() -> LessorConfig {
    LessorConfig {
        min_ttl: 2,
        checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
        expired_retry_interval: Duration::from_secs(5),
        promote_extend: Duration::ZERO,
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    kv: KvStore,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let kv = KvStore::open(Backend::open(&path, BackendConfig::default()).unwrap()).unwrap();
        Fixture {
            _dir: dir,
            path,
            kv,
        }
    }

    /// The same data dir, opened again (a restart).
    fn reopen(self) -> Fixture {
        let Fixture { _dir, path, kv } = self;
        kv.force_commit().unwrap();
        drop(kv);
        let kv = KvStore::open(Backend::open(&path, BackendConfig::default()).unwrap()).unwrap();
        Fixture { _dir, path, kv }
    }

    fn grant(&self, lessor: &Lessor, id: i64, ttl: i64) -> Result<i64, ServerError> {
        let batch = self.kv.begin_batch().unwrap();
        let result = lessor.grant(batch.raw(), id, ttl);
        batch.commit().unwrap();
        result
    }

    fn put(&self, lessor: &Lessor, key: &str, lease: i64) {
        let mut batch = self.kv.begin_batch().unwrap();
        let mut txn = batch.txn();
        txn.put(key.as_bytes(), b"v", lease).unwrap();
        lessor.apply_events(&txn.end());
        batch.commit().unwrap();
    }

    fn delete(&self, lessor: &Lessor, key: &str) {
        let mut batch = self.kv.begin_batch().unwrap();
        let mut txn = batch.txn();
        txn.delete_range(key.as_bytes(), &[]).unwrap();
        lessor.apply_events(&txn.end());
        batch.commit().unwrap();
    }

    fn revoke(&self, lessor: &Lessor, id: i64) -> Result<Vec<Event>, ServerError> {
        let mut batch = self.kv.begin_batch().unwrap();
        let result = lessor.revoke(&mut batch, id);
        if let Ok(events) = &result {
            lessor.apply_events(events);
        }
        batch.commit().unwrap();
        result
    }

    fn checkpoint(&self, lessor: &Lessor, id: i64, remaining: i64) {
        let batch = self.kv.begin_batch().unwrap();
        lessor.checkpoint(batch.raw(), id, remaining).unwrap();
        batch.commit().unwrap();
    }

    fn keys(&self) -> Vec<String> {
        self.kv
            .range(b"", b"\0", RangeOptions::default())
            .unwrap()
            .kvs
            .iter()
            .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
            .collect()
    }
}

fn etcd_err(result: Result<impl std::fmt::Debug, ServerError>) -> EtcdError {
    match result {
        Err(ServerError::Etcd(e)) => e,
        other => panic!("expected an etcd error, got {other:?}"),
    }
}

fn keys_of(lessor: &Lessor, id: i64) -> Vec<String> {
    lessor
        .time_to_live(id, true)
        .expect("lease exists")
        .keys
        .into_iter()
        .map(|k| String::from_utf8(k).unwrap())
        .collect()
}

#[test]
fn grant_raises_short_ttls_and_refuses_duplicates_huge_ttls_and_id_zero() {
    let f = Fixture::new();
    let lessor = Lessor::open(&f.kv, config()).unwrap();
    assert_eq!(f.grant(&lessor, 1, 1).unwrap(), 2, "raised to the minimum");
    assert_eq!(f.grant(&lessor, 2, 30).unwrap(), 30);
    assert_eq!(f.grant(&lessor, 3, -5).unwrap(), 2);
    assert_eq!(etcd_err(f.grant(&lessor, 1, 10)), EtcdError::LeaseExist);
    assert_eq!(
        etcd_err(f.grant(&lessor, 4, MAX_LEASE_TTL + 1)),
        EtcdError::LeaseTtlTooLarge
    );
    assert_eq!(f.grant(&lessor, 5, MAX_LEASE_TTL).unwrap(), MAX_LEASE_TTL);
    assert_eq!(etcd_err(f.grant(&lessor, 0, 10)), EtcdError::LeaseNotFound);
    assert_eq!(lessor.len(), 4);
    assert!(lessor.contains(2) && !lessor.contains(4));
}

fn member_config(args: &[&str]) -> crate::config::ServerConfig {
    let argv = std::iter::once("oxcd").chain(args.iter().copied());
    match crate::config::parse_from(argv, std::iter::empty()) {
        Ok(crate::config::Invocation::Serve(cfg)) => *cfg,
        other => panic!("expected a server config, got {other:?}"),
    }
}

#[test]
fn min_ttl_is_one_and_a_half_election_timeouts_rounded_up_to_seconds() {
    let min_ttl = |args: &[&str]| LessorConfig::for_member(&member_config(args)).min_ttl;
    assert_eq!(min_ttl(&[]), 2, "etcd defaults: 1.5 s");
    assert_eq!(min_ttl(&["--election-timeout=5000"]), 8, "7.5 s rounds up");
    assert_eq!(
        min_ttl(&["--heartbeat-interval=200", "--election-timeout=2000"]),
        3
    );
    let defaults = LessorConfig::for_member(&member_config(&[]));
    assert_eq!(defaults.promote_extend, Duration::from_secs(1));
    assert_eq!(defaults.checkpoint_interval, DEFAULT_CHECKPOINT_INTERVAL);
}

#[test]
fn only_the_primary_renews_and_expires() {
    let f = Fixture::new();
    let lessor = Lessor::open(&f.kv, config()).unwrap();
    f.grant(&lessor, 1, 10).unwrap();
    assert_eq!(lessor.renew(1), Err(RenewError::NotPrimary));
    assert!(lessor.expired(10).is_empty());
    let far = lessor.time_to_live(1, false).unwrap().ttl;
    assert!(far > 1_000_000, "kept forever while not primary, got {far}");

    lessor.promote(Duration::ZERO);
    assert!(lessor.is_primary());
    let ttl = lessor.time_to_live(1, false).unwrap().ttl;
    assert!((9..=10).contains(&ttl), "ttl {ttl}");
    assert_eq!(
        lessor.renew(1),
        Ok(Renewal {
            ttl: 10,
            clear_checkpoint: false
        })
    );
    assert_eq!(lessor.renew(99), Err(RenewError::NotFound));

    lessor.demote_unless(|| true);
    assert!(lessor.is_primary(), "still leading: not demoted");
    lessor.demote_unless(|| false);
    assert!(!lessor.is_primary());
    assert_eq!(lessor.renew(1), Err(RenewError::NotPrimary));
}

#[test]
fn an_expired_lease_is_handed_out_once_per_retry_interval_and_cannot_be_renewed() {
    let f = Fixture::new();
    let mut cfg = config();
    cfg.min_ttl = 1;
    let lessor = Lessor::open(&f.kv, cfg).unwrap();
    lessor.promote(Duration::ZERO);
    f.grant(&lessor, 1, 1).unwrap();
    f.grant(&lessor, 2, 60).unwrap();
    assert!(lessor.expired(10).is_empty());
    let next = lessor.next_expiry().expect("lease 1 is queued");
    assert!(next <= Instant::now() + Duration::from_secs(1));

    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(lessor.expired(10), vec![1]);
    assert!(lessor.expired(10).is_empty(), "not again before the retry");
    assert_eq!(lessor.renew(1), Err(RenewError::Expired));
    let ttl = lessor.time_to_live(1, false).unwrap().ttl;
    assert!(ttl <= 0, "expired lease shows {ttl}");

    let changes = lessor.subscribe();
    f.revoke(&lessor, 1).unwrap();
    assert!(
        changes.has_changed().unwrap(),
        "a revoke wakes waiting renewals"
    );
    assert_eq!(lessor.renew(1), Err(RenewError::NotFound));
}

#[test]
fn keys_follow_puts_and_deletes_and_a_revoke_deletes_them_in_one_revision() {
    let f = Fixture::new();
    let lessor = Lessor::open(&f.kv, config()).unwrap();
    f.grant(&lessor, 1, 10).unwrap();
    f.grant(&lessor, 2, 10).unwrap();
    f.put(&lessor, "b", 1);
    f.put(&lessor, "a", 1);
    f.put(&lessor, "c", 1);
    f.put(&lessor, "free", 0);
    f.put(&lessor, "moved", 1);
    f.put(&lessor, "moved", 2);
    f.put(&lessor, "gone", 1);
    f.delete(&lessor, "gone");
    f.put(&lessor, "unleased", 1);
    f.put(&lessor, "unleased", 0);
    assert_eq!(keys_of(&lessor, 1), ["a", "b", "c"]);
    assert_eq!(keys_of(&lessor, 2), ["moved"]);
    assert!(lessor.time_to_live(1, false).unwrap().keys.is_empty());

    let rev = f.kv.current_revision();
    let events = f.revoke(&lessor, 1).unwrap();
    let deleted: Vec<(String, i64)> = events
        .iter()
        .map(|e| {
            assert_eq!(e.r#type, EventType::Delete as i32);
            let kv = e.kv.as_ref().unwrap();
            (String::from_utf8(kv.key.clone()).unwrap(), kv.mod_revision)
        })
        .collect();
    assert_eq!(
        deleted,
        [
            ("a".to_string(), rev + 1),
            ("b".to_string(), rev + 1),
            ("c".to_string(), rev + 1)
        ]
    );
    assert_eq!(f.kv.current_revision(), rev + 1);
    assert_eq!(f.keys(), ["free", "moved", "unleased"]);
    assert!(!lessor.contains(1));
    assert_eq!(etcd_err(f.revoke(&lessor, 1)), EtcdError::LeaseNotFound);

    // A lease without keys revokes without a new revision.
    f.grant(&lessor, 3, 10).unwrap();
    assert!(f.revoke(&lessor, 3).unwrap().is_empty());
    assert_eq!(f.kv.current_revision(), rev + 1);
}

#[test]
fn a_restart_restores_leases_keys_and_checkpointed_ttls() {
    let f = Fixture::new();
    let lessor = Lessor::open(&f.kv, config()).unwrap();
    f.grant(&lessor, 1, 100).unwrap();
    f.grant(&lessor, 2, 50).unwrap();
    f.put(&lessor, "k1", 1);
    f.put(&lessor, "k2", 2);
    f.checkpoint(&lessor, 1, 40);
    f.checkpoint(&lessor, 77, 40); // unknown lease: ignored
    drop(lessor);

    let f = f.reopen();
    let lessor = Lessor::open(&f.kv, config()).unwrap();
    assert_eq!(lessor.len(), 2);
    assert_eq!(keys_of(&lessor, 1), ["k1"]);
    assert_eq!(keys_of(&lessor, 2), ["k2"]);
    lessor.promote(Duration::from_secs(1));
    let one = lessor.time_to_live(1, false).unwrap();
    assert_eq!(one.granted_ttl, 100);
    assert!(
        (40..=41).contains(&one.ttl),
        "checkpointed 40 + 1 s, got {}",
        one.ttl
    );
    let two = lessor.time_to_live(2, false).unwrap().ttl;
    assert!((50..=51).contains(&two), "full 50 + 1 s, got {two}");
    // A renewal restores the full TTL and asks for the checkpoint to be cleared.
    assert_eq!(
        lessor.renew(1),
        Ok(Renewal {
            ttl: 100,
            clear_checkpoint: true
        })
    );
}

#[test]
fn long_leases_are_checkpointed_every_interval_unless_renewed() {
    let f = Fixture::new();
    let mut cfg = config();
    cfg.checkpoint_interval = Duration::from_secs(1);
    cfg.min_ttl = 1;
    let lessor = Lessor::open(&f.kv, cfg).unwrap();
    lessor.promote(Duration::ZERO);
    f.grant(&lessor, 1, 30).unwrap();
    f.grant(&lessor, 2, 30).unwrap();
    f.grant(&lessor, 3, 1).unwrap(); // no longer than the interval: never checkpointed
    assert!(lessor.due_checkpoints(10).is_empty());
    std::thread::sleep(Duration::from_millis(1100));
    lessor.renew(2).unwrap();
    let due = lessor.due_checkpoints(10);
    assert_eq!(
        due,
        vec![LeaseCheckpoint {
            id: 1,
            remaining_ttl: 29
        }]
    );
    assert!(lessor.due_checkpoints(10).is_empty());
    f.checkpoint(&lessor, 1, 29);
    // Applying the checkpoint schedules the next one.
    std::thread::sleep(Duration::from_millis(1100));
    let ids: Vec<i64> = lessor.due_checkpoints(10).iter().map(|c| c.id).collect();
    assert!(ids.contains(&1), "{ids:?}");
}

#[test]
fn a_clean_stop_checkpoints_every_lease_that_ran_down() {
    let f = Fixture::new();
    let lessor = Lessor::open(&f.kv, config()).unwrap();
    f.grant(&lessor, 1, 10).unwrap();
    assert!(lessor.checkpoints_for_stop().is_empty(), "not primary");
    lessor.promote(Duration::ZERO);
    f.grant(&lessor, 2, 10).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    lessor.renew(2).unwrap();
    let cps = lessor.checkpoints_for_stop();
    assert_eq!(
        cps,
        vec![LeaseCheckpoint {
            id: 1,
            remaining_ttl: 9
        }]
    );
}

#[test]
fn leases_are_listed_soonest_expiry_first() {
    let f = Fixture::new();
    let lessor = Lessor::open(&f.kv, config()).unwrap();
    lessor.promote(Duration::ZERO);
    f.grant(&lessor, 1, 30).unwrap();
    f.grant(&lessor, 2, 10).unwrap();
    f.grant(&lessor, 3, 20).unwrap();
    assert_eq!(lessor.leases(), vec![2, 3, 1]);
}

#[test]
fn promotion_spreads_a_pile_of_expiries() {
    let f = Fixture::new();
    let lessor = Lessor::open(&f.kv, config()).unwrap();
    for id in 1..=5 {
        f.grant(&lessor, id, 10).unwrap();
    }
    lessor.promote(Duration::ZERO);
    let mut st = lessor.lock();
    spread_expiries(&mut st, 2);
    let mut expiries: Vec<Instant> = st.leases.values().map(|l| l.expiry.unwrap()).collect();
    expiries.sort();
    for i in 2..expiries.len() {
        assert!(
            expiries[i] >= expiries[i - 2] + Duration::from_secs(1),
            "more than 2 expiries within one second: {expiries:?}"
        );
    }
    assert_eq!(st.expiries.len(), 5);
    assert_eq!(st.expiries.next_due(), Some(expiries[0]));
}

#[test]
fn a_reload_replaces_the_leases_and_a_primary_keeps_expiring_them() {
    let f = Fixture::new();
    let lessor = Lessor::open(&f.kv, config()).unwrap();
    lessor.promote(Duration::ZERO);
    f.grant(&lessor, 1, 30).unwrap();
    f.put(&lessor, "k", 1);
    // What a snapshot from the leader would hold: lease 1 gone, lease 2 with a key.
    let other = Lessor::open(&f.kv, config()).unwrap();
    f.grant(&other, 2, 40).unwrap();
    f.put(&other, "k2", 2);
    f.revoke(&other, 1).unwrap();

    lessor.reload(&f.kv).unwrap();
    assert!(lessor.is_primary());
    assert_eq!(lessor.leases(), vec![2]);
    assert_eq!(keys_of(&lessor, 2), ["k2"]);
    let ttl = lessor.time_to_live(2, false).unwrap().ttl;
    assert!(
        (39..=40).contains(&ttl),
        "a primary's reloaded lease expires: {ttl}"
    );
    assert!(lessor.next_expiry().is_some());
}
