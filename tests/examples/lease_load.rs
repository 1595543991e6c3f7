//! Many live leases, then their expiry: how fast leases are granted, and how late each one's
//! key disappears after its TTL. For comparing oxcd with etcd on the same machine.
//!
//! ```text
//! cargo run --release -p oxcd-e2e --example lease_load -- [ENDPOINT] [LEASES] [TTL_SECONDS]
//! ```
//! Grants LEASES leases (default 100000) of TTL_SECONDS (default 120) from 64 concurrent
//! clients, puts one key under each, waits (print the server's memory then), and watches every
//! key's deletion. Lateness is measured from the moment the client saw the grant answered plus
//! the TTL, so it includes the server's revoke pacing (etcd revokes at most 1000 leases per
//! second) but not the grant's own latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, EventType, PutOptions, WatchOptions};
use tokio::sync::Mutex;

const CLIENTS: usize = 64;
const PREFIX: &str = "lease-load/";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let endpoint = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:2379".into());
    let leases: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let ttl: i64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(120);

    // Every deletion, as (key index, when it was seen).
    let mut watcher = Client::connect([endpoint.clone()], None).await?;
    let mut watch = watcher
        .watch(PREFIX, Some(WatchOptions::new().with_prefix()))
        .await?;
    let deletions = Arc::new(Mutex::new(Vec::with_capacity(leases)));
    let seen = deletions.clone();
    let watching = tokio::spawn(async move {
        while let Ok(Some(resp)) = watch.message().await {
            let now = Instant::now();
            let mut seen = seen.lock().await;
            for event in resp.events() {
                if event.event_type() == EventType::Delete {
                    if let Some(kv) = event.kv() {
                        let index: usize = kv.key_str().unwrap_or("")[PREFIX.len()..]
                            .parse()
                            .unwrap_or(usize::MAX);
                        seen.push((index, now));
                    }
                }
            }
            if seen.len() >= leases {
                return;
            }
        }
    });

    let start = Instant::now();
    let granted_at = Arc::new(Mutex::new(vec![start; leases]));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let endpoint = endpoint.clone();
        let granted_at = granted_at.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect([endpoint], None).await?;
            let mut i = c;
            while i < leases {
                let id = client.lease_grant(ttl, None).await?.id();
                let at = Instant::now();
                client
                    .put(
                        format!("{PREFIX}{i}"),
                        "v",
                        Some(PutOptions::new().with_lease(id)),
                    )
                    .await?;
                granted_at.lock().await[i] = at;
                i += CLIENTS;
            }
            Ok::<_, etcd_client::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let setup = start.elapsed();
    println!(
        "granted {leases} leases (+1 key each) in {:.1} s: {:.0} grant+put pairs/s",
        setup.as_secs_f64(),
        leases as f64 / setup.as_secs_f64()
    );
    println!("all leases live now: read the server's memory (VmRSS) now");

    let deadline = Duration::from_secs(ttl as u64) + setup + Duration::from_secs(600);
    tokio::time::timeout(deadline, watching).await??;
    let granted_at = granted_at.lock().await;
    let mut late: Vec<f64> = deletions
        .lock()
        .await
        .iter()
        .filter(|(i, _)| *i < leases)
        .map(|&(i, seen)| {
            let due = granted_at[i] + Duration::from_secs(ttl as u64);
            if seen >= due {
                (seen - due).as_secs_f64()
            } else {
                -(due - seen).as_secs_f64()
            }
        })
        .collect();
    late.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| late[((late.len() - 1) as f64 * p) as usize];
    println!(
        "expired {}: lateness after TTL min {:.3} s, p50 {:.3} s, p90 {:.3} s, p99 {:.3} s, max {:.3} s",
        late.len(),
        late[0],
        pct(0.5),
        pct(0.9),
        pct(0.99),
        late[late.len() - 1]
    );
    Ok(())
}
