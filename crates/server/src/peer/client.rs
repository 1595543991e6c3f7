//! The sending side: one task per peer owns a streaming call to it and reconnects when the
//! call breaks. The raft thread only queues; a full queue drops the message, which raft
//! resends (it never relies on delivery).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use oxcd_api::oxcdpb::peer_client::PeerClient;
use oxcd_api::oxcdpb::PeerMessage;
use protobuf::Message as _;
use raft::eraftpb::Message;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::raft::Transport;

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
}

/// What each sender task needs to reach its peer.
#[derive(Clone)]
pub struct PeerContext {
    pub cluster_id: u64,
    pub local_id: u64,
    /// TLS for dialing peers, if the peer URLs are https.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub runtime: tokio::runtime::Handle,
}

impl PeerTransport {
    /// Starts a sender task for every peer in `peers` (member id → peer URLs).
    pub fn start(ctx: PeerContext, peers: Vec<(u64, Vec<String>)>) -> PeerTransport {
        let mut transport = PeerTransport {
            ctx,
            peers: HashMap::new(),
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
            match self.peers.get(&msg.to) {
                Some(queue) => {
                    if queue.try_send(msg).is_err() {
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
            .spawn(run_peer(self.ctx.clone(), id, peer_urls, rx));
        self.peers.insert(id, tx);
    }

    fn remove_peer(&mut self, id: u64) {
        self.peers.remove(&id);
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
    loop {
        let url = &urls[url_index % urls.len()];
        url_index += 1;
        let channel = match dial(url, ctx.tls.clone()).await {
            Ok(channel) => channel,
            Err(e) => {
                if was_active {
                    tracing::warn!("remote-peer-id" = format!("{id:x}"), error = %e, "lost the connection to a peer");
                    was_active = false;
                }
                // Messages queued while the peer is unreachable are stale; raft resends.
                while queue.try_recv().is_ok() {}
                tokio::time::sleep(RECONNECT_DELAY).await;
                continue;
            }
        };
        let (tx, rx) = mpsc::channel::<PeerMessage>(PEER_QUEUE);
        let mut client = PeerClient::new(channel).max_encoding_message_size(usize::MAX);
        let call = tokio::spawn(async move { client.stream(ReceiverStream::new(rx)).await });
        if !was_active {
            tracing::info!(
                "remote-peer-id" = format!("{id:x}"),
                "established a stream to a peer"
            );
            was_active = true;
        }
        loop {
            let Some(msg) = queue.recv().await else {
                return;
            };
            let bytes = match msg.write_to_bytes() {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode a raft message");
                    continue;
                }
            };
            let peer_msg = PeerMessage {
                cluster_id: ctx.cluster_id,
                from: ctx.local_id,
                message: bytes.into(),
            };
            if tx.send(peer_msg).await.is_err() {
                break; // the call ended: reconnect
            }
        }
        if let Ok(Err(status)) = call.await {
            tracing::warn!("remote-peer-id" = format!("{id:x}"), error = %status, "peer stream closed");
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

/// Connects to a peer URL, in TLS when `tls` is given (tonic's own TLS cannot skip
/// verification for etcd's self-signed auto TLS, so the handshake is done here).
async fn dial(
    url: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Channel, tonic::transport::Error> {
    let authority = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .trim_end_matches('/')
        .to_string();
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))?
        .connect_timeout(DIAL_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5));
    match tls {
        None => endpoint.connect().await,
        Some(config) => {
            let connector = tokio_rustls::TlsConnector::from(config);
            endpoint
                .connect_with_connector(tower::service_fn(move |uri: Uri| {
                    let connector = connector.clone();
                    async move {
                        let host = uri.host().unwrap_or("localhost").to_string();
                        let port = uri.port_u16().unwrap_or(2380);
                        let tcp = TcpStream::connect((host.as_str(), port)).await?;
                        tcp.set_nodelay(true)?;
                        let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| {
                            std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
                        })?;
                        let tls = connector.connect(name, tcp).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(tls))
                    }
                }))
                .await
        }
    }
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
