//! Leases: grant, revoke, time-to-live, and keeping one alive in the background.

use std::sync::Arc;
use std::time::Duration;

use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::*;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use crate::connection::{Connection, Retry};
use crate::error::{Error, Result};

/// Keep-alive answers waiting for the caller; when full, older answers are dropped (only
/// the latest TTL matters).
const ANSWER_BUFFER: usize = 16;

/// Pause before re-opening a broken keep-alive stream.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);

/// The Lease service.
#[derive(Clone, Debug)]
pub struct Lease {
    pub(crate) conn: Arc<Connection>,
}

impl Lease {
    /// Grants a lease of `ttl` seconds; `id` 0 lets the server choose the id.
    pub async fn grant(&self, ttl: i64, id: i64) -> Result<LeaseGrantResponse> {
        let request = LeaseGrantRequest { ttl, id };
        self.conn
            .unary(Retry::Unsafe, |service| async move {
                LeaseClient::new(service).lease_grant(request).await
            })
            .await
    }

    /// Revokes a lease, deleting every key attached to it.
    pub async fn revoke(&self, id: i64) -> Result<LeaseRevokeResponse> {
        let request = LeaseRevokeRequest { id };
        self.conn
            .unary(Retry::Unsafe, |service| async move {
                LeaseClient::new(service).lease_revoke(request).await
            })
            .await
    }

    /// A lease's granted and remaining TTL, and with `keys` the keys attached to it.
    pub async fn time_to_live(&self, id: i64, keys: bool) -> Result<LeaseTimeToLiveResponse> {
        let request = LeaseTimeToLiveRequest { id, keys };
        self.conn
            .unary(Retry::Safe, |service| async move {
                LeaseClient::new(service)
                    .max_decoding_message_size(usize::MAX)
                    .lease_time_to_live(request)
                    .await
            })
            .await
    }

    /// Every lease.
    pub async fn leases(&self) -> Result<LeaseLeasesResponse> {
        self.conn
            .unary(Retry::Safe, |service| async move {
                LeaseClient::new(service)
                    .max_decoding_message_size(usize::MAX)
                    .lease_leases(LeaseLeasesRequest {})
                    .await
            })
            .await
    }

    /// Renews a lease once. An answer with `ttl` 0 or less means the lease is gone.
    pub async fn keep_alive_once(&self, id: i64) -> Result<LeaseKeepAliveResponse> {
        let (_, service) = self.conn.service();
        let requests = futures::stream::iter([LeaseKeepAliveRequest { id }]);
        let mut answers = LeaseClient::new(service)
            .lease_keep_alive(requests)
            .await?
            .into_inner();
        match answers.message().await? {
            Some(answer) => Ok(answer),
            None => Err(Error::Status(tonic::Status::unavailable(
                "keep-alive stream closed without an answer",
            ))),
        }
    }

    /// Keeps a lease alive until the returned handle is dropped or the lease is gone,
    /// renewing it every third of its TTL and moving to another endpoint when one fails.
    /// The renewals run as a task: call it inside a tokio runtime.
    ///
    /// ```no_run
    /// # async fn example(client: oxcd_client::Client) -> oxcd_client::Result<()> {
    /// let lease = client.lease().grant(10, 0).await?;
    /// let mut keep_alive = client.lease().keep_alive(lease.id);
    /// // The lease lives while `keep_alive` does; each renewal can be observed:
    /// if let Some(answer) = keep_alive.next().await {
    ///     println!("renewed, ttl {}", answer?.ttl);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn keep_alive(&self, id: i64) -> KeepAlive {
        let (tx, rx) = mpsc::channel(ANSWER_BUFFER);
        let task = tokio::spawn(run_keep_alive(self.conn.clone(), id, tx));
        KeepAlive { id, rx, task }
    }
}

/// A lease kept alive in the background; dropping it stops the renewals (the lease then
/// expires after its TTL unless revoked).
#[derive(Debug)]
pub struct KeepAlive {
    id: i64,
    rx: mpsc::Receiver<Result<LeaseKeepAliveResponse>>,
    task: JoinHandle<()>,
}

impl KeepAlive {
    /// The lease kept alive.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The next renewal's answer; `Some(Err(Error::LeaseExpired))` once the lease is gone,
    /// then `None`.
    pub async fn next(&mut self) -> Option<Result<LeaseKeepAliveResponse>> {
        self.rx.recv().await
    }

    /// True while renewals go on.
    pub fn is_alive(&self) -> bool {
        !self.task.is_finished()
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Renews `id` until the lease is gone or the handle is dropped.
async fn run_keep_alive(
    conn: Arc<Connection>,
    id: i64,
    tx: mpsc::Sender<Result<LeaseKeepAliveResponse>>,
) {
    loop {
        let (index, service) = conn.service();
        let (requests, request_rx) = mpsc::channel(1);
        // The first request goes out with the stream: etcd answers the headers only with
        // the first answer.
        let _ = requests.send(LeaseKeepAliveRequest { id }).await;
        let opened = LeaseClient::new(service)
            .lease_keep_alive(ReceiverStream::new(request_rx))
            .await;
        if let Ok(response) = opened {
            let mut answers = response.into_inner();
            while let Ok(Some(answer)) = answers.message().await {
                if answer.ttl <= 0 {
                    let _ = tx.send(Err(Error::LeaseExpired)).await;
                    return;
                }
                let pause = Duration::from_millis((answer.ttl as u64 * 1000 / 3).max(500));
                if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(Ok(answer)) {
                    return;
                }
                tokio::time::sleep(pause).await;
                if requests.send(LeaseKeepAliveRequest { id }).await.is_err() {
                    break;
                }
            }
        }
        conn.fail_over(index);
        tokio::time::sleep(RECONNECT_BACKOFF).await;
    }
}
