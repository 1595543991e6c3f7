//! `lease-keepalive`.

use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest};
use tokio_stream::StreamExt as _;

use crate::conn::{Dialer, Limiter};
use crate::report::Report;
use crate::run::requests;
use crate::Global;

#[derive(clap::Args)]
pub struct KeepaliveArgs {
    /// Total number of lease keepalive requests
    #[arg(long, default_value_t = 10000)]
    total: usize,
}

/// Each client grants a lease with a TTL of 100 s, then renews it once per request on a
/// keepalive stream of its own, as etcd's clients' `KeepAliveOnce` does.
pub async fn keepalive(global: &Global, args: KeepaliveArgs) -> Result<(), String> {
    let clients = Dialer::new(global)
        .await?
        .clients(global.clients, global.conns)
        .await?;
    let mut leased = Vec::with_capacity(clients.len());
    for conn in clients {
        let id = LeaseClient::new(conn.clone())
            .lease_grant(LeaseGrantRequest { ttl: 100, id: 0 })
            .await
            .map_err(|e| format!("lease grant: {}", e.message()))?
            .into_inner()
            .id;
        leased.push((conn, id));
    }
    // The runner hands out connections; the lease of each goes with it by position.
    let ids: Vec<i64> = leased.iter().map(|(_, id)| *id).collect();
    let conns = leased.into_iter().map(|(c, _)| c).collect();
    let n = ids.len();
    let (mut results, total) = requests(conns, args.total, Limiter::new(0), 1, move |conn, i| {
        let id = ids[i % n];
        async move {
            let once = tokio_stream::once(LeaseKeepAliveRequest { id });
            let outcome = match LeaseClient::new(conn).lease_keep_alive(once).await {
                Ok(resp) => match resp.into_inner().next().await {
                    Some(Ok(_)) => Ok(()),
                    Some(Err(e)) => Err(e.message().to_owned()),
                    None => Err("keepalive stream closed".to_owned()),
                },
                Err(e) => Err(e.message().to_owned()),
            };
            (0, outcome)
        }
    })
    .await;
    print!("{}", Report::new(results.remove(0), total, global.precise));
    Ok(())
}
