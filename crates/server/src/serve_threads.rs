//! The threads that serve connections: one single-threaded tokio runtime per core.
//!
//! Each accepted connection is served from its first byte to its close on one of these
//! runtimes, picked in turn. Everything a unary request does on the async side (hyper's
//! connection task, the handler, the answer's write) then runs on one thread, and a put
//! crosses threads only to the raft thread and back. On tokio's work-stealing runtime the same
//! put also woke the other worker two to three times (the task woken by apply was queued
//! for whichever worker was idle, and that one woke a sibling to steal), and on a VM a wake-up
//! of a halted vCPU is what a request with one client in flight waits for.
//!
//! Nothing that may take long runs on these threads: scans, password hashing and snapshots go
//! to `spawn_blocking`, as on any runtime. The server's own loops (lessor, compactor, raft
//! transport) stay on the main runtime.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle};

/// The serving runtimes, started on first use.
struct ServeThreads {
    handles: Vec<Handle>,
    next: AtomicUsize,
}

static THREADS: OnceLock<ServeThreads> = OnceLock::new();

thread_local! {
    /// On a serving thread, its index.
    static CURRENT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Runs `task` on the next serving runtime. Sockets must be registered with that runtime's
/// reactor, so `task` takes them as std sockets and converts them itself.
pub fn spawn<F>(task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let threads = ServeThreads::get();
    if threads.handles.is_empty() {
        tokio::spawn(task);
        return;
    }
    let i = threads.next.fetch_add(1, Ordering::Relaxed) % threads.handles.len();
    threads.handles[i].spawn(task);
}

/// How many serving threads there are (starting them if need be).
pub fn count() -> usize {
    ServeThreads::get().handles.len()
}

/// Runs `task` on serving thread `i` (below [`count`]).
pub fn spawn_on<F>(i: usize, task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    ServeThreads::get().handles[i].spawn(task);
}

/// The index of the serving thread this is, if it is one.
pub fn current() -> Option<usize> {
    CURRENT.with(|c| c.get())
}

impl ServeThreads {
    fn get() -> &'static ServeThreads {
        THREADS.get_or_init(ServeThreads::start)
    }

    /// One runtime per core this process may run on. A runtime that cannot be started is
    /// logged and left out; with none at all, connections are served on the caller's runtime.
    fn start() -> ServeThreads {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut handles = Vec::with_capacity(cores);
        for _ in 0..cores {
            match start_one(handles.len()) {
                Ok(handle) => handles.push(handle),
                Err(e) => tracing::error!(error = %e, "cannot start a connection-serving thread"),
            }
        }
        ServeThreads {
            handles,
            next: AtomicUsize::new(0),
        }
    }
}

fn start_one(i: usize) -> std::io::Result<Handle> {
    let runtime = Builder::new_current_thread().enable_all().build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name(format!("serve-{i}"))
        .spawn(move || {
            CURRENT.with(|c| c.set(Some(i)));
            runtime.block_on(std::future::pending::<()>())
        })?;
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_run_on_the_serving_threads() {
        let mut names = Vec::new();
        for _ in 0..4 {
            let (tx, rx) = tokio::sync::oneshot::channel();
            spawn(async move {
                let name = std::thread::current().name().map(str::to_owned);
                let _ = tx.send(name);
            });
            names.push(rx.await.unwrap().unwrap_or_default());
        }
        assert!(names.iter().all(|n| n.starts_with("serve-")), "{names:?}");
        assert_eq!(current(), None, "a test thread is not a serving thread");
        let (tx, rx) = tokio::sync::oneshot::channel();
        spawn_on(count() - 1, async move {
            let _ = tx.send(current());
        });
        assert_eq!(rx.await.unwrap(), Some(count() - 1));
    }
}
