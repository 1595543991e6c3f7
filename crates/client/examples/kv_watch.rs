//! Puts, reads and watches keys: a watch on a prefix sees every change, in order.
//!
//! Run against a member: `cargo run --release -p oxcd-client --example kv_watch -- 127.0.0.1:2379`
//! (tests/tests/client_examples.rs runs it against a fresh oxcd and checks what it prints).

use oxcd_client::api::etcdserverpb::{DeleteRangeRequest, WatchCreateRequest};
use oxcd_client::api::mvccpb::event::EventType;
use oxcd_client::{prefix_end, Client, ConnectOptions};

#[tokio::main]
async fn main() -> oxcd_client::Result<()> {
    let endpoints: Vec<String> = std::env::args().skip(1).collect();
    let client = Client::connect(&endpoints, ConnectOptions::new()).await?;
    let kv = client.kv();

    // Watch every key under `fruit/`; the first answer confirms the watch exists.
    let mut watch = client
        .watch()
        .watch(WatchCreateRequest {
            key: b"fruit/".to_vec(),
            range_end: prefix_end(b"fruit/"),
            ..Default::default()
        })
        .await?;
    let created = watch.message().await.expect("the created answer")?;
    assert!(created.created);

    kv.put_kv("fruit/apple", "red").await?;
    kv.put_kv("fruit/banana", "yellow").await?;
    kv.put_kv("fruit/apple", "green").await?;
    kv.delete_range(DeleteRangeRequest {
        key: b"fruit/banana".to_vec(),
        ..Default::default()
    })
    .await?;

    let apple = kv.get("fruit/apple").await?.expect("just written");
    println!(
        "get fruit/apple = {} (version {})",
        String::from_utf8_lossy(&apple.value),
        apple.version
    );

    let mut seen = 0;
    while seen < 4 {
        let response = watch.message().await.expect("the watch goes on")?;
        for event in response.events {
            let kind = event.r#type();
            let kv = event.kv.unwrap_or_default();
            match kind {
                EventType::Put => println!(
                    "watch: put {} = {}",
                    String::from_utf8_lossy(&kv.key),
                    String::from_utf8_lossy(&kv.value)
                ),
                EventType::Delete => {
                    println!("watch: delete {}", String::from_utf8_lossy(&kv.key))
                }
            }
            seen += 1;
        }
    }
    Ok(())
}
