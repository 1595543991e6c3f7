//! Traffic for fault runs: clients that run gets, puts and compare-and-swaps on a few keys
//! through the `etcd-client` crate, each against one member at a time, recording every
//! operation ([`crate::history`]); and watchers that keep a watch on those keys open across
//! failures, recording what they receive ([`crate::watch_check`]).
//!
//! A client sends one operation at a time to the member it is using; after an error or a
//! timeout it moves on to the next member in the list. Every operation has a deadline; a write
//! that misses it or fails is recorded as unknown, a read as failed. Written values are unique:
//! `c<client>.<n>`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::history::{Op, OpKind, OpResult};
use crate::watch_check::{Event, WatchRecord, WatchSegment};

/// How long a client waits after a failed operation before the next (on another member).
const BACKOFF: Duration = Duration::from_millis(50);

/// How long a watch may take to be created before the watcher tries another member.
const WATCH_CREATE_TIMEOUT: Duration = Duration::from_secs(3);

/// How often a watcher with an open stream looks at its stop conditions.
const WATCH_TICK: Duration = Duration::from_millis(200);

/// What traffic to run.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    /// Keys are `<prefix>0`, `<prefix>1`, …; watchers watch the prefix.
    pub prefix: String,
    pub keys: usize,
    pub clients: usize,
    pub watchers: usize,
    /// The deadline of one operation.
    pub op_timeout: Duration,
    /// Pause between two operations of one client, at most (uniformly random).
    pub think_time: Duration,
    pub seed: u64,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            prefix: "lin/".to_owned(),
            keys: 4,
            clients: 4,
            watchers: 3,
            op_timeout: Duration::from_secs(2),
            think_time: Duration::from_millis(5),
            seed: 0,
        }
    }
}

impl WorkloadConfig {
    pub fn key(&self, index: usize) -> String {
        format!("{}{index}", self.prefix)
    }
}

/// A member as clients see it: its name (for reports) and `127.0.0.1:PORT`.
pub type Endpoint = (String, String);

/// The operations recorded so far, with the instant their times count from.
#[derive(Clone)]
pub struct Recorder {
    started: Instant,
    ops: Arc<Mutex<Vec<Op>>>,
    op_timeout: Duration,
}

impl Recorder {
    pub fn new(started: Instant, op_timeout: Duration) -> Recorder {
        Recorder {
            started,
            ops: Arc::new(Mutex::new(Vec::new())),
            op_timeout,
        }
    }

    /// Runs one operation with the deadline, records it, and returns its result.
    pub async fn execute(
        &self,
        client_id: usize,
        member: &str,
        client: &mut Client,
        key: &str,
        kind: OpKind,
    ) -> OpResult {
        let call = self.started.elapsed();
        let outcome = tokio::time::timeout(self.op_timeout, perform(client, key, &kind)).await;
        let returned = self.started.elapsed();
        let (result, ret) = match outcome {
            Ok(Ok(result)) => (result, Some(returned)),
            Ok(Err(e)) => error_result(&kind, e.to_string(), returned),
            Err(_) => error_result(
                &kind,
                format!("no answer within {:?}", self.op_timeout),
                returned,
            ),
        };
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        let op = Op {
            id: ops.len(),
            client: client_id,
            member: member.to_owned(),
            key: key.to_owned(),
            kind,
            call,
            ret,
            result: result.clone(),
        };
        ops.push(op);
        result
    }

    /// Every operation so far, numbered in order of invocation.
    pub fn ops(&self) -> Vec<Op> {
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone();
        ops.sort_by_key(|op| (op.call, op.client));
        for (id, op) in ops.iter_mut().enumerate() {
            op.id = id;
        }
        ops
    }
}

/// An operation without an answer: a read certainly changed nothing; a write may have taken
/// effect, so its result is unknown and it has no return time.
fn error_result(kind: &OpKind, error: String, returned: Duration) -> (OpResult, Option<Duration>) {
    let error = error.replace('\n', " ");
    match kind {
        OpKind::Get => (OpResult::Failed(error), Some(returned)),
        OpKind::Put { .. } | OpKind::Cas { .. } => (OpResult::Unknown(error), None),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn perform(
    client: &mut Client,
    key: &str,
    kind: &OpKind,
) -> Result<OpResult, etcd_client::Error> {
    let revision_of = |header: Option<&etcd_client::ResponseHeader>| {
        header.map_or(0, etcd_client::ResponseHeader::revision)
    };
    match kind {
        OpKind::Get => {
            let response = client.get(key, None).await?;
            let kv = response.kvs().first();
            Ok(OpResult::Get {
                value: kv.map(|kv| text(kv.value())),
                mod_revision: kv.map_or(0, |kv| kv.mod_revision()),
                revision: revision_of(response.header()),
            })
        }
        OpKind::Put { value } => {
            let response = client.put(key, value.as_str(), None).await?;
            Ok(OpResult::Put {
                revision: revision_of(response.header()),
            })
        }
        OpKind::Cas { expected, value } => {
            let compare = match expected {
                Some(expected) => Compare::value(key, CompareOp::Equal, expected.as_str()),
                None => Compare::version(key, CompareOp::Equal, 0),
            };
            let txn = Txn::new()
                .when([compare])
                .and_then([TxnOp::put(key, value.as_str(), None)])
                .or_else([TxnOp::get(key, None)]);
            let response = client.txn(txn).await?;
            let revision = revision_of(response.header());
            if response.succeeded() {
                return Ok(OpResult::Cas {
                    succeeded: true,
                    current: None,
                    mod_revision: 0,
                    revision,
                });
            }
            let read = response.op_responses().into_iter().find_map(|r| match r {
                TxnOpResponse::Get(get) => Some(get),
                _ => None,
            });
            let kv = read.as_ref().and_then(|r| r.kvs().first());
            Ok(OpResult::Cas {
                succeeded: false,
                current: kv.map(|kv| text(kv.value())),
                mod_revision: kv.map_or(0, |kv| kv.mod_revision()),
                revision,
            })
        }
    }
}

/// A lazily connecting client for `127.0.0.1:PORT`.
pub async fn connect(endpoint: &str) -> Option<Client> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
    Client::connect([format!("http://{endpoint}")], Some(options))
        .await
        .ok()
}

/// State shared by the workload's tasks and the test.
struct Shared {
    config: WorkloadConfig,
    recorder: Recorder,
    endpoints: Mutex<Vec<Endpoint>>,
    /// Clients stop starting operations.
    stop_clients: AtomicBool,
    /// Watchers stop once they have received this revision (0: not yet set).
    watch_until: AtomicI64,
    /// Watchers stop at once.
    stop_watchers: AtomicBool,
}

impl Shared {
    fn endpoints(&self) -> Vec<Endpoint> {
        self.endpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Running clients and watchers.
pub struct Workload {
    shared: Arc<Shared>,
    clients: Vec<JoinHandle<()>>,
    watchers: Vec<(Arc<Mutex<WatchRecord>>, JoinHandle<()>)>,
}

impl Workload {
    /// Starts the clients and watchers on `runtime`. Times in the history count from
    /// `started`.
    pub fn start(
        runtime: &Handle,
        endpoints: Vec<Endpoint>,
        config: WorkloadConfig,
        started: Instant,
    ) -> Workload {
        let shared = Arc::new(Shared {
            recorder: Recorder::new(started, config.op_timeout),
            config: config.clone(),
            endpoints: Mutex::new(endpoints),
            stop_clients: AtomicBool::new(false),
            watch_until: AtomicI64::new(0),
            stop_watchers: AtomicBool::new(false),
        });
        let clients = (0..config.clients)
            .map(|id| {
                let rng = StdRng::seed_from_u64(config.seed.wrapping_add(id as u64 * 7919));
                runtime.spawn(client_loop(id, shared.clone(), rng))
            })
            .collect();
        let watchers = (0..config.watchers)
            .map(|id| {
                let record = Arc::new(Mutex::new(WatchRecord {
                    watcher: id,
                    ..WatchRecord::default()
                }));
                // Even watchers replay the whole history; odd ones start at the present.
                let start = (id % 2 == 0).then_some(1);
                let task = runtime.spawn(watch_loop(id, shared.clone(), record.clone(), start));
                (record, task)
            })
            .collect();
        Workload {
            shared,
            clients,
            watchers,
        }
    }

    /// The recorder, for recording further operations (final reads) in the same history.
    pub fn recorder(&self) -> Recorder {
        self.shared.recorder.clone()
    }

    /// Replaces the members clients and watchers use (after membership changes).
    pub fn set_endpoints(&self, endpoints: Vec<Endpoint>) {
        *self
            .shared
            .endpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = endpoints;
    }

    /// Stops the clients and waits for their last operations (each has a deadline).
    pub async fn stop_clients(&mut self) {
        self.shared.stop_clients.store(true, Ordering::SeqCst);
        for client in self.clients.drain(..) {
            let _ = client.await;
        }
    }

    /// Lets the watchers run until each has received `revision`, or `timeout` passes; then
    /// stops them and returns their records.
    pub async fn finish_watchers(&mut self, revision: i64, timeout: Duration) -> Vec<WatchRecord> {
        self.shared.watch_until.store(revision, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut records = Vec::new();
        for (record, task) in self.watchers.drain(..) {
            let mut task = task;
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                self.shared.stop_watchers.store(true, Ordering::SeqCst);
                task.abort();
                let _ = task.await;
            }
            let record = record.lock().unwrap_or_else(|e| e.into_inner()).clone();
            records.push(record);
        }
        records
    }
}

async fn client_loop(id: usize, shared: Arc<Shared>, mut rng: StdRng) {
    let config = &shared.config;
    let mut connections: HashMap<String, Client> = HashMap::new();
    let mut pick = id;
    // What this client last saw in each key: the expected value of its next swap.
    let mut last_seen: HashMap<String, Option<String>> = HashMap::new();
    let mut seq = 0u64;
    while !shared.stop_clients.load(Ordering::SeqCst) {
        let endpoints = shared.endpoints();
        if endpoints.is_empty() {
            tokio::time::sleep(BACKOFF).await;
            continue;
        }
        let (name, endpoint) = endpoints[pick % endpoints.len()].clone();
        if !connections.contains_key(&endpoint) {
            match connect(&endpoint).await {
                Some(client) => {
                    connections.insert(endpoint.clone(), client);
                }
                None => {
                    pick += 1;
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
            }
        }
        let client = connections.get_mut(&endpoint).expect("connected above");
        let key = config.key(rng.random_range(0..config.keys));
        seq += 1;
        let value = format!("c{id}.{seq}");
        let kind = match rng.random_range(0..10) {
            0..=3 => OpKind::Get,
            4..=6 => OpKind::Put { value },
            _ => OpKind::Cas {
                expected: last_seen.get(&key).cloned().flatten(),
                value,
            },
        };
        let written = kind.written().map(str::to_owned);
        let result = shared.recorder.execute(id, &name, client, &key, kind).await;
        match result {
            OpResult::Get { value, .. } => {
                last_seen.insert(key, value);
            }
            OpResult::Put { .. }
            | OpResult::Cas {
                succeeded: true, ..
            } => {
                last_seen.insert(key, written);
            }
            OpResult::Cas { current, .. } => {
                last_seen.insert(key, current);
            }
            OpResult::Failed(_) | OpResult::Unknown(_) => {
                pick += 1;
                tokio::time::sleep(BACKOFF).await;
                continue;
            }
        }
        let think = rng.random_range(0..=config.think_time.as_micros() as u64);
        tokio::time::sleep(Duration::from_micros(think)).await;
    }
}

fn lock_record(record: &Mutex<WatchRecord>) -> std::sync::MutexGuard<'_, WatchRecord> {
    record.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps one watch on the prefix open, moving to another member when a stream breaks and
/// resuming after the last revision received. `start`: the first revision to ask for
/// (`None`: from now on).
async fn watch_loop(
    id: usize,
    shared: Arc<Shared>,
    record: Arc<Mutex<WatchRecord>>,
    start: Option<i64>,
) {
    let mut pick = id;
    let mut next = start;
    let done = |shared: &Shared, record: &Mutex<WatchRecord>| {
        let until = shared.watch_until.load(Ordering::SeqCst);
        shared.stop_watchers.load(Ordering::SeqCst)
            || (until > 0 && lock_record(record).last_revision() >= until)
    };
    while !done(&shared, &record) {
        let endpoints = shared.endpoints();
        if endpoints.is_empty() {
            tokio::time::sleep(BACKOFF).await;
            continue;
        }
        let (name, endpoint) = endpoints[pick % endpoints.len()].clone();
        pick += 1;
        let Some(mut client) = connect(&endpoint).await else {
            tokio::time::sleep(BACKOFF).await;
            continue;
        };
        let mut options = WatchOptions::new().with_prefix();
        if let Some(revision) = next {
            options = options.with_start_revision(revision);
        }
        let prefix = shared.config.prefix.clone();
        let created = tokio::time::timeout(WATCH_CREATE_TIMEOUT, async {
            let mut stream = client.watch(prefix, Some(options)).await?;
            let first = stream.message().await?;
            Ok::<_, etcd_client::Error>((stream, first))
        })
        .await;
        let (mut stream, first) = match created {
            Ok(Ok((stream, Some(first)))) => (stream, first),
            _ => {
                tokio::time::sleep(BACKOFF).await;
                continue;
            }
        };
        if !first.created() {
            lock_record(&record).anomalies.push(format!(
                "watcher {id}: the first response on {name} was not a created response"
            ));
        }
        if first.canceled() {
            let why = format!("canceled at creation: {}", first.cancel_reason());
            if first.compact_revision() != 0 {
                lock_record(&record).anomalies.push(format!(
                    "watcher {id}: {why} (compacted at {}), though nothing is compacted",
                    first.compact_revision()
                ));
            }
            tokio::time::sleep(BACKOFF).await;
            continue;
        }
        let start_revision = match next {
            Some(revision) => revision,
            None => first.header().map_or(0, |h| h.revision()) + 1,
        };
        next = Some(start_revision);
        let segment = {
            let mut record = lock_record(&record);
            record.segments.push(WatchSegment {
                member: name.clone(),
                start_revision,
                responses: Vec::new(),
                ended: String::new(),
            });
            record.segments.len() - 1
        };
        let end = |why: String| {
            lock_record(&record).segments[segment].ended = why;
        };
        loop {
            if done(&shared, &record) {
                break;
            }
            if !shared.endpoints().iter().any(|(n, _)| *n == name) {
                end(format!("{name} left the cluster"));
                break;
            }
            let message = match tokio::time::timeout(WATCH_TICK, stream.message()).await {
                Err(_) => continue,
                Ok(message) => message,
            };
            let response = match message {
                Ok(Some(response)) => response,
                Ok(None) => {
                    end("stream closed".to_owned());
                    break;
                }
                Err(e) => {
                    end(format!("error: {e}"));
                    break;
                }
            };
            if response.compact_revision() != 0 {
                lock_record(&record).anomalies.push(format!(
                    "watcher {id} on {name}: compacted at {}, though nothing is compacted",
                    response.compact_revision()
                ));
            }
            let events: Vec<Event> = response
                .events()
                .iter()
                .filter_map(|event| {
                    let kv = event.kv()?;
                    Some(Event {
                        revision: kv.mod_revision(),
                        key: text(kv.key()),
                        value: match event.event_type() {
                            EventType::Put => Some(text(kv.value())),
                            EventType::Delete => None,
                        },
                    })
                })
                .collect();
            if let Some(last) = events.last() {
                next = Some(last.revision + 1);
            }
            if !events.is_empty() {
                lock_record(&record).segments[segment]
                    .responses
                    .push(events);
            }
            if response.canceled() {
                end(format!("canceled: {}", response.cancel_reason()));
                break;
            }
        }
        tokio::time::sleep(BACKOFF).await;
    }
}

/// Reads the whole event history of `prefix` from one member: its current revision (a
/// linearizable read), then a watch from revision 1 until the event at that revision.
/// Returns (revision, events); `None` if it did not complete within `timeout`.
pub async fn event_log(
    endpoint: &str,
    prefix: &str,
    timeout: Duration,
) -> Option<(i64, Vec<Event>)> {
    tokio::time::timeout(timeout, async {
        let mut client = connect(endpoint).await?;
        let options = etcd_client::GetOptions::new()
            .with_prefix()
            .with_count_only();
        let revision = client
            .get(prefix, Some(options))
            .await
            .ok()?
            .header()?
            .revision();
        let options = WatchOptions::new().with_prefix().with_start_revision(1);
        let mut stream = client.watch(prefix, Some(options)).await.ok()?;
        let mut events = Vec::new();
        while events.last().is_none_or(|e: &Event| e.revision < revision) && revision > 1 {
            let response = stream.message().await.ok()??;
            if response.canceled() {
                return None;
            }
            for event in response.events() {
                let kv = event.kv()?;
                events.push(Event {
                    revision: kv.mod_revision(),
                    key: text(kv.key()),
                    value: match event.event_type() {
                        EventType::Put => Some(text(kv.value())),
                        EventType::Delete => None,
                    },
                });
            }
        }
        Some((revision, events))
    })
    .await
    .ok()
    .flatten()
}
