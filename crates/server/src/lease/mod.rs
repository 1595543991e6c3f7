//! Leases: time-limited grants that keys attach to; when a lease ends, its keys go with it.
//!
//! # Replicated facts and the leader's clock
//!
//! Which leases exist, their granted TTL, their last checkpointed remaining TTL and which keys
//! they hold are replicated state: the apply thread changes them ([`Lessor::grant`],
//! [`Lessor::revoke`], [`Lessor::checkpoint`], [`Lessor::apply_events`]) in the same backend
//! transaction as the entry's other effects, and every member holds the same.
//!
//! *When* a lease expires is not replicated: only the leader's lessor (the *primary*) keeps
//! expiry times, and it ends a lease by proposing a `LeaseRevoke` through Raft like any client
//! would ([`primary`]). Renewals (keepalives) only move the primary's clock, so they cost no
//! Raft round and no disk write; a follower forwards them to the leader ([`leader`]). Other
//! members keep every lease "forever" until they lead:
//!
//! - On becoming leader, once the first entry of its term is applied, the new primary gives
//!   every lease its remaining TTL (the checkpointed one, else the full TTL) plus one election
//!   timeout, the time the old leader may have been unreachable ([`Lessor::promote`]); when
//!   that would make more leases expire in one second than can be revoked, later ones are
//!   spread out.
//! - Remaining TTLs of long leases are checkpointed through Raft every
//!   [`LessorConfig::checkpoint_interval`] (and for every lease when a member stops cleanly), so
//!   that a leader change or a restart does not hand a long lease its full TTL again.
//! - After a restart every lease comes back from the backend table and is kept until the
//!   member leads again, as above.
//!
//! # Who calls what
//!
//! | caller | methods |
//! |---|---|
//! | apply thread | `grant`, `revoke`, `checkpoint`, `apply_events`, `contains`, `promote` |
//! | the primary's task ([`primary::run`]) | `expired`, `due_checkpoints`, `demote_unless` |
//! | gRPC handlers | `renew`, `time_to_live`, `leases` (through [`leader`]) |
//!
//! All state sits behind one `std::sync::Mutex`, held for in-memory work only.

pub mod leader;
mod persist;
pub mod primary;
mod queue;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use oxcd_api::etcdserverpb::LeaseCheckpoint;
use oxcd_api::mvccpb::{event::EventType, Event};
use oxcd_api::EtcdError;
use oxcd_storage::{Batch, KvStore};
use redb::WriteTransaction;
use tokio::sync::watch;

use crate::config::ServerConfig;
use crate::error::ServerError;
use queue::TimeQueue;

pub use leader::{LeaseForwarder, NoForwarding};

/// The largest TTL a lease may be granted, in seconds (etcd's `MaxLeaseTTL`).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// The id meaning "no lease".
pub const NO_LEASE: i64 = 0;

/// How often the primary checkpoints the remaining TTL of a long lease (etcd's default).
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// The most leases revoked per second (etcd's `leaseRevokeRate`): expiries are proposed at
/// this pace at most, so a mass expiry does not crowd out client writes.
pub const REVOKE_RATE: usize = 1000;

/// After a leader change, at most this many leases are allowed to expire in any one second;
/// below [`REVOKE_RATE`] so that leases piled up by the change leave room for the others.
const PROMOTE_EXPIRIES_PER_SECOND: usize = REVOKE_RATE * 3 / 4;

/// What a lessor is told at start.
#[derive(Clone, Debug)]
pub struct LessorConfig {
    /// Shorter TTLs are raised to this, in seconds: a lease must outlive a leader election.
    pub min_ttl: i64,
    /// How often a long lease's remaining TTL is checkpointed through Raft.
    pub checkpoint_interval: Duration,
    /// How long after proposing the revoke of an expired lease the primary proposes it again
    /// if the lease is still there (the proposal may have been lost in a leader change).
    pub expired_retry_interval: Duration,
    /// Added to every lease's remaining TTL when this member becomes leader (one election
    /// timeout).
    pub promote_extend: Duration,
}

impl LessorConfig {
    /// etcd's settings for a member: the minimum TTL is 1.5 election timeouts rounded up to
    /// whole seconds (`ceil(3 * election_ticks / 2 * heartbeat)`, integer ticks).
    pub fn for_member(cfg: &ServerConfig) -> LessorConfig {
        let ticks = (3 * cfg.election_ticks / 2) as u32;
        LessorConfig {
            min_ttl: ceil_secs(cfg.heartbeat_interval * ticks),
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            expired_retry_interval: cfg.request_timeout(),
            promote_extend: cfg.election_timeout,
        }
    }
}

/// A lease as TimeToLive shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseStatus {
    pub id: i64,
    /// Whole seconds left (truncated, as etcd); very large while no member leads.
    pub ttl: i64,
    /// The TTL it was granted (after raising to the minimum).
    pub granted_ttl: i64,
    /// Its keys, sorted; empty unless asked for.
    pub keys: Vec<Vec<u8>>,
}

/// A successful renewal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Renewal {
    /// The TTL the lease was renewed to.
    pub ttl: i64,
    /// The lease carried a checkpointed remaining TTL: propose a checkpoint of 0 so that a new
    /// leader does not cut the renewed lease short.
    pub clear_checkpoint: bool,
}

/// Why a renewal was not done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenewError {
    /// No such lease.
    NotFound,
    /// This lessor is not the primary: the leader's lessor must renew.
    NotPrimary,
    /// The lease has expired and its revoke is on its way: wait for it (then it is gone), or
    /// for a change of leader.
    Expired,
}

/// The leases of a member. See the module documentation.
pub struct Lessor {
    state: Mutex<State>,
    config: LessorConfig,
    /// Bumped when a lease is revoked and when this lessor is promoted or demoted: renewals
    /// that must wait for one of those wait for the next bump.
    changes: watch::Sender<u64>,
}

struct State {
    leases: HashMap<i64, Lease>,
    /// Which lease each leased key belongs to.
    key_leases: HashMap<Vec<u8>, i64>,
    /// When the primary next looks at each lease: its expiry, or the retry time of a revoke.
    /// Empty unless primary.
    expiries: TimeQueue,
    /// When the primary next checkpoints each long lease. Empty unless primary.
    checkpoints: TimeQueue,
    /// This lessor expires leases (its member leads).
    primary: bool,
}

struct Lease {
    /// Granted TTL, seconds.
    ttl: i64,
    /// Last checkpointed remaining TTL, seconds; 0 when none.
    remaining_ttl: i64,
    /// When it expires; `None` while this lessor is not the primary (or past any clock).
    expiry: Option<Instant>,
    /// Its keys, sorted, so a revoke deletes them in the same order on every member.
    keys: BTreeSet<Vec<u8>>,
}

impl Lease {
    fn new(ttl: i64, remaining_ttl: i64) -> Lease {
        Lease {
            ttl,
            remaining_ttl,
            expiry: None,
            keys: BTreeSet::new(),
        }
    }

    /// The TTL a refresh starts from: the checkpointed remaining TTL when there is one.
    fn refresh_ttl(&self) -> i64 {
        if self.remaining_ttl > 0 {
            self.remaining_ttl
        } else {
            self.ttl
        }
    }

    fn is_expired(&self, now: Instant) -> bool {
        matches!(self.expiry, Some(at) if at <= now)
    }
}

fn secs(n: i64) -> Duration {
    Duration::from_secs(n.max(0) as u64)
}

fn ceil_secs(d: Duration) -> i64 {
    let whole = d.as_secs() as i64;
    if d.subsec_nanos() > 0 {
        whole + 1
    } else {
        whole
    }
}

impl State {
    /// Sets a lease's expiry to `now + extend + its refresh TTL` and queues it (primary only).
    fn refresh(&mut self, id: i64, now: Instant, extend: Duration, full_ttl: bool) {
        let Some(lease) = self.leases.get_mut(&id) else {
            return;
        };
        let ttl = if full_ttl {
            lease.ttl
        } else {
            lease.refresh_ttl()
        };
        lease.expiry = now.checked_add(extend + secs(ttl));
        match lease.expiry {
            Some(at) => self.expiries.set(id, at),
            None => self.expiries.remove(id),
        }
    }

    /// Queues the next checkpoint of a lease long enough to need one.
    fn schedule_checkpoint(&mut self, id: i64, now: Instant, interval: Duration) {
        let Some(lease) = self.leases.get(&id) else {
            return;
        };
        if lease.refresh_ttl() > interval.as_secs() as i64 {
            if let Some(at) = now.checked_add(interval) {
                self.checkpoints.set(id, at);
            }
        }
    }

    fn attach(&mut self, key: &[u8], lease: i64) {
        if let Some(&old) = self.key_leases.get(key) {
            if old == lease {
                return;
            }
            self.detach(key);
        }
        if lease == NO_LEASE {
            return;
        }
        match self.leases.get_mut(&lease) {
            Some(l) => {
                l.keys.insert(key.to_vec());
                self.key_leases.insert(key.to_vec(), lease);
            }
            None => tracing::error!(
                "lease-id" = format!("{lease:016x}"),
                key = %String::from_utf8_lossy(key),
                "failed to attach a key to a lease that does not exist"
            ),
        }
    }

    fn detach(&mut self, key: &[u8]) {
        if let Some(old) = self.key_leases.remove(key) {
            if let Some(l) = self.leases.get_mut(&old) {
                l.keys.remove(key);
            }
        }
    }
}

impl Lessor {
    /// A lessor holding the leases stored in `kv`'s backend, with the keys that name them
    /// attached; every lease is kept until this member leads ([`promote`](Self::promote)).
    pub fn open(kv: &KvStore, config: LessorConfig) -> Result<Lessor, ServerError> {
        let mut state = State {
            leases: HashMap::new(),
            key_leases: HashMap::new(),
            expiries: TimeQueue::default(),
            checkpoints: TimeQueue::default(),
            primary: false,
        };
        for row in persist::load_all(kv.backend())? {
            let ttl = row.ttl.max(config.min_ttl);
            state
                .leases
                .insert(row.id, Lease::new(ttl, row.remaining_ttl));
        }
        for (key, lease) in kv.leased_keys()? {
            state.attach(&key, lease);
        }
        Ok(Lessor {
            state: Mutex::new(state),
            config,
            changes: watch::channel(0).0,
        })
    }

    /// Replaces every lease with those in `kv`'s backend (after this member installed a
    /// snapshot from the leader). Whether this lessor is primary does not change.
    pub fn reload(&self, kv: &KvStore) -> Result<(), ServerError> {
        let fresh = Lessor::open(kv, self.config.clone())?;
        let mut state = fresh.state.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut current = self.lock();
        state.primary = current.primary;
        if state.primary {
            // Only a follower installs snapshots, but should a primary ever do it, its leases
            // must keep expiring.
            let now = Instant::now();
            let ids: Vec<i64> = state.leases.keys().copied().collect();
            for id in ids {
                state.refresh(id, now, Duration::ZERO, false);
                state.schedule_checkpoint(id, now, self.config.checkpoint_interval);
            }
        }
        *current = state;
        drop(current);
        self.bump();
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn config(&self) -> &LessorConfig {
        &self.config
    }

    // ---- apply thread ----

    /// Grants lease `id` for `ttl` seconds (raised to the minimum); returns the TTL granted.
    pub fn grant(&self, tx: &WriteTransaction, id: i64, ttl: i64) -> Result<i64, ServerError> {
        if id == NO_LEASE {
            return Err(EtcdError::LeaseNotFound.into());
        }
        if ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge.into());
        }
        let ttl = ttl.max(self.config.min_ttl);
        let mut st = self.lock();
        if st.leases.contains_key(&id) {
            return Err(EtcdError::LeaseExist.into());
        }
        persist::store(tx, id, ttl, 0)?;
        st.leases.insert(id, Lease::new(ttl, 0));
        crate::stats::inc(&crate::stats::SERVER.leases_granted);
        metrics::histogram!("etcd_debugging_lease_ttl_total").record(ttl as f64);
        if st.primary {
            let now = Instant::now();
            st.refresh(id, now, Duration::ZERO, false);
            st.schedule_checkpoint(id, now, self.config.checkpoint_interval);
        }
        Ok(ttl)
    }

    /// Revokes lease `id`: deletes its keys in one transaction of `batch` (one revision) and
    /// the lease itself; returns the deletion events.
    pub fn revoke(&self, batch: &mut Batch, id: i64) -> Result<Vec<Event>, ServerError> {
        let keys: Vec<Vec<u8>> = match self.lock().leases.get(&id) {
            Some(lease) => lease.keys.iter().cloned().collect(),
            None => return Err(EtcdError::LeaseNotFound.into()),
        };
        let mut txn = batch.txn();
        for key in &keys {
            txn.delete_range(key, &[])?;
        }
        let events = txn.end();
        persist::remove(batch.raw(), id)?;
        {
            let mut st = self.lock();
            if let Some(lease) = st.leases.remove(&id) {
                for key in &lease.keys {
                    st.key_leases.remove(key);
                }
            }
            st.expiries.remove(id);
            st.checkpoints.remove(id);
        }
        crate::stats::inc(&crate::stats::SERVER.leases_revoked);
        self.bump();
        Ok(events)
    }

    /// Records a checkpointed remaining TTL (0 clears it). Unknown leases are skipped: the
    /// lease may have been revoked after the checkpoint was proposed.
    pub fn checkpoint(
        &self,
        tx: &WriteTransaction,
        id: i64,
        remaining_ttl: i64,
    ) -> Result<(), ServerError> {
        let mut st = self.lock();
        let Some(lease) = st.leases.get_mut(&id) else {
            return Ok(());
        };
        lease.remaining_ttl = remaining_ttl;
        persist::store(tx, id, lease.ttl, remaining_ttl)?;
        if st.primary {
            st.schedule_checkpoint(id, Instant::now(), self.config.checkpoint_interval);
        }
        Ok(())
    }

    /// Follows the keys written by one transaction: a put attaches its key to the put's lease
    /// (detaching it from any other), a delete detaches it.
    pub fn apply_events(&self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let mut st = self.lock();
        for event in events {
            let Some(kv) = &event.kv else { continue };
            if event.r#type == EventType::Delete as i32 {
                st.detach(&kv.key);
            } else {
                st.attach(&kv.key, kv.lease);
            }
        }
    }

    /// Whether lease `id` exists.
    pub fn contains(&self, id: i64) -> bool {
        self.lock().leases.contains_key(&id)
    }

    /// Makes this lessor the primary: every lease expires after its remaining TTL plus
    /// `extend`, spread out so that no second sees more than the revoke rate allows.
    pub fn promote(&self, extend: Duration) {
        let mut st = self.lock();
        st.primary = true;
        let now = Instant::now();
        let ids: Vec<i64> = st.leases.keys().copied().collect();
        for &id in &ids {
            st.refresh(id, now, extend, false);
            st.schedule_checkpoint(id, now, self.config.checkpoint_interval);
        }
        if ids.len() > PROMOTE_EXPIRIES_PER_SECOND {
            spread_expiries(&mut st, PROMOTE_EXPIRIES_PER_SECOND);
        }
        drop(st);
        tracing::info!(leases = ids.len(), "promoted lessor to primary");
        self.bump();
    }

    /// Stops expiring leases when `still_leads` says this member no longer leads: every lease
    /// is kept until the next promotion. `still_leads` is asked under the lessor's lock, so a
    /// promotion that raced with the caller's look at leadership is never undone.
    pub fn demote_unless(&self, still_leads: impl FnOnce() -> bool) {
        let mut st = self.lock();
        if !st.primary || still_leads() {
            return;
        }
        st.primary = false;
        for lease in st.leases.values_mut() {
            lease.expiry = None;
        }
        st.expiries.clear();
        st.checkpoints.clear();
        drop(st);
        tracing::info!("demoted lessor");
        self.bump();
    }

    pub fn is_primary(&self) -> bool {
        self.lock().primary
    }

    // ---- the primary's task ----

    /// Up to `limit` expired leases to revoke. Each is looked at again after
    /// [`LessorConfig::expired_retry_interval`] in case its revoke gets lost.
    pub fn expired(&self, limit: usize) -> Vec<i64> {
        let mut st = self.lock();
        let mut out = Vec::new();
        if !st.primary {
            return out;
        }
        let now = Instant::now();
        while out.len() < limit {
            let Some(id) = st.expiries.pop_due(now) else {
                break;
            };
            let Some(lease) = st.leases.get(&id) else {
                continue;
            };
            match lease.expiry {
                Some(at) if at <= now => {
                    out.push(id);
                    if let Some(retry) = now.checked_add(self.config.expired_retry_interval) {
                        st.expiries.set(id, retry);
                    }
                }
                Some(at) => st.expiries.set(id, at),
                None => {}
            }
        }
        out
    }

    /// When the next lease is due to expire (or to be retried), if any.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.lock().expiries.next_due()
    }

    /// Up to `limit` checkpoints that are due: each long lease's remaining TTL, in whole
    /// seconds rounded up.
    pub fn due_checkpoints(&self, limit: usize) -> Vec<LeaseCheckpoint> {
        let mut st = self.lock();
        let mut out = Vec::new();
        if !st.primary {
            return out;
        }
        let now = Instant::now();
        let interval = self.config.checkpoint_interval;
        while out.len() < limit {
            let Some(id) = st.checkpoints.pop_due(now) else {
                break;
            };
            let Some(lease) = st.leases.get(&id) else {
                continue;
            };
            let Some(expiry) = lease.expiry.filter(|&at| at > now) else {
                continue;
            };
            let remaining = ceil_secs(expiry - now);
            if remaining >= lease.ttl {
                // Renewed since: nothing to record now, look again later.
                st.schedule_checkpoint(id, now, interval);
                continue;
            }
            out.push(LeaseCheckpoint {
                id,
                remaining_ttl: remaining,
            });
        }
        out
    }

    /// A checkpoint of every lease that has run down some of its TTL: what a member that
    /// stops cleanly records, so that a restart resumes from there. Empty unless primary.
    pub fn checkpoints_for_stop(&self) -> Vec<LeaseCheckpoint> {
        let st = self.lock();
        if !st.primary {
            return Vec::new();
        }
        let now = Instant::now();
        let mut out: Vec<LeaseCheckpoint> = st
            .leases
            .iter()
            .filter_map(|(&id, lease)| {
                let expiry = lease.expiry.filter(|&at| at > now)?;
                let remaining = ceil_secs(expiry - now);
                (remaining < lease.ttl).then_some(LeaseCheckpoint {
                    id,
                    remaining_ttl: remaining,
                })
            })
            .collect();
        out.sort_by_key(|c| c.id);
        out
    }

    // ---- request handlers ----

    /// Renews lease `id` to its full TTL. Only the primary renews.
    pub fn renew(&self, id: i64) -> Result<Renewal, RenewError> {
        let mut st = self.lock();
        if !st.primary {
            return Err(RenewError::NotPrimary);
        }
        let now = Instant::now();
        let Some(lease) = st.leases.get(&id) else {
            return Err(RenewError::NotFound);
        };
        if lease.is_expired(now) {
            return Err(RenewError::Expired);
        }
        let renewal = Renewal {
            ttl: lease.ttl,
            clear_checkpoint: lease.remaining_ttl > 0,
        };
        st.refresh(id, now, Duration::ZERO, true);
        crate::stats::inc(&crate::stats::SERVER.leases_renewed);
        Ok(renewal)
    }

    /// A receiver that sees each revoke, promotion and demotion after the call.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Lease `id` as TimeToLive shows it; its keys only when `with_keys`.
    pub fn time_to_live(&self, id: i64, with_keys: bool) -> Option<LeaseStatus> {
        let st = self.lock();
        let lease = st.leases.get(&id)?;
        let ttl = match lease.expiry {
            Some(at) => {
                let now = Instant::now();
                if at >= now {
                    (at - now).as_secs() as i64
                } else {
                    // Past its expiry, revoke pending: etcd shows the negative seconds,
                    // truncated toward zero.
                    -((now - at).as_secs() as i64)
                }
            }
            None => i64::MAX / 1_000_000_000,
        };
        Some(LeaseStatus {
            id,
            ttl,
            granted_ttl: lease.ttl,
            keys: if with_keys {
                lease.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        })
    }

    /// Every lease id, soonest to expire first.
    pub fn leases(&self) -> Vec<i64> {
        let st = self.lock();
        let mut all: Vec<(Option<Instant>, i64)> = st
            .leases
            .iter()
            .map(|(&id, lease)| (lease.expiry, id))
            .collect();
        // `None` (no expiry) sorts last.
        all.sort_by(|a, b| match (a.0, b.0) {
            (Some(x), Some(y)) => x.cmp(&y).then(a.1.cmp(&b.1)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.1.cmp(&b.1),
        });
        all.into_iter().map(|(_, id)| id).collect()
    }

    /// How many leases there are.
    pub fn len(&self) -> usize {
        self.lock().leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Pushes expiries later where more than `per_second` would fall in one second: after sorting,
/// each lease expires no earlier than one second after the lease `per_second` places before
/// it, so no one-second window holds more than `per_second` expiries.
fn spread_expiries(st: &mut State, per_second: usize) {
    let mut by_expiry: Vec<(Instant, i64)> = st
        .leases
        .iter()
        .filter_map(|(&id, lease)| lease.expiry.map(|at| (at, id)))
        .collect();
    by_expiry.sort();
    let mut assigned: Vec<Instant> = Vec::with_capacity(by_expiry.len());
    for (i, &(at, id)) in by_expiry.iter().enumerate() {
        let mut new_at = at;
        if let Some(&prev) = assigned.last() {
            new_at = new_at.max(prev);
        }
        if i >= per_second {
            new_at = new_at.max(assigned[i - per_second] + Duration::from_secs(1));
        }
        assigned.push(new_at);
        if new_at != at {
            if let Some(lease) = st.leases.get_mut(&id) {
                lease.expiry = Some(new_at);
            }
            st.expiries.set(id, new_at);
        }
    }
}

#[cfg(test)]
mod tests;
