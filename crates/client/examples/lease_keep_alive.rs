//! A key that lives as long as its lease: kept alive in the background, gone once revoked.
//!
//! Run against a member: `cargo run --release -p oxcd-client --example lease_keep_alive -- 127.0.0.1:2379`
//! (tests/tests/client_examples.rs runs it against a fresh oxcd and checks what it prints).

use oxcd_client::api::etcdserverpb::PutRequest;
use oxcd_client::{Client, ConnectOptions};

#[tokio::main]
async fn main() -> oxcd_client::Result<()> {
    let endpoints: Vec<String> = std::env::args().skip(1).collect();
    let client = Client::connect(&endpoints, ConnectOptions::new()).await?;

    let lease = client.lease().grant(5, 0).await?;
    client
        .kv()
        .put(PutRequest {
            key: b"service/instance-1".to_vec(),
            value: b"10.0.0.1:8080".to_vec(),
            lease: lease.id,
            ..Default::default()
        })
        .await?;
    println!(
        "granted a lease of {} s and attached service/instance-1",
        lease.ttl
    );

    // Renewals run in the background while `keep_alive` lives.
    let mut keep_alive = client.lease().keep_alive(lease.id);
    for _ in 0..2 {
        let renewed = keep_alive.next().await.expect("renewals go on")?;
        println!("renewed: ttl back to {} s", renewed.ttl);
    }
    let alive = client.kv().get("service/instance-1").await?.is_some();
    println!("service/instance-1 present: {alive}");

    drop(keep_alive);
    client.lease().revoke(lease.id).await?;
    let alive = client.kv().get("service/instance-1").await?.is_some();
    println!("after revoke, service/instance-1 present: {alive}");
    Ok(())
}
