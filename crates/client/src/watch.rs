//! Watches that survive a lost connection.
//!
//! [`Watch::watch`] opens a watch stream and hands the responses to a [`WatchStream`]
//! from a background task. When the stream breaks (the member died, the connection
//! dropped, the member lost its leader) the task moves to the next endpoint and creates the
//! watch again from the revision after the last event it passed on, so the caller sees every
//! event once, in order, across the break; the `created` answer of a re-created watch is not
//! passed on. A watch the server cancels (for example, its start revision was compacted)
//! is passed on with its reason and ends the stream.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use oxcd_api::etcdserverpb::watch_client::WatchClient;
use oxcd_api::etcdserverpb::watch_request::RequestUnion;
use oxcd_api::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::connection::Connection;
use crate::error::{Error, Result};

/// Responses waiting for the caller; when full, the watch waits (the server then holds
/// events back for this watcher, as for any slow etcd watcher).
const RESPONSE_BUFFER: usize = 64;

/// Pause before re-creating a broken watch, so that a restarting cluster is not hammered.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);

/// The Watch service.
#[derive(Clone, Debug)]
pub struct Watch {
    pub(crate) conn: Arc<Connection>,
}

impl Watch {
    /// Starts watching as `request` says (key, range end, start revision, filters,
    /// `prev_kv`, progress notifications) and returns the stream of responses, the first of
    /// which is the `created` answer.
    ///
    /// ```no_run
    /// # async fn example(client: oxcd_client::Client) -> oxcd_client::Result<()> {
    /// use oxcd_client::api::etcdserverpb::WatchCreateRequest;
    ///
    /// let mut watch = client
    ///     .watch()
    ///     .watch(WatchCreateRequest { key: b"config".to_vec(), ..Default::default() })
    ///     .await?;
    /// while let Some(response) = watch.message().await {
    ///     for event in response?.events {
    ///         println!("{:?}", event.kv);
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn watch(&self, request: WatchCreateRequest) -> Result<WatchStream> {
        let (tx, rx) = mpsc::channel(RESPONSE_BUFFER);
        let conn = self.conn.clone();
        let task = tokio::spawn(run_watch(conn, request, tx));
        Ok(WatchStream { rx, task })
    }
}

/// The responses of one watch. Dropping it cancels the watch.
#[derive(Debug)]
pub struct WatchStream {
    rx: mpsc::Receiver<Result<WatchResponse>>,
    task: JoinHandle<()>,
}

impl WatchStream {
    /// The next response; `None` once the watch has ended (cancelled, or an error was
    /// returned just before).
    pub async fn message(&mut self) -> Option<Result<WatchResponse>> {
        self.rx.recv().await
    }
}

impl Stream for WatchStream {
    type Item = Result<WatchResponse>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Errors after which the watch cannot go on by itself.
fn is_final(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument | Code::PermissionDenied | Code::Unauthenticated | Code::OutOfRange
    )
}

/// Keeps one watch alive until the caller drops it or the server ends it.
async fn run_watch(
    conn: Arc<Connection>,
    request: WatchCreateRequest,
    tx: mpsc::Sender<Result<WatchResponse>>,
) {
    // The revision the next (re-)created watch starts from; 0 until the first `created`
    // answer says what "now" was.
    let mut next_revision = request.start_revision;
    let mut created_sent = false;
    loop {
        let (index, service) = conn.service();
        let mut create = request.clone();
        create.start_revision = next_revision;
        // The request side stays open (its sender lives in this scope) as long as we read.
        let (requests, request_rx) = mpsc::channel(1);
        let _ = requests
            .send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(create)),
            })
            .await;
        let opened = WatchClient::new(service)
            .max_decoding_message_size(usize::MAX)
            .watch(ReceiverStream::new(request_rx))
            .await;
        let mut stream = match opened {
            Ok(response) => response.into_inner(),
            Err(status) if is_final(status.code()) => {
                let _ = tx.send(Err(status.into())).await;
                return;
            }
            Err(_) => {
                conn.fail_over(index);
                tokio::time::sleep(RECONNECT_BACKOFF).await;
                continue;
            }
        };
        loop {
            let response = match stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => break,
                Err(status) if is_final(status.code()) => {
                    let _ = tx.send(Err(status.into())).await;
                    return;
                }
                Err(_) => break,
            };
            if response.created && !response.canceled {
                if next_revision == 0 {
                    let now = response.header.as_ref().map_or(0, |h| h.revision);
                    next_revision = now + 1;
                }
                if created_sent {
                    continue;
                }
                created_sent = true;
            }
            let ended = response.canceled || response.compact_revision != 0;
            if let Some(last) = response.events.last().and_then(|e| e.kv.as_ref()) {
                next_revision = last.mod_revision + 1;
            } else if let Some(header) = &response.header {
                // A progress notification: nothing before header.revision is pending.
                if !response.created && !ended && header.revision >= next_revision {
                    next_revision = header.revision + 1;
                }
            }
            let reason = response.cancel_reason.clone();
            if tx.send(Ok(response)).await.is_err() {
                return;
            }
            if ended {
                if !reason.is_empty() {
                    let _ = tx.send(Err(Error::WatchCanceled(reason))).await;
                }
                return;
            }
        }
        drop(requests);
        conn.fail_over(index);
        tokio::time::sleep(RECONNECT_BACKOFF).await;
    }
}
