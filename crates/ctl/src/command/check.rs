//! `check perf` and `check datascale`: etcdctl's load models, driven by as many clients as
//! etcdctl opens, with its PASS/FAIL lines and exit codes.
//!
//! etcdctl draws its progress bar on stdout whatever stdout is; oxcdctl draws one only when
//! stdout is a terminal, so piped output holds the result lines alone.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use oxcd_api::etcdserverpb::{CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest};
use oxcd_client::{prefix_end, Client};
use rand::Rng;
use tokio::sync::{mpsc, Mutex};

use crate::cli::{CheckDatascaleArgs, CheckPerfArgs};
use crate::context::Ctx;
use crate::exit::{code, error_text, CmdResult, Exit};
use crate::go;

/// One `check perf` workload: puts per second, concurrent clients, seconds.
struct PerfModel {
    rate: u32,
    clients: usize,
    seconds: u64,
}

/// One `check datascale` workload: keys written, concurrent clients.
struct DatascaleModel {
    keys: usize,
    clients: usize,
}

/// Bytes of each datascale key and value (etcdctl writes 512 + 512, and reports 1024).
const DATASCALE_KEY_BYTES: usize = 512;
const DATASCALE_VALUE_BYTES: usize = 512;
const PERF_KEY_BYTES: usize = 256;
const PERF_VALUE_BYTES: usize = 1024;

/// The workload names etcdctl accepts, long and short.
fn model_name(load: &str) -> Result<&'static str, Exit> {
    match load {
        "s" | "small" => Ok("s"),
        "m" | "medium" => Ok("m"),
        "l" | "large" => Ok("l"),
        "xl" | "xLarge" => Ok("xl"),
        other => Err(Exit::new(
            code::BAD_FEATURE,
            format!("unknown load option {other}"),
        )),
    }
}

fn perf_model(load: &str) -> Result<PerfModel, Exit> {
    let (rate, clients) = match model_name(load)? {
        "s" => (150, 50),
        "m" => (1000, 200),
        "l" => (8000, 500),
        _ => (15000, 1000),
    };
    Ok(PerfModel {
        rate,
        clients,
        seconds: 60,
    })
}

fn datascale_model(load: &str) -> Result<DatascaleModel, Exit> {
    let (keys, clients) = match model_name(load)? {
        "s" => (10_000, 50),
        "m" => (100_000, 200),
        "l" => (1_000_000, 500),
        // 3 versions of 1M keys.
        _ => (3_000_000, 1000),
    };
    Ok(DatascaleModel { keys, clients })
}

pub async fn perf(ctx: &Ctx, a: CheckPerfArgs) -> CmdResult {
    let model = perf_model(&a.load)?;
    let prefix = a.prefix;
    let clients = connect_all(ctx, model.clients).await?;
    refuse_used_prefix(
        &clients[0],
        &prefix,
        Some(Duration::from_secs(model.seconds)),
    )
    .await?;

    let bar = progress(model.seconds);
    let (ops, workers) = start_workers(&clients, None);
    let rate = model.rate;
    let seconds = model.seconds;
    let key_prefix = prefix.clone();
    // At most `rate` puts a second, each handed to the next free worker, as etcdctl's
    // limiter with a burst of one: a late put does not let the next ones catch up. Times
    // are kept exact so that the timer's millisecond steps do not slow the rate.
    let producer = tokio::spawn(async move {
        let period = Duration::from_secs(1) / rate;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        let mut next = tokio::time::Instant::now();
        loop {
            let now = tokio::time::Instant::now();
            if next > now {
                tokio::time::sleep_until(next).await;
            } else {
                next = now;
            }
            if next >= deadline {
                break;
            }
            let put = random_put(&key_prefix, PERF_KEY_BYTES, PERF_VALUE_BYTES);
            if ops.send(put).await.is_err() {
                break;
            }
            next += period;
        }
    });
    let ticker = bar.clone().map(|bar| {
        tokio::spawn(async move {
            for _ in 0..seconds {
                tokio::time::sleep(Duration::from_secs(1)).await;
                bar.inc(1);
            }
        })
    });
    let started = Instant::now();
    let _ = producer.await;
    let stats = Stats::of(workers.join().await, started.elapsed());
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }

    let revision = delete_prefix(&clients[0], &prefix, Some(Duration::from_secs(30))).await?;
    after_load(ctx, &clients[0], revision, a.auto_compact, a.auto_defrag).await?;

    let mut pass = true;
    if !stats.errors.is_empty() {
        println!("FAIL: too many errors");
        for (error, count) in &stats.errors {
            println!("FAIL: ERROR({error}) -> {count}");
        }
        pass = false;
    }
    let writes = stats.rps as i64 + 1;
    if stats.rps / f64::from(model.rate) <= 0.9 {
        println!("FAIL: Throughput too low: {writes} writes/s");
        pass = false;
    } else {
        println!("PASS: Throughput is {writes} writes/s");
    }
    // etcdctl's FAIL lines for latency carry no FAIL: prefix; kept as they are.
    if stats.slowest > 0.5 {
        println!("Slowest request took too long: {:.6}s", stats.slowest);
        pass = false;
    } else {
        println!("PASS: Slowest request took {:.6}s", stats.slowest);
    }
    if stats.stddev > 0.1 {
        println!("Stddev too high: {}s", go_float(stats.stddev));
        pass = false;
    } else {
        println!("PASS: Stddev is {}s", go_float(stats.stddev));
    }
    if pass {
        println!("PASS");
        Ok(())
    } else {
        println!("FAIL");
        Err(Exit::silent(code::ERROR))
    }
}

pub async fn datascale(ctx: &Ctx, a: CheckDatascaleArgs) -> CmdResult {
    let model = datascale_model(&a.load)?;
    let prefix = a.prefix;
    let clients = connect_all(ctx, model.clients).await?;
    refuse_used_prefix(&clients[0], &prefix, None).await?;

    let first = ctx.flags.endpoints.first().cloned().unwrap_or_default();
    let Some(before) = resident_memory(ctx, &first) else {
        println!("FAIL: Could not read process_resident_memory_bytes before the put operations.");
        return Err(Exit::silent(code::ERROR));
    };
    println!(
        "Start data scale check for work load [{} key-value pairs, {} bytes per key-value, {} concurrent clients].",
        model.keys,
        DATASCALE_KEY_BYTES + DATASCALE_VALUE_BYTES,
        model.clients
    );
    let bar = progress(model.keys as u64);
    let (ops, workers) = start_workers(&clients, bar.clone());
    let keys = model.keys;
    let key_prefix = prefix.clone();
    let producer = tokio::spawn(async move {
        for _ in 0..keys {
            let put = random_put(&key_prefix, DATASCALE_KEY_BYTES, DATASCALE_VALUE_BYTES);
            if ops.send(put).await.is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let _ = producer.await;
    let stats = Stats::of(workers.join().await, started.elapsed());
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }

    let Some(after) = resident_memory(ctx, &first) else {
        println!("FAIL: Could not read process_resident_memory_bytes after the put operations.");
        return Err(Exit::silent(code::ERROR));
    };
    let revision = delete_prefix(&clients[0], &prefix, None).await?;
    after_load(ctx, &clients[0], revision, a.auto_compact, a.auto_defrag).await?;

    if !stats.errors.is_empty() {
        println!("FAIL: too many errors");
        for (error, count) in &stats.errors {
            println!("FAIL: ERROR({error}) -> {count}");
        }
        return Err(Exit::silent(code::ERROR));
    }
    let used_mb = (after - before) / (1024.0 * 1024.0);
    println!("PASS: Approximate system memory used : {used_mb:.2} MB.");
    Ok(())
}

/// One client (one connection) per concurrent worker, as etcdctl opens them.
async fn connect_all(ctx: &Ctx, count: usize) -> Result<Vec<Client>, Exit> {
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        clients.push(ctx.client().await?);
    }
    Ok(clients)
}

/// The range of every key under `prefix`; every key when it is empty (clientv3's
/// `WithPrefix`).
fn prefix_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        (vec![0], vec![0])
    } else {
        (prefix.as_bytes().to_vec(), prefix_end(prefix.as_bytes()))
    }
}

/// Refuses to run on a prefix that holds keys: the check deletes the prefix at its end.
async fn refuse_used_prefix(client: &Client, prefix: &str, timeout: Option<Duration>) -> CmdResult {
    let (key, range_end) = prefix_range(prefix);
    let request = RangeRequest {
        key,
        range_end,
        limit: 1,
        ..Default::default()
    };
    let response = bounded(timeout, client.kv().range(request)).await?;
    if !response.kvs.is_empty() {
        return Err(Exit::new(
            code::INVALID_INPUT,
            format!(
                "prefix {} has keys. Delete with etcdctl del --prefix {prefix} first",
                go::quote(prefix.as_bytes())
            ),
        ));
    }
    Ok(())
}

/// Deletes the keys the check wrote; the revision of the delete.
async fn delete_prefix(
    client: &Client,
    prefix: &str,
    timeout: Option<Duration>,
) -> Result<i64, Exit> {
    let (key, range_end) = prefix_range(prefix);
    let request = DeleteRangeRequest {
        key,
        range_end,
        ..Default::default()
    };
    let response = bounded(timeout, client.kv().delete_range(request)).await?;
    Ok(response.header.map_or(0, |h| h.revision))
}

/// `--auto-compact` (physical, at the delete's revision) and `--auto-defrag` (every
/// endpoint), with etcdctl's lines.
async fn after_load(
    ctx: &Ctx,
    client: &Client,
    revision: i64,
    compact: bool,
    defrag: bool,
) -> CmdResult {
    let timeout = Some(Duration::from_secs(30));
    if compact {
        println!("Compacting with revision {revision}");
        let request = CompactionRequest {
            revision,
            physical: true,
        };
        bounded(timeout, client.kv().compact(request)).await?;
        println!("Compacted with revision {revision}");
    }
    if defrag {
        for ep in &ctx.flags.endpoints {
            let quoted = go::quote(ep.as_bytes());
            println!("Defragmenting {quoted}");
            let one = ctx.client_on(std::slice::from_ref(ep)).await?;
            bounded(timeout, one.maintenance().defragment_at(ep)).await?;
            println!("Defragmented {quoted}");
        }
    }
    Ok(())
}

/// A request, under a deadline when given; failures end the command with exit 1.
async fn bounded<T>(
    timeout: Option<Duration>,
    request: impl std::future::Future<Output = oxcd_client::Result<T>>,
) -> Result<T, Exit> {
    let result = match timeout {
        Some(t) => tokio::time::timeout(t, request)
            .await
            .map_err(|_| Exit::new(code::ERROR, "context deadline exceeded"))?,
        None => request.await,
    };
    result.map_err(|e| Exit::request(code::ERROR, &e))
}

/// A put of `value_bytes` zero bytes at `prefix` + a key of `key_bytes` bytes that starts
/// with a random number (Go's varint encoding, as etcdctl) and is zero-padded.
fn random_put(prefix: &str, key_bytes: usize, value_bytes: usize) -> PutRequest {
    let mut key = prefix.as_bytes().to_vec();
    let mut suffix = vec![0u8; key_bytes];
    let n: i64 = rand::rng().random_range(0..i64::MAX);
    put_varint(&mut suffix, n);
    key.extend_from_slice(&suffix);
    PutRequest {
        key,
        value: vec![0; value_bytes],
        ..Default::default()
    }
}

/// Go's `binary.PutVarint`: zig-zag, then 7 bits a byte, low bits first.
fn put_varint(buf: &mut [u8], n: i64) {
    let mut u = ((n << 1) ^ (n >> 63)) as u64;
    let mut i = 0;
    while u >= 0x80 {
        buf[i] = (u as u8) | 0x80;
        u >>= 7;
        i += 1;
    }
    buf[i] = u as u8;
}

/// The outcome of one put: its latency, or the error text.
type Outcome = Result<Duration, String>;

/// The workers taking puts from one queue, one client each.
struct Workers(Vec<tokio::task::JoinHandle<Vec<Outcome>>>);

impl Workers {
    async fn join(self) -> Vec<Outcome> {
        let mut all = Vec::new();
        for worker in self.0 {
            all.extend(worker.await.unwrap_or_default());
        }
        all
    }
}

/// Starts one worker per client on a queue as deep as there are clients (etcdctl's
/// channel); `bar`, when given, advances by one per finished put.
fn start_workers(
    clients: &[Client],
    bar: Option<ProgressBar>,
) -> (mpsc::Sender<PutRequest>, Workers) {
    let (ops, queue) = mpsc::channel::<PutRequest>(clients.len());
    let queue = Arc::new(Mutex::new(queue));
    let workers = clients
        .iter()
        .cloned()
        .map(|client| {
            let queue = queue.clone();
            let bar = bar.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                loop {
                    let Some(put) = queue.lock().await.recv().await else {
                        break;
                    };
                    let started = Instant::now();
                    let outcome = match client.kv().put(put).await {
                        Ok(_) => Ok(started.elapsed()),
                        Err(e) => Err(error_text(&e)),
                    };
                    outcomes.push(outcome);
                    if let Some(bar) = &bar {
                        bar.inc(1);
                    }
                }
                outcomes
            })
        })
        .collect();
    (ops, Workers(workers))
}

/// etcd's `report.Stats` over the outcomes: requests per second over the whole run,
/// slowest latency and standard deviation in seconds, errors by text.
struct Stats {
    rps: f64,
    slowest: f64,
    stddev: f64,
    errors: BTreeMap<String, u64>,
}

impl Stats {
    fn of(outcomes: Vec<Outcome>, total: Duration) -> Stats {
        let mut latencies = Vec::new();
        let mut errors = BTreeMap::new();
        for outcome in outcomes {
            match outcome {
                Ok(latency) => latencies.push(latency.as_secs_f64()),
                Err(e) => *errors.entry(e).or_insert(0) += 1,
            }
        }
        let count = latencies.len() as f64;
        let mean = latencies.iter().sum::<f64>() / count;
        let variance = latencies
            .iter()
            .map(|l| (l - mean) * (l - mean))
            .sum::<f64>()
            / count;
        Stats {
            rps: count / total.as_secs_f64(),
            slowest: latencies.iter().copied().fold(0.0, f64::max),
            stddev: variance.sqrt(),
            errors,
        }
    }
}

/// Go's `%f` of a float: six decimals, `NaN` for no latencies at all.
fn go_float(x: f64) -> String {
    if x.is_nan() {
        "NaN".to_owned()
    } else {
        format!("{x:.6}")
    }
}

/// A progress bar on stdout (where etcdctl draws its own), only when stdout is a terminal.
fn progress(length: u64) -> Option<ProgressBar> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stdout());
    bar.set_style(
        ProgressStyle::with_template("[{bar:40}] {pos}/{len} {percent:>3}% {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    Some(bar)
}

/// The member's resident memory from its `/metrics` (`process_resident_memory_bytes`), as
/// etcdctl reads it; a failure is printed as etcdctl prints it and gives `None`.
fn resident_memory(ctx: &Ctx, endpoint: &str) -> Option<f64> {
    const METRIC: &str = "process_resident_memory_bytes";
    let base = if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        endpoint.trim_end_matches('/').to_owned()
    } else {
        format!("http://{endpoint}")
    };
    let url = format!("{base}/metrics");
    let tls = if base.starts_with("https://") {
        // As etcdctl: the client certificate of --cert/--key; the CA of --cacert too.
        let f = &ctx.flags;
        let config = oxcd_client::TlsOptions::from_files(
            f.cacert.as_deref(),
            Some(f.cert.as_deref().unwrap_or_default()),
            Some(f.key.as_deref().unwrap_or_default()),
        )
        .and_then(|tls| tls.with_skip_verify(f.insecure_skip_tls_verify).to_rustls());
        match config {
            Ok(config) => Some(Arc::new(config)),
            Err(e) => {
                println!("client certificate error: {e}");
                return None;
            }
        }
    } else {
        None
    };
    let timeout = Some(Duration::from_secs(30));
    let response =
        match crate::http::request(&base, "GET", "/metrics", &[], "", timeout, tls.as_ref()) {
            Ok(response) => response,
            Err(e) => {
                println!("fetch error: Get {}: {e}", go::quote(url.as_bytes()));
                return None;
            }
        };
    let text = String::from_utf8_lossy(&response.body);
    let Some(value) = text
        .lines()
        .find_map(|line| line.strip_prefix(METRIC))
        .map(str::trim)
    else {
        println!("could not find: {METRIC}");
        return None;
    };
    match value.parse::<f64>() {
        Ok(bytes) if bytes != 0.0 => Some(bytes),
        Ok(_) => None,
        Err(_) => {
            println!(
                "parse error: strconv.ParseFloat: parsing {}: invalid syntax",
                go::quote(value.as_bytes())
            );
            None
        }
    }
}
