//! The Rust client library (`crates/client`) against real server processes (issue 13):
//! failover when the member in use dies, a watch that resumes without gap or duplicate,
//! a lease kept alive across a leader change, mutual exclusion under contention, election
//! order, and STM transfers that keep a sum. Runs against oxcd, or real etcd with
//! `OXCD_BIN=/usr/bin/etcd`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use oxcd_client::api::etcdserverpb::{PutRequest, WatchCreateRequest};
use oxcd_client::recipes::{Election, Isolation, Mutex, Session, Stm};
use oxcd_client::{prefix_end, Client, ConnectOptions};
use oxcd_e2e::fault_run::cluster_lock;
use oxcd_e2e::{start_timeout, wait_until, Cluster, Member};

/// Every wait on the cluster in these tests.
const DEADLINE: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn connect(endpoints: &[String]) -> Client {
    Client::connect(
        endpoints,
        ConnectOptions::new().with_retry_timeout(Duration::from_secs(15)),
    )
    .await
    .expect("connect")
}

fn index_of(cluster: &Cluster, endpoint: &str) -> usize {
    (0..cluster.len())
        .find(|&i| cluster.member(i).endpoint() == endpoint)
        .expect("the client's endpoint is a member's")
}

#[test]
fn reads_fail_over_when_the_member_in_use_dies() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(3);
    let rt = runtime();
    let client = rt.block_on(connect(&cluster.endpoints()));
    rt.block_on(client.kv().put_kv("k", "v1"))
        .expect("first put");
    let victim = index_of(&cluster, &client.current_endpoint());
    cluster.member_mut(victim).kill();
    // A read is safe to repeat: the client moves to another member by itself.
    let kv = rt
        .block_on(client.kv().get("k"))
        .expect("read after the kill")
        .expect("k exists");
    assert_eq!(kv.value, b"v1");
    assert_ne!(index_of(&cluster, &client.current_endpoint()), victim);
    // Writes go on through the survivors (a new leader may take an election to appear).
    let start = Instant::now();
    loop {
        match rt.block_on(client.kv().put_kv("k", "v2")) {
            Ok(_) => break,
            Err(e) if start.elapsed() < DEADLINE => eprintln!("put while electing: {e}"),
            Err(e) => panic!("no write within {DEADLINE:?} after the kill: {e}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let kv = rt.block_on(client.kv().get("k")).unwrap().unwrap();
    assert_eq!(kv.value, b"v2");
}

#[test]
fn watch_resumes_after_its_member_dies_without_gap_or_duplicate() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(3);
    let rt = runtime();
    let endpoints = cluster.endpoints();
    let watcher = rt.block_on(connect(&endpoints));
    let watched = index_of(&cluster, &watcher.current_endpoint());
    let others: Vec<String> = (0..3)
        .filter(|&i| i != watched)
        .map(|i| endpoints[i].clone())
        .collect();
    let writer = rt.block_on(connect(&others));
    const WRITES: usize = 60;
    let events = rt.block_on(async {
        let mut stream = watcher
            .watch()
            .watch(WatchCreateRequest {
                key: b"w/".to_vec(),
                range_end: prefix_end(b"w/"),
                ..Default::default()
            })
            .await
            .expect("watch");
        let created = stream.message().await.expect("created").expect("created");
        assert!(created.created);
        let writes = tokio::spawn(async move {
            for i in 0..WRITES {
                let request = PutRequest {
                    key: format!("w/{}", i % 3).into_bytes(),
                    value: i.to_string().into_bytes(),
                    ..Default::default()
                };
                // Each write is retried until acknowledged; a retried write that did land
                // twice would show as a duplicate value below.
                loop {
                    match writer.kv().put(request.clone()).await {
                        Ok(_) => break,
                        Err(e) => eprintln!("write {i}: {e}"),
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let mut events = Vec::new();
        let mut killed = false;
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while events.len() < WRITES {
            let response = tokio::time::timeout_at(deadline, stream.message())
                .await
                .expect("all events within the deadline")
                .expect("the watch stays open")
                .expect("no watch error");
            for event in response.events {
                let kv = event.kv.expect("a put event carries its kv");
                events.push((kv.mod_revision, String::from_utf8(kv.value).unwrap()));
            }
            if !killed && events.len() >= WRITES / 3 {
                cluster.member_mut(watched).kill();
                killed = true;
            }
        }
        writes.await.expect("writer");
        events
    });
    let values: Vec<String> = events.iter().map(|(_, v)| v.clone()).collect();
    let expected: Vec<String> = (0..WRITES).map(|i| i.to_string()).collect();
    assert_eq!(values, expected, "every write once, in order");
    assert!(
        events.windows(2).all(|w| w[0].0 < w[1].0),
        "revisions increase: {events:?}"
    );
}

#[test]
fn lease_kept_alive_across_a_leader_change() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(3);
    let rt = runtime();
    let leader = wait_until("a leader", start_timeout(), || cluster.leader());
    let client = rt.block_on(connect(&cluster.endpoints()));
    let lease = rt.block_on(client.lease().grant(3, 0)).expect("grant").id;
    let keep_alive = {
        let _runtime = rt.enter();
        client.lease().keep_alive(lease)
    };
    cluster.member_mut(leader).kill();
    // Three TTLs later the lease must still be there, renewed through the new leader.
    std::thread::sleep(Duration::from_secs(9));
    assert!(keep_alive.is_alive(), "keep-alive gave up");
    let survivor: Vec<String> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| cluster.member(i).endpoint())
        .collect();
    let reader = rt.block_on(connect(&survivor));
    let ttl = rt
        .block_on(reader.lease().time_to_live(lease, false))
        .expect("ttl");
    assert!(ttl.ttl > 0, "lease expired despite keep-alive: {ttl:?}");
    drop(keep_alive);
}

#[test]
fn mutex_excludes_under_contention() {
    let mut member = Member::start_single();
    let rt = runtime();
    let endpoint = vec![member.endpoint()];
    const WORKERS: usize = 4;
    const ROUNDS: usize = 5;
    let inside = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..WORKERS {
            let client = connect(&endpoint).await;
            let (inside, overlaps) = (inside.clone(), overlaps.clone());
            tasks.push(tokio::spawn(async move {
                let session = Session::new(&client, 10).await.expect("session");
                for _ in 0..ROUNDS {
                    let mut mutex = Mutex::new(&session, "counter-lock");
                    mutex.lock().await.expect("lock");
                    if inside.swap(true, Ordering::SeqCst) {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    // A read-modify-write that only the lock makes safe.
                    let current = client.kv().get("counter").await.unwrap().map_or(0, |kv| {
                        String::from_utf8(kv.value)
                            .unwrap()
                            .parse::<usize>()
                            .unwrap()
                    });
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    client
                        .kv()
                        .put_kv("counter", (current + 1).to_string())
                        .await
                        .unwrap();
                    inside.store(false, Ordering::SeqCst);
                    mutex.unlock().await.expect("unlock");
                }
                session.close().await.expect("close");
            }));
        }
        for task in tasks {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("workers finish")
                .expect("worker");
        }
    });
    assert_eq!(overlaps.load(Ordering::SeqCst), 0, "two holders at once");
    let client = rt.block_on(connect(&endpoint));
    let counter = rt.block_on(client.kv().get("counter")).unwrap().unwrap();
    assert_eq!(counter.value, (WORKERS * ROUNDS).to_string().into_bytes());
    member.stop();
}

/// The value of the next leader an observer reports.
async fn next_leader(
    leaders: &mut (impl futures::Stream<
        Item = oxcd_client::Result<oxcd_client::api::etcdserverpb::RangeResponse>,
    > + Unpin),
) -> String {
    let response = tokio::time::timeout(DEADLINE, leaders.next())
        .await
        .expect("an observation")
        .expect("the stream stays open")
        .expect("no observe error");
    String::from_utf8(response.kvs[0].value.clone()).unwrap()
}

#[test]
fn election_follows_campaign_order_and_observers_see_each_leader() {
    let mut member = Member::start_single();
    let rt = runtime();
    let endpoint = vec![member.endpoint()];
    rt.block_on(async {
        let client = connect(&endpoint).await;
        let sessions = [
            Session::new(&client, 10).await.unwrap(),
            Session::new(&client, 10).await.unwrap(),
            Session::new(&client, 10).await.unwrap(),
        ];
        let observer_session = Session::new(&client, 10).await.unwrap();
        let observer = Election::new(&observer_session, "leader");
        let mut leaders = Box::pin(observer.observe());

        let mut first = Election::new(&sessions[0], "leader");
        first.campaign("a").await.expect("first wins at once");
        // The others queue behind it, in the order they campaigned.
        let (mut second, mut third) = (
            Election::new(&sessions[1], "leader"),
            Election::new(&sessions[2], "leader"),
        );
        assert_eq!(next_leader(&mut leaders).await, "a");
        first.proclaim("a2").await.expect("proclaim");
        assert_eq!(next_leader(&mut leaders).await, "a2");
        let second_won = {
            let campaign = second.campaign("b");
            tokio::pin!(campaign);
            let third_campaign = async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                third.campaign("c").await
            };
            tokio::pin!(third_campaign);
            // Neither wins while the first leads.
            assert!(
                tokio::time::timeout(Duration::from_millis(800), &mut campaign)
                    .await
                    .is_err()
            );
            first.resign().await.expect("resign");
            tokio::select! {
                won = &mut campaign => { won.expect("second campaign"); "b" }
                won = &mut third_campaign => { won.expect("third campaign"); "c" }
            }
        };
        assert_eq!(second_won, "b", "the earlier candidate leads next");
        assert_eq!(next_leader(&mut leaders).await, "b");
        assert_eq!(
            first.proclaim("late").await.unwrap_err().to_string(),
            "election: not leader"
        );
    });
    member.stop();
}

#[test]
fn stm_transfers_keep_the_sum() {
    let mut member = Member::start_single();
    let rt = runtime();
    let endpoint = vec![member.endpoint()];
    const ACCOUNTS: usize = 4;
    rt.block_on(async {
        let client = connect(&endpoint).await;
        for i in 0..ACCOUNTS {
            client
                .kv()
                .put_kv(format!("acct/{i}"), "100")
                .await
                .unwrap();
        }
        let mut tasks = Vec::new();
        for worker in 0..4usize {
            let client = connect(&endpoint).await;
            tasks.push(tokio::spawn(async move {
                for round in 0..10usize {
                    let (from, to) = ((worker + round) % ACCOUNTS, (worker + round + 1) % ACCOUNTS);
                    Stm::run(
                        &client,
                        Isolation::SerializableSnapshot,
                        |mut stm| async move {
                            let read = |v: Option<Vec<u8>>| -> i64 {
                                String::from_utf8(v.unwrap()).unwrap().parse().unwrap()
                            };
                            let a = read(stm.get(format!("acct/{from}")).await?);
                            let b = read(stm.get(format!("acct/{to}")).await?);
                            stm.put(format!("acct/{from}"), (a - 7).to_string());
                            stm.put(format!("acct/{to}"), (b + 7).to_string());
                            Ok(stm)
                        },
                    )
                    .await
                    .expect("transfer");
                }
            }));
        }
        for task in tasks {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("transfers finish")
                .unwrap();
        }
        let all = client.kv().get_prefix("acct/").await.unwrap();
        let sum: i64 = all
            .kvs
            .iter()
            .map(|kv| {
                String::from_utf8(kv.value.clone())
                    .unwrap()
                    .parse::<i64>()
                    .unwrap()
            })
            .sum();
        assert_eq!(
            sum,
            100 * ACCOUNTS as i64,
            "transfers created or lost money"
        );
    });
    member.stop();
}
