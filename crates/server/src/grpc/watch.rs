//! The Watch service: etcd's bidirectional watch stream over the [`WatchableStore`].
//!
//! Each client stream gets a [`WatchStream`] of the store and two halves:
//!
//! - a *request task* reads the client's requests and turns them into `watch`, `cancel` and
//!   `request_progress` on the stream; it also ticks periodic progress notifications
//!   (`--watch-progress-notify-interval`) and, for streams opened `WithRequireLeader`, checks
//!   every election timeout that the member has a leader. It reads the next request only when
//!   the stream's response queue has room: a client that sends without reading is slowed,
//!   not buffered.
//! - the *response stream* tonic sends from: it takes the stream's responses in order, adds
//!   the header, and splits large responses into fragments for watchers that asked.
//!
//! Dropping the response stream (the client went away) aborts the request task and drops the
//! watch stream, which removes its watchers.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use oxcd_api::etcdserverpb::watch_request::RequestUnion;
use oxcd_api::etcdserverpb::watch_server::Watch;
use oxcd_api::etcdserverpb::{self as pb, ResponseHeader, WatchRequest};
use oxcd_api::mvccpb::Event;
use oxcd_api::EtcdError;
use oxcd_storage::{WatchResponse, WatchStream, WatchableStore};
use prost::Message;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status, Streaming};

use super::auth::Credentials;
use super::status::status;
use crate::auth::{Access, AuthStore};

/// etcd's default `--watch-progress-notify-interval`.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(600);

/// etcd refuses shorter progress intervals (and raises them to this).
const MIN_PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// What gRPC framing adds to a request at most; etcd fragments at `--max-request-bytes` plus
/// this.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Consecutive leaderless election timeouts before a `WithRequireLeader` stream is closed
/// (etcd's `maxNoLeaderCnt`): reconnecting streams costs more than refusing new ones.
const MAX_NO_LEADER_CHECKS: u32 = 3;

/// The metadata key and value of etcd's `WithRequireLeader`.
const REQUIRE_LEADER_KEY: &str = "hasleader";
const REQUIRE_LEADER_VALUE: &str = "true";

/// The member's response header (cluster id, member id, raft term); its revision is replaced.
pub type HeaderFn = Arc<dyn Fn() -> ResponseHeader + Send + Sync>;

/// Whether the member knows a leader now.
pub type HasLeaderFn = Arc<dyn Fn() -> bool + Send + Sync>;

/// The etcd Watch service.
pub struct WatchService {
    /// Where watchers live.
    store: Arc<WatchableStore>,
    /// The member's header fields.
    header: HeaderFn,
    /// Asked at stream start and every election timeout for `WithRequireLeader` streams.
    has_leader: HasLeaderFn,
    /// Period of progress notifications for watchers that asked for them.
    progress_interval: Duration,
    /// Period of the leader check.
    election_timeout: Duration,
    /// Responses of watchers that asked for fragments are split above this size.
    fragment_bytes: usize,
    /// Who may watch what; `None` in tests of the stream machinery alone.
    auth: Option<Arc<AuthStore>>,
}

impl WatchService {
    /// A service over `store`, with etcd's defaults: progress every 10 minutes, leader checked
    /// every second, fragments above 1.5 MiB + 512 KiB.
    pub fn new(
        store: Arc<WatchableStore>,
        header: HeaderFn,
        has_leader: HasLeaderFn,
    ) -> WatchService {
        WatchService {
            store,
            header,
            has_leader,
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
            election_timeout: Duration::from_secs(1),
            fragment_bytes: 3 * 512 * 1024 + GRPC_OVERHEAD_BYTES,
            auth: None,
        }
    }

    /// Checks each watch against its sender's permissions, at creation and after every
    /// change of the auth store.
    pub fn auth(mut self, auth: Arc<AuthStore>) -> WatchService {
        self.auth = Some(auth);
        self
    }

    /// `--watch-progress-notify-interval` (raised to 100 ms if shorter, as etcd).
    pub fn progress_interval(mut self, interval: Duration) -> WatchService {
        if interval < MIN_PROGRESS_INTERVAL {
            tracing::warn!(
                "min-watch-progress-notify-interval" = ?MIN_PROGRESS_INTERVAL,
                "adjusting watch progress notify interval to minimum period"
            );
        }
        self.progress_interval = interval.max(MIN_PROGRESS_INTERVAL);
        self
    }

    /// The election timeout (`--election-timeout`): how often a `WithRequireLeader` stream
    /// checks for a leader.
    pub fn election_timeout(mut self, timeout: Duration) -> WatchService {
        self.election_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// `--max-request-bytes`: fragments are cut at this plus gRPC's overhead, as etcd.
    pub fn max_request_bytes(mut self, bytes: usize) -> WatchService {
        self.fragment_bytes = bytes + GRPC_OVERHEAD_BYTES;
        self
    }
}

/// Lets the apply thread hand committed events straight to the store.
impl crate::apply::EventSink for WatchableStore {
    fn notify(&self, events: Vec<Event>) {
        WatchableStore::notify(self, events)
    }

    fn restored(&self) {
        WatchableStore::restored(self)
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ResponseStream;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let require_leader = request
            .metadata()
            .get(REQUIRE_LEADER_KEY)
            .is_some_and(|v| v.as_bytes() == REQUIRE_LEADER_VALUE.as_bytes());
        if require_leader && !(self.has_leader)() {
            return Err(status(EtcdError::NoLeader));
        }
        let auth = self.auth.as_ref().map(|store| WatchAuth {
            store: store.clone(),
            credentials: Credentials::of(&request),
            changes: store.subscribe(),
            watched: HashMap::new(),
        });
        let stream = Arc::new(self.store.new_stream());
        let (closing_tx, closing) = oneshot::channel();
        let requests = RequestLoop {
            auth,
            stream: stream.clone(),
            inbound: request.into_inner(),
            closing: Some(closing_tx),
            progress_interval: jittered(self.progress_interval),
            leader_check: require_leader.then(|| (self.has_leader.clone(), self.election_timeout)),
        };
        let task = tokio::spawn(requests.run());
        Ok(Response::new(ResponseStream {
            stream,
            header: self.header.clone(),
            fragment_bytes: self.fragment_bytes,
            fragments: VecDeque::new(),
            closing: Some(closing),
            task,
            done: false,
        }))
    }
}

/// etcd adds up to a tenth of the interval at random, so watchers created together (a client
/// restarting) do not all get their progress at the same instant.
fn jittered(interval: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u128);
    let tenth = interval.as_nanos() / 10;
    let jitter = if tenth == 0 { 0 } else { nanos * 7919 % tenth };
    interval + Duration::from_nanos(jitter as u64)
}

/// Permission checks of one client stream's watchers.
struct WatchAuth {
    store: Arc<AuthStore>,
    /// What the stream was opened with: judged again at each check, so a token that dies
    /// (user deleted, password changed) stops the stream's watches.
    credentials: Credentials,
    changes: tokio::sync::watch::Receiver<u64>,
    /// The ranges of the watchers created on this stream, by watch id.
    watched: HashMap<i64, (Vec<u8>, Vec<u8>)>,
}

impl WatchAuth {
    /// May the stream's sender watch `key`..`range_end` now? `Err` holds the cancel reason,
    /// as etcd words it (a gRPC status in Go's text form).
    fn check(&self, key: &[u8], range_end: &[u8]) -> Result<(), String> {
        let allowed = self.credentials.resolve(&self.store).and_then(|sender| {
            self.store
                .check(&sender.unwrap_or_default(), Access::Read, key, range_end)
        });
        allowed.map_err(|e| {
            let e = match e {
                EtcdError::InvalidAuthToken | EtcdError::AuthOldRevision | EtcdError::UserEmpty => {
                    e
                }
                _ => EtcdError::PermissionDenied,
            };
            format!("rpc error: code = {:?} desc = {}", e.code(), e.message())
        })
    }
}

/// The request half of one client stream.
struct RequestLoop {
    /// `None` when the service checks no permissions.
    auth: Option<WatchAuth>,
    stream: Arc<WatchStream>,
    inbound: Streaming<WatchRequest>,
    /// Ends the response stream with a status (no leader, receive error).
    closing: Option<oneshot::Sender<Status>>,
    progress_interval: Duration,
    /// For `WithRequireLeader` streams: the check and its period.
    leader_check: Option<(HasLeaderFn, Duration)>,
}

impl RequestLoop {
    async fn run(mut self) {
        let start = tokio::time::Instant::now();
        let mut progress =
            tokio::time::interval_at(start + self.progress_interval, self.progress_interval);
        let leader_period = self
            .leader_check
            .as_ref()
            .map_or(Duration::from_secs(3600), |(_, d)| *d);
        let mut leader_tick = tokio::time::interval_at(start + leader_period, leader_period);
        let mut no_leader = 0;
        let mut reading = true;
        loop {
            let stream = &self.stream;
            let inbound = &mut self.inbound;
            let next_request = async {
                stream.ready().await;
                inbound.message().await
            };
            tokio::select! {
                req = next_request, if reading => match req {
                    Ok(Some(req)) => self.handle(req),
                    // The client closed its side; it may still read (as etcd, keep sending).
                    Ok(None) => reading = false,
                    Err(e) => {
                        tracing::debug!(error = %e, "failed to receive watch request from gRPC stream");
                        self.close(status(EtcdError::WatchCanceled));
                        return;
                    }
                },
                _ = progress.tick() => self.stream.progress_tick(),
                changed = auth_changed(&mut self.auth) => {
                    if changed {
                        self.recheck();
                    } else {
                        // The store is gone (the member is stopping): no more changes.
                        self.auth = None;
                    }
                }
                _ = leader_tick.tick(), if self.leader_check.is_some() => {
                    let (has_leader, _) = self.leader_check.as_ref().expect("checked by the guard");
                    no_leader = if has_leader() { 0 } else { no_leader + 1 };
                    if no_leader >= MAX_NO_LEADER_CHECKS {
                        self.close(status(EtcdError::NoLeader));
                        return;
                    }
                }
            }
        }
    }

    fn handle(&mut self, req: WatchRequest) {
        match req.request_union {
            // The store queues the answer (created, or created + canceled with the reason).
            Some(RequestUnion::CreateRequest(create)) => {
                let Some(auth) = &mut self.auth else {
                    let _ = self.stream.watch(&create);
                    return;
                };
                if let Err(reason) = auth.check(&create.key, &create.range_end) {
                    self.stream.refuse(reason);
                    return;
                }
                if let Ok(id) = self.stream.watch(&create) {
                    auth.watched.insert(id, (create.key, create.range_end));
                }
            }
            Some(RequestUnion::CancelRequest(cancel)) => {
                if let Some(auth) = &mut self.auth {
                    auth.watched.remove(&cancel.watch_id);
                }
                self.stream.cancel(cancel.watch_id);
            }
            Some(RequestUnion::ProgressRequest(_)) => self.stream.request_progress(),
            // An empty or unknown request does not end the stream (as etcd).
            None => {}
        }
    }

    /// The auth store changed: cancels the watchers their sender may no longer run.
    fn recheck(&mut self) {
        let Some(auth) = &mut self.auth else { return };
        let denied: Vec<(i64, String)> = auth
            .watched
            .iter()
            .filter_map(|(id, (key, end))| auth.check(key, end).err().map(|why| (*id, why)))
            .collect();
        for (id, reason) in denied {
            auth.watched.remove(&id);
            self.stream.cancel_with_reason(id, reason);
        }
    }

    fn close(&mut self, why: Status) {
        if let Some(tx) = self.closing.take() {
            let _ = tx.send(why);
        }
    }
}

/// Resolves when the auth store changes (true) or goes away (false); never without auth.
async fn auth_changed(auth: &mut Option<WatchAuth>) -> bool {
    match auth {
        Some(a) => a.changes.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// The response half of one client stream, as tonic sends it.
pub struct ResponseStream {
    stream: Arc<WatchStream>,
    header: HeaderFn,
    fragment_bytes: usize,
    /// The rest of a response being sent in fragments.
    fragments: VecDeque<pb::WatchResponse>,
    /// A status that ends the stream, from the request task.
    closing: Option<oneshot::Receiver<Status>>,
    /// The request task; aborted when the client goes away.
    task: JoinHandle<()>,
    done: bool,
}

impl Stream for ResponseStream {
    type Item = Result<pb::WatchResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(next) = this.fragments.pop_front() {
            return Poll::Ready(Some(Ok(next)));
        }
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(closing) = &mut this.closing {
            match Pin::new(closing).poll(cx) {
                Poll::Ready(Ok(why)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(why)));
                }
                Poll::Ready(Err(_)) => this.closing = None, // the task ended without a word
                Poll::Pending => {}
            }
        }
        match this.stream.poll_recv(cx) {
            Poll::Ready(Some(r)) => {
                let header = (this.header)();
                let (first, rest) = to_pb(r, header, this.fragment_bytes);
                this.fragments = rest;
                Poll::Ready(Some(Ok(first)))
            }
            // The store shut down.
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for ResponseStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Turns a store response into etcd's, split into fragments if the watcher asked for them and
/// it is large (as etcd: each part below `limit` unless it is a single event; every part but
/// the last marked `fragment`). Returns the first part and the rest, which is empty (and
/// allocates nothing) for the common unsplit response.
fn to_pb(
    r: WatchResponse,
    header: ResponseHeader,
    limit: usize,
) -> (pb::WatchResponse, VecDeque<pb::WatchResponse>) {
    let whole = pb::WatchResponse {
        header: Some(ResponseHeader {
            revision: r.revision,
            ..header
        }),
        watch_id: r.watch_id,
        created: r.created,
        canceled: r.canceled,
        compact_revision: r.compact_revision,
        cancel_reason: r.cancel_reason,
        fragment: false,
        events: r.events,
    };
    if !r.fragment || whole.events.len() < 2 || whole.encoded_len() < limit {
        return (whole, VecDeque::new());
    }
    let event_len = |e: &Event| prost::encoding::message::encoded_len(11, e);
    let mut events = whole.events.into_iter().peekable();
    let shell = pb::WatchResponse {
        events: Vec::new(),
        fragment: true,
        ..whole
    };
    let base = shell.encoded_len();
    let mut parts = VecDeque::new();
    while events.peek().is_some() {
        let mut part = shell.clone();
        let mut size = base;
        while let Some(e) = events.peek() {
            let len = event_len(e);
            if !part.events.is_empty() && size + len >= limit {
                break;
            }
            size += len;
            part.events.push(events.next().expect("peeked"));
        }
        parts.push_back(part);
    }
    if let Some(last) = parts.back_mut() {
        last.fragment = false;
    }
    let first = parts.pop_front().expect("at least one event, so one part");
    (first, parts)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicBool, Ordering};

    use oxcd_api::etcdserverpb::watch_client::WatchClient;
    use oxcd_api::etcdserverpb::watch_server::WatchServer;
    use oxcd_api::etcdserverpb::{WatchCancelRequest, WatchCreateRequest, WatchProgressRequest};
    use oxcd_api::mvccpb::KeyValue;
    use oxcd_storage::{Backend, BackendConfig, KvStore};
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};

    use super::*;

    const WAIT: Duration = Duration::from_secs(20);

    struct Harness {
        store: Arc<WatchableStore>,
        leader: Arc<AtomicBool>,
        addr: SocketAddr,
        _dir: tempfile::TempDir,
    }

    impl Harness {
        async fn start(configure: impl FnOnce(WatchService) -> WatchService) -> Harness {
            let dir = tempfile::tempdir().unwrap();
            let backend = Backend::open(dir.path().join("db"), BackendConfig::default()).unwrap();
            let store = Arc::new(WatchableStore::new(KvStore::open(backend).unwrap()));
            let leader = Arc::new(AtomicBool::new(true));
            let l = leader.clone();
            let header: HeaderFn = Arc::new(|| ResponseHeader {
                cluster_id: 7,
                member_id: 9,
                revision: 0,
                raft_term: 3,
            });
            let svc = configure(WatchService::new(
                store.clone(),
                header,
                Arc::new(move || l.load(Ordering::SeqCst)),
            ));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(WatchServer::new(svc))
                    .serve_with_incoming(TcpListenerStream::new(listener)),
            );
            Harness {
                store,
                leader,
                addr,
                _dir: dir,
            }
        }

        /// One transaction of puts, committed and notified as apply does; returns its revision.
        fn put_all(&self, kvs: &[(&str, Vec<u8>)]) -> i64 {
            let kv = self.store.kv();
            let mut b = kv.begin_batch().unwrap();
            let mut t = b.txn();
            for (k, v) in kvs {
                t.put(k.as_bytes(), v, 0).unwrap();
            }
            let events = t.end();
            b.commit().unwrap();
            crate::apply::EventSink::notify(&*self.store, events);
            kv.current_revision()
        }

        fn put(&self, k: &str, v: &str) -> i64 {
            self.put_all(&[(k, v.as_bytes().to_vec())])
        }

        async fn open(&self, require_leader: bool) -> Result<Client, Status> {
            let mut client = WatchClient::connect(format!("http://{}", self.addr))
                .await
                .unwrap();
            let (tx, rx) = mpsc::channel(16);
            let mut req = Request::new(ReceiverStream::new(rx));
            if require_leader {
                req.metadata_mut()
                    .insert("hasleader", "true".parse().unwrap());
            }
            let responses = client.watch(req).await?.into_inner();
            Ok(Client { tx, responses })
        }
    }

    struct Client {
        tx: mpsc::Sender<WatchRequest>,
        responses: Streaming<pb::WatchResponse>,
    }

    impl Client {
        async fn send(&self, r: RequestUnion) {
            self.tx
                .send(WatchRequest {
                    request_union: Some(r),
                })
                .await
                .unwrap();
        }

        async fn create(&self, c: WatchCreateRequest) {
            self.send(RequestUnion::CreateRequest(c)).await
        }

        async fn next(&mut self) -> Result<pb::WatchResponse, Status> {
            match tokio::time::timeout(WAIT, self.responses.message()).await {
                Ok(Ok(Some(r))) => Ok(r),
                Ok(Ok(None)) => panic!("stream ended"),
                Ok(Err(e)) => Err(e),
                Err(_) => panic!("no watch response in time"),
            }
        }
    }

    fn watch_key(key: &str) -> WatchCreateRequest {
        WatchCreateRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn create_events_cancel_and_progress_over_grpc() {
        let h = Harness::start(|s| s).await;
        h.put("a", "0"); // 2
        let mut c = h.open(false).await.unwrap();
        c.create(WatchCreateRequest {
            prev_kv: true,
            ..watch_key("a")
        })
        .await;
        let created = c.next().await.unwrap();
        assert!(created.created && !created.canceled);
        assert_eq!(
            created.header,
            Some(ResponseHeader {
                cluster_id: 7,
                member_id: 9,
                revision: 2,
                raft_term: 3
            })
        );
        h.put("a", "1"); // 3
        let r = c.next().await.unwrap();
        assert_eq!((r.watch_id, r.header.unwrap().revision), (0, 3));
        let ev = &r.events[0];
        assert_eq!(ev.kv.as_ref().unwrap().value, b"1");
        assert_eq!(
            ev.prev_kv.as_ref().map(|p| p.value.clone()),
            Some(b"0".to_vec())
        );
        c.send(RequestUnion::ProgressRequest(WatchProgressRequest {}))
            .await;
        let p = c.next().await.unwrap();
        assert_eq!(
            (p.watch_id, p.header.unwrap().revision, p.events.len()),
            (-1, 3, 0)
        );
        c.send(RequestUnion::CancelRequest(WatchCancelRequest {
            watch_id: 0,
        }))
        .await;
        let x = c.next().await.unwrap();
        assert_eq!(
            (x.watch_id, x.canceled, x.cancel_reason.as_str()),
            (0, true, "")
        );
        // A duplicate id is refused as etcd refuses it.
        c.create(WatchCreateRequest {
            watch_id: 5,
            ..watch_key("b")
        })
        .await;
        c.create(WatchCreateRequest {
            watch_id: 5,
            ..watch_key("b")
        })
        .await;
        assert_eq!(c.next().await.unwrap().watch_id, 5);
        let dup = c.next().await.unwrap();
        assert_eq!((dup.watch_id, dup.created, dup.canceled), (-1, true, true));
        assert_eq!(
            dup.cancel_reason,
            "mvcc: duplicate watch ID provided on the WatchStream"
        );
    }

    #[tokio::test]
    async fn require_leader_refuses_and_closes_without_a_leader() {
        let h = Harness::start(|s| s.election_timeout(Duration::from_millis(30))).await;
        h.leader.store(false, Ordering::SeqCst);
        let err = h.open(true).await.err().expect("refused");
        assert_eq!(
            (err.code(), err.message()),
            (tonic::Code::Unavailable, "etcdserver: no leader")
        );
        // Without the metadata the stream opens anyway.
        let mut plain = h.open(false).await.unwrap();
        h.leader.store(true, Ordering::SeqCst);
        let mut c = h.open(true).await.unwrap();
        c.create(watch_key("a")).await;
        assert!(c.next().await.unwrap().created);
        h.leader.store(false, Ordering::SeqCst);
        let err = c.next().await.expect_err("closed");
        assert_eq!(
            (err.code(), err.message()),
            (tonic::Code::Unavailable, "etcdserver: no leader")
        );
        plain.create(watch_key("a")).await;
        assert!(plain.next().await.unwrap().created, "other streams live on");
    }

    #[tokio::test]
    async fn periodic_progress_notifications() {
        let h = Harness::start(|s| s.progress_interval(Duration::from_millis(100))).await;
        let mut c = h.open(false).await.unwrap();
        c.create(WatchCreateRequest {
            progress_notify: true,
            ..watch_key("a")
        })
        .await;
        assert!(c.next().await.unwrap().created);
        h.put("b", "1");
        let p = c.next().await.unwrap();
        assert_eq!(
            (p.watch_id, p.events.len(), p.header.unwrap().revision),
            (0, 0, 2)
        );
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_loses_no_event() {
        let h = Harness::start(|s| s).await;
        let mut c = h.open(false).await.unwrap();
        c.create(watch_key("k")).await;
        assert!(c.next().await.unwrap().created);
        let value = vec![b'x'; 4096];
        let n = 3000;
        for _ in 0..n {
            h.put_all(&[("k", value.clone())]);
        }
        let (_, behind) = h.store.watcher_counts();
        assert_eq!(behind, 1, "the watcher fell behind instead of buffering");
        let mut next = 2;
        while next < 2 + n {
            let r = c.next().await.unwrap();
            for e in r.events {
                assert_eq!(e.kv.unwrap().mod_revision, next);
                next += 1;
            }
        }
    }

    #[tokio::test]
    async fn fragments_only_for_watchers_that_ask() {
        let h = Harness::start(|s| s.max_request_bytes(0)).await; // fragments above 512 KiB
        let mut c = h.open(false).await.unwrap();
        let prefix = WatchCreateRequest {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            ..Default::default()
        };
        c.create(WatchCreateRequest {
            fragment: true,
            ..prefix.clone()
        })
        .await;
        c.create(prefix).await;
        c.next().await.unwrap();
        c.next().await.unwrap();
        let big = vec![b'v'; 200 * 1024];
        let keys: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
        let kvs: Vec<(&str, Vec<u8>)> = keys.iter().map(|k| (k.as_str(), big.clone())).collect();
        let rev = h.put_all(&kvs);
        let mut parts = Vec::new();
        let mut whole = None;
        while whole.is_none() || parts.last().is_none_or(|p: &pb::WatchResponse| p.fragment) {
            let r = c.next().await.unwrap();
            assert_eq!(r.header.unwrap().revision, rev);
            if r.watch_id == 0 {
                parts.push(r);
            } else {
                whole = Some(r);
            }
        }
        assert!(parts.len() > 1, "split");
        assert_eq!(parts.iter().map(|p| p.events.len()).sum::<usize>(), 5);
        let whole = whole.unwrap();
        assert_eq!((whole.events.len(), whole.fragment), (5, false));
    }

    fn ev(key: &str, len: usize) -> Event {
        Event {
            kv: Some(KeyValue {
                key: key.as_bytes().to_vec(),
                value: vec![0; len],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Every part `to_pb` makes, in order.
    fn parts_of(r: WatchResponse, header: ResponseHeader, limit: usize) -> Vec<pb::WatchResponse> {
        let (first, rest) = to_pb(r, header, limit);
        std::iter::once(first).chain(rest).collect()
    }

    #[test]
    fn large_responses_split_into_fragments_as_etcd() {
        let header = ResponseHeader::default();
        let r = WatchResponse {
            watch_id: 4,
            revision: 9,
            events: (0..10).map(|i| ev(&i.to_string(), 100)).collect(),
            fragment: true,
            ..Default::default()
        };
        let parts = parts_of(r.clone(), header, 350);
        assert!(parts.len() > 2);
        let n: usize = parts.iter().map(|p| p.events.len()).sum();
        assert_eq!(n, 10);
        for (i, p) in parts.iter().enumerate() {
            assert_eq!(p.fragment, i + 1 < parts.len());
            assert!(p.encoded_len() < 350 || p.events.len() == 1);
            assert_eq!((p.watch_id, p.header.unwrap().revision), (4, 9));
        }
        // Not asked for, small, or a single event: one response.
        let whole = parts_of(
            WatchResponse {
                fragment: false,
                ..r.clone()
            },
            header,
            350,
        );
        assert_eq!((whole.len(), whole[0].fragment), (1, false));
        assert_eq!(parts_of(r.clone(), header, 1 << 20).len(), 1);
        let one = WatchResponse {
            events: vec![ev("a", 1000)],
            ..r
        };
        assert_eq!(parts_of(one, header, 350).len(), 1);
    }

    #[tokio::test]
    async fn closing_the_client_stream_removes_its_watchers() {
        let h = Harness::start(|s| s).await;
        let mut c = h.open(false).await.unwrap();
        c.create(watch_key("a")).await;
        c.create(watch_key("b")).await;
        c.next().await.unwrap();
        c.next().await.unwrap();
        assert_eq!(h.store.watcher_counts(), (2, 0));
        drop(c);
        let deadline = tokio::time::Instant::now() + WAIT;
        while h.store.watcher_counts() != (0, 0) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "watchers outlived their stream"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
