//! The concurrency recipes: a mutex and a leader election, each held through a session
//! (a lease kept alive for as long as the program runs).
//!
//! Run against a member: `cargo run --release -p oxcd-client --example lock_election -- 127.0.0.1:2379`
//! (tests/tests/client_examples.rs runs it against a fresh oxcd and checks what it prints).

use oxcd_client::recipes::{Election, Mutex, Session};
use oxcd_client::{Client, ConnectOptions};

#[tokio::main]
async fn main() -> oxcd_client::Result<()> {
    let endpoints: Vec<String> = std::env::args().skip(1).collect();
    let client = Client::connect(&endpoints, ConnectOptions::new()).await?;
    let session = Session::new(&client, 10).await?;

    let mut mutex = Mutex::new(&session, "jobs/lock");
    mutex.lock().await?;
    println!("locked jobs/lock");
    // ... only one holder at a time runs here ...
    mutex.unlock().await?;
    println!("unlocked jobs/lock");

    let mut election = Election::new(&session, "service/leader");
    election.campaign("host-a").await?; // returns once elected
    let leader = election.leader().await?.expect("a leader");
    println!("leader: {}", String::from_utf8_lossy(&leader.value));
    election.proclaim("host-a, v2").await?;
    let leader = election.leader().await?.expect("a leader");
    println!(
        "leader proclaims: {}",
        String::from_utf8_lossy(&leader.value)
    );
    election.resign().await?;
    println!(
        "resigned; leader now: {:?}",
        election.leader().await?.map(|kv| kv.value)
    );

    session.close().await?;
    Ok(())
}
