//! One write per round of responses on a connection, instead of one per response.
//!
//! HTTP/2 multiplexes many calls on one connection. Each finished call hands its frames to
//! the connection task and wakes it, and the connection writes and flushes whatever it holds
//! every time it runs: under load, one write system call per response. grpc-go's writer
//! gathers instead: it flushes only when no other frame is ready, after yielding once so the
//! calls about to finish can add theirs.
//!
//! [`Coalesce`] does the same below the HTTP/2 layer, with [`serve_coalesced`] around the
//! task that serves the connection. Writes go into a buffer, and a flush only notes that the
//! buffer is to be written: the write happens when the task's poll ends. The first time, the
//! task yields instead, waking itself to be polled again after the tasks already queued on
//! this thread (the calls whose answers are ready); at the end of that next poll everything
//! gathered goes out in one system call. A yield is a re-poll of the connection task on the
//! same thread, so a lone response waits microseconds, not a timer, and a flushed byte never
//! waits past the task's next poll.
//!
//! The write is the task's and not the flush's because h2 flushes many times in one poll: once
//! per call it accepts, and before every DATA frame larger than 256 bytes, which it hands over
//! without copying and must see written before it encodes the next frame. Writing at each of
//! those flushes cost one system call per range answer with a value in it, and one for the
//! PING acknowledgement grpc-go clients send with every batch of calls.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes gathered before they are written without waiting for a flush; writes at least this
/// large pass through without being copied.
const GATHER_LIMIT: usize = 64 * 1024;

/// Serves `io` through a [`Coalesce`]: `serve` gets the gathered connection, and the future it
/// returns runs in a task that writes what was flushed at the end of each of its polls.
pub async fn serve_coalesced<T, F>(io: T, serve: impl FnOnce(Coalesce<T>) -> F) -> F::Output
where
    T: AsyncWrite + Unpin,
    F: Future,
{
    let shared = Arc::new(Mutex::new(Gather {
        io,
        buf: Vec::new(),
        written: 0,
        flush: Flush::None,
        in_task_poll: false,
        failed: None,
    }));
    let mut serving = std::pin::pin!(serve(Coalesce {
        shared: shared.clone()
    }));
    let mut output = None;
    std::future::poll_fn(|cx| {
        if output.is_none() {
            lock(&shared).in_task_poll = true;
            if let Poll::Ready(out) = serving.as_mut().poll(cx) {
                output = Some(out);
            }
        }
        let mut gather = lock(&shared);
        gather.in_task_poll = false;
        match (gather.flush, output.is_some()) {
            (Flush::None, false) => return Poll::Pending,
            (Flush::Wanted, false) => {
                gather.flush = Flush::Yielded;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // Written now, or when the connection can take it (the write registered the task).
            _ => {
                if gather.poll_flush(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        }
        match output.take() {
            Some(out) => Poll::Ready(out),
            None => Poll::Pending,
        }
    })
    .await
}

fn lock<T>(shared: &Mutex<Gather<T>>) -> MutexGuard<'_, Gather<T>> {
    // Only the connection's task touches it; a panic there ends the connection anyway.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connection whose writes are gathered, and written when its task's poll ends.
pub struct Coalesce<T> {
    shared: Arc<Mutex<Gather<T>>>,
}

struct Gather<T> {
    io: T,
    /// Bytes written by the protocol layer and not yet to the connection.
    buf: Vec<u8>,
    /// How much of `buf` has reached the connection already.
    written: usize,
    flush: Flush,
    /// Whether the serving task is being polled (a flush outside it writes at once).
    in_task_poll: bool,
    /// How a write at the end of a poll failed: the protocol layer's next write or flush
    /// returns it.
    failed: Option<io::ErrorKind>,
}

/// What the protocol layer asked of the buffered bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flush {
    None,
    /// Flushed: to be written when the task's poll ends, after one yield.
    Wanted,
    /// Flushed, and the task yielded once: written when this poll ends.
    Yielded,
}

impl<T> Gather<T> {
    /// The error of a write the protocol layer did not see fail, if one did.
    fn check(&self) -> io::Result<()> {
        match self.failed {
            Some(kind) => Err(kind.into()),
            None => Ok(()),
        }
    }
}

impl<T: AsyncWrite + Unpin> Gather<T> {
    /// Writes out everything gathered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Writes out everything gathered and flushes the connection. An error is kept in
    /// `failed` for the protocol layer.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let done = match self.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.io).poll_flush(cx),
            other => other,
        };
        match done {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                // A failed connection: nothing more can be written.
                if let Err(e) = result {
                    self.buf.clear();
                    self.written = 0;
                    self.failed = Some(e.kind());
                }
                self.flush = Flush::None;
                Poll::Ready(())
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesce<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.shared).io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesce<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut gather = lock(&self.shared);
        gather.check()?;
        if gather.buf.len() + data.len() > GATHER_LIMIT {
            ready!(gather.poll_drain(cx))?;
            if data.len() >= GATHER_LIMIT {
                return Pin::new(&mut gather.io).poll_write(cx, data);
            }
        }
        gather.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut gather = lock(&self.shared);
        gather.check()?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if gather.buf.len() + total > GATHER_LIMIT {
            ready!(gather.poll_drain(cx))?;
            if total >= GATHER_LIMIT {
                return Pin::new(&mut gather.io).poll_write_vectored(cx, bufs);
            }
        }
        for b in bufs {
            gather.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut gather = lock(&self.shared);
        gather.check()?;
        if gather.written < gather.buf.len() && gather.in_task_poll {
            if gather.flush == Flush::None {
                gather.flush = Flush::Wanted;
            }
            return Poll::Ready(Ok(()));
        }
        // Nothing gathered, or a flush from outside the serving task (an upgraded
        // connection): written now.
        ready!(gather.poll_drain(cx))?;
        gather.flush = Flush::None;
        Pin::new(&mut gather.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut gather = lock(&self.shared);
        ready!(gather.poll_drain(cx))?;
        Pin::new(&mut gather.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn gathered_writes_arrive_whole_after_a_flush() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        serve_coalesced(a, |mut conn| async move {
            conn.write_all(b"one ").await.unwrap();
            conn.write_all(b"two").await.unwrap();
            conn.flush().await.unwrap();
        })
        .await;
        let mut got = [0u8; 7];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"one two");
    }

    #[tokio::test]
    async fn large_writes_pass_through_in_order() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let big = vec![7u8; GATHER_LIMIT * 2];
        let sent = big.clone();
        serve_coalesced(a, |mut conn| async move {
            conn.write_all(b"head").await.unwrap();
            conn.write_all(&sent).await.unwrap();
            conn.write_all(b"tail").await.unwrap();
            conn.shutdown().await.unwrap();
        })
        .await;
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), 8 + big.len());
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[got.len() - 4..], b"tail");
    }

    /// Records each write that reaches the connection.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl AsyncWrite for Writes {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.push(data.to_vec());
            Poll::Ready(Ok(data.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// As h2 does: within one poll of the task, a frame, a flush, another frame and another
    /// flush. Nothing is written in that poll (the task yields), and both frames leave in one
    /// write at the end of the next.
    #[tokio::test]
    async fn flushes_in_one_poll_write_once_when_the_next_poll_ends() {
        let writes = serve_coalesced(Writes::default(), |mut conn| async move {
            let mut step = 0;
            std::future::poll_fn(|cx| {
                let written = lock(&conn.shared).io.0.clone();
                step += 1;
                match step {
                    1 => {
                        for frame in [&b"ping-ack "[..], b"answer"] {
                            assert!(Pin::new(&mut conn).poll_write(cx, frame).is_ready());
                            assert!(Pin::new(&mut conn).poll_flush(cx).is_ready());
                        }
                        assert!(written.is_empty());
                        Poll::Pending
                    }
                    2 => {
                        assert!(written.is_empty(), "written before the yield: {written:?}");
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    _ => Poll::Ready(written),
                }
            })
            .await
        })
        .await;
        assert_eq!(writes, vec![b"ping-ack answer".to_vec()]);
    }

    /// Refuses every write, as a connection the peer has reset.
    struct Reset;

    impl AsyncWrite for Reset {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A write that fails when the task's poll ends is reported by the protocol layer's next
    /// write and flush.
    #[tokio::test]
    async fn a_write_failed_at_the_end_of_a_poll_fails_the_next_write() {
        let (write, flush) = serve_coalesced(Reset, |mut conn| async move {
            conn.write_all(b"answer").await.unwrap();
            conn.flush().await.unwrap();
            // Two polls later (the yield, then the write), the failure is known.
            for _ in 0..2 {
                tokio::task::yield_now().await;
            }
            let write = conn.write_all(b"next").await.map_err(|e| e.kind());
            let flush = conn.flush().await.map_err(|e| e.kind());
            (write, flush)
        })
        .await;
        assert_eq!(write, Err(io::ErrorKind::ConnectionReset));
        assert_eq!(flush, Err(io::ErrorKind::ConnectionReset));
    }
}
