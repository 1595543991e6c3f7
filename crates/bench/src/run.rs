//! Drives `--clients` clients through a fixed number of requests: each client takes the next
//! request number until all are taken, as etcd's benchmark feeds its clients from one queue.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::conn::{Conn, Limiter};
use crate::report::Results;

/// Runs requests `0..total` over `clients`, paced by `limiter`. `request(conn, i)` sends
/// request `i` and says which of `classes` result sets it counts in (txn-mixed tells reads
/// from writes; others have one). Returns the results per class and the wall time.
pub async fn requests<F, Fut>(
    clients: Vec<Conn>,
    total: usize,
    limiter: Limiter,
    classes: usize,
    request: F,
) -> (Vec<Results>, Duration)
where
    F: Fn(Conn, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = (usize, Result<(), String>)> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let limiter = Arc::new(limiter);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients.len());
    for conn in clients {
        let (next, limiter, request) = (next.clone(), limiter.clone(), request.clone());
        tasks.push(tokio::spawn(async move {
            let mut results: Vec<Results> = (0..classes).map(|_| Results::default()).collect();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return results;
                }
                limiter.wait().await;
                let st = Instant::now();
                let (class, outcome) = request(conn.clone(), i).await;
                results[class].record(st, outcome);
            }
        }));
    }
    let mut merged: Vec<Results> = (0..classes).map(|_| Results::default()).collect();
    for task in tasks {
        if let Ok(results) = task.await {
            for (all, one) in merged.iter_mut().zip(results) {
                all.merge(one);
            }
        }
    }
    (merged, start.elapsed())
}

/// A key of `size` bytes holding `n` as Go's `binary.PutVarint` writes it, zero-padded, as
/// etcd's benchmark makes its keys.
pub fn varint_key(size: usize, n: i64) -> Vec<u8> {
    let mut key = vec![0u8; size.max(1)];
    let mut x = ((n << 1) ^ (n >> 63)) as u64;
    let mut i = 0;
    while x >= 0x80 && i < key.len() {
        key[i] = (x as u8) | 0x80;
        x >>= 7;
        i += 1;
    }
    if i < key.len() {
        key[i] = x as u8;
    }
    key
}

/// `n` random bytes (values, as etcd's benchmark makes them).
pub fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_go_varints() {
        assert_eq!(varint_key(8, 0), vec![0; 8]);
        assert_eq!(varint_key(8, 1), vec![2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(varint_key(4, 64), vec![0x80, 0x01, 0, 0]);
        assert_eq!(varint_key(2, -1), vec![1, 0]);
    }
}
