//! `put`, `range`, `txn-put` and `txn-mixed`.

use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::request_op::Request as Op;
use oxcd_api::etcdserverpb::{PutRequest, RangeRequest, RequestOp, TxnRequest};

use crate::conn::{Dialer, Limiter};
use crate::report::Report;
use crate::run::{random_bytes, requests, varint_key};
use crate::Global;

#[derive(clap::Args)]
pub struct PutArgs {
    /// Key size of put request
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value size of put request
    #[arg(long, default_value_t = 8)]
    val_size: usize,
    /// Maximum puts per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Total number of put requests
    #[arg(long, default_value_t = 10000)]
    total: usize,
    /// Maximum possible keys
    #[arg(long, default_value_t = 1)]
    key_space_size: i64,
    /// Use sequential keys
    #[arg(long)]
    sequential_keys: bool,
}

pub async fn put(global: &Global, args: PutArgs) -> Result<(), String> {
    check_key_space(args.key_space_size)?;
    let clients = Dialer::new(global)
        .await?
        .clients(global.clients, global.conns)
        .await?;
    let value = random_bytes(args.val_size);
    let (key_size, space, seq) = (args.key_size, args.key_space_size, args.sequential_keys);
    let (mut results, total) = requests(
        clients,
        args.total,
        Limiter::new(args.rate),
        1,
        move |conn, i| {
            let key = varint_key(key_size, pick(i, space, seq));
            let value = value.clone();
            async move {
                let outcome = KvClient::new(conn)
                    .put(PutRequest {
                        key,
                        value,
                        ..Default::default()
                    })
                    .await;
                (0, outcome.map(drop).map_err(|e| e.message().to_owned()))
            }
        },
    )
    .await;
    println!("{}", Report::new(results.remove(0), total, global.precise));
    Ok(())
}

#[derive(clap::Args)]
pub struct RangeArgs {
    /// The key to range over (its id differs from its name so that the global `--key`, the
    /// TLS key file, is still taken here)
    #[arg(id = "range-key", value_name = "KEY")]
    key: String,
    /// The end of the range (none: the key alone)
    range_end: Option<String>,
    /// Maximum range requests per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Total number of range requests
    #[arg(long, default_value_t = 10000)]
    total: usize,
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    consistency: String,
}

pub async fn range(global: &Global, args: RangeArgs) -> Result<(), String> {
    let serializable = serializable(&args.consistency)?;
    let clients = Dialer::new(global)
        .await?
        .clients(global.clients, global.conns)
        .await?;
    let req = RangeRequest {
        key: args.key.into_bytes(),
        range_end: args.range_end.unwrap_or_default().into_bytes(),
        serializable,
        ..Default::default()
    };
    let (mut results, total) = requests(
        clients,
        args.total,
        Limiter::new(args.rate),
        1,
        move |conn, _| {
            let req = req.clone();
            async move {
                let outcome = KvClient::new(conn).range(req).await;
                (0, outcome.map(drop).map_err(|e| e.message().to_owned()))
            }
        },
    )
    .await;
    print!("{}", Report::new(results.remove(0), total, global.precise));
    Ok(())
}

#[derive(clap::Args)]
pub struct TxnPutArgs {
    /// Key size of txn put
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value size of txn put
    #[arg(long, default_value_t = 8)]
    val_size: usize,
    /// Number of puts per txn
    #[arg(long, default_value_t = 1)]
    txn_ops: usize,
    /// Maximum txns per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Total number of txn requests
    #[arg(long, default_value_t = 10000)]
    total: usize,
    /// Maximum possible keys
    #[arg(long, default_value_t = 1)]
    key_space_size: i64,
}

pub async fn txn_put(global: &Global, args: TxnPutArgs) -> Result<(), String> {
    check_key_space(args.key_space_size)?;
    let clients = Dialer::new(global)
        .await?
        .clients(global.clients, global.conns)
        .await?;
    let value = random_bytes(args.val_size);
    let (key_size, space, ops) = (args.key_size, args.key_space_size, args.txn_ops);
    let (mut results, total) = requests(
        clients,
        args.total,
        Limiter::new(args.rate),
        1,
        move |conn, i| {
            let success = (0..ops)
                .map(|j| {
                    let key = varint_key(key_size, ((i * ops + j) as i64) % space);
                    put_op(key, value.clone())
                })
                .collect();
            async move {
                let outcome = KvClient::new(conn)
                    .txn(TxnRequest {
                        success,
                        ..Default::default()
                    })
                    .await;
                (0, outcome.map(drop).map_err(|e| e.message().to_owned()))
            }
        },
    )
    .await;
    println!("{}", Report::new(results.remove(0), total, global.precise));
    Ok(())
}

#[derive(clap::Args)]
pub struct TxnMixedArgs {
    /// Key size of mixed txn
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value size of mixed txn
    #[arg(long, default_value_t = 8)]
    val_size: usize,
    /// Maximum txns per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Total number of txn requests
    #[arg(long, default_value_t = 10000)]
    total: usize,
    /// Read operation range end key. By default, we do full range query with the default limit of 1000.
    #[arg(long, default_value = "")]
    end_key: String,
    /// Read operation range result limit
    #[arg(long, default_value_t = 1000)]
    limit: i64,
    /// Maximum possible keys
    #[arg(long, default_value_t = 1)]
    key_space_size: i64,
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    consistency: String,
    /// Read/write ops ratio
    #[arg(long, default_value_t = 1.0)]
    rw_ratio: f64,
}

pub async fn txn_mixed(global: &Global, args: TxnMixedArgs) -> Result<(), String> {
    check_key_space(args.key_space_size)?;
    let serializable = serializable(&args.consistency)?;
    let clients = Dialer::new(global)
        .await?
        .clients(global.clients, global.conns)
        .await?;
    let value = random_bytes(args.val_size);
    let read_share = args.rw_ratio / (1.0 + args.rw_ratio);
    // As etcd's tool: a read is a prefix range over every key, limited (an empty prefix is
    // sent as key "\0" with range end "\0", as etcd's client sends it).
    let read = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        limit: args.limit,
        serializable,
        ..Default::default()
    };
    let (key_size, space) = (args.key_size, args.key_space_size);
    const READ: usize = 0;
    const WRITE: usize = 1;
    let (mut results, total) = requests(
        clients,
        args.total,
        Limiter::new(args.rate),
        2,
        move |conn, i| {
            let (class, op) = if rand::random::<f64>() < read_share {
                (READ, Op::RequestRange(read.clone()))
            } else {
                let key = varint_key(key_size, i as i64 % space);
                (
                    WRITE,
                    Op::RequestPut(PutRequest {
                        key,
                        value: value.clone(),
                        ..Default::default()
                    }),
                )
            };
            async move {
                let outcome = KvClient::new(conn)
                    .txn(TxnRequest {
                        success: vec![RequestOp { request: Some(op) }],
                        ..Default::default()
                    })
                    .await;
                (class, outcome.map(drop).map_err(|e| e.message().to_owned()))
            }
        },
    )
    .await;
    let writes = results.remove(WRITE);
    let reads = results.remove(READ);
    print!("Total Read Ops: {}\nDetails:", reads.count());
    println!("{}", Report::new(reads, total, global.precise));
    print!("Total Write Ops: {}\nDetails:", writes.count());
    println!("{}", Report::new(writes, total, global.precise));
    Ok(())
}

fn put_op(key: Vec<u8>, value: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(PutRequest {
            key,
            value,
            ..Default::default()
        })),
    }
}

/// The key number for request `i`: in turn, or at random within the key space.
fn pick(i: usize, space: i64, sequential: bool) -> i64 {
    if sequential {
        i as i64 % space
    } else {
        rand::random_range(0..space)
    }
}

fn check_key_space(space: i64) -> Result<(), String> {
    if space <= 0 {
        return Err(format!("expected positive --key-space-size, got ({space})"));
    }
    Ok(())
}

/// `--consistency`, announced as etcd's tool announces it.
fn serializable(consistency: &str) -> Result<bool, String> {
    match consistency {
        "l" => {
            println!("bench with linearizable range");
            Ok(false)
        }
        "s" => {
            println!("bench with serializable range");
            Ok(true)
        }
        other => Err(format!("--consistency must be l or s, not {other:?}")),
    }
}
