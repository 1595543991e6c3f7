//! A lease kept alive for the lifetime of a process's claims.

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::Client;

/// etcd's default session TTL, in seconds.
pub const DEFAULT_TTL: i64 = 60;

/// A lease that is kept alive until the session is closed or dropped.
///
/// ```no_run
/// # async fn example(client: oxcd_client::Client) -> oxcd_client::Result<()> {
/// use oxcd_client::recipes::Session;
///
/// let session = Session::new(&client, 10).await?;
/// client
///     .kv()
///     .put(oxcd_client::api::etcdserverpb::PutRequest {
///         key: b"alive/me".to_vec(),
///         lease: session.lease(),
///         ..Default::default()
///     })
///     .await?;
/// session.close().await?; // revokes the lease: alive/me is gone
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Session {
    client: Client,
    lease: i64,
    /// False once the lease could no longer be renewed.
    alive: watch::Receiver<bool>,
    /// Renews the lease and reads the answers; aborted on close or drop.
    renewer: JoinHandle<()>,
}

impl Session {
    /// Grants a lease of `ttl` seconds ([`DEFAULT_TTL`] if 0 or less) and keeps it alive.
    pub async fn new(client: &Client, ttl: i64) -> Result<Session> {
        let ttl = if ttl <= 0 { DEFAULT_TTL } else { ttl };
        let lease = client.lease().grant(ttl, 0).await?.id;
        Ok(Session::from_lease(client, lease))
    }

    /// Keeps an existing lease alive as a session.
    pub fn from_lease(client: &Client, lease: i64) -> Session {
        let mut keep_alive = client.lease().keep_alive(lease);
        let (alive_tx, alive) = watch::channel(true);
        let renewer = tokio::spawn(async move {
            while let Some(Ok(_)) = keep_alive.next().await {}
            let _ = alive_tx.send(false);
        });
        Session {
            client: client.clone(),
            lease,
            alive,
            renewer,
        }
    }

    /// The session's lease id.
    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// The client the session uses.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// False once the lease could not be renewed (expired or revoked).
    pub fn is_alive(&self) -> bool {
        *self.alive.borrow()
    }

    /// Waits until the lease is gone (expired or revoked by someone else).
    pub async fn done(&self) {
        let mut alive = self.alive.clone();
        let _ = alive.wait_for(|alive| !alive).await;
    }

    /// Stops renewing and revokes the lease, releasing everything attached to it.
    pub async fn close(self) -> Result<()> {
        self.renewer.abort();
        self.client.lease().revoke(self.lease).await?;
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}
