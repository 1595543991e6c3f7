//! `watch`, `watch-get` and `watch-latency`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::watch_client::WatchClient;
use oxcd_api::etcdserverpb::watch_request::RequestUnion;
use oxcd_api::etcdserverpb::{
    PutRequest, RangeRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};
use tokio::sync::{mpsc, watch as signal, Notify};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Streaming;

use crate::conn::{Conn, Dialer, Limiter};
use crate::report::{Report, Results};
use crate::run::{random_bytes, requests, varint_key};
use crate::Global;

/// How long the events of a run may keep arriving after its last put before the run gives
/// up on the missing ones (they are reported as an error).
const EVENT_GRACE: Duration = Duration::from_secs(30);

/// One Watch stream: where to send create requests, and what comes back.
struct Stream {
    tx: mpsc::UnboundedSender<WatchRequest>,
    rx: Streaming<WatchResponse>,
}

/// A request for a watcher on `key` from `start_revision` (0: now).
fn create(key: Vec<u8>, start_revision: i64) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key,
            start_revision,
            ..Default::default()
        })),
    }
}

impl Stream {
    /// Opens a stream that starts with `first` requests. They are queued before the call is
    /// awaited: grpc-go servers (etcd) send nothing, not even headers, before their first
    /// response.
    async fn open(conn: Conn, first: Vec<WatchRequest>) -> Result<Stream, String> {
        let (tx, requests) = mpsc::unbounded_channel();
        for req in first {
            let _ = tx.send(req);
        }
        let rx = WatchClient::new(conn)
            .watch(UnboundedReceiverStream::new(requests))
            .await
            .map_err(|e| format!("watch: {}", e.message()))?
            .into_inner();
        Ok(Stream { tx, rx })
    }

    fn send(&self, req: WatchRequest) -> Result<(), String> {
        self.tx
            .send(req)
            .map_err(|_| "watch stream closed".to_owned())
    }

    /// Waits until the server confirms the next watcher (no events can come before: nothing
    /// is written while watchers are created).
    async fn created(&mut self) -> Result<(), String> {
        loop {
            match self.rx.message().await {
                Ok(Some(resp)) if resp.created => return Ok(()),
                Ok(Some(_)) => {}
                Ok(None) => return Err("watch stream closed".to_owned()),
                Err(e) => return Err(format!("watch: {}", e.message())),
            }
        }
    }
}

/// The next response on `rx`, or `None` once it ends or `stop` turns true.
async fn next_until(
    rx: &mut Streaming<WatchResponse>,
    stop: &mut signal::Receiver<bool>,
) -> Option<WatchResponse> {
    if *stop.borrow() {
        return None;
    }
    tokio::select! {
        msg = rx.message() => msg.ok().flatten(),
        _ = stop.changed() => None,
    }
}

#[derive(clap::Args)]
pub struct WatchArgs {
    /// Total watch streams
    #[arg(long, default_value_t = 10)]
    streams: usize,
    /// Total watchers per stream
    #[arg(long, default_value_t = 100)]
    watch_per_stream: usize,
    /// Total number of keys to be watched
    #[arg(long, default_value_t = 1)]
    watched_key_total: usize,
    /// Number of keys to put per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    put_rate: u64,
    /// Number of put requests
    #[arg(long, default_value_t = 1000)]
    put_total: usize,
    /// Key size of watch request
    #[arg(long, default_value_t = 32)]
    key_size: usize,
    /// Maximum possible keys
    #[arg(long, default_value_t = 1)]
    key_space_size: i64,
    /// Use sequential keys
    #[arg(long)]
    sequential_keys: bool,
}

pub async fn watch(global: &Global, args: WatchArgs) -> Result<(), String> {
    if args.key_space_size <= 0 {
        return Err(format!(
            "expected positive --key-space-size, got ({})",
            args.key_space_size
        ));
    }
    let clients = Dialer::new(global)
        .await?
        .clients(global.clients, global.conns)
        .await?;
    let watched: Vec<Vec<u8>> = (0..args.watched_key_total.max(1))
        .map(|i| {
            let n = if args.sequential_keys {
                i as i64 % args.key_space_size
            } else {
                rand::random_range(0..args.key_space_size)
            };
            varint_key(args.key_size, n)
        })
        .collect();

    // Creation: each stream creates its watchers one after the other, all streams at once.
    let mut watchers_per_key: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut creations = Vec::new();
    let start = Instant::now();
    for s in 0..args.streams {
        let conn = clients[s % clients.len()].clone();
        let keys: Vec<Vec<u8>> = (0..args.watch_per_stream)
            .map(|j| watched[(s * args.watch_per_stream + j) % watched.len()].clone())
            .collect();
        for key in &keys {
            *watchers_per_key.entry(key.clone()).or_default() += 1;
        }
        creations.push(tokio::spawn(async move {
            let mut results = Results::default();
            let mut keys = keys.into_iter();
            let Some(first) = keys.next() else {
                return Ok::<_, String>((None, results));
            };
            let st = Instant::now();
            let mut stream = Stream::open(conn, vec![create(first, 0)]).await?;
            results.record(st, stream.created().await);
            for key in keys {
                let st = Instant::now();
                stream.send(create(key, 0))?;
                results.record(st, stream.created().await);
            }
            Ok((Some(stream), results))
        }));
    }
    let mut streams = Vec::new();
    let mut created = Results::default();
    for c in creations {
        let (stream, results) = c.await.map_err(|e| e.to_string())??;
        streams.extend(stream);
        created.merge(results);
    }
    print!(
        "Watch creation summary:\n{}",
        Report::new(created, start.elapsed(), global.precise)
    );

    // Events: every put reaches each watcher of its key.
    let events_total: usize = (0..args.put_total)
        .map(|i| watchers_per_key[&watched[i % watched.len()]])
        .sum();
    let remaining = Arc::new(AtomicI64::new(events_total as i64));
    let (stop_tx, stop_rx) = signal::channel(false);
    let all_in = Arc::new(Notify::new());
    let start = Instant::now();
    let mut receivers = Vec::new();
    for stream in streams {
        let (remaining, all_in, mut stop) = (remaining.clone(), all_in.clone(), stop_rx.clone());
        receivers.push(tokio::spawn(async move {
            let _keep_open = stream.tx;
            let mut rx = stream.rx;
            let mut results = Results::default();
            while let Some(resp) = next_until(&mut rx, &mut stop).await {
                let st = Instant::now();
                for _ in &resp.events {
                    results.ok(st.elapsed());
                    if remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                        all_in.notify_one();
                    }
                }
            }
            results
        }));
    }
    let watched = Arc::new(watched);
    let (_, _) = requests(
        clients,
        args.put_total,
        Limiter::new(args.put_rate),
        1,
        move |conn, i| {
            let key = watched[i % watched.len()].clone();
            async move {
                let outcome = KvClient::new(conn)
                    .put(PutRequest {
                        key,
                        value: b"data".to_vec(),
                        ..Default::default()
                    })
                    .await;
                (0, outcome.map(drop).map_err(|e| e.message().to_owned()))
            }
        },
    )
    .await;
    let complete = tokio::time::timeout(EVENT_GRACE, all_in.notified())
        .await
        .is_ok()
        || remaining.load(Ordering::Acquire) <= 0;
    let total = start.elapsed();
    let mut events = Results::default();
    let _ = stop_tx.send(true);
    for r in receivers {
        if let Ok(results) = r.await {
            events.merge(results);
        }
    }
    if !complete {
        let missing = remaining.load(Ordering::Acquire);
        for _ in 0..missing {
            events.failed("event not received in time");
        }
    }
    print!(
        "Watch events received summary:\n{}",
        Report::new(events, total, global.precise)
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct WatchGetArgs {
    /// Total number of watchers
    #[arg(long, default_value_t = 10000)]
    watchers: usize,
    /// Total number of watcher streams
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Number of events per watcher
    #[arg(long, default_value_t = 8)]
    events: usize,
}

pub async fn watch_get(global: &Global, args: WatchGetArgs) -> Result<(), String> {
    let mut dialer = Dialer::new(global).await?;
    let clients = dialer.clients(global.clients, global.conns).await?;
    let getter = dialer.conn().await?;

    // The events the watchers will catch up on.
    let mut watch_rev = 0;
    for i in 0..args.events {
        let resp = KvClient::new(clients[0].clone())
            .put(PutRequest {
                key: b"watchkey".to_vec(),
                value: i.to_string().into_bytes(),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("put: {}", e.message()))?
            .into_inner();
        if i == 0 {
            watch_rev = resp.header.map_or(0, |h| h.revision);
        }
    }

    let streams = args.streams.max(1);
    let mut per_stream = vec![0usize; streams];
    for w in 0..args.watchers {
        per_stream[w % streams] += 1;
    }
    let done = Arc::new(AtomicUsize::new(0));
    let all_done = Arc::new(Notify::new());
    let first_created = Arc::new(Notify::new());
    let mut watchers = Vec::new();
    for (s, n) in per_stream.into_iter().enumerate() {
        let conn = clients[s % clients.len()].clone();
        let (done, all_done, first_created) =
            (done.clone(), all_done.clone(), first_created.clone());
        let (events, total_watchers) = (args.events, args.watchers);
        watchers.push(tokio::spawn(async move {
            let creates = (0..n)
                .map(|_| create(b"watchkey".to_vec(), watch_rev))
                .collect();
            let mut stream = Stream::open(conn, creates).await?;
            // Each watcher of this stream is done once it has had `events` events.
            let mut seen: HashMap<i64, usize> = HashMap::new();
            let mut finished = 0;
            while finished < n {
                let Ok(Some(resp)) = stream.rx.message().await else {
                    break;
                };
                if resp.created {
                    first_created.notify_one();
                }
                let count = seen.entry(resp.watch_id).or_default();
                let before = *count;
                *count += resp.events.len();
                if before < events && *count >= events {
                    finished += 1;
                    if done.fetch_add(1, Ordering::AcqRel) + 1 == total_watchers {
                        all_done.notify_one();
                    }
                }
            }
            Ok::<_, String>(())
        }));
    }

    first_created.notified().await;
    let start = Instant::now();
    let mut results = Results::default();
    let all = all_done.notified();
    tokio::pin!(all);
    let get = RangeRequest {
        key: b"abc".to_vec(),
        serializable: true,
        ..Default::default()
    };
    let mut kv = KvClient::new(getter);
    loop {
        if done.load(Ordering::Acquire) >= args.watchers {
            break;
        }
        let st = Instant::now();
        tokio::select! {
            _ = &mut all => break,
            outcome = kv.range(get.clone()) => {
                results.record(st, outcome.map_err(|e| e.message().to_owned()));
            }
        }
    }
    let total = start.elapsed();
    for w in watchers {
        w.abort();
    }
    print!(
        "Get during watch summary:\n{}",
        Report::new(results, total, global.precise)
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct WatchLatencyArgs {
    /// Total number of put requests
    #[arg(long, default_value_t = 10000)]
    total: usize,
    /// Number of keys to put per second
    #[arg(long, default_value_t = 100)]
    put_rate: u64,
    /// Key size of watch response
    #[arg(long, default_value_t = 32)]
    key_size: usize,
    /// Value size of watch response
    #[arg(long, default_value_t = 32)]
    val_size: usize,
}

pub async fn watch_latency(global: &Global, args: WatchLatencyArgs) -> Result<(), String> {
    let key = random_bytes(args.key_size);
    let value = random_bytes(args.val_size);
    let mut dialer = Dialer::new(global).await?;
    let conns = dialer
        .clients(global.conns.max(1), global.conns.max(1))
        .await?;
    let putter = dialer.conn().await?;

    // Each client watches the key; clients share a stream per connection, as etcd's clients
    // share one per client object.
    let base = Instant::now();
    let put_at = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicUsize::new(0));
    let round_done = Arc::new(Notify::new());
    let watchers = global.clients.max(1);
    let (stop_tx, stop_rx) = signal::channel(false);
    let mut receivers = Vec::new();
    for (c, conn) in conns.into_iter().enumerate() {
        let n = (0..watchers)
            .filter(|w| w % global.conns.max(1) == c)
            .count();
        if n == 0 {
            continue;
        }
        let creates = (0..n).map(|_| create(key.clone(), 0)).collect();
        let mut stream = Stream::open(conn, creates).await?;
        for _ in 0..n {
            stream.created().await?;
        }
        let (put_at, received, round_done, mut stop) = (
            put_at.clone(),
            received.clone(),
            round_done.clone(),
            stop_rx.clone(),
        );
        receivers.push(tokio::spawn(async move {
            let _keep_open = stream.tx;
            let mut rx = stream.rx;
            let mut results = Results::default();
            while let Some(resp) = next_until(&mut rx, &mut stop).await {
                let now = base.elapsed().as_nanos() as u64;
                for _ in &resp.events {
                    let at = put_at.load(Ordering::Acquire);
                    results.ok(Duration::from_nanos(now.saturating_sub(at)));
                    if received.fetch_add(1, Ordering::AcqRel) + 1 == watchers {
                        round_done.notify_one();
                    }
                }
            }
            results
        }));
    }

    let limiter = Limiter::new(args.put_rate);
    let start = Instant::now();
    let mut kv = KvClient::new(putter);
    for _ in 0..args.total {
        limiter.wait().await;
        received.store(0, Ordering::Release);
        // Stamped before the put answers, as the events may arrive first; etcd's tool stamps
        // after, which its watchers wait for.
        put_at.store(base.elapsed().as_nanos() as u64, Ordering::Release);
        let put = kv.put(PutRequest {
            key: key.clone(),
            value: value.clone(),
            ..Default::default()
        });
        put.await
            .map_err(|e| format!("Failed to Put for watch latency benchmark: {}", e.message()))?;
        if tokio::time::timeout(EVENT_GRACE, round_done.notified())
            .await
            .is_err()
            && received.load(Ordering::Acquire) < watchers
        {
            return Err("watch events did not arrive".to_owned());
        }
    }
    let total = start.elapsed();
    let _ = stop_tx.send(true);
    let mut results = Results::default();
    for r in receivers {
        if let Ok(one) = r.await {
            results.merge(one);
        }
    }
    print!("{}", Report::new(results, total, global.precise));
    Ok(())
}
