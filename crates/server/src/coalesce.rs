//! One write per round of responses on a connection, instead of one per response.
//!
//! HTTP/2 multiplexes many calls on one connection. Each finished call hands its frames to
//! the connection task and wakes it, and the connection writes and flushes whatever it holds
//! every time it runs: under load, one write system call per response. grpc-go's writer
//! gathers instead: it flushes only when no other frame is ready, after yielding once so the
//! calls about to finish can add theirs.
//!
//! [`Coalesce`] does the same below the HTTP/2 layer. Writes go into a buffer; the first
//! flush after new bytes does not write but yields, waking its own task to be polled again
//! after the tasks already queued on this thread (the calls whose answers are ready); the
//! first flush once the task is polled again writes everything gathered in one system call.
//! A yield is a re-poll of the connection task on the same thread, so a lone response waits
//! microseconds, not a timer. Bytes are only ever held until the task's next poll, so nothing
//! is delayed past a point where the protocol layer waits for them to leave.
//!
//! h2 flushes several times in one poll of its task (once per call it accepts), so a flush
//! must know whether its task has been polled since it yielded: [`serve_coalesced`] counts
//! the polls. Without that, the second flush of the same poll wrote a lone PING
//! acknowledgement (grpc-go clients send a PING with every batch of calls) before the calls
//! just accepted had answered: two writes per batch instead of one.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes gathered before they are written without waiting for a flush; writes at least this
/// large pass through without being copied.
const GATHER_LIMIT: usize = 64 * 1024;

/// Serves `io` through a [`Coalesce`]: `serve` gets the gathered connection, and the future
/// it returns runs with its polls counted.
pub async fn serve_coalesced<T, F>(io: T, serve: impl FnOnce(Coalesce<T>) -> F) -> F::Output
where
    F: Future,
{
    let polls = Arc::new(AtomicU64::new(0));
    let conn = Coalesce {
        io,
        buf: Vec::new(),
        written: 0,
        yielded_at: None,
        polls: polls.clone(),
    };
    let mut serving = std::pin::pin!(serve(conn));
    std::future::poll_fn(|cx| {
        polls.fetch_add(1, Ordering::Relaxed);
        serving.as_mut().poll(cx)
    })
    .await
}

/// A connection whose writes are gathered until a flush, and whose flushes yield once.
pub struct Coalesce<T> {
    io: T,
    /// Bytes written by the protocol layer and not yet to the connection.
    buf: Vec<u8>,
    /// How much of `buf` has reached the connection already.
    written: usize,
    /// The poll of the task in which the pending flush yielded, if it has.
    yielded_at: Option<u64>,
    /// How many times the task serving the connection has been polled.
    polls: Arc<AtomicU64>,
}

impl<T: AsyncWrite + Unpin> Coalesce<T> {
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
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesce<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesce<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.buf.len() + data.len() > GATHER_LIMIT {
            ready!(this.poll_drain(cx))?;
            if data.len() >= GATHER_LIMIT {
                return Pin::new(&mut this.io).poll_write(cx, data);
            }
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if this.buf.len() + total > GATHER_LIMIT {
            ready!(this.poll_drain(cx))?;
            if total >= GATHER_LIMIT {
                return Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
            }
        }
        for b in bufs {
            this.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.written < this.buf.len() {
            let poll = this.polls.load(Ordering::Relaxed);
            match this.yielded_at {
                None => {
                    this.yielded_at = Some(poll);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                // The task is woken already: it writes when it is polled again.
                Some(at) if at == poll => return Poll::Pending,
                Some(_) => {}
            }
        }
        ready!(this.poll_drain(cx))?;
        this.yielded_at = None;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
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
    /// flush. Both frames leave in one write, on the task's next poll.
    #[tokio::test]
    async fn flushes_in_one_poll_write_once_on_the_next() {
        let writes = serve_coalesced(Writes::default(), |mut conn| async move {
            let mut step = 0;
            std::future::poll_fn(|cx| {
                if step == 0 {
                    step = 1;
                    assert!(Pin::new(&mut conn).poll_write(cx, b"ping-ack ").is_ready());
                    assert!(Pin::new(&mut conn).poll_flush(cx).is_pending());
                    assert!(Pin::new(&mut conn).poll_write(cx, b"answer").is_ready());
                    assert!(Pin::new(&mut conn).poll_flush(cx).is_pending());
                    assert!(
                        conn.io.0.is_empty(),
                        "nothing written in the poll that yielded"
                    );
                    return Poll::Pending;
                }
                Pin::new(&mut conn).poll_flush(cx)
            })
            .await
            .unwrap();
            conn.io
        })
        .await;
        assert_eq!(writes.0, vec![b"ping-ack answer".to_vec()]);
    }
}
