//! The sending side: one task per peer owns a streaming call to it and reconnects when the
//! call breaks. The raft thread only queues; a full queue drops the message, which raft
//! resends (it never relies on delivery).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hyper_util::rt::TokioIo;
use oxcd_api::oxcdpb::peer_client::PeerClient;
use oxcd_api::oxcdpb::{PeerMessage, SnapshotChunk};
use oxcd_storage::KvStore;
use protobuf::Message as _;
use raft::eraftpb::Message;
use raft::eraftpb::MessageType;
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::mpsc;
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::metrics::{self as peer_metrics, PeerLink, SnapshotTransfer, SnapshotWay};
use super::TransportStats;
use crate::raft::{RaftInput, Transport};

/// Messages queued for one peer before new ones are dropped. Sized for bursts of appends
/// while a connection is (re)established.
const PEER_QUEUE: usize = 4096;

/// How long to wait before dialing a peer again after a failure.
const RECONNECT_DELAY: Duration = Duration::from_millis(100);

/// How long a dial may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Queues raft messages to per-peer sender tasks.
pub struct PeerTransport {
    ctx: PeerContext,
    peers: HashMap<u64, mpsc::Sender<Message>>,
    /// Each peer's URLs, for snapshot calls.
    urls: HashMap<u64, Vec<String>>,
}

/// What each sender task needs to reach its peer.
#[derive(Clone)]
pub struct PeerContext {
    pub cluster_id: u64,
    pub local_id: u64,
    /// TLS for dialing peers, if the peer URLs are https.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub runtime: tokio::runtime::Handle,
    /// The store whose contents a snapshot carries.
    pub kv: Arc<KvStore>,
    /// The applied index: a snapshot is sent once the store has caught up with it.
    pub applied: watch::Receiver<u64>,
    /// Where snapshot outcomes are reported, for raft's flow control.
    pub raft: std::sync::mpsc::Sender<RaftInput>,
    /// Appends sent and how each follower's fared (`/v2/stats`).
    pub stats: Arc<TransportStats>,
}

impl PeerTransport {
    /// Starts a sender task for every peer in `peers` (member id → peer URLs).
    pub fn start(ctx: PeerContext, peers: Vec<(u64, Vec<String>)>) -> PeerTransport {
        let mut transport = PeerTransport {
            ctx,
            peers: HashMap::new(),
            urls: HashMap::new(),
        };
        for (id, urls) in peers {
            transport.add_peer(id, urls);
        }
        transport
    }
}

impl Transport for PeerTransport {
    fn send(&mut self, msgs: Vec<Message>) {
        for msg in msgs {
            if msg.get_msg_type() == MessageType::MsgSnapshot {
                if let Some(urls) = self.urls.get(&msg.to) {
                    self.ctx
                        .runtime
                        .spawn(send_snapshot(self.ctx.clone(), urls.clone(), msg));
                }
                continue;
            }
            match self.peers.get(&msg.to) {
                Some(queue) => {
                    if let Err(e) = queue.try_send(msg) {
                        let msg = e.into_inner();
                        peer_metrics::send_dropped(msg.to);
                        if msg.get_msg_type() == MessageType::MsgAppend {
                            self.ctx.stats.append_failed(msg.to);
                        }
                        tracing::debug!("peer queue full; dropped a raft message");
                    }
                }
                None => tracing::debug!(
                    to = format!("{:x}", msg.to),
                    "raft message to an unknown member; dropped"
                ),
            }
        }
    }

    fn add_peer(&mut self, id: u64, peer_urls: Vec<String>) {
        if id == self.ctx.local_id || peer_urls.is_empty() {
            return;
        }
        // Replacing the sender ends the previous task (its queue closes).
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        self.ctx
            .runtime
            .spawn(run_peer(self.ctx.clone(), id, peer_urls.clone(), rx));
        self.peers.insert(id, tx);
        self.urls.insert(id, peer_urls);
    }

    fn remove_peer(&mut self, id: u64) {
        self.ctx.stats.activity.lost(id);
        self.peers.remove(&id);
        self.urls.remove(&id);
    }
}

/// Bytes of backend dump per snapshot chunk.
const SNAPSHOT_CHUNK: usize = 1024 * 1024;

/// How long a snapshot may wait for apply to reach its index.
const SNAPSHOT_APPLY_WAIT: Duration = Duration::from_secs(30);

/// Streams a snapshot to a peer: the raft message (metadata, no data) first, then the
/// backend's contents, dumped once apply has reached the snapshot's index so the follower
/// gets at least the state the metadata promises. The outcome goes back to raft.
async fn send_snapshot(ctx: PeerContext, urls: Vec<String>, mut msg: Message) {
    let to = msg.to;
    let index = msg.get_snapshot().get_metadata().index;
    let transfer = SnapshotTransfer::start(SnapshotWay::Send, to);
    let result = stream_snapshot(&ctx, &urls, &mut msg, index).await;
    if let Ok(bytes) = result {
        transfer.succeeded(bytes);
    }
    match &result {
        Ok(bytes) => tracing::info!(
            "remote-peer-id" = format!("{to:x}"),
            "snapshot-index" = index,
            bytes,
            "sent database snapshot"
        ),
        Err(e) => tracing::warn!(
            "remote-peer-id" = format!("{to:x}"),
            "snapshot-index" = index,
            error = %e,
            "failed to send database snapshot"
        ),
    }
    let _ = ctx.raft.send(RaftInput::ReportSnapshot {
        to,
        ok: result.is_ok(),
    });
}

async fn stream_snapshot(
    ctx: &PeerContext,
    urls: &[String],
    msg: &mut Message,
    index: u64,
) -> Result<u64, String> {
    let mut applied = ctx.applied.clone();
    tokio::time::timeout(SNAPSHOT_APPLY_WAIT, applied.wait_for(|a| *a >= index))
        .await
        .map_err(|_| "apply did not reach the snapshot index in time".to_string())?
        .map_err(|_| "member is stopping".to_string())?;
    fail::fail_point!("raft_before_snapshot_send");
    msg.mut_snapshot().data = Default::default();
    let metadata = msg.write_to_bytes().map_err(|e| e.to_string())?;

    // A blocking thread dumps the backend into chunks; the call streams them as they come.
    let (tx, rx) = mpsc::channel::<Vec<u8>>(4);
    let kv = ctx.kv.clone();
    let dumper = tokio::task::spawn_blocking(move || {
        let mut writer = ChunkWriter {
            buf: Vec::with_capacity(SNAPSHOT_CHUNK),
            tx,
        };
        let dump = kv.backend().begin_dump().map_err(|e| e.to_string())?;
        let bytes = dump
            .write_to(&mut writer, |_| {})
            .map_err(|e| e.to_string())?;
        writer.flush_chunk().map_err(|e| e.to_string())?;
        Ok::<u64, String>(bytes)
    });
    let (cluster_id, from) = (ctx.cluster_id, ctx.local_id);
    let first = SnapshotChunk {
        cluster_id,
        from,
        metadata: metadata.into(),
        total_size: 0,
        data: Default::default(),
    };
    let rest = ReceiverStream::new(rx).map(move |data| SnapshotChunk {
        cluster_id,
        from,
        metadata: Default::default(),
        total_size: 0,
        data: data.into(),
    });
    let chunks = futures::stream::once(async move { first }).chain(rest);
    let url = urls.first().ok_or("peer has no URL")?;
    let channel = dial(url, ctx.tls.clone())
        .await
        .map_err(|e| e.to_string())?;
    let mut client = PeerClient::new(channel).max_encoding_message_size(usize::MAX);
    let call = client
        .snapshot(chunks)
        .await
        .map_err(|e| e.message().to_string());
    let dumped = dumper.await.map_err(|e| e.to_string())??;
    call?;
    Ok(dumped)
}

/// A `Write` that cuts its bytes into chunks for an async channel (from a blocking thread).
struct ChunkWriter {
    buf: Vec<u8>,
    tx: mpsc::Sender<Vec<u8>>,
}

impl ChunkWriter {
    fn flush_chunk(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(SNAPSHOT_CHUNK));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "snapshot call ended"))
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = SNAPSHOT_CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == SNAPSHOT_CHUNK {
            self.flush_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Keeps one stream open to peer `id`, feeding it from `queue`.
async fn run_peer(
    ctx: PeerContext,
    id: u64,
    urls: Vec<String>,
    mut queue: mpsc::Receiver<Message>,
) {
    let mut url_index = 0;
    let mut was_active = false;
    let link = Arc::new(PeerLink::new(ctx.local_id, id));
    // Each new reason a dial fails is logged once (a refused TLS handshake, say).
    let mut last_dial_error = String::new();
    loop {
        let url = &urls[url_index % urls.len()];
        url_index += 1;
        let channel = match dial(url, ctx.tls.clone()).await {
            Ok(channel) => {
                last_dial_error.clear();
                channel
            }
            Err(e) => {
                let why = error_chain(&e);
                if was_active {
                    tracing::warn!("remote-peer-id" = format!("{id:x}"), error = %why, "lost the connection to a peer");
                    was_active = false;
                    link.deactivated();
                    ctx.stats.activity.lost(id);
                } else if why != last_dial_error {
                    tracing::warn!("remote-peer-id" = format!("{id:x}"), "remote-peer-url" = %url, error = %why, "failed to dial remote peer");
                }
                last_dial_error = why;
                // Messages queued while the peer is unreachable are stale; raft resends.
                while let Ok(msg) = queue.try_recv() {
                    link.send_failed();
                    if msg.get_msg_type() == MessageType::MsgAppend {
                        ctx.stats.append_failed(id);
                    }
                }
                tokio::time::sleep(RECONNECT_DELAY).await;
                continue;
            }
        };
        let (tx, rx) = mpsc::channel::<PeerMessage>(PEER_QUEUE);
        let prober = tokio::spawn(probe(channel.clone(), link.clone(), ctx.stats.clone(), id));
        let mut client = PeerClient::new(channel).max_encoding_message_size(usize::MAX);
        let call = tokio::spawn(async move { client.stream(ReceiverStream::new(rx)).await });
        if !was_active {
            tracing::info!(
                "remote-peer-id" = format!("{id:x}"),
                "established a stream to a peer"
            );
            was_active = true;
            link.activated();
            ctx.stats.activity.heard(id);
        }
        loop {
            let Some(msg) = queue.recv().await else {
                return;
            };
            let started = std::time::Instant::now();
            let is_append = msg.get_msg_type() == MessageType::MsgAppend;
            let bytes = match msg.write_to_bytes() {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode a raft message");
                    continue;
                }
            };
            let size = bytes.len();
            let peer_msg = PeerMessage {
                cluster_id: ctx.cluster_id,
                from: ctx.local_id,
                message: bytes.into(),
            };
            if tx.send(peer_msg).await.is_err() {
                link.send_failed();
                if is_append {
                    ctx.stats.append_failed(id);
                }
                ctx.stats.activity.lost(id);
                break; // the call ended: reconnect
            }
            link.sent(size);
            if is_append {
                ctx.stats.sent_append(id, size, started.elapsed());
            }
        }
        prober.abort();
        if let Ok(Err(status)) = call.await {
            tracing::warn!("remote-peer-id" = format!("{id:x}"), error = %status, "peer stream closed");
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

/// Times a small call to the peer every [`peer_metrics::PROBE_INTERVAL`] while its connection
/// lasts, for `etcd_network_peer_round_trip_time_seconds`; each answer also tells that the
/// peer `id` is still active.
async fn probe(channel: Channel, link: Arc<PeerLink>, stats: Arc<TransportStats>, id: u64) {
    let mut client = PeerClient::new(channel);
    loop {
        tokio::time::sleep(peer_metrics::PROBE_INTERVAL).await;
        let started = std::time::Instant::now();
        if client
            .members(oxcd_api::etcdserverpb::MemberListRequest::default())
            .await
            .is_ok()
        {
            link.round_trip(started.elapsed());
            stats.activity.heard(id);
        }
    }
}

/// An error with its sources ("transport error: ...: invalid peer certificate: ...").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        match inner.downcast_ref::<std::io::Error>() {
            Some(io) => text = format!("{text}: {}", crate::tls::describe_error(io)),
            None => text = format!("{text}: {inner}"),
        }
        source = inner.source();
    }
    text
}

/// A connection to a peer: TCP or a unix socket, in TLS or not.
trait PeerIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> PeerIo for T {}

/// Connects to a peer URL (`http`, `https`, `unix` or `unixs`, whose socket path is the
/// URL's `host:port`), in TLS when `tls` is given (tonic's own TLS cannot skip
/// verification for etcd's self-signed auto TLS, so the handshake is done here).
pub(crate) async fn dial(
    url: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Channel, tonic::transport::Error> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let authority = rest.trim_end_matches('/').to_string();
    let unix = scheme == "unix" || scheme == "unixs";
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))?
        .connect_timeout(DIAL_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5));
    if tls.is_none() && !unix {
        return endpoint.connect().await;
    }
    let connector = tls.map(tokio_rustls::TlsConnector::from);
    endpoint
        .connect_with_connector(tower::service_fn(move |uri: Uri| {
            let connector = connector.clone();
            let path = authority.clone();
            async move {
                let host = uri.host().unwrap_or("localhost").to_string();
                let io: Box<dyn PeerIo> = if unix {
                    Box::new(UnixStream::connect(&path).await?)
                } else {
                    let tcp =
                        TcpStream::connect((host.as_str(), uri.port_u16().unwrap_or(2380))).await?;
                    tcp.set_nodelay(true)?;
                    Box::new(tcp)
                };
                let Some(connector) = connector else {
                    return Ok::<_, std::io::Error>(TokioIo::new(io));
                };
                let name = rustls::pki_types::ServerName::try_from(host)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                let tls: Box<dyn PeerIo> = Box::new(connector.connect(name, io).await?);
                Ok(TokioIo::new(tls))
            }
        }))
        .await
}

/// Asks the running members listed in `--initial-cluster` who this member is, for a member
/// started with `--initial-cluster-state existing`: its id is the one `member add` gave its
/// peer URLs.
pub async fn discover_self(
    cfg: &crate::config::ServerConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<crate::bootstrap::JoinInfo, String> {
    let mut mine: Vec<String> = cfg
        .initial_advertise_peer_urls
        .iter()
        .map(ToString::to_string)
        .collect();
    mine.sort();
    let others: Vec<String> = cfg
        .initial_cluster
        .values()
        .flatten()
        .map(ToString::to_string)
        .filter(|u| !mine.contains(u))
        .collect();
    let mut last_error = String::from("no other member in --initial-cluster");
    for url in &others {
        let channel = match dial(url, tls.clone()).await {
            Ok(channel) => channel,
            Err(e) => {
                last_error = format!("{url}: {e}");
                continue;
            }
        };
        let resp = match PeerClient::new(channel)
            .members(oxcd_api::etcdserverpb::MemberListRequest::default())
            .await
        {
            Ok(resp) => resp.into_inner(),
            Err(e) => {
                last_error = format!("{url}: {}", e.message());
                continue;
            }
        };
        let cluster_id = resp.header.as_ref().map_or(0, |h| h.cluster_id);
        let me = resp.members.iter().find(|m| {
            let mut urls = m.peer_ur_ls.clone();
            urls.sort();
            urls == mine
        });
        return match me {
            Some(me) => Ok(crate::bootstrap::JoinInfo { member_id: me.id, cluster_id, members: resp.members.clone() }),
            None => Err(format!(
                "this member's peer URLs {mine:?} are not in the cluster's member list; add it with `member add` first"
            )),
        };
    }
    Err(format!(
        "cannot fetch the cluster's members from --initial-cluster: {last_error}"
    ))
}
