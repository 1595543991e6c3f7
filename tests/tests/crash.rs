//! Durability under kill -9 (issue 2, item 5): while clients stream puts, the server is killed
//! at a random moment; after a restart on the same data dir every acknowledged put must be
//! there with its value and revision. Many rounds, bounded by a total deadline.
//!
//! Replay a failure with the printed seed: `OXCD_TEST_SEED=<seed> cargo test --test crash`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions};
use oxcd_e2e::Member;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Total time for all rounds; a round is not started past `ROUNDS_UNTIL`.
const ROUNDS_UNTIL: Duration = Duration::from_secs(45);
const MAX_ROUNDS: usize = 20;
const WRITERS: usize = 4;
/// How long one request may take before the test counts the server as hung.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One acknowledged put.
#[derive(Clone, Debug)]
struct Ack {
    key: String,
    value: String,
    revision: i64,
}

fn seed() -> u64 {
    let seed = match std::env::var("OXCD_TEST_SEED") {
        Ok(s) => s.parse().expect("OXCD_TEST_SEED is a u64"),
        Err(_) => rand::rng().random(),
    };
    eprintln!("crash test seed: {seed} (replay with OXCD_TEST_SEED={seed})");
    seed
}

async fn connect(member: &Member) -> Client {
    let connect = Client::connect([member.endpoint()], None);
    tokio::time::timeout(REQUEST_TIMEOUT, connect)
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Puts fresh keys one after another until a put fails, recording each acknowledged one.
async fn write_until_error(
    mut client: Client,
    round: usize,
    writer: usize,
    acks: Arc<Mutex<Vec<Ack>>>,
) {
    for i in 0.. {
        let key = format!("r{round:03}/w{writer}/{i:06}");
        let value = format!("value-{round}-{writer}-{i}");
        let put = client.put(key.clone(), value.clone(), None);
        match tokio::time::timeout(REQUEST_TIMEOUT, put).await {
            Ok(Ok(response)) => {
                let revision = response.header().expect("put has a header").revision();
                acks.lock().unwrap().push(Ack {
                    key,
                    value,
                    revision,
                });
            }
            // The server was killed (or the connection broke): this put is unknown.
            Ok(Err(_)) | Err(_) => return,
        }
    }
}

/// Every acknowledged put is readable with its value and revision.
async fn verify(member: &Member, acks: &[Ack], round: usize) {
    let mut client = connect(member).await;
    let get = client.get("r", Some(GetOptions::new().with_prefix()));
    let response = tokio::time::timeout(REQUEST_TIMEOUT, get)
        .await
        .expect("read back in time")
        .expect("read back");
    let stored: std::collections::HashMap<&[u8], &etcd_client::KeyValue> =
        response.kvs().iter().map(|kv| (kv.key(), kv)).collect();
    let mut lost = Vec::new();
    for ack in acks {
        match stored.get(ack.key.as_bytes()) {
            Some(kv) if kv.value() == ack.value.as_bytes() && kv.mod_revision() == ack.revision => {
            }
            Some(kv) => lost.push(format!(
                "{} changed: acked {:?} at revision {}, found {:?} at revision {}",
                ack.key,
                ack.value,
                ack.revision,
                kv.value_str().unwrap_or("<non-utf8>"),
                kv.mod_revision()
            )),
            None => lost.push(format!("{} (revision {}) is gone", ack.key, ack.revision)),
        }
    }
    assert!(
        lost.is_empty(),
        "after round {round}: {} of {} acknowledged puts lost, first ones:\n{}",
        lost.len(),
        acks.len(),
        lost[..lost.len().min(20)].join("\n")
    );
    let max_acked = acks.iter().map(|a| a.revision).max().unwrap_or(0);
    let now = response.header().expect("get has a header").revision();
    assert!(
        now >= max_acked,
        "revision went back from {max_acked} to {now}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_puts_survive_kill_9() {
    let mut rng = StdRng::seed_from_u64(seed());
    let mut member = Member::start_single();
    let started = Instant::now();
    let mut all_acks: Vec<Ack> = Vec::new();
    let mut rounds = 0;
    while rounds < MAX_ROUNDS && started.elapsed() < ROUNDS_UNTIL {
        let client = connect(&member).await;
        let acks = Arc::new(Mutex::new(Vec::new()));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(write_until_error(client.clone(), rounds, w, acks.clone())))
            .collect();
        let kill_after = Duration::from_millis(rng.random_range(10..600));
        tokio::time::sleep(kill_after).await;
        tokio::task::block_in_place(|| member.kill());
        for writer in writers {
            tokio::time::timeout(REQUEST_TIMEOUT * 2, writer)
                .await
                .expect("writers stop once the server is gone")
                .expect("writer task");
        }
        drop(client);
        let acked_now = acks.lock().unwrap().len();
        all_acks.extend(acks.lock().unwrap().iter().cloned());
        eprintln!("round {rounds}: killed after {kill_after:?}, {acked_now} puts acknowledged");

        tokio::task::block_in_place(|| member.restart());
        verify(&member, &all_acks, rounds).await;
        rounds += 1;
    }
    assert!(
        rounds >= 3,
        "only {rounds} rounds fitted in {ROUNDS_UNTIL:?}"
    );
    assert!(!all_acks.is_empty(), "no put was ever acknowledged");
    eprintln!(
        "{rounds} rounds, {} acknowledged puts, all found after restarts, in {:?}",
        all_acks.len(),
        started.elapsed()
    );
}
